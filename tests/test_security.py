"""Security settings: TLS files, SASL credentials from the environment or files, never printed."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer
from cryptography.hazmat.primitives import serialization

from distilld.daemon.clients import consumer_config, producer_config
from distilld.settings import ConfigError, load_settings, masked

from .kafka_tools import DaemonProcess, daemon_config
from .tls_tools import Pki, make_pki

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
    pki = make_pki(tmp_path)
    ca, cert, key, pw = pki.ca, pki.client_cert, pki.client_key, tmp_path / "sasl-password"
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
    config["kafka"] |= {"security_protocol": "SASL_SSL", "sasl": {"username": "distilld"}}
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


def _encrypted_key(pki: Pki, password: bytes) -> Path:
    """The client key of ``pki``, encrypted with ``password``."""
    key = serialization.load_pem_private_key(pki.client_key.read_bytes(), None)
    path = pki.client_key.with_name("encrypted.key")
    encryption = serialization.BestAvailableEncryption(password)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    return path


@pytest.mark.parametrize("case", ["wrong key_password", "no key_password", "empty CA file", "a keystore not there"])
def test_tls_files_the_clients_cannot_load_are_config_errors(tmp_path: Path, case: str) -> None:
    """check-config passed them, then librdkafka refused to create the daemon's clients: a traceback at start-up.
    The passthrough is checked with the clients' security protocol (a plaintext probe loaded no file)."""
    pki = make_pki(tmp_path)
    tls = {"certificate_location": str(pki.client_cert), "key_location": str(_encrypted_key(pki, b"right"))}
    kafka: dict[str, Any] = {"security_protocol": "SSL"}
    if case == "wrong key_password":
        kafka["ssl"], message = {**tls, "key_password": "wrong"}, r"kafka\.ssl: certificate_location, key_location"
    elif case == "no key_password":
        kafka["ssl"], message = tls, r"kafka\.ssl: .*an encrypted key needs its key_password"
    elif case == "empty CA file":
        (tmp_path / "empty.pem").write_text("")
        kafka["ssl"], message = {"ca_location": str(tmp_path / "empty.pem")}, r"kafka\.ssl: ca_location: no CA cert"
    else:
        kafka["consumer"] = {"ssl.keystore.location": "/nonexistent/ks.p12", "ssl.keystore.password": "pw"}
        message = r"kafka\.consumer: Failed to create consumer: Failed to open ssl\.keystore\.location"
    with pytest.raises(ConfigError, match=message):
        load_settings(None, **_kafka(**kafka))
    right = load_settings(None, **_kafka(security_protocol="SSL", ssl={**tls, "key_password": "right"}))
    Producer({**producer_config(right), "log_level": 0}).flush(0)  # the key opens: the clients start


@pytest.mark.parametrize(
    "key", ["security.protocol", "sasl.mechanism", "sasl.mechanisms", "sasl.username", "sasl.password"]
)
def test_a_passthrough_map_cannot_give_one_client_its_own_security(key: str) -> None:
    """kafka.consumer {security.protocol: SASL_SSL} made the consumer use SASL and the producer plaintext, where
    kafka.security_protocol applies to every client; sasl.mechanisms: GSSAPI (not built in) made run fail."""
    setting = "security_protocol" if key == "security.protocol" else key.rstrip("s")
    with pytest.raises(ConfigError, match=rf"kafka\.producer: '{re.escape(key)}': set kafka\.{setting} instead"):
        load_settings(None, **_kafka(producer={key: "GSSAPI"}))


def test_run_reports_kafka_clients_that_cannot_be_created_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The last resort, for what the settings' checks miss: one line, exit code 1."""
    from confluent_kafka import KafkaError, KafkaException

    import distilld.daemon.loop
    from distilld.cli import main

    def refused(settings: object) -> None:
        raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "Failed to create producer: no provider"))

    monkeypatch.setattr(distilld.daemon.loop, "Daemon", refused)
    config = tmp_path / "distilld.yaml"
    config.write_text(yaml.safe_dump({**BASE, "metrics": {"port": 0}}))
    assert main(["run", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "distilld: cannot create the Kafka clients: Failed to create producer: no provider" in err, err


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://user:hunter2#x@reg:8081", "an '@' after the host: percent-encode the password"),
        ("https://user:a/b@reg:8081", "an '@' after the host: percent-encode the password"),
        ("https://user:a?b@reg:8081", "an '@' after the host: percent-encode the password"),
        ("http://", "no host"),
        ("https://reg:abc", "the port must be a number from 1 to 65535"),
        ("https://reg:99999", "the port must be a number from 1 to 65535"),
        ("https://reg-a:8081,https://reg-b:0", "the port must be a number from 1 to 65535"),
    ],
)
def test_a_registry_url_the_client_would_misread_is_refused_without_showing_it(url: str, message: str) -> None:
    """A '#', '?' or '/' in the password ended the host early: check-config showed the password unmasked."""
    with pytest.raises(ConfigError, match=r"format\.schema_registry\.url: " + re.escape(message)) as e:
        load_settings(None, **BASE, format={"value": "avro_confluent", "schema_registry": {"url": url}})
    assert "hunter2" not in str(e.value)


def test_a_percent_encoded_password_reaches_the_client_and_is_masked() -> None:
    url = "https://user:hunter2%23x%2F@reg:8081"
    settings = load_settings(None, **BASE, format={"value": "avro_confluent", "schema_registry": {"url": url}})
    registry = settings.format.schema_registry
    assert registry is not None and registry.client_config()["basic.auth.user.info"] == "user:hunter2#x/"
    assert masked(settings)["format"]["schema_registry"]["url"] == "https://user:***@reg:8081"
    from distilld.settings import _mask

    assert _mask("https://user:hunter2#x@reg:8081") == "https://user:***@reg:8081", "however the password reads"


@pytest.mark.parametrize(
    ("kafka", "message"),
    [
        ({"ssl": {"key_password": "p"}}, "kafka.ssl is set but kafka.security_protocol is PLAINTEXT: SSL and"),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl": {"username": "u", "password": "p"},
                "ssl": {"key_password": "p"},
            },
            "kafka.ssl is set but kafka.security_protocol is SASL_PLAINTEXT: SSL and SASL_SSL use it",
        ),
        ({"sasl": {"username": "u", "password": "p"}}, "kafka.sasl is set but kafka.security_protocol is PLAINTEXT"),
        (
            {"security_protocol": "SSL", "sasl": {"username": "u", "password": "p"}},
            "kafka.sasl is set but kafka.security_protocol is SSL: SASL_PLAINTEXT and SASL_SSL use it",
        ),
    ],
)
def test_a_security_section_the_protocol_does_not_use_is_refused(kafka: dict[str, Any], message: str) -> None:
    """It was ignored in silence: the clients connected without the TLS files or the credentials given."""
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        load_settings(None, **_kafka(**kafka))
    load_settings(None, **_kafka(ssl={}))  # an empty section, as config/distilld.yaml has, sets nothing
