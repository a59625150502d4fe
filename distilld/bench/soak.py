"""``make soak``: the daemon for ten minutes at a steady rate, and how it holds up.

The embedded broker, a ``distilld run`` process (as users run it) with a one-minute
window so that windows fill and roll over many times, and a producer at a steady
rate in this process. Every ``--every`` seconds one line: the daemon's RSS, batch
latency (p50/p99 over the interval, from its histogram), how far it is behind the
producer (records produced and acknowledged minus records the daemon consumed) and
the same for a bare consumer of the topic beside it (the broker's share of the lag),
librdkafka's consumer lag (from the broker's high watermark, which the embedded
broker reports loosely: "behind" is the exact figure), keys and window size. At the end a summary compares the
first minute after warm-up with the last: both RSS and latency should stay flat.

    python -m distilld.bench.soak --minutes 10 --rate 5000
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from distilld.bench.streams import people
from distilld.broker import EmbeddedBroker, free_port
from distilld.daemon.memory import rss_mb

__all__ = ["main"]

PARTITIONS = 3
KEYS = 500
WINDOW_S = 60


class SteadyProducer(threading.Thread):
    """``rate`` records a second, in 10 ms ticks, until stopped; counts acknowledgements."""

    def __init__(self, bootstrap: str, topic: str, rate: float) -> None:
        super().__init__(daemon=True, name="soak-producer")
        self.topic, self.rate = topic, rate
        self.acked = 0
        self.stop = threading.Event()
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10, "on_delivery": self._delivered})
        stream, labels, _ = people(50_000)
        self.values = [orjson.dumps(r) for r in stream.records(labels)]

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            self.acked += 1

    def run(self) -> None:
        start, sent = time.monotonic(), 0
        while not self.stop.is_set():
            due = int((time.monotonic() - start) * self.rate)
            for i in range(sent, due):
                try:
                    self.producer.produce(self.topic, self.values[i % len(self.values)], b"user-%d" % (i % KEYS))
                except BufferError:
                    break
                sent = i + 1
            self.producer.poll(0.01)
        self.producer.flush(30)


class BareConsumer(threading.Thread):
    """A plain consumer of the same topic in another group: how far behind the broker
    itself lets a reader fall, to tell the daemon's lag from the broker's."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True, name="soak-bare")
        self.consumed = 0
        self.stop = threading.Event()
        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "soak-bare", "auto.offset.reset": "earliest",
             "session.timeout.ms": 10_000, "fetch.wait.max.ms": 50}
        )  # fmt: skip
        self.consumer.subscribe([topic])

    def run(self) -> None:
        while not self.stop.is_set():
            self.consumed += len(self.consumer.consume(5000, 0.1))
        self.consumer.close()


@dataclass
class Sample:
    t: float
    rss_mb: float
    p50_ms: float
    p99_ms: float
    consumed: float
    behind: float
    bare_behind: float
    lag: float
    keys: float
    window: float


# the line printed every interval: (Sample field, title, width and format)
COLUMNS = [
    ("t", "t (s)", 6, ".0f"),
    ("rss_mb", "RSS MB", 7, ".1f"),
    ("p50_ms", "p50 ms", 7, ".1f"),
    ("p99_ms", "p99 ms", 7, ".1f"),
    ("consumed", "rec/s", 8, ",.0f"),
    ("behind", "behind", 7, ",.0f"),
    ("bare_behind", "bare", 7, ",.0f"),
    ("lag", "lag", 7, ",.0f"),
    ("keys", "keys", 5, ",.0f"),
    ("window", "window", 7, ",.0f"),
]


def _header() -> str:
    return " ".join(f"{title:>{width}}" for _, title, width, _ in COLUMNS)


def _line(sample: Sample) -> str:
    return " ".join(f"{getattr(sample, field):>{width}{spec}}" for field, _, width, spec in COLUMNS)


def _metrics(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _total(m: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for ls, v in m.get(name, []) if all(ls.get(k) == x for k, x in labels.items()))


def _buckets(m: dict[str, list[tuple[dict[str, str], float]]]) -> list[tuple[float, float]]:
    return sorted((float(ls["le"]), v) for ls, v in m.get("distilld_batch_duration_seconds_bucket", []))


def _quantile(before: list[tuple[float, float]], after: list[tuple[float, float]], q: float) -> float:
    """The upper bound of the bucket holding the q-quantile of the batches between two scrapes, in ms."""
    counts = [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]
    total = counts[-1][1] if counts else 0
    if total <= 0:
        return float("nan")
    for le, c in counts:
        if c >= q * total:
            return le * 1000
    return float("inf")


def _config(bootstrap: str, port: int, consumer: dict[str, str] | None = None) -> dict[str, Any]:
    _, _, features = people(10)
    return {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": "soak",
            "input_topics": ["soak"],
            "output_topic": "soak.out",
            "dlq_topic": "soak.dlq",
            # the embedded broker's join waits half the session timeout
            "consumer": {"session.timeout.ms": 10_000, **(consumer or {})},
        },
        "reducer": {"key": "kafka_key", "time": "kafka_timestamp", "window_seconds": WINDOW_S},
        "features": features,
        "processing": {"snapshot_interval_s": 30},
        "metrics": {"port": port, "refresh_ms": 1000},
    }


def soak(
    minutes: float,
    rate: float,
    every: float,
    out: Path | None,
    with_bare: bool = False,
    consumer: dict[str, str] | None = None,
) -> list[Sample]:
    tmp = Path(tempfile.mkdtemp(prefix="distilld-soak-"))
    with EmbeddedBroker(log=tmp / "tansu.log") as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        for f in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in ("soak", "soak.out", "soak.dlq")]).values():
            f.result(30)
        port = free_port()
        config = tmp / "distilld.yaml"
        config.write_text(yaml.safe_dump(_config(broker.bootstrap, port, consumer)))
        log = open(tmp / "daemon.log", "wb")  # noqa: SIM115 - handed to the process
        daemon = subprocess.Popen(
            [sys.executable, "-m", "distilld", "run", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}/metrics"
        producer = SteadyProducer(broker.bootstrap, "soak", rate)
        bare = BareConsumer(broker.bootstrap, "soak") if with_bare else None
        samples: list[Sample] = []
        try:
            _wait_up(url, daemon)
            if bare is not None:
                bare.start()
            producer.start()
            print(
                f"soak: {minutes:g} min at {rate:,.0f} records/s, {KEYS} keys over {PARTITIONS} partitions, "
                f"{WINDOW_S}s windows; a line every {every:g}s (daemon log: {tmp / 'daemon.log'})"
            )
            print(_header())
            start = time.monotonic()
            prev, prev_consumed = _metrics(url), 0.0
            while time.monotonic() - start < minutes * 60:
                time.sleep(every)
                m = _metrics(url)
                consumed = _total(m, "distilld_records_consumed_total")
                s = Sample(
                    t=time.monotonic() - start,
                    rss_mb=rss_mb(daemon.pid),
                    p50_ms=_quantile(_buckets(prev), _buckets(m), 0.5),
                    p99_ms=_quantile(_buckets(prev), _buckets(m), 0.99),
                    consumed=(consumed - prev_consumed) / every,
                    behind=producer.acked - consumed,
                    bare_behind=producer.acked - bare.consumed if bare is not None else float("nan"),
                    lag=_total(m, "distilld_consumer_lag"),
                    keys=_total(m, "distilld_keys"),
                    window=_total(m, "distilld_window_records", kind="received"),
                )
                samples.append(s)
                print(_line(s), flush=True)
                prev, prev_consumed = m, consumed
                if daemon.poll() is not None:
                    raise SystemExit(f"soak: the daemon exited with {daemon.returncode}; see {tmp / 'daemon.log'}")
        finally:
            producer.stop.set()
            producer.join(30)
            if bare is not None:
                bare.stop.set()
                bare.join(10)
            daemon.terminate()
            code = daemon.wait(60)
            log.close()
        print(f"daemon stopped with exit code {code}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(orjson.dumps([s.__dict__ for s in samples], option=orjson.OPT_INDENT_2))
    _summary(samples, every)
    return samples


def _wait_up(url: str, daemon: subprocess.Popen[bytes]) -> None:
    """Until the daemon holds every partition: the soak measures the steady state, not the join."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise SystemExit(f"soak: the daemon exited with {daemon.returncode}")
        try:
            if _total(_metrics(url), "distilld_assigned_partitions") == PARTITIONS:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"soak: the daemon did not take the {PARTITIONS} partitions within 90 s")


def _summary(samples: list[Sample], every: float) -> None:
    """First minute after the warm-up (two windows) against the last minute."""
    per_min = max(1, int(60 / every))
    warm = [s for s in samples if s.t > 2 * WINDOW_S]
    if len(warm) < 2 * per_min:
        print("summary: too short to compare (run at least four minutes)")
        return
    first, last = warm[:per_min], warm[-per_min:]

    def med(xs: list[Sample], f: str) -> float:
        return statistics.median(getattr(s, f) for s in xs)

    rss0, rss1 = med(first, "rss_mb"), med(last, "rss_mb")
    p990, p991 = med(first, "p99_ms"), med(last, "p99_ms")
    behind = f"behind at most {max(s.behind for s in warm):,.0f} records (median {med(warm, 'behind'):,.0f})"
    if not math.isnan(warm[0].bare_behind):
        bare = max(s.bare_behind for s in warm)
        behind += f", a bare consumer at most {bare:,.0f} (median {med(warm, 'bare_behind'):,.0f})"
    print(
        f"summary: RSS {rss0:.1f} → {rss1:.1f} MB ({(rss1 / rss0 - 1) * 100:+.1f} %), "
        f"batch p99 {p990:.1f} → {p991:.1f} ms, p50 {med(first, 'p50_ms'):.1f} → {med(last, 'p50_ms'):.1f} ms, "
        f"{behind}, consumed {med(warm, 'consumed'):,.0f} records/s"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="distilld soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=5000.0, help="records per second")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between lines")
    parser.add_argument("--out", type=Path, default=Path("build/soak.json"), help="the samples, as JSON")
    parser.add_argument(
        "--bare",
        action="store_true",
        help="a plain consumer beside the daemon, to tell the broker's lag from the daemon's (it loads the broker)",
    )
    parser.add_argument(
        "--consumer",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra librdkafka setting for the daemon's consumer (repeatable), e.g. fetch.error.backoff.ms=10",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("RUST_LOG", "warn")
    consumer = dict(item.split("=", 1) for item in args.consumer)
    soak(args.minutes, args.rate, args.every, args.out, with_bare=args.bare, consumer=consumer)


if __name__ == "__main__":
    main()
