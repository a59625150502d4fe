"""The topology under a running daemon: a state topic someone else made, a topic matching
input_pattern created while running, an output topic that does not exist yet.

Tansu cannot add partitions to a topic (CreatePartitions: _UNSUPPORTED_FEATURE), so input
partitions outnumbering the state topic's are set up here by making the state topic narrower
than the input, which is what an input grown after the state topic was made looks like.
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from distilld.broker import free_port

from .conftest import people_records
from .kafka_tools import (
    DaemonProcess,
    create_topics,
    daemon_config,
    end_offsets,
    produce,
    unique,
    value,
    wait_committed,
    wait_metrics,
)

pytestmark = pytest.mark.kafka


def _records(n: int, seed: int) -> list[bytes]:
    return [orjson.dumps(r) for r in people_records(n, seed)]


def _keys(n: int) -> list[bytes | None]:
    return [str(i % 8).encode() for i in range(n)]  # 8 keys over 3 partitions: 1, 5 and 2 of them


def test_a_state_topic_made_narrower_and_not_compacted_is_used_and_the_compaction_is_warned_of(
    kafka_bootstrap: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    """Three input partitions share one state partition: a restart restores each partition's own
    snapshot at its own commit. The topic's cleanup.policy=delete is said at start-up."""
    topic, group = unique("narrow"), unique("g")
    create_topics(kafka_bootstrap, {topic: 3, f"{topic}.out": 1, f"{topic}.dlq": 1})
    state = f"{group}.distilld-state"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(state, 1, 1, config={"cleanup.policy": "delete"})])[state].result(30)

    def start(name: str) -> tuple[DaemonProcess, str]:
        port = free_port()
        config = daemon_config(
            kafka_bootstrap,
            topic,
            group,
            processing={"snapshot_interval_s": 1, "batch_max_records": 500},
            metrics={"port": port, "refresh_ms": 200},
        )
        d = DaemonProcess(tmp_path, config, name).start()
        daemons.append(d)
        return d, f"http://127.0.0.1:{port}/metrics"

    first, _ = start("first")
    ends = end_offsets(produce(kafka_bootstrap, topic, _records(3000, 0), _keys(3000)))
    assert sorted(ends.values()) == [375, 750, 1875]
    wait_committed(kafka_bootstrap, group, topic, ends, 3, first)
    assert first.stop() == 0
    log = first.log()
    assert re.search(rf"state topic {re.escape(state)} has cleanup\.policy=delete, not compact", log), log[-3000:]
    assert "not written" not in log, log[-3000:]

    second, url = start("second")
    more = end_offsets(produce(kafka_bootstrap, topic, _records(300, 1), _keys(300)))
    wait_committed(kafka_bootstrap, group, topic, more, 3, second)
    restored = {
        int(p): (int(at), int(c))
        for p, at, c in re.findall(rf"{re.escape(topic)}\[(\d)\]: restored \d+ keys from the snapshot at offset (\d+) "
                                   r"\(committed (\d+)\)", second.log())
    }  # fmt: skip
    assert restored == {p: (end, end) for p, end in ends.items()}, second.log()[-3000:]
    # every record in the windows exactly once: nothing restored into the wrong partition, nothing lost
    metrics = wait_metrics(
        url, lambda m: m.get(("distilld_window_records", (("kind", "received"),))) == 3300, "windows", second
    )
    assert value(metrics, "distilld_state_restores_total", outcome="restored") == 3
    assert second.stop() == 0
