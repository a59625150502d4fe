"""JSON values → records (dicts); a value that is not a JSON object is reported with the reason."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

__all__ = ["decode_json"]


_DICT = {dict}


def _reason(value: bytes | None) -> str:
    if not value:
        return "empty value" + (" (tombstone)" if value is None else "")
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        return f"not JSON: {e}"
    return f"not a JSON object: {type(decoded).__name__}"


def decode_json(values: Sequence[bytes | None]) -> tuple[list[Any], list[int], list[tuple[int, str]]]:
    """(records, the index of each record in ``values``, [(index, reason)] of the bad ones).

    The common case, every value a JSON object, costs one ``orjson.loads``
    per value and one check over the batch.
    """
    loads = orjson.loads
    try:
        records = [loads(v) for v in values]  # type: ignore[arg-type]
        if set(map(type, records)) <= _DICT:
            return records, list(range(len(records))), []
    except (orjson.JSONDecodeError, TypeError):
        pass
    records, good, bad = [], [], []
    for i, v in enumerate(values):
        try:
            r = loads(v)  # type: ignore[arg-type]
        except (orjson.JSONDecodeError, TypeError):
            bad.append((i, _reason(v)))
            continue
        if type(r) is dict:
            records.append(r)
            good.append(i)
        else:
            bad.append((i, _reason(v)))
    return records, good, bad
