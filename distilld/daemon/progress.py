"""Where each input partition may be committed: after every selected (or
dead-lettered) record at or before the offset has been acknowledged.

Work is tracked a batch at a time: a batch holds the offset after its last
record and the number of its outputs not yet acknowledged. The commit point
moves over a batch only when the batch and all before it are done, so it
never passes a record whose output failed (failed outputs are retried, and
their batch stays open until they succeed).

A batch also holds when it was added (its outputs are produced right after):
the oldest open batch of a partition dates its oldest output still waiting for
acknowledgement (:meth:`PartitionProgress.oldest_open`), read per batch, not per
record, for ``distilld_outputs_unacknowledged_age_seconds``.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

__all__ = ["Batch", "PartitionProgress"]


@dataclass
class Batch:
    end: int  # offset after the batch's last record
    outstanding: int
    progress: PartitionProgress
    added: float = 0.0  # monotonic time the batch was added, its outputs produced

    def ack(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0:
            self.progress.advance()


@dataclass
class PartitionProgress:
    topic: str
    partition: int
    committable: int | None = None  # offset that may be committed now
    committed: int | None = None  # offset last sent to the group coordinator
    _open: deque[Batch] = field(default_factory=deque)

    def add(self, end: int, outputs: int) -> Batch:
        """Register a processed batch ending before ``end`` with ``outputs`` records in flight."""
        batch = Batch(end, outputs, self, time.monotonic())
        self._open.append(batch)
        self.advance()
        return batch

    def advance(self) -> None:
        while self._open and self._open[0].outstanding <= 0:
            self.committable = self._open.popleft().end

    def oldest_open(self) -> float | None:
        """When the oldest batch still waiting for an output was added (monotonic), or None: after
        :meth:`advance` the first open batch is one with outputs not yet acknowledged."""
        return self._open[0].added if self._open else None

    def due(self) -> int | None:
        """The offset to commit if it moved since the last commit, else None."""
        if self.committable is not None and self.committable != self.committed:
            return self.committable
        return None
