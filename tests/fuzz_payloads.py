"""Hostile record values for the fuzz tests: random bytes, mutated and truncated JSON,
JSON that is not an object, huge numbers, deep nesting, bad UTF-8, empty values, and
JSON objects whose fields have every wrong type. Drawn with hypothesis strategies."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

GENDERS = ["female", "male", "other"]

person = st.fixed_dictionaries(
    {
        "gender": st.sampled_from(GENDERS),
        "age": st.integers(18, 90),
        "money": st.fixed_dictionaries({"income": st.integers(0, 200_000)}),
    }
).map(orjson.dumps)

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# an object with the fields the features and the key read, holding anything
hostile_object = st.dictionaries(
    st.sampled_from(["gender", "age", "money", "user", "x", ""]), json_value, max_size=5
).map(lambda d: json.dumps(d).encode())


@st.composite
def truncated(draw: Any) -> bytes:
    value = draw(person)
    return bytes(value[: draw(st.integers(0, len(value) - 1))])


@st.composite
def mutated(draw: Any) -> bytes:
    value = bytearray(draw(person))
    at = draw(st.integers(0, len(value) - 1))
    how = draw(st.sampled_from(["replace", "insert", "delete"]))
    byte = draw(st.integers(0, 255))
    if how == "replace":
        value[at] = byte
    elif how == "insert":
        value.insert(at, byte)
    else:
        del value[at]
    return bytes(value)


@st.composite
def bad_utf8(draw: Any) -> bytes:
    value = draw(person)
    at = draw(st.integers(1, len(value) - 2))
    junk = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c\x28", b"\x80"]))
    return value[:at] + junk + value[at:]


@st.composite
def huge_number(draw: Any) -> bytes:
    digits = draw(st.integers(20, 5000))
    number = draw(
        st.sampled_from(["1" + "0" * digits, "-9" * 1 + "9" * digits, f"1e{digits}", f"-1e{digits}", f"1e-{digits}"])
    )
    field = draw(st.sampled_from(["age", "gender", "money"]))
    return f'{{"{field}": {number}, "gender": "female"}}'.encode()


@st.composite
def deep(draw: Any) -> bytes:
    depth = draw(st.integers(100, 3000))
    if draw(st.booleans()):
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


not_object = json_value.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode())

KINDS: dict[str, st.SearchStrategy[bytes | None]] = {
    "random_bytes": st.binary(max_size=64),
    "truncated": truncated(),
    "mutated": mutated(),
    "bad_utf8": bad_utf8(),
    "not_object": not_object,
    "huge_number": huge_number(),
    "deep_nesting": deep(),
    "empty": st.sampled_from([b"", None]),
    "hostile_object": hostile_object,
}

payload = st.one_of([strategy.map(lambda v, k=kind: (k, v)) for kind, strategy in KINDS.items()])


def draw_payloads(n: int, per_example: int = 100) -> list[tuple[str, bytes | None]]:
    """``n`` (kind, value) pairs, the same on every run (derandomized)."""
    out: list[tuple[str, bytes | None]] = []

    @settings(
        max_examples=-(-n // per_example),
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(payload, min_size=per_example, max_size=per_example))
    def collect(batch: list[tuple[str, bytes | None]]) -> None:
        out.extend(batch)

    collect()
    return out[:n]


def is_record(value: bytes | None) -> bool:
    """What the daemon must accept: a JSON object (by orjson's reading, which refuses
    numbers beyond a double and nesting deeper than 1,024)."""
    if value is None:
        return False
    try:
        return isinstance(orjson.loads(value), dict)
    except orjson.JSONDecodeError:
        return False
