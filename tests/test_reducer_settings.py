"""``reducer.marginal_weight``: the selector's trade of shares for pairs, set from the configuration file, reaches
every engine the settings build (the daemon's, ``reduce``'s and ``evaluate``'s), as ``DistilledProcessor``'s
keyword argument of the same name does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from distilld import DistilledProcessor
from distilld.cli import main
from distilld.daemon.loop import Daemon
from distilld.features import build_graders
from distilld.settings import ConfigError, load_settings

FEATURES = [
    {"name": "kind", "type": "open_categorical", "field": "kind", "top_k": 40},
    {"name": "site", "type": "categorical", "field": "site", "categories": ["a", "b", "c"]},
    {"name": "x", "type": "numeric", "field": "x"},
]
KAFKA = {"bootstrap_servers": "127.0.0.1:1", "group_id": "g", "input_topics": ["t"], "output_topic": "o"}


def _records(n: int = 4000) -> list[dict[str, Any]]:
    import numpy as np

    rng = np.random.default_rng(3)
    kinds = rng.zipf(1.3, n) % 40
    return [
        {"id": i, "kind": f"k{k}", "site": "abc"[int(k) % 3], "x": float(rng.normal(k, 3))} for i, k in enumerate(kinds)
    ]


def _picked(proc: DistilledProcessor, records: list[dict[str, Any]]) -> list[int]:
    return [
        dp.data["id"]
        for start in range(0, len(records), 1000)
        for dp in proc.process_batch(records[start : start + 1000])
    ]


def test_the_daemon_builds_its_reducers_with_the_setting() -> None:
    records = _records()
    settings = load_settings(
        None, kafka=KAFKA, features=FEATURES, reducer={"marginal_weight": 64}, processing={"on_error": "skip"}
    )
    daemon = Daemon(settings)
    same: dict[str, Any] = {"batch_size": settings.processing.batch_max_records, "clock": daemon.clock}
    plain = DistilledProcessor(build_graders(FEATURES), 3600, 0.1, **same)
    bought = DistilledProcessor(build_graders(FEATURES), 3600, 0.1, marginal_weight=64, **same)
    assert _picked(plain, records) != _picked(bought, records), "the weight changes what is picked here"
    assert _picked(daemon._new_reducer(), records) == _picked(
        DistilledProcessor(build_graders(FEATURES), 3600, 0.1, marginal_weight=64, **same), records
    )


def test_reduce_picks_with_the_setting(tmp_path: Path) -> None:
    records = _records()
    src = tmp_path / "in.ndjson"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    picked = {}
    for weight in (16, 64):
        config = tmp_path / f"c{weight}.yaml"
        config.write_text(yaml.safe_dump({"features": FEATURES, "reducer": {"marginal_weight": weight}}))
        out = tmp_path / f"out{weight}.ndjson"
        assert main(["reduce", str(src), "-o", str(out), "-c", str(config), "--batch", "1000", "-q"]) == 0
        picked[weight] = [orjson.loads(line)["id"] for line in out.read_bytes().splitlines()]
    assert len(picked[16]) == len(picked[64]) == 400, "the rate is kept whatever the weight"
    assert picked[16] != picked[64]


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "much"])
def test_a_marginal_weight_that_is_not_a_positive_number_is_refused_naming_the_field(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"reducer\.marginal_weight"):
        load_settings(
            None, kafka=KAFKA, features=FEATURES, reducer={"marginal_weight": value}, processing={"on_error": "skip"}
        )
