"""The shipped alert rules and Prometheus config, checked by promtool (rule unit tests included)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

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


@pytest.mark.parametrize(
    "name",
    ["distilld_state_restore_duration_seconds", "distilld_commit_duration_seconds", "distilld_batch_duration_seconds"],
)
def test_latency_histograms_reach_past_the_slow_cases(name: str) -> None:
    """Restores, exactly_once commits and batches held on a slow schema registry (up to 150 s) run past 10 s:
    with 10 as the last finite bucket the p99 panels flat-lined at 10."""
    m = DaemonMetrics(["f"])
    (family,) = [f for f in m.registry.collect() if f.name == name]
    bounds = sorted(float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket"))
    assert bounds[-1] == float("inf")
    assert bounds[-2] >= 300, bounds


def test_dashboard_ranges_follow_the_scrape_interval() -> None:
    """A fixed range (the rebalance annotation's [1m]) holds too few samples, or none, when Prometheus
    scrapes every 30 s or slower: increase() over it showed no rebalance. $__rate_interval follows the scrape."""
    text = (CONFIG / "grafana" / "distilld.json").read_text()
    exprs = re.findall(r'"expr": "((?:[^"\\]|\\.)*)"', text)
    assert len(exprs) > 30
    fixed = [e for e in exprs if re.search(r"\[\d+[smhd]\]", e)]
    assert not fixed, fixed


README = CONFIG.parent / "README.md"


def _monitoring_section() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("\n## Monitoring\n", 1)[1].split("\n## ", 1)[0]


def _registered() -> dict[str, tuple[str, set[str]]]:
    """Each metric family the daemon registers: its series name as the README writes it (counters with
    _total), its type and its label names (labelled families have no samples until first used)."""
    metrics = DaemonMetrics(["f"])
    families = {}
    for metric in vars(metrics).values():
        if hasattr(metric, "_labelnames"):
            name = metric._name + ("_total" if metric._type == "counter" else "")
            families[name] = (metric._type, set(metric._labelnames))
    for family in metrics.registry.collect():  # those not kept on the object (distilld_build_info)
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {label for s in family.samples for label in s.labels if label != "le"}
        families.setdefault(name, (family.type, labels))
    return families


def test_readme_metrics_table_lists_every_registered_metric_with_its_labels() -> None:
    """The README's Metrics table: one row a family, with the type and label names the code registers."""
    table = _monitoring_section().split("### Metrics\n", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `(distilld_\w+)` \| (\w+) \| ([^|]*) \| ([^|]+) \|$", table, re.M)
    documented = {name: (kind, set(re.findall(r"`(\w+)`", labels))) for name, kind, labels, _ in rows}
    assert len(documented) == len(rows), "a metric listed twice"
    assert documented == _registered()


def test_metrics_the_readme_names_exist() -> None:
    """Every distilld_* series the Monitoring section names (tables of panels and alerts included)."""
    exported = _exported()
    named = set(re.findall(r"\b(distilld_[a-z_]+)", _monitoring_section()))
    assert named and named <= exported, sorted(named - exported)


def _not_ready_reasons() -> dict[str, str]:
    """What Daemon.readiness answers in each state it answers not ready in (a stand-in for the daemon)."""
    from types import SimpleNamespace
    from typing import Any

    from distilld.daemon.assignment import Assigner
    from distilld.daemon.loop import Daemon

    def assigner(pending: list[Any] | None = None, restoring: dict[Any, int] | None = None) -> Assigner:
        waiting = Assigner(None)  # type: ignore[arg-type]
        waiting.pending, waiting.restoring = pending or [], restoring or {}
        return waiting

    ready = {"checkpoints": SimpleNamespace(unfinished=False), "broker_up": True, "missing_topics": set()}
    ready |= {"partitions": {}, "joined": True, "assigner": assigner(), "stopping": False}
    ready |= {
        "failure": None,
        "_registry_since": None,
        "_registry_until": 0.0,
        "_in_batch": False,
        "_hold_limit_s": 150.0,
    }
    ready |= {"endpoints": None, "subscribed": True, "_stats_interval_s": 1.0, "_last_stats": time.monotonic()}
    states = {
        "committed offsets": {"assigner": assigner(pending=[SimpleNamespace(topic="events", partition=0)])},
        "transaction": {"checkpoints": SimpleNamespace(unfinished=True)},
        "broker": {"broker_up": False},
        "input topic": {"missing_topics": {"events"}, "joined": False},
        "group": {"joined": False},
        "restored": {"assigner": assigner(restoring={("events", 0): 5})},
        "stopping": {"stopping": True},
        "stuck": {"_last_stats": time.monotonic() - 60},
        "schema registry": {
            "_registry_since": time.monotonic() - 30,
            "_registry_until": time.monotonic(),
            "_last_stats": time.monotonic() - 30,
        },
    }
    assert Daemon.readiness(SimpleNamespace(**ready))[0]  # type: ignore[arg-type]
    reasons = {}
    for cause, state in states.items():
        ok, why = Daemon.readiness(SimpleNamespace(**(ready | state)))  # type: ignore[arg-type]
        assert not ok and cause in why, (cause, why)
        reasons[cause] = why
    return reasons


def test_every_not_ready_cause_is_documented_wherever_readiness_is_explained() -> None:
    """/readyz answers 503 for nine causes, one of them (exactly_once) a transaction being retried: the
    endpoints' docstring, the README, the DistilldNotReady alert, the dashboard's ready panels and the
    chart's probe comment each name them all (they named two, and an alert on not-ready paged during a
    transaction retry without saying so)."""
    from distilld.daemon import endpoints

    monitoring = _monitoring_section()
    (row,) = [line for line in monitoring.splitlines() if line.startswith("| `DistilldNotReady`")]
    rules = yaml.safe_load((CONFIG / "prometheus" / "alerts.yml").read_text())
    (rule,) = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "DistilldNotReady"]
    dashboard = json.loads((CONFIG / "grafana" / "distilld.json").read_text())
    ready_panels = [
        p["description"]
        for p in dashboard["panels"]
        if any("distilld_ready" in t.get("expr", "") for t in p.get("targets", []))
    ]
    values = (CONFIG.parent / "helm" / "distilld" / "values.yaml").read_text()
    probes = values.split("# Probes on the metrics port", 1)[1].split("livenessProbe:", 1)[0]
    places = {
        "endpoints.py": endpoints.__doc__ or "",
        "README /readyz": monitoring.split("The repository ships", 1)[0],
        "README DistilldNotReady": row,
        "alerts.yml DistilldNotReady": rule["annotations"]["description"],
        "helm values.yaml probes": probes,
        **{f"dashboard panel {i}": d for i, d in enumerate(ready_panels)},
    }
    assert len(ready_panels) == 2
    missing = {
        where: [cause for cause in _not_ready_reasons() if cause not in " ".join(text.split())]
        for where, text in places.items()
    }
    assert not any(missing.values()), missing


def test_every_dlq_and_skip_reason_is_named_where_the_dlq_is_explained() -> None:
    """The reasons distilld_records_dlq_total / _skipped_total carry, `refused` (the output topic refused
    the record) included: DistilldDLQRate's description listed the decode reasons only, and told to fix
    the input's producer whatever the reason."""
    reasons = set()
    for family in DaemonMetrics(["f"]).registry.collect():
        if family.name in ("distilld_records_dlq", "distilld_records_skipped"):
            reasons |= {s.labels["reason"] for s in family.samples}
    assert "refused" in reasons and "not_json" in reasons
    rules = yaml.safe_load((CONFIG / "prometheus" / "alerts.yml").read_text())
    (rule,) = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "DistilldDLQRate"]
    dashboard = json.loads((CONFIG / "grafana" / "distilld.json").read_text())
    panels = {p["title"]: p.get("description", "") for p in dashboard["panels"]}
    monitoring = _monitoring_section()
    (dlq_row,) = [line for line in monitoring.splitlines() if line.startswith("| DLQ records per second by reason")]
    (alert_row,) = [line for line in monitoring.splitlines() if line.startswith("| `DistilldDLQRate`")]
    places = {
        "alerts.yml DistilldDLQRate": rule["annotations"]["description"],
        "dashboard DLQ panel": panels["DLQ records per second by reason"],
        "README DLQ panel": dlq_row,
    }
    missing = {where: sorted(r for r in reasons if r not in text) for where, text in places.items()}
    assert not any(missing.values()), missing
    assert "refused" in alert_row
    assert "refused" in panels["Skipped records per second by reason"]


def test_dashboard_shows_every_metric_the_daemon_registers() -> None:
    """distilld_token_errors_total, distilld_timestamps_replaced_total, the snapshot counters and the
    restore latency had no panel: an identity provider's outage showed nowhere on the dashboard."""
    used = " ".join(dashboard_expressions(CONFIG / "grafana" / "distilld.json"))
    families = [f.name for f in DaemonMetrics(["f"]).registry.collect()]
    assert not [name for name in families if not re.search(rf"\b{name}(_total|_bucket|_sum|_count)?\b", used)]


@needs_promtool
def test_dashboard_expressions_pass_promtool(tmp_path: Path) -> None:
    """Every dashboard query (variables substituted) is valid PromQL: promtool checks them as recording rules."""
    exprs = dashboard_expressions(CONFIG / "grafana" / "distilld.json")
    rules = [{"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = promtool("check", "rules", str(path))
    assert r.returncode == 0 and f"{len(rules)} rules found" in r.stdout, r.stdout + r.stderr


def test_dashboard_ranges_are_the_rate_interval() -> None:
    """Every range selector of the dashboard is [$__rate_interval] (not $__interval, too short at a fine step)."""
    text = (CONFIG / "grafana" / "distilld.json").read_text()
    exprs = re.findall(r'"expr": "((?:[^"\\]|\\.)*)"', text)
    ranges = [r for e in exprs for r in re.findall(r"\[([^\]]*)\]", e) if r not in ("", ".")]
    assert ranges and set(ranges) == {"$__rate_interval"}, sorted(set(ranges))


def test_every_alert_has_unit_tests_that_fire_it_and_do_not() -> None:
    """alerts_test.yml has, for each rule of alerts.yml, an evaluation expecting it to fire and one not to."""
    rules = yaml.safe_load((CONFIG / "prometheus" / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((CONFIG / "prometheus" / "alerts_test.yml").read_text())
    fires, quiet = set(), set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts and alerts == fires == quiet, (alerts - fires, alerts - quiet)


def test_readme_alerts_table_matches_the_rules() -> None:
    """One README row per rule, with its severity, its `for:` and its THRESHOLD literal."""
    rules = yaml.safe_load((CONFIG / "prometheus" / "alerts.yml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    table = _monitoring_section().split("### Alerts\n", 1)[1]
    rows = {m[0]: m for m in re.findall(r"^\| `(\w+)` \((\w+)\) \| ([^|]+) \|", table, re.M)}
    assert set(rows) == set(alerts)
    for name, rule in alerts.items():
        _, severity, fires_when = rows[name]
        assert severity == rule["labels"]["severity"], name
        assert f"for {rule['for']}" in fires_when, (name, rule["for"], fires_when)
        for threshold in re.findall(r"> ([\d.]+)\s+# THRESHOLD", rule["expr"]):
            assert threshold in fires_when, (name, threshold, fires_when)
