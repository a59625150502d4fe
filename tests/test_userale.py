"""The UserALE.js preset: field alternatives, built-in transforms, and the daemon on real and generated logs."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from distilld.broker import free_port
from distilld.fieldpath import compile_path
from distilld.settings import ConfigError, load_settings
from distilld.transforms import length, url_host

from .conftest import tv
from .kafka_tools import (
    DaemonProcess,
    Metrics,
    create_topics,
    end_offsets,
    produce,
    read_all,
    unique,
    wait_committed,
    wait_metrics,
)
from .userale_tools import fixture_logs, generated_logs, session

KEYS = ("distilld_keys", ())

KAFKA = {
    "bootstrap_servers": "b:9092",
    "group_id": "g",
    "input_topics": ["ua"],
    "output_topic": "ua.out",
    "dlq_topic": "ua.dlq",
}


def test_url_host_and_length_transforms() -> None:
    urls = [
        "https://app.example.com:8443/x?y=1",
        "file:///C:/Sample/Dir/index.html",
        "chrome-extension://glifkfgngpmliakinpibmjodbclonhjd/optionsPage.html?",
        "",
        None,
        17,
        "not a url",
    ]
    assert url_host(urls) == [
        "app.example.com",
        "file:",
        "glifkfgngpmliakinpibmjodbclonhjd",
        None,
        None,
        None,
        None,
    ]
    assert length([["a", "b"], [], "abc", None, 3, {"k": 1}]) == [2, 0, 3, None, None, 1]


def test_the_preset_is_named_when_its_dlq_needs_a_topic(tmp_path: Path) -> None:
    """The preset sets processing.on_error: dlq; a kafka section without dlq_topic was refused with
    only "processing.on_error is 'dlq' but kafka.dlq_topic is not set", which the user never wrote."""
    path = tmp_path / "mine.yaml"
    path.write_text(orjson.dumps({"kafka": {k: v for k, v in KAFKA.items() if k != "dlq_topic"}}).decode())
    with pytest.raises(ConfigError, match=r"--preset userale sets processing.on_error: dlq") as refused:
        load_settings(path, preset="userale")
    assert "(the default)" not in str(refused.value), "the preset set it: it is not the default"
    path.write_text(orjson.dumps({"kafka": KAFKA}).decode())
    assert load_settings(path, preset="userale").processing.on_error == "dlq"


def test_alternative_paths_take_the_first_present() -> None:
    logs = [*fixture_logs()[:3], {"sessionId": "old"}, {"nothing": 1}]
    assert compile_path("sessionID|sessionId")(logs)[-2:] == ["old", None]


def test_preset_under_a_kafka_only_config_whose_keys_win(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(orjson.dumps({"kafka": KAFKA, "reducer": {"rate": 0.05}}).decode())
    settings = load_settings(path, preset="userale")
    assert settings.reducer.rate == 0.05, "the user's key overrides the preset's"
    assert settings.reducer.key == "sessionID|sessionId" and settings.reducer.time_unit == "ms"
    assert [f["name"] for f in settings.features] == [
        "type",
        "logType",
        "target",
        "page_host",
        "path_depth",
        "userAction",
    ]
    with pytest.raises(ConfigError, match="no preset 'nope'"):
        load_settings(path, preset="nope")


def _run_preset(
    bootstrap: str,
    tmp: Path,
    daemons: list[DaemonProcess],
    logs: list[dict[str, Any]],
    rate: float = 0.1,
    metrics_ready: Callable[[Metrics], bool] = lambda m: True,
) -> tuple[list[Any], list[Any], Metrics]:
    """Produce ``logs`` (Kafka key: the session, so that a session stays in one partition;
    the reducer's key still comes from the record's field), run the daemon
    with ``--preset userale`` and a config of a kafka section alone; returns the sent
    records, the output and the daemon's metrics once ``metrics_ready`` holds for them."""
    topic, group = unique("userale"), unique("g")
    create_topics(bootstrap, {topic: 2, f"{topic}.out": 2, f"{topic}.dlq": 1})
    values = [orjson.dumps(log) for log in logs]
    sent = produce(bootstrap, topic, values, [str(session(log)).encode() for log in logs])
    port = free_port()
    kafka = {"bootstrap_servers": bootstrap, "group_id": group, "input_topics": [topic], "output_topic": f"{topic}.out"}
    kafka |= {"dlq_topic": f"{topic}.dlq", "consumer": {"session.timeout.ms": 6000, "fetch.wait.max.ms": 20}}
    config = {"kafka": kafka, "reducer": {"rate": rate}, "metrics": {"port": port, "host": "127.0.0.1"}}
    d = DaemonProcess(tmp, config, args=["--preset", "userale"]).start()
    daemons.append(d)
    wait_committed(bootstrap, group, topic, end_offsets(sent), 2, d)
    metrics = wait_metrics(f"http://127.0.0.1:{port}/metrics", metrics_ready, "the metrics the test reads", d)
    assert d.stop() == 0, d.log()
    return sent, read_all(bootstrap, f"{topic}.out", expect_at_least=1, idle_s=2), metrics


def _check_budget(logs: list[dict[str, Any]], out_logs: list[dict[str, Any]], rate: float) -> None:
    received, selected = Counter(map(session, logs)), Counter(map(session, out_logs))
    for s, n in received.items():
        assert abs(selected[s] - rate * n) <= 1, (s, selected[s], n)


@pytest.mark.kafka
def test_daemon_with_the_preset_on_the_real_fixture_logs(
    kafka_bootstrap: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    logs = fixture_logs()
    sessions = len({session(log) for log in logs})
    sent, out, metrics = _run_preset(  # a gauge refresh after the last batch: a window per session
        kafka_bootstrap, tmp_path, daemons, logs, rate=0.2, metrics_ready=lambda m: m.get(KEYS) == sessions
    )
    by_value = {s.value for s in sent}
    assert all(m.value() in by_value for m in out), "byte-identical"
    _check_budget(logs, [orjson.loads(m.value()) for m in out], 0.2)

    def missing(feature: str) -> float:
        return metrics[("distilld_feature_missing_total", (("feature", feature),))]

    assert missing("path_depth") == sum(1 for log in logs if not isinstance(log.get("path"), list))
    assert missing("target") == sum(1 for log in logs if log.get("target") is None)
    assert missing("page_host") == sum(1 for log in logs if not log.get("pageUrl")), "one real log has no pageUrl"
    assert missing("type") == 0 and missing("logType") == 0
    assert metrics[KEYS] == sessions, "one window per session"


@pytest.mark.kafka
def test_daemon_with_the_preset_on_100k_generated_logs(
    kafka_bootstrap: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    """Several sessions of 100,000 logs: exact per-session budget, and each session's
    forwarded mix of event types, log types and pages closer to the session's own than a
    random sample of the same size."""
    logs = generated_logs(100_000, sessions=12, seed=3)
    _, out, _ = _run_preset(kafka_bootstrap, tmp_path, daemons, logs)
    out_logs = [orjson.loads(m.value()) for m in out]
    _check_budget(logs, out_logs, 0.1)
    rng = random.Random(0)
    by_session: dict[Any, list[dict[str, Any]]] = {}
    for log in logs:
        by_session.setdefault(session(log), []).append(log)
    chosen: dict[Any, list[dict[str, Any]]] = {}
    for log in out_logs:
        chosen.setdefault(session(log), []).append(log)
    for feature in ("type", "logType", "pageUrl"):
        ours = theirs = 0.0
        for s, all_logs in by_session.items():
            full = Counter(log[feature] for log in all_logs)
            ours += tv(full, Counter(log[feature] for log in chosen[s]))
            for _ in range(5):
                sample = rng.sample(all_logs, len(chosen[s]))
                theirs += tv(full, Counter(log[feature] for log in sample)) / 5
        print(f"{feature}: mean TV distilld {ours / len(by_session):.4f}, random {theirs / len(by_session):.4f}")
        assert ours < theirs / 2, feature


@pytest.mark.parametrize("command", ["reduce", "evaluate"])
def test_old_logs_whose_first_has_no_time_are_not_made_late_by_the_clock(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file of old logs (2024) whose first batch held a log without a usable clientTime|endTime: the
    engine gave it the wall clock, the watermark went years ahead, and every later log was too late for
    its session's window until a rewind, with a warning about a record far ahead that the file does not
    have (reduce and evaluate both)."""
    from distilld.cli import main

    logs = [{"type": "click", "logType": "raw", "sessionID": "session_0"}, *generated_logs(3000, seed=5)]
    src = tmp_path / "ua.ndjson"
    src.write_bytes(b"".join(orjson.dumps(log) + b"\n" for log in logs))
    out = ["-o", str(tmp_path / "out.ndjson")] if command == "reduce" else ["--report", str(tmp_path / "r")]
    assert main([command, str(src), *out, "--preset", "userale"]) == 0
    err = capsys.readouterr().err
    assert "too late for the window" not in err
    assert "more than a window ahead" not in err
    assert "1 of 3,001 records had no usable event time: missing" in err
