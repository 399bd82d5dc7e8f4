"""zhizao/site.sample.yaml is a complete, commented site model that the platform accepts."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from analytics.compute import SiteComputer
from analytics.config import KpiConfig
from zhizao.config import parse_model
from zhizao.site import SiteModel, load_site

SAMPLE = Path(__file__).resolve().parents[2] / "zhizao" / "site.sample.yaml"


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside a field's annotation (list[X], dict[str, X], X | None)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or args:
        return [m for a in args for m in _models(a)]
    return []


def schema_keys(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> set[str]:
    seen = seen if seen is not None else set()
    if model in seen:
        return set()
    seen.add(model)
    keys = set(model.model_fields)
    for field in model.model_fields.values():
        for inner in _models(field.annotation):
            keys |= schema_keys(inner, seen)
    return keys


def sample_keys(node: Any, *, free_form: bool = False) -> set[str]:
    """Keys of the sample's mappings, except the names a user chooses (machine types,
    calendars, state codes, namespace prefixes, per-machine values)."""
    out: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            named = key in {"machine_types", "calendars", "state_map", "namespaces",
                            "ideal_cycle_s_by_machine"}  # fmt: skip
            if not free_form:
                out.add(str(key))
            if named and isinstance(value, dict):
                for inner in value.values():
                    out |= sample_keys(inner)
            else:
                out |= sample_keys(value, free_form=free_form)
    elif isinstance(node, list):
        for item in node:
            out |= sample_keys(item, free_form=free_form)
    return out


def test_the_sample_parses_and_names_every_key_of_the_schema() -> None:
    site = load_site(SAMPLE)
    assert len(site.machines()) >= 3 and site.meters and site.reasons and site.products
    data = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))
    missing = sorted(schema_keys(SiteModel) - sample_keys(data))
    assert missing == [], f"zhizao/site.sample.yaml does not show these keys: {missing}"


def test_the_sample_is_commented() -> None:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    assert sum("#" in line for line in lines) >= 40


def test_the_kpi_engine_accepts_the_sample() -> None:
    cfg = parse_model(KpiConfig, {"sites": [str(SAMPLE)]})
    computer = SiteComputer(load_site(SAMPLE), cfg)  # refuses ambiguous plant meters, bad maps
    # each machine's meter and calendar are the ones the sample gives it
    assert set(computer.meter_of_machine) == {"M1"}
    assert next(m for m in computer.plant if m.medium == "electricity").id == "em-main"
    assert load_site(SAMPLE).calendar_for("M3").shifts[0].name == "night"
