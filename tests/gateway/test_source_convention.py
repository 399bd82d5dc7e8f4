"""Every registered source is a complete folder: model, code, commented sample, README, tests.

A new source (say Modbus TCP) is its folder plus one line in ``gateway.sources.registry``; this
test tells its author what is still missing, by name.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from gateway.config import GatewayConfig
from gateway.sources.registry import SOURCES, SourceKind, kind_of
from zhizao.config import load_model, parse_model
from zhizao.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "gateway" / "README.md").read_text(encoding="utf-8")
IDS = [kind.name for kind in SOURCES]


def _gateway(entry: dict[str, object]) -> dict[str, object]:
    return {
        "gateway": {"id": "gw-1", "enterprise": "acme", "site": "plant-sh"},
        "sources": [entry],
        "uplink": {"type": "mqtt"},
    }


@pytest.mark.parametrize("kind", SOURCES, ids=IDS)
def test_folder_holds_model_code_and_sample(kind: SourceKind) -> None:
    for name in ("__init__.py", "config.py", "source.py", "sample.yaml"):
        assert (kind.folder / name).is_file(), f"gateway/sources/{kind.name}/{name} is missing"
    assert kind.config.__module__ == f"gateway.sources.{kind.name}.config"
    assert kind.factory.startswith(f"gateway.sources.{kind.name}.")
    assert callable(kind.load())
    # the discriminator value is the folder's name
    assert typing.get_args(kind.config.model_fields["type"].annotation) == (kind.name,)


@pytest.mark.parametrize("kind", SOURCES, ids=IDS)
def test_sample_is_commented_and_parses_with_its_model(kind: SourceKind) -> None:
    text = kind.sample.read_text(encoding="utf-8")
    assert text.count("#") >= 10, f"{kind.sample} is meant to be fully commented"
    config = load_model(kind.config, kind.sample)
    assert config.type == kind.name
    # the same entry is accepted by the gateway's union and comes back as this kind
    from zhizao.config import safe_load_unique

    gateway = parse_model(GatewayConfig, _gateway(safe_load_unique(text)))
    assert kind_of(gateway.sources[0]) is kind
    assert gateway.sources[0] == config


@pytest.mark.parametrize("kind", SOURCES, ids=IDS)
def test_readme_has_a_section(kind: SourceKind) -> None:
    heading = re.compile(rf"^#+ .*`type: {kind.name}`", re.MULTILINE)
    assert heading.search(README), f"gateway/README.md needs a heading with `type: {kind.name}`"


@pytest.mark.parametrize("kind", SOURCES, ids=IDS)
def test_tests_exercise_it(kind: SourceKind) -> None:
    uses = re.compile(rf"\bgateway\.sources\.{kind.name}\b")
    files = [
        p.name
        for p in (ROOT / "tests" / "gateway").glob("test_*.py")
        if p.name != Path(__file__).name and uses.search(p.read_text(encoding="utf-8"))
    ]
    assert files, f"no test in tests/gateway imports gateway.sources.{kind.name}"


def test_union_is_the_registry() -> None:
    with pytest.raises(ConfigError) as err:
        parse_model(GatewayConfig, _gateway({"type": "modbus", "name": "m"}))
    message = str(err.value)
    for kind in SOURCES:
        assert kind.name in message  # the operator is told which types exist
