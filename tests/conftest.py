from __future__ import annotations

import random
from typing import Any

import pytest

from distilld import DistilledProcessor, build_graders

PEOPLE_FEATURES: list[dict[str, Any]] = [
    {"name": "gender", "type": "categorical", "categories": ["female", "male", "other"]},
    {"name": "age", "type": "numeric"},
    {"name": "income", "type": "numeric", "field": "money.income"},
]


def people_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        gender = rng.choices(["female", "male", "other"], [0.55, 0.4, 0.05])[0]
        age = rng.gauss(40 if gender == "male" else 35, 10)
        out.append({"id": i, "gender": gender, "age": age, "money": {"income": rng.lognormvariate(10, 0.5)}})
    return out


class FakeClock:
    """A settable clock for processing-time windows."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def people_processor(clock: FakeClock) -> DistilledProcessor:
    return DistilledProcessor(build_graders(PEOPLE_FEATURES), 600, 0.1, 500, clock=clock)
