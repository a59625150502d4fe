"""Greedy herding: pick the records that best close each key's cell deficits.

For a key, cell c has a target ``T = rate · received`` and a deficit
``D = T − sent`` over the window. Sending a record lowers the squared error
``D²`` of each of its cells by ``2D − 1``; dividing by ``T + 1`` leans toward
the small buckets (the seed's tie-break rule). A record's score is the sum
over its cells. Picks happen in a few rounds per batch (``argpartition`` /
one sort), with the deficits updated by ``bincount`` between rounds, and exact
ties broken by a seeded hash of the record's position in the stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["HerdingSelector"]


@dataclass
class HerdingSelector:
    rate: float
    cell_weights: np.ndarray  # one weight per cell (0 for the count cell)
    rounds: int = 8

    def cell_gain(self, received: np.ndarray, sent: np.ndarray) -> np.ndarray:
        """Per-cell gain of sending one more record: keys × cells."""
        target = self.rate * received
        deficit = target - sent
        return self.cell_weights * (2.0 * deficit - 1.0) / (target + 1.0)

    def select(
        self,
        key_index: np.ndarray,
        cells: np.ndarray,
        quota: np.ndarray,
        received: np.ndarray,
        sent: np.ndarray,
        jitter: np.ndarray,
    ) -> np.ndarray:
        """Indices of the chosen records.

        ``key_index``: each candidate's key (0..k-1); ``cells``: candidates ×
        groups; ``quota``: picks per key; ``received`` / ``sent``: window totals
        per key × cell, including this batch's received records. ``sent`` is
        updated in place with the picks.
        """
        n_cells = received.shape[1]
        remaining = quota.astype(np.int64).copy()
        alive = np.ones(len(key_index), dtype=bool)
        chosen: list[np.ndarray] = []
        single = len(quota) == 1
        rounds = int(min(self.rounds, remaining.max(initial=0)))
        for r in range(rounds):
            if remaining.sum() == 0:
                break
            take = -(-remaining // (rounds - r))  # ceil: spread what is left over the rounds
            idx = np.flatnonzero(alive)
            gain = self.cell_gain(received, sent).ravel()
            flat = key_index[idx, None] * n_cells + cells[idx]
            score = gain[flat].sum(axis=1) + jitter[idx]
            if single:
                m = int(take[0])
                picked = idx[np.argpartition(-score, m - 1)[:m]] if m < len(idx) else idx
            else:
                order = np.lexsort((-score, key_index[idx]))
                keys_sorted = key_index[idx[order]]
                starts = np.searchsorted(keys_sorted, keys_sorted, side="left")
                rank = np.arange(len(order)) - starts
                picked = idx[order[rank < take[keys_sorted]]]
            alive[picked] = False
            chosen.append(picked)
            np.add.at(remaining, key_index[picked], -1)
            np.add.at(sent.reshape(-1), (key_index[picked, None] * n_cells + cells[picked]).ravel(), 1)
        return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
