from __future__ import annotations

import gc
import os
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from distilld import DistilledProcessor, build_graders
from distilld.broker import EmbeddedBroker, free_port
from distilld.daemon.loop import Daemon
from distilld.settings import load_settings

from .kafka_tools import DaemonProcess
from .proxy_tools import TcpProxy

PEOPLE_FEATURES: list[dict[str, Any]] = [
    {"name": "gender", "type": "categorical", "categories": ["female", "male", "other"]},
    {"name": "age", "type": "numeric"},
    {"name": "income", "type": "numeric", "field": "money.income"},
]


def people_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        gender = rng.choices(["female", "male", "other"], [0.55, 0.4, 0.05])[0]
        age = rng.gauss(40 if gender == "male" else 35, 10)
        out.append({"id": i, "gender": gender, "age": age, "money": {"income": rng.lognormvariate(10, 0.5)}})
    return out


def tv(a: Counter[Any], b: Counter[Any]) -> float:
    """Total-variation distance between two counts' shares, worked out here as a test's own oracle."""
    na, nb = sum(a.values()), sum(b.values())
    return 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in set(a) | set(b))


class FakeClock:
    """A settable clock for processing-time windows."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def people_processor(clock: FakeClock) -> DistilledProcessor:
    return DistilledProcessor(build_graders(PEOPLE_FEATURES), 600, 0.1, 500, clock=clock)


_EMBEDDED: list[bool] = []  # kafka_bootstrap started the embedded broker (Tansu) for this session


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Kafka-protocol broker for the whole session:
    ``DISTILLD_TEST_BOOTSTRAP`` if set; else a Kafka container when a Docker
    engine answers; else Tansu, the embedded broker, on a free port."""
    external = os.environ.get("DISTILLD_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            yield container.get_bootstrap_server()
        return
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    _EMBEDDED.append(True)
    with EmbeddedBroker(log=log) as broker:
        yield broker.bootstrap
        # in-process daemons froze themselves out of the cyclic collector (tune_gc): free their
        # clients now, or they keep reconnecting to the stopped broker and fill the output
        gc.unfreeze()
        gc.collect()


@pytest.fixture(scope="session")
def full_kafka(kafka_bootstrap: str) -> str:
    """The session's broker when it is a full Apache Kafka (an external cluster or a
    container); skips on Tansu, which lacks what these tests check."""
    if os.environ.get("DISTILLD_TEST_BOOTSTRAP") or _docker_answers():
        return kafka_bootstrap
    pytest.skip("missing Apache Kafka: set DISTILLD_TEST_BOOTSTRAP or give a Docker engine (Tansu can't fence)")


@pytest.fixture(scope="session")
def serves_aborted(kafka_bootstrap: str) -> bool:
    """Whether the session's broker serves aborted transactions' records to read_committed readers:
    Tansu, the embedded broker, does; Apache Kafka does not (as kafka_bootstrap decided, not asked again)."""
    return bool(_EMBEDDED)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TcpProxy]]:
    """A broker of its own (one a test module), reachable only through a proxy the test can cut."""
    tmp = tmp_path_factory.mktemp("proxied")
    plain, front = free_port(), free_port()
    with (
        EmbeddedBroker(port=plain, advertised_port=front, log=tmp / "tansu.log") as broker,
        TcpProxy(front, plain) as proxy,
    ):
        yield broker.bootstrap, proxy


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """Daemon processes a test starts; killed at its end, whatever happened."""
    started: list[DaemonProcess] = []
    yield started
    for d in started:
        d.kill()


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


class FakeConsumer:
    def __init__(self) -> None:
        self.paused: list[Any] = []
        self.resumed: list[Any] = []

    def assignment(self) -> list[str]:
        return ["t[0]", "t[1]"]

    def pause(self, partitions: list[Any]) -> None:
        self.paused.append(list(partitions))

    def resume(self, partitions: list[Any]) -> None:
        self.resumed.append(list(partitions))

    def incremental_unassign(self, partitions: list[Any]) -> None:
        pass


@pytest.fixture
def daemon() -> Daemon:
    s = load_settings(
        None,
        kafka={
            "bootstrap_servers": "127.0.0.1:1",
            "group_id": "g",
            "input_topics": ["t"],
            "output_topic": "o",
            "dlq_topic": "d",
        },
        features=[{"name": "a", "type": "numeric"}],
        processing={"max_in_flight": 100},
        metrics={"port": 0},
    )
    d = Daemon(s)
    d.consumer = FakeConsumer()  # type: ignore[assignment]
    d.output.poll = lambda timeout=0.0: None  # type: ignore[method-assign]
    return d
