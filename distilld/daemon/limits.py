"""Each destination topic's ``max.message.bytes``, to tell a record the broker refused as too large from its batch.

librdkafka never splits a record batch the broker refuses as too large: every record in it gets
MSG_SIZE_TOO_LARGE, the one at fault and its batch-mates alike. A record whose batch, were it alone in
it, would still be over its topic's ``max.message.bytes`` is at fault whatever batch it was in
(:func:`least_batch_bytes`); one that fits may only have shared a batch that did not.

The limit is read with DescribeConfigs: at start-up (:meth:`TopicLimits.read`, waited for), then again,
without waiting, when a refusal finds the last read older than ``FRESH_S`` (:meth:`TopicLimits.fresh`).
A topic's ``max.message.bytes`` can be changed while the daemon runs (``kafka-configs.sh --alter``),
raised most likely in answer to these very refusals: a limit read long ago could blame a record that
fits the raised one, so only a limit read in the last ``FRESH_S`` decides. The refusal that finds it
older is retried (a second or so), and the next one is judged with what the read found. Only refusals
ask: the records that are delivered cost nothing.

Without an answer (no DescribeConfigs permission, a broker without the setting, a topic that does not
exist yet) a topic has no limit here, said once at INFO, and its refused records are judged as before:
blamed only when larger than the producer's ``batch.size``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from distilld.daemon.clients import topic_config

__all__ = ["BATCH_OVERHEAD", "FRESH_S", "TopicLimits", "least_batch_bytes"]

log = logging.getLogger("distilld.output")

LIMIT = "max.message.bytes"
FRESH_S = 60.0  # a limit read longer ago than this decides nothing: read again (at most this often a topic)
# What Kafka counts against max.message.bytes (batch.sizeInBytes() > max.message.bytes refuses it) is the
# whole record batch: its header of 61 bytes (base offset 8, length 4, leader epoch 4, magic 1, CRC 4,
# attributes 2, last offset delta 4, first and max timestamps 8 + 8, producer id 8, epoch 2, base sequence
# 4, record count 4), then each record: varints of its length, timestamp and offset deltas, key length,
# value length and header count, an attributes byte, each header's name and value lengths (varints) and
# the bytes themselves. Counted here at their least, one byte a varint: never more than the broker counts.
BATCH_OVERHEAD = 61
RECORD_LEAST_OVERHEAD = 7  # length, attributes, timestamp delta, offset delta, key length, value length, headers
HEADER_LEAST_OVERHEAD = 2  # a header's name length and value length


def least_batch_bytes(size: int, headers: int) -> int:
    """The fewest bytes a record batch holding only a record of ``size`` bytes (value, key, header names
    and values: :func:`distilld.daemon.output.record_size`) with ``headers`` headers can take, uncompressed.
    Larger than its topic's ``max.message.bytes``, the record is refused in any batch."""
    return size + BATCH_OVERHEAD + RECORD_LEAST_OVERHEAD + HEADER_LEAST_OVERHEAD * headers


class TopicLimits:
    """``max.message.bytes`` of the topics distilld writes to, as the brokers last said (module docstring).
    ``clock``: monotonic seconds (tests give their own)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.admin: AdminClient | None = None
        self.timeout_s = 5.0
        self.limits: dict[str, tuple[int, float]] = {}  # topic → (max.message.bytes, when it was asked for)
        self._asking: dict[str, tuple[Future[Any], float]] = {}  # topic → its read under way, asked when
        self._asked: dict[str, float] = {}  # topic → when its limit was last asked for, answered or not
        self._said: set[str] = set()  # topics whose limit could not be read, logged once

    def read(self, admin: AdminClient, topics: list[str], timeout_s: float) -> None:
        """Start-up: read the limits of ``topics``, waiting at most ``timeout_s`` in all (an answer
        that comes later is taken at the next refusal)."""
        self.admin, self.timeout_s = admin, timeout_s
        for topic in topics:
            self._ask(topic)
        deadline = self.clock() + timeout_s
        for topic in topics:
            self._take(topic, max(0.0, deadline - self.clock()))
        for topic in topics:
            if topic in self._asking:
                self._unreadable(topic, f"no answer in {timeout_s:g}s")

    def fresh(self, topic: str) -> int | None:
        """``topic``'s ``max.message.bytes`` if read in the last ``FRESH_S``; else None, and a read is
        started (one at a time, at most one every ``FRESH_S``) for the next refusal to use."""
        self._take(topic, 0.0)
        now = self.clock()
        known = self.limits.get(topic)
        if known is not None and now - known[1] < FRESH_S:
            return known[0]
        if topic not in self._asking and now - self._asked.get(topic, float("-inf")) >= FRESH_S:
            self._ask(topic)
        return None

    def _ask(self, topic: str) -> None:
        if self.admin is None:  # not read at start-up (the producer compresses, or a test): nothing to ask
            return
        now = self._asked[topic] = self.clock()
        try:
            future = topic_config(self.admin, topic, self.timeout_s)
        except KafkaException as e:
            self._unreadable(topic, e)
            return
        self._asking[topic] = (future, now)

    def _take(self, topic: str, wait_s: float) -> None:
        """The answer to ``topic``'s read under way, if it has come (within ``wait_s``)."""
        asking = self._asking.get(topic)
        if asking is None:
            return
        future, asked = asking
        if not future.done() and wait_s <= 0:
            return
        try:
            configs = future.result(wait_s)
        except TimeoutError:  # still under way: taken at a later refusal
            return
        except KafkaException as e:  # no DescribeConfigs permission, the topic does not exist (yet), ...
            del self._asking[topic]
            self._unreadable(topic, e)
            return
        del self._asking[topic]
        entry = configs.get(LIMIT)
        try:
            limit = int(entry.value)
        except (AttributeError, TypeError, ValueError):  # a broker that does not give it (Tansu)
            self._unreadable(topic, f"the broker gives no {LIMIT}")
            return
        before = self.limits.get(topic)
        if before is not None and before[0] != limit:
            log.info("topic %s's %s is now %d (was %d)", topic, LIMIT, limit, before[0])
        elif topic in self._said:  # said unreadable before
            self._said.discard(topic)
            log.info("topic %s's %s read at last: %d", topic, LIMIT, limit)
        self.limits[topic] = (limit, asked)

    def _unreadable(self, topic: str, why: object) -> None:
        if topic in self._said:
            return
        self._said.add(topic)
        log.info(
            "cannot read topic %s's %s (%s): a record it refuses as too large is blamed (and follows "
            "processing.on_error) only when larger than the producer's batch.size; smaller, it is retried",
            topic, LIMIT, why,
        )  # fmt: skip
