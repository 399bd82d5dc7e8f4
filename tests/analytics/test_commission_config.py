"""The commission's YAML document: the sample loads, carries the seed's targets, bad input is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from analytics.commission_config import (
    DEFAULT_SAMPLE,
    CommissionConfig,
    load_commission_config,
    parse_commission_config,
)
from zhizao.errors import ConfigError


def _sample() -> dict[str, Any]:
    return load_commission_config().model_dump(mode="json")


def test_sample_loads_with_the_seed_table_targets() -> None:
    cfg = load_commission_config(DEFAULT_SAMPLE)
    assert isinstance(cfg, CommissionConfig) and cfg.source and cfg.version
    # DOMAIN section 6 / the seed's table: (2020, 2025) per indicator
    expected = {
        "sei_va_share_gdp": (20.0, 25.0),
        "rd_intensity": (1.7, 2.1),
        "invention_patents_per_revenue": (1.0, 1.2),
        "it_intensity": (0.5, 0.8),
        "va_rate_change": (1.0, 2.5),
        "quality_competitiveness_index": (None, None),
        "labour_productivity": (22.0, 26.0),
        "land_output": (75.0, 80.0),
        "energy_intensity_decline": (None, None),  # city-set
        "co2_intensity_decline": (None, None),  # city-set
        "water_intensity_decline": (20.0, None),  # "further decline" is qualitative
        "solid_waste_utilization": (97.0, 97.0),
    }
    seed = {k for k, t in cfg.targets.items() if t.seed_number}
    assert seed == set(expected)
    assert sorted(cfg.targets[k].seed_number or 0 for k in seed) == list(range(1, 13))
    # the plan's qualitative 2025 goals outside the table
    assert cfg.targets["key_process_cnc_rate"].by_year[2025].text == "达到国内领先水平"
    assert set(cfg.targets) - seed == {"key_process_cnc_rate", "intelligent_equipment_rate"}
    for key, (v2020, v2025) in expected.items():
        t = cfg.targets[key]
        assert (t.by_year[2020].value, t.by_year[2025].value) == (v2020, v2025), key
        assert t.source.startswith("seed table row")
    assert cfg.targets["va_rate_change"].by_year[2020].upper == 1.5
    assert cfg.targets["rd_intensity"].by_year[2020].approximate
    binding = {k for k, t in cfg.targets.items() if t.kind == "binding"}
    assert binding == {
        "energy_intensity_decline",
        "co2_intensity_decline",
        "water_intensity_decline",
        "solid_waste_utilization",
    }
    assert cfg.city_target("energy_intensity_decline", 2020) is not None
    assert cfg.city_target("energy_intensity_decline", 2019) is None
    assert cfg.imported_value("sei_va_share_gdp", 2020) is not None
    assert cfg.cohort("demo-2020").base_year == 2015
    assert cfg.green_factory.rule_set().id == "GBT36132-2018"
    assert cfg.green_factory.rule_set("GBT36132-2025").effective_from.year == 2025
    assert cfg.factor_set_year(2024) == 2015


def test_sample_example_values_say_they_are_examples() -> None:
    cfg = load_commission_config()
    for entries in cfg.city_targets.values():
        assert all("EXAMPLE" in e.source for e in entries)
    for values in cfg.imported.values():
        assert all("EXAMPLE" in v.source for v in values)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["cohorts"][0]["sites"].append(d["cohorts"][0]["sites"][0]), "listed twice"),
        (lambda d: d.update(surprise=1), "unknown key 'surprise'"),
        (lambda d: d["green_factory"].update(default_rule_set="GBT36132-2025x"), "default_rule"),
        (lambda d: d["targets"]["rd_intensity"].update(kind="hopeful"), "targets.rd_intensity"),
        (lambda d: d.pop("co2"), "missing key 'co2'"),
        (
            lambda d: d["imported"]["sei_va_share_gdp"].append(
                dict(d["imported"]["sei_va_share_gdp"][0])
            ),
            "two values for the same year",
        ),
    ],
)
def test_bad_documents_are_refused_naming_the_key(edit: Any, message: str) -> None:
    doc = _sample()
    edit(doc)
    with pytest.raises(ConfigError, match=message):
        parse_commission_config(doc)


def test_unknown_cohort_and_missing_factor_year() -> None:
    cfg = load_commission_config()
    with pytest.raises(KeyError, match="unknown cohort 'x'"):
        cfg.cohort("x")
    with pytest.raises(KeyError, match="no emission-factor set for 2010"):
        cfg.factor_set_year(2010)


def test_duplicate_yaml_key_is_refused(tmp_path: Path) -> None:
    text = DEFAULT_SAMPLE.read_text(encoding="utf-8")
    bad = tmp_path / "c.yaml"
    bad.write_text(text + "\nversion: again\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="duplicate key"):
        load_commission_config(bad)
