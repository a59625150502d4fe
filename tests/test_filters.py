"""filters.drop and filters.keep_always: conditions, configuration errors, and the daemon end to end."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from distilld.broker import free_port
from distilld.filters import Condition, Filters, FilterSettings, match
from distilld.settings import ConfigError, load_settings

from .kafka_tools import (
    DaemonProcess,
    daemon_config,
    end_offsets,
    fresh_topic,
    produce,
    read_all,
    wait_committed,
    wait_metrics,
)

RECORDS: list[Any] = [
    {"level": "error", "status": 503, "ua": "Mozilla", "flag": True},
    {"level": "info", "status": 200, "ua": "Googlebot/2.1", "flag": 1},
    {"level": "warn", "status": "404", "ua": None},
    {"status": 500.0, "ua": "curl/8"},
    "not a dict",
]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"field": "level", "equals": "error"}, [1, 0, 0, 0, 0]),
        ({"field": "flag", "equals": True}, [1, 0, 0, 0, 0]),  # true is not 1
        ({"field": "flag", "in": [1, "x"]}, [0, 1, 0, 0, 0]),
        ({"field": "ua", "regex": "(?i)bot|curl"}, [0, 1, 0, 1, 0]),
        ({"field": "status", "gte": 500}, [1, 0, 0, 1, 0]),  # "404" is a string, not a number
        ({"field": "status", "lt": 300}, [0, 1, 0, 0, 0]),
        ({"field": "status", "gt": 500}, [1, 0, 0, 0, 0]),  # the bounds: gt and lt are strict,
        ({"field": "status", "lt": 500}, [0, 1, 0, 0, 0]),
        ({"field": "status", "lte": 200}, [0, 1, 0, 0, 0]),  # gte and lte take the bound itself
        ({"field": "level", "exists": True}, [1, 1, 1, 0, 0]),
        ({"field": "ua", "exists": False}, [0, 0, 1, 0, 1]),
        ({"all": [{"field": "status", "gte": 500}, {"field": "level", "exists": True}]}, [1, 0, 0, 0, 0]),
        ({"any": [{"field": "level", "equals": "warn"}, {"field": "status", "gt": 501}]}, [1, 0, 1, 0, 0]),
        ({"not": {"field": "level", "in": ["info", "warn"]}}, [1, 0, 0, 1, 1]),
    ],
)
def test_conditions(condition: dict[str, Any], expected: list[int]) -> None:
    assert match(Condition.model_validate(condition), RECORDS).tolist() == [bool(e) for e in expected]


def test_first_drop_wins_then_keep_always() -> None:
    filters = Filters(
        FilterSettings.model_validate(
            {
                "drop": [{"name": "bots", "when": {"field": "ua", "regex": "bot"}}],
                "keep_always": [{"name": "errors", "when": {"field": "status", "gte": 500}}],
            }
        )
    )
    reduce, dropped, kept = filters.split([*RECORDS, {"ua": "bot", "status": 500}])
    assert dropped == [(1, "bots"), (5, "bots")], "a dropped record is not also kept"
    assert kept == [(0, "errors"), (3, "errors")]
    assert np.flatnonzero(reduce).tolist() == [2, 4]


BASE = {
    "kafka": {"bootstrap_servers": "b:9092", "group_id": "g", "input_topics": ["t"], "output_topic": "o"},
    "features": [{"name": "level", "type": "open_categorical"}],
    "processing": {"on_error": "skip"},
}


def _drop(when: dict[str, Any], name: str = "x") -> dict[str, Any]:
    return {"drop": [{"name": name, "when": when}]}


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (_drop({"field": "a"}), r"filters\.drop\.0\.when: .*exactly one of equals"),
        (_drop({"field": "a", "regex": "("}), r"filters\.drop\.0\.when\.regex: not a valid"),
        ({"keep_always": [{"name": "x y", "when": {"field": "a", "exists": True}}]}, r"keep_always\.0\.name"),
        (_drop({"field": "..", "exists": True}), r"filters\.drop\.0\.when\.field"),
        (
            _drop({"field": "a", "exists": True}) | {"keep_always": [{"name": "x", "when": {"field": "b", "gt": 1}}]},
            r"filters: .*distinct: x",
        ),
        (_drop({"all": [{"field": "a", "gt": "high"}]}), r"filters\.drop\.0\.when\.all\.0\.gt"),
        (_drop({"field": "a", "lt": float("nan")}), r"filters\.drop\.0\.when\.lt"),  # would never match
        # an empty all matched every record (the review's allempty.yaml dropped them all), an empty any none
        (_drop({"all": []}), r"filters\.drop\.0\.when\.all: empty: .*every record"),
        (_drop({"any": []}), r"filters\.drop\.0\.when\.any: empty: .*no record"),
        (_drop({"not": {"all": [{"field": "a", "exists": True}, {"any": []}]}}), r"when\.not\.all\.1\.any: empty"),
    ],
)
def test_filter_errors_name_the_filter_and_the_reason(filters: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, **BASE, filters=filters)


@pytest.mark.kafka
def test_daemon_drops_and_keeps_always(kafka_bootstrap: str, tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    topic, group = fresh_topic(kafka_bootstrap, "filters")
    rng = np.random.default_rng(4)
    levels = rng.choice(["info", "warn", "error"], size=6000, p=[0.8, 0.17, 0.03]).tolist()
    records = [{"i": i, "level": lv, "ua": "bot" if i % 10 == 3 else "web"} for i, lv in enumerate(levels)]
    values = [orjson.dumps(r) for r in records]
    sent = produce(kafka_bootstrap, topic, values, [None] * len(values))
    port = free_port()
    config = daemon_config(kafka_bootstrap, topic, group, reducer={"key": "none"})
    config["metrics"] = {"port": port, "host": "127.0.0.1", "refresh_ms": 200}
    config["features"] = [{"name": "level", "type": "categorical", "categories": ["info", "warn", "error"]}]
    config["filters"] = {
        "drop": [{"name": "bots", "when": {"field": "ua", "equals": "bot"}}],
        "keep_always": [{"name": "errors", "when": {"field": "level", "equals": "error"}}],
    }
    d = DaemonProcess(tmp_path, config).start()
    daemons.append(d)
    bots = [r for r in records if r["ua"] == "bot"]
    errors = [r for r in records if r["ua"] != "bot" and r["level"] == "error"]
    rest = [r for r in records if r["ua"] != "bot" and r["level"] != "error"]
    wait_committed(kafka_bootstrap, group, topic, end_offsets(sent), 1, d)
    metrics = wait_metrics(
        f"http://127.0.0.1:{port}/metrics",
        lambda m: m.get(("distilld_window_records", (("kind", "received"),))) == len(rest),
        "the windows holding every record neither dropped nor kept (a gauge refresh after the last batch)",
        d,
    )
    assert d.stop() == 0, d.log()

    out = read_all(kafka_bootstrap, f"{topic}.out", expect_at_least=len(errors))
    kept = [m for m in out if dict(m.headers()).get("distilld-kept") == b"errors"]
    sampled = [m for m in out if "distilld-kept" not in dict(m.headers())]
    assert sorted(m.value() for m in kept) == sorted(orjson.dumps(r) for r in errors), "every error, once"
    assert all(dict(m.headers())["distilld-weight"] == b"1" for m in kept)
    assert not [m for m in out if orjson.loads(m.value())["ua"] == "bot"], "bots dropped"
    assert abs(len(sampled) - 0.1 * len(rest)) <= 1, "the budget covers the rest only"
    weights = sum(float(dict(m.headers())["distilld-weight"]) for m in sampled)
    assert weights == pytest.approx(len(rest), rel=0.01), "the sampled records' weights stand for the rest"
    assert Counter(orjson.loads(m.value())["level"] for m in sampled).keys() <= {"info", "warn"}

    def filtered(name: str, action: str) -> float:
        return metrics[("distilld_records_filtered_total", (("action", action), ("filter", name)))]

    assert filtered("bots", "drop") == len(bots) and filtered("errors", "keep") == len(errors)
    assert metrics[("distilld_window_records", (("kind", "received"),))] == len(rest), "kept and dropped: not windowed"
