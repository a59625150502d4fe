"""Generated streams: skewed shares, correlated fields, rare groups, drift.

Each generator returns a :class:`Stream` (columns) plus the label lists of its
categorical columns, and a ``features`` config for the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from distilld.evaluation import Stream

__all__ = ["STREAMS", "clickstream", "drifting_people", "people"]

Generated = tuple[Stream, dict[str, list[str]], list[dict[str, Any]]]


def _pick(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category per row from a rows × categories probability matrix."""
    cum = np.cumsum(probs, axis=1)
    cum /= cum[:, -1:]
    return (rng.random((probs.shape[0], 1)) > cum).sum(axis=1)


def people(n: int, rate_per_s: float = 100.0, seed: int = 1, drift: bool = False) -> Generated:
    """The seed's people records: 5 categorical + 3 numeric features, all entangled."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate_per_s
    phase = t / t[-1] if drift else np.zeros(n)
    gender = _pick(rng, np.column_stack([0.55 - 0.25 * phase, 0.40 + 0.2 * phase, np.full(n, 0.05)]))
    age = np.clip(rng.normal(38 + 6 * (gender == 1), 12), 16, 95)
    country_p = 1.0 / np.arange(1, 9) ** 1.3
    country = _pick(rng, np.tile(country_p, (n, 1)))
    young = (age < 30).astype(float)
    device = _pick(rng, np.column_stack([0.5 + 0.3 * young, 0.35 - 0.2 * young, np.full(n, 0.1), np.full(n, 0.05)]))
    income = np.exp(rng.normal(10 + 0.012 * (age - 38) + 0.15 * (country < 2), 0.6))
    rich = (income > np.median(income)).astype(float)
    plan = _pick(rng, np.column_stack([0.7 - 0.4 * rich, 0.25 + 0.25 * rich, 0.05 + 0.15 * rich]))
    channel = _pick(
        rng, np.column_stack([np.full(n, 0.4), 0.3 * (1 + young), np.full(n, 0.15), np.full(n, 0.1), np.full(n, 0.02)])
    )
    session = rng.gamma(2.0 + plan, 60.0 + 40 * (device == 0))
    labels = {
        "gender": ["female", "male", "other"],
        "country": ["us", "de", "fr", "in", "br", "jp", "ng", "nz"],
        "device": ["mobile", "desktop", "tablet", "tv"],
        "plan": ["free", "pro", "team"],
        "channel": ["search", "social", "email", "direct", "partner"],
    }
    stream = Stream(
        categorical={"gender": gender, "country": country, "device": device, "plan": plan, "channel": channel},
        numeric={"age": age, "income": income, "session_seconds": session},
        timestamps=t,
    )
    features: list[dict[str, Any]] = [{"name": k, "type": "categorical", "categories": v} for k, v in labels.items()]
    features += [{"name": k, "type": "numeric"} for k in stream.numeric]
    return stream, labels, features


def drifting_people(n: int, rate_per_s: float = 100.0, seed: int = 2) -> Generated:
    """People whose gender shares move over the stream: the window must follow."""
    return people(n, rate_per_s, seed, drift=True)


def clickstream(n: int, rate_per_s: float = 100.0, seed: int = 3) -> Generated:
    """UserALE-like events: event type, log type, target (many values, rare tail), host."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate_per_s
    host = _pick(rng, np.tile(np.array([0.6, 0.25, 0.1, 0.04, 0.01]), (n, 1)))
    etype_p = 1.0 / np.arange(1, 11) ** 1.5
    etype = _pick(rng, np.tile(etype_p, (n, 1)))
    log_type = (etype >= 7).astype(int)  # interval logs for the rarer event types
    target_p = 1.0 / np.arange(1, 41) ** 1.1
    target = (_pick(rng, np.tile(target_p, (n, 1))) + 7 * host) % 40
    user_action = (rng.random(n) < np.where(etype < 3, 0.9, 0.3)).astype(int)
    depth = np.clip(rng.poisson(3 + 2 * host), 1, 20).astype(float)
    duration = np.exp(rng.normal(5 + 0.4 * log_type + 0.1 * depth, 1.0))
    x = rng.normal(600 + 80 * (etype % 3), 200)
    labels = {
        "host": ["app.example", "docs.example", "shop.example", "admin.example", "beta.example"],
        "type": ["click", "focus", "blur", "input", "change", "scroll", "keydown", "mouseover", "load", "submit"],
        "logType": ["raw", "interval"],
        "target": [f"#el-{i}" for i in range(40)],
        "userAction": ["false", "true"],
    }
    stream = Stream(
        categorical={"host": host, "type": etype, "logType": log_type, "target": target, "userAction": user_action},
        numeric={"path_depth": depth, "duration_ms": duration, "x": x},
        timestamps=t,
    )
    features: list[dict[str, Any]] = [
        {"name": "host", "type": "categorical", "categories": labels["host"]},
        {"name": "type", "type": "categorical", "categories": labels["type"]},
        {"name": "logType", "type": "categorical", "categories": labels["logType"]},
        {"name": "target", "type": "open_categorical", "top_k": 48},
        {"name": "userAction", "type": "categorical", "categories": labels["userAction"]},
    ]
    features += [{"name": k, "type": "numeric"} for k in stream.numeric]
    return stream, labels, features


STREAMS: dict[str, Callable[..., Generated]] = {  # (n, seed=…)
    "people": people,
    "drifting_people": drifting_people,
    "clickstream": clickstream,
}
