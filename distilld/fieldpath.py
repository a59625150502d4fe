"""Dotted field paths into nested records: ``user.geo.country``, ``path.0``.

A path is compiled once into a batch getter; a missing step, a wrong type or a
bad index yields ``None`` (the caller's "missing" cell), never an exception.
Alternatives separated by ``|`` take the first that is present
(``sessionID|sessionId``: the same field spelt two ways).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

__all__ = ["BatchGetter", "compile_path", "parse_alternatives", "parse_path"]

BatchGetter = Callable[[Sequence[Any]], list[Any]]


def parse_alternatives(path: str) -> list[tuple[str | int, ...]]:
    """``a.b|c`` → the parsed paths ``[("a", "b"), ("c",)]``."""
    if not isinstance(path, str):
        raise ValueError(f"invalid field path {path!r}: expected dotted names like 'user.id'")
    alternatives = path.split("|")
    if len(alternatives) > 1 and not all(alternatives):
        raise ValueError(f"invalid field path {path!r}: an empty alternative")
    return [parse_path(alt) for alt in alternatives]


def parse_path(path: str) -> tuple[str | int, ...]:
    """Split ``a.b.0`` into ``("a", "b", 0)``; a purely numeric step is a list index."""
    if "|" in path:
        return parse_alternatives(path)[0]
    if not isinstance(path, str) or not path or path.startswith(".") or path.endswith("."):
        raise ValueError(f"invalid field path {path!r}: expected dotted names like 'user.id'")
    steps: list[str | int] = []
    for part in path.split("."):
        if part == "":
            raise ValueError(f"invalid field path {path!r}: empty step")
        steps.append(int(part) if part.lstrip("-").isdigit() else part)
    return tuple(steps)


def _step(value: Any, step: str | int) -> Any:
    if isinstance(step, int):
        if isinstance(value, list | tuple) and -len(value) <= step < len(value):
            return value[step]
        if isinstance(value, dict):
            return value.get(str(step))
        return None
    if isinstance(value, dict):
        return value.get(step)
    if isinstance(value, str | bytes | int | float):
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
