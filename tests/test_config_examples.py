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


def test_readme_configuration_reference_matches_the_settings_model() -> None:
    from distilld.reference import BEGIN, END, reference

    readme = (CONFIG.parent / "README.md").read_text(encoding="utf-8")
    shown = readme[readme.index(BEGIN) : readme.index(END) + len(END)]
    assert shown == reference(), "regenerate it: python -m distilld.reference --write README.md"
