"""Config-driven graders: the ``features`` list."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from distilld import DistilledProcessor, FeatureConfigError, build_graders
from distilld.encoding import NumericBinner, OpenCategoricalEncoder
from distilld.graders import (
    CategoricalGrader,
    FieldCategoricalGrader,
    FieldNumericGrader,
    FieldOpenCategoricalGrader,
    NumericGrader,
    OpenCategoricalGrader,
)


def test_each_type_builds_its_grader_and_reads_nested_paths() -> None:
    graders = build_graders(
        [
            {"name": "age", "type": "numeric", "field": "person.age", "bins": 4},
            {"name": "gender", "type": "categorical", "field": "person.gender", "categories": ["m", "f"]},
            {"name": "first_tag", "type": "open_categorical", "field": "tags.0", "top_k": 5},
            {"name": "size", "type": "custom", "function": "builtins:len"},
        ]
    )
    assert isinstance(graders["age"], FieldNumericGrader) and graders["age"].bins == 4
    assert isinstance(graders["gender"], FieldCategoricalGrader)
    assert isinstance(graders["first_tag"], FieldOpenCategoricalGrader)
    assert isinstance(graders["size"], NumericGrader)
    record = {"person": {"age": 31, "gender": "f"}, "tags": ["x", "y"]}
    assert graders["age"].evaluate(record) == 31.0
    assert graders["gender"].evaluate(record) == "f"
    assert graders["first_tag"].evaluate(record) == "x"
    assert graders["size"].evaluate(record) == 2.0
    assert graders["age"].extract_batch([{}, {"person": 5}, record]) == [None, None, 31]


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            {"name": "a", "type": "numeric", "bins": 1},
            r"features\[1\] \('a'\): bins: Input should be greater than or equal to 2",
        ),
        ({"name": "a", "type": "categorical"}, r"features\[1\] \('a'\): categories: Field required"),
        (
            {"name": "a", "type": "categorical", "categories": ["x", "x"]},
            r"features\[1\] \('a'\): categories: .*distinct",
        ),
        (
            {"name": "a", "type": "categorical", "categories": ["x", "__other__"]},
            r"features\[1\] \('a'\): categories: .*'__other__'\] reserved",
        ),
        (
            {"name": "a", "type": "custom", "function": "builtins:str", "value_type": "categorical"}
            | {"categories": ["female", "__missing__"]},
            r"features\[1\] \('a'\): categories: .*'__missing__'\] reserved",
        ),
        (
            {"name": "a", "type": "custom", "function": "builtins:str", "value_type": "categorical"}
            | {"categories": ["x", "y", "x"]},
            r"features\[1\] \('a'\): categories: .*distinct",
        ),
        # settings a type would ignore: each used to be accepted and to do nothing
        (
            {"name": "a", "type": "custom", "function": "builtins:len", "field": "x"},
            r"features\[1\] \('a'\): field: .*reads the record itself",
        ),
        (
            {"name": "a", "type": "custom", "function": "builtins:len", "categories": ["x"]},
            r"features\[1\] \('a'\): categories: not used by value_type 'numeric' \(only by categorical\)",
        ),
        (
            {"name": "a", "type": "custom", "function": "builtins:str", "value_type": "categorical"}
            | {"categories": ["x"], "bins": 8},
            r"features\[1\] \('a'\): bins: not used by value_type 'categorical' \(only by numeric\)",
        ),
        (
            {"name": "a", "type": "custom", "function": "builtins:str", "value_type": "open_categorical"}
            | {"pair_bins": 5, "top_k": 3},
            r"features\[1\] \('a'\): pair_bins: not used by value_type 'open_categorical' \(only by numeric\)",
        ),
        (
            {"name": "a", "type": "custom", "function": "builtins:len", "top_k": 3},
            r"features\[1\] \('a'\): top_k: not used by value_type 'numeric' \(only by open_categorical\)",
        ),
        (
            {"name": "a", "type": "custom", "function": "builtins:str", "value_type": "categorical"},
            r"features\[1\] \('a'\): categories: value_type 'categorical' needs them",
        ),
        (
            {"name": "a", "type": "numeric", "field": "u", "transform": "url_host"},
            r"features\[1\] \('a'\): transform: url_host gives text.*every value would count as missing",
        ),
        (
            {"name": "a", "type": "numeric", "field": "u", "transform": "url_path"},
            r"features\[1\] \('a'\): transform: url_path gives text.*every value would count as missing",
        ),
        (
            {"name": "a", "type": "numeric", "field": "u", "transform": "lower"},
            r"features\[1\] \('a'\): transform: lower .*changes nothing",
        ),
        ({"name": "a", "type": "histogram"}, r"features\[1\] \('a'\): .*tag 'histogram'"),
        ({"name": "a", "type": "numeric", "field": "a..b"}, r"features\[1\] \('a'\): field: .*invalid field path"),
        ({"name": "a", "type": "numeric", "colour": 1}, r"features\[1\] \('a'\): colour: Extra inputs"),
        (
            {"name": "a", "type": "custom", "function": "no_such_module:f"},
            r"features\[1\] \('a'\): ModuleNotFoundError",
        ),
        ({"name": "ok", "type": "numeric"}, r"features\[1\] \('ok'\): name: duplicate feature name"),
        (
            {"name": "a", "type": "numeric", "bins": 16, "pair_bins": 5},
            r"features\[1\] \('a'\): .*pair_bins \(5\) must divide bins \(16\)",
        ),
    ],
)
def test_invalid_entries_name_the_entry_and_the_reason(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(FeatureConfigError, match=message):
        build_graders([{"name": "ok", "type": "numeric"}, entry])


def test_a_setting_given_as_null_is_not_given() -> None:
    """A template that writes ``categories: null`` for a numeric custom feature gives no categories (review)."""
    graders = build_graders(
        [
            {"name": "a", "type": "custom", "function": "builtins:len", "categories": None, "pair_bins": None},
        ]
    )
    assert not graders["a"].is_categorical()


def test_empty_or_non_list_features_are_refused() -> None:
    with pytest.raises(FeatureConfigError, match="at least one"):
        build_graders([])
    with pytest.raises(FeatureConfigError, match="expected a list"):
        build_graders("age")  # type: ignore[arg-type]


def test_config_and_python_graders_select_the_same_records() -> None:
    from distilld import CategoricalGrader

    from .conftest import FakeClock, people_records

    records = people_records(3000, 2)
    by_config = build_graders(
        [
            {"name": "gender", "type": "categorical", "categories": ["female", "male", "other"]},
            {"name": "age", "type": "numeric"},
        ]
    )
    by_python = {
        "gender": CategoricalGrader("gender", ["female", "male", "other"], lambda r: r["gender"]),
        "age": NumericGrader("age", lambda r: r["age"]),
    }
    picks = [
        [dp.data["id"] for dp in DistilledProcessor(g, 600, 0.1, 500, clock=FakeClock()).process_batch(records)]
        for g in (by_config, by_python)
    ]
    assert picks[0] == picks[1]


def test_a_features_transform_is_applied_by_every_type() -> None:
    """``transform`` turns the field's value before grading for numeric, categorical and open categorical
    features alike; a custom feature, whose function does its own transforming, refuses one."""
    graders = build_graders(
        [
            {"name": "host", "type": "open_categorical", "field": "u", "transform": "url_host"},
            {"name": "path", "type": "categorical", "field": "u", "transform": "url_path", "categories": ["/a/b"]},
            {"name": "n", "type": "numeric", "field": "tags", "transform": "length"},
            {"name": "kind", "type": "categorical", "field": "k", "transform": "lower", "categories": ["click"]},
        ]
    )
    record = {"u": "https://x.example.com/a/b?q=1", "tags": [1, 2, 3], "k": "Click"}
    assert [graders[n].extract_batch([record])[0] for n in ("host", "path", "n", "kind")] == [
        "x.example.com",
        "/a/b",
        3,
        "click",
    ]
    with pytest.raises(FeatureConfigError, match="does its own transforming"):
        build_graders([{"name": "c", "type": "custom", "function": "builtins:len", "transform": "lower"}])


def test_a_custom_features_bins_and_top_k_are_used() -> None:
    """A custom feature's ``bins`` (numeric) and ``top_k`` (open categorical) are those of the encoders
    the engine builds for it."""
    graders = build_graders(
        [
            {"name": "a", "type": "custom", "function": "builtins:len", "bins": 5},
            {"name": "b", "type": "custom", "function": "builtins:str", "value_type": "open_categorical", "top_k": 3},
        ]
    )
    binner, top = graders["a"].make_encoder(12, 0), graders["b"].make_encoder(12, 0)
    assert isinstance(binner, NumericBinner) and binner.bins == 5
    assert isinstance(top, OpenCategoricalEncoder) and top.top_k == 3


def test_numerics_pair_bins_default_to_quintiles_and_follow_the_config() -> None:
    """By default a numeric has 20 bins of its own and 5 (quintiles, the cut ``distilld evaluate``
    measures pairs at) inside pairs; ``pair_bins`` sets the pairs' cut, for numeric and custom features."""
    graders = build_graders(
        [
            {"name": "a", "type": "numeric"},
            {"name": "b", "type": "numeric", "pair_bins": 4},
            {"name": "c", "type": "custom", "function": "builtins:len", "bins": 12, "pair_bins": 3},
            {"name": "d", "type": "numeric", "bins": 16},
        ]
    )
    binners = {n: g.make_encoder(12, 0) for n, g in graders.items()}
    assert all(isinstance(b, NumericBinner) for b in binners.values())
    cuts = {n: (b.bins, b.bins // b.pair_div) for n, b in binners.items()}  # type: ignore[attr-defined]
    assert cuts == {"a": (20, 5), "b": (20, 4), "c": (12, 3), "d": (16, 8)}


def test_long_urls_are_transformed_without_being_held_in_the_cache() -> None:
    """url_host and url_path cache their parses of up to 65,536 URLs, keys (and url_path's values)
    held whole: distinct URLs of 100 kB, which records may carry, held ~380 MB per 2,000, up to
    gigabytes, whatever reducer.max_keys bounds. Long ones are parsed each time instead."""
    from distilld.transforms import _host, _path, url_host, url_path

    long_urls = [f"https://h{i}.example.com/" + "p" * 100_000 for i in range(50)]
    before = _host.cache_info().currsize, _path.cache_info().currsize
    assert url_host(long_urls) == [f"h{i}.example.com" for i in range(50)]
    assert url_path(long_urls) == ["/" + "p" * 100_000] * 50
    assert (_host.cache_info().currsize, _path.cache_info().currsize) == before, "no long URL held"
    assert url_host(["https://a-test-of-the-cache.example.com/x"]) == ["a-test-of-the-cache.example.com"]
    assert _host.cache_info().currsize == before[0] + 1, "short URLs still cached"


def test_a_custom_grading_function_class_takes_no_encoding_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A function that is a GradingFunction (an instance or a class) builds its own encoder: value_type,
    bins, pair_bins, categories and top_k would be ignored, so they are refused; without them it is used."""
    import types

    module = types.ModuleType("own_encoding_grader")

    class Band(CategoricalGrader):
        def __init__(self, name: str) -> None:
            super().__init__(name, ["young", "old"], lambda r: "young" if r["age"] < 40 else "old")

    module.Band = Band  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "own_encoding_grader", module)
    entry = {"name": "band", "type": "custom", "function": "own_encoding_grader:Band"}
    assert isinstance(build_graders([entry])["band"], Band)
    for extra in (
        {"value_type": "categorical", "categories": ["young"]},
        {"bins": 8},
        {"value_type": "open_categorical", "top_k": 5},
    ):
        # ours, not the function's: no exception type before it
        with pytest.raises(FeatureConfigError, match=r"features\[0\] \('band'\): own_encoding_grader:Band is a Grad"):
            build_graders([entry | extra])
    assert isinstance(build_graders([entry | {"categories": None, "pair_bins": None}])["band"], Band)  # null: not given


def test_number_categories_are_the_labels_record_numbers_are_compared_as() -> None:
    """YAML's ``categories: [200, 404]`` was refused ("Input should be a valid string") where the Python
    graders take numbers; a record's 404 (or "404") is the category 404."""
    entry = {"name": "status", "type": "categorical", "field": "status", "categories": [200, 404]}
    grader = build_graders([entry])["status"]
    assert grader.get_categories() == ["200", "404"]
    assert [grader.evaluate({"status": v}) for v in (404, "404", 200)] == ["404", "404", "200"]
    with pytest.raises(FeatureConfigError, match=r"features\[0\] \('status'\): categories: .*'1' given twice"):
        build_graders([entry | {"categories": [1, "1"]}])


@pytest.mark.parametrize(
    "entry, message",
    [
        # YAML's [yes, no] is [true, false]: as "true" and "false", a record's "yes" would be other
        (
            {"name": "a", "type": "categorical", "categories": [True, False]},
            r"features\[0\] \('a'\): categories: True is a boolean: quote the category",
        ),
        (
            {"name": "a", "type": "custom", "function": "builtins:str", "value_type": "categorical"}
            | {"categories": ["x", False]},
            r"features\[0\] \('a'\): categories: False is a boolean",
        ),
        # pydantic read true as 1: top_k: yes kept a single value
        ({"name": "a", "type": "open_categorical", "top_k": True}, r"top_k: true is a boolean, not a whole number"),
        ({"name": "a", "type": "numeric", "bins": True}, r"bins: true is a boolean"),
        ({"name": "a", "type": "numeric", "pair_bins": True}, r"pair_bins: true is a boolean"),
    ],
)
def test_a_boolean_is_no_category_nor_count(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(FeatureConfigError, match=message):
        build_graders([entry])


@pytest.mark.parametrize(
    "transform, categories, never",
    [
        ("lower", ["click", "Click"], "'Click' would never match: transform lower gives lower-case text"),
        ("url_host", ["file:", "Example.com"], "'Example.com' would never match: transform url_host gives lower"),
        ("length", ["1", "one", "-1"], "'one', '-1' would never match: transform length gives whole numbers"),
        ("length", ["1", "007", "00"], "'007', '00' would never match: transform length gives whole numbers"),
    ],
)
def test_a_category_the_transform_never_gives_is_refused(transform: str, categories: list[str], never: str) -> None:
    """``transform: lower`` with ``categories: [Click]`` counted every "Click" as other, silently."""
    entry = {"name": "a", "type": "categorical", "field": "f", "transform": transform, "categories": categories}
    with pytest.raises(FeatureConfigError, match=rf"features\[0\] \('a'\): categories: {never}"):
        build_graders([entry])
    grader = build_graders([entry | {"categories": [categories[0]]}])["a"]
    assert grader.get_categories() == [categories[0]]


def test_a_malformed_function_is_refused_with_the_forms_it_takes() -> None:
    """It was refused with pydantic's "String should match pattern '^([A-Za-z_][\\w.]*:...'", a regular
    expression for a reason."""
    with pytest.raises(FeatureConfigError, match=r"features\[0\] \('a'\): function: 'mod:f\(\)': expected package"):
        build_graders([{"name": "a", "type": "custom", "function": "mod:f()"}])


@pytest.mark.parametrize("top_k", [True, 2.5, "3", 0])
def test_the_python_open_categorical_takes_a_whole_top_k(top_k: Any) -> None:
    """``top_k=True`` gave a top K of one; 2.5 and "3" failed only when the engine built the encoder."""
    with pytest.raises(ValueError, match=r"top_k for 'o' must be a whole number of at least 1"):
        OpenCategoricalGrader("o", str, top_k=top_k)


def test_a_numpy_whole_number_top_k_or_bins_is_kept_as_an_int_and_the_processor_snapshots() -> None:
    """``top_k=np.int64(4)`` (from a numpy array of settings) passed the whole-number check and was kept as given:
    the snapshot's fingerprint, JSON, raised "Type is not JSON serializable: numpy.int64" at every dump."""
    import numpy as np

    from distilld.snapshot import dump, load

    graders = {
        "c": OpenCategoricalGrader("c", lambda r: r["c"], top_k=np.int64(4)),
        "n": NumericGrader("n", lambda r: r["n"], bins=np.int64(8), pair_bins=np.int32(4)),
    }
    assert [type(v) for v in (graders["c"].top_k, graders["n"].bins, graders["n"].pair_bins)] == [int, int, int]
    proc = DistilledProcessor(graders)
    proc.process_batch([{"c": "a", "n": float(i)} for i in range(50)])
    load(DistilledProcessor(graders), dump(proc))
