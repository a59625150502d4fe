"""A reference for the representativeness ratios: one feature, or one pair, balanced alone.

distilld balances every feature and every feature pair at once, with one pick
among a few candidates. This reference gives each of them what a streaming
selection can do for it *alone* on the engine's cells: every cell of one
feature (or one pair) sampled systematically, every ``1/rate``-th record of
the cell from a random phase, so that any run of a cell's records holds its
share to within one record. Numerics are cut by the engine's own binner at
the pair resolution, and the errors are the bench's own (evaluation.py: pairs
at the window's quintiles).

It is a yardstick, not a bound: the engine also balances finer numeric
marginals and co-moments, and beats it on a few pairs (those one category
dominates). What it shows is how far balancing everything at once falls
short of balancing one thing, and what the engine's pair resolution allows a
selection that only sees those cells.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import combinations
from typing import Any

import numpy as np

from distilld.bench.streams import STREAMS
from distilld.encoding import NumericBinner
from distilld.evaluation import Stream, category_tvs, pair_tvs, random_selection, windows
from distilld.features import build_graders

__all__ = ["references"]


def _systematic(cells: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Every ``1/rate``-th record of each cell, from a random phase."""
    step = round(1 / rate)
    if not math.isclose(step * rate, 1.0):
        raise ValueError(f"systematic sampling needs 1/rate to be a whole number, not {1 / rate:g}")
    mask = np.zeros(len(cells), dtype=bool)
    order = np.argsort(cells, kind="stable")
    bounds = np.flatnonzero(np.diff(cells[order])) + 1
    for members in np.split(order, bounds):
        mask[members[rng.integers(step) :: step]] = True
    return mask


def _engine_cells(stream: Stream, features: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Every feature as the engine's pair codes: numerics binned by the engine's own
    binner (equal-frequency edges taken from the values, ties kept together), over
    the whole stream at once."""
    out = dict(stream.categorical)
    graders = build_graders(features)
    for name, values in stream.numeric.items():
        engine = graders[name].make_encoder(1, 0)
        assert isinstance(engine, NumericBinner)
        # the engine's binner with every value in its sample: the edges are the stream's own
        binner = NumericBinner(engine.bins, panes=1, sample=len(values), pair_bins=engine.bins // engine.pair_div)
        codes = binner.encode(values.tolist(), np.zeros(len(values), dtype=np.int64), 0)
        out[name] = codes // binner.pair_div
    return out


def references(
    name: str, n: int = 60_000, rate: float = 0.1, batch: int = 1000, window_seconds: float = 100.0, seeds: int = 5
) -> dict[str, float]:
    """Ratios (random's error ÷ the reference's) for category TV and pair TV."""
    stream, _, features = STREAMS[name](n)
    rng = np.random.default_rng(0)
    cells = _engine_cells(stream, features)

    def mean_errors(mask: np.ndarray, metric: str) -> dict[Any, float]:
        tvs: Callable[..., dict[Any, float]] = category_tvs if metric == "category_tv" else pair_tvs
        rows = [tvs(stream, w, s) for w, s in windows(stream, mask, window_seconds)]
        return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}

    randoms = [random_selection(n, batch, rate, s)[0] for s in range(seeds)]
    names = [*stream.categorical, *stream.numeric]
    targets: dict[str, dict[Any, np.ndarray]] = {
        "category_tv": {f: cells[f] for f in stream.categorical},
        "pair_tv": {(a, b): cells[a] * (int(cells[b].max()) + 1) + cells[b] for a, b in combinations(names, 2)},
    }
    out = {}
    for metric, cuts in targets.items():
        random = [mean_errors(m, metric) for m in randoms]
        alone_error = random_error = 0.0
        for target, target_cells in cuts.items():
            alone = [mean_errors(_systematic(target_cells, rate, rng), metric)[target] for _ in range(seeds)]
            alone_error += float(np.mean(alone))
            random_error += float(np.mean([r[target] for r in random]))
        out[metric] = random_error / alone_error
    return out


if __name__ == "__main__":
    for stream_name in STREAMS:
        print(stream_name, {m: round(r, 2) for m, r in references(stream_name).items()})
