"""What a documentation review found served or printed unlike the README says."""

from __future__ import annotations

import os
import subprocess
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from distilld.daemon.endpoints import Endpoints

from .test_deployment import _healthcheck, _serving


def test_metrics_serve_no_created_series() -> None:
    """/metrics served a <name>_created series beside every counter and histogram, which README's list of
    metrics does not name: the endpoints turn them off."""
    registry = CollectorRegistry()
    Counter("distilld_review_records", "records", ["topic"], registry=registry).labels("a").inc()
    Histogram("distilld_review_seconds", "seconds", registry=registry).observe(0.1)
    endpoints = Endpoints("127.0.0.1", 0, registry, 60.0, lambda: (True, "ok")).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{endpoints.port}/metrics", timeout=5) as answer:
            body = answer.read().decode()
    finally:
        endpoints.stop()
    assert 'distilld_review_records_total{topic="a"} 1.0' in body and "distilld_review_seconds_count 1.0" in body
    assert "_created" not in body, body
    # only the daemon's: disable_created_metrics() turned them off for a program embedding it too
    own = CollectorRegistry()
    Counter("embedder_jobs", "jobs", registry=own).inc()
    assert b"embedder_jobs_created" in generate_latest(own)


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_the_image_healthcheck_follows_metrics_port_of_the_mounted_config(
    tmp_path: Path, status: int, healthy: bool
) -> None:
    """The HEALTHCHECK read the port from DISTILLD_METRICS__PORT only: a metrics.port set in the file mounted at
    /etc/distilld/distilld.yaml left it asking 9108, and the container unhealthy."""
    command = _healthcheck()
    assert "/etc/distilld/distilld.yaml" in command[-1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLD_")}
    with _serving(status) as port:
        mounted = tmp_path / "distilld.yaml"
        mounted.write_text(f"kafka: {{bootstrap_servers: 'b:9092'}}\nmetrics:\n  port: {port}\n")
        command[-1] = command[-1].replace("/etc/distilld/distilld.yaml", str(mounted))
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert (result.returncode == 0) is healthy, result.stderr
