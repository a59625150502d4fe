"""Custom graders: by module path or by entry point name; one that raises dead-letters its record."""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from distilld import build_graders
from distilld.features import FeatureConfigError
from distilld.graders import CategoricalGrader
from distilld.processor import DistilledProcessor

from .kafka_tools import (
    DaemonProcess,
    daemon_config,
    end_offsets,
    fresh_topic,
    produce,
    read_all,
    wait_committed,
)

PLUGIN = """
def age_band(record):
    age = record["age"]  # KeyError when there is none: the daemon dead-letters the record
    if age < 0:
        raise ValueError(f"negative age {age}")
    return "young" if age < 40 else "old"
"""


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[Path]:
    """A user package, ``agegrader``, installed as far as importlib.metadata can tell:
    its module and a dist-info declaring the entry point ``distilld.graders: age_band``."""
    (tmp_path / "agegrader.py").write_text(PLUGIN)
    info = tmp_path / "agegrader-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: agegrader\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[distilld.graders]\nage_band = agegrader:age_band\n")
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("agegrader", None)


def _features(function: str) -> list[dict[str, Any]]:
    return [
        {"name": "gender", "type": "categorical", "categories": ["female", "male"]},
        {"name": "band", "type": "custom", "function": function, "value_type": "categorical"}
        | {"categories": ["young", "old"]},
    ]


def test_a_grader_by_entry_point_name_and_by_module_path_is_the_same(plugin: Path) -> None:
    by_name = build_graders(_features("age_band"))["band"]
    by_path = build_graders(_features("agegrader:age_band"))["band"]
    records = [{"age": 30}, {"age": 50}]
    assert by_name.extract_batch(records) == by_path.extract_batch(records) == ["young", "old"]


def test_an_unknown_entry_point_names_the_group(plugin: Path) -> None:
    with pytest.raises(FeatureConfigError, match=r"features\[1\] \('band'\).*no grader 'nope'.*installed: age_band"):
        build_graders(_features("nope"))


def test_an_entry_point_to_something_not_callable_is_refused(plugin: Path) -> None:
    """An entry point naming a constant was taken as the function: every record raised "'int' object is not
    callable" and went to the DLQ. It is refused at start-up, as a package.module:name that is not callable."""
    (plugin / "agegrader.py").write_text(PLUGIN + "LIMIT = 40\n")
    (plugin / "agegrader-1.0.dist-info" / "entry_points.txt").write_text(
        "[distilld.graders]\nlimit = agegrader:LIMIT\n"
    )
    with pytest.raises(FeatureConfigError, match=r"features\[1\] \('band'\): TypeError: limit is not callable"):
        build_graders(_features("limit"))
    with pytest.raises(
        FeatureConfigError, match=r"features\[1\] \('band'\): TypeError: agegrader:LIMIT is not callable"
    ):
        build_graders(_features("agegrader:LIMIT"))


def test_extract_reports_the_records_whose_grader_raised(plugin: Path) -> None:
    proc = DistilledProcessor(build_graders(_features("age_band")), 600, 0.5)
    records = [{"gender": "male", "age": 30}, {"gender": "female"}, {"gender": "male", "age": -1}, {"age": 60}]
    columns, errors = proc.extract(records)
    assert columns[1] == ["young", None, None, "old"]
    assert errors == [
        (1, "grader 'band' raised KeyError: 'age'"),
        (2, "grader 'band' raised ValueError: negative age -1"),
    ]


@pytest.mark.kafka
def test_the_daemon_dead_letters_records_whose_grader_raises(
    kafka_bootstrap: str, tmp_path: Path, plugin: Path, daemons: list[DaemonProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    topic, group = fresh_topic(kafka_bootstrap, "custom")
    records = [{"gender": "male" if i % 3 else "female", "age": 20 + i % 50, "i": i} for i in range(2000)]
    for i in (10, 500, 1999):
        del records[i]["age"]
    records[700]["age"] = -5
    bad = {10, 500, 700, 1999}
    values = [orjson.dumps(r) for r in records]
    sent = produce(kafka_bootstrap, topic, values, [None] * len(values))
    config = daemon_config(kafka_bootstrap, topic, group, reducer={"rate": 1.0, "key": "none"})
    config["features"] = _features("age_band")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")]))
    d = DaemonProcess(tmp_path, config).start()
    daemons.append(d)
    wait_committed(kafka_bootstrap, group, topic, end_offsets(sent), 1, d)
    assert d.stop() == 0, d.log()
    out = read_all(kafka_bootstrap, f"{topic}.out", expect_at_least=len(values) - len(bad))
    assert sorted(m.value() for m in out) == sorted(v for i, v in enumerate(values) if i not in bad)
    dlq = read_all(kafka_bootstrap, f"{topic}.dlq", expect_at_least=len(bad), idle_s=1)
    errors = {int(dict(m.headers())["distilld-source-offset"]): dict(m.headers())["distilld-error"] for m in dlq}
    assert errors == {
        10: b"grader 'band' raised KeyError: 'age'",
        500: b"grader 'band' raised KeyError: 'age'",
        700: b"grader 'band' raised ValueError: negative age -5",
        1999: b"grader 'band' raised KeyError: 'age'",
    }


def test_a_custom_function_is_called_once_a_record_though_one_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch with one record the function raised on was graded again record by record: a slow
    function cost twice, a stateful one saw the records before the bad one twice."""
    calls: list[int] = []

    def band(record: dict[str, Any]) -> str:
        calls.append(record["i"])
        if record["i"] in (3, 7):
            raise KeyError("age")
        return "young"

    monkeypatch.setitem(sys.modules, "bandgrader", types.SimpleNamespace(band=band))
    entry = {"name": "f", "type": "custom", "function": "bandgrader:band", "value_type": "open_categorical"}
    values, errors = build_graders([entry])["f"].extract_checked([{"i": i} for i in range(10)])
    assert calls == list(range(10))
    assert values == ["young"] * 3 + [None] + ["young"] * 3 + [None] + ["young"] * 2
    assert errors == [(3, "KeyError: 'age'"), (7, "KeyError: 'age'")]


def test_a_custom_function_raising_stop_iteration_is_one_failed_record_not_the_end_of_the_batch() -> None:
    """``next(iter(tags))`` on an empty list raises StopIteration, which ends a ``map``: the daemon's grading
    (extract) gave a column cut short at that record, with no error, and numpy spread a column of one value
    over the whole batch (every record graded as the first), or the batch failed on the shapes."""
    first_tag = CategoricalGrader("tag", ["a", "b"], lambda r: next(iter(r["tags"])))
    proc = DistilledProcessor({"tag": first_tag})
    records = [{"tags": ["a"]}, {"tags": []}, {"tags": ["b"]}, {"tags": []}]
    (column,), failed = proc.extract(records)
    assert column == ["a", None, "b", None]
    assert failed == [(1, "grader 'tag' raised StopIteration"), (3, "grader 'tag' raised StopIteration")]
