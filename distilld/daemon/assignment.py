"""Newly assigned partitions, on their way to the consumer.

The group assigns partitions; nothing of them is fetched or processed until this module has read their
committed offsets (retried while unreadable), restored their state from the state topic (the state partitions
they need read together, in slices between the loop's polls), and looked up where the windows of those
without a usable snapshot start, to rebuild them from the log. Then they are assigned to the consumer at
where they start (below their commit only inside the log, whatever auto.offset.reset says).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import wait
from typing import TYPE_CHECKING

from confluent_kafka import OFFSET_INVALID, TIMESTAMP_NOT_AVAILABLE, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from distilld.daemon.clients import error_code, error_text
from distilld.daemon.partition import TP, Partition, key_names, partition_names
from distilld.daemon.progress import PartitionProgress
from distilld.daemon.state import ReadStopped, Restored, StateScan
from distilld.snapshot import SnapshotError
from distilld.snapshot import load as load_snapshot

if TYPE_CHECKING:
    from distilld.daemon.loop import Daemon

__all__ = ["LOOKUP_TIMEOUT_S", "Assigner"]

log = logging.getLogger("distilld")

LOOKUP_TIMEOUT_S = 5.0  # longest one try to read assigned partitions' committed offsets (or windows' start) holds on
LOOKUP_RETRY_S = (1.0, 30.0)  # first and longest wait between those tries (doubling)
READY_NAMES = 10  # partitions /readyz names when it says which wait; the others are counted
LOOKUP_SLICE_S = 0.2  # the log-start lookup's wait between checks for a stop
RESTORE_SLICE_S = 0.5  # longest the loop reads the state topic at a turn before it polls its consumer again
EARLIEST_RESETS = ("smallest", "earliest", "beginning")  # auto.offset.reset's values for the log's start
# offsets before a commit read for its last record's time: past a transaction's marker, and a few aborted records
LAST_RECORD_LOOKBACK = 32


class Assigner:
    """The partitions assigned by the group, not yet to the consumer, for ``daemon``: its loop calls
    :meth:`turn` between polls, its rebalance callbacks :meth:`add` and :meth:`unpend`. The daemon's
    consumer, state store, metrics and partitions are read from it at each use (a test may replace them)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        # Assigned by the group, not yet to the consumer (nothing of them is fetched or processed): the loop
        # reads their committed offsets (pending; retried while unreadable), then their state (restoring, the
        # state partitions they need read together, in slices between polls), then looks up where the windows
        # of those without a usable snapshot start (rebuilding), and assigns them to the consumer. Nothing of it runs
        # in the rebalance callback, which holds the loop and the group's rebalance (Daemon._on_assign).
        self.pending: list[TopicPartition] = []
        self._pending_at = 0.0  # monotonic time of the next try
        self._pending_wait = LOOKUP_RETRY_S[0]
        self.restoring: dict[TP, int] = {}  # their committed offsets (-1: none)
        self._scan: StateScan | None = None  # the read of the state partitions holding some of them
        self._scan_left: dict[int, dict[TP, int]] = {}  # its state partitions not over yet, with those they hold
        # those whose state partition has been read, not loaded yet: their commit and snapshot (a turn loads
        # them until its slice is over)
        self._unloaded: dict[TP, tuple[int, Restored | None]] = {}
        self._rebuilding: dict[TP, tuple[Partition, str]] = {}  # with the outcome of their restore so far
        self._waiting_since: dict[TP, float] = {}  # those with a commit: when each began to wait (restore_duration)

    def add(self, partitions: list[TopicPartition]) -> None:
        """Partitions the group assigned: their commits are read at the next try."""
        if not self.pending:  # partitions already waiting for a retry keep its time: these join it
            self._pending_at = time.monotonic()
        self.pending += partitions

    def turn(self) -> None:
        """A turn of the loop: read the commits when their try is due, then restore for a slice."""
        if self.pending and time.monotonic() >= self._pending_at:
            self.read_commits()
        if self.restoring or self._rebuilding:
            self.restore_some()

    def waiting(self) -> str | None:
        """What /readyz says while partitions wait here; None when none does."""
        if self.pending:
            names = _first([(tp.topic, tp.partition) for tp in self.pending])
            if self._pending_wait > LOOKUP_RETRY_S[0]:  # a lookup has failed: the next one is a retry
                return f"committed offsets of {names} not readable yet (retrying)"
            return f"committed offsets of {names} not read yet"
        if self.restoring or self._rebuilding:
            return f"state of {_first([*self.restoring, *self._rebuilding])} not restored yet"
        return None

    def close(self) -> None:
        """Stop the state read in progress, if any."""
        if self._scan is not None:
            self._scan.close()
            self._scan, self._scan_left = None, {}

    def waiting_commits(self) -> dict[TP, int]:
        """The committed offsets of the partitions waiting for their state (restoring or rebuilding), those
        with one: their lag counts from it. Left out: one with none (it starts where auto.offset.reset says,
        and is assigned once the state read in progress ends), and those whose commits are not read yet
        (pending: their lag is unknown, see :mod:`distilld.daemon.waiting_lag`)."""
        commits = {tp: offset for tp, offset in self.restoring.items() if offset >= 0}
        for tp, (part, _) in self._rebuilding.items():
            if part.progress.committed is not None:
                commits[tp] = part.progress.committed
        return commits

    def _committed(self, partitions: list[TopicPartition]) -> dict[TP, int] | None:
        """The committed offset of each partition (-1: none), or None when they cannot be read now (the group
        coordinator away or still loading, under exactly_once another instance's transaction still open on
        them, no Describe on the group): counted, logged, and retried by the caller."""
        try:
            found = self.daemon.consumer.committed(
                partitions, timeout=min(LOOKUP_TIMEOUT_S, self.daemon.settings.processing.shutdown_timeout_s)
            )
            failed = next((tp.error for tp in found if tp.error is not None), None)
            if failed is not None:
                raise KafkaException(failed)
        except KafkaException as e:
            self.daemon.metrics.offset_lookup_errors.labels("committed").inc()
            log.warning(
                "cannot read the committed offsets of %s (%s): not read until they are known; retrying in %gs",
                partition_names(partitions), error_text(e), self._pending_wait,
            )  # fmt: skip
            return None
        return {(tp.topic, tp.partition): tp.offset for tp in found}

    def read_commits(self) -> None:
        """Read the commits of the partitions waiting for them; once known, they wait for their state. Where
        to start is unknown until then: starting without the commit could reprocess or skip records (under
        exactly_once emit them twice), and exiting would meet the same brokers after a restart (a crash loop);
        so the lookup is retried, 1 s after the first failure, doubling up to 30 s."""
        pending = self.pending
        committed = self._committed(pending)
        if committed is None:
            self._pending_at = time.monotonic() + self._pending_wait
            self._pending_wait = min(self._pending_wait * 2, LOOKUP_RETRY_S[1])
            return
        self.pending, self._pending_wait = [], LOOKUP_RETRY_S[0]
        self.to_restore({(tp.topic, tp.partition): committed.get((tp.topic, tp.partition), -1) for tp in pending})

    def to_restore(self, committed: dict[TP, int]) -> None:
        """Partitions whose commits are read (-1: none) wait for their state; those with a commit are timed
        from now to their assignment (distilld_state_restore_duration_seconds), each on its own."""
        now = time.perf_counter()
        self._waiting_since.update((tp, now) for tp, offset in committed.items() if offset >= 0)
        self.restoring.update(committed)

    def restore_some(self) -> None:
        """Restore partitions waiting for their state, for up to RESTORE_SLICE_S: the loop polls its consumer
        between slices (max.poll.interval.ms) and processes the partitions it has. The state partitions holding
        the snapshots of every partition waiting are read together, within one read_timeout_s for them all (one
        read, however many partitions share a state partition); partitions that come meanwhile wait for the
        next such read. Each partition is assigned once its state partition is read, loaded one partition at a
        time (a big window state takes seconds to load). Those without a usable snapshot wait for the others,
        then where their windows start is looked up once for them all."""
        until = time.monotonic() + RESTORE_SLICE_S
        while not self.daemon.stopping and (self._scan is not None or self.restoring):
            if self._unloaded:
                self._load(until)
                if self._unloaded:
                    return  # the slice is over: on at the next turn
                continue
            if self._scan is None:
                self._scan = self._next_scan()
                continue
            try:
                # only once those handed over are loaded: the scan lets its paused state partitions on then
                finished = self._scan.advance(until)
            except ReadStopped:
                self._scan, self._scan_left = None, {}
                return  # their state would not be used: left unassigned, the close's revoke forgets them
            if self.daemon.endpoints is not None:
                self.daemon.endpoints.beat()
            if not finished:
                return  # the slice is over: on at the next turn
            for done in finished:
                if self._scan_left.pop(done.partition, None) is None:
                    continue  # none of its partitions waits any more (unpend)
                if done.error is not None:
                    self.daemon.metrics.state_errors.inc()
                    log.warning(
                        "reading state topic %s[%d] failed (%s): %s go without their snapshots (their windows are "
                        "rebuilt from the log where it still holds them)",
                        self.daemon.state.topic, done.partition, done.error, key_names(done.wanted),
                    )  # fmt: skip
                # only those still waiting at that commit: one revoked during the read would stay here for good
                # (no turn comes back to restores once nothing waits), its snapshot's bytes with it
                self._unloaded.update(
                    (tp, (offset, done.found.get(tp)))
                    for tp, offset in done.wanted.items()
                    if self.restoring.get(tp) == offset
                )
            if not self._scan_left:
                self._scan = None
        if self._rebuilding and not self.restoring and not self.daemon.stopping:
            self._rebuild()

    def _next_scan(self) -> StateScan | None:
        """The read of the state partitions holding the snapshots of every partition waiting; partitions with
        no commit have no state to read, and are taken at once."""
        fresh = [tp for tp, offset in self.restoring.items() if offset < 0]
        if fresh:
            for tp in fresh:
                del self.restoring[tp]
            self._take([(tp, *self._restored(tp, -1, None)) for tp in fresh])
            return None
        if not self.restoring:
            return None
        wanted = dict(self.restoring)
        self._scan_left = self.daemon.state.by_state(wanted)
        return self.daemon.state.scan(wanted, alive=self.daemon._alive)

    def _load(self, until: float) -> None:
        """Partitions whose state partition has been read, until ``until`` (one at least): each with its
        snapshot, if usable, is assigned; the others wait for where their windows start (_rebuild)."""
        taken = []
        while self._unloaded:
            tp, (offset, snap) = next(iter(self._unloaded.items()))
            del self._unloaded[tp]
            if self.restoring.get(tp) != offset:
                continue  # revoked meanwhile (or assigned again, its commit since moved: read again)
            del self.restoring[tp]
            part, start, outcome = self._restored(tp, offset, snap)
            if outcome == "restored":
                taken.append((tp, part, start, outcome))
            else:
                self._rebuilding[tp] = (part, outcome)
            if self.daemon.stopping or time.monotonic() >= until:
                break
        self._take(taken)

    def _restored(self, tp: TP, offset: int, snap: Restored | None) -> tuple[Partition, TopicPartition, str]:
        """Partition ``tp``, committed at ``offset`` (-1: none), with the state of ``snap`` if usable: the
        partition, where it starts reading (the snapshot's offset: the gap up to the commit is re-read
        without emitting; else the commit; with none, where auto.offset.reset says) and the restore's outcome."""
        reducer = self.daemon._new_reducer()
        part = Partition(PartitionProgress(tp[0], tp[1]), reducer, reducer.missing_counts)
        start = TopicPartition(tp[0], tp[1], offset if offset >= 0 else OFFSET_INVALID)
        if offset >= 0:
            part.processed = part.progress.committed = part.progress.committable = offset
        if snap is None:
            return part, start, "empty"
        try:
            load_snapshot(reducer, snap.data)
        except SnapshotError as e:
            reducer.reset()
            log.warning("%s[%d]: snapshot not used (%s)", tp[0], tp[1], e)
            return part, start, "discarded"
        part.snapshot_at = part.processed = snap.offset
        part.replay_until = offset if snap.offset < offset else None
        self.daemon.state.restored_from(tp, snap.slot)  # the next snapshot leaves this one in place
        log.info(
            "%s[%d]: restored %d keys from the snapshot at offset %d (committed %d)",
            tp[0], tp[1], reducer.keys_held, snap.offset, offset,
        )  # fmt: skip
        return part, TopicPartition(tp[0], tp[1], snap.offset), "restored"

    def _rebuild(self) -> None:
        """Partitions with a commit but no usable snapshot rebuild their windows from the log, emitting
        nothing: from where each window starts, looked up once for them all, up to the commit."""
        commits = {tp: part.progress.committed for tp, (part, _) in self._rebuilding.items()}
        begins = self._window_starts({tp: offset for tp, offset in commits.items() if offset is not None})
        if self.daemon.stopping:
            return  # their state would not be used: left unassigned, the close's revoke forgets them
        taken = []
        for tp, (part, outcome) in self._rebuilding.items():
            offset = part.progress.committed
            assert offset is not None
            start = TopicPartition(tp[0], tp[1], offset)
            begin = begins.get(tp)
            if begin is not None and begin < offset:  # else nothing before the commit is inside the window
                start = TopicPartition(tp[0], tp[1], begin)
                part.processed, part.replay_until = begin, offset
                why = "snapshot not used" if outcome == "discarded" else "no snapshot"
                if outcome != "discarded":  # a refused snapshot stays counted as discarded
                    outcome = "replayed"
                log.info("%s[%d]: %s; rebuilding the window from offset %d", tp[0], tp[1], why, begin)
            elif outcome == "discarded":
                log.warning("%s[%d]: nothing to rebuild the window from: empty windows", tp[0], tp[1])
            taken.append((tp, part, start, outcome))
        self._rebuilding = {}
        self._take(taken)

    def _take(self, taken: list[tuple[TP, Partition, TopicPartition, str]]) -> None:
        """Partitions restored: assigned to the consumer at where they start, then counted and kept (a failed
        assignment, which stops the daemon, neither)."""
        if not taken:
            return
        taken = self._inside_log(taken)
        starts = [start for _, _, start, _ in taken]
        try:
            self.daemon._assign(self.daemon.consumer, starts)
        except KafkaException as e:
            self.daemon._fail(f"cannot assign the partitions: {e}")
            return
        for tp, part, _, outcome in taken:
            part.counted()
            self.daemon.metrics.restores.labels(outcome).inc()
            self.daemon.partitions[tp] = part
        self.daemon.metrics.assigned.set(len(self.daemon.partitions))
        log.info("assigned %s", partition_names(starts))
        now = time.perf_counter()
        for tp, *_ in taken:
            since = self._waiting_since.pop(tp, None)
            if since is not None:
                self.daemon.metrics.restore_duration.observe(now - since)

    def _inside_log(
        self, taken: list[tuple[TP, Partition, TopicPartition, str]]
    ) -> list[tuple[TP, Partition, TopicPartition, str]]:
        """``taken`` with each partition that starts below its commit (to re-read the gap after its snapshot, or
        to rebuild its window) starting inside the log. One whose start retention has deleted is reset by the
        consumer to where auto.offset.reset says: with latest, the log's end, skipping every record from the
        commit on. Unless it resets to the log's start (the default, earliest: nothing to do), their log starts
        are looked up, in one lookup for them all, and each starts at the later of its start and its log's;
        at its commit when the log holds nothing before it, or when the lookup fails (its window then lacks the
        records before the commit, said in a WARNING). A commit retention has deleted too is reset by the
        consumer as any is: that is what auto.offset.reset is for."""
        below = [tp for tp, part, _, _ in taken if part.replay_until is not None]
        reset = str(self.daemon.settings.kafka.consumer.get("auto.offset.reset", "earliest"))
        if not below or reset in EARLIEST_RESETS or self.daemon.stopping:
            return taken  # stopping: assigned only for the close's revoke to take back, nothing of them read
        log_starts = self._log_starts(below)
        inside = []
        for tp, part, start, outcome in taken:
            commit = part.replay_until
            log_start = log_starts.get(tp, -1)
            if commit is not None and (log_start < 0 or log_start > start.offset):
                begin = log_start if 0 <= log_start < commit else commit
                if log_start > commit:  # the commit itself is gone: the consumer's reset applies, as to any
                    log.warning(
                        "%s[%d]: its log starts at %d, past its commit %d: nothing of its window is left to re-read,"
                        " and the consumer resets it as auto.offset.reset=%s says",
                        tp[0], tp[1], log_start, commit, reset,
                    )  # fmt: skip
                else:
                    log.warning(
                        "%s[%d]: its log's start is %s, not at or before offset %d where its window was to be "
                        "re-read from (auto.offset.reset=%s would skip to the log's end): read from offset %d "
                        "(committed %d), its window lacks the records before",
                        tp[0], tp[1], "not known" if log_start < 0 else f"at {log_start}", start.offset, reset,
                        begin, commit,
                    )  # fmt: skip
                part.processed, part.replay_until = begin, commit if begin < commit else None
                start = TopicPartition(tp[0], tp[1], begin)
                if begin == commit and outcome == "replayed":
                    outcome = "empty"  # nothing left to re-read
            inside.append((tp, part, start, outcome))
        return inside

    def _log_starts(self, partitions: list[TP]) -> dict[TP, int]:
        """The first offset of each partition's log, in one lookup of at most LOOKUP_TIMEOUT_S (and
        shutdown_timeout_s), waited for in slices that end early on a stop (it had held a stop 5 s whatever its
        deadline); one whose answer failed or did not come is left out (the failures counted once as a
        window_start lookup, and logged): one partition's error (its topic deleted) left every other one
        without its log start."""
        earliest = OffsetSpec.earliest()
        found: dict[TP, int] = {}
        reason: BaseException | None = None
        limit = min(LOOKUP_TIMEOUT_S, self.daemon.settings.processing.shutdown_timeout_s)
        deadline = time.monotonic() + limit
        try:
            futures = self.daemon.state.admin().list_offsets(
                {TopicPartition(t, p): earliest for t, p in partitions}, request_timeout=limit
            )
        except KafkaException as e:
            futures, reason = {}, e
        waiting = set(futures.values())
        while waiting and self.daemon._alive() and (left := deadline - time.monotonic()) > 0:
            waiting = wait(waiting, timeout=min(left, LOOKUP_SLICE_S)).not_done
        for tp, future in futures.items():
            if future.done():
                try:
                    found[(tp.topic, tp.partition)] = int(future.result(0).offset)
                except KafkaException as e:
                    reason = e
        failed = sorted(set(partitions) - set(found))
        if failed:
            self.daemon.metrics.offset_lookup_errors.labels("window_start").inc()
            why = error_text(reason) if reason is not None else ""
            why = why or ("stopping" if self.daemon.stopping else f"not answered in {limit:g}s")
            log.warning("cannot look up where the logs of %s start (%s)", key_names(failed), why)
        return found

    def _window_starts(self, committed: dict[TP, int]) -> dict[TP, int]:
        """The first offset of each partition (with its committed offset) whose Kafka timestamp is inside the
        window at its commit (the log's start where the broker cannot tell), in one lookup: brokers that do not
        answer cost one timeout for all the partitions, not one each (the loop and a stop wait meanwhile). A
        partition left out has none. Under processing time the window ends now (re-read records keep their
        Kafka timestamps as their arrival times); under a record time it ends at the partition's last committed
        record's time, read from the log (now where it cannot be): a partition behind by more than a window,
        or a replay of old records, would otherwise start with an empty window."""
        # brokers that do not answer: tried again in slices growing to LOOKUP_TIMEOUT_S, up to shutdown_timeout_s
        # (within half of max.poll.interval.ms: the loop waits meanwhile), the last records' read included,
        # staying alive for /healthz between them and ending early on a stop; an error they answered is not retried
        deadline = time.monotonic() + min(self.daemon.settings.processing.shutdown_timeout_s, self.daemon._hold_limit_s)
        window, now = self.daemon.settings.reducer.window_seconds, self.daemon.clock()
        ends = {} if self.daemon.settings.reducer.time == "processing" else self._last_times(committed, deadline)
        asked = [TopicPartition(t, p, int((ends.get((t, p), now) - window) * 1000)) for t, p in committed]
        partitions = [TopicPartition(t, p) for t, p in committed]
        wait = 1.0
        while True:
            tried = time.monotonic()
            slice_s = max(0.0, min(wait, LOOKUP_TIMEOUT_S, deadline - tried))
            try:
                found = self.daemon.consumer.offsets_for_times(asked, timeout=slice_s)
                break
            except KafkaException as e:
                self.daemon.metrics.offset_lookup_errors.labels("window_start").inc()
                now = time.monotonic()
                timed_out = error_code(e) == KafkaError._TIMED_OUT and now - tried >= 0.9 * slice_s
                reason = error_text(e)
                if not timed_out or deadline - now < 0.1 or not self.daemon._alive():
                    log.warning(
                        "cannot look up the windows' start of %s (%s): empty windows",
                        partition_names(partitions),
                        reason,
                    )
                    return {}
                log.warning(
                    "cannot look up the windows' start of %s (%s); retrying for up to %.0fs",
                    partition_names(partitions), reason, deadline - now,
                )  # fmt: skip
            wait *= 2
        return {(f.topic, f.partition): int(f.offset) for f in found if f.error is None and f.offset >= 0}

    def _last_times(self, committed: dict[TP, int], deadline: float) -> dict[TP, float]:
        """The Kafka timestamp (seconds) of each partition's last committed record, the last one before its commit
        (or the first after it, when none of the LAST_RECORD_LOOKBACK offsets before it holds one), read with the
        state store's reader (idle between restores), for at most LOOKUP_TIMEOUT_S and not past ``deadline`` (the
        window start lookup's, which follows); one not read by then is left out. The offset just before a commit
        is no record when the input is written in transactions: the consumer's position, and so the commit, moves
        past a transaction's marker, which a reader never gets."""
        reader = self.daemon.state.reader()
        reader.assign(
            [TopicPartition(t, p, max(offset - LAST_RECORD_LOOKBACK, 0)) for (t, p), offset in committed.items()]
        )
        found: dict[TP, float] = {}
        left, deadline = set(committed), min(deadline, time.monotonic() + LOOKUP_TIMEOUT_S)
        try:
            while left and time.monotonic() < deadline and self.daemon._alive():
                m = reader.poll(0.2)
                tp = None if m is None else (m.topic(), m.partition())
                if m is None or tp not in left:
                    continue
                if m.error() is not None:
                    left.discard(tp)  # its end (nothing after the records read) or an error: nothing more to wait for
                    continue
                offset, commit = m.offset() or 0, committed[tp]  # a record always has its offset
                if offset >= commit - 1:
                    left.discard(tp)  # the last record before the commit, or past it: the last one wanted
                if offset >= commit and tp in found:
                    continue  # past the commit, and a record before it was read
                kind, ms = m.timestamp()
                if kind != TIMESTAMP_NOT_AVAILABLE and ms >= 0:
                    found[tp] = ms / 1000.0
        except KafkaException as e:
            log.warning("cannot read the last committed records of %s (%s)", key_names(sorted(left)), e)
        finally:
            reader.unassign()
        missing = sorted(set(committed) - set(found))
        if missing:
            log.info("%s: the last committed record's time not read; the window ends now", key_names(missing))
        return found

    def unpend(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """Forget those of ``partitions`` still waiting for their commits or their state; return the others,
        the ones assigned to the consumer (unassigning one it does not have is an error)."""
        waiting = {(tp.topic, tp.partition) for tp in self.pending} | set(self.restoring) | set(self._rebuilding)
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self.pending = [tp for tp in self.pending if (tp.topic, tp.partition) not in gone]
        if not self.pending:  # the next partitions to wait start again from the first retry's wait
            self._pending_wait = LOOKUP_RETRY_S[0]
        for key in gone:
            self.restoring.pop(key, None)
            self._rebuilding.pop(key, None)
            self._waiting_since.pop(key, None)  # not restored here: not timed
            self._unloaded.pop(key, None)
        for state_partition, held in list(self._scan_left.items()):
            if not any(tp in self.restoring for tp in held):
                del self._scan_left[state_partition]  # read for none of them any more: not waited for
        if self._scan is not None and not self._scan_left:
            self._scan.close()
            self._scan = None
        return [tp for tp in partitions if (tp.topic, tp.partition) not in waiting]


def _first(partitions: list[TP], shown: int = READY_NAMES) -> str:
    """The first ``shown`` partitions, and how many more: /readyz's body stays short with hundreds waiting."""
    more = len(partitions) - shown
    return key_names(partitions[:shown]) + (f" and {more} more" if more > 0 else "")
