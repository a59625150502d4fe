"""Representativeness: distilld against uniform random sampling on generated streams."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from distilld.bench.streams import STREAMS
from distilld.evaluation import Stream, compare
from distilld.features import build_graders
from distilld.processor import DistilledProcessor

__all__ = ["run_quality", "selection"]


def selection(
    name: str,
    n: int = 60_000,
    rate: float = 0.1,
    batch: int = 1000,
    window_seconds: float = 100.0,
    per_key: int | None = None,
    stream_seed: int | None = None,
    **engine: Any,
) -> tuple[Stream, np.ndarray, np.ndarray]:
    """A generated stream and distilld's selection of it: (stream, selected mask, weights).
    ``per_key``: the records are cut into keys (sessions, say) of about that many,
    interleaved, each with its own window; ``stream_seed``: another draw of the
    stream (default: the generator's own seed)."""
    stream, labels, features = STREAMS[name](n) if stream_seed is None else STREAMS[name](n, seed=stream_seed)
    records = stream.records(labels)
    keys = np.random.default_rng(5).integers(0, max(n // per_key, 1), n).tolist() if per_key else [0] * n
    for i, (rec, ts, key) in enumerate(zip(records, stream.timestamps.tolist(), keys, strict=True)):
        rec["_i"], rec["ts"], rec["_k"] = i, ts, key
    if per_key:
        engine = {"key_func": lambda r: r["_k"], "max_keys": n, **engine}
    proc = DistilledProcessor(
        build_graders(features),
        time_horizon_seconds=window_seconds,
        reduction_percentage=rate,
        batch_size=batch,
        timestamp_func=lambda r: r["ts"],
        **engine,
    )
    mask, weights = np.zeros(n, dtype=bool), np.ones(n)
    for start in range(0, n, batch):
        for dp in proc.process_batch(records[start : start + batch]):
            mask[dp.data["_i"]] = True
            weights[dp.data["_i"]] = dp.weight
    return stream, mask, weights


def run_quality(name: str, cuts: tuple[int, ...] = (), **options: Any) -> dict[str, tuple[float, float]]:
    """Per metric: (distilld error, random error) over sliding windows of ~10,000 records;
    ``options`` are :func:`selection`'s (with ``per_key``, the errors are the whole output's);
    ``cuts``: pair TV at those numeric cuts too (``pair_tv@q``)."""
    stream, mask, weights = selection(name, **options)
    used = inspect.signature(selection).bind(name, **options)
    used.apply_defaults()
    rate, batch, window = (used.arguments[k] for k in ("rate", "batch", "window_seconds"))
    ours, theirs = compare(stream, lambda: (mask, weights), rate, batch, window, cuts=cuts)
    return {m: (ours[m], theirs[m]) for m in ours}


if __name__ == "__main__":
    import sys

    kwargs: dict[str, Any] = {k: float(v) if "." in v else int(v) for k, v in (a.split("=") for a in sys.argv[2:])}
    for stream_name in sys.argv[1].split(","):
        res = run_quality(stream_name, **kwargs)
        print(stream_name, "  ".join(f"{m}={r / max(o, 1e-12):.2f}x" for m, (o, r) in res.items()))
