"""Helpers for tests against a real broker: topics, producing, reading back,
committed offsets, and the daemon as a separate process (as a user runs it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]
FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "fetch.wait.max.ms": 20}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topics(bootstrap: str, partitions: dict[str, int], conf: dict[str, Any] | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, **(conf or {})})
    futures = admin.create_topics([NewTopic(t, n, 1) for t, n in partitions.items()])
    for f in futures.values():
        f.result(30)


@dataclass(frozen=True)
class Sent:
    value: bytes | None
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    partition: int
    offset: int


def produce(
    bootstrap: str,
    topic: str,
    values: Sequence[bytes | None],
    keys: Sequence[bytes | None],
    headers: Sequence[list[tuple[str, bytes]] | None] | None = None,
    conf: dict[str, Any] | None = None,
) -> list[Sent]:
    """Produce and wait; returns each record with the partition and offset it got."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **(conf or {})})
    out: list[Sent | None] = [None] * len(values)

    def report(i: int) -> Any:
        def cb(err: Any, msg: Any) -> None:
            assert err is None, err
            out[i] = Sent(
                values[i], keys[i], tuple((headers[i] if headers else None) or ()), msg.partition(), msg.offset()
            )

        return cb

    for i, (v, k) in enumerate(zip(values, keys, strict=True)):
        h = headers[i] if headers else None
        producer.produce(topic, v, k, headers=h, on_delivery=report(i))
        if i % 5000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    assert all(s is not None for s in out)
    return [s for s in out if s is not None]


def end_offsets(sent: Sequence[Sent]) -> dict[int, int]:
    ends: dict[int, int] = {}
    for s in sent:
        ends[s.partition] = max(ends.get(s.partition, 0), s.offset + 1)
    return ends


def read_all(
    bootstrap: str,
    topic: str,
    expect_at_least: int = 0,
    idle_s: float = 3.0,
    limit_s: float = 60.0,
    extra: dict[str, Any] | None = None,
) -> list[Any]:
    """Every message of ``topic``: read until ``expect_at_least`` arrived and nothing came for ``idle_s``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("reader"),
            "auto.offset.reset": "earliest",
            **FAST_GROUP,
            **(extra or {}),
        }
    )
    consumer.subscribe([topic])
    msgs: list[Any] = []
    last, deadline = time.monotonic(), time.monotonic() + limit_s
    try:
        while time.monotonic() < deadline:
            batch = [m for m in consumer.consume(1000, 0.5) if m.error() is None]
            if batch:
                msgs.extend(batch)
                last = time.monotonic()
            elif len(msgs) >= expect_at_least and time.monotonic() - last > idle_s:
                break
    finally:
        consumer.close()
    return msgs


def committed(
    bootstrap: str, group: str, topic: str, partitions: int, conf: dict[str, Any] | None = None
) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, **(conf or {})})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


def wait_committed(
    bootstrap: str,
    group: str,
    topic: str,
    ends: dict[int, int],
    partitions: int,
    daemon: DaemonProcess | None = None,
    limit_s: float = 90.0,
    conf: dict[str, Any] | None = None,
) -> dict[int, int]:
    """Poll the group's committed offsets until they reach ``ends``; AssertionError if the daemon dies
    or ``limit_s`` passes first (with the offsets committed at the deadline)."""
    deadline = time.monotonic() + limit_s
    while True:
        got = committed(bootstrap, group, topic, partitions, conf)
        if all(got.get(p, -1) >= end for p, end in ends.items()):
            return got
        _check_alive(daemon)
        if time.monotonic() > deadline:
            behind = {p: (got.get(p), end) for p, end in ends.items() if got.get(p, -1) < end}
            raise AssertionError(
                f"{group} did not commit {topic} to {ends} within {limit_s:.0f}s: committed {got}; behind "
                f"(committed, end): {behind}" + (f"\n{daemon.log()[-3000:]}" if daemon is not None else "")
            )
        time.sleep(0.3)


def wait_metrics(
    url: str,
    ready: Callable[[Metrics], bool],
    what: str,
    daemon: DaemonProcess | None = None,
    limit_s: float = 30.0,
) -> Metrics:
    """Scrape ``url`` (a ``/metrics`` endpoint) until ``ready`` holds for what it serves (a gauge that
    the daemon refreshes every ``metrics.refresh_ms``, say) in two scrapes running; returns the second
    (a refresh sets its gauges one after another: a scrape may fall in between). AssertionError naming
    ``what`` if the daemon dies or ``limit_s`` passes first, with the distilld metrics last seen."""
    deadline = time.monotonic() + limit_s
    held = False
    while True:
        _check_alive(daemon)
        metrics = samples(get(url)[1])
        if ready(metrics):
            if held:
                return metrics
            held = True
        else:
            held = False
            if time.monotonic() > deadline:
                seen = {k: v for k, v in metrics.items() if k[0].startswith("distilld_") and "_bucket" not in k[0]}
                raise AssertionError(f"{what}: not within {limit_s:.0f}s; the last scrape: {seen}")
        time.sleep(0.2)


def _check_alive(daemon: DaemonProcess | None) -> None:
    if daemon is not None and daemon.proc is not None and daemon.proc.poll() is not None:
        raise AssertionError(f"the daemon exited with {daemon.proc.returncode}:\n{daemon.log()}")


class DaemonProcess:
    """``distilld run --config FILE`` in its own process."""

    def __init__(self, tmp: Path, config: dict[str, Any], name: str = "daemon", args: Sequence[str] = ()) -> None:
        self.args = list(args)
        self.config_path = tmp / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = tmp / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the process
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "distilld", "run", "--config", str(self.config_path), *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Send ``sig`` once the daemon has started (a signal during interpreter start-up,
        before distilld installs its handlers, would just kill it) and wait for the exit."""
        assert self.proc is not None
        deadline = time.monotonic() + 30
        while sig != signal.SIGKILL and self.proc.poll() is None and time.monotonic() < deadline:
            if "metrics and health" in self.log() or " → " in self.log():
                break
            time.sleep(0.1)
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def fresh_topic(bootstrap: str, name: str) -> tuple[str, str]:
    """A new input topic of one partition, with its ``.out`` and ``.dlq``, and a new group: (topic, group)."""
    topic, group = unique(name), unique("g")
    create_topics(bootstrap, {topic: 1, f"{topic}.out": 1, f"{topic}.dlq": 1})
    return topic, group


def daemon_config(bootstrap: str, topic: str, group: str, **sections: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": group,
            "input_topics": [topic],
            "output_topic": f"{topic}.out",
            "dlq_topic": f"{topic}.dlq",
            "consumer": dict(FAST_GROUP),
        },
        "reducer": {"rate": 0.1, "window_seconds": 600, "key": "kafka_key"},
        "features": [
            {"name": "gender", "type": "categorical", "categories": ["female", "male", "other"]},
            {"name": "age", "type": "numeric"},
            {"name": "income", "type": "numeric", "field": "money.income"},
        ],
        "processing": {"batch_max_records": 2000, "batch_max_wait_ms": 50, "commit_interval_ms": 200},
        "metrics": {"port": 0},
    }
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    return config


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(text: str) -> Metrics:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics[(name, tuple(sorted(labels.items())))]
