"""Which keys share a window: JSON values, told apart as a Kafka user tells them apart.

``true`` and ``1`` are two keys (Python's ``True == 1`` made them one); ``1`` and ``1.0``
are one number, one key.
"""

from __future__ import annotations

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


def _proc(max_keys: int = 10_000) -> DistilledProcessor:
    return DistilledProcessor(
        build_graders(ONE), 600, 0.5, 100, key_func=lambda r: r["user"], max_keys=max_keys, clock=FakeClock()
    )


def _json_identity(key: Any) -> Any:
    """The test's own oracle: a bool is never a number; numbers equal as numbers are one key."""
    if isinstance(key, bool | np.bool_):
        return ("bool", bool(key))
    if isinstance(key, tuple):
        return ("tuple", tuple(map(_json_identity, key)))
    if isinstance(key, frozenset):
        return ("frozenset", frozenset(map(_json_identity, key)))
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
    st.sampled_from(["", "1", "True"]), st.just(np.True_), st.just(np.int64(1)),
)  # fmt: skip
keys_strategy = st.one_of(
    scalar_keys, st.tuples(scalar_keys, scalar_keys), st.frozensets(scalar_keys, max_size=2), st.lists(scalar_keys)
)


@FAST
@given(raw=st.lists(keys_strategy, max_size=60))
@example(raw=[np.int64(1), (None, None), np.True_])  # a boolean taken in by a number, next to a tuple key
def test_records_share_an_index_exactly_when_their_keys_are_the_same_json_value(raw: list[Any]) -> None:
    """index_keys (the processor, the daemon and the file tools all key through it): two records share
    an entry iff their keys are the same JSON value; each entry's key is its first record's, in order
    of first appearance."""
    index, keys = index_keys(raw)
    ident = [repr(k) if isinstance(k, list) else _json_identity(k) for k in raw]  # unhashable: by repr
    assert len(index) == len(raw)
    for i in range(len(raw)):
        for j in range(i):
            assert (index[i] == index[j]) == (ident[i] == ident[j]), (raw[i], raw[j])
    firsts = sorted({int(x): i for i, x in reversed(list(enumerate(index)))}.items())
    assert [e for e, _ in firsts] == list(range(len(keys))), "entries numbered in order of first appearance"
    for entry, row in firsts:
        assert keys[entry] is raw[row] or isinstance(raw[row], list)


@FAST
@given(batches=st.lists(st.lists(st.sampled_from([True, False, 0, 1, 1.0, "1", None]), max_size=8), max_size=6))
def test_each_json_value_has_one_window_however_the_batches_fall(batches: list[list[Any]]) -> None:
    proc = _proc()
    expected: Counter[Any] = Counter()
    for batch in batches:
        proc.process_batch([{"c": "a", "user": u} for u in batch])
        expected.update(map(_json_identity, batch))
    assert _by_identity(proc) == expected
