"""An input partition's records through the reducer to their outputs.

decode, filter and (when a grader can raise) grade ahead → re-read records the snapshot does not cover
without emitting them → select → produce the selected records with a ``distilld-weight`` header, those a
keep_always filter forwards, and bad ones to the DLQ; and count what the reducer saw into the metrics.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from confluent_kafka import Message

from distilld.codecs import reason_label
from distilld.daemon.partition import TP, Partition
from distilld.datapoint import weight_text

if TYPE_CHECKING:
    from distilld.daemon.loop import Daemon

__all__ = ["FIELD_CHECK_RECORDS", "KEPT_HEADER", "WEIGHT_HEADER", "Prepared", "RecordPath"]

log = logging.getLogger("distilld")

WEIGHT_HEADER = "distilld-weight"
KEPT_HEADER = "distilld-kept"  # the keep_always filter that forwarded a record outside the budget
FIELD_CHECK_RECORDS = 100  # a batch at least this big missing a field path in every record gets a warning


@dataclass
class Prepared:
    """A consumed batch ready for the reducer. Indexes are positions in the batch."""

    records: list[Any]  # decoded, not filtered out, graded: these go to the reducer
    good: list[int]  # the index of each of ``records``
    bad: list[tuple[int, str]]  # undecodable, or a grader raised: (index, reason)
    dropped: list[tuple[int, str]] = field(default_factory=list)  # (index, filter)
    kept: list[tuple[int, str]] = field(default_factory=list)  # forwarded outside the budget: (index, filter)
    extracted: list[list[Any]] | None = None  # feature values of ``records``, when graded ahead

    def take(self, keep: list[int]) -> None:
        """Keep only ``records[i]`` for i in ``keep``."""
        self.records = [self.records[i] for i in keep]
        self.good = [self.good[i] for i in keep]
        if self.extracted is not None:
            self.extracted = [[col[i] for i in keep] for col in self.extracted]

    def before(self, first: int) -> Prepared:
        """The part of the batch before index ``first``."""
        k = bisect_left(self.good, first)
        extracted = None if self.extracted is None else [col[:k] for col in self.extracted]
        return Prepared(
            self.records[:k],
            self.good[:k],
            [b for b in self.bad if b[0] < first],
            [d for d in self.dropped if d[0] < first],
            [e for e in self.kept if e[0] < first],
            extracted,
        )


class RecordPath:
    """The records of ``daemon``'s input partitions, a partition's part of a batch at a time
    (:meth:`process_partition`). The daemon's settings, decoder, filters, metrics and output are read
    from it at each use (a test may replace them)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.records_consumed = 0
        self._consumed: dict[str, tuple[Any, Any]] = {}
        # field paths not yet seen in any record (_check_fields): the settings, and each feature
        self._unchecked: set[str] = {
            "reducer.time",
            "reducer.key",
            *(f"feature {f}" for f in daemon.graders),
        }

    def process_partition(self, tp: TP, part: Partition, msgs: list[Any]) -> None:
        settings = self.daemon.settings
        if part.replay_until is not None:
            msgs = self._replay(tp, part, msgs)
            if not msgs:
                return
        values = list(map(Message.value, msgs))
        topic = tp[0]
        prepared = self._prepare(part, values)  # first: records the registry holds up are read again
        self._count_consumed(topic, len(msgs), _total_len(values))
        bad = prepared.bad
        if bad and settings.processing.on_error == "fail":
            first = bad[0][0]
            m = msgs[first]
            self.daemon.failure = f"{topic}[{tp[1]}]@{m.offset()}: {bad[0][1]}"
            self.daemon.stopping = True
            # every record before the first bad one is good: keep exactly those
            prepared, bad, msgs = prepared.before(first), [], msgs[:first]
            if not msgs:
                return
        end = part.processed = msgs[-1].offset() + 1
        good_msgs = [msgs[i] for i in prepared.good] if len(prepared.good) < len(msgs) else msgs
        chosen, weights = self._select(part, good_msgs, prepared.records, prepared.extracted)
        dlq = bad if settings.processing.on_error == "dlq" else []
        # counted per label, not per record: a filter may drop most of a batch
        for label, n in Counter(reason_label(reason) for _, reason in bad).items():
            (self.daemon.metrics.dlq if dlq else self.daemon.metrics.skipped).labels(label).inc(n)
        for (name, action), n in Counter(
            [*((name, "drop") for _, name in prepared.dropped), *((name, "keep") for _, name in prepared.kept)]
        ).items():
            self.daemon.metrics.filtered.labels(name, action).inc(n)
        batch = part.progress.add(end, len(chosen) + len(prepared.kept) + len(dlq))
        out_topic = settings.kafka.output_topic
        for i, w in zip(chosen, weights, strict=True):
            m = good_msgs[i]
            headers = list(m.headers() or [])
            headers.append((WEIGHT_HEADER, w))
            self.daemon.output.send(
                batch, out_topic, m.value(), m.key(), headers, _timestamp(m), (topic, tp[1], m.offset())
            )
        for i, name in prepared.kept:
            m = msgs[i]
            headers = [*(m.headers() or []), (WEIGHT_HEADER, b"1"), (KEPT_HEADER, name.encode())]
            self.daemon.output.send(
                batch, out_topic, m.value(), m.key(), headers, _timestamp(m), (topic, tp[1], m.offset())
            )
        for i, reason in dlq:
            m = msgs[i]
            headers = list(m.headers() or [])
            headers += [
                ("distilld-error", reason.encode()),
                ("distilld-source-topic", topic.encode()),
                ("distilld-source-partition", str(tp[1]).encode()),
                ("distilld-source-offset", str(m.offset()).encode()),
            ]
            dlq_topic = settings.kafka.dlq_topic or ""
            source = (topic, tp[1], m.offset())
            self.daemon.output.send(batch, dlq_topic, m.value(), m.key(), headers, _timestamp(m), source)
        if bad:
            log.debug("%s[%d]: %d undecodable records (%s)", topic, tp[1], len(bad), settings.processing.on_error)

    def _prepare(self, part: Partition, values: list[bytes | None]) -> Prepared:
        """Decode, filter, and (when a grader can raise) grade ahead: what goes to the reducer."""
        records, good, bad = self.daemon.decode(values)
        prepared = Prepared(records, good, bad)
        if records and self.daemon.filters:
            reduce, dropped, kept, unfiltered = self.daemon.filters.split_checked(records)
            prepared.dropped = [(good[i], name) for i, name in dropped]
            prepared.kept = [(good[i], name) for i, name in kept]
            if unfiltered:  # as undecodable ones: skipped, dead-lettered or stopping, as processing.on_error says
                prepared.bad = sorted(prepared.bad + [(good[i], reason) for i, reason in unfiltered])
                # once a minute: a filter that fails on a field every record has would log every batch
                if (more := self.daemon._repeats.note("filters")) is not None:
                    log.error(
                        "filters: %d records of a batch could not be filtered (processing.on_error: %s): %s%s",
                        len(unfiltered), self.daemon.settings.processing.on_error, unfiltered[0][1], more,
                    )  # fmt: skip
            if dropped or kept or unfiltered:
                prepared.take(np.flatnonzero(reduce).tolist())
        if prepared.records and self.daemon.graders_may_raise:
            extracted, errors = part.reducer.extract(prepared.records)
            prepared.extracted = extracted
            if errors:
                failed = {i for i, _ in errors}
                prepared.bad = sorted(prepared.bad + [(prepared.good[i], reason) for i, reason in errors])
                prepared.take([i for i in range(len(prepared.records)) if i not in failed])
        return prepared

    def _select(
        self,
        part: Partition,
        msgs: list[Any],
        records: list[Any],
        extracted: list[list[Any]] | None = None,
        replay: bool = False,
    ) -> tuple[list[int], list[bytes]]:
        """Reduce decoded records: (indexes of the chosen ones, their weight headers).
        ``replay``: re-read to rebuild the window (processing time: see RecordFields)."""
        if not records:
            return [], []
        replay_after = None
        if replay:
            watermark = part.reducer.watermark
            replay_after = watermark if math.isfinite(watermark) else 0.0
        ts = self.daemon.fields.timestamps(msgs, records, replay_after)
        key_index, keys = self.daemon.fields.keys(msgs, records)
        idx, weight = part.reducer.select(records, ts, key_index, keys, extracted=extracted)
        per_key = weight.tolist()
        header = {w: weight_text(w).encode() for w in set(per_key)}  # one text a weight, not one a key
        if replay:
            part.counted()  # not again in distilld_feature_missing_total (the records are not counted consumed)
        else:
            self._count_reducer(part, len(records))
        if len(records) >= FIELD_CHECK_RECORDS and self._unchecked:
            self._check_fields(ts, keys, len(records))
        return idx.tolist(), [header[per_key[k]] for k in key_index[idx].tolist()]

    def _check_fields(self, ts: np.ndarray, keys: list[Any], records: int) -> None:
        """Once per setting: a field path that no record of a whole batch has is most likely a typo,
        which would otherwise only show as a metric (a feature all missing, one window for every
        record, processing time instead of event time)."""
        reducer = self.daemon.settings.reducer
        if (
            "reducer.time" in self._unchecked
            and reducer.time not in ("processing", "kafka_timestamp")
            and np.isnan(ts).all()
        ):
            self._unchecked.discard("reducer.time")
            log.warning(
                "reducer.time %r: none of %d records has a usable time there (missing or not a number): "
                "they take the window's watermark; check the field path and reducer.time_unit",
                reducer.time, records,
            )  # fmt: skip
        if "reducer.key" in self._unchecked and reducer.key not in ("kafka_key", "none") and keys == [None]:
            self._unchecked.discard("reducer.key")
            log.warning(
                "reducer.key %r: none of %d records has it: they share one window; check the field path",
                reducer.key, records,
            )  # fmt: skip

    def _count_reducer(self, part: Partition, records: int = 0) -> None:
        """Missing values, evictions and unusable times since the last batch (of ``records``), into the
        counters; a feature missing from every record of a batch is logged once (a field path's typo?)."""
        missing = part.reducer.missing_counts
        delta = missing - part.missing_seen
        for f in np.flatnonzero(delta).tolist():
            name = self.daemon.metrics.features[f]
            self.daemon.metrics.missing.labels(name).inc(int(delta[f]))
            if records >= FIELD_CHECK_RECORDS and delta[f] == records and f"feature {name}" in self._unchecked:
                self._unchecked.discard(f"feature {name}")
                log.warning(
                    "feature %r: missing or wrong-typed in all %d records of a batch; check its field path",
                    name, records,
                )  # fmt: skip
        part.missing_seen = missing.copy()
        evicted = part.reducer.keys_evicted
        if evicted > part.evicted_seen:
            self.daemon.metrics.keys_evicted.inc(evicted - part.evicted_seen)
            part.evicted_seen = evicted
        replaced = part.reducer.timestamps_replaced
        if replaced > part.times_replaced_seen:
            self.daemon.metrics.times_replaced.inc(replaced - part.times_replaced_seen)
            part.times_replaced_seen = replaced
        rewinds = part.reducer.watermark_rewinds
        if rewinds > part.rewinds_seen:
            self.daemon.metrics.watermark_rewinds.inc(rewinds - part.rewinds_seen)
            part.rewinds_seen = rewinds

    def _replay(self, tp: TP, part: Partition, msgs: list[Any]) -> list[Any]:
        """Feed records the snapshot does not cover but the commit does into the
        reducer without emitting them (they were emitted before); return the rest."""
        until = part.replay_until
        assert until is not None
        offsets: list[int] = list(map(Message.offset, msgs))  # type: ignore[arg-type]
        cut = bisect_left(offsets, until)
        if cut:
            replayed = msgs[:cut]
            prepared = self._prepare(part, list(map(Message.value, replayed)))
            self._select(part, [replayed[i] for i in prepared.good], prepared.records, prepared.extracted, replay=True)
            part.processed = offsets[cut - 1] + 1
            self.daemon.metrics.replayed.inc(cut)
        if cut < len(msgs) or part.processed == until:
            part.replay_until = None
            log.info("%s[%d]: state caught up to the committed offset %d", tp[0], tp[1], until)
        return msgs[cut:]

    def _count_consumed(self, topic: str, records: int, size: int) -> None:
        children = self._consumed.get(topic)
        if children is None:
            children = self._consumed[topic] = (
                self.daemon.metrics.consumed.labels(topic),
                self.daemon.metrics.bytes_consumed.labels(topic),
            )
        children[0].inc(records)
        children[1].inc(size)
        self.records_consumed += records


def _total_len(values: list[bytes | None]) -> int:
    try:
        return sum(map(len, values))  # type: ignore[arg-type]
    except TypeError:  # tombstones
        return sum(len(v) for v in values if v)


def _timestamp(m: Message) -> int:
    kind, ts = m.timestamp()
    return ts if kind != 0 and ts > 0 else 0
