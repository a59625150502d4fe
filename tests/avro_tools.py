"""Avro test data: the person schema, values written schemaless or in the Confluent
wire format, and a Schema Registry over HTTP that the suite starts itself."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_writer

PERSON_SCHEMA_FILE = Path(__file__).resolve().parent / "data" / "person.avsc"
PERSON_SCHEMA: dict[str, Any] = json.loads(PERSON_SCHEMA_FILE.read_text())


def avro_person(record: dict[str, Any]) -> dict[str, Any]:
    """A people record (tests/conftest.py) in the person schema's shape."""
    return {
        "id": record["id"],
        "gender": record.get("gender"),
        "age": record.get("age"),
        "money": {"income": record["money"]["income"]},
        "tags": [f"t{record['id'] % 3}"],
    }


def schemaless(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(schema), record)
    return buf.getvalue()


def confluent(schema_id: int, schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + schemaless(schema, record)


class _Handler(BaseHTTPRequestHandler):
    schemas: dict[int, str] = {}
    down_for_s = 0.0  # answers 503 for this long after the first request
    first: list[float] = []

    def do_GET(self) -> None:
        if not self.first:
            self.first.append(time.monotonic())
        if time.monotonic() < self.first[0] + self.down_for_s:
            self.send_error(503, "registry down")
            return
        match = re.match(r"^/schemas/ids/(\d+)", self.path)
        schema = self.schemas.get(int(match.group(1))) if match else None
        if schema is None:
            body, status = {"error_code": 40403, "message": "Schema not found"}, 404
        else:
            body, status = {"schema": schema}, 200
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def registry_server(schemas: dict[int, dict[str, Any]], down_for_s: float = 0.0) -> Iterator[str]:
    """A Schema Registry answering ``GET /schemas/ids/{id}`` on a free loopback port; yields its URL.
    ``down_for_s``: it answers 503 for that long after the first request."""
    handler = type(
        "Handler",
        (_Handler,),
        {"schemas": {i: json.dumps(s) for i, s in schemas.items()}, "down_for_s": down_for_s, "first": []},
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
