"""The topology under a running daemon: a state topic someone else made, a topic matching
input_pattern created while running, an output topic that does not exist yet.

Tansu cannot add partitions to a topic (CreatePartitions: _UNSUPPORTED_FEATURE), so input
partitions outnumbering the state topic's are set up here by making the state topic narrower
than the input, which is what an input grown after the state topic was made looks like.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from distilld.broker import free_port

from .conftest import people_records
from .kafka_tools import (
    DaemonProcess,
    committed,
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


def test_outputs_held_for_a_missing_output_topic_show_as_unacknowledged_until_it_is_created(
    kafka_bootstrap: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    """With allow.auto.create.topics false and no output topic, librdkafka holds every selected
    record for message.timeout.ms (300 s): distilld_outputs_unacknowledged counts them and the age
    of the oldest grows while nothing is committed; once the topic is created they are delivered,
    committed, and both gauges fall to 0."""
    topic, group = unique("unmade"), unique("g")
    create_topics(kafka_bootstrap, {topic: 1, f"{topic}.dlq": 1})
    ends = end_offsets(produce(kafka_bootstrap, topic, _records(200, 2), _keys(200)))
    port = free_port()
    config = daemon_config(
        kafka_bootstrap,
        topic,
        group,
        kafka={"producer": {"allow.auto.create.topics": False}},
        reducer={"rate": 1.0},  # every record forwarded: 200 outputs
        metrics={"port": port, "refresh_ms": 200},
    )
    d = DaemonProcess(tmp_path, config).start()
    daemons.append(d)
    url = f"http://127.0.0.1:{port}/metrics"
    deadline = time.monotonic() + 30
    while "metrics and health" not in d.log():  # the endpoint is up (scraping before it is refused)
        assert time.monotonic() < deadline and d.proc is not None and d.proc.poll() is None, d.log()[-3000:]
        time.sleep(0.1)
    waiting = wait_metrics(
        url,
        lambda m: (
            m.get(("distilld_outputs_unacknowledged", ())) == 200
            and m.get(("distilld_outputs_unacknowledged_age_seconds", ()), 0) >= 2
        ),
        "200 outputs waiting, the oldest for 2 s",
        d,
        limit_s=60,
    )
    age = value(waiting, "distilld_outputs_unacknowledged_age_seconds")
    assert value(waiting, "distilld_records_consumed_total", topic=topic) == 200
    assert committed(kafka_bootstrap, group, topic, 1) == {0: -1001}, "nothing committed past held outputs"
    later = wait_metrics(
        url, lambda m: m.get(("distilld_outputs_unacknowledged_age_seconds", ()), 0) > age, "the age growing", d
    )
    assert value(later, "distilld_outputs_unacknowledged") == 200

    create_topics(kafka_bootstrap, {f"{topic}.out": 1})
    done = wait_metrics(
        url,
        lambda m: (
            m.get(("distilld_outputs_unacknowledged", ())) == 0
            and m.get(("distilld_outputs_unacknowledged_age_seconds", ())) == 0
        ),
        "every output acknowledged once the topic exists",
        d,
        limit_s=120,
    )
    assert value(done, "distilld_records_produced_total", topic=f"{topic}.out") == 200
    wait_committed(kafka_bootstrap, group, topic, ends, 1, d)
    assert d.stop() == 0, d.log()[-3000:]
