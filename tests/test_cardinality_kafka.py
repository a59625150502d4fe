"""A key explosion: 1,000,000 distinct keys through a daemon holding at most 10,000.

The state is bounded by configuration, not by traffic: RSS stays under the bound
below, the least recently used keys are evicted and counted, and the overall rate
stays exact (the fractions each evicted key leaves behind do not add up to a
shortfall).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from distilld import DistilledProcessor, build_graders
from distilld.broker import free_port
from distilld.daemon.memory import rss_mb

from .conftest import PEOPLE_FEATURES, people_records
from .kafka_tools import (
    DaemonProcess,
    daemon_config,
    fresh_topic,
    value,
    wait_committed,
    wait_metrics,
)

pytestmark = pytest.mark.kafka

N = 1_000_000
MAX_KEYS = 10_000
# The documented bound: the daemon's RSS with nothing held, plus the windows of MAX_KEYS keys
# (bytes per key from the reducer's layout), plus 250 MB for the rest: librdkafka's fetch queue
# (queued.max.messages.kbytes, 64 MB), a batch of decoded records and its selections in flight,
# and the allocator's slack. Measured here: 186 MB idle, 324 MB peak, 67 MB of windows (550 MB peak when
# pair cells had pane rings too: 226 MB of windows).
SLACK_MB = 250


def _produce_fast(bootstrap: str, topic: str, n: int) -> int:
    """``n`` records, key i for record i; returns the partition's end offset."""
    end = [0]

    def delivered(err: object, msg: object) -> None:
        assert err is None, err
        end[0] = max(end[0], msg.offset() + 1)  # type: ignore[attr-defined]

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "on_delivery": delivered})
    values = [orjson.dumps(r) for r in people_records(5_000, seed=3)]
    for i in range(n):
        while True:
            try:
                producer.produce(topic, values[i % len(values)], b"key-%d" % i)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(120) == 0
    return end[0]


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.25):
            try:
                self.samples.append(rss_mb(self.pid))
            except OSError:
                return


def test_a_million_keys_stay_within_max_keys(
    kafka_bootstrap: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    topic, group = fresh_topic(kafka_bootstrap, "keys")
    port = free_port()
    config = daemon_config(
        kafka_bootstrap,
        topic,
        group,
        reducer={"max_keys": MAX_KEYS},
        metrics={"port": port, "refresh_ms": 500},
        processing={"batch_max_records": 5000, "snapshot_interval_s": 3600},
    )
    d = DaemonProcess(tmp_path, config).start()
    daemons.append(d)
    assert d.proc is not None
    deadline = time.monotonic() + 60
    while "assigned" not in d.log():
        assert time.monotonic() < deadline and d.proc.poll() is None, d.log()
        time.sleep(0.2)
    sampler = RssSampler(d.proc.pid)
    sampler.start()
    time.sleep(0.5)
    end = _produce_fast(kafka_bootstrap, topic, N)
    assert end == N
    wait_committed(kafka_bootstrap, group, topic, {0: N}, 1, d, limit_s=240)
    metrics = wait_metrics(
        f"http://127.0.0.1:{port}/metrics",
        lambda m: (
            m.get(("distilld_keys", ())) == MAX_KEYS and m.get(("distilld_keys_evicted_total", ())) == N - MAX_KEYS
        ),
        "the key table full and every other key evicted (a gauge refresh after the last batch)",
        d,
    )
    sampler.done.set()
    sampler.join(5)

    per_key = DistilledProcessor(build_graders(PEOPLE_FEATURES), max_keys=MAX_KEYS).bytes_per_key
    idle, peak = sampler.samples[0], max(sampler.samples)
    bound = idle + MAX_KEYS * per_key / 2**20 + SLACK_MB
    print(
        f"{N:,} keys, max_keys {MAX_KEYS:,}: RSS {idle:.0f} MB idle, {peak:.0f} MB peak, bound {bound:.0f} MB "
        f"({per_key:,} bytes of window per key); evicted {value(metrics, 'distilld_keys_evicted_total'):,.0f}"
    )
    assert peak <= bound, f"RSS {peak:.0f} MB over the bound {bound:.0f} MB"
    assert value(metrics, "distilld_keys") == MAX_KEYS
    assert value(metrics, "distilld_keys_evicted_total") == N - MAX_KEYS
    produced = value(metrics, "distilld_records_produced_total", topic=f"{topic}.out")
    assert abs(produced - 0.1 * N) <= 1, f"{produced:.0f} forwarded of {N:,} at rate 0.1"
    assert d.stop() == 0, d.log()
