"""Random small configurations, each next to random sampling: is any ratio below 1×?

The bench streams are three fixed shapes. The issue's rule is wider: no ratio
below 1× on any stream. Each configuration here draws 0–3 categoricals (2 to 40
values, flat to skewed, some tied to a latent variable), 0–3 numerics of seven
shapes (normal, lognormal, uniform, Poisson counts, 0/1, half-step ties, a
Student t with 1.5 degrees of freedom, all but the uniform tied to the same
latent), a rate (2 % to 30 %), a key count (1, 3 or 40) and a batch size, and
reduces 30,000 records with the library over windows of 10,000. A line per
configuration, and the least ratio of each metric.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from distilld.evaluation import METRICS, Stream, compare
from distilld.features import build_graders
from distilld.processor import DistilledProcessor

__all__ = ["configuration", "run_configuration", "sweep"]

SHAPES = ("normal", "lognormal", "uniform", "poisson", "binary", "ties", "heavy")
N = 30_000
WINDOW_SECONDS = 100.0  # 100 records a second: windows of 10,000


def _numeric(rng: np.random.Generator, shape: str, x: np.ndarray) -> np.ndarray:
    """Values of ``shape`` (the uniform and the t drawn afresh, the others from ``x``, tied to the latent)."""
    if shape == "uniform":
        return rng.uniform(size=N)
    if shape == "heavy":
        return rng.standard_t(1.5, N)
    if shape == "poisson":
        return rng.poisson(np.exp(0.5 * x)).astype(float)
    return {"normal": x, "lognormal": np.exp(x), "binary": (x > 0.5).astype(float), "ties": np.round(x * 2) / 2}[shape]


def configuration(seed: int) -> tuple[Stream, list[dict[str, Any]], dict[str, Any]]:
    """Configuration ``seed``'s stream, features and run settings (rate, keys, batch)."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=N)
    categorical: dict[str, np.ndarray] = {}
    numeric: dict[str, np.ndarray] = {}
    features: list[dict[str, Any]] = []
    n_cat, n_num = int(rng.integers(0, 4)), int(rng.integers(0, 4))
    n_num = max(n_num, 1 - n_cat)  # one feature at least
    for j in range(n_cat):
        k = int(rng.choice([2, 3, 5, 12, 40]))
        p = 1.0 / np.arange(1, k + 1) ** rng.uniform(0, 1.5)
        codes = rng.choice(k, N, p=p / p.sum())
        if rng.random() < 0.5:  # how fields go together: the value shifts where the latent is high
            codes = np.where(latent > 1, (codes + 1) % k, codes)
        categorical[f"c{j}"] = codes
        features.append({"name": f"c{j}", "type": "categorical", "categories": [str(i) for i in range(k)]})
    for j in range(n_num):
        shape = str(rng.choice(SHAPES))
        values = _numeric(rng, shape, 0.6 * latent + 0.8 * rng.normal(size=N))
        numeric[f"n{j}_{shape}"] = values
        features.append({"name": f"n{j}_{shape}", "type": "numeric"})
    rate, keys, batch = (
        float(rng.choice([0.02, 0.05, 0.1, 0.3])),
        int(rng.choice([1, 1, 3, 40])),
        int(rng.choice([100, 1000])),
    )
    run = {"rate": rate, "keys": keys, "batch": batch, "key": rng.integers(0, keys, N)}
    return Stream(categorical, numeric, np.arange(N) / 100.0), features, run


def run_configuration(seed: int) -> tuple[str, dict[str, float]]:
    """(a description, random's error ÷ distilld's for each metric the configuration has)."""
    stream, features, run = configuration(seed)
    columns: dict[str, list[Any]] = {n: [str(c) for c in v.tolist()] for n, v in stream.categorical.items()}
    columns.update({n: v.tolist() for n, v in stream.numeric.items()})
    names = list(columns)
    records = [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]
    for i, (rec, ts, key) in enumerate(zip(records, stream.timestamps.tolist(), run["key"].tolist(), strict=True)):
        rec["_i"], rec["_ts"], rec["_k"] = i, ts, key
    many = run["keys"] > 1
    proc = DistilledProcessor(
        build_graders(features), WINDOW_SECONDS, run["rate"], run["batch"],
        timestamp_func=lambda r: r["_ts"], key_func=(lambda r: r["_k"]) if many else None,
    )  # fmt: skip
    mask, weights = np.zeros(N, dtype=bool), np.zeros(N)
    for start in range(0, N, run["batch"]):
        for dp in proc.process_batch(records[start : start + run["batch"]]):
            mask[dp.data["_i"]] = True
            weights[dp.data["_i"]] = dp.weight
    ours, theirs = compare(stream, lambda: (mask, weights), run["rate"], run["batch"], WINDOW_SECONDS)
    ratios = {m: theirs[m] / ours[m] for m in METRICS if ours[m] > 0 and theirs[m] > 0}
    shown = [f["name"] + (f"/{len(f['categories'])}" if "categories" in f else "") for f in features]
    return f"rate {run['rate']:g}, {run['keys']} keys, batch {run['batch']}: {' '.join(shown)}", ratios


def sweep(count: int, start: int = 0) -> dict[str, tuple[float, int]]:
    """Print a line per configuration; returns each metric's least ratio and the configuration it was in."""
    least: dict[str, tuple[float, int]] = {}
    for seed in range(start, start + count):
        described, ratios = run_configuration(seed)
        below = [m for m, r in ratios.items() if r < 1.0]
        shown = "  ".join(f"{m} {r:.2f}×" for m, r in ratios.items())
        print(f"  {seed:>3} {'BELOW 1×' if below else '':<8} {described}\n              {shown}")
        for m, r in ratios.items():
            if m not in least or r < least[m][0]:
                least[m] = (r, seed)
    print("  least: " + "  ".join(f"{m} {r:.2f}× (#{s})" for m, (r, s) in least.items()))
    return least
