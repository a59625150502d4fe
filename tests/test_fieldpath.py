"""Field paths into records: quoted keys, list indexes and the keys a Python record may hold."""

from __future__ import annotations

from typing import Any

import pytest

from distilld import build_graders
from distilld.daemon.fields import RecordFields
from distilld.features import FeatureConfigError
from distilld.fieldpath import compile_path, parse_path
from distilld.filters import Condition, match
from distilld.settings import ReducerSettings

# an OpenTelemetry-style record: attribute names with dots in them, flattened log keys
SPAN = {"attributes": {"http.status_code": 404, "http": {"status_code": 200}, "a|b": "piped"}, "0": "zero"}


@pytest.mark.parametrize(
    "path, expected",
    [
        ('attributes."http.status_code"', 404),  # the key with a dot in it, which no unquoted path reaches
        ("attributes.http.status_code", 200),  # unquoted dots still walk the nesting
        ('attributes."a|b"', "piped"),  # | inside quotes is part of the key, not an alternative
        ('missing|attributes."http.status_code"', 404),
        ('"0"', "zero"),  # a quoted number is a key
    ],
)
def test_a_quoted_step_is_a_key_as_written(path: str, expected: Any) -> None:
    assert compile_path(path)([SPAN]) == [expected]


def test_features_and_filters_read_a_key_with_a_dot_in_it() -> None:
    graders = build_graders(
        [{"name": "status", "type": "categorical", "field": 'attributes."http.status_code"'} | {"categories": ["404"]}]
    )
    assert graders["status"].evaluate(SPAN) == "404"
    condition = Condition.model_validate({"field": 'attributes."http.status_code"', "equals": 404})
    assert match(condition, [SPAN, {"attributes": {"http": {"status_code": 404}}}]).tolist() == [True, False]


@pytest.mark.parametrize(
    "path, steps",
    [
        ("a.--1", ("a", "--1")),  # not a number: a key (int() refused it, and with it the whole feature)
        ("a.²", ("a", "²")),  # a superscript is a digit to str.isdigit, no index to int()
        ("a.-2", ("a", -2)),
        ("a.007", ("a", 7)),
    ],
)
def test_only_ascii_digits_make_an_index(path: str, steps: tuple[Any, ...]) -> None:
    assert parse_path(path) == steps


@pytest.mark.parametrize("bad", ['a."b', 'a"b".c', 'a."b"c'])
def test_a_quote_that_is_not_around_a_whole_step_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid field path"):
        parse_path(bad)
    with pytest.raises(FeatureConfigError, match=r"features\[0\] \('a'\): field: .*invalid field path"):
        build_graders([{"name": "a", "type": "numeric", "field": bad}])


def test_an_index_finds_a_python_records_integer_key() -> None:
    records = [{"scores": {0: 1.5}}, {"scores": {"0": 2.5}}, {"scores": {1: 3.5}}]
    assert compile_path("scores.0")(records) == [1.5, 2.5, None]


def test_a_field_named_like_a_keyword_is_read_when_quoted() -> None:
    """``reducer.key: none`` means no key; a record's field named "none" (or "kafka_key") is ``'"none"'``."""
    settings = ReducerSettings(key='"none"', time='"processing"')
    fields = RecordFields(settings, clock=lambda: 0.0)
    records = [{"none": "session-a", "processing": 1_700_000_000}, {"none": "session-b", "processing": 5}]
    _, keys = fields.keys([], records)
    assert keys == ["session-a", "session-b"]
    assert fields.timestamps([], records).tolist() == [1_700_000_000.0, 5.0]


def test_a_name_on_a_list_is_missing_not_its_method() -> None:
    """``tags.count`` gave the list's bound method: ``exists: true`` matched every record with tags."""
    records = [{"tags": ["a", "b"]}, {"tags": {"count": 2}}]
    assert compile_path("tags.count")(records) == [None, 2]
    condition = Condition.model_validate({"field": "tags.count", "exists": True})
    assert match(condition, records).tolist() == [False, True]
