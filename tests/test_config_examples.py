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


@pytest.mark.parametrize("name", ["features-people.yaml", "people.yaml"])
@pytest.mark.parametrize("suffix", [".csv", ".ndjson"])
def test_people_configs_fit_the_shipped_people_sample(
    name: str, suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """features-people.yaml read income and country at finance.income and address.country, which no record of
    `distilld sample people` has: reduce warned 'no column' and counted every value as missing."""
    from distilld.cli import main

    sample, out = tmp_path / f"people{suffix}", tmp_path / f"out{suffix}"
    assert main(["sample", "people", "-o", str(sample), "--records", "1000"]) == 0
    assert main(["reduce", str(sample), "-o", str(out), "--config", str(CONFIG / name)]) == 0
    err = capsys.readouterr().err
    assert "warning" not in err, err
