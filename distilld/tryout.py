"""``distilld sample`` and ``distilld broker``: what the Quick start needs to try
``reduce``, ``evaluate`` and ``run`` without data or a cluster of one's own."""

from __future__ import annotations

import csv
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import orjson

from distilld.bench.streams import STREAMS

__all__ = ["broker", "sample"]

EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: event times 'ts' start here


def sample(stream: str, output: str, records: int) -> int:
    """Write ``records`` of a generated stream (bench/streams.py) with an event time ``ts``."""
    path = Path(output)
    kind = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "json"}.get(path.suffix.lower())
    if kind is None:
        print(f"distilld: {output}: give a .csv, .ndjson or .json file", file=sys.stderr)
        return 1
    if records < 1:
        print("distilld: --records must be at least 1", file=sys.stderr)
        return 1
    generated, labels, _ = STREAMS[stream](records)
    rows = generated.records(labels)
    for row, t in zip(rows, generated.timestamps.tolist(), strict=True):
        row["ts"] = round(EPOCH + t, 3)
    try:
        if kind == "csv":
            with path.open("w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        elif kind == "ndjson":
            path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
        else:
            path.write_bytes(orjson.dumps(rows))
    except OSError as e:
        print(f"distilld: {output}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"wrote {records:,} {stream} records to {output} (fields: {', '.join(rows[0])})")
    return 0


def broker(port: int) -> int:
    """Run the embedded broker (broker.py) on 127.0.0.1:``port`` until SIGINT or SIGTERM."""
    from distilld.broker import EmbeddedBroker

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        with EmbeddedBroker(port=port) as running:
            print(
                f"embedded broker on {running.bootstrap}: in memory only, topics are created when first used; "
                "Ctrl-C stops it",
                flush=True,
            )
            while not stop.wait(0.5):
                if running._proc is not None and running._proc.poll() is not None:
                    print(f"distilld: the broker exited with code {running._proc.returncode}", file=sys.stderr)
                    return 1
    except RuntimeError as e:
        hint = ": stop it, or give another --port" if "already in use" in str(e) else ""
        print(f"distilld: {e}{hint}", file=sys.stderr)
        return 1
    print("broker stopped")
    return 0
