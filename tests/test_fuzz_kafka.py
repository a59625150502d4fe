"""Fuzz: 10,000 hostile values among valid records, through a running daemon.

The daemon must keep running; every value that is not a JSON object is in the DLQ
exactly once, unchanged, with a reason; every JSON object (hostile field types
included) is reduced; and the counters add up to what was produced.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distilld.broker import free_port
from distilld.codecs.json_codec import decode_json

from .fuzz_payloads import draw_payloads, is_record, payload
from .kafka_tools import (
    DaemonProcess,
    create_topics,
    daemon_config,
    end_offsets,
    produce,
    read_all,
    unique,
    value,
    wait_committed,
    wait_metrics,
)

PARTITIONS = 3
FUZZ = 10_000
VALID = 5_000


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(payload, max_size=50))
def test_decoding_splits_any_batch_into_records_and_reasons(batch: list[tuple[str, bytes | None]]) -> None:
    values = [v for _, v in batch]
    records, good, bad = decode_json(values)
    assert sorted(good + [i for i, _ in bad]) == list(range(len(values)))
    assert good == [i for i, v in enumerate(values) if is_record(v)]
    assert all(isinstance(r, dict) for r in records) and len(records) == len(good)
    assert all(reason for _, reason in bad)


@pytest.mark.kafka
def test_fuzzed_values_go_to_the_dlq_once_and_the_rest_is_reduced(
    kafka_bootstrap: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    fuzz = draw_payloads(FUZZ)
    rng = random.Random(7)
    valid = [("valid", v) for v in _valid_values(VALID, rng)]
    items = fuzz + valid
    rng.shuffle(items)
    values = [v for _, v in items]
    keys = [b"k%d" % rng.randrange(50) for _ in values]

    topic, group = unique("fuzz"), unique("g")
    create_topics(kafka_bootstrap, {topic: PARTITIONS, f"{topic}.out": PARTITIONS, f"{topic}.dlq": PARTITIONS})
    sent = produce(kafka_bootstrap, topic, values, keys)
    port = free_port()
    config = daemon_config(
        kafka_bootstrap,
        topic,
        group,
        reducer={"key": "user"},  # a field hostile records fill with anything
        metrics={"port": port, "refresh_ms": 200},
    )
    d = DaemonProcess(tmp_path, config).start()
    daemons.append(d)
    expected_bad = {(s.partition, s.offset): s for s in sent if not is_record(s.value)}
    n_good = len(sent) - len(expected_bad)
    wait_committed(kafka_bootstrap, group, topic, end_offsets(sent), PARTITIONS, d, limit_s=120)
    metrics = wait_metrics(
        f"http://127.0.0.1:{port}/metrics",
        lambda m: (
            m.get(("distilld_window_records", (("kind", "received"),))) == n_good
            and m.get(("distilld_window_records", (("kind", "sent"),)))
            == m.get(("distilld_records_produced_total", (("topic", f"{topic}.out"),)))
        ),
        "the windows holding every valid record (a gauge refresh after the last batch)",
        d,
    )
    kinds = Counter(kind for kind, v in items if not is_record(v))
    assert n_good >= VALID and len(expected_bad) >= FUZZ // 2, kinds
    assert {"random_bytes", "truncated", "mutated", "bad_utf8", "not_object", "deep_nesting", "empty"} <= set(kinds)

    dlq = read_all(kafka_bootstrap, f"{topic}.dlq", expect_at_least=len(expected_bad), idle_s=1)
    where = Counter(
        (int(h["distilld-source-partition"]), int(h["distilld-source-offset"]))
        for h in (dict(m.headers() or []) for m in dlq)
    )
    assert max(where.values()) == 1, "a bad record is in the DLQ more than once"
    assert set(where) == set(expected_bad), "the DLQ holds exactly the values that are not JSON objects"
    for m in dlq:
        h = dict(m.headers() or [])
        s = expected_bad[(int(h["distilld-source-partition"]), int(h["distilld-source-offset"]))]
        assert m.value() == s.value and m.key() == s.key, "a dead letter is the record, unchanged"
        assert h["distilld-error"].decode().strip(), "a dead letter says why"

    selected = int(value(metrics, "distilld_window_records", kind="sent"))
    out = read_all(kafka_bootstrap, f"{topic}.out", expect_at_least=selected, idle_s=1)
    good_values = Counter(s.value for s in sent if is_record(s.value))
    assert not Counter(m.value() for m in out) - good_values, "the output holds only valid input records"

    def total(name: str) -> float:
        return sum(v for (n, _), v in metrics.items() if n == name)

    assert value(metrics, "distilld_records_consumed_total", topic=topic) == len(sent)
    assert total("distilld_records_dlq_total") == len(expected_bad)
    assert value(metrics, "distilld_window_records", kind="received") == n_good
    assert selected == len(out) == value(metrics, "distilld_records_produced_total", topic=f"{topic}.out")
    assert value(metrics, "distilld_records_produced_total", topic=f"{topic}.dlq") == len(expected_bad)
    assert abs(len(out) - 0.1 * n_good) <= 0.01 * n_good + 50  # 50 keys, each within one record of its share
    assert d.stop() == 0, d.log()


def _valid_values(n: int, rng: random.Random) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "gender": rng.choice(["female", "male", "other"]),
                "age": rng.randint(18, 90),
                "money": {"income": rng.randint(0, 200_000)},
                "user": f"u{rng.randrange(40)}",
                "n": i,
            }
        )
        for i in range(n)
    ]
