"""The Sphinx API reference builds with warnings as errors (``make docs``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
