"""Config-driven features: ``features: [{name, type, field, …}]`` → graders.

The daemon, the file tool and the library build graders from the same list;
an invalid entry is reported with its position, its name and the reason.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from distilld.encoding import category_names, reserved_labels
from distilld.fieldpath import parse_path
from distilld.graders import (
    DEFAULT_BINS,
    DEFAULT_TOP_K,
    CategoricalGrader,
    FieldCategoricalGrader,
    FieldNumericGrader,
    FieldOpenCategoricalGrader,
    GradingFunction,
    LambdaGrader,
    NumericGrader,
    OpenCategoricalGrader,
)

__all__ = [
    "FeatureConfigError",
    "FeatureSpec",
    "build_graders",
    "create_grading_functions",
    "load_callable",
]


class FeatureConfigError(ValueError):
    """An entry of ``features`` is invalid; the message names it and says why."""


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$")]
    field: str | None = None
    transform: Literal["url_host", "url_path", "length", "lower"] | None = None

    @field_validator("field")
    @classmethod
    def _valid_path(cls, value: str | None) -> str | None:
        if value is not None:
            parse_path(value)
        return value

    @property
    def path(self) -> str:
        return self.field or self.name


def _no_boolean(value: Any) -> Any:
    """Refuse a boolean where a count goes: pydantic reads ``true`` as 1 (``top_k: yes`` kept one value)."""
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is a boolean, not a whole number (YAML reads yes, no, on, off as one)")
    return value


_Bins = Annotated[int, BeforeValidator(_no_boolean), Field(ge=2, le=256)]
_TopK = Annotated[int, BeforeValidator(_no_boolean), Field(ge=1, le=4096)]


class _Binned(BaseModel):
    """A numeric's bins: ``bins`` for its own shares, ``pair_bins`` (a divisor) inside pairs."""

    bins: _Bins = DEFAULT_BINS
    pair_bins: _Bins | None = None

    @model_validator(mode="after")
    def _nested(self) -> _Binned:
        if self.pair_bins is not None and self.bins % self.pair_bins:
            raise ValueError(f"pair_bins ({self.pair_bins}) must divide bins ({self.bins})")
        return self


class NumericFeature(_Base, _Binned):
    type: Literal["numeric"]

    @field_validator("transform")
    @classmethod
    def _gives_numbers(cls, value: str | None) -> str | None:
        if value in ("url_host", "url_path"):
            raise ValueError(
                f"{value} gives text, never a number: every value would count as missing "
                "(an open_categorical feature grades it)"
            )
        if value == "lower":
            raise ValueError("lower turns text to lower case, and a numeric grades numbers: it changes nothing")
        return value


def _labels(value: Any) -> Any:
    """Numbers in ``categories`` as the labels a record's numbers are compared as (``[200, 404]``: a record's
    404 and "404" are the category "404"), as the Python graders take them; a boolean is refused, for YAML
    reads an unquoted yes, no, on or off as one, and ``[yes, no]`` would become "true" and "false"."""
    if not isinstance(value, list):
        return value
    for item in value:
        if isinstance(item, bool):
            raise ValueError(
                f"{item} is a boolean: quote the category ('{str(item).lower()}' matches a record's "
                f"{str(item).lower()}; YAML reads yes, no, on and off unquoted as booleans too)"
            )
    return [category_names([item])[0] if isinstance(item, int | float) else item for item in value]


Categories = Annotated[list[str], BeforeValidator(_labels), Field(min_length=1, max_length=4096)]


def _categories(value: list[str] | None) -> list[str] | None:
    """A pydantic check of ``categories``, for every type that takes them: distinct, and none
    spelled like distilld's labels for other and missing values (the encoder refuses those)."""
    if value is not None:
        twice = sorted({c for c in value if value.count(c) > 1})
        if twice:
            raise ValueError(f"categories must be distinct: {', '.join(map(repr, twice))} given twice")
        reserved_labels(value)
    return value


# what a transform can give, as the label a category must be to match it: lower and url_host give
# lower-case text (urlsplit lowers hosts and schemes), length a whole number as str writes it, no leading
# zero (url_path: any text)
_TRANSFORM_GIVES: dict[str, tuple[str, Callable[[str], bool]]] = {
    "lower": ("lower-case text", lambda c: c == c.lower()),
    "url_host": ("lower-case host names", lambda c: c == c.lower()),
    "length": ("whole numbers", lambda c: c.isascii() and c.isdigit() and c == str(int(c))),
}


class CategoricalFeature(_Base):
    type: Literal["categorical"]
    categories: Categories

    _distinct = field_validator("categories")(_categories)

    @model_validator(mode="after")
    def _reachable(self) -> CategoricalFeature:
        """A category the transform never gives would count nothing (``transform: lower`` and ``Click``)."""
        if self.transform in _TRANSFORM_GIVES:
            gives, can_give = _TRANSFORM_GIVES[self.transform]
            never = [c for c in self.categories if not can_give(c)]
            if never:
                raise ValueError(
                    f"categories: {', '.join(map(repr, never))} would never match: "
                    f"transform {self.transform} gives {gives}"
                )
        return self


class OpenCategoricalFeature(_Base):
    type: Literal["open_categorical"]
    top_k: _TopK = DEFAULT_TOP_K


# a custom feature's encoding settings, and the value_type that reads each
_ENCODING_SETTINGS = {
    "bins": "numeric",
    "pair_bins": "numeric",
    "categories": "categorical",
    "top_k": "open_categorical",
}


ENTRY_POINT_GROUP = "distilld.graders"
_FUNCTION = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*|[A-Za-z_][\w.\-]*")


class CustomFeature(_Base, _Binned):
    type: Literal["custom"]
    # package.module:callable, or the name of an entry point in the group distilld.graders
    function: str

    value_type: Literal["numeric", "categorical", "open_categorical"] = "numeric"
    categories: Categories | None = None
    top_k: _TopK = DEFAULT_TOP_K

    _distinct = field_validator("categories")(_categories)

    @field_validator("function")
    @classmethod
    def _function(cls, value: str) -> str:
        if not _FUNCTION.fullmatch(value):
            raise ValueError(
                f"{value!r}: expected package.module:callable (mypkg.graders:age_band) "
                f"or the name of an entry point in the group {ENTRY_POINT_GROUP}"
            )
        return value

    @field_validator("field", "transform")
    @classmethod
    def _unused(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            raise ValueError(
                f"a custom feature's function reads the record itself and does its own transforming: "
                f"{info.field_name} would not be used"
            )
        return value

    @model_validator(mode="after")
    def _used(self) -> CustomFeature:
        """The settings of another value_type than this feature's would be ignored: refused."""
        unused = [
            f"{key}: not used by value_type {self.value_type!r} (only by {kind})"
            for key, kind in _ENCODING_SETTINGS.items()
            if key in self.model_fields_set and getattr(self, key) is not None and kind != self.value_type
        ]
        if self.value_type == "categorical" and self.categories is None:
            unused.append("categories: value_type 'categorical' needs them")
        if unused:
            raise ValueError("; ".join(unused))
        return self


FeatureSpec = Annotated[
    NumericFeature | CategoricalFeature | OpenCategoricalFeature | CustomFeature,
    Field(discriminator="type"),
]
_feature_list: TypeAdapter[list[FeatureSpec]] = TypeAdapter(list[FeatureSpec])


def load_callable(spec: str) -> Any:
    """Import ``package.module:attr`` and return it; a name without a colon is an
    entry point of the group ``distilld.graders`` (a user package's named grader)."""
    if ":" not in spec:
        found = entry_points(group=ENTRY_POINT_GROUP, name=spec)
        if not found:
            known = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
            raise LookupError(
                f"no grader {spec!r} in the entry point group {ENTRY_POINT_GROUP}"
                f" (installed: {', '.join(known) or 'none'}); or give package.module:callable"
            )
        obj: Any = next(iter(found)).load()
    else:
        module_name, _, attr = spec.partition(":")
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    # an entry point's too: one naming a module or a constant raised on every record (each dead-lettered)
    if not callable(obj) and not isinstance(obj, GradingFunction):
        raise TypeError(f"{spec} is not callable")
    return obj


class _Refused(ValueError):
    """A custom feature's settings that its function, once loaded, shows to be wrong."""


def _custom_grader(spec: CustomFeature) -> GradingFunction:
    obj = load_callable(spec.function)
    grader_class = isinstance(obj, type) and issubclass(obj, GradingFunction)
    if isinstance(obj, GradingFunction) or grader_class:
        unused = sorted(
            k for k in {"value_type", *_ENCODING_SETTINGS} & spec.model_fields_set if getattr(spec, k) is not None
        )
        if unused:
            raise _Refused(
                f"{spec.function} is a GradingFunction, which encodes its own values: {', '.join(unused)} not used"
            )
        return obj(spec.name) if grader_class else obj
    if spec.value_type == "numeric":
        return NumericGrader(spec.name, obj, bins=spec.bins, pair_bins=spec.pair_bins)
    if spec.value_type == "categorical":
        assert spec.categories is not None  # the model requires them
        return CategoricalGrader(spec.name, spec.categories, obj)
    return OpenCategoricalGrader(spec.name, obj, top_k=spec.top_k)


def grader_from_spec(
    spec: NumericFeature | CategoricalFeature | OpenCategoricalFeature | CustomFeature,
) -> GradingFunction:
    if isinstance(spec, NumericFeature):
        return FieldNumericGrader(
            spec.name, spec.path, bins=spec.bins, transform=spec.transform, pair_bins=spec.pair_bins
        )
    if isinstance(spec, CategoricalFeature):
        return FieldCategoricalGrader(spec.name, spec.path, spec.categories, transform=spec.transform)
    if isinstance(spec, OpenCategoricalFeature):
        return FieldOpenCategoricalGrader(spec.name, spec.path, top_k=spec.top_k, transform=spec.transform)
    return _custom_grader(spec)


def _describe(entries: Sequence[Any], index: int) -> str:
    entry = entries[index] if index < len(entries) else None
    name = entry.get("name") if isinstance(entry, Mapping) else None
    return f"features[{index}]" + (f" ({name!r})" if name else "")


def parse_features(entries: Sequence[Any]) -> list[Any]:
    """Validate the ``features`` list; raise :class:`FeatureConfigError` naming the bad entry."""
    if not isinstance(entries, Sequence) or isinstance(entries, str | bytes):
        raise FeatureConfigError("features: expected a list of {name, type, field, ...} entries")
    try:
        specs = _feature_list.validate_python(list(entries))
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = list(err["loc"])
            index = loc[0] if loc and isinstance(loc[0], int) else 0
            where = ".".join(str(p) for p in loc[2:] if not isinstance(p, int))
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{_describe(entries, index)}: {f'{where}: ' if where else ''}{msg}")
        raise FeatureConfigError("\n".join(dict.fromkeys(lines))) from None
    names = [s.name for s in specs]
    for i, name in enumerate(names):
        if names.index(name) != i:
            raise FeatureConfigError(f"{_describe(entries, i)}: name: duplicate feature name")
    if not specs:
        raise FeatureConfigError("features: at least one feature is needed")
    return specs


def build_graders(entries: Sequence[Any]) -> dict[str, GradingFunction]:
    """The ``features`` list of the config file → graders by name."""
    specs = parse_features(entries)
    graders: dict[str, GradingFunction] = {}
    for i, spec in enumerate(specs):
        try:
            graders[spec.name] = grader_from_spec(spec)
        except Exception as e:
            said = str(e) if isinstance(e, _Refused) else f"{type(e).__name__}: {e}"  # ours, or the function's
            raise FeatureConfigError(f"{_describe(entries, i)}: {said}") from None
    return graders


def _from_seed_dict(config: Mapping[str, Any]) -> dict[str, GradingFunction]:
    """The seed package's form: ``{name: {"type": ..., "function": callable, ...}}``."""
    graders: dict[str, GradingFunction] = {}
    for name, spec in config.items():
        if not isinstance(spec, Mapping):
            raise ValueError(f"Configuration for '{name}' must be a dictionary")
        if "type" not in spec:
            raise ValueError(f"Configuration for '{name}' must specify 'type'")
        if "function" not in spec or not callable(spec["function"]):
            raise ValueError(f"Configuration for '{name}' must specify a callable 'function'")
        kind, func = spec["type"], spec["function"]
        if kind == "numeric":
            graders[name] = NumericGrader(name, func)
        elif kind == "categorical":
            if not isinstance(spec.get("categories"), list):
                raise ValueError(f"Categorical configuration for '{name}' must specify 'categories' as a list")
            graders[name] = CategoricalGrader(name, spec["categories"], func)
        elif kind == "lambda":
            graders[name] = LambdaGrader(
                name, func, is_categorical=spec.get("is_categorical", False), categories=spec.get("categories")
            )
        else:
            raise ValueError(
                f"Unknown function type '{kind}' for '{name}'. Must be 'numeric', 'categorical', or 'lambda'"
            )
    return graders


def create_grading_functions(config: Mapping[str, Any] | Sequence[Any]) -> dict[str, GradingFunction]:
    """Graders from either the seed's dict form or distilld's ``features`` list."""
    if isinstance(config, Mapping):
        return _from_seed_dict(config)
    return build_graders(config)
