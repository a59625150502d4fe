"""Units of a group coordinator that is slow or does not answer, and of the consumer's errors, without a broker:
commits with a deadline, the revoke's and the stop's commits, /readyz on a stuck loop, consume errors."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from distilld.daemon import checkpoint as checkpoint_module
from distilld.daemon.checkpoint import Checkpoints
from distilld.daemon.loop import Daemon
from distilld.daemon.metrics import DaemonMetrics
from distilld.daemon.partition import Partition
from distilld.daemon.progress import PartitionProgress

HOLD_S = 8.0  # how long a held synchronous commit waits before it answers by itself


class HeldCoordinator:
    """A consumer whose synchronous commits wait until released (a group coordinator that does not answer);
    asynchronous ones return at once, their answer (on_commit) left to the test."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.asked: list[tuple[bool, list[tuple[str, int, int]]]] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> list[Any]:
        self.asked.append((asynchronous, [(tp.topic, tp.partition, tp.offset) for tp in offsets]))
        if not asynchronous:
            self.released.wait(HOLD_S)
        return [SimpleNamespace(topic=tp.topic, partition=tp.partition, error=None) for tp in offsets]


def _processed(to: int) -> Partition:
    """t[0], processed and acknowledged up to ``to``: a commit is due; no reducer, nothing to snapshot."""
    progress = PartitionProgress("t", 0)
    progress.add(to, 0)
    return Partition(progress, None, None, processed=to)  # type: ignore[arg-type]


def _checkpoints(consumer: Any, part: Partition, metrics: DaemonMetrics) -> Checkpoints:
    return Checkpoints(
        {("t", 0): part}, consumer, None, None, None, metrics,  # type: ignore[arg-type]
        30.0, lambda: None, lambda reason: None,
    )  # fmt: skip


def _failures(metrics: DaemonMetrics) -> float:
    return metrics.registry.get_sample_value("distilld_commit_failures_total") or 0.0


def test_a_periodic_commit_the_coordinator_does_not_answer_holds_nothing_up_is_counted_once_and_taken_once_answered(
    monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """librdkafka's synchronous commit has no timeout (and confluent-kafka serializes a consumer's calls, so a
    thread cannot give it one: the loop's consume() waits for it): a group coordinator that did not answer
    froze the loop for minutes (nothing read, /healthz 503, SIGTERM not handled), with no metric and no log
    line. The periodic commit is asynchronous, one at a time: found unanswered after COMMIT_WAIT_S it is
    counted once and logged; its offsets are not taken as committed (nor snapshotted) until it is answered."""
    coordinator, metrics, part = HeldCoordinator(), DaemonMetrics(["f"]), _processed(10)
    checkpoints = _checkpoints(coordinator, part, metrics)
    checkpoints.commit()
    assert coordinator.asked == [(True, [("t", 0, 10)])]
    assert part.progress.committed is None and not part.snapshot_due(), "not known to be committed yet"
    part.progress.add(20, 0)
    part.processed = 20
    checkpoints.commit()
    assert len(coordinator.asked) == 1 and _failures(metrics) == 0, "one at a time; not late yet"
    monkeypatch.setattr(checkpoint_module, "COMMIT_WAIT_S", 0.0)
    with caplog.at_level("WARNING", logger="distilld"):
        checkpoints.commit()
        checkpoints.commit()
    assert len(coordinator.asked) == 1 and _failures(metrics) == 1, "late: counted once"
    said = [r.getMessage() for r in caplog.records if "did not answer the commit" in r.getMessage()]
    assert len(said) == 1, said
    checkpoints.on_commit(None, [TopicPartition("t", 0, 10)])
    assert part.progress.committed == 10 and _failures(metrics) == 1
    checkpoints.commit()
    assert coordinator.asked[-1] == (True, [("t", 0, 20)]), "answered: the next commit goes"
    checkpoints.commit()  # found late: counted
    assert _failures(metrics) == 2
    checkpoints.on_commit(KafkaError(KafkaError._TIMED_OUT), [TopicPartition("t", 0, 20)])
    assert part.progress.committed == 10 and part.progress.due() == 20, "refused: due again"
    assert _failures(metrics) == 2, "a late commit's error is not counted twice"


def _with_snapshots(checkpoints: Checkpoints) -> list[tuple[Any, int]]:
    """A checkpoint whose outputs are acknowledged and state topic there; the snapshots it writes, listed."""
    checkpoints.output = SimpleNamespace(  # type: ignore[assignment]
        flush=lambda deadline: True, in_flight=0, producer=SimpleNamespace(flush=lambda timeout: 0)
    )
    checkpoints.state = SimpleNamespace(check_topic=lambda left: "there", missing=False)  # type: ignore[assignment]
    written: list[tuple[Any, int]] = []
    checkpoints._dump = lambda key, part, offset: b"state"  # type: ignore[method-assign]
    checkpoints._write = lambda key, part, offset, data: written.append((key, offset))  # type: ignore[method-assign]
    return written


@pytest.mark.parametrize("reads_on", [False, True])
def test_a_periodic_checkpoint_snapshots_what_it_commits_once_the_commit_is_answered(reads_on: bool) -> None:
    """Snapshots never cover more than the group's commit: those of a periodic checkpoint's partitions are taken
    with its commit and written once it is answered (``snapshots_due``, :meth:`Checkpoints.answered`). Taken at
    the answer instead, a busy partition (the loop reads on before the answer comes: ``reads_on``) was always
    ahead of its commit and never snapshotted."""
    coordinator, part = HeldCoordinator(), _processed(10)
    checkpoints = _checkpoints(coordinator, part, DaemonMetrics(["f"]))
    written = _with_snapshots(checkpoints)
    checkpoints.checkpoint([("t", 0)], wait_s=1.0)
    assert coordinator.asked == [(True, [("t", 0, 10)])] and written == [], "not answered: no snapshot yet"
    assert not checkpoints.snapshots_due
    if reads_on:
        part.progress.add(20, 0)
        part.processed = 20
    checkpoints.on_commit(None, [TopicPartition("t", 0, 10)])
    assert checkpoints.snapshots_due
    checkpoints.answered()
    assert written == [(("t", 0), 10)] and not checkpoints.snapshots_due


def test_a_refused_commit_writes_no_snapshot_and_a_partial_refusal_takes_the_rest() -> None:
    """librdkafka gives the request the last failed partition's error even when others were taken: the whole
    answer was thrown away (nothing committed, no snapshot), one topic without its ACL held every partition."""
    coordinator, metrics = HeldCoordinator(), DaemonMetrics(["f"])
    a, b = _processed(10), _processed(7)
    checkpoints = Checkpoints(
        {("t", 0): a, ("u", 0): b}, coordinator, None, None, None, metrics,  # type: ignore[arg-type]
        30.0, lambda: None, lambda reason: None,
    )  # fmt: skip
    written = _with_snapshots(checkpoints)
    checkpoints.checkpoint([("t", 0), ("u", 0)], wait_s=1.0)
    denied = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    answer = [SimpleNamespace(topic="t", partition=0, offset=10, error=None),
              SimpleNamespace(topic="u", partition=0, offset=7, error=denied)]  # fmt: skip
    checkpoints.on_commit(denied, answer)  # type: ignore[arg-type]
    checkpoints.answered()
    assert (a.progress.committed, b.progress.committed) == (10, None)
    assert written == [(("t", 0), 10)] and _failures(metrics) == 1


def test_a_partition_whose_commits_keep_being_refused_is_logged_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every refused commit logged a WARNING per partition, unlimited: with the coordinator refusing them all,
    several lines a second (the hand-over review counted 6 every 0.6 s). Now one a minute per partition, each
    refusal still counted."""
    coordinator, metrics, part = HeldCoordinator(), DaemonMetrics(["f"]), _processed(10)
    checkpoints = _checkpoints(coordinator, part, metrics)
    denied = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with caplog.at_level("WARNING", logger="distilld"):
        for _ in range(5):
            checkpoints.commit()
            checkpoints.on_commit(denied, [SimpleNamespace(topic="t", partition=0, offset=10, error=denied)])  # type: ignore[list-item]
    assert _failures(metrics) == 5
    assert len([r for r in caplog.records if "commit of t[0] refused" in r.getMessage()]) == 1


def test_a_revoke_s_refused_commit_is_logged_even_after_the_partition_s_periodic_refusal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The rate limit keyed refusals by partition alone: a periodic commit refused ("will retry") then silenced
    the revoke's refusal of the same partition within the minute, the line that says its next owner reads
    the records again (the last review's probe)."""
    coordinator, metrics, part = HeldCoordinator(), DaemonMetrics(["f"]), _processed(10)
    checkpoints = _checkpoints(coordinator, part, metrics)
    denied = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with caplog.at_level("WARNING", logger="distilld"):
        checkpoints._taken([(("t", 0), part.progress, 10)], {("t", 0): denied})
        checkpoints._taken([(("t", 0), part.progress, 10)], {("t", 0): denied}, then="their next owner reads them")
    lines = [r.getMessage() for r in caplog.records if "commit of t[0] refused" in r.getMessage()]
    assert len(lines) == 2 and lines[1].endswith("their next owner reads them"), lines


def test_refusals_of_thousands_of_partitions_are_still_limited_to_a_line_a_minute_each() -> None:
    """Repeats cleared every kind once it held 1,000: with a kind a partition, 1,200 partitions' refusals were
    all logged at every refusal again (the last review's probe)."""
    from distilld.daemon.repeats import Repeats

    repeats = Repeats(60.0)
    rounds = [sum(repeats.admit(("commit refused", p)) is not None for p in range(3000)) for _ in range(3)]
    assert rounds == [3000, 0, 0]


def test_a_late_answer_never_takes_a_partition_back_to_an_older_commit() -> None:
    """A periodic commit answered after the stop's own commit wrote its older offset over the newer one: the
    close's revoke then found a commit due and waited for it to the stop's deadline."""
    coordinator, part = HeldCoordinator(), _processed(10)
    coordinator.released.set()
    checkpoints = _checkpoints(coordinator, part, DaemonMetrics(["f"]))
    checkpoints.commit()  # asynchronous, offset 10, not answered yet
    part.progress.add(20, 0)
    part.processed = 20
    checkpoints.commit(asynchronous=False)
    assert part.progress.committed == 20
    checkpoints.on_commit(None, [TopicPartition("t", 0, 10)])
    assert part.progress.committed == 20 and part.progress.due() is None


def test_a_revoke_while_the_coordinator_leaves_a_commit_unanswered_still_sends_its_own_commit(
    monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """With the last periodic commit unanswered COMMIT_WAIT_S, a revoke released its partitions without a
    commit, to spare the rebalance the wait. It spared nothing: librdkafka hands partitions over only once every
    commit of its own is answered, the periodic one too; it only made their next owner read them again. The
    revoke's commit now goes (asynchronously) all the same; the overdue one is counted once."""
    coordinator, metrics, part = HeldCoordinator(), DaemonMetrics(["f"]), _processed(10)
    checkpoints = _checkpoints(coordinator, part, metrics)
    _with_snapshots(checkpoints)
    checkpoints.checkpoint([("t", 0)])  # a revoke's: no wait given
    assert coordinator.asked == [(True, [("t", 0, 10)])]
    checkpoints.on_commit(None, [TopicPartition("t", 0, 10)])
    assert part.progress.committed == 10
    part.progress.add(20, 0)
    part.processed = 20
    checkpoints.commit()  # never answered
    monkeypatch.setattr(checkpoint_module, "COMMIT_WAIT_S", 0.0)
    with caplog.at_level("WARNING", logger="distilld"):
        checkpoints.checkpoint([("t", 0)])
    assert coordinator.asked[2] == (True, [("t", 0, 20)]), "the revoke's own commit, asynchronous"
    assert _failures(metrics) == 1, "the overdue periodic commit, counted once"
    assert not any("released without" in r.getMessage() for r in caplog.records)
    checkpoints.on_commit(None, [TopicPartition("t", 0, 20)])
    assert part.progress.committed == 20


def test_a_revoke_commits_without_waiting_for_the_coordinator_and_snapshots_before_the_hand_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A revoke's commit was synchronous, in the rebalance callback inside consume(): a coordinator that stalled
    held the loop (and a SIGTERM) with no deadline. It is now asynchronous (librdkafka rejoins the group, handing
    the partitions over, only once its commits are answered), answered in on_commit beside a periodic commit in
    flight; the snapshot of its offsets is written before the hand-over (a restore skips one past the commit,
    should the commit be refused). A refusal leaves the offsets uncommitted: the next owner reads them again."""
    coordinator, metrics, part = HeldCoordinator(), DaemonMetrics(["f"]), _processed(10)
    other = _processed(5)
    checkpoints = Checkpoints(
        {("t", 0): part, ("u", 0): other}, coordinator, None, None, None, metrics,  # type: ignore[arg-type]
        30.0, lambda: None, lambda reason: None,
    )  # fmt: skip
    written = _with_snapshots(checkpoints)
    checkpoints._commit_partitions([("u", 0)], asynchronous=True)  # a periodic commit, not answered yet
    started = time.monotonic()
    checkpoints.checkpoint([("t", 0)])  # the revoke's: the coordinator answers no synchronous commit
    assert time.monotonic() - started < 1.0, "not waiting for the coordinator"
    assert coordinator.asked[-1] == (True, [("t", 0, 10)]) and written == [(("t", 0), 10)]
    assert part.progress.committed is None, "not known to be committed until answered"
    checkpoints.on_commit(None, [TopicPartition("t", 0, 10)])
    assert part.progress.committed == 10 and other.progress.committed is None
    checkpoints.on_commit(None, [TopicPartition("u", 0, 5)])
    assert other.progress.committed == 5, "the periodic commit is still answered"

    part.progress.add(20, 0)
    part.processed = 20
    checkpoints.checkpoint([("t", 0)])
    with caplog.at_level("WARNING", logger="distilld"):
        checkpoints.on_commit(KafkaError(KafkaError._TIMED_OUT), [TopicPartition("t", 0, 20)])
    assert part.progress.committed == 10 and _failures(metrics) == 1
    assert any("next owner reads them again" in r.getMessage() for r in caplog.records)


def test_a_forgotten_commit_taken_after_a_newer_one_gets_the_newer_offset_committed_again(monkeypatch: Any) -> None:
    """A periodic commit unanswered COMMIT_FORGET_S is forgotten and the next one made: two in flight. Should the
    old one be answered (taken) after the newer one, the group's commit may have gone back behind the newer
    offset (and its snapshot). Its partitions now count as committed at the old offset, so the next commit sends
    the newer one again."""
    coordinator, part = HeldCoordinator(), _processed(10)
    checkpoints = _checkpoints(coordinator, part, DaemonMetrics(["f"]))
    checkpoints.commit()  # offset 10, never answered in time
    part.progress.add(20, 0)
    part.processed = 20
    monkeypatch.setattr(checkpoint_module, "COMMIT_FORGET_S", 0.0)
    checkpoints.commit()  # 10 forgotten: 20 goes
    assert [offsets for _, offsets in coordinator.asked] == [[("t", 0, 10)], [("t", 0, 20)]]
    checkpoints.on_commit(None, [TopicPartition("t", 0, 20)])
    assert part.progress.committed == 20 and part.progress.due() is None
    checkpoints.on_commit(None, [TopicPartition("t", 0, 10)])  # the forgotten one, taken after all
    assert part.progress.committed == 10 and part.progress.due() == 20
    checkpoints.commit()
    assert coordinator.asked[-1] == (True, [("t", 0, 20)]), "the newer offset committed again"
    checkpoints.on_commit(None, [TopicPartition("t", 0, 20)])
    assert part.progress.committed == 20


@pytest.mark.parametrize(("code", "counted"), [(KafkaError.REBALANCE_IN_PROGRESS, 0), (KafkaError._TIMED_OUT, 1)])
def test_a_synchronous_commit_refused_for_a_rebalance_is_not_counted(code: int, counted: int) -> None:
    """As the asynchronous commit's callback and a partition's refusal already were: a rebalance refuses every
    commit of a cooperative member, and the partitions' new owners carry on from the last commit."""

    def commit(offsets: list[TopicPartition], asynchronous: bool) -> list[Any]:
        raise KafkaException(KafkaError(code))

    metrics, part = DaemonMetrics(["f"]), _processed(10)
    checkpoints = _checkpoints(SimpleNamespace(commit=commit), part, metrics)
    checkpoints.commit(asynchronous=False)
    assert _failures(metrics) == counted and part.progress.committed is None
    checkpoints.commit(asynchronous=True)
    assert _failures(metrics) == 2 * counted


def test_a_stop_during_a_commit_the_coordinator_does_not_answer_ends_by_its_deadline(
    daemon: Daemon, monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A SIGTERM while the periodic commit waits for the coordinator: the stop's commit (synchronous, in a
    thread: the loop is over) is waited for until the stop's deadline, not until the coordinator answers
    (55-80 s past the signal with shutdown_timeout_s 30), and the daemon exits."""
    coordinator = HeldCoordinator()
    closed: list[float] = []
    coordinator.close = lambda: closed.append(time.monotonic())  # type: ignore[attr-defined]
    daemon.consumer = daemon.checkpoints.consumer = coordinator  # type: ignore[assignment]
    daemon.partitions[("t", 0)] = part = _processed(10)
    daemon.state.partitions = 1
    daemon.settings.processing.shutdown_timeout_s = daemon.checkpoints.timeout_s = 1.0
    try:
        daemon.checkpoints.commit()  # not answered: still waiting at the signal
        with caplog.at_level("WARNING", logger="distilld"):
            daemon.request_stop()
            daemon.shutdown()
            took = time.monotonic() - daemon.stop_requested  # type: ignore[operator]
        assert took < 3.0, "within shutdown_timeout_s, the coordinator still silent"
        assert closed, "the consumer was closed"
        assert part.progress.committed is None
        said = [r.getMessage() for r in caplog.records if "stop's deadline" in r.getMessage()]
        assert len(said) == 1 and "t[0] up to offset 10 not committed" in said[0], said
        assert coordinator.asked == [(True, [("t", 0, 10)]), (False, [("t", 0, 10)])]
    finally:
        coordinator.released.set()


def test_a_stop_whose_flush_takes_its_deadline_still_closes_the_consumer(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    """A flush waiting for the brokers to the stop's deadline left the close no time: the consumer was not
    closed (the group waited session.timeout.ms for the member) and the log blamed the brokers. A slice of
    the deadline is kept for the close."""
    closed: list[float] = []
    flushed: list[float] = []

    def flush(deadline: float) -> bool:
        flushed.append(deadline)
        time.sleep(max(0.0, deadline - time.monotonic()))
        return False

    def close() -> None:
        time.sleep(0.05)  # a close that takes a little time, as leaving the group does
        closed.append(time.monotonic())

    daemon.output.flush = flush  # type: ignore[method-assign]
    daemon.consumer = SimpleNamespace(close=close)  # type: ignore[assignment]
    daemon.settings.processing.shutdown_timeout_s = daemon.checkpoints.timeout_s = 1.0
    with caplog.at_level("WARNING", logger="distilld"):
        daemon.request_stop()
        daemon.shutdown()
    asked = daemon.stop_requested
    assert asked is not None
    assert flushed and flushed[0] <= asked + 1.0 - 0.19, "the flush leaves the close its slice"
    assert closed and closed[0] <= asked + 1.0 + 0.5
    assert not [r for r in caplog.records if "closing the consumer" in r.getMessage()]


def test_readyz_says_not_ready_when_the_loop_or_the_broker_statistics_stand_still(daemon: Daemon) -> None:
    """broker_up comes from the consumer's statistics, served only when the loop polls; librdkafka keeps a
    frozen broker UP until its requests time out: /readyz said ready with the loop stuck on a commit."""
    daemon.subscribed = daemon.joined = daemon.broker_up = True
    daemon._on_stats('{"brokers": {"b": {"state": "UP", "nodeid": 1}}}')
    assert daemon.readiness()[0], daemon.readiness()
    daemon._last_stats -= 60
    ok, why = daemon.readiness()
    assert not ok and "no broker statistics for 60s" in why, why
    daemon._on_stats('{"brokers": {"b": {"state": "UP", "nodeid": 1}}}')
    daemon.broker_up = True
    assert daemon.readiness()[0]
    daemon.endpoints = SimpleNamespace(heartbeat=time.monotonic() - 30)  # type: ignore[assignment]
    ok, why = daemon.readiness()
    assert not ok and "the processing loop has not turned for 30s" in why, why


class _Failed:
    def __init__(self, topic: str | None, code: int) -> None:
        self._topic, self._code = topic, code

    def error(self) -> KafkaError:
        return KafkaError(self._code, "fetch refused")

    def topic(self) -> str | None:
        return self._topic


def test_consume_errors_are_counted_by_code_and_logged_once_a_minute_per_error_and_topic(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    """An input whose Read ACL is gone reports an error at every fetch: one WARNING each, no metric."""
    denied = KafkaError.TOPIC_AUTHORIZATION_FAILED
    with caplog.at_level("WARNING", logger="distilld"):
        for _ in range(50):
            daemon._drop_errors([_Failed("t", denied), _Failed("u", denied)])
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("consume:")]
    assert len(lines) == 2, lines
    value = daemon.metrics.registry.get_sample_value
    assert value("distilld_consume_errors_total", {"code": "TOPIC_AUTHORIZATION_FAILED"}) == 100
