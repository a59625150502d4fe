from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import distilld


def test_console_script_reports_its_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "distilld.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"distilld {distilld.__version__}"


@pytest.mark.kafka
def test_demo_runs_the_daemon_on_the_embedded_broker_next_to_random(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "distilld.cli", "demo", "--duration", "6", "--rate", "5000"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
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
    # kept after the demo: the configuration it ran and the daemon's log
    assert "build/demo/daemon.log" in out.stdout
    assert "output_topic: demo.out" in (tmp_path / "build" / "demo" / "distilld.yaml").read_text()
    assert "joining group" in (tmp_path / "build" / "demo" / "daemon.log").read_text()


def test_check_config_accepts_a_file_tools_config_without_kafka(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from distilld.cli import main

    good, bad = tmp_path / "files.yaml", tmp_path / "bad.yaml"
    good.write_text("features:\n  - {name: a, type: numeric}\nreducer: {rate: 0.2}\n")
    bad.write_text("features:\n  - {name: a, type: numeric, bins: 1}\n")
    assert main(["check-config", "-c", str(good)]) == 0
    assert "no kafka section: valid for distilld reduce and evaluate" in capsys.readouterr().err
    assert main(["check-config", "-c", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bins: Input should be greater than or equal to 2" in err, err
    assert "kafka: Field required" not in err, "a file without a kafka section: only its real errors"
    assert "no kafka section: not an error for distilld reduce and evaluate" in err
    both = tmp_path / "both.yaml"  # two real errors, no kafka section: both reported, nothing spurious
    both.write_text("features:\n  - {name: a, type: numeric}\nreducer: {rate: 2}\nprocessing: {on_error: maybe}\n")
    assert main(["check-config", "-c", str(both)]) == 1
    err = capsys.readouterr().err
    assert "reducer.rate: Input should be less than or equal to 1" in err, err
    assert "processing.on_error:" in err and "kafka" not in err.replace("no kafka section", ""), err
    daemon = tmp_path / "daemon.yaml"  # with a kafka section, its errors are the daemon's
    daemon.write_text("kafka: {bootstrap_servers: 'b:9092'}\nfeatures:\n  - {name: a, type: numeric}\n")
    assert main(["check-config", "-c", str(daemon)]) == 1
    err = capsys.readouterr().err
    assert "kafka.output_topic: Field required" in err and "no kafka section" not in err, err


@pytest.mark.parametrize("suffix", [".csv", ".ndjson", ".json"])
def test_sample_writes_the_quick_starts_input_and_reduce_takes_it(tmp_path: Path, suffix: str) -> None:
    """The Quick start reduces people.csv: ``distilld sample`` makes it."""
    from distilld.cli import main

    data, out = tmp_path / f"people{suffix}", tmp_path / f"sample{suffix}"
    assert main(["sample", "people", "-o", str(data), "--records", "2000"]) == 0
    config = str(Path(distilld.__file__).resolve().parent.parent / "config" / "people.yaml")
    assert main(["reduce", str(data), "-o", str(out), "--config", config, "-q"]) == 0
    if suffix == ".csv":
        lines = out.read_text().splitlines()
        assert len(lines) == 1 + 200 and "distilld_weight" in lines[0] and "ts" in lines[0].split(",")
    assert main(["sample", "people", "-o", str(tmp_path / "people.txt")]) == 1


def test_broker_serves_kafka_until_sigterm() -> None:
    """``distilld broker``: the embedded broker for trying ``distilld run`` without a cluster."""
    import signal
    import time

    from confluent_kafka.admin import AdminClient

    from distilld.broker import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "distilld", "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert f"127.0.0.1:{port}" in proc.stdout.readline()
        meta = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=10)
        assert len(meta.brokers) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert "broker stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            time.sleep(0.1)


def test_broker_refuses_a_port_something_already_listens_on() -> None:
    """With the port taken (another ``distilld broker``), it announced itself on that port (the
    other process answered its start-up check), then said "the broker exited with code 0"."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "distilld", "broker", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "embedded broker on" not in result.stdout
    assert f"127.0.0.1:{port} is already in use" in result.stderr and "--port" in result.stderr


def test_reduce_names_the_environment_when_a_setting_comes_from_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """reduce and evaluate blamed the file for a bad DISTILLD_* value ("invalid configuration in
    files.yaml: reducer.rate: ..."), or named nothing without a file; check-config and run name both."""
    from distilld.cli import main

    config = tmp_path / "files.yaml"
    config.write_text("features:\n  - {name: a, type: numeric}\n")
    data = tmp_path / "in.ndjson"
    data.write_text('{"a": 1}\n')
    monkeypatch.setenv("DISTILLD_REDUCER__RATE", "abc")
    for command in (["reduce", str(data), "-o", str(tmp_path / "o.ndjson")], ["evaluate", str(data), "--report", "r"]):
        assert main([*command, "-c", str(config)]) == 1
        err = capsys.readouterr().err
        assert f"invalid configuration in {config} or the DISTILLD_* environment:" in err, err
        assert "reducer.rate: Input should be a valid number" in err
    monkeypatch.setenv("DISTILLD_FEATURES", '[{"name": "a", "type": "numeric"}]')
    assert main(["reduce", str(data), "-o", str(tmp_path / "o.ndjson")]) == 1
    assert "invalid configuration in the DISTILLD_* environment:" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["bench", "demo"])
def test_a_subcommands_help_names_the_command_it_was_given(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`distilld bench --help` printed "usage: python -m distilld.bench", a command the README does not give."""
    from distilld.cli import main

    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: distilld {command} ")


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path: Path) -> None:
    """`distilld evaluate … | head -1`: the table went to a pipe its reader had closed, and the command
    printed "distilld evaluate: [Errno 32] Broken pipe" (or a traceback) on stderr."""
    import os

    data = tmp_path / "p.csv"
    data.write_text("gender,age\n" + "".join(f"{'mf'[i % 2]},{18 + i % 70}\n" for i in range(3000)))
    config = tmp_path / "f.yaml"
    config.write_text(
        "features:\n  - {name: gender, type: categorical, categories: [m, f]}\n  - {name: age, type: numeric}\n"
    )
    report = tmp_path / "report"
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        done = subprocess.run(
            [sys.executable, "-m", "distilld", "evaluate", str(data), "-c", str(config), "--report", str(report)],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert "Broken pipe" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1 and done.stderr == "", "stopped at the table, before the report's lines"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_reduce_removes_its_partial_output_and_says_so(tmp_path: Path, signum: int) -> None:
    """SIGTERM left the hidden `.OUT.partial` behind, and Ctrl-C (SIGINT) printed a KeyboardInterrupt
    traceback, where a failed run is to leave no partial output."""
    import time

    data = tmp_path / "in.ndjson"
    data.write_text("".join(f'{{"g": "{"ab"[i % 2]}", "x": {i}}}\n' for i in range(400_000)))
    config = tmp_path / "c.yaml"
    config.write_text("features:\n  - {name: g, type: categorical, categories: [a, b]}\n  - {name: x, type: numeric}\n")
    out = tmp_path / "out.ndjson"
    run = subprocess.Popen(
        [sys.executable, "-m", "distilld", "reduce", str(data), "-o", str(out), "-c", str(config), "--batch", "500"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    partial = tmp_path / ".out.ndjson.partial"
    deadline = time.monotonic() + 60
    while not partial.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # into the run
    run.send_signal(signum)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 128 + signum, err
    assert err == "distilld reduce: interrupted\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "in.ndjson"]


def test_a_stop_that_lands_inside_a_c_callback_still_stops(capsys: pytest.CaptureFixture[str]) -> None:
    """A SIGTERM that came while numba compiled the engine (its ctypes callbacks run Python code)
    raised inside the callback, where ctypes prints the exception and drops it: the run went on to its
    end and exited 0 with its output in place (the test above, now and then)."""
    import ctypes
    import time

    from distilld.cli import _stoppable, _Stopped

    @ctypes.CFUNCTYPE(None)
    def callback() -> None:
        signal.raise_signal(signal.SIGTERM)  # handled here: _Stopped raised inside the callback

    with pytest.raises(_Stopped) as stopped, _stoppable():
        callback()
        for _ in range(100):  # back in Python code: the stop is taken here
            time.sleep(0.001)
    assert stopped.value.signum == signal.SIGTERM
    assert "Exception ignored" not in capsys.readouterr().err  # nothing printed about the dropped one


def test_a_stop_given_again_after_the_command_is_over_is_not_raised_in_its_cleanup() -> None:
    """The stop given again (from a timer thread) can land while the context's cleanup runs: raised there, it
    skipped the rest of the cleanup, leaving the handlers and the unraisable hook installed (the review's
    probe: 1 in 400). The handler no longer raises once the command is over, and everything is restored."""
    import sys

    from distilld.cli import _stoppable, _Stopped

    hook, before = sys.unraisablehook, signal.getsignal(signal.SIGTERM)
    with _stoppable():
        handler = signal.getsignal(signal.SIGTERM)
    assert callable(handler) and handler is not before
    try:
        handler(signal.SIGTERM, None)  # a stop landing after the cleanup began: not raised
    except _Stopped:  # a KeyboardInterrupt: it would end the whole test run, not fail this test
        pytest.fail("the stop was raised after the command was over")
    assert signal.getsignal(signal.SIGTERM) is before and sys.unraisablehook is hook


def _write_config(tmp_path: Path, consumer: dict[str, object], producer: dict[str, object]) -> str:
    import yaml

    path = tmp_path / "clients.yaml"
    kafka = {
        "bootstrap_servers": "nowhere:9092",
        "group_id": "g",
        "input_topics": ["events"],
        "output_topic": "events.out",
        "dlq_topic": "events.dlq",
        "consumer": consumer,
        "producer": producer,
    }
    features = [{"name": "kind", "type": "categorical", "field": "kind", "categories": ["a"]}]
    path.write_text(yaml.safe_dump({"kafka": kafka, "features": features}))
    return str(path)


def test_client_settings_distilld_overrides_are_named_by_check_config_and_run(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """check-config printed enable.auto.commit: true and acks: 1 as given, and run said nothing, while the daemon's
    clients keep enable.auto.commit=false and acks=all whatever kafka.consumer and kafka.producer say."""
    import logging

    import distilld.daemon.loop
    from distilld.cli import main

    config = _write_config(
        tmp_path,
        {"enable.auto.commit": True, "partition.assignment.strategy": "cooperative-sticky", "fetch.min.bytes": 2},
        {"acks": 1, "linger.ms": 5},
    )
    why = " (the delivery guarantee rests on it)"
    assert main(["check-config", "--config", config]) == 0
    out, err = capsys.readouterr()
    assert "kafka.consumer enable.auto.commit=true is ignored: distilld keeps enable.auto.commit=false" + why in err
    assert "kafka.producer acks=1 is ignored: distilld keeps acks=all" + why in err
    assert "partition.assignment.strategy" not in err and "fetch.min.bytes" not in err and "linger" not in err

    class NoDaemon:
        def __init__(self, settings: object) -> None:
            pass

        def install_signal_handlers(self) -> None:
            pass

        def run(self) -> int:
            return 0

    monkeypatch.setattr(distilld.daemon.loop, "Daemon", NoDaemon)
    with caplog.at_level(logging.WARNING, logger="distilld"):
        assert main(["run", "--config", config]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "kafka.consumer enable.auto.commit=true is ignored: distilld keeps enable.auto.commit=false" + why in warned
    assert "kafka.producer acks=1 is ignored: distilld keeps acks=all" + why in warned

    quiet = _write_config(tmp_path, {"enable.auto.commit": "false"}, {"acks": -1})  # what distilld keeps anyway
    assert main(["check-config", "--config", quiet]) == 0
    out, err = capsys.readouterr()
    assert "ignored" not in err
    shown = json.loads(out)["kafka"]
    assert (shown["consumer"], shown["producer"]) == ({"enable.auto.commit": "false"}, {"acks": -1}), "as given"


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_check_config_prints_the_client_settings_distilld_keeps_not_the_ignored_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], guarantee: str
) -> None:
    """check-config's effective configuration showed enable.auto.commit: true and acks: 1 as given, beside
    the warning that they are ignored: it now shows the values the daemon's clients are made with."""
    from distilld.cli import main
    from distilld.daemon.clients import consumer_config, producer_config
    from distilld.settings import load_settings

    consumer = {
        "enable.auto.commit": True,
        "enable.auto.offset.store": "true",
        "partition.assignment.strategy": "range",
        "isolation.level": "read_uncommitted",
        "fetch.min.bytes": 2,
        "ssl.keystore.password": "hush",
    }
    config = _write_config(tmp_path, consumer, {"request.required.acks": 1, "linger.ms": 5})
    Path(config).write_text(Path(config).read_text() + f"processing: {{guarantee: {guarantee}}}\n")
    assert main(["check-config", "--config", config]) == 0
    out, err = capsys.readouterr()
    shown = json.loads(out)["kafka"]
    exactly_once = guarantee == "exactly_once"
    assert shown["consumer"] == {
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "partition.assignment.strategy": "cooperative-sticky",
        "isolation.level": "read_committed" if exactly_once else "read_uncommitted",
        "fetch.min.bytes": 2,
        "ssl.keystore.password": "***",
    }
    assert shown["producer"] == {"request.required.acks": "all", "linger.ms": 5}
    settings = load_settings(config)  # what the daemon's clients are made with
    used = consumer_config(settings)
    assert all(used[k] == v for k, v in shown["consumer"].items() if k != "ssl.keystore.password")
    assert producer_config(settings)["acks"] == "all"
    ignored = [line.split(" is ignored")[0] for line in err.splitlines() if "is ignored" in line]
    assert sorted(ignored) == [
        "distilld: warning: kafka.consumer enable.auto.commit=true",
        "distilld: warning: kafka.consumer enable.auto.offset.store=true",
        *(["distilld: warning: kafka.consumer isolation.level=read_uncommitted"] if exactly_once else []),
        "distilld: warning: kafka.consumer partition.assignment.strategy=range",
        "distilld: warning: kafka.producer request.required.acks=1",
    ], err
