"""The Sphinx API reference builds with warnings as errors (``make docs``); README examples run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    out = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    library = (out / "library.html").read_text(encoding="utf-8")
    assert "DistilledProcessor" in library and "process_batch" in library
    assert "reduce_file" in (out / "daemon.html").read_text(encoding="utf-8")


def test_readme_build_graders_example_runs() -> None:
    """The README's build_graders example names only importable callables (no placeholder module)."""
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    after = readme.split("Graders can also come from a config list", 1)[1]
    code = after.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), scope)  # the README's own example
    graders = scope["graders"]
    assert isinstance(graders, dict) and len(graders) == 4
    record = {"person": {"age": 30, "gender": "male"}, "pageUrl": "https://example.org/"}
    assert graders["fields"].evaluate(record) == 2


def test_readme_processor_example_runs_as_printed(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's first Library example runs as it is printed: its own records and send, nothing the reader adds."""
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    after = readme.split("## Library", 1)[1]
    code = after.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict[str, object] = {"__name__": "readme"}
    exec(compile(code, "README.md", "exec"), scope)  # the README's own example, nothing added
    sent = scope["sent"]
    assert isinstance(sent, list) and len(sent) == 200 and sum(w for _, w in sent) == 2000
    stats = scope["processor"].get_current_stats()  # type: ignore[attr-defined]
    assert set(stats["drift"]) == {"age", "gender", "income"} and stats["keys_held"] == 3
    assert "200 of 2000 records sent, standing for 2000" in capsys.readouterr().out


@pytest.mark.kafka
def test_readme_quick_start_produce_snippet_fills_the_topic(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Quick start's produce.py, as printed but for the broker's address and the topic's name, puts every line
    of `distilld sample people -o people.ndjson` into the topic as a JSON record."""
    from confluent_kafka import Consumer, TopicPartition

    from distilld.cli import main

    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    code = readme.split("## Quick start", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert code.startswith("# produce.py") and '"localhost:9092"' in code and 'produce("people"' in code
    topic = f"people-{uuid.uuid4().hex[:8]}"
    code = code.replace('"localhost:9092"', repr(kafka_bootstrap)).replace('produce("people"', f'produce("{topic}"')
    monkeypatch.chdir(tmp_path)
    assert main(["sample", "people", "-o", "people.ndjson", "--records", "300"]) == 0
    exec(compile(code, "README.md", "exec"), {"__name__": "produce"})  # the README's own snippet
    assert "not delivered: 0" in capsys.readouterr().out
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": topic, "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(got) < 300 and time.monotonic() < deadline:
            got += [m.value() for m in consumer.consume(500, timeout=1) if m.error() is None]
    finally:
        consumer.close()
    lines = (tmp_path / "people.ndjson").read_bytes().splitlines()
    assert sorted(got) == sorted(lines) and set(json.loads(got[0])) >= {"gender", "country", "age", "income", "ts"}


def test_readme_files_section_commands_run_as_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Files section's reduce commands name files that exist (the quick start's people.csv, the shipped UserALE
    fixture) and no --config the reader has not got; they read events.csv and logs.ndjson with a mine.yaml."""
    import shlex

    from distilld.cli import main

    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Files:", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]
    assert len(commands) >= 2 and all(c[:2] == ["distilld", "reduce"] for c in commands)
    for name in ("config", "tests"):  # the repository's files, as from its root; outputs land in tmp_path
        (tmp_path / name).symlink_to(DOCS.parent / name)
    monkeypatch.chdir(tmp_path)
    assert main(["sample", "people", "-o", "people.csv", "--records", "2000"]) == 0  # the quick start's
    for command in commands:
        assert main([*command[1:], "-q"]) == 0, command
        output = command[command.index("-o") + 1]
        assert (tmp_path / output).stat().st_size > 0
