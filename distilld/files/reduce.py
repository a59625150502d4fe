"""``distilld reduce``: the daemon's engine over a file, streamed.

Records are read a batch at a time, filtered and reduced per key over the
window as the daemon would (event time from ``reducer.time``, or arrival:
file order at processing time), and the forwarded ones are written with a
``distilld_weight`` column or field. Memory is a batch plus the reducer's
fixed state, whatever the file's size.

Where it differs from the daemon: a CSV cell is text, so ``gt``/``gte``/``lt``/
``lte`` filters compare a cell that parses as a number as that number (the
daemon compares only JSON numbers); and a custom grader that raises makes that
value missing and the record is reduced (the daemon dead-letters the record),
counted and reported at the end.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from distilld.daemon.fields import RecordFields
from distilld.features import build_graders, parse_features
from distilld.fieldpath import compile_path, parse_alternatives, top_level_keys
from distilld.files.columns import ColumnPlan, numbers
from distilld.files.formats import STDOUT, FileFormatError, Reader, format_of, open_reader, open_writer
from distilld.filters import Condition, Filters, FilterSettings
from distilld.graders import GradingFunction
from distilld.processor import DistilledProcessor, index_keys
from distilld.settings import ConfigError, EngineSettings, ReducerSettings

BATCH = 10_000  # records per batch: reduce's --batch, and evaluate's run of the processor
STDIN = "-"  # as an input path: standard input

__all__ = ["BATCH", "AbsentFields", "FileFilters", "GraderErrors", "ReduceStats", "reduce_file", "refuse_kafka_fields"]


@dataclass
class GraderErrors:
    """Records whose custom grader raised, per grader: how many and the first error."""

    counts: dict[str, int] = field(default_factory=dict)
    first: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, errors: list[tuple[int, str]]) -> None:
        if errors:
            self.counts[name] = self.counts.get(name, 0) + len(errors)
            self.first.setdefault(name, errors[0][1])

    def lines(self) -> list[str]:
        return [
            f"{n:,} records: custom grader {name!r} raised: {self.first[name]} (their value counted as missing;"
            " the daemon sends such records to the DLQ)"
            for name, n in self.counts.items()
        ]


def extract_checked(
    graders: dict[str, GradingFunction], records: list[Any], errors: GraderErrors, numbers: list[Any]
) -> list[list[Any]]:
    """Every feature's raw values (``None`` where a grader raised), the raises counted in ``errors``;
    a numeric feature without a transform reads ``numbers`` (:meth:`Reader.numbers_of` of the records),
    the others the records as read (as :class:`ColumnPlan` gives them)."""
    columns = []
    for name, grader in graders.items():
        given = records if grader.is_categorical() or getattr(grader, "transform", None) else numbers
        if grader.may_raise:
            column, raised = grader.extract_checked(given)
            errors.add(name, raised)
        else:
            column = grader.extract_batch(given)
        columns.append(column)
    return columns


@dataclass
class ReduceStats:
    rows: int = 0
    forwarded: int = 0
    kept: int = 0
    dropped: int = 0
    seconds: float = 0.0
    grader_errors: GraderErrors = field(default_factory=GraderErrors)
    absent: list[str] = field(default_factory=list)  # AbsentFields.lines(), EventTimes.lines()

    def summary(self) -> str:
        rate = self.rows / self.seconds if self.seconds else 0.0
        return (
            f"{self.rows:,} rows read, {self.forwarded:,} forwarded ({self.kept:,} by keep_always), "
            f"{self.dropped:,} dropped by filters; {self.seconds:.1f} s, {rate:,.0f} rows/s"
        )

    def warnings(self) -> list[str]:
        return self.absent + self.grader_errors.lines()


class AbsentFields:
    """Field paths of the features, ``reducer.key`` and ``reducer.time`` that no record has: most
    likely a typo, which the daemon logs once and a file run would otherwise take without a word
    (every value missing). In CSV the header tells; in the other formats, every record read."""

    _EFFECT = {
        "feature": "every value counted as missing",
        "reducer.key": "every record in one window",
        "reducer.time": "no event time: records take the window's watermark",
    }

    def __init__(self, graders: dict[str, GradingFunction], reducer: ReducerSettings) -> None:
        paths = {f"feature {name!r}": getattr(g, "field", None) for name, g in graders.items()}
        paths["reducer.key"] = None if reducer.key in ("none", "kafka_key") else reducer.key
        paths["reducer.time"] = None if reducer.time in ("processing", "kafka_timestamp") else reducer.time
        self.paths = {what: path for what, path in paths.items() if isinstance(path, str)}
        self._unseen = {what: compile_path(path) for what, path in self.paths.items()}
        self.records = 0

    def see(self, records: list[Any]) -> None:
        """Records read (not CSV's: its header tells)."""
        self.records += len(records)
        for what, getter in list(self._unseen.items()):
            if any(v is not None for v in getter(records)):
                del self._unseen[what]

    def lines(self, header: list[str] | None) -> list[str]:
        """A warning per field path no record has; in CSV (``header``), no column, naming close ones."""
        lines = []
        for what, path in self.paths.items():
            effect = self._EFFECT[what.split()[0]]
            if not header:  # not CSV, or an empty one
                if self.records and what in self._unseen:
                    lines.append(f"{what}: none of the {self.records:,} records read has {path!r}; {effect}")
                continue
            if any(key in header for key in top_level_keys(path) if key is not None):
                continue
            # each alternative as a column name: a nested one's steps joined by dots (user.id)
            names = [".".join(map(str, steps)) for steps in parse_alternatives(path)]
            if any(name in header for name in names):
                hint = """ (a dot steps into a nested field: a column whose name has one is read quoted, '"user.id"')"""
            else:
                close = difflib.get_close_matches(names[0], [c for c in header if "." not in c], n=3)
                hint = f" (close: {', '.join(map(repr, close))})" if close else ""
            lines.append(f"{what}: no column {path!r} in the header{hint}; {effect}")
        return lines


class EventTimes:
    """Records whose ``reducer.time`` gave no usable time (missing, or not a number: an ISO-8601 text,
    say), over the whole file: the engine's own warning (which :func:`quiet_engine_times` holds back
    in a file run) counts the first batch only and shows the NaN it read, not the value."""

    def __init__(self, reducer: ReducerSettings) -> None:
        self.path = None if reducer.time in ("processing", "kafka_timestamp") else reducer.time
        self.records = self.unusable = 0
        self.example: Any = None  # the first value given that is not a number

    def see(self, ts: np.ndarray, given: Callable[[int], Any]) -> None:
        """A batch's times; ``given(i)``: what the ith record holds at ``reducer.time``, as read."""
        if self.path is None:
            return
        self.records += len(ts)
        bad = np.flatnonzero(np.isnan(ts))
        self.unusable += len(bad)
        if self.example is None:
            self.example = next((v for v in map(given, bad[:100].tolist()) if v is not None and v != ""), None)

    def lines(self, replaced: int) -> list[str]:
        """``replaced``: records whose time the engine replaced (these, and times far in the past or
        more than a window ahead)."""
        lines: list[str] = []
        ahead = replaced - self.unusable
        if self.path is None:
            return lines
        if ahead > 0:
            lines.append(
                f"reducer.time {self.path!r}: {ahead:,} records had an event time far in the past or more than a"
                " window ahead of the latest (milliseconds? reducer.time_unit); they took the window's watermark"
            )
        if not self.unusable or (self.example is None and self.unusable == self.records):
            return lines  # none: or the field is in no record, which AbsentFields tells
        if self.example is None:
            what = ": missing"
        else:
            shown = repr(self.example if len(str(self.example)) <= 60 else f"{str(self.example)[:60]}...")
            what = f", e.g. {shown}: not a number (event times are seconds since the epoch, in reducer.time_unit)"
        lines.append(
            f"reducer.time {self.path!r}: {self.unusable:,} of {self.records:,} records had no usable event time"
            f"{what}; they took the window's watermark"
        )
        return lines


class _EngineTimes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "had no usable event time" not in str(record.msg)


@contextlib.contextmanager
def quiet_engine_times() -> Iterator[None]:
    """The engine's warning about records without a usable time held back: :class:`EventTimes`
    tells at the end, naming the field and a value."""
    engine, held = logging.getLogger("distilld.processor"), _EngineTimes()
    engine.addFilter(held)
    try:
        yield
    finally:
        engine.removeFilter(held)


_NUMERIC_TESTS = ("gt", "gte", "lt", "lte")


class FileFilters:
    """The configured filters (:class:`distilld.filters.Filters`) over a file's records. In
    CSV (``text``), where every cell is text, a ``gt``/``gte``/``lt``/``lte`` test compares
    a value that parses as a number as that number; the other tests see the cell as read."""

    def __init__(self, settings: FilterSettings, text: bool = False) -> None:
        self._numbers: dict[str, str] = {}  # a compared path → the key of its numbers in a batch's view
        self.records = 0  # filtered so far
        if text:
            settings = FilterSettings(
                drop=[f.model_copy(update={"when": self._rewrite(f.when)}) for f in settings.drop],
                keep_always=[f.model_copy(update={"when": self._rewrite(f.when)}) for f in settings.keep_always],
            )
        self.filters = Filters(settings)

    def _rewrite(self, c: Condition) -> Condition:
        if c.all_ is not None:
            return c.model_copy(update={"all_": [self._rewrite(x) for x in c.all_]})
        if c.any_ is not None:
            return c.model_copy(update={"any_": [self._rewrite(x) for x in c.any_]})
        if c.not_ is not None:
            return c.model_copy(update={"not_": self._rewrite(c.not_)})
        if c.field is None or not c.model_fields_set.intersection(_NUMERIC_TESTS):
            return c
        key = self._numbers.setdefault(c.field, f"__distilld_number_{len(self._numbers)}")
        return c.model_copy(update={"field": key})

    def __bool__(self) -> bool:
        return bool(self.filters)

    def split(self, records: list[Any]) -> tuple[np.ndarray, list[tuple[int, str]], list[tuple[int, str]]]:
        """As :meth:`distilld.filters.Filters.split`; a FileFormatError naming the first record (counted
        over the batches filtered so far: the file's records) it could not filter."""
        first = self.records
        self.records += len(records)
        if self._numbers:
            view = [dict(r) for r in records]
            for path, key in self._numbers.items():
                values = compile_path(path)(records)
                text = [i for i, v in enumerate(values) if isinstance(v, str)]
                for i, number in zip(text, numbers([values[i] for i in text]), strict=True):
                    values[i] = number
                for record, value in zip(view, values, strict=True):
                    record[key] = value
            records = view
        reduce, dropped, kept, failed = self.filters.split_checked(records)
        if failed:
            i, reason = failed[0]
            raise FileFormatError(
                f"record {first + i + 1}: {reason}" + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else "")
            )
        return reduce, dropped, kept


def numeric_columns(settings: EngineSettings) -> set[str]:
    """Top-level columns a CSV must give as numbers: numeric features and a time field."""
    columns: set[str] = set()
    for spec in parse_features(settings.features):
        if getattr(spec, "type", None) == "numeric" and spec.transform is None:
            columns.update(key for key in top_level_keys(spec.path) if key is not None)
    if settings.reducer.time not in ("processing", "kafka_timestamp"):
        columns.update(key for key in top_level_keys(settings.reducer.time) if key is not None)
    return columns


def refuse_kafka_fields(reducer: ReducerSettings) -> None:
    """A file has no Kafka key or timestamp: a ConfigError naming the setting(s) that ask for one."""
    errors = []
    if reducer.key == "kafka_key":
        errors.append("reducer.key: kafka_key needs Kafka; a file's records are keyed by a field path, or none")
    if reducer.time == "kafka_timestamp":
        errors.append(
            "reducer.time: kafka_timestamp needs Kafka; a file's records are timed by a field path, or processing"
        )
    if errors:
        raise ConfigError("\n".join(errors))


@quiet_engine_times()
def reduce_file(
    source: str | Path,
    target: str | Path,
    settings: EngineSettings,
    in_format: str | None = None,
    out_format: str | None = None,
    batch: int = BATCH,
    progress: bool | None = None,
) -> ReduceStats:
    reducer = settings.reducer
    refuse_kafka_fields(reducer)
    source = input_path(source)
    fmt_in = format_of(source, in_format)
    fmt_out = format_of(target, out_format, "--output-format") if out_format or Path(target).suffix else fmt_in
    if batch < 1:
        raise FileFormatError(f"--batch: {batch}: give 1 or more records")
    source, target = Path(source), Path(target)
    written, final = _destination(source, target)
    graders = build_graders(settings.features)
    processor = DistilledProcessor(
        graders, reducer.window_seconds, reducer.rate, batch, **reducer.engine_options()
    )  # fmt: skip
    fields = RecordFields(reducer)
    filters = FileFilters(settings.filters, text=fmt_in == "csv")
    absent, times = AbsentFields(graders, reducer), EventTimes(reducer)
    show = sys.stderr.isatty() if progress is None else progress
    stats, started, shown = ReduceStats(), time.perf_counter(), 0.0
    fin, reader = open_reader(source, fmt_in, numeric_columns(settings), batch)
    reader.branches = fmt_in == fmt_out == "avro"  # each union value written back to the branch it was read from
    size = max(os.fstat(fin.fileno()).st_size, 1)
    try:
        with _naming(target):
            fout, writer = open_writer(written, fmt_out, reader)
        try:
            plan: ColumnPlan | None = None
            for records, rows in reader.batches():
                done, first = None, stats.rows
                if records is None:  # CSV rows cut into columns (see distilld.files.columns)
                    assert plan is not None
                    done = _reduce_columns(rows, plan, processor, stats, times)
                    if done is None:
                        records = reader.records_of(rows)
                if done is not None:
                    out, weights = done
                    forwarded = [rows[i] for i in out]
                    numbers = [first + i + 1 for i in out]
                    with _naming(target):
                        writer.write(
                            [] if fmt_out == "csv" else reader.records_of(forwarded), forwarded, weights, numbers
                        )
                else:
                    assert records is not None
                    if fmt_in != "csv":
                        absent.see(records)
                    out, weights = _reduce(records, reader, processor, graders, fields, filters, stats, times)
                    numbers = [first + i + 1 for i in out]
                    with _naming(target):
                        writer.write([records[i] for i in out], [rows[i] for i in out], weights, numbers)
                if fmt_in == "csv" and plan is None and not reader.rows_only:
                    plan = ColumnPlan.build(settings, graders, reader.columns)
                    reader.rows_only = plan is not None
                now = time.perf_counter()
                if show and now - shown > 0.5:
                    shown = now
                    pct = 100 * reader.position() / size
                    print(f"\r{pct:5.1f} %  {stats.rows:>12,} rows  {stats.rows / (now - started):>10,.0f} rows/s",
                          end="", file=sys.stderr, flush=True)  # fmt: skip
            with _naming(target):
                writer.close()
                fout.close()
            if final is not None:
                _keep_mode(final, written)
                os.replace(written, final)
        except BaseException:
            with contextlib.suppress(OSError):  # what is left to write cannot be (a full disk): closed all the same
                fout.close()
            if final is not None:
                written.unlink(missing_ok=True)
            raise
    finally:
        fin.close()
    stats.seconds = time.perf_counter() - started
    stats.absent = absent.lines(reader.columns if fmt_in == "csv" else None) + times.lines(
        processor.timestamps_replaced
    )
    if show:
        print("\r" + " " * 60 + "\r", end="", file=sys.stderr)
    return stats


def _destination(source: Path, target: Path) -> tuple[Path, Path | None]:
    """The file to write and the one it is renamed onto when complete. A regular file (or a new
    one) is written next to it, next to the file a symlink points to, and renamed when complete:
    a failed run leaves no partial output. ``-`` (standard output), a FIFO or a device is written
    through, as it goes (None)."""
    if str(target) == STDOUT:
        if _is_stdout(source):  # `reduce in.ndjson -o - >> in.ndjson` read its own output back
            raise FileFormatError(f"{source}: standard output goes to it: the output would overwrite the input")
        return target, None
    if target.is_dir():
        raise FileFormatError(f"{target}: is a folder; give a file name")
    if target.exists():
        if os.path.samefile(source, target):
            raise FileFormatError(f"{target}: the output would overwrite the input")
        if _is_stdout(target):  # /dev/stdout as the shell opened it (`>> log` appends), even to a file
            return Path(STDOUT), None
        if not target.is_file():
            return target, None
        if _descriptor(target):
            raise FileFormatError(
                f"{target}: a file another descriptor holds open (such as /dev/stderr): a rename would replace "
                "that file, not write to it; give the file's own path, or - for standard output"
            )
    real = Path(os.path.realpath(target))
    if not real.parent.is_dir():
        raise FileFormatError(f"{target}: no such folder: {real.parent}")
    return real.with_name(f".{real.name}.partial"), real


def input_path(source: str | Path) -> Path:
    """The input's path: ``-`` is standard input."""
    return Path("/dev/stdin") if str(source) == STDIN else Path(source)


@contextlib.contextmanager
def _naming(target: Path) -> Iterator[None]:
    """An OSError writing (ENOSPC, EIO) names the output: Python's says only "[Errno 28] No space left on device"."""
    try:
        yield
    except OSError as e:
        if e.filename is None:
            e.filename = "standard output" if str(target) == STDOUT else str(target)
        raise


def _keep_mode(old: Path, new: Path) -> None:
    """An output file replaced keeps its permissions (the new one has the umask's) and, where
    allowed, its owner and group."""
    try:
        st = old.stat()
    except FileNotFoundError:
        return
    with contextlib.suppress(PermissionError):  # not root: the file is ours, in our group
        os.chown(new, st.st_uid, st.st_gid)
    os.chmod(new, st.st_mode & 0o7777)  # after chown, which clears set-user-ID


def _descriptor(target: Path) -> bool:
    """Whether ``target`` reaches its file through a descriptor's name (``/dev/stderr``, ``/dev/fd/2``,
    ``/proc/self/fd/2``), following its symlinks one by one: realpath would skip to the file."""
    path = os.path.abspath(target)
    for _ in range(40):  # the kernel's own limit on symlinks in a path
        if path.startswith(("/proc/", "/dev/fd/", "/dev/stdin", "/dev/stdout", "/dev/stderr")):
            return True
        if not os.path.islink(path):
            return False
        path = os.path.join(os.path.dirname(path), os.readlink(path))
    return False


def _is_stdout(target: Path) -> bool:
    """Whether ``target`` is the file standard output is open on (``/dev/stdout``, ``/dev/fd/1``)."""
    try:
        return os.path.samestat(target.stat(), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError):  # no standard output, or one with no file (captured)
        return False


def _reduce_columns(
    rows: list[list[str]], plan: ColumnPlan, processor: DistilledProcessor, stats: ReduceStats, times: EventTimes
) -> tuple[list[int], list[float]] | None:
    """The columnar path: a batch of CSV rows, no dict per record (None: a short row; take the dict path)."""
    try:
        extracted, ts, raw_keys = plan.extract(rows)
    except IndexError:
        return None
    stats.rows += len(rows)
    if plan.time is not None:
        column = plan.time
        times.see(ts, lambda i: rows[i][column])
    key_index, keys = index_keys(raw_keys if raw_keys is not None else [None] * len(rows))
    chosen, weight = processor.select(rows, ts, key_index, keys, extracted=extracted)
    chosen = np.sort(chosen)  # file order
    per_key = weight.tolist()
    stats.forwarded += len(chosen)
    return chosen.tolist(), [per_key[k] for k in key_index[chosen].tolist()]


def _reduce(
    records: list[Any],
    reader: Reader,
    processor: DistilledProcessor,
    graders: dict[str, GradingFunction],
    fields: RecordFields,
    filters: FileFilters,
    stats: ReduceStats,
    times: EventTimes,
) -> tuple[list[int], list[float]]:
    """Indexes of the forwarded records in file order, and their weights."""
    stats.rows += len(records)
    picked: list[tuple[int, float]] = []
    index = list(range(len(records)))
    if filters:
        reduce, dropped, kept = filters.split(records)
        stats.dropped += len(dropped)
        stats.kept += len(kept)
        picked += [(i, 1.0) for i, _ in kept]
        index = np.flatnonzero(reduce).tolist()
    sub = [records[i] for i in index] if len(index) < len(records) else records
    if sub:
        numbers = reader.numbers_of(sub)
        ts = fields.timestamps([], numbers)
        times.see(ts, lambda i: compile_path(times.path)(sub[i : i + 1])[0])  # type: ignore[arg-type]
        key_index, keys = fields.keys([], sub)
        extracted = extract_checked(graders, sub, stats.grader_errors, numbers)
        chosen, weight = processor.select(sub, ts, key_index, keys, extracted=extracted)
        per_key = weight.tolist()
        picked += [(index[c], per_key[k]) for c, k in zip(chosen.tolist(), key_index[chosen].tolist(), strict=True)]
    picked.sort()
    stats.forwarded += len(picked)
    return [i for i, _ in picked], [w for _, w in picked]
