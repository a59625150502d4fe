"""An offline reference for the representativeness ratios: what a selection that
knew the whole stream, and the bench's own cuts, reaches on the pair goal.

It starts from distilld's selection and improves it by local search: swap a
selected record for an unselected one of the same block of 250 records when
that lowers the bench's own error, summed over every sliding window whose
edges fall on a block edge (the bench's windows fall anywhere). The error is
pairwise TV, numerics cut at each window's own quintiles exactly as
evaluation.py cuts them, plus each categorical feature's TV weighted
``category_weight``. Swaps stay inside a block, so every window keeps its
number of picks. The first pass anneals (uphill swaps taken with probability
``exp(−Δ/T)``, T falling to 0), later passes take only swaps that help.

No streaming selector can know where the window's quintiles will fall, or
choose a record for a window that has not ended; this one does both, so what
it reaches is far above what a selector can. It is a local search, not an
exact optimum, so it is not a bound either: a yardstick for the pair goal.
``python -m distilld.bench.offline [stream …]`` (~20 minutes a stream on 2 cores: not part of
``make bench``).
"""

from __future__ import annotations

import argparse
import time
from itertools import combinations

import numpy as np
from numba import njit

from distilld.bench.quality import selection
from distilld.evaluation import METRICS, Stream, compare, random_selection

__all__ = ["improve"]

BLOCK_WINDOWS = 40  # blocks a window: 250 records a block for the bench's 10,000-record windows


class _Layout:
    """The cells the objective counts: every pair of features, then each categorical alone."""

    def __init__(self, stream: Stream, category_weight: float) -> None:
        cats, nums = list(stream.categorical), list(stream.numeric)
        self.n_cats = len(cats)
        sizes = [int(stream.categorical[c].max()) + 1 for c in cats] + [5] * len(nums)
        features = len(sizes)
        pairs = list(combinations(range(features), 2))
        first = [a for a, _ in pairs] + list(range(len(cats)))
        second = [b for _, b in pairs] + [-1] * len(cats)
        weight = [1.0 / len(pairs)] * len(pairs) + [category_weight / max(len(cats), 1)] * len(cats)
        self.first, self.second = np.array(first), np.array(second)
        self.weight = np.array(weight)
        self.sizes = np.array(sizes, dtype=np.int64)
        span = [sizes[a] * (sizes[b] if b >= 0 else 1) for a, b in zip(first, second, strict=True)]
        self.offset = np.concatenate([[0], np.cumsum(span)]).astype(np.int64)
        self.cat_codes = np.column_stack([stream.categorical[c] for c in cats]).astype(np.int64)
        self.nums = [stream.numeric[n] for n in nums]

    def quintiles(self, block: int, windows: int) -> np.ndarray:
        """Each window's records' quintile codes, window × record × numeric (evaluation.py's cut)."""
        span = block * BLOCK_WINDOWS
        out = np.zeros((windows, span, len(self.nums)), dtype=np.int8)
        for w in range(windows):
            for k, values in enumerate(self.nums):
                v = values[w * block : w * block + span]
                out[w, :, k] = np.searchsorted(np.quantile(v, [0.2, 0.4, 0.6, 0.8]), v)
        return out


@njit(cache=True)
def _cell(w, r, p, block, first, second, sizes, offset, cat_codes, quint, n_cats):  # type: ignore[no-untyped-def]
    a, b = first[p], second[p]
    c = cat_codes[r, a] if a < n_cats else quint[w, r - w * block, a - n_cats]
    if b >= 0:
        c = c * sizes[b] + (cat_codes[r, b] if b < n_cats else quint[w, r - w * block, b - n_cats])
    return offset[p] + c


@njit(cache=True)
def _deviations(mask, block, windows, first, second, sizes, offset, cat_codes, quint, n_cats):  # type: ignore[no-untyped-def]
    """Per window and cell: selected count − the count the window's shares ask of its picks."""
    dev = np.zeros((windows, offset[-1]))
    picks = np.zeros(windows)
    span = block * BLOCK_WINDOWS
    for w in range(windows):
        lo = w * block
        full = np.zeros(offset[-1])
        k = 0.0
        for r in range(lo, lo + span):
            k += mask[r]
        picks[w] = k
        for r in range(lo, lo + span):
            for p in range(first.shape[0]):
                c = _cell(w, r, p, block, first, second, sizes, offset, cat_codes, quint, n_cats)
                full[c] += 1.0
                if mask[r]:
                    dev[w, c] += 1.0
        for c in range(offset[-1]):
            dev[w, c] -= full[c] * k / span
    return dev, picks


@njit(cache=True)
def _search(mask, dev, picks, steps, temperature, block, windows, first, second, weight, sizes, offset,  # type: ignore[no-untyped-def]
            cat_codes, quint, n_cats, seed):  # fmt: skip
    """Swap proposals inside random blocks; returns how many were taken."""
    np.random.seed(seed)
    blocks = mask.shape[0] // block
    taken = 0
    for s in range(steps):
        t = temperature * (1.0 - s / steps)
        blk = np.random.randint(blocks)
        i = blk * block + np.random.randint(block)
        while not mask[i]:
            i = blk * block + np.random.randint(block)
        j = blk * block + np.random.randint(block)
        while mask[j]:
            j = blk * block + np.random.randint(block)
        lo, hi = max(0, blk - BLOCK_WINDOWS + 1), min(windows - 1, blk)
        d = 0.0
        for w in range(lo, hi + 1):
            scale = 1.0 / (2.0 * picks[w])
            for p in range(first.shape[0]):
                ci = _cell(w, i, p, block, first, second, sizes, offset, cat_codes, quint, n_cats)
                cj = _cell(w, j, p, block, first, second, sizes, offset, cat_codes, quint, n_cats)
                if ci != cj:
                    di, dj = dev[w, ci], dev[w, cj]
                    d += weight[p] * scale * (abs(di - 1) - abs(di) + abs(dj + 1) - abs(dj))
        if d < 0 or (t > 0 and np.random.random() < np.exp(-d / t)):
            taken += 1
            mask[i], mask[j] = False, True
            for w in range(lo, hi + 1):
                for p in range(first.shape[0]):
                    dev[w, _cell(w, i, p, block, first, second, sizes, offset, cat_codes, quint, n_cats)] -= 1.0
                    dev[w, _cell(w, j, p, block, first, second, sizes, offset, cat_codes, quint, n_cats)] += 1.0
    return taken


def improve(
    stream: Stream,
    mask: np.ndarray,
    window_records: int,
    steps: int = 3_000_000,
    passes: int = 3,
    temperature: float = 5e-4,
    category_weight: float = 4.0,
) -> np.ndarray:
    """``mask`` improved by the local search (module docstring); a new mask, same picks per block."""
    if window_records % BLOCK_WINDOWS:
        raise ValueError(f"a window of {window_records} records does not cut into {BLOCK_WINDOWS} blocks")
    block = window_records // BLOCK_WINDOWS
    usable = len(mask) // block * block
    layout = _Layout(stream, category_weight)
    windows = usable // block - BLOCK_WINDOWS + 1
    quint = layout.quintiles(block, windows)
    per_block = mask[:usable].reshape(-1, block).sum(axis=1)
    if per_block.min() < 1 or per_block.max() >= block:
        raise ValueError("every block needs a selected and an unselected record to swap")
    out = mask[:usable].copy()
    args = (block, windows, layout.first, layout.second, layout.sizes, layout.offset, layout.cat_codes, quint)
    for k in range(passes):
        dev, picks = _deviations(out, *args, layout.n_cats)
        _search(
            out, dev, picks, steps, temperature if k == 0 else 0.0, block, windows, layout.first, layout.second,
            layout.weight, layout.sizes, layout.offset, layout.cat_codes, quint, layout.n_cats, k,
        )  # fmt: skip
    return np.concatenate([out, mask[usable:]])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m distilld.bench.offline", description=__doc__.split("\n\n")[0])
    parser.add_argument("streams", nargs="*", default=["people"])
    parser.add_argument("--steps", type=int, default=3_000_000, help="swap proposals a pass")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="distilld's tie-break seed")
    parser.add_argument("--category-weight", type=float, default=4.0, help="category TV's weight against pairs'")
    parser.add_argument(
        "--start",
        choices=("distilld", "random"),
        default="distilld",
        help="the selection the search starts from: distilld's, or random sampling's (does the search find "
        "distilld's level by itself?)",
    )
    args = parser.parse_args()
    print("ratio = random sampling's error ÷ the selection's error (random averaged over 5 seeds)")
    print(f"{'stream':<18}{'selection':<11}" + "".join(f"{m:>13}" for m in METRICS))
    for name in args.streams:
        stream, mask, weights = selection(name, seed=args.seed)
        if args.start == "random":
            mask, weights = random_selection(len(stream), 1000, 0.1, args.seed)
        window_records = int(np.searchsorted(stream.timestamps, stream.timestamps[0] + 100.0))
        started = time.perf_counter()
        better = improve(stream, mask, window_records, args.steps, args.passes, category_weight=args.category_weight)
        took = time.perf_counter() - started
        for label, m, w in ((args.start, mask, weights), ("offline", better, np.full(len(better), 10.0))):

            def chosen(m: np.ndarray = m, w: np.ndarray = w) -> tuple[np.ndarray, np.ndarray]:
                return m, w

            ours, theirs = compare(stream, chosen, 0.1, 1000, 100.0)
            print(f"{name:<18}{label:<11}" + "".join(f"{theirs[k] / max(ours[k], 1e-12):>12.2f}x" for k in METRICS))
        print(f"{'':<18}(local search: {took:.0f} s)")


if __name__ == "__main__":
    main()
