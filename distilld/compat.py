"""What the published ``distilled`` 0.1.0 did that distilld keeps doing.

- Graders: any object with ``evaluate`` and ``is_categorical`` (the seed's own
  grader classes, or a user's) is wrapped in the matching distilld grader.
- The ``average`` of each numeric in the stats' proportions: a sum and count
  per time pane over all keys, received and sent (the library path only; not
  in snapshots, so a restored processor's averages start with its next batch).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from distilld.graders import CategoricalGrader, GradingFunction, NumericGrader, OpenCategoricalGrader

__all__ = ["WindowMeans", "as_grader"]


def as_grader(name: str, grader: Any) -> GradingFunction:
    """A distilld grader as is; a seed-style grader (any object with ``evaluate``
    and ``is_categorical``, as the seed accepted) wrapped in the matching class."""
    if isinstance(grader, GradingFunction):
        return grader
    if not (callable(getattr(grader, "evaluate", None)) and callable(getattr(grader, "is_categorical", None))):
        raise TypeError(
            f"grading_functions[{name!r}]: expected a grader (NumericGrader, CategoricalGrader, LambdaGrader, ...),"
            f" got {type(grader).__name__}; wrap a plain function as NumericGrader({name!r}, func)"
        )
    if not grader.is_categorical():
        return NumericGrader(getattr(grader, "name", name), grader.evaluate)
    # the published package's categorical LambdaGrader has its list in ``categories`` and no get_categories
    categories = (
        grader.get_categories()
        if callable(getattr(grader, "get_categories", None))
        else getattr(grader, "categories", None) or []
    )
    if categories:
        # the published package's graders' evaluate raises on a value outside their categories, which
        # would make it missing: their classifier_func (CategoricalGrader) or func (LambdaGrader) gives the
        # value, and an unknown one is *other*
        classify = getattr(grader, "classifier_func", None) or getattr(grader, "func", None)
        return CategoricalGrader(
            getattr(grader, "name", name), list(categories), classify if callable(classify) else grader.evaluate
        )
    return OpenCategoricalGrader(getattr(grader, "name", name), grader.evaluate)


class WindowMeans:
    """Sum and count of each numeric feature's values per time pane, received and
    sent, over all keys: the seed's ``average`` in the proportions (library path)."""

    def __init__(self, panes: int, numerics: int) -> None:
        self.panes = panes
        self.epoch = np.full(panes, -(2**62), dtype=np.int64)
        self.sum = np.zeros((2, panes, numerics))
        self.count = np.zeros((2, panes, numerics), dtype=np.int64)

    def add(self, kind: int, epochs: np.ndarray, values: np.ndarray) -> None:
        """``epochs``: live pane epochs; ``values``: records × numerics, NaN where missing."""
        if len(epochs) == 0:
            return
        top = int(epochs.max())
        for e in range(max(int(epochs.min()), top - self.panes + 1), top + 1):  # live epochs: at most ``panes``
            slot = e % self.panes
            if self.epoch[slot] < e:
                self.epoch[slot] = e
                self.sum[:, slot] = 0.0
                self.count[:, slot] = 0
        n = values.shape[1]
        cells = ((epochs % self.panes)[:, None] * n + np.arange(n)).ravel()  # (pane slot, numeric)
        finite = ~np.isnan(values).ravel()
        size = self.panes * n
        with np.errstate(over="ignore", invalid="ignore"):  # values near 1e308 overflow the sum: no average then
            self.sum[kind] += np.bincount(cells[finite], values.ravel()[finite], size).reshape(self.panes, n)
        self.count[kind] += np.bincount(cells[finite], minlength=size).reshape(self.panes, n)

    def forget(self) -> None:
        """Every pane empty (the watermark went back: DistilledProcessor._rewind)."""
        self.epoch[:] = -(2**62)
        self.sum[:] = 0.0
        self.count[:] = 0

    def means(self, kind: int, w_epoch: int) -> list[float | None]:
        live = self.epoch > w_epoch - self.panes
        with np.errstate(over="ignore", invalid="ignore"):  # panes' sums near ±1e308: no average then
            total = self.sum[kind, live].sum(axis=0)
        count = self.count[kind, live].sum(axis=0)
        pairs = zip(total.tolist(), count.tolist(), strict=True)
        return [float(t / c) if c and math.isfinite(t) else None for t, c in pairs]
