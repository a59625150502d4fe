"""The daemon's configuration: shipped examples, environment overrides, masking, errors, defaults.

No broker is needed: ``distilld check-config`` runs in-process through ``distilld.cli.main``.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import yaml
from confluent_kafka import Consumer, Producer
from hypothesis import given
from hypothesis import strategies as st

from distilld.cli import main
from distilld.settings import ConfigError, Settings, load_settings, masked

CONFIG = Path(__file__).resolve().parent.parent / "config"


def _daemon_configs() -> list[Path]:
    """The files of ``config/`` that are whole daemon configurations (they have a ``kafka`` section)."""
    out = []
    for path in sorted(CONFIG.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "kafka" in data:
            out.append(path)
    return out


DAEMON_CONFIGS = _daemon_configs()

MINIMAL: dict[str, Any] = {
    "kafka": {
        "bootstrap_servers": "file-broker:9092",
        "group_id": "from-file",
        "input_topics": ["events"],
        "output_topic": "events.out",
        "dlq_topic": "events.dlq",
    },
    "features": [{"name": "kind", "type": "categorical", "field": "kind", "categories": ["a", "b"]}],
}


@pytest.fixture(autouse=True)
def _no_distilld_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read DISTILLD_* variables: start every test without the caller's."""
    for name in list(os.environ):
        if name.upper().startswith("DISTILLD_"):
            monkeypatch.delenv(name)


def minimal() -> dict[str, Any]:
    return copy.deepcopy(MINIMAL)


def write(tmp_path: Path, data: Any, name: str = "distilld.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def check_config(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``distilld check-config ARGS`` in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(["check-config", *args])
    out, err = capsys.readouterr()
    return code, out, err


# --- the shipped examples -------------------------------------------------------------------------------------------


def test_config_dir_ships_the_generic_and_the_people_daemon_configs() -> None:
    assert {"distilld.yaml", "people.yaml"} <= {p.name for p in DAEMON_CONFIGS}


@pytest.mark.parametrize("path", DAEMON_CONFIGS, ids=lambda p: p.name)
def test_shipped_config_loads_and_passes_check_config(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(path)
    code, out, err = check_config(capsys, "--config", str(path))
    assert code == 0 and err.startswith("windows: ") and len(err.splitlines()) == 1, err
    assert json.loads(out) == masked(settings)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert settings.kafka.bootstrap_servers == raw["kafka"]["bootstrap_servers"]
    assert [f["name"] for f in settings.features] == [f["name"] for f in raw["features"]]


@pytest.mark.parametrize("path", DAEMON_CONFIGS, ids=lambda p: p.name)
def test_shipped_passthrough_settings_are_librdkafka_properties(path: Path) -> None:
    """librdkafka refuses unknown properties when a client is created; no broker is contacted here."""
    kafka = load_settings(path).kafka
    quiet = {"bootstrap.servers": "127.0.0.1:1", "log_level": 0}
    consumer = Consumer({**kafka.consumer, **quiet, "group.id": kafka.group_id})
    consumer.close()
    producer = Producer({**kafka.producer, **quiet})
    producer.flush(0)


@pytest.mark.parametrize(
    "section",
    ["kafka", "reducer", "filters", "format", "processing", "metrics"],
)
def test_generic_example_shows_every_setting(section: str) -> None:
    """config/distilld.yaml is the reference: each key of the model appears (optional kafka keys as comments)."""
    text = (CONFIG / "distilld.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    model = type(getattr(load_settings(CONFIG / "distilld.yaml"), section))
    shown = set(raw[section])
    commented = {"kafka": {"input_pattern", "state_partitions", "transactional_id", "sasl"}}
    commented["format"] = {"avro_schema", "schema_registry"}
    for key in commented.get(section, set()):
        assert re.search(rf"^\s*#\s*{key}:", text, re.MULTILINE), key
    shown |= commented.get(section, set())
    assert shown == set(model.model_fields)


def test_generic_example_reads_json_keyed_by_kafka_key() -> None:
    settings = load_settings(CONFIG / "distilld.yaml")
    assert settings.format.value == "json"
    assert settings.reducer.key == "kafka_key"
    assert settings.processing.on_error == "dlq" and settings.kafka.dlq_topic


def test_people_example_is_the_seeds_three_features() -> None:
    settings = load_settings(CONFIG / "people.yaml")
    by_name = {f["name"]: f for f in settings.features}
    assert list(by_name) == ["age", "gender", "income"]
    assert by_name["age"]["type"] == "numeric"
    assert by_name["income"]["type"] == "numeric"
    assert by_name["gender"]["type"] == "categorical"
    assert by_name["gender"]["categories"] == ["female", "male", "other"]


@pytest.mark.parametrize("path", DAEMON_CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_serve_metrics_on_this_machine_only(path: Path) -> None:
    """config/people.yaml bound 0.0.0.0 while the Security section says the default is 127.0.0.1; the image sets
    0.0.0.0 itself (DISTILLD_METRICS__HOST), and the chart derives it from its config."""
    assert load_settings(path).metrics.host == "127.0.0.1"


# --- defaults -------------------------------------------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, minimal()))
    assert settings.reducer.rate == 0.1
    assert settings.reducer.window_seconds == 3600
    assert settings.reducer.key == "none"
    assert settings.reducer.time == "processing"
    assert settings.metrics.port == 9108
    assert settings.format.value == "json"
    assert settings.processing.on_error == "dlq"
    assert settings.kafka.consumer == {} and settings.kafka.producer == {}


def test_group_id_is_required(tmp_path: Path) -> None:
    """A default would put unrelated deployments in one consumer group, sharing one state topic."""
    data = minimal()
    del data["kafka"]["group_id"]
    with pytest.raises(ConfigError, match=r"kafka\.group_id"):
        load_settings(write(tmp_path, data))


def test_input_pattern_is_anchored_for_librdkafka(tmp_path: Path) -> None:
    data = minimal()
    data["kafka"]["input_topics"] = []
    data["kafka"]["input_pattern"] = r"app\.events\..+"
    assert load_settings(write(tmp_path, data)).kafka.subscription() == [r"^app\.events\..+"]


# --- the environment ------------------------------------------------------------------------------------------------


def test_nested_environment_overrides_win_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = minimal()
    data["reducer"] = {"rate": 0.2, "window_seconds": 60, "key": "kafka_key"}
    path = write(tmp_path, data)
    monkeypatch.setenv("DISTILLD_KAFKA__BOOTSTRAP_SERVERS", "env-broker:9092")
    monkeypatch.setenv("DISTILLD_REDUCER__RATE", "0.5")
    settings = load_settings(path)
    assert settings.kafka.bootstrap_servers == "env-broker:9092"
    assert settings.reducer.rate == 0.5
    # the file's other keys of the same sections stay
    assert settings.kafka.group_id == "from-file"
    assert settings.kafka.input_topics == ["events"]
    assert settings.kafka.output_topic == "events.out"
    assert settings.kafka.dlq_topic == "events.dlq"
    assert settings.reducer.window_seconds == 60
    assert settings.reducer.key == "kafka_key"


def test_partial_nested_override_keeps_the_sections_other_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = minimal()
    data["processing"] = {"batch_max_records": 42, "batch_max_wait_ms": 7, "on_error": "dlq"}
    data["metrics"] = {"host": "127.0.0.1", "port": 9200}
    path = write(tmp_path, data)
    monkeypatch.setenv("DISTILLD_PROCESSING__ON_ERROR", "skip")
    monkeypatch.setenv("DISTILLD_METRICS__PORT", "0")
    settings = load_settings(path)
    assert settings.processing.on_error == "skip"
    assert (settings.processing.batch_max_records, settings.processing.batch_max_wait_ms) == (42, 7)
    assert (settings.metrics.host, settings.metrics.port) == ("127.0.0.1", 0)


def test_environment_overrides_show_in_check_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, minimal())
    monkeypatch.setenv("DISTILLD_KAFKA__BOOTSTRAP_SERVERS", "env-broker:9092")
    monkeypatch.setenv("DISTILLD_REDUCER__RATE", "0.25")
    code, out, _ = check_config(capsys, "--config", str(path))
    shown = json.loads(out)
    assert code == 0
    assert shown["kafka"]["bootstrap_servers"] == "env-broker:9092"
    assert shown["kafka"]["group_id"] == "from-file"
    assert shown["reducer"]["rate"] == 0.25


def test_environment_supplies_a_key_the_file_lacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = minimal()
    del data["kafka"]["bootstrap_servers"]
    path = write(tmp_path, data)
    with pytest.raises(ConfigError, match=r"kafka\.bootstrap_servers"):
        load_settings(path)
    monkeypatch.setenv("DISTILLD_KAFKA__BOOTSTRAP_SERVERS", "env-broker:9092")
    assert load_settings(path).kafka.bootstrap_servers == "env-broker:9092"


def test_environment_alone_is_a_configuration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DISTILLD_KAFKA__BOOTSTRAP_SERVERS", "env-broker:9092")
    monkeypatch.setenv("DISTILLD_KAFKA__GROUP_ID", "env-group")
    monkeypatch.setenv("DISTILLD_KAFKA__INPUT_TOPICS", '["a", "b"]')
    monkeypatch.setenv("DISTILLD_KAFKA__OUTPUT_TOPIC", "out")
    monkeypatch.setenv("DISTILLD_PROCESSING__ON_ERROR", "skip")
    monkeypatch.setenv("DISTILLD_FEATURES", json.dumps(MINIMAL["features"]))
    code, out, err = check_config(capsys)
    assert code == 0 and err.startswith("windows: "), err
    shown = json.loads(out)
    assert shown["kafka"]["input_topics"] == ["a", "b"]
    assert shown["processing"]["on_error"] == "skip"
    assert shown["features"] == MINIMAL["features"]


def test_invalid_environment_value_names_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, minimal())
    monkeypatch.setenv("DISTILLD_REDUCER__RATE", "2")
    with pytest.raises(ConfigError, match=r"reducer\.rate: .*less than or equal to 1"):
        load_settings(path)


def test_environment_secret_merges_into_passthrough_settings_and_is_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = minimal()
    data["kafka"]["consumer"] = {"ssl.keystore.location": "/etc/distilld/keystore.p12"}
    path = write(tmp_path, data)
    monkeypatch.setenv("DISTILLD_KAFKA__CONSUMER__SSL.KEYSTORE.PASSWORD", "env-hunter2")
    assert load_settings(path).kafka.consumer == {
        "ssl.keystore.location": "/etc/distilld/keystore.p12",
        "ssl.keystore.password": "env-hunter2",
    }
    code, out, _ = check_config(capsys, "--config", str(path))
    assert code == 0 and "env-hunter2" not in out
    assert json.loads(out)["kafka"]["consumer"]["ssl.keystore.password"] == "***"


# --- masking --------------------------------------------------------------------------------------------------------

SECRETS = {
    "consumer": {
        "sasl.oauthbearer.client.secret": "consumer-oauth-secret",
        "ssl.key.password": "consumer-key-pw",
        "ssl.keystore.password": "consumer-keystore-pw",
    },
    "producer": {
        "ssl.keystore.password": "producer-keystore-pw",
        "sasl.oauthbearer.client.secret": "producer-oauth-secret",
        "sasl.oauthbearer.config": "principal=x clientSecret=producer-oauth-config",
        "ssl.key.pem": "-----BEGIN PRIVATE KEY----- producer-pem",
    },
}
PLAIN = {
    "consumer": {"sasl.oauthbearer.client.id": "alice", "fetch.min.bytes": 1},
    "producer": {
        "sasl.oauthbearer.scope": "kafka",
        "enable.idempotence": True,
        "ssl.key.location": "/etc/distilld/key.pem",
    },
}


def test_check_config_masks_secrets_and_prints_the_rest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = minimal()
    for side in ("consumer", "producer"):
        data["kafka"][side] = {**PLAIN[side], **SECRETS[side]}
    path = write(tmp_path, data)
    code, out, err = check_config(capsys, "--config", str(path))
    assert code == 0 and err.startswith("windows: "), err
    for side in ("consumer", "producer"):
        for secret in SECRETS[side].values():
            assert secret not in out
    shown = json.loads(out)
    for side in ("consumer", "producer"):
        assert shown["kafka"][side] == {**PLAIN[side], **dict.fromkeys(SECRETS[side], "***")}
    # everything else is printed as loaded
    effective = load_settings(path).model_dump(mode="json")
    for section in ("reducer", "features", "format", "processing", "metrics"):
        assert shown[section] == effective[section]
    assert {k: v for k, v in shown["kafka"].items() if k not in ("consumer", "producer")} == {
        **{k: v for k, v in effective["kafka"].items() if k not in ("consumer", "producer")},
        "state_topic": "from-file.distilld-state",  # not set: the name the daemon gives it
    }


def test_masking_leaves_the_settings_the_daemon_uses_intact(tmp_path: Path) -> None:
    data = minimal()
    data["kafka"]["consumer"] = dict(SECRETS["consumer"])
    settings = load_settings(write(tmp_path, data))
    assert masked(settings)["kafka"]["consumer"]["ssl.key.password"] == "***"
    assert settings.kafka.consumer == SECRETS["consumer"]


def test_check_config_masks_oauth_assertion_private_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = minimal()
    data["kafka"]["producer"] = {
        "sasl.oauthbearer.assertion.private.key.passphrase": "assertion-passphrase",
        "sasl.oauthbearer.assertion.private.key.pem": "-----BEGIN PRIVATE KEY----- assertion-pem",
    }
    code, out, _ = check_config(capsys, "--config", str(write(tmp_path, data)))
    assert code == 0
    assert "assertion-passphrase" not in out
    assert "assertion-pem" not in out


def test_yaml_error_does_not_echo_a_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "kafka:\n  consumer:\n    sasl.password: s3cr3t-value: oops\n")
    code, _, err = check_config(capsys, "--config", str(path))
    assert code == 1
    assert "not valid YAML" in err
    assert "s3cr3t-value" not in err


# --- errors ---------------------------------------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(section: str, **values: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        data.setdefault(section, {}).update(values)

    return mutate


def _drop(section: str, key: str) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        del data[section][key]

    return mutate


def _features(*entries: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        data["features"] = list(entries)

    return mutate


def _both(first: Mutation, second: Mutation) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        first(data)
        second(data)

    return mutate


NUMERIC = {"name": "n", "type": "numeric", "field": "n"}

ERRORS: list[tuple[str, Mutation, list[str]]] = [
    ("missing-bootstrap", _drop("kafka", "bootstrap_servers"), ["kafka.bootstrap_servers", "Field required"]),
    ("missing-output-topic", _drop("kafka", "output_topic"), ["kafka.output_topic", "Field required"]),
    ("rate-0", _set("reducer", rate=0), ["reducer.rate", "greater than 0"]),
    ("rate-1.5", _set("reducer", rate=1.5), ["reducer.rate", "less than or equal to 1"]),
    ("window-0", _set("reducer", window_seconds=0), ["reducer.window_seconds", "greater than 0"]),
    ("panes-0", _set("reducer", panes=0), ["reducer.panes", "greater than or equal to 1"]),
    ("panes-1001", _set("reducer", panes=1001), ["reducer.panes", "less than or equal to 1000"]),
    ("max-keys-0", _set("reducer", max_keys=0), ["reducer.max_keys", "greater than or equal to 1"]),
    (
        "topics-and-pattern",
        _set("kafka", input_pattern="ev.*"),
        ["kafka", "exactly one of input_topics", "input_pattern"],
    ),
    ("neither-topics-nor-pattern", _set("kafka", input_topics=[]), ["kafka", "exactly one of input_topics"]),
    (
        "bad-regex",
        _set("kafka", input_topics=[], input_pattern="events(["),
        ["kafka.input_pattern", "not a valid regular expression"],
    ),
    (
        "output-is-an-input",
        _set("kafka", input_topics=["events", "clicks"], output_topic="clicks"),
        ["kafka", "output_topic 'clicks' is also an input topic"],
    ),
    ("dlq-is-an-input", _set("kafka", dlq_topic="events"), ["kafka", "dlq_topic 'events' is also an input topic"]),
    (
        "state-topic-is-an-input",
        _set("kafka", input_topics=[], input_pattern="^from-file"),
        ["kafka", "state_topic 'from-file.distilld-state' is also an input topic"],
    ),
    (
        "dlq-without-topic",
        _drop("kafka", "dlq_topic"),
        [
            "processing.on_error",
            "'dlq'",
            "kafka.dlq_topic",
            "not set: set kafka.dlq_topic, or processing.on_error: skip",
        ],
    ),
    (
        "dlq-explicit-without-topic",
        _both(_set("kafka", dlq_topic=None), _set("processing", on_error="dlq")),
        ["processing.on_error", "kafka.dlq_topic", "not set"],
    ),
    ("unknown-reducer-key", _set("reducer", rat=0.5), ["reducer.rat", "Extra inputs are not permitted"]),
    (
        "unknown-kafka-key",
        _set("kafka", bootstrap_server="x:9092"),
        ["kafka.bootstrap_server", "Extra inputs are not permitted"],
    ),
    ("unknown-section", _set("reducers", rate=0.5), ["reducers", "Extra inputs are not permitted"]),
    (
        "feature-bad-bins",
        _features(NUMERIC, {"name": "b", "type": "numeric", "bins": 1}),
        ["features[1]", "'b'", "bins", "greater than or equal to 2"],
    ),
    ("feature-unknown-type", _features({"name": "a", "type": "numerc"}), ["features[0]", "'a'", "numerc"]),
    ("feature-key-typo", _features({**NUMERIC, "bin": 8}), ["features[0]", "'n'", "bin", "Extra inputs"]),
    ("feature-duplicate-name", _features(NUMERIC, NUMERIC), ["features[1]", "'n'", "duplicate"]),
    ("feature-bad-path", _features({**NUMERIC, "field": "a..b"}), ["features[0]", "'n'", "invalid field path"]),
    ("features-empty", _features(), ["features", "at least one feature"]),
    ("features-missing", lambda d: d.pop("features"), ["features", "Field required"]),
    (
        "key-bad-path",
        _set("reducer", key="user..id"),
        ["reducer.key", "invalid field path 'user..id'", "empty step"],
    ),
    ("key-empty", _set("reducer", key=""), ["reducer.key", "invalid field path"]),
    ("time-bad-path", _set("reducer", time=".ts"), ["reducer.time", "invalid field path"]),
    ("time-unit", _set("reducer", time_unit="h"), ["reducer.time_unit", "'s', 'ms' or 'us'"]),
    ("format-unknown", _set("format", value="protobuf"), ["format.value", "'avro_confluent'"]),
    ("format-avro-no-schema", _set("format", value="avro"), ["format", "needs avro_schema"]),
    ("on-error-unknown", _set("processing", on_error="ignore"), ["processing.on_error", "'dlq', 'skip' or 'fail'"]),
    ("batch-0", _set("processing", batch_max_records=0), ["processing.batch_max_records", "greater than or equal"]),
    ("port-too-big", _set("metrics", port=70000), ["metrics.port", "less than or equal to 65535"]),
    ("port-not-int", _set("metrics", port="http"), ["metrics.port", "valid integer"]),
    ("consumer-not-a-mapping", _set("kafka", consumer=["a"]), ["kafka.consumer", "valid dictionary"]),
]


@pytest.mark.parametrize(("mutate", "expected"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_invalid_config_exits_1_naming_field_and_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate: Mutation, expected: list[str]
) -> None:
    data = minimal()
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    for part in expected:
        assert part in str(info.value)
    code, out, err = check_config(capsys, "--config", str(path))
    assert code == 1
    assert out == ""
    assert err.splitlines()[0] == f"distilld: invalid configuration in {path}:"
    for part in expected:
        assert part in err


FILE_ERRORS: list[tuple[str, str | None, list[str]]] = [
    ("not-yaml", "kafka: [unclosed\n  bootstrap_servers: {\n", ["not valid YAML", "line"]),
    ("yaml-list", "- kafka\n- features\n", ["expected a mapping of sections"]),
    ("yaml-scalar", "just words\n", ["expected a mapping of sections"]),
    ("empty-file", "", ["kafka: Field required", "features: Field required"]),
    ("null-section", "kafka:\nfeatures: []\n", ["kafka: Input should be a valid dictionary"]),
    ("missing-file", None, ["cannot read", "No such file"]),
    (
        "section-twice",  # the review's dup.yaml: the second reducer section replaced the first whole
        "reducer:\n  rate: 0.05\nfeatures: [{name: a, type: numeric}]\nreducer:\n  key: user\n",
        ["line 4, column 1", "key 'reducer' given twice (first at line 1)"],
    ),
    (
        "key-twice-in-a-section",
        "reducer:\n  rate: 0.05\n  window_seconds: 60\n  rate: 0.5\n",
        ["line 4, column 3", "key 'rate' given twice (first at line 2)"],
    ),
    (
        "key-twice-in-a-feature",
        "features:\n  - {name: a, type: numeric, bins: 8,\n     bins: 16}\n",
        ["line 3, column 6", "key 'bins' given twice (first at line 2)"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [e[1:] for e in FILE_ERRORS], ids=[e[0] for e in FILE_ERRORS])
def test_unusable_file_exits_1_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, expected: list[str]
) -> None:
    path = tmp_path / "distilld.yaml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    for part in expected:
        assert part in str(info.value)
    code, out, err = check_config(capsys, "--config", str(path))
    assert (code, out) == (1, "")
    assert str(path) in err
    for part in expected:
        assert part in err


def test_yaml_merge_keys_still_override_what_they_merge(tmp_path: Path) -> None:
    """A key given twice is refused; a key that overrides one a ``<<`` merge brought in is not given twice,
    nor is one of a merged mapping that merges in its turn."""
    from distilld.settings import _read_yaml

    text = (
        "base: &base {rate: 0.1, window_seconds: 60}\n"
        "outer:\n  inner: &inner\n    <<: *base\n    rate: 0.2\n"
        "reducer:\n  <<: *inner\n  window_seconds: 30\n"
    )
    loaded = _read_yaml(write(tmp_path, text))
    assert loaded["outer"]["inner"] == {"rate": 0.2, "window_seconds": 60}
    assert loaded["reducer"] == {"rate": 0.2, "window_seconds": 30}


def test_directory_instead_of_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = check_config(capsys, "--config", str(tmp_path))
    assert code == 1
    assert f"{tmp_path}: cannot read" in err


def test_no_config_and_no_environment(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check_config(capsys)
    assert (code, out) == (1, "")
    assert err.splitlines()[0] == "distilld: invalid configuration:"
    assert "kafka: Field required" in err


def test_every_error_is_reported_not_only_the_first(tmp_path: Path) -> None:
    data = minimal()
    data["reducer"] = {"rate": 0, "window_seconds": -1}
    data["metrics"] = {"port": -1}
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, data))
    lines = str(info.value).splitlines()
    assert [line.split(":")[0] for line in lines] == ["reducer.rate", "reducer.window_seconds", "metrics.port"]


def test_non_utf8_file_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "distilld.yaml"
    path.write_bytes(b"kafka:\n  bootstrap_servers: \xff\xfe\n")
    code, _, err = check_config(capsys, "--config", str(path))
    assert code == 1
    assert str(path) in err


def test_underscore_key_is_refused_not_taken_as_a_settings_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = minimal()
    data["_env_prefix"] = "NOPE_"
    path = write(tmp_path, data)
    monkeypatch.setenv("DISTILLD_REDUCER__RATE", "0.5")
    with pytest.raises(ConfigError, match="_env_prefix"):
        load_settings(path)


@pytest.mark.parametrize("name", ["output_topic", "dlq_topic"])
def test_output_matched_by_input_pattern_is_refused(tmp_path: Path, name: str) -> None:
    data = minimal()
    data["kafka"].update(input_topics=[], input_pattern=r"^events\..*")
    data["kafka"][name] = "events.reduced"
    with pytest.raises(ConfigError, match=name):
        load_settings(write(tmp_path, data))


def test_an_output_the_anchored_pattern_does_not_match_is_accepted(tmp_path: Path) -> None:
    """The check matched 'app.*' unanchored, so 'distilled.app.events' counted as an input: the daemon subscribes
    with '^app.*', which does not read it."""
    data = minimal()
    data["kafka"].update(input_topics=[], input_pattern="app.*", output_topic="distilled.app.events")
    data["kafka"]["dlq_topic"] = "distilled.app.dlq"
    settings = load_settings(write(tmp_path, data))
    assert settings.kafka.subscription() == ["^app.*"] and not settings.kafka.reads("distilled.app.events")
    data["kafka"]["output_topic"] = "app.distilled"
    with pytest.raises(ConfigError, match=r"output_topic 'app\.distilled' is also an input topic"):
        load_settings(write(tmp_path, data))


def test_feature_typo_of_a_required_key_is_named(tmp_path: Path) -> None:
    data = minimal()
    data["features"] = [{"name": "g", "type": "categorical", "field": "g", "catgories": ["x"]}]
    with pytest.raises(ConfigError, match=r"features\[0\].*catgories"):
        load_settings(write(tmp_path, data))


def test_feature_entry_that_is_not_a_mapping_is_named_like_the_others(tmp_path: Path) -> None:
    data = minimal()
    data["features"].append("age")
    with pytest.raises(ConfigError, match=re.escape("features[1]")):
        load_settings(write(tmp_path, data))


def test_settings_is_the_model_check_config_validates(tmp_path: Path) -> None:
    """load_settings returns the pydantic-settings model, so the daemon reads exactly what was checked."""
    assert isinstance(load_settings(write(tmp_path, minimal())), Settings)


def test_check_config_prints_what_the_windows_cost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from distilld import DistilledProcessor, build_graders

    data = minimal()
    data["reducer"] = {"max_keys": 2000}
    code, _, err = check_config(capsys, "--config", str(write(tmp_path, data)))
    per_key = DistilledProcessor(build_graders(data["features"])).bytes_per_key
    assert code == 0
    assert f"windows: {per_key:,} bytes a key; up to {per_key * 2000 / 2**20:,.0f} MB an input partition" in err


# --- mistakes that used to end in a traceback ----------------------------------------------------------------------


def test_a_custom_grader_that_cannot_be_imported_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = minimal()
    data["features"] = [{"name": "x", "type": "custom", "function": "no_such_module_here:fn"}]
    code, _, err = check_config(capsys, "--config", str(write(tmp_path, data)))
    assert code == 1 and "Traceback" not in err
    assert "features[0] ('x'): ModuleNotFoundError: No module named 'no_such_module_here'" in err


def test_a_custom_features_reserved_category_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The review's cres.yaml: a custom categorical's ``__missing__`` passed the features' check, then
    check-config, run and reduce ended in a traceback when the engine built its encoder."""
    data = minimal()
    data["features"] = [
        {"name": "c", "type": "custom", "function": "builtins:str", "value_type": "categorical"}
        | {"categories": ["female", "__missing__"]}
    ]
    code, _, err = check_config(capsys, "--config", str(write(tmp_path, data)))
    assert code == 1 and "Traceback" not in err
    assert "features[0] ('c'): categories: " in err and "'__missing__'] reserved" in err, err


def test_an_environment_variable_that_is_not_json_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTILLD_KAFKA__INPUT_TOPICS", "events")  # a list needs ["events"]
    code, _, err = check_config(capsys, "--config", str(write(tmp_path, minimal())))
    assert code == 1 and "Traceback" not in err
    assert "DISTILLD_KAFKA__INPUT_TOPICS: not valid JSON" in err and "DISTILLD_* environment" in err
    assert """e.g. DISTILLD_KAFKA__INPUT_TOPICS='["people","other"]'""" in err, err


@pytest.mark.parametrize("field", ["output_topic", "dlq_topic", "state_topic"])
def test_a_topic_name_kafka_refuses_is_a_config_error(tmp_path: Path, field: str) -> None:
    data = minimal()
    data["kafka"][field] = "events out"
    with pytest.raises(ConfigError, match=rf"kafka\.{field}: 'events out' is not a valid Kafka topic name"):
        load_settings(write(tmp_path, data))


def test_variables_that_name_no_setting_are_found() -> None:
    from distilld.settings import unknown_env

    environ = {
        "DISTILLD_REDUCER_RATE": "0.5",  # one underscore: names nothing
        "DISTILLD_REDUCER__RATE": "0.2",
        "DISTILLD_KAFKA__CONSUMER__FETCH.MIN.BYTES": "1",  # a librdkafka passthrough: any key
        "DISTILLD_NOSUCH__THING": "1",
        "DISTILLD_TEST_BOOTSTRAP": "host:9092",  # the tooling's
        "PATH": "/bin",
    }
    assert unknown_env(environ=environ) == ["DISTILLD_NOSUCH__THING", "DISTILLD_REDUCER_RATE"]


@pytest.mark.parametrize(
    ("section", "values", "field"),
    [
        ("reducer", {"window_seconds": float("inf")}, "reducer.window_seconds"),
        ("processing", {"shutdown_timeout_s": float("inf")}, "processing.shutdown_timeout_s"),
        ("metrics", {"health_timeout_s": float("nan")}, "metrics.health_timeout_s"),
        ("metrics", {"host": "not a host"}, "metrics.host"),
    ],
)
def test_infinite_floats_and_a_bad_bind_address_are_refused_at_start_up(
    section: str, values: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_settings(None, **{**minimal(), section: values})


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "::1", "127.0.0.1", "distilld-0.distilld.svc.cluster.local", "host.example.com.", ""]
)
def test_bind_addresses_of_either_family_and_host_names_are_accepted(host: str) -> None:
    assert load_settings(None, **{**minimal(), "metrics": {"host": host}}).metrics.host == host


@pytest.mark.parametrize(
    ("kind", "key", "setting"),
    [("consumer", "group.id", "group_id"), ("producer", "bootstrap.servers", "bootstrap_servers"),
     ("producer", "transactional.id", "transactional_id")],
)  # fmt: skip
def test_passthrough_keys_that_have_a_setting_of_their_own_are_refused(
    tmp_path: Path, kind: str, key: str, setting: str
) -> None:
    """consumer: {group.id: x} won in the client while the state topic was named after kafka.group_id."""
    data = minimal()
    data["kafka"][kind] = {key: "x"}
    with pytest.raises(ConfigError, match=rf"kafka\.{kind}.*set kafka\.{setting} instead"):
        load_settings(write(tmp_path, data))


def test_a_bad_feature_entry_is_named_once_without_a_placeholder(tmp_path: Path) -> None:
    """It read "features: features[0] ('age'): entry: Input tag 'numerical' …"."""
    data = minimal()
    data["features"] = [{"name": "age", "type": "numerical"}]
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, data))
    assert str(e.value).startswith("features[0] ('age'): Input tag 'numerical'"), str(e.value)


def test_an_input_pattern_reads_topics_as_librdkafka_matches_them() -> None:
    """librdkafka matches a subscription regex anywhere in the name (POSIX regexec): '^orders|events'
    reads app-events, which sizing the state topic left out."""
    from distilld.settings import KafkaSettings

    kafka = KafkaSettings(bootstrap_servers="b:9092", group_id="g", output_topic="out", input_pattern="orders|events")
    assert kafka.reads("orders.eu") and kafka.reads("app-events") and not kafka.reads("payments")


def test_the_alias_of_bootstrap_servers_is_refused_in_passthrough_maps(tmp_path: Path) -> None:
    data = minimal()
    data["kafka"]["consumer"] = {"metadata.broker.list": "wrong:9092"}
    with pytest.raises(ConfigError, match=r"set kafka\.bootstrap_servers instead"):
        load_settings(write(tmp_path, data))


@pytest.mark.parametrize("protocol", ["consumer", "CONSUMER"])
def test_the_consumer_group_protocol_of_kip_848_is_refused_at_start_up_with_the_reason(
    tmp_path: Path, protocol: str
) -> None:
    """kafka.consumer {group.protocol: consumer} passed the configuration check, then the daemon's consumer failed
    to start with a traceback: librdkafka refuses partition.assignment.strategy (distilld sets cooperative-sticky)
    with the consumer protocol, whose assignment the brokers make."""
    data = minimal()
    data["kafka"]["consumer"] = {"group.protocol": protocol}
    with pytest.raises(ConfigError, match=r"kafka\.consumer.*'group\.protocol'.*partition\.assignment\.strategy"):
        load_settings(write(tmp_path, data))
    data["kafka"]["consumer"] = {"group.protocol": "classic"}
    assert load_settings(write(tmp_path, data)).kafka.consumer == {"group.protocol": "classic"}


# --- settings the engine would refuse: every bound of DistilledProcessor is a setting's -----------------------------


def _engine(settings: Settings) -> Any:
    """The reducer as the daemon builds it from the settings (daemon/loop.py ``_new_reducer``); ``reduce`` and
    ``evaluate`` pass the same reducer settings, and check-config the window, the rate and the panes."""
    from distilld import DistilledProcessor, build_graders

    r = settings.reducer
    return DistilledProcessor(
        build_graders(settings.features),
        r.window_seconds,
        r.rate,
        batch_size=settings.processing.batch_max_records,
        max_keys=r.max_keys,
        panes=r.panes,
        seed=r.seed,
    )


REFUSED_BY_THE_ENGINE: list[tuple[str, dict[str, Any], str]] = [
    ("seed-past-64-bits", {"reducer": {"seed": 10**23}}, "reducer.seed"),
    ("seed-2**64", {"reducer": {"seed": 2**64}}, "reducer.seed"),
    ("seed-below-int64", {"reducer": {"seed": -(2**63) - 1}}, "reducer.seed"),
    ("window-a-microsecond", {"reducer": {"window_seconds": 1e-6}}, "reducer: window_seconds"),
    ("pane-under-a-microsecond", {"reducer": {"window_seconds": 0.000999, "panes": 1000}}, "reducer: window_seconds"),
    ("max-keys-past-a-float", {"reducer": {"max_keys": 10**400}}, "reducer.max_keys"),
]


@pytest.mark.parametrize(
    ("values", "field"), [e[1:] for e in REFUSED_BY_THE_ENGINE], ids=[e[0] for e in REFUSED_BY_THE_ENGINE]
)
def test_reducer_settings_the_engine_refuses_are_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], values: dict[str, Any], field: str
) -> None:
    """A seed past 64 bits, or a pane shorter than a microsecond, passed check-config and then ended
    run, reduce and evaluate in a traceback from DistilledProcessor's own checks."""
    with pytest.raises(ConfigError, match=re.escape(field)):
        load_settings(None, **{**minimal(), **values})
    code, out, err = check_config(capsys, "--config", str(write(tmp_path, {**minimal(), **values})))
    assert (code, out) == (1, "") and field in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "env",
    [{"DISTILLD_REDUCER__SEED": str(10**23)}, {"DISTILLD_REDUCER__WINDOW_SECONDS": "1e-6"}],
    ids=["seed", "window"],
)
def test_bad_reducer_settings_from_the_environment_stop_reduce_with_a_config_error(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """The review's repro: ``distilld reduce`` with either variable ended in a traceback."""
    import subprocess
    import sys

    (tmp_path / "c.yaml").write_text("features: [{name: g, type: categorical, field: g, categories: [a]}]\n")
    (tmp_path / "a.ndjson").write_text('{"g": "a"}\n')
    run = subprocess.run(
        [sys.executable, "-m", "distilld", "reduce", str(tmp_path / "a.ndjson"), "-o", str(tmp_path / "o.ndjson"),
         "-c", str(tmp_path / "c.yaml"), "-q"],
        capture_output=True, text=True, env={**os.environ, **env}, cwd=CONFIG.parent, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1 and "Traceback" not in run.stderr and "reducer" in run.stderr, run.stderr


# each reducer setting at the edges of what it takes, and the processing batch the daemon passes as batch_size
EDGES: list[dict[str, dict[str, Any]]] = [
    {"reducer": {"seed": -(2**63)}},
    {"reducer": {"seed": 2**64 - 1}},
    {"reducer": {"seed": 2**64 - 1, "rate": 1.0}},
    {"reducer": {"rate": 5e-324}},
    {"reducer": {"window_seconds": 1e-6, "panes": 1}},
    {"reducer": {"window_seconds": 12e-6, "panes": 12}},
    {"reducer": {"window_seconds": 0.001, "panes": 1000}},
    {"reducer": {"window_seconds": 1e308, "panes": 1000}},
    {"reducer": {"max_keys": 1}},
    {"reducer": {"max_keys": 2**63 - 1}},
    {"reducer": {"panes": 1}},
    {"processing": {"batch_max_records": 1}},
    {"processing": {"batch_max_records": 1_000_000}},
]


@pytest.mark.parametrize("values", EDGES, ids=lambda v: json.dumps(v)[:60])
def test_reducer_settings_at_their_edges_build_the_engine(values: dict[str, Any]) -> None:
    settings = load_settings(None, **{**minimal(), **values})
    assert _engine(settings).seed == settings.reducer.seed


@given(
    window=st.floats(min_value=1e-9, max_value=1e-2) | st.sampled_from([1e-6, 12e-6, 1e-3, 3e-6]),
    panes=st.integers(min_value=1, max_value=1000),
    seed=st.integers(min_value=-(2**70), max_value=2**70),
    max_keys=st.integers(min_value=-2, max_value=2**70),
)
@hypothesis.settings(max_examples=300, deadline=None)
def test_reducer_settings_either_are_refused_or_build_the_engine(
    window: float, panes: int, seed: int, max_keys: int
) -> None:
    """Whatever the values, check-config's verdict is the engine's: no setting passes to fail later."""
    values = {"window_seconds": window, "panes": panes, "seed": seed, "max_keys": max_keys}
    try:
        loaded = load_settings(None, **{**minimal(), "reducer": values})
    except ConfigError as e:
        assert str(e).startswith("reducer"), str(e)
        return
    _engine(loaded)


def test_an_input_pattern_that_does_not_compile_once_anchored_is_a_config_error(tmp_path: Path) -> None:
    """The subscription anchors the pattern with ^: (?i)app.* then has its flag out of place, and loading
    the config raised re.error with a traceback."""
    data = minimal()
    del data["kafka"]["input_topics"]
    data["kafka"]["input_pattern"] = "(?i)app.*"
    with pytest.raises(ConfigError, match="input_pattern: not valid once anchored with"):
        load_settings(write(tmp_path, data))
