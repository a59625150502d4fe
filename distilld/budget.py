"""The pass-through budget: how many records each key may send from a batch.

Per key an accumulator ``carry = rate·received − sent`` stays in (−1, 1), so
``|sent − rate·received| ≤ 1`` over any prefix. The fractions left over by
many small keys are pooled: the batch as a whole sends ``⌊balance + rate·n⌋``
records, and the extra sends go to keys that have a fraction (they borrow,
carry < 0): those a ``choose`` function names (the engine: whose records
best close the deficits summed over keys, selector.py), then the largest
fractions. The realised rate overall then stays within a
record or so of the target however many keys there are (at worst one per
key that is borrowing), instead of losing every small key's fraction.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["allocate"]

_EPS = 1e-9


def allocate(
    carry: np.ndarray,
    received: np.ndarray,
    rate: float,
    balance: float,
    tiebreak: np.ndarray,
    choose: Callable[[np.ndarray, int], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Quota per key for this batch.

    ``carry``: each batch key's accumulator; ``received``: its records in the
    batch; ``balance``: the sum of every accumulator ever (held, evicted and
    these). ``choose(eligible, extra)``: at most ``extra`` of the ``eligible``
    keys to take the extra sends first. Returns (quota, new carry, new balance).
    """
    claim = carry + rate * received
    quota = np.clip(np.floor(claim + _EPS), 0, received).astype(np.int64)
    balance_after = balance + rate * float(received.sum())
    extra = int(np.floor(balance_after + _EPS)) - int(quota.sum())
    if extra > 0:
        frac = claim - quota
        eligible = np.flatnonzero((frac > _EPS) & (quota < received))
        if len(eligible):
            ranked = eligible[np.lexsort((tiebreak[eligible], -frac[eligible]))]
            if choose is not None:
                first = np.intersect1d(np.asarray(choose(eligible, extra), dtype=np.int64), eligible)[:extra]
                ranked = np.concatenate([first, ranked[~np.isin(ranked, first)]])
            quota[ranked[:extra]] += 1
    carry_after = claim - quota
    return quota, carry_after, balance_after - float(quota.sum())
