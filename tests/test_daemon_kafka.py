"""The daemon against a real broker, run as a separate process like a user runs it."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from distilld.broker import free_port

from .conftest import people_records
from .kafka_tools import (
    DaemonProcess,
    committed,
    create_topics,
    daemon_config,
    end_offsets,
    fresh_topic,
    produce,
    read_all,
    unique,
    value,
    wait_committed,
    wait_metrics,
)

pytestmark = pytest.mark.kafka

PARTITIONS = 3
BAD = [b"not json", b"[1, 2, 3]", b'"a string"', b"{truncated", b"\xff\xfe"]


def _values(n: int, seed: int = 0) -> list[bytes]:
    return [orjson.dumps(r) for r in people_records(n, seed)]


def _run(daemons: list[DaemonProcess], tmp: Path, config: dict[str, Any], name: str = "daemon") -> DaemonProcess:
    d = DaemonProcess(tmp, config, name).start()
    daemons.append(d)
    return d


def _headers(m: Any) -> dict[str, bytes]:
    return dict(m.headers() or [])


def test_output_is_identical_weighted_within_budget_and_committed(
    kafka_bootstrap: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    topic, group = unique("people"), unique("g")
    create_topics(kafka_bootstrap, {topic: PARTITIONS, f"{topic}.out": PARTITIONS, f"{topic}.dlq": 1})
    values = _values(12_000)
    bad_at = {i * 997 + 13: BAD[i % len(BAD)] for i in range(10)}
    for i, v in bad_at.items():
        values[i] = v
    keys = [b"user-%d" % (i % 9) for i in range(len(values))]
    headers = [[("trace", b"t%d" % i)] if i % 3 == 0 else None for i in range(len(values))]
    sent = produce(kafka_bootstrap, topic, values, keys, headers)
    ends = end_offsets(sent)

    d = _run(daemons, tmp_path, daemon_config(kafka_bootstrap, topic, group))
    got = wait_committed(kafka_bootstrap, group, topic, ends, PARTITIONS, d)
    assert d.stop() == 0, d.log()
    assert got == {p: ends.get(p, -1001) for p in range(PARTITIONS)}, "offsets committed to the end"

    by_value = {(s.value, s.key): s for s in sent}
    out = read_all(kafka_bootstrap, f"{topic}.out", expect_at_least=1)
    received = Counter(k for v, k in zip(values, keys, strict=True) if v not in BAD)
    selected: Counter[bytes] = Counter()
    for m in out:
        source = by_value[(m.value(), m.key())]  # byte-identical value and key
        h = m.headers() or []
        assert h[: len(source.headers)] == list(source.headers), "original headers first, unchanged"
        weight = float(_headers(m)["distilld-weight"].decode("ascii"))
        assert weight == pytest.approx(10.0), "a forwarded record stands for 1 / rate records"
        selected[m.key()] += 1
    assert len({(m.value(), m.key()) for m in out}) == len(out), "no record twice after a clean run"
    for key, n in received.items():
        assert abs(selected[key] - 0.1 * n) <= 1, (key, selected[key], n)

    dlq = read_all(kafka_bootstrap, f"{topic}.dlq", expect_at_least=len(bad_at), idle_s=1)
    assert sorted(m.value() for m in dlq) == sorted(bad_at.values()), "exactly the bad records"
    offsets = {(s.partition, s.offset): s for s in sent}
    for m in dlq:
        h = _headers(m)
        src = offsets[(int(h["distilld-source-partition"]), int(h["distilld-source-offset"]))]
        assert src.value == m.value() and src.key == m.key()
        assert h["distilld-source-topic"] == topic.encode()
        assert h["distilld-error"].startswith(b"not JSON") or h["distilld-error"].startswith(b"not a JSON object")


def _all_forwarded_config(bootstrap: str, topic: str, group: str) -> dict[str, Any]:
    """rate 1: every good record is forwarded, so a skipped input shows as a missing output."""
    return daemon_config(bootstrap, topic, group, reducer={"rate": 1.0})


def test_restart_after_sigterm_resumes_from_committed_offsets(
    kafka_bootstrap: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    topic, group = unique("restart"), unique("g")
    create_topics(kafka_bootstrap, {topic: PARTITIONS, f"{topic}.out": PARTITIONS, f"{topic}.dlq": 1})
    first = produce(kafka_bootstrap, topic, _values(3000, 1), [b"k%d" % (i % 5) for i in range(3000)])
    config = _all_forwarded_config(kafka_bootstrap, topic, group)
    d = _run(daemons, tmp_path, config, "first")
    wait_committed(kafka_bootstrap, group, topic, end_offsets(first), PARTITIONS, d)
    assert d.stop(signal.SIGTERM) == 0, d.log()

    second = produce(kafka_bootstrap, topic, _values(3000, 2), [b"k%d" % (i % 5) for i in range(3000)])
    d2 = _run(daemons, tmp_path, config, "second")
    ends = end_offsets(first + second)
    got = wait_committed(kafka_bootstrap, group, topic, ends, PARTITIONS, d2)
    assert d2.stop(signal.SIGINT) == 0, d2.log()
    assert all(got[p] == ends[p] for p in ends)

    out = Counter(m.value() for m in read_all(kafka_bootstrap, f"{topic}.out", expect_at_least=6000))
    inputs = Counter(s.value for s in first + second)
    assert out == inputs, "every record forwarded exactly once across a clean restart"


def test_kill_9_then_restart_loses_nothing(kafka_bootstrap: str, tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    topic, group = unique("kill"), unique("g")
    create_topics(kafka_bootstrap, {topic: PARTITIONS, f"{topic}.out": PARTITIONS, f"{topic}.dlq": 1})
    n = 20_000
    sent = produce(kafka_bootstrap, topic, _values(n, 3), [b"k%d" % (i % 7) for i in range(n)])
    config = _all_forwarded_config(kafka_bootstrap, topic, group)
    config["processing"].update({"batch_max_records": 500, "commit_interval_ms": 100})
    d = _run(daemons, tmp_path, config, "killed")
    deadline = time.monotonic() + 60
    while not any(v >= 0 for v in committed(kafka_bootstrap, group, topic, PARTITIONS).values()):
        assert time.monotonic() < deadline, d.log()
        time.sleep(0.2)
    d.stop(signal.SIGKILL)

    d2 = _run(daemons, tmp_path, config, "restarted")
    ends = end_offsets(sent)
    got = wait_committed(kafka_bootstrap, group, topic, ends, PARTITIONS, d2)
    assert d2.stop() == 0, d2.log()
    assert all(got[p] == ends[p] for p in ends)
    out = Counter(m.value() for m in read_all(kafka_bootstrap, f"{topic}.out", expect_at_least=n))
    missing = [s for s in sent if out[s.value] == 0]
    assert not missing, f"{len(missing)} input records never forwarded"
    duplicates = sum(out.values()) - n
    print(f"kill -9: {duplicates} duplicates re-forwarded (at-least-once)")


def _one_partition_with_bad_records(
    bootstrap: str, n: int, bad: dict[int, bytes], on_error: str
) -> tuple[str, str, list[bytes], list[Any], dict[str, Any]]:
    """A 1-partition topic of ``n`` records, ``bad`` put in at their positions; a
    rate-1 config with ``on_error``. Returns (topic, group, values, sent, config)."""
    topic, group = fresh_topic(bootstrap, on_error)
    values = _values(n, len(bad))
    for i, v in bad.items():
        values[i] = v
    sent = produce(bootstrap, topic, values, [None] * len(values))
    config = _all_forwarded_config(bootstrap, topic, group)
    config["processing"]["on_error"] = on_error
    return topic, group, values, sent, config


def test_on_error_fail_stops_without_committing_the_bad_record(
    kafka_bootstrap: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    topic, group, values, _, config = _one_partition_with_bad_records(kafka_bootstrap, 500, {300: b"garbage"}, "fail")
    d = _run(daemons, tmp_path, config)
    assert d.wait(60) == 1, d.log()
    assert "garbage" not in d.log() or "not JSON" in d.log()
    assert "@300" in d.log(), "the log names where the bad record is"
    assert committed(kafka_bootstrap, group, topic, 1)[0] == 300, "committed up to, not past, the bad record"
    out = read_all(kafka_bootstrap, f"{topic}.out", expect_at_least=300, idle_s=1)
    assert sorted(m.value() for m in out) == sorted(values[:300])


def test_on_error_skip_drops_bad_records_and_goes_on(
    kafka_bootstrap: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    bad = {10: b"{", 200: b"17"}
    topic, group, values, sent, config = _one_partition_with_bad_records(kafka_bootstrap, 400, bad, "skip")
    d = _run(daemons, tmp_path, config)
    wait_committed(kafka_bootstrap, group, topic, end_offsets(sent), 1, d)
    assert d.stop() == 0, d.log()
    out = read_all(kafka_bootstrap, f"{topic}.out", expect_at_least=398, idle_s=1)
    assert sorted(m.value() for m in out) == sorted(v for i, v in enumerate(values) if i not in (10, 200))
    assert read_all(kafka_bootstrap, f"{topic}.dlq", idle_s=1) == []


def test_a_second_instance_takes_partitions_over_without_losing_records(
    kafka_bootstrap: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    """Cooperative rebalance: the first instance finishes and commits the
    partitions it gives up; together they forward every record."""
    topic, group = unique("scale"), unique("g")
    partitions = 4
    create_topics(kafka_bootstrap, {topic: partitions, f"{topic}.out": partitions, f"{topic}.dlq": 1})
    config = _all_forwarded_config(kafka_bootstrap, topic, group)
    first = _run(daemons, tmp_path, config, "one")
    sent = produce(kafka_bootstrap, topic, _values(4000, 6), [b"k%d" % (i % 8) for i in range(4000)])
    deadline = time.monotonic() + 60
    while not any(v >= 0 for v in committed(kafka_bootstrap, group, topic, partitions).values()):
        assert time.monotonic() < deadline, first.log()
        time.sleep(0.2)
    second = _run(daemons, tmp_path, config, "two")
    while "assigned" not in second.log():
        assert time.monotonic() < deadline + 60, second.log()
        time.sleep(0.2)
    sent += produce(kafka_bootstrap, topic, _values(4000, 7), [b"k%d" % (i % 8) for i in range(4000)])
    ends = end_offsets(sent)
    got = wait_committed(kafka_bootstrap, group, topic, ends, partitions, second)
    assert all(got[p] == ends[p] for p in ends)
    assert first.stop() == 0 and second.stop() == 0
    assert "revoked" in first.log() and "assigned" in second.log(), "the second instance took partitions over"
    out = Counter(m.value() for m in read_all(kafka_bootstrap, f"{topic}.out", expect_at_least=len(sent)))
    assert not [s for s in sent if out[s.value] == 0], "no record lost in the hand-over"
    assert sum(out.values()) == len(sent), "revoked partitions were committed before release: no redelivery"


def _produce_in_transactions(bootstrap: str, topic: str, batches: list[list[bytes]]) -> dict[int, int]:
    """Each batch in one committed transaction; returns the read_committed end offset of each partition (each
    ends with a commit marker, a control record no consumer is given)."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique("txn"), "linger.ms": 5})
    producer.init_transactions(30)
    for batch in batches:
        producer.begin_transaction()
        for i, v in enumerate(batch):
            producer.produce(topic, v, b"k%d" % (i % 6))
        producer.commit_transaction(30)
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("ends"), "isolation.level": "read_committed"})
    try:
        return {
            p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
            for p in range(PARTITIONS)
        }
    finally:
        reader.close()


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_an_idle_transactional_input_is_committed_past_its_markers_with_no_lag(
    kafka_bootstrap: str, tmp_path: Path, daemons: list[DaemonProcess], guarantee: str
) -> None:
    """Records produced in transactions: each partition ends with a commit marker, never delivered. The daemon
    committed the offset after its last record, one short of the end: distilld_consumer_lag stayed 1 per
    partition on an idle input (DistilldNoProgress fired, KEDA never scaled to zero). Now it commits the
    consumer's position, past the markers, and the lag reads 0."""
    topic, group = unique("txn-input"), unique("g")
    create_topics(kafka_bootstrap, {topic: PARTITIONS, f"{topic}.out": PARTITIONS, f"{topic}.dlq": 1})
    ends = _produce_in_transactions(kafka_bootstrap, topic, [_values(300, 8), _values(60, 9)])
    assert sum(ends.values()) > 360, "the markers take offsets"
    port = free_port()
    config = daemon_config(
        kafka_bootstrap, topic, group,
        processing={"guarantee": guarantee, "commit_interval_ms": 200, "snapshot_interval_s": 1},
        metrics={"port": port, "host": "127.0.0.1", "refresh_ms": 200},
    )  # fmt: skip
    config["kafka"]["consumer"]["statistics.interval.ms"] = 200
    d = _run(daemons, tmp_path, config)
    got = wait_committed(kafka_bootstrap, group, topic, ends, PARTITIONS, d, limit_s=60)
    assert got == ends, "committed to the end, not past it"
    metrics = wait_metrics(
        f"http://127.0.0.1:{port}/metrics",
        lambda m: all(m.get(("distilld_consumer_lag", (("partition", str(p)), ("topic", topic)))) == 0
                      for p in range(PARTITIONS)),
        "a consumer lag of 0 on every partition",
        d,
    )  # fmt: skip
    assert value(metrics, "distilld_records_consumed_total", topic=topic) == 360
    assert d.stop() == 0, d.log()
