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


def _shipped_feature_lists() -> list[tuple[str, list[object]]]:
    """The features of the presets and of the chart's values files that set any."""
    root = CONFIG.parent
    out = [
        (p.name, yaml.safe_load(p.read_text())["features"]) for p in sorted((root / "distilld/presets").glob("*.yaml"))
    ]
    for path in sorted((root / "helm/distilld").rglob("*values.yaml")):
        config = yaml.safe_load(path.read_text()).get("config") or {}
        if "features" in config:
            out.append((str(path.relative_to(root)), config["features"]))
    return out


@pytest.mark.parametrize(("name", "features"), _shipped_feature_lists(), ids=lambda v: v if isinstance(v, str) else "")
def test_preset_and_chart_feature_lists_build(name: str, features: list[object]) -> None:
    assert build_graders(features)


def test_readme_configuration_reference_matches_the_settings_model() -> None:
    from distilld.reference import BEGIN, END, reference

    readme = (CONFIG.parent / "README.md").read_text(encoding="utf-8")
    shown = readme[readme.index(BEGIN) : readme.index(END) + len(END)]
    assert shown == reference(), "regenerate it: python -m distilld.reference --write README.md"
