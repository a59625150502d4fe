"""The record wrapper the library API returns (compatible with ``distilled`` 0.1.0)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DataPoint", "weight_text"]


@dataclass
class DataPoint:
    """A selected record.

    ``data`` is the original record object; ``vector_values`` its graded values
    (numerics as float, categories as returned; a feature without a value is
    left out, as in the seed); ``weight`` is how many records it stands
    for, ``1 / reduction_percentage`` (the budget sends exactly that share of
    the stream, pooled over keys), so downstream counts and sums stay right;
    ``key`` is the key whose window it joined.
    """

    data: Any
    timestamp: float
    vector_values: dict[str, Any] | None = None
    sent_previously: bool = False
    weight: float = 1.0
    key: Any = None


def weight_text(w: float) -> str:
    """A weight as distilld writes it, the same text everywhere (a file's ``distilld_weight`` in CSV, NDJSON and
    JSON, the daemon's ``distilld-weight`` header): every digit it has (its shortest exact form, read back as the
    same double), a whole one without ".0" (``10``, ``3.3333333333333335``)."""
    text = repr(float(w))
    return text[:-2] if text.endswith(".0") else text
