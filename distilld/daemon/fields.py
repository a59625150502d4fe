"""Event time and key of each record, as ``reducer.time`` and ``reducer.key`` say."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from datetime import datetime
from itertools import chain
from typing import Any

import numpy as np
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

from distilld.encoding import to_float_array
from distilld.fieldpath import compile_path
from distilld.processor import index_keys
from distilld.settings import ReducerSettings

__all__ = ["RecordFields"]

TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}  # a time field's unit → seconds


class RecordFields:
    def __init__(self, reducer: ReducerSettings, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.time_mode = reducer.time
        self.key_mode = reducer.key
        self._time_path = None if reducer.time in ("processing", "kafka_timestamp") else compile_path(reducer.time)
        self._key_path = None if reducer.key in ("kafka_key", "none") else compile_path(reducer.key)
        self._unit = TIME_UNITS[reducer.time_unit]

    def timestamps(
        self, msgs: Sequence[Message], records: Sequence[Any], replay_after: float | None = None
    ) -> np.ndarray:
        """Seconds per record; NaN where a record has none (the engine uses its watermark). An
        Avro timestamp (decoded to a datetime) is its own time, whatever ``reducer.time_unit`` says.
        ``replay_after``: the records are re-read to rebuild a window (processing time
        then is when they first arrived, not now): their Kafka timestamps, kept between
        this time (the restored watermark) and now."""
        if self._time_path is not None:
            values = self._time_path(records)
            ts = to_float_array(values) * self._unit
            for i in np.flatnonzero(np.isnan(ts)).tolist():  # Avro's timestamp-millis/-micros: datetimes
                if isinstance(values[i], datetime):
                    ts[i] = values[i].timestamp()
            return ts
        if self.time_mode == "kafka_timestamp" or replay_after is not None:
            pairs = chain.from_iterable(map(Message.timestamp, msgs))  # (type, ms) per message
            # as int64 (what they are), divided below: numpy reads Python ints into float64 more slowly
            stamps = np.fromiter(pairs, dtype=np.int64, count=2 * len(msgs)).reshape(-1, 2)
            ts = np.where(stamps[:, 0] != TIMESTAMP_NOT_AVAILABLE, stamps[:, 1] / 1000.0, np.nan)
            if self.time_mode == "kafka_timestamp" or replay_after is None:
                return ts
            now = self.clock()
            return np.clip(np.where(np.isnan(ts), now, ts), min(replay_after, now), now)
        return np.full(len(records), self.clock(), dtype=np.float64)

    def keys(self, msgs: Sequence[Message], records: Sequence[Any]) -> tuple[np.ndarray, list[Hashable]]:
        if self._key_path is not None:
            return index_keys(self._key_path(records))
        if self.key_mode == "kafka_key":
            return index_keys(list(map(Message.key, msgs)))
        return np.zeros(len(records), dtype=np.int64), [None]
