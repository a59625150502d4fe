"""A stray event time far ahead of the stream moved the watermark for good: every record after it was too
late for the window, and the windows, stats and drift froze. ``rewind_after`` late records in a row take it
back to the stream (DistilledProcessor._rewind)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pytest

from distilld import DistilledProcessor, build_graders
from distilld.settings import load_settings

FEATURES = [{"name": "c", "type": "categorical", "categories": ["a", "b", "c"]}, {"name": "x", "type": "numeric"}]
WINDOW, PANES = 100.0, 10  # seconds; 10 records a second below: 1,000 records a window


def _processor(batch_size: int = 50, **kw: Any) -> DistilledProcessor:
    return DistilledProcessor(
        build_graders(FEATURES), WINDOW, 0.1, batch_size, timestamp_func=lambda r: r["t"], panes=PANES, **kw
    )


def _stream(n: int, stray_at: int | None, ahead: float = 7200.0, seed: int = 1) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    records = [{"t": 1000 + i / 10, "c": "abc"[int(rng.integers(3))], "x": float(rng.normal())} for i in range(n)]
    if stray_at is not None:
        records.insert(stray_at, {"t": records[stray_at]["t"] + ahead, "c": "a", "x": 0.0, "stray": True})
    return records


def _feed(proc: DistilledProcessor, records: list[dict[str, Any]], batch: int = 50) -> int:
    return sum(len(proc.process_batch(records[i : i + batch])) for i in range(0, len(records), batch))


def _in_window(proc: DistilledProcessor, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of the window the processor's watermark ends, as its panes cut it."""
    pane = WINDOW / PANES
    w_epoch = math.floor(proc.watermark / pane)
    return [r for r in records if not r.get("stray") and w_epoch - PANES < math.floor(r["t"] / pane) <= w_epoch]


def test_a_stray_time_far_ahead_costs_one_window_not_every_window_after_it() -> None:
    records = _stream(20_000, stray_at=5_000)
    frozen = _processor(rewind_after=0)
    _feed(frozen, records)
    assert frozen.watermark == records[5_000]["t"], "without rewinds the stray keeps the watermark"
    assert frozen.get_current_stats()["historical_data_count"] <= 1, "and the windows stay empty"

    proc = _processor()
    sent = _feed(proc, records)
    stats = proc.get_current_stats()
    assert stats["watermark_rewinds"] == 1
    assert proc.watermark == records[-1]["t"]
    window = _in_window(proc, records)
    assert stats["historical_data_count"] == len(window) == 1000
    counts = Counter(r["c"] for r in window)
    shares = stats["current_proportions"]["c"]["categories"]
    assert shares == pytest.approx({k: v / len(window) for k, v in counts.items()})
    assert 95 <= stats["sent_data_count"] <= 105
    assert sent == 2000  # late or not, every record was forwarded at the rate
    assert all(d["max"] < 0.05 for d in stats["drift"].values()), stats["drift"]


def test_the_stray_in_the_batch_that_rewinds_takes_the_new_watermark() -> None:
    records = _stream(3_000, stray_at=1_000)
    proc = _processor(batch_size=1_000, rewind_after=500)
    proc.process_batch(records[:1_000])
    proc.process_batch(records[1_000:1_600])  # the stray and 599 records too late for the window it sets
    assert proc.watermark == records[1_599]["t"]
    stats = proc.get_current_stats()
    assert (stats["watermark_rewinds"], stats["timestamps_replaced"]) == (1, 1)
    proc.process_batch(records[1_600:])
    assert proc.get_current_stats()["historical_data_count"] == len(_in_window(proc, records)) == 1000


def test_a_backfill_stays_late_until_it_outnumbers_the_window_tenfold() -> None:
    """Old records after a full window of live ones are a backfill, not a sign of a stray: the watermark
    stands on the window's 1,000 records. Only once the old ones outnumber them ten times over is the
    stream elsewhere."""
    live = _stream(2_000, stray_at=None)
    old = [{**r, "t": r["t"] - 10 * WINDOW} for r in _stream(11_000, stray_at=None, seed=3)]
    proc = _processor(rewind_after=100)
    _feed(proc, live)
    _feed(proc, old[:9_500])
    assert proc.get_current_stats()["watermark_rewinds"] == 0
    assert proc.get_current_stats()["historical_data_count"] == 1000
    _feed(proc, old[9_500:])
    assert proc.get_current_stats()["watermark_rewinds"] == 1
    assert proc.watermark == old[-1]["t"]


def test_records_without_a_time_do_not_hide_a_stray() -> None:
    """They take the watermark, the stray's: counted on time, one in 500 restarted the late run for good."""
    records = _stream(20_000, stray_at=5_000)
    for r in records[5_001::500]:
        r["t"] = None
    proc = _processor()
    _feed(proc, records)
    assert proc.get_current_stats()["watermark_rewinds"] == 1
    assert proc.watermark == records[-1]["t"]


def test_a_snapshot_carries_the_late_run() -> None:
    """Restored halfway through a late run, a processor rewound 500 records after the one it came from."""
    from distilld.snapshot import dump, load

    records = _stream(4_000, stray_at=1_000)
    proc = _processor()
    _feed(proc, records[:1_501])  # the stray and 500 late records
    twin = _processor()
    load(twin, dump(proc))
    assert twin.get_current_stats()["watermark_rewinds"] == 0
    for i in range(1_501, len(records), 50):
        batch = records[i : i + 50]
        assert [id(p.data) for p in proc.process_batch(batch)] == [id(p.data) for p in twin.process_batch(batch)]
    assert twin.get_current_stats()["watermark_rewinds"] == proc.get_current_stats()["watermark_rewinds"] == 1


def test_late_records_mixed_with_on_time_ones_never_rewind() -> None:
    """A replay interleaved with live input: every other record two windows late. Each on-time record
    starts the count again."""
    rng = np.random.default_rng(2)
    records = [
        {"t": 5000 + i / 10 - (2 * WINDOW if i % 2 else 0), "c": "abc"[int(rng.integers(3))], "x": 0.5}
        for i in range(6_000)
    ]
    proc = _processor(rewind_after=10)
    _feed(proc, records, batch=100)
    assert proc.get_current_stats()["watermark_rewinds"] == 0
    assert proc.watermark == max(r["t"] for r in records)


def test_the_late_run_counts_across_batches_of_one_record() -> None:
    records = _stream(1_500, stray_at=200)
    proc = _processor(rewind_after=300)
    for r in records:
        proc.process_batch([r])
    stats = proc.get_current_stats()
    assert stats["watermark_rewinds"] == 1 and stats["timestamps_replaced"] == 0  # the stray came alone
    assert proc.watermark == records[-1]["t"]
    assert stats["historical_data_count"] == len(_in_window(proc, records))


def test_a_rewind_empties_every_windowed_structure() -> None:
    """The key's pane rings, the numeric's reservoir and its means hold nothing from before the rewind:
    the stray's pane, ahead of the new watermark, would come back live and count the stray."""
    records = _stream(4_000, stray_at=1_000, ahead=WINDOW * 1.5)
    proc = _processor(rewind_after=200)
    _feed(proc, records[:3_001])  # the rewind comes at ~1,250; the stray's pane is inside the last window
    stats = proc.get_current_stats()
    assert stats["watermark_rewinds"] == 1
    window = _in_window(proc, records[:3_001])
    assert math.floor(records[1_000]["t"] / (WINDOW / PANES)) > math.floor(window[0]["t"] / (WINDOW / PANES))
    assert stats["historical_data_count"] == len(window) == 1000
    assert int(proc._encoders[1]._seen.sum()) == len(window)
    average = stats["current_proportions"]["x"]["average"]
    assert average == pytest.approx(float(np.mean([r["x"] for r in window])))


def test_a_normal_stream_gives_the_same_selection_with_or_without_rewinds() -> None:
    records = _stream(5_000, stray_at=None)
    picks = []
    for rewind_after in (0, 1, 1000):
        proc = _processor(rewind_after=rewind_after)
        picks.append([id(p.data) for i in range(0, 5_000, 50) for p in proc.process_batch(records[i : i + 50])])
    assert picks[0] == picks[1] == picks[2]


@pytest.mark.parametrize("value", [-1, 1.5, "10", True])
def test_rewind_after_is_a_whole_number_0_or_more(value: Any) -> None:
    with pytest.raises(ValueError, match="rewind_after"):
        _processor(rewind_after=value)


def test_the_setting_reaches_the_engine_and_is_checked() -> None:
    base = {"kafka": {"bootstrap_servers": "b:9092", "group_id": "g", "input_topics": ["t"], "output_topic": "o"}}
    skip = {"on_error": "skip"}
    settings = load_settings(None, **base, features=FEATURES, reducer={"rewind_after": 0}, processing=skip)
    assert settings.reducer.engine_options()["rewind_after"] == 0
    with pytest.raises(Exception, match="rewind_after"):
        load_settings(None, **base, features=FEATURES, reducer={"rewind_after": -5}, processing=skip)


def test_the_daemon_counts_rewinds_in_its_metrics() -> None:
    from distilld.daemon.loop import Daemon
    from distilld.daemon.partition import Partition
    from distilld.daemon.progress import PartitionProgress

    settings = load_settings(
        None,
        kafka={"bootstrap_servers": "127.0.0.1:1", "group_id": "g", "input_topics": ["t"], "output_topic": "o"},
        features=FEATURES,
        reducer={"time": "t", "window_seconds": WINDOW, "panes": PANES, "rewind_after": 300},
        processing={"on_error": "skip"},
        metrics={"port": 0},
    )
    daemon = Daemon(settings)
    reducer = daemon._new_reducer()
    assert reducer.rewind_after == 300
    part = Partition(PartitionProgress("t", 0), reducer, reducer.missing_counts.copy())
    records = _stream(2_000, stray_at=500)
    for i in range(0, len(records), 100):
        batch = records[i : i + 100]
        daemon.record_path._select(part, [None] * len(batch), batch)  # the time is a field: no message is read
    assert daemon.metrics.registry.get_sample_value("distilld_watermark_rewinds_total") == 1
    assert reducer.watermark == records[-1]["t"]


def test_rewinds_over_and_over_log_a_bounded_number_of_lines(caplog: pytest.LogCaptureFixture) -> None:
    """Blocks of old and new records in turn, each more than ten windows' worth: a rewind each; the warning
    comes at the 1st, 2nd, 4th, 8th… only."""
    proc = _processor(rewind_after=100)
    with caplog.at_level("WARNING", logger="distilld"):
        for block in range(40):
            shift = 0.0 if block % 2 else 50 * WINDOW
            # a record a second: the window holds 100, a block of 1,200 outnumbers it tenfold
            _feed(proc, [{"t": 1000 + shift + i, "c": "a", "x": float(i % 7)} for i in range(1_200)])
    rewinds = proc.get_current_stats()["watermark_rewinds"]
    lines = [r for r in caplog.records if "too late for the window" in r.getMessage()]
    assert rewinds == 20 and len(lines) == 5  # 1, 2, 4, 8, 16
