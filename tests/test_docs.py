"""The Sphinx API reference builds with warnings as errors (``make docs``); README examples run."""

from __future__ import annotations

import subprocess
import sys
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
