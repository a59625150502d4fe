"""Avro schemas distilld reads records with: from a file, or from the registry's text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastavro import parse_schema

__all__ = ["ParsedSchema", "SchemaFileError", "load_schema", "parse_record_schema"]

ParsedSchema = Any


class SchemaFileError(ValueError):
    """The Avro schema file cannot be read, is not a schema, or not a record schema."""


def load_schema(path: str | Path) -> ParsedSchema:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise SchemaFileError(f"cannot read {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SchemaFileError(f"{path} is not JSON: {e}") from None
    return parse_record_schema(raw, str(path))


def parse_record_schema(raw: Any, where: str) -> ParsedSchema:
    try:
        parsed = parse_schema(raw)
    except Exception as e:  # fastavro raises several kinds for a bad schema
        raise SchemaFileError(f"{where} is not a valid Avro schema: {e}") from None
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        raise SchemaFileError(f"{where} must be an Avro record schema (records are what distilld reduces)")
    return parsed
