from __future__ import annotations

import re
import subprocess
import sys

import pytest

import distilld


def test_console_script_reports_its_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "distilld.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"distilld {distilld.__version__}"


@pytest.mark.kafka
def test_demo_runs_the_daemon_on_the_embedded_broker_next_to_random() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "distilld.cli", "demo", "--duration", "6", "--rate", "5000"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "distilld drift" in out.stdout and "random drift" in out.stdout
    for feature in ("gender", "country", "device", "plan", "channel", "age (quintile)"):
        assert f"\n{feature} " in out.stdout
    assert "distilld run exited with code 0" in out.stdout
    mean = re.search(r"\nmean +([\d.]+) +([\d.]+)", out.stdout)
    assert mean and float(mean.group(1)) < float(mean.group(2))  # distilld drifts less than random
    dead = re.search(r"\(([\d,]+) dead letters\)", out.stdout)
    assert dead and int(dead.group(1).replace(",", "")) > 0
