"""``distilld evaluate``: distilld next to uniform random sampling on a file, as a stream.

The file's records become columns (categorical features as codes, numerics as
numbers, missing numerics at the column's median), each record's time comes
from ``reducer.time`` or, without one, is its position in the file in
seconds. distilld and random sampling at the same rate (several seeds) are
scored with the metrics ``make bench`` uses (:mod:`distilld.evaluation`, one
implementation) over sliding windows of ``reducer.window_seconds``; the
report is a table, a PNG per feature (window shares or distributions: the
full stream, distilld, random) and an ``index.html`` that opens offline.
Unlike ``reduce``, this holds the file's feature columns in memory.

Filters apply as in ``reduce``: records ``filters.drop`` drops and records
``filters.keep_always`` forwards outside the budget (with either method) are
left out, and both methods are scored on the records that reach the reducer.
A custom grader that raises makes that value missing, counted as in ``reduce``.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from distilld.daemon.fields import RecordFields
from distilld.encoding import NumericBinner, to_float_array
from distilld.evaluation import Stream, evaluate, random_selection
from distilld.features import build_graders
from distilld.fieldpath import compile_path
from distilld.files.formats import FileFormatError, format_of, open_reader
from distilld.files.reduce import (
    BATCH,
    AbsentFields,
    EventTimes,
    FileFilters,
    GraderErrors,
    extract_checked,
    input_path,
    numeric_columns,
    quiet_engine_times,
    refuse_kafka_fields,
)
from distilld.processor import DistilledProcessor, index_keys
from distilld.settings import EngineSettings

__all__ = ["Evaluation", "evaluate_file"]

SEEDS = 5


PLOTS_SKIPPED = "plots skipped: matplotlib is not installed — pip install 'distilld[evaluate]'"


@dataclass
class Evaluation:
    ours: dict[str, float]
    random: dict[str, float]
    records: int
    selected: int
    plots: bool = True  # False: matplotlib is not installed; index.html and ratios.json have no images
    dropped: int = 0  # by filters.drop, left out
    kept: int = 0  # by filters.keep_always, left out (forwarded by either method)
    grader_errors: GraderErrors = field(default_factory=GraderErrors)
    absent: list[str] = field(default_factory=list)  # AbsentFields.lines()

    def filtered(self) -> str:
        """What the filters left out, or ''."""
        if not (self.dropped or self.kept):
            return ""
        return (
            f"filters: {self.dropped:,} records dropped and {self.kept:,} kept always, left out;"
            f" {self.records:,} records evaluated"
        )

    def warnings(self) -> list[str]:
        return self.absent + self.grader_errors.lines()

    def ratios(self) -> dict[str, float]:
        """random's error ÷ distilld's; NaN where the metric does not apply (no numeric pair, say)."""
        return {m: self.random[m] / max(self.ours[m], 1e-12) if self.random[m] > 0 else math.nan for m in self.ours}

    def table(self) -> str:
        ratios = self.ratios()
        width = max(14, *(len(m) + 2 for m in ratios))  # pair_tv@pair_bins is longer than the rest
        rows = [f"{'metric':<{width}}{'distilld':>12}{'random':>12}{'ratio':>10}"]
        for m, r in ratios.items():
            ratio = f"{r:>9.2f}x" if math.isfinite(r) else f"{'n/a':>10}"
            rows.append(f"{m:<{width}}{self.ours[m]:>12.5f}{self.random[m]:>12.5f}{ratio}")
        return "\n".join(rows)


@dataclass
class _Columns:
    stream: Stream  # in time order
    order: np.ndarray  # the file's index of each of the stream's records
    raw: list[list[Any]]  # each feature's values as read, in file order
    keys: list[Any] | None  # in file order
    times: np.ndarray  # the event times reduce gives the engine, in file order
    sizes: list[int]  # records of each batch read that reach the reducer
    labels: dict[str, list[str]]
    dropped: int
    kept: int
    grader_errors: GraderErrors
    absent: list[str]
    unusable: EventTimes


def _columns(
    path: str | Path, settings: EngineSettings, graders: dict[str, Any], fmt: str | None, batch: int
) -> _Columns:
    """The features' values, event times and keys of every record of the file."""
    reducer = settings.reducer
    refuse_kafka_fields(reducer)
    fields = RecordFields(reducer)
    path = input_path(path)
    fmt = format_of(path, fmt)
    filters = FileFilters(settings.filters, text=fmt == "csv")
    errors = GraderErrors()
    absent, unusable = AbsentFields(graders, reducer), EventTimes(reducer)
    dropped = kept = 0
    raw: dict[str, list[Any]] = {name: [] for name in graders}
    times: list[np.ndarray] = []
    keys: list[Any] = []
    sizes: list[int] = []
    fo, reader = open_reader(path, fmt, numeric_columns(settings), batch)
    with fo:
        for records, _ in reader.batches():
            if fmt != "csv":
                absent.see(records)
            if filters:  # as reduce: the records that reach the reducer
                reduce, out, always = filters.split(records)
                dropped, kept = dropped + len(out), kept + len(always)
                records = [records[i] for i in np.flatnonzero(reduce).tolist()]
                if not records:
                    continue
            sizes.append(len(records))
            numbers = reader.numbers_of(records)
            for name, column in zip(graders, extract_checked(graders, records, errors, numbers), strict=True):
                raw[name] += column
            times.append(fields.timestamps([], numbers))  # as reduce: the clock at processing time
            if unusable.path is not None:
                getter, read = compile_path(unusable.path), records
                unusable.see(times[-1], lambda i: getter(read[i : i + 1])[0])  # noqa: B023 - called at once
            if reducer.key != "none":
                key_index, key_list = fields.keys([], records)
                keys += [key_list[k] for k in key_index.tolist()]
    n = len(next(iter(raw.values())))
    if n == 0:
        left_out = f" ({dropped:,} dropped and {kept:,} kept always by filters)" if dropped or kept else ""
        raise FileFormatError(f"{path}: no records to evaluate{left_out}")
    engine = np.concatenate(times)
    t = np.arange(n, dtype=np.float64) if reducer.time == "processing" else engine.copy()
    bad = ~np.isfinite(t)
    if bad.any():  # no (or a bad) time field: the latest time seen before it, as the engine's watermark
        seen = np.fmax.accumulate(np.where(bad, np.nan, t))
        t = np.where(bad, seen, t)
        t[np.isnan(t)] = t[np.isfinite(t)][0] if np.isfinite(t).any() else 0.0
    categorical, numeric, labels = {}, {}, {}
    for name, values in raw.items():
        if graders[name].is_categorical():
            known = graders[name].get_categories()
            text = ["(missing)" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for v in values]
            labels[name] = known + sorted(set(text) - set(known))
            code = {label: i for i, label in enumerate(labels[name])}
            categorical[name] = np.array([code[v] for v in text], dtype=np.int64)
        else:
            x = to_float_array(values)
            x[~np.isfinite(x)] = np.nanmedian(x) if np.isfinite(x).any() else 0.0
            numeric[name] = x
    order = np.argsort(t, kind="stable")  # the metrics slide over time
    stream = Stream({k: v[order] for k, v in categorical.items()}, {k: v[order] for k, v in numeric.items()}, t[order])
    return _Columns(
        stream,
        order,
        list(raw.values()),
        keys or None,
        engine,
        sizes,
        labels,
        dropped,
        kept,
        errors,
        absent.lines(reader.columns if fmt == "csv" else None),
        unusable,
    )


@quiet_engine_times()
def evaluate_file(
    path: str | Path, settings: EngineSettings, report: str | Path, fmt: str | None = None, batch: int = BATCH
) -> Evaluation:
    if Path(report).exists() and not Path(report).is_dir():
        raise FileFormatError(f"{report}: not a folder (--report is the folder the report is written to)")
    graders = build_graders(settings.features)
    cols = _columns(path, settings, graders, fmt, batch)
    stream, keys, labels = cols.stream, cols.keys, cols.labels
    reducer = settings.reducer
    n = len(stream)
    window = reducer.window_seconds
    proc = DistilledProcessor(graders, window, reducer.rate, batch, **reducer.engine_options())
    records = [{"i": i} for i in range(n)]
    mask, weights = np.zeros(n, dtype=bool), np.ones(n)
    start = 0
    for size in cols.sizes:  # distilld as reduce runs it: the file's batches in file order, the values already read
        stop = start + size
        key_index, key_list = index_keys(keys[start:stop] if keys else [None] * size)
        extracted = [col[start:stop] for col in cols.raw]
        chosen, w = proc.select(records[start:stop], cols.times[start:stop], key_index, key_list,
                                extracted=extracted)  # fmt: skip
        idx = chosen + start
        mask[idx] = True
        weights[idx] = w[key_index[chosen]]
        start = stop
    mask, weights = mask[cols.order], weights[cols.order]  # scored in time order
    # pairs at quintiles and, when the config balances some numerics' pairs at another cut (pair_bins),
    # with each numeric at its own cut too
    own = {
        n: e.bins // e.pair_div
        for n, e in zip(proc._names, proc._encoders, strict=True)
        if isinstance(e, NumericBinner)
    }
    cuts = [own] if set(own.values()) - {5} else []
    ours = evaluate(stream, mask, weights, window, cuts=cuts)
    if all(math.isnan(v) for v in ours.values()):  # no window held the 3 forwarded records a score needs
        raise FileFormatError(
            f"{path}: too few records to evaluate: no window of {window:g} s holds 3 forwarded records"
            f" ({n:,} records, {int(mask.sum()):,} forwarded at rate {reducer.rate:g})"
        )
    runs = [evaluate(stream, *random_selection(n, batch, reducer.rate, s), window, cuts=cuts) for s in range(SEEDS)]
    result = Evaluation(
        ours,
        {m: float(np.mean([r[m] for r in runs])) for m in ours},
        n,
        int(mask.sum()),
        dropped=cols.dropped,
        kept=cols.kept,
        grader_errors=cols.grader_errors,
        absent=cols.absent + cols.unusable.lines(proc.timestamps_replaced),
    )
    result.plots = _report(
        Path(report), stream, labels, mask, random_selection(n, batch, reducer.rate, 0)[0], result, path
    )
    return result


def _report(
    out: Path, stream: Stream, labels: dict[str, list[str]], ours: np.ndarray, theirs: np.ndarray,
    result: Evaluation, source: str | Path,
) -> bool:  # fmt: skip
    """Write index.html, ratios.json and a PNG per feature; without matplotlib, the page and
    ratios.json without the plots (returns False)."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        images = _plots(out, stream, labels, ours, theirs)
    except ModuleNotFoundError as e:
        if e.name != "matplotlib":  # not installed; a broken installation is still an error
            raise
        images = None
    shown = {m: f"{r:.2f}×" if math.isfinite(r) else "n/a" for m, r in result.ratios().items()}
    rows = "".join(
        f"<tr><td>{m}</td><td>{result.ours[m]:.5f}</td><td>{result.random[m]:.5f}</td><td>{r}</td></tr>"
        for m, r in shown.items()
    )
    if images is None:
        figures = f"<p>{html.escape(PLOTS_SKIPPED)}</p>"
    else:
        figures = "".join(f'<figure><img src="{html.escape(i)}" alt="{html.escape(i)}"></figure>' for i in images)
    filtered = f" {html.escape(result.filtered())}." if result.filtered() else ""
    (out / "index.html").write_text(
        f"""<!doctype html><meta charset="utf-8"><title>distilld evaluate: {html.escape(str(source))}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td,th{{padding:.2em .8em;text-align:right}}</style>
<h1>distilld next to random sampling</h1>
<p>{html.escape(str(source))}: {result.records:,} records, {result.selected:,} forwarded by distilld;
random sampling at the same rate, mean of {SEEDS} seeds. Errors are means over sliding windows;
ratio = random's error ÷ distilld's (higher is better).{filtered}</p>
<table><tr><th>metric</th><th>distilld</th><th>random</th><th>ratio</th></tr>{rows}</table>
<h2>Whole stream, distilld's and random's selections</h2>{figures}
""",
        encoding="utf-8",
    )
    ratios = {m: round(r, 6) if math.isfinite(r) else None for m, r in result.ratios().items()}
    (out / "ratios.json").write_text(json.dumps(ratios) + "\n", encoding="utf-8")
    return images is not None


def _plots(out: Path, stream: Stream, labels: dict[str, list[str]], ours: np.ndarray, theirs: np.ndarray) -> list[str]:
    """A PNG per feature in ``out``: their names (raises ModuleNotFoundError without matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = []
    for name in [*stream.categorical, *stream.numeric]:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        if name in stream.categorical:
            codes, k = stream.categorical[name], len(labels[name])
            x = np.arange(k)
            everything = np.ones(len(codes), dtype=bool)
            for i, (label, sel) in enumerate((("full stream", everything), ("distilld", ours), ("random", theirs))):
                shares = np.bincount(codes[sel], minlength=k) / max(int(sel.sum()), 1)
                ax.bar(x + (i - 1) * 0.27, shares, width=0.27, label=label)
            ax.set_xticks(x, [_short(label) for label in labels[name]], rotation=30, ha="right", fontsize=7)
            ax.set_ylabel("share")
        else:
            values = stream.numeric[name]
            grid = np.quantile(values, np.linspace(0, 1, 41))
            for label, sel in (
                ("full stream", np.ones(len(values), dtype=bool)),
                ("distilld", ours),
                ("random", theirs),
            ):
                v = np.sort(values[sel])
                ax.plot(grid, np.searchsorted(v, grid, side="right") / max(len(v), 1), label=label)
            ax.set_ylabel("cumulative share")
        ax.set_title(name)
        ax.legend(fontsize=7)
        fig.tight_layout()
        image = f"{name}.png"
        fig.savefig(out / image, dpi=90)
        plt.close(fig)
        images.append(image)
    return images


def _short(label: str, most: int = 24) -> str:
    """A tick label that leaves the plot room (CSS selectors, URLs): its start and an ellipsis."""
    return label if len(label) <= most else label[: most - 1] + "…"
