"""What the daemon keeps per assigned input partition."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from distilld.daemon.progress import PartitionProgress
from distilld.processor import DistilledProcessor

if TYPE_CHECKING:
    from confluent_kafka import TopicPartition

__all__ = ["TP", "Partition", "key_names", "partition_names"]

TP = tuple[str, int]


@dataclass
class Partition:
    progress: PartitionProgress
    reducer: DistilledProcessor
    missing_seen: np.ndarray  # the reducer's missing counts already in the metrics
    evicted_seen: int = 0
    times_replaced_seen: int = 0  # the reducer's records without a usable time already in the metrics
    rewinds_seen: int = 0  # the reducer's watermark rewinds already in the metrics
    processed: int | None = None  # offset after the last record in the reducer's state
    replay_until: int | None = None  # records before this offset only rebuild state (already emitted)
    snapshot_at: int | None = None  # offset the newest snapshot written or restored covers

    def counted(self) -> None:
        """The reducer's missing values, evictions and replaced times so far are in the metrics
        already: a restored reducer's are the last owner's, re-read records were counted when first read."""
        self.missing_seen = self.reducer.missing_counts.copy()
        self.evicted_seen = self.reducer.keys_evicted
        self.times_replaced_seen = self.reducer.timestamps_replaced
        self.rewinds_seen = self.reducer.watermark_rewinds

    def uncommitted(self) -> bool:
        """Records were processed (their outputs produced) since the last commit: the
        open transaction holds this partition's work (and its offset)."""
        return self.replay_until is None and self.processed is not None and self.processed != self.progress.committed

    def snapshot_due(self) -> bool:
        """The state is exactly what is committed, and newer than the last snapshot."""
        return (
            self.replay_until is None
            and self.processed is not None
            and self.progress.committed == self.processed
            and self.snapshot_at != self.processed
        )


def partition_names(partitions: Iterable[TopicPartition]) -> str:
    """``t[0], t[1]``: partitions as the log lines name them."""
    return key_names((tp.topic, tp.partition) for tp in partitions)


def key_names(partitions: Iterable[TP]) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in partitions)
