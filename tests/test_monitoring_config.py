"""The shipped alert rules and Prometheus config, checked by promtool (rule unit tests included)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from distilld.daemon.metrics import DaemonMetrics

from .promql import alert_expressions, dashboard_expressions

PROMTOOL = shutil.which("promtool")
CONFIG = Path(__file__).resolve().parent.parent / "config"
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PROMTOOL), *args], capture_output=True, text=True, timeout=60, cwd=CONFIG / "prometheus")


@needs_promtool
def test_rules_pass_promtool_check() -> None:
    r = promtool("check", "rules", "alerts.yml")
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_rule_unit_tests_pass() -> None:
    r = promtool("test", "rules", "alerts_test.yml")
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_example_prometheus_config_passes_promtool_check() -> None:
    r = promtool("check", "config", "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def _exported() -> set[str]:
    """Every series name the daemon can export (counters with _total, histograms with their parts)."""
    names = set()
    for family in DaemonMetrics(["f"]).registry.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")  # labelled counters have no samples until first used
        for s in family.samples:
            names.add(s.name)
    return names


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_expressions_use_only_metrics_the_daemon_exports(source: str) -> None:
    exprs = (
        dashboard_expressions(CONFIG / "grafana" / "distilld.json")
        if source == "dashboard"
        else alert_expressions(CONFIG / "prometheus" / "alerts.yml")
    )
    used = {name for e in exprs for name in re.findall(r"\b(distilld_[a-z_]+)", e)}
    assert used, "no distilld metric used"
    assert used <= _exported(), sorted(used - _exported())


def test_dashboard_ranges_follow_the_scrape_interval() -> None:
    """A fixed range (the rebalance annotation's [1m]) holds too few samples, or none, when Prometheus
    scrapes every 30 s or slower: increase() over it showed no rebalance. $__rate_interval follows the scrape."""
    text = (CONFIG / "grafana" / "distilld.json").read_text()
    exprs = re.findall(r'"expr": "((?:[^"\\]|\\.)*)"', text)
    assert len(exprs) > 30
    fixed = [e for e in exprs if re.search(r"\[\d+[smhd]\]", e)]
    assert not fixed, fixed
