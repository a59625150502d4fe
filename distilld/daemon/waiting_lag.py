"""Consumer lag of partitions the group assigned that the consumer has not been given yet.

librdkafka's statistics (:meth:`DaemonMetrics.observe_statistics`) cover only the partitions assigned to
the client; those waiting for their state (restoring, or waiting for where their windows start) are not,
and nothing of them is read meanwhile: without this their lag left ``distilld_consumer_lag`` at each
rebalance. Their ends are asked in one ListOffsets of them all, sent at a metrics refresh and collected at
a later one: the loop never waits for the brokers. A partition whose commit is not known yet (its lookup
still failing) gets no value: its lag is unknown, and the log's start would count a retained topic's
whole history as lag (firing DistilldLagGrowing, then dropping once the commit is read); /readyz and
DistilldNotReady say that its commit cannot be read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from confluent_kafka import IsolationLevel, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from distilld.daemon.clients import error_text
from distilld.daemon.metrics import DaemonMetrics
from distilld.daemon.partition import TP
from distilld.daemon.repeats import Repeats

__all__ = ["WaitingLag"]

log = logging.getLogger("distilld")


class WaitingLag:
    """The lag of waiting partitions, from their end (the high watermark, or under read_committed the last
    stable offset, where librdkafka's consumer_lag counts to) minus their committed offset. At most one
    lookup is in flight; a failed one (``request_timeout`` ends one the brokers do not answer) is counted in
    ``distilld_offset_lookup_errors_total{lookup="high_watermark"}``, logged once a minute, and asked again
    at the next refresh. A partition handed to the consumer keeps its value until librdkafka's statistics
    set the same series (removed in between, its lag would drop for a statistics interval); a revoked or
    lost one is forgotten by the loop (:meth:`DaemonMetrics.forget_partitions`)."""

    def __init__(
        self,
        metrics: DaemonMetrics,
        admin: Callable[[], AdminClient],
        read_committed: bool,
        timeout_s: float,
    ) -> None:
        self.metrics = metrics
        self.admin = admin
        self.isolation = IsolationLevel.READ_COMMITTED if read_committed else IsolationLevel.READ_UNCOMMITTED
        self.timeout_s = timeout_s
        self._asked: dict[TP, Future[Any]] = {}
        self._repeats = Repeats(60.0)

    def refresh(self, committed: Mapping[TP, int]) -> None:
        """Called every ``metrics.refresh_ms`` with the waiting partitions whose committed offset is known:
        sets the lag of those a finished lookup answered, and asks again once none is in flight."""
        if self._asked and not all(f.done() for f in self._asked.values()):
            return  # the brokers have not answered yet (request_timeout ends it)
        asked, self._asked = self._asked, {}
        failed: list[str] = []
        for tp, future in asked.items():
            try:
                end = int(future.result().offset)
            except KafkaException as e:
                failed.append(error_text(e))
                continue
            offset = committed.get(tp)
            if offset is not None and end >= 0:  # else assigned or revoked since: not ours to set
                self.metrics.lag.labels(tp[0], str(tp[1])).set(max(0, end - offset))
        if failed:
            self._failed(failed[0])
        if committed:
            self._ask(list(committed))

    def _ask(self, partitions: list[TP]) -> None:
        latest = OffsetSpec.latest()
        try:
            futures = self.admin().list_offsets(
                {TopicPartition(t, p): latest for t, p in partitions},
                isolation_level=self.isolation,
                request_timeout=self.timeout_s,
            )
        except KafkaException as e:
            self._failed(error_text(e))
            return
        self._asked = {(tp.topic, tp.partition): f for tp, f in futures.items()}

    def _failed(self, reason: str) -> None:
        self.metrics.offset_lookup_errors.labels("high_watermark").inc()
        more = self._repeats.note("failed")
        if more is not None:
            log.warning(
                "cannot look up the end of partitions waiting for their state (%s): their consumer lag is not "
                "updated; retrying at each metrics refresh%s",
                reason,
                more,
            )
