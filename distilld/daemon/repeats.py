"""One log line of a kind every so often, with how many were left out.

A failure that repeats for every record or every reconnect (a missing output
topic, a broker away) would otherwise flood the log: librdkafka alone logs a
failed connection every ~50 ms per client.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Hashable

__all__ = ["RepeatFilter", "Repeats", "more_like_it"]


MAX_KINDS = 20_000  # kinds a Repeats holds (a line a partition: thousands of partitions)


class Repeats:
    """Admits the first line of a kind, then none of that kind for ``window_s``."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._seen: dict[Hashable, tuple[float, int]] = {}  # kind → (last admitted, left out since)

    def admit(self, kind: Hashable) -> tuple[int, float] | None:
        """None to leave the line out; else (lines of its kind left out, seconds since the last one)."""
        now = time.monotonic()
        last, left_out = self._seen.get(kind, (float("-inf"), 0))
        if now - last < self.window_s:
            self._seen[kind] = (last, left_out + 1)
            return None
        if len(self._seen) > MAX_KINDS:
            # kinds whose window is over are only their counts of lines left out; dropping them all at once
            # (as before) let every kind through again, each partition's line at every refusal past 1,000
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window_s}
            if len(self._seen) > MAX_KINDS:
                self._seen.clear()
        self._seen[kind] = (now, 0)
        return left_out, now - last

    def note(self, kind: Hashable) -> str | None:
        """:meth:`admit` as the end of a log line: None to leave the line out; else "" or
        " (N more like it in Ss)"."""
        admitted = self.admit(kind)
        return None if admitted is None else more_like_it(*admitted)


def more_like_it(left_out: int, since: float) -> str:
    """ " (N more like it in Ss)" after a line of a kind others were left out of, or ""."""
    return f" ({left_out} more like it in {since:.0f}s)" if left_out else ""


class RepeatFilter(logging.Filter):
    """A logging filter: a kind is the message with its numbers blanked."""

    def __init__(self, window_s: float = 60.0) -> None:
        super().__init__()
        self._repeats = Repeats(window_s)

    def filter(self, record: logging.LogRecord) -> bool:
        admitted = self._repeats.admit(re.sub(r"\d+", "#", record.getMessage()))
        if admitted is None:
            return False
        left_out, since = admitted
        if left_out:
            record.msg, record.args = f"{record.getMessage()}{more_like_it(left_out, since)}", ()
        return True
