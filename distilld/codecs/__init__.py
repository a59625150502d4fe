"""Record values → records, per ``format.value``; what cannot be decoded is reported, never raised.

A decoder takes a batch of values and returns ``(records, the index of each
record in the batch, [(index, reason)] of the values it could not decode)``.
Reasons start with one of :data:`REASONS`' texts, so that metrics can label
them with a bounded set of values (:func:`reason_label`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["REASONS", "Decoded", "Decoder", "make_decoder", "reason_label"]

Decoded = tuple[list[Any], list[int], list[tuple[int, str]]]
Decoder = Callable[[Sequence[bytes | None]], Decoded]

# metric label → how its reasons start
REASONS = {
    "empty": "empty value",
    "not_json": "not JSON",
    "not_object": "not a JSON object",
    "not_avro": "not Avro",
    "bad_framing": "not in the Confluent wire format",
    "unknown_schema": "unknown schema id",
    "grader_error": "grader",
    "filter_error": "filters raised",
}


def reason_label(reason: str) -> str:
    """A decode failure's text → one of :data:`REASONS`' keys."""
    for label, start in REASONS.items():
        if reason.startswith(start):
            return label
    return "not_json"


def make_decoder(
    fmt: Any, wait: Callable[[float], bool] | None = None, on_registry_error: Callable[[], None] | None = None
) -> Decoder:
    """The decoder ``format`` settings name. ``wait(seconds)`` pauses between
    retries of an unreachable Schema Registry and returns False to give up (stop)."""
    if fmt.value == "json":
        from distilld.codecs.json_codec import decode_json

        return decode_json
    from distilld.codecs.avro_codec import AvroDecoder, ConfluentAvroDecoder
    from distilld.codecs.avro_schema import load_schema
    from distilld.codecs.registry import SchemaRegistry

    reader = load_schema(fmt.avro_schema) if fmt.avro_schema else None
    if fmt.value == "avro":
        assert reader is not None
        return AvroDecoder(reader)
    registry = SchemaRegistry(fmt.schema_registry.client_config(), wait=wait, on_error=on_registry_error)
    return ConfluentAvroDecoder(registry, reader)
