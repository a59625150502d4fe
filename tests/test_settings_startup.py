"""Settings that passed ``check-config`` and then stopped ``distilld run`` with a traceback: refused up front."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from distilld.cli import main
from distilld.daemon.clients import producer_config
from distilld.settings import ConfigError, load_settings

from .test_settings import MINIMAL


def minimal(**kafka: Any) -> dict[str, Any]:
    data = copy.deepcopy(MINIMAL)
    data["kafka"].update(kafka)
    return data


def test_max_in_flight_stops_where_the_producers_queue_does() -> None:
    """The producer's queue.buffering.max.messages is twice max_in_flight, and librdkafka refuses one above 2**31-1."""
    from confluent_kafka import Producer

    top = load_settings(None, **minimal(), processing={"max_in_flight": 1_073_741_823})
    Producer({**producer_config(top), "log_level": 0}).flush(0)
    with pytest.raises(ConfigError, match=r"processing\.max_in_flight: Input should be less than or equal to"):
        load_settings(None, **minimal(), processing={"max_in_flight": 1_073_741_824})


@pytest.mark.parametrize(("key", "shown"), [("on", "True"), ("1", "1"), ("~", "None")])
def test_a_top_level_name_yaml_reads_as_no_text_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, shown: str
) -> None:
    """`on: 1` (YAML 1.1: true) stopped check-config with "TypeError: keywords must be strings"."""
    path = tmp_path / "distilld.yaml"
    path.write_text(yaml.safe_dump(minimal()) + f"{key}: 1\n", encoding="utf-8")
    assert main(["check-config", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{shown}: a setting name must be text" in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    ("kind", "key", "value", "read"),
    [
        ("producer", "batch.size", "1000000x", "1000000"),
        ("consumer", "max.poll.interval.ms", "300000ms", "300000"),
        ("producer", "retry.backoff.ms", "1e3", "1"),  # YAML reads 1e3 as text: librdkafka as 1
    ],
)
def test_a_number_librdkafka_reads_the_start_of_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, key: str, value: str, read: str
) -> None:
    """librdkafka took "1000000x" as 1000000, and the daemon's own int() of batch.size (and of max.poll.interval.ms,
    transaction.timeout.ms, …) stopped run with a traceback."""
    path = tmp_path / "distilld.yaml"
    path.write_text(yaml.safe_dump(minimal(**{kind: {key: value}})), encoding="utf-8")
    assert main(["check-config", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"  kafka.{kind}.{key}: '{value}' is not a whole number" in err and f"only, {read})" in err, err


def test_text_and_decimal_passthrough_values_that_start_with_a_digit_are_kept() -> None:
    """Not every digit-led value is a truncated integer: a version, and a decimal property."""
    passthrough = {"broker.version.fallback": "0.10.0", "linger.ms": "0.5", "batch.size": " 16384", "acks": "-1"}
    assert load_settings(None, **minimal(producer=passthrough)).kafka.producer == passthrough


@pytest.mark.parametrize("group_id", ["team:app", "g" * 235])
def test_a_group_id_that_makes_no_valid_state_topic_name_is_refused(group_id: str) -> None:
    """The default state topic, <group_id>.distilld-state, was never checked: the state store failed at run time."""
    with pytest.raises(ConfigError, match=r"^kafka\.group_id makes an invalid default state topic name \(.*"
                       r"is not a valid Kafka topic name.*\); set kafka\.state_topic$"):  # fmt: skip
        load_settings(None, **minimal(group_id=group_id))
    assert load_settings(None, **minimal(group_id=group_id, state_topic="app.state")).kafka.group_id == group_id
    assert load_settings(None, **minimal(group_id="g" * 234)).kafka.state_topic_name() == "g" * 234 + ".distilld-state"


@pytest.mark.parametrize("pattern", [r"^app(?:\.x)", r"app(?=\.)", r"^(?i:app)"])
def test_an_input_pattern_librdkafkas_regex_refuses_is_a_config_error(pattern: str) -> None:
    """Python's re took them; librdkafka's subscribe() refused them in the running daemon, with a traceback."""
    with pytest.raises(ConfigError, match=r"kafka\.input_pattern: librdkafka's regex syntax \(POSIX extended\)"):
        load_settings(None, **minimal(input_topics=[], input_pattern=pattern))
    assert load_settings(None, **minimal(input_topics=[], input_pattern=r"^app\.[a-z]+")).kafka.input_pattern


@pytest.mark.parametrize(
    ("value", "reason"),
    [("0x3E8", "hexadecimal"), ("060000", "leading zero"), ("300000ms", "not a whole number")],
)
def test_an_integer_librdkafka_reads_otherwise_than_the_daemon_is_refused(value: str, reason: str) -> None:
    """librdkafka's strtol reads with base 0: 0x3E8 as 1000 (the daemon's int() refused it), 060000 as octal
    24,576 (the daemon read 60,000)."""
    with pytest.raises(ConfigError, match=f"kafka.consumer.session.timeout.ms: .*{reason}"):
        load_settings(None, **minimal(consumer={"session.timeout.ms": value}))
    load_settings(None, **minimal(consumer={"session.timeout.ms": "60000"}))


def test_a_registry_url_with_a_space_is_refused_and_a_bare_mock_url_is_kept() -> None:
    """A space inside a password stopped the masking there: the rest of the password was shown."""
    registry = {"value": "avro_confluent", "schema_registry": {"url": "https://u:pa ss@reg:8081"}}
    with pytest.raises(ConfigError, match="percent-encode it") as e:
        load_settings(None, **minimal(), format=registry)
    assert "ss@" not in str(e.value)
    load_settings(None, **minimal(), format={"value": "avro_confluent", "schema_registry": {"url": "mock://"}})
