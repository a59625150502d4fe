"""Per-key reducer state, one slot per key, fixed memory.

Two kinds of state, because the cells are used in two ways:

- **Window counts** of the *marginal* cells (the record count and every
  feature's values): per key and time pane, the records received and sent,
  plus running totals over the live panes. A pane that falls out of the
  window is subtracted from the totals and reused. These give the exact
  window shares, drift and weights the stats and metrics report.
- **Selector state** for *every* cell, pairs included: the lifetime deficit
  ``rate · received − sent`` (float64; the selector balances it, see
  selector.py), and, for the pair cells, a count of recent arrivals that
  decays by ``1 − 1/panes`` a pane (float32): it stands in for the window's
  count in the selector's scale, at the same level for a steady stream.
  After the cells' deficits come the *moments'* (one float64 each: the
  co-moments of the numeric pairs, selector.py).

Pair cells are most of the cells (28 pairs of 8 features against 1 + 8
marginals), so holding them as one deficit and one decayed count instead of
a ring of per-pane counts of both kinds makes a key ~6× smaller. Memory is
``max_keys × (panes × marginal cells + cells)``, whatever the traffic. Keys
beyond ``max_keys`` evict the least recently used ones.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Sequence

import numpy as np
from numba import njit

from distilld.encoding import check_arrays, whole_number
from distilld.keys import key_identities, key_identity
from distilld.selector import add_record

__all__ = ["KeyedWindows"]

_EMPTY = np.int64(-(2**62))


@njit(cache=True, nogil=True)
def _count(
    ring: np.ndarray,  # (slot · pane) × window cell, int32 (a view of the rings)
    totals: np.ndarray,  # slot × window cell, int64
    recent: np.ndarray,  # slot × pair cell, float32
    rows: np.ndarray,  # per record: slot · panes + pane
    slots: np.ndarray,  # per record
    cells: np.ndarray,  # records × groups, uint32 (an unsigned index spares numba's negative-index test)
    window_groups: int,
    window_cells: int,
    pairs: bool,  # count the pair groups into ``recent`` too
    summed: np.ndarray,  # window cell, int64: counts over every key (received), or empty (not kept)
) -> None:
    every = summed.shape[0] > 0
    for i in range(cells.shape[0]):
        row, slot = rows[i], slots[i]
        for g in range(window_groups):
            c = cells[i, g]
            ring[row, c] += 1
            totals[slot, c] += 1
            if every:
                summed[c] += 1
        if pairs:
            for g in range(window_groups, cells.shape[1]):
                recent[slot, cells[i, g] - window_cells] += 1.0


@njit(cache=True, nogil=True)
def _account(
    deficit: np.ndarray,
    slots: np.ndarray,
    cells: np.ndarray,
    change: np.ndarray,
    moments: np.ndarray,
    base: int,
    global_deficit: np.ndarray,  # cells, then moments: summed over keys
) -> None:
    for i in range(cells.shape[0]):
        add_record(deficit[slots[i]], cells, moments, i, change[i], base)
        add_record(global_deficit, cells, moments, i, change[i], base)


class KeyedWindows:
    """Pane rings of the marginal cells for received (0) and sent (1) records,
    and the selector's deficits and decayed counts of every cell."""

    RECEIVED = 0
    SENT = 1

    ring: np.ndarray  # kind × slot × pane × window cell, int32
    totals: np.ndarray  # kind × slot × window cell over live panes, int64
    deficit: np.ndarray  # slot × (cell, moment): rate · received − sent since the key appeared, float64
    global_deficit: np.ndarray  # (cell, moment): ``deficit`` summed over every key, evicted ones too
    late_deficit: np.ndarray  # (cell, moment): the same over the records too late for their window, every key's
    recent: np.ndarray  # slot × pair cell: arrivals decayed by (1 − 1/panes) a pane, float32
    recent_epoch: np.ndarray  # slot: the pane epoch ``recent`` is decayed to
    pane_epoch: np.ndarray  # slot × pane: which pane epoch each ring entry holds
    carry: np.ndarray  # slot: budget accumulator
    last_used: np.ndarray  # slot: batch clock of last use (LRU)
    in_use: np.ndarray  # slot: held by a key

    def __init__(
        self,
        n_cells: int,
        panes: int,
        max_keys: int,
        window_cells: int | None = None,
        window_groups: int | None = None,
        initial_keys: int = 16,
        moments: int = 0,
    ) -> None:
        """``window_cells``: how many of the first cells (those of the first
        ``window_groups`` groups, the marginals) have pane rings; the rest are
        pair cells (default: all cells in rings, one group). ``moments``: sums
        the selector balances besides the cells (a deficit each, after the cells')."""
        self.n_cells = n_cells
        self.moments = moments
        self.window_cells = n_cells if window_cells is None else window_cells
        self.window_groups = 1 if window_groups is None else window_groups
        if not 0 < self.window_cells <= n_cells:
            raise ValueError("window_cells must be in 1..n_cells")
        self.panes = panes
        self.max_keys = max_keys
        self.decay = 1.0 - 1.0 / panes
        self._capacity = 0
        self.slot_of: dict[Hashable, int] = {}  # by ``key_identity``: True and 1 are two keys
        self.key_of: list[Hashable] = []  # the key each slot holds, as the records gave it
        # the identity each slot is held under in slot_of: worked out again from key_of, a list or dict
        # key the caller changed in place since would not give it
        self.ident_of: list[Hashable] = []
        self._free: list[int] = []
        self.evicted = 0
        self.balance = 0.0  # sum of every key's budget carry, evicted keys included
        # the deficits summed over every key, evicted ones included (cells, then moments)
        self.global_deficit = np.zeros(n_cells + moments)
        # records too late for the window are balanced among themselves, apart from the keys' windows
        # (processor.py): their deficits over every key
        self.late_deficit = np.zeros(n_cells + moments)
        # the marginal cells' received window counts summed over the held keys, kept as ``totals`` changes
        self.global_totals = np.zeros(self.window_cells, dtype=np.int64)
        self._clock = 0
        self._allocate(min(initial_keys, max_keys))

    # -- storage ---------------------------------------------------------------

    def _allocate(self, capacity: int) -> None:
        old = self._capacity
        wc, pc = self.window_cells, self.n_cells - self.window_cells

        def grow(name: str, shape: tuple[int, ...], dtype: type, axis: int = 0, fill: int = 0) -> None:
            new: np.ndarray = np.full(shape, fill, dtype=dtype)
            arr = getattr(self, name, None)
            if arr is not None and old:
                index = (slice(None),) * axis + (slice(0, old),)
                new[index] = arr[index]
            setattr(self, name, new)

        grow("ring", (2, capacity, self.panes, wc), np.int32, axis=1)
        grow("totals", (2, capacity, wc), np.int64, axis=1)
        grow("deficit", (capacity, self.n_cells + self.moments), np.float64)
        grow("recent", (capacity, pc), np.float32)
        grow("recent_epoch", (capacity,), np.int64, fill=int(_EMPTY))
        grow("pane_epoch", (capacity, self.panes), np.int64, fill=int(_EMPTY))
        grow("carry", (capacity,), np.float64)
        grow("last_used", (capacity,), np.int64)
        grow("in_use", (capacity,), np.bool_)
        self._free.extend(range(capacity - 1, old - 1, -1))
        self._capacity = capacity

    def bytes_per_key(self) -> int:
        """State bytes one key costs (rings, totals, deficits, decayed counts, stamps, budget)."""
        wc, pc = self.window_cells, self.n_cells - self.window_cells
        deficits = 8 * (self.n_cells + self.moments)
        return 4 * 2 * self.panes * wc + 8 * 2 * wc + deficits + 4 * pc + 8 + 8 * self.panes + 8 + 8 + 1

    @property
    def keys_held(self) -> int:
        return len(self.slot_of)

    def held_slots(self) -> np.ndarray:
        return np.flatnonzero(self.in_use[: self._capacity])

    # -- keys ----------------------------------------------------------------

    def slots_for(self, keys: Sequence[Hashable]) -> np.ndarray:
        """A slot per distinct key (in the order given, told apart by ``key_identity``), evicting
        LRU keys when full."""
        self._clock += 1
        slots = np.empty(len(keys), dtype=np.int64)
        idents = key_identities(keys)
        try:
            missing = [i for i, k in enumerate(idents) if k not in self.slot_of]
        except Exception:  # a key's __eq__ raised against a held key of the same hash: it is a missing key
            idents, missing = self._comparable(idents)
        if missing:
            need = len(missing) - len(self._free)
            if need > 0 and self._capacity < self.max_keys:
                self._allocate(min(self.max_keys, max(2 * self._capacity, self._capacity + need)))
                need = len(missing) - len(self._free)
            if need > 0:
                current = {self.slot_of[k] for k in idents if k in self.slot_of}
                self._evict(need, protect=current)
            for i in missing:
                slot = self._free.pop()
                self.slot_of[idents[i]] = slot
                if slot >= len(self.key_of):
                    self.key_of.extend([None] * (slot + 1 - len(self.key_of)))
                    self.ident_of.extend([None] * (slot + 1 - len(self.ident_of)))
                key = keys[i]
                # a list or dict key is the record's own: a caller changing it in place would change the key
                # held, and so what a snapshot writes
                self.key_of[slot] = copy.deepcopy(key) if isinstance(key, list | dict) else key
                self.ident_of[slot] = idents[i]
                self.in_use[slot] = True
        for i, k in enumerate(idents):
            slots[i] = self.slot_of[k]
        self.last_used[slots] = self._clock
        return slots

    def _comparable(self, idents: Sequence[Hashable]) -> tuple[list[Hashable], list[int]]:
        """``idents`` with None for each whose lookup in the key table raises, and the positions of those
        not held yet (None once, if it is among them)."""
        out: list[Hashable] = []
        missing: list[int] = []
        for i, k in enumerate(idents):
            try:
                held = k in self.slot_of
            except Exception:
                k, held = None, None in self.slot_of
            if not held and (k is not None or None not in [out[j] for j in missing]):
                missing.append(i)
            out.append(k)
        return out, missing

    def restore_keys(self, keys: Sequence[tuple[Hashable, int]]) -> None:
        """Hold each (key, slot) of a snapshot; ValueError if two keys are one (by ``key_identity``)."""
        idents = [key_identity(k) for k, _ in keys]
        self.slot_of = {ident: slot for ident, (_, slot) in zip(idents, keys, strict=True)}
        if len(self.slot_of) != len(keys):
            raise ValueError("window state: a key held twice")
        self.key_of = [None] * self._capacity
        self.ident_of = [None] * self._capacity
        for ident, (k, slot) in zip(idents, keys, strict=True):
            self.key_of[slot] = k
            self.ident_of[slot] = ident

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
        del self.slot_of[self.ident_of[slot]]
        self.key_of[slot] = None
        self.ident_of[slot] = None
        self.in_use[slot] = False
        self.global_totals -= self.totals[self.RECEIVED, slot]
        self.ring[:, slot] = 0
        self.totals[:, slot] = 0
        self.deficit[slot] = 0.0
        self.recent[slot] = 0.0
        self.recent_epoch[slot] = _EMPTY
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
        self.global_totals -= self.ring[self.RECEIVED, slots, panes].sum(axis=0, dtype=np.int64)
        for kind in (self.RECEIVED, self.SENT):
            np.subtract.at(self.totals[kind], slots, self.ring[kind, slots, panes])
        self.ring[:, slots, panes] = 0
        self.pane_epoch[slots, panes] = _EMPTY

    def forget_panes(self) -> None:
        """Empty every key's window: its panes, their totals, the decayed counts. The deficits, budgets
        and keys stay (the processor's watermark went back: DistilledProcessor._rewind)."""
        self.ring[:] = 0
        self.totals[:] = 0
        self.global_totals[:] = 0
        self.pane_epoch[:] = _EMPTY
        self.recent[:] = 0.0
        self.recent_epoch[:] = _EMPTY

    def live(self, epochs: np.ndarray, watermark_epoch: int) -> np.ndarray:
        return epochs > watermark_epoch - self.panes

    # -- counting ------------------------------------------------------------

    def add(self, kind: int, slots: np.ndarray, epochs: np.ndarray, cells: np.ndarray) -> None:
        """Count records (slot, pane epoch, cells of every group) into ``kind``:
        the marginal groups (the first ``window_groups`` columns) into the pane
        rings; received records' pair groups into the decayed counts (decay the
        keys first: :meth:`decay_to`). Epochs must be live (after :meth:`advance`)."""
        if len(slots) == 0:
            return
        panes = epochs % self.panes
        self.pane_epoch[slots, panes] = epochs
        rows = slots * self.panes + panes
        pairs = kind == self.RECEIVED and self.n_cells > self.window_cells
        ring = self.ring[kind].reshape(-1, self.window_cells)  # a view: (slot · pane) × cell
        summed = self.global_totals if kind == self.RECEIVED else self.global_totals[:0]
        _count(
            ring, self.totals[kind], self.recent, rows, slots,
            np.ascontiguousarray(cells, dtype=np.int32).view(np.uint32),
            self.window_groups, self.window_cells, pairs, summed,
        )  # fmt: skip

    def decay_to(self, keys: np.ndarray, watermark_epoch: int) -> None:
        """Age the decayed counts of ``keys`` (distinct slots) to the watermark's pane."""
        since = self.recent_epoch[keys]
        steps = np.where(since == _EMPTY, 0, watermark_epoch - since).clip(0, None)
        if steps.any():
            self.recent[keys] *= (self.decay**steps).astype(np.float32)[:, None]
        self.recent_epoch[keys] = watermark_epoch

    def account(self, slots: np.ndarray, cells: np.ndarray, change: np.ndarray, moments: np.ndarray) -> None:
        """``deficit[slot, cell] += change`` for every record's cells (all groups),
        and ``deficit[slot, moment] += change · value`` for its moment values;
        the same into ``global_deficit``."""
        if len(slots):
            _account(
                self.deficit, slots, np.ascontiguousarray(cells, dtype=np.int32), change.astype(np.float64),
                np.ascontiguousarray(moments, dtype=np.float64), self.n_cells, self.global_deficit,
            )  # fmt: skip

    def account_into(self, vec: np.ndarray, cells: np.ndarray, change: np.ndarray, moments: np.ndarray) -> None:
        """:meth:`account` into one vector of cells then moments (``global_deficit``, ``late_deficit``)."""
        if len(cells):
            change = change.astype(np.float64)
            np.add.at(vec, cells.ravel(), np.repeat(change, cells.shape[1]))
            vec[self.n_cells :] += change @ moments

    def global_received(self) -> np.ndarray:
        """The marginal cells' window counts summed over every held key (float64): kept up to
        date by :meth:`add`, :meth:`advance` and evictions, not summed over the keys a batch."""
        return self.global_totals.astype(np.float64)

    def check(self) -> None:
        """Raise ValueError unless every array has the shape and type this configuration
        gives it and every slot is in range (the kernels do not check bounds: a restored
        snapshot's arrays must be checked before they reach them)."""
        cap, wc, pc = self._capacity, self.window_cells, self.n_cells - self.window_cells
        expected = {
            "ring": ((2, cap, self.panes, wc), np.int32),
            "totals": ((2, cap, wc), np.int64),
            "deficit": ((cap, self.n_cells + self.moments), np.float64),
            "recent": ((cap, pc), np.float32),
            "recent_epoch": ((cap,), np.int64),
            "pane_epoch": ((cap, self.panes), np.int64),
            "carry": ((cap,), np.float64),
            "last_used": ((cap,), np.int64),
            "in_use": ((cap,), np.bool_),
            "global_deficit": ((self.n_cells + self.moments,), np.float64),
            "late_deficit": ((self.n_cells + self.moments,), np.float64),
        }
        check_arrays(self, expected, "window state")
        if not whole_number(cap, 1) or cap > self.max_keys:
            raise ValueError(f"window state: capacity {cap!r} outside 1..{self.max_keys}")
        if (self.ring < 0).any() or not np.array_equal(self.ring.sum(axis=2, dtype=np.int64), self.totals):
            raise ValueError("window state: counts below 0, or totals that are not the sums of their panes")
        counters = (self._clock, self.evicted)
        if not all(map(whole_number, counters)):
            raise ValueError("window state: the clock and the evictions must be whole numbers, 0 or more")
        if (
            isinstance(self.balance, bool)
            or not isinstance(self.balance, int | float)
            or not -1e18 < self.balance < 1e18
        ):
            raise ValueError(f"window state: balance {self.balance!r} is not a number")
        if not isinstance(self._free, list) or not all(isinstance(s, int) for s in self._free):
            raise ValueError("window state: free slots must be a list of whole numbers")
        slots = [*self.slot_of.values(), *self._free]
        if any(not 0 <= int(s) < cap for s in slots) or len(set(slots)) != len(slots):
            raise ValueError("window state: slots out of range or repeated")

    def recount(self) -> None:
        """Rebuild ``global_totals`` from the keys' totals (after a snapshot is restored)."""
        self.global_totals = self.totals[self.RECEIVED, : self._capacity].sum(axis=0, dtype=np.int64)

    def reset(self) -> None:
        self.__init__(  # type: ignore[misc]
            self.n_cells, self.panes, self.max_keys, self.window_cells, self.window_groups, moments=self.moments
        )
