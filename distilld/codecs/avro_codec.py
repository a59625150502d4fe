"""Avro values → records: schemaless with a reader schema, or the Confluent wire format.

``avro``: each value is one Avro datum written with ``format.avro_schema``.
``avro_confluent``: a zero magic byte, a 4-byte big-endian schema id, then the
datum; the writer schema comes from the Schema Registry (cached by id) and is
resolved against ``format.avro_schema`` when one is given. A value that does
not decode to a record, or leaves bytes over, is reported with the reason.

A schema whose named type contains itself (a linked list, a tree) lets a value
nest as deep as it has bytes. fastavro's compiled reader recurses on the C stack
and crashes the process a few thousand levels down, so values of such a writer
schema are read by fastavro's Python reader, where too deep a value is a
RecursionError: reported as not Avro, like any other undecodable value.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

from fastavro import schemaless_reader
from fastavro._read_py import schemaless_reader as python_reader

from distilld.codecs import Decoded
from distilld.codecs.avro_schema import ParsedSchema
from distilld.codecs.registry import SchemaRegistry, UnknownSchema

__all__ = ["AvroDecoder", "ConfluentAvroDecoder"]


def recursive(schema: ParsedSchema) -> bool:
    """Whether a named type of the parsed ``schema`` contains itself, directly or through others."""
    named: dict[str, Any] = schema.get("__named_schemas", {}) if isinstance(schema, dict) else {}

    def refs(node: Any, out: set[str]) -> set[str]:
        if isinstance(node, str):
            if node in named:
                out.add(node)
        elif isinstance(node, list):
            for n in node:
                refs(n, out)
        elif isinstance(node, dict):
            if node.get("name") in named:
                out.add(node["name"])  # a named type defined inline: a node of its own
                return out
            for key in ("type", "items", "values", "fields"):
                refs(node.get(key), out)
        return out

    edges = {name: refs({k: v for k, v in body.items() if k != "name"}, set()) for name, body in named.items()}
    for start in edges:
        seen: set[str] = set()
        todo = list(edges[start])
        while todo:
            name = todo.pop()
            if name == start:
                return True
            if name not in seen:
                seen.add(name)
                todo.extend(edges.get(name, ()))
    return False


def _read(value: bytes, start: int, writer: ParsedSchema, reader: ParsedSchema | None, deep: bool = False) -> Any:
    """One datum from ``value[start:]``; raises ValueError with the reason. ``deep``: the writer
    schema is :func:`recursive` (read by the Python reader, whose depth is bounded)."""
    buf = io.BytesIO(value)
    buf.seek(start)
    try:
        record = (python_reader if deep else schemaless_reader)(buf, writer, reader)
    except RecursionError:
        raise ValueError("not Avro: nested deeper than distilld reads (a recursive schema)") from None
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
        self.deep = recursive(schema)

    def __call__(self, values: Sequence[bytes | None]) -> Decoded:
        return _decode_each(values, self._read)

    def _read(self, value: bytes) -> Any:
        return _read(value, 0, self.schema, None, self.deep)


class ConfluentAvroDecoder:
    def __init__(self, registry: SchemaRegistry, reader: ParsedSchema | None = None) -> None:
        self.registry = registry
        self.reader = reader
        self._deep: dict[int, bool] = {}  # schema id → its writer schema is recursive

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
        deep = self._deep.get(schema_id)
        if deep is None:
            deep = self._deep[schema_id] = recursive(writer)
        return _read(value, 5, writer, self.reader, deep)
