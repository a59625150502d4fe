"""TLS end to end: a TLS-terminating proxy in front of its own test broker (which
advertises the proxy), certificates made by the suite, the daemon consuming,
producing and committing over TLS and mutual TLS; a wrong CA stops it at start-up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from distilld.broker import EmbeddedBroker, free_port

from .conftest import people_records
from .kafka_tools import (
    DaemonProcess,
    create_topics,
    daemon_config,
    end_offsets,
    produce,
    read_all,
    unique,
    wait_committed,
)
from .tls_tools import Pki, make_pki, tls_proxy

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Pki]]:
    """A broker reachable only through mutual TLS on the returned bootstrap address."""
    tmp = tmp_path_factory.mktemp("tls")
    pki = make_pki(tmp / "pki")
    plain, tls = free_port(), free_port()
    with (
        EmbeddedBroker(port=plain, advertised_port=tls, log=tmp / "tansu.log") as broker,
        tls_proxy(tls, plain, pki, mutual=True),
    ):
        yield broker.bootstrap, pki


def _client(pki: Pki, ca: Path | None = None) -> dict[str, Any]:
    """librdkafka settings of a test client, and the daemon's kafka.ssl section for the same."""
    return {
        "security.protocol": "SSL",
        "ssl.ca.location": str(ca or pki.ca),
        "ssl.certificate.location": str(pki.client_cert),
        "ssl.key.location": str(pki.client_key),
    }


def _daemon_tls(pki: Pki, ca: Path | None = None) -> dict[str, Any]:
    return {
        "security_protocol": "SSL",
        "ssl": {
            "ca_location": str(ca or pki.ca),
            "certificate_location": str(pki.client_cert),
            "key_location": str(pki.client_key),
        },
    }


def test_consume_produce_and_commit_over_mutual_tls(
    tls_cluster: tuple[str, Pki], tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    bootstrap, pki = tls_cluster
    conf = _client(pki)
    topic, group = unique("tls"), unique("g")
    create_topics(bootstrap, {topic: 2, f"{topic}.out": 2, f"{topic}.dlq": 1}, conf)
    values = [orjson.dumps(r) for r in people_records(3000, seed=17)]
    sent = produce(bootstrap, topic, values, [b"k%d" % (i % 3) for i in range(len(values))], conf=conf)
    config = daemon_config(bootstrap, topic, group)
    config["kafka"] |= _daemon_tls(pki)
    d = DaemonProcess(tmp_path, config).start()
    daemons.append(d)
    got = wait_committed(bootstrap, group, topic, end_offsets(sent), 2, d, conf=conf)
    assert d.stop() == 0, d.log()
    assert all(got[p] == end for p, end in end_offsets(sent).items()), "committed over TLS"
    out = read_all(bootstrap, f"{topic}.out", expect_at_least=290, extra=conf)
    assert 290 <= len(out) <= 310 and {m.value() for m in out} <= set(values), "produced over TLS"


def test_a_wrong_ca_stops_the_daemon_at_start_up_with_the_reason(
    tls_cluster: tuple[str, Pki], tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    bootstrap, pki = tls_cluster
    other = make_pki(tmp_path / "other", name="someone else")
    config = daemon_config(bootstrap, unique("tls"), unique("g"))
    config["kafka"] |= _daemon_tls(pki, ca=other.ca)
    d = DaemonProcess(tmp_path, config).start()
    daemons.append(d)
    assert d.wait(60) == 1, d.log()
    log = d.log()
    assert "cannot connect to the brokers" in log and "kafka.ssl" in log, log[-2000:]
    assert "certificate verify failed" in log or "SSL handshake failed" in log, log[-2000:]
