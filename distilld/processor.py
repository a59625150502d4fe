"""``DistilledProcessor``: the library API over the engine (``distilled`` 0.1.0 compatible).

One call of :meth:`process_batch` runs the whole pipeline on a batch:
grade → cells → window counts per key → budget → herding selection →
weights. All of it is vectorized with numpy; per-record Python is limited to
reading fields (and calling user functions, when the user gives them).
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import reprlib
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from itertools import combinations, repeat
from numbers import Integral, Real
from typing import Any, TypeVar

import numpy as np

from distilld.analysis import ProportionCalculator, VectorAnalyzer
from distilld.budget import allocate
from distilld.cells import CellLayout
from distilld.compat import WindowMeans, as_grader
from distilld.datapoint import DataPoint
from distilld.encoding import NumericBinner, category_label, to_float_array
from distilld.graders import GradingFunction, safe_map
from distilld.hashing import unit_float
from distilld.keys import index_keys
from distilld.selector import HerdingSelector
from distilld.stats import FeatureDrift, feature_drift, proportions
from distilld.window import KeyedWindows

__all__ = ["DistilledProcessor", "WindowView", "index_keys"]

log = logging.getLogger(__name__)

_EARLIEST_PANE = -(2.0**61)  # pane numbers stay int64, clear of window.py's empty mark (-2**62)


class WindowView:
    """Stands where the seed kept a deque of every record in the window.

    distilld keeps counts, not records (memory fixed by configuration), so
    this view gives the number of records in the windows and can be cleared.
    """

    def __init__(self, processor: DistilledProcessor, kind: int) -> None:
        self._processor = processor
        self._kind = kind

    def __len__(self) -> int:
        return self._processor._window_count(self._kind)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iter__(self) -> Iterator[Any]:
        raise TypeError(
            "distilld keeps counts, not the records of the window: len() works, iteration does not"
            " (keep the DataPoints process_batch returns if you need them)"
        )

    def clear(self) -> None:
        """Resets the whole processor (both windows), unlike the seed's deque.clear()."""
        self._processor.reset()

    def __repr__(self) -> str:
        return f"<WindowView {('received', 'sent')[self._kind]}: {len(self)} records>"


_WEIGHTS = (
    "marginal_weight",
    "numeric_marginal_weight",
    "pair_weight",
    "comoment_weight",
    "spread_weight",
    "global_weight",
)

F = TypeVar("F", bound=Callable[..., Any])

_SHORT = reprlib.Repr()  # a value in a log line: its start, whatever its size or depth
_SHORT.maxstring = _SHORT.maxother = 200


def _one_at_a_time(method: F) -> F:
    """The processor's state is not safe to change from two threads at once: calls take turns."""

    @functools.wraps(method)
    def locked(self: DistilledProcessor, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked  # type: ignore[return-value]


def _check_arguments(**arguments: Any) -> None:
    """Refuse a constructor argument of the wrong type, or a count below 1, by its name: a float
    batch_size or panes, or a string rate, otherwise failed later with an error naming none of them;
    a weight that is not a finite number ≥ 0 (NaN sent nothing, infinity missed the rate, a negative
    weight inverted the mix)."""
    for name, value in arguments.items():
        if name in ("reduction_percentage", "time_horizon_seconds"):
            if isinstance(value, bool) or not isinstance(value, Real):
                raise ValueError(f"{name} must be a number, not {value!r}")
            continue
        if name in _WEIGHTS:
            if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= float(value) < math.inf:
                raise ValueError(f"{name} must be a finite number, 0 or more, not {value!r}")
            continue
        # 50.0 is taken as 50: code written for the seed package, which ignored batch_size, may pass one
        whole = isinstance(value, Real) and not isinstance(value, bool) and float(value).is_integer()
        if not (whole or (isinstance(value, Integral) and not isinstance(value, bool))):
            raise ValueError(f"{name} must be a whole number, not {value!r}")
        number = int(value) if isinstance(value, Integral) else int(float(value))
        if name == "seed" and not -(2**63) <= number < 2**64:
            raise ValueError(f"seed must fit in 64 bits, not {value!r}")  # snapshots hold it as a JSON integer
        if name == "rewind_after" and number < 0:
            raise ValueError(f"rewind_after must be 0 (never) or more, not {value!r}")
        if name not in ("seed", "rewind_after") and number < 1:
            raise ValueError(f"{name} must be at least 1, not {value!r}")


def _pair_index(pairs: Sequence[tuple[str, str]], names: list[str]) -> list[tuple[int, int]]:
    """``pairs`` of feature names as pairs of feature indices; ValueError naming a pair that is not two
    names (a string of two letters read as two names), pairs a feature with itself, or comes twice
    (its cells were counted, and weighed, twice), and the unknown names."""
    if isinstance(pairs, str | bytes) or not isinstance(pairs, Iterable):
        raise ValueError(f"pairs must be a list of (feature, feature) pairs, not {pairs!r}")
    out: list[tuple[int, int]] = []
    seen: set[frozenset[str]] = set()
    unknown: set[Any] = set()
    for pair in pairs:
        if isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"pairs: each pair is two feature names, not {pair!r}")
        a, b = pair
        if not isinstance(a, str) or not isinstance(b, str):
            raise ValueError(f"pairs: feature names are strings, not {pair!r}")
        if a == b:
            raise ValueError(f"pairs: {pair!r} pairs a feature with itself")
        if frozenset(pair) in seen:
            raise ValueError(f"pairs: {pair!r} is given twice")
        seen.add(frozenset(pair))
        unknown |= {n for n in pair if n not in names}
        out.append((names.index(a), names.index(b)) if a in names and b in names else (-1, -1))
    if unknown:
        raise ValueError(f"pairs name unknown features: {sorted(map(str, unknown))}")
    return out


@lru_cache(maxsize=64)
def _row_builder(names: tuple[str, ...]) -> Callable[..., dict[str, Any]]:
    """A function of one value per feature → ``{name: value}``, leaving ``None``
    values out: ``{n: v for n, v in zip(names, row) if v is not None}``, written
    out as one dict display (about 2.5x faster a row, and rows are built for every
    chosen record). The names are the closure's, never part of the source."""
    n = len(names)
    params = ", ".join(f"v{i}" for i in range(n))
    absent = " or ".join(f"v{i} is None" for i in range(n))
    display = ", ".join(f"k{i}: v{i}" for i in range(n))
    source = (
        f"def make(names, {', '.join(f'k{i}' for i in range(n))}):\n"
        f"    def row({params}):\n"
        f"        if {absent}:\n"
        f"            return {{k: v for k, v in zip(names, ({params},)) if v is not None}}\n"
        f"        return {{{display}}}\n"
        f"    return row\n"
    )
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # the source holds the feature count only, never a name
    builder: Callable[..., dict[str, Any]] = namespace["make"](names, *names)
    return builder


class DistilledProcessor:
    """Forwards a share of a stream that keeps its multivariate make-up, per key.

    ``grading_functions`` maps feature names to graders. ``timestamp_func(record)``
    gives event time in seconds (default: arrival time); ``key_func(record)``
    the key whose window the record joins (default: one key for all). Keys are
    compared as JSON values (keys.py): ``True`` and ``1`` are two keys, ``1`` and
    ``1.0`` one, a list never the string of its repr; snapshots keep str, int, float,
    bool, None, bytes, UUID, date and time, Decimal keys and tuples, frozensets, lists
    and dicts of them, and refuse others.
    ``panes`` sets the window's granularity, ``max_keys`` bounds the state
    (least recently used keys are evicted), ``seed`` the tie-break hashes.
    Threads sharing a processor take turns (a lock); one processor per thread
    runs side by side. ``reset()`` keeps the graders' configuration as it was
    when the processor was built.
    The weights say what the selector balances hardest: each categorical's
    shares (``marginal_weight``), each numeric's bins (``numeric_marginal_weight``),
    each pair's joint cells (``pair_weight``), each numeric pair's co-moment,
    i.e. their correlation (``comoment_weight``), and each numeric's spread, its
    mean squared standard score (``spread_weight``: the correlation a reader
    computes from the output divides the co-moment by the spreads, and a spread
    balanced only through coarse bins came out ~6 % low, the correlation high
    with it; it counts only with two numerics or more, where there are co-moments);
    ``global_weight``, how much the
    marginals summed over all keys count next to each key's own; see selector.py.
    ``rewind_after``: when this many records in a row, and ten times more than
    the window holds, are all too late for the window, the watermark (the latest
    event time seen) was a stray far ahead of the stream; it goes back to the
    latest of them and the windows start anew (:meth:`_rewind`); 0 never.
    """

    def __init__(
        self,
        grading_functions: Mapping[str, GradingFunction],
        time_horizon_seconds: float = 3600,
        reduction_percentage: float = 0.1,
        batch_size: int = 100,
        *,
        timestamp_func: Callable[[Any], float] | None = None,
        key_func: Callable[[Any], Any] | None = None,
        max_keys: int = 10_000,
        panes: int = 12,
        seed: int = 0,
        max_cells: int = 16_384,
        pairs: Sequence[tuple[str, str]] | None = None,
        segment_picks: int = 8,
        marginal_weight: float = 16.0,
        numeric_marginal_weight: float = 4.0,
        pair_weight: float = 1.0,
        comoment_weight: float = 16.0,
        spread_weight: float = 0.5,
        global_weight: float = 30.0,
        rewind_after: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not grading_functions:
            raise ValueError("grading_functions: at least one grader is needed")
        weights = (marginal_weight, numeric_marginal_weight, pair_weight, comoment_weight, spread_weight, global_weight)
        _check_arguments(
            reduction_percentage=reduction_percentage,
            time_horizon_seconds=time_horizon_seconds,
            batch_size=batch_size,
            max_keys=max_keys,
            panes=panes,
            segment_picks=segment_picks,
            max_cells=max_cells,
            seed=seed,
            rewind_after=rewind_after,
            **{name: value for name, value in zip(_WEIGHTS, weights, strict=True)},
        )
        # a Fraction or Decimal rate would reach the compiled kernels as an object they cannot type (an int or
        # a float stays as given: snapshots' fingerprints hold it as JSON, where 3600 and 3600.0 differ)
        reduction_percentage, time_horizon_seconds = (
            x if type(x) in (int, float) else float(x) for x in (reduction_percentage, time_horizon_seconds)
        )
        batch_size, max_keys, panes, segment_picks, seed, rewind_after, max_cells = map(
            int, (batch_size, max_keys, panes, segment_picks, seed, rewind_after, max_cells)
        )
        if not 0 < reduction_percentage <= 1:
            raise ValueError(f"reduction_percentage must be in (0, 1], not {reduction_percentage!r}")
        if not time_horizon_seconds > 0:
            raise ValueError(f"time_horizon_seconds must be positive, not {time_horizon_seconds!r}")
        if not time_horizon_seconds / panes >= 1e-6:
            raise ValueError("time_horizon_seconds / panes must be at least a microsecond")
        grading_functions = {name: as_grader(name, g) for name, g in grading_functions.items()}
        self.grading_functions = grading_functions  # a copy: the graders in use, whatever the caller's dict becomes
        self.time_horizon_seconds = time_horizon_seconds
        self.reduction_percentage = reduction_percentage
        self.batch_size = batch_size
        self.timestamp_func = timestamp_func
        self.key_func = key_func
        self.seed = seed
        self._names = list(grading_functions)
        self._graders = list(grading_functions.values())
        self._clock = clock
        self._pane_seconds = time_horizon_seconds / panes
        self._encoders = [g.make_encoder(panes, seed + i) for i, g in enumerate(self._graders)]
        # what reset() starts again from: the encoders as built, not the graders as they may be by then (a
        # category appended to the list a grader was given gave the encoder more codes than the cell layout)
        self._fresh_encoders = copy.deepcopy(self._encoders)
        self._lock = threading.RLock()
        pair_index = None if pairs is None else _pair_index(pairs, self._names)
        self._layout = CellLayout(
            [e.n_codes for e in self._encoders],
            max_cells=max_cells,
            pairs=pair_index,
            pair_div=[e.pair_div for e in self._encoders],
        )
        numeric = [isinstance(e, NumericBinner) for e in self._encoders]
        self._numeric = [f for f, flag in enumerate(numeric) if flag]
        self._score_column = {f: j for j, f in enumerate(self._numeric)}
        self._comoments = list(combinations(range(len(self._numeric)), 2))
        self._comoment_a, self._comoment_b = np.array(self._comoments, dtype=np.int64).reshape(-1, 2).T
        self._windows = KeyedWindows(
            self._layout.n_cells,
            panes,
            max_keys,
            self._layout.marginal_cells,
            self._layout.marginal_groups,
            moments=len(self._comoments) + len(self._numeric),
        )
        self._selector = HerdingSelector(
            reduction_percentage,
            self._layout.group_weights(
                [numeric_marginal_weight if flag else marginal_weight for flag in numeric], pair_weight
            ),
            segment_picks,
            # the spreads only mend what the co-moments do to the tails. With one numeric there are none, and a
            # spread balanced alone made its distribution worse: KS 0.9-1.0x random's (1.7x with a categorical
            # beside it), against 2.5x without (normal and lognormal values, 10,000-record windows)
            np.array(
                [float(comoment_weight)] * len(self._comoments)
                + [float(spread_weight) if self._comoments else 0.0] * len(self._numeric)
            ),
            global_weight=float(global_weight),
        )
        self._watermark = -math.inf
        self.rewind_after = rewind_after
        self._late_run = 0  # records in a row too late for the window, and the latest event time among them
        self._late_latest = -math.inf
        self.watermark_rewinds = 0
        self._seq = 0
        self._means = WindowMeans(panes, len(self._numeric))
        self.missing_counts = np.zeros(len(self._names), dtype=np.int64)
        self.timestamps_replaced = 0
        self.historical_data = WindowView(self, KeyedWindows.RECEIVED)
        self.sent_data = WindowView(self, KeyedWindows.SENT)
        # the seed's helpers (analysis.py), for code that called them; distilld's own selection does not use them
        self.vector_analyzer = VectorAnalyzer()
        self.proportion_calculator = ProportionCalculator()

    def __getstate__(self) -> dict[str, Any]:
        """A copy or a pickle holds everything but the lock (a new one comes with it)."""
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    @property
    def watermark(self) -> float:
        """The latest event time seen (seconds; -inf before any), or the one a rewind went back to."""
        return self._watermark

    # -- the pipeline ------------------------------------------------------------

    @_one_at_a_time
    def process_batch(self, data_points: Iterable[Any]) -> list[DataPoint]:
        """Take a batch of records; return the selected ones as :class:`DataPoint`."""
        # a list or tuple as is; anything else (generator, deque, array) as a list of its items
        records = data_points if isinstance(data_points, list | tuple) else list(data_points)
        out: list[DataPoint] = []
        for start in range(0, len(records), self.batch_size):
            out.extend(self._process_chunk(records[start : start + self.batch_size]))
        return out

    def _timestamps(self, records: Sequence[Any]) -> tuple[np.ndarray, list[Any] | None]:
        """Event times as floats (NaN where not a number), and timestamp_func's values as it gave them."""
        if self.timestamp_func is None:
            return np.full(len(records), self._clock(), dtype=np.float64), None
        given = safe_map(self.timestamp_func, records)
        return to_float_array(given), given

    def _keys(self, records: Sequence[Any]) -> tuple[np.ndarray, list[Hashable]]:
        if self.key_func is None:
            return np.zeros(len(records), dtype=np.int64), [None]
        return index_keys(safe_map(self.key_func, records))

    def _process_chunk(self, records: Sequence[Any]) -> list[DataPoint]:
        if not records:
            return []
        ts = self._usable_times(*self._timestamps(records))  # the times used, as the DataPoints report them
        key_index, keys = self._keys(records)
        values: list[list[Any]] = []
        chosen, weight = self.select(records, ts, key_index, keys, values)
        idx = chosen.tolist()
        chosen_keys = key_index[chosen]
        # whole columns to Python floats and keys at once: indexing numpy arrays a record at a time costs more
        return list(
            map(
                DataPoint,
                [records[i] for i in idx],
                ts[chosen].tolist(),
                self._vectors(values, idx),
                repeat(True, len(idx)),
                weight[chosen_keys].tolist(),
                [keys[k] for k in chosen_keys.tolist()],
            )
        )

    def _vectors(self, values: list[list[Any]], idx: list[int]) -> list[dict[str, Any]]:
        """The chosen records' feature values as the seed's ``vector_values`` held
        them: numerics as float; a value the engine counts as missing left out."""
        columns = []
        for f, column in enumerate(values):
            picked = [column[i] for i in idx]
            if f in self._score_column:  # numeric: NaN (missing) → None
                picked = [None if x != x else x for x in to_float_array(picked).tolist()]
            else:  # categorical: what the encoder counts missing (NaN, lists, mappings) → None
                picked = [None if category_label(x) is None else x for x in picked]
            columns.append(picked)
        return list(map(_row_builder(tuple(self._names)), *columns))

    @_one_at_a_time
    def select(
        self,
        records: Sequence[Any],
        timestamps: np.ndarray,
        key_index: np.ndarray,
        keys: list[Hashable],
        values: list[list[Any]] | None = None,
        extracted: list[list[Any]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Grade and reduce one batch whose event times and keys the caller
        already has (the daemon: Kafka timestamps and keys). Returns (chosen
        record indices, weight per key); ``values`` collects the extracted
        feature values when given; ``extracted`` gives them (see :meth:`extract`)."""
        limit = self._windows.max_keys
        if len(keys) > limit:
            return self._select_in_parts(records, timestamps, key_index, keys, limit, values, extracted)
        epochs, w_epoch = self._advance(timestamps)
        codes = np.empty((len(records), len(self._graders)), dtype=np.int32)
        scores = np.empty((len(records), len(self._numeric)), dtype=np.float64)
        numbers: dict[int, np.ndarray] = {}
        for f, (grader, encoder) in enumerate(zip(self._graders, self._encoders, strict=True)):
            raw = extracted[f] if extracted is not None else grader.extract_batch(records)
            if values is not None:
                values.append(raw)
            if isinstance(encoder, NumericBinner):
                numbers[f] = to_float_array(raw)
                codes[:, f], scores[:, self._score_column[f]] = encoder.encode_numbers(numbers[f], epochs, w_epoch)
            else:
                codes[:, f] = encoder.encode(raw, epochs, w_epoch)
        chosen, weight = self._reduce(codes, epochs, w_epoch, key_index, keys, scores)
        if values is not None and self._numeric:  # the library path: averages for the stats
            live = self._windows.live(epochs, w_epoch)
            nums = np.column_stack([numbers[f] for f in self._numeric])
            self._means.add(KeyedWindows.RECEIVED, epochs[live], nums[live])
            sent = chosen[live[chosen]]
            self._means.add(KeyedWindows.SENT, epochs[sent], nums[sent])
        return chosen, weight

    def extract(self, records: Sequence[Any]) -> tuple[list[list[Any]], list[tuple[int, str]]]:
        """Every feature's raw values, and the records whose grader raised: (index,
        reason) with the first grader's exception. For :meth:`select`'s ``extracted``."""
        columns: list[list[Any]] = []
        failed: dict[int, str] = {}
        for name, grader in zip(self._names, self._graders, strict=True):
            column, errors = grader.extract_checked(records)
            columns.append(column)
            for i, error in errors:
                failed.setdefault(i, f"grader {name!r} raised {error}")
        return columns, sorted(failed.items())

    def _usable_times(self, timestamps: np.ndarray, given: Sequence[Any] | None = None) -> np.ndarray:
        """Event times as seconds, a record without a usable one (NaN, more than
        a window ahead of the clock, which would move the watermark for good and
        expire every window, or so far back that its pane number overflows int64)
        given the watermark (:meth:`_fill_time`). Counted in the stats'
        ``timestamps_replaced``; the first time, a warning says what was seen (``given``: the
        values timestamp_func returned, shown for one that is not a number)."""
        ts = np.array(timestamps, dtype=np.float64)
        bad = ~np.isfinite(ts) | (ts > self._clock() + self.time_horizon_seconds)
        bad |= ts < _EARLIEST_PANE * self._pane_seconds
        if bad.any():
            if not self.timestamps_replaced:
                first = int(np.flatnonzero(bad)[0])
                example: Any = float(ts[first])
                hint = (
                    " (milliseconds? event times are seconds: timestamp_func's, reducer.time_unit's)"
                    if example > 1e11
                    else ""
                )
                if given is not None and example != example and not isinstance(given[first], Real):
                    # a datetime or a string read as NaN: show it, not the NaN it became
                    example = given[first]
                    hint = " (not a number: event times are seconds since the epoch, e.g. a datetime's .timestamp())"
                log.warning(
                    "%d of %d records had no usable event time (none, far in the past, or more than a window"
                    " ahead of the clock), e.g. %s%s: they take the watermark",
                    int(bad.sum()),
                    len(ts),
                    _SHORT.repr(example),  # a value nested deep or a long string: its start
                    hint,
                )
            self.timestamps_replaced += int(bad.sum())
            ts[bad] = self._fill_time(ts, bad)
        return ts

    def _fill_time(self, ts: np.ndarray, bad: np.ndarray) -> float:
        """The time a record without a usable one takes: the watermark; before there is one, the watermark
        this batch sets (its latest usable time), and the clock only for a first batch with none usable. The
        clock for any record of a first batch moved the watermark to now in a replay of old records: every
        later record was too late for the window until a rewind."""
        if math.isfinite(self._watermark):
            return self._watermark
        return float(ts[~bad].max()) if not bad.all() else self._clock()

    def _advance(self, timestamps: np.ndarray) -> tuple[np.ndarray, int]:
        """Move the watermark; expire panes; return each record's pane epoch
        (of its usable time: :meth:`_usable_times`)."""
        ts = self._usable_times(timestamps)
        self._watermark = max(self._watermark, float(ts.max()))
        w_epoch = math.floor(self._watermark / self._pane_seconds)
        self._windows.advance(w_epoch)
        epochs = np.floor(ts / self._pane_seconds).astype(np.int64)
        if self.rewind_after and self._stranded(ts, epochs <= w_epoch - self._windows.panes):
            ts, epochs, w_epoch = self._rewind(ts)
        return epochs, w_epoch

    def _stranded(self, ts: np.ndarray, late: np.ndarray) -> bool:
        """Whether the last ``rewind_after`` records or more, in a row, were too late for the window
        (``late``: this batch's, in arrival order), and ten times more than the window holds: the
        watermark then stands on a few records far ahead of the stream (a stray holds a window of one),
        not on a stream that a backfill of old records interrupts (the window it holds is not given up
        for a backfill of less than ten times its size: blocks of old and new records in turn would
        start the windows anew at every block). A record at the watermark itself counts neither way:
        a record with no usable event time takes it (:meth:`_usable_times`), a stray's too."""
        if not late.any():  # the common case, at the cost of one look
            self._late_run, self._late_latest = 0, -math.inf
            return False
        on_time = np.flatnonzero(~late & (ts != self._watermark))
        if len(on_time):
            self._late_run, self._late_latest = 0, -math.inf
            tail = on_time[-1] + 1
            ts, late = ts[tail:], late[tail:]
        if late.any():
            self._late_run += int(late.sum())
            self._late_latest = max(self._late_latest, float(ts[late].max()))
        return self._late_run >= self.rewind_after and self._late_run > 10 * int(self._windows.global_totals[0])

    def _rewind(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Move the watermark back to the latest of the records too late in a row, and start the windows
        anew from there: a stray event time far ahead of the others (during a replay, one record dated
        hours ahead) had moved the watermark past everything after it, and would have frozen the windows,
        stats and drift for good. The deficits, budgets and keys stay (they count no time). A record of
        the batch still ahead of the new watermark (the stray itself, when it came in this batch) takes it,
        as a record with no usable event time does. Returns the batch's times, pane epochs and the new
        watermark's epoch. The window then holds this batch's records only, not the run's earlier ones
        (they were counted late): it fills again within a window."""
        was, self._watermark = self._watermark, self._late_latest
        self.watermark_rewinds += 1
        if not self.watermark_rewinds & (self.watermark_rewinds - 1):  # the 1st, 2nd, 4th, 8th…: a bounded log
            log.warning(
                "%d records in a row were too late for the window (event times up to %s, the watermark %s):"
                " a record far ahead of the others had moved the watermark; it goes back to %s and the"
                " windows start anew (rewind %d; rewind_after, the daemon's reducer.rewind_after)",
                self._late_run,
                _SHORT.repr(self._watermark),
                _SHORT.repr(was),
                _SHORT.repr(self._watermark),
                self.watermark_rewinds,
            )
        self._late_run, self._late_latest = 0, -math.inf
        ahead = ts > self._watermark
        if ahead.any():
            ts = ts.copy()
            ts[ahead] = self._watermark
            self.timestamps_replaced += int(ahead.sum())
        w_epoch = math.floor(self._watermark / self._pane_seconds)
        self._windows.forget_panes()
        self._means.forget()
        for encoder in self._encoders:
            if isinstance(encoder, NumericBinner):
                encoder.forget_panes()
        return ts, np.floor(ts / self._pane_seconds).astype(np.int64), w_epoch

    def _select_in_parts(
        self,
        records: Sequence[Any],
        timestamps: np.ndarray,
        key_index: np.ndarray,
        keys: list[Hashable],
        limit: int,
        values: list[list[Any]] | None,
        extracted: list[list[Any]] | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """More distinct keys in one batch than ``max_keys`` can hold: go through
        it in runs of ``max_keys`` records (each has at most that many keys)."""
        chosen, weight = [], np.full(len(keys), 1.0 / self.reduction_percentage)
        parts: list[list[list[Any]]] = []
        for start in range(0, len(records), limit):
            stop = min(start + limit, len(records))
            sub_index, sub_keys = index_keys([keys[k] for k in key_index[start:stop].tolist()])
            part_values: list[list[Any]] | None = [] if values is not None else None
            part_extracted = None if extracted is None else [col[start:stop] for col in extracted]
            idx, w = self.select(
                records[start:stop], timestamps[start:stop], sub_index, sub_keys, part_values, part_extracted
            )
            chosen.append(idx + start)
            weight[key_index[start:stop]] = w[sub_index]  # each key's weight after its latest run
            if part_values is not None:
                parts.append(part_values)
        if values is not None:
            values.extend([v for p in parts for v in p[f]] for f in range(len(self._graders)))
        return np.concatenate(chosen), weight

    @_one_at_a_time
    def warm_up(self) -> None:
        """Compile (or load from numba's cache) the kernels before the first
        real batch, on a made-up batch, then :meth:`reset`: it clears the
        state, so call it before any record, as the daemon does at start."""
        n = 64
        codes = np.zeros((n, len(self._encoders)), dtype=np.int32)
        self.select_codes(codes, np.full(n, self._clock()), np.zeros(n, dtype=np.int64), [None])
        self.reset()

    @_one_at_a_time
    def select_codes(
        self,
        codes: np.ndarray,
        timestamps: np.ndarray,
        key_index: np.ndarray | None = None,
        keys: list[Hashable] | None = None,
        scores: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The engine without grading: codes (records × features) in, (chosen
        indices, weight per key) out. ``scores``: the numeric features' standard
        scores (records × numerics; default 0, which leaves their co-moments
        alone). For benchmarks and callers that grade themselves."""
        if key_index is None or keys is None:
            key_index, keys = np.zeros(len(codes), dtype=np.int64), [None]
        if scores is None:
            scores = np.zeros((len(codes), len(self._numeric)))
        epochs, w_epoch = self._advance(timestamps)
        return self._reduce(codes, epochs, w_epoch, key_index, keys, scores)

    def _comoment_values(self, scores: np.ndarray) -> np.ndarray:
        """Per record, the product of the standard scores of every pair of
        numerics (its mean over the window is their Pearson correlation), then
        each numeric's squared score less 1 (its mean: the spread's, 0 when the
        variance is the window's)."""
        return np.concatenate(
            [scores[:, self._comoment_a] * scores[:, self._comoment_b], scores * scores - 1.0], axis=1
        )

    def _reduce(
        self,
        codes: np.ndarray,
        epochs: np.ndarray,
        w_epoch: int,
        key_index: np.ndarray,
        keys: list[Hashable],
        scores: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Count, budget, select. Returns (chosen record indices, weight per key)."""
        windows = self._windows
        for f, encoder in enumerate(self._encoders):
            self.missing_counts[f] += int(np.count_nonzero(codes[:, f] == encoder.missing_code))
        cells = self._layout.cell_matrix(codes)
        moments = self._comoment_values(scores)
        slots = windows.slots_for(keys)
        record_slots = slots[key_index]
        live = windows.live(epochs, w_epoch)

        received = np.bincount(key_index, minlength=len(keys))
        windows.decay_to(slots, w_epoch)
        if live.all():
            windows.add(KeyedWindows.RECEIVED, record_slots, epochs, cells)
        else:
            windows.add(KeyedWindows.RECEIVED, record_slots[live], epochs[live], cells[live])
        # the cells' window counts over every key, this batch included, for the summed deficits' scale
        # (none: each key alone)
        many = self._selector.global_weight > 0 and windows.keys_held > 1
        targets = self._layout.with_pair_estimates(windows.global_received()) if many else None
        tiebreak = unit_float(np.arange(len(keys), dtype=np.int64) + self._seq, self.seed)
        quota, carry, windows.balance = allocate(
            windows.carry[slots],
            received,
            self.reduction_percentage,
            windows.balance,
            tiebreak,
            self._extras_chooser(key_index, len(keys), cells, moments, live, targets),
        )
        windows.carry[slots] = carry
        partial = (quota > 0) & (quota < received)
        part_slots = slots[partial]

        # keys that send all or none of their records: arrivals and sends go straight into their deficits,
        # before the selector runs, so that the deficits summed over keys hold them when it picks
        whole = ~partial[key_index]
        if whole.any():
            sends = (quota > 0)[key_index[whole]] & live[whole]
            change = self.reduction_percentage * live[whole] - sends
            windows.account(record_slots[whole], cells[whole], change, moments[whole])
            late_whole = whole & ~live
            if late_whole.any():  # late records of such keys: into the late records' deficits (see _select)
                late_sends = (quota > 0)[key_index[late_whole]]
                windows.account_into(
                    windows.late_deficit, cells[late_whole], self.reduction_percentage - late_sends, moments[late_whole]
                )
        # the selector takes the deficits as they stood before this batch and adds the arrivals as it goes
        deficit = windows.deficit[part_slots]
        chosen = self._select(key_index, cells, moments, quota, partial, part_slots, deficit, live, targets)
        windows.deficit[part_slots] = deficit
        picked = np.zeros(len(codes), dtype=np.bool_)
        picked[chosen] = True
        sent = picked & live
        windows.add(KeyedWindows.SENT, record_slots[sent], epochs[sent], cells[sent])
        self._seq += len(codes)

        # every record is sent at the rate (the budget is exact over the stream, pooled over keys): each one
        # stands for 1/rate. A key's own received ÷ sent at the time of a send undercounts: a key whose
        # records come a few a batch sends its first one early (its ratio then ~1) and none for a while after
        return chosen, np.full(len(keys), 1.0 / self.reduction_percentage)

    def _extras_chooser(
        self,
        key_index: np.ndarray,
        n_keys: int,
        cells: np.ndarray,
        moments: np.ndarray,
        live: np.ndarray,
        targets: np.ndarray | None,
    ) -> Callable[[np.ndarray, int], np.ndarray] | None:
        """With many keys, most sends of keys with a few records a window are the
        budget's pooled extras, and which keys take them decides what the output
        holds: let the records that best close the deficits summed over keys
        decide (selector.py), instead of the keys' fractions alone."""
        if n_keys < 2 or targets is None:
            return None
        global_targets = targets
        # the records of a key that has only late ones are scored on the late records' deficits; a key with
        # live ones has all its records scored on the summed deficits: scored on both rows, a key holding
        # late records won the extras more often, and its late records took their share of them (late records
        # sent at 0.123 for a rate of 0.1, live ones at 0.098, 12 keys of 7 records a batch); with only its
        # live records in the running, a key with fewer of them won less often (late records sent at 0.094)
        on_late_row = None  # every record live, as almost always: no key's records on the late row
        if not live.all():
            has_live = np.zeros(n_keys, dtype=np.bool_)
            has_live[key_index[live]] = True
            on_late_row = ~live & ~has_live[key_index]

        def choose(eligible: np.ndarray, extra: int) -> np.ndarray:
            allowed = np.zeros(n_keys, dtype=np.bool_)
            allowed[eligible] = True
            candidates = np.flatnonzero(allowed[key_index])
            jitter = 1e-9 * unit_float(np.arange(len(key_index), dtype=np.int64) + self._seq, self.seed + 1)
            return self._selector.pooled(
                candidates,
                key_index,
                n_keys,
                extra,
                cells,
                moments,
                self._windows.global_deficit,
                global_targets,
                np.full(len(key_index), self.reduction_percentage),
                jitter,
                # records too late for their window on the late records' deficits (see _select)
                self._windows.late_deficit,
                on_late_row,
            )

        return choose

    def _select(
        self,
        key_index: np.ndarray,
        cells: np.ndarray,
        moments: np.ndarray,
        quota: np.ndarray,
        partial: np.ndarray,
        part_slots: np.ndarray,
        deficit: np.ndarray,
        live: np.ndarray,
        targets: np.ndarray | None,
    ) -> np.ndarray:
        """Keys whose quota covers all their records send them all; the others
        (``partial``) go through the selector (with the summed deficits when
        ``targets``, the cells' window counts over every key, are given).

        A key's records too late for the window (``live`` false) join none of
        its deficits: they are picked as a key of their own would be, against
        the deficits of every late record so far (``late_deficit``), with the
        share of the key's quota their number gives (:meth:`_late_quota`). With
        the key's own deficits, left as they were, every batch of late records
        got the same picks whatever they held (0.90/0.10/0.00 of a mix of
        0.80/0.15/0.05: worse than random sampling)."""
        picked = [np.flatnonzero(((quota > 0) & ~partial)[key_index])]
        if partial.any():
            candidates = np.flatnonzero(partial[key_index])
            local_key = (np.cumsum(partial) - 1)[key_index[candidates]]
            quotas, received, rows = quota[partial], self._window_targets(part_slots), deficit
            late = ~live[candidates]
            n_part = len(quotas)
            row_of = None
            if late.any():  # each key's late records as a key of their own, after the keys, all on one row
                late_quota = self._late_quota(local_key, late, quotas)
                local_key = np.where(late, local_key + n_part, local_key)
                quotas = np.concatenate([quotas - late_quota, late_quota])
                received = np.concatenate([received, received])
                rows = np.concatenate([deficit, self._windows.late_deficit[None, :]])
                row_of = np.minimum(np.arange(2 * n_part), n_part)
            jitter = 1e-9 * unit_float(candidates.astype(np.int64) + self._seq, self.seed)
            local = self._selector.select(
                local_key,
                cells[candidates],
                quotas,
                received,
                rows,
                jitter,
                np.full(len(candidates), self.reduction_percentage),
                moments[candidates],
                self._windows.global_deficit,
                targets,
                summed_keys=n_part,
                row_of=row_of,
            )
            if late.any():
                self._late_picked(candidates, local, late, rows[n_part], cells, moments)
                deficit[:] = rows[:n_part]
            picked.append(candidates[local])
        return np.sort(np.concatenate(picked))

    def _late_quota(self, local_key: np.ndarray, late: np.ndarray, quotas: np.ndarray) -> np.ndarray:
        """Per key, the picks its late records take: the share of its quota their number is, its
        fraction rounded up with that chance (a seeded hash of the batch's position: the same stream
        rounds the same), within what its live and late records can make. One carry passed from key to
        key rounded the first key in a batch down and the next up, batch after batch: with keys in a
        fixed order, one key's late records and another's live ones were never sent."""
        n = np.bincount(local_key, minlength=len(quotas))
        n_late = np.bincount(local_key[late], minlength=len(quotas))
        owed = quotas * n_late / np.maximum(n, 1)
        chance = unit_float(np.arange(len(quotas), dtype=np.int64) + self._seq, self.seed + 2)
        share = np.floor(owed + chance).astype(np.int64)
        return np.clip(share, np.maximum(quotas - (n - n_late), 0), np.minimum(quotas, n_late))

    def _late_picked(
        self,
        candidates: np.ndarray,
        local: np.ndarray,
        late: np.ndarray,
        late_row: np.ndarray,
        cells: np.ndarray,
        moments: np.ndarray,
    ) -> None:
        """After the selector: the late records' row is ``late_deficit`` now, and their arrivals and
        picks come out of the deficits summed over keys, which hold the windows' records."""
        windows = self._windows
        windows.late_deficit = late_row.copy()
        chosen = np.zeros(len(candidates), dtype=np.bool_)
        chosen[local] = True
        records = candidates[late]
        windows.account_into(
            windows.global_deficit, cells[records], chosen[late] - self.reduction_percentage, moments[records]
        )

    def _window_targets(self, slots: np.ndarray) -> np.ndarray:
        """Records per cell in the keys' windows (keys × cells, float64): exact
        for the marginal cells; for the pair cells, the decayed counts' shares
        times the window's exact record count (every record is in one cell of
        each pair, so the first pair's cells hold the decayed total)."""
        w, layout = self._windows, self._layout
        exact = w.totals[KeyedWindows.RECEIVED, slots].astype(np.float64)
        recent = w.recent[slots].astype(np.float64)
        if recent.shape[1]:
            first_pair = int(layout.offsets[layout.marginal_groups + 1]) - w.window_cells
            decayed_total = recent[:, :first_pair].sum(axis=1, keepdims=True)
            recent *= exact[:, :1] / np.maximum(decayed_total, 1e-9)
        return np.concatenate([exact, recent], axis=1)

    # -- state and stats -------------------------------------------------------

    def _window_count(self, kind: int) -> int:
        return int(self._windows.totals[kind, :, 0].sum())

    @property
    def keys_held(self) -> int:
        return self._windows.keys_held

    @property
    def bytes_per_key(self) -> int:
        return self._windows.bytes_per_key()

    def _summed(self, kind: int) -> np.ndarray:
        return self._windows.totals[kind].sum(axis=0)

    def _proportions(self, kind: int) -> dict[str, dict[str, Any]]:
        out = proportions(self._summed(kind), self._layout, self._names, self._encoders)
        if out and math.isfinite(self._watermark):
            w_epoch = math.floor(self._watermark / self._pane_seconds)
            for f, mean in zip(self._numeric, self._means.means(kind, w_epoch), strict=True):
                if mean is not None and self._names[f] in out:
                    out[self._names[f]]["average"] = mean  # the seed's key: mean of the values present
        return out

    @property
    def current_proportions(self) -> dict[str, dict[str, Any]]:
        return self._proportions(KeyedWindows.RECEIVED)

    @property
    def sent_proportions(self) -> dict[str, dict[str, Any]]:
        return self._proportions(KeyedWindows.SENT)

    def feature_drifts(self) -> dict[str, FeatureDrift]:
        """Per feature: TV distance between window and sent shares (mean over keys, max)."""
        held = self._windows.held_slots()
        received = self._windows.totals[KeyedWindows.RECEIVED, held]
        sent = self._windows.totals[KeyedWindows.SENT, held]
        return {
            name: feature_drift(received, sent, self._layout, f, self._drift_labels(f))
            for f, name in enumerate(self._names)
        }

    def _drift_labels(self, f: int) -> list[str] | None:
        """Categorical cells by label (reducers code open categoricals apart); numeric bins, and an
        encoder without labels that fit, by rank."""
        if f in self._score_column:
            return None
        try:
            labels = self._encoders[f].labels()
        except NotImplementedError:
            return None
        sl = self._layout.marginal_slice(f)
        return labels if len(labels) == sl.stop - sl.start else None

    def drift(self) -> dict[str, dict[str, float]]:
        return {name: d.as_dict() for name, d in self.feature_drifts().items()}

    def window_records(self) -> tuple[int, int]:
        """(received, sent) records inside the windows, summed over keys."""
        return self._window_count(KeyedWindows.RECEIVED), self._window_count(KeyedWindows.SENT)

    @property
    def keys_evicted(self) -> int:
        return self._windows.evicted

    @_one_at_a_time
    def get_current_stats(self) -> dict[str, Any]:
        """The seed's statistics, plus drift per feature and the keys held."""
        return {
            "current_proportions": self.current_proportions,
            "sent_proportions": self.sent_proportions,
            "historical_data_count": len(self.historical_data),
            "sent_data_count": len(self.sent_data),
            "time_horizon_seconds": self.time_horizon_seconds,
            "reduction_percentage": self.reduction_percentage,
            "grading_function_count": len(self._names),
            "grading_function_names": list(self._names),
            "drift": self.drift(),
            "keys_held": self.keys_held,
            "keys_evicted": self.keys_evicted,
            "bytes_per_key": self.bytes_per_key,
            "missing": dict(zip(self._names, self.missing_counts.tolist(), strict=True)),
            "timestamps_replaced": self.timestamps_replaced,
            "watermark_rewinds": self.watermark_rewinds,
        }

    @_one_at_a_time
    def reset(self) -> None:
        """Forget all windows, keys and budgets (the configuration stays)."""
        self._windows.reset()
        self._encoders = copy.deepcopy(self._fresh_encoders)
        self._watermark = -math.inf
        self._late_run, self._late_latest, self.watermark_rewinds = 0, -math.inf, 0
        self._seq = 0
        self._means = WindowMeans(self._windows.panes, len(self._numeric))
        self.missing_counts[:] = 0
        self.timestamps_replaced = 0
