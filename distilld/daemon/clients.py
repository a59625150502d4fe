"""librdkafka configurations of the daemon's clients, built in one place from the settings.

User settings (``kafka.consumer``, ``kafka.producer``) are passed through,
except the few that the delivery guarantee rests on.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from distilld import __version__
from distilld.daemon.repeats import RepeatFilter
from distilld.settings import Settings

__all__ = [
    "FETCH_QUEUE_BACKOFF_MS",
    "KAFKA_LOG",
    "METADATA_REFRESH_MS",
    "RepeatFilter",
    "call_by",
    "client_config",
    "consumer_config",
    "error_code",
    "error_text",
    "ignored_settings",
    "kept_settings",
    "producer_config",
    "refused_token",
    "topic_config",
]

T = TypeVar("T")
TOKEN_ERROR = "OAUTHBEARER token"  # librdkafka: "Failed to acquire SASL OAUTHBEARER token: <the provider's answer>"
# OAuth 2.0 error codes (RFC 6749 §5.2, and Auth0's access_denied) that refuse the request itself:
# the client, its secret, grant, scope or audience; no retry fixes them
TOKEN_REFUSALS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "access_denied",
    }
)
TOKEN_OPENING = re.compile(r'\{\s*"error"\s*:\s*"([a-z_]+)"')
ERROR_TEXT_MAX = 511  # librdkafka's error strings are cut to this many characters

# what the delivery guarantee rests on: user settings cannot turn these off
CONSUMER_GUARANTEES = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "partition.assignment.strategy": "cooperative-sticky",
}
PRODUCER_GUARANTEES = {"acks": "all"}

# librdkafka stops fetching a partition whose local queue is full (queued.min.messages or
# queued.max.messages.kbytes) and, by default, waits 1000 ms before fetching it again: a
# daemon that empties the queue faster than that (catching up after a restart, or any
# backlog) then idles until the second is up. In make bench that cost the daemon ~40 % of
# its throughput (~200k -> ~340k records/s with 50 ms). Users can still set it.
FETCH_QUEUE_BACKOFF_MS = 50
METADATA_REFRESH_MS = 30_000


# librdkafka's own log lines, in the daemon's log format and levels instead of raw on stderr
KAFKA_LOG = logging.getLogger("distilld.kafka")
KAFKA_LOG.addFilter(RepeatFilter())


def client_config(settings: Settings) -> dict[str, Any]:
    """What every client of the cluster shares: the brokers (and, with security, how to reach them)."""
    return {**settings.kafka.client_config(), "logger": KAFKA_LOG}


# librdkafka properties of how a client reaches the brokers
_CONNECTION = ("security.", "ssl.", "ssl_", "sasl.", "socket.", "broker.address.", "client.dns.", "enable.ssl.")


def state_client_config(settings: Settings) -> dict[str, Any]:
    """The state store's clients (a consumer that reads the state topic, an admin client): the shared
    settings, and how the consumer reaches the brokers where ``kafka.consumer`` says more (a TLS or SASL
    property kafka.ssl and kafka.sasl have no setting for): without it they could not connect."""
    reach = {k: v for k, v in settings.kafka.consumer.items() if k.startswith(_CONNECTION)}
    return {**client_config(settings), **reach}


def consumer_config(settings: Settings) -> dict[str, Any]:
    conf: dict[str, Any] = {
        **client_config(settings),
        "group.id": settings.kafka.group_id,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 50,
        "queued.max.messages.kbytes": 65536,
        "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        "client.id": f"distilld-{__version__}",
        "statistics.interval.ms": 1000,  # consumer lag and broker state for metrics and /readyz
        # an input topic created after start-up (or matching input_pattern later) is seen within 30 s,
        # not librdkafka's 5 minutes
        "topic.metadata.refresh.interval.ms": METADATA_REFRESH_MS,
    }
    conf.update(settings.kafka.consumer)
    conf.update(CONSUMER_GUARANTEES)
    if settings.processing.guarantee == "exactly_once":
        # the committed-offset lookup at assignment waits for (require_stable) the previous owner's open
        # transaction only when reading committed: otherwise it takes the commit before it, and what that
        # transaction commits is processed and emitted again
        conf["isolation.level"] = "read_committed"
    return conf


def producer_config(settings: Settings) -> dict[str, Any]:
    conf: dict[str, Any] = {
        **client_config(settings),
        "linger.ms": 20,
        "enable.idempotence": True,
        "queue.buffering.max.messages": max(100_000, 2 * settings.processing.max_in_flight),
        "client.id": f"distilld-{__version__}",
    }
    conf.update(settings.kafka.producer)
    conf.update(PRODUCER_GUARANTEES)
    if settings.processing.guarantee == "exactly_once":
        kafka = settings.kafka
        conf["transactional.id"] = kafka.transactional_id or f"{kafka.group_id}-{socket.gethostname()}-{os.getpid()}"
    return conf


# librdkafka's other names of the settings distilld keeps
_ALIASES = {"request.required.acks": "acks"}


def _librdkafka_text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _same(given: object, kept: object) -> bool:
    values = {_librdkafka_text(given).strip().lower(), _librdkafka_text(kept).lower()}
    return len(values) == 1 or values == {"all", "-1"}  # acks: -1 is all


def kept_settings(settings: Settings) -> list[tuple[str, str, object, str, object]]:
    """The ``kafka.consumer`` and ``kafka.producer`` settings the daemon's clients override (what the delivery
    guarantee rests on): (section, key as given, value given, librdkafka's name for it, value distilld keeps)."""
    consumer = dict(CONSUMER_GUARANTEES)
    if settings.processing.guarantee == "exactly_once":
        consumer["isolation.level"] = "read_committed"
    out: list[tuple[str, str, object, str, object]] = []
    for section, given, kept in (
        ("consumer", settings.kafka.consumer, consumer),
        ("producer", settings.kafka.producer, PRODUCER_GUARANTEES),
    ):
        for key, value in given.items():
            name = _ALIASES.get(key, key)
            if name in kept and not _same(value, kept[name]):
                out.append((section, key, value, name, kept[name]))
    return out


def ignored_settings(settings: Settings) -> list[str]:
    """:func:`kept_settings`, each a line naming the value distilld keeps: logged at start-up, printed by
    check-config."""
    return [
        f"kafka.{section} {key}={_librdkafka_text(value)} is ignored: distilld keeps {name}={_librdkafka_text(kept)}"
        f" (the delivery guarantee rests on it)"
        for section, key, value, name, kept in kept_settings(settings)
    ]


def _kafka_error(e: BaseException) -> KafkaError | None:
    return e.args[0] if isinstance(e, KafkaException) and e.args and isinstance(e.args[0], KafkaError) else None


def error_text(e: BaseException) -> str:
    """An exception as a log line names it: a KafkaException by its KafkaError's text (not the repr of it)."""
    error = _kafka_error(e)
    return error.str() if error is not None else str(e)


def error_code(e: BaseException) -> int | None:
    """A KafkaException's error code; None for any other exception (or one without a KafkaError)."""
    error = _kafka_error(e)
    return None if error is None else int(error.code())


def refused_token(error: str) -> str | None:
    """The OAuth error code when librdkafka's token failure is the identity provider refusing the
    request: its answer one JSON object whose ``error`` is a refusal. None for anything else, an
    outage included: librdkafka retries 429 and 5xx answers, then reports their bodies glued
    together. librdkafka cuts its error text at 511 characters, and some providers' refusals are
    longer (Entra ID's carry trace ids); a cut answer counts when it opens with a refusal's
    ``"error"``, the field such answers put first."""
    _, found, answer = error.partition(TOKEN_ERROR + ": ")
    if not found:
        return None
    answer = answer.lstrip("\ufeff \t\r\n")
    try:
        body, end = json.JSONDecoder().raw_decode(answer)
    except json.JSONDecodeError:
        opening = TOKEN_OPENING.match(answer) if len(error) >= ERROR_TEXT_MAX else None
        return opening.group(1) if opening and opening.group(1) in TOKEN_REFUSALS else None
    if answer[end:].strip():
        return None  # bodies glued together: answers librdkafka retried
    code = body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) and code in TOKEN_REFUSALS else None


def call_by(deadline: float, call: Callable[[], T]) -> T:
    """``call()``, waited for until ``deadline`` (monotonic) at most: TimeoutError past it, the call
    left to finish in the background. For the client calls without a timeout of their own that wait
    for an unreachable group coordinator as long as session.timeout.ms (45 s by default): a
    synchronous commit, and the consumer's close, which waits for any commit still pending."""
    outcome: list[tuple[T | None, BaseException | None]] = []

    def run() -> None:
        try:
            outcome.append((call(), None))
        except BaseException as e:
            outcome.append((None, e))

    worker = threading.Thread(target=run, name="distilld-call", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if not outcome:
        raise TimeoutError("the brokers did not answer before the stop's deadline")
    result, error = outcome[0]
    if error is not None:
        raise error
    return result  # type: ignore[return-value]


def topic_config(admin: AdminClient, topic: str, timeout_s: float) -> Future[Any]:
    """``topic``'s configuration, asked with DescribeConfigs: a future of {name: ConfigEntry}, which raises
    KafkaException without the permission, or for a topic that does not exist."""
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)], request_timeout=timeout_s)
    return next(iter(futures.values()))
