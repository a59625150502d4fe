"""Seeded, vectorized 64-bit hashing (splitmix64) for reproducible tie-breaks.

Everything random in the engine is a hash of (seed, position in the stream),
so the same records and configuration give the same selection however the
stream is cut into batches.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GOLDEN", "M1", "M2", "mix64", "unit_float"]

# splitmix64's constants (the compiled reservoir in encoding.py uses them too)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix64(values: np.ndarray, seed: int = 0) -> np.ndarray:
    """splitmix64 finaliser of ``values + seed`` (uint64 in, uint64 out)."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64, copy=True)
        z += np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * GOLDEN + GOLDEN
        z ^= z >> np.uint64(30)
        z *= M1
        z ^= z >> np.uint64(27)
        z *= M2
        z ^= z >> np.uint64(31)
    return z


def unit_float(values: np.ndarray, seed: int = 0) -> np.ndarray:
    """Map integers to reproducible floats in [0, 1)."""
    return (mix64(values, seed) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
