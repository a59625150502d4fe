"""Greedy herding: pick the records that best close each key's cell deficits.

For a key, cell c has a deficit ``D = rate · received − sent`` counted over
the key's lifetime and a target size ``T = rate · received`` over the
window (for pair cells, the decayed count that stands in for it: window.py).
Sending a record lowers ``D²`` of each of its cells by ``2D − 1``; the weight
is divided by ``T + SMALL_CELL``, which leans toward the small buckets (the
seed's tie-break rule) but only down to a size of about ``SMALL_CELL`` picks:
below that, a cell's miss of one record is not worth more than a bigger
cell's (total variation counts records missed, in any cell alike). A
record's score is the weighted sum over its cells.

*Moments* are sums of a value per record balanced the same way: a deficit
``M = rate · Σ received v − Σ sent v`` per key, lowered by ``2Mv − v²`` when
a record with value ``v`` is sent. The processor uses them for the co-moment
of every pair of numeric features (the product of their standard scores,
whose window mean is their correlation), which keeps how numerics go together
inside the cells that bin them, and for each numeric's spread (its squared
score): the ``− v²`` makes a pick shun records of large products, the tails,
so a co-moment kept alone came with spreads too narrow, and a correlation,
which divides by them, too high.

*Many keys.* Each key balances its own cells, and a key with a few picks a
window can only balance them as far as its few records go: on a stream cut
into keys of ~100 records, each key picking among its own records made the
output as a whole no better than random sampling, or worse (its picks lean
to each key's commonest cells). So every cell and moment also has a deficit
summed over every key, and a record's score adds that deficit's term,
weighted ``global_weight × (1 − the key's share of the window) × SMALL_CELL
/ (SMALL_CELL + the key's picks a window)``: nothing for a key that is the
whole stream, little for a key with many picks a window, which balances
itself (the summed term would trade its own balance for the whole's: with 3
keys, twice the per-key drift for no gain on the whole), the full weight for
a key with a few.
Its scale takes the cells' window counts over every key (a pair cell's as if
its two features were independent: the pair cells have no exact window
counts, and a size to weigh by is all the scale needs). Keys of a few
records a window mostly send through the budget's pooled extras (budget.py),
one record a key: which keys take them is picked the same way, greedily on
the summed deficits, over those keys' records in arrival order
(:meth:`HerdingSelector.pooled`).

Keeping the *lifetime* deficits near zero balances every stretch of the
stream, since over any interval ``sent − rate · received = D(start) − D(end)``;
balancing the window's own counts instead would echo each expired pane's
imbalance into the next one. For the same reason picks are made in arrival
order: each key's records are cut into short segments of about
``segment_picks / rate`` records, and ``segment_picks`` records are chosen
greedily from each, deficits updated after every pick. The deficits a
segment sees hold the arrivals up to its end and no later ones: a batch's
whole arrivals would make early picks fill cells for records that come
after them, and a window edge inside the batch would see that imbalance.
Then any window, wherever its edges fall, holds a balanced selection. The
lifetime counts never decay: forgetting would break the interval identity.
The greedy loop is sequential by nature, so it is compiled (numba); everything around it is
numpy. Exact ties are broken by a seeded hash of the record's position.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

__all__ = ["SMALL_CELL", "HerdingSelector", "add_record"]

SMALL_CELL = 10.0  # picks: cells smaller than this weigh about alike (see above)


@njit(cache=True, nogil=True, inline="always")
def add_record(vec, cells, moments, i, amount, base):  # type: ignore[no-untyped-def]
    """``amount`` of record ``i`` into deficits ``vec``: each of its cells, then ``amount`` × each moment value."""
    for g in range(cells.shape[1]):
        vec[cells[i, g]] += amount
    for m in range(moments.shape[1]):
        vec[base + m] += amount * moments[i, m]


@njit(cache=True, nogil=True, inline="always")
def _moment_gain(score, vec, moment_scale, factor, moments, i, base):  # type: ignore[no-untyped-def]
    """``score`` plus ``factor`` × how much sending record ``i`` lowers the weighted squares of
    the moments' deficits in ``vec``: ``2Mv − v²`` a moment (module docstring). A record's score is
    its jitter, plus its cells' terms (``_cell_gains``), plus this; then the same for the summed
    deficits, times the key's factor, when they count."""
    for m in range(moments.shape[1]):
        v = moments[i, m]
        score += factor * moment_scale[m] * v * (2.0 * vec[base + m] - v)
    return score


@njit(cache=True, nogil=True, inline="always")
def _cell_gains(gain, vec, cell_scale, factor, cells, order, lo, hi, base):  # type: ignore[no-untyped-def]
    """Each cell's term of a record's score, ``factor · scale · (2D − 1)`` (how much sending a record
    of the cell lowers the weighted square of deficit ``D`` in ``vec``), into ``gain``: for the cells
    of records ``order[lo:hi]`` (the only ones their scores read), or for all when that is less work."""
    if (hi - lo) * cells.shape[1] >= base:
        for c in range(base):
            gain[c] = factor * cell_scale[c] * (2.0 * vec[c] - 1.0)
        return
    for j in range(lo, hi):
        i = order[j]
        for g in range(cells.shape[1]):
            c = cells[i, g]
            gain[c] = factor * cell_scale[c] * (2.0 * vec[c] - 1.0)


@njit(cache=True, nogil=True, inline="always")
def _add_cached(vec, gain, cell_scale, factor, cached, cells, moments, i, amount, base):  # type: ignore[no-untyped-def]
    """``add_record``, and (``cached``) each changed cell's term (``_cell_gains``) again into ``gain``."""
    for g in range(cells.shape[1]):
        c = cells[i, g]
        vec[c] += amount
        if cached:
            gain[c] = factor * cell_scale[c] * (2.0 * vec[c] - 1.0)
    for m in range(moments.shape[1]):
        vec[base + m] += amount * moments[i, m]


@njit(cache=True, nogil=True, inline="always")
def _open_segment(buf, order, chosen, a, b):  # type: ignore[no-untyped-def]
    """The segment's records not chosen yet (``order[a:b]``, in arrival order), as a view of ``buf``."""
    m = 0
    for j in range(a, b):
        i = order[j]
        if not chosen[i]:
            buf[m] = i
            m += 1
    return buf[:m]


@njit(cache=True, nogil=True, inline="always")
def _drop(alive, t):  # type: ignore[no-untyped-def]
    """``alive`` without its entry ``t``, the others kept in order (arrival order breaks exact ties)."""
    for u in range(t, alive.shape[0] - 1):
        alive[u] = alive[u + 1]
    return alive[: alive.shape[0] - 1]


@njit(cache=True, nogil=True, inline="always")
def _score(i, cells, moments, jitter, own_gain, own, own_ms, global_gain, gdeficit, gms, f, summed, base):  # type: ignore[no-untyped-def]
    """Record ``i``'s score: its jitter, its cells' terms (``_cell_gains``), its moments' (``_moment_gain``);
    then, when ``summed``, the same for the deficits summed over keys."""
    score = jitter[i]
    for g in range(cells.shape[1]):
        score += own_gain[cells[i, g]]
    score = _moment_gain(score, own, own_ms, 1.0, moments, i, base)
    if summed:
        for g in range(cells.shape[1]):
            score += global_gain[cells[i, g]]
        score = _moment_gain(score, gdeficit, gms, f, moments, i, base)
    return score


@njit(cache=True, nogil=True)
def _best(alive, cells, moments, jitter, own_gain, own, own_ms, global_gain, gdeficit, gms, f, summed, base):  # type: ignore[no-untyped-def]
    """The position in ``alive`` of the record with the highest score (the first of equal ones), -1 if none.

    A score is a chain of ~40 dependent additions, so four records are scored side by side (four
    independent chains the CPU overlaps); each one's additions stay in ``_score``'s order, so the
    scores, and the pick, are the same bits as scoring one record at a time."""
    best, best_score = -1, -np.inf
    n = alive.shape[0]
    groups = cells.shape[1]
    t = 0
    while t + 4 <= n:
        i0, i1, i2, i3 = alive[t], alive[t + 1], alive[t + 2], alive[t + 3]
        s0, s1, s2, s3 = jitter[i0], jitter[i1], jitter[i2], jitter[i3]
        for g in range(groups):
            s0 += own_gain[cells[i0, g]]
            s1 += own_gain[cells[i1, g]]
            s2 += own_gain[cells[i2, g]]
            s3 += own_gain[cells[i3, g]]
        s0 = _moment_gain(s0, own, own_ms, 1.0, moments, i0, base)
        s1 = _moment_gain(s1, own, own_ms, 1.0, moments, i1, base)
        s2 = _moment_gain(s2, own, own_ms, 1.0, moments, i2, base)
        s3 = _moment_gain(s3, own, own_ms, 1.0, moments, i3, base)
        if summed:
            for g in range(groups):
                s0 += global_gain[cells[i0, g]]
                s1 += global_gain[cells[i1, g]]
                s2 += global_gain[cells[i2, g]]
                s3 += global_gain[cells[i3, g]]
            s0 = _moment_gain(s0, gdeficit, gms, f, moments, i0, base)
            s1 = _moment_gain(s1, gdeficit, gms, f, moments, i1, base)
            s2 = _moment_gain(s2, gdeficit, gms, f, moments, i2, base)
            s3 = _moment_gain(s3, gdeficit, gms, f, moments, i3, base)
        if s0 > best_score:
            best, best_score = t, s0
        if s1 > best_score:
            best, best_score = t + 1, s1
        if s2 > best_score:
            best, best_score = t + 2, s2
        if s3 > best_score:
            best, best_score = t + 3, s3
        t += 4
    while t < n:
        s = _score(alive[t], cells, moments, jitter, own_gain, own, own_ms, global_gain, gdeficit, gms, f, summed, base)
        if s > best_score:
            best, best_score = t, s
        t += 1
    return best


@njit(cache=True, nogil=True)
def _herd(
    starts: np.ndarray,  # per key: first index into `order`
    order: np.ndarray,  # candidate indices grouped by key, arrival order within a key
    quota: np.ndarray,  # per key: picks in this batch
    segment_picks: int,
    cells: np.ndarray,  # candidates × groups (uint32: _unsigned)
    deficit: np.ndarray,  # rows × cells (updated in place)
    row_of: np.ndarray,  # per key: its row of ``deficit`` (keys may share one, taken in turn)
    scale: np.ndarray,  # keys × cells: weight / (T + SMALL_CELL)
    jitter: np.ndarray,  # per candidate
    arrive: np.ndarray,  # per candidate: what its arrival added to its cells' deficits
    moments: np.ndarray,  # candidates × moments: each one's values
    moment_scale: np.ndarray,  # keys × moments
    base: int,  # the first moment's column in ``deficit``
    gdeficit: np.ndarray,  # cells, then moments: the deficits summed over every key (updated in place)
    gscale: np.ndarray,  # cells, then moments: weight / (T over every key + SMALL_CELL)
    gfactor: np.ndarray,  # per key: how much the summed term counts (0: the key is the whole stream)
) -> np.ndarray:
    chosen = np.zeros(cells.shape[0], dtype=np.bool_)
    shared = gdeficit.shape[0] > 0
    gmoment_scale = gscale[base:]
    # each cell's term of a score (``_cell_gains``), kept as the deficits change: a record's score adds the
    # same values in the same order as computing them for every record at every pick (~30 % faster). A
    # segment's arrivals only add to the deficits; the terms are worked out once after them, before its
    # picks, which alone read them: the same values, from the same deficits (not one per arrival's cell)
    own_gain = np.empty(base, dtype=np.float64)
    global_gain = np.empty(base, dtype=np.float64)
    alive_buf = np.empty(cells.shape[0], dtype=np.int64)
    for k in range(starts.shape[0] - 1):
        lo, hi, q = starts[k], starts[k + 1], quota[k]
        n = hi - lo
        if n <= 0:
            continue
        own = deficit[row_of[k]]
        if q <= 0:  # no pick (a key's live or late part whose quota went to the other): its arrivals still count
            for j in range(lo, hi):
                i = order[j]
                add_record(own, cells, moments, i, arrive[i], base)
                if shared:
                    add_record(gdeficit, cells, moments, i, arrive[i], base)
            continue
        own_scale = scale[k]
        f = gfactor[k]
        summed = f > 0.0
        segments = (q + segment_picks - 1) // segment_picks
        owed = 0  # picks a segment had too few records for (rates near 1): the next ones make them
        for s in range(segments):
            a = lo + (s * n) // segments
            b = lo + ((s + 1) * n) // segments
            for j in range(a, b):
                i = order[j]
                add_record(own, cells, moments, i, arrive[i], base)
                if shared:
                    add_record(gdeficit, cells, moments, i, arrive[i], base)
            _cell_gains(own_gain, own, own_scale, 1.0, cells, order, a, b, base)
            if summed:
                _cell_gains(global_gain, gdeficit, gscale, f, cells, order, a, b, base)
            picks = ((s + 1) * q) // segments - (s * q) // segments + owed
            owed = max(0, picks - (b - a))
            alive = _open_segment(alive_buf, order, chosen, a, b)
            for _ in range(picks - owed):
                t = _best(alive, cells, moments, jitter, own_gain, own, moment_scale[k], global_gain, gdeficit,
                          gmoment_scale, f, summed, base)  # fmt: skip
                if t < 0:
                    break
                best = alive[t]
                alive = _drop(alive, t)
                chosen[best] = True
                _add_cached(own, own_gain, own_scale, 1.0, True, cells, moments, best, -1.0, base)
                if shared:
                    _add_cached(gdeficit, global_gain, gscale, f, summed, cells, moments, best, -1.0, base)
    return chosen


@njit(cache=True, nogil=True)
def _pooled(
    candidates: np.ndarray,  # records of the keys that may take an extra send, in arrival order
    key_of: np.ndarray,  # per record: its key
    n_keys: int,
    extra: int,  # sends to share out, one a key at most
    segment_picks: int,
    cells: np.ndarray,  # records × groups (uint32: _unsigned)
    moments: np.ndarray,  # records × moments
    deficits: np.ndarray,  # rows × (cells, then moments): copies of the deficits records are judged on (changed here)
    row: np.ndarray,  # per record: its row of ``deficits``
    gscale: np.ndarray,
    arrive: np.ndarray,  # per record
    jitter: np.ndarray,  # per record
) -> np.ndarray:
    taken = np.zeros(n_keys, dtype=np.bool_)
    base = deficits.shape[1] - moments.shape[1]
    gmoment_scale = gscale[base:]
    n = candidates.shape[0]
    gains = np.empty((deficits.shape[0], base), dtype=np.float64)  # each cell's term of a score, as in _herd
    segments = max(1, (extra + segment_picks - 1) // segment_picks)
    for s in range(segments):
        a, b = (s * n) // segments, ((s + 1) * n) // segments
        for j in range(a, b):
            i = candidates[j]
            add_record(deficits[row[i]], cells, moments, i, arrive[i], base)
        for r in range(deficits.shape[0]):
            _cell_gains(gains[r], deficits[r], gscale, 1.0, cells, candidates, a, b, base)
        for _ in range(((s + 1) * extra) // segments - (s * extra) // segments):
            best, best_score = -1, -np.inf
            for j in range(a, b):
                i = candidates[j]
                if taken[key_of[i]]:
                    continue
                gain = gains[row[i]]
                score = jitter[i]
                for g in range(cells.shape[1]):
                    score += gain[cells[i, g]]
                score = _moment_gain(score, deficits[row[i]], gmoment_scale, 1.0, moments, i, base)
                if score > best_score:
                    best, best_score = i, score
            if best < 0:
                break
            taken[key_of[best]] = True
            r = row[best]
            _add_cached(deficits[r], gains[r], gscale, 1.0, True, cells, moments, best, -1.0, base)
    return np.flatnonzero(taken)


def _unsigned(cells: np.ndarray) -> np.ndarray:
    """Cell indices (checked ≥ 0) as uint32, without a copy when they are int32 already: an unsigned
    index spares the kernels' gathers numba's test for a negative (from-the-end) index."""
    return np.ascontiguousarray(cells, dtype=np.int32).view(np.uint32)


@dataclass
class HerdingSelector:
    rate: float
    cell_weights: np.ndarray  # one weight per cell (0 for the count cell)
    segment_picks: int = 8
    moment_weights: np.ndarray = field(default_factory=lambda: np.zeros(0))  # one weight per moment
    small_cell: float = SMALL_CELL
    global_weight: float = 0.0  # how much the marginals summed over keys count (module docstring)

    def select(
        self,
        key_index: np.ndarray,
        cells: np.ndarray,
        quota: np.ndarray,
        received: np.ndarray,
        deficit: np.ndarray,
        jitter: np.ndarray,
        arrive: np.ndarray,
        moments: np.ndarray | None = None,
        global_deficit: np.ndarray | None = None,
        global_targets: np.ndarray | None = None,
        summed_keys: int | None = None,
        row_of: np.ndarray | None = None,
    ) -> np.ndarray:
        """Indices of the chosen candidates.

        ``key_index``: each candidate's key (0..k-1), candidates in arrival
        order; ``cells``: candidates × groups; ``quota``: picks per key;
        ``received``: window counts per key × cell, this batch included;
        ``deficit``: lifetime ``rate·received − sent`` per key × (cell, moment)
        before this batch, updated in place segment by segment with ``arrive``
        (each candidate's ``rate``, 0 if it is too late for the window) and the
        picks; ``moments``: candidates × moments, each one's values.
        ``global_deficit``: the deficits of the cells and the moments summed
        over every key, updated in place like a key's; ``global_targets``: the
        cells' window counts over every key (for the pair cells, an estimate).
        Without them (or with ``global_weight`` 0) each key is balanced alone;
        ``summed_keys``: only the keys before it score the summed deficits (all
        by default; the processor's late records' keys come after); ``row_of``:
        each key's row of ``deficit`` (default: key k's is row k), keys sharing a
        row take it in turn, each seeing the others' picks.
        """
        order = np.argsort(key_index, kind="stable")
        starts = np.concatenate([[0], np.cumsum(np.bincount(key_index, minlength=len(quota)))])
        scale = self.cell_weights / (self.rate * received + self.small_cell)
        if moments is None:
            moments = np.zeros((len(cells), 0))
        # the kernel does not check bounds: a mismatch here would write outside the deficits
        n = len(cells)
        if (
            len(key_index) != n
            or len(jitter) != n
            or len(arrive) != n
            or len(starts) != len(quota) + 1
            or (scale.shape != (len(quota), len(self.cell_weights)))
        ):
            raise ValueError("selector: candidates, keys, jitter and arrivals disagree in length")
        if n and (cells.min() < 0 or cells.max() >= received.shape[1] or key_index.min() < 0):
            raise ValueError("selector: a cell or key index out of range")
        row_of = np.arange(len(quota), dtype=np.int64) if row_of is None else row_of.astype(np.int64)
        if (
            moments.shape != (len(cells), len(self.moment_weights))
            or deficit.shape[1:] != (received.shape[1] + len(self.moment_weights),)
            or row_of.shape != (len(quota),)
            or (len(row_of) and not 0 <= row_of.min() <= row_of.max() < deficit.shape[0])
        ):
            raise ValueError("selector: cells, moments and deficits disagree in shape")
        # a moment's deficit grows with the whole window, as the count cell's does
        moment_scale = self.moment_weights[None, :] / (self.rate * received[:, :1] + self.small_cell)
        gfactor = np.zeros(len(quota))
        if global_deficit is None:
            global_deficit = gscale = np.zeros(0)
        elif global_deficit.shape != (deficit.shape[1],):
            raise ValueError("selector: the summed deficits disagree in shape")
        elif global_targets is None or self.global_weight <= 0:
            # not scored (one key, or no weight), but still kept up to date: KeyedWindows.account
            # counts whole keys into it, and the summed deficits must hold every key's picks too
            gscale = np.zeros(len(global_deficit))
        else:
            if global_targets.shape != (received.shape[1],):
                raise ValueError("selector: the summed deficits disagree in shape")
            gscale = self._global_scale(global_targets)
            # a key that is most of the stream, or that picks many records a window, balances itself: the
            # summed term leans on the keys with few picks, whose own term cannot (module docstring)
            everyone = max(float(global_targets[0]), 1.0)
            share = np.clip(received[:, 0] / everyone, 0.0, 1.0)
            gfactor = (
                self.global_weight * (1.0 - share) * self.small_cell / (self.small_cell + self.rate * received[:, 0])
            )
            if summed_keys is not None:
                gfactor[summed_keys:] = 0.0
        chosen = _herd(
            starts.astype(np.int64),
            order.astype(np.int64),
            quota.astype(np.int64),
            int(self.segment_picks),
            _unsigned(cells),
            deficit,
            row_of,
            scale,
            jitter,
            arrive,
            np.ascontiguousarray(moments, dtype=np.float64),
            np.ascontiguousarray(moment_scale, dtype=np.float64),
            received.shape[1],
            global_deficit,
            np.ascontiguousarray(gscale, dtype=np.float64),
            np.ascontiguousarray(gfactor, dtype=np.float64),
        )
        return np.flatnonzero(chosen)

    def _global_scale(self, targets: np.ndarray) -> np.ndarray:
        """Per cell, then per moment: weight / (rate · count over every key + SMALL_CELL)."""
        everyone = max(float(targets[0]), 1.0)
        return np.concatenate(
            [
                self.cell_weights / (self.rate * targets + self.small_cell),
                self.moment_weights / (self.rate * everyone + self.small_cell),
            ]
        )

    def pooled(
        self,
        candidates: np.ndarray,
        key_index: np.ndarray,
        n_keys: int,
        extra: int,
        cells: np.ndarray,
        moments: np.ndarray,
        global_deficit: np.ndarray,
        global_targets: np.ndarray,
        arrive: np.ndarray,
        jitter: np.ndarray,
        late_deficit: np.ndarray | None = None,
        late: np.ndarray | None = None,
    ) -> np.ndarray:
        """Which keys take the budget's pooled extra sends (budget.py): up to
        ``extra`` keys, one send each, chosen among the ``candidates`` (records
        in arrival order) greedily on the deficits summed over keys, as the
        selector picks (on a copy: the selector then counts the sends); records
        ``late`` for their window on ``late_deficit`` instead (a copy too)."""
        # the kernel does not check bounds: a mismatch here would write outside the deficits
        n = len(cells)
        if (
            global_deficit.shape != (len(global_targets) + moments.shape[1],)
            or len(global_targets) != len(self.cell_weights)
            or moments.shape != (n, len(self.moment_weights))
            or len(key_index) != n
            or len(arrive) != n
            or len(jitter) != n
            or (late is not None and (late.shape != (n,) or late_deficit is None))
            or (late_deficit is not None and late_deficit.shape != global_deficit.shape)
        ):
            raise ValueError("selector: cells, moments and the summed deficits disagree in shape")
        if late is None or late_deficit is None or not late.any():
            deficits, row = global_deficit[None, :].copy(), np.zeros(n, dtype=np.int64)
        else:
            deficits, row = np.stack([global_deficit, late_deficit]), late.astype(np.int64)
        if len(candidates) and (candidates.min() < 0 or candidates.max() >= n):
            raise ValueError("selector: a candidate out of range")
        if n and (
            key_index.min() < 0 or key_index.max() >= n_keys or cells.min() < 0 or cells.max() >= len(global_targets)
        ):
            raise ValueError("selector: a cell or key index out of range")
        return _pooled(
            np.ascontiguousarray(candidates, dtype=np.int64),
            np.ascontiguousarray(key_index, dtype=np.int64),
            int(n_keys),
            int(extra),
            int(self.segment_picks),
            _unsigned(cells),
            np.ascontiguousarray(moments, dtype=np.float64),
            deficits,
            row,
            self._global_scale(global_targets),
            np.ascontiguousarray(arrive, dtype=np.float64),
            np.ascontiguousarray(jitter, dtype=np.float64),
        )
