"""Every setting, one bad value each: the error names the field and the reason, and
``distilld run`` stops with exit 1 before it connects to anything.

The walk goes over the settings model itself, so a field added later is covered
without editing this file (and a field the walk cannot find a bad value for fails).
"""

from __future__ import annotations

import copy
import os
import signal
import socket
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import annotated_types
import pytest
import yaml
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from distilld.cli import main
from distilld.settings import ConfigError, Settings, load_settings

VALID: dict[str, Any] = {
    "kafka": {
        "bootstrap_servers": "PLACEHOLDER",
        "group_id": "walk",
        "input_topics": ["events"],
        "output_topic": "events.out",
        "dlq_topic": "events.dlq",
    },
    "features": [{"name": "kind", "type": "categorical", "field": "kind", "categories": ["a", "b"]}],
}

# Sections the walk enters only when present: the values that switch them on.
SECTIONS: dict[str, dict[str, Any]] = {
    "kafka.sasl": {"mechanism": "PLAIN", "username": "u", "password": "p"},
    "format.schema_registry": {"url": "http://registry:8081"},
}


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without ``| None``, whether None is allowed)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else typing.Union[tuple(args)]), len(args) < len(typing.get_args(annotation))  # noqa: UP007
    return annotation, False


def leaves(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo, Any]]:
    for name, info in model.model_fields.items():
        path = f"{prefix}{info.alias or name}"
        annotation, _ = _unwrap(info.annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from leaves(annotation, path + ".")
        else:
            yield path, info, annotation


def bad_values(path: str, info: FieldInfo, annotation: Any) -> list[Any]:
    """Values the field must refuse: of the wrong type, outside its bounds, not one of its choices,
    a file that is not there."""
    out: list[Any] = []
    origin = typing.get_origin(annotation)
    if origin is Literal:
        out.append("no-such-choice")
    elif annotation in (int, float):
        out.append("many")
        for meta in info.metadata:
            if isinstance(meta, annotated_types.Ge):
                out.append(meta.ge - 1)
            elif isinstance(meta, annotated_types.Gt):
                out.append(meta.gt)
            elif isinstance(meta, annotated_types.Le):
                out.append(meta.le + 1)
    elif annotation in (str, SecretStr):
        out.append({"a": "mapping"})
        if any(isinstance(m, annotated_types.MinLen) for m in info.metadata):
            out.append("")
        if path.endswith(("_location", "_file", "avro_schema")):
            out.append("/no/such/file")
        if path in ("reducer.key", "reducer.time"):
            out.append("a..b")
        if path.endswith(("input_pattern", ".url")):
            out.append("([")
    elif origin is list:
        out.append("not-a-list")
    elif origin is dict:
        out.extend([["not", "a", "mapping"], {"no.such.librdkafka.property": 1}])
    return out


def cases() -> list[tuple[str, Any]]:
    found = []
    for path, info, annotation in leaves(Settings):
        values = bad_values(path, info, annotation)
        assert values, f"the walk has no bad value for {path} ({annotation})"
        found += [(path, v) for v in values]
    return found


CASES = cases()


def config_with(path: str, value: Any, bootstrap: str) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    data["kafka"]["bootstrap_servers"] = bootstrap
    steps = path.split(".")
    for section, enabling in SECTIONS.items():
        if path.startswith(section + "."):
            parent, _, leaf = section.rpartition(".")
            data.setdefault(parent, {})[leaf] = dict(enabling)
            if section == "kafka.sasl":
                data["kafka"]["security_protocol"] = "SASL_PLAINTEXT"
            if section == "format.schema_registry":
                data["format"]["value"] = "avro_confluent"
    node = data
    for step in steps[:-1]:
        node = node.setdefault(step, {})
    if steps[-1] == "input_pattern":
        node["input_topics"] = []
    node[steps[-1]] = value
    return data


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A port that counts as a broker: nothing may connect to it."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        yield server


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith("DISTILLD_"):
            monkeypatch.delenv(name)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def test_the_walk_reaches_every_section() -> None:
    fields = {path for path, _ in CASES}
    assert len(fields) >= 45, sorted(fields)
    for section in ("kafka", "kafka.ssl", "kafka.sasl", "reducer", "format", "format.schema_registry"):
        assert any(f.startswith(section + ".") for f in fields), section
    for section in ("processing", "metrics", "features", "filters"):
        assert any(f == section or f.startswith(section + ".") for f in fields), section
    # the valid base is valid: each error below comes from the one bad value
    valid = config_with("kafka.group_id", "g", "127.0.0.1:1")
    assert load_settings(**valid).kafka.group_id == "g"


@pytest.mark.parametrize(("path", "value"), CASES, ids=[f"{p}={v!r}"[:60] for p, v in CASES])
def test_a_bad_value_is_named_and_nothing_connects(
    path: str, value: Any, tmp_path: Path, listener: socket.socket, capsys: pytest.CaptureFixture[str]
) -> None:
    host, port = listener.getsockname()
    data = config_with(path, value, f"{host}:{port}")
    with pytest.raises(ConfigError) as info:
        load_settings(**data)
    lines = str(info.value).splitlines()
    parent = path.rpartition(".")[0]
    # the line names the field (or, for a rule across fields, its section and the field) and says why
    leaf = path.split(".")[-1]
    named = [line for line in lines if line.startswith(path) or (line.startswith(parent + ":") and leaf in line)]
    assert named, f"no line names {path}: {lines}"
    assert all(len(line.split(":", 1)[1].strip()) > 5 for line in named), lines

    config = tmp_path / "distilld.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    capsys.readouterr()
    assert main(["run", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "invalid configuration" in err and leaf in err
    with pytest.raises(BlockingIOError):
        listener.accept()  # no client was made, so nothing connected
