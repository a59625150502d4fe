"""CSV rows straight to feature columns, with no dict per record.

When every feature reads one plain CSV column (a field grader, no path
alternatives or nesting), the key and the time are columns too (or none /
processing time), and no filter needs whole records, a batch of rows is cut
into the columns the engine reads; dicts are built only for the forwarded
rows. Values are what the dict path gives: text, numbers for numeric
features, a transform applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from distilld.daemon.fields import TIME_UNITS
from distilld.encoding import to_float_array
from distilld.fieldpath import top_level_keys
from distilld.graders import GradingFunction
from distilld.settings import EngineSettings
from distilld.transforms import TRANSFORMS

__all__ = ["ColumnPlan", "numbers"]


def numbers(cells: Sequence[str]) -> list[float | None]:
    """Text cells to numbers: one C loop when all are numbers, else ``None`` for the rest."""
    try:
        return list(map(float, cells))
    except ValueError:
        return [_number(v) for v in cells]


def _number(value: Any) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


@dataclass
class _Column:
    index: int
    numeric: bool
    transform: Callable[[Sequence[Any]], list[Any]] | None


@dataclass
class ColumnPlan:
    features: list[_Column]
    key: int | None
    time: int | None
    unit: float

    @staticmethod
    def build(settings: EngineSettings, graders: dict[str, GradingFunction], header: list[str]) -> ColumnPlan | None:
        position = {name: i for i, name in enumerate(header)}

        def column(path: str) -> int | None:
            keys = top_level_keys(path)  # one alternative of one step: a column
            return position.get(keys[0]) if len(keys) == 1 and keys[0] is not None else None

        if settings.filters.drop or settings.filters.keep_always:
            return None
        features = []
        for grader in graders.values():
            path = getattr(grader, "field", None)
            index = column(path) if isinstance(path, str) and not grader.may_raise else None
            if index is None:
                return None
            transform = getattr(grader, "transform", None)
            features.append(_Column(index, not grader.is_categorical(), TRANSFORMS[transform] if transform else None))
        reducer = settings.reducer
        key = None if reducer.key == "none" else column(reducer.key)
        clock = None if reducer.time == "processing" else column(reducer.time)
        if (reducer.key != "none" and key is None) or (reducer.time != "processing" and clock is None):
            return None
        return ColumnPlan(features, key, clock, TIME_UNITS[reducer.time_unit])

    def extract(self, rows: list[list[str]]) -> tuple[list[list[Any]], np.ndarray, list[Any] | None]:
        """(each feature's values, event times, keys) of a batch of rows; raises
        IndexError on a row shorter than the header (the caller takes the dict path)."""
        cells: dict[int, list[str]] = {}

        def cut(i: int) -> list[str]:
            if i not in cells:
                cells[i] = [row[i] for row in rows]
            return cells[i]

        columns = []
        for f in self.features:
            values: list[Any] = numbers(cut(f.index)) if f.numeric and f.transform is None else cut(f.index)
            columns.append(f.transform(values) if f.transform else values)
        if self.time is None:
            ts = np.full(len(rows), time.time())
        else:
            ts = to_float_array(numbers(cut(self.time))) * self.unit
        return columns, ts, None if self.key is None else cut(self.key)
