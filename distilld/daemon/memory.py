"""The container's memory limit, to warn at start-up when the windows may not fit.

The windows' memory is fixed by the configuration (``reducer.max_keys`` × bytes a
key, per assigned partition), so a configuration that cannot fit its container is
known before the first record, not at the OOM kill.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CGROUP_LIMITS", "memory_limit", "rss_mb", "windows_size", "windows_warning"]

# cgroup v2, then v1; v1 says "no limit" with a number near 2**63
CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
_NO_LIMIT = 2**60


def memory_limit(paths: tuple[Path, ...] = CGROUP_LIMITS) -> int | None:
    """Bytes this process's cgroup may use, or None when unlimited or unknown."""
    for path in paths:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text == "max":
            return None
        try:
            limit = int(text)
        except ValueError:
            continue
        return limit if limit < _NO_LIMIT else None
    return None


def windows_size(bytes_per_key: int, max_keys: int) -> str:
    """What the windows cost, as check-config prints it and the daemon logs it at start."""
    return (
        f"windows: {bytes_per_key:,} bytes a key; up to {bytes_per_key * max_keys / 2**20:,.0f} MB "
        f"an input partition at reducer.max_keys {max_keys:,}"
    )


def windows_warning(bytes_per_key: int, max_keys: int, limit: int | None) -> str | None:
    """A warning when one partition's full windows would take more than half the limit."""
    if limit is None:
        return None
    per_partition = bytes_per_key * max_keys
    if per_partition <= limit // 2:
        return None
    return (
        f"one partition's windows may take {per_partition / 2**20:,.0f} MB (reducer.max_keys {max_keys:,} × "
        f"{bytes_per_key:,} bytes a key) of this container's {limit / 2**20:,.0f} MB: lower reducer.max_keys, "
        "or give the container more memory, before the keys arrive"
    )


def rss_mb(pid: int) -> float:
    """A process's resident memory in MB, from /proc (Linux); NaN when it does not say."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
