"""Which snapshot a restore takes from the state topic's records (no broker needed)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from distilld import DistilledProcessor, build_graders
from distilld.daemon.partition import Partition
from distilld.daemon.progress import PartitionProgress
from distilld.daemon.state import CHUNK_BYTES, chunk_records, pick_snapshots

TP = ("events", 3)


def _log(*snapshots: tuple[tuple[str, int], int, int, bytes]) -> list[tuple[bytes, bytes, Any]]:
    """State records in log order for (partition, slot, covered offset, data) snapshots."""
    return [rec for tp, slot, offset, data in snapshots for rec in chunk_records(tp, slot, offset, data)]


def test_a_large_snapshot_is_chunked_and_reassembled() -> None:
    data = os.urandom(2 * CHUNK_BYTES + 123)
    records = _log((TP, 0, 500, data))
    assert len(records) == 3 and all(len(v) <= CHUNK_BYTES for _, v, _ in records)
    got = pick_snapshots(records, {TP: 500})
    assert got[TP].data == data and got[TP].offset == 500


def test_the_newest_snapshot_at_or_before_the_commit_wins() -> None:
    records = _log((TP, 0, 100, b"old"), (TP, 1, 200, b"newer"), (TP, 0, 300, b"after the commit"))
    got = pick_snapshots(records, {TP: 250})
    assert (got[TP].data, got[TP].offset) == (b"newer", 200)


def test_an_incomplete_snapshot_falls_back_to_the_previous_one() -> None:
    data = os.urandom(CHUNK_BYTES + 1)
    complete = _log((TP, 0, 100, b"complete"))
    cut_short = _log((TP, 1, 200, data))[:1]  # the writer died after its first chunk
    got = pick_snapshots(complete + cut_short, {TP: 200})
    assert got[TP].data == b"complete"


def test_a_picker_counts_the_bytes_it_holds_as_snapshots_complete_and_replace_each_other() -> None:
    """A restore bounds the snapshot bytes it holds by what its pickers say they hold: the newest complete
    snapshot per partition and the chunks of those not complete yet, not the ones replaced or skipped."""
    from distilld.daemon.state import SnapshotPicker

    big = os.urandom(CHUNK_BYTES + 10)
    picker = SnapshotPicker({TP: 250})
    first, second = _log((TP, 0, 100, big))
    picker.add(*first)
    assert picker.held == CHUNK_BYTES, "a chunk of a snapshot not complete yet"
    picker.add(*first)
    assert picker.held == CHUNK_BYTES, "a chunk read twice counts once"
    picker.add(*second)
    assert picker.held == len(big), "the complete snapshot, its chunks joined"
    for rec in _log((TP, 1, 200, b"newer"), (TP, 0, 300, b"after the commit")):
        picker.add(*rec)
    assert picker.held == len(b"newer") and picker.best[TP].data == b"newer", "the one it replaced let go"


def test_other_partitions_and_foreign_records_are_ignored() -> None:
    other = ("events", 13)  # shares the prefix "events/1" but not "events/3/"
    records = _log((other, 0, 10, b"not ours"), (("events", 33), 0, 10, b"nor this"))
    records.append((b"events/3/0/0", b"no header", None))
    records.append((None, b"no key", None))
    assert pick_snapshots(records, {TP: 100}) == {}
    assert pick_snapshots(records, {other: 100})[other].data == b"not ours"


def test_no_snapshot_without_a_commit_to_cover() -> None:
    assert pick_snapshots(_log((TP, 0, 100, b"x")), {TP: 50}) == {}


def test_a_new_owner_writes_its_first_snapshot_beside_the_one_it_restored_from() -> None:
    """Every new owner wrote slot 0 first, whatever slot its restore came from: a snapshot written ahead of a
    commit that then failed (a revoke's) could take the place of the only usable one, and once compacted (the
    last record per key) the partition had nothing to restore from (the hand-over review's probe)."""
    from distilld.daemon.state import StateStore

    old_owner = _log((TP, 0, 100, b"first"), (TP, 1, 200, b"usable"))
    restored = pick_snapshots(old_owner, {TP: 200})[TP]
    assert (restored.data, restored.offset, restored.slot) == (b"usable", 200, 1)
    store = StateStore("s.distilld-state", {})
    store.partitions = 1
    written: list[tuple[bytes, bytes]] = []
    store.restored_from(TP, restored.slot)
    store.write(lambda topic, key, value, partition, headers: written.append((key, value)), TP, 250, b"ahead")
    assert written[0][0].startswith(b"events/3/0/"), "the other slot: slot 1's usable snapshot stays"
    compacted = {key: (key, value, headers) for key, value, headers in old_owner + _log((TP, 0, 250, b"ahead"))}
    assert pick_snapshots(list(compacted.values()), {TP: 200})[TP].data == b"usable", "after compaction too"


def _partition(processed: int | None, committed: int | None, replay_until: int | None = None) -> Partition:
    reducer = DistilledProcessor(build_graders([{"name": "n", "type": "numeric"}]))
    progress = PartitionProgress("t", 0, committed=committed)
    return Partition(progress, reducer, reducer.missing_counts, processed=processed, replay_until=replay_until)


def test_an_abort_rewinds_only_partitions_with_work_past_their_commit() -> None:
    assert _partition(processed=600, committed=300).uncommitted()
    assert _partition(processed=600, committed=None).uncommitted()  # never committed: everything is open
    assert not _partition(processed=300, committed=300).uncommitted()  # stands at its commit
    assert not _partition(processed=None, committed=None).uncommitted()  # nothing read yet
    assert not _partition(processed=100, committed=300, replay_until=300).uncommitted()  # rebuilding, emits nothing


def test_a_snapshot_is_due_only_when_the_state_is_what_was_committed() -> None:
    assert _partition(processed=300, committed=300).snapshot_due()
    assert not _partition(processed=600, committed=300).snapshot_due()
    assert not _partition(processed=100, committed=300, replay_until=300).snapshot_due()
    written = _partition(processed=300, committed=300)
    written.snapshot_at = 300
    assert not written.snapshot_due()


def test_pair_estimates_are_the_outer_products_of_the_coarse_marginals() -> None:
    from distilld.cells import CellLayout

    layout = CellLayout([5, 10, 4, 17, 3], pair_div=[1, 1, 1, 2, 1])
    marginal = np.random.default_rng(0).integers(0, 50, layout.marginal_cells).astype(float)
    marginal[0] = 300.0
    got = layout.with_pair_estimates(marginal)
    assert got.shape == (layout.n_cells,) and np.array_equal(got[: layout.marginal_cells], marginal)
    for g, (a, b) in enumerate(layout.groups[layout.marginal_groups :], start=layout.marginal_groups):
        coarse = []
        for f in (a, b):
            fine = marginal[layout.marginal_slice(f)]
            coarse.append(np.bincount(np.arange(len(fine)) // int(layout.pair_div[f]), weights=fine))
        expected = np.outer(coarse[0], coarse[1]).ravel() / 300.0
        assert np.allclose(got[layout.offsets[g] : layout.offsets[g + 1]], expected)


def test_the_state_topic_takes_as_many_partitions_as_the_widest_input_pattern_or_list(
    monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """With input_pattern, input_topics is empty: the state topic was made with 1 partition."""
    from types import SimpleNamespace

    import distilld.daemon.state as state_module
    from distilld.daemon.state import NoInputTopic, StateStore
    from distilld.settings import KafkaSettings

    made: dict[str, int] = {}  # topics the test's admin client created, and their partitions

    class Admin:
        def __init__(self, conf: Any) -> None:
            pass

        def list_topics(self, topic: str | None = None, timeout: float = 0) -> Any:
            sizes = {"clicks.eu": 6, "clicks.us": 12, "other": 24, **made}
            return SimpleNamespace(
                topics={t: SimpleNamespace(partitions=dict.fromkeys(range(n)), error=None) for t, n in sizes.items()}
            )

        def create_topics(self, new: list[Any], operation_timeout: float = 0) -> Any:
            made[new[0].topic] = new[0].num_partitions
            return {new[0].topic: SimpleNamespace(result=lambda timeout: None)}

    monkeypatch.setattr(state_module, "AdminClient", Admin)
    base = {"bootstrap_servers": "b:9092", "group_id": "g", "output_topic": "out"}
    pattern = KafkaSettings(**base, input_pattern="clicks\\..*")
    assert pattern.reads("clicks.us") and not pattern.reads("other") and not pattern.reads("x.clicks.us")
    assert StateStore("p.distilld-state", {}).ensure_topic(pattern.reads, None) == 12
    listed = KafkaSettings(**base, input_topics=["clicks.eu"])
    assert StateStore("l.distilld-state", {}).ensure_topic(listed.reads, None) == 6
    assert made == {"p.distilld-state": 12, "l.distilld-state": 6}
    # no input topic yet: created now, the state topic would keep 1 partition for good
    later = KafkaSettings(**base, input_topics=["views"])
    with pytest.raises(NoInputTopic):
        StateStore("v.distilld-state", {}).ensure_topic(later.reads, None)
    assert "v.distilld-state" not in made
    assert StateStore("v.distilld-state", {}).ensure_topic(later.reads, 4) == 4, "a configured count needs no input"
    assert made["v.distilld-state"] == 4
    # some listed inputs there, others not yet: made with the widest that exists, and said so
    some = KafkaSettings(**base, input_topics=["clicks.eu", "views"])
    with caplog.at_level("WARNING", logger="distilld"):
        assert StateStore("s.distilld-state", {}).ensure_topic(some.reads, None, listed=some.input_topics) == 6
    assert any("views not visible yet" in r.getMessage() for r in caplog.records), caplog.records


def test_an_existing_state_topic_is_used_as_it_is_and_what_would_hurt_is_said(
    monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Made by someone else: not compacted, or another count than kafka.state_partitions, is warned
    of; a configuration that cannot be read (no DescribeConfigs permission) stops nothing."""
    from types import SimpleNamespace

    from confluent_kafka import KafkaError, KafkaException

    import distilld.daemon.state as state_module
    from distilld.daemon.state import StateStore

    policy: dict[str, Any] = {"cleanup.policy": "delete"}

    class Admin:
        def __init__(self, conf: Any) -> None:
            pass

        def list_topics(self, topic: str | None = None, timeout: float = 0) -> Any:
            part = SimpleNamespace(partitions=dict.fromkeys(range(2)), error=None)
            return SimpleNamespace(topics={"s": part, "in": part})

        def describe_configs(self, resources: list[Any], request_timeout: float = 0) -> Any:
            def result(timeout: float) -> Any:
                if isinstance(policy, Exception):
                    raise policy
                return {k: SimpleNamespace(value=v) for k, v in policy.items()}

            return {resources[0]: SimpleNamespace(result=result)}

    monkeypatch.setattr(state_module, "AdminClient", Admin)
    with caplog.at_level("INFO", logger="distilld"):
        assert StateStore("s", {}).ensure_topic(lambda t: t == "in", 4) == 2
    said = [r.getMessage() for r in caplog.records]
    assert any("cleanup.policy=delete, not compact" in m for m in said), said
    assert any("exists with 2 partitions, not kafka.state_partitions' 4" in m for m in said), said
    caplog.clear()
    policy = {"cleanup.policy": "compact,delete"}
    with caplog.at_level("WARNING", logger="distilld"):
        assert StateStore("s", {}).ensure_topic(lambda t: t == "in", None) == 2
    assert not caplog.records, "compacted (with deletion too) and no count configured: nothing to say"
    policy = KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))  # type: ignore[assignment]
    with caplog.at_level("INFO", logger="distilld"):
        assert StateStore("s", {}).ensure_topic(lambda t: t == "in", None) == 2
    assert any("cleanup.policy is not checked" in r.getMessage() for r in caplog.records)


class _EndOfPartition:
    def __init__(self, partition: int = 0) -> None:
        self._partition = partition

    def partition(self) -> int:
        return self._partition

    def error(self) -> Any:
        from confluent_kafka import KafkaError

        return KafkaError(KafkaError._PARTITION_EOF)


class _SlowReader:
    """A state reader whose every poll takes ``seconds`` and brings nothing, the ``polls``-th the partition's end."""

    def __init__(self, seconds: float, polls: int) -> None:
        self.seconds, self.end = seconds, polls

    def assign(self, parts: list[Any]) -> None:
        self.polls = 0

    def unassign(self) -> None:
        pass

    def poll(self, timeout: float) -> _EndOfPartition | None:
        import time

        self.polls += 1
        time.sleep(self.seconds)
        return _EndOfPartition() if self.polls >= self.end else None


class _Record:
    """A state record of ``partition``, or its end (``rec`` None), or its read's error."""

    def __init__(self, partition: int, rec: tuple[bytes, bytes, Any] | None, error: Any = None) -> None:
        self._partition, self.rec, self._error = partition, rec, error

    def partition(self) -> int:
        return self._partition

    def error(self) -> Any:
        from confluent_kafka import KafkaError

        return self._error or (None if self.rec else KafkaError(KafkaError._PARTITION_EOF))

    def key(self) -> bytes | None:
        return self.rec[0] if self.rec else None

    def value(self) -> bytes | None:
        return self.rec[1] if self.rec else None

    def headers(self) -> Any:
        return self.rec[2] if self.rec else None


class _StalledReader:
    """State partitions read together: each poll takes ``poll_s`` of the test's ``clock`` and brings the next
    event of the partitions assigned (``events``: per partition, records then their end), the ``stalled`` ones
    never anything (their leader down)."""

    def __init__(self, clock: list[float], events: dict[int, list[_Record]], stalled: set[int], poll_s: float) -> None:
        self.clock, self.events, self.stalled, self.poll_s = clock, events, stalled, poll_s
        self.assigned: list[int] = []
        self.polls, self.assigns = 0, 0

    def assign(self, parts: list[Any]) -> None:
        self.assigned = [p.partition for p in parts]
        self.assigns += 1
        self.queue = [e for p in self.assigned if p not in self.stalled for e in self.events.get(p, [_Record(p, None)])]

    def unassign(self) -> None:
        self.assigned = []

    def poll(self, timeout: float) -> _Record | None:
        self.polls += 1
        self.clock[0] += self.poll_s
        return self.queue.pop(0) if self.queue else None


def test_the_state_partitions_are_read_together_within_one_read_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each state partition was read after the other, each with its own read_timeout_s: with the state topic
    unreadable (its leader down) the partitions waiting waited one timeout per state partition (~125 s for 2 in a
    probe, up to 48 minutes for 48), /readyz 503 meanwhile. Now they are read together within one read_timeout_s:
    those read to their end give their snapshots at once, the others end with a TimeoutError each (their
    partitions alone go without snapshots), and a partition's error ends only its own read."""
    from types import SimpleNamespace

    from confluent_kafka import KafkaError

    import distilld.daemon.state as state_module
    from distilld.daemon.state import StateStore

    clock = [0.0]
    monkeypatch.setattr(state_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    store = StateStore("state", {}, read_timeout_s=60.0)
    store.partitions = 8
    wanted = {("events", p): 250 for p in range(16)}
    events = {
        3: [_Record(3, rec) for rec in _log((TP, 0, 200, b"found"))] + [_Record(3, None)],
        5: [_Record(5, None, KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))],
    }
    reader = store._reader = _StalledReader(clock, events, stalled={0, 1, 2, 4, 6, 7}, poll_s=0.2)  # type: ignore[assignment]
    scan = store.scan(wanted)
    over = []
    while len(over) < 8:
        over += scan.advance(clock[0] + 1.0)
        if reader.assigned:
            assert reader.assigned == list(range(8)), "all eight read together"
    assert reader.assigns == 1 and reader.polls < 2 * 300, (
        f"{reader.polls} polls of 0.2 s: one 60 s timeout for the eight state partitions, not one each"
    )
    assert not reader.assigned, "let go of them at the end"
    by_partition = {done.partition: done for done in over}
    assert [done.partition for done in over][:2] == [3, 5], "a partition's snapshots as soon as it is read"
    assert by_partition[3].found[TP].data == b"found" and by_partition[3].error is None
    assert set(by_partition[3].wanted) == {("events", 3), ("events", 11)}, "the partitions it holds"
    assert isinstance(by_partition[5].error, Exception) and by_partition[5].found == {}
    assert all(isinstance(by_partition[p].error, TimeoutError) for p in (0, 1, 2, 4, 6, 7))


def test_a_scan_reads_a_state_partition_a_slice_at_a_time_and_finds_what_a_whole_read_does() -> None:
    """A restore read the state topic in one call, however long it took: the caller could not poll its consumer
    meanwhile. A scan gives control back at the slice's deadline, even while no record comes, and carries on
    where it was; at the end it has found what the whole read finds, and lets go of the state partition."""
    import time

    from distilld.daemon.state import StateStore

    records = _log((TP, 0, 100, os.urandom(CHUNK_BYTES + 5)), (TP, 1, 200, b"newer"))

    class Reader:
        """A record every other poll, each poll 0.05 s; then the end of the partition."""

        def __init__(self) -> None:
            self.assigned: list[Any] = []
            self.polls = 0

        def assign(self, parts: list[Any]) -> None:
            self.assigned, self.polls = parts, 0

        def unassign(self) -> None:
            self.assigned = []

        def poll(self, timeout: float) -> _Record | None:
            self.polls += 1
            time.sleep(0.05)
            if self.polls % 2:
                return None
            n = self.polls // 2 - 1
            return _Record(3, records[n] if n < len(records) else None)

    store = StateStore("state", {})
    store.partitions = 4
    reader = store._reader = Reader()  # type: ignore[assignment]
    scan = store.scan({TP: 250})
    slices = 0
    while not (over := scan.advance(time.monotonic() + 0.06)):
        slices += 1
        assert reader.assigned, "held between slices"
        assert slices < 50
    assert slices >= 3, "the read came back between records and between empty polls"
    assert not reader.assigned, "let go at its end"
    found = over[0].found
    assert found == store.read({TP: 250}) and found[TP].data == b"newer" and found[TP].offset == 200
    scan = store.scan({TP: 250})
    assert scan.advance(time.monotonic()) == [] and reader.assigned
    scan.close()
    assert not reader.assigned, "given up: let go of it"


def test_a_scans_time_limit_counts_its_reading_not_the_callers_work_between_slices() -> None:
    """read_timeout_s bounded a scan from its first slice by the clock: the loop's own work between slices (polls,
    batches of the partitions it holds, checkpoints) used it up, so a state partition read in well under the limit
    timed out under load and its partitions started with empty windows. Only the time spent reading counts."""
    import time

    from distilld.daemon.state import StateStore

    store = StateStore("state", {}, read_timeout_s=1.0)
    store.partitions = 1
    store._reader = _SlowReader(0.05, 9)  # type: ignore[assignment]  # 0.4 s of nothing, then the end
    scan = store.scan({TP: 10})
    for _ in range(20):
        if scan.advance(time.monotonic() + 0.01):
            break
        time.sleep(0.2)  # the loop's turn: polls, processes, commits
    else:
        raise AssertionError("never came to the end")
    scan = store.scan({TP: 10})
    store.read_timeout_s = 0.2
    while not (over := scan.advance(time.monotonic() + 0.01)):
        pass
    assert isinstance(over[0].error, TimeoutError), "reading past the limit still ends the scan"
