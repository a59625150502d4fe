"""Shares and drift read off the window totals (no per-record state).

Drift of a feature, for one key, is the total-variation distance between the
shares of its values among the records received in the window and among the
records sent. Reported as the mean over keys weighted by window size, and the
maximum; keys that have sent nothing yet are left out. The library stats and
the daemon's metrics both come from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "max": self.max}

    @staticmethod
    def combine(parts: Sequence[FeatureDrift]) -> FeatureDrift:
        """Drift over several reducers (partitions): means weighted by window size."""
        weight = sum(p.weight for p in parts)
        if weight <= 0:
            return FeatureDrift(0.0, max((p.max for p in parts), default=0.0))
        mean = sum(p.mean * p.weight for p in parts) / weight
        return FeatureDrift(mean, max(p.max for p in parts), weight)


def feature_drift(received: np.ndarray, sent: np.ndarray, layout: CellLayout, feature: int) -> FeatureDrift:
    """Drift of one feature over keys; ``received``/``sent`` are keys × cells."""
    sl = layout.marginal_slice(feature)
    r, s = received[:, sl], sent[:, sl]
    has = s.sum(axis=1) > 0
    if not has.any():
        return FeatureDrift(0.0, 0.0)
    tv = total_variation(r[has].astype(np.float64), s[has].astype(np.float64))
    size = r[has].sum(axis=1).astype(np.float64)
    return FeatureDrift(float(np.average(tv, weights=size)), float(tv.max()), float(size.sum()))


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
        shares = {label: int(c) / count for label, c in zip(enc.labels(), counts.tolist(), strict=True) if c}
        kind = "categorical" if enc.is_categorical else "numeric"
        key = "categories" if enc.is_categorical else "bins"
        out[name] = {"type": kind, key: shares, "total_count": count}
    return out
