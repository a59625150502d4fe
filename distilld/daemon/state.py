"""Reducer snapshots on a compacted state topic: written at checkpoints, read on assign.

A snapshot of one input partition's reducer (:mod:`distilld.snapshot` bytes)
is cut into chunks of at most ``CHUNK_BYTES``. Each chunk is a record keyed
``<topic>/<partition>/<slot>/<chunk>`` on state partition
``partition % state partitions``, with a ``distilld-snapshot`` header
``<id> <chunk> <chunks> <offset>``: the input offset the snapshot covers.
Writers alternate two slots, so compaction never leaves a partition without
a complete snapshot when a write is cut short.

A restore reads the state partitions it needs together, each to its end, and
takes the newest complete snapshot covering an offset at or before the
committed one; the loop then re-reads the gap without emitting (see
:mod:`distilld.daemon.assignment` and :mod:`distilld.daemon.records`).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from distilld.daemon.clients import error_code, topic_config

__all__ = [
    "CHUNK_BYTES",
    "RESTORE_BYTES_BUDGET",
    "SNAPSHOT_HEADER",
    "NoInputTopic",
    "ReadStopped",
    "Restored",
    "ScanDone",
    "ScanEvent",
    "SnapshotPicker",
    "StateScan",
    "StateStore",
    "chunk_records",
    "pick_snapshots",
]

log = logging.getLogger("distilld.state")

TP = tuple[str, int]

# snapshot bytes a restore holds while reading its state partitions together: past it, all but one of those still
# read are paused until that one is read and its snapshots loaded (one state partition alone may hold more)
RESTORE_BYTES_BUDGET = 64 * 1024 * 1024


@dataclass(frozen=True)
class _Described:
    """The state topic as a check found it: its partition count (0: not there) and its id (None: not given, by
    a broker without topic ids, before Kafka 2.8)."""

    partitions: int
    topic_id: str | None = None


_NO_TOPIC_ID = "AAAAAAAAAAAAAAAAAAAAAA"  # the zero Uuid, as librdkafka gives it for a broker without topic ids
CHUNK_BYTES = 512 * 1024
SNAPSHOT_HEADER = "distilld-snapshot"
# check_topic asks the brokers at most this often: in practice before every checkpoint's snapshots (a revoke's and
# the stop's close together share one). A producer that wrote to the topic while it was gone can be refused once it
# is made again: Tansu then fences an idempotent producer for good, outputs included (probed)
CHECK_EVERY_S = 0.5
# compacted, in segments small enough to be compacted soon: a restore reads its partition to the end
STATE_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "segment.ms": "600000",
    "segment.bytes": "67108864",
    "min.cleanable.dirty.ratio": "0.1",
}


@dataclass(frozen=True)
class Restored:
    """The newest usable snapshot of a partition: its bytes, the input offset it covers, and the slot it was
    written to (-1: not known), which the next snapshot of the partition must not overwrite."""

    data: bytes
    offset: int
    slot: int = -1


def chunk_records(tp: TP, slot: int, offset: int, data: bytes) -> list[tuple[bytes, bytes, list[Any]]]:
    """(key, value, headers) of each chunk of one snapshot."""
    snap_id = uuid.uuid4().hex[:16]
    pieces = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [b""]
    return [
        (
            f"{tp[0]}/{tp[1]}/{slot}/{i}".encode(),
            piece,
            [(SNAPSHOT_HEADER, f"{snap_id} {i} {len(pieces)} {offset}".encode())],
        )
        for i, piece in enumerate(pieces)
    ]


@dataclass
class _Partial:
    offset: int
    chunks: dict[int, bytes] = field(default_factory=dict)
    count: int = 0

    def complete(self) -> bytes | None:
        if len(self.chunks) != self.count:
            return None
        return b"".join(self.chunks[i] for i in range(self.count))


class SnapshotPicker:
    """Fed state records in log order (:meth:`add`), keeps in ``best`` the newest complete snapshot per wanted
    partition that covers an offset at or before its committed offset."""

    def __init__(self, wanted: dict[TP, int]) -> None:
        self.wanted = wanted
        self.best: dict[TP, Restored] = {}
        self._prefixes = {f"{t}/{p}/".encode(): (t, p) for t, p in wanted}
        self._partial: dict[str, _Partial] = {}
        self.held = 0  # bytes of the snapshots in best and of the chunks of those not complete yet

    def add(self, key: bytes | None, value: bytes | None, headers: Any) -> None:
        if key is None or value is None:
            return
        tp = self._prefixes.get(key[: key.rfind(b"/", 0, key.rfind(b"/")) + 1])
        if tp is None:
            return
        meta = dict(headers or []).get(SNAPSHOT_HEADER)
        try:
            snap_id, index, count, offset = meta.decode().split(" ")  # type: ignore[union-attr]
            i, n, covered = int(index), int(count), int(offset)
        except (AttributeError, ValueError):
            log.warning("state record %r without a valid %s header: ignored", key, SNAPSHOT_HEADER)
            return
        if covered > self.wanted[tp] or not 0 <= i < n:
            return  # written after the committed offset (a crash in between) or damaged
        part = self._partial.setdefault(snap_id, _Partial(covered, count=n))
        self.held += len(value) - len(part.chunks.get(i, b""))
        part.chunks[i] = value
        data = part.complete()
        if data is not None:
            del self._partial[snap_id]
            slot = key.rsplit(b"/", 2)[-2]  # <topic>/<partition>/<slot>/<chunk>
            replaced = self.best.get(tp)
            self.held -= 0 if replaced is None else len(replaced.data)
            self.best[tp] = Restored(data, covered, int(slot) if slot.isdigit() else -1)  # later in the log: newer


def pick_snapshots(
    records: Iterable[tuple[bytes | None, bytes | None, Any]], wanted: dict[TP, int]
) -> dict[TP, Restored]:
    """From state records in log order, the newest complete snapshot per wanted
    partition that covers an offset at or before its committed offset."""
    picker = SnapshotPicker(wanted)
    for key, value, headers in records:
        picker.add(key, value, headers)
    return picker.best


# what a read of state partitions yields: None after a wait that brought nothing, or a state partition and one
# of its records, None (read to its end) or the exception that ended its read
ScanEvent = tuple[int, tuple[bytes | None, bytes | None, Any] | Exception | None] | None


@dataclass
class ScanDone:
    """A state partition whose read is over: the partitions ``wanted`` from it (with their committed offsets), the
    snapshots found for them, and ``error`` when the read failed or timed out (then none is found)."""

    partition: int
    wanted: dict[TP, int]
    found: dict[TP, Restored]
    error: Exception | None = None


class StateScan:
    """The read of the state partitions holding the snapshots of the ``wanted`` partitions (by state partition),
    all at once, a slice at a time: the caller turns between slices (polls its consumer, which a long read
    inside one call would keep from doing), and takes each state partition's snapshots as soon as it is read.

    Read together, the state partitions would fill together: an instance taking many partitions at a rebalance
    held every one's snapshot bytes at once on top of the states loaded from them (~1.6 times its state memory).
    So while the snapshot bytes held by the state partitions still read pass ``budget``, all of them but one (the
    one kept on, else the one holding the most) are put in ``paused`` (a set the reader of ``events`` shares and
    pauses), until that one's read is over: its snapshots are handed over, and the next :meth:`advance` (which
    the caller makes once they are loaded) lets the others on."""

    def __init__(
        self,
        wanted: dict[int, dict[TP, int]],
        events: Iterator[ScanEvent],
        paused: set[int] | None = None,
        budget: int | None = None,
    ) -> None:
        self.wanted = wanted
        self._events = events
        self._pickers = {p: SnapshotPicker(w) for p, w in wanted.items()}
        self.paused = set() if paused is None else paused
        self.budget = RESTORE_BYTES_BUDGET if budget is None else budget
        self._on: int | None = None  # the state partition read alone while the others are paused

    @property
    def held(self) -> int:
        """Snapshot bytes held by the state partitions still read."""
        return sum(picker.held for picker in self._pickers.values())

    def _gate(self) -> None:
        """Pause all state partitions still read but one while their bytes pass the budget; else none."""
        if self.held <= self.budget:
            self._on = None
            self.paused.clear()
            return
        if self._on not in self._pickers:
            self._on = max(self._pickers, key=lambda p: self._pickers[p].held)
        self.paused.clear()
        self.paused.update(p for p in self._pickers if p != self._on)

    def advance(self, until: float) -> list[ScanDone]:
        """Read on until a state partition's read is over, then return those over; or until ``until``
        (monotonic), then ``[]``. Events that run out leave every state partition still read at its end (a
        test's list of records); the reader's failure (a KafkaException out of its assign, poll or unassign) ends
        every read left with it, as an error of no partition does. Raises :class:`ReadStopped`."""
        done: list[ScanDone] = []
        self._gate()  # those done last time are loaded now: their bytes let the others on
        try:
            for event in self._events:
                if event is not None and event[0] in self._pickers:
                    partition, what = event
                    if isinstance(what, tuple):
                        self._pickers[partition].add(*what)
                        if what[1] is not None:
                            self._gate()
                    else:
                        done.append(self._over(partition, what))
                if done or time.monotonic() >= until:
                    if not self._pickers:
                        self.close()  # every read over: the reader lets go of the state partitions now
                    return done
        except KafkaException as e:
            return done + [self._over(partition, e) for partition in list(self._pickers)]
        return [self._over(partition, None) for partition in list(self._pickers)]

    def _over(self, partition: int, error: Exception | None) -> ScanDone:
        picker = self._pickers.pop(partition)
        return ScanDone(partition, picker.wanted, {} if error is not None else picker.best, error)

    def close(self) -> None:
        """Give the read up (the reader lets go of the state partitions)."""
        close = getattr(self._events, "close", None)  # a generator's; a test's list iterator has none
        if close is not None:
            close()


class NoInputTopic(Exception):
    """No input topic exists yet: the state topic waits, to be sized by the inputs' partitions."""


class ReadStopped(Exception):
    """A read of the state topic given up because the daemon is stopping."""


class StateStore:
    """The state topic: where snapshots go (through the caller's producer) and come back from."""

    def __init__(self, topic: str, client_conf: dict[str, Any], read_timeout_s: float = 60.0) -> None:
        self.topic = topic
        self.client_conf = client_conf
        self.read_timeout_s = read_timeout_s
        self.partitions = 0
        self.topics: set[str] = set()  # the cluster's topics, as ensure_topic last listed them
        self._slot: dict[TP, int] = {}
        self._reader: Consumer | None = None
        self._admin: AdminClient | None = None
        self._check_at = time.monotonic() + CHECK_EVERY_S  # check_topic: the next time it asks (ensure_topic: now)
        self.missing = False  # check_topic found it gone and could not make it again
        # its id as check_topic last found it (None: not known yet, or made by this instance since): another id
        # is another topic, made since by someone else with the same partition count
        self._topic_id: str | None = None
        self._ids = True  # whether to ask DescribeTopics (False: the brokers refused it; their metadata is asked)
        self._ids_said = False  # said once that the brokers give no topic id

    def admin(self) -> AdminClient:
        """The admin client, made at the first call and kept: a new client costs a connection (and a token)."""
        if self._admin is None:
            # a metadata request for a missing topic does not create it (librdkafka's default for producers, which
            # an admin client is, lets a broker with auto.create.topics.enable make it with its own defaults)
            self._admin = AdminClient({**self.client_conf, "allow.auto.create.topics": False})
        return self._admin

    def serve(self) -> None:
        """Serve the admin client's events (its error_cb), if it has been made: nothing else polls it, and the
        lookups of the waiting partitions' lag use it at every metrics refresh."""
        if self._admin is not None:
            self._admin.poll(0)

    def ensure_topic(
        self,
        reads: Callable[[str], bool],
        wanted_partitions: int | None,
        timeout_s: float = 30.0,
        listed: Sequence[str] = (),
    ) -> int:
        """Create the state topic (compacted) if missing, with ``wanted_partitions`` or as many
        as the most an input topic has (``reads``: whether a topic is an input); return its
        partition count. Raises :class:`NoInputTopic` while it is missing, no count is
        configured and no input topic exists yet; ``listed``: the input topics the
        configuration names, to warn about those missing when it is created."""
        admin = self.admin()
        meta = admin.list_topics(timeout=timeout_s)
        self.topics = {t for t, m in meta.topics.items() if m.error is None}  # what the cluster has now
        existing = meta.topics.get(self.topic)
        if existing is None or existing.error is not None:
            topics = meta.topics.items()
            inputs = [len(m.partitions) for t, m in topics if t != self.topic and reads(t) and m.error is None]
            if not wanted_partitions and not inputs:
                # a topic's partitions can be added, never removed: created now, it would have 1 partition
                # for good, and every input partition's snapshots would share it
                raise NoInputTopic(self.topic)
            count = wanted_partitions or max(inputs)
            missing = set(listed) - self.topics
            if not wanted_partitions and missing:
                log.warning(
                    "creating the state topic %s with %d partitions, the widest input's that exists; %s not "
                    "visible yet: if wider, set kafka.state_partitions (partitions can be added, never removed)",
                    self.topic, count, ", ".join(sorted(missing)),
                )  # fmt: skip
            futures = admin.create_topics(
                [NewTopic(self.topic, count, -1, config=STATE_TOPIC_CONFIG)], operation_timeout=timeout_s
            )
            try:
                futures[self.topic].result(timeout_s)
                log.info("created state topic %s (%d partitions, compacted)", self.topic, count)
            except KafkaException as e:
                if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
            meta = admin.list_topics(self.topic, timeout=timeout_s)
            existing = meta.topics[self.topic]
            if existing.error is not None or not existing.partitions:  # made, not in the metadata yet
                self.partitions = count
                return count
        else:
            self._check_existing(admin, len(existing.partitions), wanted_partitions, timeout_s)
        self.partitions = len(existing.partitions)
        return self.partitions

    def check_topic(self, timeout_s: float) -> str:
        """Whether the state topic is still there as the daemon uses it, asked at most every ``CHECK_EVERY_S``
        (before snapshots are written), in one DescribeTopics request. A state topic deleted while the daemon
        runs took every snapshot with it, and those written after went nowhere: Tansu acknowledges them, Apache
        Kafka retries them until message.timeout.ms (an exactly_once transaction holding one is aborted then),
        or a broker creating topics on first use makes it again with its defaults (cleanup.policy=delete, its
        partition count). Returns:

        - ``"unchecked"``: not asked this time (asked less than ``CHECK_EVERY_S`` ago, or the brokers did not
          answer: the snapshots' writes say the rest); ``missing`` says what the last check found;
        - ``"ok"``: as it was;
        - ``"remade"``: it was gone and is made again, compacted, with as many partitions as it had (the
          partitions' mapping stays); or it was made again by someone else (a broker's auto-creation): with
          another partition count, which is taken (a restart takes it too), or with the same count and another
          topic id (brokers without topic ids, before Kafka 2.8, do not show this one). Every snapshot is to be
          written again: none of them is in it. A topic made by someone else has its cleanup.policy checked.
        - ``"missing"``: gone and cannot be made again (no Create permission, say): snapshots are not written
          (they would wait for it, and hold an exactly_once transaction until it aborts); tried again at the
          next check. Counted in distilld_state_errors_total and logged, as the remade case is."""
        now = time.monotonic()
        if now < self._check_at or not self.partitions:
            return "unchecked"
        self._check_at = now + CHECK_EVERY_S
        deadline = now + timeout_s  # for the whole check: a stop's deadline is not overrun by its parts
        admin = self.admin()
        found = self._described(admin, deadline)
        if found is None:
            return "unchecked"
        if found.partitions:
            return self._there(admin, found, deadline)
        try:
            futures = admin.create_topics(
                [NewTopic(self.topic, self.partitions, -1, config=STATE_TOPIC_CONFIG)],
                operation_timeout=max(deadline - time.monotonic(), 0.01),
            )
            futures[self.topic].result(max(deadline - time.monotonic(), 0.01))
        except KafkaException as e:
            code = error_code(e)
            if code == KafkaError.TOPIC_ALREADY_EXISTS:
                # there after all (a metadata answer that missed it), or made meanwhile by someone else, maybe
                # with another partition count: as it is described now
                again = self._described(admin, deadline)
                if again is None or not again.partitions:
                    return "unchecked"
                return self._there(admin, again, deadline)
            self.missing = True
            log.warning(
                "state topic %s is gone (deleted while the daemon ran?) and cannot be made again (%s): "
                "snapshots are not written (distilld_snapshot_failures_total), the windows would be rebuilt "
                "from the log at a hand-over; retried",
                self.topic, e,
            )  # fmt: skip
            return "missing"
        except TimeoutError as e:  # not answered: nothing known
            log.debug("state topic %s: its creation was not answered (%s); asked at the next check", self.topic, e)
            return "unchecked"
        self.missing = False
        self._topic_id = None  # CreateTopics does not say it: the next check learns it
        log.warning(
            "state topic %s was gone (deleted while the daemon ran?): made again (%d partitions, compacted); every "
            "partition's snapshot is written again",
            self.topic, self.partitions,
        )  # fmt: skip
        return "remade"

    def _described(self, admin: AdminClient, deadline: float) -> _Described | None:
        """The state topic as the brokers describe it (0 partitions: not there); None when not answered in
        time, or answered with another error than "unknown topic", which says nothing about whether it is
        there. DescribeTopics never asks a broker to create the topic; brokers that refuse it are asked for the
        topic's metadata instead (no topic id then)."""
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        if not self._ids:
            return self._listed(admin, left)
        try:
            futures = admin.describe_topics(TopicCollection([self.topic]), request_timeout=left)
            found = futures[self.topic].result(max(deadline - time.monotonic(), 0.01))
        except KafkaException as e:
            code = error_code(e)
            if code == KafkaError.UNKNOWN_TOPIC_OR_PART:
                return _Described(0)
            if code in (KafkaError._UNSUPPORTED_FEATURE, KafkaError.UNSUPPORTED_VERSION):
                self._no_ids(f"DescribeTopics refused: {e}", refused=True)
                return self._described(admin, deadline)
            log.debug("state topic %s not checked: %s", self.topic, e)  # a broker answered badly, or too late
            return None
        except TimeoutError as e:
            log.debug("state topic %s not checked: not answered in time (%s)", self.topic, e)
            return None
        topic_id = str(found.topic_id) if getattr(found, "topic_id", None) is not None else _NO_TOPIC_ID
        if topic_id == _NO_TOPIC_ID:
            self._no_ids("Kafka before 2.8", refused=False)
            return _Described(len(found.partitions))
        return _Described(len(found.partitions), topic_id)

    def _listed(self, admin: AdminClient, timeout_s: float) -> _Described | None:
        """The state topic as its metadata lists it (no topic id), for brokers that cannot describe it."""
        try:
            meta = admin.list_topics(self.topic, timeout=timeout_s)  # the admin client creates no topic
        except KafkaException as e:
            log.debug("state topic %s not checked: %s", self.topic, e)
            return None
        found = meta.topics.get(self.topic)
        if found is None or (found.error is not None and found.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
            return _Described(0)
        if found.error is not None:
            log.debug("state topic %s not checked: %s", self.topic, found.error)  # a broker answered badly
            return None
        return _Described(len(found.partitions))

    def _no_ids(self, why: str, refused: bool) -> None:
        """The brokers give no topic id: said once. ``refused``: they refused DescribeTopics, which is not
        asked again (their metadata is)."""
        if refused:
            self._ids = False
        if not self._ids_said:
            self._ids_said = True
            log.info(
                "the brokers give no topic ids (%s): a state topic %s deleted and made again with as many "
                "partitions while the daemon runs is not noticed",
                why, self.topic,
            )  # fmt: skip

    def _there(self, admin: AdminClient, found: _Described, deadline: float) -> str:
        """The topic is there as ``found``: "ok" as it was, or "remade" (back after it was missing, or made again
        by someone else: with another partition count, which is taken as a restart takes it, or another id)."""
        was_missing, self.missing = self.missing, False
        known, self._topic_id = self._topic_id, found.topic_id
        if found.partitions != self.partitions:
            log.warning(
                "state topic %s has %d partitions, not the %d it had: made again by someone else, or by a broker "
                "creating topics on first use (deleted while the daemon ran?); its count is taken, and every "
                "partition's snapshot is written again to it",
                self.topic, found.partitions, self.partitions,
            )  # fmt: skip
            self.partitions = found.partitions
        elif was_missing:
            log.warning("state topic %s is back: every partition's snapshot is written again", self.topic)
        elif known is not None and found.topic_id is not None and found.topic_id != known:
            log.warning(
                "state topic %s was made again (topic id %s, not %s) by someone else, or by a broker creating "
                "topics on first use (deleted while the daemon ran?): the snapshots written before are gone; "
                "every partition's snapshot is written again to it",
                self.topic, found.topic_id, known,
            )  # fmt: skip
        else:
            return "ok"
        self._check_existing(admin, found.partitions, None, max(deadline - time.monotonic(), 0.01))
        return "remade"

    def _check_existing(self, admin: AdminClient, partitions: int, wanted: int | None, timeout_s: float) -> None:
        """A state topic made by someone else (or by a broker's auto-creation, when the daemon's producer
        wrote a snapshot after it was deleted) is used as it is; what would hurt is said at start-up. Not
        compacted, every snapshot ever written stays until retention deletes it: restores read ever more
        (up to ``read_timeout_s``, then the windows are rebuilt from the log), and retention takes the only
        snapshot of a partition idle longer than ``retention.ms``. A partition count other than
        ``kafka.state_partitions`` is only said: the existing topic's count is the one used."""
        if wanted and wanted != partitions:
            log.warning(
                "state topic %s exists with %d partitions, not kafka.state_partitions' %d: it is used as it is",
                self.topic, partitions, wanted,
            )  # fmt: skip
        try:
            configs = topic_config(admin, self.topic, timeout_s).result(timeout_s)
        except (KafkaException, TimeoutError) as e:  # no DescribeConfigs permission, say: nothing to tell
            log.info(
                "cannot read the state topic %s's configuration (%s): its cleanup.policy is not checked", self.topic, e
            )
            return
        policy = configs.get("cleanup.policy")
        value = None if policy is None else policy.value
        if value is not None and "compact" not in value.split(","):
            log.warning(
                "state topic %s has cleanup.policy=%s, not compact: every snapshot written stays until retention "
                "deletes it, so restores read more and more (past %.0fs the windows are rebuilt from the log "
                "instead) and a partition idle longer than retention.ms loses its snapshot; set cleanup.policy="
                "compact on it (kafka-configs.sh --alter --entity-type topics --entity-name %s --add-config "
                "cleanup.policy=compact)",
                self.topic, value, self.read_timeout_s, self.topic,
            )  # fmt: skip

    def partition_of(self, tp: TP) -> int:
        return tp[1] % self.partitions

    def write(
        self,
        produce: Callable[[str, bytes, bytes, int, list[Any]], None],
        tp: TP,
        offset: int,
        data: bytes,
    ) -> None:
        """Produce the chunks of ``tp``'s snapshot covering ``offset``
        with ``produce(topic, key, value, partition, headers)``."""
        slot = self._slot[tp] = 1 - self._slot.get(tp, 1)
        for key, value, headers in chunk_records(tp, slot, offset, data):
            produce(self.topic, key, value, self.partition_of(tp), headers)

    def restored_from(self, tp: TP, slot: int) -> None:
        """``tp``'s state was restored from the snapshot in ``slot``: the next one goes to the other slot. A new
        owner wrote slot 0 first whatever it had restored from, and so could overwrite the one usable snapshot
        with one past a commit that then failed (a revoke's is written before its commit is answered): once
        compacted, the partition had no snapshot to restore from, and was rebuilt from the log."""
        if slot in (0, 1):
            self._slot[tp] = slot

    def read(self, wanted: dict[TP, int], alive: Callable[[], bool] = lambda: True) -> dict[TP, Restored]:
        """The newest usable snapshot of each ``wanted`` partition (committed offsets given), in one call (see
        :meth:`scan`); the first state partition whose read failed or timed out raises its error."""
        found: dict[TP, Restored] = {}
        scan, left = self.scan(wanted, alive), len(self.by_state(wanted))
        while left:
            for done in scan.advance(math.inf):
                if done.error is not None:
                    scan.close()
                    raise done.error
                found.update(done.found)
                left -= 1
        return found

    def by_state(self, wanted: dict[TP, int]) -> dict[int, dict[TP, int]]:
        """``wanted`` by the state partition that holds their snapshots."""
        grouped: dict[int, dict[TP, int]] = {}
        for tp, committed in wanted.items():
            grouped.setdefault(self.partition_of(tp), {})[tp] = committed
        return grouped

    def scan(self, wanted: dict[TP, int], alive: Callable[[], bool] = lambda: True) -> StateScan:
        """The read of the state partitions holding the snapshots of ``wanted``, all at once, to be advanced a
        slice at a time: at most ``read_timeout_s`` of reading (the slices', not the time between them) for them
        all, however many, so an unreadable state topic (its leader down) holds the partitions waiting one
        timeout, not one per state partition. ``alive`` is called while waiting for records (the caller stays
        alive for /healthz): once it answers False (stopping) a slice ends with :class:`ReadStopped`."""
        grouped = self.by_state(wanted)
        paused: set[int] = set()  # the scan's, which it fills and empties; the read pauses them
        return StateScan(grouped, self._read_partitions(self.reader(), sorted(grouped), alive, paused), paused)

    def reader(self) -> Consumer:
        """The state topic's reader, made at the first read and kept: a new client costs a connection (~0.5 s)
        per restore."""
        if self._reader is None:
            self._reader = Consumer(
                {
                    **self.client_conf,
                    "group.id": f"distilld-state-reader-{uuid.uuid4().hex[:8]}",  # assigned, never joins
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "auto.offset.reset": "earliest",
                    "fetch.wait.max.ms": 10,
                }
            )
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _read_partitions(
        self, reader: Consumer, partitions: list[int], alive: Callable[[], bool], paused: set[int]
    ) -> Iterator[ScanEvent]:
        """Every record of the state ``partitions``, read together, each to its end (its end-of-partition event,
        not the high watermark, which some brokers report wrong), as :data:`ScanEvent`; None after each wait that
        brought nothing (a reader of them may stop there). Those in ``paused`` (changed by the caller between
        events) are paused until taken out of it. Past ``read_timeout_s`` of the time spent here (not the
        caller's between events, paused or not) each partition not at its end yet ends with a TimeoutError; an
        error ends the partitions it is about (:func:`_events`)."""
        reader.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
        left = set(partitions)
        spent, resumed = 0.0, time.monotonic()
        held: set[int] = set()  # paused on the reader
        try:
            while left and spent + time.monotonic() - resumed < self.read_timeout_s:
                if not alive():
                    raise ReadStopped(f"{self.topic}{sorted(left)}")
                held = self._hold(reader, held, paused & left)
                m = reader.poll(0.2)  # not consume(): it waits out its timeout to fill a batch
                events = _events(m, left)
                spent += time.monotonic() - resumed
                yield from events
                resumed = time.monotonic()
            for p in sorted(left):
                yield p, TimeoutError(f"state topic {self.topic}[{p}] not read to its end in {self.read_timeout_s}s")
        finally:
            try:
                self._hold(reader, held, set())  # the reader is kept for the next restore: none left paused
            finally:
                reader.unassign()

    def _hold(self, reader: Consumer, held: set[int], wanted: set[int]) -> set[int]:
        """Pause the state partitions newly in ``wanted``, resume those of ``held`` no longer in it."""
        if wanted - held:
            reader.pause([TopicPartition(self.topic, p) for p in sorted(wanted - held)])
        if held - wanted:
            reader.resume([TopicPartition(self.topic, p) for p in sorted(held - wanted)])
        return set(wanted)


def _events(m: Any, left: set[int]) -> list[ScanEvent]:
    """What a message polled from the state partitions ``left`` says (those it ends are taken out of it): an
    error of one ends that one, an error of none (the topic's) every one left."""
    if m is None:
        return [None]
    err, partition = m.error(), m.partition()
    if err is None:
        return [None] if partition is None else [(partition, (m.key(), m.value(), m.headers()))]
    if partition in left:
        left.discard(partition)
        return [(partition, None if err.code() == KafkaError._PARTITION_EOF else KafkaException(err))]
    if partition is None or partition < 0:
        ended: list[ScanEvent] = [(p, KafkaException(err)) for p in sorted(left)]
        left.clear()
        return ended
    return [None]  # of a partition already over
