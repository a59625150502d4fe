"""Snapshots: a restored reducer continues exactly as the original would have."""

from __future__ import annotations

import enum
import logging
import math
import struct
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distilld import DistilledProcessor, build_graders
from distilld.snapshot import SnapshotError, SnapshotMismatch, dump, load

from .conftest import PEOPLE_FEATURES, people_records

FEATURES = [*PEOPLE_FEATURES, {"name": "city", "type": "open_categorical", "field": "city", "top_k": 4}]
KEYS: list[Any] = [b"\x00raw", "text", 7, None, 2.5]


def _records(n: int, seed: int) -> list[dict[str, Any]]:
    out = people_records(n, seed)
    for i, r in enumerate(out):
        r["ts"] = 1000.0 + i * 0.05
        r["k"] = KEYS[i % len(KEYS)]
        r["city"] = f"c{(i * 7919) % 9}"
    return out


def _proc(**kw: Any) -> DistilledProcessor:
    return DistilledProcessor(
        build_graders(FEATURES), 60, 0.1, 250, timestamp_func=lambda r: r["ts"], key_func=lambda r: r["k"], **kw
    )


def _ids(proc: DistilledProcessor, records: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(dp.data["id"], dp.weight) for dp in proc.process_batch(records)]


@settings(max_examples=15, deadline=None)
@given(cut=st.integers(1, 2999), seed=st.integers(0, 5))
def test_a_restored_reducer_selects_what_the_original_would_have(cut: int, seed: int) -> None:
    records = _records(3000, seed)
    whole = _proc()
    _ids(whole, records[:cut])
    expected = _ids(whole, records[cut:])

    first = _proc()
    _ids(first, records[:cut])
    blob = dump(first)
    second = _proc()
    load(second, blob)
    assert _ids(second, records[cut:]) == expected
    assert second.get_current_stats()["drift"] == whole.get_current_stats()["drift"]
    assert second.keys_held == whole.keys_held


def test_snapshot_is_small_for_idle_rings_and_refuses_other_configs_and_garbage() -> None:
    proc = _proc()
    _ids(proc, _records(2000, 1))
    blob = dump(proc)
    assert blob.startswith(b"DSTLSNAP")
    assert len(blob) < proc.bytes_per_key * proc.keys_held, "compressed below the raw state"
    with pytest.raises(SnapshotMismatch):
        load(_proc(seed=3), blob)
    with pytest.raises(SnapshotError, match="not a distilld snapshot"):
        load(_proc(), b"pickle?")
    with pytest.raises(SnapshotError, match="damaged"):
        load(_proc(), blob[:-40])
    with pytest.raises(SnapshotError, match="version"):
        load(_proc(), b"DSTLSNAP\x09\x00" + blob[10:])


def test_a_snapshot_of_another_layout_under_the_same_version_is_refused_and_leaves_the_reducer_empty() -> None:
    """A snapshot whose arrays do not fit this build's windows (the summed deficits first covered the marginal
    cells only, within version 4, in this session's first commits) is refused at load, not crash the first batch."""
    old = _proc()
    _ids(old, _records(2000, 1))
    windows = old._windows
    windows.global_deficit = windows.global_deficit[: windows.window_cells + windows.moments].copy()
    fresh = _proc()
    with pytest.raises(SnapshotError, match="window state global_deficit"):
        load(fresh, dump(old))
    assert fresh.keys_held == 0
    assert fresh._windows.global_deficit.shape == (windows.n_cells + windows.moments,)
    assert len(_ids(fresh, _records(2000, 2))) == 200


def test_a_snapshot_whose_missing_counts_do_not_fit_is_refused_and_leaves_the_reducer_empty() -> None:
    """The missing counts were set after the checks: a snapshot with the wrong number of them loaded,
    and one without them raised KeyError instead of SnapshotError."""
    old = _proc()
    _ids(old, _records(2000, 1))
    old.missing_counts = np.zeros(len(FEATURES) + 1, dtype=np.int64)
    fresh = _proc()
    with pytest.raises(SnapshotError, match=r"processor\.missing_counts"):
        load(fresh, dump(old))
    assert fresh.keys_held == 0 and fresh.missing_counts.shape == (len(FEATURES),)


def test_a_snapshot_does_not_load_into_other_categories_or_key_limits() -> None:
    proc = _proc()
    _ids(proc, _records(500, 2))
    blob = dump(proc)
    with pytest.raises(SnapshotMismatch):
        load(_proc(max_keys=50), blob)
    other = [{**f, "categories": ["x", "y", "z"]} if f["name"] == "gender" else f for f in FEATURES]
    with pytest.raises(SnapshotMismatch):
        load(DistilledProcessor(build_graders(other), 60, 0.1, 250, key_func=lambda r: r["k"]), blob)


@pytest.mark.parametrize(
    "change",
    [
        {"reduction_percentage": 0.2},
        {"panes": 6},
        {"time_horizon_seconds": 120},
        {"max_keys": 20},
        {"seed": 3},
    ],
)
def test_a_snapshot_is_refused_by_every_other_configuration(change: dict[str, Any]) -> None:
    """A snapshot loads only into the configuration its counts were made under: another rate, pane count,
    window, key table or seed is refused rather than mixed with counts made differently, and the
    refusal names what differs."""
    base: dict[str, Any] = {"time_horizon_seconds": 60, "reduction_percentage": 0.1, "batch_size": 250}
    proc = DistilledProcessor(build_graders(PEOPLE_FEATURES), **base)
    proc.process_batch(people_records(300, 1))
    named = {"reduction_percentage": "rate", "time_horizon_seconds": "window_seconds"}
    with pytest.raises(SnapshotMismatch, match=f"another configuration: (.*, )?{named.get(*change, *change)}(,|$)"):
        load(DistilledProcessor(build_graders(PEOPLE_FEATURES), **{**base, **change}), dump(proc))


def test_a_snapshot_does_not_load_under_other_pairs_of_the_same_size() -> None:
    """Pairs (gender, age) and (gender, income) have as many cells as each other: a snapshot of one
    would fit the other's arrays and give its pair deficits to the wrong pair; it is refused."""
    base: dict[str, Any] = {"time_horizon_seconds": 60, "reduction_percentage": 0.1, "batch_size": 250}
    proc = DistilledProcessor(build_graders(PEOPLE_FEATURES), pairs=[("gender", "age")], **base)
    proc.process_batch(people_records(300, 1))
    other = DistilledProcessor(build_graders(PEOPLE_FEATURES), pairs=[("gender", "income")], **base)
    assert other._windows.n_cells == proc._windows.n_cells
    with pytest.raises(SnapshotMismatch, match="another configuration: groups"):
        load(other, dump(proc))
    assert other.keys_held == 0


@pytest.mark.parametrize("change", [{"segment_picks": 4}, {"pair_weight": 2.0}, {"global_weight": 3.0}])
def test_a_snapshot_loads_under_other_picking_settings(change: dict[str, Any]) -> None:
    """How records are picked is not in the fingerprint: the counts mean the same, so a new default
    segment size or weight keeps every saved window (segment_picks went from 4 to 8)."""
    base: dict[str, Any] = {"time_horizon_seconds": 60, "reduction_percentage": 0.1, "batch_size": 250}
    proc = DistilledProcessor(build_graders(PEOPLE_FEATURES), **base)
    proc.process_batch(people_records(300, 1))
    other = DistilledProcessor(build_graders(PEOPLE_FEATURES), **{**base, **change})
    load(other, dump(proc))
    assert other.get_current_stats()["historical_data_count"] == proc.get_current_stats()["historical_data_count"]
    assert np.array_equal(other._windows.deficit, proc._windows.deficit)


def test_a_restored_reducer_is_the_original_byte_for_byte_also_after_evictions() -> None:
    """With keys evicted (10 keys, room for 8) and missing values: the restored reducer dumps the same bytes,
    reports the same evictions and missing counts, and continues exactly as the original (same picks, same
    state after)."""
    keys = np.random.default_rng(1).integers(0, 10, 3000).tolist()
    records = [
        dict(r, k=keys[i], t=1000.0 + i * 0.05, age=None if i % 13 == 0 else r["age"])
        for i, r in enumerate(people_records(3000, 4))
    ]

    def make() -> DistilledProcessor:
        return DistilledProcessor(
            build_graders(PEOPLE_FEATURES), 60, 0.1, 5, key_func=lambda r: r["k"], timestamp_func=lambda r: r["t"],
            max_keys=8,
        )  # fmt: skip

    whole, first = make(), make()
    whole.process_batch(records[:1234])
    first.process_batch(records[:1234])
    second = make()
    load(second, dump(first))
    assert dump(second) == dump(first)
    assert second.keys_evicted == first.keys_evicted > 0
    assert second.get_current_stats()["missing"] == first.get_current_stats()["missing"]
    assert [id(d.data) for d in second.process_batch(records[1234:])] == [
        id(d.data) for d in whole.process_batch(records[1234:])
    ]
    assert dump(second) == dump(whole)
    assert second.get_current_stats()["missing"] == whole.get_current_stats()["missing"]


def test_loading_into_a_used_processor_leaves_none_of_its_averages() -> None:
    """The numeric averages are not in snapshots: loaded into a processor that had run (a roll back to
    a checkpoint), the stats' averages still held that processor's own values, next to restored counts."""
    records = _records(1200, 0)
    checkpoint = _proc()
    _ids(checkpoint, records[:600])
    blob = dump(checkpoint)
    used = _proc()
    _ids(used, [dict(r, age=r["age"] + 1000) for r in records[600:]])
    load(used, blob)
    fresh = _proc()
    load(fresh, blob)
    _ids(used, records[600:])
    _ids(fresh, records[600:])
    assert used.get_current_stats() == fresh.get_current_stats()


# -- keys: each comes back as it went, or the dump is refused -----------------------------------

ONE = [{"name": "c", "type": "categorical", "categories": ["a", "b", "c"]}]


def _keyed() -> DistilledProcessor:
    return DistilledProcessor(build_graders(ONE), 60, 0.1, 100, key_func=lambda r: r["k"], timestamp_func=lambda r: 0.0)


def _typed(key: Any) -> Any:
    """A key with the type of every part of it: a restored key must be this equal, not only ``==``
    (a NaN as a word: no two are equal)."""
    if isinstance(key, tuple | list):
        return (type(key), tuple(map(_typed, key)))
    if isinstance(key, frozenset):
        return (frozenset, frozenset(map(_typed, key)))
    if isinstance(key, dict):
        return (dict, tuple((_typed(n), _typed(v)) for n, v in key.items()))
    if isinstance(key, float) and math.isnan(key):
        return (float, "nan")
    return (type(key), key)


def _held(proc: DistilledProcessor) -> list[tuple[Any, int]]:
    w = proc._windows
    return [(_typed(w.key_of[slot]), slot) for slot in w.slot_of.values()]


def _rewritten(blob: bytes, version: int, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """``blob`` with its header edited and its version set: a snapshot as another distilld wrote it."""
    body = zlib.decompress(blob[10:])
    (length,) = struct.unpack_from("<I", body)
    header = orjson.loads(body[4 : 4 + length])
    edit(header)
    head = orjson.dumps(header)
    return (
        b"DSTLSNAP"
        + struct.pack("<H", version)
        + zlib.compress(struct.pack("<I", len(head)) + head + body[4 + length :])
    )


key_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=4),
    st.binary(max_size=4),
)  # fmt: skip
snapshot_keys = st.one_of(
    key_scalars, st.tuples(key_scalars, key_scalars), st.tuples(st.tuples(key_scalars)), st.frozensets(key_scalars),
    st.tuples(key_scalars, st.just(float("nan"))), st.lists(key_scalars, max_size=3),
    st.dictionaries(st.text(max_size=2), st.one_of(key_scalars, st.lists(key_scalars, max_size=2)), max_size=3),
    st.tuples(st.text(max_size=2), st.lists(key_scalars, max_size=2)),
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(keys=st.lists(snapshot_keys, min_size=1, max_size=12))
def test_every_key_comes_back_from_a_snapshot_as_it_went(keys: list[Any]) -> None:
    """frozensets came back as their repr strings (and True next to 1 could not be held at all): after a
    restore their records opened new, empty windows. Now each key comes back with its type, and the
    records of every key find their window again."""
    records = [{"k": k, "c": "abc"[i % 3]} for i, k in enumerate(keys * 3)]
    first, second = _keyed(), _keyed()
    first.process_batch(records)
    load(second, dump(first))
    assert _held(second) == _held(first)
    first.process_batch(records)
    second.process_batch(records)
    assert second.keys_held == first.keys_held
    assert np.array_equal(second._windows.totals, first._windows.totals)


def test_true_and_1_held_apart_come_back_apart() -> None:
    """The key table is keyed by key_identity: restored by the raw keys, True and 1 would be one again."""
    first, second = _keyed(), _keyed()
    first.process_batch([{"k": k, "c": "a"} for k in (True, 1, False, 0, (True,), (1,), frozenset({True}))])
    load(second, dump(first))
    assert second.keys_held == 7 and _held(second) == _held(first)


def test_a_key_that_would_come_back_as_another_is_refused_at_dump() -> None:
    """An Enum (not an int or str one) came back as its repr string: its window was silently lost."""

    class Colour(enum.Enum):
        RED = 1

    class Level(enum.IntEnum):
        HIGH = 3

    class Tone(enum.StrEnum):
        DARK = "dark"

    for key in (Colour.RED, ("user", Colour.RED), [Colour.RED], {"c": Colour.RED}, object()):
        proc = _keyed()
        proc.process_batch([{"k": key, "c": "a"}, {"k": "fine", "c": "b"}])
        with pytest.raises(SnapshotError, match=r"cannot be kept in a snapshot.*what key_func gives"):
            dump(proc)
    proc, restored = _keyed(), _keyed()
    proc.process_batch([{"k": k, "c": "a"} for k in (Level.HIGH, Tone.DARK)])
    load(restored, dump(proc))  # an int or str Enum comes back as its value: equal, same hash, same window
    restored.process_batch([{"k": k, "c": "a"} for k in (Level.HIGH, Tone.DARK)])
    assert restored.keys_held == 2 and restored.get_current_stats()["historical_data_count"] == 4


def test_list_and_dict_keys_come_back_and_their_records_find_their_windows() -> None:
    """Version 5 held a JSON array or object key by its repr string: ``[1, 2]`` shared the window of the
    string ``"[1, 2]"``. Now each comes back a list or a dict, apart from that string, and after the restore
    records with ``[1, 2]`` (or ``[1.0, 2]``, one JSON value) and ``{"b": 2, "a": 1}`` find their windows;
    so do tuples with a NaN in them (refused at dump before: the NaN came back unequal to itself)."""
    keys: list[Any] = [[1, 2], "[1, 2]", {"a": 1, "b": [2]}, ("t", [1, {"x": None}]), ("n", float("nan")), []]
    first, second = _keyed(), _keyed()
    first.process_batch([{"k": k, "c": "a"} for k in keys])
    assert first.keys_held == 6
    load(second, dump(first))
    assert _held(second) == _held(first)
    again = [[1.0, 2], "[1, 2]", {"b": [2], "a": 1}, ("t", [1, {"x": None}]), ("n", float("nan")), []]
    second.process_batch([{"k": k, "c": "b"} for k in again])
    w = second._windows
    assert second.keys_held == 6 and [int(w.totals[0, slot, 0]) for slot in w.slot_of.values()] == [2] * 6


def test_a_key_as_deeply_nested_as_a_key_may_be_fits_in_a_snapshot() -> None:
    """A key of 100 lists and dicts inside one another (deeper is a missing key, distilld.keys): the
    header's JSON (orjson writes 254 levels at most) holds it."""
    deep: Any = 1
    for i in range(100):
        deep = {"d": deep} if i % 2 else [deep]
    first, second = _keyed(), _keyed()
    first.process_batch([{"k": deep, "c": "a"}])
    assert first._windows.key_of[next(iter(first._windows.slot_of.values()))] == deep
    load(second, dump(first))
    second.process_batch([{"k": deep, "c": "a"}])
    assert second.keys_held == 1 and _held(second) == _held(first)


def test_a_version_5_snapshot_still_loads_and_warns_of_keys_that_read_as_a_list_or_dict(caplog: Any) -> None:
    """Version 5 held list and dict keys by their repr: such strings come back as strings, with a warning."""
    proc = _keyed()
    proc.process_batch([{"k": k, "c": "a"} for k in ("user", "[1, 2]", "{'a': 1}", "('t', [1])")])
    restored = _keyed()
    with caplog.at_level(logging.WARNING, logger="distilld.snapshot"):
        load(restored, _rewritten(dump(proc), 5, lambda header: header.pop("keys_by_value")))
    assert "version 5 holds 3 keys that read as a list, a dict or a tuple holding one" in caplog.text
    assert _held(restored) == _held(proc)
    restored.process_batch([{"k": k, "c": "a"} for k in ("user", [1, 2])])
    assert restored.keys_held == 5, "[1, 2] is not the string of its repr: a window of its own"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="distilld.snapshot"):
        load(_keyed(), dump(proc))
    assert not caplog.text, "written since lists are kept as lists (keys_by_value): a string is a string"


def test_a_snapshot_is_version_5_unless_a_key_holds_a_list_or_a_dict() -> None:
    """Only version 6 reads list and dict keys; a daemon of stop 23 or before refuses it and replays every
    window from the log. So a snapshot without such keys is written as version 5, which those daemons read
    (a rolling upgrade, or a rollback, costs them nothing), and one with them as version 6."""
    import struct

    def version(keys: list[Any]) -> int:
        proc = _keyed()
        proc.process_batch([{"k": k, "c": "a"} for k in keys])
        return int(struct.unpack_from("<H", dump(proc), 8)[0])

    assert version(["user", 7, ("t", 1.5), frozenset({"a"}), None, True, "[1, 2]"]) == 5
    assert version(["user", [1, 2]]) == 6
    assert version([("t", {"a": 1})]) == 6
    assert version([(("t", (2, [3])),)]) == 6


def test_a_version_4_snapshot_still_loads_and_says_which_keys_it_stored_by_repr(caplog: Any) -> None:
    proc = _keyed()
    proc.process_batch([{"k": k, "c": "a"} for k in ("user", True, "colour", ("t", "x"))])

    def as_version_4(header: dict[str, Any]) -> None:  # what version 4 wrote for an Enum and a frozenset
        keys = header["keys"]
        keys[2][0] = {"r": "<Colour.RED: 1>"}
        keys[3][0] = {"t": ["t", {"r": "frozenset({1})"}]}

    old = _rewritten(dump(proc), 4, as_version_4)
    restored = _keyed()
    with caplog.at_level(logging.WARNING, logger="distilld.snapshot"):
        load(restored, old)
    assert "version 4 stored 2 keys by their repr" in caplog.text
    w = restored._windows
    assert [w.key_of[slot] for slot in w.slot_of.values()] == ["user", True, "<Colour.RED: 1>", ("t", "frozenset({1})")]
    restored.process_batch([{"k": "user", "c": "b"}, {"k": True, "c": "b"}])
    assert restored.keys_held == 4 and restored.get_current_stats()["historical_data_count"] == 6
    with pytest.raises(SnapshotError, match="damaged snapshot: a key of no known form"):
        load(_keyed(), _rewritten(old, 5, lambda header: None))  # version 5 never stores a repr
    assert _keyed().keys_held == 0


def test_a_snapshot_holding_one_key_twice_is_refused() -> None:
    """Two entries of one key would leave a slot held by no key: refused as damaged, the reducer left empty."""
    proc = _keyed()
    proc.process_batch([{"k": k, "c": "a"} for k in (True, 1)])

    def one_key_twice(header: dict[str, Any]) -> None:
        header["keys"][1][0] = True

    fresh = _keyed()
    with pytest.raises(SnapshotError, match="a key held twice"):
        load(fresh, _rewritten(dump(proc), 5, one_key_twice))
    assert fresh.keys_held == 0


def test_a_list_key_the_caller_changes_in_place_still_makes_a_snapshot_that_loads() -> None:
    """Library API: ``key_func`` gives a record's own list, which the caller changes after ``process_batch``.
    The key table held that very list, so ``dump`` wrote the changed one: equal now to another held key, the
    snapshot did not load ("a key held twice") and the state was lost. The table keeps a copy. (Review.)"""
    first = _keyed()
    a, b = {"k": [1], "c": "a"}, {"k": [1, 2], "c": "a"}
    first.process_batch([a, b])
    a["k"].append(2)
    restored = _keyed()
    load(restored, dump(first))
    assert sorted(map(str, (k for k, _ in _held(restored)))) == sorted(map(str, (k for k, _ in _held(first))))
    assert restored.keys_held == 2


def test_a_snapshot_slot_for_a_value_spelt_like_a_reserved_label_is_forgotten_at_load() -> None:
    """Before stop 29 an open categorical gave a record's "__other__" a top-K slot; a snapshot holding one kept
    it after an upgrade: such records took the slot, and the label showed twice, until the slot was given up."""

    proc = DistilledProcessor(build_graders([{"name": "c", "type": "open_categorical", "top_k": 4}]))
    proc.process_batch([{"c": "a"}] * 10)
    enc = proc._encoders[0]
    free = enc._slots.index(None)
    enc._slots[free], enc._lut["__other__"], enc._freq["__other__"] = "__other__", free, 30  # as an old one held
    fresh = DistilledProcessor(build_graders([{"name": "c", "type": "open_categorical", "top_k": 4}]))
    load(fresh, dump(proc))
    restored = fresh._encoders[0]
    assert restored.labels().count("__other__") == 1 and "__other__" not in restored._freq
    codes = restored.encode(["__other__", "a"], np.zeros(2, dtype=np.int64), 0).tolist()
    assert [restored.labels()[c] for c in codes] == ["__other__", "a"]
