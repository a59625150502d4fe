"""Grading functions: how a record is seen by the reducer, one feature each.

The classes and constructors follow the published ``distilled`` 0.1.0 API
(``evaluate`` per record, raising on bad values). For speed the engine uses
``extract_batch`` instead, which never raises: a failed or absent value is
``None`` and lands in the feature's *missing* cell.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from numbers import Integral
from typing import Any

import numpy as np

from distilld.encoding import (
    CategoricalEncoder,
    Encoder,
    NumericBinner,
    OpenCategoricalEncoder,
    category_label,
    category_names,
)
from distilld.fieldpath import BatchGetter, compile_path
from distilld.transforms import TRANSFORMS

__all__ = [
    "CategoricalGrader",
    "FieldCategoricalGrader",
    "FieldNumericGrader",
    "FieldOpenCategoricalGrader",
    "GradingFunction",
    "LambdaGrader",
    "NumericGrader",
    "OpenCategoricalGrader",
    "safe_map",
]

# A numeric's own shares are balanced at 20 equal-frequency bins of the window; inside feature
# pairs at 5 (quintiles, every fourth edge): the cut `distilld evaluate` and `make bench`
# measure pairs at. Pairs read best at the cut they are balanced at (README: Figures).
DEFAULT_BINS = 20
DEFAULT_PAIR_BINS = 5
DEFAULT_TOP_K = 32


def _default_pair_bins(bins: int) -> int:
    """The coarsest divisor of ``bins`` that still has at least DEFAULT_PAIR_BINS bins."""
    for candidate in range(DEFAULT_PAIR_BINS, bins + 1):
        if bins % candidate == 0:
            return candidate
    return bins


def _whole(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _check_bins(owner: str, bins: Any, pair_bins: Any) -> None:
    if not _whole(bins) or bins < 2:
        raise ValueError(f"{owner}: bins must be a whole number of at least 2, not {bins!r}")
    if pair_bins is not None and (not _whole(pair_bins) or pair_bins < 2 or bins % pair_bins):
        raise ValueError(f"{owner}: pair_bins must be a divisor of bins ({bins}) of at least 2, not {pair_bins!r}")


def _bools_as_numbers(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``func``, with a boolean it returns as 1.0 or 0.0: a numeric grader's function is the user's own
    code, and the seed package graded ``True`` as 1.0 (a field's JSON ``true`` stays a wrong type)."""

    def graded(record: Any) -> Any:
        value = func(record)
        return float(value) if isinstance(value, bool | np.bool_) else value

    return graded


def safe_map(func: Callable[[Any], Any], records: Sequence[Any]) -> list[Any]:
    """``func`` over a batch; ``None`` wherever it raises (one record never stops a batch)."""

    def call(record: Any) -> Any:
        try:
            return func(record)
        except Exception:
            return None

    return [call(r) for r in records]


def checked_map(func: Callable[[Any], Any], records: Sequence[Any]) -> tuple[list[Any], list[tuple[int, str]]]:
    """``func`` over a batch: the values (``None`` where it raised) and (index, exception) of each raise.

    Each record is graded once: after a raise the map resumes at the next record (``extend`` keeps what
    it took before), where grading the batch again one by one called a slow function twice on every
    record of a batch with one bad record, and a stateful one twice on those before it."""
    values: list[Any] = []
    errors: list[tuple[int, str]] = []
    remaining = iter(records)
    while True:
        try:
            values.extend(map(func, remaining))
        except Exception as e:  # the record at len(values) raised; map took it from ``remaining``
            errors.append((len(values), f"{type(e).__name__}: {e}"))
            values.append(None)
            continue
        if len(values) >= len(records):
            return values, errors
        # ``func`` raised StopIteration (``next`` on an empty iterator), which ends a map as the records' end
        # does: the record it was given failed (the column had been cut short there, without an error)
        errors.append((len(values), "StopIteration"))
        values.append(None)


class GradingFunction(ABC):
    """One feature of a record: numeric, or categorical."""

    may_raise = True  # runs user code, whose exceptions the daemon dead-letters

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def evaluate(self, data_point: Any) -> float | str:
        """The graded value of one record; raises ``ValueError`` when it has none."""

    @abstractmethod
    def is_categorical(self) -> bool:
        """Whether :meth:`evaluate` returns category strings."""

    def get_categories(self) -> list[str]:
        return []

    def _raw_func(self) -> Callable[[Any], Any]:
        """The user's function whose raw result ``extract_batch`` reads."""
        return self.evaluate

    def extract_batch(self, records: Sequence[Any]) -> list[Any]:
        """Raw values for a batch; ``None`` where a record has none. Never raises."""
        return safe_map(self._raw_func(), records)

    def extract_checked(self, records: Sequence[Any]) -> tuple[list[Any], list[tuple[int, str]]]:
        """Raw values, and (index, exception) where the user's function raised."""
        return checked_map(self._raw_func(), records)

    def _call(self, func: Callable[[Any], Any], data_point: Any) -> Any:
        try:
            return func(data_point)
        except Exception as e:
            raise ValueError(f"Error evaluating {type(self).__name__} '{self.name}': {e}") from e

    # a function's boolean is 1.0 or 0.0, as the seed package graded it; a field's JSON true is a wrong type
    bools_are_numbers = True

    def _number(self, result: Any) -> float:
        """``result`` as the engine grades it (:func:`_bools_as_numbers`), or ValueError."""
        if isinstance(result, bool | np.bool_):
            if self.bools_are_numbers:
                return float(result)
        elif isinstance(result, int | float):
            return float(result)
        raise ValueError(f"{type(self).__name__} '{self.name}' got {type(result).__name__}, expected a number")

    def _category(self, result: Any, allowed: set[str]) -> str:
        """``result``'s label (JSON spelling: ``True`` is ``"true"``), as the engine compares it."""
        label = category_label(result)
        if label is None or label not in allowed:
            raise ValueError(f"{type(self).__name__} '{self.name}' got {result!r}, not one of {sorted(allowed)}")
        return label

    def make_encoder(self, panes: int, seed: int) -> Encoder:
        """The encoder the engine uses for this feature."""
        if not self.is_categorical():
            bins = getattr(self, "bins", DEFAULT_BINS)
            pair_bins = getattr(self, "pair_bins", None) or _default_pair_bins(bins)
            return NumericBinner(bins, panes=panes, seed=seed, pair_bins=pair_bins)
        categories = self.get_categories()
        if categories:
            return CategoricalEncoder(categories)
        return OpenCategoricalEncoder(getattr(self, "top_k", DEFAULT_TOP_K))


class NumericGrader(GradingFunction):
    """A number per record, binned by the window's own distribution."""

    def __init__(
        self,
        name: str,
        extractor_func: Callable[[Any], float],
        bins: int = DEFAULT_BINS,
        pair_bins: int | None = None,
    ) -> None:
        """``bins``: equal-frequency bins of the window for the number's own shares;
        ``pair_bins`` (a divisor of ``bins``): bins inside feature pairs (default:
        the coarsest divisor with at least DEFAULT_PAIR_BINS, 5 for 20)."""
        super().__init__(name)
        _check_bins(f"{type(self).__name__} '{name}'", bins, pair_bins)
        self.extractor_func = extractor_func
        # ints as given (a numpy one too): the snapshot's fingerprint holds them as JSON
        self.bins = int(bins)
        self.pair_bins = None if pair_bins is None else int(pair_bins)

    def evaluate(self, data_point: Any) -> float:
        return self._number(self._call(self.extractor_func, data_point))

    def is_categorical(self) -> bool:
        return False

    def _raw_func(self) -> Callable[[Any], Any]:
        return _bools_as_numbers(self.extractor_func)


class CategoricalGrader(GradingFunction):
    """A category from a fixed list; values outside it count as *other*."""

    def __init__(self, name: str, categories: list[str], classifier_func: Callable[[Any], str]) -> None:
        super().__init__(name)
        if not categories:
            raise ValueError(f"Categories list for '{name}' cannot be empty")
        self.categories = list(categories)  # the caller's list may change after; this grader's may not
        self.classifier_func = classifier_func
        self._category_set = set(category_names(self.categories))

    def evaluate(self, data_point: Any) -> str:
        return self._category(self._call(self.classifier_func, data_point), self._category_set)

    def is_categorical(self) -> bool:
        return True

    def get_categories(self) -> list[str]:
        return self.categories.copy()

    def _raw_func(self) -> Callable[[Any], Any]:
        return self.classifier_func


class OpenCategoricalGrader(GradingFunction):
    """A category whose values are not known ahead: the top K seen, plus *other*."""

    def __init__(self, name: str, classifier_func: Callable[[Any], Any], top_k: int = DEFAULT_TOP_K) -> None:
        super().__init__(name)
        if not _whole(top_k) or top_k < 1:  # True was a top_k of 1; 2.5 failed when the engine began
            raise ValueError(f"top_k for '{name}' must be a whole number of at least 1, not {top_k!r}")
        self.classifier_func = classifier_func
        self.top_k = int(top_k)  # a numpy int as an int: the snapshot's fingerprint holds it as JSON

    def evaluate(self, data_point: Any) -> str:
        result = self._call(self.classifier_func, data_point)
        if result is None:
            raise ValueError(f"OpenCategoricalGrader '{self.name}' got no value")
        return str(result)

    def is_categorical(self) -> bool:
        return True

    def _raw_func(self) -> Callable[[Any], Any]:
        return self.classifier_func


class LambdaGrader(GradingFunction):
    """Wraps a plain function; categorical when ``is_categorical`` (then ``categories`` required)."""

    def __init__(
        self,
        name: str,
        func: Callable[[Any], float | str],
        is_categorical: bool = False,
        categories: list[str] | None = None,
    ) -> None:
        super().__init__(name)
        if is_categorical and not categories:
            raise ValueError("categories must be provided when is_categorical=True")
        self.func = func
        self._is_categorical = is_categorical
        self.categories = list(categories or [])
        self._category_set = set(category_names(self.categories))

    def evaluate(self, data_point: Any) -> float | str:
        result = self._call(self.func, data_point)
        return self._category(result, self._category_set) if self._is_categorical else self._number(result)

    def is_categorical(self) -> bool:
        return self._is_categorical

    def get_categories(self) -> list[str]:
        return self.categories.copy()

    def _raw_func(self) -> Callable[[Any], Any]:
        return self.func if self._is_categorical else _bools_as_numbers(self.func)


class _FieldMixin:
    """Reads the feature from a dotted field path, a batch at a time."""

    may_raise = False
    bools_are_numbers = False

    field: str

    def _init_field(self, field: str, transform: str | None = None) -> None:
        self.field = field
        self.transform = transform
        getter: BatchGetter = compile_path(field)
        self._getter: BatchGetter
        if transform is not None:
            func = TRANSFORMS[transform]

            def transformed(records: Sequence[Any]) -> list[Any]:
                return func(getter(records))

            self._getter = transformed
        else:
            self._getter = getter

    def extract_batch(self, records: Sequence[Any]) -> list[Any]:
        return self._getter(records)

    def extract_checked(self, records: Sequence[Any]) -> tuple[list[Any], list[tuple[int, str]]]:
        return self._getter(records), []  # a field path never raises: a missing field is a missing value


class FieldNumericGrader(_FieldMixin, NumericGrader):
    def __init__(
        self,
        name: str,
        field: str,
        bins: int = DEFAULT_BINS,
        transform: str | None = None,
        pair_bins: int | None = None,
    ) -> None:
        self._init_field(field, transform)
        super().__init__(name, lambda r: self._getter([r])[0], bins=bins, pair_bins=pair_bins)


class FieldCategoricalGrader(_FieldMixin, CategoricalGrader):
    def __init__(self, name: str, field: str, categories: list[str], transform: str | None = None) -> None:
        self._init_field(field, transform)
        super().__init__(name, categories, lambda r: self._getter([r])[0])


class FieldOpenCategoricalGrader(_FieldMixin, OpenCategoricalGrader):
    def __init__(self, name: str, field: str, top_k: int = DEFAULT_TOP_K, transform: str | None = None) -> None:
        self._init_field(field, transform)
        super().__init__(name, lambda r: self._getter([r])[0], top_k=top_k)
