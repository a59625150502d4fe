"""filters.drop and filters.keep_always: conditions, configuration errors, and the daemon end to end."""

from __future__ import annotations

import enum
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from decimal import Decimal
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distilld.broker import free_port
from distilld.fieldpath import compile_path
from distilld.filters import Condition, Filters, FilterSettings, match
from distilld.settings import ConfigError, load_settings

from .kafka_tools import (
    DaemonProcess,
    daemon_config,
    end_offsets,
    fresh_topic,
    produce,
    read_all,
    wait_committed,
    wait_metrics,
)

RECORDS: list[Any] = [
    {"level": "error", "status": 503, "ua": "Mozilla", "flag": True},
    {"level": "info", "status": 200, "ua": "Googlebot/2.1", "flag": 1},
    {"level": "warn", "status": "404", "ua": None},
    {"status": 500.0, "ua": "curl/8"},
    "not a dict",
]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"field": "level", "equals": "error"}, [1, 0, 0, 0, 0]),
        ({"field": "flag", "equals": True}, [1, 0, 0, 0, 0]),  # true is not 1
        ({"field": "flag", "in": [1, "x"]}, [0, 1, 0, 0, 0]),
        ({"field": "ua", "regex": "(?i)bot|curl"}, [0, 1, 0, 1, 0]),
        ({"field": "status", "gte": 500}, [1, 0, 0, 1, 0]),  # "404" is a string, not a number
        ({"field": "status", "lt": 300}, [0, 1, 0, 0, 0]),
        ({"field": "status", "gt": 500}, [1, 0, 0, 0, 0]),  # the bounds: gt and lt are strict,
        ({"field": "status", "lt": 500}, [0, 1, 0, 0, 0]),
        ({"field": "status", "lte": 200}, [0, 1, 0, 0, 0]),  # gte and lte take the bound itself
        ({"field": "level", "exists": True}, [1, 1, 1, 0, 0]),
        ({"field": "ua", "exists": False}, [0, 0, 1, 0, 1]),
        ({"all": [{"field": "status", "gte": 500}, {"field": "level", "exists": True}]}, [1, 0, 0, 0, 0]),
        ({"any": [{"field": "level", "equals": "warn"}, {"field": "status", "gt": 501}]}, [1, 0, 1, 0, 0]),
        ({"not": {"field": "level", "in": ["info", "warn"]}}, [1, 0, 0, 1, 1]),
    ],
)
def test_conditions(condition: dict[str, Any], expected: list[int]) -> None:
    assert match(Condition.model_validate(condition), RECORDS).tolist() == [bool(e) for e in expected]


def test_first_drop_wins_then_keep_always() -> None:
    filters = Filters(
        FilterSettings.model_validate(
            {
                "drop": [{"name": "bots", "when": {"field": "ua", "regex": "bot"}}],
                "keep_always": [{"name": "errors", "when": {"field": "status", "gte": 500}}],
            }
        )
    )
    reduce, dropped, kept = filters.split([*RECORDS, {"ua": "bot", "status": 500}])
    assert dropped == [(1, "bots"), (5, "bots")], "a dropped record is not also kept"
    assert kept == [(0, "errors"), (3, "errors")]
    assert np.flatnonzero(reduce).tolist() == [2, 4]


BASE = {
    "kafka": {"bootstrap_servers": "b:9092", "group_id": "g", "input_topics": ["t"], "output_topic": "o"},
    "features": [{"name": "level", "type": "open_categorical"}],
    "processing": {"on_error": "skip"},
}


def _drop(when: dict[str, Any], name: str = "x") -> dict[str, Any]:
    return {"drop": [{"name": name, "when": when}]}


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (_drop({"field": "a"}), r"filters\.drop\.0\.when: .*exactly one of equals"),
        (_drop({"field": "a", "regex": "("}), r"filters\.drop\.0\.when\.regex: not a valid"),
        ({"keep_always": [{"name": "x y", "when": {"field": "a", "exists": True}}]}, r"keep_always\.0\.name"),
        (_drop({"field": "..", "exists": True}), r"filters\.drop\.0\.when\.field"),
        (
            _drop({"field": "a", "exists": True}) | {"keep_always": [{"name": "x", "when": {"field": "b", "gt": 1}}]},
            r"filters: .*distinct: x",
        ),
        (_drop({"all": [{"field": "a", "gt": "high"}]}), r"filters\.drop\.0\.when\.all\.0\.gt"),
        (_drop({"field": "a", "lt": float("nan")}), r"filters\.drop\.0\.when\.lt"),  # would never match
        # an empty all matched every record (the review's allempty.yaml dropped them all), an empty any none
        (_drop({"all": []}), r"filters\.drop\.0\.when\.all: empty: .*every record"),
        (_drop({"any": []}), r"filters\.drop\.0\.when\.any: empty: .*no record"),
        (_drop({"not": {"all": [{"field": "a", "exists": True}, {"any": []}]}}), r"when\.not\.all\.1\.any: empty"),
        # given as null: in matched nothing, regex every string, exists as false; all/any/not failed an assert
        (_drop({"field": "a", "in": None}), r"filters\.drop\.0\.when\.in: .*null: give a list of values"),
        (_drop({"field": "a", "regex": None}), r"filters\.drop\.0\.when\.regex: .*null: give a regular expression"),
        (_drop({"any": [{"field": "a", "gte": None}]}), r"filters\.drop\.0\.when\.any\.0\.gte: .*null: give a number"),
        (_drop({"field": "a", "exists": None}), r"filters\.drop\.0\.when\.exists: .*null: give true or false"),
        (_drop({"all": None}), r"filters\.drop\.0\.when\.all: .*null: give a list of conditions"),
        (_drop({"not": None}), r"filters\.drop\.0\.when\.not: .*null: give a condition"),
        # in: [] matched no record, silently (as an empty any, refused above); gt: true compared with 1.0
        (_drop({"field": "a", "in": []}), r"filters\.drop\.0\.when\.in: .*empty: it would match no record"),
        (_drop({"field": "a", "gte": True}), r"filters\.drop\.0\.when\.gte: .*true is a boolean: give a number"),
        (_drop({"field": "a", "lt": False}), r"filters\.drop\.0\.when\.lt: .*false is a boolean"),
    ],
)
def test_filter_errors_name_the_filter_and_the_reason(filters: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, **BASE, filters=filters)


def test_a_filter_error_names_the_filter_by_its_name_too() -> None:
    """Only its position was named: filters.drop.7 was hard to find in a long list."""
    filters = {"drop": [{"name": "ok", "when": {"field": "a", "gt": 1}}, {"name": "bots", "when": {"field": "ua"}}]}
    with pytest.raises(ConfigError, match=r"filters\.drop\.1\.when: .*\(filter 'bots'\)"):
        load_settings(None, **BASE, filters=filters)


@pytest.mark.kafka
def test_daemon_drops_and_keeps_always(kafka_bootstrap: str, tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    topic, group = fresh_topic(kafka_bootstrap, "filters")
    rng = np.random.default_rng(4)
    levels = rng.choice(["info", "warn", "error"], size=6000, p=[0.8, 0.17, 0.03]).tolist()
    records = [{"i": i, "level": lv, "ua": "bot" if i % 10 == 3 else "web"} for i, lv in enumerate(levels)]
    values = [orjson.dumps(r) for r in records]
    sent = produce(kafka_bootstrap, topic, values, [None] * len(values))
    port = free_port()
    config = daemon_config(kafka_bootstrap, topic, group, reducer={"key": "none"})
    config["metrics"] = {"port": port, "host": "127.0.0.1", "refresh_ms": 200}
    config["features"] = [{"name": "level", "type": "categorical", "categories": ["info", "warn", "error"]}]
    config["filters"] = {
        "drop": [{"name": "bots", "when": {"field": "ua", "equals": "bot"}}],
        "keep_always": [{"name": "errors", "when": {"field": "level", "equals": "error"}}],
    }
    d = DaemonProcess(tmp_path, config).start()
    daemons.append(d)
    bots = [r for r in records if r["ua"] == "bot"]
    errors = [r for r in records if r["ua"] != "bot" and r["level"] == "error"]
    rest = [r for r in records if r["ua"] != "bot" and r["level"] != "error"]
    wait_committed(kafka_bootstrap, group, topic, end_offsets(sent), 1, d)
    metrics = wait_metrics(
        f"http://127.0.0.1:{port}/metrics",
        lambda m: m.get(("distilld_window_records", (("kind", "received"),))) == len(rest),
        "the windows holding every record neither dropped nor kept (a gauge refresh after the last batch)",
        d,
    )
    assert d.stop() == 0, d.log()

    out = read_all(kafka_bootstrap, f"{topic}.out", expect_at_least=len(errors))
    kept = [m for m in out if dict(m.headers()).get("distilld-kept") == b"errors"]
    sampled = [m for m in out if "distilld-kept" not in dict(m.headers())]
    assert sorted(m.value() for m in kept) == sorted(orjson.dumps(r) for r in errors), "every error, once"
    assert all(dict(m.headers())["distilld-weight"] == b"1" for m in kept)
    assert not [m for m in out if orjson.loads(m.value())["ua"] == "bot"], "bots dropped"
    assert abs(len(sampled) - 0.1 * len(rest)) <= 1, "the budget covers the rest only"
    weights = sum(float(dict(m.headers())["distilld-weight"]) for m in sampled)
    assert weights == pytest.approx(len(rest), rel=0.01), "the sampled records' weights stand for the rest"
    assert Counter(orjson.loads(m.value())["level"] for m in sampled).keys() <= {"info", "warn"}

    def filtered(name: str, action: str) -> float:
        return metrics[("distilld_records_filtered_total", (("action", action), ("filter", name)))]

    assert filtered("bots", "drop") == len(bots) and filtered("errors", "keep") == len(errors)
    assert metrics[("distilld_window_records", (("kind", "received"),))] == len(rest), "kept and dropped: not windowed"


# The filters value by value, per record (as distilld 0.x ran them, with the decisions of the module's
# docstring since): the oracle the columnar ones must agree with on every input, odd values included.


def _old_match(condition: Condition, records: Sequence[Any]) -> np.ndarray:
    n = len(records)
    if condition.all_ is not None:
        out = np.ones(n, dtype=bool)
        for c in condition.all_:
            out &= _old_match(c, records)
        return out
    if condition.any_ is not None:
        out = np.zeros(n, dtype=bool)
        for c in condition.any_:
            out |= _old_match(c, records)
        return out
    if condition.not_ is not None:
        return ~_old_match(condition.not_, records)
    assert condition.field is not None
    values = compile_path(condition.field)(records)
    fields = condition.model_fields_set
    if "exists" in fields:
        present = np.fromiter((v is not None for v in values), dtype=bool, count=n)
        return present if condition.exists else ~present
    if "equals" in fields:
        want = condition.equals
        return np.fromiter((_old_equal(v, want) for v in values), dtype=bool, count=n)
    if "in_" in fields:
        allowed = condition.in_ or []
        return np.fromiter((any(_old_equal(v, a) for a in allowed) for v in values), dtype=bool, count=n)
    if "regex" in fields:
        search = re.compile(condition.regex or "").search
        return np.fromiter((isinstance(v, str) and search(v) is not None for v in values), dtype=bool, count=n)
    numbers = np.array([_old_number(v) for v in values], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        if "gt" in fields:
            return numbers > condition.gt
        if "gte" in fields:
            return numbers >= condition.gte
        if "lt" in fields:
            return numbers < condition.lt
        return numbers <= condition.lte


def _old_number(value: Any) -> float:
    """A number as a float (±inf kept, an int past the floats as ±inf), NaN for the rest (booleans too)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, Real | Decimal):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return -math.inf if value < 0 else math.inf
    except ValueError:
        return math.nan


def _old_equal(value: Any, want: Any) -> bool:
    """``==``; booleans only booleans, lists only lists and dicts only dicts, item by item; no arrays."""
    if isinstance(want, list):
        return isinstance(value, list) and len(value) == len(want) and all(map(_old_equal, value, want))
    if isinstance(want, dict):
        return (
            isinstance(value, dict) and value.keys() == want.keys() and all(_old_equal(value[k], want[k]) for k in want)
        )
    if isinstance(value, bool | np.bool_) != isinstance(want, bool | np.bool_):
        return False
    try:
        same = value == want
    except Exception:
        return False
    return isinstance(same, bool | np.bool_) and bool(same)


def _old_split(configured: FilterSettings, records: Sequence[Any]) -> tuple[list[bool], list[Any], list[Any]]:
    reduce = np.ones(len(records), dtype=bool)
    dropped: list[tuple[int, str]] = []
    kept: list[tuple[int, str]] = []
    for specs, out in ((configured.drop, dropped), (configured.keep_always, kept)):
        for spec in specs:
            hit = reduce & _old_match(spec.when, records)
            if hit.any():
                out.extend((i, spec.name) for i in np.flatnonzero(hit).tolist())
                reduce &= ~hit
    return reduce.tolist(), sorted(dropped), sorted(kept)


class _EqualsAll:
    """``==`` anything (and unhashable, as a class with ``__eq__`` alone is)."""

    def __eq__(self, other: object) -> bool:
        return True


class _EqualsRaises:
    def __eq__(self, other: object) -> bool:
        raise RuntimeError("cannot compare")

    __hash__ = object.__hash__


class _EqualsArray:
    """``==`` gives an array, as numpy's do: ``bool()`` of it raises."""

    def __eq__(self, other: object) -> Any:
        return np.array([True, False])

    __hash__ = object.__hash__


class _Text(str):
    pass


class _Level(enum.IntEnum):
    ONE = 1


# JSON's values, with the pairs that are == across types (True and 1, 1 and 1.0, -0.0 and 0), NaN (one object
# shared by the configuration and the records: == is False but a set finds it), ints too large for a float
PLAIN: list[Any] = [
    None, True, False, 0, 1, 1.0, -0.0, 0.5, 500, 2**53 + 1, 2.0**53, 10**400, math.nan, math.inf, -math.inf,
    "", "1", "1.0", "x", "bot", "Googlebot/2.1", "curl/8",
]  # fmt: skip
ODD: list[Any] = [
    *PLAIN, float("nan"), np.int64(1), np.float64(1.0), np.float64("nan"), np.float32(0.5), np.bool_(True),
    np.bool_(False), np.str_("x"), np.array([1.0]), Decimal("1"), Decimal("NaN"), b"x", _Text("bot"), _Level.ONE,
    _EqualsAll(), _EqualsRaises(), _EqualsArray(), np.array([1, 2]), Decimal("sNaN"), (1, 2), frozenset({1}),
]  # fmt: skip
odd_values = st.recursive(
    st.sampled_from(ODD) | st.integers() | st.floats() | st.text(max_size=2),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["x", "0"]), inner, max_size=2),
    max_leaves=3,
)
plain_values = st.sampled_from(PLAIN)
PATTERNS = ["", "^x$", "(?i)bot", "1", "^$", r"\d", "x|1"]
thresholds = st.sampled_from([0, 1, 0.5, 500, -1, 1e308, 2.0**53]) | st.floats(allow_nan=False, allow_infinity=False)


def _conditions(fields: list[str], values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Conditions on ``fields``, ``equals`` and ``in`` given ``values``; ``all``/``any``/``not`` of them."""
    field = st.sampled_from(fields)
    tests = st.one_of(
        st.builds(lambda f, v: {"field": f, "equals": v}, field, values),
        st.builds(lambda f, v: {"field": f, "in": v}, field, st.lists(values, min_size=1, max_size=4)),
        st.builds(lambda f, v: {"field": f, "regex": v}, field, st.sampled_from(PATTERNS)),
        st.builds(lambda f, op, v: {"field": f, op: v}, field, st.sampled_from(["gt", "gte", "lt", "lte"]), thresholds),
        st.builds(lambda f, v: {"field": f, "exists": v}, field, st.booleans()),
    )
    return st.recursive(
        tests,
        lambda inner: st.one_of(
            st.builds(lambda cs: {"all": cs}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda cs: {"any": cs}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda c: {"not": c}, inner),
        ),
        max_leaves=4,
    )


odd_records = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "a": odd_values,
            "b": odd_values,
            "n": st.dictionaries(st.sampled_from(["x", "0"]), odd_values, max_size=2) | odd_values,
            "l": st.lists(odd_values, max_size=2),
        },
    ),
    st.sampled_from([None, "a", 1, ["x"], _EqualsAll()]),
)
plain_records = st.fixed_dictionaries({"a": plain_values}, optional={"b": plain_values})
EQUIVALENCE = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _outcome(f: Callable[[], Any]) -> Any:
    """What ``f`` returns, or the error it raises (type and message)."""
    try:
        return f()
    except Exception as e:
        return (type(e), str(e))


def _settings(drop: list[dict[str, Any]], keep: list[dict[str, Any]]) -> FilterSettings:
    return FilterSettings.model_validate(
        {
            "drop": [{"name": f"drop{i}", "when": c} for i, c in enumerate(drop)],
            "keep_always": [{"name": f"keep{i}", "when": c} for i, c in enumerate(keep)],
        }
    )


def _same_decisions(configured: FilterSettings, batch: list[Any]) -> None:
    for spec in configured.drop + configured.keep_always:
        old = _outcome(lambda spec=spec: _old_match(spec.when, batch).tolist())
        assert _outcome(lambda spec=spec: match(spec.when, batch).tolist()) == old, spec.when

    def split() -> tuple[list[bool], list[Any], list[Any]]:
        reduce, dropped, kept = Filters(configured).split(batch)
        assert reduce.dtype == bool and reduce.shape == (len(batch),)
        return reduce.tolist(), dropped, kept

    assert _outcome(split) == _outcome(lambda: _old_split(configured, batch))


@EQUIVALENCE
@given(
    drop=st.lists(_conditions(["a", "b", "n.x", "l.0", "a|b", "n.0"], odd_values), max_size=3),
    keep=st.lists(_conditions(["a", "b", "n.x", "l.0", "a|b", "n.0"], odd_values), max_size=2),
    batch=st.lists(odd_records, max_size=25),
)
def test_columnar_filters_decide_as_the_per_record_ones(
    drop: list[dict[str, Any]], keep: list[dict[str, Any]], batch: list[Any]
) -> None:
    """Odd values (numpy's, subclasses, unhashables, ``==`` that raises or gives an array) in the
    records and the configuration (the Python API takes any): the same decisions, or the same error."""
    _same_decisions(_settings(drop, keep), batch)


@EQUIVALENCE
@given(
    drop=st.lists(_conditions(["a", "b", "a|b"], plain_values), max_size=3),
    keep=st.lists(_conditions(["a", "b"], plain_values), max_size=2),
    batch=st.lists(plain_records, max_size=30),
)
def test_columnar_filters_decide_as_the_per_record_ones_on_json_values(
    drop: list[dict[str, Any]], keep: list[dict[str, Any]], batch: list[Any]
) -> None:
    """JSON's values, where the columnar paths run, from a few that compare equal across types."""
    _same_decisions(_settings(drop, keep), batch)


ODD_CELLS: list[Any] = [True, 1, 1.0, -0.0, np.bool_(True), np.int64(1), "1", None, [1], {"x": 1}, math.nan]


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ({"field": "a", "equals": 1}, [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0]),  # numpy's true is a bool, not 1
        ({"field": "a", "equals": True}, [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
        ({"field": "a", "in": [0, "1"]}, [0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0]),
        ({"field": "a", "in": [True, 1.0]}, [1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0]),
        ({"field": "a", "equals": None}, [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]),
        # a list equals only a list: numpy's scalars do not broadcast to it ([1] == np.int64(1) is an array)
        ({"field": "a", "in": [[1]]}, [0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]),
        ({"field": "a", "in": [[True]]}, [0] * 11),  # inside a list too, true is not 1
        ({"field": "a", "equals": {"x": 1}}, [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
        ({"field": "a", "equals": {"x": 1.0}}, [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
        ({"field": "a", "in": [math.nan]}, [0] * 11),  # NaN equals nothing, not even itself
    ],
)
def test_equals_and_in_compare_as_python_does_but_booleans_equal_only_booleans(
    when: dict[str, Any], expected: list[int]
) -> None:
    records = [{"a": v} for v in ODD_CELLS]
    condition = Condition.model_validate(when)
    assert match(condition, records).tolist() == [bool(e) for e in expected]
    assert _old_match(condition, records).tolist() == [bool(e) for e in expected]


@pytest.mark.parametrize(
    ("values", "when", "expected"),
    [
        (["bot", _Text("bot"), np.str_("bot"), b"bot", None, ["bot"], 7], {"regex": "bot"}, [1, 1, 1, 0, 0, 0, 0]),
        (["Bot", "bot", "Bot", "x"], {"regex": "^Bot$"}, [1, 0, 1, 0]),  # the same string twice: searched once
        ([1, None, 2.5, 10**400, True, "3", np.float64(4), Decimal("5")], {"gt": 0}, [1, 0, 1, 1, 0, 0, 1, 1]),
        ([math.inf, -math.inf, 1.0, math.nan], {"lt": 2}, [0, 1, 1, 0]),  # infinite: the number it is
        ([math.inf, -math.inf, 1.0, math.nan], {"gt": 0}, [1, 0, 1, 0]),
        (
            [-(10**400), 10**400, np.float64("-inf"), Decimal("-Infinity"), Decimal("sNaN")],
            {"lte": -1e308},
            [1, 0, 1, 1, 0],
        ),
        ([np.bool_(True), np.bool_(False), np.float32("inf"), Decimal("NaN")], {"gte": 0}, [0, 0, 1, 0]),
        ([None, 1.5, None], {"gte": 1.5}, [0, 1, 0]),
        ([None, 0, "", False], {"exists": True}, [0, 1, 1, 1]),
    ],
)
def test_regex_numbers_and_exists_on_odd_values(values: list[Any], when: dict[str, Any], expected: list[int]) -> None:
    records = [{"a": v} for v in values]
    condition = Condition.model_validate({"field": "a", **when})
    assert match(condition, records).tolist() == [bool(e) for e in expected]
    assert _old_match(condition, records).tolist() == [bool(e) for e in expected]


def test_a_value_whose_equality_raises_or_broadcasts_matches_nothing_and_the_batch_is_filtered() -> None:
    """An ``==`` that raises, or answers with an array (numpy's), made the whole batch's filters raise:
    now that record does not match that test, and every other record is filtered as ever."""
    odd = [_EqualsRaises(), _EqualsArray(), np.array([1, 2]), np.array(["x"]), np.array([1.0])]
    records = [{"a": "x"}, *({"a": v} for v in odd), {"a": "y"}, {"a": 1}]
    for when, expected in [
        ({"field": "a", "equals": "x"}, [1, 0, 0, 0, 0, 0, 0, 0]),
        ({"field": "a", "in": ["x", 1]}, [1, 0, 0, 0, 0, 0, 0, 1]),
        ({"field": "a", "equals": [1, 2]}, [0] * 8),  # an array is no list
    ]:
        condition = Condition.model_validate(when)
        assert match(condition, records).tolist() == [bool(e) for e in expected], when
        assert _old_match(condition, records).tolist() == [bool(e) for e in expected], when
    filters = Filters(_settings([{"field": "a", "equals": "y"}], [{"field": "a", "in": ["x", 1]}]))
    reduce, dropped, kept = filters.split(records)
    assert dropped == [(6, "drop0")] and kept == [(0, "keep0"), (7, "keep0")]
    assert np.flatnonzero(reduce).tolist() == [1, 2, 3, 4, 5], "the odd ones are reduced"
    everything = Condition.model_validate({"field": "a", "equals": "x"})
    assert match(everything, [{"a": _EqualsAll()}, {"a": "y"}]).tolist() == [True, False], "== answering true matches"


def test_null_and_a_missing_field_are_the_same_to_every_test() -> None:
    records = [{"a": None}, {}, {"a": 0}, "not a dict", {"a": [None]}]
    for when, expected in [
        ({"equals": None}, [1, 1, 0, 1, 0]),
        ({"in": [None, 0]}, [1, 1, 1, 1, 0]),
        ({"exists": False}, [1, 1, 0, 1, 0]),
        ({"equals": [None]}, [0, 0, 0, 0, 1]),
    ]:
        condition = Condition.model_validate({"field": "a", **when})
        assert match(condition, records).tolist() == [bool(e) for e in expected], when


def test_split_names_each_record_by_its_first_filter_in_index_order() -> None:
    filters = Filters(
        _settings(
            [{"field": "a", "gt": 2}, {"field": "a", "exists": True}],
            [{"field": "b", "equals": "x"}, {"field": "b", "exists": True}],
        )
    )
    batch = [{"a": 3}, {"a": 1}, {"b": "y"}, {"a": 5, "b": "x"}, {"b": "x"}, {}]
    reduce, dropped, kept = filters.split(batch)
    assert dropped == [(0, "drop0"), (1, "drop1"), (3, "drop0")]
    assert kept == [(2, "keep1"), (4, "keep0")]
    assert reduce.tolist() == [False, False, False, False, False, True]
    assert filters.split([])[0].tolist() == [] and filters.split([])[1:] == ([], [])
