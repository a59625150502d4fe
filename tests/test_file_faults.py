"""``distilld reduce`` on hostile or unusual files: a clear error naming the file, record and reason,
exit 1, no traceback and no partial output; or output that keeps every value."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from fastavro import parse_schema, reader, writer

from distilld.cli import main

AGE = "reducer: {rate: 1}\nfeatures: [{name: age, type: numeric, field: age}]\n"
ROOT = Path(__file__).resolve().parents[1]


def _reduce(tmp: Path, name: str, content: bytes, out: str, *extra: str) -> int:
    (tmp / name).write_bytes(content)
    (tmp / "age.yaml").write_text(AGE)
    return main(["reduce", str(tmp / name), "-o", str(tmp / out), "-c", str(tmp / "age.yaml"), "-q", *extra])


def _refused(tmp: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes, out: str, reason: str) -> None:
    assert _reduce(tmp, name, content, out) == 1
    err = capsys.readouterr().err
    assert f"{tmp / name}: {reason}" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp.iterdir()) == sorted([name, "age.yaml"])  # no partial output


def _avro(records: list[Any], schema: Any, **options: Any) -> bytes:
    options.setdefault("sync_marker", b"S" * 16)
    buf = io.BytesIO()
    writer(buf, parse_schema(schema), records, **options)
    return buf.getvalue()


def _deep_list(depth: int) -> bytes:
    """An Avro file of one linked-list record ``depth`` nodes deep, encoded by hand (fastavro's
    writer recurses as deep)."""
    fields = [{"name": "age", "type": "long"}, {"name": "next", "type": ["null", "Node"]}]
    schema = {"type": "record", "name": "Node", "fields": fields}
    data = _avro([{"age": 1, "next": None}], schema, sync_marker=b"S" * 16)
    datum = b"\x02\x02" * depth + b"\x02\x00"  # age 1, union branch 1 (a Node) ... age 1, branch 0 (null)
    head = data[: data.rindex(b"\x02\x04\x02\x00" + b"S" * 16)]  # before the block: count 1, size 2, datum
    size = len(datum)
    varint = bytearray()
    z = size << 1
    while z > 0x7F:
        varint.append(z & 0x7F | 0x80)
        z >>= 7
    varint.append(z)
    return head + b"\x02" + bytes(varint) + datum + b"S" * 16


def test_a_json_integer_of_more_than_4300_digits_is_an_error_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ijson's C parser, reading again with exact numbers, crashed the process (SIGSEGV)."""
    content = b'[{"age": 1, "id": 2}, {"age": 1, "id": ' + b"9" * 4301 + b"}]"
    _refused(tmp_path, capsys, "in.json", content, "out.ndjson", "record 2 of the array: a number of more than 4,300")


def test_a_json_array_nested_deeper_than_ndjson_allows_is_refused_in_little_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ijson keeps a prefix per level: 50,000 levels (100 KB) took ~6 GB. Brackets in strings do not count."""
    deep = 50_000
    content = b'[{"age": 1, "s": "[[\\"[[{"}, {"age": 1, "n": ' + b"[" * deep + b"]" * deep + b"}]"
    _refused(tmp_path, capsys, "in.json", content, "out.ndjson", "record 2 of the array: nested deeper than 1024")
    ok = b'[{"age": 1, "s": "[[\\"[[{", "n": ' + b"[" * 200 + b"]" * 200 + b"}]"
    assert _reduce(tmp_path, "ok.json", ok, "ok.ndjson") == 0
    assert orjson.loads((tmp_path / "ok.ndjson").read_bytes())["s"] == '[["[[{'


def test_a_json_array_is_read_from_a_pipe(tmp_path: Path) -> None:
    """`reduce /dev/stdin --format json` failed: "File or stream is not seekable"."""
    (tmp_path / "age.yaml").write_text(AGE)
    content = b'\xef\xbb\xbf[{"age": 1, "id": 123456789012345678901234567890}, {"age": 2, "x": 1.5}]'
    done = subprocess.run(
        [sys.executable, "-m", "distilld", "reduce", "/dev/stdin", "--format", "json", "-o", "-", "-c", "age.yaml"],
        input=content, capture_output=True, cwd=tmp_path, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        {"age": 1, "id": 123456789012345678901234567890, "distilld_weight": 1.0},
        {"age": 2, "x": 1.5, "distilld_weight": 1.0},
    ]


@pytest.mark.parametrize("depth", [20_000, 1_000])
def test_a_deep_recursive_avro_record_is_an_error_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], depth: int
) -> None:
    """fastavro's compiled reader crashed (SIGSEGV) 10,000 levels down; 1,000 levels made a
    RecursionError traceback writing NDJSON."""
    _refused(tmp_path, capsys, "in.avro", _deep_list(depth), "out.ndjson", "Avro record 1: nested deeper than")


def test_a_shallow_recursive_avro_record_is_read_and_refused_as_avro_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Avro output added a required distilld_weight to the type, which the nested records then lacked: a traceback."""
    assert _reduce(tmp_path, "in.avro", _deep_list(2), "out.ndjson") == 0
    record = orjson.loads((tmp_path / "out.ndjson").read_bytes())
    assert record == {"age": 1, "next": {"age": 1, "next": {"age": 1, "next": None}}, "distilld_weight": 1.0}
    (tmp_path / "out.ndjson").unlink()
    _refused(tmp_path, capsys, "in.avro", _deep_list(2), "out.avro", "its Avro record type 'Node' contains itself")


@pytest.mark.parametrize("out", ["out.ndjson", "out.json", "out.avro"])
def test_a_csv_distilld_weight_column_is_refused_for_every_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], out: str
) -> None:
    """NDJSON and JSON output overwrote the column's values with the new weights."""
    content = b"age,distilld_weight\n30,5\n40,7\n"
    _refused(tmp_path, capsys, "in.csv", content, out, "already has a distilld_weight column")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"age": 1, "id": 123456789012345678901234567890, "x": 1e400}\n', "line 1, column 55: not JSON: number is"),
        (
            b'{"age": 1, "id": 123456789012345678901234567890}\n{"age": 2, "x": 1e400}\n',
            "line 2, column 17: not JSON: number is",
        ),
        (b'{"age": 1, "s": "\\ud800x", "id": 12345678901234567890123}\n', "line 1, column 18: not JSON: no low"),
    ],
)
def test_ndjson_numbers_past_a_double_and_lone_surrogates_are_refused_beside_a_long_integer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, reason: str
) -> None:
    """A batch with an integer past 64 bits is read by the standard library: 1e400 became Infinity
    (invalid JSON) or null, and a lone surrogate a UnicodeEncodeError traceback."""
    _refused(tmp_path, capsys, "in.ndjson", content, "out.ndjson", reason)


def test_a_json_array_number_past_a_double_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    content = b'[{"age": 1, "id": 123456789012345678901234567890}, {"age": 1, "x": ' + b"9" * 400 + b".5}]"
    _refused(tmp_path, capsys, "in.json", content, "out.ndjson", "record 2 of the array: a number is out of range")


def test_avro_nan_and_infinities_are_written_to_json_as_avro_json_spells_them(tmp_path: Path) -> None:
    """orjson wrote them as null."""
    fields = [{"name": "age", "type": "long"}, {"name": "x", "type": {"type": "array", "items": "double"}}]
    schema = {"type": "record", "name": "R", "fields": fields}
    content = _avro([{"age": 1, "x": [float("nan"), float("inf"), -float("inf"), 1.5]}], schema)
    for out in ("out.ndjson", "out.json"):
        assert _reduce(tmp_path, "in.avro", content, out) == 0
        text = (tmp_path / out).read_text()
        assert '"x":["NaN","Infinity","-Infinity",1.5]' in text and "null" not in text
    assert _reduce(tmp_path, "in.avro", content, "out.csv") == 0
    assert (tmp_path / "out.csv").read_text().splitlines()[1] == '1,"[""NaN"",""Infinity"",""-Infinity"",1.5]",1'


def test_deep_json_that_cannot_be_written_names_the_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A RecursionError traceback."""
    nested = b'{"age": 1, "n": ' + b"[" * 1000 + b"]" * 1000 + b"}\n"
    _refused(tmp_path, capsys, "in.ndjson", b'{"age": 2}\n' + nested, "out.ndjson", "record 2: cannot be written as")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (_avro([1, 2], "long"), 'its Avro schema is "long", not a record'),
        (
            _avro([{"a": 1}], {"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]}).replace(
                b'"type": "long"', b'"tipe": "long"'
            ),
            "not an Avro container file: SchemaParseException",
        ),
    ],
    ids=["long", "bad schema"],
)
def test_avro_of_non_records_or_a_bad_schema_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, reason: str
) -> None:
    for out in ("out.ndjson", "out.csv", "out.avro"):
        _refused(tmp_path, capsys, "in.avro", content, out, reason)


def test_avro_output_keeps_the_codec_and_the_user_metadata(tmp_path: Path) -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "age", "type": "long"}]}
    content = _avro([{"age": 1}, {"age": 2}], schema, codec="deflate", metadata={"origin": "sensor 7"})
    assert _reduce(tmp_path, "in.avro", content, "out.avro") == 0
    with (tmp_path / "out.avro").open("rb") as f:
        avro = reader(f)
        assert avro.codec == "deflate" and avro.metadata["origin"] == "sensor 7"
        assert [r["age"] for r in avro] == [1, 2]


@pytest.mark.parametrize("codec", ["snappy", "zstandard", "lz4"])
def test_snappy_zstandard_and_lz4_avro_files_are_reduced_in_their_codec(tmp_path: Path, codec: str) -> None:
    """fastavro reads and writes these codecs only with cramjam, backports.zstd and lz4, which distilld did not
    depend on: reduce stopped with "the Avro codec snappy is not supported here"."""
    schema = {"type": "record", "name": "R", "fields": [{"name": "age", "type": "long"}]}
    content = _avro([{"age": n} for n in range(5)], schema, codec=codec)
    assert _reduce(tmp_path, "in.avro", content, "out.avro") == 0
    with (tmp_path / "out.avro").open("rb") as f:
        avro = reader(f)
        assert avro.codec == codec
        assert list(avro) == [{"age": n, "distilld_weight": 1.0} for n in range(5)]
    assert _reduce(tmp_path, "in.avro", content, "out.ndjson") == 0
    ages = [orjson.loads(line)["age"] for line in (tmp_path / "out.ndjson").read_bytes().splitlines()]
    assert ages == [0, 1, 2, 3, 4]


def test_an_avro_codec_without_its_library_is_named_with_the_library(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where fastavro's codec libraries were left out of an install, the error names the one to install."""
    import fastavro.read
    from fastavro._read_common import missing_codec_lib  # what fastavro reads a codec with when its library is not here

    schema = {"type": "record", "name": "R", "fields": [{"name": "age", "type": "long"}]}
    content = _avro([{"age": 1}], schema, codec="snappy")
    monkeypatch.setitem(fastavro.read.BLOCK_READERS, "snappy", missing_codec_lib("snappy", "cramjam"))
    assert _reduce(tmp_path, "in.avro", content, "out.ndjson") == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'in.avro'}: the Avro codec snappy is not supported here" in err and "cramjam" in err, err
    assert "Traceback" not in err and not (tmp_path / "out.ndjson").exists()


def test_a_replaced_output_keeps_its_permissions(tmp_path: Path) -> None:
    """The partial file was renamed over it with the umask's mode (0640 became 0644)."""
    out = tmp_path / "out.ndjson"
    out.write_text("old\n")
    out.chmod(0o640)
    assert _reduce(tmp_path, "in.ndjson", b'{"age": 1}\n', "out.ndjson") == 0
    assert out.stat().st_mode & 0o7777 == 0o640
    assert orjson.loads(out.read_bytes())["age"] == 1


def test_an_unexpected_error_is_one_line_and_leaves_no_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault of ours the input finds is a line naming the file, exit 1 and no partial output, not a traceback."""
    from distilld.files import formats

    def broken(*args: Any) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(formats.Writer, "close", broken)
    _refused(tmp_path, capsys, "in.ndjson", b'{"age": 1}\n', "out.ndjson", "internal error: KeyError: 'boom' (please")


def test_a_full_disk_names_the_output_and_a_closed_stdout_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Python's "[Errno 28] No space left on device" named no file; `-o -` with stdout closed was a traceback."""
    assert _reduce(tmp_path, "in.ndjson", b'{"age": 1}\n', "../../../../../../../../dev/full") == 1
    assert capsys.readouterr().err.endswith("/dev/full: No space left on device\n")
    done = subprocess.run(
        [sys.executable, "-m", "distilld", "reduce", "in.ndjson", "-o", "-", "-c", "age.yaml", "-q"],
        stdout=subprocess.DEVNULL, capture_output=False, stderr=subprocess.PIPE, cwd=tmp_path, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, close_fds=True, preexec_fn=lambda: os.close(1),
    )  # fmt: skip
    assert (done.returncode, done.stderr.decode()) == (1, "distilld reduce: -: standard output is closed\n")


def test_dash_is_standard_input(tmp_path: Path) -> None:
    (tmp_path / "age.yaml").write_text(AGE)
    done = subprocess.run(
        [sys.executable, "-m", "distilld", "reduce", "-", "--format", "ndjson", "-o", "-", "-c", "age.yaml", "-q"],
        input=b'{"age": 1}\n', capture_output=True, cwd=tmp_path, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, b'{"age":1,"distilld_weight":1}\n'), done.stderr


def _people(n: int, start: float) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "user": f"u{i % 3}",
            "age": (i * 7919) % 90,
            "gender": ("f", "m", "x")[(i * 31) % 7 % 3],
            "ts": start + i,
        }
        for i in range(n)
    ]


PEOPLE = """reducer: {rate: 0.1, key: user, time: ts, window_seconds: 3000}
features:
  - {name: age, type: numeric, field: age}
  - {name: gender, type: categorical, field: gender, categories: [f, m, x]}
"""


def test_evaluate_scores_the_run_reduce_makes(tmp_path: Path) -> None:
    """evaluate ran the engine over the records sorted by time in batches of 1,000; reduce runs it in file
    order in batches of 10,000: on a file not in time order, evaluate scored another selection."""
    from distilld.evaluation import Stream, evaluate
    from distilld.files.evaluate import evaluate_file
    from distilld.settings import EngineSettings, load_model

    half = 12_000
    records = _people(half, 0.0) + [{**r, "id": r["id"] + half} for r in _people(half, 0.0)]  # two sorted halves
    src, config = tmp_path / "in.ndjson", tmp_path / "people.yaml"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    config.write_text(PEOPLE)
    assert main(["reduce", str(src), "-o", str(tmp_path / "out.ndjson"), "-c", str(config), "-q"]) == 0
    out = {
        r["id"]: r["distilld_weight"] for r in map(orjson.loads, (tmp_path / "out.ndjson").read_bytes().splitlines())
    }
    settings = load_model(EngineSettings, str(config))
    assert isinstance(settings, EngineSettings)
    result = evaluate_file(src, settings, tmp_path / "report")
    in_time = sorted(records, key=lambda r: r["ts"])  # (stable: the order evaluate scores in)
    stream = Stream(
        {"gender": np.array([["f", "m", "x"].index(r["gender"]) for r in in_time])},
        {"age": np.array([r["age"] for r in in_time], dtype=np.float64)},
        np.array([r["ts"] for r in in_time], dtype=np.float64),
    )
    mask = np.array([r["id"] in out for r in in_time])
    weights = np.array([out.get(r["id"], 1.0) for r in in_time])
    assert result.selected == len(out)
    assert result.ours == pytest.approx(evaluate(stream, mask, weights, settings.reducer.window_seconds), nan_ok=True)


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_text_event_times_are_reported_with_the_field_a_value_and_the_total(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    """reduce said "10000 of 10000 records had no usable event time ... e.g. nan": the first batch, no field,
    no value; evaluate said nothing (and took every time as 0)."""
    times = [f"2026-01-01T00:{i // 60:02}:{i % 60:02}Z" for i in range(250)]
    rows = [{"age": i % 90, "gender": "f", "user": "u", "ts": t} for i, t in enumerate(times)]
    src, config = tmp_path / f"in.{fmt}", tmp_path / "people.yaml"
    if fmt == "csv":
        src.write_text("age,gender,user,ts\n" + "".join(f"{r['age']},f,u,{r['ts']}\n" for r in rows))
    else:
        src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    config.write_text(PEOPLE.replace("rate: 0.1", "rate: 0.5"))
    line = "warning: reducer.time 'ts': 250 of 250 records had no usable event time, e.g. '2026-01-01T00:00:00Z': not a"
    assert main(["reduce", str(src), "-o", str(tmp_path / "o.ndjson"), "-c", str(config), "-q", "--batch", "100"]) == 0
    err = capsys.readouterr().err
    assert f"distilld reduce: {line}" in err and "e.g. nan" not in err and err.count("usable event time") == 1, err
    assert main(["evaluate", str(src), "-c", str(config), "--report", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert f"distilld evaluate: {line}" in err, err


def test_csv_cr_line_endings_are_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Python's advice was to "open the file in universal-newline mode"."""
    _refused(tmp_path, capsys, "in.csv", b"age,g\r1,a\r2,b\r", "out.csv", "line 1: a carriage return (CR) outside")


def test_csv_blank_lines_before_the_header_are_skipped(tmp_path: Path) -> None:
    """The blank line was the header: "line 2: 2 fields, the header has 0"."""
    assert _reduce(tmp_path, "in.csv", b"\n\nage,g\n1,a\n2,b\n", "out.csv") == 0
    assert (tmp_path / "out.csv").read_text().splitlines() == ["age,g,distilld_weight", "1,a,1", "2,b,1"]


def test_avro_union_values_are_written_back_to_their_branch(tmp_path: Path) -> None:
    """A record in branch ex.B came back as ex.A (the first that fits), an enum in ["string", enum] as a string."""
    city = {"type": "record", "name": "A", "fields": [{"name": "city", "type": "string"}]}
    fields = [
        {"name": "age", "type": "long"},
        {"name": "addr", "type": ["null", city, {**city, "name": "B"}]},
        {"name": "e", "type": ["string", {"type": "enum", "name": "G", "symbols": ["a", "b"]}]},
        {"name": "fx", "type": ["bytes", {"type": "fixed", "name": "F", "size": 2}]},
    ]
    schema = {"type": "record", "name": "P", "namespace": "ex", "fields": fields}
    records = [
        {"age": 1, "addr": ("ex.B", {"city": "x"}), "e": ("ex.G", "a"), "fx": ("ex.F", b"ab")},
        {"age": 2, "addr": ("ex.A", {"city": "y"}), "e": "b", "fx": b"cd"},
    ]
    (tmp_path / "city.yaml").write_text(
        "reducer: {rate: 1}\nfeatures: [{name: city, type: categorical, field: addr.city, categories: [x, y]}]\n"
    )
    (tmp_path / "in.avro").write_bytes(_avro(records, schema))
    args = ["reduce", str(tmp_path / "in.avro"), "-c", str(tmp_path / "city.yaml"), "-q"]
    assert main([*args, "-o", str(tmp_path / "out.avro")]) == 0
    with (tmp_path / "out.avro").open("rb") as f:
        out = list(reader(f, return_named_type=True))
    assert [(r["addr"], r["e"], r["fx"]) for r in out] == [
        (("ex.B", {"city": "x"}), ("ex.G", "a"), ("ex.F", b"ab")),
        (("ex.A", {"city": "y"}), "b", b"cd"),
    ]
    assert main([*args, "-o", str(tmp_path / "out.ndjson")]) == 0  # JSON output as before: no branch names
    assert orjson.loads((tmp_path / "out.ndjson").read_bytes().splitlines()[0])["addr"] == {"city": "x"}


@pytest.mark.parametrize("escape", [b"\\ud800x", b"\\udc00"])
def test_a_json_array_lone_surrogate_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], escape: bytes
) -> None:
    """ijson's C parser made a lone high surrogate "?" (the value changed without a word) and a lone low one
    a UnicodeDecodeError; a pair is a character."""
    content = b'[{"age": 1, "s": "\\ud83d\\ude00"}, {"age": 2, "s": "' + escape + b'"}]'
    reason = f"record 2 of the array: a lone surrogate escape ({escape[:6].decode()}), not UTF-8"
    _refused(tmp_path, capsys, "in.json", content, "out.ndjson", reason)


def test_a_record_that_cannot_be_written_to_csv_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The error named the batch's first forwarded record (or was a RecursionError traceback)."""
    nested = b'{"age": 3, "n": ' + b"[" * 1000 + b"]" * 1000 + b"}\n"
    content = b'{"age": 1, "n": 1}\n{"age": 2, "n": 2}\n' + nested
    _refused(tmp_path, capsys, "in.ndjson", content, "out.csv", "record 3: cannot be written as csv: nested too deep")


@pytest.mark.parametrize("recursive", [False, True])
def test_avro_is_read_from_a_pipe_by_either_reader(tmp_path: Path, recursive: bool) -> None:
    """A recursive schema is found in the header and the file read again by the Python reader: a pipe's
    header is kept for that (and dropped when the compiled reader goes on)."""
    (tmp_path / "age.yaml").write_text(AGE)
    schema = {"type": "record", "name": "R", "fields": [{"name": "age", "type": "long"}]}
    content = _deep_list(3) if recursive else _avro([{"age": i} for i in range(5000)], schema)
    done = subprocess.run(
        [sys.executable, "-m", "distilld", "reduce", "-", "--format", "avro", "-o", "-", "--output-format", "ndjson",
         "-c", "age.yaml", "-q"],
        input=content, capture_output=True, cwd=tmp_path, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = [orjson.loads(line) for line in done.stdout.splitlines()]
    if recursive:
        assert out[0]["next"]["next"]["next"] == {"age": 1, "next": None}
    else:
        assert [r["age"] for r in out] == list(range(5000))
