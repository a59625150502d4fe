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

from .test_state_topic_kafka import _Future, _Meta, _Topic


def _store(admin: Any, partitions: int) -> StateStore:
    store = StateStore("s", {"bootstrap.servers": "127.0.0.1:1"})
    store.partitions = partitions
    store._admin = admin
    store._check_at = 0.0
    return store


class _ThereButUnknownOnce:
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


class _MadeByAnotherWithMore:
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


class _SlowBrokers:
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


def test_check_every_is_short_enough_to_be_before_every_checkpoint() -> None:
    assert state_module.CHECK_EVERY_S <= 1.0
