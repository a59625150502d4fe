"""Where a selection's error is, by the size of the cells, next to random and to a floor.

Each cell of each feature (and of each pair, numerics cut at the window's
quintiles as the bench cuts them) has, in a window, an ideal count
``μ = picks × its share of the window``. A selection misses it by
``|X − μ|`` records. Random sampling misses it by about ``√μ``. A count that
is a whole number and right on average over windows (neither starving nor
favouring the cell) misses it by at least ``2f(1 − f)`` on average, ``f`` the
fraction of ``μ``: it must be ``⌊μ⌋`` or ``⌈μ⌉`` at best, each as often as
makes the mean ``μ`` (a convexity bound, per cell; nothing says every cell
can be there at once). Summed by size class of ``μ`` over the bench's
windows, the three show which cells hold the error a ratio is made of, and
how far each class is from what an unstarved count could do.
"""

from __future__ import annotations

import itertools

import numpy as np

from distilld.bench.quality import selection
from distilld.evaluation import Stream, pair_codes, random_selection, windows

__all__ = ["SIZES", "by_cell_size", "print_by_cell_size"]

Misses = tuple[np.ndarray, np.ndarray]  # per cell: (ideal count, records missed)
SIZES = (0.0, 0.5, 2.0, 10.0, 25.0, np.inf)  # ideal picks a window: the classes' edges


def _misses(codes: np.ndarray, chosen: np.ndarray, k: int, picks: int) -> Misses:
    """Per cell: (ideal count μ, records missed |X − μ|)."""
    mu = np.bincount(codes, minlength=k) / max(len(codes), 1) * picks
    return mu, np.abs(np.bincount(chosen, minlength=k) - mu)


def _cells(stream: Stream, window: np.ndarray, selected: np.ndarray, pairs: bool) -> list[Misses]:
    """:func:`_misses` of each pair's cells, or of each categorical feature's."""
    if pairs:
        return [_misses(c, s, k, len(selected)) for c, s, k in pair_codes(stream, window, selected).values()]
    out = []
    for c in stream.categorical.values():
        k = int(c.max()) + 1
        out.append(_misses(c[window], c[selected], k, len(selected)))
    return out


def by_cell_size(name: str, n: int = 60_000, rate: float = 0.1, seeds: int = 5) -> dict[str, np.ndarray]:
    """For category cells and pair cells: a row per size class of ``SIZES`` with the records missed,
    summed over the bench's windows and cells, by distilld, by random (mean of ``seeds``) and at the floor."""
    stream, mask, _ = selection(name, n=n, rate=rate)
    randoms = [random_selection(n, 1000, rate, s)[0] for s in range(seeds)]
    out = {}
    for kind, pairs in (("category_tv", False), ("pair_tv", True)):
        table = np.zeros((len(SIZES) - 1, 3))
        for window, selected in windows(stream, mask, 100.0):
            ours = _cells(stream, window, selected, pairs)
            theirs = [_cells(stream, window, window[r[window[0] : window[-1] + 1]], pairs) for r in randoms]
            for g, (mu, missed) in enumerate(ours):
                f = mu - np.floor(mu)
                cls = np.digitize(mu, SIZES[1:-1])
                rand = np.mean([t[g][1] for t in theirs], axis=0)
                for col, v in enumerate((missed, rand, 2 * f * (1 - f))):
                    table[:, col] += np.bincount(cls, weights=v, minlength=len(SIZES) - 1)
        out[kind] = table
    return out


def print_by_cell_size(name: str, n: int = 60_000) -> None:
    """The tables of :func:`by_cell_size`, with random's error ÷ distilld's and ÷ the floor's."""
    for metric, rows in by_cell_size(name, n=n).items():
        print(f"{name} {metric}: records missed, summed over the windows and cells")
        print(f"{'ideal picks':>14}{'distilld':>10}{'random':>10}{'floor':>10}{'r÷d':>8}{'r÷floor':>9}")
        labels = [f"{lo:g}–{hi:g}" for lo, hi in itertools.pairwise(SIZES)]
        for label, (d, r, fl) in zip([*labels, "all"], [*rows, rows.sum(0)], strict=True):
            if r == 0:
                continue  # no cell of that size
            print(f"{label:>14}{d:10.0f}{r:10.0f}{fl:10.0f}{r / max(d, 1e-9):7.2f}x{r / max(fl, 1e-9):8.2f}x")


if __name__ == "__main__":
    import sys

    for stream_name in sys.argv[1:] or ["clickstream"]:
        print_by_cell_size(stream_name)
