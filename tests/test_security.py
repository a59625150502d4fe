"""Security settings: TLS files, SASL credentials from the environment or files, never printed."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from distilld.daemon.clients import consumer_config, producer_config
from distilld.settings import ConfigError, load_settings, masked

from .kafka_tools import DaemonProcess, daemon_config
from .tls_tools import make_pki

BASE: dict[str, Any] = {
    "kafka": {
        "bootstrap_servers": "b:9092",
        "group_id": "g",
        "input_topics": ["t"],
        "output_topic": "o",
        "dlq_topic": "d",
    },
    "features": [{"name": "g", "type": "categorical", "categories": ["a"]}],
}
PASSWORD = "s3cret-Pa55word-never-printed"


def _kafka(**kafka: Any) -> dict[str, Any]:
    return {**BASE, "kafka": {**BASE["kafka"], **kafka}}


def test_sasl_and_tls_become_librdkafka_settings(tmp_path: Path) -> None:
    ca, cert, key, pw = (tmp_path / n for n in ("ca.pem", "client.pem", "client.key", "sasl-password"))
    for f in (ca, cert, key):
        f.write_text("-----BEGIN-----\n")
    pw.write_text(PASSWORD + "\n")
    settings = load_settings(
        None,
        **_kafka(
            security_protocol="SASL_SSL",
            ssl={"ca_location": str(ca), "certificate_location": str(cert), "key_location": str(key)},
            sasl={"mechanism": "SCRAM-SHA-512", "username": "distilld", "password_file": str(pw)},
        ),
    )
    for conf in (consumer_config(settings), producer_config(settings)):
        assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanisms"] == "SCRAM-SHA-512"
        assert conf["sasl.username"] == "distilld" and conf["sasl.password"] == PASSWORD, "read from the file"
        assert conf["ssl.ca.location"] == str(ca) and conf["ssl.key.location"] == str(key)
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.model_dump(mode="json"))


@pytest.mark.parametrize(
    ("kafka", "message"),
    [
        ({"security_protocol": "SASL_SSL"}, r"kafka: .*needs a sasl section"),
        ({"security_protocol": "SASL_PLAINTEXT"}, r"kafka: .*SASL_PLAINTEXT needs a sasl section"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl": {"mechanism": "PLAIN"}}, r"kafka\.sasl: .*needs username"),
        ({"sasl": {"username": "u", "password_file": "/nope/pw"}}, r"kafka\.sasl\.password_file: .*no such file"),
        ({"ssl": {"certificate_location": __file__}}, r"kafka\.ssl: .*needs both certificate_location and key_loc"),
        ({"ssl": {"key_location": __file__}}, r"kafka\.ssl: .*needs both certificate_location and key_loc"),
        ({"ssl": {"ca_location": "/nope/ca.pem"}}, r"kafka\.ssl\.ca_location: .*no such file"),
        ({"security_protocol": "TLS"}, r"kafka\.security_protocol: .*'SASL_SSL'"),
        ({"sasl": {"mechanism": "OAUTHBEARER", "oauthbearer_method": "oidc"}}, r"oidc needs"),
        (
            {
                "sasl": {
                    "mechanism": "OAUTHBEARER",
                    "oauthbearer_method": "oidc",
                    "oauthbearer_client_id": "distilld",
                    "oauthbearer_token_endpoint_url": "https://idp.example/token",
                }
            },
            r"kafka\.sasl: .*oidc needs .*_client_secret",
        ),
        ({"sasl": {"mechanism": "OAUTHBEARER"}}, r"kafka\.sasl: .*unsecured JWT .*needs oauthbearer_config"),
        # the file won silently over a password from the environment, which the README says wins
        ({"sasl": {"username": "u", "password": "p", "password_file": __file__}}, r"password and password_file"),
        (
            {"ssl": {"key_password": "p", "key_password_file": __file__}},
            r"kafka\.ssl: .*key_password and key_password_file are both set",
        ),
    ],
)
def test_security_errors_name_the_field(kafka: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, **_kafka(**kafka))


def test_an_unsecured_jwt_client_connects_to_the_broker() -> None:
    """OAUTHBEARER's default method: distilld has no token callback, so librdkafka must make the
    unsecured JWT itself; otherwise it waits for a token forever and never opens a connection."""
    with socket.create_server(("127.0.0.1", 0)) as broker:
        broker.settimeout(10)
        settings = load_settings(
            None,
            **_kafka(
                bootstrap_servers=f"127.0.0.1:{broker.getsockname()[1]}",
                security_protocol="SASL_PLAINTEXT",
                sasl={"mechanism": "OAUTHBEARER", "oauthbearer_config": "principal=distilld"},
            ),
        )
        producer = Producer({**producer_config(settings), "log_level": 0})
        producer.poll(0)
        broker.accept()[0].close()  # socket.timeout (TimeoutError) when no client connects
        producer.flush(0)


def test_registry_tls_files_the_client_cannot_load_are_configuration_errors(tmp_path: Path) -> None:
    """Not a traceback, nor (an SSLError being an OSError) 'cannot serve metrics' at start-up."""
    pki = make_pki(tmp_path / "pki")
    good = {"ssl_ca_location": str(pki.ca), "ssl_certificate_location": str(pki.client_cert)}
    good["ssl_key_location"] = str(pki.client_key)
    load_settings(None, **BASE, format={"value": "avro_confluent", "schema_registry": {"url": "https://r", **good}})
    for bad, message in (
        ({"ssl_key_location": str(pki.client_key)}, r"ssl_key_location needs ssl_certificate_location"),
        ({"ssl_certificate_location": str(pki.client_cert)}, r"cannot load the certificate and key"),
        ({**good, "ssl_key_location": str(pki.server_key)}, r"cannot load the certificate and key"),
        ({"ssl_ca_location": __file__}, r"ssl_ca_location: no CA certificate"),
    ):
        with pytest.raises(ConfigError, match=r"format\.schema_registry: .*" + message):
            load_settings(
                None, **BASE, format={"value": "avro_confluent", "schema_registry": {"url": "https://r", **bad}}
            )


def test_check_config_masks_the_password_of_a_registry_url() -> None:
    """The registry client takes https://user:password@host as basic auth: a secret in a plain str."""
    url = f"https://distilld:{PASSWORD}@registry-a:8081,https://distilld:p@{PASSWORD}@registry-b:8081"
    settings = load_settings(None, **BASE, format={"value": "avro_confluent", "schema_registry": {"url": url}})
    shown = masked(settings)["format"]["schema_registry"]["url"]
    assert shown == "https://distilld:***@registry-a:8081,https://distilld:***@registry-b:8081"


def test_check_config_and_the_daemon_never_print_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets from the environment and from a file: check-config masks them, and a daemon
    that cannot authenticate (the test broker has no SASL) logs without them."""
    key_password = tmp_path / "key-password"
    key_password.write_text("key-" + PASSWORD)
    config = daemon_config("127.0.0.1:1", "t", "g", metrics={"port": 0})
    config["kafka"] |= {"security_protocol": "SASL_PLAINTEXT", "sasl": {"username": "distilld"}}
    config["kafka"]["ssl"] = {"key_password_file": str(key_password)}
    monkeypatch.setenv("DISTILLD_KAFKA__SASL__PASSWORD", PASSWORD)
    d = DaemonProcess(tmp_path, config, "secure")
    assert PASSWORD not in d.config_path.read_text(), "the file holds no secret: the environment does"
    shown = subprocess.run(
        [sys.executable, "-m", "distilld", "check-config", "--config", str(d.config_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert '"password": "***"' in shown.stdout
    d.start()
    deadline = time.monotonic() + 60
    while "no broker answers at" not in d.log():  # it tries to reach the broker, and logs that it cannot
        assert time.monotonic() < deadline and d.proc is not None and d.proc.poll() is None, d.log()
        time.sleep(0.2)
    assert d.stop() == 0, d.log()
    output = shown.stdout + shown.stderr + d.log()
    for secret in (PASSWORD, "key-" + PASSWORD):
        assert secret not in output


def test_the_consumer_does_not_idle_a_second_after_its_queue_fills_unless_told_to() -> None:
    """librdkafka's fetch.queue.backoff.ms (1000 ms by default) is the daemon's 50 ms; a user setting wins."""
    assert consumer_config(load_settings(None, **BASE))["fetch.queue.backoff.ms"] == 50
    mine = load_settings(None, **_kafka(consumer={"fetch.queue.backoff.ms": 500}))
    assert consumer_config(mine)["fetch.queue.backoff.ms"] == 500


def test_the_state_stores_clients_reach_the_brokers_as_the_consumer_does() -> None:
    """A TLS or SASL property that only the kafka.consumer passthrough sets (no kafka.ssl / kafka.sasl
    setting has it) reached the consumer but not the state store's reader and admin client."""
    from distilld.daemon.loop import Daemon

    reach = {"ssl.endpoint.identification.algorithm": "none", "socket.keepalive.enable": True}
    settings = load_settings(
        None, **_kafka(security_protocol="SSL", consumer={**reach, "fetch.wait.max.ms": 10}), metrics={"port": 0}
    )
    state = Daemon(settings).state.client_conf
    assert {k: state[k] for k in reach} == reach and state["security.protocol"] == "SSL"
    assert "fetch.wait.max.ms" not in state, "only how to reach the brokers, not how to consume"
