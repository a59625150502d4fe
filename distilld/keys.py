"""Which records share a window: keys compared as JSON values, not as Python values.

Python has ``True == 1`` (and ``False == 0``, ``(True,) == (1,)``) with equal hashes, so a dict
keyed by the raw keys gave ``"user": true`` and ``"user": 1`` one window. The rule here:

- a boolean is never a number: ``True``, ``1`` and ``1.0`` are two keys (``np.bool_`` is a boolean);
- numbers equal as numbers are one key: ``1``, ``1.0``, ``np.int64(1)`` (JSON has one number type;
  orjson reads ``1.0`` as a float, another producer writes ``1``);
- tuples and frozensets compare their items by this rule; anything else as Python compares it.

:func:`key_identity` gives a key's stand-in for dict lookups; it is the key itself unless a boolean
is in it. The windows' key table is keyed by it; keys shown to users (``DataPoint.key``, snapshots)
stay the records' own values.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from itertools import chain
from typing import Any

import numpy as np

__all__ = ["KeyList", "index_keys", "key_identities", "key_identity"]


class _BooleanTag:
    """Marks a boolean in a key's identity: no key a record gives holds it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<boolean>"


_BOOLEAN = _BooleanTag()
_BOOLEANS = (bool, np.bool_)
_BOOLEAN_TYPES = frozenset(_BOOLEANS)
_NESTED = (tuple, frozenset)
_NOT_NUMBERS = frozenset({str, bytes, type(None)})  # scalars no boolean equals


def key_identity(key: Any) -> Any:
    """What a key is compared by: ``(<boolean>, True)`` for ``True``; tuples and frozensets item by item."""
    if isinstance(key, _BOOLEANS):
        return (_BOOLEAN, bool(key))
    if isinstance(key, tuple):
        return tuple(map(key_identity, key))
    if isinstance(key, frozenset):
        return frozenset(map(key_identity, key))
    return key


def _holds_booleans(keys: Sequence[Any], kinds: set[type]) -> bool:
    """Whether a boolean is among ``keys`` (of types ``kinds``) or inside their tuples and frozensets."""
    while True:
        if not kinds.isdisjoint(_BOOLEANS):
            return True
        if not any(issubclass(t, _NESTED) for t in kinds):
            return False
        if all(issubclass(t, _NESTED) for t in kinds):
            keys = list(chain.from_iterable(keys))  # the common case, every key a tuple: no loop in Python
        else:
            keys = list(chain.from_iterable(k for k in keys if isinstance(k, _NESTED)))
        kinds = set(map(type, keys))


class KeyList(list[Hashable]):
    """:func:`index_keys`' distinct keys, with the identities it told them apart by (``identities``;
    None: the keys themselves, none holds a boolean), so that the key table need not work them out again."""

    identities: Sequence[Hashable] | None = None


def key_identities(keys: Sequence[Hashable]) -> Sequence[Hashable]:
    """:func:`key_identity` of each key; ``keys`` itself when none holds a boolean (a scan of their types)."""
    if isinstance(keys, KeyList):
        return keys if keys.identities is None else keys.identities
    if not _holds_booleans(keys, set(map(type, keys))):
        return keys
    return list(map(key_identity, keys))


def _key_list(distinct: list[Hashable], booleans: bool) -> KeyList:
    out = KeyList(distinct)
    if booleans:
        out.identities = list(map(key_identity, out))
    return out


def _is_nan(key: Any) -> bool:
    return isinstance(key, float | np.floating) and key != key


def index_keys(raw: Sequence[Any]) -> tuple[np.ndarray, list[Hashable]]:
    """Keys per record → (each record's index into the distinct keys, the keys in order of first
    appearance, each as its first record gives it). Keys are told apart by :func:`key_identity`.
    Unhashable keys stand in by their repr; NaN (a missing key: no two NaNs are equal, so each would
    open a key) by None, and so does a value nested too deeply for a repr (a JSON object 1,000 levels down)."""
    try:
        distinct = list(dict.fromkeys(raw))
        kinds = set(map(type, distinct))
        if any(issubclass(t, float | np.floating) for t in kinds) and any(map(_is_nan, distinct)):
            raw = [None if _is_nan(k) else k for k in raw]
            distinct = list(dict.fromkeys(raw))
        lookup = {k: i for i, k in enumerate(distinct)}
        index = np.fromiter(map(lookup.__getitem__, raw), dtype=np.int64, count=len(raw))
    except TypeError:  # an unhashable key somewhere
        return _index_one_by_one(raw)
    # only an entry equal to 0 or 1, or a tuple or frozenset, can have taken in a boolean and a number
    if all(issubclass(t, _NESTED) for t in kinds):
        suspects = list(range(len(distinct)))  # every key a tuple (say): no need to look for them
    else:
        suspects = [i for i in (lookup.get(0), lookup.get(1)) if i is not None]
        if any(issubclass(t, _NESTED) for t in kinds):
            suspects += [i for i, k in enumerate(distinct) if isinstance(k, _NESTED)]
    if suspects:
        return _tell_apart(raw, index, distinct, suspects, kinds if len(suspects) == len(distinct) else None)
    return index, _key_list(distinct, booleans=False)  # no entry equal to 0 or 1: no boolean


def _tell_apart(
    raw: Sequence[Any], index: np.ndarray, distinct: list[Hashable], suspects: list[int], kinds: set[type] | None
) -> tuple[np.ndarray, KeyList]:
    """Index again, by identity, the records of the ``suspects`` entries, if a boolean is among them
    next to a number, or inside a tuple or frozenset (per record in Python, those records only).
    ``kinds``: the types of the keys when every entry is a suspect (else the suspects' are looked up)."""
    if kinds is not None and all(issubclass(t, _NESTED) for t in kinds):
        rows, keys = np.arange(len(raw)), raw  # a tuple equals tuples only: the entries' types are the records'
    else:
        rows = np.flatnonzero(np.isin(index, suspects)) if kinds is None else np.arange(len(raw))
        keys = raw if kinds is not None else [raw[i] for i in rows.tolist()]
        kinds = set(map(type, keys))
    if not _holds_booleans(keys, kinds):
        return index, _key_list(distinct, booleans=False)
    if all(issubclass(t, _BOOLEANS) or t in _NOT_NUMBERS for t in kinds):
        return index, _key_list(distinct, booleans=True)  # no number: True and False are told apart already
    if not any(issubclass(t, _NESTED) for t in kinds):  # scalars: an entry and whether a boolean, in numpy
        part = index[rows] * 2 + np.fromiter(map(_BOOLEAN_TYPES.__contains__, map(type, keys)), np.bool_, len(keys))
        pairs, first, inverse = np.unique(part, return_index=True, return_inverse=True)
        entry_of = np.empty(len(pairs), dtype=np.int64)
        kept: set[int] = set()
        for p in np.argsort(first, kind="stable").tolist():
            entry = int(pairs[p]) // 2
            entry_of[p] = entry if entry not in kept else len(distinct)
            if entry in kept:
                distinct.append(keys[int(first[p])])
            kept.add(entry)
        index[rows] = entry_of[inverse.ravel()]
    else:
        _split_by_identity(index, rows, keys, distinct)
    # number the entries in order of first appearance again (those split off were put last)
    entries, firsts = np.unique(index, return_index=True)
    order = entries[np.argsort(firsts, kind="stable")]
    rank = np.empty(len(distinct), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[index], _key_list([distinct[e] for e in order.tolist()], booleans=True)


def _split_by_identity(index: np.ndarray, rows: np.ndarray, keys: Sequence[Any], distinct: list[Hashable]) -> None:
    """Give the records ``rows`` (their ``keys``) the entry of their key's identity: an entry stays with
    the first identity its records show, any other gets a new one (appended to ``distinct``)."""
    entry_of: dict[Hashable, int] = {}
    kept: set[int] = set()
    new = index[rows]
    for n, (entry, key) in enumerate(zip(new.tolist(), keys, strict=True)):
        ident = key_identity(key)
        found = entry_of.get(ident)
        if found is None:
            found = entry if entry not in kept else len(distinct)
            if found == entry:
                kept.add(entry)
            else:
                distinct.append(key)
            entry_of[ident] = found
        new[n] = found
    index[rows] = new


def _index_one_by_one(raw: Sequence[Any]) -> tuple[np.ndarray, list[Hashable]]:
    entry_of: dict[Hashable, int] = {}
    distinct: list[Hashable] = []
    out = np.empty(len(raw), dtype=np.int64)
    for i, k in enumerate(raw):
        if _is_nan(k):
            k = None
        try:
            out[i] = entry = entry_of.setdefault(key_identity(k), len(entry_of))
        except TypeError:
            k = _stand_in(k)
            out[i] = entry = entry_of.setdefault(k, len(entry_of))
        if entry == len(distinct):
            distinct.append(k)
    keys = KeyList(distinct)
    keys.identities = list(entry_of)
    return out, keys


def _stand_in(key: Any) -> str | None:
    try:
        return repr(key)
    except RecursionError:
        return None
