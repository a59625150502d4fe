"""The producer side: selected records and dead letters, with delivery tracking.

Every produced record belongs to an input :class:`Batch`; its delivery report
acknowledges it there. A failed delivery (after librdkafka's own retries) is
logged, counted and produced again after a pause, so its batch, and the
commit point behind it, waits instead of skipping it.
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

from distilld.daemon.metrics import DaemonMetrics
from distilld.daemon.progress import Batch
from distilld.daemon.repeats import Repeats

__all__ = ["Output"]

log = logging.getLogger("distilld.output")

Headers = list[Any]
RETRY_BACKOFF_S = 1.0
_PURGED = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)
# what produce() can refuse that no retry changes: the record itself is too large. Anything
# else it raises (an unknown topic or partition: a topic missing or not yet created, metadata
# not there yet, ...) may pass, so the record is retried and its offset waits for it.
_PERMANENT = (KafkaError.MSG_SIZE_TOO_LARGE,)
LOG_EVERY_S = 10.0  # one line per topic and error this often, not one per record


@dataclass(frozen=True)
class Outgoing:
    """One record to produce, kept until acknowledged: a delivery report lacks
    the headers and timestamp, so a retry sends this again, not the report."""

    batch: Batch
    topic: str
    value: bytes | None
    key: bytes | None
    headers: Headers
    timestamp: int


class Output:
    """``transactional``: a failed delivery is not retried but kept in
    ``txn_error``; the transaction it belongs to must abort. ``waiting()``: called
    while the producer's queue is full; False (stopping) stops waiting for room."""

    def __init__(
        self,
        producer: Producer,
        metrics: DaemonMetrics,
        transactional: bool = False,
        waiting: Callable[[], bool] = lambda: True,
    ) -> None:
        self.producer = producer
        self.metrics = metrics
        self.transactional = transactional
        self.waiting = waiting  # called while the producer's queue is full: False gives up (stopping)
        self.txn_error: KafkaError | None = None
        self.in_flight = 0
        self.produced: dict[str, int] = {}  # acknowledged records per topic
        self.produced_bytes: dict[str, int] = {}
        self._reported: dict[str, tuple[int, int]] = {}  # what the metrics have of both
        self._children: dict[str, tuple[Any, Any]] = {}
        self._retry: deque[tuple[float, Outgoing]] = deque()
        self._repeats = Repeats(LOG_EVERY_S)  # per (topic, error)

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
            self.in_flight -= 1
            topic = out.topic
            self.produced[topic] = self.produced.get(topic, 0) + 1
            self.produced_bytes[topic] = self.produced_bytes.get(topic, 0) + len(out.value or b"")
            out.batch.ack()
            return
        if self.transactional:
            self.in_flight -= 1
            if err.code() not in _PURGED:  # purged by our own abort: not a new failure
                self.metrics.produce_errors.inc()
                self._warn(logging.WARNING, out.topic, err, "delivery failed, the transaction will abort:")
                self.txn_error = self.txn_error or err
            return
        self.metrics.produce_errors.inc()
        self._warn(logging.WARNING, out.topic, err, f"delivery failed, retrying every {RETRY_BACKOFF_S:.0f}s:")
        self._retry.append((time.monotonic() + RETRY_BACKOFF_S, out))

    def send(
        self, batch: Batch, topic: str, value: bytes | None, key: bytes | None, headers: Headers, timestamp: int = 0
    ) -> None:
        """Produce one record for ``batch``; its acknowledgement (or retries) follow."""
        self.in_flight += 1
        self._produce(Outgoing(batch, topic, value, key, headers, timestamp))

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
            if isinstance(err, KafkaError) and err.code() in _PERMANENT:
                # larger than message.max.bytes: it can never be delivered, so it is counted
                # and logged, and its batch does not wait for it
                self._warn(logging.ERROR, out.topic, err, "record refused, dropped:")
                self.in_flight -= 1
                out.batch.ack()
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
        self._publish()
        now = time.monotonic()
        while self._retry and self._retry[0][0] <= now:
            self._produce(self._retry.popleft()[1])

    def discard(self) -> None:
        """After an aborted transaction: serve the purged deliveries and forget them."""
        self.producer.poll(0)
        self.in_flight = 0
        self._retry.clear()
        self.txn_error = None

    def flush(self, deadline: float) -> bool:
        """Wait until every output is acknowledged or ``deadline`` (monotonic) passes."""
        while self.in_flight > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.poll(min(0.1, remaining))
        return True
