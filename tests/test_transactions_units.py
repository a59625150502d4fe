"""librdkafka's transaction error classes, as distilld handles them (a fake producer, no broker)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from distilld.daemon.transactions import TransactionAborted, TransactionFatal, Transactions


class FakeProducer:
    """Raises the queued errors from commit_transaction, one per call, then succeeds."""

    def __init__(self, *errors: KafkaError) -> None:
        self.errors = list(errors)
        self.calls: list[str] = []

    def _maybe_raise(self, name: str) -> None:
        self.calls.append(name)
        if self.errors:
            raise KafkaException(self.errors.pop(0))

    def init_transactions(self, timeout: float) -> None:
        self.calls.append("init")

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def send_offsets_to_transaction(self, offsets: Any, metadata: Any, timeout: float) -> None:
        self.calls.append("offsets")

    def commit_transaction(self, timeout: float) -> None:
        self._maybe_raise("commit")

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")


def _open(producer: FakeProducer, timeout_s: float = 5.0) -> Transactions:
    txn = Transactions(producer, timeout_s, retry_backoff_s=0.0)  # type: ignore[arg-type]
    txn.begin()
    return txn


def test_a_retriable_error_is_retried_until_the_commit_goes_through() -> None:
    producer = FakeProducer(KafkaError(KafkaError._TIMED_OUT, retriable=True))
    txn = _open(producer)
    txn.commit([object()], None)  # type: ignore[list-item]
    assert producer.calls == ["begin", "offsets", "commit", "commit"]
    assert not txn.open


def test_an_error_that_requires_abort_raises_aborted_and_keeps_the_transaction_open() -> None:
    producer = FakeProducer(KafkaError(KafkaError._STATE, txn_requires_abort=True))
    txn = _open(producer)
    with pytest.raises(TransactionAborted):
        txn.commit([], None)
    assert txn.open, "the caller aborts it"
    txn.abort()
    assert producer.calls[-1] == "abort" and not txn.open


def test_a_fatal_error_raises_fatal() -> None:
    producer = FakeProducer(KafkaError(KafkaError._FENCED, fatal=True))
    with pytest.raises(TransactionFatal):
        _open(producer).commit([], None)


def test_a_retriable_error_past_the_deadline_is_raised_for_a_later_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit that keeps failing with a retriable error is retried until its deadline, then the error is
    raised with the transaction still open. The clock is the test's: the third attempt passes the deadline."""
    from distilld.daemon import transactions

    now = [100.0]
    monkeypatch.setattr(transactions, "time", SimpleNamespace(monotonic=lambda: now[0], sleep=lambda s: None))

    class Forever(FakeProducer):
        def commit_transaction(self, timeout: float) -> None:
            self.calls.append("commit")
            if self.calls.count("commit") == 3:
                now[0] += 5.01  # past the 5 s deadline
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, retriable=True))

    producer = Forever()
    txn = _open(producer, timeout_s=5.0)
    with pytest.raises(KafkaException):
        txn.commit([], None)
    assert producer.calls == ["begin", "commit", "commit", "commit"], "retried until the deadline, then raised"
    assert txn.open


def test_offsets_the_coordinator_never_takes_are_waited_for_again_then_the_producer_is_given_up() -> None:
    """librdkafka's send_offsets_to_transaction can wait past its timeout, even for good (probed: still
    waiting minutes after the brokers came back). It is waited for up to each commit's deadline and again
    at the next, never called twice; once it has run past transaction.timeout.ms and socket.timeout.ms (the
    request would have timed out, the coordinator aborted the transaction), the producer is given up (fatal:
    a fresh instance takes over)."""
    import threading

    answer = threading.Event()

    class Silent(FakeProducer):
        def send_offsets_to_transaction(self, offsets: Any, metadata: Any, timeout: float) -> None:
            self.calls.append("offsets")
            answer.wait(30)  # whatever its timeout says

    producer = Silent()
    txn = Transactions(producer, 0.05, retry_backoff_s=0.0, stuck_s=120.0)  # type: ignore[arg-type]
    txn.begin()
    try:
        for _ in range(2):
            with pytest.raises(KafkaException) as raised:
                txn.commit([object()], None)  # type: ignore[list-item]
            assert raised.value.args[0].retriable() and txn.open
        assert producer.calls == ["begin", "offsets"], "waited for again, not called again"
        assert txn._sending is not None
        txn._sending._started -= 121.0  # the call has been running past both timeouts
        with pytest.raises(TransactionFatal):
            txn.commit([object()], None)  # type: ignore[list-item]
        assert producer.calls == ["begin", "offsets"] and "commit" not in producer.calls
    finally:
        answer.set()
