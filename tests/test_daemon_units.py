"""Units of the daemon without a broker: commit points, decoding, backpressure."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distilld.codecs.json_codec import decode_json
from distilld.daemon.loop import Daemon
from distilld.daemon.memory import memory_limit, windows_warning
from distilld.daemon.metrics import DaemonMetrics
from distilld.daemon.progress import PartitionProgress
from distilld.settings import load_settings

from .conftest import FakeConsumer, tv


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.integers(1, 50), st.integers(0, 5)), min_size=1, max_size=20),
    ack_order=st.randoms(use_true_random=False),
)
def test_commit_point_never_passes_an_unacknowledged_output(sizes: list[tuple[int, int]], ack_order: Any) -> None:
    progress = PartitionProgress("t", 0)
    offset, pending = 0, []
    for records, outputs in sizes:
        offset += records
        batch = progress.add(offset, outputs)
        pending += [(offset - records, batch)] * outputs  # (first offset of the batch, its batch)
    ack_order.shuffle(pending)
    while pending:
        first_unacked = min(start for start, _ in pending)
        assert progress.committable is None or progress.committable <= first_unacked
        _, batch = pending.pop()
        batch.ack()
    assert progress.committable == offset, "all acknowledged: committable to the end"


def test_decode_sorts_records_from_bad_values_with_reasons() -> None:
    values = [b'{"a": 1}', b"nope", b"[1]", None, b'{"b": 2}', b"\xff"]
    records, good, bad = decode_json(values)
    assert records == [{"a": 1}, {"b": 2}] and good == [0, 4]
    reasons = dict(bad)
    assert set(reasons) == {1, 2, 3, 5}
    assert reasons[2] == "not a JSON object: list"
    assert reasons[3].startswith("empty value")
    assert reasons[1].startswith("not JSON")


def test_fetching_pauses_at_the_in_flight_limit_and_resumes_at_half(daemon: Daemon) -> None:
    fake: FakeConsumer = daemon.consumer  # type: ignore[assignment]
    daemon.output.in_flight = 99
    daemon._backpressure()
    assert fake.paused == [] and not daemon.paused
    daemon.output.in_flight = 100
    daemon._backpressure()
    daemon._backpressure()
    assert fake.paused == [["t[0]", "t[1]"]] and daemon.paused, "paused once, every assigned partition"
    daemon.output.in_flight = 51
    daemon._backpressure()
    assert fake.resumed == []
    daemon.output.in_flight = 50
    daemon._backpressure()
    assert fake.resumed == [["t[0]", "t[1]"]] and not daemon.paused


def test_metrics_report_the_same_drift_as_the_library_stats() -> None:
    from distilld import DistilledProcessor, build_graders
    from distilld.daemon.metrics import DaemonMetrics

    from .conftest import PEOPLE_FEATURES, people_records

    procs, records, sent = [], [], []
    for seed in (1, 2):
        proc = DistilledProcessor(build_graders(PEOPLE_FEATURES), 600, 0.1, 500, key_func=lambda r: r["id"] % 3)
        records += people_records(3000, seed)
        sent += [dp.data for dp in proc.process_batch(records[-3000:])]
        procs.append(proc)
    metrics = DaemonMetrics([f["name"] for f in PEOPLE_FEATURES])
    metrics.observe_reducers(procs[:1])
    for name, d in procs[0].get_current_stats()["drift"].items():
        assert metrics.registry.get_sample_value("distilld_proportion_drift", {"feature": name}) == d["mean"]
        assert metrics.registry.get_sample_value("distilld_proportion_drift_max", {"feature": name}) == d["max"]
        assert metrics.registry.get_sample_value("distilld_output_drift", {"feature": name}) == d["output"]
    # over two partitions: the mean weighted by window size, the max of both, the output's counts added up
    metrics.observe_reducers(procs)
    for name in procs[0].get_current_stats()["drift"]:
        parts = [p.feature_drifts()[name] for p in procs]
        mean = sum(p.mean * p.weight for p in parts) / sum(p.weight for p in parts)
        assert metrics.registry.get_sample_value("distilld_proportion_drift", {"feature": name}) == pytest.approx(mean)
        assert metrics.registry.get_sample_value("distilld_proportion_drift_max", {"feature": name}) == max(
            p.max for p in parts
        )
    pooled = tv(Counter(r["gender"] for r in records), Counter(r["gender"] for r in sent))
    assert metrics.registry.get_sample_value("distilld_output_drift", {"feature": "gender"}) == pytest.approx(pooled)
    received = sum(p.window_records()[0] for p in procs)
    assert metrics.registry.get_sample_value("distilld_window_records", {"kind": "received"}) == received == 6000


def test_output_drift_adds_partitions_up_by_label_and_counts_keys_that_sent_nothing() -> None:
    """Two reducers learn an open categorical's values in another order, so the same code means
    another value in each: their counts add up by label. A key with records in the window and
    nothing sent yet still counts in what the output should hold."""
    from distilld import DistilledProcessor, build_graders
    from distilld.stats import FeatureDrift

    features = [{"name": "page", "type": "open_categorical", "field": "page", "top_k": 4}]
    first = [{"page": p, "k": 0} for p in "aaaabbbbcc" * 20]
    second = [{"page": p, "k": 0} for p in "ccccbbbbaa" * 20] + [{"page": "d", "k": 1}] * 3
    procs, sent = [], []
    for recs in (first, second):
        proc = DistilledProcessor(build_graders(features), 600, 0.1, 1000, key_func=lambda r: r["k"])
        sent += [dp.data["page"] for dp in proc.process_batch(recs)]
        procs.append(proc)
    assert procs[0]._encoders[0].labels()[:3] != procs[1]._encoders[0].labels()[:3], "coded apart"
    assert "d" not in sent, "key 1 sent nothing"
    drift = FeatureDrift.combine([p.feature_drifts()["page"] for p in procs])
    expected = tv(Counter(r["page"] for r in first + second), Counter(sent))
    assert drift.output == pytest.approx(expected, abs=1e-12) and drift.output > 0
    assert set(procs[1].feature_drifts()["page"].cells) == {"a", "b", "c", "d"}, "by label, not by code"
    # each partition off the other way: by label they cancel out, by code (a in one, b in the other) they would not
    parts = [FeatureDrift(0.0, 0.0, 0.0, {"a": (10.0, 2.0), "b": (10.0, 0.0)}),
             FeatureDrift(0.0, 0.0, 0.0, {"b": (10.0, 2.0), "a": (10.0, 0.0)})]  # fmt: skip
    assert parts[0].output == 0.5 and FeatureDrift.combine(parts).output == 0.0


def test_healthz_turns_503_when_the_loop_is_stuck_and_readyz_follows_the_daemon(monkeypatch: Any) -> None:
    import urllib.error
    import urllib.request
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry, Gauge

    from distilld.daemon import endpoints
    from distilld.daemon.endpoints import Endpoints

    now = [100.0]  # the endpoints' clock: the test moves it past the health timeout
    monkeypatch.setattr(endpoints, "time", SimpleNamespace(monotonic=lambda: now[0]))
    state = {"ready": (False, "no broker connection")}
    registry = CollectorRegistry()
    gauge = Gauge("distilld_ready", "what /readyz says", registry=registry)
    ep = Endpoints("127.0.0.1", 0, registry, 0.3, lambda: state["ready"], gauge).start()

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ep.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    try:
        ep.beat()
        assert get("/healthz") == (200, "ok\n")
        assert get("/readyz") == (503, "no broker connection\n")
        assert "distilld_ready 0.0" in get("/metrics")[1]
        state["ready"] = (True, "ready: 2 partitions assigned")
        assert get("/readyz")[0] == 200
        assert "distilld_ready 1.0" in get("/metrics")[1]  # set at the scrape, with no loop running
        now[0] += 0.3
        assert get("/healthz")[0] == 200, "at the timeout: still alive"
        now[0] += 0.2  # no beat for 0.5 s: the loop is stuck
        status, body = get("/healthz")
        assert status == 503 and "stuck" in body
        ep.beat()
        assert get("/healthz")[0] == 200
    finally:
        ep.stop()


def test_probes_during_start_up_are_answered_alive_and_not_ready(monkeypatch: Any, capsys: Any) -> None:
    """The endpoints bound their port, then the engine compiled (seconds, longer under a CPU limit) before they
    served: a probe meanwhile hung, and its client's hang-up later printed a BrokenPipeError traceback. Now they
    serve from the bind: /healthz 200, /readyz 503 saying start-up is compiling; and a client that hung up
    before its answer prints nothing."""
    from distilld.broker import free_port
    from distilld.processor import DistilledProcessor

    from .kafka_tools import get

    port, answers = free_port(), {}

    def warm_up(self: DistilledProcessor) -> None:
        for path in ("/healthz", "/readyz", "/metrics"):
            answers[path] = get(f"http://127.0.0.1:{port}{path}")

    monkeypatch.setattr(DistilledProcessor, "warm_up", warm_up)
    s = load_settings(
        None,
        kafka={"bootstrap_servers": "127.0.0.1:1", "group_id": "g", "input_topics": ["t"], "output_topic": "o"},
        features=[{"name": "a", "type": "numeric"}],
        processing={"on_error": "skip"},
        metrics={"port": port, "host": "127.0.0.1", "health_timeout_s": 60},
    )
    d = Daemon(s)
    assert d.endpoints is not None
    try:
        assert answers["/healthz"] == (200, "ok\n")
        assert answers["/readyz"] == (503, "starting: compiling the engine\n")
        assert "distilld_ready 0.0" in answers["/metrics"][1]
        assert get(f"http://127.0.0.1:{port}/readyz") == (503, "no broker connection\n"), "started: the daemon says"
        d.start()  # serving already: not started twice
        for error in (BrokenPipeError(), ConnectionResetError()):
            try:
                raise error
            except ConnectionError:
                d.endpoints.server.handle_error(None, ("127.0.0.1", 1))  # type: ignore[arg-type]
        assert capsys.readouterr().err == "", "a client that hung up is no error of ours"
        try:
            raise ValueError("a bug")
        except ValueError:
            d.endpoints.server.handle_error(None, ("127.0.0.1", 1))  # type: ignore[arg-type]
        assert "ValueError: a bug" in capsys.readouterr().err, "any other error still shows"
    finally:
        d.endpoints.stop()


class FakeProducer:
    """Records produce calls; delivery reports are served by the test."""

    def __init__(self, refuse: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.refuse = refuse

    def produce(self, topic: str, value: Any, key: Any, **kw: Any) -> None:
        if self.refuse:
            from confluent_kafka import KafkaError, KafkaException

            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.calls.append({"topic": topic, "value": value, "key": key, **kw})

    def poll(self, timeout: float = 0) -> int:
        return 0


def _output(producer: FakeProducer) -> Any:
    from distilld.daemon.metrics import DaemonMetrics
    from distilld.daemon.output import Output

    return Output(producer, DaemonMetrics(["f"]))  # type: ignore[arg-type]


def test_a_failed_delivery_is_sent_again_with_its_headers_and_blocks_the_commit(monkeypatch: Any) -> None:
    import distilld.daemon.output as output_module

    monkeypatch.setattr(output_module, "RETRY_BACKOFF_S", 0.0)
    producer = FakeProducer()
    out = _output(producer)
    progress = PartitionProgress("t", 0)
    batch = progress.add(10, 1)
    out.send(batch, "o", b"v", b"k", [("h", b"1"), ("distilld-weight", b"10")], 1234)
    # the report of a failed delivery carries no headers: the retry must not take them from it
    producer.calls[0]["on_delivery"]("timed out", None)
    assert progress.committable is None and out.in_flight == 1
    out.poll()
    assert len(producer.calls) == 2
    retry = producer.calls[1]
    assert retry["headers"] == [("h", b"1"), ("distilld-weight", b"10")] and retry["timestamp"] == 1234
    retry["on_delivery"](None, None)
    assert progress.committable == 10 and out.in_flight == 0
    assert out.metrics.registry.get_sample_value("distilld_produce_errors_total") == 1


def test_a_record_the_producer_refuses_is_dropped_counted_and_does_not_stall() -> None:
    out = _output(FakeProducer(refuse=True))
    progress = PartitionProgress("t", 0)
    out.send(progress.add(5, 1), "o", b"x" * 10, None, [], 0)
    assert progress.committable == 5 and out.in_flight == 0
    assert out.metrics.registry.get_sample_value("distilld_produce_errors_total") == 1


@pytest.mark.parametrize("fatal", [False, True])
def test_a_fenced_producer_stops_the_daemon_with_the_record_uncommitted(fatal: bool) -> None:
    """An idempotent producer fenced (Tansu fences it for good once a topic it wrote to is deleted and made
    again), or failing fatally, delivers nothing again: the record was retried every second forever and
    nothing more was committed. Now the daemon stops (a new instance, a new producer, reads it again)."""
    from confluent_kafka import KafkaError

    from distilld.daemon.metrics import DaemonMetrics
    from distilld.daemon.output import Output

    reasons: list[str] = []
    producer = FakeProducer()
    out = Output(producer, DaemonMetrics(["f"]), fail=reasons.append)  # type: ignore[arg-type]
    progress = PartitionProgress("t", 0)
    out.send(progress.add(3, 1), "o", b"v", None, [], 0)
    code = KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER if fatal else KafkaError.PRODUCER_FENCED
    producer.calls[0]["on_delivery"](KafkaError(code, "fenced", fatal=fatal), None)
    assert len(reasons) == 1 and "the producer cannot deliver again" in reasons[0] and "t[0]" not in reasons[0]
    assert progress.committable is None and out.in_flight == 0, "not committed, not waited for"
    out.poll()
    assert len(producer.calls) == 1, "not retried"


def test_a_fatal_producer_is_said_once_and_the_stop_does_not_wait_for_it(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    """Every record in flight failed the same way: one ERROR line each (1,501 in a run on Tansu), the last
    one's reason kept; and a record due for a retry, produced again at the stop's flush, met produce()'s
    _FATAL as a retriable failure: the stop waited out its whole deadline."""
    import time

    from confluent_kafka import KafkaError, KafkaException

    producer = FakeProducer()
    daemon.output.producer = producer
    progress = PartitionProgress("t", 0)
    for i in range(51):
        daemon.output.send(progress.add(i + 1, 1), "o", b"v", None, [], 0)
    with caplog.at_level("ERROR", logger="distilld"):
        fatal = KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "fatal idempotent", fatal=True)
        for call in producer.calls[:50]:  # the last one still in flight
            call["on_delivery"](fatal, None)
    lines = [r for r in caplog.records if "cannot deliver again" in r.getMessage()]
    assert len(lines) == 1 and daemon.stopping and "an output" in (daemon.failure or "")
    assert progress.committable is None and daemon.output.in_flight == 1
    start = time.monotonic()
    assert daemon.output.flush(time.monotonic() + 3.0) is False
    assert time.monotonic() - start < 0.5, "not waited for"
    # produce() on a fatal producer raises _FATAL: not retried every second either
    producer.produce = lambda *a, **k: (_ for _ in ()).throw(  # type: ignore[method-assign]
        KafkaException(KafkaError(KafkaError._FATAL, "producer fatal", fatal=True))
    )
    daemon.output.send(progress.add(60, 1), "o", b"v", None, [], 0)
    assert daemon.output.in_flight == 1 and not daemon.output._retry


class UnknownTopicProducer(FakeProducer):
    """produce() refuses while the topic is unknown (librdkafka's _UNKNOWN_TOPIC), then accepts."""

    def __init__(self) -> None:
        super().__init__()
        self.topic_exists = False

    def produce(self, topic: str, value: Any, key: Any, **kw: Any) -> None:
        if not self.topic_exists:
            from confluent_kafka import KafkaError, KafkaException

            raise KafkaException(KafkaError(KafkaError._UNKNOWN_TOPIC))
        super().produce(topic, value, key, **kw)


def test_a_record_refused_for_an_unknown_topic_is_retried_and_holds_its_offset(monkeypatch: Any) -> None:
    import distilld.daemon.output as output_module

    monkeypatch.setattr(output_module, "RETRY_BACKOFF_S", 0.0)
    producer = UnknownTopicProducer()
    out = _output(producer)
    progress = PartitionProgress("t", 0)
    out.send(progress.add(7, 1), "missing", b"v", b"k", [("distilld-weight", b"10")], 0)
    out.poll()
    assert progress.committable is None and out.in_flight == 1, "not dropped: the offset waits"
    producer.topic_exists = True  # the topic is created
    out.poll()
    assert len(producer.calls) == 1 and producer.calls[0]["headers"] == [("distilld-weight", b"10")]
    producer.calls[0]["on_delivery"](None, None)
    assert progress.committable == 7 and out.in_flight == 0


class FullQueueProducer(FakeProducer):
    """produce() finds librdkafka's queue full (the brokers away), whatever is served."""

    def produce(self, topic: str, value: Any, key: Any, **kw: Any) -> None:
        raise BufferError("Local: Queue full")


def test_a_stop_while_the_producer_queue_is_full_leaves_the_record_unsent_not_committed() -> None:
    from distilld.daemon.metrics import DaemonMetrics
    from distilld.daemon.output import Output

    waits = []
    stopping = [False]

    def waiting() -> bool:
        waits.append(1)
        stopping[0] = len(waits) >= 3  # a SIGTERM while waiting for room
        return not stopping[0]

    out = Output(FullQueueProducer(), DaemonMetrics(["f"]), waiting=waiting)  # type: ignore[arg-type]
    progress = PartitionProgress("t", 0)
    out.send(progress.add(5, 1), "o", b"v", None, [], 0)
    assert len(waits) == 3 and progress.committable is None and out.in_flight == 1, "kept for a retry"
    txn = Output(FullQueueProducer(), DaemonMetrics(["f"]), transactional=True, waiting=lambda: False)  # type: ignore[arg-type]
    txn.send(PartitionProgress("t", 0).add(5, 1), "o", b"v", None, [], 0)
    assert txn.txn_error is not None, "not sent: the transaction must abort, not commit the offset"


def test_a_consumed_batch_is_split_by_partition_in_order() -> None:
    from distilld.daemon.loop import group_by_partition

    layout = [("a", 0, 0), ("a", 0, 1), ("a", 1, 0), ("b", 0, 0), ("a", 0, 2), ("a", 1, 1)]
    groups = group_by_partition(list(layout), [t for t, _, _ in layout], [p for _, p, _ in layout])
    assert {tp: [o for _, _, o in ms] for tp, ms in groups.items()} == {
        ("a", 0): [0, 1, 2],
        ("a", 1): [0, 1],
        ("b", 0): [0],
    }
    one = group_by_partition(layout[:2], ["a", "a"], [0, 0])
    assert one == {("a", 0): layout[:2]}


def test_the_container_memory_limit_is_read_from_cgroup_v2_or_v1(tmp_path: Path) -> None:
    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    assert memory_limit((v2, v1)) is None  # neither there: unknown
    v1.write_text("9223372036854771712\n")
    assert memory_limit((v2, v1)) is None  # v1's "unlimited"
    v1.write_text("1073741824\n")
    assert memory_limit((v2, v1)) == 2**30
    v2.write_text("max\n")
    assert memory_limit((v2, v1)) is None  # v2 first: unlimited
    v2.write_text("536870912\n")
    assert memory_limit((v2, v1)) == 2**29


def test_a_warning_when_one_partitions_windows_exceed_half_the_limit() -> None:
    assert windows_warning(427_057, 10_000, None) is None
    assert windows_warning(427_057, 1_000, 2**30) is None  # 407 MB of 1024 MB
    warning = windows_warning(427_057, 10_000, 2**30)
    assert warning is not None and "4,073 MB" in warning and "reducer.max_keys 10,000" in warning


def test_consumer_lag_is_shown_before_the_first_commit() -> None:
    """librdkafka reports consumer_lag -1 until the group has committed: an instance of a new group
    that consumed a little and then stopped progressing must still show what waits (DistilldNoProgress)."""
    m = DaemonMetrics(["f"])
    partition = {"hi_offset": 5000, "app_offset": 100, "committed_offset": -1001, "consumer_lag": -1}
    stats = {"topics": {"t": {"partitions": {"0": partition, "-1": {"consumer_lag": -1}}}}, "brokers": {}}
    m.observe_statistics(orjson.dumps(stats).decode(), {("t", 0): None})
    assert m.registry.get_sample_value("distilld_consumer_lag", {"topic": "t", "partition": "0"}) == 4900
    partition.update(committed_offset=4000, consumer_lag=1000)
    m.observe_statistics(orjson.dumps(stats).decode(), {("t", 0): 4000})
    assert m.registry.get_sample_value("distilld_consumer_lag", {"topic": "t", "partition": "0"}) == 1000


def test_consumer_lag_counts_from_the_groups_commit_when_a_partition_comes_back() -> None:
    """librdkafka counts consumer_lag from what this consumer committed itself. A partition that comes
    back after another member committed it (scale in) kept the stale offset: the lag stood at what the
    other member processed meanwhile, for good on an idle partition (DistilldNoProgress fired). One
    last committed by another member, and not consumed here yet, had no lag at all."""
    m = DaemonMetrics(["f"])
    stale = {"hi_offset": 2000, "ls_offset": 2000, "app_offset": -1001, "committed_offset": 1000, "consumer_lag": 1000}
    unknown = {"hi_offset": 2000, "ls_offset": 2000, "app_offset": -1001, "committed_offset": -1001, "consumer_lag": -1}
    stats = {"topics": {"t": {"partitions": {"0": stale, "1": unknown}}}, "brokers": {}}
    m.observe_statistics(orjson.dumps(stats).decode(), {("t", 0): 2000, ("t", 1): 1500})
    assert m.registry.get_sample_value("distilld_consumer_lag", {"topic": "t", "partition": "0"}) == 0
    assert m.registry.get_sample_value("distilld_consumer_lag", {"topic": "t", "partition": "1"}) == 500


def test_commits_refused_by_a_rebalance_are_not_counted_as_failures() -> None:
    from confluent_kafka import KafkaError

    from distilld.daemon.checkpoint import _rebalancing

    assert _rebalancing(KafkaError(KafkaError.ILLEGAL_GENERATION))
    assert _rebalancing(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
    assert not _rebalancing(KafkaError(KafkaError._TIMED_OUT))
    assert not _rebalancing(KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE))


def test_offsets_never_delivered_after_the_last_record_are_committed_past_between_batches(daemon: Daemon) -> None:
    """A transaction's commit marker (or aborted records under read_committed) ends a partition: the consumer's
    position passes it, no record comes. The processed offset follows the position (committed and snapshotted
    there, once every output before it is acknowledged), a replay ends once the position reaches its commit; not
    while stopping, nor for a partition with no commit and no record, nor past a position not ahead of it."""
    from confluent_kafka import TopicPartition

    from distilld.daemon.partition import Partition

    positions = {0: 11, 1: 30, 2: 40, 3: 7}
    daemon.consumer.position = lambda parts: [  # type: ignore[attr-defined]
        TopicPartition(p.topic, p.partition, positions[p.partition]) for p in parts
    ]

    def held(partition: int, processed: int | None, committed: int | None = None) -> Partition:
        part = Partition(PartitionProgress("t", partition), None, None, processed=processed)  # type: ignore[arg-type]
        if committed is not None:
            part.progress.add(committed, 0)
            part.progress.committed = committed
        daemon.partitions[("t", partition)] = part
        return part

    idle, waiting = held(0, 10, 10), held(1, 20, 10)
    waiting_batch = waiting.progress.add(20, 1)  # an output not acknowledged yet
    replaying, fresh = held(2, 35, 41), held(3, None)
    replaying.replay_until = 41
    daemon.stopping = True
    daemon._skip_gaps()
    assert idle.processed == 10 and idle.progress.due() is None, "stopping: a batch may be left unprocessed"
    daemon.stopping = False
    daemon._skip_gaps()
    assert idle.processed == 11 and idle.progress.due() == 11 and idle.snapshot_due() is False
    idle.progress.committed = 11
    assert idle.snapshot_due(), "the state at the position is the state at the last record"
    assert waiting.processed == 30 and waiting.progress.due() is None, "behind an unacknowledged output"
    waiting_batch.ack()
    assert waiting.progress.due() == 30
    assert replaying.processed == 35 and replaying.replay_until == 41, "records still to re-read before the commit"
    assert fresh.processed is None and fresh.progress.due() is None
    positions[2] = 42
    daemon._skip_gaps()
    assert replaying.replay_until is None and replaying.processed == 42 and replaying.progress.due() == 42
    assert idle.processed == 11 and idle.progress.due() is None, "a position not past it moves nothing"


def test_a_commit_the_coordinator_refuses_is_made_again_at_the_next_checkpoint() -> None:
    """at_least_once: an offset whose commit is refused (synchronously, or in the asynchronous commit's
    callback) is not taken as committed: the next checkpoint commits it again, also when the partition
    has read nothing since, and no snapshot is written for state beyond the group's commit. An offset
    committed already is not committed again."""
    from types import SimpleNamespace

    from confluent_kafka import KafkaError, TopicPartition

    from distilld.daemon.checkpoint import Checkpoints
    from distilld.daemon.partition import Partition

    asked: list[list[tuple[str, int, int]]] = []
    answers = [KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE), None, None]

    def commit(offsets: list[TopicPartition], asynchronous: bool) -> list[Any]:
        asked.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])
        return [
            SimpleNamespace(topic=tp.topic, partition=tp.partition, error=answers.pop(0) if answers else None)
            for tp in offsets
        ]

    progress = PartitionProgress("t", 0)
    progress.add(10, 0)
    part = Partition(progress, None, None, processed=10)  # type: ignore[arg-type]  # no reducer: nothing to snapshot
    checkpoints = Checkpoints(
        {("t", 0): part}, SimpleNamespace(commit=commit), None, None, None, DaemonMetrics(["f"]),  # type: ignore[arg-type]
        1.0, lambda: None, lambda reason: None,
    )  # fmt: skip
    checkpoints.commit(asynchronous=False)
    assert asked == [[("t", 0, 10)]] and progress.committed is None and not part.snapshot_due()
    checkpoints.commit(asynchronous=False)
    assert asked[-1] == [("t", 0, 10)] and progress.committed == 10
    checkpoints.commit(asynchronous=False)
    assert len(asked) == 2, "committed already: nothing to commit"

    progress.add(20, 0)
    part.processed = 20
    checkpoints.commit()  # asynchronous: taken as committed once answered
    assert asked[-1] == [("t", 0, 20)] and progress.committed == 10
    checkpoints.on_commit(KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE), [TopicPartition("t", 0, 20)])
    assert progress.committed == 10 and progress.due() == 20
    checkpoints.commit()
    assert asked[-1] == [("t", 0, 20)] and len(asked) == 4, "refused: committed again"
    checkpoints.on_commit(None, [TopicPartition("t", 0, 20)])
    assert progress.committed == 20 and progress.due() is None


class _CommittedMember:
    """A group member's consumer whose partitions are committed at 100, no window start found, any (un)assign taken."""

    def committed(self, parts: list[Any], timeout: float = 0.0) -> list[Any]:
        from confluent_kafka import TopicPartition

        return [TopicPartition(p.topic, p.partition, 100) for p in parts]

    def offsets_for_times(self, parts: list[Any], timeout: float = 0.0) -> list[Any]:
        return []

    def incremental_assign(self, parts: list[Any]) -> None:
        pass

    def incremental_unassign(self, parts: list[Any]) -> None:
        pass


class _StoppingReader:
    """A state reader that never comes to the partition's end and asks ``daemon`` to stop (SIGTERM) at its
    ``stop_at``-th poll; ``polls`` counts them (a poll long after the stop is an error: the read went on)."""

    def __init__(self, daemon: Daemon, stop_at: int) -> None:
        self.daemon, self.stop_at, self.polls = daemon, stop_at, 0

    def assign(self, parts: list[Any]) -> None:
        pass

    def unassign(self) -> None:
        pass

    def poll(self, timeout: float) -> None:
        self.polls += 1
        if self.polls == self.stop_at:
            self.daemon.request_stop()
        assert self.polls < 50, "read on after the stop"


def _dlq_daemon(reducer: dict[str, Any] | None = None) -> tuple[Daemon, FakeProducer]:
    """A daemon forwarding every record (rate 1), dead-lettering to topic d, with a fake producer
    (``reducer``: more reducer settings)."""
    s = load_settings(
        None,
        kafka={"bootstrap_servers": "127.0.0.1:1", "group_id": "g", "input_topics": ["t"], "output_topic": "o",
               "dlq_topic": "d"},
        features=[{"name": "a", "type": "numeric"}],
        reducer={"rate": 1.0, **(reducer or {})},
        processing={"on_error": "dlq"},
        metrics={"port": 0},
    )  # fmt: skip
    d = Daemon(s)
    producer = FakeProducer()
    d.output.producer = producer  # type: ignore[assignment]
    return d, producer


def test_dead_letters_name_their_source_and_hold_the_commit_until_acknowledged() -> None:
    """on_error: dlq: an undecodable record goes to the DLQ topic as it came (value, key, headers) plus
    where it came from and why; its offset is committed only once the DLQ has it, like any output.
    The forwarded records keep their headers and carry their weight."""
    from confluent_kafka import Message

    from distilld.daemon.partition import Partition

    d, producer = _dlq_daemon()
    reducer = d._new_reducer()
    part = Partition(PartitionProgress("t", 3), reducer, reducer.missing_counts.copy())
    values = [b'{"a": 1}', b"{", b'{"a": 2}', b"[1]"]
    msgs = [
        Message(topic="t", partition=3, offset=40 + i, key=b"k%d" % (40 + i), value=v,
                headers=[("trace", b"t%d" % (40 + i))], timestamp=(1, 1_700_000_000_040 + i))
        for i, v in enumerate(values)
    ]  # fmt: skip
    d.record_path.process_partition(("t", 3), part, msgs)
    dead = [c for c in producer.calls if c["topic"] == "d"]
    assert [(c["value"], c["key"]) for c in dead] == [(b"{", b"k41"), (b"[1]", b"k43")]
    headers = dict(dead[0]["headers"])
    assert headers["trace"] == b"t41" and headers["distilld-error"].startswith(b"not JSON")
    assert (headers["distilld-source-topic"], headers["distilld-source-partition"]) == (b"t", b"3")
    assert headers["distilld-source-offset"] == b"41" and dead[0]["timestamp"] == 1_700_000_000_041
    forwarded = [c for c in producer.calls if c["topic"] == "o"]
    assert [c["value"] for c in forwarded] == [values[0], values[2]]
    assert forwarded[0]["headers"] == [("trace", b"t40"), ("distilld-weight", b"1")], "rate 1: each stands for 1"
    for call in producer.calls:
        if call is not dead[-1]:
            call["on_delivery"](None, None)
    assert part.progress.committable is None, "a dead letter not yet acknowledged holds the commit"
    dead[-1]["on_delivery"](None, None)
    assert part.progress.committable == 44


def test_records_re_read_to_rebuild_a_window_keep_their_first_arrival_time() -> None:
    """Processing time: a record re-read after a hand-over arrived when Kafka stamped it, not now; stamped
    now, a rebuilt window held it up to a whole window too long (the hand-over review measured it)."""
    from confluent_kafka import Message

    from distilld.daemon.fields import RecordFields
    from distilld.settings import ReducerSettings

    fields = RecordFields(ReducerSettings(time="processing", key="none"), clock=lambda: 2000.0)
    msgs = [
        Message(topic="t", partition=0, offset=i, value=b"{}", timestamp=(1, ms))
        for i, ms in enumerate([1_500_000, 1_950_000, 2_100_000])
    ]
    msgs.append(Message(topic="t", partition=0, offset=3, value=b"{}", timestamp=(0, -1)))  # no timestamp
    records = [{}] * len(msgs)
    assert fields.timestamps(msgs, records).tolist() == [2000.0] * 4  # live records: now
    # re-read: the Kafka time, no earlier than the restored watermark and no later than now
    assert fields.timestamps(msgs, records, replay_after=1900.0).tolist() == [1900.0, 1950.0, 2000.0, 2000.0]


def test_a_repeated_line_is_let_through_once_a_window_with_the_count_left_out(monkeypatch: Any) -> None:
    import logging

    from distilld.daemon import repeats

    now = [100.0]
    monkeypatch.setattr(repeats.time, "monotonic", lambda: now[0])
    kept: list[str] = []
    log = logging.getLogger("distilld.test.repeats")
    log.addFilter(repeats.RepeatFilter(window_s=10.0))
    log.addHandler(type("H", (logging.Handler,), {"emit": lambda self, r: kept.append(r.getMessage())})())
    for i in range(5):
        log.warning("connect to broker %d failed", i)  # the same kind: numbers blanked
    now[0] += 12.0
    log.warning("connect to broker 9 failed")
    assert kept == ["connect to broker 0 failed", "connect to broker 9 failed (4 more like it in 12s)"]


def test_a_stop_works_to_one_deadline_the_revoke_that_closing_runs_included(daemon: Daemon) -> None:
    """Closing the consumer revokes its partitions, which checkpoints again: that checkpoint must not
    start a fresh shutdown_timeout_s (a stop could take twice the pod's grace period)."""
    from confluent_kafka import TopicPartition

    deadlines: list[float] = []

    def flush(deadline: float) -> bool:
        deadlines.append(deadline)
        return False  # outputs still unacknowledged: each checkpoint waits as long as it may

    daemon.output.flush = flush  # type: ignore[method-assign]
    fake: Any = daemon.consumer
    fake.close = lambda: daemon._on_revoke(daemon.consumer, [TopicPartition("t", 0)])
    daemon.checkpoints.timeout_s = 30.0
    daemon.settings.processing.shutdown_timeout_s = 30.0
    daemon.shutdown()
    assert len(deadlines) == 2, "the stop's checkpoint and the revoke's"
    assert deadlines[1] == deadlines[0], "the revoke works to the stop's deadline, not a new one"
    assert daemon.checkpoints.stop_by == deadlines[0]


def test_a_stop_ends_by_its_deadline_when_the_group_coordinator_does_not_answer(daemon: Daemon) -> None:
    """librdkafka's synchronous commit, and the close waiting for it, wait for an unreachable group
    coordinator as long as session.timeout.ms (45 s by default): the stop overran the pod's grace period."""
    import time

    from distilld.daemon.partition import Partition

    reducer = daemon._new_reducer()
    part = Partition(PartitionProgress("t", 0), reducer, reducer.missing_counts.copy())
    part.progress.add(10, 0)  # processed and acknowledged: a commit is due
    part.processed = 10
    daemon.partitions[("t", 0)] = part
    fake: Any = daemon.consumer
    fake.commit = lambda **kw: time.sleep(3.0) or []
    fake.close = lambda: time.sleep(3.0)
    daemon.state.partitions = 1
    daemon.checkpoints.consumer = fake
    daemon.checkpoints.timeout_s = daemon.settings.processing.shutdown_timeout_s = 0.5
    started = time.monotonic()
    daemon.shutdown()
    assert time.monotonic() - started < 1.5, "within shutdown_timeout_s"
    assert part.progress.committed is None, "not known to be committed"
    assert daemon.metrics.registry.get_sample_value("distilld_commit_failures_total") == 1


def test_a_transaction_aborted_at_a_stop_rebuilds_no_state_and_commits_nothing_of_it() -> None:
    """An abort at a stop rewound the partitions: their state was read back from the state topic (60 s
    timeout) and their windows re-read, for partitions about to be dropped, past shutdown_timeout_s."""
    import time

    from confluent_kafka import KafkaError, TopicPartition

    d = _exactly_once_daemon(shutdown_timeout_s=0.5)
    calls: list[str] = []

    class Fake:
        """Every client call is recorded; the window's start is not known."""

        def __getattr__(self, name: str) -> Any:
            unknown = [TopicPartition("t", 0, -1)] if name == "offsets_for_times" else []
            return lambda *args, **kw: calls.append(name) or unknown

    consumer: Any = Fake()
    consumer.close = lambda: d._on_revoke(consumer, [TopicPartition("t", 0)])  # closing revokes: a checkpoint
    d.consumer = d.checkpoints.consumer = consumer
    d.txn.producer = d.output.producer = Fake()  # type: ignore[union-attr]
    d.state.partitions = 1
    d.state.read = lambda wanted, alive=None: calls.append("read state") or time.sleep(3.0) or {}  # type: ignore[method-assign]
    _held(d, 0)  # records 5-9 produced in the open transaction
    d.txn.begin()  # type: ignore[union-attr]
    d.output.txn_error = KafkaError(KafkaError._MSG_TIMED_OUT)  # an output failed: the transaction aborts
    d.stopping = True
    started = time.monotonic()
    d.shutdown()
    assert time.monotonic() - started < 1.5, "within shutdown_timeout_s"
    assert "abort_transaction" in calls and "read state" not in calls, calls
    assert "send_offsets_to_transaction" not in calls, "the aborted work's offsets are not committed"


def _held(d: Daemon, partition: int) -> Any:
    """Partition ``t[partition]`` held by ``d``: committed to offset 5, records 5-9 processed since."""
    from distilld.daemon.partition import Partition

    reducer = d._new_reducer()
    part = Partition(PartitionProgress("t", partition), reducer, reducer.missing_counts.copy())
    part.progress.committed, part.processed = 5, 10
    d.partitions[("t", partition)] = part
    return part


def _exactly_once_daemon(**processing: Any) -> Daemon:
    """A daemon with exactly_once (and ``processing`` settings), not started: its clients are the test's
    to replace."""
    s = load_settings(
        None,
        kafka={"bootstrap_servers": "127.0.0.1:1", "group_id": "g", "input_topics": ["t"], "output_topic": "o"},
        features=[{"name": "a", "type": "numeric"}],
        processing={"guarantee": "exactly_once", "on_error": "skip", **processing},
        metrics={"port": 0},
    )
    return Daemon(s)


def _restore_waiting(d: Daemon, turns: int = 20) -> None:
    """The loop's turns that read the commits, then the state, of partitions waiting for them, until none waits."""
    for _ in range(turns):
        if d.stopping or not (d.pending or d.restoring or d.assigner._rebuilding):
            return
        if d.pending:
            d.assigner.read_commits()
        d.assigner.restore_some()


def _no_snapshots(d: Daemon) -> None:
    """A state topic of one partition, holding no snapshot: read to its end at once."""
    from distilld.daemon.state import StateScan

    d.state.partitions = 1
    d.state.scan = lambda wanted, alive=None: StateScan(d.state.by_state(wanted), iter([]))  # type: ignore[method-assign]


def test_a_periodic_checkpoint_gives_a_transaction_the_whole_timeout() -> None:
    """exactly_once: a periodic snapshot's checkpoint gave its transaction the 1 s a periodic checkpoint
    waits for outputs; a transaction cannot be committed in part, so a broker taking longer to
    acknowledge it made the commit fail with a retriable timeout, and the daemon exit 1."""
    from confluent_kafka import KafkaError, KafkaException

    from distilld.daemon.loop import PERIODIC_WAIT_S

    d = _exactly_once_daemon()

    class Slow:
        """A broker that needs twice the periodic wait to commit a transaction."""

        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kw: []

        def commit_transaction(self, timeout: float) -> None:
            if timeout < 2 * PERIODIC_WAIT_S:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "flush timed out", retriable=True))

    d.consumer = d.checkpoints.consumer = Slow()  # type: ignore[assignment]
    d.txn.producer = d.output.producer = Slow()  # type: ignore[union-attr]
    d.txn.retry_backoff_s = 0.0  # type: ignore[union-attr]
    d.state.partitions = 1
    part = _held(d, 0)
    d.txn.begin()  # type: ignore[union-attr]
    d.checkpoints.checkpoint(list(d.partitions), wait_s=PERIODIC_WAIT_S)
    assert d.failure is None and not d.stopping
    assert part.progress.committed == 10 and part.snapshot_at == 10


def test_partitions_revoked_while_a_transaction_aborts_are_not_left_assigned() -> None:
    """The rewind after an abort in a revoke unassigns and assigns partitions; the client then no longer
    unassigns the revoked ones after the callback (it does only when the callback did not): they stayed
    assigned, fetched by two members, and their next assignment here was refused as a conflict."""
    from confluent_kafka import KafkaError, TopicPartition

    d = _exactly_once_daemon()

    class Member:
        """A cooperative member's assignment, and the client's own unassign after the revoke callback."""

        def __init__(self) -> None:
            self.assigned = {("t", 0), ("t", 1)}
            self.changed = False

        def incremental_unassign(self, parts: list[TopicPartition]) -> None:
            self.changed = True
            self.assigned -= {(p.topic, p.partition) for p in parts}

        def incremental_assign(self, parts: list[TopicPartition]) -> None:
            self.changed = True
            self.assigned |= {(p.topic, p.partition) for p in parts}

        def offsets_for_times(self, parts: Any, timeout: float = 0.0) -> list[TopicPartition]:
            return [TopicPartition("t", 0, -1)]

        def consumer_group_metadata(self) -> None:
            return None

        def revoke(self, parts: list[TopicPartition]) -> None:
            self.changed = False
            d._on_revoke(self, parts)  # type: ignore[arg-type]
            if not self.changed:
                self.incremental_unassign(parts)

    class Producer:
        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kw: []

    member = Member()
    d.consumer = d.checkpoints.consumer = member  # type: ignore[assignment]
    d.txn.producer = d.output.producer = Producer()  # type: ignore[union-attr]
    _no_snapshots(d)
    for p in (0, 1):
        _held(d, p)  # work in the open transaction
    d.txn.begin()  # type: ignore[union-attr]
    d.output.txn_error = KafkaError(KafkaError._MSG_TIMED_OUT)  # an output failed: the transaction aborts
    member.revoke([TopicPartition("t", 0)])
    assert member.assigned == set(), "the revoked partition is no longer assigned here, the other one rewinds"
    assert d.restoring == {("t", 1): 5}, "its state read back by the loop, from its commit"
    _restore_waiting(d)
    assert member.assigned == {("t", 1)}
    assert list(d.partitions) == [("t", 1)] and d.partitions[("t", 1)].processed == 5, "the other one rewound"


class _FreshMember(_CommittedMember):
    """A group with nothing committed; the consumer's assignments recorded in ``assigned`` as (partition, offset)."""

    def __init__(self) -> None:
        self.assigned: list[tuple[int, int]] = []

    def committed(self, parts: list[Any], timeout: float = 0.0) -> list[Any]:
        from confluent_kafka import OFFSET_INVALID, TopicPartition

        return [TopicPartition(p.topic, p.partition, OFFSET_INVALID) for p in parts]

    def incremental_assign(self, parts: list[Any]) -> None:
        self.assigned.extend((p.partition, p.offset) for p in parts)

    def consumer_group_metadata(self) -> str:
        return "generation 1"


class _TransactionalProducer(FakeProducer):
    """Records produced (in ``calls``) and the transaction's calls in order (in ``steps``): ("produce", topic),
    ("offsets", [(topic, partition, offset)]), ("commit",), ("abort",); send_offsets_to_transaction raises
    ``fail_offsets`` while it is set. The other calls (flush, begin) are taken as done."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[tuple[Any, ...]] = []
        self.fail_offsets: Exception | None = None

    def produce(self, topic: str, value: Any, key: Any, **kw: Any) -> None:
        super().produce(topic, value, key, **kw)
        self.steps.append(("produce", topic))

    def send_offsets_to_transaction(self, offsets: Any, metadata: Any, timeout: float) -> None:
        if self.fail_offsets is not None:
            raise self.fail_offsets
        self.steps.append(("offsets", [(tp.topic, tp.partition, tp.offset) for tp in offsets]))

    def commit_transaction(self, timeout: float) -> None:
        self.steps.append(("commit",))

    def abort_transaction(self, timeout: float) -> None:
        self.steps.append(("abort",))

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kw: None


def _fresh_exactly_once() -> tuple[Daemon, _FreshMember, _TransactionalProducer]:
    """An exactly_once daemon holding t[0], which has no commit; its state topic serves the snapshots produced."""
    from confluent_kafka import TopicPartition

    from distilld.daemon.state import StateScan

    d = _exactly_once_daemon()
    d.settings.reducer.rate = 1.0  # every record an output
    d.consumer = d.checkpoints.consumer = member = _FreshMember()  # type: ignore[assignment]
    d.txn.producer = d.output.producer = producer = _TransactionalProducer()  # type: ignore[union-attr]
    d.txn.retry_backoff_s = 0.0  # type: ignore[union-attr]
    d.state.partitions = 1

    def scan(wanted: dict[Any, int], alive: Any = None) -> StateScan:
        written = [(0, (c["key"], c["value"], c["headers"])) for c in producer.calls if c["topic"] == d.state.topic]
        return StateScan(d.state.by_state(wanted), iter(written))

    d.state.scan = scan  # type: ignore[method-assign]
    d._on_assign(member, [TopicPartition("t", 0)])  # type: ignore[arg-type]
    _restore_waiting(d)
    assert member.assigned == [(0, -1001)], "no commit: where auto.offset.reset says"
    return d, member, producer


def _records(first: int, n: int) -> list[Any]:
    """Records ``first`` to ``first + n - 1`` of t[0]."""
    from confluent_kafka import Message

    return [
        Message(topic="t", partition=0, offset=first + i, value=b'{"a": %d}' % i, timestamp=(1, 1_700_000_000_000))
        for i in range(n)
    ]


def test_a_partition_with_no_commit_commits_where_it_begins_before_its_first_outputs() -> None:
    """exactly_once: a partition with no commit put its start in no transaction but the one holding its first
    outputs: if that one aborted and the partition then went (revoked, lost, the daemon killed before its first
    commit), its next owner read from where auto.offset.reset says, and with latest the aborted records were
    never output. Its start (the first record read) is now committed before its first outputs, with a snapshot
    of its empty windows, in a transaction of its own: an abort goes back there, with that state read back."""
    from confluent_kafka import KafkaError

    d, member, producer = _fresh_exactly_once()
    d.txn.begin()  # type: ignore[union-attr]  # as the loop does before it processes a batch
    d.process(_records(40, 5))
    state, out = ("produce", d.state.topic), ("produce", "o")
    assert producer.steps[:3] == [state, ("offsets", [("t", 0, 40)]), ("commit",)], "the start alone, committed"
    assert producer.steps[3:] == [out] * 5, "then the outputs, in the transaction opened again"
    part = d.partitions[("t", 0)]
    assert part.progress.committed == 40 and part.snapshot_at == 40 and part.processed == 45
    d.process(_records(45, 2))
    assert producer.steps.count(("commit",)) == 1, "a start is committed once"

    d.output.txn_error = KafkaError(KafkaError._MSG_TIMED_OUT)  # an output failed: the transaction aborts
    d.commit()
    assert producer.steps[-1] == ("abort",)
    assert d.restoring == {("t", 0): 40}, "rewound to the start, its commit"
    _restore_waiting(d)
    assert member.assigned[-1] == (0, 40)
    part = d.partitions[("t", 0)]
    assert part.progress.committed == part.processed == part.snapshot_at == 40 and part.reducer.keys_held == 0
    assert d.metrics.registry.get_sample_value("distilld_state_restores_total", {"outcome": "restored"}) == 1, (
        "the start's snapshot restored: no window to rebuild from records before the start"
    )
    d.process(_records(40, 3))
    assert producer.steps.count(("commit",)) == 1 and producer.steps[-1] == out, "committed already: no start again"


@pytest.mark.parametrize("failure", ["abortable", "retriable", "fatal"])
def test_a_start_not_committed_lets_nothing_of_its_partition_out(failure: str) -> None:
    """The transaction committing a partition's start failed: none of the batch is processed (no output
    without the start committed). Abortable or retriable past the deadline, the batch is read again from the
    start, which the next batch commits (a retriable one once the transaction is retried); fatal, the daemon
    stops."""
    from confluent_kafka import KafkaError, KafkaException

    d, member, producer = _fresh_exactly_once()
    d.checkpoints.timeout_s = 0.1
    error = KafkaError(
        KafkaError._TIMED_OUT if failure == "retriable" else KafkaError._FENCED,
        failure,
        fatal=failure == "fatal",
        retriable=failure == "retriable",
        txn_requires_abort=failure == "abortable",
    )
    producer.fail_offsets = KafkaException(error)
    d.txn.begin()  # type: ignore[union-attr]
    d.process(_records(40, 5))
    assert not [s for s in producer.steps if s == ("produce", "o")], "no output"
    part = d.partitions[("t", 0)]
    assert part.processed is None and part.progress.committed is None
    if failure == "fatal":
        assert d.stopping and d.failure is not None and "fatal" in d.failure
        assert member.assigned == [(0, -1001)], "not read again"
        return
    assert d.failure is None and member.assigned[-1] == (0, 40), "read again from the start"
    assert d.checkpoints.unfinished == (failure == "retriable")
    producer.fail_offsets = None
    if failure == "retriable":
        d.checkpoints.commit()  # the loop's next turn retries the transaction
        assert not d.checkpoints.unfinished
    d.txn.begin()  # type: ignore[union-attr]
    d.process(_records(40, 5))
    assert producer.steps[-1] == ("produce", "o") and part.progress.committed == 40 and part.processed == 45


def test_a_transaction_commit_works_to_the_deadline_it_is_given() -> None:
    import time

    from distilld.daemon.transactions import Transactions

    timeouts: list[float] = []

    class Producer:
        def begin_transaction(self) -> None:
            pass

        def send_offsets_to_transaction(self, offsets: Any, metadata: Any, timeout: float) -> None:
            timeouts.append(timeout)

        def commit_transaction(self, timeout: float) -> None:
            timeouts.append(timeout)

    txn = Transactions(Producer(), 30.0)  # type: ignore[arg-type]
    txn.begin(time.monotonic() + 2.0)
    txn.commit([TopicPartitionStub()], None, time.monotonic() + 2.0)  # type: ignore[list-item]
    assert len(timeouts) == 2 and all(0.0 <= t <= 2.0 for t in timeouts), timeouts
    txn.begin()
    txn.commit([], None)
    assert 29.0 < timeouts[-1] <= 30.0, "without a deadline each call may take the whole timeout"


class TopicPartitionStub:
    pass


def test_an_identity_provider_away_is_retried_and_counted_a_broker_rejection_stops(daemon: Daemon) -> None:
    """OAUTHBEARER's oidc method fetches tokens from an identity provider: its outage must not
    crash-loop every replica; a broker that refuses the credentials is a configuration error."""
    from confluent_kafka import KafkaError

    token = KafkaError(KafkaError._AUTHENTICATION, "Failed to acquire SASL OAUTHBEARER token: Failed to connect")
    daemon._on_client_error(token)
    daemon._on_client_error(token)
    assert not daemon.stopping and daemon.failure is None
    assert daemon.metrics.registry.get_sample_value("distilld_token_errors_total") == 2
    daemon._on_client_error(KafkaError(KafkaError.SASL_AUTHENTICATION_FAILED, "Authentication failed"))
    assert daemon.stopping and daemon.failure is not None and "kafka.sasl" in daemon.failure


# an Entra ID (Azure AD) refusal: its trace ids make it longer than librdkafka's 511-character error text
ENTRA_REFUSAL = (
    '{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the '
    "secret being sent in the request is the client secret value, not the client secret ID, for a secret added "
    "to app '00000000-1111-2222-3333-444444444444'.\\r\\nTrace ID: 5b2c9a4e-0f3d-4b8e-9a77-1c2d3e4f5a6b\\r\\n"
    'Correlation ID: 8e7d6c5b-4a39-2817-0615-f4e3d2c1b0a9\\r\\nTimestamp: 2026-11-30 17:00:00Z",'
    '"error_codes":[7000215],"timestamp":"2026-11-30 17:00:00Z","trace_id":"5b2c9a4e-0f3d-4b8e-9a77-1c2d3e4f5a6b",'
    '"correlation_id":"8e7d6c5b-4a39-2817-0615-f4e3d2c1b0a9",'
    '"error_uri":"https://login.microsoftonline.com/error?code=7000215"}'
)


@pytest.mark.parametrize(
    "answer",
    ['{"error":"invalid_client","error_description":"Invalid client credentials"}', ENTRA_REFUSAL],
    ids=["invalid_client", "entra-id-cut-short"],
)
def test_an_identity_provider_that_refuses_the_credentials_stops_the_daemon(daemon: Daemon, answer: str) -> None:
    """A 401 ``invalid_client`` is no outage: retrying it forever kept the daemon not ready with a
    warning a minute. The error text is librdkafka's own, from a real client and a stand-in provider;
    librdkafka cuts it at 511 characters, so Entra ID's refusal arrives as JSON cut short."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from confluent_kafka import KafkaError, Producer

    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = answer.encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    provider = HTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=provider.serve_forever, daemon=True).start()
    errors: list[KafkaError] = []
    client = Producer(
        {
            "bootstrap.servers": "127.0.0.1:1",
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER",
            "sasl.oauthbearer.method": "oidc",
            "sasl.oauthbearer.client.id": "distilld",
            "sasl.oauthbearer.client.secret": "wrong",
            "sasl.oauthbearer.token.endpoint.url": f"http://127.0.0.1:{provider.server_port}/token",
            "error_cb": errors.append,
        }
    )
    deadline = time.monotonic() + 30
    while not errors and time.monotonic() < deadline:
        client.poll(0.1)
    provider.shutdown()
    assert errors, "librdkafka reported no token failure"
    daemon._on_client_error(errors[0])
    assert daemon.stopping and daemon.failure is not None
    assert "invalid_client" in daemon.failure and "kafka.sasl" in daemon.failure
    assert daemon.metrics.registry.get_sample_value("distilld_token_errors_total") == 1


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        ('{"error":"access_denied","error_description":"Unauthorized"}', "access_denied"),  # Auth0: a wrong secret
        ('{"error": "invalid_scope", "error_description": "AADSTS70011"}', "invalid_scope"),
        # librdkafka retries 429 and 5xx, then reports the bodies glued together: an outage, not a refusal
        ('{"error":"invalid_request","error_description":"upstream db timeout"}' * 5, None),
        ('{"error_description":"' + "x" * 480 + '","error":"invalid_cl', None),  # cut at 511 characters
        ('{"error":"temporarily_unavailable"}', None),
        ("Failed to connect to identity provider", None),
        ('["invalid_client"]', None),
    ],
)
def test_only_an_answer_that_refuses_the_request_stops_the_daemon(
    daemon: Daemon, answer: str, refused: str | None
) -> None:
    from confluent_kafka import KafkaError

    daemon._on_client_error(
        KafkaError(KafkaError._AUTHENTICATION, f"Failed to acquire SASL OAUTHBEARER token: {answer}")
    )
    assert daemon.metrics.registry.get_sample_value("distilld_token_errors_total") == 1
    if refused is None:
        assert not daemon.stopping and daemon.failure is None
    else:
        assert daemon.stopping and daemon.failure is not None and f"({refused})" in daemon.failure


def test_the_endpoints_serve_on_an_ipv6_address() -> None:
    """``ThreadingHTTPServer`` alone binds IPv4 only: ``::`` failed at start-up on IPv6-only clusters."""
    import socket
    import urllib.request

    from prometheus_client import CollectorRegistry

    from distilld.daemon.endpoints import Endpoints

    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip(reason="missing an IPv6 loopback: this machine cannot bind ::1")
    ep = Endpoints("::1", 0, CollectorRegistry(), 60.0, lambda: (True, "ok")).start()
    try:
        with urllib.request.urlopen(f"http://[::1]:{ep.port}/readyz", timeout=5) as r:
            assert r.status == 200
    finally:
        ep.stop()


def test_the_endpoints_answer_head_like_get_without_a_body() -> None:
    """Some load balancers and probes ask with HEAD: it was 501 on every path, a healthy pod seen as down."""
    import http.client

    from prometheus_client import CollectorRegistry

    from distilld.daemon.endpoints import Endpoints

    ep = Endpoints("127.0.0.1", 0, CollectorRegistry(), 60.0, lambda: (False, "no broker connection")).start()
    try:
        for path, status in [("/healthz", 200), ("/readyz", 503), ("/metrics", 200), ("/nope", 404)]:
            conn = http.client.HTTPConnection("127.0.0.1", ep.port, timeout=5)
            try:
                conn.request("GET", path)
                got = conn.getresponse()
                body = got.read()
                conn.request("HEAD", path)
                head = conn.getresponse()
                assert (head.status, head.read()) == (status, b""), path
                assert head.getheader("Content-Length") == str(len(body)) and got.status == status
                conn.request("GET", path)
                assert conn.getresponse().status == status
            finally:
                conn.close()
    finally:
        ep.stop()


def test_a_field_path_no_record_has_is_logged_once_and_unusable_times_are_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A typo in a feature's field, reducer.key or reducer.time only showed as a metric: every record
    missing the feature, one window for all, processing time instead of event time."""
    from distilld.daemon.partition import Partition

    s = load_settings(
        None,
        kafka={"bootstrap_servers": "127.0.0.1:1", "group_id": "g", "input_topics": ["t"], "output_topic": "o"},
        features=[{"name": "country", "type": "categorical", "field": "adress.country", "categories": ["de"]},
                  {"name": "age", "type": "numeric"}],
        reducer={"key": "user_id", "time": "ts"},
        processing={"on_error": "skip"},
        metrics={"port": 0},
    )  # fmt: skip
    d = Daemon(s)
    reducer = d._new_reducer()
    part = Partition(PartitionProgress("t", 0), reducer, reducer.missing_counts.copy())
    records = [{"address": {"country": "de"}, "age": 30 + i % 7, "user": i % 3} for i in range(200)]
    msgs: list[Any] = [None] * len(records)  # the paths are fields of the records: no message is read
    with caplog.at_level("WARNING", logger="distilld"):
        d.record_path._select(part, msgs, records)
        d.record_path._select(part, msgs, records)
    lines = [r.getMessage() for r in caplog.records if r.name == "distilld"]
    assert sum("feature 'country'" in line for line in lines) == 1, lines
    assert sum("reducer.key 'user_id'" in line for line in lines) == 1, lines
    assert sum("reducer.time 'ts'" in line for line in lines) == 1, lines
    assert not any("'age'" in line for line in lines), "a feature the records have is not reported"
    assert d.metrics.registry.get_sample_value("distilld_timestamps_replaced_total") == 400


def test_readyz_names_a_subscribed_topic_that_does_not_exist(daemon: Daemon) -> None:
    """It said 'not yet in the consumer group' for as long as the input topic was missing."""
    from confluent_kafka import KafkaError

    class Missing:
        def error(self) -> KafkaError:
            return KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, "Subscribed topic not available: peeple")

        def topic(self) -> str:
            return "peeple"

    daemon.broker_up = True
    assert daemon._drop_errors([Missing()]) == []
    assert daemon.readiness() == (False, "input topic(s) not found: peeple")
    daemon.partitions[("peeple", 0)] = None  # type: ignore[assignment]
    assert "not found" not in daemon.readiness()[1], "once partitions are assigned the topic exists"


def test_an_output_topic_the_cluster_does_not_have_is_logged_at_start_up(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    """On a cluster without auto-creation it only showed as produce errors, record by record."""

    def ensure_topic(reads: Any, wanted: Any, timeout_s: float = 0.0, listed: Any = ()) -> int:
        daemon.state.topics = {"t", "d", "g.distilld-state"}
        return 1

    daemon.state.ensure_topic = ensure_topic  # type: ignore[method-assign]
    subscribed: list[Any] = []
    daemon.consumer.subscribe = lambda topics, **callbacks: subscribed.append(topics)  # type: ignore[attr-defined]
    with caplog.at_level("WARNING", logger="distilld"):
        daemon._subscribe()
    lines = [r.getMessage() for r in caplog.records]
    assert subscribed == [["t"]]
    assert any("kafka.output_topic o does not exist" in line for line in lines), lines
    assert not any("dlq_topic" in line for line in lines), "the DLQ topic exists"


def test_a_subscription_librdkafka_refuses_stops_the_daemon_with_the_reason(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    """subscribe() ran outside the try block: a pattern librdkafka's regex refuses ended the daemon in a traceback."""
    from confluent_kafka import KafkaError, KafkaException

    daemon.state.ensure_topic = lambda *args, **kwargs: 1  # type: ignore[method-assign]

    def refuse(topics: Any, **callbacks: Any) -> None:
        raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "Failed to set subscription: Invalid argument"))

    daemon.consumer.subscribe = refuse  # type: ignore[attr-defined]
    with caplog.at_level("ERROR", logger="distilld"):
        daemon._subscribe()
    assert (
        daemon.stopping and daemon.failure == "cannot subscribe to ['t'] (Failed to set subscription: Invalid argument)"
    )
    assert any("cannot subscribe to" in r.getMessage() for r in caplog.records)


def test_a_bootstrap_address_no_broker_answers_at_is_named_as_such(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong kafka.bootstrap_servers logged "cannot check the state topic ... retrying" every 5 s: it sent
    the operator to the state topic. Until a broker has answered, the address is what is named."""
    from confluent_kafka import KafkaError, KafkaException

    def ensure_topic(reads: Any, wanted: Any, timeout_s: float = 0.0, listed: Any = ()) -> int:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata: Broker transport failure"))

    daemon.state.ensure_topic = ensure_topic  # type: ignore[method-assign]
    daemon.consumer.poll = lambda timeout=0: None  # type: ignore[attr-defined]
    with caplog.at_level("WARNING", logger="distilld"):
        daemon._subscribe()
        daemon.broker_up = True  # once a broker has answered, a failure is the state topic's again
        daemon._subscribe()
    lines = [r.getMessage() for r in caplog.records]
    assert "no broker answers at" in lines[0] and "kafka.bootstrap_servers" in lines[0], lines
    assert "cannot check the state topic" in lines[1], lines
    assert not daemon.subscribed
    caplog.clear()

    def unanswered(reads: Any, wanted: Any, timeout_s: float = 0.0, listed: Any = ()) -> int:
        raise TimeoutError()  # a broker answered the metadata request, the creation was not answered

    daemon.broker_up = False
    daemon.state.ensure_topic = unanswered  # type: ignore[method-assign]
    with caplog.at_level("WARNING", logger="distilld"):
        daemon._subscribe()
    (line,) = [r.getMessage() for r in caplog.records]
    assert "cannot check the state topic" in line and "not answered in time" in line, line


def test_the_daemon_waits_for_an_input_topic_before_it_makes_the_state_topic(
    daemon: Daemon, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    """A daemon started before its input topic existed made the state topic with 1 partition, for good.
    Now it waits (not ready, saying why, one log line a minute) and subscribes once an input exists."""
    from distilld.daemon import loop as loop_module
    from distilld.daemon.state import NoInputTopic

    exists = {"t": False}

    def ensure_topic(reads: Any, wanted: Any, timeout_s: float = 0.0, listed: Any = ()) -> int:
        if not exists["t"]:
            raise NoInputTopic("g.distilld-state")
        daemon.state.topics = {"t", "o", "d", "g.distilld-state"}
        return 3

    daemon.state.ensure_topic = ensure_topic  # type: ignore[method-assign]
    subscribed: list[Any] = []
    daemon.consumer.subscribe = lambda topics, **callbacks: subscribed.append(topics)  # type: ignore[attr-defined]
    clock = [100.0]
    monkeypatch.setattr(loop_module.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(loop_module.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    with caplog.at_level("WARNING", logger="distilld"):
        for _ in range(30):  # 3 s of the loop's turns
            daemon._subscribe()
    waiting = [r.getMessage() for r in caplog.records if "no input topic is visible" in r.getMessage()]
    assert len(waiting) == 1 and "g.distilld-state" in waiting[0], waiting
    assert not daemon.subscribed and subscribed == []
    assert daemon.readiness() == (False, "input topic(s) not found: t")
    exists["t"] = True
    clock[0] += loop_module.NO_INPUT_RETRY_S
    daemon._subscribe()
    assert daemon.subscribed and subscribed == [["t"]]
    assert daemon.readiness() == (False, "not yet in the consumer group")


def test_a_transaction_retry_never_runs_past_its_deadline_and_abort_keeps_it(monkeypatch: Any) -> None:
    """A retriable error just before the deadline started another full wait (19 s for a 10 s deadline)."""
    from confluent_kafka import KafkaError, KafkaException

    import distilld.daemon.transactions as txn_module
    from distilld.daemon.transactions import Transactions

    now = [0.0]
    monkeypatch.setattr(txn_module.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(txn_module.time, "sleep", lambda s: None)
    given: list[float] = []

    class Producer:
        def begin_transaction(self) -> None:
            pass

        def commit_transaction(self, timeout: float) -> None:
            given.append(timeout)
            now[0] += 0.95 * timeout  # fails late in what it was given
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "timed out", retriable=True))

        def abort_transaction(self, timeout: float) -> None:
            given.append(timeout)

    txn = Transactions(Producer(), 30.0, retry_backoff_s=0.0)  # type: ignore[arg-type]
    txn.begin(10.0)
    with pytest.raises(KafkaException):
        txn.commit([], None, deadline=10.0)
    assert now[0] <= 10.0 and all(t <= 10.0 for t in given), (now[0], given)
    assert given[1] < given[0], "a retry gets only what is left"
    txn.abort(deadline=12.0)
    assert given[-1] <= 12.0 - now[0] + 1e-9
    txn.open = True
    txn.abort()
    assert given[-1] == 30.0


def test_a_replica_left_without_partitions_is_ready_once_its_group_assigns(daemon: Daemon) -> None:
    """A topic missing at start, then created, then given wholly to other replicas: /readyz stayed
    'input topic(s) not found' forever on the one left without partitions."""
    daemon.broker_up = True
    daemon.missing_topics.add("t")
    daemon.consumer.incremental_assign = lambda starts: None  # type: ignore[attr-defined]
    daemon._on_assign(daemon.consumer, [])  # type: ignore[arg-type]
    assert daemon.readiness()[0], daemon.readiness()
    # nothing changed here: not an assignment change (every member is called at each cooperative rebalance)
    assert daemon.metrics.registry.get_sample_value("distilld_rebalances_total", {"kind": "assign"}) == 0


def test_records_re_read_to_rebuild_a_window_are_not_counted_missing_again() -> None:
    """A replay re-reads records counted when first read (not consumed again): counted missing again, the
    dashboard's missing share (missing over consumed) went past 1 after every hand-over."""
    from confluent_kafka import Message

    from distilld.daemon.partition import Partition

    s = load_settings(
        None,
        kafka={"bootstrap_servers": "127.0.0.1:1", "group_id": "g", "input_topics": ["t"], "output_topic": "o"},
        features=[{"name": "a", "type": "numeric"}],
        processing={"on_error": "skip"},
        metrics={"port": 0},
    )
    d = Daemon(s)
    d.output.send = lambda *args, **kw: None  # type: ignore[method-assign]
    reducer = d._new_reducer()
    part = Partition(PartitionProgress("t", 0), reducer, reducer.missing_counts.copy())
    part.processed, part.replay_until = 0, 10  # restored at 0, committed at 10: 0-9 are re-read
    part.progress.committed = part.progress.committable = 10
    msgs = [Message(topic="t", partition=0, offset=i, value=b'{"b": 1}', timestamp=(1, 1000)) for i in range(20)]
    d.record_path.process_partition(("t", 0), part, msgs)
    registry = d.metrics.registry
    assert registry.get_sample_value("distilld_records_replayed_total") == 10
    assert registry.get_sample_value("distilld_records_consumed_total", {"topic": "t"}) == 10
    assert registry.get_sample_value("distilld_feature_missing_total", {"feature": "a"}) == 10


def test_records_purged_by_an_abort_are_not_counted_as_produce_errors() -> None:
    """Aborting a transaction (a lost partition, say) purges its outputs: each delivery report of a purge
    counted in distilld_produce_errors_total, and the alert on it fired for failures that never happened."""
    from confluent_kafka import KafkaError

    from distilld.daemon.metrics import DaemonMetrics
    from distilld.daemon.output import Output

    producer = FakeProducer()
    out = Output(producer, DaemonMetrics(["f"]), transactional=True)  # type: ignore[arg-type]
    batch = PartitionProgress("t", 0).add(5, 3)
    for _ in range(3):
        out.send(batch, "o", b"v", None, [], 0)
    for code in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT, KafkaError._MSG_TIMED_OUT):
        producer.calls.pop()["on_delivery"](KafkaError(code), None)
    assert out.metrics.registry.get_sample_value("distilld_produce_errors_total") == 1, "the timed-out one only"
    assert out.txn_error is not None and out.txn_error.code() == KafkaError._MSG_TIMED_OUT


def test_a_transaction_the_brokers_do_not_take_in_time_is_committed_later_not_an_exit() -> None:
    """exactly_once: a commit still failing with a retriable error at its deadline (the brokers away longer
    than shutdown_timeout_s) stopped the daemon with exit 1, once per outage. Now nothing more is read
    or produced until that transaction is committed: only commit_transaction is called again, the offsets
    are sent once, and the partitions count as committed when it goes through."""
    from confluent_kafka import KafkaError, KafkaException

    d = _exactly_once_daemon(shutdown_timeout_s=0.2)
    calls: list[str] = []
    down = [True]

    class Client:
        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kw: calls.append(name) or []

        def commit_transaction(self, timeout: float) -> None:
            calls.append("commit_transaction")
            if down[0]:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "brokers away", retriable=True))

    d.consumer = d.checkpoints.consumer = Client()  # type: ignore[assignment]
    d.txn.producer = d.output.producer = Client()  # type: ignore[union-attr]
    d.txn.retry_backoff_s = 0.05  # type: ignore[union-attr]
    d.subscribed = True
    part = _held(d, 0)
    d.txn.begin()  # type: ignore[union-attr]
    d.checkpoints.commit()
    assert d.failure is None and not d.stopping, d.failure
    assert d.checkpoints.unfinished and part.progress.committed == 5
    d.step()  # still away: the commit is tried again, nothing is read
    assert "consume" not in calls and d.checkpoints.unfinished
    down[0] = False
    d.step()
    assert not d.checkpoints.unfinished and part.progress.committed == 10
    assert calls.count("send_offsets_to_transaction") == 1, "the offsets are in the transaction already"
    assert "abort_transaction" not in calls and "consume" not in calls
    d.step()
    assert "consume" in calls, "reading again once it is committed"


def test_a_group_coordinator_that_does_not_answer_the_offsets_holds_neither_the_loop_nor_a_stop() -> None:
    """exactly_once: librdkafka's send_offsets_to_transaction does not keep to its timeout while the group
    coordinator does not answer (librdkafka issue 5456): with the brokers cut off, a SIGTERM's stop waited
    66 s (socket.timeout.ms) instead of shutdown_timeout_s = 5 s, and a periodic commit held the loop as long.
    Now the call is waited for up to the deadline; one still running is waited for again, not made twice."""
    import threading

    from confluent_kafka import TopicPartition

    d = _exactly_once_daemon(shutdown_timeout_s=0.3)
    calls: list[str] = []
    answer = threading.Event()  # the group coordinator answers

    class Client:
        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kw: calls.append(name) or []

        def send_offsets_to_transaction(self, offsets: Any, metadata: Any, timeout: float) -> None:
            calls.append("send_offsets_to_transaction")
            answer.wait(30)  # whatever its timeout says

    d.consumer = d.checkpoints.consumer = Client()  # type: ignore[assignment]
    d.txn.producer = d.output.producer = Client()  # type: ignore[union-attr]
    d.subscribed = True
    d.state.partitions = 1
    part = _held(d, 0)
    d.txn.begin()  # type: ignore[union-attr]
    try:
        d.checkpoints.commit()  # a periodic commit: back without the answer, to retry it
        assert not answer.is_set() and d.failure is None and d.checkpoints.unfinished, d.failure
        assert part.progress.committed == 5
        d.step()  # still no answer: waited for again, not called again, nothing read
        assert calls.count("send_offsets_to_transaction") == 1 and "consume" not in calls
        d.stopping = True
        d.consumer.close = lambda: d._on_revoke(d.consumer, [TopicPartition("t", 0)])  # type: ignore[method-assign]
        d.shutdown()
        assert not answer.is_set(), "the stop ended at its deadline, the coordinator still silent"
        assert calls.count("send_offsets_to_transaction") == 1 and "commit_transaction" not in calls
        assert part.progress.committed == 5, "not committed"
    finally:
        answer.set()


def test_readyz_says_not_ready_while_a_transaction_waits_to_be_committed() -> None:
    """exactly_once: while a transaction the brokers have not taken is retried, nothing is consumed, so the
    consumer's statistics (what says a broker is up) are not served: /readyz said 200 for the whole of a
    40 s cut of the brokers (probed with the proxy), where at_least_once says 503 within a second."""
    from confluent_kafka import KafkaError, KafkaException

    d = _exactly_once_daemon()
    down = [True]

    class Client:
        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kw: []

        def commit_transaction(self, timeout: float) -> None:
            if down[0]:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "brokers away", retriable=True))

    d.consumer = d.checkpoints.consumer = Client()  # type: ignore[assignment]
    d.txn.producer = d.output.producer = Client()  # type: ignore[union-attr]
    d.txn.retry_backoff_s = 0.0  # type: ignore[union-attr]
    d.checkpoints.timeout_s = 0.1
    d.subscribed = d.joined = d.broker_up = True  # as the last statistics before the brokers went away said
    _held(d, 0)
    assert d.readiness()[0]
    d.txn.begin()  # type: ignore[union-attr]
    d.checkpoints.commit()
    assert d.checkpoints.unfinished
    ready, why = d.readiness()
    assert not ready and "not committed" in why, why
    down[0] = False
    d.step()
    assert not d.checkpoints.unfinished and d.readiness()[0], d.readiness()


def test_a_stop_asked_for_while_a_commit_waits_for_the_brokers_ends_within_shutdown_timeout(
    monkeypatch: Any,
) -> None:
    """exactly_once, the brokers away: a SIGTERM came while the loop retried a transaction (each try may wait
    shutdown_timeout_s); the stop began only once that try had given up, with shutdown_timeout_s of its own:
    twice the timeout in all (probed: 8.6 s for a 5 s timeout; with the default 30 s, past the chart's grace
    period of 45 s). Now the stop's deadline counts from the signal. The clock is the test's."""
    from types import SimpleNamespace

    from confluent_kafka import KafkaError, KafkaException

    from distilld.daemon import checkpoint as checkpoint_module
    from distilld.daemon import loop as loop_module
    from distilld.daemon import transactions as txn_module

    now = [1000.0]
    fake_time = SimpleNamespace(
        monotonic=lambda: now[0], sleep=lambda s: None, perf_counter=lambda: now[0], time=lambda: now[0]
    )
    for module in (loop_module, checkpoint_module, txn_module):
        monkeypatch.setattr(module, "time", fake_time)
    d = _exactly_once_daemon(shutdown_timeout_s=30)
    asked: list[float] = []

    class Client:
        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kw: []

        def commit_transaction(self, timeout: float) -> None:
            if not asked:
                d.request_stop()  # the SIGTERM arrives while librdkafka waits
                asked.append(now[0])
            now[0] += timeout  # the brokers do not answer: the whole timeout passes
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "brokers away", retriable=True))

        def close(self) -> None:
            pass

    d.consumer = d.checkpoints.consumer = Client()  # type: ignore[assignment]
    d.txn.producer = d.output.producer = Client()  # type: ignore[union-attr]
    d.output.flush = lambda deadline: True  # type: ignore[method-assign]
    d.state.partitions = 1
    d.subscribed = True
    part = _held(d, 0)
    d.txn.begin()  # type: ignore[union-attr]
    d.checkpoints.unfinished = True  # retrying a transaction the brokers have not taken
    d.step()
    assert d.stopping and asked
    d.shutdown()
    assert now[0] - asked[0] <= 30.0, f"the stop took {now[0] - asked[0]:.0f}s of the test's clock"
    assert part.progress.committed == 5, "not committed"


def test_the_windows_start_is_looked_up_once_for_all_partitions_assigned(daemon: Daemon) -> None:
    """A partition assigned without a usable snapshot rebuilds its window from the log; where the window starts
    was looked up partition by partition, each waiting up to shutdown_timeout_s for brokers that do not answer:
    12 partitions held the rebalance callback (the loop, /healthz, a stop) for 6 minutes, past the liveness
    probe and max.poll.interval.ms. Now one lookup serves them all."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    lookups: list[list[int]] = []
    answer = [False]

    class Member:
        def committed(self, parts: list[TopicPartition], timeout: float = 0.0) -> list[TopicPartition]:
            return [TopicPartition(p.topic, p.partition, 100) for p in parts]

        def offsets_for_times(self, parts: list[TopicPartition], timeout: float = 0.0) -> list[TopicPartition]:
            lookups.append([p.partition for p in parts])
            if not answer[0]:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "no leader answered"))
            return [TopicPartition(p.topic, p.partition, 10 * p.partition) for p in parts]

        def incremental_assign(self, parts: list[TopicPartition]) -> None:
            self.assigned = [(p.partition, p.offset) for p in parts]

    member = Member()
    daemon.consumer = member  # type: ignore[assignment]
    _no_snapshots(daemon)
    assigned = [TopicPartition("t", p) for p in range(4)]
    daemon._on_assign(member, assigned)  # type: ignore[arg-type]
    _restore_waiting(daemon)
    assert lookups == [[0, 1, 2, 3]], "one lookup for every partition, not one each"
    assert not daemon.stopping and member.assigned == [(p, 100) for p in range(4)], "from the commits"
    for p in range(4):
        daemon.partitions.pop(("t", p))
    answer[0] = True
    daemon._on_assign(member, assigned)  # type: ignore[arg-type]
    _restore_waiting(daemon)
    assert lookups[1:] == [[0, 1, 2, 3]]
    assert member.assigned == [(p, 10 * p) for p in range(4)], "each from its window's start"
    assert [daemon.partitions[("t", p)].replay_until for p in range(4)] == [100] * 4


def test_a_transaction_left_unfinished_by_a_revoke_still_commits_the_revoked_partitions_offsets() -> None:
    """exactly_once: a revoke's checkpoint met the group coordinator away past its deadline (the offsets not
    taken), so the transaction stayed open, to be committed later, and the revoked partition was handed over.
    The retry sent the offsets of the partitions still assigned only, under the group's newer generation: the
    transaction then committed the revoked partition's outputs without its offsets, and its next owner, reading
    from the last commit, produced them again. A retry sends what the first try did: the revoked partition's
    offsets too, under the generation its work was done in (fenced if the group has moved on since)."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    d = _exactly_once_daemon()
    sent: list[tuple[list[tuple[str, int, int]], Any]] = []
    down = [True]
    generation = ["generation 1"]

    class Client:
        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kw: []

        def consumer_group_metadata(self) -> str:
            return generation[0]

        def send_offsets_to_transaction(self, offsets: Any, metadata: Any, timeout: float) -> None:
            if down[0]:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "coordinator away", retriable=True))
            sent.append(([(tp.topic, tp.partition, tp.offset) for tp in offsets], metadata))

    d.consumer = d.checkpoints.consumer = Client()  # type: ignore[assignment]
    d.txn.producer = d.output.producer = Client()  # type: ignore[union-attr]
    d.txn.retry_backoff_s = 0.0  # type: ignore[union-attr]
    d.checkpoints.timeout_s = 0.1
    d.subscribed = True
    d.state.partitions = 1
    for p in (0, 1):
        _held(d, p)  # records 5-9 produced in the open transaction
    d.txn.begin()  # type: ignore[union-attr]
    d._on_revoke(d.consumer, [TopicPartition("t", 0)])
    assert d.checkpoints.unfinished and d.failure is None, d.failure
    assert list(d.partitions) == [("t", 1)], "handed over"
    generation[0] = "generation 2"  # the group rebalanced meanwhile
    down[0] = False
    d.step()
    assert not d.checkpoints.unfinished
    assert sent == [([("t", 0, 10), ("t", 1, 10)], "generation 1")], sent


def test_records_consumed_after_a_revoke_left_the_transaction_unfinished_go_into_no_transaction() -> None:
    """exactly_once: consume() serves the rebalance callbacks, then returns records. A revoke there whose
    commit met the group coordinator away past its deadline left the transaction unfinished, and the records
    consume() returned next were processed into it: their outputs went into a transaction whose offsets were
    already sent (or being sent) without theirs, so a commit made them visible with their offsets uncommitted
    (produced again after a restart), or librdkafka refused them mid-commit and the transaction could neither
    commit nor abort. Now they are read again once the transaction is committed."""
    import threading

    from confluent_kafka import Message, TopicPartition

    d = _exactly_once_daemon()
    calls: list[str] = []
    assigned: list[list[tuple[int, int]]] = []
    answer = threading.Event()  # the group coordinator answers

    class Client:
        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kw: calls.append(name) or []

        def send_offsets_to_transaction(self, offsets: Any, metadata: Any, timeout: float) -> None:
            calls.append("send_offsets_to_transaction")
            answer.wait(30)

        def consume(self, n: int, timeout: float) -> list[Any]:
            calls.append("consume")
            d._on_revoke(self, [TopicPartition("t", 0)])  # type: ignore[arg-type]
            return [Message(topic="t", partition=1, offset=10 + i, value=b'{"a": 1}') for i in range(50)]

        def incremental_assign(self, parts: list[TopicPartition]) -> None:
            assigned.append([(p.partition, p.offset) for p in parts])

        def produce(self, topic: str, *args: Any, **kw: Any) -> None:
            calls.append(f"produce {topic}")

    d.consumer = d.checkpoints.consumer = Client()  # type: ignore[assignment]
    d.txn.producer = d.output.producer = Client()  # type: ignore[union-attr]
    d.checkpoints.timeout_s = 0.2
    d.subscribed = True
    d.state.partitions = 1
    for p in (0, 1):
        _held(d, p)  # records 5-9 produced in the open transaction
    d.txn.begin()  # type: ignore[union-attr]
    try:
        d.step()
        assert d.checkpoints.unfinished and d.failure is None, d.failure
        assert d.partitions[("t", 1)].processed == 10, "nothing more went into the unfinished transaction"
        assert "produce o" not in calls, "no output: only the revoked partition's snapshot is in it"
        assert assigned == [[(1, 10)]], "read again from where the transaction's offsets are"
        answer.set()
        d.step()
        assert not d.checkpoints.unfinished and d.partitions[("t", 1)].progress.committed == 10
    finally:
        answer.set()


def test_a_transaction_aborted_while_it_waited_to_be_committed_lets_the_loop_read_again() -> None:
    """exactly_once: a transaction left unfinished (the coordinator away past the commit's deadline), then
    aborted because partitions were lost (the partitions rewound): the loop kept retrying a commit with nothing
    left to commit, so it never consumed again (not ready, for good, while /healthz said alive)."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    d = _exactly_once_daemon()
    calls: list[str] = []

    class Client:
        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kw: calls.append(name) or []

        def send_offsets_to_transaction(self, offsets: Any, metadata: Any, timeout: float) -> None:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "coordinator away", retriable=True))

        def offsets_for_times(self, parts: Any, timeout: float = 0.0) -> list[TopicPartition]:
            return []

    d.consumer = d.checkpoints.consumer = Client()  # type: ignore[assignment]
    d.txn.producer = d.output.producer = Client()  # type: ignore[union-attr]
    d.txn.retry_backoff_s = 0.0  # type: ignore[union-attr]
    d.checkpoints.timeout_s = 0.1
    d.subscribed = True
    _no_snapshots(d)
    for p in (0, 1):
        _held(d, p)  # records 5-9 produced in the open transaction
    d.txn.begin()  # type: ignore[union-attr]
    d.checkpoints.commit()
    assert d.checkpoints.unfinished
    d._on_lost(d.consumer, [TopicPartition("t", 0)])
    assert "abort_transaction" in calls and d.failure is None, d.failure
    rebalances = {
        k: d.metrics.registry.get_sample_value("distilld_rebalances_total", {"kind": k}) for k in ("revoke", "lost")
    }
    assert rebalances == {"revoke": 0, "lost": 1}, "a lost partition is not counted as a revoke"
    d.step()
    assert d.partitions[("t", 1)].processed == 5, "rewound to its commit"
    assert "consume" in calls, "nothing left to commit: reading again"
    assert not d.checkpoints.unfinished


def test_a_stop_while_a_commit_is_retried_puts_no_snapshot_into_the_transaction_being_committed() -> None:
    """exactly_once: commit_transaction called and not finished (the brokers away): librdkafka takes no more
    records into that transaction (produce() fails with _STATE once the commit began). The stop's checkpoint
    still produced snapshots into it: each refused, logged as not written and counted in
    distilld_snapshot_failures_total, at every stop during an outage."""
    from confluent_kafka import KafkaError, KafkaException

    d = _exactly_once_daemon()
    committing = [False]

    class Client:
        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kw: []

        def commit_transaction(self, timeout: float) -> None:
            committing[0] = True
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "brokers away", retriable=True))

        def produce(self, *args: Any, **kw: Any) -> None:
            if committing[0]:  # as librdkafka does once the commit began
                raise KafkaException(KafkaError(KafkaError._STATE, "Operation not valid in state BeginCommit"))

    d.consumer = d.checkpoints.consumer = Client()  # type: ignore[assignment]
    d.txn.producer = d.output.producer = Client()  # type: ignore[union-attr]
    d.txn.retry_backoff_s = 0.0  # type: ignore[union-attr]
    d.checkpoints.timeout_s = d.settings.processing.shutdown_timeout_s = 0.1
    d.subscribed = True
    d.state.partitions = 1
    _held(d, 0)
    d.txn.begin()  # type: ignore[union-attr]
    d.checkpoints.commit()
    assert d.checkpoints.unfinished and d.txn.committing  # type: ignore[union-attr]
    d.request_stop()
    d.shutdown()
    assert d.metrics.registry.get_sample_value("distilld_snapshot_failures_total") == 0


def test_a_batch_waits_on_the_registry_within_the_transaction_timeout_under_exactly_once() -> None:
    """A batch may wait on the Schema Registry for half of max.poll.interval.ms (150 s by default); under
    exactly_once that outlived librdkafka's 60 s transaction.timeout.ms, and the coordinator aborted the
    transaction holding the work done before the wait."""
    assert _exactly_once_daemon()._hold_limit_s == 30.0
    s = load_settings(
        None,
        kafka={"bootstrap_servers": "127.0.0.1:1", "group_id": "g", "input_topics": ["t"], "output_topic": "o"},
        features=[{"name": "a", "type": "numeric"}],
        processing={"on_error": "skip"},
        metrics={"port": 0},
    )
    assert Daemon(s)._hold_limit_s == 150.0, "at_least_once: half of max.poll.interval.ms"


def test_readyz_says_the_schema_registry_is_unreachable_while_batches_wait_for_it() -> None:
    """A batch waits on an unreachable Schema Registry up to half of max.poll.interval.ms (150 s), the consumer not
    polled meanwhile: /readyz said "no broker statistics for 60s: the brokers or the loop are stuck". It now names
    the registry and how long it has been away, until a batch gets through; /healthz stays 200 (each retry's
    wait beats)."""
    import time

    from distilld.codecs.registry import RegistryUnavailable
    from distilld.daemon.partition import Partition

    d, _ = _dlq_daemon()
    d.consumer = _CommittedMember()  # type: ignore[assignment]
    reducer = d._new_reducer()
    d.partitions[("t", 0)] = Partition(PartitionProgress("t", 0), reducer, reducer.missing_counts.copy())
    d.subscribed = d.joined = d.broker_up = True
    beats: list[float] = []
    d.endpoints = SimpleNamespace(heartbeat=time.monotonic(), beat=lambda: beats.append(time.monotonic()))  # type: ignore[assignment]
    seen: list[tuple[bool, str]] = []
    decode = d.decode

    def down(values: list[bytes | None]) -> Any:
        assert d._registry_wait(0.01)  # a lookup failed: its retry waits
        d._last_stats -= 60  # as if it had waited a minute, no statistics served
        seen.append(d.readiness())
        raise RegistryUnavailable("schema registry unreachable: connection refused")  # held too long: read again

    d.decode = down  # type: ignore[method-assign]
    d._batch_started = time.monotonic()
    d.process(_records(0, 3))
    assert beats, "the retry's wait keeps /healthz answering 200"
    ok, why = seen[0]
    assert not ok and why.startswith("schema registry unreachable for 0s: a batch waits for it up to 150s"), why
    ok, why = d.readiness()
    assert not ok and why.startswith("schema registry unreachable"), f"between batches read again: {why}"
    d.decode = decode  # type: ignore[method-assign]
    d.process(_records(0, 3))
    assert d.readiness() == (True, "ready: 1 partitions assigned"), "a batch got through; statistics due again"


def test_readyz_names_the_schema_registry_no_longer_once_no_batch_waits_on_it() -> None:
    """The registry was named until a batch got through. With the waiting partitions revoked, or nothing more
    read, that was never: /readyz said "schema registry unreachable" for good, and hid the broker checks behind
    it (the final review's probe). It is named only while waits on it are recent."""
    import time

    from distilld.codecs.registry import RegistryUnavailable
    from distilld.daemon.partition import Partition

    d, _ = _dlq_daemon()
    d.consumer = _CommittedMember()  # type: ignore[assignment]
    reducer = d._new_reducer()
    d.partitions[("t", 0)] = Partition(PartitionProgress("t", 0), reducer, reducer.missing_counts.copy())
    d.subscribed = d.joined = d.broker_up = True
    d.endpoints = SimpleNamespace(heartbeat=time.monotonic(), beat=lambda: None)  # type: ignore[assignment]

    def down(values: list[bytes | None]) -> Any:
        assert d._registry_wait(0.01)
        raise RegistryUnavailable("schema registry unreachable: connection refused")

    d.decode = down  # type: ignore[method-assign]
    d._batch_started = time.monotonic()
    d.process(_records(0, 3))
    assert d.readiness()[1].startswith("schema registry unreachable")
    d._registry_until -= 60  # a minute on, no wait since
    d._in_batch = True  # but a batch at a registry request between two waits (it can outlast the interval)
    assert d.readiness()[1].startswith("schema registry unreachable for"), "named while a batch waits"
    d._in_batch = False
    d.partitions.clear()  # revoked: nothing waits on the registry any more
    d._last_stats = time.monotonic() - 60  # and the brokers silent
    ok, why = d.readiness()
    assert not ok and why.startswith("no broker statistics for 60s"), why
    assert d._registry_since is not None, "not cleared from the HTTP thread: the loop starts a new outage anew"
    d._last_stats = time.monotonic()
    d.process(_records(0, 3))  # no partition: nothing processed, nothing waits
    assert d._registry_since is None


@pytest.mark.parametrize(("health", "warned"), [(20.0, True), (60.0, False)])
def test_a_health_timeout_a_commit_wait_can_outlast_is_warned_of_at_start(
    health: float, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A commit waiting for absent brokers holds the loop up to processing.shutdown_timeout_s without a
    beat: with metrics.health_timeout_s at or below it, /healthz turned 503 and a liveness probe
    restarted a pod that was only waiting, with nothing said at start-up."""
    from distilld.broker import free_port

    s = load_settings(
        None,
        kafka={"bootstrap_servers": "127.0.0.1:1", "group_id": "g", "input_topics": ["t"], "output_topic": "o"},
        features=[{"name": "a", "type": "numeric"}],
        processing={"on_error": "skip", "shutdown_timeout_s": 30},
        metrics={"port": free_port(), "host": "127.0.0.1", "health_timeout_s": health},
    )
    d = Daemon(s)
    try:
        with caplog.at_level("WARNING", logger="distilld"):
            d.start()
    finally:
        assert d.endpoints is not None
        d.endpoints.stop()
    assert ("is not above processing.shutdown_timeout_s" in caplog.text) == warned


# -- records the brokers refuse on delivery (output.blamed) -----------------------------------------------------


def _refusing_output(on_error: str, transactional: bool = False, batch_bytes: int = 100) -> tuple[Any, list[str]]:
    from distilld.daemon.metrics import DaemonMetrics
    from distilld.daemon.output import Output

    failures: list[str] = []
    out = Output(
        FakeProducer(), DaemonMetrics(["f"]), transactional=transactional, on_error=on_error, dlq_topic="d",
        fail=failures.append, batch_bytes=batch_bytes,
    )  # type: ignore[arg-type]  # fmt: skip
    return out, failures


def _refuse(call: dict[str, Any], code: int) -> None:
    from confluent_kafka import KafkaError

    call["on_delivery"](KafkaError(code), None)


def _sample(out: Any, name: str, **labels: str) -> float | None:
    return out.metrics.registry.get_sample_value(name, labels)  # type: ignore[no-any-return]


def test_a_record_the_output_topic_refuses_goes_to_the_dlq_with_its_reason_and_frees_its_offset() -> None:
    """at_least_once: a record the broker refused as too large (alone in its batch: larger than batch.size) was
    produced again every second forever, and its partition's commit never moved past it."""
    from confluent_kafka import KafkaError

    out, _ = _refusing_output("dlq")
    progress = PartitionProgress("t", 3)
    big = b"x" * 500
    out.send(progress.add(42, 1), "o", big, b"k", [("h", b"1"), ("distilld-weight", b"10")], 1234, ("t", 3, 41))
    _refuse(out.producer.calls[0], KafkaError.MSG_SIZE_TOO_LARGE)
    dead = out.producer.calls[1]
    assert (dead["topic"], dead["value"], dead["key"], dead["timestamp"]) == ("d", big, b"k", 1234)
    headers = dict(dead["headers"])
    assert headers["h"] == b"1" and headers["distilld-error"].startswith(b"refused by o: ")
    assert (headers["distilld-source-topic"], headers["distilld-source-partition"]) == (b"t", b"3")
    assert headers["distilld-source-offset"] == b"41"
    assert progress.committable is None and out.in_flight == 1, "held until the DLQ has it"
    out.poll()
    assert len(out.producer.calls) == 2, "not produced to the output topic again"
    dead["on_delivery"](None, None)
    assert progress.committable == 42 and out.in_flight == 0
    assert _sample(out, "distilld_records_dlq_total", reason="refused") == 1
    assert _sample(out, "distilld_produce_errors_total") == 1


def test_a_batch_too_large_for_the_topic_blames_none_of_its_small_records(monkeypatch: Any, caplog: Any) -> None:
    """librdkafka does not split a batch the broker refuses as too large: every record of it comes back
    MSG_SIZE_TOO_LARGE. A record no larger than batch.size may have been refused for its batch-mates (the topic's
    max.message.bytes below batch.size): it is retried, with an ERROR naming the setting, never dead-lettered."""
    import logging

    from confluent_kafka import KafkaError

    import distilld.daemon.output as output_module

    monkeypatch.setattr(output_module, "RETRY_BACKOFF_S", 0.0)
    out, _ = _refusing_output("dlq", batch_bytes=100)
    progress = PartitionProgress("t", 0)
    batch = progress.add(3, 2)
    for i in range(2):
        out.send(batch, "o", b"small", None, [], 0, ("t", 0, i))
    with caplog.at_level(logging.ERROR, logger="distilld.output"):
        for call in list(out.producer.calls):
            _refuse(call, KafkaError.MSG_SIZE_TOO_LARGE)
    assert "batch.size" in caplog.text and "max.message.bytes" in caplog.text
    out.poll()
    assert [c["topic"] for c in out.producer.calls] == ["o", "o", "o", "o"], "retried, not dead-lettered"
    assert progress.committable is None
    for call in out.producer.calls[2:]:
        call["on_delivery"](None, None)
    assert progress.committable == 3
    assert _sample(out, "distilld_records_dlq_total", reason="refused") == 0


def test_a_refused_timestamp_goes_to_the_dlq_stamped_now_and_its_batch_mates_are_retried(monkeypatch: Any) -> None:
    """Kafka (KIP-467) names the records of a batch it refused: librdkafka gives them INVALID_TIMESTAMP or
    INVALID_RECORD and the others _INVALID_DIFFERENT_RECORD. The DLQ copy of a refused timestamp is not given
    that timestamp again (the DLQ topic would refuse it as well)."""
    from confluent_kafka import KafkaError

    import distilld.daemon.output as output_module

    monkeypatch.setattr(output_module, "RETRY_BACKOFF_S", 0.0)
    out, _ = _refusing_output("dlq")
    progress = PartitionProgress("t", 0)
    batch = progress.add(3, 3)
    for i in range(3):
        out.send(batch, "o", b"v%d" % i, None, [], 1_000 + i, ("t", 0, i))
    calls = list(out.producer.calls)
    _refuse(calls[0], KafkaError.INVALID_TIMESTAMP)
    _refuse(calls[1], KafkaError._INVALID_DIFFERENT_RECORD)
    _refuse(calls[2], KafkaError.INVALID_RECORD)
    out.poll()
    sent = [(c["topic"], c["value"], c["timestamp"]) for c in out.producer.calls[3:]]
    assert sent == [("d", b"v0", 0), ("d", b"v2", 1002), ("o", b"v1", 1001)]
    for call in out.producer.calls[3:]:
        call["on_delivery"](None, None)
    assert progress.committable == 3
    assert _sample(out, "distilld_records_dlq_total", reason="refused") == 2


def test_a_dead_letter_the_dlq_topic_refuses_too_is_dropped_logged_and_counted(caplog: Any) -> None:
    import logging

    from confluent_kafka import KafkaError

    out, _ = _refusing_output("dlq")
    progress = PartitionProgress("t", 0)
    out.send(progress.add(8, 1), "o", b"x" * 500, None, [], 0, ("t", 0, 7))
    _refuse(out.producer.calls[0], KafkaError.MSG_SIZE_TOO_LARGE)
    with caplog.at_level(logging.ERROR, logger="distilld.output"):
        _refuse(out.producer.calls[1], KafkaError.MSG_SIZE_TOO_LARGE)
    assert "t[0]@7" in caplog.text and "dropped" in caplog.text
    assert progress.committable == 8 and out.in_flight == 0 and len(out.producer.calls) == 2
    assert _sample(out, "distilld_records_skipped_total", reason="refused") == 1


def test_a_refused_record_is_skipped_or_stops_the_daemon_as_on_error_says() -> None:
    from confluent_kafka import KafkaError

    out, failures = _refusing_output("skip")
    progress = PartitionProgress("t", 0)
    out.send(progress.add(5, 1), "o", b"v", None, [], 0, ("t", 0, 4))
    _refuse(out.producer.calls[0], KafkaError.INVALID_RECORD)
    assert progress.committable == 5 and out.in_flight == 0 and len(out.producer.calls) == 1 and not failures
    assert _sample(out, "distilld_records_skipped_total", reason="refused") == 1

    out, failures = _refusing_output("fail")
    progress = PartitionProgress("t", 2)
    out.send(progress.add(5, 1), "o", b"v", None, [], 0, ("t", 2, 4))
    _refuse(out.producer.calls[0], KafkaError.INVALID_RECORD)
    assert len(failures) == 1 and failures[0].startswith("t[2]@4: refused by o")
    assert progress.committable is None, "the offset is not committed past it"
    assert out.in_flight == 0 and len(out.producer.calls) == 1, "not retried: a stop does not wait for it"


def test_exactly_once_a_refused_record_aborts_one_transaction_then_goes_to_the_dlq_when_redone() -> None:
    """exactly_once: librdkafka makes the transaction abort on a failed delivery; the rewound partition sent the
    refused record again, and every transaction after aborted the same way. Now the redo routes it at once."""
    from confluent_kafka import KafkaError

    out, _ = _refusing_output("dlq", transactional=True)
    out.send(PartitionProgress("t", 0).add(10, 1), "o", b"x" * 500, None, [], 0, ("t", 0, 9))
    _refuse(out.producer.calls[0], KafkaError.MSG_SIZE_TOO_LARGE)
    assert out.txn_error is not None, "this transaction aborts"
    out.discard()  # aborted: the partition is rewound and its records processed again
    progress = PartitionProgress("t", 0)
    out.send(progress.add(10, 1), "o", b"x" * 500, None, [], 0, ("t", 0, 9))
    redo = out.producer.calls[1]
    assert redo["topic"] == "d" and dict(redo["headers"])["distilld-source-offset"] == b"9"
    redo["on_delivery"](None, None)
    assert out.txn_error is None and progress.committable == 10, "the next transaction commits"

    # the DLQ refuses it too: one more abort, then it is dropped and counted
    out, _ = _refusing_output("dlq", transactional=True)
    for attempt in range(3):
        progress = PartitionProgress("t", 0)
        out.send(progress.add(10, 1), "o", b"x" * 500, None, [], 0, ("t", 0, 9))
        if attempt < 2:
            _refuse(out.producer.calls[-1], KafkaError.MSG_SIZE_TOO_LARGE)
            assert out.txn_error is not None
            out.discard()
    assert [c["topic"] for c in out.producer.calls] == ["o", "d"], "nothing produced the third time"
    assert out.txn_error is None and progress.committable == 10 and out.in_flight == 0
    assert _sample(out, "distilld_records_skipped_total", reason="refused") == 1


def test_exactly_once_a_refused_record_with_on_error_fail_stops_the_daemon_at_once() -> None:
    from confluent_kafka import KafkaError

    out, failures = _refusing_output("fail", transactional=True)
    out.send(PartitionProgress("t", 1).add(10, 1), "o", b"v", None, [], 5, ("t", 1, 9))
    _refuse(out.producer.calls[0], KafkaError.INVALID_TIMESTAMP)
    assert failures and failures[0].startswith("t[1]@9: refused by o") and out.txn_error is not None


def test_the_daemon_names_each_outputs_source_so_a_refusal_can_be_routed() -> None:
    """What the loop gives the output: the input record of each selected record, and the producer's batch limit."""
    from confluent_kafka import KafkaError, Message

    from distilld.daemon.partition import Partition

    s = load_settings(
        None,
        kafka={"bootstrap_servers": "127.0.0.1:1", "group_id": "g", "input_topics": ["t"], "output_topic": "o",
               "dlq_topic": "d", "producer": {"batch.size": 200}},
        features=[{"name": "a", "type": "numeric"}],
        reducer={"rate": 1.0},
        processing={"on_error": "dlq"},
        metrics={"port": 0},
    )  # fmt: skip
    d = Daemon(s)
    assert d.output.batch_bytes == 200 and d.output.on_error == "dlq" and d.output.dlq_topic == "d"
    producer = FakeProducer()
    d.output.producer = producer  # type: ignore[assignment]
    reducer = d._new_reducer()
    part = Partition(PartitionProgress("t", 3), reducer, reducer.missing_counts.copy())
    big = orjson.dumps({"a": 1, "pad": "x" * 300})
    msgs = [Message(topic="t", partition=3, offset=40, key=b"k", value=big, timestamp=(1, 1_700_000_000_000))]
    d.record_path.process_partition(("t", 3), part, msgs)
    _refuse(producer.calls[0], KafkaError.MSG_SIZE_TOO_LARGE)
    dead = producer.calls[1]
    assert dead["topic"] == "d" and dict(dead["headers"])["distilld-source-offset"] == b"40"
    dead["on_delivery"](None, None)
    assert part.progress.committable == 41


# -- the topic's max.message.bytes decides a refusal batch.size does not (distilld.daemon.limits) ----------------


class FakeAdmin:
    """describe_configs of topics: ``answers`` gives each topic's max.message.bytes, or an exception to fail its
    future with, or None for a broker that gives no such setting, or "late" for a future never answered."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def describe_configs(self, resources: list[Any], request_timeout: float = 0) -> dict[Any, Any]:
        from concurrent.futures import Future

        futures: dict[Any, Any] = {}
        for resource in resources:
            self.asked.append(resource.name)
            answer = self.answers.get(resource.name)
            future: Future[Any] = Future()
            if isinstance(answer, BaseException):
                future.set_exception(answer)
            elif answer is None:
                future.set_result({})
            elif answer != "late":
                future.set_result({"max.message.bytes": SimpleNamespace(value=str(answer))})
            futures[resource] = future
        return futures


def _limited_output(
    on_error: str, answers: dict[str, Any], transactional: bool = False, timeout_s: float = 1.0
) -> tuple[Any, list[str], FakeAdmin, list[float]]:
    """An output whose topics' limits come from a FakeAdmin, read as at start-up, batch.size 10,000 bytes; a
    clock the test moves."""
    from distilld.daemon.limits import TopicLimits
    from distilld.daemon.metrics import DaemonMetrics
    from distilld.daemon.output import Output

    now = [1000.0]
    limits = TopicLimits(clock=lambda: now[0])
    admin = FakeAdmin(answers)
    limits.read(admin, ["o", "d"], timeout_s)  # type: ignore[arg-type]
    failures: list[str] = []
    out = Output(
        FakeProducer(), DaemonMetrics(["f"]), transactional=transactional, on_error=on_error, dlq_topic="d",
        fail=failures.append, batch_bytes=10_000, limits=limits,
    )  # type: ignore[arg-type]  # fmt: skip
    return out, failures, admin, now


def test_the_least_batch_a_record_takes_counts_kafkas_framing_at_its_least() -> None:
    """What Kafka counts against max.message.bytes: the 61-byte batch header, then per record at least one byte
    for each of 7 varint or byte fields and two per header; never more than a real batch of the record alone."""
    from distilld.daemon.limits import least_batch_bytes
    from distilld.daemon.output import record_size

    headers = [("distilld-weight", b"10"), ("h", b"")]
    size = record_size(b"x" * 100, b"key", headers)
    assert size == 100 + 3 + 15 + 2 + 1
    assert least_batch_bytes(size, len(headers)) == size + 61 + 7 + 4


@pytest.mark.parametrize("on_error", ["dlq", "skip", "fail"])
def test_a_record_over_its_topics_limit_but_not_batch_size_follows_on_error(on_error: str) -> None:
    """A record larger than the output topic's max.message.bytes but not than batch.size was retried every
    second forever (its partition's commit frozen), an ERROR asking to lower batch.size, which could not help:
    it is refused in any batch. Now the topic's limit, read at start-up, blames it."""
    from confluent_kafka import KafkaError

    out, failures, _, _ = _limited_output(on_error, {"o": 1000, "d": 5000})
    progress = PartitionProgress("t", 3)
    value = b"x" * 933  # 933 + 61 + 7 = 1001 > 1000, far below batch.size's 10,000
    out.send(progress.add(42, 1), "o", value, None, [], 1234, ("t", 3, 41))
    _refuse(out.producer.calls[0], KafkaError.MSG_SIZE_TOO_LARGE)
    if on_error == "dlq":
        dead = out.producer.calls[1]
        assert (dead["topic"], dead["value"]) == ("d", value)
        assert dict(dead["headers"])["distilld-error"].startswith(b"refused by o: ")
        assert dict(dead["headers"])["distilld-source-offset"] == b"41"
        dead["on_delivery"](None, None)
        assert progress.committable == 42
        assert _sample(out, "distilld_records_dlq_total", reason="refused") == 1
    elif on_error == "skip":
        assert len(out.producer.calls) == 1 and progress.committable == 42 and out.in_flight == 0
        assert _sample(out, "distilld_records_skipped_total", reason="refused") == 1
    else:
        assert len(failures) == 1 and failures[0].startswith("t[3]@41: refused by o")
        assert progress.committable is None and len(out.producer.calls) == 1
    out.poll()
    assert [c["topic"] for c in out.producer.calls].count("o") == 1, "not produced to the output topic again"


def test_a_record_that_fits_its_topics_limit_is_still_retried_naming_batch_size(
    monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """One byte less, the record alone fits the topic's limit: its refusal may be its batch's, so it is retried
    (with the ERROR saying to set batch.size below the limit it names), never dead-lettered."""
    import logging

    from confluent_kafka import KafkaError

    import distilld.daemon.output as output_module

    monkeypatch.setattr(output_module, "RETRY_BACKOFF_S", 0.0)
    out, _, _, _ = _limited_output("dlq", {"o": 1000, "d": 5000})
    progress = PartitionProgress("t", 0)
    out.send(progress.add(1, 1), "o", b"x" * 932, None, [], 0, ("t", 0, 0))  # 932 + 68 = 1000: fits
    with caplog.at_level(logging.ERROR, logger="distilld.output"):
        _refuse(out.producer.calls[0], KafkaError.MSG_SIZE_TOO_LARGE)
    assert "fits the topic's max.message.bytes (1000)" in caplog.text and "batch.size below 1000" in caplog.text
    out.poll()
    assert [c["topic"] for c in out.producer.calls] == ["o", "o"], "retried, not dead-lettered"
    out.producer.calls[1]["on_delivery"](None, None)
    assert progress.committable == 1
    assert _sample(out, "distilld_records_dlq_total", reason="refused") == 0


@pytest.mark.parametrize(
    "answer",
    ["denied", "no setting", "no answer"],
)
def test_a_topic_limit_that_cannot_be_read_leaves_refusals_judged_by_batch_size(
    answer: str, monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """No DescribeConfigs permission, a broker that gives no max.message.bytes (Tansu) or one that does not answer
    in time: said once at INFO; a record not larger than batch.size is retried as before, whatever its size."""
    import logging

    from confluent_kafka import KafkaError, KafkaException

    import distilld.daemon.output as output_module

    monkeypatch.setattr(output_module, "RETRY_BACKOFF_S", 0.0)
    given = {
        "denied": KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)),
        "no setting": None,
        "no answer": "late",
    }[answer]
    with caplog.at_level(logging.INFO, logger="distilld.output"):
        out, _, _, _ = _limited_output("dlq", {"o": given, "d": given}, timeout_s=0.01)
        progress = PartitionProgress("t", 0)
        out.send(progress.add(1, 1), "o", b"x" * 5000, None, [], 0, ("t", 0, 0))
        for _ in range(3):
            _refuse(out.producer.calls[-1], KafkaError.MSG_SIZE_TOO_LARGE)
            out.poll()
    for topic in ("o", "d"):
        lines = [r.getMessage() for r in caplog.records if f"cannot read topic {topic}'s max.message" in r.getMessage()]
        assert len(lines) == 1 and "batch.size" in lines[0], "said once, each topic"
    assert [c["topic"] for c in out.producer.calls] == ["o"] * 4, "retried, as before"
    assert progress.committable is None


def test_a_topic_limit_read_long_ago_is_read_again_before_it_blames(monkeypatch: Any) -> None:
    """A topic's max.message.bytes can be changed while the daemon runs. A refusal finding the limit read more
    than FRESH_S ago does not blame on it (it may have been raised since): the record is retried and the limit
    read again, without waiting; the next refusal is judged on the new limit. Reads are at most one a minute."""
    from confluent_kafka import KafkaError

    import distilld.daemon.output as output_module
    from distilld.daemon.limits import FRESH_S

    monkeypatch.setattr(output_module, "RETRY_BACKOFF_S", 0.0)
    out, _, admin, now = _limited_output("skip", {"o": 10_000, "d": 10_000})
    assert admin.asked == ["o", "d"]
    progress = PartitionProgress("t", 0)
    out.send(progress.add(1, 1), "o", b"x" * 1000, None, [], 0, ("t", 0, 0))
    _refuse(out.producer.calls[-1], KafkaError.MSG_SIZE_TOO_LARGE)  # fits 10,000: its batch's fault
    now[0] += FRESH_S + 1
    admin.answers["o"] = 500  # lowered meanwhile
    out.poll()
    _refuse(out.producer.calls[-1], KafkaError.MSG_SIZE_TOO_LARGE)
    assert admin.asked == ["o", "d", "o"] and out.in_flight == 1, "stale: read again, the record retried"
    out.poll()
    _refuse(out.producer.calls[-1], KafkaError.MSG_SIZE_TOO_LARGE)
    assert progress.committable == 1 and out.in_flight == 0, "over the limit read again: skipped"
    assert _sample(out, "distilld_records_skipped_total", reason="refused") == 1

    # raised instead: a record over the old limit that fits the new one is not blamed on the old one
    out, _, admin, now = _limited_output("skip", {"o": 500, "d": 500})
    admin.answers["o"] = 10_000
    now[0] += FRESH_S + 1
    progress = PartitionProgress("t", 0)
    out.send(progress.add(1, 1), "o", b"x" * 1000, None, [], 0, ("t", 0, 0))
    for _ in range(3):
        _refuse(out.producer.calls[-1], KafkaError.MSG_SIZE_TOO_LARGE)
        out.poll()
    assert out.in_flight == 1 and len(out.producer.calls) == 4, "retried: it fits the limit read again"
    assert admin.asked == ["o", "d", "o"], "one read, fresh for a minute"


def test_a_dead_letter_over_the_dlq_topics_limit_is_dropped() -> None:
    """The DLQ topic's limit is read too: a dead letter over it (its distilld-* headers added) was retried
    forever when not larger than batch.size; it is dropped, logged and counted like any dead letter refused."""
    from confluent_kafka import KafkaError

    out, _, _, _ = _limited_output("dlq", {"o": 1000, "d": 1100})
    progress = PartitionProgress("t", 0)
    out.send(progress.add(8, 1), "o", b"x" * 1000, None, [], 0, ("t", 0, 7))
    _refuse(out.producer.calls[0], KafkaError.MSG_SIZE_TOO_LARGE)
    assert out.producer.calls[1]["topic"] == "d"
    _refuse(out.producer.calls[1], KafkaError.MSG_SIZE_TOO_LARGE)  # 1000 bytes and the headers: over 1100
    assert progress.committable == 8 and out.in_flight == 0 and len(out.producer.calls) == 2
    assert _sample(out, "distilld_records_skipped_total", reason="refused") == 1


def test_exactly_once_a_record_over_its_topics_limit_goes_to_the_dlq_when_redone() -> None:
    from confluent_kafka import KafkaError

    out, _, _, _ = _limited_output("dlq", {"o": 1000, "d": 5000}, transactional=True)
    out.send(PartitionProgress("t", 0).add(10, 1), "o", b"x" * 2000, None, [], 0, ("t", 0, 9))
    _refuse(out.producer.calls[0], KafkaError.MSG_SIZE_TOO_LARGE)
    assert out.txn_error is not None
    out.discard()
    progress = PartitionProgress("t", 0)
    out.send(progress.add(10, 1), "o", b"x" * 2000, None, [], 0, ("t", 0, 9))
    assert out.producer.calls[1]["topic"] == "d", "remembered: routed at once"


@pytest.mark.parametrize("on_error", ["dlq", "skip"])
def test_the_daemon_reads_the_limits_of_the_topics_it_writes_to_unless_the_producer_compresses(
    on_error: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The output topic's limit, and the DLQ topic's when refused records go there, from the state store's admin
    client at start-up. A compressing producer's batches are counted compressed: no limit is used."""
    import logging

    kafka = {"bootstrap_servers": "127.0.0.1:1", "group_id": "g", "input_topics": ["t"], "output_topic": "o",
             "dlq_topic": "d"}  # fmt: skip
    s = load_settings(None, kafka=kafka, features=[{"name": "a", "type": "numeric"}],
                      processing={"on_error": on_error}, metrics={"port": 0})  # fmt: skip
    d = Daemon(s)
    assert d.output.limits is not None
    admin = FakeAdmin({"o": 1000, "d": 2000})
    d.state._admin = admin  # type: ignore[assignment]
    d._read_limits()
    assert admin.asked == (["o", "d"] if on_error == "dlq" else ["o"])
    assert d.output.limits.fresh("o") == 1000

    s = load_settings(None, kafka={**kafka, "producer": {"compression.type": "lz4"}},
                      features=[{"name": "a", "type": "numeric"}], processing={"on_error": on_error},
                      metrics={"port": 0})  # fmt: skip
    d = Daemon(s)
    assert d.output.limits is None
    with caplog.at_level(logging.INFO, logger="distilld"):
        d._read_limits()
    assert "compression.type lz4" in caplog.text


def test_a_key_field_nested_too_deeply_for_a_repr_is_a_missing_key_not_an_exception() -> None:
    """A key field holding an object ~1,000 levels deep (orjson reads 1,024) is unhashable, and its repr
    (what an unhashable key stands in by) raised RecursionError out of the loop: the daemon died, and
    again on every restart. It is a key of the wrong type: missing, like a null one; nothing is lost."""
    from confluent_kafka import Message

    from distilld.daemon.partition import Partition

    s = load_settings(
        None,
        kafka={"bootstrap_servers": "127.0.0.1:1", "group_id": "g", "input_topics": ["t"], "output_topic": "o",
               "dlq_topic": "d"},
        features=[{"name": "a", "type": "numeric"}],
        reducer={"rate": 1.0, "key": "user"},
        metrics={"port": 0},
    )  # fmt: skip
    d = Daemon(s)
    producer = FakeProducer()
    d.output.producer = producer  # type: ignore[assignment]
    reducer = d._new_reducer()
    part = Partition(PartitionProgress("t", 0), reducer, reducer.missing_counts.copy())
    deep = b'{"a": 1, "user": ' + b'{"u": ' * 1000 + b"1" + b"}" * 1001
    assert orjson.loads(deep), "a JSON object orjson reads"
    values = [b'{"a": 2, "user": "x"}', deep, b'{"a": 3, "user": [1, 2]}', b'{"a": 4}']
    msgs = [
        Message(topic="t", partition=0, offset=i, value=v, timestamp=(1, 1_700_000_000_000))
        for i, v in enumerate(values)
    ]
    d.record_path.process_partition(("t", 0), part, msgs)
    assert [c["value"] for c in producer.calls if c["topic"] == "o"] == values, "each record reduced, none lost"
    assert not [c for c in producer.calls if c["topic"] == "d"], "a good record is not dead-lettered"

    from distilld.processor import index_keys

    index, keys = index_keys(["x", orjson.loads(deep)["user"], [1, 2], None])
    assert index.tolist() == [0, 1, 2, 1] and keys == ["x", None, [1, 2]]


def test_committed_offsets_unreadable_at_assignment_are_retried_not_an_exit() -> None:
    """exactly_once: the committed offsets of newly assigned partitions could not be read (the group coordinator
    still loading after a broker restart, or another instance's transaction still open on them): the daemon
    exited 1, and after the restart met the same brokers (a crash loop). Now the partitions are left unassigned,
    nothing of them read or processed, counted and retried from the loop; once read, they start from them."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    d = _exactly_once_daemon()
    unstable = KafkaError(KafkaError.UNSTABLE_OFFSET_COMMIT, "another transaction's offsets are pending")
    answers: list[Any] = [
        KafkaException(KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS, "loading")),
        [TopicPartition("t", 0, 7), SimpleNamespace(topic="t", partition=1, offset=-1001, error=unstable)],
        [TopicPartition("t", 0, 7), TopicPartition("t", 1, 3)],
    ]

    class Member:
        assigned: list[tuple[int, int]] | None = None
        unassigned: list[int] | None = None

        def committed(self, parts: list[TopicPartition], timeout: float = 0.0) -> list[TopicPartition]:
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

        def incremental_assign(self, parts: list[TopicPartition]) -> None:
            self.assigned = [(p.partition, p.offset) for p in parts]

        def incremental_unassign(self, parts: list[TopicPartition]) -> None:
            self.unassigned = [p.partition for p in parts]

        def offsets_for_times(self, parts: list[TopicPartition], timeout: float = 0.0) -> list[TopicPartition]:
            return []

    member = Member()
    d.consumer = member  # type: ignore[assignment]
    _no_snapshots(d)
    both = [TopicPartition("t", 0), TopicPartition("t", 1)]
    d._on_assign(member, both)  # type: ignore[arg-type]
    d.assigner.read_commits()
    assert not d.stopping and d.failure is None, "no exit"
    assert member.assigned == [] and not d.partitions, "nothing assigned to the consumer: nothing read or processed"
    assert not d.readiness()[0] and "committed offsets" in d.readiness()[1]
    d.assigner.read_commits()  # one partition's offset still unknown: neither is taken
    assert member.assigned == [] and not d.partitions and not d.stopping
    assert d.metrics.registry.get_sample_value("distilld_offset_lookup_errors_total", {"lookup": "committed"}) == 2
    d.assigner.read_commits()
    assert not d.pending and d.restoring == {("t", 0): 7, ("t", 1): 3}, "their state read next"
    _restore_waiting(d)
    assert member.assigned == [(0, 7), (1, 3)], "from the commits, once known"
    assert d.partitions[("t", 1)].progress.committed == 3 and not d.pending

    d.partitions.clear()
    answers.append(KafkaException(KafkaError(KafkaError._TIMED_OUT, "coordinator away")))
    d._on_assign(member, both)  # type: ignore[arg-type]
    d.assigner.read_commits()
    d._on_revoke(member, [TopicPartition("t", 1)])  # type: ignore[arg-type]
    assert member.unassigned == [], "never assigned to the consumer: not unassigned (an error)"
    assert [(p.topic, p.partition) for p in d.pending] == [("t", 0)], "a revoked partition is not retried"


def test_partitions_joining_those_waiting_for_their_commits_do_not_put_off_their_next_try() -> None:
    """A second assignment whose committed offsets could not be read either set the next try of every waiting
    partition afresh: partitions waiting since the first waited again, up to 30 s more at each such rebalance."""
    import time

    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    d = _exactly_once_daemon()

    class Member:
        def committed(self, parts: list[TopicPartition], timeout: float = 0.0) -> list[TopicPartition]:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "coordinator away"))

        def incremental_assign(self, parts: list[TopicPartition]) -> None:
            assert not parts, "nothing assigned before its commit is known"

    member = Member()
    d.consumer = member  # type: ignore[assignment]
    d._on_assign(member, [TopicPartition("t", 0)])  # type: ignore[arg-type]
    first = d.assigner._pending_at
    time.sleep(0.01)
    d._on_assign(member, [TopicPartition("t", 1)])  # type: ignore[arg-type]
    assert [p.partition for p in d.pending] == [0, 1]
    assert d.assigner._pending_at == first, "the waiting partition keeps its next try, and the new one joins it"


def test_a_slow_state_topic_keeps_healthz_alive_and_a_stop_ends_the_restore() -> None:
    """The state topic was read inside the rebalance callback for up to 60 s a state partition without beating
    /healthz (a liveness probe restarted the pod: a crash loop) or noticing a stop (SIGTERM waited it out).
    Now the read beats /healthz and ends on a stop; the partition then takes no snapshot of its empty window,
    which would replace the one on the state topic at the stop's checkpoint."""
    from confluent_kafka import TopicPartition

    d = _exactly_once_daemon()
    beats: list[bool] = []
    d.endpoints = SimpleNamespace(beat=lambda: beats.append(d.stopping))  # type: ignore[assignment]
    reader = _StoppingReader(d, 5)  # a state partition that never comes to its end
    d.consumer = member = _CommittedMember()  # type: ignore[assignment]
    d.state.partitions = 1
    d.state._reader = reader  # type: ignore[assignment]
    d._on_assign(member, [TopicPartition("t", 0)])  # type: ignore[arg-type]
    _restore_waiting(d)
    assert reader.polls == 5, "no poll after the stop"
    assert beats.count(False) >= 4, "alive for /healthz while the state partition is read"
    assert ("t", 0) not in d.partitions, "not held: its empty window is not snapshotted over the partition's state"
    assert d.metrics.registry.get_sample_value("distilld_state_errors_total") == 0, "a stop is not an error"


def test_the_windows_start_lookup_keeps_healthz_alive_and_ends_on_a_stop() -> None:
    """Where a window starts was looked up in one call waiting up to shutdown_timeout_s for brokers that do not
    answer, inside the rebalance callback: /healthz was not beaten and a stop waited it out. Now the lookup is
    tried in growing slices, beating /healthz between them, and ends on a stop."""
    import time

    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    d = _exactly_once_daemon(shutdown_timeout_s=10)
    beats = [0]
    d.endpoints = SimpleNamespace(beat=lambda: beats.__setitem__(0, beats[0] + 1))  # type: ignore[assignment]
    slices: list[float] = []

    class Member:
        def offsets_for_times(self, parts: list[TopicPartition], timeout: float = 0.0) -> list[TopicPartition]:
            slices.append(timeout)
            time.sleep(timeout)  # brokers that do not answer
            if len(slices) == 2:
                d.request_stop()  # SIGTERM
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "no leader answered"))

    d.consumer = Member()  # type: ignore[assignment]
    assert d.assigner._window_starts({("t", 0): 100}) == {}
    assert slices == [1.0, 2.0], "tried again in a longer slice, then not after the stop"
    assert beats[0] == 2, "alive for /healthz after each try"


def test_a_stop_ends_the_lookups_of_an_assignment() -> None:
    """After a stop, an assignment still read the committed offsets (up to 5 s) and the state topic, and a restore
    the stop cut short still looked up the windows' start (a slice of up to 1 s, then a replay set up for nothing):
    time out of the stop's shutdown_timeout_s. Now nothing more is looked up: partitions assigned after the stop
    are left unassigned (nothing of them is read, the close's revoke forgets them)."""
    from confluent_kafka import TopicPartition

    d = _exactly_once_daemon()
    calls: list[str] = []

    class Member:
        def committed(self, parts: list[TopicPartition], timeout: float = 0.0) -> list[TopicPartition]:
            calls.append("committed")
            return [TopicPartition(p.topic, p.partition, 100) for p in parts]

        def offsets_for_times(self, parts: list[TopicPartition], timeout: float = 0.0) -> list[TopicPartition]:
            calls.append("offsets_for_times")
            return [TopicPartition(p.topic, p.partition, 40) for p in parts]

        def incremental_assign(self, parts: list[TopicPartition]) -> None:
            calls.extend(f"assign {p.partition}" for p in parts)

        def incremental_unassign(self, parts: list[TopicPartition]) -> None:
            calls.extend(f"unassign {p.partition}" for p in parts)

    d.consumer = d.checkpoints.consumer = member = Member()  # type: ignore[assignment]
    d.state.partitions = 1
    d.state.scan = lambda wanted, alive=None: _StoppedScan(d, calls)  # type: ignore[method-assign,assignment]
    d._on_assign(member, [TopicPartition("t", 0)])  # type: ignore[arg-type]
    _restore_waiting(d)
    assert calls == ["committed", "read state"], "no window start looked up after the stop, nothing assigned"
    assert not d.partitions
    calls.clear()
    d._on_assign(member, [TopicPartition("t", 1)])  # type: ignore[arg-type]
    _restore_waiting(d)
    assert calls == [], "an assignment after the stop looks nothing up and assigns nothing"
    d._on_revoke(member, [TopicPartition("t", 0), TopicPartition("t", 1)])  # type: ignore[arg-type]
    assert calls == [], "neither was assigned to the client: not unassigned (an error)"
    assert d.metrics.registry.get_sample_value("distilld_offset_lookup_errors_total", {"lookup": "committed"}) == 0


class _StoppedScan:
    """A read of the state topic that a stop (SIGTERM) ends."""

    def __init__(self, d: Daemon, calls: list[str]) -> None:
        self.d, self.calls = d, calls

    def advance(self, until: float) -> None:
        from distilld.daemon.state import ReadStopped

        self.calls.append("read state")
        self.d.request_stop()
        raise ReadStopped("state[0]")

    def close(self) -> None:
        pass


def test_a_retried_windows_start_lookup_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """The windows' start lookup tried again in silence: a slice that timed out showed in no metric and no log
    line, only the last one that gave up. Each failed try is now counted in distilld_offset_lookup_errors_total
    (lookup window_start; committed offsets count as lookup committed) and logged with the retry."""
    import time

    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    d = _exactly_once_daemon(shutdown_timeout_s=10)
    tries = [0]

    class Member:
        def offsets_for_times(self, parts: list[TopicPartition], timeout: float = 0.0) -> list[TopicPartition]:
            tries[0] += 1
            if tries[0] == 1:
                time.sleep(timeout)  # the leader does not answer in the first slice
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "no leader answered"))
            return [TopicPartition(p.topic, p.partition, 40) for p in parts]

    d.consumer = Member()  # type: ignore[assignment]
    with caplog.at_level("WARNING", logger="distilld"):
        assert d.assigner._window_starts({("t", 0): 100}) == {("t", 0): 40}
    errors = d.metrics.registry.get_sample_value
    assert errors("distilld_offset_lookup_errors_total", {"lookup": "window_start"}) == 1
    assert errors("distilld_offset_lookup_errors_total", {"lookup": "committed"}) == 0
    assert "cannot look up the windows' start of t[0]" in caplog.text and "retrying" in caplog.text


def test_exactly_once_reads_committed_whatever_the_consumer_settings_say() -> None:
    """isolation.level=read_uncommitted in kafka.consumer was passed on under exactly_once: the committed-offset
    lookup at assignment then no longer waits for (require_stable) the previous owner's open transaction, takes
    the commit before it, and the records that transaction commits are processed and emitted a second time."""
    from distilld.daemon.clients import consumer_config

    def settings(guarantee: str) -> Any:
        return load_settings(
            None,
            kafka={
                "bootstrap_servers": "b:9092", "group_id": "g", "input_topics": ["t"], "output_topic": "o",
                "consumer": {"isolation.level": "read_uncommitted"},
            },
            features=[{"name": "a", "type": "numeric"}],
            processing={"guarantee": guarantee, "on_error": "skip"},
        )  # fmt: skip

    assert consumer_config(settings("exactly_once"))["isolation.level"] == "read_committed"
    assert consumer_config(settings("at_least_once"))["isolation.level"] == "read_uncommitted", "the user's"


def test_a_windows_start_lookup_holds_a_stop_up_for_one_short_slice_at_most(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookup's slices doubled up to what was left of shutdown_timeout_s (1, 2, 4, 8, then 15 s of 30): a stop
    (or a beat of /healthz) waited out the slice under way, up to half the stop's own deadline. Slices now stop
    growing at 5 s, as a committed-offset lookup does."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    from distilld.daemon import assignment, loop

    now = [0.0]
    monkeypatch.setattr(assignment, "time", SimpleNamespace(monotonic=lambda: now[0]))
    d = _exactly_once_daemon(shutdown_timeout_s=30)
    slices: list[float] = []

    class Member:
        def offsets_for_times(self, parts: list[TopicPartition], timeout: float = 0.0) -> list[TopicPartition]:
            slices.append(timeout)
            now[0] += timeout  # brokers that do not answer
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "no leader answered"))

    d.consumer = Member()  # type: ignore[assignment]
    assert d.assigner._window_starts({("t", 0): 100}) == {}
    assert max(slices) <= loop.LOOKUP_TIMEOUT_S and sum(slices) == 30, slices


def test_outputs_waiting_for_acknowledgement_are_counted_and_dated_until_acknowledged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """distilld_outputs_unacknowledged and distilld_outputs_unacknowledged_age_seconds: an output topic
    missing held every record in the producer for message.timeout.ms (300 s), and no metric showed it
    (produce errors 0, ready, offsets silently uncommitted). The age is the oldest open batch's, across
    partitions, and grows at each scrape without the loop (a stuck loop acknowledges nothing either)."""
    from confluent_kafka import Message

    import distilld.daemon.metrics as metrics_module
    import distilld.daemon.progress as progress_module
    from distilld.daemon.partition import Partition

    from .conftest import FakeClock

    clock = FakeClock(5000.0)
    monkeypatch.setattr(progress_module, "time", SimpleNamespace(monotonic=clock))
    monkeypatch.setattr(metrics_module, "time", SimpleNamespace(monotonic=clock))
    d, producer = _dlq_daemon()

    def gauges() -> tuple[float | None, float | None]:
        d._observe_outputs()
        r = d.metrics.registry
        return r.get_sample_value("distilld_outputs_unacknowledged"), r.get_sample_value(
            "distilld_outputs_unacknowledged_age_seconds"
        )

    def batch(partition: int, offset: int, values: list[bytes]) -> None:
        part = d.partitions[("t", partition)]
        msgs = [
            Message(topic="t", partition=partition, offset=offset + i, key=b"k", value=v,
                    timestamp=(1, 1_700_000_000_000))
            for i, v in enumerate(values)
        ]  # fmt: skip
        d.record_path.process_partition(("t", partition), part, msgs)

    for p in (0, 1):
        reducer = d._new_reducer()
        d.partitions[("t", p)] = Partition(PartitionProgress("t", p), reducer, reducer.missing_counts.copy())
    assert gauges() == (0, 0), "nothing produced: nothing waits"
    batch(0, 10, [b'{"a": 1}', b"{"])  # a selected record and a dead letter
    clock.now += 30
    batch(1, 20, [b'{"a": 2}'])
    clock.now += 90
    assert gauges() == (3, 120)
    clock.now += 15
    assert gauges()[1] == 135, "dated at each scrape, the loop not needed"
    assert d.metrics.registry.get_sample_value("distilld_outputs_unacknowledged_age_seconds") == 135
    producer.calls[1]["on_delivery"](None, None)  # the dead letter: partition 0 still waits for the other
    assert gauges() == (2, 135)
    producer.calls[0]["on_delivery"](None, None)  # partition 0 done: the oldest is partition 1's, 105 s old
    assert gauges() == (1, 105)
    producer.calls[2]["on_delivery"](None, None)
    assert gauges() == (0, 0)
    assert d.partitions[("t", 0)].progress.committable == 12 and d.partitions[("t", 1)].progress.committable == 21


def test_an_output_retried_for_a_missing_topic_stays_unacknowledged_and_ages(monkeypatch: pytest.MonkeyPatch) -> None:
    """A record librdkafka cannot produce (_UNKNOWN_TOPIC) is retried every second: it counts as
    waiting, and its age runs from when it was first produced, not from its last try."""
    import distilld.daemon.metrics as metrics_module
    import distilld.daemon.output as output_module
    import distilld.daemon.progress as progress_module

    from .conftest import FakeClock

    clock = FakeClock(100.0)
    monkeypatch.setattr(progress_module, "time", SimpleNamespace(monotonic=clock))
    monkeypatch.setattr(metrics_module, "time", SimpleNamespace(monotonic=clock))
    monkeypatch.setattr(output_module, "RETRY_BACKOFF_S", 0.0)
    producer = UnknownTopicProducer()
    out = _output(producer)
    progress = PartitionProgress("t", 0)
    out.send(progress.add(7, 1), "missing", b"v", b"k", [], 0)
    for _ in range(3):
        clock.now += 60
        out.poll()
        out.metrics.observe_outputs(out.in_flight, progress.oldest_open())
        assert out.metrics.registry.get_sample_value("distilld_outputs_unacknowledged") == 1
    assert out.metrics.registry.get_sample_value("distilld_outputs_unacknowledged_age_seconds") == 180
    producer.topic_exists = True
    out.poll()
    producer.calls[0]["on_delivery"](None, None)
    out.metrics.observe_outputs(out.in_flight, progress.oldest_open())
    assert progress.oldest_open() is None and progress.committable == 7
    assert out.metrics.registry.get_sample_value("distilld_outputs_unacknowledged") == 0
    assert out.metrics.registry.get_sample_value("distilld_outputs_unacknowledged_age_seconds") == 0


def test_outputs_of_a_revoked_partition_still_waiting_keep_their_age(daemon: Daemon) -> None:
    """at_least_once: a revoke waits for the partition's outputs until its deadline, then drops the partition
    with them still unacknowledged (a missing output topic: retried on). distilld_outputs_unacknowledged
    counted them, but the age gauge was worked out from the partitions still held only, and read 0: the
    DistilldOutputsUnacknowledged alert stayed quiet on an instance whose waiting outputs were all of
    partitions it no longer held."""
    import time

    from confluent_kafka import TopicPartition

    _held(daemon, 0)
    batch = daemon.partitions[("t", 0)].progress.add(10, 1)
    batch.added = time.monotonic() - 200  # produced 200 s ago, never acknowledged
    daemon.output.in_flight = 1
    daemon._drop([TopicPartition("t", 0)])
    daemon._observe_outputs()
    sample = daemon.metrics.registry.get_sample_value
    assert sample("distilld_outputs_unacknowledged") == 1
    assert sample("distilld_outputs_unacknowledged_age_seconds") >= 200, "dated by the dropped partition's batch"
    batch.ack()  # delivered at last
    daemon.output.in_flight = 0
    daemon._observe_outputs()
    assert sample("distilld_outputs_unacknowledged_age_seconds") == 0 and not daemon._leaving
    # exactly_once: an abort discards the outputs (in_flight 0) and their batches stay open: forgotten
    daemon._leaving.append(PartitionProgress("t", 1))
    daemon._leaving[0].add(3, 1)
    daemon._rewind()
    assert not daemon._leaving, "not dating outputs produced after the abort"


def test_partitions_waiting_for_their_commits_after_others_were_revoked_are_retried_after_1s() -> None:
    """Partitions revoked while their committed offsets were still unreadable left the retry's wait where their
    tries had doubled it (up to 30 s): the next assignment whose commits could not be read waited that long for
    its first retry, unread meanwhile, where the README says 1 s, doubling."""
    import time

    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    d = _exactly_once_daemon()

    class Member:
        def committed(self, parts: list[TopicPartition], timeout: float = 0.0) -> list[TopicPartition]:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "coordinator away"))

        def incremental_assign(self, parts: list[TopicPartition]) -> None:
            assert not parts

        def incremental_unassign(self, parts: list[TopicPartition]) -> None:
            assert not parts

    member = Member()
    d.consumer = d.checkpoints.consumer = member  # type: ignore[assignment]
    d._on_assign(member, [TopicPartition("t", 0)])  # type: ignore[arg-type]
    for _ in range(6):
        d.assigner.read_commits()  # retried after 1, 2, 4, 8, 16, 30 s
    d._on_revoke(member, [TopicPartition("t", 0)])  # type: ignore[arg-type]
    assert not d.pending
    d._on_assign(member, [TopicPartition("t", 1)])  # type: ignore[arg-type]
    d.assigner.read_commits()
    assert d.assigner._pending_at - time.monotonic() <= 1.0, (
        "the first retry of newly waiting partitions comes after 1 s"
    )


def _keyed_daemon() -> tuple[Daemon, Any]:
    """A daemon keyed by the JSON field ``user`` (not started), its producer, and a partition it holds."""
    from distilld.daemon.partition import Partition

    d, _ = _dlq_daemon({"key": "user"})
    reducer = d._new_reducer()
    part = Partition(PartitionProgress("t", 0), reducer, reducer.missing_counts.copy())
    return d, part


def test_a_key_field_of_true_and_one_of_1_are_two_keys_across_a_snapshot() -> None:
    """``"user": true`` and ``"user": 1`` shared a window (Python's True == 1); ``1`` and ``1.0`` are one
    number, one key. ``[1, 2]`` shared the window of the string ``"[1, 2]"`` (it stood in by its repr);
    ``[1, 2]`` and ``[1.0, 2]`` are one array, one key. After the snapshot (the checkpoint's dump, the loop's
    load), the same keys, and the next records find their windows."""
    from confluent_kafka import Message

    from distilld.snapshot import dump, load

    d, part = _keyed_daemon()
    users = [b"true", b"1", b"1.0", b"false", b"0", b'"1"', b"[1, 2]", b'"[1, 2]"', b"[1.0, 2]"]

    def messages(start: int) -> list[Message]:
        return [
            Message(topic="t", partition=0, offset=start + i, value=b'{"a": 1, "user": %s}' % u,
                    timestamp=(1, 1_700_000_000_000))
            for i, u in enumerate(users * 3)
        ]  # fmt: skip

    d.record_path.process_partition(("t", 0), part, messages(0))
    windows = part.reducer._windows

    def held(w: Any) -> list[tuple[type, Any, int]]:
        return [(type(w.key_of[s]), w.key_of[s], int(w.totals[0, s, 0])) for s in w.slot_of.values()]

    assert held(windows) == [
        (bool, True, 3), (int, 1, 6), (bool, False, 3), (int, 0, 3), (str, "1", 3), (list, [1, 2], 6),
        (str, "[1, 2]", 3),
    ]  # fmt: skip
    restored = d._new_reducer()
    load(restored, dump(part.reducer))
    assert held(restored._windows) == held(windows)
    part.reducer = restored
    part.counted()  # as the loop does for a restored reducer
    d.record_path.process_partition(("t", 0), part, messages(len(users) * 3))
    assert [n for _, _, n in held(restored._windows)] == [6, 12, 6, 6, 6, 12, 6], "each key's window found again"


def test_a_snapshot_refused_for_its_keys_is_logged_and_counted_not_raised(caplog: Any) -> None:
    """A key no snapshot can keep (here an Enum, from a custom decoder, say): the checkpoint's dump raised
    SnapshotError out of the loop. It is a snapshot not written: warned about, counted, the daemon goes on."""
    import enum
    import logging

    import numpy as np

    class Colour(enum.Enum):
        RED = 1

    d, part = _keyed_daemon()
    records = [{"a": 1.0, "user": Colour.RED}]
    part.reducer.select(records, np.array([1e9]), np.zeros(1, dtype=np.int64), [Colour.RED])
    part.processed = 1
    d.state.partitions = 1
    with caplog.at_level(logging.WARNING, logger="distilld"):
        d.checkpoints._snapshot(("t", 0), part, 1)
    assert "t[0]: snapshot at offset 1 not written" in caplog.text and "Colour.RED" in caplog.text
    assert d.metrics.registry.get_sample_value("distilld_snapshot_failures_total") == 1
    assert part.snapshot_at is None and not d.output.producer.calls  # type: ignore[attr-defined]


def test_the_state_topics_checks_are_said_once_not_at_each_retry_of_the_subscription(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """exactly_once: the transactional producer's registration not answered in time, the subscription is tried
    again from the loop; each try checked the state topic again, and said its warnings (not compacted) again."""
    from confluent_kafka import KafkaError, KafkaException

    d = _exactly_once_daemon()

    class Admin:
        def list_topics(self, topic: str | None = None, timeout: float = 0) -> Any:
            part = SimpleNamespace(partitions=dict.fromkeys(range(2)), error=None)
            return SimpleNamespace(topics={"g.distilld-state": part, "t": part, "o": part})

        def describe_configs(self, resources: list[Any], request_timeout: float = 0) -> Any:
            entry = SimpleNamespace(value="delete")
            return {resources[0]: SimpleNamespace(result=lambda timeout: {"cleanup.policy": entry})}

    tries = [0]

    def init(timeout_s: float) -> None:
        tries[0] += 1
        if tries[0] < 3:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "init_transactions not answered"))
        d.txn.ready = True  # type: ignore[union-attr]

    subscribed: list[Any] = []
    d.state._admin = Admin()  # type: ignore[assignment]
    d.txn.init = init  # type: ignore[method-assign,union-attr]
    d._read_limits = lambda: None  # type: ignore[method-assign]
    d.consumer = SimpleNamespace(  # type: ignore[assignment]
        poll=lambda timeout: None, subscribe=lambda topics, **callbacks: subscribed.append(topics)
    )
    with caplog.at_level("WARNING", logger="distilld"):
        for _ in range(3):
            d._subscribe()
    assert d.subscribed and subscribed == [["t"]] and tries[0] == 3
    said = [r.getMessage() for r in caplog.records if "not compact" in r.getMessage()]
    assert len(said) == 1, said


def test_the_output_gauges_are_refreshed_while_a_transaction_waits_to_be_committed() -> None:
    """exactly_once: while a transaction the brokers have not taken was retried, the loop refreshed no gauge:
    outputs acknowledged meanwhile still showed as waiting, their age growing at each scrape
    (DistilldOutputsUnacknowledged firing for outputs long delivered)."""
    import time

    from confluent_kafka import KafkaError, KafkaException

    d = _exactly_once_daemon()

    class Client:
        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kw: []

        def commit_transaction(self, timeout: float) -> None:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "brokers away", retriable=True))

    d.consumer = d.checkpoints.consumer = Client()  # type: ignore[assignment]
    d.txn.producer = d.output.producer = Client()  # type: ignore[union-attr]
    d.txn.retry_backoff_s = 0.0  # type: ignore[union-attr]
    d.checkpoints.timeout_s = 0.1
    d.subscribed = d.joined = d.broker_up = True
    batch = _held(d, 0).progress.add(10, 1)
    batch.added = time.monotonic() - 200  # produced 200 s ago
    d.output.in_flight = 1
    d.txn.begin()  # type: ignore[union-attr]
    d.checkpoints.commit()
    assert d.checkpoints.unfinished
    d._observe_outputs()
    sample = d.metrics.registry.get_sample_value
    assert sample("distilld_outputs_unacknowledged_age_seconds") >= 200
    batch.ack()  # acknowledged while the commit is retried
    d.output.in_flight = 0
    d._last_refresh = time.monotonic() - 60
    d.step()
    assert d.checkpoints.unfinished, "still retried"
    assert sample("distilld_outputs_unacknowledged") == 0
    assert sample("distilld_outputs_unacknowledged_age_seconds") == 0


def test_readyz_during_a_stop_names_no_partition_assigned_since_as_unreadable(daemon: Daemon) -> None:
    """Partitions assigned after a stop are left unassigned and never looked up (their commits are not read):
    /readyz named them as partitions whose committed offsets could not be read yet, retried (they are not)."""
    from confluent_kafka import TopicPartition

    daemon.subscribed = daemon.joined = daemon.broker_up = True
    daemon.consumer.incremental_assign = lambda parts: None  # type: ignore[attr-defined]
    daemon.request_stop()  # SIGTERM
    daemon._on_assign(daemon.consumer, [TopicPartition("t", 3)])  # type: ignore[arg-type]
    ready, why = daemon.readiness()
    assert not ready and "stopping" in why, why
    assert "t[3]" not in why and "not readable" not in why, why


def test_a_restore_cut_short_by_a_stop_is_not_counted_as_a_restore() -> None:
    """A stop (SIGTERM) ending the read of the state topic left the partition with an empty window that is not
    its state, and counted it as distilld_state_restores_total{outcome="empty"}, as if it had no state; and the
    cut-short read's time went into distilld_state_restore_duration_seconds."""
    from confluent_kafka import TopicPartition

    d = _exactly_once_daemon()

    reader = _StoppingReader(d, 3)  # a state partition read until a stop (SIGTERM) comes
    d.consumer = d.checkpoints.consumer = member = _CommittedMember()  # type: ignore[assignment]
    d.state.partitions = 1
    d.state._reader = reader  # type: ignore[assignment]
    d._on_assign(member, [TopicPartition("t", 0)])  # type: ignore[arg-type]
    _restore_waiting(d)
    assert reader.polls == 3
    sample = d.metrics.registry.get_sample_value
    counted = {o: sample("distilld_state_restores_total", {"outcome": o}) for o in ("restored", "replayed", "empty")}
    assert counted == {"restored": 0, "replayed": 0, "empty": 0}, counted
    assert sample("distilld_state_restore_duration_seconds_count") == 0


def test_the_state_is_read_by_the_loop_between_polls_and_a_revoke_meanwhile_forgets_the_partition() -> None:
    """The rebalance callback read the commits and the state topic: a slow restore held the loop (the partitions
    already held were not processed) and the group's rebalance (a member joining waited for it). Now the
    callback only notes the partitions: the loop reads them in slices between polls, /readyz naming those not
    restored yet, and assigns each (paused while fetching is) once its state is in; one revoked meanwhile is
    forgotten, its read given up, and not unassigned (the consumer never had it)."""
    from confluent_kafka import TopicPartition

    from distilld.daemon.state import StateScan

    d = _exactly_once_daemon()
    calls: list[str] = []

    class Member:
        def committed(self, parts: list[TopicPartition], timeout: float = 0.0) -> list[TopicPartition]:
            calls.append("committed")
            return [TopicPartition(p.topic, p.partition, 100) for p in parts]

        def offsets_for_times(self, parts: list[TopicPartition], timeout: float = 0.0) -> list[TopicPartition]:
            return []

        def incremental_assign(self, parts: list[TopicPartition]) -> None:
            calls.extend(f"assign {p.partition}@{p.offset}" for p in parts)

        def incremental_unassign(self, parts: list[TopicPartition]) -> None:
            calls.extend(f"unassign {p.partition}" for p in parts)

        def pause(self, parts: list[TopicPartition]) -> None:
            calls.extend(f"pause {p.partition}" for p in parts)

    closed: list[int] = []

    class SlowScan(StateScan):
        def advance(self, until: float) -> list[Any]:
            calls.append(f"read {sorted(self.wanted)}")  # never at its end: a slice at a time
            return []

        def close(self) -> None:
            closed.extend(self.wanted)

    d.consumer = d.checkpoints.consumer = member = Member()  # type: ignore[assignment]
    d.state.partitions = 2
    slow = [True]

    def scan(wanted: dict[Any, int], alive: Any = None) -> StateScan:
        return (SlowScan if slow[0] else StateScan)(d.state.by_state(wanted), iter([]))

    d.state.scan = scan  # type: ignore[method-assign]
    d._on_assign(member, [TopicPartition("t", 0), TopicPartition("t", 1)])  # type: ignore[arg-type]
    assert calls == [], "nothing looked up in the callback"
    d.assigner.read_commits()
    for _ in range(2):
        d.assigner.restore_some()
    assert calls == ["committed", "read [0, 1]", "read [0, 1]"], "both state partitions read together, a slice a turn"
    ready, why = d.readiness()
    assert not ready and why == "state of t[0], t[1] not restored yet", why
    calls.clear()
    d._on_revoke(member, [TopicPartition("t", 0)])  # type: ignore[arg-type]
    assert calls == [] and closed == [], "t[1]'s state partition is still read"
    d._on_revoke(member, [TopicPartition("t", 1)])  # type: ignore[arg-type]
    assert calls == [] and closed == [0, 1], "the read given up; never assigned to the consumer: not unassigned"
    d._on_assign(member, [TopicPartition("t", 1)])  # type: ignore[arg-type]
    d.assigner.read_commits()
    calls.clear()
    slow[0] = False
    d.paused = True
    d.assigner.restore_some()
    assert calls == ["assign 1@100", "pause 1"] and list(d.partitions) == [("t", 1)]
    assert "not restored" not in d.readiness()[1]


def test_readyz_names_the_transaction_being_retried_not_the_restores_it_holds_up(daemon: Daemon) -> None:
    """While a transaction the brokers have not taken is retried, the loop does nothing else: partitions waiting
    for their commits or their state are not read. /readyz named them as the cause ("state of … not restored
    yet", "(retrying)"), sending an operator to the state topic or the group coordinator instead."""
    from confluent_kafka import TopicPartition

    daemon.subscribed = daemon.joined = daemon.broker_up = True
    daemon.checkpoints.unfinished = True
    daemon.restoring[("t", 1)] = 100
    ready, why = daemon.readiness()
    assert not ready and "transaction" in why, why
    daemon.pending.append(TopicPartition("t", 2))
    assert "transaction" in daemon.readiness()[1]


def test_readyz_says_retrying_only_once_reading_the_commits_has_failed(daemon: Daemon) -> None:
    """Partitions just assigned, their commits not asked for yet, were named "not readable yet (retrying)"."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    daemon.subscribed = daemon.joined = daemon.broker_up = True
    daemon.consumer.incremental_assign = lambda parts: None  # type: ignore[attr-defined]
    daemon._on_assign(daemon.consumer, [TopicPartition("t", 3)])  # type: ignore[arg-type]
    ready, why = daemon.readiness()
    assert not ready and "t[3]" in why and "retrying" not in why and "not readable" not in why, why

    def committed(parts: Any, timeout: float = 0.0) -> Any:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "coordinator away"))

    daemon.consumer.committed = committed  # type: ignore[attr-defined]
    daemon.assigner.read_commits()
    ready, why = daemon.readiness()
    assert not ready and "t[3]" in why and "not readable yet (retrying)" in why, why


def test_readyz_names_the_first_ten_partitions_waiting_and_counts_the_rest(daemon: Daemon) -> None:
    """/readyz listed every partition waiting for its commit or its state: hundreds made a body of kilobytes."""
    from confluent_kafka import TopicPartition

    daemon.subscribed = daemon.joined = daemon.broker_up = True
    daemon.restoring.update({("t", p): 5 for p in range(300)})
    why = daemon.readiness()[1]
    assert why == f"state of {', '.join(f't[{p}]' for p in range(10))} and 290 more not restored yet", why
    daemon.pending = [TopicPartition("t", p) for p in range(11)]
    assert daemon.readiness()[1].endswith("t[9] and 1 more not read yet")


def test_a_transactional_producer_not_registered_in_time_is_logged_as_such_not_as_the_state_topic(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """exactly_once: init_transactions not answered in time was logged "cannot check the state topic …",
    sending an operator to the state topic when the transaction coordinator was the one not answering."""
    from confluent_kafka import KafkaError, KafkaException

    d = _exactly_once_daemon()
    d.state.partitions = 1  # the state topic checked already

    def init(timeout_s: float) -> None:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "init_transactions not answered"))

    d.txn.init = init  # type: ignore[method-assign,union-attr]
    d.output.poll = lambda timeout=0.0: None  # type: ignore[method-assign]
    d.consumer = SimpleNamespace(poll=lambda timeout: None)  # type: ignore[assignment]
    with caplog.at_level("WARNING", logger="distilld"):
        d._subscribe()
    said = " ".join(r.getMessage() for r in caplog.records)
    assert not d.subscribed and "state topic" not in said, said
    assert "transactional producer" in said and "init_transactions not answered" in said, said
    assert d.metrics.registry.get_sample_value("distilld_state_errors_total") == 0, "not a state topic failure"


class _EndsAdmin:
    """An admin client answering ListOffsets with ``ends`` (a KafkaException: the lookup fails); ``hold``: its
    answers do not come (their futures stay pending until the test settles them). ``asked`` keeps each call's
    partitions, ``isolation`` the last call's isolation level."""

    def __init__(self, ends: dict[tuple[str, int], Any]) -> None:
        self.ends, self.hold = ends, False
        self.asked: list[list[int]] = []
        self.held: list[tuple[Any, tuple[str, int]]] = []
        self.isolation: Any = None

    def poll(self, timeout: float) -> int:
        return 0  # events served at each refresh (StateStore.serve)

    def list_offsets(self, wanted: dict[Any, Any], isolation_level: Any = None, request_timeout: float = 0) -> Any:
        from concurrent.futures import Future

        assert request_timeout and request_timeout <= 5, "a short timeout: a lookup the brokers do not answer ends"
        self.asked.append(sorted(tp.partition for tp in wanted))
        self.isolation = isolation_level
        futures: dict[Any, Future[Any]] = {}
        for tp in wanted:
            futures[tp] = f = Future()
            if self.hold:
                self.held.append((f, (tp.topic, tp.partition)))
            else:
                self.settle(f, (tp.topic, tp.partition))
        return futures

    def settle(self, future: Any, tp: tuple[str, int]) -> None:
        end = self.ends[tp]
        if isinstance(end, Exception):
            future.set_exception(end)
        else:
            future.set_result(SimpleNamespace(offset=end))


def test_partitions_waiting_for_their_state_show_their_lag_until_the_consumer_has_them() -> None:
    """Partitions the group assigned but not yet given to the consumer (their state being restored, their
    commits not read yet) had no distilld_consumer_lag: librdkafka's statistics cover only the partitions the
    client has, so the lag seemed to drop at a rebalance while nothing of them was read. Now their end is
    looked up at the metrics refresh, without waiting for the answer (collected at a later refresh), and their
    lag counted from their commit; a failed lookup is counted and retried; a revoked partition is forgotten;
    one assigned to the consumer is handed to the statistics, as the same series."""
    import time

    from confluent_kafka import IsolationLevel, KafkaError, KafkaException, TopicPartition

    from distilld.daemon.state import StateScan

    d = _exactly_once_daemon()

    class Member(_CommittedMember):
        def committed(self, parts: list[Any], timeout: float = 0.0) -> list[Any]:
            if any(p.partition == 2 for p in parts):
                raise KafkaException(KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS, "loading"))
            return super().committed(parts, timeout)

    slow = [True]

    class SlowScan(StateScan):
        def advance(self, until: float) -> Any:
            return [] if slow[0] else super().advance(until)  # no snapshot: rebuilt from the commit (no start found)

    d.consumer = d.checkpoints.consumer = member = Member()  # type: ignore[assignment]
    d.state.partitions = 1
    d.state.scan = lambda wanted, alive=None: SlowScan(d.state.by_state(wanted), iter([]))  # type: ignore[method-assign]
    admin = _EndsAdmin({("t", 0): 150, ("t", 1): 130})
    d.state._admin = admin  # type: ignore[assignment]

    def lag(partition: int) -> float | None:
        return d.metrics.registry.get_sample_value("distilld_consumer_lag", {"topic": "t", "partition": str(partition)})

    def refresh() -> None:
        d._last_refresh = float("-inf")
        d._refresh(time.monotonic())

    d._on_assign(member, [TopicPartition("t", 0), TopicPartition("t", 1)])  # type: ignore[arg-type]
    d.assigner.read_commits()
    d.assigner.restore_some()
    assert d.restoring == {("t", 0): 100, ("t", 1): 100} and not d.partitions, "restoring, not assigned"
    refresh()
    assert admin.asked == [[0, 1]] and admin.isolation == IsolationLevel.READ_COMMITTED, "one lookup for both"
    assert lag(0) is None, "answered at the next refresh: the loop did not wait for it"
    refresh()
    assert (lag(0), lag(1)) == (50, 30), "their end minus their commit"
    admin.ends[("t", 0)] = 170
    refresh()  # answers the lookup sent at the last refresh
    assert lag(0) == 50
    refresh()
    assert lag(0) == 70, "updated at each refresh"

    admin.ends[("t", 0)] = KafkaException(KafkaError(KafkaError._TIMED_OUT, "no answer"))
    refresh()
    refresh()
    assert lag(0) == 70 and lag(1) == 30, "a failed lookup leaves the last value"
    errors = {"lookup": "high_watermark"}
    assert d.metrics.registry.get_sample_value("distilld_offset_lookup_errors_total", errors) == 1
    admin.ends[("t", 0)], admin.hold = 180, True
    refresh()
    asked = len(admin.asked)
    refresh()
    assert len(admin.asked) == asked, "not asked again while an answer is awaited"
    for future, tp in admin.held:
        admin.settle(future, tp)
    admin.held.clear()
    refresh()
    assert lag(0) == 80, "retried after the failure"

    d._on_assign(member, [TopicPartition("t", 2)])  # type: ignore[arg-type]
    d.assigner.read_commits()
    refresh()  # (answers held again: in flight for 0 and 1)
    assert lag(2) is None and all(2 not in a for a in admin.asked), "its commit unknown: no lag, not looked up"
    d._on_revoke(member, [TopicPartition("t", 1)])  # type: ignore[arg-type]
    assert lag(1) is None, "revoked: forgotten"
    for future, tp in admin.held:
        admin.settle(future, tp)
    admin.held.clear()
    refresh()
    assert lag(1) is None, "an answer that came after the revoke does not bring it back"
    assert admin.asked[-1] == [0]

    slow[0] = False
    d.assigner.restore_some()
    assert list(d.partitions) == [("t", 0)], "restored: assigned to the consumer"
    admin.ends[("t", 0)] = 999
    for future, tp in admin.held:
        admin.settle(future, tp)
    refresh()
    assert lag(0) == 80, "assigned: an answer still in flight does not set it; kept until the statistics do"
    assert admin.asked[-1] == [0], "not looked up any more"
    partition = {"hi_offset": 190, "ls_offset": 190, "app_offset": 100, "committed_offset": -1001, "consumer_lag": -1}
    d._on_stats(orjson.dumps({"topics": {"t": {"partitions": {"0": partition}}}, "brokers": {}}).decode())
    lags = [s for m in d.metrics.registry.collect() if m.name == "distilld_consumer_lag" for s in m.samples]
    assert [(s.labels["partition"], s.value) for s in lags] == [("0", 90)], "one series, the statistics' now"


def test_waiting_lag_counts_to_the_end_the_consumer_counts_to_when_isolation_level_is_not_set() -> None:
    """librdkafka's isolation.level defaults to read_committed: a consumer whose kafka.consumer does not set it
    reads committed, and its statistics' consumer_lag counts to the last stable offset. The lag of partitions
    waiting for their state was looked up to the high watermark unless isolation.level was set explicitly, so
    the same series jumped at the handover on transactional inputs."""
    from confluent_kafka import IsolationLevel

    def daemon(consumer: dict[str, Any]) -> Daemon:
        s = load_settings(
            None,
            kafka={
                "bootstrap_servers": "127.0.0.1:1", "group_id": "g", "input_topics": ["t"], "output_topic": "o",
                "consumer": consumer,
            },
            features=[{"name": "a", "type": "numeric"}],
            processing={"guarantee": "at_least_once", "on_error": "skip"},
            metrics={"port": 0},
        )  # fmt: skip
        return Daemon(s)

    assert daemon({}).waiting_lag.isolation == IsolationLevel.READ_COMMITTED, "librdkafka's default"
    assert daemon({"isolation.level": "read_uncommitted"}).waiting_lag.isolation == IsolationLevel.READ_UNCOMMITTED


def test_the_admin_clients_events_are_served_at_each_metrics_refresh() -> None:
    """The state store's admin client (the state topic's checks, and since the waiting partitions' lag a
    ListOffsets at every refresh) was never polled: its error_cb never ran, its events piled up in an outage."""
    d = _exactly_once_daemon()
    polls: list[float] = []
    d.state._admin = SimpleNamespace(poll=polls.append)  # type: ignore[assignment]
    d._last_refresh = 0.0
    d._refresh(10.0)
    assert polls == [0]
    d.state._admin = None
    d._last_refresh = 0.0
    d._refresh(20.0)  # none made: none made by the refresh either
    assert d.state._admin is None


def test_each_restored_partition_is_one_restore_duration_sample() -> None:
    """distilld_state_restore_duration_seconds was one sample from the first commits read to the last partition
    assigned, however many partitions that was, and a revoke that emptied the queue dropped it. Now each partition
    with a commit is one sample, from its commit read to its assignment; one revoked meanwhile is none, and one with
    no commit (nothing to restore) is none."""
    from confluent_kafka import TopicPartition

    d = _exactly_once_daemon()
    d.consumer = d.checkpoints.consumer = member = _CommittedMember()  # type: ignore[assignment]
    _no_snapshots(d)
    d._on_assign(member, [TopicPartition("t", p) for p in range(3)])  # type: ignore[arg-type]
    d.assigner.read_commits()
    d._on_revoke(member, [TopicPartition("t", 2)])  # type: ignore[arg-type]
    d.assigner.to_restore({("t", 3): -1})  # no commit: taken at once, nothing restored
    _restore_waiting(d)
    assert sorted(d.partitions) == [("t", 0), ("t", 1), ("t", 3)]
    sample = d.metrics.registry.get_sample_value
    assert sample("distilld_state_restore_duration_seconds_count") == 2, "one sample a partition restored"
    assert sample("distilld_state_restore_duration_seconds_sum") > 0


def test_snapshots_read_together_are_loaded_a_partition_a_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """The snapshots of every partition a state partition holds were loaded in one turn, after its read: at
    ~1 s a partition of 5,000 keys (measured here), a dozen big ones held the loop (and its heartbeat to the
    group: max.poll.interval.ms) for many seconds.
    Now a turn loads them until its slice is over, one at least; one revoked before its turn is not loaded."""
    from confluent_kafka import TopicPartition

    from distilld.daemon import assignment
    from distilld.daemon.state import Restored, ScanDone, StateScan
    from distilld.snapshot import dump

    monkeypatch.setattr(assignment, "RESTORE_SLICE_S", 0.0)  # every slice over after one load
    d = _exactly_once_daemon()
    snapshot = dump(d._new_reducer())
    assigned: list[int] = []

    class Member(_CommittedMember):
        def incremental_assign(self, parts: list[Any]) -> None:
            assigned.extend(p.partition for p in parts)

    class Found(StateScan):
        def advance(self, until: float) -> list[ScanDone]:
            found = {tp: Restored(snapshot, 100, slot=1) for tp in self.wanted[0]}
            return [ScanDone(0, self.wanted[0], found)]

    d.consumer = d.checkpoints.consumer = member = Member()  # type: ignore[assignment]
    d.state.partitions = 1
    d.state.scan = lambda wanted, alive=None: Found(d.state.by_state(wanted), iter([]))  # type: ignore[method-assign]
    d._on_assign(member, [TopicPartition("t", p) for p in range(3)])  # type: ignore[arg-type]
    d.assigner.read_commits()
    d.assigner.restore_some()
    assert assigned == [0], "one partition loaded a turn"
    assert d.state._slot == {("t", 0): 1}, "restored from slot 1: the next snapshot goes to slot 0"
    assert d.readiness()[1] == "state of t[1], t[2] not restored yet"
    d._on_revoke(member, [TopicPartition("t", 2)])  # type: ignore[arg-type]
    _restore_waiting(d)
    assert assigned == [0, 1] and sorted(d.partitions) == [("t", 0), ("t", 1)], "the revoked one not loaded"
    assert d.metrics.registry.get_sample_value("distilld_state_restores_total", {"outcome": "restored"}) == 2


def test_a_partition_revoked_during_the_state_read_is_not_kept_for_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """t0 and t1 share a state partition; t1 is revoked while it is read. The read ends, t0 is loaded and the
    slice is over: t1's entry (its snapshot bytes) stayed in _unloaded with nothing left to restore, so no turn
    ever dropped it; and when t1 came back with the same commit, that old read was used (no state read at all).
    (Found by a review.)"""
    from confluent_kafka import TopicPartition

    from distilld.daemon import assignment
    from distilld.daemon.state import Restored, ScanDone
    from distilld.snapshot import dump

    monkeypatch.setattr(assignment, "RESTORE_SLICE_S", 0.0)
    d = _exactly_once_daemon()
    snapshot = dump(d._new_reducer())
    scans: list[dict[Any, int]] = []

    class Scan:
        def __init__(self, wanted: dict[Any, int], alive: Any = None) -> None:
            self.wanted, self.turns = wanted, 1
            scans.append(dict(wanted))

        def advance(self, until: float) -> Any:
            if self.turns:
                self.turns -= 1
                return []  # the read takes more than one slice
            return [ScanDone(0, self.wanted, {tp: Restored(snapshot, 100) for tp in self.wanted})]

        def close(self) -> None:
            pass

    d.consumer = d.checkpoints.consumer = member = _CommittedMember()  # type: ignore[assignment]
    d.state.partitions = 1
    d.state.scan = Scan  # type: ignore[method-assign]
    d._on_assign(member, [TopicPartition("t", 0), TopicPartition("t", 1)])  # type: ignore[arg-type]
    d.assigner.read_commits()
    d.assigner.restore_some()  # the read starts, its slice ends
    d._on_revoke(member, [TopicPartition("t", 1)])  # type: ignore[arg-type]
    _restore_waiting(d)
    assert list(d.partitions) == [("t", 0)]
    assert not (d.restoring or d.assigner._rebuilding or d.pending), (
        "nothing waits: the loop never turns to restores again"
    )
    assert not d.assigner._unloaded, "nothing kept for a partition revoked"
    d._on_assign(member, [TopicPartition("t", 1)])  # type: ignore[arg-type]
    _restore_waiting(d)
    assert len(scans) == 2, "t1 assigned again: its state is read again"


def test_a_window_start_lookup_refused_with_a_plain_message_gives_empty_windows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A KafkaException that carries a plain message, not a KafkaError, raised AttributeError out of the
    windows' start lookup (``.code()`` on a string), at the assignment. It is an error like another: logged,
    counted, empty windows."""
    from confluent_kafka import KafkaException, TopicPartition

    d = _exactly_once_daemon(shutdown_timeout_s=10)

    class Member:
        def offsets_for_times(self, parts: list[TopicPartition], timeout: float = 0.0) -> list[TopicPartition]:
            raise KafkaException("the client is closed")

    d.consumer = Member()  # type: ignore[assignment]
    with caplog.at_level("WARNING", logger="distilld"):
        assert d.assigner._window_starts({("t", 0): 100}) == {}
    assert "cannot look up the windows' start of t[0] (the client is closed): empty windows" in caplog.text


def test_partitions_an_abort_rewinds_are_not_counted_as_assigned_until_their_state_is_back() -> None:
    """_rewind took partitions out of the daemon's without setting distilld_assigned_partitions: while their state
    was read back, and for good when the abort came at a stop (they are dropped then), the gauge still counted
    them."""
    d = _exactly_once_daemon()
    d.metrics.assigned.set(2)
    _held(d, 0)
    kept = _held(d, 1)
    kept.processed = 5  # stands at its commit: not rewound
    d.stopping = True
    d._rewind()
    assert list(d.partitions) == [("t", 1)]
    assert d.metrics.registry.get_sample_value("distilld_assigned_partitions") == 1


def test_the_weight_header_has_every_digit_of_the_weight() -> None:
    """The distilld-weight header was the weight to 6 digits (``3.33333`` at rate 0.3, ``1.23457e+06`` for 1,234,567
    records a pick): counts summed from it came out off. It is now the text reduce's files hold, every digit."""
    from confluent_kafka import Message

    from distilld.daemon.partition import Partition

    d, producer = _dlq_daemon({"rate": 0.3})
    reducer = d._new_reducer()
    part = Partition(PartitionProgress("t", 0), reducer, reducer.missing_counts.copy())
    msgs = [
        Message(topic="t", partition=0, offset=i, key=b"k", value=b'{"a": %d}' % i, timestamp=(1, 1_700_000_000_000))
        for i in range(100)
    ]
    d.record_path.process_partition(("t", 0), part, msgs)
    weights = {dict(c["headers"])["distilld-weight"] for c in producer.calls if c["topic"] == "o"}
    assert weights == {b"3.3333333333333335"} and float(next(iter(weights))) == 1 / 0.3


def test_a_stop_that_comes_during_the_assignment_turn_reads_nothing_more() -> None:
    """A stop during the turn that assigns restored partitions still consumed and processed a batch: partitions
    assigned then start unchecked (the log-start lookup is skipped once stopping), and under
    auto.offset.reset=latest a reset to the log's end would take records past their commit that the stop's commit
    would then skip over."""
    d = _exactly_once_daemon()
    calls: list[str] = []

    class Client:
        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kw: calls.append(name) or []

    d.consumer = d.checkpoints.consumer = Client()  # type: ignore[assignment]
    d.subscribed = True
    d.assigner.turn = d.request_stop  # type: ignore[method-assign]
    d.step()
    assert d.stopping and "consume" not in calls
