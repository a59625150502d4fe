"""Encoders, field paths and the budget allocator, on small known inputs."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from distilld.budget import allocate
from distilld.encoding import (
    CategoricalEncoder,
    NumericBinner,
    OpenCategoricalEncoder,
    category_names,
    to_float_array,
)
from distilld.fieldpath import compile_path, parse_path

ZERO = np.zeros(0, dtype=np.int64)


def _epochs(n: int) -> np.ndarray:
    return np.zeros(n, dtype=np.int64)


def test_to_float_array_turns_every_non_number_into_nan() -> None:
    values = [1, 2.5, None, "3", True, 10**400, math.inf, -math.nan, {"a": 1}, [1]]
    out = to_float_array(values)
    assert out[:2].tolist() == [1.0, 2.5]
    assert np.isnan(out[2:]).all()


def test_decimals_are_numbers() -> None:
    """Avro's decimal logical type decodes to Decimal: a numeric feature over one was all missing."""
    out = to_float_array([Decimal("12.50"), 3, Decimal("NaN"), Decimal("sNaN"), Decimal("1e400")])
    assert out[:2].tolist() == [12.5, 3.0]
    assert np.isnan(out[2:]).all()


def test_categorical_encoder_has_other_and_missing_cells() -> None:
    enc = CategoricalEncoder(["a", "b", "1", "true"])
    codes = enc.encode(["a", "b", "zzz", None, 1, True, [1], {"x": 2}, math.nan], _epochs(9), 0)
    assert codes.tolist() == [
        0,
        1,
        enc.other_code,
        enc.missing_code,
        2,
        3,
        enc.missing_code,
        enc.missing_code,
        enc.missing_code,
    ]
    assert enc.labels()[-2:] == ["__other__", "__missing__"]


def test_numpy_scalars_are_categories_like_the_python_values_they_hold() -> None:
    """np.int64(200), np.bool_ and np.float32 (pandas and numpy records) all landed in missing."""
    values = [np.int64(200), np.int32(404), np.bool_(True), np.float32(1.5), np.float32("nan")]
    for enc in (CategoricalEncoder(["200", "404", "true", "1.5"]), OpenCategoricalEncoder(top_k=4)):
        codes = enc.encode(values, _epochs(len(values)), 0).tolist()
        assert [enc.labels()[c] for c in codes] == ["200", "404", "true", "1.5", "__missing__"]


def test_open_categorical_keeps_the_top_k_values() -> None:
    enc = OpenCategoricalEncoder(top_k=2, refresh_every=10)
    values = ["x"] * 50 + ["y"] * 30 + ["z"] * 5
    codes = enc.encode(values, _epochs(len(values)), 0)
    assert set(codes[:80].tolist()) == {0, 1}
    assert (codes[80:] == enc.other_code).all()
    assert sorted(enc.labels()[:2]) == ["x", "y"]


def test_a_value_that_overtakes_the_top_k_takes_the_code_of_one_that_left_it() -> None:
    """Once the K codes are given out, a newcomer more frequent than a held value takes that
    value's code: the top K follow the stream instead of keeping the first K values seen."""
    enc = OpenCategoricalEncoder(top_k=2, refresh_every=10)
    enc.encode(["x"] * 30 + ["y"] * 20, _epochs(50), 0)
    codes = enc.encode(["z"] * 100, _epochs(100), 0)
    assert sorted(enc.labels()[:2]) == ["x", "z"]
    assert (codes == enc.labels().index("z")).all()


def test_true_and_1_are_counted_as_the_categories_they_are() -> None:
    """True == 1, so they were counted as one value under the first one's label: '1' (10 records)
    took the only place and the 30 True records went to other."""
    enc = OpenCategoricalEncoder(top_k=1)
    values = [1] * 10 + [True] * 30
    codes = enc.encode(values, _epochs(len(values)), 0)
    assert enc.labels()[0] == "true" and (codes[10:] == 0).all()
    with_a_list = OpenCategoricalEncoder(top_k=1)
    with_a_list.encode([*values, [1]], _epochs(len(values) + 1), 0)
    assert with_a_list.labels()[0] == "true"


def test_nan_takes_no_place_among_the_top_k() -> None:
    """NaN (pandas' missing value) took a top-K place as 'nan' while its records went to missing."""
    enc = OpenCategoricalEncoder(top_k=2)
    values = [math.nan] * 50 + ["a"] * 30 + ["b"] * 20
    codes = enc.encode(values, _epochs(len(values)), 0)
    assert sorted(enc.labels()[:2]) == ["a", "b"]
    assert (codes[:50] == enc.missing_code).all() and enc.other_code not in codes.tolist()


def test_numeric_bins_are_equal_frequency_over_the_window() -> None:
    enc = NumericBinner(bins=4, panes=4)
    values = np.random.default_rng(0).exponential(10, 4000)
    codes = enc.encode(values.tolist(), _epochs(4000), 0)
    counts = np.bincount(codes, minlength=5)
    assert counts[4] == 0
    assert counts[:4] == pytest.approx([1000] * 4, rel=0.15)


def test_whole_numbers_on_an_edge_go_below_it_as_quantile_cuts_put_them() -> None:
    """Values 0..9, 100 each, in quintiles: the window's 20th percentile is 1 (1.8 by np.quantile);
    a 1 goes below the edge, as ``np.searchsorted(np.quantile(...), v)`` and pandas.qcut cut it,
    so the engine's bins are the ones ``distilld evaluate`` scores, 200 records each (the other side
    of the edge gave 100, 200, 200, 200, 300)."""
    enc = NumericBinner(bins=5, panes=1)
    values = np.repeat(np.arange(10.0), 100)
    np.random.default_rng(1).shuffle(values)
    codes = enc.encode(values.tolist(), np.zeros(1000, dtype=np.int64), 0)
    assert np.bincount(codes, minlength=6).tolist() == [200, 200, 200, 200, 200, 0]
    assert (codes == np.searchsorted(np.quantile(values, [0.2, 0.4, 0.6, 0.8]), values)).all()
    assert enc.labels()[0] == "(-inf, 1]" and enc.labels()[4] == "(7, +inf]"


def test_with_more_than_64_edges_a_value_on_an_edge_still_goes_below_it() -> None:
    """Past 64 edges a value's bin is found by binary search instead of by counting the edges
    below it: the bins must stay (a, b], as np.searchsorted(edges, v, side="left") makes them."""
    enc = NumericBinner(bins=100, panes=1)
    values = np.repeat(np.arange(200.0), 50)
    np.random.default_rng(2).shuffle(values)
    codes = enc.encode(values.tolist(), np.zeros(len(values), dtype=np.int64), 0)
    assert len(enc.edges) == 99
    assert np.isin(values, enc.edges).sum() > 0
    assert (codes == np.searchsorted(enc.edges, values, side="left")).all()


def test_numeric_scores_are_standard_scores_in_the_window() -> None:
    """Scores are ``(x − mean) / sd`` of the window's sample: about 0 and 1 over
    the window, growing with the value, clipped at ±Z_CLIP, 0 when missing, and
    0 for every value while the window has no spread."""
    enc = NumericBinner(16, panes=4)
    values = np.random.default_rng(3).normal(50.0, 10.0, 4000)
    _, scores = enc.encode_scored(list(values), np.arange(4000) % 4, 3)  # 1000 values a pane: all of them
    assert abs(scores.mean()) < 0.1 and abs(scores.std() - 1) < 0.1
    order = np.argsort(values)
    assert (np.diff(scores[order]) >= 0).all()
    _, odd = enc.encode_scored([None, "x", float("nan"), 1e9, -1e9, 1e308], np.full(6, 3), 3)
    assert odd.tolist() == [0.0, 0.0, 0.0, enc.Z_CLIP, -enc.Z_CLIP, enc.Z_CLIP]
    flat = NumericBinner(16, panes=4)
    _, same = flat.encode_scored([7.0] * 100, np.zeros(100, dtype=np.int64), 0)
    assert (same == 0).all()


def test_numeric_scores_weigh_each_panes_sample_by_the_values_it_stands_for() -> None:
    """A pane of 50,000 values near 100 and one of 500 near 0: the window's mean is ~99 and its sd ~14.
    The weights were paired with the sorted sample in pane order (mean 51, or 0.9 with a smaller sample)."""
    enc = NumericBinner(20, panes=2)
    rng = np.random.default_rng(0)
    big, small = rng.normal(100, 10, 50_000), rng.normal(0, 1, 500)
    enc.encode_scored(big.tolist(), np.zeros(len(big), dtype=np.int64), 1)
    enc.encode_scored(small.tolist(), np.ones(len(small), dtype=np.int64), 1)
    enc._refresh(1)
    both = np.concatenate([big, small])
    assert enc._mean == pytest.approx(both.mean(), abs=0.5)
    assert enc._sd == pytest.approx(both.std(), rel=0.05)
    assert enc.edges[0] > 50, "the small pane's values are 1 % of the window: below the first edge"


def test_the_binners_sample_is_a_fixed_size_over_the_window_whatever_the_panes() -> None:
    assert NumericBinner(20, panes=12).sample == 1024
    assert NumericBinner(20, panes=120).sample * 120 <= NumericBinner.WINDOW_SAMPLE
    assert NumericBinner(20, panes=1000).sample == NumericBinner.PANE_SAMPLE_MIN


def test_numeric_edges_follow_the_window_and_forget_expired_panes() -> None:
    enc = NumericBinner(bins=2, panes=2)
    enc.encode(list(range(1000)), np.zeros(1000, dtype=np.int64), 0)
    assert 400 < enc.edges[0] < 600
    enc.encode(list(range(5000, 6000)), np.full(1000, 5, dtype=np.int64), 5)  # pane 0 expired
    assert 5400 < enc.edges[0] < 5600


def _reference_reservoir(panes: int, size: int, seed: int, batches: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The reservoir rule written with numpy, pane by pane (panes in order)."""
    from distilld.hashing import mix64

    pane_epoch, seen = np.full(panes, -(2**62)), np.zeros(panes, dtype=np.int64)
    sample = np.zeros((panes, size))
    for values, epochs in batches:
        for epoch in np.unique(epochs).tolist():
            slot = epoch % panes
            if epoch < pane_epoch[slot]:
                continue
            if epoch > pane_epoch[slot]:
                pane_epoch[slot], seen[slot] = epoch, 0
            chunk = values[epochs == epoch]
            pos = np.arange(seen[slot], seen[slot] + len(chunk))
            seen[slot] += len(chunk)
            head = pos < size
            sample[slot, pos[head]] = chunk[head]
            h = mix64(pos[~head] ^ np.int64(epoch << 20), seed)
            target = (h % (pos[~head].astype(np.uint64) + np.uint64(1))).astype(np.int64)
            for t, v in zip(target.tolist(), chunk[~head].tolist(), strict=True):
                if t < size:
                    sample[slot, t] = v
    return sample


@pytest.mark.parametrize("cuts", [[5000], [1, 999, 4000], [700] * 8])
def test_numeric_reservoirs_follow_the_hashed_rule_whatever_the_batches(cuts: list[int]) -> None:
    """The compiled reservoir equals the rule written with numpy, and cutting the
    same stream into other batches gives the same sample (so the same edges)."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=5000)
    epochs = np.repeat(np.arange(7, 12), 1000)  # five panes in order, one more than the ring
    enc = NumericBinner(bins=4, panes=4, sample=64, seed=9)
    batches, start = [], 0
    for cut in cuts:
        stop = min(start + cut, len(values))
        batches.append((values[start:stop], epochs[start:stop]))
        enc.encode(values[start:stop].tolist(), epochs[start:stop], int(epochs[stop - 1]))
        start = stop
    expected = _reference_reservoir(4, 64, 9, [(values, epochs)])
    assert np.array_equal(enc._values, expected)
    assert enc._seen.tolist() == [1000] * 4


class _RaisingAttributes:
    """A record object whose attribute raises other than AttributeError (a lazy ORM load that fails)."""

    @property
    def a(self) -> object:
        raise KeyError("a")


@pytest.mark.parametrize(
    "path, record, expected",
    [
        ("a", {"a": 1}, 1),
        ("a.b", {"a": {"b": 2}}, 2),
        ("a.1", {"a": [5, 6]}, 6),
        ("a.-1", {"a": [5, 6]}, 6),
        ("a.5", {"a": [5, 6]}, None),
        ("a.b", {"a": "str"}, None),
        ("a.b.c", {"a": None}, None),
        ("a", ["not", "a", "dict"], None),
        ("a", _RaisingAttributes(), None),
        ("x.a", {"x": _RaisingAttributes()}, None),
    ],
)
def test_field_paths_never_raise(path: str, record: object, expected: object) -> None:
    assert compile_path(path)([record]) == [expected]


@pytest.mark.parametrize("bad", ["", ".a", "a.", "a..b"])
def test_bad_paths_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid field path"):
        parse_path(bad)


def test_allocate_pools_small_keys_fractions() -> None:
    carry = np.zeros(10)
    quota, carry, balance = allocate(carry, np.full(10, 5), 0.1, 0.0, np.arange(10) / 10)
    assert quota.sum() == 5  # ten keys of 5 records at 10 % still send 5 in total
    assert ((carry > -1) & (carry < 1)).all()
    assert balance == pytest.approx(0.0)


def test_allocate_gives_the_extra_sends_to_the_keys_chosen_first() -> None:
    """A chooser names which eligible keys take the pooled extras; the budget's bounds hold whoever it names,
    and a key it names that is not eligible (or one too many) is ignored. Of the keys named beyond the extras,
    the lowest-numbered take them, not the first named: allocate() intersects the names with the eligible keys
    (np.intersect1d, which sorts) before cutting at the count (the engine's chooser names no more than that)."""
    seen: list[tuple[list[int], int]] = []

    def choose(eligible: np.ndarray, extra: int) -> np.ndarray:
        seen.append((eligible.tolist(), extra))
        return np.array([9, 8, 7, 6, 5, 4])  # six keys for five sends

    received = np.full(10, 5)
    received[0] = 0  # no record: not eligible
    quota, carry, balance = allocate(np.zeros(10), received, 0.1, 0.0, np.arange(10) / 10, choose)
    assert seen == [([1, 2, 3, 4, 5, 6, 7, 8, 9], 4)]  # 45 records at 10 %: 4 sends, none by floor
    assert quota.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 0, 0]  # 9, 8, 7, 6 named first; 4, 5, 6, 7 send
    assert ((carry > -1) & (carry < 1)).all() and balance == pytest.approx(0.5)


def test_without_a_chooser_the_largest_fractions_take_the_extra_sends() -> None:
    """The pooled extra sends go to the keys with the largest fractions left when no chooser names keys."""
    quota, _, _ = allocate(np.zeros(3), np.array([3, 8, 5]), 0.1, 0.0, np.zeros(3))  # fractions .3 .8 .5, 1 send
    assert quota.tolist() == [0, 1, 0]


def test_an_extra_never_goes_to_a_key_that_already_sends_all_its_records() -> None:
    """A key's quota never exceeds its records, even when it holds the only fraction and extras are due."""
    # rate .5, key 0: carry .6 + .5 → quota 1 of 1 record, fraction .1; key 1: 2 records, quota 1, fraction 0
    quota, _, _ = allocate(np.array([0.6, 0.0]), np.array([1, 2]), 0.5, 1.6, np.zeros(2))
    assert quota.tolist() == [1, 1]


def test_infinite_values_are_missing_and_decimals_are_labels_in_categoricals() -> None:
    """README: infinite values fall into the missing cell; a categorical labelled them "inf" (other, or a value
    of its own in an open categorical). An Avro decimal was missing in a categorical, a number in a numeric."""
    values = [math.inf, -math.inf, np.float32("inf"), Decimal("404"), Decimal("Infinity"), Decimal("NaN"), 404]
    for enc in (CategoricalEncoder(["404", "inf"]), OpenCategoricalEncoder(top_k=4)):
        codes = enc.encode(values, _epochs(len(values)), 0).tolist()
        labels = enc.labels()
        assert [labels[c] for c in codes] == ["__missing__"] * 3 + ["404", "__missing__", "__missing__", "404"]


def test_a_record_value_spelt_like_a_reserved_label_is_other_not_a_value_of_its_own() -> None:
    """An open categorical gave a record's "__missing__" a slot: the stats then showed two "__missing__" cells, and
    merged by label they read 0.78 missing for 5 missing values in 35."""
    enc = OpenCategoricalEncoder(top_k=4)
    values = ["__missing__"] * 20 + ["__other__"] * 10 + [None] * 5 + ["a"] * 3
    codes = enc.encode(values, _epochs(len(values)), 0).tolist()
    labels = enc.labels()
    assert labels.count("__missing__") == 1 and labels.count("__other__") == 1
    assert [labels[c] for c in codes] == ["__other__"] * 30 + ["__missing__"] * 5 + ["a"] * 3


def test_an_avro_decimal_of_a_large_scale_is_labelled_in_its_digits_not_in_exponent_notation() -> None:
    """fastavro reads a decimal of scale 8 as Decimal('1E-8') or Decimal('0E-8'), which str writes in exponent
    notation: the labels were "1E-8" and "0E-8", where README says an Avro decimal is its digits as written."""
    enc = CategoricalEncoder(["0.00000001", "0.00000000", "12.50"])
    values = [Decimal("1E-8"), Decimal("0E-8"), Decimal("12.50"), Decimal("1E-8").normalize()]
    labels = enc.labels()
    assert [labels[c] for c in enc.encode(values, _epochs(len(values)), 0).tolist()] == [
        "0.00000001",
        "0.00000000",
        "12.50",
        "0.00000001",
    ]


@pytest.mark.parametrize("category", [math.inf, -math.inf, math.nan, Decimal("NaN")])
def test_an_infinite_or_nan_category_is_refused_as_a_missing_value(category: Any) -> None:
    """A record's NaN or infinity is missing (486fabc), so such a category could match nothing; it was refused
    as "a category is a string, a number or a boolean", though it is a number."""
    with pytest.raises(ValueError, match=r"NaN and the infinities are missing values, never a category"):
        category_names(["a", category])


def test_a_str_subclass_whose_eq_raises_is_missing_in_an_open_categorical_not_an_error() -> None:
    """A custom classifier's str subclass with a raising ``__eq__`` made the open categorical raise (out of
    process_batch and the daemon's batch) when its text was a reserved label or a value already counted."""

    class Odd(str):
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("no comparing")

        __hash__ = str.__hash__

    enc = OpenCategoricalEncoder(top_k=4)
    enc.encode(["a", "b"], _epochs(2), 0)
    for odd in (Odd("__other__"), Odd("a")):  # a reserved label's text; a value counted already
        codes = enc.encode([odd, "b"], _epochs(2), 0).tolist()
        assert [enc.labels()[c] for c in codes] == ["__missing__", "b"]
