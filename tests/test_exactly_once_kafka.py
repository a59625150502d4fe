"""processing.guarantee: exactly_once against a real broker, the daemon as a separate process."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from distilld.daemon.loop import Daemon
from distilld.settings import load_settings

from .conftest import people_records
from .kafka_tools import (
    DaemonProcess,
    Sent,
    committed,
    create_topics,
    daemon_config,
    end_offsets,
    produce,
    read_all,
    unique,
    wait_committed,
)

pytestmark = pytest.mark.kafka

PARTITIONS = 3


def _config(bootstrap: str, topic: str, group: str, **reducer: Any) -> dict[str, Any]:
    config = daemon_config(
        bootstrap,
        topic,
        group,
        reducer=reducer,
        processing={"guarantee": "exactly_once", "snapshot_interval_s": 1, "commit_interval_ms": 200},
    )
    config["kafka"]["transactional_id"] = f"{group}-0"  # stable across restarts: fences the killed instance
    return config


def _topics(bootstrap: str, prefix: str) -> tuple[str, str]:
    topic, group = unique(prefix), unique("g")
    create_topics(bootstrap, {topic: PARTITIONS, f"{topic}.out": PARTITIONS, f"{topic}.dlq": 1})
    return topic, group


def _read_committed(bootstrap: str, topic: str, expect: int) -> list[Any]:
    return read_all(bootstrap, topic, expect_at_least=expect, extra={"isolation.level": "read_committed"})


def test_exactly_once_outputs_dead_letters_and_offsets(
    kafka_bootstrap: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    topic, group = _topics(kafka_bootstrap, "eos")
    values = [orjson.dumps(r) for r in people_records(9000, 31)]
    bad = {i * 1499 + 7: b"not json %d" % i for i in range(6)}
    for i, v in bad.items():
        values[i] = v
    keys = [b"user-%d" % (i % 6) for i in range(len(values))]
    sent = produce(kafka_bootstrap, topic, values, keys)
    d = DaemonProcess(tmp_path, _config(kafka_bootstrap, topic, group)).start()
    daemons.append(d)
    ends = end_offsets(sent)
    got = wait_committed(kafka_bootstrap, group, topic, ends, PARTITIONS, d)
    assert d.stop() == 0, d.log()
    assert got == {p: ends.get(p, -1001) for p in range(PARTITIONS)}, "offsets committed (in transactions) to the end"

    out = _read_committed(kafka_bootstrap, f"{topic}.out", 1)
    inputs = {(s.value, s.key) for s in sent}
    assert all((m.value(), m.key()) in inputs for m in out), "byte-identical"
    assert len({m.value() for m in out}) == len(out), "nothing twice"
    selected = Counter(m.key() for m in out)
    for key, n in Counter(k for v, k in zip(values, keys, strict=True) if v not in bad.values()).items():
        assert abs(selected[key] - 0.1 * n) <= 1, (key, selected[key], n)
    dlq = _read_committed(kafka_bootstrap, f"{topic}.dlq", len(bad))
    assert sorted(m.value() for m in dlq) == sorted(bad.values())
    state = read_all(kafka_bootstrap, f"{group}.distilld-state", expect_at_least=1, idle_s=1)
    assert {m.key().split(b"/")[1] for m in state} == {b"0", b"1", b"2"}, "a snapshot per partition"


def _kill_and_restart(
    bootstrap: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> tuple[list[bytes], Counter[bytes]]:
    """rate 1 (every record forwarded): kill -9 mid-stream, restart with the same
    transactional id; returns the inputs and the read_committed output counts."""
    topic, group = _topics(bootstrap, "eos-kill")
    n = 20_000
    values = [orjson.dumps(r) for r in people_records(n, 32)]
    sent = produce(bootstrap, topic, values, [b"k%d" % (i % 5) for i in range(n)])
    config = _config(bootstrap, topic, group, rate=1.0)
    config["processing"]["batch_max_records"] = 500
    d = DaemonProcess(tmp_path, config, "killed").start()
    daemons.append(d)
    deadline = time.monotonic() + 60
    while not any(v >= 0 for v in committed(bootstrap, group, topic, PARTITIONS).values()):
        assert time.monotonic() < deadline, d.log()
        time.sleep(0.1)
    d.stop(signal.SIGKILL)
    d2 = DaemonProcess(tmp_path, config, "restarted").start()
    daemons.append(d2)
    ends = end_offsets(sent)
    got = wait_committed(bootstrap, group, topic, ends, PARTITIONS, d2)
    assert d2.stop() == 0, d2.log()
    assert all(got[p] == ends[p] for p in ends)
    return values, Counter(m.value() for m in _read_committed(bootstrap, f"{topic}.out", n))


def test_exactly_once_kill_9_then_restart_loses_nothing(
    kafka_bootstrap: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    values, out = _kill_and_restart(kafka_bootstrap, tmp_path, daemons)
    assert not [v for v in values if out[v] == 0], "no input lost"
    print(f"exactly_once kill -9: {sum(out.values()) - len(values)} records twice as this broker serves them")


@pytest.mark.external_kafka
def test_exactly_once_kill_9_read_committed_sees_each_record_once(
    full_kafka: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    """The killed instance's open transaction is aborted when the restarted one
    fences it, and read_committed readers never see it."""
    values, out = _kill_and_restart(full_kafka, tmp_path, daemons)
    assert out == Counter(values)


def _watched(config: dict[str, Any]) -> tuple[Daemon, list[bytes]]:
    """An in-process daemon, and the outputs of its open transaction (cleared at each commit)."""
    config["metrics"]["port"] = 0
    daemon = Daemon(load_settings(None, **config))
    in_txn: list[bytes] = []
    send, commit = daemon.output.send, daemon.txn.commit  # type: ignore[union-attr]

    def sending(batch: Any, topic: str, value: bytes, *rest: Any) -> None:
        in_txn.append(value)
        send(batch, topic, value, *rest)

    def committing(*args: Any) -> None:
        commit(*args)
        in_txn.clear()

    daemon.output.send = sending  # type: ignore[method-assign]
    daemon.txn.commit = committing  # type: ignore[method-assign,union-attr]
    return daemon, in_txn


def _abort(daemon: Daemon, in_txn: list[bytes]) -> list[bytes]:
    """Abort the open transaction by a delivery failure; returns its outputs."""
    daemon.output.txn_error = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "injected")
    aborted = list(in_txn)
    daemon.commit()
    in_txn.clear()
    return aborted


def _abort_once(bootstrap: str, snapshot_interval_s: float = 0.3) -> tuple[list[bytes], Counter[bytes], list[bytes]]:
    """An in-process daemon (rate 1) whose transaction is aborted once midway by a
    delivery failure. Returns the inputs, the read_committed output counts, and
    the outputs of the aborted transaction."""
    topic, group = _topics(bootstrap, "eos-abort")
    n = 6000
    values = [orjson.dumps(r) for r in people_records(n, 33)]
    sent = produce(bootstrap, topic, values, [b"k%d" % (i % 4) for i in range(n)])
    config = _config(bootstrap, topic, group, rate=1.0)
    config["processing"].update(
        {"batch_max_records": 300, "commit_interval_ms": 100, "snapshot_interval_s": snapshot_interval_s}
    )
    daemon, in_txn = _watched(config)
    daemon.start()
    aborted: list[bytes] = []
    try:
        deadline = time.monotonic() + 90
        while committed(bootstrap, group, topic, PARTITIONS) != end_offsets(sent):
            assert time.monotonic() < deadline and not daemon.failure, daemon.failure
            daemon.step()
            if not aborted and daemon.records_consumed > n // 2 and in_txn:
                aborted = _abort(daemon, in_txn)
                assert daemon.metrics.commit_failures._value.get() == 1
        windows = sum(p.reducer.window_records()[0] for p in daemon.partitions.values())
    finally:
        daemon.stopping = True
        daemon.shutdown()
    assert aborted, "the transaction was aborted"
    assert windows == n, f"after the rewind every record is in the windows exactly once: {windows} of {n}"
    return values, Counter(m.value() for m in _read_committed(bootstrap, f"{topic}.out", n)), aborted


@pytest.mark.parametrize(
    "snapshot_interval_s",
    [0.3, 1000.0],
    ids=["with-snapshots", "before-any-snapshot"],
)
def test_an_aborted_transaction_rewinds_state_and_offsets(
    kafka_bootstrap: str, serves_aborted: bool, snapshot_interval_s: float
) -> None:
    """A delivery failure aborts the transaction; the partitions go back to the
    last commit (state from the snapshot plus the re-read gap, or the commit
    alone) and the work is redone once: the output is every input once (plus
    exactly the aborted transaction's records on Tansu, which serves them to
    read_committed readers)."""
    values, out, aborted = _abort_once(kafka_bootstrap, snapshot_interval_s)
    assert aborted, "a transaction was aborted"
    assert out == Counter(values) + (Counter(aborted) if serves_aborted else Counter())


def _step_until(daemon: Daemon, done: Any) -> None:
    """Turn an in-process daemon's loop until ``done()``, 60 s at most."""
    deadline = time.monotonic() + 60
    while not done():
        assert time.monotonic() < deadline and not daemon.failure, daemon.failure
        daemon.step()


def _abort_first(bootstrap: str, hand_over: bool = False) -> tuple[list[bytes], Counter[bytes], list[bytes]]:
    """An in-process daemon (rate 1) with ``auto.offset.reset: latest`` joining a topic that holds records
    already; once it reads at the end, records are produced, and its first transaction holding outputs is
    aborted by a delivery failure (nothing committed before but where the partitions begin). It then goes
    on; or, ``hand_over``, it reads some records of every partition first, and once the abort is done it stops
    (its partitions revoked) and a second daemon takes them over. Returns the records produced after it
    joined, the read_committed output counts, and the outputs of the aborted transaction."""
    topic, group = _topics(bootstrap, "eos-first-abort")
    keys = [b"k%d" % i for i in range(12)]
    before = [orjson.dumps(r) for r in people_records(300, 34)]
    joined = produce(bootstrap, topic, before, keys * 25)
    # Tansu's latest (its high watermark) counts a partition's last batch as one record (probed: 1 after a
    # batch of 100): the records before the join end with a batch of one record each
    for key in keys:
        joined += produce(bootstrap, topic, [before[0]], [key])
    config = _config(bootstrap, topic, group, rate=1.0)
    config["kafka"]["consumer"].update({"auto.offset.reset": "latest", "statistics.interval.ms": 200})
    # no commit of its own before the abort: the first transaction holding outputs is the one aborted
    config["processing"].update({"batch_max_records": 300, "commit_interval_ms": 600_000, "snapshot_interval_s": 1000})
    daemon, in_txn = _watched(config)
    fetching: dict[int, int] = {}  # partition: the next offset fetched, once its consumer fetches it
    observe = daemon.metrics.observe_statistics

    def observing(stats_json: str, committed: Any) -> bool:
        for p, stats in orjson.loads(stats_json)["topics"].get(topic, {}).get("partitions", {}).items():
            if p != "-1" and stats["fetch_state"] == "active":
                fetching[int(p)] = stats["next_offset"]
        return observe(stats_json, committed)

    daemon.metrics.observe_statistics = observing  # type: ignore[method-assign]
    daemon.start()
    n = 3000
    try:
        _step_until(daemon, lambda: len(fetching) == PARTITIONS)  # where latest put them is known
        starts = end_offsets(joined)
        assert fetching == starts, "latest: nothing produced before the join is read"
        after = [orjson.dumps(r) for r in people_records(n, 35)]
        sent = produce(bootstrap, topic, after, keys * (n // len(keys)))
        if hand_over:  # one that read nothing would start at latest again with its next owner: not this case
            parts = daemon.partitions.values()
            _step_until(daemon, lambda: len(parts) == PARTITIONS and all(p.reducer.keys_held for p in parts))
        _step_until(daemon, lambda: bool(in_txn))
        if not hand_over:
            begun = {key[1]: p.progress.committed for key, p in daemon.partitions.items()}
            assert all(c in (None, starts[p]) for p, c in begun.items()), f"nothing committed but starts: {begun}"
        aborted = _abort(daemon, in_txn)
        if not hand_over:
            daemon.settings.processing.commit_interval_ms = 100
            _step_until(daemon, lambda: committed(bootstrap, group, topic, PARTITIONS) == end_offsets(sent))
            windows = sum(p.reducer.window_records()[0] for p in daemon.partitions.values())
    finally:
        daemon.stopping = True
        daemon.shutdown()
    if hand_over:
        config["processing"]["commit_interval_ms"] = 100
        second = Daemon(load_settings(None, **config))
        second.start()
        try:
            _step_until(second, lambda: len(second.partitions) == PARTITIONS)
            begun = {key[1]: p.progress.committed for key, p in second.partitions.items()}
            assert all(c is not None for c in begun.values()), f"the next owner finds where each began: {begun}"
            _step_until(second, lambda: committed(bootstrap, group, topic, PARTITIONS) == end_offsets(sent))
            windows = sum(p.reducer.window_records()[0] for p in second.partitions.values())
            restores = second.metrics.registry.get_sample_value(
                "distilld_state_restores_total", {"outcome": "restored"}
            )
        finally:
            second.stopping = True
            second.shutdown()
        assert restores == PARTITIONS, "each from a snapshot at its start or after: no window rebuilt from before it"
    assert windows == n, f"after the rewind every record produced since the join is in the windows once: {windows}"
    return after, Counter(m.value() for m in _read_committed(bootstrap, f"{topic}.out", n)), aborted


def test_an_abort_before_the_first_commit_loses_nothing_with_auto_offset_reset_latest(
    kafka_bootstrap: str, serves_aborted: bool
) -> None:
    """The rewind put a partition with no commit back where auto.offset.reset says: with latest the aborted
    transaction's records were never output. Now every record produced after the daemon joined is output once
    (besides the aborted copies, which Tansu serves to read_committed readers), none from before it joined."""
    after, out, aborted = _abort_first(kafka_bootstrap)
    assert aborted, "the first transaction was aborted"
    assert out == Counter(after) + (Counter(aborted) if serves_aborted else Counter())


def test_an_abort_before_the_first_commit_then_a_hand_over_loses_nothing_with_auto_offset_reset_latest(
    kafka_bootstrap: str, serves_aborted: bool
) -> None:
    """The first transaction of partitions with no commit aborted, then they went to another daemon (revoked by
    a stop): an aborted transaction's offsets are not committed, so the next owner started where
    auto.offset.reset says, and with latest the records the first one had read were never output. The first
    commits where each partition begins before its first outputs: the next owner starts there."""
    after, out, aborted = _abort_first(kafka_bootstrap, hand_over=True)
    assert aborted, "a transaction was aborted"
    assert out == Counter(after) + (Counter(aborted) if serves_aborted else Counter())


def test_a_daemon_killed_before_its_first_commit_loses_nothing_with_auto_offset_reset_latest(
    kafka_bootstrap: str, serves_aborted: bool, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    """A daemon with auto.offset.reset latest killed (-9) while its first transaction holding outputs was open:
    nothing was committed, so the next instance started at latest, and the records the first had read were
    never output. The first commits where each partition begins before its first outputs: the next one starts
    there. Records trickle in until the first has output some of every partition (seen by a read_uncommitted
    reader: its transaction is open, commit_interval_ms 10 min), then all it read."""
    topic, group = _topics(kafka_bootstrap, "eos-first-kill")
    config = _config(kafka_bootstrap, topic, group, rate=1.0)
    config["kafka"]["consumer"]["auto.offset.reset"] = "latest"
    config["processing"].update({"commit_interval_ms": 600_000, "snapshot_interval_s": 1000})
    first = DaemonProcess(tmp_path, config, "first").start()
    daemons.append(first)
    values = iter([orjson.dumps(r) for r in people_records(10_000, 36)])
    keys = [b"k%d" % i for i in range(12)]
    sent: list[Sent] = []
    source: dict[bytes, tuple[int, int]] = {}  # input value: (partition, offset)
    seen: set[bytes] = set()  # the first daemon's outputs, committed or not
    peek = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": unique("peek"), "isolation.level": "read_uncommitted"}
    )
    peek.assign([TopicPartition(f"{topic}.out", p, OFFSET_BEGINNING) for p in range(PARTITIONS)])

    def starts() -> dict[int, int]:
        """Per input partition, the first record the first daemon output: where it began."""
        first_out: dict[int, int] = {}
        for p, offset in map(source.__getitem__, seen):
            first_out[p] = min(offset, first_out.get(p, offset))
        return first_out

    def unseen() -> list[Sent]:
        began = starts()
        return [s for s in sent if s.offset >= began.get(s.partition, s.offset + 1) and s.value not in seen]

    try:
        deadline = time.monotonic() + 60
        while len(starts()) < PARTITIONS or unseen():
            assert time.monotonic() < deadline, first.log()
            if len(starts()) < PARTITIONS:
                sent += produce(kafka_bootstrap, topic, [next(values) for _ in keys], keys)
                source.update((s.value, (s.partition, s.offset)) for s in sent if s.value is not None)
            seen.update(m.value() for m in peek.consume(1000, 0.2) if m.error() is None)
    finally:
        peek.close()
    first.stop(signal.SIGKILL)
    began = starts()
    got = committed(kafka_bootstrap, group, topic, PARTITIONS)
    assert all(got[p] >= began[p] for p in range(PARTITIONS)), f"began at {began}, committed {got}\n{first.log()}"
    expected = [s.value for s in sent if s.offset >= began[s.partition]]
    open_at_kill = [v for v in seen if source[v][1] >= got[source[v][0]]]  # the committed ones are below the commit

    config["processing"]["commit_interval_ms"] = 200
    second = DaemonProcess(tmp_path, config, "second").start()
    daemons.append(second)
    wait_committed(kafka_bootstrap, group, topic, end_offsets(sent), PARTITIONS, second, limit_s=60)
    assert second.stop() == 0, second.log()
    out = Counter(m.value() for m in _read_committed(kafka_bootstrap, f"{topic}.out", len(expected)))
    assert out == Counter(expected) + (Counter(open_at_kill) if serves_aborted else Counter())
