"""Where the daemon's work becomes durable: offsets, and the snapshots behind them.

at_least_once: an offset is committed once every output at or before it is
acknowledged; a checkpoint flushes the outputs, commits, then snapshots the
partitions whose state is exactly what was committed, so a snapshot never
covers more than the commit (a restore re-reads the gap, never skips).

exactly_once: outputs, dead letters, snapshots and offsets of an interval are
one transaction; an aborted one rewinds every partition to its last commit. A
partition with no commit commits where it begins before its first outputs
(:meth:`Checkpoints.commit_starts`): there is always a last commit to go back to,
for this instance and for the partition's next owner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from distilld.daemon.clients import call_by
from distilld.daemon.metrics import DaemonMetrics
from distilld.daemon.output import Output
from distilld.daemon.partition import TP, Partition
from distilld.daemon.progress import PartitionProgress
from distilld.daemon.repeats import Repeats
from distilld.daemon.state import StateStore
from distilld.daemon.transactions import TransactionAborted, TransactionFatal, Transactions
from distilld.snapshot import SnapshotError, dump

__all__ = ["Checkpoints"]

# longest a checkpoint waits for the state topic's check (StateStore.check_topic: one DescribeTopics request, answered
# in ~0.5 ms by a local broker); only brokers that do not answer make it wait, and then nothing is known
CHECK_TIMEOUT_S = 1.0
# a periodic commit (asynchronous, answered in on_commit) not answered this long is counted and logged: the group
# coordinator is slow or stuck. librdkafka's synchronous commit has no timeout of its own, and waited minutes for a
# coordinator that did not answer, the loop frozen (nothing read, /healthz 503, a SIGTERM not handled) meanwhile;
# nor can it run in a thread of its own: confluent-kafka serializes a consumer's calls, so the loop's consume()
# waited for it all the same
COMMIT_WAIT_S = 5.0
# one not answered this long is forgotten, and the next commit made: librdkafka answers every commit (with an
# error after socket.timeout.ms, 60 s by default), so none stays unanswered this long but by a fault
COMMIT_FORGET_S = 300.0
FORGOTTEN_KEPT = 10  # forgotten commits whose late answers are still recognized (on_commit)

log = logging.getLogger("distilld")


class Checkpoints:
    def __init__(
        self,
        partitions: dict[TP, Partition],
        consumer: Consumer,
        output: Output,
        txn: Transactions | None,
        state: StateStore,
        metrics: DaemonMetrics,
        timeout_s: float,
        rewind: Callable[[], None],
        fail: Callable[[str], None],
    ) -> None:
        self.partitions = partitions
        self.consumer = consumer
        self.output = output
        self.txn = txn
        self.state = state
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.rewind = rewind
        self.fail = fail
        # set when stopping: every later checkpoint works to it, the one closing the consumer runs
        # (its revoke) too, so a stop takes shutdown_timeout_s at most, not one timeout per checkpoint
        self.stop_by: float | None = None
        # exactly_once: the open transaction met a retriable error until its deadline (the brokers away
        # longer than the timeout); it is committed before anything more is read (Daemon.step)
        self.unfinished = False
        # exactly_once: stopping, the open transaction could be neither committed nor aborted by the stop's
        # deadline (the brokers away): given up, not tried again (_give_up)
        self.abandoned = False
        # at_least_once: the periodic commit waiting for the group coordinator's answer (on_commit), one at a
        # time: its offsets are taken as committed once answered, and the next commit is made after it
        self._committing: _Commit | None = None
        # at_least_once: the commits of revoked partitions waiting for their answers (on_commit). librdkafka does
        # not rejoin the group (and so hand the partitions over) while a commit of its own is unanswered
        self._revoking: list[_Commit] = []
        # periodic commits forgotten unanswered (COMMIT_FORGET_S): one answered after a newer commit may have been
        # applied after it too (librdkafka held it, then sent it), taking the group's commit back (on_commit)
        self._forgotten: list[_Commit] = []
        # snapshots of partitions a periodic commit took, taken when it was sent, to write (:meth:`answered`)
        self._ready: list[tuple[TP, Partition, int, bytes]] = []
        self.snapshots_due = False  # a commit was answered: the loop calls answered()
        self._repeats = Repeats(60.0)

    def commit(self, asynchronous: bool = True) -> None:
        """Commit what is due (exactly_once: commit the open transaction); ``asynchronous``: answered in
        :meth:`on_commit`, served by the loop's consume()."""
        if self.txn is not None:
            self._commit_transaction([], self._deadline(None))
        else:
            self._commit_partitions(list(self.partitions), asynchronous)

    def checkpoint(self, keys: list[TP], wait_s: float | None = None) -> float:
        """Commit and snapshot ``keys``, waiting for outputs at most ``wait_s`` (default: the
        shutdown deadline, for revokes and stops); returns the deadline it worked to. A periodic
        checkpoint waits briefly: with the brokers away the loop must keep turning (readiness,
        health), and what is not acknowledged yet is committed at a later checkpoint. Not so a
        transaction, committed whole or not at all: it gets the whole timeout, as at every commit."""
        if self.txn is not None:
            deadline = self._deadline(None)
            self._commit_transaction(keys, deadline)
            return deadline
        deadline = self._deadline(wait_s)
        if not self.output.flush(deadline):
            log.warning("%d outputs still unacknowledged; their offsets stay uncommitted", self.output.in_flight)
        if wait_s is not None and self.stop_by is None:
            # periodic: asynchronous, the loop turning meanwhile. A snapshot covers only what is known to be
            # committed: those of the partitions this commit takes whole are taken now, while their state is
            # exactly the offsets sent (the loop reads on before the answer comes: taken then, a busy partition's
            # state was always ahead of its commit, and never snapshotted), and written once it answers
            # (answered(): the state topic checked right before, a write to one deleted since the last check got
            # the producer fenced by Tansu, outputs included). Partitions whose state is committed already (idle
            # ones) are snapshotted now, below.
            sent = self._commit_partitions(keys, asynchronous=True)
            if sent is not None:
                self._take_snapshots(sent)
        elif self.stop_by is None:
            self._revoke(keys, deadline)
        else:
            self._commit_partitions(keys, asynchronous=False)
        self._snapshots(keys, deadline)
        self.output.producer.flush(max(0.0, deadline - time.monotonic()))
        return deadline

    def _revoke(self, keys: list[TP], deadline: float) -> None:
        """A revoke's commit (in the rebalance callback, inside consume()): asynchronous, so that a group coordinator
        that does not answer holds neither the loop nor a SIGTERM (a synchronous commit has no timeout, and no other
        thread may call the consumer meanwhile). It still lands before the partitions go: librdkafka counts every
        commit it has had no answer to (asynchronous ones too), and completes an unassign, so rejoins the group
        that hands the partitions over, only once none is left (rd_kafka_assignment_serve waits for wait_commit_cnt
        to reach 0; here, after the revoke callback's incremental unassign: cooperative-sticky). Refused or never
        answered, the partitions' next owner reads them again from the last commit (at-least-once); its offsets
        are of acknowledged outputs only (flushed before), so whatever it takes is sound. The snapshots of the
        partitions it commits whole are written now, before the hand-over: one covering more than the commit
        (refused) is not used by a restore, which takes the newest at or before the commit (StateScan)."""
        sent = self._commit_partitions(keys, asynchronous=True, leaving=True)
        if sent is None:
            return
        self._take_snapshots(sent)
        ready, sent.snapshots = [(key, *snap) for key, snap in sent.snapshots.items()], {}
        self._write_all(ready, deadline)

    def _take_snapshots(self, sent: _Commit) -> None:
        """The snapshots of the partitions ``sent`` commits whole (their state is exactly its offsets), taken
        with it, to write when it is answered."""
        for key, _, due in sent.progress:
            part = self.partitions.get(key)
            if part is None or part.replay_until is not None or part.processed != due or part.snapshot_at == due:
                continue
            data = self._dump(key, part, due)
            if data is not None:
                sent.snapshots[key] = (part, due, data)

    def answered(self) -> None:
        """The loop's turn after a periodic commit was answered: the snapshots taken when it was sent, of the
        partitions it committed, written if the partition is still this member's (the same one: not revoked
        and assigned again since)."""
        self.snapshots_due = False
        ready, self._ready = self._ready, []
        if not ready:
            return
        held = [(key, part, offset, data) for key, part, offset, data in ready if self.partitions.get(key) is part]
        self._write_all(held, time.monotonic() + CHECK_TIMEOUT_S)

    def _write_all(self, snapshots: list[tuple[TP, Partition, int, bytes]], deadline: float) -> None:
        """Write snapshots taken earlier (key, partition, offset, bytes), once the state topic is known there."""
        if snapshots and self._state_topic_there(deadline, lambda: len(snapshots)):
            for key, part, offset, data in snapshots:
                self._write(key, part, offset, data)

    def _snapshots(self, keys: list[TP], deadline: float) -> None:
        """Snapshot those of ``keys`` whose state is exactly what is committed (and known to be)."""
        if any(key in self.partitions for key in keys):
            due = [p for key in keys if (p := self.partitions.get(key)) is not None]
            if self._state_topic_there(deadline, lambda: sum(map(Partition.snapshot_due, due))):
                for key in keys:  # due again: a state topic made again makes every partition's due
                    part = self.partitions.get(key)
                    if part is not None and part.snapshot_due() and part.processed is not None:
                        self._snapshot(key, part, part.processed)

    def _deadline(self, wait_s: float | None) -> float:
        deadline = time.monotonic() + (self.timeout_s if wait_s is None else min(wait_s, self.timeout_s))
        return deadline if self.stop_by is None else min(deadline, self.stop_by)

    def begin(self) -> bool:
        """exactly_once: make sure a transaction is open before producing."""
        assert self.txn is not None
        try:
            self.txn.begin()
            return True
        except (TransactionFatal, KafkaException, TransactionAborted) as e:
            self.fail(f"cannot begin a transaction: {e}")
            return False

    def on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The consumer's callback for asynchronous commits: the periodic commit's answer. Its offsets the
        coordinator took are committed (and their snapshots ready to write); the others are committed again at
        the next commit. librdkafka gives the request the last failed partition's error even when others were
        taken: the partitions' own errors say which (the request's counts for all only when none has one)."""
        key = sorted((tp.topic, tp.partition, tp.offset) for tp in partitions)
        commit = self._committing
        revoked = next((c for c in self._revoking if c.key == key), None)
        forgotten = next((c for c in self._forgotten if c.key == key), None)
        if forgotten is not None and revoked is None and (commit is None or key != commit.key):
            self._forgotten.remove(forgotten)
            if err is None:
                self._behind(forgotten, partitions)
            return
        if revoked is not None:
            self._revoking.remove(revoked)
            commit = revoked
        elif commit is None or key != commit.key:
            if err is not None and not _rebalancing(err):
                log.warning("commit failed (%s); will retry", err)  # none of ours (a forgotten one's)
            return
        else:
            self._committing = None
        waited = time.monotonic() - commit.sent
        self.metrics.commit_duration.observe(waited)
        if commit.late:
            log.info("the group coordinator answered the commit after %.0fs", waited)
        refused: dict[TP, Any] = {(tp.topic, tp.partition): tp.error for tp in partitions if tp.error is not None}
        if err is not None and not refused:
            refused = {tp: err for tp, _, _ in commit.progress}
        then = "their next owner reads them again from the last commit" if revoked is not None else "will retry"
        self._taken(commit.progress, refused, counted=commit.late, then=then)
        if revoked is not None:
            return  # its snapshots were written when it was sent (_revoke)
        self._ready += [(key, *snap) for key, snap in commit.snapshots.items() if key not in refused]
        self.snapshots_due = bool(self._ready)

    def _behind(self, old: _Commit, partitions: list[TopicPartition]) -> None:
        """A forgotten commit was taken after all, its answer coming after a newer commit's: the group's commit of
        its partitions may be its older offset now (a snapshot of the newer state no longer usable, and more to
        read again at a hand-over). Those partitions count as committed at its offset, so that the next commit
        sends the newer one again: one commit more, needless only where the broker applied them in order."""
        taken = {(tp.topic, tp.partition) for tp in partitions if tp.error is None}
        for key, p, due in old.progress:
            if key not in taken or p.committed is None or due >= p.committed:
                continue
            log.warning(
                "%s[%d]: a commit forgotten unanswered was taken after a newer one (offset %d after %d): "
                "committing the newer offset again",
                key[0], key[1], due, p.committed,
            )  # fmt: skip
            p.committed = due

    def _taken(
        self,
        progress: list[tuple[TP, PartitionProgress, int]],
        refused: dict[TP, Any],
        counted: bool = False,
        then: str = "will retry",
    ) -> None:
        """A commit answered: the offsets not ``refused`` are committed (never back: a stop's commit may have
        taken later ones meanwhile); the refused ones are due again. One failure counted for the refusals that
        are not a rebalance's, unless ``counted`` (found late) already."""
        for key, p, due in progress:
            if key not in refused and (p.committed is None or due > p.committed):
                p.committed = due
        if not refused:
            return
        failed = {k: e for k, e in refused.items() if not _rebalancing(e)}
        if failed and not counted:
            self.metrics.commit_failures.inc()
        for key, error in refused.items():
            # a line a minute per partition: a coordinator refusing every commit refused each partition's several
            # times a second (the hand-over review counted 6 lines every 0.6 s)
            more = self._repeats.note(("commit refused", key, key in failed, then))  # a revoke's line apart
            if more is None:
                continue
            if key in failed:
                log.warning("commit of %s[%d] refused (%s); %s%s", key[0], key[1], error, then, more)
            else:
                log.info("commit of %s[%d] refused during a rebalance (%s); %s%s", key[0], key[1], error, then, more)

    # -- snapshots -------------------------------------------------------------------

    def _state_topic_there(self, deadline: float, due: Callable[[], int]) -> bool:
        """Before snapshots are written: whether the state topic is there (:meth:`StateStore.check_topic`, which
        makes it again if it was deleted). Made again, it holds no snapshot: every partition's is written again
        (an idle partition's too, whose last snapshot would otherwise be lost for good). Missing, the due
        snapshots (``due()`` of them, once a topic found gone has made every one due) are not written, each
        counted in distilld_snapshot_failures_total: the commits go on (a snapshot only saves a rebuild from
        the log), and so does a transaction."""
        left = min(CHECK_TIMEOUT_S, deadline - time.monotonic())
        verdict = self.state.check_topic(left) if left > 0 else "unchecked"  # a stop past its deadline: not asked
        if verdict in ("remade", "missing"):
            self.metrics.state_errors.inc()
            for part in self.partitions.values():
                part.snapshot_at = None  # none of them is in the state topic any more
        if self.state.missing:
            # the snapshots this checkpoint would write (every assigned partition was counted before, at each one)
            self.metrics.snapshot_failures.inc(due())
            return False
        return True

    def _snapshot(self, key: TP, part: Partition, offset: int) -> None:
        data = self._dump(key, part, offset)
        if data is not None:
            self._write(key, part, offset, data)

    def _dump(self, key: TP, part: Partition, offset: int) -> bytes | None:
        try:
            return dump(part.reducer)
        except SnapshotError as e:  # a key no snapshot keeps: like a snapshot the brokers refused
            self.metrics.snapshot_failures.inc()
            log.warning("%s[%d]: snapshot at offset %d not written (%s)", key[0], key[1], offset, e)
            return None

    def _write(self, key: TP, part: Partition, offset: int, data: bytes) -> None:
        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self.metrics.snapshot_failures.inc()
                log.warning("%s[%d]: snapshot at offset %d not written (%s)", key[0], key[1], offset, err)
                if part.snapshot_at == offset:
                    part.snapshot_at = None  # written again at the next checkpoint

        def produce(topic: str, k: bytes, value: bytes, partition: int, headers: list[Any]) -> None:
            self.output.producer.produce(topic, value, k, partition=partition, headers=headers, on_delivery=delivered)

        try:
            self.state.write(produce, key, offset, data)
        except (KafkaException, BufferError) as e:
            self.metrics.snapshot_failures.inc()
            log.warning("%s[%d]: snapshot at offset %d not written (%s)", key[0], key[1], offset, e)
            return
        part.snapshot_at = offset
        self.metrics.snapshots.inc()
        self.metrics.snapshot_bytes.inc(len(data))

    # -- at least once -------------------------------------------------------------

    def _commit_partitions(self, keys: list[TP], asynchronous: bool, leaving: bool = False) -> _Commit | None:
        """Commit the offsets of ``keys`` that moved. ``asynchronous`` (the periodic commits): answered in
        :meth:`on_commit`, one at a time, so that one the group coordinator does not answer holds nothing up:
        counted and logged once COMMIT_WAIT_S old, its offsets not taken as committed (nor snapshotted) until it
        is answered. A revoke's (``leaving``, asynchronous too: :meth:`_revoke`) goes whatever else is in flight.
        A stop's is waited for until its deadline. Returns the asynchronous commit it sent, if it sent one."""
        now = time.monotonic()
        if self._committing is not None and now - self._committing.sent > COMMIT_FORGET_S:
            log.warning("the commit unanswered for %.0fs is forgotten: committing again", COMMIT_FORGET_S)
            self._forgotten = [*self._forgotten[-(FORGOTTEN_KEPT - 1) :], self._committing]
            self._committing = None
        self._revoking = [c for c in self._revoking if now - c.sent <= COMMIT_FORGET_S]  # answered by now, or never
        if asynchronous and not leaving and self._committing is not None:
            self._overdue()
            return None
        if leaving:
            # counted (and logged) if the last periodic commit is overdue, but the revoke's goes all the same:
            # librdkafka hands the partitions over only once every commit of its own is answered, that one too,
            # so leaving this one out would save no time, only make their next owner read them again
            self._overdue()
        offsets, progress = [], []
        for key in keys:
            part = self.partitions.get(key)
            if part is None:
                continue
            due = part.progress.due()
            if due is not None:
                offsets.append(TopicPartition(key[0], key[1], due))
                progress.append((key, part.progress, due))
        if not offsets:
            return None
        if asynchronous:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=True)
            except KafkaException as e:
                self._failed(e)
                return None
            sent = _Commit(offsets, progress)
            if leaving:
                self._revoking.append(sent)
            else:
                self._committing = sent
            return sent
        started = time.perf_counter()
        results: list[TopicPartition] = []
        try:
            if self.stop_by is not None:
                # after the loop (outside consume(), a thread may call the consumer): waited for until the deadline
                results = call_by(self.stop_by, lambda: self.consumer.commit(offsets=offsets, asynchronous=False))
            else:
                results = self.consumer.commit(offsets=offsets, asynchronous=False)
        except TimeoutError:
            self.metrics.commit_failures.inc()
            log.warning(
                "commit not answered by the stop's deadline: %s not committed; their next owner reads those "
                "records again from the last commit",
                _offsets(offsets),
            )
            return None
        except KafkaException as e:
            self._failed(e, offsets)
            return None
        finally:
            self.metrics.commit_duration.observe(time.perf_counter() - started)
        self._taken(progress, {(tp.topic, tp.partition): tp.error for tp in results or [] if tp.error is not None})
        return None

    def _overdue(self, said: bool = True) -> bool:
        """Whether the commit in flight has waited COMMIT_WAIT_S for its answer; counted once, and (``said``)
        logged once a minute."""
        commit = self._committing
        if commit is None:
            return False
        waited = time.monotonic() - commit.sent
        if waited < COMMIT_WAIT_S:
            return False
        if not commit.late:
            commit.late = True
            self.metrics.commit_failures.inc()
        if said and (more := self._repeats.note("commit not answered")) is not None:
            log.warning("the group coordinator did not answer the commit in %.0fs; will retry%s", waited, more)
        return True

    def _failed(self, e: KafkaException, offsets: list[TopicPartition] | None = None) -> None:
        """A commit the consumer refused: retried at the next checkpoint; one refused for a rebalance is no
        failure (the partitions' new owners carry on from the last commit), as in :meth:`on_commit`."""
        if _rebalancing(e.args[0]):
            log.info("commit refused during a rebalance (%s); will retry", e)
            return
        self.metrics.commit_failures.inc()
        if self.stop_by is not None and offsets:
            log.warning(
                "commit failed at the stop (%s): %s not committed; their next owner reads those records again "
                "from the last commit",
                e, _offsets(offsets),
            )  # fmt: skip
        else:
            log.warning("commit failed (%s); will retry", e)

    # -- exactly once --------------------------------------------------------------

    def commit_starts(self, starts: dict[TP, int]) -> bool:
        """exactly_once: commit where partitions with no commit begin (``starts``: the offset of the first
        record each read), each with a snapshot of its empty windows there, before any of their outputs goes
        into a transaction: in the open one, which holds none of theirs (its work is committed with them, a
        commit more per partition beginning). An aborted transaction's offsets are not committed: without
        this, a partition whose first transaction aborted and that then went (revoked, lost, the daemon
        killed before its first commit) was read by its next owner from where auto.offset.reset says, and
        with latest the aborted records were never output. True once committed; else (aborted and rewound,
        not answered by the deadline, fatal) nothing of theirs may be processed."""
        return self._commit_transaction([], self._deadline(None), starts)

    def _commit_transaction(
        self, snapshot_keys: list[TP], deadline: float, starts: dict[TP, int] | None = None
    ) -> bool:
        """Snapshots of ``snapshot_keys`` whose state moved, the consumed offsets, the outputs produced
        since the last commit, and the ``starts`` of partitions beginning, in one transaction. Returns
        whether it was committed (or there was nothing to commit)."""
        assert self.txn is not None
        if self.abandoned:
            return False  # given up at the stop: the brokers abort it
        offsets, moved = [], []
        for (topic, partition), part in self.partitions.items():
            if part.uncommitted() and part.processed is not None:
                offsets.append(TopicPartition(topic, partition, part.processed))
                moved.append(part)
        begun = [
            (key, p, offset) for key, offset in (starts or {}).items() if (p := self.partitions.get(key)) is not None
        ]
        offsets += [TopicPartition(key[0], key[1], offset) for key, _, offset in begun]

        committing = self.txn.committing  # librdkafka takes no record mid-commit

        def wanted() -> list[tuple[TP, Partition, int]]:
            return [
                (key, p, p.processed)
                for key in ([] if committing else snapshot_keys)
                if (p := self.partitions.get(key)) is not None
                and p.replay_until is None
                and p.processed is not None
                and p.snapshot_at != p.processed
            ] + ([] if committing else begun)

        # a write waiting for a missing state topic would hold the transaction until it aborts: none goes then;
        # the snapshots asked for after the check (a state topic made again makes every partition's due)
        there = committing or not (snapshot_keys or begun) or self._state_topic_there(deadline, lambda: len(wanted()))
        snapshots = wanted() if there else []
        if not self.txn.open and not offsets and not snapshots:
            return True
        started = time.perf_counter()
        try:
            self.txn.begin(deadline)
            for key, part, offset in snapshots:
                self._snapshot(key, part, offset)
            self.output.producer.flush(max(0.0, deadline - time.monotonic()))
            if self.output.txn_error is not None:
                raise TransactionAborted(f"an output failed: {self.output.txn_error}")
            self.txn.commit(offsets, self.consumer.consumer_group_metadata(), deadline)
        except TransactionAborted as e:
            self.metrics.commit_failures.inc()
            self.unfinished = False
            log.warning("transaction aborted (%s): partitions rewound to the last commit", e)
            for _, part, _ in snapshots:
                part.snapshot_at = None  # aborted with the transaction: written again at the next checkpoint
            self.abort()
            return False
        except KafkaException as e:
            self.metrics.commit_failures.inc()
            if isinstance(e.args[0], KafkaError) and e.args[0].retriable():
                if self.stop_by is not None:
                    self._give_up(e, asked=self.txn.committing)
                    return False
                if not self.unfinished:
                    log.warning("transaction not committed yet (%s): retrying it before anything more is read", e)
                self.unfinished = True
                return False
            self.fail(f"transaction commit: {e}")
            return False
        except TransactionFatal as e:
            self.metrics.commit_failures.inc()
            self.fail(f"transaction commit: {e}")
            return False
        finally:
            self.metrics.commit_duration.observe(time.perf_counter() - started)
        if self.unfinished:
            log.info("transaction committed")
            self.unfinished = False
        for part in moved:
            part.progress.committed = part.progress.committable = part.processed
        for _, part, offset in begun:
            part.processed = part.progress.committed = part.progress.committable = offset
        return True

    def abort(self) -> None:
        """Abort the open transaction; the daemon rewinds its partitions to the last commit."""
        assert self.txn is not None
        if self.abandoned:
            return
        try:
            self.txn.abort(self.stop_by)  # at a stop, within its deadline
        except KafkaException as e:
            if self.stop_by is not None and isinstance(e.args[0], KafkaError) and e.args[0].retriable():
                self._give_up(e)
                return
            self.fail(f"transaction abort: {e}")
            return
        except (TransactionFatal, TransactionAborted) as e:
            self.fail(f"transaction abort: {e}")
            return
        self.unfinished = False  # nothing left to commit
        self.output.discard()
        self.rewind()

    def _give_up(self, e: KafkaException, asked: bool = False) -> None:
        """Stopping, the open transaction not committed (nor aborted) by the stop's deadline, the brokers not
        answering: it is left to the brokers and not tried again by the close's revoke; a graceful stop (exit 0),
        as at-least-once's with the brokers away. Its commit not asked for yet, the brokers abort it after the
        producer's transaction.timeout.ms (a read_committed reader never sees its records) and the partitions'
        next owner (this daemon restarted, or another) reads from their last commit and produces its outputs
        again: nothing is lost. Its commit ``asked`` for (commit_transaction called, not answered), the outcome is
        unknown: the transaction coordinator either has committed it, outputs and offsets together (the next
        owner reads on after them), or aborts it as above; either way nothing is lost, nor seen twice by a
        read_committed reader."""
        self.abandoned = True
        self.unfinished = False
        work = (
            ", ".join(
                f"{t}[{p}] offsets {part.progress.committed if part.progress.committed is not None else 'start'}"
                f"..{part.processed}"
                for (t, p), part in self.partitions.items()
                if part.uncommitted()
            )
            or "no input partition's work"
        )
        if asked:
            log.warning(
                "transaction commit not answered by the stop's deadline (%s): whether it is committed is unknown; "
                "the transaction coordinator either committed it, with the outputs and offsets of %s together, or "
                "aborts it after transaction.timeout.ms and those records are read again from the last commit by "
                "the partitions' next owner: either way nothing is lost, nor seen twice by a read_committed reader",
                e, work,
            )  # fmt: skip
            return
        log.warning(
            "transaction not committed at the stop (%s): given up, with the outputs and offsets of %s (%d outputs "
            "not even acknowledged); the brokers abort it after transaction.timeout.ms, and those records are read "
            "again from the last commit by the partitions' next owner",
            e, work, self.output.in_flight,
        )  # fmt: skip


# what a commit meets while the group rebalances (a cooperative rebalance meets it every time): the
# partitions' new owners carry on from the last commit, so these are not counted as failures
_REBALANCE_ERRORS = (KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS, KafkaError.UNKNOWN_MEMBER_ID)


def _rebalancing(err: object) -> bool:
    return isinstance(err, KafkaError) and err.code() in _REBALANCE_ERRORS


class _Commit:
    """An asynchronous commit waiting for its answer (:meth:`Checkpoints.on_commit`)."""

    def __init__(self, offsets: list[TopicPartition], progress: list[tuple[TP, PartitionProgress, int]]) -> None:
        self.key = sorted((tp.topic, tp.partition, tp.offset) for tp in offsets)  # what its answer names
        self.offsets = offsets
        self.progress = progress
        self.sent = time.monotonic()
        self.late = False  # not answered in COMMIT_WAIT_S: counted as a failure
        # the snapshots to write once it is answered, taken when it was sent: partition, offset, data
        self.snapshots: dict[TP, tuple[Partition, int, bytes]] = {}


def _offsets(offsets: list[TopicPartition]) -> str:
    return ", ".join(f"{t.topic}[{t.partition}] up to offset {t.offset}" for t in offsets)
