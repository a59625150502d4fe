"""The producer side: selected records and dead letters, with delivery tracking.

Every produced record belongs to an input :class:`Batch`; its delivery report
acknowledges it there. A failed delivery (after librdkafka's own retries) is
logged, counted and produced again after a pause, so its batch, and the
commit point behind it, waits instead of skipping it.

A record refused for what it is (:func:`blamed`: larger than the topic takes, a
timestamp or a record the broker does not accept; its topic's ``max.message.bytes``
from :class:`~distilld.daemon.limits.TopicLimits`) is not retried: no retry
changes it. It follows ``processing.on_error`` as an undecodable input does:
``dlq``: to the DLQ topic with the reason; ``skip``: dropped, counted; ``fail``:
the daemon stops, its offset not committed. A dead letter the DLQ topic refuses
too is dropped, logged at ERROR and counted. Either way its batch no longer
waits for it. With ``exactly_once`` librdkafka makes the transaction abort on
any failed delivery: the refusal is remembered (``refused``), and when the
rewound partition sends the record again it is routed at once, so the next
transaction commits instead of aborting again.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from distilld.daemon.limits import TopicLimits, least_batch_bytes
from distilld.daemon.metrics import DaemonMetrics
from distilld.daemon.progress import Batch
from distilld.daemon.repeats import Repeats

__all__ = ["Output"]

log = logging.getLogger("distilld.output")

Headers = list[Any]
Source = tuple[str, int, int]  # the input record an output comes from: topic, partition, offset
RETRY_BACKOFF_S = 1.0
_PURGED = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)
LOG_EVERY_S = 10.0  # one line per topic and error this often, not one per record
REFUSED = "refused"  # the reason label of refused records in distilld_records_dlq_total / _skipped_total
REFUSALS_KEPT = 10_000  # exactly_once: refusals remembered for the redo after the abort, the oldest forgotten
# a broker's verdict on records that no retry changes; librdkafka retries none of them. A Kafka broker
# (2.4+, KIP-467) names the records of a batch it refused for their timestamp or their content (a null
# key on a compacted topic, ...): librdkafka gives those the error, and the other records of the batch
# _INVALID_DIFFERENT_RECORD, which is retried. MSG_SIZE_TOO_LARGE judges the batch: see blamed().
# CORRUPT_MESSAGE (INVALID_MSG, a CRC mismatch) is retriable to librdkafka and Kafka alike: the bytes
# were damaged on the way, not the record; it is retried as any other failure.
_RECORD_REFUSALS = (KafkaError.INVALID_TIMESTAMP, KafkaError.INVALID_RECORD)
# an idempotent producer fenced (Tansu, once a topic it wrote to was deleted and made again) stays fenced
_FENCED = (KafkaError.PRODUCER_FENCED, KafkaError._FENCED, KafkaError.INVALID_PRODUCER_EPOCH, KafkaError._FATAL)
# every delivery timing out (after message.timeout.ms), none acknowledged, this long: the producer is made anew
# (Output._remake). Seen with the idempotent producer once the broker had lost its state (Tansu killed and
# restarted with none): every record ended in _MSG_TIMED_OUT, retried without end, nothing more committed
STUCK_S = 300.0
# a producer made anew that acknowledges nothing either waits twice as long before the next, up to this: made anew
# every ~10 minutes (message.timeout.ms + STUCK_S), with an ERROR each time, it helped no more than the first
STUCK_MAX_S = 3600.0


def _code(err: Any) -> int | None:
    return err.code() if isinstance(err, KafkaError) else None


def record_size(value: bytes | None, key: bytes | None, headers: Headers) -> int:
    """What a record brings to a batch, at least: its value, key and headers (the framing comes on top)."""
    size = len(value or b"") + len(key or b"")
    for name, data in headers:
        size += len(name) + len(data or b"")
    return size


def blamed(err: Any, size: int, batch_bytes: int, topic_limit: int | None = None, headers: int = 0) -> bool:
    """Whether the broker refused this record for what it is, so that no retry can deliver it.
    librdkafka does not split a batch the broker refuses as too large: every record in it gets
    MSG_SIZE_TOO_LARGE. It only adds a record to a batch while the batch stays within
    min(batch.size, message.max.bytes) (``batch_bytes``), so a record larger than that travels
    alone and was refused alone: it is blamed. So is one (of ``size`` bytes, ``headers`` headers)
    that a batch of its own would not fit either: over its topic's max.message.bytes
    (``topic_limit``, when known) with the least framing Kafka counts (:func:`least_batch_bytes`).
    Any other may have been refused for the batch it was in (the topic's max.message.bytes below
    batch.size): not blamed, retried."""
    code = _code(err)
    if code == KafkaError.MSG_SIZE_TOO_LARGE:
        if size > batch_bytes:
            return True
        return topic_limit is not None and least_batch_bytes(size, headers) > topic_limit
    return code in _RECORD_REFUSALS


@dataclass(slots=True)
class Outgoing:
    """One record to produce, kept until acknowledged: a delivery report lacks
    the headers and timestamp, so a retry sends this again, not the report.
    Not changed once made (not frozen: a frozen dataclass's __init__ sets each
    field through object.__setattr__, ~4x the cost, and one is made per output)."""

    batch: Batch
    topic: str
    value: bytes | None
    key: bytes | None
    headers: Headers
    timestamp: int
    source: Source | None = None

    def where(self) -> str:
        return "an output" if self.source is None else f"{self.source[0]}[{self.source[1]}]@{self.source[2]}"


class Output:
    """``transactional``: a failed delivery is not retried but kept in
    ``txn_error``; the transaction it belongs to must abort. ``waiting()``: called
    while the producer's queue is full; False (stopping) stops waiting for room.
    ``on_error``, ``dlq_topic``, ``fail(reason)``: where a record the brokers refuse
    for what it is goes (module docstring). ``batch_bytes``: the producer's
    min(batch.size, message.max.bytes) (:func:`blamed`); ``limits``: the topics'
    max.message.bytes, asked only when a record no larger than that is refused as
    too large (None: not known, as when the producer compresses)."""

    def __init__(
        self,
        producer: Producer,
        metrics: DaemonMetrics,
        transactional: bool = False,
        waiting: Callable[[], bool] = lambda: True,
        on_error: str = "skip",
        dlq_topic: str | None = None,
        fail: Callable[[str], None] | None = None,
        batch_bytes: int = 1_000_000,
        limits: TopicLimits | None = None,
        remake: Callable[[], Producer] | None = None,
        broker_up: Callable[[], bool] = lambda: True,
    ) -> None:
        self.producer = producer
        self.metrics = metrics
        self.transactional = transactional
        self.waiting = waiting  # called while the producer's queue is full: False gives up (stopping)
        self.on_error = on_error
        self.dlq_topic = dlq_topic
        self.fail = fail
        self.batch_bytes = batch_bytes
        self.limits = limits
        # exactly_once: (topic, source) → why that topic refused that record, for the redo after the abort
        self.refused: dict[tuple[str, Source], KafkaError] = {}
        self.txn_error: KafkaError | None = None
        self.in_flight = 0
        self.dead = False  # the producer can deliver nothing again (_fenced)
        self.produced: dict[str, int] = {}  # acknowledged records per topic
        self.produced_bytes: dict[str, int] = {}
        self._reported: dict[str, tuple[int, int]] = {}  # what the metrics have of both
        self._children: dict[str, tuple[Any, Any]] = {}
        self._retry: deque[tuple[float, Outgoing]] = deque()
        self._repeats = Repeats(LOG_EVERY_S)  # per (topic, error)
        self.remake = remake  # a new producer like this one (not transactional: its transactions hold it)
        self._timing_out_since: float | None = None  # the first delivery timed out since the last acknowledged
        self._remake_due = False
        # whether a broker answers (the consumer's statistics): with none, a new producer would time out as well
        self.broker_up = broker_up
        self._stuck_s = STUCK_S  # how long deliveries time out before the producer is made anew (doubling)
        self._postponed = False  # a remake was due with no broker up: said once

    def _warn(self, level: int, topic: str, err: Any, what: str) -> None:
        """Log a failure once per topic and error every LOG_EVERY_S, with how many were
        left out: with the output topic gone every in-flight record fails, each retry again."""
        admitted = self._repeats.admit((topic, err.name() if isinstance(err, KafkaError) else str(err)))
        if admitted is None:
            return
        left_out, since = admitted
        more = f" ({left_out} more like it in the last {since:.0f}s)" if left_out else ""
        log.log(level, "%s to %s (%s)%s", what, topic, err, more)

    def _publish(self) -> None:
        """Acknowledged records and bytes into the metrics, once per poll rather than per
        record (a prometheus-client ``inc`` takes a lock: a tenth of the loop's time)."""
        for topic, count in self.produced.items():
            reported, size = self._reported.get(topic, (0, 0))
            if count == reported:
                continue
            children = self._children.get(topic)
            if children is None:
                m = self.metrics
                children = self._children[topic] = (m.produced.labels(topic), m.bytes_produced.labels(topic))
            total = self.produced_bytes[topic]
            children[0].inc(count - reported)
            children[1].inc(total - size)
            self._reported[topic] = (count, total)

    def _delivered(self, out: Outgoing, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self._timing_out_since = None
            self._stuck_s = STUCK_S
            self._postponed = False
            self.in_flight -= 1
            topic = out.topic
            self.produced[topic] = self.produced.get(topic, 0) + 1
            self.produced_bytes[topic] = self.produced_bytes.get(topic, 0) + len(out.value or b"")
            out.batch.ack()
            return
        code = _code(err)
        if self.transactional and code in _PURGED:  # purged by our own abort: not a new failure
            self.in_flight -= 1
            return
        self.metrics.produce_errors.inc()
        size = record_size(out.value, out.key, out.headers)
        limit = self._topic_limit(out, code, size)
        is_blamed = blamed(err, size, self.batch_bytes, limit, len(out.headers))
        if self.transactional:
            # librdkafka: a failed delivery makes the transaction abortable, whatever its cause
            self.in_flight -= 1
            self.txn_error = self.txn_error or err
            if is_blamed and out.source is not None:
                self._remember(out, err)
                if self.on_error == "fail" and out.topic != self.dlq_topic:
                    self._stop(out, err)
                else:
                    self._warn(logging.WARNING, out.topic, err, "record refused, the transaction will abort and "
                               f"the record follow processing.on_error ({self.on_error}) when redone:")  # fmt: skip
            elif code == KafkaError.MSG_SIZE_TOO_LARGE:
                self._batch_too_large(out, err, limit, "the transaction will abort and be redone")
            else:
                self._warn(logging.WARNING, out.topic, err, "delivery failed, the transaction will abort:")
            return
        if is_blamed:
            self._refuse(out, err)
            return
        if code in _FENCED or (isinstance(err, KafkaError) and err.fatal()):
            self._fenced(out, err)
            return
        if code == KafkaError._MSG_TIMED_OUT and self.remake is not None:
            now = time.monotonic()
            if self._timing_out_since is None:
                self._timing_out_since = now
            elif now - self._timing_out_since >= self._stuck_s:
                if self.broker_up():
                    self._remake_due = True  # not from this callback: poll() does it, once this producer's poll returns
                elif not self._postponed:
                    self._postponed = True
                    log.warning(
                        "no output acknowledged for %.0fs, every delivery timing out, and no broker is up: the "
                        "producer is made anew only once one is (a new one would time out as well); retrying",
                        now - self._timing_out_since,
                    )
        retrying = f"retrying every {RETRY_BACKOFF_S:.0f}s"
        if code == KafkaError.MSG_SIZE_TOO_LARGE:
            self._batch_too_large(out, err, limit, retrying)
        else:
            self._warn(logging.WARNING, out.topic, err, f"delivery failed, {retrying}:")
        self._retry.append((time.monotonic() + RETRY_BACKOFF_S, out))

    def _topic_limit(self, out: Outgoing, code: int | None, size: int) -> int | None:
        """The topic's max.message.bytes, when it can decide a refusal as too large that batch.size does not."""
        if self.limits is None or code != KafkaError.MSG_SIZE_TOO_LARGE or size > self.batch_bytes:
            return None
        return self.limits.fresh(out.topic)

    def _batch_too_large(self, out: Outgoing, err: KafkaError, limit: int | None, then: str) -> None:
        size = record_size(out.value, out.key, out.headers)
        if limit is None:
            what = (
                f"a batch refused as too large; this record ({size} bytes) is not larger than the producer's "
                f"batch.size ({self.batch_bytes}), so the batch it shared may be what is over the topic's "
                "max.message.bytes (not known here yet): set kafka.producer batch.size below that (a record "
                "still refused then is larger than it, and follows processing.on_error); " + then + ":"
            )
        else:
            what = (
                f"a batch refused as too large; this record ({size} bytes) fits the topic's max.message.bytes "
                f"({limit}) and is not larger than the producer's batch.size ({self.batch_bytes}), so the batch "
                f"it shared is what is over the limit, most likely: set kafka.producer batch.size below {limit}; "
                + then
                + ":"
            )
        self._warn(logging.ERROR, out.topic, err, what)

    def _fenced(self, out: Outgoing, err: KafkaError) -> None:
        """The producer can deliver nothing again (fenced, or a fatal error of the idempotent producer): retried,
        the record failed every second for good and nothing more was committed. The daemon stops (exit 1) with
        the record uncommitted, and its next instance, with a new producer, reads it again. Said once, for the
        first record: the others in flight fail the same way."""
        self.in_flight -= 1
        if self.dead:
            return
        self.dead = True
        reason = f"{out.where()}: the producer cannot deliver again ({err.str()}): a new instance takes over"
        if self.fail is not None:
            self.fail(reason)
        else:
            log.error("%s", reason)

    def _remember(self, out: Outgoing, err: KafkaError) -> None:
        assert out.source is not None
        self.refused[(out.topic, out.source)] = err
        if len(self.refused) > REFUSALS_KEPT:
            del self.refused[next(iter(self.refused))]

    def _stop(self, out: Outgoing, err: KafkaError) -> None:
        """on_error: fail: the daemon stops, the record's offset not committed (its batch is not acknowledged)."""
        if self.transactional:
            self.txn_error = self.txn_error or err  # nothing past it may be committed
        reason = f"{out.where()}: refused by {out.topic} ({err.str()})"
        if self.fail is not None:
            self.fail(reason)
        else:
            log.error("%s", reason)

    def _refuse(self, out: Outgoing, err: KafkaError) -> None:
        """``out`` (counted in flight) can never be written to its topic: processing.on_error says where it goes."""
        if out.topic == self.dlq_topic:
            # a dead letter the DLQ topic refuses too: there is nowhere left to keep it
            self.metrics.skipped.labels(REFUSED).inc()
            self._warn(
                logging.ERROR, out.topic, err, f"dead letter of {out.where()} refused by the DLQ topic, dropped:"
            )
            self.in_flight -= 1
            out.batch.ack()
        elif self.on_error == "fail":
            self.in_flight -= 1
            self._stop(out, err)
        elif self.on_error == "dlq" and self.dlq_topic:
            self.metrics.dlq.labels(REFUSED).inc()
            self._warn(logging.WARNING, out.topic, err, f"record of {out.where()} refused, sent to {self.dlq_topic}:")
            headers = [*out.headers, ("distilld-error", f"refused by {out.topic}: {err.str()}".encode())]
            if out.source is not None:
                headers += [
                    ("distilld-source-topic", out.source[0].encode()),
                    ("distilld-source-partition", str(out.source[1]).encode()),
                    ("distilld-source-offset", str(out.source[2]).encode()),
                ]
            # a timestamp the output topic refuses: the DLQ topic would most likely refuse it as well
            timestamp = 0 if err.code() == KafkaError.INVALID_TIMESTAMP else out.timestamp
            self._dispatch(Outgoing(out.batch, self.dlq_topic, out.value, out.key, headers, timestamp, out.source))
        else:
            self.metrics.skipped.labels(REFUSED).inc()
            self._warn(logging.WARNING, out.topic, err, f"record of {out.where()} refused, dropped (on_error: skip):")
            self.in_flight -= 1
            out.batch.ack()

    def _dispatch(self, out: Outgoing) -> None:
        """Produce ``out``, unless its topic refused it before (exactly_once: redone after the abort)."""
        if self.refused and out.source is not None:
            err = self.refused.get((out.topic, out.source))
            if err is not None:
                self._refuse(out, err)
                return
        self._produce(out)

    def send(
        self,
        batch: Batch,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        timestamp: int = 0,
        source: Source | None = None,
    ) -> None:
        """Produce one record for ``batch`` (from input record ``source``); its acknowledgement (or retries) follow."""
        self.in_flight += 1
        self._dispatch(Outgoing(batch, topic, value, key, headers, timestamp, source))

    def _produce(self, out: Outgoing) -> None:
        cb = partial(self._delivered, out)
        while True:
            try:
                self.producer.produce(
                    out.topic, out.value, out.key, headers=out.headers, timestamp=out.timestamp, on_delivery=cb
                )
                return
            except BufferError:
                # the local queue is full: serve delivery reports until there is room; a stop
                # meanwhile leaves the record unsent, as the refusals below do
                if self.waiting():
                    self.producer.poll(0.05)
                    continue
                err = KafkaError(KafkaError._QUEUE_FULL)
            except KafkaException as e:
                err = e.args[0]
            self.metrics.produce_errors.inc()
            if not self.transactional and isinstance(err, KafkaError) and (err.fatal() or err.code() in _FENCED):
                self._fenced(out, err)  # a fatal producer refuses every record: retried, a stop waited it out
            elif isinstance(err, KafkaError) and err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                # larger than the producer's message.max.bytes: it can never be delivered (the DLQ copy
                # of it neither, from the same producer), so it follows processing.on_error at once
                self._refuse(out, err)
            elif self.transactional:
                # not sent: the transaction must not commit the offsets past it
                self._warn(logging.WARNING, out.topic, err, "cannot produce, the transaction will abort:")
                self.in_flight -= 1
                self.txn_error = self.txn_error or err
            else:
                # e.g. the topic does not exist (yet): keep it, and its offset, until it is delivered
                retrying = f"cannot produce, retrying every {RETRY_BACKOFF_S:.0f}s:"
                self._warn(logging.WARNING, out.topic, err, retrying)
                self._retry.append((time.monotonic() + RETRY_BACKOFF_S, out))
            return

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports and produce again what is due for a retry."""
        self.producer.poll(timeout)
        if self._remake_due:
            self._remake()
        self._publish()
        now = time.monotonic()
        while self._retry and self._retry[0][0] <= now:
            self._produce(self._retry.popleft()[1])

    def _remake(self) -> None:
        """Every delivery has timed out for STUCK_S, none acknowledged: the producer is made anew, as a restart
        would (the old one is stuck: its idempotence state the brokers no longer know, most likely). Its records
        are purged, and their delivery reports (failed) send them again on the new one: the brokers may have
        some of them already, duplicates at-least-once allows."""
        self._remake_due = self._postponed = False
        assert self.remake is not None
        since, self._timing_out_since = self._timing_out_since, None
        waited, self._stuck_s = self._stuck_s, min(2 * self._stuck_s, STUCK_MAX_S)
        log.error(
            "no output acknowledged for %.0fs, every delivery timing out (message.timeout.ms) with a broker up: the "
            "producer is made anew, and its %d records sent again (some may be duplicates); should the new one "
            "acknowledge nothing either, the next is made after %.0fs of timeouts, not %.0fs",
            time.monotonic() - (since or time.monotonic()), self.in_flight, self._stuck_s, waited,
        )  # fmt: skip
        old, self.producer = self.producer, self.remake()
        old.purge()
        old.flush(1.0)  # serves the purged records' delivery reports: each is retried, on the new producer

    def discard(self) -> None:
        """After an aborted transaction: serve the purged deliveries and forget them."""
        self.producer.poll(0)
        self.in_flight = 0
        self._retry.clear()
        self.txn_error = None

    def flush(self, deadline: float) -> bool:
        """Wait until every output is acknowledged or ``deadline`` (monotonic) passes (at once when the
        producer can deliver nothing again)."""
        while self.in_flight > 0 and not self.dead:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.poll(min(0.1, remaining))
        return self.in_flight == 0
