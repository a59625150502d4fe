"""Engine bugs a test audit found, each pinned by the reproducer that showed it."""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Hashable

import numpy as np
import pytest

from distilld import DistilledProcessor, build_graders
from distilld.snapshot import dump, load

from .conftest import FakeClock

ONE = [{"name": "c", "type": "categorical", "categories": ["a", "b", "c"]}]


@pytest.mark.parametrize("rate", [0.9, 0.94, 0.95, 0.99])
@pytest.mark.parametrize("batch", [7, 18, 64, 200])
@pytest.mark.parametrize("n_keys", [1, 2])
@pytest.mark.parametrize("segment_picks", [4, 8])
def test_the_selector_makes_its_whole_quota_at_rates_near_one(
    rate: float, batch: int, n_keys: int, segment_picks: int
) -> None:
    """A key's records are cut into segments of ``segment_picks`` picks; at rate 0.95 a segment could
    hold fewer records than its picks, and the key sent fewer than its budget said (1,620 for 1,710)."""
    proc = DistilledProcessor(
        build_graders(ONE), 600, rate, batch, key_func=lambda r: r["k"], clock=FakeClock(), segment_picks=segment_picks
    )
    records = [{"k": i % n_keys, "c": "abc"[i % 3]} for i in range(batch * 40)]
    sent: dict[Hashable, int] = {}
    received: dict[int, int] = {}
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        for r in chunk:
            received[r["k"]] = received.get(r["k"], 0) + 1
        for dp in proc.process_batch(chunk):
            sent[dp.key] = sent.get(dp.key, 0) + 1
        for k, n in received.items():
            assert abs(sent.get(k, 0) - rate * n) <= 1 + 1e-9, (k, sent.get(k, 0), rate * n)


KEYS: list[Hashable] = [
    uuid.UUID(int=7),
    datetime.date(2026, 11, 30),
    datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC),
    datetime.time(12, 30),
    decimal.Decimal("12.50"),
    ("user", 3),
    b"\x00\xff",
    # np.float64 and integers past 64 bits made dump raise TypeError; np.int64 and inf came back as
    # another key (a repr string, None)
    np.int64(3),
    np.float64(2.5),
    np.bool_(True),
    float("inf"),
    2**70,
    -(2**63) - 1,
]


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_a_key_that_is_not_a_json_value_keeps_its_window_across_a_snapshot(key: Hashable) -> None:
    """Avro's logical types decode to UUID, date, datetime, time and Decimal: such keys came back
    from a snapshot as strings, so after a hand-over every key opened a second, empty window."""

    def make() -> DistilledProcessor:
        return DistilledProcessor(build_graders(ONE), 600, 0.1, 100, key_func=lambda r: r["k"], clock=FakeClock())

    records = [{"k": key, "c": "abc"[i % 3]} for i in range(100)]
    first, second = make(), make()
    first.process_batch(records)
    load(second, dump(first))
    second.process_batch(records)
    assert second.keys_held == 1
    assert second.get_current_stats()["historical_data_count"] == 200


def test_a_new_owner_does_not_count_the_last_owners_evictions_again() -> None:
    from types import SimpleNamespace

    from distilld.daemon.loop import Daemon
    from distilld.daemon.state import StateScan, chunk_records
    from distilld.settings import load_settings

    settings = load_settings(
        None,
        kafka={"bootstrap_servers": "127.0.0.1:1", "group_id": "g", "input_topics": ["t"], "output_topic": "o"},
        features=[{"name": "a", "type": "numeric"}],
        reducer={"max_keys": 10, "key": "k"},
        processing={"on_error": "skip"},
        metrics={"port": 0},
    )
    old = Daemon(settings)
    reducer = old._new_reducer()
    for i in range(0, 100, 10):  # 100 keys through 10 slots
        reducer.select([{"a": 1.0}] * 10, np.full(10, 1000.0 + i), np.arange(10), list(range(i, i + 10)))
    assert reducer.keys_evicted == 90
    new = Daemon(settings)
    snapshot = chunk_records(("t", 0), 0, 500, dump(reducer))
    new.state.partitions = 1
    new.state.scan = lambda wanted, alive=None: StateScan({0: wanted}, ((0, rec) for rec in snapshot))  # type: ignore[method-assign]
    new.consumer = SimpleNamespace(incremental_assign=lambda parts: None)  # type: ignore[assignment]
    new.assigner.to_restore({("t", 0): 500})  # assigned, committed at 500
    new.assigner.restore_some()
    assert new.partitions[("t", 0)].snapshot_at == 500, "restored"
    new.record_path._count_reducer(new.partitions[("t", 0)])  # the first batch after the hand-over
    assert new.metrics.registry.get_sample_value("distilld_keys_evicted_total") == 0


# -- stop 26's review of the library API ----------------------------------------------------------


def test_reset_starts_again_from_the_configuration_the_processor_was_built_with() -> None:
    """reset() rebuilt the encoders from the graders as they were by then: a category appended to the
    list a grader was given made an encoder with more codes than the cell layout, and the unchecked
    counting kernel wrote outside its arrays (glibc aborted the process: "free(): invalid next size")."""
    from distilld import CategoricalGrader, NumericGrader

    categories = ["a", "b"]
    grader = NumericGrader("v", lambda r: r["v"])
    proc = DistilledProcessor(
        {"c": CategoricalGrader("c", categories, lambda r: r["c"]), "v": grader}, reduction_percentage=0.5
    )
    proc.process_batch([{"c": "a", "v": 1.0}] * 10)
    categories += [f"x{i}" for i in range(1000)]
    grader.bins = 3  # the same for a numeric's bins changed after
    proc.reset()
    assert [e.n_codes for e in proc._encoders] == list(proc._layout.sizes[:2])
    out = proc.process_batch([{"c": f"x{i % 1000}", "v": float(i)} for i in range(2000)])
    assert len(out) == 1000
    assert proc.get_current_stats()["current_proportions"]["c"]["categories"] == {"__other__": 1.0}
    assert proc.grading_functions["c"].get_categories() == ["a", "b"], "the grader keeps its own list"


@pytest.mark.parametrize("name", ["marginal_weight", "pair_weight", "comoment_weight", "spread_weight"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -16.0, "16", True])
def test_a_weight_that_is_not_a_finite_number_at_least_0_is_refused(name: str, value: object) -> None:
    """Unchecked, NaN sent nothing, infinity missed the rate, and a negative weight inverted the mix."""
    with pytest.raises(ValueError, match=f"{name} must be a finite number, 0 or more"):
        DistilledProcessor(build_graders(ONE), **{name: value})  # type: ignore[arg-type]
    DistilledProcessor(build_graders(ONE), **{name: 0})  # type: ignore[arg-type]


def test_a_fraction_rate_is_taken_as_the_number_it_is() -> None:
    """A Fraction passed the number check, then failed in the compiled kernels (numba TypingError)."""
    from fractions import Fraction

    proc = DistilledProcessor(build_graders(ONE), Fraction(3600), Fraction(1, 3), clock=FakeClock())
    assert len(proc.process_batch([{"c": "abc"[i % 3]} for i in range(30)])) == 10


def test_two_threads_can_share_a_processor() -> None:
    """Two threads calling process_batch at once raised IndexError / KeyError / ValueError and sent
    0 to 2,020 records for 4,000; calls now take turns, and the budget holds."""
    import threading

    proc = DistilledProcessor(
        build_graders([*ONE, {"name": "v", "type": "numeric"}]), reduction_percentage=0.1, batch_size=50,
        key_func=lambda r: r["k"], timestamp_func=lambda r: r["t"], max_keys=50,
    )  # fmt: skip
    sent, errors = [0, 0], []

    def work(w: int) -> None:
        try:
            for b in range(100):
                batch = [{"v": j * 0.1, "c": "abc"[j % 3], "k": (j * 7 + w) % 200, "t": 1000 + b} for j in range(100)]
                sent[w] += len(proc.process_batch(batch))
        except Exception as e:  # pragma: no cover - what the test is for
            errors.append(e)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sum(sent) == 2000
    assert proc.get_current_stats()["keys_held"] == 50


def test_an_odd_event_time_is_shown_by_its_start(caplog: pytest.LogCaptureFixture) -> None:
    """The warning logged the whole value: a list nested 5,000 deep raised RecursionError out of
    process_batch (on every batch), and a 1 MB string made a 1 MB log line."""
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    for odd in (deep, "x" * 1_000_000):
        proc = DistilledProcessor(build_graders(ONE), 600, 0.5, timestamp_func=lambda r: r["t"], clock=FakeClock())
        with caplog.at_level("WARNING"):
            caplog.clear()
            assert len(proc.process_batch([{"c": "a", "t": odd}, {"c": "b", "t": 1.0}])) == 1
        assert "no usable event time" in caplog.text and len(caplog.text) < 2000


def _late_stream(n_keys: int, seed: int = 1) -> tuple[DistilledProcessor, list[list[dict[str, object]]]]:
    """A processor that has seen a live window, and 30 batches of records 5,000 s older than it (a replay
    behind the watermark, or a stray record far ahead having moved it): shares a/b/c 0.80/0.15/0.05."""
    import random

    rng = random.Random(seed)
    features = [{"name": "v", "type": "numeric"}, {"name": "c", "type": "categorical", "categories": ["a", "b", "c"]}]
    now = 1.7e9
    proc = DistilledProcessor(
        build_graders(features), 600, 0.1, timestamp_func=lambda r: r["t"], key_func=lambda r: r["k"],
        clock=lambda: now + 10_000, rewind_after=0,  # 30,000 late in a row outnumber the window: no rewind
    )  # fmt: skip

    def batch(t0: float) -> list[dict[str, object]]:
        return [
            {"v": rng.random(), "c": rng.choices("abc", [0.8, 0.15, 0.05])[0], "t": t0 + j * 0.001,
             "k": rng.randrange(n_keys)}
            for j in range(1000)
        ]  # fmt: skip

    for b in range(10):
        proc.process_batch(batch(now + 5000 + b))
    return proc, [batch(now + b) for b in range(30)]


@pytest.mark.parametrize("n_keys", [1, 20, 3000])
def test_records_too_late_for_their_window_are_picked_in_their_own_proportions(n_keys: int) -> None:
    """Late records joined no deficit, so every batch of them was picked off the same frozen deficits:
    0.90/0.10/0.00 with one key, 0.74/0.26/0.002 with 20, 0.875/0.114/0.011 with 3,000 (the rare value
    all but never sent). They are balanced among themselves now, apart from the windows."""
    proc, late = _late_stream(n_keys)
    before = proc._windows.deficit.copy()
    sent = [dp.data["c"] for b in late for dp in proc.process_batch(b)]
    got = {v: sent.count(v) / len(sent) for v in "abc"}
    given = [r["c"] for b in late for r in b]
    want = {v: given.count(v) / len(given) for v in "abc"}
    assert len(sent) == 3000
    assert all(abs(got[v] - want[v]) < 0.006 for v in "abc"), (got, want)
    assert np.array_equal(proc._windows.deficit, before), "the keys' own deficits: live records only"
    assert proc.get_current_stats()["historical_data_count"] == 10_000, "late records join no window"


def test_the_late_records_deficits_go_through_a_snapshot_as_version_7_and_only_when_there_are_any() -> None:
    """A restored processor picks late records as the one it was taken from (determinism across a
    hand-over); a snapshot without late state stays version 6 or 5, which older daemons read."""
    import struct

    proc, late = _late_stream(1)
    live_only = dump(proc)
    assert struct.unpack_from("<H", live_only, 8)[0] in (5, 6)
    proc.process_batch(late[0])
    data = dump(proc)
    assert struct.unpack_from("<H", data, 8)[0] == 7
    twin, _ = _late_stream(1)
    load(twin, data)
    assert np.array_equal(twin._windows.late_deficit, proc._windows.late_deficit)
    for b in late[1:5]:
        assert [id(dp.data) for dp in proc.process_batch(b)] == [id(dp.data) for dp in twin.process_batch(b)]
    load(twin, live_only)
    assert not twin._windows.late_deficit.any()


def test_the_late_share_of_keys_in_a_fixed_order_is_not_rounded_against_one_of_them() -> None:
    """One carry passed from key to key rounded the first key's late share down and the next one's up,
    batch after batch: A's late records and B's live ones were never sent (1000/0 where 500/500)."""
    now = 1.7e9
    features = [{"name": "c", "type": "categorical", "categories": ["a", "b", "x", "y"]}]
    proc = DistilledProcessor(
        build_graders(features), 600.0, 0.25, batch_size=500, clock=lambda: now + 10_000,
        key_func=lambda r: r["k"], timestamp_func=lambda r: r["t"],
    )  # fmt: skip
    proc.process_batch([{"k": "A", "c": "a", "t": now + 5000}])
    sent = dict.fromkeys("abxy", 0)
    for b in range(400):
        live, late = now + 5000 + b, now + b
        batch = [
            {"k": k, "c": c, "t": t}
            for k, c1, c2 in (("A", "a", "x"), ("B", "b", "y"))
            for c, t in ((c1, live), (c1, live), (c2, late), (c2, late))
        ]
        for dp in proc.process_batch(batch):
            sent[dp.data["c"]] += 1
    assert all(150 <= n <= 250 for n in sent.values()), sent


def test_keys_holding_late_records_do_not_win_more_of_the_pooled_extras() -> None:
    """Scored on the late records' deficits as well as the summed ones, a key with late records won the
    pooled extras more often, and its late records went out at 0.123 for a rate of 0.1 (12 keys of 7
    records a batch, 10 % late); with only its live records in the running, 0.094."""
    import random

    now = 1.7e9
    rng = random.Random(7)
    proc = DistilledProcessor(
        build_graders([{"name": "c", "type": "categorical", "categories": ["a", "b"]}]), 600.0, 0.1, 1000,
        timestamp_func=lambda r: r["t"], key_func=lambda r: r["k"], clock=lambda: now + 10_000,
    )  # fmt: skip
    proc.process_batch([{"k": k, "c": "a", "t": now + 5000} for k in range(12)])
    received, sent = [0, 0], [0, 0]
    for b in range(600):
        batch = []
        for j in range(84):
            late = rng.random() < 0.1
            batch.append({"k": j % 12, "c": "ab"[rng.random() < 0.3], "t": now + (0 if late else 5000) + b, "l": late})
        for r in batch:
            received[r["l"]] += 1
        for dp in proc.process_batch(batch):
            sent[dp.data["l"]] += 1
    live, late = sent[0] / received[0], sent[1] / received[1]
    assert abs(live - 0.1) < 0.003 and abs(late - 0.1) < 0.008, (live, late)


def test_a_snapshot_of_an_int_window_loads_where_the_window_is_a_float_and_back() -> None:
    """The fingerprint spells 3600 and 3600.0 differently (JSON): a processor built with one refused a
    snapshot taken with the other (the daemon's reducer.window_seconds default is the int 3600)."""
    snaps = {}
    for window in (3600, 3600.0):
        proc = DistilledProcessor(build_graders(ONE), window, 0.5, clock=FakeClock())
        proc.process_batch([{"c": "ab"[i % 2]} for i in range(100)])
        snaps[window] = dump(proc)
    for window, other in ((3600, 3600.0), (3600.0, 3600)):
        fresh = DistilledProcessor(build_graders(ONE), window, 0.5, clock=FakeClock())
        load(fresh, snaps[other])
        assert fresh.get_current_stats()["historical_data_count"] == 100
    assert type(DistilledProcessor(build_graders(ONE), 3600).time_horizon_seconds) is int, "kept as given"


def _letter(record: dict[str, str]) -> str:
    return record["c"]


def test_a_processor_can_be_copied_and_pickled_with_its_lock_made_anew() -> None:
    """The lock added for threads made a processor refuse copy.deepcopy and pickle (it did before)."""
    import copy
    import pickle

    from distilld import CategoricalGrader

    grader = CategoricalGrader("c", ["a", "b", "c"], _letter)  # a module's function: a pickle holds its name
    proc = DistilledProcessor({"c": grader}, 600, 0.5)
    proc.process_batch([{"c": "abc"[i % 3]} for i in range(30)])
    for twin in (copy.deepcopy(proc), pickle.loads(pickle.dumps(proc))):
        batch = [{"c": "abc"[i % 3]} for i in range(30)]
        assert [dp.data for dp in twin.process_batch(batch)] == [
            dp.data for dp in copy.deepcopy(proc).process_batch(batch)
        ]
        assert twin._lock is not proc._lock


def test_evaluate_grades_a_boolean_as_the_engine_does() -> None:
    """A field's JSON true counts missing in the engine, but evaluate gave 1.0; a function's np.bool_ was
    graded 1.0 by the engine, but evaluate raised."""
    from distilld import NumericGrader

    field = build_graders([{"name": "m", "type": "numeric"}])["m"]
    with pytest.raises(ValueError, match="got bool"):
        field.evaluate({"m": True})
    assert NumericGrader("m", lambda r: np.bool_(True)).evaluate({}) == 1.0


class _HashRaises:
    def __hash__(self) -> int:
        raise ValueError("not hashable, as a mutable domain object may say")


def test_values_whose_hash_or_float_raise_something_else_than_type_error_are_missing_not_an_error() -> None:
    """Only TypeError was caught: a __hash__ raising ValueError, or a Real's __float__ raising
    ArithmeticError, made process_batch raise (bad values never raise: they count missing)."""
    from fractions import Fraction

    from distilld import CategoricalGrader, NumericGrader, OpenCategoricalGrader

    class FloatRaises(Fraction):
        def __float__(self) -> float:
            raise ArithmeticError("no float")

    class EqRaises(str):
        def __eq__(self, other: object) -> bool:
            raise ValueError("eq")

        __hash__ = str.__hash__

    class StrRaises(int):
        def __str__(self) -> str:
            raise ValueError("str")

    for grader, odd in (
        (CategoricalGrader("f", ["a"], lambda r: r), _HashRaises()),
        (CategoricalGrader("f", ["a"], lambda r: r), EqRaises("a")),
        (CategoricalGrader("f", ["a"], lambda r: r), StrRaises(3)),
        (OpenCategoricalGrader("f", lambda r: r), _HashRaises()),
        (NumericGrader("f", lambda r: r), FloatRaises(1, 2)),
    ):
        proc = DistilledProcessor({"f": grader}, reduction_percentage=1.0)
        assert len(proc.process_batch(["a", odd, "a"] if grader.is_categorical() else [1.0, odd, 2.0])) == 3
        assert proc.get_current_stats()["missing"] == {"f": 1}


@pytest.mark.parametrize("seed", range(12))
def test_the_deficits_summed_over_keys_hold_the_live_records_with_late_ones_mixed_in(seed: int) -> None:
    """A key's live records whose share of its quota all went to its late ones (or the reverse) were left
    out by the selector, arrivals and all: the summed deficits drifted by rate × those records (−15.7
    where 0.0 was due, after 40 batches)."""
    import random

    rng = random.Random(seed)
    rate = rng.choice([0.05, 0.1, 0.25, 0.5])
    now = 1.7e9
    proc = DistilledProcessor(
        build_graders([{"name": "c", "type": "categorical", "categories": ["a", "b"]}]), 600.0, rate, 1000,
        timestamp_func=lambda r: r["t"], key_func=lambda r: r["k"], clock=lambda: now + 10_000,
    )  # fmt: skip
    n_keys = rng.choice([1, 2, 5, 50])
    received, sent = 1, len(proc.process_batch([{"k": 0, "c": "a", "t": now + 5000, "late": False}]))
    for b in range(40):
        batch = [
            {"k": rng.randrange(n_keys), "c": rng.choice("ab"), "late": (late := rng.random() < 0.5),
             "t": now + 5000 + b - 5000 * late}
            for _ in range(rng.randrange(1, 30))
        ]  # fmt: skip
        received += sum(not r["late"] for r in batch)
        sent += sum(not dp.data["late"] for dp in proc.process_batch(batch))
    assert proc._windows.global_deficit[0] == pytest.approx(rate * received - sent, abs=1e-6)
