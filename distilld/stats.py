"""Shares and drift read off the window totals (no per-record state).

Drift of a feature, for one key, is the total-variation distance between the
shares of its values among the records received in the window and among the
records sent. Reported as the mean over keys weighted by window size, and the
maximum; keys that have sent nothing yet are left out. *Output drift* is the
same distance for every key's records together: how well the output as a
whole keeps the shares. With many keys and a few picks each, per-key drift is
high whatever the selection (a key of 20 picks cannot hold 20 numeric bins),
while the output drift stays low; it is the one to alert on. Over several
reducers (the daemon's partitions) the counts are added up by label, since
each reducer codes an open categorical's values its own way; a numeric's bins
by rank, since each reducer cuts at its own window's quantiles (so the output
drift of a numeric says whether each partition keeps its own distribution,
not how the partitions' distributions differ). The library stats and the
daemon's metrics both come from here.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distilld.cells import CellLayout
from distilld.encoding import Encoder

__all__ = ["FeatureDrift", "feature_drift", "proportions", "total_variation"]


def total_variation(p_counts: np.ndarray, q_counts: np.ndarray) -> np.ndarray:
    """TV distance between count vectors along the last axis (0 where either is empty)."""
    p_tot = p_counts.sum(axis=-1, keepdims=True)
    q_tot = q_counts.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        tv = 0.5 * np.abs(p_counts / p_tot - q_counts / q_tot).sum(axis=-1)
    return np.where((p_tot[..., 0] > 0) & (q_tot[..., 0] > 0), tv, 0.0)


@dataclass(frozen=True)
class FeatureDrift:
    mean: float
    max: float
    weight: float = 0.0  # window records behind the mean (to combine partitions)
    cells: Mapping[Hashable, tuple[float, float]] = field(default_factory=dict)  # label: (received, sent), all keys

    @property
    def output(self) -> float:
        """TV distance between every key's window records and every key's sent ones."""
        if not self.cells:
            return 0.0
        counts = np.array(list(self.cells.values()), dtype=np.float64)
        return float(total_variation(counts[:, 0], counts[:, 1]))

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "max": self.max, "output": self.output}

    @staticmethod
    def combine(parts: Sequence[FeatureDrift]) -> FeatureDrift:
        """Drift over several reducers (partitions): means weighted by window size,
        the output's counts added up label by label (module docstring)."""
        weight = sum(p.weight for p in parts)
        mean = sum(p.mean * p.weight for p in parts) / weight if weight > 0 else 0.0
        cells: dict[Hashable, tuple[float, float]] = {}
        for p in parts:
            for label, (r, s) in p.cells.items():
                _add(cells, label, r, s)
        return FeatureDrift(mean, max((p.max for p in parts), default=0.0), weight, cells)


def _add(cells: dict[Hashable, tuple[float, float]], label: Hashable, received: float, sent: float) -> None:
    r, s = cells.get(label, (0.0, 0.0))
    cells[label] = (r + received, s + sent)


def feature_drift(
    received: np.ndarray,
    sent: np.ndarray,
    layout: CellLayout,
    feature: int,
    labels: Sequence[Hashable] | None = None,
) -> FeatureDrift:
    """Drift of one feature over keys; ``received``/``sent`` are keys × cells; ``labels`` name the
    feature's cells for :meth:`FeatureDrift.combine` (default: their rank)."""
    sl = layout.marginal_slice(feature)
    r, s = received[:, sl].astype(np.float64), sent[:, sl].astype(np.float64)
    cells: dict[Hashable, tuple[float, float]] = {}
    names = range(r.shape[1]) if labels is None else labels
    for label, r_all, s_all in zip(names, r.sum(axis=0).tolist(), s.sum(axis=0).tolist(), strict=True):
        if r_all or s_all:
            _add(cells, label, r_all, s_all)
    has = s.sum(axis=1) > 0
    if not has.any():
        return FeatureDrift(0.0, 0.0, 0.0, cells)
    tv = total_variation(r[has], s[has])
    size = r[has].sum(axis=1)
    return FeatureDrift(float(np.average(tv, weights=size)), float(tv.max()), float(size.sum()), cells)


def proportions(
    totals: np.ndarray, layout: CellLayout, names: Sequence[str], encoders: Sequence[Encoder]
) -> dict[str, dict[str, Any]]:
    """The seed's proportion report from one cell-count vector (summed over keys)."""
    out: dict[str, dict[str, Any]] = {}
    count = int(totals[0])
    if count == 0:
        return out
    for f, (name, enc) in enumerate(zip(names, encoders, strict=True)):
        counts = totals[layout.marginal_slice(f)]
        shares: dict[str, float] = {}
        for label, c in zip(enc.labels(), counts.tolist(), strict=True):
            if c:  # added up: an open categorical may see a value spelled like a reserved label
                shares[label] = shares.get(label, 0.0) + int(c) / count
        kind = "categorical" if enc.is_categorical else "numeric"
        key = "categories" if enc.is_categorical else "bins"
        out[name] = {"type": kind, key: shares, "total_count": count}
    return out
