"""Which records share a window: keys compared as JSON values, not as Python values.

Python has ``True == 1`` (and ``False == 0``, ``(True,) == (1,)``) with equal hashes, so a dict
keyed by the raw keys gave ``"user": true`` and ``"user": 1`` one window. The rule here:

- a boolean is never a number: ``True``, ``1`` and ``1.0`` are two keys (``np.bool_`` is a boolean);
- numbers equal as numbers are one key: ``1``, ``1.0``, ``np.int64(1)`` (JSON has one number type;
  orjson reads ``1.0`` as a float, another producer writes ``1``);
- tuples and frozensets compare their items by this rule; so does a JSON array (a list), and a JSON
  object (a dict) its members, as a set of (name, value) pairs: their order does not count. A list
  or a dict is never the same key as a string (``[1, 2]`` is not ``"[1, 2]"``), a number or a tuple:
  JSON arrays decode to lists, never to tuples, so a tuple comes only from a ``key_func``, which
  builds it on purpose (several fields in one key, say);
- NaN is a missing value wherever it is: a NaN key is the key None, and a NaN inside a key compares
  as None there (NaN equals nothing, not even itself: each record would have opened a key); so is a
  Decimal NaN (a signalling one's hash raised) and a complex one;
- a key nested more than 100 levels deep (tuples, lists, objects inside one another) is a missing
  key, None: comparing it would run into Python's recursion limit (hashing a tuple some 100,000
  levels deep crashed the interpreter: tuples are measured before they are hashed);
- a set is the frozenset of its items, a bytearray the bytes it holds, a numpy array the list of its
  items (as Python compares them: ``{1, 2} == frozenset({1, 2})``); they stood in by their repr, the
  key of the string ``"{1, 2}"`` too;
- a key that cannot be hashed or compared (unhashable, or its ``__hash__`` or ``__eq__`` raises) is a
  missing key, None, as when ``key_func`` raises: it made the batch raise, or stood in by its repr;
- anything else as Python compares it.

:func:`key_identity` gives a key's stand-in for dict lookups; it is the key itself unless a boolean,
a NaN, a list or a dict is in it. The windows' key table is keyed by it; keys shown to users
(``DataPoint.key``, snapshots) stay the records' own values (a list key reads ``[1, 2]``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from decimal import Decimal
from itertools import chain
from typing import Any

import numpy as np

from distilld.encoding import looked_up

__all__ = ["KeyList", "index_keys", "key_identities", "key_identity"]


class _Tag:
    """Marks a boolean, a JSON array or a JSON object in a key's identity: no key a record gives holds it."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return f"<{self._name}>"


_BOOLEAN, _ARRAY, _OBJECT = _Tag("boolean"), _Tag("array"), _Tag("object")
_BOOLEANS = (bool, np.bool_)
_BOOLEAN_TYPES = frozenset(_BOOLEANS)
_FLOATS = (float, np.floating, Decimal, complex, np.complexfloating)  # the types that have a NaN
_JSON = (list, dict)
_NESTED = (tuple, frozenset)  # the hashable containers: the fast path meets only these
_CONTAINERS = (tuple, frozenset, list, dict)
_NOT_NUMBERS = frozenset({str, bytes, type(None)})  # scalars no boolean equals
_CONVERTED = (set, bytearray, np.ndarray)  # keys held as another type: frozenset, bytes, list
_AS_IS = frozenset({str, int, bytes, type(None)})  # their own identity
_TRUSTED = _AS_IS | {float, bool, tuple, frozenset}  # types whose == never raises (a key of another is tried)
_MAX_DEPTH = 100  # containers inside one another a key may have: a snapshot writes 2 JSON levels for each


class _TooDeep(Exception):
    """A key nested more than ``_MAX_DEPTH`` levels deep."""


def key_identity(key: Any) -> Any:
    """What a key is compared by: ``(<boolean>, True)`` for ``True``, ``(<array>, (1, 2))`` for ``[1, 2]``,
    ``(<object>, frozenset({("a", 1)}))`` for ``{"a": 1}``, None for NaN or a key nested too deeply;
    tuples and frozensets item by item."""
    if type(key) in _AS_IS:
        return key
    try:
        return _identity(key)
    except _TooDeep:
        return None


def _identity(key: Any, left: int = _MAX_DEPTH) -> Any:
    """:func:`key_identity`, or _TooDeep past ``left`` more levels of containers (a bounded recursion)."""
    kind = type(key)
    if kind in _AS_IS:  # the common scalars first: a key of tuples of them is mostly these
        return key
    if kind in _BOOLEAN_TYPES:
        return (_BOOLEAN, bool(key))
    if isinstance(key, _CONTAINERS):
        if left == 0:
            raise _TooDeep
        left -= 1
        if isinstance(key, tuple):
            return tuple([_identity(k, left) for k in key])
        if isinstance(key, list):
            return (_ARRAY, tuple([_identity(k, left) for k in key]))
        if isinstance(key, dict):
            return (_OBJECT, frozenset([(_identity(n, left), _identity(v, left)) for n, v in key.items()]))
        return frozenset([_identity(k, left) for k in key])
    if isinstance(key, _CONVERTED):
        return _identity(_held(key), left)
    if _is_nan(key):
        return None
    return key


def _held(key: Any) -> Any:
    """``key`` as the windows hold it: a set as a frozenset, a bytearray as bytes, a numpy array as a list,
    in tuples, lists and dicts too (their identity is that of these; a snapshot keeps these). Call it on a
    key whose nesting :func:`_identity` has bounded. A key with none of these in it is itself.
    (A set's or frozenset's items are hashable: none of these.)"""
    if isinstance(key, set):
        return frozenset(key)
    if isinstance(key, bytearray):
        return bytes(key)
    if isinstance(key, np.ndarray):
        return _held(key.tolist())
    if isinstance(key, tuple | list):
        items = list(map(_held, key))
        if all(a is b for a, b in zip(items, key, strict=True)):
            return key
        return tuple(items) if isinstance(key, tuple) else items
    if isinstance(key, dict):
        values = {n: _held(v) for n, v in key.items()}
        return key if all(values[n] is v for n, v in key.items()) else values
    return key


def _is_nan(key: Any) -> bool:
    """Whether ``key`` is a NaN: a float, numpy float or complex, a complex or a Decimal one."""
    if not isinstance(key, _FLOATS):
        return False
    if isinstance(key, Decimal):
        return key.is_nan()  # a signalling NaN's != raises
    try:
        return bool(key != key)
    except Exception:  # a subclass's
        return False


def _holds_nan(keys: Sequence[Any]) -> bool:
    """Whether a NaN is among ``keys`` (not inside them): the one value unequal to itself. A key whose
    comparison raises or is not a bool (a pandas NA, say) counts as one: it takes the exact path."""
    try:
        return any([k != k for k in keys])
    except (TypeError, ValueError, ArithmeticError):
        return True


def _needs_identity(keys: Sequence[Any], kinds: set[type], distinct: Sequence[Any] | None = None) -> bool:
    """Whether a key of ``keys`` (of types ``kinds``) is not its own identity: a boolean, a NaN, a list
    or a dict among them or inside their tuples and frozensets; _TooDeep if tuples and frozensets nest
    more than ``_MAX_DEPTH`` levels. NaNs are looked for among ``distinct``, the distinct keys, if given:
    a tuple holding a NaN equals only a tuple holding that very NaN, so its entry holds it too."""
    found, floats = _scan(keys, kinds, nans=distinct is None)
    if found or not floats or distinct is None:
        return found
    return _scan(distinct, set(map(type, distinct)), nans=True)[0]


def _scan(keys: Sequence[Any], kinds: set[type], nans: bool) -> tuple[bool, bool]:
    """(whether a boolean, a list or a dict, or with ``nans`` a NaN, is among ``keys`` or inside their
    tuples and frozensets; whether a float is), a level of them at a time."""
    found = floats = False
    for _ in range(_MAX_DEPTH + 1):
        if not found:
            found = not kinds.isdisjoint(_BOOLEAN_TYPES) or any(issubclass(t, _JSON) for t in kinds)
            if any(issubclass(t, _FLOATS) for t in kinds):
                floats = True
                found = found or (nans and _holds_nan(keys))
        nested = [issubclass(t, _NESTED) for t in kinds]
        if not any(nested):
            return found, floats
        if all(nested):
            keys = list(chain.from_iterable(keys))  # the common case, every key a tuple: no loop in Python
        else:
            keys = list(chain.from_iterable(k for k in keys if isinstance(k, _NESTED)))
        kinds = set(map(type, keys))
    raise _TooDeep


class KeyList(list[Hashable]):
    """:func:`index_keys`' distinct keys, with the identities it told them apart by (``identities``;
    None: the keys themselves, none holds a boolean, a NaN, a list or a dict), so that the key table
    need not work them out again."""

    identities: Sequence[Hashable] | None = None


def key_identities(keys: Sequence[Hashable]) -> Sequence[Hashable]:
    """:func:`key_identity` of each key; ``keys`` itself when each is its own (a scan of their types)."""
    if isinstance(keys, KeyList):
        return keys if keys.identities is None else keys.identities
    try:
        if not _needs_identity(keys, set(map(type, keys))):
            return keys
    except _TooDeep:
        pass
    return list(map(key_identity, keys))


def _key_list(distinct: list[Hashable], identities: bool) -> KeyList:
    out = KeyList(distinct)
    if identities:
        out.identities = list(map(_identity, out))  # the fast path's keys: none nests too deeply
    return out


def index_keys(raw: Sequence[Any]) -> tuple[np.ndarray, list[Hashable]]:
    """Keys per record → (each record's index into the distinct keys, the keys in order of first
    appearance, each as its first record gives it). Keys are told apart by :func:`key_identity`.
    NaN (a missing key: no two NaNs are equal, so each would open a key) stands in by None, and so does
    a key nested too deeply, and a key that cannot be hashed or compared; a set, a bytearray and a numpy
    array by a frozenset, bytes and a list of their items."""
    if _deep_tuples(raw):  # hashing them could crash the interpreter (a C recursion): key by key instead
        return _index_one_by_one(raw)
    try:
        distinct = list(dict.fromkeys(raw))
        kinds = set(map(type, distinct))
        if not kinds <= _TRUSTED:
            _compare_untrusted(distinct)
        if any(issubclass(t, _FLOATS) for t in kinds) and any(map(_is_nan, distinct)):
            raw = [None if _is_nan(k) else k for k in raw]
            distinct = list(dict.fromkeys(raw))
        lookup = {k: i for i, k in enumerate(distinct)}
        index = looked_up(lookup, raw, np.int64)
    except Exception:  # an unhashable key somewhere, one whose __hash__ or __eq__ raises, or too deep
        return _index_one_by_one(raw)
    # only an entry equal to 0 or 1, or a tuple or frozenset, can have taken in a boolean and a number
    # (and only a tuple or frozenset can hold a NaN)
    if all(issubclass(t, _NESTED) for t in kinds):
        suspects = list(range(len(distinct)))  # every key a tuple (say): no need to look for them
    else:
        suspects = [i for i in (lookup.get(0), lookup.get(1)) if i is not None]
        if any(issubclass(t, _NESTED) for t in kinds):
            suspects += [i for i, k in enumerate(distinct) if isinstance(k, _NESTED)]
    if suspects:
        try:
            return _tell_apart(raw, index, distinct, suspects, kinds if len(suspects) == len(distinct) else None)
        except _TooDeep:
            return _index_one_by_one(raw)
    return index, _key_list(distinct, identities=False)  # no entry equal to 0 or 1: no boolean


def _tell_apart(
    raw: Sequence[Any], index: np.ndarray, distinct: list[Hashable], suspects: list[int], kinds: set[type] | None
) -> tuple[np.ndarray, KeyList]:
    """Index again, by identity, the records of the ``suspects`` entries, if a boolean is among them
    next to a number, or a boolean or a NaN inside a tuple or frozenset (per record in Python, those
    records only). ``kinds``: the types of the keys when every entry is a suspect (else the suspects'
    are looked up). _TooDeep (before anything is changed) if a key nests too deeply."""
    if kinds is not None and all(issubclass(t, _NESTED) for t in kinds):
        rows, keys = np.arange(len(raw)), raw  # a tuple equals tuples only: the entries' types are the records'
    else:
        rows = np.flatnonzero(np.isin(index, suspects)) if kinds is None else np.arange(len(raw))
        keys = raw if kinds is not None else [raw[i] for i in rows.tolist()]
        kinds = set(map(type, keys))
    if not _needs_identity(
        keys, kinds, distinct if len(suspects) == len(distinct) else [distinct[i] for i in suspects]
    ):
        return index, _key_list(distinct, identities=False)
    if all(issubclass(t, _BOOLEANS) or t in _NOT_NUMBERS for t in kinds):
        return index, _key_list(distinct, identities=True)  # no number: True and False are told apart already
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
    # number the entries in order of first appearance again (those split off were put last, those
    # merged into another, tuples whose NaNs told them apart, are gone)
    entries, firsts = np.unique(index, return_index=True)
    order = entries[np.argsort(firsts, kind="stable")]
    rank = np.empty(len(distinct), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[index], _key_list([distinct[e] for e in order.tolist()], identities=True)


def _split_by_identity(index: np.ndarray, rows: np.ndarray, keys: Sequence[Any], distinct: list[Hashable]) -> None:
    """Give the records ``rows`` (their ``keys``) the entry of their key's identity: an entry stays with
    the first identity its records show, any other gets a new one (appended to ``distinct``), each
    entry's key its first record's. (An identity can take in records of several entries: tuples that
    NaNs told apart; so an entry's first record may have gone to another, and the entry's key is set
    by the first record that stays.)"""
    entry_of: dict[Hashable, int] = {}
    kept: set[int] = set()
    new = index[rows]
    for n, (entry, key) in enumerate(zip(new.tolist(), keys, strict=True)):
        ident = _identity(key)
        found = entry_of.get(ident)
        if found is None:
            if entry in kept:
                found = len(distinct)
                distinct.append(key)
            else:
                found = entry
                kept.add(entry)
                distinct[entry] = key
            entry_of[ident] = found
        new[n] = found
    index[rows] = new


def _compare_untrusted(keys: Sequence[Any]) -> None:
    """Compare each key of a type of the caller's with itself: raises what its ``__eq__`` raises."""
    for k in keys:
        if type(k) not in _TRUSTED:
            bool(k == k)


def _deep_tuples(raw: Sequence[Any]) -> bool:
    """Whether a key is a tuple holding tuples more than ``_MAX_DEPTH`` levels deep (measured without
    hashing: a tuple's hash recurses in C, and some 100,000 levels crashed the interpreter). A level at a
    time, its types looked at in C: flat tuples cost two passes in C, no loop in Python."""
    level: Sequence[Any] = raw
    for _ in range(_MAX_DEPTH + 2):
        kinds = set(map(type, level))
        if not any(issubclass(t, tuple) for t in kinds):
            return False
        if not all(issubclass(t, tuple) for t in kinds):
            level = [k for k in level if isinstance(k, tuple)]
        level = list(chain.from_iterable(level))
    return True


def _index_one_by_one(raw: Sequence[Any]) -> tuple[np.ndarray, list[Hashable]]:
    """:func:`index_keys` a key at a time: a batch with a list, a dict or another unhashable key in it,
    with tuples nested too deeply, or with a key whose ``__hash__`` or ``__eq__`` raises."""
    entry_of: dict[Hashable, int] = {}
    distinct: list[Hashable] = []
    out = np.empty(len(raw), dtype=np.int64)
    for i, k in enumerate(raw):
        try:
            ident = key_identity(k)
            if type(ident) not in _TRUSTED:
                _compare_untrusted([ident])
            out[i] = entry = entry_of.setdefault(ident, len(entry_of))
            held = None if ident is None else _held(k)  # NaN or nested too deeply: a missing key
        except Exception:  # unhashable (a class's), or its __hash__ or __eq__ raises: a missing key
            ident = held = None
            out[i] = entry = entry_of.setdefault(None, len(entry_of))
        if entry == len(distinct):
            distinct.append(held)
    keys = KeyList(distinct)
    keys.identities = list(entry_of)
    return out, keys
