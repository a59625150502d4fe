"""Filters that raise (they should not: an odd value matches no test): the records they could not filter
are reported, never lost without a word: the daemon handles them as processing.on_error says, with a log
line; ``distilld reduce`` stops and names the record. No broker: the daemon is driven as in
test_daemon_units."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from confluent_kafka import Message

from distilld.cli import main
from distilld.daemon.loop import Daemon
from distilld.daemon.partition import Partition
from distilld.daemon.progress import PartitionProgress
from distilld.filters import Filters, FilterSettings
from distilld.settings import load_settings

from .test_daemon_units import FakeProducer

FILTERS = {"drop": [{"name": "two", "when": {"field": "a", "equals": 2}}]}


@pytest.fixture
def raising(monkeypatch: pytest.MonkeyPatch) -> None:
    """Filters.split raises for any batch holding a record ``{"a": "boom"}`` (a bug, say)."""
    split = Filters.split

    def boom(self: Filters, records: Sequence[Any]) -> Any:
        if any(isinstance(r, dict) and r.get("a") == "boom" for r in records):
            raise RuntimeError("cannot filter")
        return split(self, records)

    monkeypatch.setattr(Filters, "split", boom)


@pytest.mark.usefixtures("raising")
def test_split_checked_filters_each_record_alone_when_the_batch_raises() -> None:
    filters = Filters(FilterSettings.model_validate(FILTERS))
    reduce, dropped, kept, failed = filters.split_checked([{"a": 1}, {"a": "boom"}, {"a": 2}, {"a": "boom"}])
    assert reduce.tolist() == [True, False, False, False] and dropped == [(2, "two")] and kept == []
    assert failed == [
        (1, "filters raised RuntimeError: cannot filter"),
        (3, "filters raised RuntimeError: cannot filter"),
    ]
    assert [x if i else x.tolist() for i, x in enumerate(filters.split_checked([{"a": 2}]))] == [
        [False],
        [(0, "two")],
        [],
        [],
    ]


def _daemon(on_error: str) -> tuple[Daemon, FakeProducer, Partition]:
    s = load_settings(
        None,
        kafka={"bootstrap_servers": "127.0.0.1:1", "group_id": "g", "input_topics": ["t"], "output_topic": "o",
               "dlq_topic": "d"},
        features=[{"name": "a", "type": "numeric"}],
        reducer={"rate": 1.0},
        processing={"on_error": on_error},
        metrics={"port": 0},
        filters=FILTERS,
    )  # fmt: skip
    d = Daemon(s)
    producer = FakeProducer()
    d.output.producer = producer  # type: ignore[assignment]
    reducer = d._new_reducer()
    return d, producer, Partition(PartitionProgress("t", 0), reducer, reducer.missing_counts.copy())


def _total(counter: Any) -> float:
    return sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))


def _reasons(counter: Any) -> set[str]:
    return {s.labels["reason"] for m in counter.collect() for s in m.samples if s.name.endswith("_total") and s.value}


@pytest.mark.usefixtures("raising")
@pytest.mark.parametrize("on_error", ["dlq", "skip", "fail"])
def test_records_the_filters_could_not_filter_go_where_on_error_says_with_a_log_line(
    on_error: str, caplog: pytest.LogCaptureFixture
) -> None:
    d, producer, part = _daemon(on_error)
    values = [orjson.dumps({"a": a}) for a in (1, 2, "boom", 3)]
    msgs = [Message(topic="t", partition=0, offset=10 + i, value=v, timestamp=(1, 1_700_000_000_000)) for i, v in
            enumerate(values)]  # fmt: skip
    with caplog.at_level(logging.ERROR, logger="distilld"):
        d.record_path.process_partition(("t", 0), part, msgs)
    assert "filters: 1 records of a batch could not be filtered" in caplog.text
    assert f"processing.on_error: {on_error}" in caplog.text and "RuntimeError: cannot filter" in caplog.text
    forwarded = [c["value"] for c in producer.calls if c["topic"] == "o"]
    dead = [c for c in producer.calls if c["topic"] == "d"]
    assert _total(d.metrics.filtered) == 1, "a=2 dropped by its filter: the rest of the batch is filtered"
    if on_error == "fail":
        assert forwarded == [values[0]] and not dead
        assert d.stopping and d.failure == "t[0]@12: filters raised RuntimeError: cannot filter"
    else:
        assert forwarded == [values[0], values[3]]
        if on_error == "dlq":
            assert [c["value"] for c in dead] == [values[2]]
            headers = dict(dead[0]["headers"])
            assert headers["distilld-error"] == b"filters raised RuntimeError: cannot filter"
            assert headers["distilld-source-offset"] == b"12"
            assert _reasons(d.metrics.dlq) == {"filter_error"}, "labelled not_json before"
        else:
            assert not dead and _total(d.metrics.skipped) == 1, "counted skipped"
            assert _reasons(d.metrics.skipped) == {"filter_error"}
    for call in producer.calls:
        call["on_delivery"](None, None)
    assert part.progress.committable == (12 if on_error == "fail" else 14), "committed past what was handled only"
    if on_error != "fail":  # the same failure batch after batch: one line a minute, not one a batch
        later = [Message(topic="t", partition=0, offset=14 + i, value=v, timestamp=(1, 1_700_000_000_000)) for i, v in
                 enumerate(values)]  # fmt: skip
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="distilld"):
            d.record_path.process_partition(("t", 0), part, later)
        assert "could not be filtered" not in caplog.text


@pytest.mark.usefixtures("raising")
def test_reduce_stops_and_names_the_record_the_filters_could_not_filter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out, config = tmp_path / "in.ndjson", tmp_path / "out.ndjson", tmp_path / "c.yaml"
    src.write_bytes(b"".join(orjson.dumps({"a": a}) + b"\n" for a in (1, 2, 3, "boom", 4, "boom")))
    config.write_text(yaml.safe_dump({"features": [{"name": "a", "type": "numeric"}], "filters": FILTERS}))
    assert main(["reduce", str(src), "-o", str(out), "-c", str(config), "-q", "--batch", "2"]) == 1
    err = capsys.readouterr().err
    assert "distilld reduce: record 4: filters raised RuntimeError: cannot filter" in err, err
    assert "Traceback" not in err and not out.exists() and not list(tmp_path.glob(".out*")), "no output"
