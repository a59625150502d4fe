"""How assigned partitions get their state and where they start (distilld.daemon.assignment), no broker needed."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from distilld.daemon.loop import Daemon
from distilld.daemon.state import StateScan, chunk_records
from distilld.snapshot import dump
from tests.test_daemon_units import _CommittedMember, _exactly_once_daemon
from tests.test_state_units import _Record, _StalledReader


class _Member(_CommittedMember):
    """A group member committed at 100 everywhere; each assignment kept as (partition, offset, clock)."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.assigned: list[tuple[int, int, float]] = []

    def incremental_assign(self, parts: list[Any]) -> None:
        self.assigned.extend((p.partition, p.offset, self.clock[0]) for p in parts)


def _on_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A clock the test moves (the fake readers' polls do), read by the state reads and the restore's slices."""
    import distilld.daemon.assignment as assignment_module
    import distilld.daemon.state as state_module

    clock = [0.0]
    fake = SimpleNamespace(monotonic=lambda: clock[0], perf_counter=time.perf_counter)
    monkeypatch.setattr(state_module, "time", fake)
    monkeypatch.setattr(assignment_module, "time", fake)
    return clock


def _snapshot_records(d: Daemon, partition: int, offset: int) -> list[_Record]:
    """The records of t[partition]'s snapshot (empty windows) covering ``offset``, then the state partition's end."""
    tp = ("t", partition)
    records = chunk_records(tp, 0, offset, dump(d._new_reducer()))
    state_partition = d.state.partition_of(tp)
    return [_Record(state_partition, rec) for rec in records] + [_Record(state_partition, None)]


def test_a_restore_waits_one_read_timeout_for_every_state_partition_that_does_not_answer(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Four partitions on four state partitions, two of which never answer (their leader down). Read one after
    the other with a read_timeout_s each, they waited 120 s, and the one restored waited behind them. Now the
    four are read together: the restored one is assigned as soon as its state partition is read, the others
    after one timeout for both stalled state partitions, each counted in distilld_state_errors_total and
    logged; the partition whose state partition was read to its end without a snapshot is not one of them."""
    clock = _on_clock(monkeypatch)
    d = _exactly_once_daemon()
    d.consumer = d.checkpoints.consumer = member = _Member(clock)  # type: ignore[assignment]
    d.state.partitions = 4
    d.state.read_timeout_s = 60.0
    events = {1: _snapshot_records(d, 1, 90)}
    reader = _StalledReader(clock, events, stalled={0, 2}, poll_s=0.2)
    d.state._reader = reader  # type: ignore[assignment]
    d._on_assign(member, [TopicPartition("t", p) for p in range(4)])  # type: ignore[arg-type]
    with caplog.at_level("WARNING", logger="distilld"):
        for _ in range(1000):
            d.assigner.turn()
            if not (d.pending or d.restoring or d.assigner._rebuilding):
                break
    at = {partition: (offset, when) for partition, offset, when in member.assigned}
    assert at[1][0] == 90 and at[1][1] < 5.0, f"restored, assigned once its state partition is read: {at}"
    assert {at[p][0] for p in (0, 2, 3)} == {100}, "no snapshot: from the commit (no window start found)"
    assert 60.0 <= max(when for _, when in at.values()) < 70.0, f"one read_timeout_s for both stalled: {at}"
    assert reader.assigns == 1
    assert d.metrics.registry.get_sample_value("distilld_state_errors_total") == 2
    failed = [r.getMessage() for r in caplog.records if "go without their snapshots" in r.getMessage()]
    assert len(failed) == 2 and "t[0]" in failed[0] and "t[2]" in failed[1], failed
    sample = d.metrics.registry.get_sample_value
    assert sample("distilld_state_restores_total", {"outcome": "restored"}) == 1
    assert sample("distilld_state_restores_total", {"outcome": "empty"}) == 3


def test_a_state_partition_whose_partitions_are_all_revoked_is_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """The state partitions are read together: one that does not answer, whose partitions have all been revoked
    meanwhile, held the others' (and the next assignment's) read until its timeout for nothing."""
    clock = _on_clock(monkeypatch)
    d = _exactly_once_daemon()
    d.consumer = d.checkpoints.consumer = member = _Member(clock)  # type: ignore[assignment]
    d.state.partitions = 2
    reader = _StalledReader(clock, {}, stalled={0, 1}, poll_s=0.2)
    d.state._reader = reader  # type: ignore[assignment]
    d._on_assign(member, [TopicPartition("t", 0), TopicPartition("t", 1)])  # type: ignore[arg-type]
    d.assigner.turn()
    d._on_revoke(member, [TopicPartition("t", 0)])  # type: ignore[arg-type]
    assert reader.assigned == [0, 1], "t[1]'s state partition is still read"
    reader.stalled = set()
    reader.queue = [_Record(1, None)]  # t[1]'s state partition answers; t[0]'s never does
    for _ in range(10):
        d.assigner.turn()
    assert [p for p, _, _ in member.assigned] == [1] and clock[0] < 10.0, member.assigned
    assert not reader.assigned, "the read given up: the reader let go"
    assert d.metrics.registry.get_sample_value("distilld_state_errors_total") == 0


def test_partitions_the_consumer_refuses_are_neither_counted_nor_kept() -> None:
    """Partitions were counted as restored (distilld_state_restores_total) and kept before they were assigned to
    the consumer: an assignment it refused (which stops the daemon) left them counted, and held as if assigned."""
    from confluent_kafka import KafkaError, KafkaException

    d = _exactly_once_daemon()

    class Refusing(_CommittedMember):
        def incremental_assign(self, parts: list[Any]) -> None:
            if parts:  # (the rebalance callback assigns none)
                raise KafkaException(KafkaError(KafkaError._CONFLICT, "already assigned"))

    d.consumer = d.checkpoints.consumer = member = Refusing()  # type: ignore[assignment]
    d.state.partitions = 1
    d.state._reader = _StalledReader([0.0], {}, stalled=set(), poll_s=0.0)  # type: ignore[assignment]
    d._on_assign(member, [TopicPartition("t", 0)])  # type: ignore[arg-type]
    d.assigner.turn()
    assert d.failure is not None and "cannot assign" in d.failure
    assert not d.partitions, "not kept: the consumer does not have it"
    sample = d.metrics.registry.get_sample_value
    assert sum(sample("distilld_state_restores_total", {"outcome": o}) for o in ("restored", "empty", "replayed")) == 0
    assert sample("distilld_state_restore_duration_seconds_count") == 0


class _LogStarts:
    """An admin client answering ListOffsets (earliest) with ``starts``, or failing with ``error``; ``asked``
    keeps each call's partitions."""

    def __init__(self, starts: dict[tuple[str, int], Any], error: Exception | None = None) -> None:
        self.starts, self.error = starts, error
        self.asked: list[list[int]] = []

    def list_offsets(self, wanted: dict[Any, Any], request_timeout: float = 0) -> Any:
        from concurrent.futures import Future

        assert 0 < request_timeout <= 5, "bounded"
        self.asked.append(sorted(tp.partition for tp in wanted))
        if self.error is not None:
            raise self.error
        futures: dict[Any, Future[Any]] = {}
        for tp in wanted:
            futures[tp] = f = Future()
            start = self.starts[(tp.topic, tp.partition)]
            if isinstance(start, Exception):
                f.set_exception(start)
            else:
                f.set_result(SimpleNamespace(offset=start))
        return futures


def _restore_three(monkeypatch: pytest.MonkeyPatch, reset: str | None, admin: _LogStarts) -> tuple[Daemon, _Member]:
    """t0 (snapshot at 90), t1 (no snapshot, its window starting at 40) and t2 (snapshot at 95), all committed at
    100, restored under ``reset`` (None: the default) with ``admin`` answering where their logs start."""
    clock = _on_clock(monkeypatch)
    d = _exactly_once_daemon()
    if reset is not None:
        d.settings.kafka.consumer["auto.offset.reset"] = reset

    class Member(_Member):
        def offsets_for_times(self, parts: list[Any], timeout: float = 0.0) -> list[Any]:
            return [TopicPartition(p.topic, p.partition, 40) for p in parts]

    d.consumer = d.checkpoints.consumer = member = Member(clock)  # type: ignore[assignment]
    d.state.partitions = 1
    d.state._admin = admin  # type: ignore[assignment]
    records = _snapshot_records(d, 0, 90)[:-1] + _snapshot_records(d, 2, 95)
    d.state._reader = _StalledReader(clock, {0: records}, stalled=set(), poll_s=0.01)  # type: ignore[assignment]
    d._on_assign(member, [TopicPartition("t", p) for p in range(3)])  # type: ignore[arg-type]
    for _ in range(50):
        d.assigner.turn()
    assert not (d.pending or d.restoring or d.assigner._rebuilding)
    return d, member


def test_under_latest_a_partition_never_starts_below_its_logs_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A restored partition starts at its snapshot's offset, a rebuilt one where its window starts, both below
    the commit. Once retention had deleted that offset, the consumer's offset-out-of-range reset with
    auto.offset.reset=latest jumped to the log's end: every record from the commit on was skipped. Now their
    logs' start is looked up (once for all) and each starts inside the log, or at its commit when nothing before
    it is left, with a WARNING that its window is partial."""
    admin = _LogStarts({("t", 0): 95, ("t", 1): 100, ("t", 2): 50})
    with caplog.at_level("WARNING", logger="distilld"):
        d, member = _restore_three(monkeypatch, "latest", admin)
    assert admin.asked == [[0, 2], [1]], "once for the restored ones, once for the one rebuilt"
    starts = {p: offset for p, offset, _ in member.assigned}
    assert starts == {0: 95, 1: 100, 2: 95}, "t0 at its log's start, t1 at its commit, t2 at its snapshot's"
    assert (d.partitions[("t", 0)].replay_until, d.partitions[("t", 0)].processed) == (100, 95)
    assert d.partitions[("t", 1)].replay_until is None and d.partitions[("t", 1)].processed == 100
    partial = [r.getMessage() for r in caplog.records if "lacks the records before" in r.getMessage()]
    assert len(partial) == 2 and "t[0]" in partial[0] and "t[1]" in partial[1], partial
    assert d.metrics.registry.get_sample_value("distilld_state_restores_total", {"outcome": "empty"}) == 1


def test_under_latest_a_failed_log_start_lookup_starts_at_the_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    from confluent_kafka import KafkaError, KafkaException

    admin = _LogStarts({}, error=KafkaException(KafkaError(KafkaError._TIMED_OUT, "no answer")))
    d, member = _restore_three(monkeypatch, "largest", admin)
    assert {p: offset for p, offset, _ in member.assigned} == {0: 100, 1: 100, 2: 100}, "nothing skipped"
    lookups = d.metrics.registry.get_sample_value("distilld_offset_lookup_errors_total", {"lookup": "window_start"})
    assert lookups == 2


def test_under_latest_one_partitions_failed_log_start_leaves_the_others_theirs(monkeypatch: pytest.MonkeyPatch) -> None:
    """One partition's error in the log-start lookup (its topic deleted meanwhile) sent every partition of the
    lookup to its commit, their windows partial for nothing."""
    from confluent_kafka import KafkaError, KafkaException

    gone = KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, "deleted"))
    admin = _LogStarts({("t", 0): 95, ("t", 1): 100, ("t", 2): gone})
    d, member = _restore_three(monkeypatch, "latest", admin)
    assert {p: offset for p, offset, _ in member.assigned} == {0: 95, 1: 100, 2: 100}, "t0 at its log's start"
    assert (d.partitions[("t", 0)].replay_until, d.partitions[("t", 0)].processed) == (100, 95)
    lookups = d.metrics.registry.get_sample_value("distilld_offset_lookup_errors_total", {"lookup": "window_start"})
    assert lookups == 1


class _NoAnswer(_LogStarts):
    """An admin client whose ListOffsets is never answered; ``timeouts`` keeps each call's request_timeout."""

    def __init__(self) -> None:
        super().__init__({})
        self.timeouts: list[float] = []

    def list_offsets(self, wanted: dict[Any, Any], request_timeout: float = 0) -> Any:
        from concurrent.futures import Future

        self.timeouts.append(request_timeout)
        return {tp: Future() for tp in wanted}


def test_the_log_start_lookup_keeps_to_the_stop_deadline_and_ends_on_a_stop() -> None:
    """The lookup waited 5 s on the admin's answers whatever shutdown_timeout_s was, and never looked for a stop:
    a SIGTERM meanwhile lost the stop's commit and snapshot to it."""
    d = _exactly_once_daemon(shutdown_timeout_s=1.0)
    d.state._admin = admin = _NoAnswer()  # type: ignore[assignment]
    asked: list[bool] = []

    def alive() -> bool:
        asked.append(True)
        d.stopping = True  # a SIGTERM while the lookup waits
        return False

    d._alive = alive  # type: ignore[method-assign]
    assert d.assigner._log_starts([("t", 0), ("t", 1)]) == {}
    assert admin.timeouts == [1.0], "within the stop's deadline"
    assert asked, "a stop is looked for while it waits"
    lookups = d.metrics.registry.get_sample_value("distilld_offset_lookup_errors_total", {"lookup": "window_start"})
    assert lookups == 1


def test_under_latest_a_partition_whose_commit_retention_deleted_starts_at_its_commit(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Retention past the commit too: nothing of the window is left, and the consumer's reset applies to the commit
    as to any consumer's (what auto.offset.reset is for); the WARNING had said the reset was kept from skipping."""
    admin = _LogStarts({("t", 0): 150, ("t", 1): 100, ("t", 2): 50})
    with caplog.at_level("WARNING", logger="distilld"):
        d, member = _restore_three(monkeypatch, "latest", admin)
    assert {p: offset for p, offset, _ in member.assigned}[0] == 100
    assert d.partitions[("t", 0)].replay_until is None
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("t[0]")]
    assert said and "past its commit 100" in said[0] and "resets it as auto.offset.reset=latest" in said[0], said


def test_partitions_taken_while_stopping_wait_for_no_log_start_lookup() -> None:
    """A stop in the middle of loading still assigns what was loaded (the close's revoke takes it back); under
    latest the log-start lookup held that stop up to 5 s more, for partitions nothing is read of."""
    from distilld.daemon.partition import Partition
    from distilld.daemon.progress import PartitionProgress

    d = _exactly_once_daemon()
    d.settings.kafka.consumer["auto.offset.reset"] = "latest"
    d.state._admin = admin = _LogStarts({("t", 0): 95})  # type: ignore[assignment]
    reducer = d._new_reducer()
    part = Partition(PartitionProgress("t", 0), reducer, reducer.missing_counts, processed=90, replay_until=100)
    taken = [(("t", 0), part, TopicPartition("t", 0, 90), "restored")]
    d.stopping = True
    assert d.assigner._inside_log(taken) == taken and admin.asked == []
    d.stopping = False
    assert d.assigner._inside_log(taken)[0][2].offset == 95 and admin.asked == [[0]]


def test_under_earliest_the_log_start_is_not_looked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    admin = _LogStarts({})
    _, member = _restore_three(monkeypatch, None, admin)
    assert admin.asked == [], "the consumer's reset goes to the log's start: nothing to look up"
    assert {p: offset for p, offset, _ in member.assigned} == {0: 90, 1: 40, 2: 95}


class _LastRecords:
    """A reader of the input partitions: each assigned partition gives its records from the offset asked, then its
    end; ``logs[partition]``: its records as (offset, Kafka timestamp in ms), in order, a gap where a transaction's
    marker is (a reader never gets it)."""

    def __init__(self, logs: dict[int, list[tuple[int, int]]]) -> None:
        self.logs = logs
        self.asked: list[tuple[int, int]] = []
        self.queue: list[Any] = []

    def assign(self, parts: list[Any]) -> None:
        from confluent_kafka import TIMESTAMP_CREATE_TIME, KafkaError

        self.asked = [(p.partition, p.offset) for p in parts]
        for p in parts:
            for offset, at in self.logs.get(p.partition, []):
                if offset >= p.offset:
                    self.queue.append(
                        SimpleNamespace(
                            topic=lambda p=p: p.topic,
                            partition=lambda p=p: p.partition,
                            offset=lambda offset=offset: offset,
                            error=lambda: None,
                            timestamp=lambda at=at: (TIMESTAMP_CREATE_TIME, at),
                        )
                    )
            end = KafkaError(KafkaError._PARTITION_EOF)
            self.queue.append(
                SimpleNamespace(topic=lambda p=p: p.topic, partition=lambda p=p: p.partition, error=lambda end=end: end)
            )

    def unassign(self) -> None:
        self.queue = []

    def poll(self, timeout: float) -> Any:
        return self.queue.pop(0) if self.queue else None


@pytest.mark.parametrize("time_mode", ["kafka_timestamp", "processing"])
def test_a_rebuilt_window_ends_at_the_last_committed_records_time(time_mode: str) -> None:
    """Where a window to rebuild starts was looked up at now minus the window: a partition behind by more than a
    window, or one whose records' times lag the clock (a replay of old records), started with an empty window
    although its window at the commit held records. Under a record time the lookup now counts back from the
    time of the last committed record (read from the log), now only for a partition where none is read; under
    processing time it still counts back from now (re-read records take their Kafka timestamps as arrival)."""
    reader = _LastRecords({0: [(99, 500_000_000)]})  # t0's last committed record: 500,000 s, hours behind the clock
    d, asked = _rebuild_under_record_time(reader, time_mode)
    now_ms = (1_000_000 - 600) * 1000
    if time_mode == "processing":
        assert asked == [(0, now_ms), (1, now_ms)] and reader.asked == [], "nothing read: the window ends now"
    else:
        assert reader.asked == [(0, 68), (1, 68)], "the records before each commit, read for both at once"
        assert asked == [(0, (500_000 - 600) * 1000), (1, now_ms)], "t1 has no record there: now"
    assert d.partitions[("t", 0)].replay_until == 100


def _rebuild_under_record_time(reader: _LastRecords, time_mode: str = "kafka_timestamp") -> tuple[Daemon, list[Any]]:
    """t[0] and t[1] committed at 100 without a snapshot, their windows (600 s, ``time_mode``) rebuilt from their
    logs (as ``reader`` reads them): the daemon, and the times the windows' start is looked up at (ms)."""
    d = _exactly_once_daemon()
    d.settings.reducer.time = time_mode
    d.settings.reducer.window_seconds = 600
    d.clock = lambda: 1_000_000.0  # type: ignore[method-assign]
    asked: list[tuple[int, int]] = []

    class Member(_CommittedMember):
        def offsets_for_times(self, parts: list[Any], timeout: float = 0.0) -> list[Any]:
            asked.extend((p.partition, p.offset) for p in parts)
            return [TopicPartition(p.topic, p.partition, 40) for p in parts]

    d.consumer = d.checkpoints.consumer = member = Member()  # type: ignore[assignment]
    d.state._reader = reader  # type: ignore[assignment]
    d.state.partitions = 1
    d.state.scan = lambda wanted, alive=None: StateScan(d.state.by_state(wanted), iter([]))  # type: ignore[method-assign]
    d._on_assign(member, [TopicPartition("t", 0), TopicPartition("t", 1)])  # type: ignore[arg-type]
    for _ in range(10):
        d.assigner.turn()
    assert sorted(d.partitions) == [("t", 0), ("t", 1)]
    return d, asked


def test_a_rebuilt_window_ends_at_the_last_committed_record_before_a_transactions_marker() -> None:
    """An input written in transactions: the consumer's position, and so its commit, moves past each transaction's
    marker (probed on Tansu: 15 records in 3 transactions, committed at 18), so the offset before the commit is a
    marker, which a reader never gets. The record read there was the first after the commit, or (caught up) none:
    the window then ended now, and one of old records was rebuilt empty. Now the records before the commit are
    read, the last of them taken; the first after the commit only when none is before it."""
    _, asked = _rebuild_under_record_time(
        _LastRecords(
            {
                0: [(97, 400_000_000), (98, 500_000_000)],  # its marker at 99; caught up (nothing after the commit)
                1: [(95, 400_000_000), (100, 900_000_000)],  # its marker at 99, the next transaction's record at 100
            }
        )
    )
    assert asked == [(0, (500_000 - 600) * 1000), (1, (400_000 - 600) * 1000)], asked


def test_the_first_record_past_the_commit_serves_when_none_is_before_it() -> None:
    """Nothing before the commit within the records read (compacted away, say): the first record after it still
    tells the time rather than now; a partition whose log has nothing at all falls back to now."""
    _, asked = _rebuild_under_record_time(_LastRecords({0: [(100, 700_000_000)]}))
    assert asked == [(0, (700_000 - 600) * 1000), (1, (1_000_000 - 600) * 1000)], asked


def test_a_failing_state_reader_sends_the_partitions_to_their_rebuild_not_the_daemon_down() -> None:
    """Before the state partitions were read together, a KafkaException out of the state reader (its assign or
    poll) was caught by the restore: counted in distilld_state_errors_total, its partitions went without their
    snapshots. The read of them together let it out of the loop's turn, which stopped the daemon (a crash loop:
    a restart meets the same reader). Now every state partition left ends with it, as one timed out does."""
    from confluent_kafka import KafkaError, KafkaException

    d = _exactly_once_daemon()
    d.consumer = d.checkpoints.consumer = member = _CommittedMember()  # type: ignore[assignment]
    d.state.partitions = 2

    class Failing:
        def assign(self, parts: list[Any]) -> None:
            raise KafkaException(KafkaError(KafkaError._STATE, "the reader cannot take them"))

        def unassign(self) -> None:
            pass

    d.state._reader = Failing()  # type: ignore[assignment]
    d._on_assign(member, [TopicPartition("t", 0), TopicPartition("t", 1)])  # type: ignore[arg-type]
    for _ in range(10):
        d.assigner.turn()
    assert sorted(d.partitions) == [("t", 0), ("t", 1)], "assigned from their commits"
    assert d.metrics.registry.get_sample_value("distilld_state_errors_total") == 2
    assert not d.stopping


def test_the_last_records_read_counts_in_the_window_start_lookups_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Brokers that do not answer: the window start lookup holds the loop up to shutdown_timeout_s (within half of
    max.poll.interval.ms, past which the group drops the member), and under a record time the read of the last
    committed records (5 s) came on top of it. Now that read takes from the same time (a fake clock counts both)."""
    from confluent_kafka import KafkaError, KafkaException

    clock = _on_clock(monkeypatch)
    d = _exactly_once_daemon()
    d.settings.reducer.time = "kafka_timestamp"
    d.settings.processing.shutdown_timeout_s = 8.0
    d.clock = lambda: 1_000_000.0  # type: ignore[method-assign]

    class Silent(_CommittedMember):
        def offsets_for_times(self, parts: list[Any], timeout: float = 0.0) -> list[Any]:
            clock[0] += timeout
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "no answer"))

    class SilentReader:
        def assign(self, parts: list[Any]) -> None:
            pass

        def unassign(self) -> None:
            pass

        def poll(self, timeout: float) -> None:
            clock[0] += 0.2

    d.consumer = d.checkpoints.consumer = member = Silent()  # type: ignore[assignment]
    d.state._reader = SilentReader()  # type: ignore[assignment]
    d.state.partitions = 1
    d.state.scan = lambda wanted, alive=None: StateScan(d.state.by_state(wanted), iter([]))  # type: ignore[method-assign]
    d._on_assign(member, [TopicPartition("t", 0)])  # type: ignore[arg-type]
    for _ in range(10):
        d.assigner.turn()
    assert sorted(d.partitions) == [("t", 0)], "assigned at its commit, the window empty"
    assert clock[0] <= 8.0 + 0.2, f"held {clock[0]:.1f} s of the fake clock, past shutdown_timeout_s (8 s)"


class _InterleavedReader(_StalledReader):
    """State partitions read together as a broker does: each poll brings the next event of the next partition
    not paused, in turn, so their snapshots fill together; ``seen`` is called at each poll."""

    def __init__(self, clock: list[float], events: dict[int, list[_Record]], seen: Any) -> None:
        super().__init__(clock, events, stalled=set(), poll_s=0.01)
        self.seen, self.paused, self.pauses = seen, set[int](), 0
        self._next = 0

    def assign(self, parts: list[Any]) -> None:
        super().assign(parts)
        self.left = {p: list(self.events[p]) for p in self.assigned}

    def pause(self, parts: list[Any]) -> None:
        self.paused.update(p.partition for p in parts)
        self.pauses += 1

    def resume(self, parts: list[Any]) -> None:
        self.paused.difference_update(p.partition for p in parts)

    def poll(self, timeout: float) -> _Record | None:
        self.seen()
        self.clock[0] += self.poll_s
        ready = [p for p in sorted(self.left) if self.left[p] and p not in self.paused]
        if not ready:
            return None
        self._next = (self._next + 1) % len(ready)
        return self.left[ready[self._next]].pop(0)


def test_a_restore_holds_the_snapshot_bytes_of_one_state_partition_past_its_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Six partitions, each with a snapshot of N bytes on its own state partition, read together. Their
    snapshots filled together: at the end all six were held at once (6 N) on top of the states loaded from them,
    ~1.6 times an instance's state memory at a rebalance, enough to OOM-kill pods sized from check-config. Now
    past a budget of 2 N all state partitions but one are paused until that one is read and its snapshot loaded:
    the bytes held (read, or handed over and not loaded yet) stay within the budget and one snapshot, and all six
    are restored after one read."""
    import distilld.daemon.state as state_module

    clock = _on_clock(monkeypatch)
    monkeypatch.setattr(state_module, "CHUNK_BYTES", 128)  # many chunks a snapshot: it fills a record at a time
    d = _exactly_once_daemon()
    d.consumer = d.checkpoints.consumer = member = _Member(clock)  # type: ignore[assignment]
    d.state.partitions = 6
    snapshot = len(dump(d._new_reducer()))
    budget = 2 * snapshot
    monkeypatch.setattr(state_module, "RESTORE_BYTES_BUDGET", budget)
    peak = [0]

    def seen() -> None:
        scan, unloaded = d.assigner._scan, d.assigner._unloaded.values()
        held = (scan.held if scan is not None else 0) + sum(len(s.data) for _, s in unloaded if s is not None)
        peak[0] = max(peak[0], held)

    restored = d.assigner._restored

    def loading(tp: Any, offset: int, snap: Any) -> Any:
        seen()  # its bytes still held
        return restored(tp, offset, snap)

    monkeypatch.setattr(d.assigner, "_restored", loading)
    reader = _InterleavedReader(clock, {p: _snapshot_records(d, p, 90) for p in range(6)}, seen)
    d.state._reader = reader  # type: ignore[assignment]
    d._on_assign(member, [TopicPartition("t", p) for p in range(6)])  # type: ignore[arg-type]
    for _ in range(1000):
        d.assigner.turn()
        if not (d.pending or d.restoring or d.assigner._rebuilding):
            break
    assert sorted(offset for _, offset, _ in member.assigned) == [90] * 6, "all six from their snapshots"
    assert d.metrics.registry.get_sample_value("distilld_state_restores_total", {"outcome": "restored"}) == 6
    assert peak[0] <= budget + snapshot, f"held {peak[0]} bytes at most, budget {budget}, a snapshot {snapshot}"
    assert reader.assigns == 1 and reader.pauses > 0, "one read, paused past the budget"
    assert not reader.paused, "none left paused on the reader, kept for the next restore"
