"""A stop (SIGTERM) under ``processing.guarantee: exactly_once`` with the brokers away.

The open transaction cannot be committed or aborted without them. Nothing of it
is visible to a read_committed reader until a commit, so giving it up is safe:
the brokers abort it after ``transaction.timeout.ms`` and the partitions' next
owner reads from the last commit. The stop ends within
``processing.shutdown_timeout_s``, says what it gave up, and exits 0, as the
at-least-once stop with the brokers away does.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

import numpy as np
import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException

from distilld.broker import free_port
from distilld.daemon.checkpoint import Checkpoints
from distilld.daemon.metrics import DaemonMetrics
from distilld.daemon.partition import Partition
from distilld.daemon.progress import PartitionProgress
from distilld.daemon.transactions import TransactionAborted

from .conftest import people_records
from .kafka_tools import DaemonProcess, committed, daemon_config, fresh_topic, get, produce, samples, value
from .proxy_tools import TcpProxy
from .test_faults_kafka import _status, _wait

KEYS = 24
SHUTDOWN_S = 5


@pytest.mark.kafka
@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_a_stop_with_the_brokers_away_ends_in_time_with_exit_0(
    guarantee: str, proxied: tuple[str, TcpProxy], tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    """exactly_once: the stop's commit of the open transaction met the brokers away (a retriable error
    at the deadline), and the daemon exited 1, as if it had failed: an orchestrator counted a crash at
    every deploy during a broker outage. At-least-once exits 0 there; both do now, and say what was not
    committed. (At-least-once's stop once waited for a group coordinator that did not answer until the
    group session timed out, 45 s by default: the pod overran its grace period and was killed.)"""
    bootstrap, proxy = proxied
    topic, group = fresh_topic(bootstrap, f"stop-{guarantee[:3]}")
    port = free_port()
    config = daemon_config(
        bootstrap,
        topic,
        group,
        processing={
            "guarantee": guarantee,
            "shutdown_timeout_s": SHUTDOWN_S,
            "commit_interval_ms": 600_000,
            "snapshot_interval_s": 600,
        },
        metrics={"port": port, "refresh_ms": 200},
    )
    config["kafka"]["consumer"]["session.timeout.ms"] = 30_000
    d = DaemonProcess(tmp_path, config).start()
    daemons.append(d)
    assert d.proc is not None
    base = f"http://127.0.0.1:{port}"
    _wait("ready", lambda: _status(base + "/readyz") == 200, 60)
    values = [orjson.dumps(r) for r in people_records(3000, seed=7)]
    produce(bootstrap, topic, values, [b"user-%d" % (i % KEYS) for i in range(len(values))])

    def all_in_windows() -> bool:
        return value(samples(get(base + "/metrics")[1]), "distilld_window_records", kind="received") == len(values)

    _wait("every record in the windows, not committed yet", all_in_windows, 30)
    try:
        proxy.cut()
        stopping = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        code = d.proc.wait(60)
        took = time.monotonic() - stopping
    finally:
        proxy.restore()
    log = d.log()
    print(f"{guarantee}: stopped with the brokers cut off in {took:.1f}s (exit {code})")
    assert took < SHUTDOWN_S + 2, f"within shutdown_timeout_s: {took:.1f}s"
    assert code == 0, log[-4000:]
    assert " ERROR distilld" not in log, log[-4000:]
    # at_least_once: the commit failed, or was not answered by the stop's deadline (it runs in the background)
    # exactly_once: given up before its commit was asked for, or its commit asked for and not answered (unknown)
    said = (
        ("transaction not committed at the stop", "transaction commit not answered by the stop's deadline")
        if guarantee == "exactly_once"
        else ("not committed; their next owner",)
    )
    assert any(s in log for s in said), log[-4000:]
    # nothing past the last commit was committed: the next owner reads those records again
    ends = committed(bootstrap, group, topic, 1)
    assert ends[0] < len(values), ends


class _Txn:
    """A transactional producer whose brokers are away: commit fails (retriable, or requiring an abort), and
    so does the abort."""

    def __init__(self, commit_error: Exception) -> None:
        self.commit_error = commit_error
        self.open = True
        self.committing = False
        self.calls: list[str] = []

    def begin(self, deadline: float | None = None) -> None:
        self.calls.append("begin")

    def commit(self, offsets: Any, group_metadata: Any, deadline: float | None = None) -> None:
        self.calls.append("commit")
        raise self.commit_error

    def abort(self, deadline: float | None = None) -> None:
        self.calls.append("abort")
        raise _away()


def _away() -> KafkaException:
    return KafkaException(KafkaError(KafkaError._TIMED_OUT, "brokers away", retriable=True))


@pytest.mark.parametrize("error", ["retriable", "abortable"])
def test_a_stop_gives_an_uncommittable_transaction_up_once_without_failing(error: str) -> None:
    """Units of the above: the stop's commit fails with a retriable error (or one requiring an abort, and the abort
    cannot reach the brokers): the transaction is given up, not a failure (exit 0), and the close's revoke does
    not try it again. Without a stop, a retriable error is still retried (unfinished), not given up."""
    progress = PartitionProgress("t", 0)
    progress.committed = progress.committable = 10
    part = Partition(progress, MagicMock(), np.zeros(0))
    part.processed = part.snapshot_at = 25  # no snapshot due: only the transaction matters here
    txn = _Txn(_away() if error == "retriable" else TransactionAborted("an output failed"))
    failures: list[str] = []
    output = SimpleNamespace(producer=MagicMock(), txn_error=None, in_flight=3, discard=MagicMock())
    state = SimpleNamespace(check_topic=lambda timeout: "ok", missing=False)
    cp = Checkpoints(
        {("t", 0): part}, MagicMock(), output, txn, state, DaemonMetrics([]), 5.0,  # type: ignore[arg-type]
        rewind=MagicMock(), fail=failures.append,
    )  # fmt: skip
    if error == "retriable":
        assert not cp.commit_starts({}) and not failures and cp.unfinished and not cp.abandoned, "retried later"
    cp.stop_by = time.monotonic() + 1.0
    cp.checkpoint([("t", 0)])
    assert failures == [] and cp.abandoned and not cp.unfinished
    calls = len(txn.calls)
    cp.checkpoint([("t", 0)])  # the close's revoke
    cp.abort()  # a lost partition
    assert len(txn.calls) == calls, "not tried again"
    assert failures == []
    assert progress.committed == 10, "nothing committed"


class _UnansweredCommit(_Txn):
    """commit_transaction asked for and not answered by the deadline: its outcome unknown."""

    def commit(self, offsets: Any, group_metadata: Any, deadline: float | None = None) -> None:
        self.calls.append("commit")
        self.committing = True
        raise _away()


@pytest.mark.parametrize("asked", [False, True])
def test_a_stop_whose_transaction_commit_is_unanswered_says_its_outcome_is_unknown(
    asked: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """exactly_once: a stop whose commit_transaction was sent and not answered was logged as "given up ... the
    brokers abort it", while the coordinator may have committed it (outputs and offsets together). The line now
    says the outcome is unknown and what follows either way; one never asked to commit is still given up."""
    progress = PartitionProgress("t", 0)
    progress.committed = progress.committable = 10
    part = Partition(progress, MagicMock(), np.zeros(0))
    part.processed = part.snapshot_at = 25
    txn = _UnansweredCommit(_away()) if asked else _Txn(_away())
    output = SimpleNamespace(producer=MagicMock(), txn_error=None, in_flight=0, discard=MagicMock())
    state = SimpleNamespace(check_topic=lambda timeout: "ok", missing=False)
    cp = Checkpoints(
        {("t", 0): part}, MagicMock(), output, txn, state, DaemonMetrics([]), 5.0,  # type: ignore[arg-type]
        rewind=MagicMock(), fail=lambda reason: None,
    )  # fmt: skip
    cp.stop_by = time.monotonic() + 1.0
    with caplog.at_level("WARNING", logger="distilld"):
        cp.checkpoint([("t", 0)])
    (line,) = [r.getMessage() for r in caplog.records if "transaction" in r.getMessage()]
    assert cp.abandoned and "t[0] offsets 10..25" in line
    if asked:
        assert "given up" not in line and "is unknown" in line and "either committed it" in line, line
    else:
        assert "given up" in line and "the brokers abort it" in line, line
