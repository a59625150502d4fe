"""The controlled cells: every feature's values and every pair of features.

A record falls in exactly one cell of each *group*: one group per feature
(marginal shares) and one per feature pair (joint shares). Balancing only the
marginals makes the joints worse than random sampling, so pairs are in the
objective; when all pairs would be too many cells, the smallest are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from numba import njit

__all__ = ["CellLayout"]


@njit(cache=True, nogil=True)
def _cells(
    codes: np.ndarray,
    div: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    width2: np.ndarray,
    offsets: np.ndarray,
) -> np.ndarray:
    n, groups = codes.shape[0], first.shape[0]
    out = np.empty((n, groups), dtype=np.int32)
    coarse = np.empty(codes.shape[1], dtype=np.int32)
    for i in range(n):
        for f in range(codes.shape[1]):
            coarse[f] = codes[i, f] // div[f]
        for g in range(groups):
            f = first[g]
            if f < 0:
                out[i, g] = 0
            elif second[g] < 0:
                out[i, g] = codes[i, f] + offsets[g]
            else:
                out[i, g] = coarse[f] * width2[g] + coarse[second[g]] + offsets[g]
    return out


@dataclass
class CellLayout:
    """Offsets of each group's cells in one flat cell vector per key.

    Group 0 is a single cell every record falls in: the record count.
    """

    sizes: Sequence[int]
    max_cells: int = 16384
    pair_div: Sequence[int] | None = None  # per feature: codes // div inside pairs (coarser numeric bins)
    pairs: Sequence[tuple[int, int]] | None = None
    groups: list[tuple[int, ...]] = field(init=False)
    offsets: np.ndarray = field(init=False)
    n_cells: int = field(init=False)

    def __post_init__(self) -> None:
        self._div = np.array(self.pair_div or [1] * len(self.sizes), dtype=np.int64)
        self._div32 = self._div.astype(np.int32)
        self.pair_sizes = [(n - 1) // int(d) + 1 for n, d in zip(self.sizes, self._div, strict=True)]
        sizes = self.pair_sizes
        marginal_cells = 1 + sum(self.sizes)
        if self.pairs is None:
            by_size = sorted(combinations(range(len(sizes)), 2), key=lambda p: sizes[p[0]] * sizes[p[1]])
            chosen, used = [], marginal_cells
            for f, g in by_size:
                if used + sizes[f] * sizes[g] > self.max_cells:
                    break
                chosen.append((f, g))
                used += sizes[f] * sizes[g]
            pairs = sorted(chosen)
        else:
            pairs = [tuple(sorted(p)) for p in self.pairs]  # type: ignore[misc]
        self.groups = [(), *((f,) for f in range(len(sizes))), *pairs]
        widths = [self.group_width(g) for g in self.groups]
        self.offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
        self.n_cells = int(self.offsets[-1])
        self._first = np.array([g[0] if g else -1 for g in self.groups], dtype=np.int64)
        self._second = np.array([g[1] if len(g) == 2 else -1 for g in self.groups], dtype=np.int64)
        self._width2 = np.array([sizes[g[1]] if len(g) == 2 else 1 for g in self.groups], dtype=np.int64)
        # for with_pair_estimates: each marginal cell's coarse (inside-pairs) cell, and each pair cell's two
        coarse_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        fine = zip(self.sizes, self._div, strict=True)
        self._coarse_of = np.concatenate(
            [coarse_start[f] + np.arange(n) // int(d) for f, (n, d) in enumerate(fine)]
        ).astype(np.int64)
        none = np.zeros(0, dtype=np.int64)
        self._pair_a = np.concatenate(
            [none, *(coarse_start[a] + np.arange(sizes[a]).repeat(sizes[b]) for a, b in pairs)]
        )
        self._pair_b = np.concatenate(
            [none, *(coarse_start[b] + np.tile(np.arange(sizes[b]), sizes[a]) for a, b in pairs)]
        )
        self._n_coarse = int(coarse_start[-1])

    def group_width(self, group: tuple[int, ...]) -> int:
        if len(group) == 1:
            return int(self.sizes[group[0]])
        width = 1
        for f in group:
            width *= self.pair_sizes[f]
        return width

    @property
    def n_features(self) -> int:
        return len(self.sizes)

    @property
    def marginal_groups(self) -> int:
        """The count group and one group per feature: the first columns of :meth:`cell_matrix`."""
        return 1 + len(self.sizes)

    @property
    def marginal_cells(self) -> int:
        """Cells of the marginal groups, which come first in the cell vector."""
        return int(self.offsets[self.marginal_groups])

    def marginal_slice(self, feature: int) -> slice:
        g = 1 + feature
        return slice(int(self.offsets[g]), int(self.offsets[g + 1]))

    def cell_matrix(self, codes: np.ndarray) -> np.ndarray:
        """``codes`` (records × features) → cell indices (records × groups), int32."""
        codes = np.ascontiguousarray(codes, dtype=np.int32)
        return _cells(codes, self._div32, self._first, self._second, self._width2, self.offsets[:-1])

    def with_pair_estimates(self, marginal: np.ndarray) -> np.ndarray:
        """The marginal cells' counts (``marginal_cells`` of them, the count cell
        first) followed by each pair cell's count as if the pair's two features
        were independent: a size to weigh a cell by, not a count."""
        total = max(float(marginal[0]), 1.0)
        coarse = np.bincount(self._coarse_of, weights=marginal[1 : self.marginal_cells], minlength=self._n_coarse)
        return np.concatenate([marginal, coarse[self._pair_a] * coarse[self._pair_b] / total])

    def group_weights(self, marginals: Sequence[float], pair: float) -> np.ndarray:
        """A weight per cell: 0 for the count cell, ``marginals[f]`` for feature
        ``f``'s own cells, ``pair`` for the pair cells.

        A feature whose marginal bins are finer than its pair bins has its
        marginal weight split over the ``pair_div`` fine cells of a coarse one.
        """
        w = np.empty(self.n_cells, dtype=np.float64)
        for gi, group in enumerate(self.groups):
            if not group:
                weight = 0.0
            elif len(group) == 1:
                weight = marginals[group[0]] / float(self._div[group[0]])
            else:
                weight = pair
            w[self.offsets[gi] : self.offsets[gi + 1]] = weight
        return w
