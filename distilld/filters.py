"""Filters before reduction: ``filters.drop`` and ``filters.keep_always``.

A filter has a ``name`` and a condition ``when``: a field test (``field`` and
one of ``equals``, ``in``, ``regex``, ``gt``/``gte``/``lt``/``lte``,
``exists``) or a combination (``all``, ``any``, ``not``). A dropped record
is counted per filter and goes nowhere; a kept one is forwarded outside the
budget with weight 1 and does not enter the windows (so the weights of the
sampled records stand for the rest). Conditions run a batch at a time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from distilld.encoding import to_float_array
from distilld.fieldpath import compile_path, parse_path

__all__ = ["Condition", "FilterSettings", "FilterSpec", "Filters", "check_regex", "match"]

_TESTS = ("equals", "in_", "regex", "gt", "gte", "lt", "lte", "exists")
_COMBINATIONS = ("all_", "any_", "not_")


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
    n = len(records)
    if condition.all_ is not None:
        out = np.ones(n, dtype=bool)
        for c in condition.all_:
            out &= match(c, records)
        return out
    if condition.any_ is not None:
        out = np.zeros(n, dtype=bool)
        for c in condition.any_:
            out |= match(c, records)
        return out
    if condition.not_ is not None:
        return ~match(condition.not_, records)
    assert condition.field is not None
    values = compile_path(condition.field)(records)
    fields = condition.model_fields_set
    if "exists" in fields:
        present = np.fromiter((v is not None for v in values), dtype=bool, count=n)
        return present if condition.exists else ~present
    if "equals" in fields:
        want = condition.equals
        return np.fromiter((_equal(v, want) for v in values), dtype=bool, count=n)
    if "in_" in fields:
        allowed = condition.in_ or []
        return np.fromiter((_member(v, allowed) for v in values), dtype=bool, count=n)
    if "regex" in fields:
        search = re.compile(condition.regex or "").search
        return np.fromiter((isinstance(v, str) and search(v) is not None for v in values), dtype=bool, count=n)
    numbers = to_float_array(values)  # NaN where not a number: every comparison is False
    with np.errstate(invalid="ignore"):
        if "gt" in fields:
            return numbers > condition.gt
        if "gte" in fields:
            return numbers >= condition.gte
        if "lt" in fields:
            return numbers < condition.lt
        return numbers <= condition.lte


def _equal(value: Any, want: Any) -> bool:
    """``==``, except that booleans equal only booleans (``true`` is not ``1``)."""
    return bool(value == want) and (type(value) is bool) == (type(want) is bool)


def _member(value: Any, allowed: list[Any]) -> bool:
    return any(_equal(value, a) for a in allowed)


class Filters:
    """The configured filters, applied to a batch: which records go to the reducer."""

    def __init__(self, settings: FilterSettings) -> None:
        self.drop = list(settings.drop)
        self.keep_always = list(settings.keep_always)

    def __bool__(self) -> bool:
        return bool(self.drop or self.keep_always)

    def split(self, records: Sequence[Any]) -> tuple[np.ndarray, list[tuple[int, str]], list[tuple[int, str]]]:
        """(which records to reduce, [(index, filter)] dropped, [(index, filter)] kept always);
        the first matching drop filter wins, then the first matching keep_always one."""
        n = len(records)
        reduce = np.ones(n, dtype=bool)
        dropped: list[tuple[int, str]] = []
        kept: list[tuple[int, str]] = []
        for specs, out in ((self.drop, dropped), (self.keep_always, kept)):
            for spec in specs:
                hit = reduce & match(spec.when, records)
                if hit.any():
                    out.extend((i, spec.name) for i in np.flatnonzero(hit).tolist())
                    reduce &= ~hit
        dropped.sort()
        kept.sort()
        return reduce, dropped, kept
