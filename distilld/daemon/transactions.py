"""The transactional producer of ``processing.guarantee: exactly_once``.

Outputs, dead letters, snapshots and the consumed offsets of an interval go
to the brokers in one transaction. librdkafka sorts its errors into three
kinds, handled as it documents: a *retriable* error is retried until the
timeout; one that *requires abort* raises :class:`TransactionAborted` (the
caller aborts and rewinds its partitions to the last commit); anything else
is fatal (:class:`TransactionFatal`: the producer is fenced or broken, and
the daemon stops so that a fresh instance takes over).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

__all__ = ["TransactionAborted", "TransactionFatal", "Transactions"]

log = logging.getLogger("distilld.transactions")
T = TypeVar("T")


class TransactionAborted(RuntimeError):
    """The transaction cannot be committed; abort it and redo its work."""


class TransactionFatal(RuntimeError):
    """The transactional producer cannot go on (fenced, or a fatal error)."""


class Transactions:
    def __init__(
        self, producer: Producer, timeout_s: float, retry_backoff_s: float = 0.2, stuck_s: float = 120.0
    ) -> None:
        self.producer = producer
        self.timeout_s = timeout_s
        self.retry_backoff_s = retry_backoff_s
        self.stuck_s = stuck_s  # a call running this long never returns (transaction.timeout.ms + socket.timeout.ms)
        self.ready = False
        self.open = False
        # commit_transaction was called and did not finish: only it is called again (librdkafka: "on
        # timeout the operation may continue in the background ... it is okay to call this function again")
        self.committing = False
        # send_offsets_to_transaction still running in a thread after the caller stopped waiting (_send_offsets)
        self._sending: _Background | None = None
        # the offsets and group metadata of the open transaction's first commit: a retry sends the same, not what
        # is assigned by then (a revoke meanwhile: the revoked partitions' outputs are in the transaction), under
        # the generation the work was done in (the coordinator fences it if the group has moved on since)
        self._offsets: tuple[list[TopicPartition], Any] | None = None

    def init(self, timeout_s: float) -> None:
        """Register the transactional id (fencing an older producer with the same
        id); a KafkaException is raised when the broker does not answer in time."""
        self._call(lambda left: self.producer.init_transactions(left), time.monotonic() + timeout_s)
        self.ready = True

    def begin(self, deadline: float | None = None) -> None:
        if not self.open:
            self._call(lambda left: self.producer.begin_transaction(), self._until(deadline))
            self.open = True

    def commit(self, offsets: list[TopicPartition], group_metadata: Any, deadline: float | None = None) -> None:
        """Add ``offsets`` to the open transaction and commit it, each call waiting at most
        ``timeout_s`` and all of them together no later than ``deadline`` (monotonic) if given."""
        if not self.open:
            return
        if self._offsets is None:
            self._offsets = (offsets, group_metadata)
        offsets, group_metadata = self._offsets
        if offsets and not self.committing:
            self._call(lambda left: self._send_offsets(offsets, group_metadata, left), self._until(deadline))
        self.committing = True
        self._call(lambda left: self.producer.commit_transaction(left), self._until(deadline))
        self.open = self.committing = False
        self._offsets = None

    def abort(self, deadline: float | None = None) -> None:
        if self.open:
            until = self._until(deadline)
            if self._sending is not None:  # librdkafka refuses an abort while that call runs
                if not self._sending.wait(until):
                    raise _not_answered()
                self._sending = None
            self._call(lambda left: self.producer.abort_transaction(left), until)
            self.open = self.committing = False
            self._offsets = None

    def _send_offsets(self, offsets: list[TopicPartition], group_metadata: Any, left: float) -> None:
        """send_offsets_to_transaction, waited for ``left`` seconds at most. librdkafka's call does not keep
        to its timeout while the group coordinator does not answer (librdkafka issue 5456: it waited out
        socket.timeout.ms, 60 s, past the stop's deadline, the loop stuck meanwhile), so it runs in a
        thread; one still running at the next try is waited for again, not made twice (librdkafka
        refuses a second call while the first runs). One that has not returned after ``stuck_s`` never
        will: librdkafka times its request out after socket.timeout.ms (the call then fails and is
        retried), and the coordinator has aborted the transaction after transaction.timeout.ms; seen
        after the brokers came back, the call still waiting minutes later. The producer is then given
        up (TransactionFatal), for a fresh instance to take over."""
        if self._sending is None:
            producer = self.producer
            self._sending = _Background(lambda: producer.send_offsets_to_transaction(offsets, group_metadata, left))
        sending = self._sending
        if not sending.wait(time.monotonic() + left):
            if sending.running_for() > self.stuck_s:
                raise TransactionFatal(
                    f"send_offsets_to_transaction has not returned in {sending.running_for():.0f}s, past "
                    f"transaction.timeout.ms + socket.timeout.ms ({self.stuck_s:g}s): the producer is stuck"
                )
            raise _not_answered()
        self._sending = None
        sending.result()

    def _until(self, deadline: float | None) -> float:
        """When a call must be done: ``timeout_s`` from now, or ``deadline`` if that is sooner."""
        until = time.monotonic() + self.timeout_s
        return until if deadline is None else min(until, deadline)

    def _call(self, call: Callable[[float], T], deadline: float) -> T:
        """``call(seconds left)`` until it succeeds or ``deadline`` (monotonic) passes: a retry
        gets only what is left, so retries never run past it."""
        while True:
            try:
                return call(max(0.0, deadline - time.monotonic()))
            except KafkaException as e:
                err: KafkaError = e.args[0]
                if err.retriable() and time.monotonic() < deadline:
                    log.info("transaction call failed, retrying: %s", err)
                    time.sleep(self.retry_backoff_s)
                    continue
                if err.txn_requires_abort():
                    raise TransactionAborted(str(err)) from e
                if err.fatal():
                    raise TransactionFatal(str(err)) from e
                if err.retriable():
                    raise  # still failing at the deadline: the caller retries later
                raise TransactionFatal(str(err)) from e


class _Background:
    """A client call in a thread of its own, waited for up to a deadline, maybe more than once."""

    def __init__(self, call: Callable[[], object]) -> None:
        self._call = call
        self._error: BaseException | None = None
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="distilld-txn", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._call()
        except BaseException as e:
            self._error = e

    def wait(self, deadline: float) -> bool:
        """Whether the call has finished by ``deadline`` (monotonic)."""
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    def running_for(self) -> float:
        return time.monotonic() - self._started

    def result(self) -> None:
        """Raise what the finished call raised, if anything."""
        if self._error is not None:
            raise self._error


def _not_answered() -> KafkaException:
    return KafkaException(
        KafkaError(KafkaError._TIMED_OUT, "the group coordinator has not taken the offsets yet", retriable=True)
    )
