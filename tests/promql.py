"""The PromQL of the shipped Grafana dashboard and alert rules, ready for a plain Prometheus.

:func:`dashboard_expressions` returns every query of ``config/grafana/distilld.json`` with Grafana's
variables substituted: the built-in intervals (``$__rate_interval``, ``$__interval``, ``$__range``) by
``1m``, and the dashboard's template variables (``$job``, ``${instance}``, ``[[dlq_topic]]``) by their
saved value, or ``.*`` when that is "All". :func:`alert_expressions` returns every rule's ``expr`` of
``config/prometheus/alerts.yml``. Both are plain PromQL a Prometheus server's ``/api/v1/query`` accepts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = ["alert_expressions", "dashboard_expressions", "substitute"]

# Grafana's built-in variables a query may use, longest names first so ``$__range_s`` is not read as ``$__range``.
BUILTINS: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval_ms": "60000",
    "__interval": "1m",
    "__range_ms": "60000",
    "__range_s": "60",
    "__range": "1m",
}
ALL = ".*"

# $name, ${name}, ${name:format}, [[name]], [[name:format]]
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")


def _variable_value(variable: dict[str, Any]) -> str:
    """What a template variable stands for in a query: its saved value, ``.*`` (or its allValue) for All."""
    all_value = str(variable.get("allValue") or ALL)
    current = variable.get("current") or {}
    value = current.get("value", variable.get("query", ""))
    values = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    if not values or "$__all" in values or values == [""]:
        return all_value
    return values[0] if len(values) == 1 else "(" + "|".join(re.escape(v) for v in values) + ")"


def _template_values(dashboard: dict[str, Any]) -> dict[str, str]:
    return {
        str(v["name"]): _variable_value(v)
        for v in dashboard.get("templating", {}).get("list", [])
        if v.get("type") != "datasource"
    }


def substitute(expr: str, variables: dict[str, str]) -> str:
    """``expr`` with Grafana's built-in and template variables replaced; unknown variables are an error."""

    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g is not None)
        if name in BUILTINS:
            return BUILTINS[name]
        if name in variables:
            return variables[name]
        raise ValueError(f"unknown Grafana variable ${name} in {expr!r}")

    return _VARIABLE.sub(replace, expr)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside (collapsed) rows included."""
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_expressions(path: str | Path) -> list[str]:
    """Every PromQL query of the dashboard's panels (and annotations), variables substituted, in order."""
    dashboard: dict[str, Any] = json.loads(Path(path).read_text())
    variables = _template_values(dashboard)
    raw = [
        str(target["expr"])
        for panel in _panels(dashboard.get("panels", []))
        for target in panel.get("targets", [])
        if str(target.get("expr", "")).strip()
    ]
    raw += [str(a["expr"]) for a in dashboard.get("annotations", {}).get("list", []) if str(a.get("expr", "")).strip()]
    return [substitute(e, variables).strip() for e in raw]


def alert_expressions(path: str | Path) -> list[str]:
    """Every rule's ``expr`` (alerting and recording rules) of a Prometheus rule file, in order."""
    rules: dict[str, Any] = yaml.safe_load(Path(path).read_text())
    return [
        str(rule["expr"]).strip()
        for group in rules.get("groups", [])
        for rule in group.get("rules", [])
        if "expr" in rule
    ]
