from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from distilld import build_graders

CONFIG = Path(__file__).resolve().parent.parent / "config"


@pytest.mark.parametrize("path", sorted(CONFIG.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_feature_lists_build(path: Path) -> None:
    graders = build_graders(yaml.safe_load(path.read_text())["features"])
    assert graders
