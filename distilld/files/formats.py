"""Record files in and out, a batch at a time: CSV, NDJSON, JSON array, Avro container.

A reader yields batches of records (dicts) and the rows they came from; a
writer takes rows back with the weight of each forwarded one, added as a
``distilld_weight`` column or field. Memory is a batch, whatever the file's size.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from collections.abc import Iterator
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from distilld.datapoint import weight_text
from distilld.files.columns import numbers

__all__ = ["FORMATS", "WEIGHT_FIELD", "FileFormatError", "Reader", "Writer", "format_of", "open_reader", "open_writer"]

FORMATS = ("csv", "ndjson", "json", "avro")
WEIGHT_FIELD = "distilld_weight"
_WEIGHT_KEY = orjson.dumps(WEIGHT_FIELD)  # as a JSON object's key, quoted
STDOUT = "-"  # as an output path: standard output
_EXTENSIONS = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "json", ".avro": "avro"}

Batch = tuple[list[Any], list[Any]]  # (records, rows)
_BOM = b"\xef\xbb\xbf"
# maybe an integer orjson reads as a float, outside -2**63 .. 2**64 - 1: 20 digits or more, or - and 19
_LONG_NUMBER = re.compile(rb"\d{20}|-\d{19}")
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]", re.IGNORECASE)
# a CSV cell that is a number as JSON writes one (no leading zeros, no spaces, no inf): a number in typed output
_INTEGER = re.compile(r"-?(?:0|[1-9]\d*)")
_DECIMAL = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_LONG = range(-(2**63), 2**63)  # Avro's long
_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# a JSON array's scan (_JsonScan): strings, brackets, and numbers too long for Python or a double
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
# escapes, a surrogate pair whole: a "lone" surrogate is not UTF-8 (yajl makes a high one "?", a low one fails)
_ESCAPES = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|(?P<lone>\\u[dD][89a-fA-F][0-9a-fA-F]{2})|\\.",
    re.DOTALL,
)
# an escape a read may end inside, or a high surrogate whose low may come in the next read
_ESCAPE_END = re.compile(
    rb"\\(?:u(?:[0-9a-fA-F]{0,3}|[dD][89abAB][0-9a-fA-F]{2}(?:\\(?:u(?:[dD][c-fC-F]?[0-9a-fA-F]?)?)?)?)?)?\Z"
)
_STEP = np.zeros(256, dtype=np.int64)  # a byte's change to the nesting (outside strings)
_STEP[list(b"[{")], _STEP[list(b"]}")] = 1, -1
_MATTERS = np.zeros(256, dtype=bool)  # brackets, quotes, commas
_MATTERS[list(b'[]{}",')] = True
_MAX_DEPTH = 1024  # a record's nesting, as orjson allows in NDJSON
# digits as 0, E as e and + as -: a number's shape found by substring search (faster than a regex)
_SHAPES = bytes.maketrans(b"123456789E+", b"000000000e-")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text} is out of range")
    return number


def _strict_json(line: bytes) -> Any:
    """The standard library's reader (integers past 64 bits stay integers), as strict as orjson: NaN and
    Infinity are not JSON, nor is a number past a double (which it reads as an infinity), nor a lone
    surrogate escape (``\\ud800``, not UTF-8: not to be written)."""
    try:
        record = json.loads(line, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("nested too deep") from None
    if _SURROGATE.search(line):
        json.dumps(record, ensure_ascii=False).encode()  # a UnicodeEncodeError (a ValueError) if one is lone
    return record


class FileFormatError(ValueError):
    """A file's format is unknown, or its content does not match it."""


def format_of(path: str | Path, given: str | None = None, option: str = "--format") -> str:
    if given:
        if given not in FORMATS:
            raise FileFormatError(f"unknown format {given!r}: one of {', '.join(FORMATS)}")
        return given
    found = _EXTENSIONS.get(Path(path).suffix.lower())
    if found is None:
        raise FileFormatError(
            f"{path}: cannot tell the format from the extension; give {option} ({', '.join(FORMATS)})"
        )
    return found


class Reader:
    """``batches()`` of (records, rows); ``position()`` is how far into the file, in bytes."""

    def __init__(self, fo: IO[bytes], fmt: str, numeric_columns: set[str], batch: int, name: str = "") -> None:
        self.fo, self.fmt, self.numeric, self.batch = fo, fmt, numeric_columns, batch
        self.name = name or str(getattr(fo, "name", "input"))  # for error messages
        self.schema: Any = None  # Avro: the writer schema
        self.codec, self.metadata = "null", dict[str, str]()  # Avro: the file's codec and metadata
        self.branches = False  # Avro: keep each union value's branch (:func:`_branches`), for Avro output
        self.columns: list[str] = []  # CSV: the header
        self.rows_only = False  # CSV: yield (None, rows), records made by records_of() when wanted
        self._scan: _JsonScan | None = None  # JSON: the bytes read, scanned

    def position(self) -> int:
        try:
            return self.fo.tell()
        except (OSError, ValueError):
            return 0

    def batches(self) -> Iterator[Batch]:
        batches: Iterator[Batch] = getattr(self, f"_{self.fmt}")()
        return batches

    def _lines(self) -> Iterator[str]:
        """The file's lines as text; bad UTF-8 is an error naming the line."""
        for n, raw in enumerate(self.fo, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise FileFormatError(f"{self.name}: line {n}: not UTF-8 (byte {e.start} of the line)") from None
            yield line.removeprefix("\ufeff") if n == 1 else line

    def _csv(self) -> Iterator[Batch]:
        csv.field_size_limit(2**31 - 1)  # not the csv module's 128 KiB: a long cell (a JSON blob) is valid CSV
        # strict: a quote left open at the end (a truncated file) or text after a closing quote is an
        # error, not the rest of the file read into one cell
        rows = csv.reader(self._lines(), strict=True)
        read = 0  # lines of the rows read so far
        try:
            self.columns = next(rows)
            while not self.columns:  # blank lines before the header
                self.columns = next(rows)
            read = rows.line_num
        except StopIteration:
            return
        except csv.Error as e:
            raise self._csv_error(e, read, rows.line_num) from None
        width = len(self.columns)
        while True:
            chunk = []
            try:
                for row in rows:
                    if len(row) != width:
                        if not row:  # a blank line
                            read = rows.line_num
                            continue
                        raise FileFormatError(
                            f"{self.name}: line {rows.line_num}: {len(row)} fields, the header has {width}"
                        )
                    chunk.append(row)
                    read = rows.line_num
                    if len(chunk) == self.batch:
                        break
            except csv.Error as e:
                raise self._csv_error(e, read, rows.line_num) from None
            if not chunk:
                return
            if self.rows_only:
                yield None, chunk  # type: ignore[misc]
                continue
            yield self.records_of(chunk), chunk

    def _csv_error(self, e: csv.Error, read: int, at: int) -> FileFormatError:
        if str(e) == "unexpected end of data":  # a quoted field still open at the end: say where it began
            return FileFormatError(
                f"{self.name}: line {read + 1}: a quoted field is not closed before the end of the file"
            )
        if "new-line character seen in unquoted field" in str(e):  # Python's advice (newline mode) is not ours
            return FileFormatError(
                f"{self.name}: line {at}: a carriage return (CR) outside quotes that does not end a line: are the"
                " lines ended by CR alone (old Mac OS)? A CSV's lines end with LF or CRLF"
            )
        return FileFormatError(f"{self.name}: line {at}: {e}")

    def records_of(self, rows: list[list[str]], typed: bool = False) -> list[dict[str, Any]]:
        """CSV rows as records, the cells as read (text); ``typed``, for the output: numbers in
        the numeric features' columns where a cell is written as JSON writes one (:func:`_typed`),
        an empty one ``None``."""
        columns = self.columns
        records: list[dict[str, Any]] = [dict(zip(columns, row, strict=False)) for row in rows]
        if typed:
            for c, name in enumerate(columns):
                if name in self.numeric:
                    cells = [row[c] if c < len(row) else "" for row in rows]
                    for record, value, cell in zip(records, numbers(cells), cells, strict=True):
                        record[name] = _typed(cell, value)
        return records

    def numbers_of(self, records: list[Any]) -> list[Any]:
        """The records as numeric features and the time read them: in CSV, copies with the numeric
        features' columns as numbers (``None`` where a cell is not one); other formats' as they are."""
        columns = [name for name in dict.fromkeys(self.columns) if name in self.numeric]
        if not columns:
            return records
        view = [dict(r) for r in records]
        for name in columns:
            for record, value in zip(view, numbers([r.get(name, "") for r in records]), strict=True):
                record[name] = value
        return view

    def _ndjson(self) -> Iterator[Batch]:
        loads = orjson.loads
        done = 0  # lines before this batch
        while True:
            lines = [line for _, line in zip(range(self.batch), self.fo, strict=False)]
            if not lines:
                return
            if not done:  # a UTF-8 byte order mark, as CSV's
                lines[0] = lines[0].removeprefix(_BOM)
            # orjson reads an integer outside 64 bits as a float: a batch that may hold one, the standard library
            parse = _strict_json if _LONG_NUMBER.search(b"".join(lines)) else loads
            try:
                records = [parse(line) for line in lines if line.strip()]
                ok = set(map(type, records)) <= {dict}
            except ValueError:  # not JSON (orjson's error is a JSONDecodeError too), or not UTF-8
                ok = False
            if not ok:
                self._ndjson_error(lines, done)
            done += len(lines)
            yield records, records

    def _ndjson_error(self, lines: list[bytes], done: int) -> None:
        """Name the first line of a batch that is not a JSON object (the slow path, on bad input only)."""
        opening = next((line.lstrip()[:1] for line in lines if line.strip()), b"") if not done else b""
        hint = "; a JSON array of records is --format json" if opening == b"[" else ""  # the file opens an array
        for n, line in enumerate(lines, done + 1):
            if not line.strip():
                continue
            try:
                line.decode()
            except UnicodeDecodeError as e:  # orjson places it at the line's start
                column = len(line[: e.start].decode()) + 1
                raise FileFormatError(f"{self.name}: line {n}, column {column}: not UTF-8") from None
            try:
                record = orjson.loads(line.rstrip(b"\r\n"))  # an end of data inside the line, not on a line after it
            except orjson.JSONDecodeError as e:
                raise FileFormatError(f"{self.name}: line {n}, column {e.colno}: not JSON: {e.msg}{hint}") from None
            if type(record) is not dict:
                raise FileFormatError(f"{self.name}: line {n}: not a JSON object: {type(record).__name__}{hint}")
            try:  # what orjson reads, the standard library may not (read for an integer past 64 bits)
                _strict_json(line)
            except ValueError as e:
                raise FileFormatError(f"{self.name}: line {n}: not JSON: {e}") from None
        raise FileFormatError(f"{self.name}: lines {done + 1}-{done + len(lines)}: not JSON")  # no line alone says why

    def _json(self) -> Iterator[Batch]:
        import ijson

        head = self.fo.read(4096)
        first = head.removeprefix(_BOM).lstrip()[:1]
        if not first:
            raise FileFormatError(f"{self.name}: empty, not a JSON array of records")
        if first != b"[":
            raise FileFormatError(
                f"{self.name}: not a JSON array of records (it starts with {first.decode('latin-1')!r})"
                + ("; one object per line is --format ndjson" if first == b"{" else "")
            )
        items = self._json_items(head.removeprefix(_BOM))  # a UTF-8 byte order mark, as CSV's
        done = 0
        while True:
            records: list[Any] = []
            try:
                for _, r in zip(range(self.batch), items, strict=False):
                    if type(r) is not dict:
                        where = f"record {done + len(records) + 1} of the array"
                        raise FileFormatError(f"{self.name}: {where}: not a JSON object: {type(r).__name__}")
                    records.append(r)
            except ijson.JSONError as e:
                where = f"record {done + len(records) + 1} of the array"
                raise FileFormatError(f"{self.name}: {where}: not JSON: {str(e).splitlines()[0]}") from None
            if not records:
                return
            if (
                self._scan is not None and self._scan.suspect
            ):  # a number that may be past a double: as NDJSON, out of range is an error
                for n, r in enumerate(records, done + 1):
                    if not _finite(r):
                        raise FileFormatError(f"{self.name}: record {n} of the array: a number is out of range")
            done += len(records)
            yield records, records

    def _json_items(self, head: bytes) -> Iterator[Any]:
        """The array's items, numbers as float and int, read through a :class:`_JsonScan` of
        ``head`` and the rest of the file. An integer past 64 bits, which the C parser refuses
        when it also reads floats as floats, makes it read again from the start with exact
        numbers, past the items already given, floats then turned back from Decimal; a stream
        that cannot be read again (a pipe) is read that way from the start."""
        import ijson

        self._scan = _JsonScan(self.fo, head, self.name)
        given = 0
        if self.fo.seekable():
            try:
                for item in ijson.items(self._scan, "item", use_float=True):
                    given += 1
                    yield item
                return
            except ijson.JSONError as e:
                if "integer overflow" not in str(e):
                    raise
            self.fo.seek(0)
            start = self.fo.read(len(_BOM))
            self._scan = _JsonScan(self.fo, start.removeprefix(_BOM), self.name, self._scan.suspect)
        for item in islice(ijson.items(self._scan, "item"), given, None):
            yield _floats(item)

    def _avro(self) -> Iterator[Batch]:
        from fastavro import parse_schema, reader
        from fastavro._read_py import reader as python_reader

        from distilld.codecs.avro_codec import recursive

        fo: Any = self.fo if self.fo.seekable() else _Rewindable(self.fo)
        try:
            avro: Any = reader(fo)
            deep = recursive(parse_schema(avro.writer_schema))
        except Exception as e:  # not Avro, or a header fastavro cannot parse (SchemaParseException, ...)
            raise FileFormatError(f"{self.name}: not an Avro container file: {type(e).__name__}: {e}") from None
        self.branches = self.branches and _unions(avro.writer_schema)  # (else no value has a choice of branch)
        if deep or self.branches:  # deep: a linked list, a tree; the compiled reader crashes deep down (see
            fo.seek(0)  # distilld.codecs.avro_codec)
            avro = (python_reader if deep else reader)(fo, return_named_type=self.branches)
        elif isinstance(fo, _Rewindable):
            fo.seek(0, keep=False)
        self.schema, self.codec, self.metadata = avro.writer_schema, avro.codec, avro.metadata
        if not isinstance(self.schema, dict) or self.schema.get("type") != "record":
            raise FileFormatError(
                f"{self.name}: its Avro schema is {json.dumps(self.schema)[:80]}, not a record: reduce reads records"
            )
        done = 0
        while True:
            records: list[Any] = []
            try:
                for _, r in zip(range(self.batch), avro, strict=False):
                    records.append(_branches(r) if self.branches else r)
            except RecursionError:
                raise FileFormatError(
                    f"{self.name}: Avro record {done + len(records) + 1}: nested deeper than distilld reads"
                    " (a recursive schema)"
                ) from None
            except Exception as e:  # truncated or corrupt blocks: EOFError, ValueError, fastavro's own errors
                if "you need to install" in str(e):  # a codec fastavro reads with a library that is not here
                    raise FileFormatError(
                        f"{self.name}: the Avro codec {self.codec} is not supported here: {e}"
                    ) from None
                raise FileFormatError(
                    f"{self.name}: Avro record {done + len(records) + 1}: truncated or corrupt: {type(e).__name__}: {e}"
                ) from None
            if not records:
                return
            done += len(records)
            yield records, records


class _Rewindable:
    """A stream (a pipe) that can go back to its start once, to read an Avro header again with
    another reader: what is read is kept until ``seek``."""

    def __init__(self, fo: IO[bytes]) -> None:
        self.fo, self.kept = fo, bytearray()
        self.replay: memoryview | None = None  # after seek: what is given again before the stream's own

    def read(self, n: int = -1) -> bytes:
        if self.replay is None:
            data = self.fo.read(n)
            self.kept += data
            return data
        given, self.replay = (self.replay, self.replay[:0]) if n < 0 else (self.replay[:n], self.replay[n:])
        more = self.fo.read(-1 if n < 0 else n - len(given)) if n < 0 or len(given) < n else b""
        return bytes(given) + more

    def seek(self, offset: int, whence: int = 0, keep: bool = True) -> int:
        """Back to the start (``keep``), or on from where the reads are, keeping nothing more."""
        assert (offset, whence) == (0, 0)
        self.replay = memoryview(bytes(self.kept) if keep else b"")
        self.kept = bytearray()
        return 0


class _JsonScan:
    """A JSON array's bytes as the parser reads them (``read``), scanned on the way: ijson keeps a
    prefix per level of nesting (memory quadratic in the depth) and its C parser crashes on an
    integer Python refuses to convert (past 4,300 digits) and makes a lone surrogate escape "?"
    (or fails on it). So a record nested deeper than NDJSON allows (orjson's 1,024 levels), such a
    number or such an escape is a FileFormatError naming the record (its place in the array: the
    commas at the array's level before it). ``suspect``: a number that may be past a double (an
    infinity once read) has been seen."""

    def __init__(self, fo: IO[bytes], head: bytes, name: str, suspect: bool = False) -> None:
        self.fo, self.head, self.name, self.suspect = fo, head, name, suspect
        self.depth = 0  # the nesting at the end of the bytes scanned, the array's own level 1
        self.records = 0  # commas at the array's level so far
        self.in_string = False
        self.pending = b""  # a backslash at the end of a read: its escaped character comes next
        self.number = b""  # the number (or its start) at the end of the text scanned, in _SHAPES
        self.escape = b""  # an escape at the end of the last read (:meth:`_surrogates`)

    def read(self, n: int = -1) -> bytes:
        if not n:
            return b""
        data, self.head = (self.head, b"") if self.head else (self.fo.read(n), b"")
        if self.escape or b"\\" in data[-11:] or _SURROGATE.search(data):  # (an escape may go on in the next)
            self._surrogates(data)
        self._scan(data)
        return data

    def _surrogates(self, data: bytes) -> None:
        """A lone surrogate escape (``"\\ud800"``) is an error, naming its record (as a number too long)."""
        text = self.escape + data
        end = _ESCAPE_END.search(text)
        cut = end.start() if end else len(text)
        if (cut - len(text[:cut].rstrip(b"\\"))) % 2:  # the backslash found is itself escaped
            cut = len(text)
        self.escape, text = text[cut:], text[:cut]
        if not _SURROGATE.search(text):
            return
        lone = next((m for m in _ESCAPES.finditer(text) if m.group("lone")), None)
        if lone is not None:
            before = data[: max(lone.start() - len(text) + len(data), 0)]
            record = self.records + int(self._structure(_ESCAPE.sub(b"", before))[3].sum()) + 1
            raise FileFormatError(
                f"{self.name}: record {record} of the array: a lone surrogate escape ({lone.group().decode()}),"
                " not UTF-8"
            )

    def _structure(self, data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Of ``data`` (escapes gone) after the bytes scanned: the positions of its brackets, quotes and
        commas, which are outside strings, the nesting after each, and the commas at the array's level."""
        b = np.frombuffer(data, dtype=np.uint8)
        at = np.flatnonzero(_MATTERS[b])  # the bytes that matter, in order
        c = b[at]
        quote = c == ord('"')
        outside = ((np.cumsum(quote) - quote + self.in_string) & 1 == 0) & ~quote  # not in a string
        depth = self.depth + np.cumsum(_STEP[c] * outside)
        return at, outside, depth, (c == ord(",")) & (depth == 1) & outside

    def _scan(self, data: bytes) -> None:
        if b"\\" in data or self.pending:
            data = _ESCAPE.sub(b"", self.pending + data)  # escapes (in strings) gone: every quote opens or closes one
            self.pending = b"\\" if data.endswith(b"\\") else b""  # its escaped character comes in the next read
            data = data[: len(data) - len(self.pending)]
        at, _, depth, commas = self._structure(data)
        b = np.frombuffer(data, dtype=np.uint8)
        shapes = data.translate(_SHAPES)
        long = -1
        if b"0" * 300 in shapes or b"e000" in shapes or b"e-000" in shapes:  # a number maybe past a double
            every = np.cumsum(b == ord('"'))  # (strings and all: here the numbers outside them)
            text = np.flatnonzero(((every - (b == ord('"')) + self.in_string) & 1 == 0) & (b != ord('"')))
            number = self.number + b[text].tobytes().translate(_SHAPES)
            self.suspect = self.suspect or b"0" * 300 in number or b"e000" in number or b"e-000" in number
            found = number.find(b"0" * 4301)
            long = -1 if found < 0 else int(np.searchsorted(at, text[max(found - len(self.number), 0)]))
        deep = np.flatnonzero(depth > _MAX_DEPTH + 1)
        if long >= 0 or deep.size:
            first = int(deep[0]) if deep.size else long
            record = self.records + int(commas[:first].sum()) + 1
            reason = "a number of more than 4,300 digits" if long >= 0 else f"nested deeper than {_MAX_DEPTH} levels"
            raise FileFormatError(f"{self.name}: record {record} of the array: {reason}")
        self.in_string = bool((data.count(b'"') + self.in_string) & 1)
        self.depth = int(depth[-1]) if depth.size else self.depth
        self.records += int(commas.sum())
        tail = shapes[-5000:]
        self.number = tail[len(tail.rstrip(b"0.e-")) :]  # a number the read may end inside


class _Symbol(str):
    """An enum symbol read from a union, with its type's name (``["string", enum]``: not a string)."""

    type: str


class _Fixed(bytes):
    """A fixed's bytes read from a union, with its type's name (``["bytes", fixed]``: not bytes)."""

    type: str


def _branches(value: Any) -> Any:
    """An Avro value read with ``return_named_type`` (a union's named type as a (name, value) pair),
    as read without it, the branch kept for writing it back (:func:`_branched`): a record's in a
    "-type" field (fastavro's writer takes the branch from it), an enum's or a fixed's in a subclass."""
    if isinstance(value, tuple):
        name, inner = value
        inner = _branches(inner)
        if isinstance(inner, dict):
            return {**inner, "-type": name}
        kept = _Symbol(inner) if isinstance(inner, str) else _Fixed(inner) if isinstance(inner, bytes) else inner
        if kept is not inner:
            kept.type = name
        return kept
    if isinstance(value, dict):
        return {k: _branches(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_branches(v) for v in value]
    return value


def _unions(schema: Any) -> bool:
    """Whether an Avro schema has a union of more than one type besides null."""
    if isinstance(schema, list):
        return len([t for t in schema if t != "null"]) > 1 or any(map(_unions, schema))
    if isinstance(schema, dict):
        return any(_unions(schema.get(key)) for key in ("type", "items", "values")) or any(
            _unions(f.get("type")) for f in schema.get("fields", [])
        )
    return False


def _branched(value: Any) -> Any:
    """A value of :func:`_branches` for fastavro's writer: an enum symbol or fixed in a union as (name, value)."""
    if isinstance(value, _Symbol | _Fixed):
        return (value.type, str(value) if isinstance(value, str) else bytes(value))
    if isinstance(value, dict):
        return {k: _branched(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_branched(v) for v in value]
    return value


def _finite(value: Any) -> bool:
    """Whether no float in ``value`` (a record, as read) is an infinity or NaN."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(map(_finite, value.values()))
    if isinstance(value, list):
        return all(map(_finite, value))
    return True


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
        self._at = 0

    def write(self, records: list[Any], rows: list[Any], weights: list[float], numbers: list[int]) -> None:
        """Forwarded records (as decoded), the rows they were read from, their weights, and their
        numbers in the file (from 1: for errors)."""
        if self.reader.fmt == "csv" and self.fmt != "csv":  # the numeric features' numbers, the rest as read
            records = self.reader.records_of(rows, typed=True)
        if not self._started:
            if not records and self.fmt == "csv" and self.reader.fmt != "csv":
                return  # the header comes from the first forwarded record
            self._start(records)
        if self.reader.fmt != "csv" and any(WEIGHT_FIELD in r for r in records):
            raise FileFormatError(f"{self.reader.name}: records already have {WEIGHT_FIELD} (a reduced file?)")
        try:
            self._write(records, rows, weights, numbers)
        except (ValueError, TypeError, RecursionError) as e:  # fastavro's, or the standard library's JSON
            if isinstance(e, FileFormatError):
                raise
            n = numbers[self._at] if self._at < len(numbers) else "?"
            raise FileFormatError(
                f"{self.reader.name}: record {n}: cannot be written as {self.fmt}: {_why(e)}"
            ) from None

    def _write(self, records: list[Any], rows: list[Any], weights: list[float], numbers: list[int]) -> None:
        self._at = 0  # the record being written, for errors
        if self.fmt == "csv":
            if self.reader.fmt == "csv":  # the row as it was read, plus the weight
                self._csv.writerows([*row, weight_text(w)] for row, w in zip(rows, weights, strict=True))
            else:
                known = set(self._columns)
                for self._at, (r, w) in enumerate(zip(records, weights, strict=True)):
                    if not known.issuperset(r):
                        raise FileFormatError(
                            f"{self.reader.name}: record {numbers[self._at]}: it has fields the CSV header (the first"
                            f" forwarded record's) lacks: {', '.join(sorted(set(r) - known))}; write ndjson or json"
                        )
                    self._csv.writerow([*(_cell(r.get(c)) for c in self._columns), weight_text(w)])
        elif self.fmt == "avro":
            for self._at, (record, w) in enumerate(zip(records, weights, strict=True)):
                self._avro.write(
                    _branched({**record, WEIGHT_FIELD: w}) if self.reader.branches else {**record, WEIGHT_FIELD: w}
                )
        else:
            for self._at, (record, w) in enumerate(zip(records, weights, strict=True)):
                if self.reader.fmt == "avro" and not _finite(record):  # orjson would write null: as Avro's JSON does
                    record = _finite_texts(record)
                data = _dumps(record)  # a JSON object: the weight, as weight_text writes it, before its "}"
                data = b"%s%s%s:%s}" % (data[:-1], b"," if len(data) > 2 else b"", _WEIGHT_KEY, weight_text(w).encode())
                if self.fmt == "json":
                    self.fo.write(b",\n" if self._any else b"\n")
                self._any = True
                self.fo.write(data + (b"\n" if self.fmt == "ndjson" else b""))

    def _start(self, first: list[Any]) -> None:
        self._started = True
        self._any = False
        if WEIGHT_FIELD in self.reader.columns:
            raise FileFormatError(f"{self.reader.name}: already has a {WEIGHT_FIELD} column (a reduced file?)")
        if self.reader.fmt == "csv" and self.fmt != "csv":  # a record holds a field once
            seen: set[str] = set()
            for c in self.reader.columns:
                if c in seen:
                    raise FileFormatError(
                        f"{self.reader.name}: line 1: column {c!r} is in the header twice; a {self.fmt} record"
                        " would keep one of them: write csv, or rename one"
                    )
                seen.add(c)
        if self.fmt == "csv":
            self._text = io.TextIOWrapper(self.fo, encoding="utf-8", newline="", write_through=True)
            self._csv = csv.writer(self._text)
            self._columns = self.reader.columns or (list(first[0]) if first else [])
            if WEIGHT_FIELD in self._columns:
                raise FileFormatError(f"{self.reader.name}: records already have {WEIGHT_FIELD} (a reduced file?)")
            self._csv.writerow([*self._columns, WEIGHT_FIELD])
        elif self.fmt == "json":
            self.fo.write(b"[")
        elif self.fmt == "avro":
            from fastavro.write import Writer as AvroWriter

            meta = {k: v for k, v in self.reader.metadata.items() if not k.startswith("avro.")}  # the user's
            try:  # in the input's codec
                self._avro = AvroWriter(self.fo, _avro_schema(self.reader), codec=self.reader.codec, metadata=meta)
            except ValueError as e:
                if isinstance(e, FileFormatError):
                    raise
                raise FileFormatError(f"{self.fo.name}: cannot write Avro here: {e}") from None

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
    if value is None:
        return ""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    if not _finite(value):  # Avro's NaN or infinities in an array, a map or a record: not null, as orjson writes them
        value = _finite_texts(value)
    text = _dumps(value).decode()  # nested values, booleans, and Avro's bytes, decimals, times and
    return json.loads(text) if text.startswith('"') else text  # UUIDs as JSON writes them, not Python's repr


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, default=_json_default)
    except TypeError:  # an integer past 64 bits or nesting past 255 levels, which orjson refuses
        text = json.dumps(value, default=_json_default, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.encode()


def _why(e: Exception) -> str:
    """The reason a record could not be written, for the command line."""
    if isinstance(e, RecursionError):
        return "nested too deep"
    if isinstance(e, UnicodeEncodeError):
        return f"a string holds a lone surrogate ({e.object[e.start : e.end]!r}), which is not UTF-8"
    if "Out of range float" in str(e):
        return "a number is NaN or an infinity, which JSON has not"
    return f"{type(e).__name__}: {e}"


def _finite_texts(value: Any) -> Any:
    """``value`` with NaN and the infinities as Avro's JSON encoding writes them: "NaN", "Infinity", "-Infinity"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {k: _finite_texts(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_texts(v) for v in value]
    return value


def _floats(value: Any) -> Any:
    """``value`` with every Decimal in it a float (what the fast parse gives)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_floats(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    """Avro values JSON has no type for: bytes as Avro's JSON encoding does (code points), decimals as text."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _typed(cell: str, value: float | None) -> Any:
    """A numeric feature's CSV cell in typed output: ``41`` an int (not ``41.0``), ``5.5`` a float, a
    number written otherwise (``007``, ``1_000``, ``inf``, a 20-digit id, one past a double) as read, as
    is a cell that is not a number; an empty one ``None``. What the cell said is never lost."""
    if value is None or not math.isfinite(value):
        return cell or None
    if _INTEGER.fullmatch(cell):
        number = int(cell)
        return number if number in _LONG else cell
    return value if _DECIMAL.fullmatch(cell) else cell


def _avro_schema(reader: Reader) -> Any:
    weight = {"name": WEIGHT_FIELD, "type": "double"}
    if reader.schema is not None:
        if any(f.get("name") == WEIGHT_FIELD for f in reader.schema.get("fields", [])):
            raise FileFormatError(f"{reader.name}: already has a {WEIGHT_FIELD} field (a reduced file?)")
        if _contains_itself(reader.schema):
            raise FileFormatError(
                f"{reader.name}: its Avro record type {reader.schema['name']!r} contains itself (a linked list, a"
                f" tree): a {WEIGHT_FIELD} field would be required in the nested records too; write ndjson or json"
            )
        schema = dict(reader.schema)
        schema["fields"] = [*schema["fields"], weight]
        return schema
    if WEIGHT_FIELD in reader.columns:
        raise FileFormatError(f"{reader.name}: already has a {WEIGHT_FIELD} column (a reduced file?)")
    if reader.fmt == "csv":  # CSV columns as optional strings (numeric features' also long or double: _typed)
        for c in reader.columns:
            if not _AVRO_NAME.fullmatch(c):
                raise FileFormatError(
                    f"{reader.name}: line 1: column {c!r} is not an Avro field name (letters, digits and _,"
                    " not starting with a digit): write csv, ndjson or json, or rename it"
                )
        fields = [
            {
                "name": c,
                "type": ["null", "long", "double", "string"] if c in reader.numeric else ["null", "string"],
                "default": None,
            }
            for c in reader.columns
        ]
        return {"type": "record", "name": "Record", "fields": [*fields, weight]}
    raise FileFormatError(
        f"{reader.name}: {reader.fmt} records have no Avro schema: Avro output needs an Avro or CSV input;"
        " write csv, ndjson or json"
    )


def _contains_itself(schema: dict[str, Any]) -> bool:
    """Whether a record schema's type is named again inside it (the name, or with its namespace)."""
    name = schema["name"]
    names = {name, f"{schema['namespace']}.{name}" if "namespace" in schema and "." not in name else name}

    def named(node: Any) -> bool:
        if isinstance(node, str):
            return node in names
        if isinstance(node, list):
            return any(map(named, node))
        if isinstance(node, dict):
            return any(named(node.get(key)) for key in ("type", "items", "values")) or any(
                named(f.get("type")) for f in node.get("fields", [])
            )
        return False

    return any(named(f.get("type")) for f in schema["fields"])


def open_reader(path: str | Path, fmt: str, numeric_columns: set[str], batch: int) -> tuple[IO[bytes], Reader]:
    fo = open(path, "rb")  # noqa: SIM115 - closed by the caller
    return fo, Reader(fo, fmt, numeric_columns, batch, str(path))


def open_writer(path: str | Path, fmt: str, reader: Reader) -> tuple[IO[bytes], Writer]:
    """``-`` (STDOUT) is standard output, which closing the file returned leaves open."""
    if str(path) == STDOUT:
        if sys.stdout is None:  # closed when the process started (`>&-`)
            raise FileFormatError("-: standard output is closed")
        sys.stdout.flush()
        fo = open(sys.stdout.fileno(), "wb", closefd=False)  # noqa: SIM115 - closed by the caller
    else:
        fo = open(path, "wb")  # noqa: SIM115 - closed by the caller
    return fo, Writer(fo, fmt, reader)
