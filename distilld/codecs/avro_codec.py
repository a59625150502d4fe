"""Avro values → records: schemaless with a reader schema, or the Confluent wire format.

``avro``: each value is one Avro datum written with ``format.avro_schema``.
``avro_confluent``: a zero magic byte, a 4-byte big-endian schema id, then the
datum; the writer schema comes from the Schema Registry (cached by id) and is
resolved against ``format.avro_schema`` when one is given. A value that does
not decode to a record, or leaves bytes over, is reported with the reason.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

from fastavro import schemaless_reader

from distilld.codecs import Decoded
from distilld.codecs.avro_schema import ParsedSchema
from distilld.codecs.registry import SchemaRegistry, UnknownSchema

__all__ = ["AvroDecoder", "ConfluentAvroDecoder"]


def _read(value: bytes, start: int, writer: ParsedSchema, reader: ParsedSchema | None) -> Any:
    """One datum from ``value[start:]``; raises ValueError with the reason."""
    buf = io.BytesIO(value)
    buf.seek(start)
    try:
        record = schemaless_reader(buf, writer, reader)
    except Exception as e:  # truncated data, a bad union index, bad UTF-8, …
        raise ValueError(f"not Avro: {type(e).__name__}: {e}") from None
    left = len(value) - buf.tell()
    if left:
        raise ValueError(f"not Avro: {left} bytes left after the record")
    return record


def _decode_each(values: Sequence[bytes | None], read: Callable[[bytes], Any]) -> Decoded:
    """``read`` over each value; a ValueError (or an empty value) is that value's reason."""
    records, good, bad = [], [], []
    for i, value in enumerate(values):
        if not value:
            bad.append((i, "empty value" + (" (tombstone)" if value is None else "")))
            continue
        try:
            records.append(read(value))
            good.append(i)
        except ValueError as e:
            bad.append((i, str(e)))
    return records, good, bad


class AvroDecoder:
    def __init__(self, schema: ParsedSchema) -> None:
        self.schema = schema

    def __call__(self, values: Sequence[bytes | None]) -> Decoded:
        return _decode_each(values, self._read)

    def _read(self, value: bytes) -> Any:
        return _read(value, 0, self.schema, None)


class ConfluentAvroDecoder:
    def __init__(self, registry: SchemaRegistry, reader: ParsedSchema | None = None) -> None:
        self.registry = registry
        self.reader = reader

    def __call__(self, values: Sequence[bytes | None]) -> Decoded:
        return _decode_each(values, self._read)

    def _read(self, value: bytes) -> Any:
        if len(value) < 5 or value[0] != 0:
            raise ValueError(f"not in the Confluent wire format (magic byte 0 + schema id): {len(value)} bytes")
        schema_id = int.from_bytes(value[1:5], "big")
        try:
            writer = self.registry.writer_schema(schema_id)
        except UnknownSchema as e:
            raise ValueError(f"unknown schema id {schema_id}: {e}") from None
        return _read(value, 5, writer, self.reader)
