"""A restore's read of the state topic against a broker, through a proxy that can hold the reader's fetches."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import Producer

from distilld.daemon.state import StateStore, chunk_records
from tests.kafka_tools import create_topics, unique
from tests.proxy_tools import TcpProxy

pytestmark = pytest.mark.kafka

READ_TIMEOUT_S = 4.0
STATE_PARTITIONS = 4


def test_a_stalled_state_topic_holds_a_restore_one_read_timeout_not_one_per_state_partition(
    proxied: tuple[str, TcpProxy],
) -> None:
    """Read one after the other, each with its own read_timeout_s, the state partitions of a state topic that
    does not answer (its leader down) held a restore one timeout each: ~125 s for 2 in a probe, up to 48 minutes
    for 48. Read together, the four here are read to their end (the snapshot on one found); with the reader's
    fetches held, each ends with a TimeoutError after one read_timeout_s for the four, not four."""
    bootstrap, proxy = proxied
    topic = unique("stalled-state")
    create_topics(bootstrap, {topic: STATE_PARTITIONS})
    producer = Producer({"bootstrap.servers": bootstrap, "client.id": "test-writer"})
    for key, value, headers in chunk_records(("events", 1), 0, 90, b"the snapshot"):
        producer.produce(topic, value, key, partition=1, headers=headers)
    assert producer.flush(10) == 0
    store = StateStore(topic, {"bootstrap.servers": bootstrap}, read_timeout_s=READ_TIMEOUT_S)
    store.partitions = STATE_PARTITIONS
    wanted = {("events", p): 100 for p in range(STATE_PARTITIONS)}
    try:
        found = store.read(wanted)
        assert found[("events", 1)].data == b"the snapshot" and set(found) == {("events", 1)}

        proxy.delay_fetch("rdkafka", 60.0)  # the state reader's client.id (librdkafka's default)
        reader, assigned = store.reader(), []
        store.reader = lambda: _Recording(reader, assigned)  # type: ignore[method-assign]
        scan, over = store.scan(wanted), []
        while len(over) < STATE_PARTITIONS:
            over += scan.advance(time.monotonic() + 0.5)
    finally:
        proxy.delay_fetch(None)
        store.close()
    assert proxy.fetches_delayed > 0, "the reader's fetches were held"
    assert sorted(done.partition for done in over) == list(range(STATE_PARTITIONS))
    assert all(isinstance(done.error, TimeoutError) and not done.found for done in over), over
    # read together: one assignment of the four, so one read_timeout_s for them all (read one after another,
    # each had its own); tests/test_restore_units.py counts the reads' time on a fake clock
    assert assigned == [list(range(STATE_PARTITIONS))], assigned


class _Recording:
    """The store's reader, recording the state partitions of each assignment."""

    def __init__(self, reader: Any, assigned: list[list[int]]) -> None:
        self._reader, self._assigned = reader, assigned

    def assign(self, partitions: list[Any]) -> None:
        self._assigned.append(sorted(tp.partition for tp in partitions))
        self._reader.assign(partitions)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)
