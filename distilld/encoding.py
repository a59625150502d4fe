"""Encoders: raw feature values of a batch → small integer codes (numpy).

Every encoder reserves a code for *missing* (None, NaN, ±inf, wrong type,
an extractor that raised) so bad values land in a cell of their own and never
raise. Categorical encoders also keep an *other* code for values outside the
known set.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from decimal import Decimal
from itertools import repeat
from numbers import Real
from operator import itemgetter
from typing import Any

import numpy as np
from numba import njit

from distilld.hashing import GOLDEN, M1, M2

__all__ = [
    "MISSING_LABEL",
    "OTHER_LABEL",
    "CategoricalEncoder",
    "Encoder",
    "NumericBinner",
    "OpenCategoricalEncoder",
    "category_label",
    "category_names",
    "looked_up",
    "reserved_labels",
    "to_float_array",
]

OTHER_LABEL = "__other__"
MISSING_LABEL = "__missing__"
_RESERVED = frozenset((OTHER_LABEL, MISSING_LABEL))


def _label(value: Any) -> str | None:
    """The string a non-string category value is compared as (JSON spelling; an Avro decimal's digits as
    written); None for NaN and the infinities (missing, as README says: ``inf`` had been the label "inf"),
    and for a value whose ``==`` or ``str`` raises (a subclass's: bad values count missing, they never raise)."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    try:
        if isinstance(value, int | str | np.integer):  # numpy's: what pandas records hold
            return str(value) if value == value else None
        if isinstance(value, float | np.floating):
            return str(value) if value == value and math.isfinite(value) else None
        if isinstance(value, Decimal):  # an Avro decimal: a number, as numerics read it (it had been missing)
            # in positional digits: str writes fastavro's Decimal("0E-8") (scale 8) in exponent notation
            return format(value, "f") if value.is_finite() else None
    except Exception:
        return None
    return None


category_label = _label  # None where a categorical encoder counts the value missing (None, NaN, wrong type)


def category_names(categories: Sequence[Any]) -> list[str]:
    """A category list as the labels values are compared as: ``True`` is ``"true"``, as a value ``True`` is
    (``str`` gave ``"True"``, and every ``True`` went to *other*); refuses what no value could match."""
    names = []
    for c in categories:
        label = c if isinstance(c, str) else _label(c)
        if label is None and isinstance(c, Real | Decimal):
            raise ValueError(f"category {c!r}: NaN and the infinities are missing values, never a category")
        if label is None:
            raise ValueError(f"category {c!r}: a category is a string, a number or a boolean")
        names.append(str(label))
    return names


_PLAIN_NUMBERS = {float, int}


def _to_float(value: Any) -> float:
    # Real: also numpy scalars (np.int64, np.float32: what pandas and numpy records hold);
    # Decimal: what Avro's decimal logical type decodes to
    if isinstance(value, bool) or not isinstance(value, Real | Decimal):
        return np.nan
    try:
        return float(value)
    except Exception:  # OverflowError, a signalling NaN's ValueError, any error of a Real subclass's __float__
        return np.nan


def looked_up(table: Mapping[Any, int], items: Sequence[Any], dtype: type) -> np.ndarray:
    """``table[x]`` for every item, as a ``dtype`` array; KeyError if one is not in ``table``, TypeError
    if one is unhashable. One ``itemgetter`` call does every lookup in C: ~20 % fewer instructions than
    mapping ``table.__getitem__`` (which a batch of fewer than two takes: itemgetter then gives no tuple)."""
    if len(items) < 2:
        return np.fromiter(map(table.__getitem__, items), dtype=dtype, count=len(items))
    return np.fromiter(itemgetter(*items)(table), dtype=dtype, count=len(items))


def to_float_array(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Numbers (Decimal too) → float64; anything else (None, str, bool, huge int, nested) → NaN."""
    if isinstance(values, np.ndarray) and values.dtype == np.float64 and values.ndim == 1:
        out = values.copy()
        out[~np.isfinite(out)] = np.nan
        return out
    try:
        # numpy converts numeric strings and bools too: only plain numbers go the fast way
        if not set(map(type, values)) <= _PLAIN_NUMBERS:
            raise ValueError
        out = np.fromiter(values, dtype=np.float64, count=len(values))  # ~25 % fewer instructions than np.array
    except (TypeError, ValueError, OverflowError):
        out = np.fromiter((_to_float(v) for v in values), dtype=np.float64, count=len(values))
    out[~np.isfinite(out)] = np.nan
    return out


class Encoder:
    """Base: maps a batch of raw values to codes in ``range(n_codes)``."""

    n_codes: int
    missing_code: int
    is_categorical: bool = True
    pair_div: int = 1  # inside feature pairs, codes are divided by this (coarser bins)

    def encode(self, values: Sequence[Any], epochs: np.ndarray, watermark: int) -> np.ndarray:
        raise NotImplementedError

    def labels(self) -> list[str]:
        """A label per code, for stats and drift reports."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise ValueError unless the state (a snapshot's) gives codes in ``range(n_codes)``: the
        compiled kernels count codes without checking bounds, and one out of range wrote past the
        arrays (a damaged snapshot crashed the interpreter at the next batch)."""

    def restored(self) -> None:
        """Bring a snapshot's state (checked) up to this version's rules, where they changed."""


def whole_number(value: Any, low: int = 0) -> bool:
    """Whether a restored snapshot's ``value`` is an integer (not a boolean) of at least ``low``."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and int(value) >= low


def check_arrays(owner: object, expected: Mapping[str, tuple[tuple[int, ...], Any]], what: str) -> None:
    """Raise ValueError naming the first of ``owner``'s arrays (a restored snapshot's) that is not of the
    ``expected`` {name: (shape, dtype)}: the compiled kernels index them without checking."""
    for name, (shape, dtype) in expected.items():
        array = getattr(owner, name)
        if not isinstance(array, np.ndarray) or array.shape != shape or array.dtype != dtype:
            raise ValueError(f"{what} {name}: expected {dtype.__name__}{shape}")


def reserved_labels(categories: Sequence[str]) -> None:
    """Refuse a category spelled like distilld's own labels: its counts would merge with theirs."""
    reserved = {OTHER_LABEL, MISSING_LABEL} & set(categories)
    if reserved:
        raise ValueError(f"{sorted(reserved)} reserved: distilld's labels for other and missing values")


class CategoricalEncoder(Encoder):
    """A fixed category list, plus *other* and *missing*."""

    def __init__(self, categories: Sequence[str]) -> None:
        self.categories = category_names(categories)
        reserved_labels(self.categories)
        self._lut = {c: i for i, c in enumerate(self.categories)}
        self.other_code = len(self.categories)
        self.missing_code = self.other_code + 1
        self.n_codes = self.missing_code + 1
        # whether the last batch held only known categories: then this one is looked up in one go first
        # (a batch with others pays for the attempt, so after one the next goes value by value at once)
        self._all_known = True

    def _slow_code(self, value: Any) -> int:
        if value is None or (isinstance(value, float | np.floating) and value != value):
            return self.missing_code
        label = _label(value)
        if label is None:
            return self.missing_code  # lists, dicts: wrong type
        return self._lut.get(label, self.other_code)

    def encode(self, values: Sequence[Any], epochs: np.ndarray, watermark: int) -> np.ndarray:
        lut = self._lut
        if self._all_known:
            try:
                return looked_up(lut, values, np.int32)
            except Exception:  # unknown, unhashable, or a __hash__ / __eq__ that raises: value by value below
                pass
        try:
            codes = np.fromiter(map(lut.get, values, repeat(-1)), dtype=np.int32, count=len(values))
        except Exception:  # an unhashable value somewhere in the batch (or a __hash__ that raises ValueError)
            codes = np.full(len(values), -1, dtype=np.int32)
        others = np.flatnonzero(codes < 0).tolist()
        self._all_known = not others
        for i in others:
            codes[i] = self._slow_code(values[i])
        return codes

    def labels(self) -> list[str]:
        return [*self.categories, OTHER_LABEL, MISSING_LABEL]

    def check(self) -> None:
        lut = self._lut
        if not isinstance(lut, dict) or not all(
            isinstance(k, str) and whole_number(v) and v < self.other_code for k, v in lut.items()
        ):
            raise ValueError(f"categorical state: codes must be whole numbers below {self.other_code}")


class OpenCategoricalEncoder(CategoricalEncoder):
    """Values not known ahead: the top-K observed values get codes, the rest *other*.

    Frequencies are kept in a bounded table (lossy counting: halved and pruned
    when full), so memory is fixed by ``top_k``. A value that leaves the top K
    gives its code up only when a newcomer needs one; counts already in the
    windows under that code expire with them.
    """

    def __init__(self, top_k: int, refresh_every: int = 1024) -> None:
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        super().__init__([f"__slot{i}__" for i in range(top_k)])
        self.top_k = top_k
        self._lut = {}
        self._slots: list[str | None] = [None] * top_k
        self._freq: Counter[str] = Counter()
        self._capacity = max(64, 16 * top_k)
        self._refresh_every = refresh_every
        self._since_refresh = 0

    def _observe(self, values: Sequence[Any]) -> None:
        try:
            batch: Counter[Any] = Counter(values)
            # True, 1 and 1.0: one key, three labels; a str subclass's own __eq__ may raise (_label says missing)
            if not all(type(v) is str for v in batch):
                batch = Counter()
                for (_, value), count in Counter(zip(map(type, values), values, strict=True)).items():
                    batch[_label(value)] += count
        except Exception:  # an unhashable value somewhere in the batch (or a __hash__ that raises)
            batch = Counter(map(_label, values))
        for value, count in batch.items():
            label = value if type(value) is str else _label(value)
            # a record's "__other__" or "__missing__" is no value of its own: it is *other* (given a slot, it
            # was merged with the reserved cell of the same label in the stats)
            if label is not None and label not in _RESERVED:
                self._freq[label] += count
        if len(self._freq) > self._capacity:
            kept = self._freq.most_common(self._capacity // 2)
            self._freq = Counter({v: c // 2 for v, c in kept if c // 2 > 0})
        self._since_refresh += len(values)
        if self._since_refresh >= self._refresh_every or len(self._lut) < self.top_k:
            self._refresh()

    def _refresh(self) -> None:
        self._since_refresh = 0
        top = [v for v, _ in self._freq.most_common(self.top_k)]
        wanted = set(top)
        newcomers = [v for v in top if v not in self._lut]
        free = [i for i, v in enumerate(self._slots) if v is None or v not in wanted]
        for slot, value in zip(free, newcomers, strict=False):
            old = self._slots[slot]
            if old is not None:
                del self._lut[old]
            self._slots[slot] = value
            self._lut[value] = slot

    def encode(self, values: Sequence[Any], epochs: np.ndarray, watermark: int) -> np.ndarray:
        self._observe(values)
        return super().encode(values, epochs, watermark)

    def labels(self) -> list[str]:
        slots = [v if v is not None else f"__unused{i}__" for i, v in enumerate(self._slots)]
        return [*slots, OTHER_LABEL, MISSING_LABEL]

    def check(self) -> None:
        super().check()
        slots = self._slots
        if (
            not isinstance(slots, list)
            or len(slots) != self.top_k
            or any(v is not None and not isinstance(v, str) for v in slots)
        ):
            raise ValueError(f"open categorical state: {self.top_k} slots of a label or none expected")
        if any(slots[code] != label for label, code in self._lut.items()):
            raise ValueError("open categorical state: the codes and the slots disagree")
        if not isinstance(self._freq, Counter) or not all(
            isinstance(k, str) and whole_number(v) for k, v in self._freq.items()
        ):
            raise ValueError("open categorical state: counts must be whole numbers of labels")
        if not whole_number(self._since_refresh):
            raise ValueError("open categorical state: a count since the last refresh expected")

    def restored(self) -> None:
        """A snapshot from before reserved labels were *other* (stop 29) may hold a slot, and counts, for values
        spelt ``__other__`` or ``__missing__``: forgotten, so that their records are *other* at once, not until
        the slot is given up (its label shown twice meanwhile). Counts under its code expire with the windows,
        as any given-up slot's do."""
        for label in _RESERVED & self._lut.keys():
            self._slots[self._lut.pop(label)] = None
        for label in _RESERVED & self._freq.keys():
            del self._freq[label]


@njit(cache=True, nogil=True)
def _reservoir(
    values: np.ndarray,
    epochs: np.ndarray,
    pane_epoch: np.ndarray,
    seen: np.ndarray,
    sample: np.ndarray,
    seed: np.uint64,
) -> None:
    """Reservoir sampling per time pane, in arrival order: the value at position
    ``p`` of its pane (p ≥ the reservoir size) replaces entry ``h % (p + 1)`` when
    that is inside the reservoir, ``h`` a splitmix64 hash of the position, pane
    and seed (hashing.mix64), so the sample does not depend on how the stream
    was cut into batches. A value for a pane older than the one its slot holds
    is too late and skipped."""
    panes, size = sample.shape
    base = np.uint64(seed) * GOLDEN + GOLDEN
    for i in range(values.shape[0]):
        epoch = epochs[i]
        slot = epoch % panes
        if epoch < pane_epoch[slot]:
            continue
        if epoch > pane_epoch[slot]:
            pane_epoch[slot] = epoch
            seen[slot] = 0
        pos = seen[slot]
        seen[slot] += 1
        if pos < size:
            sample[slot, pos] = values[i]
            continue
        z = np.uint64(pos ^ (epoch << 20)) + base
        z = (z ^ (z >> np.uint64(30))) * M1
        z = (z ^ (z >> np.uint64(27))) * M2
        z = z ^ (z >> np.uint64(31))
        target = z % np.uint64(pos + 1)
        if target < size:
            sample[slot, np.int64(target)] = values[i]


@njit(cache=True, nogil=True)
def _bin_codes(edges: np.ndarray, numbers: np.ndarray, step: int, missing: int) -> np.ndarray:
    """``np.searchsorted(edges, numbers, side="left") * step`` (edges sorted, no NaN), NaN →
    ``missing``. A bin is the number of edges below the value: on a batch in arrival order
    numpy's binary search mispredicts at every step (~4x slower than counting the ~20
    edges); past 64 edges, a binary search here."""
    out = np.empty(numbers.shape[0], dtype=np.int32)
    m = edges.shape[0]
    for i in range(numbers.shape[0]):
        x = numbers[i]
        if x != x:
            out[i] = missing
            continue
        if m <= 64:
            below = 0
            for j in range(m):
                below += edges[j] < x
        else:
            below, n = 0, m
            while n > 0:
                half = n >> 1
                if edges[below + half] < x:
                    below += half + 1
                    n -= half + 1
                else:
                    n = half
        out[i] = below * step
    return out


class NumericBinner(Encoder):
    """Numbers → equal-frequency bins of the current window, plus *missing*.

    Inside feature pairs the bins are merged ``pair_div`` at a time (coarser,
    nested bins): a numeric's own distribution is balanced finely while its
    joint cells with other features keep enough records each to balance.
    While the window is small (fewer than ``FINE_MIN_PER_BIN`` records per fine
    bin) the fine bins would be emptier than a selection can fill, so the
    binner cuts at pair resolution and spreads the codes (0, div, 2·div, …).

    Edges come from a reservoir sample kept per time pane (``panes`` × ``sample``
    values, ~12,000 over a window whatever the panes: fixed memory), weighted by
    how many values each pane saw, so they follow the window's own distribution
    and forget what has expired. The edges' accuracy is what pairs are balanced
    by: a record the sample puts on the wrong side of a quintile lands in the
    wrong pair cells (people stream, windows of 10,000: pair TV 2.85x random's
    with 256 values a pane, 3.0x with 1024, which holds those windows whole;
    the sample's sort costs ~0.3 ms a refresh, a refresh every 1/(2·panes) of
    the window's values).
    Acceptance into a reservoir is a seeded hash of the value's position, so
    the edges do not depend on how the stream was cut into batches.
    """

    is_categorical = False
    WINDOW_SAMPLE = 12_288  # values kept over a window (1024 a pane at the default 12 panes): ~98 kB a feature
    PANE_SAMPLE_MIN = 64
    FINE_MIN_PER_BIN = 20
    Z_CLIP = 5.0  # standard scores beyond this many deviations count as this many

    def __init__(
        self, bins: int, panes: int, sample: int | None = None, seed: int = 0, pair_bins: int | None = None
    ) -> None:
        """``sample``: values kept a pane (default: WINDOW_SAMPLE over the panes, at least PANE_SAMPLE_MIN)."""
        if bins < 2:
            raise ValueError("bins must be at least 2")
        pair_bins = pair_bins or bins
        if bins % pair_bins:
            raise ValueError("bins must be a multiple of pair_bins")
        self.pair_div = bins // pair_bins
        self.bins = bins
        self.missing_code = bins
        self.n_codes = bins + 1
        self.panes = panes
        self.sample = sample or max(self.PANE_SAMPLE_MIN, self.WINDOW_SAMPLE // panes)
        self.seed = seed
        self._epoch = np.full(panes, -(2**62), dtype=np.int64)
        self._seen = np.zeros(panes, dtype=np.int64)
        self._values = np.zeros((panes, self.sample), dtype=np.float64)
        self.edges = np.zeros(0, dtype=np.float64)
        self._mean = math.nan  # of the window's sample: standard scores (``encode_scored``)
        self._sd = math.nan
        self._step = self.pair_div
        self._since_refresh = 0

    def _observe(self, values: np.ndarray, epochs: np.ndarray) -> None:
        # as uint64: a negative seed, or one past 2**63, overflowed numba's int64 argument
        _reservoir(values, epochs, self._epoch, self._seen, self._values, np.uint64(self.seed & 0xFFFFFFFFFFFFFFFF))
        self._since_refresh += len(values)

    def forget_panes(self) -> None:
        """Every pane's sample empty (the watermark went back: DistilledProcessor._rewind). The edges
        and scores stay until the window's new values refresh them."""
        self._epoch[:] = -(2**62)
        self._seen[:] = 0
        self._since_refresh = 0

    def _refresh(self, watermark: int) -> None:
        live = (self._epoch > watermark - self.panes) & (self._seen > 0)
        if not live.any():
            return
        fill = np.minimum(self._seen[live], self.sample)
        samples = np.concatenate([row[:n] for row, n in zip(self._values[live], fill, strict=True)])
        weights = np.repeat(self._seen[live] / fill, fill)
        # any sort will do: tied values give the same edges in any order (the cumulative weight
        # at the end of a run of ties is the same), and the default one is ~6x faster than stable
        order = np.argsort(samples)
        samples, weights = samples[order], weights[order]
        cum = np.cumsum(weights)
        # np.average's own arithmetic (the weighted sum over the weights' sum), without its checks: a
        # refresh comes every batch while a window fills, and the checks cost more than the sums
        total = weights.sum()
        with np.errstate(over="ignore", invalid="ignore"):  # values near ±1e308: no spread to score by
            self._mean = float(np.multiply(samples, weights).sum() / total)
            self._sd = float(np.sqrt(np.multiply((samples - self._mean) ** 2, weights).sum() / total))
        fine = cum[-1] >= self.FINE_MIN_PER_BIN * self.bins
        self._step = 1 if fine else self.pair_div
        cuts = self.bins // self._step
        targets = cum[-1] * np.arange(1, cuts) / cuts
        self.edges = samples[np.searchsorted(cum, targets, side="left").clip(0, len(samples) - 1)]
        self._since_refresh = 0

    def encode(self, values: Sequence[Any], epochs: np.ndarray, watermark: int) -> np.ndarray:
        return self.encode_scored(values, epochs, watermark)[0]

    def encode_scored(
        self, values: Sequence[Any] | np.ndarray, epochs: np.ndarray, watermark: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Codes, and each value's standard score in the window, ``(x − mean) / sd``
        of the window's sample, clipped to ±``Z_CLIP`` (0 for missing values, and
        for all values while the window holds no spread)."""
        return self.encode_numbers(to_float_array(values), epochs, watermark)

    def encode_numbers(self, numbers: np.ndarray, epochs: np.ndarray, watermark: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`encode_scored` of values :func:`to_float_array` has converted (float64, NaN where
        missing): the processor keeps them for the window's means, and converted them twice."""
        finite = ~np.isnan(numbers)
        if finite.any():
            self._observe(numbers[finite], epochs[finite])
        total_live = int(self._seen.sum())
        if len(self.edges) == 0 or self._since_refresh * 2 * self.panes >= total_live:
            self._refresh(watermark)
        # a value equal to an edge goes below it: bins (a, b], as np.quantile cuts with
        # searchsorted and pandas.qcut make them, and as distilld evaluate scores pairs. On
        # tied values (whole numbers) the other side is another partition of the records
        # (clickstream, path_depth's pairs: pair TV 1.98 -> 2.12x random's)
        codes = _bin_codes(self.edges, numbers, self._step, self.missing_code)
        if self._sd > 0 and math.isfinite(self._sd):  # NaN: no sample yet
            with np.errstate(over="ignore", invalid="ignore"):
                scores = np.clip((numbers - self._mean) / self._sd, -self.Z_CLIP, self.Z_CLIP)
            scores[~finite] = 0.0
        else:
            scores = np.zeros(len(numbers))
        return codes, scores

    def check(self) -> None:
        expected = {
            "_epoch": ((self.panes,), np.int64),
            "_seen": ((self.panes,), np.int64),
            "_values": ((self.panes, self.sample), np.float64),
        }
        check_arrays(self, expected, "numeric state")
        if (self._seen < 0).any():
            raise ValueError("numeric state _seen: counts below 0")
        if self._step not in (1, self.pair_div) or not whole_number(self._since_refresh):
            raise ValueError("numeric state: step or count since the last refresh out of range")
        edges = self.edges
        if not isinstance(edges, np.ndarray) or edges.dtype != np.float64 or edges.ndim != 1:
            raise ValueError("numeric state edges: expected float64 values")
        if len(edges) >= self.bins // self._step or np.isnan(edges).any() or (np.diff(edges) < 0).any():
            raise ValueError(f"numeric state edges: at most {self.bins // self._step - 1} sorted numbers expected")
        if not isinstance(self._mean, float) or not isinstance(self._sd, float):
            raise ValueError("numeric state: mean and spread must be numbers")

    def labels(self) -> list[str]:
        bounds = ["-inf", *(f"{e:.6g}" for e in self.edges.tolist()), "+inf"]
        names = [f"__bin{i}__" for i in range(self.bins)]
        for i in range(len(bounds) - 1):
            names[i * self._step] = f"({bounds[i]}, {bounds[i + 1]}]"
        return [*names, MISSING_LABEL]
