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
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from distilld.daemon.metrics import DaemonMetrics
from distilld.daemon.progress import Batch

__all__ = ["Output"]

log = logging.getLogger("distilld.output")

Headers = list[Any]
RETRY_BACKOFF_S = 1.0


class Output:
    def __init__(self, producer: Producer, metrics: DaemonMetrics) -> None:
        self.producer = producer
        self.metrics = metrics
        self.in_flight = 0
        self.produced: dict[str, int] = {}
        self._children: dict[str, tuple[Any, Any]] = {}
        self._retry: deque[tuple[float, Message, Batch]] = deque()

    def _count(self, topic: str, size: int) -> None:
        children = self._children.get(topic)
        if children is None:
            m = self.metrics
            children = self._children[topic] = (m.produced.labels(topic), m.bytes_produced.labels(topic))
        children[0].inc()
        children[1].inc(size)
        self.produced[topic] = self.produced.get(topic, 0) + 1

    def _callback(self, batch: Batch) -> Callable[[KafkaError | None, Message], None]:
        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                self.in_flight -= 1
                self._count(msg.topic() or "", len(msg.value() or b""))
                batch.ack()
                return
            self.metrics.produce_errors.inc()
            log.warning("delivery to %s failed (%s); retrying in %.0fs", msg.topic(), err, RETRY_BACKOFF_S)
            self._retry.append((time.monotonic() + RETRY_BACKOFF_S, msg, batch))

        return delivered

    def send(
        self,
        batch: Batch,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        timestamp: int = 0,
        callback: Callable[[KafkaError | None, Message], None] | None = None,
    ) -> Callable[[KafkaError | None, Message], None]:
        """Produce one record for ``batch``; returns the batch's callback for reuse."""
        cb = callback or self._callback(batch)
        self._produce(topic, value, key, headers, timestamp, cb)
        self.in_flight += 1
        return cb

    def _produce(self, topic: str, value: Any, key: Any, headers: Any, timestamp: int, cb: Any) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key, headers=headers, timestamp=timestamp, on_delivery=cb)
                return
            except BufferError:
                # the local queue is full: serve delivery reports until there is room
                self.producer.poll(0.05)

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports and produce again what is due for a retry."""
        self.producer.poll(timeout)
        now = time.monotonic()
        while self._retry and self._retry[0][0] <= now:
            _, msg, batch = self._retry.popleft()
            ts_type, ts = msg.timestamp()
            self._produce(
                msg.topic() or "",
                msg.value(),
                msg.key(),
                msg.headers() or [],
                ts if ts_type != 0 and ts > 0 else 0,
                self._callback(batch),
            )

    def flush(self, deadline: float) -> bool:
        """Wait until every output is acknowledged or ``deadline`` (monotonic) passes."""
        while self.in_flight > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.poll(min(0.1, remaining))
        return True
