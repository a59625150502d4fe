"""Decoding throughput per ``format.value``, on the people records of the engine bench."""

from __future__ import annotations

import io
import time
from typing import Any

import orjson
from confluent_kafka.schema_registry import Schema
from fastavro import parse_schema, schemaless_writer

from distilld.bench.streams import people
from distilld.codecs import Decoder
from distilld.codecs.avro_codec import AvroDecoder, ConfluentAvroDecoder
from distilld.codecs.json_codec import decode_json
from distilld.codecs.registry import SchemaRegistry

__all__ = ["decoding"]


def _schema(record: dict[str, Any]) -> dict[str, Any]:
    fields = [{"name": k, "type": "double" if isinstance(v, float) else "string"} for k, v in record.items()]
    return {"type": "record", "name": "Person", "fields": fields}


def decoding(n: int = 100_000, batch: int = 5000) -> None:
    stream, labels, _ = people(n)
    records = stream.records(labels)
    schema = parse_schema(_schema(records[0]))
    registry = SchemaRegistry({"url": "mock://bench"})

    schema_id = registry.client.register_schema(
        "people-value", Schema(orjson.dumps(_schema(records[0])).decode(), "AVRO")
    )

    def avro(record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        schemaless_writer(buf, schema, record)
        return buf.getvalue()

    payloads: dict[str, tuple[Decoder, list[bytes]]] = {
        "json": (decode_json, [orjson.dumps(r) for r in records]),
        "avro": (AvroDecoder(schema), [avro(r) for r in records]),
        "avro_confluent": (
            ConfluentAvroDecoder(registry),
            [b"\x00" + schema_id.to_bytes(4, "big") + avro(r) for r in records],
        ),
    }
    for name, (decode, values) in payloads.items():
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            _, _, bad = decode(values[start : start + batch])
            assert not bad
        rate = n / (time.perf_counter() - t0)
        print(f"decode {name:<15} {rate:>12,.0f} records/s  ({sum(map(len, values)) / n:.0f} bytes each)")
