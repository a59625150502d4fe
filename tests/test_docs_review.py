"""What a documentation review found served or printed unlike the README says."""

from __future__ import annotations

import urllib.request

from prometheus_client import CollectorRegistry, Counter, Histogram

from distilld.daemon.endpoints import Endpoints


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
