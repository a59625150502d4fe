"""``make demo``: the Kafka daemon on a generated stream, next to random sampling.

Starts the embedded broker (Tansu), creates the topics, writes a config and
runs ``distilld run`` on it as its own process, then produces a skewed,
correlated stream (the seed's people records, or UserALE-like events) at a
steady rate, with a few truncated payloads for the dead-letter topic. It reads
what distilld forwards and redraws a table: in and out rates, dead letters,
and per feature the drift (TV distance between the window's shares and the
forwarded shares) of distilld next to a uniform random sample of the same
size. Stops after ``--duration`` seconds or on Ctrl-C: the producer, then the
daemon (SIGTERM), then the broker.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import orjson
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from distilld.bench.streams import Generated, clickstream, people
from distilld.broker import EmbeddedBroker
from distilld.evaluation import Stream, random_selection
from distilld.stats import total_variation

__all__ = ["main"]

SOURCES: dict[str, Callable[..., Generated]] = {"people": people, "clickstream": clickstream}
IN, OUT, DLQ = "demo.in", "demo.out", "demo.dlq"
PARTITIONS = 3
CHUNK = 20_000  # records generated at a time
BAD_EVERY = 1000  # one truncated payload per this many records
TICK_S = 0.05  # produce and consume this often
PANE_S = 1.0  # the demo's window moves by whole seconds of event time
INPUT, RANDOM, DISTILLD, WEIGHTED = range(4)  # rows of a pane's counts
CLEAR = "\x1b[H\x1b[J"  # cursor home, clear to the end of the screen


class Layout:
    """Every feature as a slice of one vector of cells: categoricals by label, numerics in quintiles."""

    def __init__(self, stream: Stream, labels: dict[str, list[str]]) -> None:
        self.index = {n: {label: i for i, label in enumerate(labels[n])} for n in stream.categorical}
        self.edges = {n: np.quantile(v, [0.2, 0.4, 0.6, 0.8]) for n, v in stream.numeric.items()}
        self.names = [*self.index, *(f"{n} (quintile)" for n in self.edges)]
        sizes = [len(labels[n]) for n in self.index] + [5] * len(self.edges)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.n_cells = int(self.offsets[-1])

    def _cells(self, columns: list[np.ndarray]) -> np.ndarray:
        return np.column_stack(columns).astype(np.int64) + self.offsets[:-1]

    def of_stream(self, stream: Stream) -> np.ndarray:
        """records × features: the cell of each record's value."""
        cats = [stream.categorical[n] for n in self.index]
        return self._cells(cats + [np.searchsorted(e, stream.numeric[n]) for n, e in self.edges.items()])

    def of_records(self, records: list[dict[str, Any]]) -> np.ndarray:
        cats = [np.array([idx[r[n]] for r in records]) for n, idx in self.index.items()]
        nums = [np.searchsorted(e, np.array([r[n] for r in records], dtype=np.float64)) for n, e in self.edges.items()]
        return self._cells(cats + nums)


class Panes:
    """Cell counts per second of event time, for the input, the random sample and distilld."""

    def __init__(self, n_cells: int) -> None:
        self.n_cells = n_cells
        self.counts: dict[int, np.ndarray] = {}

    def add(self, row: int, pane: np.ndarray, cells: np.ndarray, weights: np.ndarray | None = None) -> None:
        for p in np.unique(pane).tolist():
            sel = pane == p
            w = None if weights is None else np.repeat(weights[sel], cells.shape[1])
            counts = self.counts.setdefault(p, np.zeros((4, self.n_cells)))
            counts[row] += np.bincount(cells[sel].ravel(), weights=w, minlength=self.n_cells)

    def window(self, last: int, panes: int) -> np.ndarray:
        """Counts summed over the ``panes`` seconds up to ``last``; older ones are dropped."""
        for p in [p for p in self.counts if p < last - panes - 5]:
            del self.counts[p]
        total = np.zeros((4, self.n_cells))
        for p in range(last - panes + 1, last + 1):
            if p in self.counts:
                total += self.counts[p]
        return total


class Demo:
    """The producer and the reader of the output, in one loop; the daemon runs on its own."""

    def __init__(self, args: argparse.Namespace, bootstrap: str) -> None:
        self.args = args
        self.make = SOURCES[args.stream]
        stream, labels, self.features = self.make(CHUNK, seed=0)
        self.layout = Layout(stream, labels)
        self.panes = Panes(self.layout.n_cells)
        self.window_panes = max(1, round(args.window / PANE_S))
        self.producer = Producer({**_client(bootstrap), "linger.ms": 20})
        self.consumer = Consumer({**_client(bootstrap), "group.id": "demo-reader", "enable.auto.commit": False})
        self.consumer.assign([TopicPartition(t, 0, OFFSET_BEGINNING) for t in (OUT, DLQ)])
        self.chunks = 0
        self._load(stream, labels)
        self.produced = self.bad = self.out = self.dead = 0
        self.last_ts = 0.0
        self.seen_ts = [0.0] * PARTITIONS  # per input partition: event time of its latest forwarded record
        self.started = self._last_show = time.monotonic()
        self._counts = (0, 0, 0)
        self.rates = (0.0, 0.0, 0.0)  # records per second: in, out, dead letters

    def _load(self, stream: Stream, labels: dict[str, list[str]]) -> None:
        """The next records to produce, the cell of each, and which of them the random sample takes."""
        self.records = stream.records(labels)
        self.cells = self.layout.of_stream(stream)
        self.sample, _ = random_selection(CHUNK, 1000, self.args.share, seed=1000 + self.chunks)
        self.pos = 0
        self.chunks += 1

    # -- in ----------------------------------------------------------------------

    def produce(self) -> None:
        """Catch up with ``--rate`` records per second since the start."""
        due = min(int((time.monotonic() - self.started) * self.args.rate) - self.produced, CHUNK)
        if due <= 0:
            return
        ts = self.last_ts = round(time.time(), 3)
        while due > 0:
            if self.pos == CHUNK:
                stream, labels, _ = self.make(CHUNK, seed=self.chunks)
                self._load(stream, labels)
            a = self.pos
            b = min(CHUNK, a + due)
            for rec in self.records[a:b]:
                rec["id"], rec["ts"] = self.produced, ts
                value = orjson.dumps(rec)
                self.producer.produce(IN, value, partition=self.produced % PARTITIONS)
                self.produced += 1
                if self.produced % BAD_EVERY == 0:
                    self.producer.produce(IN, value[: len(value) // 2], partition=self.produced % PARTITIONS)
                    self.bad += 1
            pane = np.full(b - a, int(ts // PANE_S))
            self.panes.add(INPUT, pane, self.cells[a:b])
            sampled = self.sample[a:b]
            self.panes.add(RANDOM, pane[sampled], self.cells[a:b][sampled])
            self.pos, due = b, due - (b - a)
        self.producer.poll(0)

    # -- out ---------------------------------------------------------------------

    def consume(self, timeout: float = 0.0) -> None:
        msgs = [m for m in self.consumer.consume(10_000, timeout) if m.error() is None]
        self.dead += sum(1 for m in msgs if m.topic() == DLQ)
        out = [m for m in msgs if m.topic() == OUT]
        if not out:
            return
        self.out += len(out)
        records = [orjson.loads(m.value() or b"") for m in out]
        weights = np.array([_weight(m) for m in out])
        for r in records:
            p = r["id"] % PARTITIONS
            self.seen_ts[p] = max(self.seen_ts[p], r["ts"])
        pane = (np.array([r["ts"] for r in records]) // PANE_S).astype(np.int64)
        cells = self.layout.of_records(records)
        self.panes.add(DISTILLD, pane, cells)
        self.panes.add(WEIGHTED, pane, cells, weights)

    def processed_pane(self) -> int | None:
        """The last second every input partition is known to be processed to (None: nothing forwarded yet)."""
        frontier = min(self.seen_ts)
        return int(frontier // PANE_S) - 1 if frontier else None

    def drain(self, timeout: float) -> bool:
        """After the last record: wait until distilld has forwarded from its last second of every partition."""
        self.producer.flush(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.consume(0.1)
            if min(self.seen_ts) >= self.last_ts:
                return True
        return False

    def close(self) -> None:
        """Close the clients: the broker waits for open connections when it stops."""
        self.consumer.close()
        self.producer.flush(5)
        del self.producer

    # -- the table ---------------------------------------------------------------

    def drift(self, last: int) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
        total = self.panes.window(last, self.window_panes)
        rows = []
        for f, name in enumerate(self.layout.names):
            sl = slice(self.layout.offsets[f], self.layout.offsets[f + 1])
            d = float(total_variation(total[INPUT, sl], total[DISTILLD, sl]))
            r = float(total_variation(total[INPUT, sl], total[RANDOM, sl]))
            rows.append((name, d, r))
        return total, rows

    def show(self, tty: bool) -> None:
        """Once a second: the rates since the last time, and the table (a terminal) or a line (a log)."""
        now = time.monotonic()
        if now - self._last_show < 1.0:
            return
        counts = (self.produced, self.out, self.dead)
        rates = [(x - y) / (now - self._last_show) for x, y in zip(counts, self._counts, strict=True)]
        self.rates = (rates[0], rates[1], rates[2])
        self._counts, self._last_show = counts, now
        if tty:
            print(CLEAR + "\n".join(self.table(self.processed_pane())) + "\n\nCtrl-C stops", flush=True)
        else:
            print(self.status(self.processed_pane()), flush=True)

    def table(self, last: int | None, final: bool = False) -> list[str]:
        a, rates = self.args, self.rates
        elapsed = time.monotonic() - self.started
        lines = [
            f"distilld demo — {a.stream} stream → {IN} ({PARTITIONS} partitions) → distilld run → {OUT}",
            f"share {a.share:.0%}, window {a.window:g} s"
            + ("" if final else f", {elapsed:.0f} s of {f'{a.duration:g} s' if a.duration else 'until Ctrl-C'}"),
            "",
            f"in   {rates[0]:>9,.0f} records/s   ({self.produced:,} records + {self.bad:,} truncated payloads)",
            f"out  {rates[1]:>9,.0f} records/s   ({self.out:,} forwarded, {self.out / max(self.produced, 1):.1%})",
            f"dlq  {rates[2]:>9,.0f} records/s   ({self.dead:,} dead letters)",
            "",
        ]
        if last is None:
            return [*lines, "waiting for distilld's first records (it joins the consumer group)…"]
        total, rows = self.drift(last)
        n_in, n_ours, n_rand = (int(total[row, : self.layout.offsets[1]].sum()) for row in (INPUT, DISTILLD, RANDOM))
        est = total[WEIGHTED, : self.layout.offsets[1]].sum()
        lines += [
            f"window (the last {self.window_panes * PANE_S:g} s distilld has processed): {n_in:,} records;"
            f" distilld sent {n_ours:,} (Σ distilld-weight {est:,.0f}), random sample {n_rand:,}",
            "",
            f"{'feature':<28}{'distilld drift':>16}{'random drift':>16}{'random ÷ distilld':>20}",
        ]
        for name, d, r in rows:
            lines.append(f"{name:<28}{d:>16.4f}{r:>16.4f}{_ratio(d, r):>20}")
        d, r = float(np.mean([x[1] for x in rows])), float(np.mean([x[2] for x in rows]))
        lines += [
            f"{'mean':<28}{d:>16.4f}{r:>16.4f}{_ratio(d, r):>20}",
            "",
            "drift: total-variation distance between the window's shares and the sample's (lower is better)",
        ]
        return lines

    def status(self, last: int | None) -> str:
        """One line, for logs (stdout not a terminal)."""
        in_, out = self.rates[0], self.rates[1]
        line = f"{time.monotonic() - self.started:5.0f} s  in {in_:,.0f}/s  out {out:,.0f}/s  dlq {self.dead:,} in all"
        if last is None:
            return line + "  (waiting for distilld)"
        _, rows = self.drift(last)
        d, r = float(np.mean([x[1] for x in rows])), float(np.mean([x[2] for x in rows]))
        return line + f"  mean drift: distilld {d:.4f}, random {r:.4f}"


def _client(bootstrap: str) -> dict[str, Any]:
    # the broker stops before the clients are collected: no log line for that
    return {"bootstrap.servers": bootstrap, "log.connection.close": False}


def _weight(m: Message) -> float:
    """The ``distilld-weight`` header: how many input records this output record stands for."""
    headers = m.headers() or []
    value = dict(headers).get("distilld-weight") if isinstance(headers, list) else headers.get("distilld-weight")
    return float(value or 0.0)


def _ratio(d: float, r: float) -> str:
    return f"{r / d:.1f}×" if d > 0 else "—"


def _config(args: argparse.Namespace, bootstrap: str, features: list[dict[str, Any]], path: Path) -> Path:
    config = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": "distilld-demo",
            "input_topics": [IN],
            "output_topic": OUT,
            "dlq_topic": DLQ,
            "consumer": {"session.timeout.ms": 6000},
        },
        "reducer": {"rate": args.share, "window_seconds": args.window, "key": "none", "time": "ts"},
        "features": features,
        "processing": {"on_error": "dlq", "shutdown_timeout_s": 10},
        "metrics": {"port": 0},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _stop(daemon: subprocess.Popen[bytes]) -> int:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    return daemon.returncode


def _create_topics(bootstrap: str) -> None:
    # log_level 5: no info line at exit about the events of its background queue it purges
    admin = AdminClient({**_client(bootstrap), "log_level": 5})
    for f in admin.create_topics([NewTopic(IN, PARTITIONS, 1), NewTopic(OUT, 1, 1), NewTopic(DLQ, 1, 1)]).values():
        f.result()


def _start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``distilld run --config FILE``, as a user would start it, in its own session: Ctrl-C reaches
    only the demo, which stops the daemon after the producer."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "distilld.cli", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _loop(demo: Demo, daemon: subprocess.Popen[bytes], tty: bool) -> tuple[bool, bool]:
    """Produce, read and show until ``--duration``, Ctrl-C or the daemon's exit: (interrupted, daemon exited)."""
    duration = demo.args.duration
    try:
        while not duration or time.monotonic() - demo.started < duration:
            tick = time.monotonic()
            demo.produce()
            demo.consume()
            if daemon.poll() is not None:
                return False, True
            demo.show(tty)
            time.sleep(max(0.0, TICK_S - (time.monotonic() - tick)))
    except KeyboardInterrupt:
        return True, False
    return False, False


def run(args: argparse.Namespace) -> int:
    tty = sys.stdout.isatty()
    with tempfile.TemporaryDirectory(prefix="distilld-demo-") as tmp, EmbeddedBroker(log=Path(tmp) / "broker.log") as b:
        _create_topics(b.bootstrap)
        demo = Demo(args, b.bootstrap)
        config = _config(args, b.bootstrap, demo.features, Path(tmp) / "distilld.yaml")
        log = Path(tmp) / "daemon.log"
        daemon = _start_daemon(config, log)
        try:
            print(f"broker {b.bootstrap}; topics {IN}, {OUT}, {DLQ}; distilld run --config {config} (pid {daemon.pid})")
            interrupted, failed = _loop(demo, daemon, tty)
            # from here on an orderly stop: a second Ctrl-C does not cut it short
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print((CLEAR if tty else "\n") + "stopping: producer…", end="", flush=True)
            drained = not failed and demo.drain(3.0 if interrupted else 15.0)
            print(" distilld run (SIGTERM)…", end="", flush=True)
            code = _stop(daemon)
            print(f" exit code {code}; broker.", flush=True)
            if failed or code != 0:
                print(f"distilld run stopped with code {code}; its log ends:", file=sys.stderr)
                print("\n".join(log.read_text(errors="replace").splitlines()[-20:]), file=sys.stderr)
                return 1
        finally:
            _stop(daemon)  # whatever happened above: no daemon outlives the demo
            demo.close()
            kept = _keep(config, log)
    print("\n".join(demo.table(int(demo.last_ts // PANE_S) if drained else demo.processed_pane(), final=True)))
    how = "on Ctrl-C" if interrupted else f"after {args.duration:g} s"
    print(f"\nstopped {how}; distilld run exited with code {code}")
    if kept:
        print(f"the daemon's configuration and log: {kept}/distilld.yaml, {kept}/daemon.log")
    return 0


def _keep(config: Path, log: Path, where: Path = Path("build") / "demo") -> Path | None:
    """Copy the demo's configuration and the daemon's log out of the temporary folder (deleted at exit),
    to look at after the demo; None where the working directory cannot take them."""
    try:
        where.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(config, where / "distilld.yaml")
        shutil.copyfile(log, where / "daemon.log")
    except OSError:
        return None
    return where


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="distilld demo",
        description="The Kafka daemon on a generated stream, next to random sampling.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--stream",
        choices=sorted(SOURCES),
        default="people",
        help="generated stream (clickstream: UserALE-like events)",
    )
    parser.add_argument("--rate", type=float, default=10_000, help="records per second to produce")
    parser.add_argument("--share", type=float, default=0.1, help="share of records distilld forwards (reducer.rate)")
    parser.add_argument("--window", type=float, default=10.0, help="sliding window, seconds")
    parser.add_argument(
        "--duration",
        type=float,
        default=30.0,
        help="seconds to run; 0: until Ctrl-C (the in-memory broker keeps every record: ~200 MB a minute at 10,000/s)",
    )
    args = parser.parse_args(argv)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as Ctrl-C does: daemon and broker too
    try:
        return run(args)
    except KeyboardInterrupt:  # during start-up: the broker is stopped on the way out
        print("\nstopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])


if __name__ == "__main__":
    raise SystemExit(main())
