"""The state topic's check before snapshots (StateStore.check_topic, Checkpoints._state_topic_there), with
fake admin clients: what a review found in its first version."""

from __future__ import annotations

import concurrent.futures
import logging
import time
from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

import numpy as np
import pytest
from confluent_kafka import KafkaError

from distilld.daemon import checkpoint as checkpoint_module
from distilld.daemon import state as state_module
from distilld.daemon.checkpoint import Checkpoints
from distilld.daemon.metrics import DaemonMetrics
from distilld.daemon.partition import Partition
from distilld.daemon.progress import PartitionProgress
from distilld.daemon.state import StateStore

from .test_state_topic_kafka import _Describes, _Future, _Meta, _Topic


def _store(admin: Any, partitions: int) -> StateStore:
    store = StateStore("s", {"bootstrap.servers": "127.0.0.1:1"})
    store.partitions = partitions
    store._admin = admin
    store._check_at = 0.0
    return store


class _ThereButUnknownOnce(_Describes):
    """The topic is there all along; one metadata answer (a broker with a stale cache) says it is unknown,
    and CreateTopics says it exists."""

    def __init__(self) -> None:
        self.answers = ["unknown"]

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        if self.answers and self.answers.pop(0) == "unknown":
            return _Meta({"s": _Topic(0, KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))})
        return _Meta({"s": _Topic(3)})

    def create_topics(self, topics: list[Any], operation_timeout: float = 0) -> Any:
        return {"s": _Future(KafkaError(KafkaError.TOPIC_ALREADY_EXISTS))}


def test_a_topic_that_already_exists_is_not_reported_as_made_again(caplog: pytest.LogCaptureFixture) -> None:
    """TOPIC_ALREADY_EXISTS was taken as "made again": a false warning, a state error counted and every
    snapshot written again, for one stale metadata answer."""
    store = _store(_ThereButUnknownOnce(), 3)
    with caplog.at_level(logging.WARNING):
        assert store.check_topic(1.0) == "ok"
    assert not caplog.records and not store.missing


class _MadeByAnotherWithMore(_Describes):
    """Gone; another instance (started meanwhile with kafka.state_partitions 8) makes it first."""

    def __init__(self) -> None:
        self.made = False
        compacted = MagicMock(result=MagicMock(return_value={"cleanup.policy": SimpleNamespace(value="compact")}))
        self.describe_configs = MagicMock(return_value={"s": compacted})

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        return _Meta({"s": _Topic(8)}) if self.made else _Meta({"s": _Topic(0, KafkaError(3))})

    def create_topics(self, topics: list[Any], operation_timeout: float = 0) -> Any:
        self.made = True  # the other instance's CreateTopics landed first
        return {"s": _Future(KafkaError(KafkaError.TOPIC_ALREADY_EXISTS))}


def test_a_topic_made_meanwhile_by_another_instance_is_used_with_its_partition_count() -> None:
    """The old count stayed until the next check: t[5]'s snapshot went to state partition 1, where
    readers that know the topic's 8 partitions do not look."""
    store = _store(_MadeByAnotherWithMore(), 4)
    assert store.check_topic(1.0) == "remade"
    assert store.partitions == 8 and store.partition_of(("t", 5)) == 5


class _SlowBrokers(_Describes):
    """Metadata answered late (the topic unknown), CreateTopics not answered at all."""

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        time.sleep(timeout * 0.9)
        return _Meta({"s": _Topic(0, KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))})

    def create_topics(self, topics: list[Any], operation_timeout: float = 0) -> Any:
        class Unanswered:
            def result(self, timeout: float | None = None) -> None:
                time.sleep(timeout or 0)
                raise concurrent.futures.TimeoutError()

        return {"s": Unanswered()}


def test_the_check_keeps_to_its_timeout_and_an_unanswered_creation_says_nothing() -> None:
    """Each call had the whole timeout: 1.9 s for a check of 1 s (a stop's deadline overrun); and an
    unanswered creation marked the topic missing, skipping and counting snapshots on no evidence."""
    store = _store(_SlowBrokers(), 3)
    start = time.monotonic()
    assert store.check_topic(1.0) == "unchecked"
    assert time.monotonic() - start < 1.1 and not store.missing


def _parts(n: int) -> dict[Any, Partition]:
    parts = {}
    for p in range(n):
        progress = PartitionProgress("t", p)
        progress.committed = progress.committable = 10
        part = Partition(progress, MagicMock(), np.zeros(0))
        part.processed = 10
        part.snapshot_at = 5  # each has a snapshot due
        parts[("t", p)] = part
    return parts


def test_snapshots_skipped_for_a_missing_topic_are_counted_for_the_partitions_checkpointed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A revoke of one partition of 8 counted 8 failed snapshots, and so did every checkpoint."""
    state = SimpleNamespace(missing=True, check_topic=lambda timeout: "unchecked", write=MagicMock())
    output = SimpleNamespace(producer=MagicMock(), flush=lambda deadline: True, in_flight=0)
    metrics = DaemonMetrics([])
    cp = Checkpoints(
        _parts(8), MagicMock(), output, None, state, metrics, 5.0,  # type: ignore[arg-type]
        rewind=MagicMock(), fail=MagicMock(),
    )  # fmt: skip
    monkeypatch.setattr(checkpoint_module, "dump", MagicMock(return_value=b"snap"))
    cp.checkpoint([("t", 0)])  # a revoke of t[0]
    assert metrics.registry.get_sample_value("distilld_snapshot_failures_total") == 1
    state.write.assert_not_called()


class _RemadeByABroker(_Describes):
    """The state topic (3 partitions, compacted) deleted and made again by a broker creating topics on first
    use: as many partitions (its default), cleanup.policy=delete, another topic id."""

    def __init__(self) -> None:
        self.topic_id = "AAAAAAAAAAAAAAAAAAAAAQ"
        self.policy = "compact"
        self.configs_asked = 0

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        return _Meta({"s": _Topic(3)})

    def describe_configs(self, resources: list[Any], request_timeout: float = 0) -> Any:
        self.configs_asked += 1
        entry = SimpleNamespace(value=self.policy)
        return {resources[0]: SimpleNamespace(result=lambda timeout: {"cleanup.policy": entry})}

    def remake(self) -> None:
        self.topic_id, self.policy = "AAAAAAAAAAAAAAAAAAAAAg", "delete"


def test_a_topic_made_again_with_as_many_partitions_is_noticed_by_its_id(caplog: pytest.LogCaptureFixture) -> None:
    """Made again with the same partition count, it went unnoticed: the snapshots written before were gone,
    the daemon took its partitions' snapshots for current and did not write them again until due, and
    retention (cleanup.policy=delete) deleted those it wrote after. Its new id shows it: every snapshot is
    written again, and its cleanup.policy is said."""
    admin = _RemadeByABroker()
    store = _store(admin, 3)
    assert store.check_topic(1.0) == "ok"
    assert admin.configs_asked == 0, "one request a check while nothing changes"
    admin.remake()
    store._check_at = 0.0
    with caplog.at_level(logging.WARNING):
        assert store.check_topic(1.0) == "remade"
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "was made again (topic id" in said and "cleanup.policy=delete, not compact" in said, said
    assert store.partitions == 3 and not store.missing
    store._check_at = 0.0
    assert store.check_topic(1.0) == "ok", "said once: the new id is the one known now"


def test_brokers_without_topic_ids_never_show_another_topic(caplog: pytest.LogCaptureFixture) -> None:
    """A broker before Kafka 2.8 gives every topic the zero id: not taken for a change, and said once."""
    admin = _RemadeByABroker()
    admin.topic_id = "AAAAAAAAAAAAAAAAAAAAAA"
    store = _store(admin, 3)
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            store._check_at = 0.0
            assert store.check_topic(1.0) == "ok"
    assert [r.getMessage() for r in caplog.records if "no topic ids" in r.getMessage()] != []
    assert len(caplog.records) == 1, [r.getMessage() for r in caplog.records]


class _RefusesDescribeTopics(_Describes):
    """Brokers that refuse DescribeTopics: the topic there, then deleted (UNKNOWN_TOPIC_OR_PART in its
    metadata)."""

    def __init__(self) -> None:
        self.there = True
        self.described = 0
        self.created = 0

    def describe_topics(self, topics: Any, request_timeout: float = -1) -> Any:
        self.described += 1
        return {"s": _Future(KafkaError(KafkaError._UNSUPPORTED_FEATURE))}

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        return _Meta({"s": _Topic(3) if self.there else _Topic(0, KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))})

    def create_topics(self, topics: list[Any], operation_timeout: float = 0) -> Any:
        self.there, self.created = True, self.created + 1
        return {"s": _Future(None)}


def test_brokers_refusing_describe_topics_are_checked_by_the_topics_metadata() -> None:
    """Without the fallback, every check of such brokers was "unchecked": a deleted state topic never
    noticed, the check's purpose lost for a topic id it cannot have."""
    admin = _RefusesDescribeTopics()
    store = _store(admin, 3)
    assert store.check_topic(1.0) == "ok"
    admin.there = False
    store._check_at = 0.0
    assert store.check_topic(1.0) == "remade" and admin.created == 1
    assert admin.described == 1, "refused once: not asked again"


class _DeletedThenMadeByTheCheck(_Describes):
    """There, then deleted: the check makes it again (a new topic id, which CreateTopics does not say)."""

    def __init__(self) -> None:
        self.there = True
        self.topic_id = "AAAAAAAAAAAAAAAAAAAAAQ"

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        return _Meta({"s": _Topic(3) if self.there else _Topic(0, KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))})

    def create_topics(self, topics: list[Any], operation_timeout: float = 0) -> Any:
        self.there, self.topic_id = True, "AAAAAAAAAAAAAAAAAAAAAg"
        return {"s": _Future(None)}


def test_the_topic_the_check_made_again_is_not_taken_for_someone_elses() -> None:
    admin = _DeletedThenMadeByTheCheck()
    store = _store(admin, 3)
    assert store.check_topic(1.0) == "ok"
    admin.there = False
    store._check_at = 0.0
    assert store.check_topic(1.0) == "remade"
    store._check_at = 0.0
    assert store.check_topic(1.0) == "ok", "its own new topic's id is learnt, not reported as another remake"


def test_check_every_is_short_enough_to_be_before_every_checkpoint() -> None:
    assert state_module.CHECK_EVERY_S <= 1.0
