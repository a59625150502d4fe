"""A producer that never delivers again (every record timing out, none acknowledged) is made anew."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError

from distilld.daemon import output as output_module
from distilld.daemon.metrics import DaemonMetrics
from distilld.daemon.output import Output
from distilld.daemon.progress import PartitionProgress

Report = Callable[[Any, Any], None]


class QueueingProducer:
    """Keeps each record's delivery callback until the test answers it; purge() fails them all (_PURGE_QUEUE)
    once flush() serves their reports, as librdkafka does."""

    def __init__(self) -> None:
        self.pending: list[Report] = []
        self.purged: list[Report] = []

    def produce(self, topic: str, value: Any, key: Any, **kw: Any) -> None:
        self.pending.append(kw["on_delivery"])

    def poll(self, timeout: float = 0) -> int:
        return 0

    def purge(self, *args: Any, **kw: Any) -> None:
        self.purged, self.pending = self.pending, []

    def flush(self, timeout: float = 0) -> int:
        purged, self.purged = self.purged, []
        for report in purged:
            report(KafkaError(KafkaError._PURGE_QUEUE), None)
        return 0


def test_a_producer_whose_every_delivery_times_out_is_made_anew_and_its_records_sent_again(
    monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen with the idempotent producer after the broker lost its state (Tansu killed and restarted with
    none): every delivery ended in _MSG_TIMED_OUT, retried forever, nothing committed again and no word of
    it but the retries. After STUCK_S of timeouts with nothing acknowledged the producer is made anew (an
    ERROR says so), and the records it held are sent again on the new one (at-least-once)."""
    monkeypatch.setattr(output_module, "RETRY_BACKOFF_S", 0.0)
    monkeypatch.setattr(output_module, "STUCK_S", 0.0)
    old, new = QueueingProducer(), QueueingProducer()
    made: list[QueueingProducer] = []

    def remake() -> Any:
        made.append(new)
        return new

    out = Output(old, DaemonMetrics(["f"]), remake=remake)  # type: ignore[arg-type]
    progress = PartitionProgress("t", 0)
    batch = progress.add(10, 2)
    out.send(batch, "o", b"a", b"k", [])
    out.send(batch, "o", b"b", b"k", [])
    timed_out = KafkaError(KafkaError._MSG_TIMED_OUT)
    old.pending.pop(0)(timed_out, None)
    out.poll()
    assert made == [] and len(old.pending) == 2, "one timeout: retried on the same producer"
    with caplog.at_level("ERROR", logger="distilld.output"):
        old.pending.pop(0)(timed_out, None)
        out.poll()
    assert made == [new] and out.producer is new
    assert old.pending == [] and len(new.pending) == 2, "the records the old one held, sent again on the new one"
    assert out.in_flight == 2 and progress.committable is None
    assert [r.getMessage() for r in caplog.records if "made anew" in r.getMessage()]
    for report in new.pending:
        report(None, None)
    assert progress.committable == 10 and out.in_flight == 0


def test_an_acknowledgement_between_timeouts_keeps_the_producer(monkeypatch: Any) -> None:
    """Some records timing out while others are acknowledged is a slow broker, not a stuck producer."""
    monkeypatch.setattr(output_module, "RETRY_BACKOFF_S", 0.0)
    monkeypatch.setattr(output_module, "STUCK_S", 0.0)
    old = QueueingProducer()
    out = Output(old, DaemonMetrics(["f"]), remake=lambda: pytest.fail("made anew"))  # type: ignore[arg-type]
    batch = PartitionProgress("t", 0).add(10, 3)
    for value in (b"a", b"b", b"c"):
        out.send(batch, "o", value, None, [])
    timed_out = KafkaError(KafkaError._MSG_TIMED_OUT)
    old.pending.pop(0)(timed_out, None)
    old.pending.pop(0)(None, None)
    old.pending.pop(0)(timed_out, None)
    out.poll()
    assert out.producer is old


def test_with_no_broker_up_the_producer_is_not_made_anew_and_repeated_remakes_back_off(
    monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """With the brokers down, the new producer timed out as well and was made anew every ~10 minutes, an ERROR each
    time. Now none is made while no broker is up (said once), and one made anew that acknowledges nothing either
    waits twice as long (up to STUCK_MAX_S) before the next; an acknowledgement starts again from STUCK_S."""
    from types import SimpleNamespace

    clock = [0.0]
    monkeypatch.setattr(output_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(output_module, "RETRY_BACKOFF_S", 0.0)
    monkeypatch.setattr(output_module, "STUCK_S", 100.0)
    monkeypatch.setattr(output_module, "STUCK_MAX_S", 300.0, raising=False)
    up = [False]
    made: list[QueueingProducer] = []

    def remake() -> Any:
        made.append(QueueingProducer())
        return made[-1]

    out = Output(QueueingProducer(), DaemonMetrics(["f"]), remake=remake, broker_up=lambda: up[0])  # type: ignore[arg-type]
    out.send(PartitionProgress("t", 0).add(10, 1), "o", b"a", b"k", [])

    def time_out_at(t: float) -> None:
        clock[0] = t
        out.producer.pending.pop(0)(KafkaError(KafkaError._MSG_TIMED_OUT), None)  # type: ignore[attr-defined]
        out.poll()  # served, and sent again

    with caplog.at_level("WARNING", logger="distilld.output"):
        for t in (0.0, 150.0, 300.0, 450.0):
            time_out_at(t)
    assert made == [], "no broker up: a new producer would time out as well"
    assert len([r for r in caplog.records if "no broker is up" in r.getMessage()]) == 1
    up[0] = True
    time_out_at(460.0)
    assert len(made) == 1, "a broker is up: made anew"
    for t in (470.0, 570.0, 660.0):  # the new one times out from 470 on: 200 s now, not 100
        time_out_at(t)
    assert len(made) == 1
    time_out_at(680.0)
    assert len(made) == 2
    for t in (690.0, 980.0):  # then 300 s (STUCK_MAX_S)
        time_out_at(t)
    assert len(made) == 2
    time_out_at(990.0)
    assert len(made) == 3
    clock[0] = 1000.0
    out.producer.pending.pop(0)(None, None)  # type: ignore[attr-defined]
    out.send(PartitionProgress("t", 0).add(20, 1), "o", b"b", b"k", [])
    for t in (1010.0, 1110.0):  # acknowledged since: 100 s again
        time_out_at(t)
    assert len(made) == 4
