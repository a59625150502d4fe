"""Bounds on the representativeness ratios: one feature, or one pair, balanced alone.

distilld balances every feature and every feature pair at once, with one pick
among a few candidates. These bounds give each of them the best a streaming
selection can do *alone*: every cell of one feature (or one pair) sampled
systematically, every ``1/rate``-th record of the cell from a random phase.
Over windows that start anywhere, a cell's selection then misses its share by
less than one record, which no selection that must also serve the other
features can beat on average. Numerics are cut as the engine cuts them inside
pairs (equal-frequency bins at the pair resolution), and the errors are the
bench's own (evaluation.py: pairs at the window's quintiles).

So a ratio goal above the pair bound cannot be met by any selector on the
engine's cells; only finer cells (which cost every other ratio) move it.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from typing import Any

import numpy as np

from distilld.bench.streams import STREAMS
from distilld.evaluation import Stream, category_tvs, pair_tvs, random_selection, windows
from distilld.graders import DEFAULT_PAIR_BINS

__all__ = ["ceilings"]


def _systematic(cells: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Every ``1/rate``-th record of each cell, from a random phase."""
    step = round(1 / rate)
    mask = np.zeros(len(cells), dtype=bool)
    order = np.argsort(cells, kind="stable")
    bounds = np.flatnonzero(np.diff(cells[order])) + 1
    for members in np.split(order, bounds):
        mask[members[rng.integers(step) :: step]] = True
    return mask


def _engine_cells(stream: Stream, pair_bins: int) -> dict[str, np.ndarray]:
    """Every feature as the engine's pair codes: numerics in equal-frequency bins."""
    out = dict(stream.categorical)
    for name, values in stream.numeric.items():
        out[name] = np.searchsorted(np.quantile(values, np.arange(1, pair_bins) / pair_bins), values)
    return out


def ceilings(
    name: str, n: int = 60_000, rate: float = 0.1, batch: int = 1000, window_seconds: float = 100.0, seeds: int = 3
) -> dict[str, float]:
    """Ratios (random's error ÷ the bound's) for category TV and pair TV."""
    stream = STREAMS[name](n)[0]
    rng = np.random.default_rng(0)
    cells = _engine_cells(stream, DEFAULT_PAIR_BINS)

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
        bound = random_error = 0.0
        for target, target_cells in cuts.items():
            alone = [mean_errors(_systematic(target_cells, rate, rng), metric)[target] for _ in range(seeds)]
            bound += float(np.mean(alone))
            random_error += float(np.mean([r[target] for r in random]))
        out[metric] = random_error / bound
    return out


if __name__ == "__main__":
    for stream_name in STREAMS:
        print(stream_name, {m: round(r, 2) for m, r in ceilings(stream_name).items()})
