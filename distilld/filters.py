"""Filters before reduction: ``filters.drop`` and ``filters.keep_always``.

A filter has a ``name`` and a condition ``when``: a field test (``field`` and
one of ``equals``, ``in``, ``regex``, ``gt``/``gte``/``lt``/``lte``,
``exists``) or a combination (``all``, ``any``, ``not``). A dropped record
is counted per filter and goes nowhere; a kept one is forwarded outside the
budget with weight 1 and does not enter the windows (so the weights of the
sampled records stand for the rest). Conditions run a batch at a time, a field's values as one column.

What a test compares, and what no value can make it do:

- a JSON null and a missing field are the same (as for the features): both fail
  every test but ``exists: false``, ``equals: null`` and an ``in`` list with null;
- ``equals``/``in``: ``==``, except that booleans (numpy's too) equal only
  booleans (``true`` is not ``1``), a list only a list of equal items and an
  object only an object of equal members (no numpy broadcasting: an array is
  not ``1`` nor ``[1]``), and NaN nothing; a value whose ``==`` raises, or
  answers anything but true or false, equals nothing: the record does not
  match, the rest of the batch is filtered as ever;
- ``gt``/``gte``/``lt``/``lte``: numbers (numpy's and Decimal too, not
  booleans), as 64-bit floats: ±infinity compares as itself (an integer too
  large for a float as ±infinity), NaN and every other value match none;
- ``regex``: strings only (searched anywhere in them: ``re.search``).

A test given as null (``in: null``, ``regex: null``, ``gt: null``, ...) is a
configuration error, but ``equals: null``; so are an empty ``in`` list (it
would match no record) and a boolean bound (``gt: true`` was ``gt: 1``).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from itertools import compress, repeat
from numbers import Real
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from distilld.fieldpath import BatchGetter, compile_path, parse_path

__all__ = ["Condition", "FilterSettings", "FilterSpec", "Filters", "check_regex", "match"]

_TESTS = ("equals", "in_", "regex", "gt", "gte", "lt", "lte", "exists")
_COMBINATIONS = ("all_", "any_", "not_")
# what each test or combination needs, where it is given as null (equals: null is a test of its own)
_NOT_NULL = {
    "in_": "a list of values",
    "regex": "a regular expression",
    "gt": "a number",
    "gte": "a number",
    "lt": "a number",
    "lte": "a number",
    "exists": "true or false",
    "all_": "a list of conditions",
    "any_": "a list of conditions",
    "not_": "a condition",
}


class Condition(BaseModel):
    # a NaN or infinite threshold would never (or always) match, silently
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)

    field: str | None = None
    equals: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    regex: str | None = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    exists: bool | None = None
    all_: list[Condition] | None = Field(default=None, alias="all")
    any_: list[Condition] | None = Field(default=None, alias="any")
    not_: Condition | None = Field(default=None, alias="not")

    @field_validator(*_NOT_NULL, mode="before")
    @classmethod
    def _given(cls, value: Any, info: ValidationInfo) -> Any:
        # run on given values only: null here is not "not given" (in: null matched nothing, regex: null
        # every string)
        if value is None:
            raise ValueError(f"null: give {_NOT_NULL[info.field_name or '']}")
        if info.field_name in _COMPARISONS and isinstance(value, bool):  # pydantic read true as 1.0
            raise ValueError(f"{str(value).lower()} is a boolean: give a number (a boolean is no number to compare)")
        if info.field_name == "in_" and isinstance(value, list) and not value:
            raise ValueError("empty: it would match no record; give at least one value")
        return value

    @field_validator("field")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None:
            parse_path(value)
        return value

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return check_regex(value)

    @field_validator("all_", "any_")
    @classmethod
    def _not_empty(cls, value: list[Condition] | None, info: ValidationInfo) -> list[Condition] | None:
        if value is not None and not value:
            matches = "every record" if info.field_name == "all_" else "no record"
            raise ValueError(f"empty: it would match {matches}; give at least one condition")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Condition:
        tests = [t for t in _TESTS if t in self.model_fields_set]
        combos = [c for c in _COMBINATIONS if c in self.model_fields_set]
        if combos:
            if tests or self.field is not None or len(combos) > 1:
                raise ValueError("a condition is one of all / any / not, or a field test, not both")
        elif self.field is None or len(tests) != 1:
            raise ValueError(
                "a field test needs 'field' and exactly one of equals, in, regex, gt, gte, lt, lte, exists"
            )
        return self


class FilterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
    when: Condition


class FilterSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    drop: list[FilterSpec] = Field(default_factory=list, description="records matching any are dropped (counted)")
    keep_always: list[FilterSpec] = Field(
        default_factory=list, description="records matching any are forwarded outside the budget, weight 1"
    )

    @model_validator(mode="after")
    def _distinct(self) -> FilterSettings:
        names = [f.name for f in self.drop + self.keep_always]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"filter names must be distinct: {', '.join(duplicates)}")
        return self


def check_regex(value: str | None) -> str | None:
    """A pydantic check: ``value`` compiles as a regular expression."""
    if value is not None:
        try:
            re.compile(value)
        except re.error as e:
            raise ValueError(f"not a valid regular expression: {e}") from None
    return value


def match(condition: Condition, records: Sequence[Any]) -> np.ndarray:
    """Which records meet ``condition`` (a boolean array); a missing field fails every test but ``exists: false``."""
    return _compile(condition)(_Columns(records))


class _Columns:
    """A batch's field values, each path's (and the types among them) extracted once for all its tests."""

    def __init__(self, records: Sequence[Any]) -> None:
        self.records = records
        self.n = len(records)
        self._cache: dict[str, tuple[list[Any], set[type]]] = {}

    def get(self, path: str, getter: BatchGetter) -> tuple[list[Any], set[type]]:
        column = self._cache.get(path)
        if column is None:
            values = getter(self.records)
            column = self._cache[path] = (values, set(map(type, values)))
        return column


_Test = Callable[[_Columns], np.ndarray]


def _compile(condition: Condition) -> _Test:
    """``condition`` as a function of a batch's columns: each test runs over a whole column in C loops
    (``map`` over the values), combinations on boolean arrays."""
    if condition.all_ is not None:
        every = [_compile(c) for c in condition.all_]

        def all_(columns: _Columns) -> np.ndarray:
            out = np.ones(columns.n, dtype=bool)
            for test in every:
                out &= test(columns)
            return out

        return all_
    if condition.any_ is not None:
        some = [_compile(c) for c in condition.any_]

        def any_(columns: _Columns) -> np.ndarray:
            out = np.zeros(columns.n, dtype=bool)
            for test in some:
                out |= test(columns)
            return out

        return any_
    if condition.not_ is not None:
        negated = _compile(condition.not_)
        return lambda columns: ~negated(columns)
    assert condition.field is not None
    path, getter, fields = condition.field, compile_path(condition.field), condition.model_fields_set
    if "exists" in fields:
        exists = condition.exists

        def present(columns: _Columns) -> np.ndarray:
            found = _present(*columns.get(path, getter))
            return found if exists else ~found

        return present
    if "equals" in fields:
        want = [condition.equals]
        return lambda columns: _members(*columns.get(path, getter), want)
    if "in_" in fields:
        allowed = condition.in_ or []
        return lambda columns: _members(*columns.get(path, getter), allowed)
    if "regex" in fields:
        search = re.compile(condition.regex or "").search
        return lambda columns: _searched(*columns.get(path, getter), search)
    op = next((t for t in ("gt", "gte", "lt") if t in fields), "lte")
    compare, bound = _COMPARISONS[op], getattr(condition, op)

    def compared(columns: _Columns) -> np.ndarray:
        numbers = _numbers(*columns.get(path, getter))  # NaN where not a number: every comparison is False
        with np.errstate(invalid="ignore"):
            return compare(numbers, bound)

    return compared


_COMPARISONS = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
# the types whose ``==`` among themselves is plain value equality, never raises, and agrees with hashing
# (but for NaN, equal to nothing): a set lookup decides ``equals`` and ``in`` for them
_SCALARS = frozenset({str, int, float, bool, type(None)})
_NUMBERS = frozenset({int, float, type(None)})
_FLOATS = frozenset({int, float})
_BOOLS = (bool, np.bool_)  # numpy's booleans are booleans too: not 1


def _bools(flags: Iterable[bool]) -> np.ndarray:
    """Python booleans as a boolean array, through a bytearray: half the instructions of ``np.fromiter``."""
    return np.frombuffer(bytearray(flags), dtype=bool)


def _present(values: list[Any], types: set[type]) -> np.ndarray:
    if type(None) not in types:
        return np.ones(len(values), dtype=bool)
    return _bools(map(operator.is_not, values, repeat(None)))


def _members(values: list[Any], types: set[type], allowed: list[Any]) -> np.ndarray:
    """Which values ``_equal`` one of ``allowed``: by set lookups where values and ``allowed`` are
    scalars, value by value (as ``_member``) for the rest."""
    n = len(values)
    if not all(type(a) in _SCALARS for a in allowed):
        return np.fromiter((_member(v, allowed) for v in values), dtype=bool, count=n)
    # booleans equal only booleans: a set of their own, as True == 1 finds 1 in a set
    others = {a for a in allowed if type(a) is not bool and a == a}  # NaN equals nothing
    booleans = {a for a in allowed if type(a) is bool}
    if types <= _SCALARS:
        return _looked_up(values, bool in types, others, booleans)
    scalar = _bools(map(_SCALARS.__contains__, map(type, values)))
    out = np.zeros(n, dtype=bool)
    out[scalar] = _looked_up(list(compress(values, scalar)), bool in types, others, booleans)
    for i in np.flatnonzero(~scalar).tolist():
        out[i] = _member(values[i], allowed)
    return out


def _looked_up(values: list[Any], any_bool: bool, others: set[Any], booleans: set[bool]) -> np.ndarray:
    found = _bools(map(others.__contains__, values))
    if any_bool:
        is_bool = _bools(map(operator.is_, map(type, values), repeat(bool)))
        found &= ~is_bool
        if booleans:
            found |= is_bool & _bools(map(booleans.__contains__, values))
    return found


def _searched(values: list[Any], types: set[type], search: Callable[[str], re.Match[str] | None]) -> np.ndarray:
    """Which values are strings (``str`` or a subclass) that ``search`` finds something in."""
    if types <= {str}:
        return _searched_text(values, search)
    exact = _bools(map(operator.is_, map(type, values), repeat(str)))
    out = np.zeros(len(values), dtype=bool)
    out[exact] = _searched_text(list(compress(values, exact)), search)
    if any(issubclass(t, str) for t in types - {str}):
        for i in np.flatnonzero(~exact).tolist():
            out[i] = isinstance(values[i], str) and search(values[i]) is not None
    return out


def _searched_text(text: list[str], search: Callable[[str], re.Match[str] | None]) -> np.ndarray:
    """``search`` over plain strings, once for each distinct one: a field that is searched (user
    agents, paths, levels) repeats its values, and a lookup costs a fraction of a search."""
    distinct = dict.fromkeys(text)
    found = dict(zip(distinct, map(operator.is_not, map(search, distinct), repeat(None)), strict=True))
    return _bools(map(found.__getitem__, text))


def _numbers(values: list[Any], types: set[type]) -> np.ndarray:
    """Each value as a float64 (:func:`_number`), in one C loop where they are all ints and floats."""
    if types <= _FLOATS:
        try:
            return np.fromiter(values, dtype=np.float64, count=len(values))
        except OverflowError:  # an int too large for a float: value by value
            pass
    elif type(None) in types and types <= _NUMBERS:  # numbers with missing ones: the numbers in one go
        present = _present(values, types)
        out = np.full(len(values), np.nan)
        out[present] = _numbers(list(compress(values, present)), types - {type(None)})
        return out
    return np.fromiter(map(_number, values), dtype=np.float64, count=len(values))


def _number(value: Any) -> float:
    """A number (numpy's, Decimal) as a float, ±infinity too; NaN for anything else (a boolean is no number)."""
    if type(value) in _BOOLS or not isinstance(value, Real | Decimal):
        return math.nan
    try:
        return float(value)
    except OverflowError:  # an int beyond the floats: beyond every bound
        return -math.inf if value < 0 else math.inf
    except (ValueError, TypeError):  # Decimal's signalling NaN
        return math.nan


def _equal(value: Any, want: Any) -> bool:
    """``==`` with no broadcasting: booleans (numpy's too) equal only booleans, a list only a list of equal
    items, a dict only a dict of equal members; an ``==`` that raises, or answers no boolean (an array),
    is no match. Never raises."""
    try:
        if isinstance(want, list):
            return isinstance(value, list) and len(value) == len(want) and all(map(_equal, value, want))
        if isinstance(want, dict):
            return (
                isinstance(value, dict)
                and len(value) == len(want)
                and all(k in value and _equal(value[k], w) for k, w in want.items())
            )
        if (type(value) in _BOOLS) != (type(want) in _BOOLS):
            return False
        same = value == want
        return type(same) in _BOOLS and bool(same)  # an array (numpy's broadcasting) is no answer
    except Exception:  # an == that raises (a numpy array's bool()), a nesting too deep: not equal
        return False


def _member(value: Any, allowed: list[Any]) -> bool:
    return any(_equal(value, a) for a in allowed)


class Filters:
    """The configured filters, applied to a batch: which records go to the reducer."""

    def __init__(self, settings: FilterSettings) -> None:
        self.drop = list(settings.drop)
        self.keep_always = list(settings.keep_always)
        # each list's conditions, compiled, and names (an array: a batch's are looked up in one go)
        self._compiled = [
            ([_compile(spec.when) for spec in specs], np.array([spec.name for spec in specs], dtype=object))
            for specs in (self.drop, self.keep_always)
        ]

    def __bool__(self) -> bool:
        return bool(self.drop or self.keep_always)

    def split(self, records: Sequence[Any]) -> tuple[np.ndarray, list[tuple[int, str]], list[tuple[int, str]]]:
        """(which records to reduce, [(index, filter)] dropped, [(index, filter)] kept always);
        the first matching drop filter wins, then the first matching keep_always one."""
        columns = _Columns(records)
        reduce = np.ones(columns.n, dtype=bool)
        decided: list[list[tuple[int, str]]] = []
        for tests, names in self._compiled:
            which = np.full(columns.n, -1)  # the number of the filter that took each record, if one did
            for k, test in enumerate(tests):
                hit = reduce & test(columns)
                which[hit] = k
                reduce &= ~hit
            taken = np.flatnonzero(which >= 0)
            decided.append(list(zip(taken.tolist(), names[which[taken]].tolist(), strict=True)))
        return reduce, decided[0], decided[1]

    def split_checked(
        self, records: Sequence[Any]
    ) -> tuple[np.ndarray, list[tuple[int, str]], list[tuple[int, str]], list[tuple[int, str]]]:
        """:meth:`split`, and [(index, reason)] of the records it could not filter. It should raise for
        none (an odd value matches no test, it raises no error); if it raises all the same (a bug), each
        record is filtered alone and those that raise again are left out of the three lists: neither
        reduced, dropped nor kept, for the caller to report (the daemon as processing.on_error says)."""
        try:
            return (*self.split(records), [])
        except Exception:
            pass
        reduce = np.zeros(len(records), dtype=bool)
        dropped: list[tuple[int, str]] = []
        kept: list[tuple[int, str]] = []
        errors: list[tuple[int, str]] = []
        for i, record in enumerate(records):
            try:
                alone, drop, keep = self.split([record])
            except Exception as e:
                errors.append((i, f"filters raised {type(e).__name__}: {e}"))
                continue
            reduce[i] = alone[0]
            dropped += [(i, name) for _, name in drop]
            kept += [(i, name) for _, name in keep]
        return reduce, dropped, kept, errors
