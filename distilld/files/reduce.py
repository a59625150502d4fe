"""``distilld reduce``: the daemon's engine over a file, streamed.

Records are read a batch at a time, filtered and reduced per key over the
window as the daemon would (event time from ``reducer.time``, or arrival:
file order at processing time), and the forwarded ones are written with a
``distilld_weight`` column or field. Memory is a batch plus the reducer's
fixed state, whatever the file's size.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distilld.daemon.fields import RecordFields
from distilld.features import build_graders, parse_features
from distilld.files.columns import ColumnPlan
from distilld.files.formats import FileFormatError, format_of, open_reader, open_writer
from distilld.filters import Filters
from distilld.processor import DistilledProcessor, index_keys
from distilld.settings import ConfigError, EngineSettings

__all__ = ["ReduceStats", "reduce_file"]


@dataclass
class ReduceStats:
    rows: int = 0
    forwarded: int = 0
    kept: int = 0
    dropped: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        rate = self.rows / self.seconds if self.seconds else 0.0
        return (
            f"{self.rows:,} rows read, {self.forwarded:,} forwarded ({self.kept:,} by keep_always), "
            f"{self.dropped:,} dropped by filters; {self.seconds:.1f} s, {rate:,.0f} rows/s"
        )


def numeric_columns(settings: EngineSettings) -> set[str]:
    """Top-level columns a CSV must give as numbers: numeric features and a time field."""
    columns: set[str] = set()
    for spec in parse_features(settings.features):
        if getattr(spec, "type", None) == "numeric" and spec.transform is None:
            columns.update(p for p in spec.path.split("|") if "." not in p)
    if settings.reducer.time not in ("processing", "kafka_timestamp"):
        columns.update(p for p in settings.reducer.time.split("|") if "." not in p)
    return columns


def reduce_file(
    source: str | Path,
    target: str | Path,
    settings: EngineSettings,
    in_format: str | None = None,
    out_format: str | None = None,
    batch: int = 10_000,
    progress: bool | None = None,
) -> ReduceStats:
    reducer = settings.reducer
    if reducer.key == "kafka_key" or reducer.time == "kafka_timestamp":
        raise ConfigError("reducer.key kafka_key and reducer.time kafka_timestamp need Kafka; a file has a field path")
    fmt_in = format_of(source, in_format)
    fmt_out = format_of(target, out_format, "--output-format") if out_format or Path(target).suffix else fmt_in
    if batch < 1:
        raise FileFormatError(f"--batch: {batch}: give 1 or more records")
    source, target = Path(source), Path(target)
    if target.exists() and os.path.samefile(source, target):
        raise FileFormatError(f"{target}: the output would overwrite the input")
    if not target.parent.is_dir():
        raise FileFormatError(f"{target}: no such folder: {target.parent}")
    # written next to the target and renamed when complete: a failed run leaves no partial output
    partial = target.with_name(f".{target.name}.partial")
    graders = build_graders(settings.features)
    processor = DistilledProcessor(
        graders, reducer.window_seconds, reducer.rate, batch,
        max_keys=reducer.max_keys, panes=reducer.panes, seed=reducer.seed,
    )  # fmt: skip
    fields = RecordFields(reducer)
    filters = Filters(settings.filters)
    show = sys.stderr.isatty() if progress is None else progress
    size = max(Path(source).stat().st_size, 1)
    stats, started, shown = ReduceStats(), time.perf_counter(), 0.0
    fin, reader = open_reader(source, fmt_in, numeric_columns(settings), batch)
    try:
        fout, writer = open_writer(partial, fmt_out, reader)
        try:
            plan: ColumnPlan | None = None
            for records, rows in reader.batches():
                done = None
                if records is None:  # CSV rows cut into columns (see distilld.files.columns)
                    assert plan is not None
                    done = _reduce_columns(rows, plan, processor, stats)
                    if done is None:
                        records = reader.records_of(rows)
                if done is not None:
                    out, weights = done
                    forwarded = [rows[i] for i in out]
                    writer.write([] if fmt_out == "csv" else reader.records_of(forwarded), forwarded, weights)
                else:
                    assert records is not None
                    out, weights = _reduce(records, processor, fields, filters, stats)
                    writer.write([records[i] for i in out], [rows[i] for i in out], weights)
                if fmt_in == "csv" and plan is None and not reader.rows_only:
                    plan = ColumnPlan.build(settings, graders, reader.columns)
                    reader.rows_only = plan is not None
                now = time.perf_counter()
                if show and now - shown > 0.5:
                    shown = now
                    pct = 100 * reader.position() / size
                    print(f"\r{pct:5.1f} %  {stats.rows:>12,} rows  {stats.rows / (now - started):>10,.0f} rows/s",
                          end="", file=sys.stderr, flush=True)  # fmt: skip
            writer.close()
        except BaseException:
            fout.close()
            partial.unlink(missing_ok=True)
            raise
        fout.close()
        os.replace(partial, target)
    finally:
        fin.close()
    stats.seconds = time.perf_counter() - started
    if show:
        print("\r" + " " * 60 + "\r", end="", file=sys.stderr)
    return stats


def _reduce_columns(
    rows: list[list[str]], plan: ColumnPlan, processor: DistilledProcessor, stats: ReduceStats
) -> tuple[list[int], list[float]] | None:
    """The columnar path: a batch of CSV rows, no dict per record (None: a short row; take the dict path)."""
    try:
        extracted, ts, raw_keys = plan.extract(rows)
    except IndexError:
        return None
    stats.rows += len(rows)
    key_index, keys = index_keys(raw_keys if raw_keys is not None else [None] * len(rows))
    chosen, weight = processor.select(rows, ts, key_index, keys, extracted=extracted)
    chosen = np.sort(chosen)  # file order
    per_key = weight.tolist()
    stats.forwarded += len(chosen)
    return chosen.tolist(), [per_key[k] for k in key_index[chosen].tolist()]


def _reduce(
    records: list[Any], processor: DistilledProcessor, fields: RecordFields, filters: Filters, stats: ReduceStats
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
        ts = fields.timestamps([], sub)
        key_index, keys = fields.keys([], sub)
        chosen, weight = processor.select(sub, ts, key_index, keys)
        per_key = weight.tolist()
        picked += [(index[c], per_key[k]) for c, k in zip(chosen.tolist(), key_index[chosen].tolist(), strict=True)]
    picked.sort()
    stats.forwarded += len(picked)
    return [i for i, _ in picked], [w for _, w in picked]
