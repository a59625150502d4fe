"""The daemon's configuration: one typed model, from a YAML file and the environment.

Every setting can come from the file or from the environment (prefix
``DISTILLD_``, ``__`` between levels: ``DISTILLD_KAFKA__BOOTSTRAP_SERVERS``);
the environment wins. Errors are reported before anything connects, each
with the field's dotted name and the reason (:class:`ConfigError`).
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict
from urllib.parse import unquote, urlsplit

import yaml
from confluent_kafka import Consumer, KafkaException, Producer
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from distilld.codecs.avro_schema import SchemaFileError, load_schema
from distilld.features import FeatureConfigError, build_graders
from distilld.fieldpath import parse_path
from distilld.filters import FilterSettings, check_regex

__all__ = ["ConfigError", "EngineSettings", "Settings", "load_model", "load_settings", "masked"]

SECRET_WORDS = ("password", "passphrase", "secret", "token", "sasl.oauthbearer.config", "pem", "private.key")


class ConfigError(ValueError):
    """The configuration is invalid; ``str()`` names each bad field and why."""


class _Section(BaseModel):
    # an infinite or NaN float (YAML's .inf) would pass every bound and fail later, inside the loop
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


LibrdkafkaValue = str | int | float | bool
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


def _read_secret(path: str | None, what: str) -> SecretStr | None:
    if path is None:
        return None
    try:
        return SecretStr(Path(path).read_text(encoding="utf-8").strip())
    except OSError as e:
        raise ValueError(f"{what}: cannot read {path}: {e.strerror or e}") from None


def _one_of(secret: SecretStr | None, name: str) -> None:
    """A secret given both itself and as ``{name}_file``: which one is meant cannot be told."""
    if secret is not None:
        raise ValueError(f"{name} and {name}_file are both set (one from a DISTILLD_ variable?): keep one of them")


# librdkafka properties that have a setting of their own, which the state topic's name, the
# transactional id and the chart's autoscaler are derived from; and the security every client
# shares (consumer, producer, state reader, admin client): in one passthrough map it was one
# client's only
_OWNED = {
    "bootstrap.servers": "bootstrap_servers",
    "metadata.broker.list": "bootstrap_servers",  # librdkafka's alias of bootstrap.servers
    "group.id": "group_id",
    "transactional.id": "transactional_id",
    "security.protocol": "security_protocol",
    "sasl.mechanism": "sasl.mechanism",
    "sasl.mechanisms": "sasl.mechanism",  # librdkafka's alias of sasl.mechanism
    "sasl.username": "sasl.username",
    "sasl.password": "sasl.password",
}


def _librdkafka_check(
    kind: str, conf: dict[str, LibrdkafkaValue], security: dict[str, Any] | None
) -> dict[str, LibrdkafkaValue]:
    """librdkafka's own check of passthrough settings (unknown property, bad value, a TLS file it
    cannot load), by creating a client that has no brokers to connect to: no connection is made.
    ``security`` is how the daemon's clients reach the brokers (kafka.security_protocol, ssl, sasl),
    None when those settings are invalid themselves (their error says so): plaintext then."""
    if not conf:
        return conf
    owned = [f"{key!r}: set kafka.{setting} instead" for key, setting in _OWNED.items() if key in conf]
    if owned:  # the passthrough would win in the client while the rest of distilld used kafka.*
        raise ValueError("; ".join(owned))
    if kind == "consumer" and str(conf.get("group.protocol", "classic")).lower() != "classic":
        raise ValueError(
            f"'group.protocol': {conf['group.protocol']} (KIP-848) is not supported: distilld sets "
            "partition.assignment.strategy cooperative-sticky, which librdkafka refuses with group.protocol=consumer "
            "(the brokers assign, see group.remote.assignor), and its rebalance handling is tested with the classic "
            "protocol only; leave group.protocol unset (classic)"
        )
    refused = _refused(kind, {**(security or {"security.protocol": "plaintext"}), **conf})
    if refused is not None:
        raise ValueError(refused)
    misread = []
    for key, value in conf.items():
        leading = _LEADING_DIGITS.match(value) if isinstance(value, str) else None
        if leading is not None and not _DECIMAL.fullmatch(str(value)) and _integer_property(kind, key):
            misread.append(f"kafka.{kind}.{key}: {_misread(str(value), leading.group().strip())}")
    if misread:
        raise ValueError("; ".join(misread))
    return conf


def _misread(value: str, leading: str) -> str:
    """How librdkafka's strtol (base 0) reads a text that is not a plain decimal number."""
    body = value.strip().lstrip("+-")
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", body):
        return f"{value!r} is hexadecimal: give it in decimal (the daemon reads the settings it uses as decimal)"
    if re.fullmatch(r"0\d+", body):
        return f"{value!r} has a leading zero, which librdkafka reads as an octal number: give it without"
    return f"{value!r} is not a whole number (librdkafka would read the digits it starts with only, {leading})"


def _refused(kind: str, conf: dict[str, Any]) -> str | None:
    """Why librdkafka refuses to create a ``kind`` client with ``conf`` (none is reached), or None."""
    try:
        if kind == "consumer":
            Consumer({"group.id": "distilld-config-check", **conf, "log_level": 0}).close()
        else:
            Producer({**conf, "log_level": 0}).flush(0)
    except KafkaException as e:
        return str(e.args[0].str())
    except (TypeError, ValueError) as e:  # confluent-kafka's own checks (e.g. a callback setting)
        return str(e)
    return None


_LEADING_DIGITS = re.compile(r"\s*[+-]?\d+")
_DECIMAL = re.compile(r"\s*[+-]?(0|[1-9]\d*)\s*")  # as librdkafka's strtol (base 0) and int() both read it


def _integer_property(kind: str, key: str) -> bool:
    """Whether librdkafka reads ``key`` as an integer, with C's strtol, which stops at the first character that
    is not a digit: "300000ms" is 300000, "1e6" (text in YAML) is 1, where the daemon's own int() of the settings
    it reads (batch.size, max.poll.interval.ms, …) failed. A text property takes "x"; a decimal one (linger.ms)
    reads "-1e9999" as -inf, which its range refuses in those words."""
    if _refused(kind, {key: "x"}) is None:
        return False
    refused = _refused(kind, {key: "-1e9999"})
    return refused is None or "-inf" not in refused


_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def _topic(value: str | None) -> str | None:
    """Kafka's rule for topic names; a broker refuses any other name, record by record."""
    if value is not None and (not _TOPIC.match(value) or value in (".", "..")):
        raise ValueError(f"{value!r} is not a valid Kafka topic name (letters, digits, '.', '_', '-'; at most 249)")
    return value


def _existing(path: str | None) -> str | None:
    if path is not None and not Path(path).is_file():
        raise ValueError(f"no such file: {path}")
    return path


class SslSettings(_Section):
    ca_location: str | None = Field(default=None, description="CA certificate(s) to verify the brokers (PEM file)")
    certificate_location: str | None = Field(default=None, description="client certificate, for mutual TLS (PEM)")
    key_location: str | None = Field(default=None, description="client private key, for mutual TLS (PEM)")
    key_password: SecretStr | None = Field(default=None, description="the key's password")
    key_password_file: str | None = Field(default=None, description="a file holding the key's password")

    @field_validator("ca_location", "certificate_location", "key_location", "key_password_file")
    @classmethod
    def _files(cls, value: str | None) -> str | None:
        return _existing(value)

    @model_validator(mode="after")
    def _pair(self) -> SslSettings:
        if bool(self.certificate_location) != bool(self.key_location):
            raise ValueError("mutual TLS needs both certificate_location and key_location")
        if self.key_password_file:
            _one_of(self.key_password, "key_password")
            self.key_password = _read_secret(self.key_password_file, "key_password_file")
        return self

    @model_validator(mode="after")
    def _load(self) -> SslSettings:
        """The files loaded as the clients load them (OpenSSL both): a CA file without a certificate, or a key
        its password does not open, made librdkafka refuse to create the daemon's clients, after check-config."""
        try:
            if self.ca_location:
                ssl.create_default_context(cafile=self.ca_location)
        except ssl.SSLError as e:
            raise ValueError(f"ca_location: no CA certificate in {self.ca_location} ({e})") from None
        if self.certificate_location and self.key_location:
            password = self.key_password.get_secret_value() if self.key_password is not None else ""
            try:  # a password even when none is given: None would ask for one on the terminal
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
                    self.certificate_location, self.key_location, password=lambda: password
                )
            except ssl.SSLError as e:
                raise ValueError(
                    "certificate_location, key_location, key_password: cannot load the certificate and key (an "
                    f"encrypted key needs its key_password) ({e})"
                ) from None
        return self


class SaslSettings(_Section):
    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] = Field(
        default="PLAIN", description="PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 | OAUTHBEARER"
    )
    username: str | None = Field(default=None, description="PLAIN and SCRAM user")
    password: SecretStr | None = Field(default=None, description="PLAIN and SCRAM password")
    password_file: str | None = Field(default=None, description="a file holding the password (a mounted Secret)")
    oauthbearer_config: SecretStr | None = Field(
        default=None, description="OAUTHBEARER: librdkafka's sasl.oauthbearer.config"
    )
    oauthbearer_method: Literal["default", "oidc"] = Field(default="default", description="OAUTHBEARER token source")
    oauthbearer_token_endpoint_url: str | None = Field(default=None, description="oidc: the token endpoint")
    oauthbearer_client_id: str | None = Field(default=None, description="oidc: the client id")
    oauthbearer_client_secret: SecretStr | None = Field(default=None, description="oidc: the client secret")

    @field_validator("password_file")
    @classmethod
    def _file(cls, value: str | None) -> str | None:
        return _existing(value)

    @model_validator(mode="after")
    def _credentials(self) -> SaslSettings:
        if self.password_file:
            _one_of(self.password, "password")
            self.password = _read_secret(self.password_file, "password_file")
        if self.mechanism != "OAUTHBEARER" and not (self.username and self.password):
            raise ValueError(f"{self.mechanism} needs username and password (or password_file)")
        if self.mechanism == "OAUTHBEARER" and self.oauthbearer_method == "default" and not self.oauthbearer_config:
            raise ValueError(
                "OAUTHBEARER's default method is librdkafka's unsecured JWT (tests only): it needs oauthbearer_config "
                "('principal=…'); an identity provider needs oauthbearer_method: oidc"
            )
        if self.oauthbearer_method == "oidc" and not (
            self.oauthbearer_token_endpoint_url and self.oauthbearer_client_id and self.oauthbearer_client_secret
        ):
            raise ValueError("oidc needs oauthbearer_token_endpoint_url, oauthbearer_client_id and _client_secret")
        return self


def _security_config(protocol: str, tls: SslSettings, sasl: SaslSettings | None) -> dict[str, Any]:
    """librdkafka's settings of how every client reaches the brokers (secrets revealed here only)."""
    conf: dict[str, Any] = {"security.protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        for name in ("ca_location", "certificate_location", "key_location"):
            if getattr(tls, name):
                conf[f"ssl.{name.replace('_', '.')}"] = getattr(tls, name)
        if tls.key_password is not None:
            conf["ssl.key.password"] = tls.key_password.get_secret_value()
    if sasl is not None and protocol.startswith("SASL"):
        conf["sasl.mechanisms"] = sasl.mechanism
        if sasl.mechanism == "OAUTHBEARER":
            conf["sasl.oauthbearer.method"] = sasl.oauthbearer_method
            if sasl.oauthbearer_method == "default":  # no token callback: without it no client ever connects
                conf["enable.sasl.oauthbearer.unsecure.jwt"] = True
            if sasl.oauthbearer_config is not None:
                conf["sasl.oauthbearer.config"] = sasl.oauthbearer_config.get_secret_value()
            if sasl.oauthbearer_method == "oidc":
                conf["sasl.oauthbearer.token.endpoint.url"] = sasl.oauthbearer_token_endpoint_url
                conf["sasl.oauthbearer.client.id"] = sasl.oauthbearer_client_id
                assert sasl.oauthbearer_client_secret is not None
                conf["sasl.oauthbearer.client.secret"] = sasl.oauthbearer_client_secret.get_secret_value()
        else:
            assert sasl.password is not None
            conf["sasl.username"] = sasl.username
            conf["sasl.password"] = sasl.password.get_secret_value()
    return conf


class KafkaSettings(_Section):
    bootstrap_servers: Annotated[str, Field(min_length=1, description="host:port[,host:port…] of the brokers")]
    group_id: str = Field(min_length=1, description="consumer group, one per deployment (it names the state topic too)")
    input_topics: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="topics to read (or input_pattern)"
    )
    input_pattern: str | None = Field(
        default=None,
        description="regex of topics to read, POSIX extended as librdkafka reads it (instead of input_topics)",
    )
    output_topic: Annotated[str, Field(min_length=1, description="where selected records go")]
    dlq_topic: str | None = Field(
        default=None,
        description="required with processing.on_error: dlq (the default): where undecodable records, and records "
        "the output topic refuses, go",
    )
    state_topic: str | None = Field(
        default=None,
        min_length=1,
        description="compacted topic of reducer snapshots (default <group_id>.distilld-state)",
    )
    state_partitions: int | None = Field(
        default=None,
        ge=1,
        description="partitions of a state topic distilld creates (default: the widest input's, once one exists)",
    )
    transactional_id: str | None = Field(
        default=None, min_length=1, description="exactly_once: producer id (default <group_id>-<hostname>-<pid>)"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL"
    )
    ssl: SslSettings = Field(default_factory=lambda: SslSettings(), description="TLS files (SSL, SASL_SSL)")
    sasl: SaslSettings | None = Field(default=None, description="SASL credentials (SASL_PLAINTEXT, SASL_SSL)")
    consumer: dict[str, LibrdkafkaValue] = Field(
        default_factory=dict,
        description="extra librdkafka consumer settings (`group.protocol: consumer`, KIP-848, is refused: librdkafka"
        " refuses it with the cooperative-sticky assignor distilld sets, and distilld's rebalances are tested with the"
        " classic protocol only)",
    )
    producer: dict[str, LibrdkafkaValue] = Field(default_factory=dict, description="extra librdkafka producer settings")

    @field_validator("consumer", "producer")
    @classmethod
    def _passthrough(cls, value: dict[str, LibrdkafkaValue], info: ValidationInfo) -> dict[str, LibrdkafkaValue]:
        # checked with the clients' security (a TLS file or a SASL provider these settings name); the fields
        # before this one, when they are valid (a SASL protocol without its section is _security's error)
        protocol, tls, sasl = (info.data.get(k) for k in ("security_protocol", "ssl", "sasl"))
        security = None
        if protocol is not None and tls is not None and (sasl is not None or not protocol.startswith("SASL")):
            security = _security_config(protocol, tls, sasl)
        return _librdkafka_check(str(info.field_name), value, security)

    @field_validator("input_pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        check_regex(value)
        if value is None:
            return value
        if not value.startswith("^"):
            try:  # as it is subscribed: anchored (an inline flag such as (?i) then no longer comes first)
                re.compile("^" + value)
            except re.error as e:
                raise ValueError(f"not valid once anchored with ^, as the subscription is ({e})") from None
        # librdkafka compiles the subscription itself, POSIX extended: Python's (?:…), lookarounds and
        # inline flags made subscribe() fail in the running daemon (a consumer without brokers connects nowhere)
        consumer = Consumer({"group.id": "distilld-config-check", "log_level": 0})
        try:
            consumer.subscribe(["^" + value.removeprefix("^")])
        except KafkaException:
            raise ValueError(
                "librdkafka's regex syntax (POSIX extended) does not accept it: no (?:...), lookarounds or inline "
                "flags such as (?i)"
            ) from None
        finally:
            consumer.close()
        return value

    @field_validator("output_topic", "dlq_topic", "state_topic")
    @classmethod
    def _topic_name(cls, value: str | None) -> str | None:
        return _topic(value)

    @field_validator("input_topics")
    @classmethod
    def _topic_names(cls, value: list[str]) -> list[str]:
        for topic in value:
            _topic(topic)
        return value

    @model_validator(mode="after")
    def _one_input(self) -> KafkaSettings:
        if bool(self.input_topics) == bool(self.input_pattern):
            raise ValueError("give exactly one of input_topics (a list) or input_pattern (a regex)")
        loops = [
            f"{name} {topic!r} is also an input topic: distilld would read its own output"
            for name, topic in (
                ("output_topic", self.output_topic),
                ("dlq_topic", self.dlq_topic),
                ("state_topic", self.state_topic_name()),
            )
            if topic is not None and self.reads(topic)  # the anchored regex the daemon subscribes with
        ]
        if loops:
            raise ValueError("; ".join(loops))
        return self

    @model_validator(mode="after")
    def _default_state_topic(self) -> KafkaSettings:
        """A valid group id (`team:app`, or one of 240 characters) can make a topic name Kafka refuses."""
        if self.state_topic is None:
            try:
                _topic(self.state_topic_name())
            except ValueError as e:
                raise ValueError(
                    f"kafka.group_id makes an invalid default state topic name ({e}); set kafka.state_topic"
                ) from None
        return self

    @model_validator(mode="after")
    def _security(self) -> KafkaSettings:
        """A section the protocol does not use was passed over in silence: files mounted, a password given,
        and the clients connected without them (the Helm chart refuses it too)."""
        protocol = self.security_protocol
        if protocol.startswith("SASL") and self.sasl is None:
            raise ValueError(f"security_protocol {protocol} needs a sasl section")
        unused = []
        if protocol not in ("SSL", "SASL_SSL") and self.ssl.model_dump(exclude_none=True):
            unused.append(f"kafka.ssl is set but kafka.security_protocol is {protocol}: SSL and SASL_SSL use it")
        if not protocol.startswith("SASL") and self.sasl is not None:
            unused.append(
                f"kafka.sasl is set but kafka.security_protocol is {protocol}: SASL_PLAINTEXT and SASL_SSL use it"
            )
        if unused:
            raise ValueError("; ".join(unused))
        return self

    def client_config(self) -> dict[str, Any]:
        """librdkafka's connection settings: the brokers and how to reach them (secrets revealed here only)."""
        return {
            "bootstrap.servers": self.bootstrap_servers,
            **_security_config(self.security_protocol, self.ssl, self.sasl),
        }

    def state_topic_name(self) -> str:
        return self.state_topic or f"{self.group_id}.distilld-state"

    def reads(self, topic: str) -> bool:
        """Whether ``topic`` is an input: in ``input_topics``, or matched as the subscription matches."""
        if self.input_pattern:
            return re.search(self.subscription()[0], topic) is not None  # librdkafka: POSIX regexec, unanchored
        return topic in self.input_topics

    def subscription(self) -> list[str]:
        """Topics for ``Consumer.subscribe``: a pattern starts with ``^`` (librdkafka's rule)."""
        if self.input_pattern:
            return [self.input_pattern if self.input_pattern.startswith("^") else "^" + self.input_pattern]
        return list(self.input_topics)


def _path_or(keywords: tuple[str, ...], value: str) -> str:
    if value not in keywords:
        parse_path(value)
    return value


class EngineOptions(TypedDict):
    """The DistilledProcessor keyword arguments the reducer settings give (:meth:`ReducerSettings.engine_options`)."""

    max_keys: int
    panes: int
    seed: int
    rewind_after: int
    marginal_weight: float


class ReducerSettings(_Section):
    rate: float = Field(default=0.1, gt=0, le=1, description="share of records forwarded")
    window_seconds: float = Field(default=3600, gt=0, description="sliding window length")
    key: str = Field(default="none", description="kafka_key | a field path | none: whose windows a record joins")
    time: str = Field(default="processing", description="processing | kafka_timestamp | a field path (epoch time)")
    time_unit: Literal["s", "ms", "us"] = Field(default="s", description="unit of a time field (UserALE: ms)")
    max_keys: int = Field(default=10_000, ge=1, le=2**63 - 1, description="keys held per partition; LRU evicted")
    panes: int = Field(default=12, ge=1, le=1000, description="window granularity")
    # snapshots hold it as a JSON integer, and the hashes as 64 bits: DistilledProcessor refuses others
    seed: int = Field(default=0, ge=-(2**63), lt=2**64, description="tie-break hash seed (64 bits)")
    rewind_after: int = Field(
        default=1000,
        ge=0,
        le=2**63 - 1,
        description="records in a row (and ten times more than the window holds) too late for the window that"
        " take the watermark back to them (a stray event time far ahead had moved it); 0: never",
    )
    marginal_weight: float = Field(
        default=16.0,
        gt=0,
        le=1e6,
        allow_inf_nan=False,
        description="how hard the selector keeps each categorical's shares next to the pairs' joint cells (1 each):"
        " higher keeps shares closer and pairs less close (README Figures)",
    )

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return _path_or(("kafka_key", "none"), value)

    def engine_options(self) -> EngineOptions:
        """DistilledProcessor's keyword arguments these settings give, beside the window and the rate."""
        return {
            "max_keys": self.max_keys,
            "panes": self.panes,
            "seed": self.seed,
            "rewind_after": self.rewind_after,
            "marginal_weight": self.marginal_weight,
        }

    @field_validator("time")
    @classmethod
    def _time(cls, value: str) -> str:
        return _path_or(("processing", "kafka_timestamp"), value)

    @model_validator(mode="after")
    def _pane(self) -> ReducerSettings:
        # DistilledProcessor's own check, as it computes it: a bound worked out otherwise could round the other way
        if not self.window_seconds / self.panes >= 1e-6:
            raise ValueError(
                f"window_seconds ({self.window_seconds:g}) / panes ({self.panes}) is under a microsecond a pane:"
                " give a longer window or fewer panes"
            )
        return self


class SchemaRegistrySettings(_Section):
    url: Annotated[str, Field(min_length=1, description="http(s)://host:port of the Schema Registry")]
    basic_auth_user_info: SecretStr | None = Field(default=None, description="user:password for basic auth")
    ssl_ca_location: str | None = Field(default=None, description="CA file to verify the registry's certificate")
    ssl_certificate_location: str | None = Field(default=None, description="client certificate (mutual TLS)")
    ssl_key_location: str | None = Field(default=None, description="client key (mutual TLS)")

    @field_validator("ssl_ca_location", "ssl_certificate_location", "ssl_key_location")
    @classmethod
    def _files(cls, value: str | None) -> str | None:
        return _existing(value)

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        """Each URL of the list as the client splits it; the messages never quote it (a password may be in it)."""
        for url in (u.strip() for u in value.split(",")):
            if not url.startswith(("http://", "https://", "mock://")):
                raise ValueError("must start with http://, https:// (or mock:// in tests)")
            if any(c.isspace() for c in url):  # inside a password, the masking stopped there and showed the rest
                raise ValueError("a space inside a URL: percent-encode it (%20)")
            if url.startswith("mock://"):
                continue  # the client's in-memory registry, for tests: no host
            parts = urlsplit(url)
            if "@" in url.partition("://")[2].removeprefix(parts.netloc):
                # https://user:pa#ss@host: the host is read from inside the password, and the password shown
                raise ValueError(
                    "an '@' after the host: percent-encode the password ('/' %2F, '?' %3F, '#' %23, '@' %40), or an"
                    " '@' in the path (%40)"
                )
            try:
                port = parts.port
            except ValueError:
                raise ValueError("the port must be a number from 1 to 65535") from None
            if not parts.hostname:
                raise ValueError("no host")
            if port == 0:
                raise ValueError("the port must be a number from 1 to 65535")
        return value

    @model_validator(mode="after")
    def _tls(self) -> SchemaRegistrySettings:
        """The files as the client loads them: an error there, an OSError, stopped start-up as a metrics port in use."""
        if self.ssl_key_location and not self.ssl_certificate_location:
            raise ValueError("ssl_key_location needs ssl_certificate_location (mutual TLS)")
        try:
            if self.ssl_ca_location:
                ssl.create_default_context(cafile=self.ssl_ca_location)
        except ssl.SSLError as e:
            raise ValueError(f"ssl_ca_location: no CA certificate in {self.ssl_ca_location} ({e})") from None
        try:
            if self.ssl_certificate_location:  # no key password setting: an encrypted key cannot be used
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.load_cert_chain(self.ssl_certificate_location, self.ssl_key_location, password=lambda: "")
        except ssl.SSLError as e:
            raise ValueError(
                f"ssl_certificate_location, ssl_key_location: cannot load the certificate and key ({e})"
            ) from None
        return self

    @model_validator(mode="after")
    def _credentials_once(self) -> SchemaRegistrySettings:
        if self.basic_auth_user_info is not None and urlsplit(self.url.split(",")[0].strip()).password is not None:
            raise ValueError("give the credentials in url (user:password@) or in basic_auth_user_info, not both")
        return self

    def client_config(self) -> dict[str, Any]:
        """The confluent-kafka SchemaRegistryClient configuration. Credentials in the URL
        (https://user:password@host, which the client takes as basic auth) move to
        ``basic.auth.user.info``: httpx logs each request's URL at INFO."""
        urls = [urlsplit(url.strip()) for url in self.url.split(",")]
        conf: dict[str, Any] = {"url": ",".join(u._replace(netloc=u.netloc.rpartition("@")[2]).geturl() for u in urls)}
        if self.basic_auth_user_info is not None:
            conf["basic.auth.user.info"] = self.basic_auth_user_info.get_secret_value()
        elif urls[0].password is not None:  # the client reads the first URL's, as here
            conf["basic.auth.user.info"] = f"{unquote(urls[0].username or '')}:{unquote(urls[0].password)}"
        for key in ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location"):
            if getattr(self, key):
                conf[key.replace("_", ".")] = getattr(self, key)
        return conf


class FormatSettings(_Section):
    value: Literal["json", "avro", "avro_confluent"] = Field(
        default="json", description="how record values are decoded: json | avro (schemaless) | avro_confluent"
    )
    avro_schema: str | None = Field(
        default=None, description="Avro schema file (.avsc): avro's schema, avro_confluent's reader schema"
    )
    schema_registry: SchemaRegistrySettings | None = Field(default=None, description="for avro_confluent")

    @field_validator("avro_schema")
    @classmethod
    def _schema_file(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                load_schema(value)
            except SchemaFileError as e:
                raise ValueError(str(e)) from None
        return value

    @model_validator(mode="after")
    def _needs(self) -> FormatSettings:
        if self.value == "avro" and not self.avro_schema:
            raise ValueError("value 'avro' needs avro_schema (the .avsc file the values were written with)")
        if self.value == "avro_confluent" and self.schema_registry is None:
            raise ValueError("value 'avro_confluent' needs schema_registry.url")
        return self


class ProcessingSettings(_Section):
    batch_max_records: int = Field(default=5000, ge=1, le=1_000_000, description="records per batch")
    batch_max_wait_ms: int = Field(default=100, ge=0, le=60_000, description="wait to fill a batch")
    on_error: Literal["dlq", "skip", "fail"] = Field(
        default="dlq", description="what undecodable records, and records the output topic refuses, do"
    )
    max_in_flight: int = Field(
        default=100_000,
        ge=1,
        # the producer's queue holds twice as many (queue.buffering.max.messages), which librdkafka caps at 2**31 - 1
        le=1_073_741_823,
        description="produced but unacknowledged records before fetching pauses (at most 1,073,741,823: the "
        "producer's queue holds twice as many)",
    )
    commit_interval_ms: int = Field(default=1000, ge=0, description="how often offsets are committed")
    shutdown_timeout_s: float = Field(default=30, gt=0, description="deadline to flush and commit on stop")
    guarantee: Literal["at_least_once", "exactly_once"] = Field(
        default="at_least_once", description="exactly_once: outputs, snapshots and offsets in one transaction"
    )
    snapshot_interval_s: float = Field(
        default=30, gt=0, description="how often reducer state is snapshotted to the state topic (and on revoke/stop)"
    )


class MetricsSettings(_Section):
    host: str = Field(
        default="127.0.0.1", description="bind address of /metrics, /healthz, /readyz (the image sets 0.0.0.0)"
    )
    port: int = Field(default=9108, ge=0, le=65535, description="0 turns the HTTP server off")

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value:
            return value  # every interface, as Python's servers take ""
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if not _HOSTNAME.fullmatch(value.removesuffix(".")):
                raise ValueError(f"{value!r} is neither an IP address nor a host name") from None
        return value

    health_timeout_s: float = Field(
        default=60,
        gt=0,
        description="/healthz turns 503 when the loop is stuck this long; keep it above "
        "`processing.shutdown_timeout_s`, which a commit waiting for absent brokers may take (warned at start-up)",
    )
    refresh_ms: int = Field(default=1000, ge=100, description="how often window, drift and key gauges are updated")


class EngineSettings(BaseSettings):
    """What the reducer reads: ``distilld reduce`` takes these from the daemon's file
    and ignores the rest (the kafka section is not needed)."""

    model_config = SettingsConfigDict(
        env_prefix="DISTILLD_", env_nested_delimiter="__", extra="ignore", nested_model_default_partial_update=True
    )

    reducer: ReducerSettings = Field(default_factory=lambda: ReducerSettings())
    features: list[Any] = Field(description="what to keep representative (see config/)")
    filters: FilterSettings = Field(default_factory=lambda: FilterSettings())

    @field_validator("features")
    @classmethod
    def _features(cls, value: list[Any]) -> list[Any]:
        try:
            build_graders(value)  # parses the list, and imports custom graders: a missing one is a config error
        except FeatureConfigError as e:
            raise ValueError(str(e)) from None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the environment overrides the file (given as init values)
        return env_settings, init_settings


class Settings(EngineSettings):
    """Everything ``distilld run`` reads; ``check-config`` prints it."""

    model_config = SettingsConfigDict(
        env_prefix="DISTILLD_", env_nested_delimiter="__", extra="forbid", nested_model_default_partial_update=True
    )

    kafka: KafkaSettings
    format: FormatSettings = Field(default_factory=lambda: FormatSettings())
    processing: ProcessingSettings = Field(default_factory=lambda: ProcessingSettings())
    metrics: MetricsSettings = Field(default_factory=lambda: MetricsSettings())

    @model_validator(mode="after")
    def _dlq(self) -> Settings:
        if self.processing.on_error == "dlq" and not self.kafka.dlq_topic:
            # "(the default)" only where nothing set it: a preset or the user's own dlq is not the default
            given = "" if "on_error" in self.processing.model_fields_set else " (the default)"
            raise ValueError(
                f"processing.on_error is 'dlq'{given} but kafka.dlq_topic is not set: set kafka.dlq_topic, "
                "or processing.on_error: skip or fail"
            )
        return self


def _describe(error: Any, data: Mapping[str, Any] | None = None) -> str:
    loc = [str(p) for p in error["loc"]]
    msg = str(error["msg"]).removeprefix("Value error, ")
    named = _filter_name(loc, data)
    if named:
        msg = f"{msg} (filter {named!r})"
    if loc == ["features"] and msg.startswith(("features[", "features:")):
        return msg  # the features' own message names the entry already
    if msg.startswith(f"{'.'.join(loc)}."):
        return msg  # it names a key inside the field (kafka.producer.batch.size)
    return f"{'.'.join(loc) or 'config'}: {msg}"


def _filter_name(loc: list[str], data: Mapping[str, Any] | None) -> str | None:
    """The name of the filter an error's location points into (filters.drop.3.when…): a position alone
    was hard to find in a long list."""
    if data is None or len(loc) < 4 or loc[0] != "filters" or loc[1] not in ("drop", "keep_always"):
        return None
    try:
        name = data["filters"][loc[1]][int(loc[2])]["name"]
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return name if isinstance(name, str) and name else None


PRESETS = Path(__file__).resolve().parent / "presets"


def presets() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def merged(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in top.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


NOT_SETTINGS = ("DISTILLD_TEST_",)  # variables of the tooling, not settings


def unknown_env(model: type[BaseModel] | None = None, environ: Mapping[str, str] | None = None) -> list[str]:
    """``DISTILLD_*`` variables that name no setting (``DISTILLD_REDUCER_RATE``
    for ``DISTILLD_REDUCER__RATE``): the settings source passes them over in
    silence, so start-up warns about them."""
    model = Settings if model is None else model
    out = []
    for name in sorted(os.environ if environ is None else environ):
        upper = name.upper()
        if not upper.startswith("DISTILLD_") or upper.startswith(NOT_SETTINGS):
            continue
        if not _names_a_field(model, upper.removeprefix("DISTILLD_").lower().split("__")):
            out.append(name)
    return out


def _names_a_field(model: type[BaseModel], parts: list[str]) -> bool:
    field = model.model_fields.get(parts[0])
    if field is None:
        return False
    rest = parts[1:]
    if not rest:
        return True
    inner = field.annotation
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return _names_a_field(inner, rest)
    return True  # a mapping (librdkafka settings, say): its keys are free


def load_settings(path: str | Path | None = None, preset: str | None = None, **overrides: Any) -> Settings:
    settings = load_model(Settings, path, preset, **overrides)
    assert isinstance(settings, Settings)
    return settings


def load_model(
    model: type[EngineSettings], path: str | Path | None = None, preset: str | None = None, **overrides: Any
) -> EngineSettings:
    """Read ``path`` (YAML) over ``preset`` (a shipped configuration, e.g. ``userale``),
    overlay the environment; raise :class:`ConfigError`."""
    data: dict[str, Any] = {}
    if preset is not None:
        if preset not in presets():
            raise ConfigError(f"--preset: no preset {preset!r}; shipped: {', '.join(presets())}")
        data = _read_yaml(PRESETS / f"{preset}.yaml")
    if path is not None:
        data = merged(data, _read_yaml(path))
    not_text = [k for k in data if not isinstance(k, str)]  # YAML 1.1 reads `on:` as true, `~:` as null, `1:` as 1
    if not_text:  # the model's keyword arguments below must be text (nested sections are pydantic's, which says so)
        raise ConfigError(
            "\n".join(
                f"{k!r}: a setting name must be text (YAML reads on, off, yes, no as booleans: quote it)"
                for k in not_text
            )
        )
    private = sorted(str(k) for k in data if str(k).startswith("_"))
    if private:
        raise ConfigError("\n".join(f"{k}: Extra inputs are not permitted" for k in private))
    data = merged(data, overrides)
    unknown = sorted(str(k) for k in data if k not in Settings.model_fields)  # EngineSettings ignores the
    if unknown and not issubclass(model, Settings):  # daemon's sections, not a misspelt one (`reduce:`)
        raise ConfigError("\n".join(f"{k}: Extra inputs are not permitted" for k in unknown))
    try:
        return model(**data)
    except ValidationError as e:
        lines = [_describe(err, data) for err in e.errors()]
        if preset is not None and any("on_error is 'dlq'" in line for line in lines):
            lines.append(
                f"(--preset {preset} sets processing.on_error: dlq; your file's processing.on_error wins over it)"
            )
        raise ConfigError("\n".join(lines)) from None
    except SettingsError as e:
        # a DISTILLD_ variable for a list or a section that is not JSON; name the variables, never their values
        field = re.search(r'field "([^"]+)"', str(e))
        prefix = f"DISTILLD_{field.group(1).upper()}" if field else "DISTILLD_"
        names = sorted(k for k in os.environ if k.upper().startswith(prefix))
        raise ConfigError(
            f"{', '.join(names) or prefix}: not valid JSON for a list or mapping setting ({e.__cause__ or e}); "
            """write lists and mappings as JSON, e.g. DISTILLD_KAFKA__INPUT_TOPICS='["people","other"]'"""
        ) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping, which ``safe_load`` takes in
    silence, keeping the last: a second ``reducer:`` section replaced the first whole. Checked as
    the file is composed, before ``<<`` merges are applied: a key overriding a merged one is not
    given twice."""

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # a mapping or list as a key is refused when the file is constructed
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first:
                raise yaml.constructor.ConstructorError(
                    problem=f"key {key!r} given twice (first at line {first[key]}): YAML would drop the first",
                    problem_mark=key_node.start_mark,
                )
            first[key] = line
        return node


def _read_yaml(path: str | Path) -> dict[str, Any]:
    try:
        loaded = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        # the reason and the position only: the snippet YAML quotes could hold a secret
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', None) or 'syntax error'}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (kafka, reducer, features, …)")
    return loaded or {}


# https://user:password@host, the client's basic auth: everything after the user, up to the last '@' before the
# next URL, whatever the password holds ('/', '#', '?', '@'); a user without a password may be a token
_URL_PASSWORD = re.compile(r"(://(?:[^:/?#@\s]*:)?)(?:(?!://)\S)*@")


def _is_secret(key: str) -> bool:
    return any(word in key.lower() for word in SECRET_WORDS)


def _mask(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, key) for v in value]
    if key and _is_secret(key) and value not in (None, ""):
        return "***"
    return _URL_PASSWORD.sub(r"\1***@", value) if isinstance(value, str) else value


def masked(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, secrets replaced by ``***``; the state topic
    as the daemon names it when it is not set."""
    masked_data: dict[str, Any] = _mask(settings.model_dump(mode="json"))
    masked_data["kafka"]["state_topic"] = settings.kafka.state_topic_name()
    return masked_data
