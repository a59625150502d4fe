from __future__ import annotations

import subprocess
import sys

import distilld


def test_console_script_reports_its_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "distilld.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"distilld {distilld.__version__}"


def test_demo_runs_and_shows_distilld_next_to_random() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "distilld.cli", "demo", "--records", "20000", "--duration", "1", "--pace", "1e9"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "distilld drift" in out.stdout and "random drift" in out.stdout
    assert "in: 20,000 records" in out.stdout
