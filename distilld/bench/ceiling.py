"""A ceiling for the representativeness ratios: the least error any selection can have.

A window's selection holds a whole number of records in each cell. Given how
many records the window's selection holds (the budget fixes it), the closest
any selection can come to the window's shares is the best rounding of the
cells' ideal counts: each cell's count rounded down, and the records left over
given to the cells with the biggest remainders. Random sampling's error ÷ that
least error bounds every selection's ratio, streaming or not, for each feature
and each pair (numerics cut as the bench cuts them). It is a bound, not a
target: reaching it needs every cell of every feature and pair rounded best at
once, in every window.
"""

from __future__ import annotations

import numpy as np

from distilld.bench.streams import STREAMS
from distilld.evaluation import _tv_codes, pair_codes, random_selection, windows

__all__ = ["ceilings", "least_tv"]


def least_tv(counts: np.ndarray, picks: int) -> float:
    """The least TV between ``counts``' shares and those of any ``picks`` whole records."""
    ideal = counts / max(counts.sum(), 1) * picks
    whole = np.floor(ideal)
    left = round(float(picks - whole.sum()))
    whole[np.argsort(whole - ideal)[:left]] += 1  # the biggest remainders first
    return float(0.5 * np.abs(whole - ideal).sum() / max(picks, 1))


def ceilings(name: str, n: int = 60_000, rate: float = 0.1, seeds: int = 5) -> dict[str, float]:
    """Random's mean error ÷ the least possible, for category TV and pair TV, over the bench's windows."""
    stream = STREAMS[name](n)[0]
    least: dict[str, list[float]] = {"category_tv": [], "pair_tv": []}
    rand: dict[str, list[float]] = {"category_tv": [], "pair_tv": []}
    for seed in range(seeds):
        mask = random_selection(n, 1000, rate, seed)[0]
        for window, selected in windows(stream, mask, 100.0):
            picks = len(selected)
            for c in stream.categorical.values():
                k = int(c.max()) + 1
                least["category_tv"].append(least_tv(np.bincount(c[window], minlength=k), picks))
                rand["category_tv"].append(_tv_codes(c[window], c[selected], k))
            for codes, chosen, k in pair_codes(stream, window, selected).values():
                least["pair_tv"].append(least_tv(np.bincount(codes, minlength=k), picks))
                rand["pair_tv"].append(_tv_codes(codes, chosen, k))
    return {m: float(np.mean(rand[m])) / max(float(np.mean(least[m])), 1e-12) for m in least}
