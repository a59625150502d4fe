"""UserALE.js logs: the real fixture files, and generated streams in the same shape.

The fixture files (tests/data/userale/) are Apache Flagon UserALE.js sample logs, copied unchanged from
``../shared/fixtures/userale`` (from apache/flagon-distill; see the README and NOTICE there).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "data" / "userale"

PAGES = [
    "https://app.example.com/dashboard",
    "https://app.example.com/reports/42",
    "https://docs.example.org/guide",
    "file:///C:/Sample/index.html",
    "chrome-extension://glifkfgngpmliakinpibmjodbclonhjd/optionsPage.html?",
]
TARGETS = [f"button#b{i}" for i in range(12)] + [f"input#f{i}" for i in range(6)] + ["a.nav", "div.card", "#document"]
RAW_TYPES = ["click", "mouseover", "scroll", "focus", "blur", "keydown", "input", "change", "submit", "wheel"]
RAW_WEIGHTS = [20, 35, 12, 8, 8, 6, 4, 3, 1, 3]


def fixture_logs() -> list[dict[str, Any]]:
    """The 215 real logs of the two fixture files."""
    logs: list[dict[str, Any]] = []
    for name in ("sample_data.json", "sample_data_multiusers.json"):
        logs += json.loads((FIXTURES / name).read_text())
    return logs


def generated_logs(n: int, sessions: int = 12, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` logs over ``sessions`` sessions: raw, custom and interval logs in UserALE.js's shape,
    skewed event types, sessions of older UserALE versions spelling ``sessionId``."""
    rng = random.Random(seed)
    start = 1_708_446_000_000
    logs = []
    for i in range(n):
        s = rng.randrange(sessions)
        t = start + i * 50 + rng.randrange(50)  # ~1.4 hours of logs
        page = PAGES[(s + (i // 2000)) % len(PAGES)] if rng.random() < 0.8 else rng.choice(PAGES)
        kind = rng.choices(["raw", "custom", "interval"], [0.6, 0.15, 0.25])[0]
        log: dict[str, Any] = {
            "pageUrl": page,
            "pageTitle": "Example",
            "browser": {"browser": "chrome", "version": "114.0.0"},
            "logType": kind,
            "userId": f"user{s % 5}",
            "useraleVersion": "2.4.0" if s % 3 else "2.1.1",
            ("sessionID" if s % 3 else "sessionId"): f"session_{s}",
        }
        target = rng.choice(TARGETS[: 6 + s]) if s < 15 else rng.choice(TARGETS)
        depth = 3 + (TARGETS.index(target) % 8) + rng.randrange(2)
        if kind == "raw":
            typ = rng.choices(RAW_TYPES, RAW_WEIGHTS)[0]
            log.update(type=typ, clientTime=t, target=target, path=[target] + ["div"] * (depth - 1))
            log.update(userAction=typ not in ("mouseover", "scroll", "wheel"), details={})
        elif kind == "custom":
            log.update(type=rng.choice(["load", "tabs.onUpdated", "tabs.onActivated"]), clientTime=t)
            log.update(userAction=False, details={"pageLoadTime": rng.randrange(500)})
        else:
            log.update(type=rng.choice(["mouseover", "click", "scroll"]), startTime=t - 3000, endTime=t)
            log.update(target=target, path=[target] + ["div"] * (depth - 1), count=rng.randrange(1, 9))
            log.update(duration=3000, userAction=False, targetChange=True, typeChange=False)
        logs.append(log)
    return logs


def session(log: dict[str, Any]) -> Any:
    return log.get("sessionID", log.get("sessionId"))
