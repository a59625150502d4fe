"""Metrics, health and readiness of a running daemon (a separate process, a real broker)."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from distilld.broker import free_port

from .conftest import people_records, tv
from .kafka_tools import (
    DaemonProcess,
    create_topics,
    daemon_config,
    end_offsets,
    get,
    produce,
    read_all,
    samples,
    unique,
    value,
    wait_committed,
    wait_metrics,
)

pytestmark = pytest.mark.kafka

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
PARTITIONS = 2


@pytest.fixture(scope="module")
def running(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One daemon that has processed a known input to the end, serving its metrics."""
    tmp = tmp_path_factory.mktemp("observability")
    topic, group = unique("obs"), unique("g")
    create_topics(kafka_bootstrap, {topic: PARTITIONS, f"{topic}.out": PARTITIONS, f"{topic}.dlq": 1})
    records = people_records(6000, seed=11)
    for i, r in enumerate(records):
        if i % 50 == 0:
            r["gender"] = None  # missing
    values = [orjson.dumps(r) for r in records]
    bad = {7: b"nope", 300: b"[1]", 4000: b""}
    for i, v in bad.items():
        values[i] = v
    keys = [b"u%d" % (i % 5) for i in range(len(values))]
    sent = produce(kafka_bootstrap, topic, values, keys)
    port = free_port()
    config = daemon_config(
        kafka_bootstrap, topic, group, metrics={"port": port, "host": "127.0.0.1", "refresh_ms": 200}
    )
    daemon = DaemonProcess(tmp, config).start()
    try:
        wait_committed(kafka_bootstrap, group, topic, end_offsets(sent), PARTITIONS, daemon)
        wait_metrics(  # a gauge refresh after the last batch
            f"http://127.0.0.1:{port}/metrics",
            lambda m: (
                m.get(("distilld_window_records", (("kind", "received"),))) == len(values) - len(bad)
                and m.get(("distilld_window_records", (("kind", "sent"),)))
                == m.get(("distilld_records_produced_total", (("topic", f"{topic}.out"),)))
                and m.get(("distilld_keys", ())) == 5
                and {dict(labels).get("partition") for name, labels in m if name == "distilld_consumer_lag"}
                == {str(p) for p in range(PARTITIONS)}  # from librdkafka's statistics, every second
            ),
            "the windows holding every good record, a consumer lag for every partition",
            daemon,
        )
        yield {
            "url": f"http://127.0.0.1:{port}",
            "topic": topic,
            "values": values,
            "keys": keys,
            "bad": bad,
            "daemon": daemon,
            "tmp": tmp,
            "bootstrap": kafka_bootstrap,
        }
    finally:
        daemon.kill()


@needs_promtool
def test_exposition_passes_promtool_check_metrics(running: dict[str, Any]) -> None:
    status, text = get(running["url"] + "/metrics")
    assert status == 200
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_counters_match_what_went_through(running: dict[str, Any]) -> None:
    metrics = samples(get(running["url"] + "/metrics")[1])
    topic, values, bad = running["topic"], running["values"], running["bad"]
    good = len(values) - len(bad)
    assert value(metrics, "distilld_records_consumed_total", topic=topic) == len(values)
    assert value(metrics, "distilld_bytes_consumed_total", topic=topic) == sum(len(v) for v in values)
    assert value(metrics, "distilld_records_dlq_total", reason="not_json") == 1
    assert value(metrics, "distilld_records_dlq_total", reason="not_object") == 1
    assert value(metrics, "distilld_records_dlq_total", reason="empty") == 1
    assert value(metrics, "distilld_records_produced_total", topic=f"{topic}.dlq") == 3
    out = read_all(running["bootstrap"], f"{topic}.out", expect_at_least=1, idle_s=1)
    assert value(metrics, "distilld_records_produced_total", topic=f"{topic}.out") == len(out)
    assert value(metrics, "distilld_window_records", kind="received") == good
    assert value(metrics, "distilld_window_records", kind="sent") == len(out)
    assert value(metrics, "distilld_feature_missing_total", feature="gender") == len(
        [i for i in range(0, len(values), 50) if i not in bad]
    )
    assert value(metrics, "distilld_keys") == 5
    assert value(metrics, "distilld_assigned_partitions") == PARTITIONS
    assert value(metrics, "distilld_ready") == 1
    assert value(metrics, "distilld_build_info", version=__import__("distilld").__version__) == 1
    assert value(metrics, "distilld_batch_duration_seconds_count") >= 1
    lags = {labels: v for (name, labels), v in metrics.items() if name == "distilld_consumer_lag"}
    assert {dict(labels)["partition"] for labels in lags} == {str(p) for p in range(PARTITIONS)}
    assert all(v >= 0 for v in lags.values())


def test_drift_metric_agrees_with_drift_from_input_and_output(running: dict[str, Any]) -> None:
    """Per key: TV distance between the shares of gender among the input
    records and among the forwarded ones; mean over keys weighted by input
    size. Computed here from the topics, compared with the daemon's gauge."""
    metrics = samples(get(running["url"] + "/metrics")[1])
    received: dict[bytes, Counter[Any]] = defaultdict(Counter)
    for v, k in zip(running["values"], running["keys"], strict=True):
        try:
            rec = orjson.loads(v)
        except orjson.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            received[k][rec.get("gender")] += 1
    sent: dict[bytes, Counter[Any]] = defaultdict(Counter)
    for m in read_all(running["bootstrap"], f"{running['topic']}.out", expect_at_least=1, idle_s=1):
        sent[m.key()][orjson.loads(m.value()).get("gender")] += 1
    tvs, sizes = [], []
    for key, r in received.items():
        tvs.append(tv(r, sent[key]))
        sizes.append(sum(r.values()))
    expected = sum(t * n for t, n in zip(tvs, sizes, strict=True)) / sum(sizes)
    assert value(metrics, "distilld_proportion_drift", feature="gender") == pytest.approx(expected, abs=1e-9)
    assert value(metrics, "distilld_proportion_drift_max", feature="gender") == pytest.approx(max(tvs), abs=1e-9)
    assert expected < 0.02, "and it is small: the selection keeps the shares"
    # the output as a whole: every key's records together, every partition's
    output = tv(sum(received.values(), Counter[Any]()), sum(sent.values(), Counter[Any]()))
    assert value(metrics, "distilld_output_drift", feature="gender") == pytest.approx(output, abs=1e-9)
    assert output < 0.02


def test_health_is_ok_and_ready_once_assigned(running: dict[str, Any]) -> None:
    assert get(running["url"] + "/healthz") == (200, "ok\n")
    status, body = get(running["url"] + "/readyz")
    assert status == 200 and f"{PARTITIONS} partitions" in body
    assert get(running["url"] + "/nope")[0] == 404


def test_not_ready_without_a_broker_but_alive(tmp_path: Path) -> None:
    port = free_port()
    config = daemon_config(f"127.0.0.1:{free_port()}", "t", "g", metrics={"port": port, "host": "127.0.0.1"})
    daemon = DaemonProcess(tmp_path, config).start()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, body = get(f"http://127.0.0.1:{port}/readyz")
                if not body.startswith("starting: "):  # answered from the bind on, start-up saying so
                    break
            except urllib.error.URLError:
                pass
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.2)
        assert status == 503 and "no broker" in body
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200, "the loop turns: alive, just not ready"
        assert daemon.stop() == 0
    finally:
        daemon.kill()


CONFIG = Path(__file__).resolve().parent.parent / "config"
PROMETHEUS = shutil.which("prometheus")


def _prometheus_query(base: str, expr: str) -> dict[str, Any]:
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return orjson.loads(r.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as e:
        return orjson.loads(e.read())  # type: ignore[no-any-return]


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus server not installed (Debian package prometheus)")
def test_every_dashboard_and_alert_expression_runs_on_a_real_prometheus(running: dict[str, Any]) -> None:
    from .promql import alert_expressions, dashboard_expressions

    tmp: Path = running["tmp"]
    target = running["url"].removeprefix("http://")
    (tmp / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{CONFIG / 'prometheus' / 'alerts.yml'}']\n"
        f"scrape_configs: [{{job_name: distilld, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            str(PROMETHEUS),
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "prometheus.log").open("wb"),
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # ready, and a few scrapes in so that rate() has two points
            result = (
                _prometheus_query(base, "count_over_time(distilld_records_consumed_total[1m])")
                if (_ready(base))
                else {}
            )
            series = result.get("data", {}).get("result", [])
            if series and float(series[0]["value"][1]) >= 3:
                break
            assert time.monotonic() < deadline, (tmp / "prometheus.log").read_text()
            time.sleep(0.5)
        panels = dashboard_expressions(CONFIG / "grafana" / "distilld.json")
        expressions = panels + alert_expressions(CONFIG / "prometheus" / "alerts.yml")
        assert len(expressions) >= 15
        failed = {e: r.get("error") for e in expressions if (r := _prometheus_query(base, e))["status"] != "success"}
        assert not failed, failed
        # the panels for throughput, window size and drift show data (alert expressions may rightly be empty)
        for metric in ("distilld_records_consumed_total", "distilld_window_records", "distilld_proportion_drift"):
            using = [e for e in panels if metric in e]
            assert using, f"no dashboard panel uses {metric}"
            for e in using:
                assert _prometheus_query(base, e)["data"]["result"], f"no data for {e}"
    finally:
        server.terminate()
        server.wait(10)


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/-/ready", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError):
        return False
