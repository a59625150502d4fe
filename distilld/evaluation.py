"""How representative a selection is, next to uniform random sampling.

One implementation shared by ``make bench``, ``make demo`` and (later)
``distilld evaluate``. A stream is given as columns; a selection as a boolean
mask plus a weight per record. At checkpoints along the stream, the records
of the sliding window are compared with the selected records of the same
window:

- ``category_tv``: total-variation distance of each categorical feature's shares;
- ``pair_tv``: TV of the joint shares of every feature pair (numerics cut into
  quintiles of the window, so pairs with numerics count too; ``cuts`` asks for
  it at other cuts as well: ``pair_tv@4`` for quartiles, ``pair_tv@pair_bins``
  for a count per numeric);
- ``ks``: Kolmogorov–Smirnov distance of each numeric feature;
- ``corr``: mean absolute error of the numeric correlation matrix;
- ``count``: error of per-category counts estimated with the weights, as a
  share of the window size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from distilld.budget import allocate

__all__ = [
    "METRICS",
    "Stream",
    "category_tvs",
    "evaluate",
    "pair_codes",
    "pair_tvs",
    "random_selection",
    "windows",
]

METRICS = ("category_tv", "pair_tv", "ks", "corr", "count")


@dataclass
class Stream:
    """A generated or loaded stream as columns (categoricals as int codes)."""

    categorical: dict[str, np.ndarray]
    numeric: dict[str, np.ndarray]
    timestamps: np.ndarray

    def __len__(self) -> int:
        return len(self.timestamps)

    def records(self, labels: Mapping[str, Sequence[str]]) -> list[dict[str, object]]:
        """Dict records, as a JSON decoder would give them."""
        cols: dict[str, list[object]] = {}
        for name, codes in self.categorical.items():
            lab = labels[name]
            cols[name] = [lab[c] for c in codes.tolist()]
        for name, values in self.numeric.items():
            cols[name] = values.tolist()
        names = list(cols)
        return [dict(zip(names, row, strict=True)) for row in zip(*cols.values(), strict=True)]


def _tv_codes(a: np.ndarray, b: np.ndarray, k: int, wb: np.ndarray | None = None) -> float:
    pa = np.bincount(a, minlength=k) / max(len(a), 1)
    cb = np.bincount(b, weights=wb, minlength=k)
    pb = cb / max(cb.sum(), 1e-12)
    return float(0.5 * np.abs(pa - pb).sum())


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / len(a)
    fb = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.abs(fa - fb).max())


def _corr_error(full: np.ndarray, sel: np.ndarray) -> float:
    if full.shape[1] < 2 or sel.shape[0] < 3:
        return 0.0
    cf, cs = np.corrcoef(full, rowvar=False), np.corrcoef(sel, rowvar=False)
    iu = np.triu_indices(full.shape[1], 1)
    return float(np.nanmean(np.abs(cf[iu] - cs[iu])))


def _n_codes(a: np.ndarray, b: np.ndarray) -> int:
    """How many codes a categorical column needs to cover both sides."""
    return int(max(a.max(initial=0), b.max(initial=0))) + 1


def category_tvs(stream: Stream, window: np.ndarray, selected: np.ndarray) -> dict[str, float]:
    """Per categorical feature: TV of its shares, selection against window."""
    out = {}
    for n, c in stream.categorical.items():
        out[n] = _tv_codes(c[window], c[selected], _n_codes(c[window], c[selected]))
    return out


Cut = int | Mapping[str, int]  # equal-frequency bins for every numeric, or per numeric (5 if not named)


def pair_codes(
    stream: Stream, window: np.ndarray, selected: np.ndarray, cuts: Cut = 5
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray, int]]:
    """Per feature pair: the joint cell of each of the window's records and of the selected ones,
    and how many cells (numerics cut at the window's quintiles, or as ``cuts`` says)."""
    codes: dict[str, np.ndarray] = {}
    scodes: dict[str, np.ndarray] = {}
    sizes: dict[str, int] = {}
    for n, c in stream.categorical.items():
        codes[n], scodes[n] = c[window], c[selected]
        sizes[n] = _n_codes(codes[n], scodes[n])
    for n, v in stream.numeric.items():
        q = cuts if isinstance(cuts, int) else cuts.get(n, 5)
        edges = np.quantile(v[window], np.arange(1, q) / q)
        codes[n], scodes[n], sizes[n] = np.searchsorted(edges, v[window]), np.searchsorted(edges, v[selected]), q
    return {
        (a, b): (codes[a] * sizes[b] + codes[b], scodes[a] * sizes[b] + scodes[b], sizes[a] * sizes[b])
        for a, b in combinations(codes, 2)
    }


def pair_tvs(stream: Stream, window: np.ndarray, selected: np.ndarray, cuts: Cut = 5) -> dict[tuple[str, str], float]:
    """Per feature pair: TV of its joint shares (numerics cut at the window's quintiles,
    or into ``cuts`` equal-frequency bins: one count for all, or a count per numeric)."""
    return {pair: _tv_codes(w, s, k) for pair, (w, s, k) in pair_codes(stream, window, selected, cuts).items()}


def cut_name(cut: Cut) -> str:
    """``pair_tv@4`` for quartiles, ``pair_tv@pair_bins`` for each numeric's own cut."""
    return f"pair_tv@{cut}" if isinstance(cut, int) else "pair_tv@pair_bins"


def _window_errors(
    stream: Stream, window: np.ndarray, selected: np.ndarray, weights: np.ndarray, cuts: Sequence[Cut] = ()
) -> dict[str, float]:
    cats = {n: c[window] for n, c in stream.categorical.items()}
    scats = {n: c[selected] for n, c in stream.categorical.items()}
    nums = {n: v[window] for n, v in stream.numeric.items()}
    snums = {n: v[selected] for n, v in stream.numeric.items()}
    ks_ = {n: _n_codes(c, scats[n]) for n, c in cats.items()}

    out: dict[str, float] = {}
    out["category_tv"] = float(np.mean(list(category_tvs(stream, window, selected).values()))) if cats else 0.0
    pairs = pair_tvs(stream, window, selected)
    out["pair_tv"] = float(np.mean(list(pairs.values()))) if pairs else 0.0
    for cut in cuts:
        out[cut_name(cut)] = float(np.mean(list(pair_tvs(stream, window, selected, cut).values()))) if pairs else 0.0
    out["ks"] = float(np.mean([_ks(nums[n], snums[n]) for n in nums])) if nums else 0.0
    if len(nums) >= 2:
        out["corr"] = _corr_error(np.column_stack(list(nums.values())), np.column_stack(list(snums.values())))
    else:
        out["corr"] = 0.0
    count_errs = []
    w = weights[selected]
    for n in cats:
        true = np.bincount(cats[n], minlength=ks_[n])
        est = np.bincount(scats[n], weights=w, minlength=ks_[n])
        count_errs.append(np.abs(est - true).sum() / len(cats[n]))
    out["count"] = float(np.mean(count_errs)) if count_errs else 0.0
    return out


def windows(
    stream: Stream, mask: np.ndarray, window_seconds: float, checkpoints: int = 12
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(window's records, selected ones) at ``checkpoints`` sliding windows after the first full one."""
    t = stream.timestamps
    for end in np.linspace(t[0] + window_seconds, t[-1], checkpoints):
        lo, hi = np.searchsorted(t, end - window_seconds, side="right"), np.searchsorted(t, end, side="right")
        window = np.arange(lo, hi)
        selected = window[mask[lo:hi]]
        if len(selected) >= 3:
            yield window, selected


def evaluate(
    stream: Stream,
    mask: np.ndarray,
    weights: np.ndarray,
    window_seconds: float,
    checkpoints: int = 12,
    cuts: Sequence[Cut] = (),
) -> dict[str, float]:
    """Mean error per metric over ``checkpoints`` sliding windows after the first full one
    (and pair TV at each of ``cuts``, named by :func:`cut_name`)."""
    rows = [_window_errors(stream, w, s, weights, cuts) for w, s in windows(stream, mask, window_seconds, checkpoints)]
    names = [*METRICS, *map(cut_name, cuts)]
    return {m: float(np.mean([r[m] for r in rows])) if rows else float("nan") for m in names}


def random_selection(n: int, batch: int, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random sampling at the same rate: the same exact per-batch budget,
    records chosen uniformly within each batch; weight 1/rate."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(n, dtype=bool)
    carry, balance = np.zeros(1), 0.0
    for start in range(0, n, batch):
        size = min(batch, n - start)
        quota, carry, balance = allocate(carry, np.array([size]), rate, balance, np.zeros(1))
        mask[start + rng.choice(size, int(quota[0]), replace=False)] = True
    return mask, np.full(n, 1.0 / rate)


def compare(
    stream: Stream,
    run_distilld: Callable[[], tuple[np.ndarray, np.ndarray]],
    rate: float,
    batch: int,
    window_seconds: float,
    seeds: int = 5,
    cuts: Sequence[Cut] = (),
) -> tuple[dict[str, float], dict[str, float]]:
    """(distilld errors, random errors averaged over ``seeds``); ``cuts`` as :func:`evaluate`'s."""
    mask, weights = run_distilld()
    ours = evaluate(stream, mask, weights, window_seconds, cuts=cuts)
    theirs = [
        evaluate(stream, *random_selection(len(stream), batch, rate, s), window_seconds, cuts=cuts)
        for s in range(seeds)
    ]
    return ours, {m: float(np.mean([r[m] for r in theirs])) for m in ours}
