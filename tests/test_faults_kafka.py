"""Broker faults: the network between the daemon and its broker is cut, twice, while
records keep coming.

The broker advertises a proxy's address, so every connection (the daemon's
consumer, producer and state reader, and the test's producer) passes through
it. While cut, ``/readyz`` says not ready; after each restore the same process
carries on (no restart), every input record ends up in the windows exactly once,
every partition is committed to its end, and the duplicates at-least-once
redelivery put in the output are counted and reported.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from distilld.broker import free_port
from distilld.daemon.memory import rss_mb

from .conftest import people_records
from .kafka_tools import (
    DaemonProcess,
    committed,
    create_topics,
    daemon_config,
    end_offsets,
    fresh_topic,
    get,
    produce,
    read_all,
    samples,
    unique,
    value,
    wait_committed,
    wait_metrics,
)
from .proxy_tools import TcpProxy
from .test_handover_kafka import PacedProducer

pytestmark = pytest.mark.kafka

PARTITIONS = 3
N = 30_000
KEYS = 24
CUT_S = 15.0
RESILIENT = {"enable.idempotence": True, "message.timeout.ms": 120_000, "log_level": 2}


def _wait(what: str, check: Callable[[], bool], limit_s: float) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < limit_s, f"{what}: not within {limit_s}s"
        time.sleep(0.2)
    return time.monotonic() - start


def _status(url: str) -> int:
    try:
        return get(url)[0]
    except OSError:
        return 0


def _start(
    bootstrap: str,
    tmp_path: Path,
    daemons: list[DaemonProcess],
    prefix: str,
    partitions: int = PARTITIONS,
    **processing: Any,
) -> tuple[str, str, str, DaemonProcess]:
    """Topics of their own (``partitions`` each) and a daemon serving its metrics: (topic, group, base URL,
    daemon)."""
    topic, group = unique(prefix), unique("g")
    create_topics(bootstrap, {topic: partitions, f"{topic}.out": partitions, f"{topic}.dlq": 1})
    port = free_port()
    config = daemon_config(
        bootstrap,
        topic,
        group,
        metrics={"port": port, "refresh_ms": 200},
        processing={"snapshot_interval_s": 2, **processing},
    )
    d = DaemonProcess(tmp_path, config).start()
    daemons.append(d)
    return topic, group, f"http://127.0.0.1:{port}", d


def test_two_cuts_of_15s_the_daemon_recovers_and_skips_nothing(
    proxied: tuple[str, TcpProxy], tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    bootstrap, proxy = proxied
    topic, group, base, d = _start(bootstrap, tmp_path, daemons, "cut")
    _wait("ready before the cuts", lambda: _status(base + "/readyz") == 200, 60)
    pid = d.proc.pid if d.proc else None

    values = [orjson.dumps({**r, "n": i}) for i, r in enumerate(people_records(N, seed=5))]
    keys = [b"user-%d" % (i % KEYS) for i in range(N)]
    # the test's producer goes through the cuts too: idempotent, so that its retries neither fail nor duplicate
    producer = PacedProducer(bootstrap, topic, values, keys, seconds=15, conf=RESILIENT)
    producer.start()
    for cut in (1, 2):
        time.sleep(5)
        proxy.cut()
        noticed = _wait(f"cut {cut}: /readyz says not ready", lambda: _status(base + "/readyz") == 503, CUT_S)
        assert _status(base + "/healthz") == 200, "the process is alive while the broker is away"
        time.sleep(max(0.0, CUT_S - noticed))
        assert d.proc is not None and d.proc.poll() is None, d.log()
        proxy.restore()
        back = _wait(f"cut {cut}: ready again", lambda: _status(base + "/readyz") == 200, 90)
        print(f"cut {cut}: not ready after {noticed:.1f}s; ready again {back:.1f}s after the restore")
    sent = producer.finish()
    assert len(sent) == N

    ends = end_offsets(sent)
    got = wait_committed(bootstrap, group, topic, ends, PARTITIONS, d, limit_s=120)
    assert got == ends, "every partition committed to its end"
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def windows_hold_every_record() -> bool:
        nonlocal metrics
        metrics = samples(get(base + "/metrics")[1])
        return metrics.get(("distilld_window_records", (("kind", "received"),)), 0) == N

    _wait("the windows hold every input record once", windows_hold_every_record, 30)
    assert d.proc is not None and d.proc.pid == pid and d.proc.poll() is None, "recovered without a restart"

    selected = metrics[("distilld_window_records", (("kind", "sent"),))]
    out = Counter(m.value() for m in read_all(bootstrap, f"{topic}.out", expect_at_least=int(selected), idle_s=1))
    assert set(out) <= set(values), "every output is an input record"
    assert abs(selected / N - 0.1) <= 0.003, selected  # the windows' selection: the rate, exactly
    # At-least-once: what was forwarded but not committed before a cut is processed again. The
    # copies beyond the windows' selection are that redelivery: records sent twice, and records
    # sent before a redelivery whose redo selected others (counted, reported, bounded).
    duplicates = sum(c - 1 for c in out.values())
    redelivered = sum(out.values()) - selected
    assert len(out) >= selected and redelivered >= duplicates
    replayed = metrics.get(("distilld_records_replayed_total", ()), 0.0)
    rebalances = {labels: v for (name, labels), v in metrics.items() if name == "distilld_rebalances_total"}
    print(
        f"after two {CUT_S:.0f}s cuts: {N} inputs, {selected:.0f} selected; the output holds {redelivered:.0f} "
        f"records beyond the selection from at-least-once redelivery ({duplicates} of them the same record twice), "
        f"{replayed:.0f} records replayed into restored windows, rebalances {rebalances}"
    )
    assert redelivered <= selected // 4, "redelivery re-forwards at most what was in flight at the cuts"
    assert d.stop() == 0, d.log()


def test_output_refused_pauses_fetching_commits_nothing_past_it_then_resumes(
    proxied: tuple[str, TcpProxy], tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    bootstrap, proxy = proxied
    topic, group, base, d = _start(bootstrap, tmp_path, daemons, "outage", max_in_flight=1000, batch_max_records=1000)
    assert d.proc is not None
    values = [orjson.dumps({**r, "n": i}) for i, r in enumerate(people_records(40_000, seed=9))]
    keys = [b"user-%d" % (i % KEYS) for i in range(len(values))]
    before = produce(bootstrap, topic, values[:10_000], keys[:10_000])
    wait_committed(bootstrap, group, topic, end_offsets(before), PARTITIONS, d)

    proxy.refuse_produce("distilld")  # the daemon's producer: outputs and snapshots
    during = produce(bootstrap, topic, values[10_000:], keys[10_000:])  # the test's producer still writes
    # the commits sent before the refusal land: fetching has paused (the outputs wait for the refused
    # producer) and the committed offsets stay the same over three polls running
    seen: list[dict[int, int]] = []

    def settled() -> bool:
        paused = value(samples(get(base + "/metrics")[1]), "distilld_fetch_paused") == 1
        seen.append(committed(bootstrap, group, topic, PARTITIONS))
        return paused and proxy.produce_refusals > 0 and len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3]

    _wait("fetching paused and the commits settled behind the refused outputs", settled, 60)
    frozen = seen[-1]
    rss, paused = [], []
    for _ in range(20):
        rss.append(rss_mb(d.proc.pid))
        paused.append(value(samples(get(base + "/metrics")[1]), "distilld_fetch_paused"))
        time.sleep(0.5)
    assert committed(bootstrap, group, topic, PARTITIONS) == frozen, "nothing committed past unproduced selections"
    assert sum(frozen.values()) < len(values), frozen
    assert proxy.produce_refusals > 0
    assert paused[-1] == 1, "fetching paused while outputs wait"
    print(f"output refused 12 s: RSS {min(rss):.0f}–{max(rss):.0f} MB, committed stayed at {frozen}")
    assert max(rss) - min(rss) < 32, rss

    proxy.refuse_produce(None)
    sent = before + during
    got = wait_committed(bootstrap, group, topic, end_offsets(sent), PARTITIONS, d, limit_s=120)
    assert got == end_offsets(sent), "resumed and committed to the end"
    metrics = wait_metrics(  # a gauge refresh after the last batch
        base + "/metrics",
        lambda m: (
            m.get(("distilld_window_records", (("kind", "received"),))) == len(sent)
            and m.get(("distilld_fetch_paused", ())) == 0
        ),
        "the windows holding every input record, fetching resumed",
        d,
    )
    selected = value(metrics, "distilld_window_records", kind="sent")
    assert value(metrics, "distilld_window_records", kind="received") == len(sent)
    assert value(metrics, "distilld_fetch_paused") == 0

    out = Counter(m.value() for m in read_all(bootstrap, f"{topic}.out", expect_at_least=int(selected), idle_s=1))
    assert len(out) == selected and set(out) <= set(values)
    print(f"after the outage: {len(sent)} inputs, {len(out)} selected, {sum(out.values()) - len(out)} duplicates")
    assert d.stop() == 0, d.log()


def test_a_full_producer_queue_keeps_the_loop_alive_and_a_stop_in_time(
    proxied: tuple[str, TcpProxy], tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    """A producer queue smaller than processing.max_in_flight, the outputs refused: produce() waited for
    room until librdkafka's message timeout (5 minutes), the loop stuck (/healthz 503) and deaf to SIGTERM."""
    bootstrap, proxy = proxied
    topic, group = fresh_topic(bootstrap, "full")
    port = free_port()
    config = daemon_config(
        bootstrap,
        topic,
        group,
        reducer={"rate": 1.0},
        processing={"shutdown_timeout_s": 5, "batch_max_records": 500},
        metrics={"port": port, "health_timeout_s": 5},
    )
    config["kafka"]["producer"] = {"queue.buffering.max.messages": 50}
    d = DaemonProcess(tmp_path, config).start()
    daemons.append(d)
    base = f"http://127.0.0.1:{port}"
    _wait("ready", lambda: _status(base + "/readyz") == 200, 60)
    proxy.refuse_produce("distilld")
    try:
        values = [orjson.dumps(r) for r in people_records(2000, seed=3)]
        produce(bootstrap, topic, values, [b"user-%d" % (i % KEYS) for i in range(len(values))])
        time.sleep(8)  # past health_timeout_s with the queue full
        assert _status(base + "/healthz") == 200, "waiting for the brokers, not stuck"
        stopping = time.monotonic()
        assert d.stop(timeout=30) == 0, d.log()
        assert time.monotonic() - stopping < 5 + 3, "within shutdown_timeout_s"
        assert committed(bootstrap, group, topic, 1)[0] < 0, "nothing committed past the unsent outputs"
    finally:
        proxy.refuse_produce(None)


def test_exactly_once_outputs_slow_to_be_acknowledged_at_a_snapshot_do_not_stop_the_daemon(
    proxied: tuple[str, TcpProxy], tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    """A periodic snapshot's transaction had 1 s to be committed: outputs the brokers took longer
    to acknowledge made the commit time out (a retriable error) and the daemon exit 1."""
    bootstrap, proxy = proxied
    topic, group, base, d = _start(
        bootstrap, tmp_path, daemons, "eosslow", guarantee="exactly_once", commit_interval_ms=600_000
    )
    assert d.proc is not None
    _wait("ready", lambda: _status(base + "/readyz") == 200, 60)
    values = [orjson.dumps(r) for r in people_records(3000, seed=6)]
    keys = [b"user-%d" % (i % KEYS) for i in range(len(values))]
    proxy.refuse_produce("distilld")  # the daemon's outputs wait; its consumer, and the test's producer, go on
    try:
        sent = produce(bootstrap, topic, values, keys)
        time.sleep(6)  # past two snapshot intervals
    finally:
        proxy.refuse_produce(None)
    assert d.proc.poll() is None, d.log()[-3000:]
    got = wait_committed(bootstrap, group, topic, end_offsets(sent), PARTITIONS, d, limit_s=120)
    assert got == end_offsets(sent)
    assert d.stop() == 0, d.log()


def test_partitions_held_are_processed_while_newly_assigned_ones_restore_from_a_slow_state_topic(
    proxied: tuple[str, TcpProxy], tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    """The state topic was read inside the rebalance callback: a slow restore held the loop, so the
    partitions already held were not processed either, and the group's rebalance waited for it (a member
    joining meanwhile got nothing; Apache Kafka drops a member that does not rejoin within the rebalance
    timeout, max.poll.interval.ms). Now the loop restores between polls: here, with the state reader's
    fetches held 3 s each, a partition handed over by a stopped member is restored while records of
    the partitions already held are committed, its consumer lag shown meanwhile (librdkafka's statistics
    cover only the partitions the consumer has: it had none); then every record is in the windows exactly
    once."""
    bootstrap, proxy = proxied
    topic, group = unique("slowstate"), unique("g")
    create_topics(bootstrap, {topic: PARTITIONS, f"{topic}.out": PARTITIONS, f"{topic}.dlq": 1})
    values = [orjson.dumps(r) for r in people_records(3000, seed=8)]
    keys = [b"user-%d" % (i % KEYS) for i in range(len(values))]

    def start(name: str) -> tuple[DaemonProcess, str]:
        port = free_port()
        config = daemon_config(
            bootstrap, topic, group,
            processing={"snapshot_interval_s": 1, "shutdown_timeout_s": 10},
            metrics={"port": port, "refresh_ms": 200},
        )  # fmt: skip
        d = DaemonProcess(tmp_path, config, name).start()
        daemons.append(d)
        return d, f"http://127.0.0.1:{port}"

    def restores(base: str) -> float:
        metrics = samples(get(base + "/metrics")[1])
        return sum(v for (name, _), v in metrics.items() if name == "distilld_state_restores_total")

    first, base = start("first")
    _wait("the first member ready with every partition", lambda: _status(base + "/readyz") == 200, 60)
    second, second_base = start("second")

    def second_holds_some() -> bool:
        status, body = get(second_base + "/readyz") if _status(second_base + "/readyz") else (0, "")
        return status == 200 and not body.startswith("ready: 0 ")

    _wait("the second member holding partitions", second_holds_some, 60)
    before = end_offsets(produce(bootstrap, topic, values[:2000], keys[:2000]))
    wait_committed(bootstrap, group, topic, before, PARTITIONS, first)
    held = restores(base)
    assert second.stop() == 0, second.log()[-3000:]  # its partitions go back to the first, snapshotted

    proxy.delay_fetch("rdkafka", 3.0)  # the state reader's client.id; the daemons' consumers are distilld-<version>
    try:
        _wait("the first member reading the state topic", lambda: proxy.fetches_delayed > 0, 30)
        after = end_offsets(produce(bootstrap, topic, values[2000:], keys[2000:]))
        # a partition committed to its new end while the handed-over ones are not restored yet
        processed_meanwhile = False
        waiting_lags: dict[int, float] = {}  # the most lag seen of partitions /readyz named as restoring
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            counted = restores(base)
            lags = samples(get(base + "/metrics")[1])
            ready_body = get(base + "/readyz")[1]  # after the metrics: restoring when they were read
            if ready_body.startswith("state of "):
                for p in map(int, re.findall(rf"{re.escape(topic)}\[(\d+)\]", ready_body)):
                    lag = lags.get(("distilld_consumer_lag", (("partition", str(p)), ("topic", topic))))
                    if lag is not None:
                        waiting_lags[p] = max(lag, waiting_lags.get(p, 0.0))
            got = committed(bootstrap, group, topic, PARTITIONS)
            if counted == held and any(got.get(p, -1) >= end for p, end in after.items()):
                processed_meanwhile = True
            if counted > held and all(got.get(p, -1) >= end for p, end in after.items()):
                break
            assert first.proc is not None and first.proc.poll() is None, first.log()[-3000:]
            time.sleep(0.2)
        metrics = wait_metrics(
            base + "/metrics",
            lambda m: m.get(("distilld_window_records", (("kind", "received"),))) == len(values),
            "every record in the windows once",
            first,
        )
    finally:
        proxy.delay_fetch(None)
    log = first.log()
    assert proxy.fetches_delayed >= 2, "the state topic was slow to read"
    assert processed_meanwhile, f"the partitions held waited for the restore\n{log[-3000:]}"
    # their lag, which librdkafka's statistics do not cover until the consumer has them, counted from their commit
    # (the stopped member's, at the first records' end): the second records wait. Not exactly those: Tansu answers
    # ListOffsets with its last batch's first offset + 1, not the log's end (the unit test checks the counting)
    assert waiting_lags, f"no consumer lag for the partitions restoring\n{log[-3000:]}"
    assert all(0 < lag <= after[p] - before[p] for p, lag in waiting_lags.items()), (waiting_lags, before, after)
    assert value(metrics, "distilld_state_restores_total", outcome="restored") >= 1, log[-3000:]
    assert "lost " not in log, log[-3000:]
    assert first.stop() == 0, log[-3000:]
