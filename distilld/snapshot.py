"""Versioned snapshots of a reducer's state (not pickle), for hand-over between instances.

A snapshot holds everything a :class:`DistilledProcessor` has learnt: the
window rings and totals per key, the selector's deficits and decayed counts, budget carries, the key
table, the encoders' state (numeric bin reservoirs, open-category tables),
the watermark. Restored into a processor built from the same configuration,
it continues exactly where the original would have: the same records then
give the same selection.

Layout: ``DSTLSNAP`` + version (u16) + zlib of [u32 header length, JSON
header, then numpy ``.npy`` blobs (``allow_pickle=False``)]. The header
carries a fingerprint of the configuration; restoring into a different one
raises :class:`SnapshotMismatch` instead of mixing incompatible counts.

Keys come back with their types (JSON values as they are, others tagged); a
key that would come back as another value (an Enum, an object of the caller's)
makes :func:`dump` raise :class:`SnapshotError` rather than lose its window.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import hashlib
import io
import logging
import math
import reprlib
import struct
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any, cast

import numpy as np
import orjson

from distilld.compat import WindowMeans
from distilld.keys import key_identity
from distilld.processor import DistilledProcessor
from distilld.window import KeyedWindows

__all__ = ["SnapshotError", "SnapshotMismatch", "dump", "fingerprint", "load"]

log = logging.getLogger(__name__)

MAGIC = b"DSTLSNAP"
# 6: list and dict keys (JSON arrays and objects) are kept as such; 5 held them by their repr, as
# strings (read still, with a warning about strings that look like one). 5: True and 1 are two keys
# (distilld.keys), frozensets are kept, and a key that cannot come back equal is refused at dump; 4
# stored such keys by their repr (read still, with a warning about them)
# 7: the deficits of the records too late for their window (``late_deficit``), written
# only when there are any: a snapshot without them is still 6 or 5
VERSION = 7
READABLE = (4, 5, 6, 7)
VERSION_WITH_JSON_CONTAINERS = 6
# written when no key holds a list or a dict: a daemon of stop 23 or before reads it (a rolling upgrade, or a
# rollback, would cost its pods a replay of every window for nothing)
VERSION_WITHOUT_JSON_CONTAINERS = 5


class SnapshotError(ValueError):
    """Not a snapshot, or a damaged one."""


class SnapshotMismatch(SnapshotError):
    """A snapshot of a reducer with another configuration."""


def _config(proc: DistilledProcessor) -> dict[str, Any]:
    """What must match for counts to mean the same: features, their codes, the cells, the window, the
    rate and the seed. How records are picked (weights, segment size) is not in it: the restored
    deficits and windows mean the same under any, so a new default there keeps the snapshots."""
    desc = {
        "features": proc._names,
        "encoders": [
            [type(e).__name__, e.n_codes, e.pair_div, *(getattr(e, a, None) for a in _ENCODER_CONFIG)]
            for e in proc._encoders
        ],
        "groups": proc._layout.groups,
        "moments": len(proc._selector.moment_weights),
        "panes": proc._windows.panes,
        "max_keys": proc._windows.max_keys,
        "window_seconds": proc.time_horizon_seconds,
        "rate": proc.reduction_percentage,
        "seed": proc.seed,
    }
    return cast(dict[str, Any], orjson.loads(orjson.dumps(desc)))  # as a header gives it back


def fingerprint(proc: DistilledProcessor) -> str:
    """A digest of :func:`_config`."""
    return hashlib.sha256(orjson.dumps(_config(proc))).hexdigest()[:16]


_ENCODER_CONFIG = ("categories", "bins", "top_k", "sample")
# the state to carry over, by owner; everything else comes from the configuration
_WINDOW_STATE: tuple[str, ...] = ("ring", "totals", "deficit", "recent", "recent_epoch", "pane_epoch", "carry")
_WINDOW_STATE += ("last_used", "in_use")
_WINDOW_STATE += ("_capacity", "_free", "evicted", "balance", "_clock", "global_deficit")
_LATE_STATE = ("late_deficit",)  # version 7: left out while it is zero
_WINDOW_STATE += _LATE_STATE
_KEPT_WITHOUT_LATE = tuple(n for n in _WINDOW_STATE if n not in _LATE_STATE)
_ENCODER_STATE: tuple[str, ...] = ("_epoch", "_seen", "_values", "edges", "_mean", "_sd", "_step", "_since_refresh")
_ENCODER_STATE += ("_lut", "_slots", "_freq")


# -- keys of any JSON-ish or bytes type, tagged so that they come back equal --------


# key types that are not JSON values but come out of decoders (Avro's logical types: uuid,
# date, timestamp, time, decimal), tagged so that a restored key equals the one a record gives
_TAGGED: dict[str, tuple[type, Callable[[Any], str], Callable[[str], Hashable]]] = {
    "u": (uuid.UUID, str, uuid.UUID),
    "dt": (datetime.datetime, datetime.datetime.isoformat, datetime.datetime.fromisoformat),
    "d": (datetime.date, datetime.date.isoformat, datetime.date.fromisoformat),
    "tm": (datetime.time, datetime.time.isoformat, datetime.time.fromisoformat),
    "dec": (decimal.Decimal, str, decimal.Decimal),
}


_PLAIN = frozenset({str, int, float, bool, bytes, type(None)})  # keys that come back as they went


def _key_out(key: Hashable) -> Any:
    if isinstance(key, np.generic):
        key = key.item()  # a numpy scalar as the Python value it equals (np.int64(3) == 3)
    if isinstance(key, bytes):
        return {"b": base64.b64encode(key).decode()}
    if isinstance(key, tuple):
        return {"t": [_key_out(k) for k in key]}
    if isinstance(key, frozenset):
        return {"s": [_key_out(k) for k in key]}
    if isinstance(key, list):
        return {"l": [_key_out(k) for k in key]}
    if isinstance(key, dict):  # names and values one after the other: two JSON levels a level, as a list
        return {"o": [_key_out(x) for pair in key.items() for x in pair]}
    if isinstance(key, float) and not math.isfinite(key):
        return {"f": repr(key)}  # JSON has no inf or NaN
    if isinstance(key, int) and not -(2**63) <= key < 2**64:
        return {"i": str(key)}  # beyond the integers JSON encodes here
    if key is None or isinstance(key, bool | int | float | str):
        return key
    for tag, (kind, out, _) in _TAGGED.items():  # datetime before date: it is one
        if isinstance(key, kind):
            return {tag: out(key)}
    raise _NoForm(type(key).__name__)


class _NoForm(Exception):
    """A key (or an item of one) of a type snapshots have no form for."""


def _unkept(key: Hashable, why: str) -> SnapshotError:
    return SnapshotError(
        f"key {reprlib.repr(key)} of type {type(key).__name__} cannot be kept in a snapshot ({why}): its window"
        " would not be found again after a restore. Keys (what key_func gives) should be str, int, float, bool,"
        " None, bytes, UUID, date, time, datetime, Decimal, or tuples, frozensets, lists and dicts of these"
    )


def _json_containers(values: list[Any]) -> bool:
    """Whether a key :func:`_key_out` wrote holds a list or a dict (what only version 6 reads)."""
    level = values
    while level:
        if any(isinstance(v, dict) and ("l" in v or "o" in v) for v in level):
            return True
        level = [x for v in level if isinstance(v, list | dict) for x in (v.values() if isinstance(v, dict) else v)]
    return False


def _keys_out(windows: KeyedWindows) -> list[list[Any]]:
    """[key, slot] of each held key; SnapshotError for a key that would not come back equal (an Enum, a
    class of the caller's): never a key that silently becomes another."""
    out = []
    for slot in windows.slot_of.values():
        key = windows.key_of[slot]
        try:
            value = _key_out(key)
        except _NoForm as e:
            raise _unkept(key, f"no snapshot form for {e}") from None
        if type(key) not in _PLAIN:
            try:
                back = key_identity(_key_in(value, legacy=False))
                same = back == key_identity(key) and hash(back) == hash(key_identity(key))
            except (TypeError, ValueError, ArithmeticError):
                same = False
            if not same:
                raise _unkept(key, "it comes back as another value")
        out.append([value, slot])
    return out


def _by_repr(value: Any) -> bool:
    """Whether a version 4 key (or an item of it) was stored by its repr."""
    if not isinstance(value, dict):
        return False
    return "r" in value or any(map(_by_repr, value.get("t") or value.get("s") or ()))


_REPRS = ("[]", "{}", "()")  # how the repr of a list, a dict or a tuple holding one starts and ends


def _key_in(value: Any, legacy: bool) -> Any:
    """A key as :func:`_key_out` wrote it; ``legacy`` (version 4): ``{"r": repr}`` comes back as that string."""
    if isinstance(value, dict):
        if "b" in value:
            return base64.b64decode(value["b"])
        if "t" in value:
            return tuple(_key_in(v, legacy) for v in value["t"])
        if "s" in value:
            return frozenset(_key_in(v, legacy) for v in value["s"])
        if "l" in value:
            return [_key_in(v, legacy) for v in value["l"]]
        if "o" in value:
            items = [_key_in(v, legacy) for v in value["o"]]
            return dict(zip(items[::2], items[1::2], strict=True))
        if "f" in value:
            return float(value["f"])
        if "i" in value:
            return int(value["i"])
        for tag, (_, _, back) in _TAGGED.items():
            if tag in value:
                return back(value[tag])
        if legacy:
            return str(value["r"])
        raise SnapshotError(f"damaged snapshot: a key of no known form {reprlib.repr(value)}")
    return value


# -- plain attributes: numpy arrays to blobs, the rest to JSON -------------------------


def _attrs(obj: object, prefix: str, arrays: dict[str, np.ndarray], names: tuple[str, ...]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for name, value in vars(obj).items():
        if name not in names:
            continue
        if isinstance(value, np.ndarray):
            arrays[f"{prefix}.{name}"] = value
        elif isinstance(value, float) and not math.isfinite(value):
            meta[name] = {"float": repr(value)}
        elif isinstance(value, bool | int | float | str | list | dict) or value is None:
            meta[name] = value
    return meta


def _restore_attrs(
    obj: object, meta: dict[str, Any], prefix: str, arrays: dict[str, np.ndarray], names: tuple[str, ...]
) -> None:
    for name, value in meta.items():
        if name not in names:
            raise SnapshotError(f"unexpected state {prefix}.{name}")
        current = getattr(obj, name, None)
        if isinstance(value, dict) and set(value) == {"float"}:
            value = float(value["float"])
        elif isinstance(current, Counter):
            value = Counter(value)
        setattr(obj, name, value)
    for key, array in arrays.items():
        owner, _, name = key.rpartition(".")
        if owner == prefix:
            if name not in names:
                raise SnapshotError(f"unexpected state {key}")
            setattr(obj, name, array)


def dump(proc: DistilledProcessor) -> bytes:
    arrays: dict[str, np.ndarray] = {}
    windows = proc._windows
    late = bool(windows.late_deficit.any())
    header: dict[str, Any] = {
        "fingerprint": fingerprint(proc),
        "config": _config(proc),
        "processor": {
            "watermark": repr(proc._watermark),
            "seq": proc._seq,
            # the records too late in a row so far (a restored processor rewinds where this one would) and the
            # rewinds: older readers pass over them, and read without them as none
            "late_run": proc._late_run,
            "late_latest": repr(proc._late_latest),
            "watermark_rewinds": proc.watermark_rewinds,
        },
        "windows": _attrs(windows, "windows", arrays, _WINDOW_STATE if late else _KEPT_WITHOUT_LATE),
        "keys": _keys_out(windows),
        "keys_by_value": True,  # lists and dicts kept as such (version 5 written since has none; older held reprs)
        "encoders": [_attrs(e, f"encoder{i}", arrays, _ENCODER_STATE) for i, e in enumerate(proc._encoders)],
    }
    arrays["processor.missing_counts"] = proc.missing_counts
    blobs, index = [], []
    for name, array in arrays.items():
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
        blobs.append(buf.getvalue())
        index.append([name, len(blobs[-1])])
    header["arrays"] = index
    head = orjson.dumps(header)
    body = struct.pack("<I", len(head)) + head + b"".join(blobs)
    version = (
        VERSION
        if late
        else VERSION_WITH_JSON_CONTAINERS
        if _json_containers(header["keys"])
        else VERSION_WITHOUT_JSON_CONTAINERS
    )
    return MAGIC + struct.pack("<H", version) + zlib.compress(body, 1)


def load(proc: DistilledProcessor, data: bytes) -> None:
    """Put the state of ``data`` into ``proc`` (built from the same configuration)."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 2:
        raise SnapshotError("not a distilld snapshot")
    (version,) = struct.unpack_from("<H", data, len(MAGIC))
    if version not in READABLE:
        raise SnapshotError(f"snapshot version {version}; this distilld reads versions {', '.join(map(str, READABLE))}")
    try:
        body = zlib.decompress(data[len(MAGIC) + 2 :])
        (head_len,) = struct.unpack_from("<I", body)
        header = orjson.loads(body[4 : 4 + head_len])
        arrays: dict[str, np.ndarray] = {}
        offset = 4 + head_len
        for name, length in header["arrays"]:
            arrays[name] = np.load(io.BytesIO(body[offset : offset + length]), allow_pickle=False)
            offset += length
    except Exception as e:  # zlib, struct, JSON, numpy's header (EOFError, a tokenizer's error), a bad index
        raise SnapshotError(f"damaged snapshot: {type(e).__name__}: {e}") from None
    try:
        # the same configuration by value (an int window and a float one) is the same configuration
        if header["fingerprint"] != fingerprint(proc) and header.get("config") != _config(proc):
            ours, theirs = _config(proc), header.get("config") or {}
            differ = [k for k in ours if theirs.get(k) != ours[k]] if theirs else []
            raise SnapshotMismatch(
                "the snapshot was taken with another configuration: "
                + (", ".join(differ) if differ else "features, numeric bins, window, rate or seed")
            )
        windows = proc._windows
        windows.late_deficit = np.zeros_like(windows.late_deficit)  # none before 7
        _restore_attrs(windows, header["windows"], "windows", arrays, _WINDOW_STATE)
        legacy = version < 5
        keys = [(_key_in(k, legacy), int(slot)) for k, slot in header["keys"]]
        windows.restore_keys(keys)
        if legacy and (by_repr := [k for (k, _), (v, _) in zip(keys, header["keys"], strict=True) if _by_repr(v)]):
            log.warning(
                "snapshot version 4 stored %d keys by their repr (such as %s): they come back as strings,"
                " and records with the original keys start new windows",
                len(by_repr), reprlib.repr(by_repr[0]),
            )  # fmt: skip
        old = version == 5 and not header.get("keys_by_value")  # written before lists were kept as lists
        if old and (like := [k for k, _ in keys if isinstance(k, str) and k[:1] + k[-1:] in _REPRS]):
            log.warning(
                "snapshot version 5 holds %d keys that read as a list, a dict or a tuple holding one (such as %s):"
                " version 5 held such keys by their repr, so if these were, they come back as strings, and"
                " records with the original keys start new windows",
                len(like), reprlib.repr(like[0]),
            )  # fmt: skip
        for i, encoder in enumerate(proc._encoders):
            _restore_attrs(encoder, header["encoders"][i], f"encoder{i}", arrays, _ENCODER_STATE)
            encoder.check()
            encoder.restored()
        windows.check()
        windows.recount()
        proc._watermark = float(header["processor"]["watermark"])
        proc._seq = int(header["processor"]["seq"])
        proc._late_run = int(header["processor"].get("late_run", 0))
        proc._late_latest = float(header["processor"].get("late_latest", "-inf"))
        proc.watermark_rewinds = int(header["processor"].get("watermark_rewinds", 0))
        missing = arrays["processor.missing_counts"]
        if missing.shape != proc.missing_counts.shape:
            raise SnapshotError("unexpected state processor.missing_counts")
        proc.missing_counts = missing
        # not in snapshots: the averages start with the next batch, never with what this processor held
        proc._means = WindowMeans(windows.panes, len(proc._numeric))
    except Exception as e:  # a damaged header: also AttributeError (a list for a mapping), OverflowError, ...
        if isinstance(e, SnapshotMismatch):
            raise  # refused before anything was restored
        proc.reset()
        if isinstance(e, SnapshotError):
            raise
        raise SnapshotError(f"damaged snapshot: {type(e).__name__}: {e}") from None
