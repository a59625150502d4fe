"""Record files in and out, a batch at a time: CSV, NDJSON, JSON array, Avro container.

A reader yields batches of records (dicts) and the rows they came from; a
writer takes rows back with the weight of each forwarded one, added as a
``distilld_weight`` column or field. Memory is a batch, whatever the file's size.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from distilld.files.columns import numbers

__all__ = ["FORMATS", "WEIGHT_FIELD", "FileFormatError", "Reader", "Writer", "format_of", "open_reader", "open_writer"]

FORMATS = ("csv", "ndjson", "json", "avro")
WEIGHT_FIELD = "distilld_weight"
_EXTENSIONS = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "json", ".avro": "avro"}

Batch = tuple[list[Any], list[Any]]  # (records, rows)


class FileFormatError(ValueError):
    """A file's format is unknown, or its content does not match it."""


def format_of(path: str | Path, given: str | None = None) -> str:
    if given:
        if given not in FORMATS:
            raise FileFormatError(f"unknown format {given!r}: one of {', '.join(FORMATS)}")
        return given
    found = _EXTENSIONS.get(Path(path).suffix.lower())
    if found is None:
        raise FileFormatError(
            f"{path}: cannot tell the format from the extension; give --format ({', '.join(FORMATS)})"
        )
    return found


class Reader:
    """``batches()`` of (records, rows); ``position()`` is how far into the file, in bytes."""

    def __init__(self, fo: IO[bytes], fmt: str, numeric_columns: set[str], batch: int) -> None:
        self.fo, self.fmt, self.numeric, self.batch = fo, fmt, numeric_columns, batch
        self.schema: Any = None  # Avro: the writer schema
        self.columns: list[str] = []  # CSV: the header
        self.rows_only = False  # CSV: yield (None, rows), records made by records_of() when wanted

    def position(self) -> int:
        try:
            return self.fo.tell()
        except (OSError, ValueError):
            return 0

    def batches(self) -> Iterator[Batch]:
        batches: Iterator[Batch] = getattr(self, f"_{self.fmt}")()
        return batches

    def _csv(self) -> Iterator[Batch]:
        text = io.TextIOWrapper(self.fo, encoding="utf-8", newline="")
        rows = csv.reader(text)
        try:
            self.columns = next(rows)
        except StopIteration:
            return
        while True:
            chunk = [row for _, row in zip(range(self.batch), rows, strict=False)]
            if not chunk:
                return
            if self.rows_only:
                yield None, chunk  # type: ignore[misc]
                continue
            yield self.records_of(chunk), chunk

    def records_of(self, rows: list[list[str]]) -> list[dict[str, Any]]:
        """CSV rows as records: text, and numbers in the numeric features' columns."""
        columns = self.columns
        records: list[dict[str, Any]] = [dict(zip(columns, row, strict=False)) for row in rows]
        for c, name in enumerate(columns):
            if name in self.numeric:
                values = numbers([row[c] if c < len(row) else "" for row in rows])
                for record, value in zip(records, values, strict=True):
                    record[name] = value
        return records

    def _ndjson(self) -> Iterator[Batch]:
        loads = orjson.loads
        while True:
            lines = [line for _, line in zip(range(self.batch), self.fo, strict=False)]
            if not lines:
                return
            lines = [line for line in lines if line.strip()]
            try:
                records = [loads(line) for line in lines]
            except orjson.JSONDecodeError as e:
                raise FileFormatError(f"not NDJSON (one JSON object per line): {e}") from None
            yield records, records

    def _json(self) -> Iterator[Batch]:
        import ijson

        items = ijson.items(self.fo, "item", use_float=True)
        try:
            while True:
                records = [r for _, r in zip(range(self.batch), items, strict=False)]
                if not records:
                    return
                yield records, records
        except ijson.JSONError as e:
            raise FileFormatError(f"not a JSON array of records: {e}") from None

    def _avro(self) -> Iterator[Batch]:
        from fastavro import reader

        try:
            avro = reader(self.fo)
        except ValueError as e:
            raise FileFormatError(f"not an Avro container file: {e}") from None
        self.schema = avro.writer_schema
        while True:
            records = [r for _, r in zip(range(self.batch), avro, strict=False)]
            if not records:
                return
            yield records, records


class Writer:
    """Rows of forwarded records, each with its weight, in the output format."""

    def __init__(self, fo: IO[bytes], fmt: str, reader: Reader) -> None:
        self.fo, self.fmt, self.reader = fo, fmt, reader
        self._started = False
        self._avro: Any = None
        self._csv: Any = None
        self._text: io.TextIOWrapper | None = None
        self._columns: list[str] = []
        self._any = False

    def write(self, records: list[Any], rows: list[Any], weights: list[float]) -> None:
        """Forwarded records (as decoded), the rows they were read from, and their weights."""
        if not self._started:
            self._start(records)
        if self.fmt == "csv":
            if self.reader.fmt == "csv":  # the row as it was read, plus the weight
                self._csv.writerows([*row, f"{w:.6g}"] for row, w in zip(rows, weights, strict=True))
            else:
                self._csv.writerows(
                    [*(_cell(r.get(c)) for c in self._columns), f"{w:.6g}"]
                    for r, w in zip(records, weights, strict=True)
                )
        elif self.fmt == "avro":
            for record, w in zip(records, weights, strict=True):
                self._avro.write({**record, WEIGHT_FIELD: w})
        else:
            for record, w in zip(records, weights, strict=True):
                data = orjson.dumps({**record, WEIGHT_FIELD: w})
                if self.fmt == "json":
                    self.fo.write(b",\n" if self._any else b"\n")
                self._any = True
                self.fo.write(data + (b"\n" if self.fmt == "ndjson" else b""))

    def _start(self, first: list[Any]) -> None:
        self._started = True
        self._any = False
        if self.fmt == "csv":
            self._text = io.TextIOWrapper(self.fo, encoding="utf-8", newline="", write_through=True)
            self._csv = csv.writer(self._text)
            self._columns = self.reader.columns or (list(first[0]) if first else [])
            self._csv.writerow([*self._columns, WEIGHT_FIELD])
        elif self.fmt == "json":
            self.fo.write(b"[")
        elif self.fmt == "avro":
            from fastavro.write import Writer as AvroWriter

            self._avro = AvroWriter(self.fo, _avro_schema(self.reader))

    def close(self) -> None:
        if not self._started:
            self._start([])
        if self.fmt == "json":
            self.fo.write(b"\n]\n")
        elif self.fmt == "avro":
            self._avro.flush()
        elif self._text is not None:
            self._text.flush()
            self._text.detach()


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _avro_schema(reader: Reader) -> Any:
    weight = {"name": WEIGHT_FIELD, "type": "double"}
    if reader.schema is not None:
        schema = dict(reader.schema)
        schema["fields"] = [*schema["fields"], weight]
        return schema
    if reader.fmt == "csv":  # CSV columns as optional strings (numeric features as doubles)
        fields = [
            {"name": c, "type": ["null", "double" if c in reader.numeric else "string"], "default": None}
            for c in reader.columns
        ]
        return {"type": "record", "name": "Record", "fields": [*fields, weight]}
    raise FileFormatError("Avro output needs a schema: read Avro or CSV, or write csv/ndjson/json")


def open_reader(path: str | Path, fmt: str, numeric_columns: set[str], batch: int) -> tuple[IO[bytes], Reader]:
    fo = open(path, "rb")  # noqa: SIM115 - closed by the caller
    return fo, Reader(fo, fmt, numeric_columns, batch)


def open_writer(path: str | Path, fmt: str, reader: Reader) -> tuple[IO[bytes], Writer]:
    fo = open(path, "wb")  # noqa: SIM115 - closed by the caller
    return fo, Writer(fo, fmt, reader)
