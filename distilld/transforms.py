"""Built-in feature transforms: a field's value → the value that is graded.

``transform: url_host`` on a feature reads a URL field and grades its host;
``length`` grades how many items a list (or characters a string) has. Each
works a batch at a time and yields ``None`` (the missing cell) for a value it
cannot transform, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

__all__ = ["TRANSFORMS", "Transform"]

Transform = Callable[[Sequence[Any]], list[Any]]


@lru_cache(maxsize=65_536)
def _host(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.hostname:
        return parts.hostname
    return f"{parts.scheme}:" if parts.scheme else None  # file:///…, about:blank → the scheme alone


@lru_cache(maxsize=65_536)
def _path(url: str) -> str | None:
    try:
        return urlsplit(url).path or "/"
    except ValueError:
        return None


# URLs longer than this are parsed each time, not cached: the cache holds its keys (and url_path's
# values), and 65,536 distinct URLs of a megabyte each (a record's whole size) would be 64 GB held
CACHED_URL_CHARS = 2048


def url_host(values: Sequence[Any]) -> list[Any]:
    """``https://a.example.com/x?y`` → ``a.example.com``; a URL without a host → its scheme (``file:``)."""
    uncached = _host.__wrapped__
    return [
        (_host(v) if len(v) <= CACHED_URL_CHARS else uncached(v)) if isinstance(v, str) and v else None for v in values
    ]


def url_path(values: Sequence[Any]) -> list[Any]:
    """``https://a.example.com/x/y?z`` → ``/x/y``."""
    uncached = _path.__wrapped__
    return [
        (_path(v) if len(v) <= CACHED_URL_CHARS else uncached(v)) if isinstance(v, str) and v else None for v in values
    ]


def length(values: Sequence[Any]) -> list[Any]:
    """The number of items of a list or mapping, or characters of a string."""
    return [len(v) if isinstance(v, list | tuple | dict | str) else None for v in values]


def lower(values: Sequence[Any]) -> list[Any]:
    """Strings in lower case (``Click`` and ``click`` one category)."""
    return [v.lower() if isinstance(v, str) else v for v in values]


TRANSFORMS: dict[str, Transform] = {"url_host": url_host, "url_path": url_path, "length": length, "lower": lower}
