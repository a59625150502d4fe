"""Shares and drift read off the window totals (no per-record state).

Drift of a feature, for one key, is the total-variation distance between the
shares of its values among the records received in the window and among the
records sent. Reported as the mean over keys weighted by window size, and the
maximum; keys that have sent nothing yet are left out. *Output drift* is the
same distance for every key's records together: how well the output as a
whole keeps the shares. With many keys and a few picks each, per-key drift is
high whatever the selection (a key of 20 picks cannot hold 20 numeric bins),
while the output drift stays low; it is the one to alert on. The library
stats and the daemon's metrics both come from here.
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
    output: float = 0.0  # every key's records together (module docstring)
    size: float = 0.0  # window records behind ``output``, every key's

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "max": self.max, "output": self.output}

    @staticmethod
    def combine(parts: Sequence[FeatureDrift]) -> FeatureDrift:
        """Drift over several reducers (partitions): means weighted by window size.

        The output drift is each partition's, weighted the same way: partitions
        code open categoricals apart, so their counts do not add up."""
        top = max((p.max for p in parts), default=0.0)
        weight, size = sum(p.weight for p in parts), sum(p.size for p in parts)
        mean = sum(p.mean * p.weight for p in parts) / weight if weight > 0 else 0.0
        output = sum(p.output * p.size for p in parts) / size if size > 0 else 0.0
        return FeatureDrift(mean, top, weight, output, size)


def feature_drift(received: np.ndarray, sent: np.ndarray, layout: CellLayout, feature: int) -> FeatureDrift:
    """Drift of one feature over keys; ``received``/``sent`` are keys × cells."""
    sl = layout.marginal_slice(feature)
    r, s = received[:, sl].astype(np.float64), sent[:, sl].astype(np.float64)
    has = s.sum(axis=1) > 0
    if not has.any():
        return FeatureDrift(0.0, 0.0)
    tv = total_variation(r[has], s[has])
    size = r[has].sum(axis=1)
    output = float(total_variation(r.sum(axis=0), s.sum(axis=0)))
    return FeatureDrift(float(np.average(tv, weights=size)), float(tv.max()), float(size.sum()), output, float(r.sum()))


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
