"""The offline reference (bench/offline.py): local search that keeps each block's picks and only
lowers the error it is given."""

from __future__ import annotations

import numpy as np

from distilld.bench.offline import BLOCK_WINDOWS, _deviations, _Layout, improve
from distilld.bench.streams import people


def _objective(stream: object, mask: np.ndarray, block: int) -> float:
    layout = _Layout(stream, 4.0)  # type: ignore[arg-type]
    windows = len(mask) // block - BLOCK_WINDOWS + 1
    quint = layout.quintiles(block, windows)
    dev, picks = _deviations(
        mask, block, windows, layout.first, layout.second, layout.sizes, layout.offset, layout.cat_codes, quint,
        layout.n_cats,
    )  # fmt: skip
    per_cell = np.abs(dev) / (2 * picks[:, None])
    sums = np.add.reduceat(per_cell, layout.offset[:-1], axis=1)
    return float((sums * layout.weight).sum())


def test_the_local_search_keeps_every_blocks_picks_and_lowers_the_error() -> None:
    stream, _, _ = people(6000)
    rng = np.random.default_rng(1)
    block = 50  # windows of 2,000 records
    mask = np.zeros(len(stream), dtype=bool)
    for start in range(0, len(stream), block):
        mask[start + rng.choice(block, 5, replace=False)] = True  # random sampling, 10 % a block
    better = improve(stream, mask, block * BLOCK_WINDOWS, steps=20_000, passes=1, temperature=0.0)
    assert np.array_equal(better.reshape(-1, block).sum(axis=1), mask.reshape(-1, block).sum(axis=1))
    assert (better != mask).sum() > 0, "random sampling leaves swaps that help"
    assert _objective(stream, better, block) < 0.9 * _objective(stream, mask, block)
