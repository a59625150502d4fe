"""Prometheus metrics of the daemon, on its own registry.

Names in base units, ``_total`` on counters (prometheus-client adds it), no
label whose values grow with traffic: topics, partitions, features and a
closed set of reasons only, never a record key. Window sizes, drift (per key, and of
the output as a whole: stats.py) and keys
are read off the reducers by :meth:`DaemonMetrics.observe_reducers`, which
the loop calls every ``metrics.refresh_ms``; the same numbers
``get_current_stats()`` gives the library.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from distilld import __version__
from distilld.codecs import REASONS
from distilld.processor import DistilledProcessor
from distilld.stats import FeatureDrift

__all__ = ["DaemonMetrics"]

# Up to 5 min: a restore (reading the state topic, window-start lookups retried), an exactly_once commit and a
# batch held on a slow schema registry (up to 150 s) run well past 10 s, where a last bucket of 10 flat-lined
# every p99 panel at 10.
_LATENCY = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip


class DaemonMetrics:
    def __init__(self, features: Sequence[str], registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.features = list(features)
        self.consumed = Counter("distilld_records_consumed", "Records read from input topics.", ["topic"], registry=r)
        self.produced = Counter(
            "distilld_records_produced", "Records acknowledged on output topics.", ["topic"], registry=r
        )
        self.bytes_consumed = Counter(
            "distilld_bytes_consumed", "Value bytes read from input topics.", ["topic"], registry=r
        )
        self.bytes_produced = Counter(
            "distilld_bytes_produced", "Value bytes acknowledged on output topics.", ["topic"], registry=r
        )
        self.dlq = Counter(
            "distilld_records_dlq",
            "Records sent to the DLQ (undecodable, a grader raised, or refused by the output topic: reason refused).",
            ["reason"],
            registry=r,
        )
        self.skipped = Counter(
            "distilld_records_skipped",
            "Records dropped: undecodable (on_error: skip), or refused by the output topic (on_error: skip) or by "
            "the DLQ topic (reason refused).",
            ["reason"],
            registry=r,
        )
        self.missing = Counter(
            "distilld_feature_missing",
            "Records whose feature value was missing or wrong-typed.",
            ["feature"],
            registry=r,
        )
        self.window = Gauge(
            "distilld_window_records", "Records inside the windows, summed over keys.", ["kind"], registry=r
        )
        self.drift = Gauge(
            "distilld_proportion_drift",
            "Total-variation distance between window and sent shares, mean over keys weighted by window size.",
            ["feature"],
            registry=r,
        )
        self.drift_max = Gauge(
            "distilld_proportion_drift_max", "Largest per-key drift of the feature.", ["feature"], registry=r
        )
        self.output_drift = Gauge(
            "distilld_output_drift",
            "Total-variation distance between window and sent shares, every key's records together "
            "(every partition's: categories added up by label, numeric bins by rank).",
            ["feature"],
            registry=r,
        )
        self.keys = Gauge("distilld_keys", "Keys held in the windows.", registry=r)
        self.keys_evicted = Counter("distilld_keys_evicted", "Least recently used keys evicted.", registry=r)
        self.times_replaced = Counter(
            "distilld_timestamps_replaced",
            "Records without a usable event time (missing, not a number, too far ahead): the window's watermark.",
            registry=r,
        )
        self.watermark_rewinds = Counter(
            "distilld_watermark_rewinds",
            "Times the watermark went back to the stream, its windows started anew: reducer.rewind_after records in"
            " a row were too late for the window (an event time far ahead of the others had moved it).",
            registry=r,
        )
        self.batch_duration = Histogram(
            "distilld_batch_duration_seconds", "Time to process one consumed batch.", buckets=_LATENCY, registry=r
        )
        self.commit_duration = Histogram(
            "distilld_commit_duration_seconds", "Time from a commit to its answer.", buckets=_LATENCY, registry=r
        )
        self.lag = Gauge(
            "distilld_consumer_lag",
            "Records behind the high watermark, from the committed offset: assigned partitions' from librdkafka's "
            "statistics, those waiting for their state from a lookup at each refresh.",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned = Gauge("distilld_assigned_partitions", "Input partitions assigned.", registry=r)
        self.rebalances = Counter("distilld_rebalances", "Partition assignment changes.", ["kind"], registry=r)
        self.commit_failures = Counter("distilld_commit_failures", "Offset commits that failed.", registry=r)
        self.consume_errors = Counter(
            "distilld_consume_errors",
            "Errors the consumer reported instead of records, by librdkafka error name.",
            ["code"],
            registry=r,
        )
        self.produce_errors = Counter(
            "distilld_produce_errors",
            "Deliveries that failed (retried, or refused: see records_dlq / records_skipped).",
            registry=r,
        )
        self.restores = Counter(
            "distilld_state_restores",
            "Partitions assigned, by how their windows started: restored (snapshot), replayed (rebuilt from the "
            "log, no snapshot), empty, discarded (a snapshot refused: another configuration or format; rebuilt "
            "from the log where the log has the window).",
            ["outcome"],
            registry=r,
        )
        self.restore_duration = Histogram(
            "distilld_state_restore_duration_seconds",
            "Time from a newly assigned partition's commit read to the partition restored and assigned"
            " (one sample a partition with a commit).",
            buckets=_LATENCY,
            registry=r,
        )
        self.replayed = Counter(
            "distilld_records_replayed", "Records re-read after a restore to rebuild state, not emitted.", registry=r
        )
        self.snapshots = Counter("distilld_snapshots", "Reducer snapshots written to the state topic.", registry=r)
        self.snapshot_bytes = Counter(
            "distilld_snapshot_bytes", "Bytes of reducer snapshots written to the state topic.", registry=r
        )
        self.snapshot_failures = Counter(
            "distilld_snapshot_failures",
            "Snapshots that could not be written (retried at the next checkpoint).",
            registry=r,
        )
        self.state_errors = Counter(
            "distilld_state_errors", "Failures to create or read the state topic (retried).", registry=r
        )
        self.offset_lookup_errors = Counter(
            "distilld_offset_lookup_errors",
            "Failed tries to look up where newly assigned partitions start (retried): lookup committed, their "
            "committed offsets (not read meanwhile); window_start, where a window to rebuild starts; high_watermark, "
            "the end of partitions waiting for their state (their consumer lag: asked again at the next refresh).",
            ["lookup"],
            registry=r,
        )
        self.token_errors = Counter(
            "distilld_token_errors",
            "Failures to fetch a SASL/OAUTHBEARER token from the identity provider (retried).",
            registry=r,
        )
        self.registry_errors = Counter(
            "distilld_schema_registry_errors", "Schema Registry lookups that failed (retried).", registry=r
        )
        self.filtered = Counter(
            "distilld_records_filtered",
            "Records a filter dropped (action=drop) or forwarded outside the budget (action=keep).",
            ["filter", "action"],
            registry=r,
        )
        self.ready = Gauge(
            "distilld_ready",
            "1 when /readyz answers 200: a broker up and in the consumer group, no exactly-once transaction being "
            "retried.",
            registry=r,
        )
        self.paused = Gauge("distilld_fetch_paused", "1 while fetching waits for outputs to drain.", registry=r)
        self.unacknowledged = Gauge(
            "distilld_outputs_unacknowledged",
            "Records produced to the output and DLQ topics and not yet acknowledged (in the producer or "
            "waiting for a retry); no offset is committed past them.",
            registry=r,
        )
        self.unacknowledged_age = Gauge(
            "distilld_outputs_unacknowledged_age_seconds",
            "Age of the oldest record produced and not yet acknowledged (0 when none): a missing output or "
            "DLQ topic holds records for message.timeout.ms before any delivery fails.",
            registry=r,
        )
        # monotonic time the oldest unacknowledged output was produced: the age is worked out at each
        # scrape, so that it keeps growing while the loop itself is stuck
        self._oldest_output: float | None = None
        self.unacknowledged_age.set_function(self._oldest_output_age)
        Gauge("distilld_build_info", "distilld's version.", ["version"], registry=r).labels(__version__).set(1)
        for kind in ("received", "sent"):
            self.window.labels(kind)
        for kind in ("assign", "revoke", "lost"):
            self.rebalances.labels(kind)
        for outcome in ("restored", "replayed", "empty", "discarded"):
            self.restores.labels(outcome)
        for lookup in ("committed", "window_start", "high_watermark"):
            self.offset_lookup_errors.labels(lookup)
        for reason in (*REASONS, "refused"):  # refused: by the brokers, for what the record is (output.py)
            self.dlq.labels(reason)
            self.skipped.labels(reason)
        for name in self.features:
            self.missing.labels(name)
            self.drift.labels(name)
            self.drift_max.labels(name)
            self.output_drift.labels(name)

    def observe_reducers(self, reducers: Iterable[DistilledProcessor]) -> None:
        """Window sizes, drift and keys over every partition's reducer."""
        received = sent = keys = 0
        parts: dict[str, list[FeatureDrift]] = {name: [] for name in self.features}
        for reducer in reducers:
            r, s = reducer.window_records()
            received, sent, keys = received + r, sent + s, keys + reducer.keys_held
            for name, d in reducer.feature_drifts().items():
                parts[name].append(d)
        self.window.labels("received").set(received)
        self.window.labels("sent").set(sent)
        self.keys.set(keys)
        for name, drifts in parts.items():
            d = FeatureDrift.combine(drifts)
            self.drift.labels(name).set(d.mean)
            self.drift_max.labels(name).set(d.max)
            self.output_drift.labels(name).set(d.output)

    def observe_outputs(self, unacknowledged: int, oldest: float | None) -> None:
        """Outputs waiting for acknowledgement: how many, and when the oldest was produced (monotonic;
        None: none waits). Called every ``metrics.refresh_ms`` with what the delivery tracking holds."""
        self.unacknowledged.set(unacknowledged)
        self._oldest_output = oldest if unacknowledged > 0 else None

    def _oldest_output_age(self) -> float:
        oldest = self._oldest_output
        return 0.0 if oldest is None else max(0.0, time.monotonic() - oldest)

    def observe_statistics(self, stats_json: str, committed: Mapping[tuple[str, int], int | None]) -> bool:
        """Consumer lag from librdkafka's statistics, counted from ``committed``: each assigned partition's
        offset this instance knows is committed (None: none yet). librdkafka counts from what this consumer
        itself committed: stale when a partition comes back after another member committed it, unknown
        when another member committed it last. Returns whether a broker is up."""
        stats = orjson.loads(stats_json)
        for topic, t in stats.get("topics", {}).items():
            for pid, p in t.get("partitions", {}).items():
                key = (topic, int(pid))
                if key not in committed:
                    continue
                lag = p.get("consumer_lag", -1)
                ours, theirs = committed[key], p.get("committed_offset", -1)
                if lag is not None and lag >= 0 and ours is not None and theirs >= 0:
                    lag = max(0, lag + theirs - ours)  # from librdkafka's end (hi_offset, or ls_offset)
                elif lag is not None and lag < 0 and p.get("hi_offset", -1) >= 0:
                    # nothing committed by this consumer (a new group, or another member's commit): count from the
                    # commit, or from the position, so that an instance that never committed still shows what waits
                    start = ours if ours is not None else p.get("app_offset", -1)
                    lag = max(0, p["hi_offset"] - start) if start >= 0 else -1
                if lag is not None and lag >= 0:
                    self.lag.labels(topic, str(key[1])).set(lag)
        return any(b.get("state") == "UP" for b in stats.get("brokers", {}).values())

    def forget_partitions(self, partitions: Iterable[tuple[str, int]]) -> None:
        for topic, partition in partitions:
            with contextlib.suppress(KeyError):
                self.lag.remove(topic, str(partition))
