"""The library API is a drop-in for the published ``distilled`` 0.1.0 package."""

from __future__ import annotations

import datetime
import inspect
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

import distilled as seed
import pytest

import distilld
from distilld import (
    CategoricalGrader,
    DataPoint,
    DistilledProcessor,
    LambdaGrader,
    NumericGrader,
    OpenCategoricalGrader,
    create_grading_functions,
)


@pytest.mark.parametrize(
    "name", ["DistilledProcessor", "DataPoint", "GradingFunction", "NumericGrader", "CategoricalGrader"]
)
def test_seed_constructor_parameters_are_accepted_in_the_same_order(name: str) -> None:
    ours = list(inspect.signature(getattr(distilld, name)).parameters.values())
    theirs = list(inspect.signature(getattr(seed, name)).parameters.values())
    assert [p.name for p in ours[: len(theirs)]] == [p.name for p in theirs]
    for o, t in zip(ours, theirs, strict=False):
        assert o.default == t.default, f"{name}.{o.name} default differs"
    assert all(p.default is not inspect.Parameter.empty or p.kind is p.KEYWORD_ONLY for p in ours[len(theirs) :])


@pytest.mark.parametrize(
    "name, methods",
    [
        ("DistilledProcessor", ["process_batch", "get_current_stats", "reset"]),
        ("NumericGrader", ["evaluate", "is_categorical"]),
        ("CategoricalGrader", ["evaluate", "is_categorical", "get_categories"]),
    ],
)
def test_seed_methods_exist(name: str, methods: list[str]) -> None:
    for method in methods:
        assert callable(getattr(getattr(distilld, name), method))
        assert hasattr(getattr(seed, name), method)


def test_lambda_grader_and_factory_match_seed_signatures() -> None:
    from distilled.grading import LambdaGrader as SeedLambda
    from distilled.grading import create_grading_functions as seed_factory

    assert list(inspect.signature(LambdaGrader).parameters) == list(inspect.signature(SeedLambda).parameters)
    assert list(inspect.signature(create_grading_functions).parameters) == list(
        inspect.signature(seed_factory).parameters
    )


def test_datapoint_defaults_match_seed() -> None:
    ours, theirs = DataPoint(data={"v": 1}, timestamp=1.0), seed.DataPoint(data={"v": 1}, timestamp=1.0)
    assert (ours.data, ours.timestamp, ours.vector_values, ours.sent_previously) == (
        theirs.data, theirs.timestamp, theirs.vector_values, theirs.sent_previously,
    )  # fmt: skip
    assert ours.weight == 1.0 and ours.key is None


def test_stats_have_the_seed_keys_plus_drift_and_keys() -> None:
    graders = {"v": NumericGrader("v", lambda r: r["v"]), "c": CategoricalGrader("c", ["A", "B"], lambda r: r["c"])}
    theirs = seed.DistilledProcessor({"v": seed.NumericGrader("v", lambda r: r["v"])}).get_current_stats()
    ours = DistilledProcessor(graders).get_current_stats()
    assert set(theirs) <= set(ours)
    assert {"drift", "keys_held"} <= set(ours)


def test_a_category_spelled_like_a_reserved_label_is_refused_and_shares_never_vanish() -> None:
    """``__other__`` and ``__missing__`` label values outside the list and missing ones: a category of that
    name merged with them, and the proportions report kept one of the two shares and lost the other."""
    with pytest.raises(ValueError, match=r"'__other__'\] reserved"):
        DistilledProcessor({"c": CategoricalGrader("c", ["a", "__other__"], lambda r: r["c"])})
    # an open categorical takes its values from the data: one spelled __missing__ is other, as in a fixed list (it
    # had taken a slot, and its share had been added to the missing values')
    proc = DistilledProcessor(distilld.build_graders([{"name": "c", "type": "open_categorical", "top_k": 4}]))
    proc.process_batch([{"c": "__missing__"}] * 30 + [{"c": None}] * 20 + [{"c": "a"}] * 50)
    shares = proc.current_proportions["c"]["categories"]
    assert shares == {"a": 0.5, "__other__": 0.3, "__missing__": 0.2}


def test_output_drift_is_the_shares_of_every_keys_records_together() -> None:
    """Per-key drift with many small keys is high whatever the selection (a key that sends ~10 records cannot
    hold a feature's shares); the output drift compares every key's window records with every key's sent
    ones, computed here from the windows' own records."""
    from .conftest import PEOPLE_FEATURES, people_records, tv

    proc = DistilledProcessor(
        distilld.build_graders(PEOPLE_FEATURES), 3600, 0.1, 1000, key_func=lambda r: r["id"] % 200
    )
    records = people_records(20_000, seed=3)
    sent = [dp.data for dp in proc.process_batch(records)]
    drift = proc.get_current_stats()["drift"]["gender"]

    expected = tv(Counter(r["gender"] for r in records), Counter(r["gender"] for r in sent))
    assert drift["output"] == pytest.approx(expected, abs=1e-12)
    assert drift["output"] < 0.01 < drift["mean"], drift


def test_keys_that_have_sent_nothing_are_left_out_of_the_drift() -> None:
    """A key that has sent nothing yet has no sent shares to compare: it counts in neither the mean
    (which would dilute it toward 0) nor the max, and an output with nothing sent drifts 0, not NaN."""
    proc = DistilledProcessor({"v": NumericGrader("v", lambda r: r["v"])}, 3600, 0.1, 1000, key_func=lambda r: r["k"])
    proc.process_batch([{"k": "quiet", "v": float(i)} for i in range(5)])  # 0.5 records due: none sent
    assert proc.get_current_stats()["drift"]["v"] == {"mean": 0.0, "max": 0.0, "output": 0.0}
    proc.process_batch([{"k": "busy", "v": float(i * i % 97)} for i in range(95)])  # 10 due: 9.5 + the pool's 0.5
    assert proc.window_records() == (100, 10) and proc.keys_held == 2
    drift = proc.get_current_stats()["drift"]["v"]
    assert drift["mean"] == drift["max"] > 0  # the busy key's own drift alone


def test_seed_usage_example_runs_and_keeps_proportions() -> None:
    processor = DistilledProcessor(
        grading_functions={
            "numeric_var": NumericGrader("numeric_var", lambda x: float(x.get("value", 0))),
            "categorical_var": CategoricalGrader("categorical_var", ["A", "B", "C"], lambda x: x.get("category", "A")),
        },
        reduction_percentage=0.1,
    )
    data = [{"value": i, "category": "A" if i < 70 else "B"} for i in range(100)]
    result = processor.process_batch(data)
    assert len(result) == 10
    assert all(isinstance(p, DataPoint) and p.sent_previously for p in result)
    a_share = sum(p.vector_values["categorical_var"] == "A" for p in result) / len(result)
    assert a_share == pytest.approx(0.7)
    assert all(any(p.data is d for d in data) for p in result)  # the original objects
    assert processor.grading_functions["numeric_var"].name == "numeric_var"
    assert len(processor.historical_data) == 100 and len(processor.sent_data) == 10
    processor.reset()
    assert len(processor.historical_data) == 0 and processor.get_current_stats()["sent_data_count"] == 0


def test_seed_grader_validation_is_kept() -> None:
    with pytest.raises(ValueError):
        CategoricalGrader("c", [], lambda r: r)
    with pytest.raises(ValueError):
        LambdaGrader("l", lambda r: r, is_categorical=True)
    with pytest.raises(ValueError):
        NumericGrader("n", lambda r: "x").evaluate({})
    assert CategoricalGrader("c", ["a"], lambda r: r).get_categories() == ["a"]


def test_seed_factory_dict_form_builds_the_same_graders() -> None:
    graders = create_grading_functions(
        {
            "age": {"type": "numeric", "function": lambda p: p["age"]},
            "g": {"type": "categorical", "categories": ["m", "f"], "function": lambda p: p["g"]},
            "l": {"type": "lambda", "function": lambda p: p["g"], "is_categorical": True, "categories": ["m", "f"]},
        }
    )
    assert isinstance(graders["age"], NumericGrader) and not graders["age"].is_categorical()
    assert isinstance(graders["g"], CategoricalGrader) and graders["g"].evaluate({"g": "m"}) == "m"
    assert isinstance(graders["l"], LambdaGrader) and graders["l"].is_categorical()
    with pytest.raises(ValueError, match="Unknown function type"):
        create_grading_functions({"x": {"type": "weird", "function": len}})


def test_numeric_proportions_carry_the_seeds_average() -> None:
    clock = [1000.0]
    processor = DistilledProcessor({"v": NumericGrader("v", lambda r: r["v"])}, clock=lambda: clock[0])
    sent = processor.process_batch([{"v": float(i)} for i in range(100)] + [{"v": None}])
    stats = processor.get_current_stats()
    assert stats["current_proportions"]["v"]["average"] == pytest.approx(49.5)  # the values present
    sent_values = [p.data["v"] for p in sent if p.data["v"] is not None]
    assert stats["sent_proportions"]["v"]["average"] == pytest.approx(sum(sent_values) / len(sent_values))
    clock[0] += 3601  # the window has passed: the next batch's average is its own
    processor.process_batch([{"v": 7.0}] * 10)
    assert processor.get_current_stats()["current_proportions"]["v"]["average"] == 7.0
    processor.reset()
    assert processor.get_current_stats()["current_proportions"] == {}


def test_the_average_forgets_values_older_than_the_window() -> None:
    """The average is over the window's panes: a batch the window has passed leaves it, also when no
    later batch has fallen in its pane slot to overwrite it (12 panes of 300 s: slots 3, 9, 4)."""
    clock = [1000.0]
    processor = DistilledProcessor({"v": NumericGrader("v", lambda r: r["v"])}, 3600, 0.5, clock=lambda: clock[0])

    def average_after(value: float) -> float:
        processor.process_batch([{"v": value}] * 10)
        average: float = processor.get_current_stats()["current_proportions"]["v"]["average"]
        return average

    assert average_after(1.0) == 1.0
    clock[0] += 1800
    assert average_after(3.0) == 2.0
    clock[0] += 2000  # the first batch is 3800 s old, the second 2000 s
    assert average_after(5.0) == 4.0


def test_late_records_forwarded_stay_out_of_the_sent_average() -> None:
    """A record too late for the window may be forwarded, but the sent average, like the sent counts,
    holds only the window's records."""
    processor = DistilledProcessor(
        {"v": NumericGrader("v", lambda r: r["v"])}, 600, 0.5, 1000, timestamp_func=lambda r: r["t"],
        clock=lambda: 10_000.0,
    )  # fmt: skip
    live = [{"t": 10_000.0, "v": float(i % 5)} for i in range(100)]
    late = [{"t": 1_000.0, "v": 1000.0} for _ in range(100)]
    sent = processor.process_batch([r for pair in zip(live, late, strict=True) for r in pair])
    assert any(p.data["t"] == 1_000.0 for p in sent)
    sent_live = [p.data["v"] for p in sent if p.data["t"] == 10_000.0]
    average = processor.get_current_stats()["sent_proportions"]["v"]["average"]
    assert average == pytest.approx(sum(sent_live) / len(sent_live))


def test_vector_values_are_the_seeds_types_and_leave_missing_values_out() -> None:
    import numpy as np

    processor = DistilledProcessor(
        {"v": NumericGrader("v", lambda r: r["v"]), "c": CategoricalGrader("c", ["A"], lambda r: r["c"])},
        reduction_percentage=1.0,
    )
    points = processor.process_batch([{"v": 3, "c": "A"}, {"v": np.int64(4)}, {"v": float("nan"), "c": "A"}])
    assert [p.vector_values for p in points] == [{"v": 3.0, "c": "A"}, {"v": 4.0}, {"c": "A"}]
    assert type(points[0].vector_values["v"]) is float
    assert processor.get_current_stats()["missing"] == {"v": 1, "c": 1}  # numpy numbers count as numbers


@pytest.mark.parametrize("wrap", [iter, tuple, deque, lambda rs: (r for r in rs)])
def test_any_iterable_of_records_is_a_batch(wrap: Callable[[list[Any]], Iterable[Any]]) -> None:
    records = [{"v": i} for i in range(250)]
    processor = DistilledProcessor({"v": NumericGrader("v", lambda r: r["v"])}, batch_size=100)
    points = processor.process_batch(wrap(records))
    assert len(points) == 25 and all(any(p.data is r for r in records) for p in points)


def test_seed_style_graders_are_accepted_and_plain_functions_refused_clearly() -> None:
    class Duck:  # the seed called only evaluate() and is_categorical()
        name = "d"

        def evaluate(self, record: dict) -> str:
            return record["d"]

        def is_categorical(self) -> bool:
            return True

        def get_categories(self) -> list[str]:
            return ["x", "y"]

    graders = {"d": Duck(), "n": seed.NumericGrader("n", lambda r: r["n"])}
    points = DistilledProcessor(graders, reduction_percentage=0.5).process_batch(
        [{"d": "xy"[i % 2], "n": i} for i in range(10)]
    )
    assert len(points) == 5 and {p.vector_values["d"] for p in points} == {"x", "y"}
    with pytest.raises(TypeError, match="NumericGrader"):
        DistilledProcessor({"v": lambda r: r["v"]})


def test_the_published_categorical_graders_unknown_values_go_to_other_not_missing() -> None:
    """distilled 0.1.0's CategoricalGrader.evaluate raises on a value outside its categories (a missing
    value to distilld); the grader's classifier_func gives the value itself, which goes to *other*."""
    processor = DistilledProcessor({"d": seed.CategoricalGrader("d", ["x", "y"], lambda r: r["d"])})
    processor.process_batch([{"d": "xyz"[i % 3]} for i in range(30)])
    stats = processor.get_current_stats()
    assert stats["current_proportions"]["d"]["categories"]["__other__"] == pytest.approx(1 / 3)
    assert stats["missing"] == {"d": 0}


def test_stats_name_the_graders_in_use_and_window_views_say_why_they_do_not_iterate() -> None:
    graders = {"v": NumericGrader("v", lambda r: r["v"])}
    processor = DistilledProcessor(graders)
    graders["w"] = NumericGrader("w", lambda r: r["v"])  # the caller's dict changes; the processor's does not
    assert processor.get_current_stats()["grading_function_names"] == ["v"]
    with pytest.raises(TypeError, match="keeps counts"):
        list(processor.historical_data)


def test_seed_submodule_import_paths() -> None:
    from distilld.core import DataPoint as CoreDataPoint
    from distilld.grading import LambdaGrader as GradingLambda

    assert CoreDataPoint is DataPoint and GradingLambda is LambdaGrader


def _by_event_time(now: float) -> DistilledProcessor:
    """Every record sent, event time from ``ts``, the clock fixed at ``now``."""
    return DistilledProcessor(
        {"v": NumericGrader("v", lambda r: r["v"])},
        reduction_percentage=1.0,
        timestamp_func=lambda r: r["ts"],
        clock=lambda: now,
    )


def test_unusable_event_times_are_counted_warned_once_and_reported_as_used(caplog: pytest.LogCaptureFixture) -> None:
    now = 1_700_000_000.0
    processor = _by_event_time(now)
    with caplog.at_level("WARNING", logger="distilld.processor"):
        points = processor.process_batch([{"v": 1, "ts": now * 1000}, {"v": 2, "ts": now - 5}])
        processor.process_batch([{"v": 3, "ts": float("nan")}])
    assert processor.get_current_stats()["timestamps_replaced"] == 2
    # the time used: no watermark yet, so the one this batch sets (its latest usable time), not the clock
    assert [p.timestamp for p in points] == [now - 5, now - 5]
    assert len([r for r in caplog.records if "milliseconds?" in r.getMessage()]) == 1


def test_before_any_watermark_an_unusable_time_takes_the_batch_s_latest_not_the_clock() -> None:
    """In a replay of old records, one without a usable time in the first batch took the clock: the watermark
    went to now, and every later record was too late for its window (until a rewind). The clock stands in only
    for a first batch without a usable time."""
    now = 1_700_000_000.0
    old = now - 86_400 * 365
    processor = _by_event_time(now)
    points = processor.process_batch([{"v": 1, "ts": None}, {"v": 2, "ts": old}, {"v": 3, "ts": old + 7}])
    assert [p.timestamp for p in points] == [old + 7, old, old + 7]
    assert processor.watermark == old + 7
    later = processor.process_batch([{"v": 4, "ts": old + 8}])  # on time: in the window, counted
    assert [p.timestamp for p in later] == [old + 8]
    assert processor.get_current_stats()["historical_data_count"] == 4
    fresh = _by_event_time(now)
    assert [p.timestamp for p in fresh.process_batch([{"v": 1, "ts": None}])] == [now]


def test_an_unusable_time_takes_the_watermark_not_the_clock() -> None:
    """Once event times have set a watermark, a record with an unusable time is placed at the watermark
    (the clock stands in only before any event time was seen)."""
    now = 1_700_000_000.0
    processor = _by_event_time(now)
    processor.process_batch([{"v": 1, "ts": now - 100}])
    (point,) = processor.process_batch([{"v": 2, "ts": float("nan")}])
    assert point.timestamp == now - 100


def test_reset_forgets_the_counters() -> None:
    """reset() also zeroes the missing-value and replaced-timestamp counts in the stats."""
    processor = DistilledProcessor({"v": NumericGrader("v", lambda r: r["v"])}, timestamp_func=lambda r: r["ts"])
    processor.process_batch([{"v": None, "ts": float("nan")}])
    before = processor.get_current_stats()
    assert before["missing"] == {"v": 1} and before["timestamps_replaced"] == 1
    processor.reset()
    stats = processor.get_current_stats()
    assert stats["missing"] == {"v": 0} and stats["timestamps_replaced"] == 0


@pytest.mark.parametrize("bins, pair_bins", [(20, 3), (20, 1), (20, 0), (20, -5), (1, None), (20, 2.5)])
def test_numeric_grader_bins_are_checked_where_it_is_built_and_name_it(bins: Any, pair_bins: Any) -> None:
    """pair_bins 3 of 20 failed inside the engine without the feature's name; 1 and 0 passed silently."""
    with pytest.raises(ValueError, match=r"NumericGrader 'age': .*bins"):
        NumericGrader("age", lambda r: r["age"], bins=bins, pair_bins=pair_bins)


@pytest.mark.parametrize(
    "argument, value",
    [
        ("batch_size", 10.5),
        ("batch_size", None),
        ("batch_size", 0),
        ("panes", 2.5),
        ("max_keys", 2.5),
        ("segment_picks", 0),
        ("reduction_percentage", "0.1"),
        ("reduction_percentage", 1.5),
        ("time_horizon_seconds", "60"),
        ("time_horizon_seconds", -1),
        ("seed", 1.5),
        ("seed", 2**70),
    ],
)
def test_a_bad_constructor_argument_is_refused_by_its_name(argument: str, value: Any) -> None:
    """A float batch_size was taken and failed at the first process_batch ('float' object cannot be
    interpreted as an integer); a float panes failed in numpy, a string rate with '<' not supported,
    a seed past 64 bits when a snapshot was taken: none named the argument."""
    with pytest.raises(ValueError, match=rf"^{argument} must"):
        DistilledProcessor({"v": NumericGrader("v", lambda r: r["v"])}, **{argument: value})


def test_a_whole_float_count_is_taken_as_that_number() -> None:
    """The seed package ignored batch_size: code written for it may pass 50.0, which is taken as 50."""
    proc = DistilledProcessor({"v": NumericGrader("v", lambda r: r["v"])}, batch_size=50.0, panes=12.0)  # type: ignore[arg-type]
    assert proc.batch_size == 50 and isinstance(proc.batch_size, int)
    assert len(proc.process_batch([{"v": float(i)} for i in range(200)])) == 20


@pytest.mark.parametrize("seed", [-1, 2**63, 2**64 - 1])
def test_any_64_bit_seed_runs_and_snapshots(seed: int) -> None:
    """A negative seed (the settings allow one) or one past 2**63 overflowed the numeric binner's
    compiled sampler: OverflowError at the first batch with a numeric feature."""
    from distilld.snapshot import dump, load

    def make() -> DistilledProcessor:
        graders = {"v": NumericGrader("v", lambda r: r["v"]), "w": NumericGrader("w", lambda r: -r["v"])}
        return DistilledProcessor(graders, seed=seed, clock=lambda: 1_000.0)

    records = [{"v": float(i % 37)} for i in range(500)]
    first, second = make(), make()
    assert len(first.process_batch(records)) == 50
    load(second, dump(first))
    assert [p.data for p in second.process_batch(records)] == [p.data for p in first.process_batch(records)]


def test_vector_values_leave_out_a_categorical_value_counted_missing() -> None:
    """NaN, a list or a mapping given to a categorical feature is counted missing (README), but
    vector_values held it, unlike a numeric's missing values, which it leaves out."""
    processor = DistilledProcessor(
        {"c": CategoricalGrader("c", ["A"], lambda r: r["c"]), "o": OpenCategoricalGrader("o", lambda r: r["c"])},
        reduction_percentage=1.0,
    )
    points = processor.process_batch([{"c": float("nan")}, {"c": ["A"]}, {"c": {"A": 1}}, {"c": "A"}, {"c": "B"}])
    assert [p.vector_values for p in points] == [{}, {}, {}, {"c": "A", "o": "A"}, {"c": "B", "o": "B"}]
    assert processor.get_current_stats()["missing"] == {"c": 3, "o": 3}


@pytest.mark.parametrize("given", [datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), "1700000000"])
def test_the_warning_for_an_event_time_that_is_not_a_number_shows_it(
    given: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A datetime or a string from timestamp_func was warned about as 'e.g. nan', the value it was read as."""
    processor = DistilledProcessor(
        {"v": NumericGrader("v", lambda r: r["v"])}, timestamp_func=lambda r: r["ts"], clock=lambda: 1_700_000_000.0
    )
    with caplog.at_level("WARNING", logger="distilld.processor"):
        processor.process_batch([{"v": 1, "ts": 1_699_999_999.0}, {"v": 2, "ts": given}])
    (message,) = [r.getMessage() for r in caplog.records]
    assert f"e.g. {given!r} (not a number: event times are seconds" in message
    assert processor.get_current_stats()["timestamps_replaced"] == 1


def test_the_seeds_categorical_lambda_grader_keeps_its_categories() -> None:
    """The published LambdaGrader has ``categories`` but no get_categories: it was wrapped as an open
    categorical, its list ignored, and a value outside it counted missing (its evaluate raises) where
    distilld's own LambdaGrader counts it *other*."""
    from distilled.grading import LambdaGrader as SeedLambda

    shares = []
    for grader in (
        SeedLambda("c", lambda r: r, is_categorical=True, categories=["a", "b"]),
        LambdaGrader("c", lambda r: r, is_categorical=True, categories=["a", "b"]),
    ):
        proc = DistilledProcessor({"c": grader}, reduction_percentage=1.0)
        proc.process_batch(["a", "b", "zzz", "zzz"])
        stats = proc.get_current_stats()
        assert stats["missing"] == {"c": 0}
        shares.append(stats["current_proportions"]["c"]["categories"])
    assert shares[0] == shares[1] == {"a": 0.25, "b": 0.25, "__other__": 0.5}


def test_a_boolean_from_a_numeric_graders_function_is_1_or_0_as_the_seed_graded_it() -> None:
    """The seed's NumericGrader.evaluate(True) is 1.0; distilld counted every boolean missing, so a
    seed user's flag feature was lost without a word. A field's JSON ``true`` stays a wrong type."""
    assert seed.NumericGrader("m", lambda r: r["m"]).evaluate({"m": True}) == 1.0
    records = [{"m": True}, {"m": False}, {"m": False}]
    for grader in (NumericGrader("m", lambda r: r["m"]), LambdaGrader("m", lambda r: r["m"])):
        assert grader.evaluate({"m": True}) == 1.0
        proc = DistilledProcessor({"m": grader}, reduction_percentage=1.0)
        out = proc.process_batch(records)
        assert proc.get_current_stats()["missing"] == {"m": 0}
        assert sorted(dp.vector_values["m"] for dp in out) == [0.0, 0.0, 1.0]
    field = DistilledProcessor(distilld.build_graders([{"name": "m", "type": "numeric"}]), reduction_percentage=1.0)
    field.process_batch(records)
    assert field.get_current_stats()["missing"] == {"m": 3}


@pytest.mark.parametrize(
    ("categories", "values", "labels"),
    [([True, False], [True, False], ["true", "false"]), ([1, 2], [1, 2], ["1", "2"]), ([1.5], [1.5], ["1.5"])],
)
def test_categories_that_are_not_strings_match_in_the_engine_as_in_evaluate(
    categories: list[Any], values: list[Any], labels: list[str]
) -> None:
    """``CategoricalGrader('f', [True, False], ...)``: evaluate accepted True, but the engine compared
    ``str(True)`` ("True") with the value's label ("true"), and every record went to *other*."""
    grader = CategoricalGrader("f", categories, lambda r: r)
    proc = DistilledProcessor({"f": grader}, reduction_percentage=1.0)
    proc.process_batch(values * 5)
    shares = proc.get_current_stats()["current_proportions"]["f"]["categories"]
    assert shares.get("__other__", 0) == 0 and set(labels) <= set(shares)
    assert [grader.evaluate(v) for v in values] == labels
    with pytest.raises(ValueError, match="a category is a string, a number or a boolean"):
        CategoricalGrader("f", [None, "a"], lambda r: r)
