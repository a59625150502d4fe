"""``distilld reduce``: files in and out in every format, streamed, with the weight added."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from fastavro import parse_schema, reader, writer

from distilld.cli import main
from distilld.files.formats import FileFormatError, format_of

from .conftest import PEOPLE_FEATURES, people_records

N = 5000


def _flat(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"],
        "gender": r["gender"],
        "age": r["age"],
        "income": r["money"]["income"],
        "user": f"u{r['id'] % 4}",
    }


RECORDS = [_flat(r) for r in people_records(N, seed=12)]
SCHEMA = {
    "type": "record",
    "name": "P",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "gender", "type": "string"},
        {"name": "age", "type": "double"},
        {"name": "income", "type": "double"},
        {"name": "user", "type": "string"},
    ],
}


def _config(tmp: Path, **reducer: Any) -> Path:
    features = [dict(f) for f in PEOPLE_FEATURES]
    features[2] = {"name": "income", "type": "numeric"}
    path = tmp / "config.yaml"
    # the daemon's file: its kafka section is there and not needed
    config = {
        "kafka": {"bootstrap_servers": "nowhere:9092"},
        "features": features,
        "reducer": {"key": "user", **reducer},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _write(path: Path, fmt: str) -> None:
    if fmt == "csv":
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, list(RECORDS[0]))
            w.writeheader()
            w.writerows(RECORDS)
    elif fmt == "ndjson":
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in RECORDS))
    elif fmt == "json":
        path.write_text(json.dumps(RECORDS, indent=1))
    else:
        with path.open("wb") as f:
            writer(f, parse_schema(SCHEMA), RECORDS)


def _read(path: Path, fmt: str) -> list[dict[str, Any]]:
    if fmt == "csv":
        with path.open(newline="") as f:
            return list(csv.DictReader(f))
    if fmt == "ndjson":
        return [orjson.loads(line) for line in path.read_bytes().splitlines()]
    if fmt == "json":
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    with path.open("rb") as f:
        return list(reader(f))


@pytest.mark.parametrize(
    ("fmt_in", "fmt_out"),
    [("csv", "csv"), ("ndjson", "ndjson"), ("json", "json"), ("avro", "avro"), ("csv", "ndjson"), ("json", "csv")],
)
def test_reduce_forwards_a_weighted_tenth_per_key(tmp_path: Path, fmt_in: str, fmt_out: str) -> None:
    src, out = tmp_path / f"in.{fmt_in}", tmp_path / f"out.{fmt_out}"
    _write(src, fmt_in)
    assert main(["reduce", str(src), "-o", str(out), "--config", str(_config(tmp_path)), "--batch", "700"]) == 0
    rows = _read(out, fmt_out)
    by_id = {r["id"]: r for r in RECORDS}
    seen = Counter()
    for row in rows:
        weight = float(row.pop("distilld_weight"))
        original = by_id[int(row["id"])]
        assert {k: str(v) for k, v in row.items()} == {k: str(original[k]) for k in row}, "the record as it was read"
        assert weight == pytest.approx(10.0), "a forwarded record stands for 1 / rate records"
        seen[original["user"]] += 1
    ids = [int(r["id"]) for r in rows]
    assert ids == sorted(ids), "in file order"
    for user, n in Counter(r["user"] for r in RECORDS).items():
        assert abs(seen[user] - 0.1 * n) <= 1, (user, seen[user], n)


def test_reduce_reads_csv_numbers_and_event_time(tmp_path: Path) -> None:
    timed = [dict(r, ts=1_700_000_000 + i) for i, r in enumerate(RECORDS)]
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    with src.open("w", newline="") as f:
        w = csv.DictWriter(f, list(timed[0]))
        w.writeheader()
        w.writerows(timed)
    config = _config(tmp_path, time="ts", window_seconds=600)
    assert main(["reduce", str(src), "-o", str(out), "-c", str(config), "-q"]) == 0
    ages = [float(r["age"]) for r in _read(out, "csv")]
    assert len(ages) >= N // 10 - 4 and min(ages) < 30 < max(ages), "ages read as numbers, binned, spread"


def test_reduce_reports_bad_files_and_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(b'{"id": 1}\nnot json\n')
    assert main(["reduce", str(bad), "-o", str(tmp_path / "o.ndjson"), "-c", str(config)]) == 1
    assert "bad.ndjson: line 2, column 1: not JSON: invalid literal" in capsys.readouterr().err
    assert main(["reduce", str(tmp_path / "x.parquet"), "-o", str(tmp_path / "o.csv"), "-c", str(config)]) == 1
    assert "cannot tell the format" in capsys.readouterr().err
    kafka_key = _config(tmp_path, key="kafka_key")
    src = tmp_path / "in.ndjson"
    _write(src, "ndjson")
    assert main(["reduce", str(src), "-o", str(tmp_path / "o.ndjson"), "-c", str(kafka_key)]) == 1
    assert "needs Kafka" in capsys.readouterr().err
    with pytest.raises(FileFormatError):
        format_of("file.xlsx")


@pytest.mark.parametrize("command", ["reduce", "evaluate"])
def test_kafka_key_and_timestamp_are_refused_naming_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """reducer.key kafka_key alone was refused as "reducer.key kafka_key and reducer.time
    kafka_timestamp need Kafka; a file has a field path", naming a time setting the file did not have."""
    src = tmp_path / "in.ndjson"
    _write(src, "ndjson")
    output = ["-o", str(tmp_path / "o.ndjson"), "-q"] if command == "reduce" else ["--report", str(tmp_path / "r")]
    assert main([command, str(src), *output, "-c", str(_config(tmp_path, key="kafka_key"))]) == 1
    err = capsys.readouterr().err
    assert "  reducer.key: kafka_key needs Kafka; a file's records are keyed by a field path, or none\n" in err
    assert "reducer.time" not in err
    assert main([command, str(src), *output, "-c", str(_config(tmp_path, time="kafka_timestamp"))]) == 1
    err = capsys.readouterr().err
    assert (
        "  reducer.time: kafka_timestamp needs Kafka; a file's records are timed by a field path, or processing" in err
    )
    assert "reducer.key" not in err


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("mid.ndjson", b'{"id": 1}\n{"id": 2,\n{"id": 3}\n', "line 2, column 10: not JSON: unexpected end of data"),
        ("list.ndjson", b'{"id": 1}\n\n[1, 2]\n', "line 3: not a JSON object: list"),
        ("latin.ndjson", b'{"id": 1}\n{"id": "caf\xe9"}\n', "line 2, column 12: not UTF-8"),
        # a number of 20 digits or more: the batch is read by the standard library (as an integer), as strictly
        ("long-latin.ndjson", b'{"id": 123456789012345678901}\n{"id": "caf\xe9"}\n', "line 2, column 12: not UTF-8"),
        ("long-nan.ndjson", b'{"id": 123456789012345678901}\n{"id": NaN}\n', "line 2, column 8: not JSON"),
        ("long.csv", b"id,age\n1,2\n3,4,5\n", "line 3: 3 fields, the header has 2"),
        ("short.csv", b"id,age\n1,2\n3\n", "line 3: 1 fields, the header has 2"),
        ("latin.csv", b"id,gender\n1,male\n2,m\xe9le\n", "line 3: not UTF-8"),
        ("object.json", b'{"records": [{"id": 1}]}', "not a JSON array of records"),
        ("items.json", b'[{"id": 1}, 7]', "record 2 of the array: not a JSON object: int"),
        ("cut.json", b'[{"id": 1}, {"id": 2', "record 2 of the array: not JSON"),
        ("empty.json", b"", "empty"),
    ],
)
def test_bad_input_names_the_file_and_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes, reason: str
) -> None:
    source = tmp_path / name
    source.write_bytes(content)
    out = tmp_path / "out.ndjson"
    assert main(["reduce", str(source), "-o", str(out), "-c", str(_config(tmp_path)), "-q"]) == 1
    assert f"{source}: {reason}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "config.yaml"])  # no partial output


def test_truncated_avro_is_an_error_and_the_input_is_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(_config(tmp_path))
    src = tmp_path / "in.avro"
    _write(src, "avro")
    cut = tmp_path / "cut.avro"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size * 2 // 3])
    assert main(["reduce", str(cut), "-o", str(tmp_path / "o.avro"), "-c", config, "-q", "--batch", "100"]) == 1
    assert "cut.avro: Avro record" in capsys.readouterr().err
    assert not (tmp_path / "o.avro").exists()
    before = src.read_bytes()
    assert main(["reduce", str(src), "-o", str(src), "-c", config, "-q"]) == 1
    assert "would overwrite the input" in capsys.readouterr().err
    assert src.read_bytes() == before
    typo = tmp_path / "typo.yaml"
    typo.write_text(Path(config).read_text() + "filter:\n  drop: []\n")
    assert main(["reduce", str(src), "-o", str(tmp_path / "o.avro"), "-c", str(typo), "-q"]) == 1
    assert "filter: Extra inputs are not permitted" in capsys.readouterr().err


def test_evaluate_writes_the_table_plots_and_an_offline_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.ndjson"
    _write(src, "ndjson")
    report = tmp_path / "report"
    config = _config(tmp_path, window_seconds=1000)
    assert main(["evaluate", str(src), "--report", f"{report}/", "-c", str(config)]) == 0
    table, err = capsys.readouterr()
    assert f"report: {report / 'index.html'}\n" in err, err  # one slash, whatever --report ends with
    assert "category_tv" in table and "ratio" in table
    ratios = json.loads((report / "ratios.json").read_text())
    assert set(ratios) == {"category_tv", "pair_tv", "ks", "corr", "count"}
    assert ratios["category_tv"] > 1.5 and ratios["count"] > 1.5, ratios
    page = (report / "index.html").read_text()
    for feature in ("gender", "age", "income"):
        assert (report / f"{feature}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="{feature}.png"' in page
    assert "http" not in page, "opens offline: nothing fetched"


def test_csv_columns_path_forwards_what_the_record_path_does(tmp_path: Path) -> None:
    """CSV rows cut into columns (no dicts) give the same output as whole records: a
    filter that matches nothing forces the record path."""
    src = tmp_path / "in.csv"
    _write(src, "csv")
    config = _config(tmp_path)
    with_filter = tmp_path / "filtered.yaml"
    data = yaml.safe_load(config.read_text())
    data["filters"] = {"drop": [{"name": "none", "when": {"field": "no_such_column", "exists": True}}]}
    with_filter.write_text(yaml.safe_dump(data))
    columns, records = tmp_path / "columns.csv", tmp_path / "records.csv"
    assert main(["reduce", str(src), "-o", str(columns), "-c", str(config), "--batch", "900", "-q"]) == 0
    assert main(["reduce", str(src), "-o", str(records), "-c", str(with_filter), "--batch", "900", "-q"]) == 0
    assert columns.read_bytes() == records.read_bytes()
    assert len(_read(columns, "csv")) >= N // 10 - 4


def test_conversions_keep_every_field_and_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """CSV → NDJSON and Avro keep a numeric column's cell as read unless JSON would write the number the
    same way; JSON → CSV refuses a record with fields the header lacks instead of dropping them; a reduced
    file is not reduced again."""
    config = str(_config(tmp_path, rate=1.0))
    src = tmp_path / "in.csv"
    src.write_text(
        "id,gender,age,income,user\n1,male,thirty,n/a,u\n2,female,41,5.5,u\n3,male,12345678901234567890,1e3,u\n"
        "4,male,007,inf,u\n5,female,1_000,1e400,u\n"
    )
    out = tmp_path / "out.ndjson"
    assert main(["reduce", str(src), "-o", str(out), "-c", config, "-q"]) == 0
    rows = _read(out, "ndjson")
    # a number as JSON writes one is one (41 an int, not 41.0); any other spelling is kept as read
    assert [(r["age"], r["income"]) for r in rows] == [
        ("thirty", "n/a"),
        (41, 5.5),
        ("12345678901234567890", 1000.0),
        ("007", "inf"),
        ("1_000", "1e400"),
    ]
    assert type(rows[1]["age"]) is int and type(rows[2]["income"]) is float
    avro = tmp_path / "out.avro"
    assert main(["reduce", str(src), "-o", str(avro), "-c", config, "-q"]) == 0
    assert [(r["age"], r["income"]) for r in _read(avro, "avro")] == [(r["age"], r["income"]) for r in rows]
    mixed = tmp_path / "mixed.ndjson"
    mixed.write_bytes(b'{"id": 1, "user": "u"}\n{"id": 2, "user": "u", "extra": [1]}\n')
    assert main(["reduce", str(mixed), "-o", str(tmp_path / "o.csv"), "-c", config, "-q"]) == 1
    assert "lacks: extra" in capsys.readouterr().err
    assert main(["reduce", str(out), "-o", str(tmp_path / "again.ndjson"), "-c", config, "-q"]) == 1
    assert "already have distilld_weight" in capsys.readouterr().err


def test_a_csv_cell_longer_than_128_kib_is_read_and_copied(tmp_path: Path) -> None:
    """Python's csv module refuses fields over 128 KiB by default: valid CSV stopped the run."""
    config = str(_config(tmp_path, rate=1.0))
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    blob = "x" * 300_000
    src.write_text(f"id,user,note\n1,u,{blob}\n2,u,short\n")
    assert main(["reduce", str(src), "-o", str(out), "-c", config, "-q"]) == 0
    assert [r["note"] for r in _read(out, "csv")] == [blob, "short"]


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_a_utf8_byte_order_mark_is_skipped(tmp_path: Path, fmt: str) -> None:
    """Windows tools write one; CSV skipped it, NDJSON and JSON arrays stopped at it."""
    src, out = tmp_path / f"in.{fmt}", tmp_path / f"out.{fmt}"
    _write(src, fmt)
    src.write_bytes(b"\xef\xbb\xbf" + src.read_bytes())
    config = str(_config(tmp_path))
    assert main(["reduce", str(src), "-o", str(out), "-c", config, "-q"]) == 0
    assert len(_read(out, fmt)) == pytest.approx(N / 10, abs=4)


def test_json_booleans_are_written_to_csv_as_json_spells_them(tmp_path: Path) -> None:
    """A categorical's booleans are labels 'true'/'false' (UserALE's userAction): written as
    Python's 'True' they read back from the CSV as *other*."""
    config = str(_config(tmp_path, rate=1.0))
    src = tmp_path / "in.ndjson"
    src.write_bytes(b'{"id": 1, "user": "u", "bot": true}\n{"id": 2, "user": "u", "bot": false}\n')
    out = tmp_path / "out.csv"
    assert main(["reduce", str(src), "-o", str(out), "-c", config, "-q"]) == 0
    assert [r["bot"] for r in _read(out, "csv")] == ["true", "false"]


def test_evaluate_without_matplotlib_writes_the_table_ratios_and_a_page_without_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ModuleNotFoundError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    src = tmp_path / "in.ndjson"
    _write(src, "ndjson")
    report = tmp_path / "report"
    config = _config(tmp_path, window_seconds=1000)
    assert main(["evaluate", str(src), "--report", str(report), "-c", str(config)]) == 0
    out, err = capsys.readouterr()
    assert "category_tv" in out and "ratio" in out, "the table"
    assert "plots skipped: matplotlib is not installed — pip install 'distilld[evaluate]'" in err
    assert "Traceback" not in err
    ratios = json.loads((report / "ratios.json").read_text())
    assert set(ratios) == {"category_tv", "pair_tv", "ks", "corr", "count"}
    page = (report / "index.html").read_text()
    assert "category_tv" in page and "plots skipped" in page and "<img" not in page
    assert not list(report.glob("*.png"))


def _filtered_config(tmp: Path, filters: dict[str, Any], features: list[dict[str, Any]] | None = None) -> Path:
    """A config whose features leave income out (a CSV's income column stays text) and with ``filters``."""
    path = tmp / "filtered.yaml"
    config = {
        "features": features or [dict(f) for f in PEOPLE_FEATURES[:2]],
        "reducer": {"key": "user"},
        "filters": filters,
    }
    path.write_text(yaml.safe_dump(config))
    return path


RICH = {"keep_always": [{"name": "rich", "when": {"field": "income", "gt": 70000}}]}


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_numeric_filters_compare_csv_cells_as_numbers(tmp_path: Path, fmt: str) -> None:
    """``income > 70000`` keeps every such record, in a CSV (income is not a feature, so its
    cells are text) as in NDJSON (numbers)."""
    src, out = tmp_path / f"in.{fmt}", tmp_path / "out.csv"
    _write(src, fmt)
    assert main(["reduce", str(src), "-o", str(out), "-c", str(_filtered_config(tmp_path, RICH)), "-q"]) == 0
    rows = _read(out, "csv")
    rich = {r["id"] for r in RECORDS if r["income"] > 70000}
    assert len(rich) >= 20
    kept = {int(r["id"]) for r in rows if float(r["income"]) > 70000}
    assert kept == rich, "every record over the threshold kept"
    assert all(float(r["distilld_weight"]) == 1 for r in rows if int(r["id"]) in rich)
    assert len(rows) >= len(rich) + 0.1 * (N - len(rich)) - 8, "the rest reduced as before"


def test_csv_numeric_filter_leaves_text_tests_and_the_output_alone(tmp_path: Path) -> None:
    """The numbers are for gt/gte/lt/lte only: a regex on the same column still sees the text,
    a cell that is not a number matches no comparison, and the rows are written as read."""
    src, out = tmp_path / "in.csv", tmp_path / "out.ndjson"
    src.write_text("id,gender,age,income,user\n1,male,30,80000,u\n2,male,30,1e5,u\n3,male,30,n/a,u\n4,male,30,500,u\n")
    filters = {
        "drop": [{"name": "five", "when": {"field": "income", "regex": "^5"}}],
        "keep_always": [{"name": "rich", "when": {"field": "income", "gte": 80000}}],
    }
    config = _filtered_config(tmp_path, filters)
    assert main(["reduce", str(src), "-o", str(out), "-c", str(config), "-q"]) == 0
    rows = _read(out, "ndjson")
    kept = [(r["id"], r["income"]) for r in rows if r["distilld_weight"] == 1]
    assert kept[:2] == [("1", "80000"), ("2", "1e5")], rows
    assert "4" not in {r["id"] for r in rows}, "dropped by the regex on the text"


GRADER = """
def band(record):
    if record["age"] > 60:
        raise ValueError(f"too old: {record['age']:.0f}")
    return "young" if record["age"] < 40 else "middle"
"""


def test_a_custom_grader_that_raises_is_counted_and_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bandgrader.py").write_text(GRADER)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "bandgrader", raising=False)
    features = [
        {"name": "gender", "type": "categorical", "categories": ["female", "male", "other"]},
        {"name": "band", "type": "custom", "function": "bandgrader:band", "value_type": "open_categorical"},
    ]
    config = _filtered_config(tmp_path, {}, features)
    src = tmp_path / "in.ndjson"
    _write(src, "ndjson")
    old = sum(r["age"] > 60 for r in RECORDS)
    assert old > 10
    assert main(["reduce", str(src), "-o", str(tmp_path / "out.ndjson"), "-c", str(config), "-q"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {old} records: custom grader 'band' raised: ValueError: too old: " in err, err
    assert main(["evaluate", str(src), "--report", str(tmp_path / "report"), "-c", str(config)]) == 0
    assert f"warning: {old} records: custom grader 'band' raised: ValueError: too old: " in capsys.readouterr().err


def test_evaluate_applies_the_filters_reduce_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.csv"
    _write(src, "csv")
    filters = {"drop": [{"name": "other", "when": {"field": "gender", "equals": "other"}}], **RICH}
    config = _filtered_config(tmp_path, filters)
    assert main(["evaluate", str(src), "--report", str(tmp_path / "report"), "-c", str(config)]) == 0
    other = sum(r["gender"] == "other" for r in RECORDS)
    rich = sum(r["income"] > 70000 and r["gender"] != "other" for r in RECORDS)
    err = capsys.readouterr().err
    assert f"filters: {other} records dropped and {rich} kept always, left out; {N - other - rich:,} records" in err
    assert "filters:" in (tmp_path / "report" / "index.html").read_text()


def test_evaluate_measures_pairs_at_the_cut_the_config_balances_them_at_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pairs are scored at quintiles; with a numeric at another ``pair_bins``, also with each numeric
    cut at its own ``pair_bins`` (the cells the engine balances)."""
    src = tmp_path / "in.ndjson"
    _write(src, "ndjson")
    config = _config(tmp_path, window_seconds=1000)
    data = yaml.safe_load(config.read_text())
    data["features"][2] = {"name": "income", "type": "numeric", "pair_bins": 4}
    config.write_text(yaml.safe_dump(data))
    report = tmp_path / "report"
    assert main(["evaluate", str(src), "--report", str(report), "-c", str(config)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "pair_tv@pair_bins" in table[-1]
    # the columns line up: the longer name pushed its row's numbers three places right of the others'
    assert len({len(line) for line in table}) == 1, table
    ratios = json.loads((report / "ratios.json").read_text())
    assert set(ratios) == {"category_tv", "pair_tv", "pair_tv@pair_bins", "ks", "corr", "count"}
    assert ratios["pair_tv@pair_bins"] > 1.0, ratios


def test_evaluate_of_too_few_records_says_so_instead_of_a_table_of_nan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.ndjson"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in RECORDS[:20]))
    report = tmp_path / "report"
    assert main(["evaluate", str(src), "--report", str(report), "-c", str(_config(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert "too few records to evaluate: no window of" in err and "(20 records, 2 forwarded at rate 0.1)" in err, err
    assert not report.exists()


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_integers_past_64_bits_are_read_whole_and_exact(tmp_path: Path, fmt: str) -> None:
    """A JSON array's C parser, reading floats as floats, refused an integer past 63 bits ('integer
    overflow'): a uint64 id or hash; NDJSON's orjson read one past 64 bits as a float."""
    config = str(_config(tmp_path, rate=1.0))
    records = [{"id": i, "user": "u", "income": 1000.5 + i} for i in range(3000)]
    records[2500] |= {"hash": 2**63 + 1, "big": 2**64 + 1}  # the writer's orjson refuses the second too
    src, out = tmp_path / f"in.{fmt}", tmp_path / "out.ndjson"
    src.write_text(json.dumps(records) if fmt == "json" else "".join(json.dumps(r) + "\n" for r in records))
    assert main(["reduce", str(src), "-o", str(out), "-c", config, "-q"]) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in got] == list(range(3000))
    assert (got[2500]["hash"], got[2500]["big"], got[2999]["income"]) == (2**63 + 1, 2**64 + 1, 3999.5)
    assert all(type(r["income"]) is float for r in got)


def test_an_output_that_is_a_folder_is_refused_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-o DIR` reduced the whole file, then failed to rename its output onto the folder with
    "[Errno 21] Is a directory: '.../.out.partial' -> ...", leaving that partial file behind."""
    src = tmp_path / "in.csv"
    _write(src, "csv")
    folder = tmp_path / "out"
    folder.mkdir()
    assert main(["reduce", str(src), "-o", str(folder), "-c", str(_config(tmp_path)), "-q"]) == 1
    assert f"{folder}: is a folder; give a file name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "in.csv", "out"]
    assert not list(folder.iterdir())


@pytest.mark.parametrize("command", ["reduce", "evaluate"])
def test_a_missing_input_is_named_without_python_errno(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """A missing input said "distilld reduce: [Errno 2] No such file or directory: 'nope.csv'"."""
    missing = tmp_path / "nope.csv"
    output = ["-o", str(tmp_path / "out.csv"), "-q"] if command == "reduce" else ["--report", str(tmp_path / "r")]
    assert main([command, str(missing), *output, "-c", str(_config(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert err == f"distilld {command}: {missing}: No such file or directory\n", err


def test_evaluate_refuses_a_report_that_is_a_file_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--report FILE` read and scored the whole file, then said only "[Errno 17] File exists: 'FILE'"."""
    src = tmp_path / "in.ndjson"
    _write(src, "ndjson")
    report = tmp_path / "report.html"
    report.write_text("mine")
    assert main(["evaluate", str(src), "--report", str(report), "-c", str(_config(tmp_path))]) == 1
    out, err = capsys.readouterr()
    assert f"{report}: not a folder (--report is the folder the report is written to)" in err, err
    assert out == "" and report.read_text() == "mine"


def test_avro_bytes_and_timestamps_are_written_to_csv_as_to_json(tmp_path: Path) -> None:
    """Avro's bytes and timestamp values reached a CSV cell as Python's repr ("b'\\x85'") and
    str ("2026-01-01 00:00:04+00:00"), where the NDJSON and JSON outputs write Avro's JSON encoding
    of the bytes and an ISO 8601 time."""
    import datetime

    schema = {
        "type": "record",
        "name": "E",
        "fields": [
            {"name": "user", "type": "string"},
            {"name": "raw", "type": "bytes"},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    }
    at = datetime.datetime(2026, 1, 1, 0, 0, 4, tzinfo=datetime.UTC)
    src = tmp_path / "in.avro"
    with src.open("wb") as f:
        writer(f, parse_schema(schema), [{"user": "u", "raw": b"\x85A", "at": at}])
    config = str(_config(tmp_path, rate=1.0))
    for fmt in ("csv", "ndjson"):
        assert main(["reduce", str(src), "-o", str(tmp_path / f"out.{fmt}"), "-c", config, "-q"]) == 0
    (cells,) = _read(tmp_path / "out.csv", "csv")
    (record,) = _read(tmp_path / "out.ndjson", "ndjson")
    assert record["raw"] == "\x85A" and record["at"] == "2026-01-01T00:00:04+00:00"
    assert (cells["raw"], cells["at"]) == (record["raw"], record["at"])


@pytest.mark.parametrize("fmt", ["ndjson", "json", "avro"])
def test_csv_columns_that_no_record_can_hold_are_refused_not_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    """A header naming a column twice gave records that kept one of them (NDJSON, JSON) and an Avro
    schema with the field twice, which Avro forbids; so is a column name that is not an Avro name."""
    config = str(_config(tmp_path, rate=1.0))
    twice = tmp_path / "twice.csv"
    twice.write_text("id,user,note,note\n1,u,a,b\n2,u,c,d\n")
    out = tmp_path / f"out.{fmt}"
    assert main(["reduce", str(twice), "-o", str(out), "-c", config, "-q"]) == 1
    assert f"{twice}: line 1: column 'note' is in the header twice" in capsys.readouterr().err
    assert not out.exists()
    assert main(["reduce", str(twice), "-o", str(tmp_path / "out.csv"), "-c", config, "-q"]) == 0
    assert (tmp_path / "out.csv").read_text().splitlines()[1] == "1,u,a,b,1", "CSV keeps both"
    if fmt == "avro":
        spaced = tmp_path / "spaced.csv"
        spaced.write_text("id,user,first name\n1,u,a\n")
        assert main(["reduce", str(spaced), "-o", str(out), "-c", config, "-q"]) == 1
        assert f"{spaced}: line 1: column 'first name' is not an Avro field name" in capsys.readouterr().err
        assert not out.exists()


def test_a_csv_quote_left_open_is_an_error_not_the_rest_of_the_file_in_one_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A truncated CSV whose last quoted field is not closed was read as valid: that cell held
    every line after it, and the run exited 0 with those rows missing."""
    config = str(_config(tmp_path, rate=1.0))
    src = tmp_path / "cut.csv"
    src.write_text('id,user,note\n1,u,"ok"\n2,u,"cut\n3,u,x\n4,u,y\n')
    out = tmp_path / "out.ndjson"
    assert main(["reduce", str(src), "-o", str(out), "-c", config, "-q"]) == 1
    assert f"{src}: line 3: a quoted field is not closed before the end of the file" in capsys.readouterr().err
    assert not out.exists()
    bad = tmp_path / "bad.csv"
    bad.write_text('id,user,note\n1,u,"a"b\n')
    assert main(["reduce", str(bad), "-o", str(out), "-c", config, "-q"]) == 1
    assert f"{bad}: line 2: ',' expected after '\"'" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_avro_output_of_json_records_is_refused_naming_the_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    """JSON records have no schema to write Avro with: the error named neither file nor format."""
    src = tmp_path / f"in.{fmt}"
    _write(src, fmt)
    out = tmp_path / "out.avro"
    assert main(["reduce", str(src), "-o", str(out), "-c", str(_config(tmp_path)), "-q"]) == 1
    err = capsys.readouterr().err
    assert f"{src}: {fmt} records have no Avro schema: Avro output needs an Avro or CSV input" in err, err
    assert not out.exists()


def test_evaluate_plots_long_category_labels_with_room_for_the_bars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UserALE targets are CSS selectors up to ~100 characters: whole as tick labels they took the
    figure, the bars squeezed to a sliver (or matplotlib warned "Tight layout not applied")."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    heights: dict[str, float] = {}
    save = Figure.savefig

    def measure(fig: Figure, path: Any, **kwargs: Any) -> None:
        heights[Path(path).stem] = fig.axes[0].get_position().height
        save(fig, path, **kwargs)

    monkeypatch.setattr(Figure, "savefig", measure)
    targets = [f"a#tab-{i}.UnderlineNav-item no-wrap js-responsive-underlinenav-item js-selected" for i in range(24)]
    src = tmp_path / "in.ndjson"
    src.write_bytes(b"".join(orjson.dumps({"target": targets[i % 24], "n": i % 7}) + b"\n" for i in range(600)))
    config = tmp_path / "c.yaml"
    config.write_text(
        "features:\n  - {name: target, type: open_categorical}\n  - {name: n, type: numeric}\n"
        "reducer: {rate: 0.2, window_seconds: 300}\n"
    )
    assert main(["evaluate", str(src), "--report", str(tmp_path / "r"), "-c", str(config)]) == 0
    assert heights["target"] > 0.4, heights  # the bars keep most of the figure, as the numeric's plot does
    assert heights["n"] > 0.4, heights


def test_csv_weights_keep_every_digit() -> None:
    """CSV weights were written with 6 significant digits (3.33333 at rate 0.3), so the weighted
    counts of a CSV output were off by ~1e-6 of the count; NDJSON, JSON and Avro kept them whole."""
    from distilld.datapoint import weight_text as _weight

    assert float(_weight(1 / 0.3)) == 1 / 0.3
    assert _weight(10.0) == "10" and _weight(1.0) == "1"


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_a_weight_reads_the_same_in_every_output_format(tmp_path: Path, rate: float) -> None:
    """NDJSON and JSON wrote a whole weight as 10.0 where CSV wrote 10: one record's weight read differently by
    format. Each text format now writes the same shortest exact text, and Avro's double is that number."""
    src = tmp_path / "in.avro"
    _write(src, "avro")
    config = str(_config(tmp_path, rate=rate))
    for fmt in ("csv", "ndjson", "json", "avro"):
        assert main(["reduce", str(src), "-o", str(tmp_path / f"out.{fmt}"), "-c", config, "-q"]) == 0
    with (tmp_path / "out.csv").open(newline="") as f:
        texts = [row[-1] for row in csv.reader(f)][1:]
    after_key = re.compile(r'"distilld_weight":([^,}\]]*)\}')  # the number as written, before orjson reads it
    assert after_key.findall((tmp_path / "out.ndjson").read_text()) == texts
    assert after_key.findall((tmp_path / "out.json").read_text()) == texts
    assert [r["distilld_weight"] for r in _read(tmp_path / "out.avro", "avro")] == [float(t) for t in texts]
    assert [r["distilld_weight"] for r in _read(tmp_path / "out.ndjson", "ndjson")] == [float(t) for t in texts]
    assert all(not t.endswith(".0") and repr(float(t)).removesuffix(".0") == t for t in texts), set(texts)
    if rate == 0.1:
        assert set(texts) == {"10"}, set(texts)
    else:
        assert any("." in t for t in texts), set(texts)  # fractional weights, every digit kept


def _one_group(tmp: Path, records: int = 3) -> tuple[Path, Path]:
    """An NDJSON input of ``records`` and a config that forwards them all."""
    src = tmp / "in.ndjson"
    src.write_text("".join(f'{{"id": {i}, "g": "a"}}\n' for i in range(records)))
    config = tmp / "one.yaml"
    config.write_text("reducer: {rate: 1}\nfeatures: [{name: g, type: categorical, field: g, categories: [a]}]\n")
    return src, config


def test_a_symlinked_output_is_written_to_its_target_and_stays_a_link(tmp_path: Path) -> None:
    """`-o link` wrote `.link.partial` and renamed it onto the link: the link became a regular file
    and the file it pointed to kept its old content."""
    src, config = _one_group(tmp_path)
    (tmp_path / "data").mkdir()
    real = tmp_path / "data" / "real.ndjson"
    real.write_text("old\n")
    link = tmp_path / "link.ndjson"
    link.symlink_to(real)
    assert main(["reduce", str(src), "-o", str(link), "-c", str(config), "-q"]) == 0
    assert link.is_symlink() and link.readlink() == real
    assert [r["id"] for r in _read(real, "ndjson")] == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "in.ndjson", "link.ndjson", "one.yaml"]
    assert [p.name for p in real.parent.iterdir()] == ["real.ndjson"], "no partial left"


def test_a_fifo_output_is_written_through_and_stays_a_fifo(tmp_path: Path) -> None:
    """`-o FIFO` wrote a regular `.FIFO.partial` and renamed it onto the FIFO: its reader got
    nothing, and the FIFO was gone."""
    import stat

    src, config = _one_group(tmp_path)
    fifo = tmp_path / "out.ndjson"
    os.mkfifo(fifo)
    read = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so that opening for writing does not wait
    try:
        assert main(["reduce", str(src), "-o", str(fifo), "-c", str(config), "-q"]) == 0
        data = os.read(read, 1 << 16)
    except BlockingIOError:
        data = b""
    finally:
        os.close(read)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert [orjson.loads(line)["id"] for line in data.splitlines()] == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ndjson", "one.yaml", "out.ndjson"]


@pytest.mark.parametrize("output", ["-", "stdout-link"])
def test_dash_and_a_device_as_output_write_to_standard_output(tmp_path: Path, output: str) -> None:
    """`-o -` wrote a file named "-"; `-o /dev/stdout` (here a link to it, so that no version of
    the code can replace the real one) renamed a partial file onto the device's path."""
    src, config = _one_group(tmp_path)
    if output != "-":
        (tmp_path / output).symlink_to("/dev/stdout")
    done = subprocess.run(
        [sys.executable, "-m", "distilld", "reduce", str(src), "-o", output, "-c", str(config), "-q"],
        capture_output=True, cwd=tmp_path, timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [orjson.loads(line)["id"] for line in done.stdout.splitlines()] == [0, 1, 2]
    assert b"3 rows read, 3 forwarded" in done.stderr
    expected = ["in.ndjson", "one.yaml"] + ([] if output == "-" else [output])
    assert sorted(p.name for p in tmp_path.iterdir()) == expected
    if output != "-":
        assert (tmp_path / output).is_symlink()


@pytest.mark.parametrize("run", ["reduce", "reduce with a filter", "evaluate"])
def test_a_csv_column_is_a_number_to_numeric_features_and_text_to_the_rest_in_every_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run: str
) -> None:
    """A column read by a numeric feature was a float in the whole record: a categorical feature on it
    saw "200.0" (not the category "200") in the first batch, and in every batch with a filter, where
    later batches cut into columns gave it "200"; `equals: "404"` matched no cell of it."""
    from distilld.processor import DistilledProcessor

    src = tmp_path / "s.csv"
    rows = 25_000  # three batches of evaluate's (and reduce's) 10,000
    src.write_text("status,ms\n" + "".join(f"{(200, 404, 500)[i % 3]},{i % 997}\n" for i in range(rows)))
    features = [
        {"name": "status", "type": "numeric", "field": "status"},
        {"name": "status_cat", "type": "categorical", "field": "status", "categories": ["200", "404", "500"]},
        {"name": "ms", "type": "numeric", "field": "ms"},
    ]
    drop = [{"name": "not_found", "when": {"field": "status", "equals": "404"}}]
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"features": features, "filters": {"drop": drop if "filter" in run else []}}))
    seen: list[list[list[Any]]] = []
    select = DistilledProcessor.select

    def spy(self: DistilledProcessor, *args: Any, extracted: list[list[Any]] | None = None) -> Any:
        assert extracted is not None
        seen.append(extracted)
        return select(self, *args, extracted=extracted)

    monkeypatch.setattr(DistilledProcessor, "select", spy)
    if run == "evaluate":
        assert main(["evaluate", str(src), "-c", str(config), "--report", str(tmp_path / "r")]) == 0
    else:
        assert main(["reduce", str(src), "-o", str(tmp_path / "o.csv"), "-c", str(config)]) == 0
    assert len(seen) == 3
    expected = {"200", "500"} if "filter" in run else {"200", "404", "500"}
    for status, status_cat, _ in seen:
        assert set(map(type, status)) == {float} and set(status_cat) == expected


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_integers_at_and_past_the_64_bit_edges_are_exact(tmp_path: Path, fmt: str) -> None:
    """NDJSON read an integer below -2**63 of 19 digits (-9999999999999999999) as a float, -1e+19:
    the standard library took over only from 20 digits, but orjson is exact from -2**63 to 2**64 - 1."""
    edges = [-(2**63) - 1, -9999999999999999999, -(2**63), 2**63 - 1, 9999999999999999999, 2**64 - 1, 2**64]
    src, config = tmp_path / f"in.{fmt}", tmp_path / "one.yaml"
    config.write_text("reducer: {rate: 1}\nfeatures: [{name: g, type: categorical, field: g, categories: [a]}]\n")
    records = [{"g": "a", "id": n} for n in edges]
    src.write_text(json.dumps(records) if fmt == "json" else "".join(json.dumps(r) + "\n" for r in records))
    for out in ("out.ndjson", "out.json", "out.csv"):
        assert main(["reduce", str(src), "-o", str(tmp_path / out), "-c", str(config), "-q", "--batch", "1"]) == 0
    lines = (tmp_path / "out.ndjson").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == edges  # the standard library: orjson is the suspect
    assert [r["id"] for r in json.loads((tmp_path / "out.json").read_text())] == edges
    assert [r["id"] for r in _read(tmp_path / "out.csv", "csv")] == [str(n) for n in edges]


@pytest.mark.parametrize("command", ["reduce", "evaluate"])
def test_a_field_no_record_has_is_warned_of_naming_close_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """`field: stauts` on a CSV whose header has `status` exited 0 without a word, every value
    counted as missing; so did a field that no NDJSON record has, and the key."""
    config = tmp_path / "typo.yaml"
    config.write_text(
        "reducer: {key: usr}\nfeatures:\n"
        "  - {name: status, type: categorical, field: stauts, categories: ['200', '404']}\n"
        "  - {name: ms, type: numeric, field: ms}\n  - {name: uid, type: open_categorical, field: user.id}\n"
    )
    rows = [(("200", "404")[i % 2], i % 97, f"u{i % 5}") for i in range(3000)]
    csv_in, ndjson_in = tmp_path / "in.csv", tmp_path / "in.ndjson"
    csv_in.write_text("status,ms,user.id\n" + "".join(f"{s},{ms},{u}\n" for s, ms, u in rows))
    ndjson_in.write_text("".join(json.dumps({"status": s, "ms": ms, "user": {"id": u}}) + "\n" for s, ms, u in rows))
    for src in (csv_in, ndjson_in):
        output = ["-o", str(tmp_path / "o.csv"), "-q"] if command == "reduce" else ["--report", str(tmp_path / "r")]
        assert main([command, str(src), *output, "-c", str(config)]) == 0
        warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
        say = f"distilld {command}: warning: "
        if src == csv_in:
            assert warnings == [
                f"{say}feature 'status': no column 'stauts' in the header (close: 'status');"
                " every value counted as missing",
                f"{say}feature 'uid': no column 'user.id' in the header (a dot steps into a nested field:"
                " a column whose name has one is read quoted, '\"user.id\"'); every value counted as missing",
                f"{say}reducer.key: no column 'usr' in the header; every record in one window",
            ]
        else:
            assert warnings == [
                f"{say}feature 'status': none of the 3,000 records read has 'stauts'; every value counted as missing",
                f"{say}reducer.key: none of the 3,000 records read has 'usr'; every record in one window",
            ]


def test_dev_stdout_redirected_to_a_file_is_written_where_the_shell_opened_it(tmp_path: Path) -> None:
    """`reduce … -o /dev/stdout >> log` resolved /dev/stdout to the regular file `log`, wrote a partial
    next to it and renamed it onto `log`: what `>>` kept there was lost."""
    src, config = _one_group(tmp_path)
    (tmp_path / "stdout-link").symlink_to("/dev/stdout")  # not the real one: no version of the code can replace it
    log = tmp_path / "log.ndjson"
    log.write_text('{"id": -1}\n')
    inode = log.stat().st_ino
    with log.open("a") as stdout:
        done = subprocess.run(
            [sys.executable, "-m", "distilld", "reduce", str(src), "-o", "stdout-link", "-c", str(config), "-q"],
            stdout=stdout, stderr=subprocess.PIPE, cwd=tmp_path, timeout=120,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [r["id"] for r in _read(log, "ndjson")] == [-1, 0, 1, 2] and log.stat().st_ino == inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ndjson", "log.ndjson", "one.yaml", "stdout-link"]


def test_an_output_that_would_land_on_the_input_or_on_another_descriptors_file_is_refused(tmp_path: Path) -> None:
    """`-o - >> in.ndjson` read its own output back, appending to the input until the weights stopped it;
    `-o /dev/stderr 2>> log` renamed the output onto `log` (review). Both are refused, the files untouched."""
    src, config = _one_group(tmp_path)
    before = src.read_bytes()
    (tmp_path / "stderr-link").symlink_to("/dev/stderr")  # not the real one
    log = tmp_path / "log.txt"
    log.write_text("earlier\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    reduce = [sys.executable, "-m", "distilld", "reduce", str(src), "-c", str(config), "-q", "-o"]
    with src.open("ab") as stdout:
        done = subprocess.run([*reduce, "-"], stdout=stdout, stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    assert done.returncode == 1 and "would overwrite the input" in done.stderr, done.stderr
    assert src.read_bytes() == before
    with log.open("a") as stderr:
        done = subprocess.run(
            [*reduce, "stderr-link"], stdout=subprocess.PIPE, stderr=stderr, cwd=tmp_path, env=env, timeout=120
        )
    assert done.returncode == 1 and done.stdout == b""
    assert log.read_text().startswith("earlier\n") and "another descriptor holds open" in log.read_text()
    assert (tmp_path / "stderr-link").is_symlink()


@pytest.mark.parametrize("indent", [None, 1])
def test_a_json_array_read_as_ndjson_names_the_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], indent: int | None
) -> None:
    """--format ndjson on a JSON array said only 'line 1, column 2: not JSON: unexpected end of data' (or 'not a
    JSON object: list'); the reverse case names --format ndjson."""
    array = tmp_path / "array.json"
    array.write_text(json.dumps(RECORDS[:5], indent=indent))
    args = [
        "reduce",
        str(array),
        "--format",
        "ndjson",
        "-o",
        str(tmp_path / "out.ndjson"),
        "-c",
        str(_config(tmp_path)),
    ]
    assert main(args) == 1
    assert "line 1" in (err := capsys.readouterr().err) and "; a JSON array of records is --format json" in err, err
    lines = tmp_path / "lines.ndjson"  # a later line that is an array is no array file: no hint
    lines.write_text(json.dumps(RECORDS[0]) + "\n[1]\n")
    assert main(["reduce", str(lines), "-o", str(tmp_path / "out.ndjson"), "-c", str(_config(tmp_path))]) == 1
    assert "line 2: not a JSON object: list\n" in capsys.readouterr().err


def test_the_engines_warnings_during_reduce_say_whose_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A time field no record has: the engine's own warning came out bare ('2000 of 2000 records had no usable
    event time ...') next to reduce's prefixed one."""
    data = tmp_path / "people.ndjson"
    _write(data, "ndjson")
    config = _config(tmp_path, time="no_such_time")
    assert main(["reduce", str(data), "-o", str(tmp_path / "out.ndjson"), "-c", str(config), "-q"]) == 0
    err = capsys.readouterr().err
    assert "records had no usable event time" not in err, err  # the engine's, held back: reduce's says it
    assert "distilld reduce: warning: reducer.time: none of the" in err
    assert all(line.startswith("distilld reduce: ") or " rows read, " in line for line in err.splitlines()), err


@pytest.mark.parametrize("fast", [True, False])
def test_a_csv_column_whose_name_has_a_dot_is_read_quoted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fast: bool
) -> None:
    """`field: '"http.latency"'` reads the CSV column `http.latency` (a quoted step is a key as written), but the
    CSV code took the column names from the path's text: a run warned "no column" and the numeric feature read
    the column as text, every value missing, and a quoted time column had no times. The file reduces as the same
    file with plain names does (``fast``: with no filter, the CSV rows are cut into columns)."""
    rows = [(f"{i * 0.25}", f"{(i * 37) % 101}.5", "ab"[i % 7 == 0]) for i in range(3000)]
    filters = "" if fast else "filters: {drop: [{name: zz, when: {field: kind, equals: zz}}]}\n"
    for name, latency, ts in (("dotted", '"http.latency"', '"t.s"'), ("plain", "latency", "ts")):
        (tmp_path / f"{name}.csv").write_text(
            f"{ts.strip(chr(34))},{latency.strip(chr(34))},kind\n" + "".join(f"{t},{ms},{k}\n" for t, ms, k in rows)
        )
        (tmp_path / f"{name}.yaml").write_text(
            f"reducer: {{rate: 0.1, window_seconds: 60, time: '{ts}'}}\n{filters}features:\n"
            f"  - {{name: latency, type: numeric, field: '{latency}'}}\n"
            "  - {name: kind, type: categorical, field: kind, categories: [a, b]}\n"
        )
        out = tmp_path / f"{name}.out.csv"
        assert (
            main(["reduce", str(tmp_path / f"{name}.csv"), "-o", str(out), "-q", "-c", str(tmp_path / f"{name}.yaml")])
            == 0
        )
        assert "warning" not in capsys.readouterr().err
    dotted, plain = (list(csv.reader((tmp_path / f"{n}.out.csv").open())) for n in ("dotted", "plain"))
    assert dotted[0] == ["t.s", "http.latency", "kind", "distilld_weight"] and dotted[1:] == plain[1:]
