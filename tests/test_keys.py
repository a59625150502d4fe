"""Which keys share a window: JSON values, told apart as a Kafka user tells them apart.

``true`` and ``1`` are two keys (Python's ``True == 1`` made them one); ``1`` and ``1.0``
are one number, one key; ``[1, 2]`` is a JSON array, never the string ``"[1, 2]"``.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import orjson
from hypothesis import example, given
from hypothesis import strategies as st

from distilld import DistilledProcessor, build_graders
from distilld.processor import index_keys

from .conftest import FakeClock
from .test_engine_properties import FAST

ONE = [{"name": "c", "type": "categorical", "categories": ["a", "b", "c"]}]
NAN = float("nan")  # one object: tuples holding it are equal in Python


def _proc(max_keys: int = 10_000) -> DistilledProcessor:
    return DistilledProcessor(
        build_graders(ONE), 600, 0.5, 100, key_func=lambda r: r["user"], max_keys=max_keys, clock=FakeClock()
    )


def _json_identity(key: Any) -> Any:
    """The test's own oracle: a bool is never a number; numbers equal as numbers are one key; NaN is
    None; a list is a JSON array (not a tuple), a dict a JSON object (its members in any order)."""
    if isinstance(key, bool | np.bool_):
        return ("bool", bool(key))
    if isinstance(key, float | np.floating) and math.isnan(key):
        return None
    if isinstance(key, tuple):
        return ("tuple", tuple(map(_json_identity, key)))
    if isinstance(key, frozenset):
        return ("frozenset", frozenset(map(_json_identity, key)))
    if isinstance(key, list):
        return ("list", tuple(map(_json_identity, key)))
    if isinstance(key, dict):
        return ("dict", frozenset((_json_identity(n), _json_identity(v)) for n, v in key.items()))
    return key.item() if isinstance(key, np.generic) else key  # np.int64(1) is 1


def _received(proc: DistilledProcessor) -> list[tuple[Any, int]]:
    """(the key as held, records in its window) of each held key (a list: True and 1 would be one dict key)."""
    w = proc._windows
    return [(w.key_of[slot], int(w.totals[0, slot, 0])) for slot in w.slot_of.values()]


def _by_identity(proc: DistilledProcessor) -> dict[Any, int]:
    return {_json_identity(k): n for k, n in _received(proc)}


def test_true_and_1_get_windows_of_their_own() -> None:
    """``"user": true`` and ``"user": 1`` shared a window (and ``false`` and ``0``): one user's records
    counted in another's window and budget, and the DataPoints of both said the key was the first seen."""
    values = [b"true", b"1", b"false", b"0", b"1.0"]
    records = [orjson.loads(b'{"c": "a", "user": %s}' % values[i % 5]) for i in range(100)]
    proc = _proc()
    out = proc.process_batch(records)
    assert proc.keys_held == 4, "true, 1 (and 1.0), false, 0"
    assert _received(proc) == [(True, 20), (1, 40), (False, 20), (0, 20)], "1 and 1.0 are one number"
    assert [type(k) for k, _ in _received(proc)] == [bool, int, bool, int]
    for dp in out:
        assert isinstance(dp.key, bool) == isinstance(dp.data["user"], bool)


def test_true_and_1_are_told_apart_across_batches_and_evictions() -> None:
    """The key table, not only a batch's keys, tells them apart: 1 arriving after true took true's window;
    an eviction releases the key it evicts, not one equal to it."""
    proc = _proc()
    proc.process_batch([{"c": "a", "user": True}] * 10)
    proc.process_batch([{"c": "a", "user": 1}] * 6)
    assert _by_identity(proc) == {("bool", True): 10, 1: 6}
    small = _proc(max_keys=1)
    for user in (True, 1, True, 1.0, False, 0):
        small.process_batch([{"c": "a", "user": user}])
    assert small.keys_held == 1 and small.keys_evicted == 5
    assert _received(small) == [(0, 1)] and type(_received(small)[0][0]) is int


def test_tuples_and_frozensets_holding_bools_are_told_apart_from_those_holding_numbers() -> None:
    proc = DistilledProcessor(build_graders(ONE), 600, 0.5, 100, key_func=lambda r: r["k"], clock=FakeClock())
    keys: list[Any] = [("u", True), ("u", 1), ("u", 1.0), frozenset({True, "x"}), frozenset({1, "x"}), (("u", False),)]
    out = proc.process_batch([{"c": "a", "k": keys[i % len(keys)]} for i in range(60)])
    assert proc.keys_held == 5
    expected = Counter(map(_json_identity, keys * 10))
    assert _by_identity(proc) == expected, "(u, 1.0) is (u, 1)"
    assert all(_json_identity(dp.key) == _json_identity(dp.data["k"]) for dp in out)


scalar_keys = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 3), st.sampled_from([0.0, -0.0, 1.0, 2.5]),
    st.sampled_from(["", "1", "True", "[1, 2]", "[]", "{'a': 1}", "{}"]), st.just(np.True_), st.just(np.int64(1)),
    st.builds(float, st.just("nan")), st.just(np.float64("nan")),  # a new NaN each: none equals another
)  # fmt: skip
keys_strategy = st.recursive(
    scalar_keys,
    lambda inner: st.one_of(
        st.tuples(inner, inner),
        st.frozensets(scalar_keys, max_size=2),
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2),
    ),
    max_leaves=6,
)


@FAST
@given(raw=st.lists(keys_strategy, max_size=60))
@example(raw=[np.int64(1), (None, None), np.True_])  # a boolean taken in by a number, next to a tuple key
@example(raw=[[1, 2], "[1, 2]", [1.0, 2], {"a": 1, "b": 2}, {"b": 2, "a": 1}, "{'a': 1, 'b': 2}", (1, 2)])
@example(raw=[("a", float("nan")), ("a", float("nan")), ("a", None), [float("nan")], [None]])
@example(raw=[(True, None), (np.True_, NAN), (np.int64(1), NAN)])  # (1, NAN)'s entry: its first record went to another
def test_records_share_an_index_exactly_when_their_keys_are_the_same_json_value(raw: list[Any]) -> None:
    """index_keys (the processor, the daemon and the file tools all key through it): two records share
    an entry iff their keys are the same JSON value; each entry's key is its first record's (None for
    a NaN), in order of first appearance."""
    index, keys = index_keys(raw)
    ident = list(map(_json_identity, raw))
    assert len(index) == len(raw)
    for i in range(len(raw)):
        for j in range(i):
            assert (index[i] == index[j]) == (ident[i] == ident[j]), (raw[i], raw[j])
    firsts = sorted({int(x): i for i, x in reversed(list(enumerate(index)))}.items())
    assert [e for e, _ in firsts] == list(range(len(keys))), "entries numbered in order of first appearance"
    for entry, row in firsts:
        assert keys[entry] is raw[row] or (ident[row] is None and keys[entry] is None)


@FAST
@given(batches=st.lists(st.lists(st.sampled_from([True, False, 0, 1, 1.0, "1", None]), max_size=8), max_size=6))
def test_each_json_value_has_one_window_however_the_batches_fall(batches: list[list[Any]]) -> None:
    proc = _proc()
    expected: Counter[Any] = Counter()
    for batch in batches:
        proc.process_batch([{"c": "a", "user": u} for u in batch])
        expected.update(map(_json_identity, batch))
    assert _by_identity(proc) == expected


def test_a_json_array_or_object_key_is_never_the_string_of_its_repr() -> None:
    """A key field holding ``[1, 2]`` stood in by its repr, the string ``"[1, 2]"``: it shared a window with
    records whose key is that string, and ``[1, 2]`` and ``[1.0, 2]`` (one JSON value) were two keys, as
    were ``{"a": 1, "b": 2}`` and ``{"b": 2, "a": 1}``. The keys users see are the records' own values."""
    users = [b"[1, 2]", b'"[1, 2]"', b"[1.0, 2]", b'{"a": 1, "b": 2}', b'{"b": 2, "a": 1}', b"\"{'a': 1, 'b': 2}\""]
    records = [orjson.loads(b'{"c": "a", "user": %s}' % users[i % len(users)]) for i in range(60)]
    proc = _proc()
    out = proc.process_batch(records)
    assert _received(proc) == [([1, 2], 20), ("[1, 2]", 10), ({"a": 1, "b": 2}, 20), ("{'a': 1, 'b': 2}", 10)]
    assert [type(k) for k, _ in _received(proc)] == [list, str, dict, str]
    for dp in out:
        assert _json_identity(dp.key) == _json_identity(dp.data["user"]) and type(dp.key) is type(dp.data["user"])
    proc.process_batch([{"c": "b", "user": [1, 2.0]}, {"c": "b", "user": (1, 2)}, {"c": "b", "user": [[1, 2]]}])
    assert proc.keys_held == 6, (
        "a later batch finds [1, 2]'s window; a tuple and a list in a list are keys of their own"
    )


def test_a_nan_inside_a_tuple_key_is_one_key_as_a_nan_key_is() -> None:
    """``key_func`` giving ``("a", nan)``: NaN equals nothing, not even itself, so each record opened a
    window of its own. A NaN inside a key is a missing value, None, as a NaN key is."""
    proc = DistilledProcessor(
        build_graders(ONE), 600, 0.5, 100, key_func=lambda r: ("a", float(r["v"])), clock=FakeClock()
    )
    proc.process_batch([{"c": "a", "v": "nan"} for _ in range(10)])
    proc.process_batch([{"c": "a", "v": "nan"}, {"c": "a", "v": "1"}])
    assert proc.keys_held == 2 and sorted(n for _, n in _received(proc)) == [1, 11]


def _nested(depth: int, inner: Any = 1, lists: bool = False) -> Any:
    """``inner`` inside ``depth`` tuples (every other one a list with ``lists``)."""
    for i in range(depth):
        inner = [inner] if lists and i % 2 else (inner,)
    return inner


def test_a_key_nested_too_deeply_is_a_missing_key_not_an_exception() -> None:
    """A tuple 1,000 levels deep (from a ``key_func``) raised RecursionError out of ``process_batch`` when
    compared to another. A key nested more than 100 levels deep is a missing key, None, like a NaN."""
    deep, deep_too = _nested(1000), _nested(1000)  # two objects: comparing them goes all the way down
    proc = DistilledProcessor(build_graders(ONE), 600, 0.5, 100, key_func=lambda r: r["k"], clock=FakeClock())
    for keys in ([deep, deep_too, None], [(deep,), "x", (deep_too,)], [deep, True, 1, ("t", True)]):
        proc.process_batch([{"c": "a", "k": k} for k in keys])
    assert _by_identity(proc) == {None: 6, "x": 1, ("bool", True): 1, 1: 1, ("tuple", ("t", ("bool", True))): 1}
    for lists in (False, True):  # hashable keys (the fast path) and lists among them (a key at a time)
        raw = [_nested(100, 1, lists), _nested(101, 1, lists), _nested(100, 1.0, lists), None, _nested(101, 2, lists)]
        index, keys = index_keys(raw)
        assert index.tolist() == [0, 1, 0, 1, 1] and keys == [raw[0], None], "100 levels is a key, 101 is not"


def test_a_list_key_changed_in_place_after_its_batch_is_still_evicted_cleanly() -> None:
    """The key table holds a list key as the record gives it; the caller may change that record (its key)
    after the batch. Evicting the key must still find its entry."""
    proc = _proc(max_keys=1)
    record = {"c": "a", "user": [1]}
    proc.process_batch([record])
    record["user"].append(2)
    proc.process_batch([{"c": "a", "user": "next"}])
    assert proc.keys_held == 1 and proc.keys_evicted == 1 and _received(proc) == [("next", 1)]
