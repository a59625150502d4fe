"""Windowed ring buffers of cell counts, one slot per key, fixed memory.

The window is split into ``panes``; each key holds, per pane, the counts of
received and sent records in every cell, plus running totals over the live
panes, plus *lifetime* totals that never expire (the selector balances
those: see selector.py). A pane that falls out of the
window is subtracted from the totals and reused: memory is
``max_keys × panes × cells``, whatever the traffic. Keys beyond ``max_keys``
evict the least recently used ones.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

__all__ = ["KeyedWindows"]

_EMPTY = np.int64(-(2**62))


class KeyedWindows:
    """Per-key pane rings for two count kinds: received (0) and sent (1)."""

    RECEIVED = 0
    SENT = 1

    ring: np.ndarray  # kind × slot × pane × cell, int32
    totals: np.ndarray  # kind × slot × cell over live panes, int64
    lifetime: np.ndarray  # kind × slot × cell since the key appeared, int64
    pane_epoch: np.ndarray  # slot × pane: which pane epoch each ring entry holds
    carry: np.ndarray  # slot: budget accumulator
    last_used: np.ndarray  # slot: batch clock of last use (LRU)
    in_use: np.ndarray  # slot: held by a key

    def __init__(self, n_cells: int, panes: int, max_keys: int, initial_keys: int = 16) -> None:
        self.n_cells = n_cells
        self.panes = panes
        self.max_keys = max_keys
        self._capacity = 0
        self.slot_of: dict[Hashable, int] = {}
        self.key_of: list[Hashable] = []
        self._free: list[int] = []
        self.evicted = 0
        self.balance = 0.0  # sum of every key's budget carry, evicted keys included
        self._clock = 0
        self._allocate(min(initial_keys, max_keys))

    # -- storage ---------------------------------------------------------------

    def _allocate(self, capacity: int) -> None:
        old = self._capacity

        def grow(name: str, shape: tuple[int, ...], dtype: type, axis: int = 0, fill: int = 0) -> None:
            new: np.ndarray = np.full(shape, fill, dtype=dtype)
            arr = getattr(self, name, None)
            if arr is not None and old:
                index = (slice(None),) * axis + (slice(0, old),)
                new[index] = arr[index]
            setattr(self, name, new)

        grow("ring", (2, capacity, self.panes, self.n_cells), np.int32, axis=1)
        grow("totals", (2, capacity, self.n_cells), np.int64, axis=1)
        grow("lifetime", (2, capacity, self.n_cells), np.int64, axis=1)
        grow("pane_epoch", (capacity, self.panes), np.int64, fill=int(_EMPTY))
        grow("carry", (capacity,), np.float64)
        grow("last_used", (capacity,), np.int64)
        grow("in_use", (capacity,), np.bool_)
        self._free.extend(range(capacity - 1, old - 1, -1))
        self._capacity = capacity

    def bytes_per_key(self) -> int:
        """State bytes one key costs (rings, totals, pane stamps, budget)."""
        return 4 * 2 * self.panes * self.n_cells + 8 * 2 * self.n_cells + 8 * self.panes + 8 + 8 + 1

    @property
    def keys_held(self) -> int:
        return len(self.slot_of)

    def held_slots(self) -> np.ndarray:
        return np.flatnonzero(self.in_use[: self._capacity])

    # -- keys ----------------------------------------------------------------

    def slots_for(self, keys: Sequence[Hashable]) -> np.ndarray:
        """A slot per distinct key (in the order given), evicting LRU keys when full."""
        self._clock += 1
        slots = np.empty(len(keys), dtype=np.int64)
        missing = [i for i, k in enumerate(keys) if k not in self.slot_of]
        if missing:
            need = len(missing) - len(self._free)
            if need > 0 and self._capacity < self.max_keys:
                self._allocate(min(self.max_keys, max(2 * self._capacity, self._capacity + need)))
                need = len(missing) - len(self._free)
            if need > 0:
                current = {self.slot_of[k] for k in keys if k in self.slot_of}
                self._evict(need, protect=current)
            for i in missing:
                slot = self._free.pop()
                self.slot_of[keys[i]] = slot
                if slot < len(self.key_of):
                    self.key_of[slot] = keys[i]
                else:
                    self.key_of.extend([None] * (slot + 1 - len(self.key_of)))
                    self.key_of[slot] = keys[i]
                self.in_use[slot] = True
        for i, k in enumerate(keys):
            slots[i] = self.slot_of[k]
        self.last_used[slots] = self._clock
        return slots

    def _evict(self, count: int, protect: set[int]) -> None:
        held = self.held_slots()
        if protect:
            held = held[~np.isin(held, list(protect))]
        if count > len(held):
            raise ValueError(
                f"a batch holds more distinct keys than max_keys={self.max_keys}; "
                "raise reducer.max_keys or lower the batch size"
            )
        victims = held[np.argsort(self.last_used[held], kind="stable")[:count]]
        for slot in victims.tolist():
            self._release(slot)
            self.evicted += 1

    def _release(self, slot: int) -> None:
        del self.slot_of[self.key_of[slot]]
        self.key_of[slot] = None
        self.in_use[slot] = False
        self.ring[:, slot] = 0
        self.totals[:, slot] = 0
        self.lifetime[:, slot] = 0
        self.pane_epoch[slot] = _EMPTY
        self.carry[slot] = 0.0  # its carry stays in self.balance: the pool
        self._free.append(slot)

    # -- time ----------------------------------------------------------------

    def advance(self, watermark_epoch: int) -> None:
        """Expire every pane of every key that is older than the window."""
        n = self._capacity
        stale = (self.pane_epoch[:n] <= watermark_epoch - self.panes) & (self.pane_epoch[:n] != _EMPTY)
        if not stale.any():
            return
        slots, panes = np.nonzero(stale)
        for kind in (self.RECEIVED, self.SENT):
            np.subtract.at(self.totals[kind], slots, self.ring[kind, slots, panes])
        self.ring[:, slots, panes] = 0
        self.pane_epoch[slots, panes] = _EMPTY

    def live(self, epochs: np.ndarray, watermark_epoch: int) -> np.ndarray:
        return epochs > watermark_epoch - self.panes

    # -- counting ------------------------------------------------------------

    def add(self, kind: int, slots: np.ndarray, epochs: np.ndarray, cells: np.ndarray) -> None:
        """Count records (slot, pane epoch, cells per group) into ``kind``.

        Epochs must be live (after :meth:`advance`).
        """
        if len(slots) == 0:
            return
        panes = epochs % self.panes
        self.pane_epoch[slots, panes] = epochs
        rows = slots * self.panes + panes
        c = self.n_cells
        ring = self.ring[kind].reshape(-1, c)  # view: (capacity·panes) × cells
        first = rows[0]
        if (rows == first).all():
            counts = np.bincount(cells.ravel(), minlength=c)
            ring[first] += counts.astype(np.int32)
            self._count_totals(kind, first // self.panes, counts)
            return
        uniq, inverse = np.unique(rows, return_inverse=True)
        if len(uniq) * c <= 8 * cells.size:
            flat = (inverse[:, None] * c + cells).ravel()
            counts = np.bincount(flat, minlength=len(uniq) * c).reshape(len(uniq), c)
            ring[uniq] += counts.astype(np.int32)
            self._count_totals(kind, uniq // self.panes, counts)
        else:  # many keys with few records each: scatter single counts
            np.add.at(ring, (np.repeat(rows, cells.shape[1]), cells.ravel()), 1)
            self._count_totals(kind, (np.repeat(slots, cells.shape[1]), cells.ravel()), 1)

    def _count_totals(self, kind: int, at: Any, counts: Any) -> None:
        """Add counts to the window totals and the lifetime totals alike."""
        np.add.at(self.totals[kind], at, counts)
        np.add.at(self.lifetime[kind], at, counts)

    def reset(self) -> None:
        self.__init__(self.n_cells, self.panes, self.max_keys)  # type: ignore[misc]
