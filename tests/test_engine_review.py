"""Engine faults an adversarial review found, each pinned by the reproducer that showed it."""

from __future__ import annotations

import copy
import decimal
import struct
import subprocess
import sys
import textwrap
import warnings
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest

from distilld.graders import CategoricalGrader, NumericGrader, OpenCategoricalGrader
from distilld.keys import index_keys
from distilld.processor import DistilledProcessor
from distilld.snapshot import MAGIC, SnapshotError, dump, load
from tests.conftest import FakeClock


def _proc(key_func: Callable[[Any], Any]) -> DistilledProcessor:
    graders = {
        "x": NumericGrader("x", lambda r: r["x"]),
        "c": CategoricalGrader("c", ["a", "b"], lambda r: r["c"]),
        "o": OpenCategoricalGrader("o", lambda r: r["c"]),
    }
    return DistilledProcessor(graders, 600, 0.5, 100, key_func=key_func, clock=FakeClock())


def _records(n: int = 20) -> list[dict[str, Any]]:
    return [{"x": i, "c": "ab"[i % 2], "k": i} for i in range(n)]


class _HashRaises:
    def __hash__(self) -> int:
        raise RuntimeError("no hash")


class _EqRaises:
    def __hash__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")


@pytest.mark.parametrize("make", [_HashRaises, _EqRaises], ids=["hash", "eq"])
def test_a_key_whose_hash_or_eq_raises_is_a_missing_key_not_an_error(make: Callable[[], object]) -> None:
    """process_batch raised the key's RuntimeError: one record's key stopped the whole batch."""
    proc = _proc(lambda r: make() if r["k"] % 2 else "u")
    out = proc.process_batch(_records())
    assert proc.keys_held == 2
    assert {dp.key for dp in out} <= {None, "u"}
    assert proc.get_current_stats()["historical_data_count"] == 20


def test_a_key_whose_eq_raises_against_a_held_key_of_its_hash_is_no_error() -> None:
    """A key whose ``__eq__`` raises, alone in its batch, met a held key of the same hash (1) in the key
    table: the lookup raised there."""
    proc = _proc(lambda r: r["key"])
    proc.process_batch([{**r, "key": 1} for r in _records()])
    one = _EqRaises()
    proc.process_batch([{**r, "key": one} for r in _records()])
    proc.process_batch([{**r, "key": 1} for r in _records()])
    assert proc.keys_held == 2
    assert proc.get_current_stats()["historical_data_count"] == 60


@pytest.mark.parametrize(
    ("key", "spelled", "same"),
    [
        (bytearray(b"x"), "bytearray(b'x')", b"x"),
        ({1, 2}, "{1, 2}", frozenset({1, 2})),
        (np.array([1, 2]), "array([1, 2])", [1, 2]),
    ],
    ids=["bytearray", "set", "ndarray"],
)
def test_an_unhashable_key_is_never_the_string_of_its_repr(key: Any, spelled: str, same: Any) -> None:
    """A set, a bytearray or a numpy array key stood in by its repr: it shared a window with records
    whose key is that string. Each is now the value Python says it equals (a frozenset, bytes, a
    list), held as that, and keeps its window across a snapshot."""
    keys = [key, spelled, same]
    proc = _proc(lambda r: keys[r["k"] % 3])
    proc.process_batch(_records(30))
    assert proc.keys_held == 2, "the value and its equal: one key; the string of its repr: another"
    received = {repr(k): int(proc._windows.totals[0, s, 0]) for k, s in zip(*_held(proc), strict=True)}
    assert received == {repr(same): 20, repr(spelled): 10}
    other = _proc(lambda r: keys[r["k"] % 3])
    load(other, dump(proc))
    other.process_batch(_records(30))
    assert other.keys_held == 2 and other.get_current_stats()["historical_data_count"] == 60


def _held(proc: DistilledProcessor) -> tuple[list[Any], list[int]]:
    slots = list(proc._windows.slot_of.values())
    return [proc._windows.key_of[s] for s in slots], slots


@pytest.mark.parametrize(
    "nan",
    [decimal.Decimal("NaN"), decimal.Decimal("sNaN"), complex("nan"), np.complex128(complex("nan"))],
    ids=repr,
)
def test_every_kind_of_nan_key_is_one_missing_key(nan: Any) -> None:
    """A Decimal or complex NaN equals nothing, itself included: each record opened a window of its own
    (a signalling NaN, unhashable, stood in by its repr, the string "Decimal('sNaN')")."""
    proc = _proc(lambda r: nan if r["k"] % 2 else "Decimal('sNaN')")
    proc.process_batch(_records())
    proc.process_batch(_records())
    assert proc.keys_held == 2
    assert None in proc._windows.key_of
    load(_proc(lambda r: nan), dump(proc))  # held as None: a snapshot keeps it


def test_a_nan_inside_a_tuple_key_of_any_kind_is_one_key() -> None:
    index, keys = index_keys([("a", decimal.Decimal("NaN")) for _ in range(5)] + [("a", complex("nan"))])
    assert index.tolist() == [0] * 6 and len(keys) == 1


def test_a_tuple_key_nested_too_deep_to_hash_is_a_missing_key() -> None:
    """Hashing a tuple 200,000 levels deep recursed in C and crashed the interpreter (SIGSEGV): the
    processor hashed the key before it measured its depth."""
    script = textwrap.dedent(
        """
        from distilld.keys import index_keys
        deep = ()
        for _ in range(200_000):
            deep = (deep,)
        index, keys = index_keys(["a", deep, deep, "a"])
        print(index.tolist(), keys)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[0, 1, 1, 0] ['a', None]"


# -- snapshots: a damaged one is refused, never loaded into state that crashes the kernels --------


def _snapshot() -> tuple[bytes, dict[str, Any], bytes]:
    proc = _proc(lambda r: r["k"] % 3)
    proc.process_batch(_records(60))
    snap = dump(proc)
    body = zlib.decompress(snap[len(MAGIC) + 2 :])
    (head_len,) = struct.unpack_from("<I", body)
    return snap, orjson.loads(body[4 : 4 + head_len]), body[4 + head_len :]


def _rebuilt(snap: bytes, header: dict[str, Any], arrays: bytes) -> bytes:
    head = orjson.dumps(header)
    return snap[: len(MAGIC) + 2] + zlib.compress(struct.pack("<I", len(head)) + head + arrays)


def _changed(header: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(header)
    where = out
    for step in path[:-1]:
        where = where[step]
    where[path[-1]] = value
    return out


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("encoders", 1, "_lut", "a"), 1_000_000),  # a code past the cells: the kernels wrote out of bounds
        (("encoders", 2, "_slots"), ["a"]),
        (("encoders", 0, "_step"), 7),
        (("windows",), None),  # AttributeError
        (("windows", "balance"), None),  # loaded; the next batch raised TypeError
        (("windows", "_clock"), "x"),
        (("arrays", 0, 1), -1),  # numpy's EOFError
    ],
    ids=str,
)
def test_a_damaged_snapshot_header_is_refused_as_a_snapshot_error(path: tuple[Any, ...], value: Any) -> None:
    snap, header, arrays = _snapshot()
    proc = _proc(lambda r: r["k"] % 3)
    with pytest.raises(SnapshotError):
        load(proc, _rebuilt(snap, _changed(header, path, value), arrays))
    proc.process_batch(_records())  # reset: it runs as a new processor


def test_negative_window_counts_in_a_snapshot_are_refused() -> None:
    """A snapshot whose window counts were below 0 loaded, and get_current_stats raised (len() < 0)."""
    source = _proc(lambda r: r["k"] % 3)
    source.process_batch(_records(60))
    source._windows.ring[0, 0, :, 0] -= 100
    source._windows.totals[0, 0, 0] -= 100 * source._windows.panes
    with pytest.raises(SnapshotError, match="counts below 0"):
        load(_proc(lambda r: r["k"] % 3), dump(source))


def test_a_numeric_array_header_that_numpy_cannot_parse_is_a_snapshot_error() -> None:
    snap, header, arrays = _snapshot()
    start = arrays.index(b"{")
    broken = arrays[:start] + b"{(" + arrays[start + 2 :]
    with pytest.raises(SnapshotError, match="damaged snapshot"):
        load(_proc(lambda r: r["k"] % 3), _rebuilt(snap, header, broken))


# -- constructor arguments --------------------------------------------------------


def _graders() -> dict[str, Any]:
    return {"x": NumericGrader("x", lambda r: r["x"]), "c": CategoricalGrader("c", ["a", "b"], lambda r: r["c"])}


@pytest.mark.parametrize("value", [0, -5, "x", 1.5, True])
def test_max_cells_is_checked_by_its_name(value: Any) -> None:
    """max_cells 0 or -5 ran with the pairs silently dropped; "x" raised a TypeError naming nothing."""
    with pytest.raises(ValueError, match="max_cells"):
        DistilledProcessor(_graders(), max_cells=value)


@pytest.mark.parametrize(
    ("pairs", "reason"),
    [
        ([("x", "x")], "with itself"),  # accepted: a feature's cells counted as a pair of its own
        ([("x", "c"), ("c", "x")], "twice"),  # accepted: the pair's cells weighed twice
        (["xc"], "two feature names"),  # accepted: the string read as the features x and c
        ([("x",)], "two feature names"),  # "not enough values to unpack", naming nothing
        ("xc", "a list of"),
        ([(["x"], "c")], "strings"),
        ([("x", "nope")], "unknown features"),
    ],
    ids=str,
)
def test_pairs_that_are_not_distinct_pairs_of_two_features_are_refused(pairs: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        DistilledProcessor(_graders(), pairs=pairs)


def test_pairs_given_as_lists_work_as_tuples_do() -> None:
    as_lists = DistilledProcessor(_graders(), pairs=[["x", "c"]], clock=FakeClock())
    as_tuples = DistilledProcessor(_graders(), pairs=[("c", "x")], clock=FakeClock())
    assert as_lists._layout.groups == as_tuples._layout.groups


def test_the_stats_average_of_values_near_the_float_limit_is_none_without_a_warning() -> None:
    """Each pane's sum held ~1e308 and summing the panes overflowed with a RuntimeWarning from
    get_current_stats (an error where warnings are errors)."""
    clock = FakeClock()
    proc = DistilledProcessor({"x": NumericGrader("x", lambda r: r)}, 600, 0.5, 100, panes=12, clock=clock)
    for _ in range(3):
        proc.process_batch([1e308, 1e308])
        clock.now += 60
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = proc.get_current_stats()
    assert stats["current_proportions"]["x"].get("average") is None
