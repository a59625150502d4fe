"""Dotted field paths into nested records: ``user.geo.country``, ``path.0``.

A path is compiled once into a batch getter; a missing step, a wrong type or a
bad index yields ``None`` (the caller's "missing" cell), never an exception.
Alternatives separated by ``|`` take the first that is present
(``sessionID|sessionId``: the same field spelt two ways). A step in double
quotes is a key as written, dots, ``|`` and digits included
(``attributes."http.status_code"``, ``"0"``): the one way to reach a key
with a dot in it, as OpenTelemetry attributes and flattened logs have.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

__all__ = ["BatchGetter", "compile_path", "parse_alternatives", "parse_path", "top_level_keys"]

BatchGetter = Callable[[Sequence[Any]], list[Any]]


def parse_alternatives(path: str) -> list[tuple[str | int, ...]]:
    """``a.b|c`` → the parsed paths ``[("a", "b"), ("c",)]``."""
    if not isinstance(path, str):
        raise ValueError(f"invalid field path {path!r}: expected dotted names like 'user.id'")
    alternatives = _split(path, "|")
    if len(alternatives) > 1 and not all(alternatives):
        raise ValueError(f"invalid field path {path!r}: an empty alternative")
    return [_parse(path, alternative) for alternative in alternatives]


def parse_path(path: str) -> tuple[str | int, ...]:
    """Split ``a.b.0`` into ``("a", "b", 0)``: a step of ASCII digits (after a ``-``, counted from the
    end) is a list index, a step in double quotes a key as written; of ``a|b``, the first alternative."""
    return parse_alternatives(path)[0]


def top_level_keys(path: str) -> list[str | None]:
    """Per alternative of ``path``, the one key of a record it reads, or None where it steps into a nested
    field: the column a CSV row gives it (``"user.id"`` quoted is the column user.id, ``0`` the column "0")."""
    return [str(steps[0]) if len(steps) == 1 else None for steps in parse_alternatives(path)]


_INDEX = re.compile(r"-?[0-9]+")


def _split(path: str, separator: str) -> list[str]:
    """``path`` cut at each ``separator`` outside double quotes."""
    parts, start, quoted = [], 0, False
    for i, char in enumerate(path):
        if char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append(path[start:i])
            start = i + 1
    if quoted:
        raise ValueError(f"invalid field path {path!r}: a double quote is not closed")
    return [*parts, path[start:]]


def _parse(path: str, alternative: str) -> tuple[str | int, ...]:
    if not alternative:
        raise ValueError(f"invalid field path {path!r}: expected dotted names like 'user.id'")
    steps: list[str | int] = []
    for part in _split(alternative, "."):
        if part == "":
            raise ValueError(f"invalid field path {path!r}: empty step")
        if len(part) >= 2 and part[0] == part[-1] == '"' and '"' not in part[1:-1]:
            steps.append(part[1:-1])
        elif '"' in part:
            raise ValueError(f'invalid field path {path!r}: quotes go around a whole step, as in a."b.c"')
        else:
            steps.append(int(part) if _INDEX.fullmatch(part) else part)
    return tuple(steps)


def _step(value: Any, step: str | int) -> Any:
    if isinstance(step, int):
        if isinstance(value, list | tuple) and -len(value) <= step < len(value):
            return value[step]
        if isinstance(value, dict):  # a JSON object's key "0"; a Python record's may be the int 0
            found = value.get(str(step))
            return value.get(step) if found is None else found
        return None
    if isinstance(value, dict):
        return value.get(step)
    if isinstance(value, str | bytes | int | float | list):  # a list's names are its methods (tags.count)
        return None
    try:
        return getattr(value, step, None)
    except Exception:  # a property or __getattr__ that raises something else than AttributeError
        return None


def _walk(record: Any, steps: tuple[str | int, ...]) -> Any:
    value = record
    for step in steps:
        if value is None:
            return None
        value = _step(value, step)
    return value


def compile_path(path: str) -> BatchGetter:
    """Return a function mapping a batch of records to the values at ``path``.

    The common case, a top-level key of dict records, runs as one list
    comprehension; anything else falls back to a careful walk per record.
    """
    alternatives = parse_alternatives(path)
    if len(alternatives) > 1:
        getters = [_compile(steps) for steps in alternatives]

        def first_present(records: Sequence[Any]) -> list[Any]:
            values = getters[0](records)
            for getter in getters[1:]:
                missing = [i for i, v in enumerate(values) if v is None]
                if not missing:
                    break
                found = getter([records[i] for i in missing])
                for i, v in zip(missing, found, strict=True):
                    values[i] = v
            return values

        return first_present
    return _compile(alternatives[0])


def _compile(steps: tuple[str | int, ...]) -> BatchGetter:

    if len(steps) == 1 and isinstance(steps[0], str):
        key = steps[0]

        def top_level(records: Sequence[Any]) -> list[Any]:
            try:
                return list(map(dict.get, records, repeat(key)))
            except (AttributeError, TypeError):
                return [_walk(r, steps) for r in records]

        return top_level

    def nested(records: Sequence[Any]) -> list[Any]:
        return [_walk(r, steps) for r in records]

    return nested
