"""The commission's indicators: DOMAIN section 8, sum/sum on fixed panels, coverage, variants."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.commission_config import (
    CommissionConfig,
    load_commission_config,
    parse_commission_config,
)
from analytics.green import CoefficientLibrary, co2_kg, comprehensive_energy_kgce
from analytics.indicators import (
    INDICATORS,
    PANEL_COLUMNS,
    IndicatorOptions,
    Panel,
    chained_declines,
    get_indicator,
    green_factory_metrics,
    indicator_table,
)
from benchmarks._commission_pandas import compare, panel_frame, seed_indicators, table_parameters
from zhizao.errors import ConfigError

ENERGY = {"electricity_kwh": 4800.0, "natural_gas_m3": 120.0, "diesel_kg": 10.0}
LIB = CoefficientLibrary.load()


def _config(sites: list[str], base_year: int = 2015, **changes: Any) -> CommissionConfig:
    doc = load_commission_config().model_dump(mode="json")
    doc["cohorts"] = [{"id": "c", "name": "test cohort", "sites": sites, "base_year": base_year}]
    doc["green_factory"]["industry_of_site"] = {}
    for key, value in changes.items():
        doc[key] = value
    return parse_commission_config(doc)


# ----------------------------------------------------------------------- DOMAIN section 8


def _worked_example() -> Panel:
    va_2020 = (852 * 1200 - 760_000 + 20_600) / 10_000  # 28.3 (10k CNY)
    tce = 0.750207
    return Panel.from_rows(
        [
            {
                "site": "f1",
                "district": "pudong",
                "park": "zhangjiang",
                "year": 2020,
                "value_added_current_10k_cny": va_2020,
                "price_index": 1.10,
                **ENERGY,
                "waste_utilized_t": 12.6,
                "waste_generated_t": 12.0,
                "waste_prior_stock_utilized_t": 1.0,
                "energy_source": "telemetry",
            },
            {
                # the 2015 row: same energy, VA chosen so the intensity is exactly 0.0400
                "site": "f1",
                "district": "pudong",
                "year": 2015,
                "value_added_current_10k_cny": tce / 0.0400,
                "price_index": 1.0,
                **ENERGY,
            },
        ]
    )


def test_worked_example_domain_section_8() -> None:
    panel = _worked_example()
    cfg = _config(["f1"])
    table = indicator_table(panel, cfg, "c", 2020)
    cohort = {r.indicator: r for r in table.level("cohort")}
    assert cohort["energy_consumption"].value == pytest.approx(0.750207, abs=1e-9)
    assert cohort["energy_intensity_current_prices"].value == pytest.approx(0.026509, abs=1e-6)
    assert cohort["energy_intensity"].value == pytest.approx(0.029160, abs=1e-6)
    decline = cohort["energy_intensity_decline"]
    assert decline.value is not None
    assert decline.value / 100 == pytest.approx(0.271000, abs=1e-6)
    assert decline.details["base_intensity"] == pytest.approx(0.04, abs=1e-15)
    assert decline.coverage.complete and decline.coverage.base_year == 2015
    assert decline.details["source"] == {"telemetry": 1, "reported": 0}
    # CO2 with the Shanghai 2023 grid factor 0.5737: 3,044.183 kg
    co2 = cohort["co2_emissions"]
    assert co2.value is not None and co2.value * 1000 == pytest.approx(3044.183, abs=1e-6)
    factors = co2.details["factors"]
    assert isinstance(factors, dict)
    assert factors["factors"]["electricity"]["value"] == 0.5737
    assert factors["factors"]["electricity"]["id"] == "CN-SH-grid-2023"
    # the same numbers as green.py's per-factory functions (no second formula)
    conv = LIB.conversion("GBT2589-calorific")
    assert comprehensive_energy_kgce(
        {"electricity": 4800, "natural_gas": 120, "diesel": 10}, conv
    ).kgce == pytest.approx(1000 * (cohort["energy_consumption"].value or 0.0), rel=1e-12)
    facs = [LIB.factor(i) for i in ("CN-SH-grid-2023", "natural-gas-default", "diesel-default")]
    assert co2_kg({"electricity": 4800, "natural_gas": 120, "diesel": 10}, facs).kgco2 == (
        pytest.approx(co2.value * 1000, rel=1e-12)
    )
    waste = cohort["solid_waste_utilization"]
    assert waste.value is not None and waste.value / 100 == pytest.approx(0.969231, abs=1e-6)
    assert "alert_below_target" in waste.flags
    assert waste.target(2020) is not None and waste.target(2020).met is False  # type: ignore[union-attr]
    # the statistics offices' rounding: 0.0292 / 0.0400 -> 27.0000 %
    rounded = indicator_table(panel, cfg, "c", 2020, IndicatorOptions(statistical_rounding=True))
    r = rounded.row("cohort", "c", "energy_intensity_decline")
    assert r.value is not None and r.value / 100 == pytest.approx(0.270000, abs=1e-6)
    assert r.details["intensity"] == 0.0292 and r.details["statistical_rounding"] is True
    # and the district row is the same single factory
    assert table.row("district", "pudong", "energy_intensity").value == pytest.approx(
        cohort["energy_intensity"].value, rel=1e-15
    )


# ------------------------------------------------------------------------ random panels


def _random_panel(
    rng: np.random.Generator,
    n: int,
    districts: int,
    years: tuple[int, ...] = (2015, 2020),
    nan_share: float = 0.05,
) -> Panel:
    rows: list[dict[str, Any]] = []
    for i in range(n):
        site = f"s{i:04d}"
        district = f"d{int(rng.integers(districts)):02d}"
        park = f"p{int(rng.integers(3))}" if rng.random() < 0.8 else ""
        for y in years:
            row: dict[str, Any] = {"site": site, "district": district, "park": park, "year": y}
            row["energy_source"] = "telemetry" if rng.random() < 0.7 else "reported"
            for c in PANEL_COLUMNS:
                row[c] = float(rng.uniform(1.0, 1000.0))
            row["price_index"] = 1.0 if y == years[0] else float(rng.uniform(1.0, 1.3))
            row["value_added_comparable_10k_cny"] = (
                row["value_added_current_10k_cny"] / row["price_index"]
                if rng.random() < 0.3
                else None
            )
            row["key_process_nc_count"] = float(rng.integers(0, 20))
            row["key_process_equipment_count"] = row["key_process_nc_count"] + float(
                rng.integers(0, 20)
            )
            for c in PANEL_COLUMNS:
                if c != "value_added_comparable_10k_cny" and rng.random() < nan_share:
                    row[c] = None
            rows.append(row)
    return Panel.from_rows(rows)


def _independent_sum_over_sum(
    panel: Panel, sites: set[str], year: int, num: str, den: tuple[str, ...], scale: float
) -> float | None:
    """Plain Python: sum of numerators over sum of denominators over complete factories."""
    n = d = 0.0
    any_ok = False
    for i in range(len(panel)):
        if panel.site[i] not in sites or panel.year[i] != year:
            continue
        vals = [panel.column(c)[i] for c in (num, *den)]
        if any(math.isnan(v) for v in vals):
            continue
        any_ok = True
        n += vals[0]
        d += sum(vals[1:])
    return scale * n / d if any_ok and d else None


RATIOS = {
    "rd_intensity": ("rd_spend_10k_cny", ("main_business_revenue_10k_cny",), 100.0),
    "invention_patents_per_revenue": (
        "valid_invention_patents",
        ("main_business_revenue_10k_cny",),
        1e4,
    ),
    "it_intensity": ("it_spend_10k_cny", ("main_business_revenue_10k_cny",), 100.0),
    "labour_productivity": ("value_added_current_10k_cny", ("average_headcount",), 1.0),
    "land_output": ("gross_output_value_10k_cny", ("industrial_land_km2",), 1e-4),
    "solid_waste_utilization": (
        "waste_utilized_t",
        ("waste_generated_t", "waste_prior_stock_utilized_t"),
        100.0,
    ),
    "key_process_cnc_rate_sum_over_sum": (
        "key_process_nc_count",
        ("key_process_equipment_count",),
        100.0,
    ),
    "connected_equipment_ratio": (
        "connected_equipment_count",
        ("production_equipment_count",),
        100.0,
    ),
}


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 25),
    districts=st.integers(1, 4),
    nan_share=st.sampled_from([0.0, 0.1, 0.4]),
)
def test_every_group_figure_is_sum_over_sum(
    seed: int, n: int, districts: int, nan_share: float
) -> None:
    rng = np.random.default_rng(seed)
    panel = _random_panel(rng, n, districts, nan_share=nan_share)
    sites = [f"s{i:04d}" for i in range(n)]
    table = indicator_table(panel, _config(sites), "c", 2020)
    by_district: dict[str, set[str]] = {}
    for i in range(len(panel)):
        by_district.setdefault(str(panel.district[i]), set()).add(str(panel.site[i]))
    groups = [("cohort", "c", set(sites))] + [("district", d, s) for d, s in by_district.items()]
    for level, name, members in groups:
        for ind, (num, den, scale) in RATIOS.items():
            expected = _independent_sum_over_sum(panel, members, 2020, num, den, scale)
            row = table.row(level, name, ind)  # type: ignore[arg-type]
            if expected is None:
                assert row.value is None and row.reason
            else:
                assert row.value == pytest.approx(expected, rel=1e-12), (level, name, ind)
            assert row.coverage.factories == len(members)
            assert row.coverage.complete == (row.coverage.reported == len(members))
            assert ("incomplete_panel" in row.flags) == (not row.coverage.complete)
    # declines (fixed panel), +pp and the rest: the independent pandas groupby sums agree
    baseline = seed_indicators(panel_frame(panel), **table_parameters(_config(sites), "c", 2020))
    assert compare(table, baseline) == []


def test_sum_over_sum_not_mean_of_factory_ratios() -> None:
    # a big factory with low R&D intensity and a small one with high intensity
    rows = [
        {"site": "big", "district": "d", "year": 2020, "rd_spend_10k_cny": 100.0,
         "main_business_revenue_10k_cny": 100_000.0},
        {"site": "small", "district": "d", "year": 2020, "rd_spend_10k_cny": 50.0,
         "main_business_revenue_10k_cny": 1_000.0},
    ]  # fmt: skip
    table = indicator_table(
        Panel.from_rows(rows), _config(["big", "small"]), "c", 2020,
        IndicatorOptions(indicators=("rd_intensity",)),
    )  # fmt: skip
    value = table.row("cohort", "c", "rd_intensity").value
    mean_of_ratios = 100 * (100 / 100_000 + 50 / 1_000) / 2  # 2.55 %
    sum_over_sum = 100 * 150 / 101_000  # 0.1485 %
    assert abs(mean_of_ratios - sum_over_sum) > 1.0
    assert value == pytest.approx(sum_over_sum, rel=1e-12)


def test_declines_of_two_factories_are_not_averaged() -> None:
    # factory a: intensity 0.02 -> 0.01 (-50 %), factory b: 0.01 -> 0.0099 (-1 %), b is 10x bigger
    rows = []
    for site, (e0, va0, e1, va1) in {"a": (2, 100, 1, 100), "b": (10, 1000, 9.9, 1000)}.items():
        for y, e, va in ((2015, e0, va0), (2020, e1, va1)):
            rows.append({"site": site, "district": "d", "year": y, "electricity_kwh": e * 1000 /
                         0.1229, "value_added_current_10k_cny": va, "price_index": 1.0})  # fmt: skip
    table = indicator_table(
        Panel.from_rows(rows), _config(["a", "b"]), "c", 2020,
        IndicatorOptions(indicators=("energy_intensity_decline",)),
    )  # fmt: skip
    value = table.row("cohort", "c", "energy_intensity_decline").value
    expected = 100 * (1 - (10.9 / 1100) / (12 / 1100))  # 9.17 %
    assert value == pytest.approx(expected, rel=1e-9)
    assert abs(value - (50 + 1) / 2) > 1.0  # type: ignore[operator]


# ----------------------------------------------------------------- fixed panel, coverage


def _decline_rows(site: str, district: str, years: dict[int, tuple[float, float]]) -> list[dict[str, Any]]:  # fmt: skip
    return [
        {"site": site, "district": district, "year": y, "electricity_kwh": kwh,
         "value_added_current_10k_cny": va, "price_index": 1.0, "fresh_water_m3": kwh / 10}
        for y, (kwh, va) in years.items()
    ]  # fmt: skip


def test_fixed_panel_excludes_a_factory_missing_in_the_base_year() -> None:
    rows = (
        _decline_rows("a", "d1", {2015: (1000.0, 10.0), 2020: (800.0, 10.0)})
        + _decline_rows("b", "d1", {2015: (1000.0, 10.0), 2020: (500.0, 10.0)})
        + _decline_rows("new", "d1", {2020: (10_000.0, 1.0)})  # no 2015 row
    )
    cfg = _config(["a", "b", "new", "ghost"])  # ghost: no rows at all
    table = indicator_table(Panel.from_rows(rows), cfg, "c", 2020)
    row = table.row("district", "d1", "energy_intensity_decline")
    assert row.value == pytest.approx(100 * (1 - 1300 / 2000), rel=1e-12)
    assert row.coverage.factories == 3 and row.coverage.reported == 2
    assert row.coverage.missing == ("new",) and not row.coverage.complete
    assert "incomplete_panel" in row.flags and row.details["fixed_panel_factories"] == 2
    cohort = table.row("cohort", "c", "energy_intensity_decline")
    assert cohort.value == row.value  # the same two factories
    assert cohort.coverage.factories == 4 and set(cohort.coverage.missing) == {"new", "ghost"}
    assert table.unplaced_sites == ("ghost",)
    # the year's own intensity is over every factory that reported the year
    level = table.row("cohort", "c", "energy_intensity")
    assert level.coverage.reported == 3 and level.coverage.missing == ("ghost",)
    water = table.row("cohort", "c", "water_intensity_decline")
    assert water.value == pytest.approx(100 * (1 - 130 / 200), rel=1e-12)


def test_a_group_with_no_data_gives_none_with_a_reason() -> None:
    rows = _decline_rows("a", "d1", {2020: (800.0, 10.0)}) + _decline_rows(
        "b", "d2", {2015: (1.0, 1.0), 2020: (1.0, 1.0)}
    )
    table = indicator_table(Panel.from_rows(rows), _config(["a", "b"]), "c", 2020)
    row = table.row("district", "d1", "energy_intensity_decline")
    assert row.value is None and row.reason and "2015" in row.reason
    assert "incomplete_panel" in row.flags
    rd = table.row("cohort", "c", "rd_intensity")
    assert rd.value is None and "rd_spend_10k_cny" in (rd.reason or "")
    assert rd.coverage.reported == 0 and rd.coverage.missing == ("a", "b")
    # zero revenue: None, not 0 or NaN
    zero = [{"site": "a", "district": "d", "year": 2020, "rd_spend_10k_cny": 0.0,
             "main_business_revenue_10k_cny": 0.0}]  # fmt: skip
    z = indicator_table(Panel.from_rows(zero), _config(["a"]), "c", 2020).row(
        "cohort", "c", "rd_intensity"
    )
    assert z.value is None and "denominator is 0" in (z.reason or "")
    assert z.coverage.complete


def test_fixed_and_current_factor_variants() -> None:
    doc = load_commission_config().model_dump(mode="json")
    co2 = doc["co2"]
    co2["extra_factors"].append(
        {"id": "grid-2020-test", "medium": "electricity", "value": 0.40, "unit": "kgCO2/kWh",
         "year": 2020, "publisher": "test"}
    )  # fmt: skip
    co2["factor_sets"]["2020"] = ["grid-2020-test", "natural-gas-default", "diesel-default"]
    cfg = _config(["a", "b"], co2=co2)
    rows = _decline_rows("a", "d", {2015: (1000.0, 10.0), 2020: (900.0, 12.0)}) + _decline_rows(
        "b", "d", {2015: (3000.0, 20.0), 2020: (2000.0, 20.0)}
    )
    table = indicator_table(Panel.from_rows(rows), cfg, "c", 2020)
    fixed = table.row("cohort", "c", "co2_intensity_decline_fixed_factor")
    current = table.row("cohort", "c", "co2_intensity_decline_current_factor")
    energy = table.row("cohort", "c", "energy_intensity_decline")
    assert fixed.variant == "fixed_factor" and current.variant == "current_factor"
    assert fixed.value is not None and current.value is not None and energy.value is not None
    # electricity only: the fixed-factor decline is the energy decline; the current-factor one
    # scales the year's intensity by 0.40 / 0.5737
    assert fixed.value == pytest.approx(energy.value, rel=1e-12)
    assert 1 - current.value / 100 == pytest.approx((1 - fixed.value / 100) * 0.40 / 0.5737)
    fy = fixed.details["factors_year"]
    cy = current.details["factors_year"]
    assert isinstance(fy, dict) and isinstance(cy, dict)
    assert fy["factors"]["electricity"]["id"] == "CN-SH-grid-2023"
    assert cy["factors"]["electricity"] == {
        "id": "grid-2020-test", "value": 0.40, "unit": "kgCO2/kWh", "year": 2020,
        "publisher": "test",
    }  # fmt: skip
    assert fixed.target(2020) is not None and fixed.target(2020).city_set  # type: ignore[union-attr]


def test_a_medium_without_emission_factor_is_a_config_error() -> None:
    doc = load_commission_config().model_dump(mode="json")
    doc["co2"]["factor_sets"] = {"2015": ["CN-SH-grid-2023"]}
    cfg = _config(["a"], co2=doc["co2"])
    rows = [{"site": "a", "district": "d", "year": 2020, "electricity_kwh": 1.0,
             "natural_gas_m3": 5.0, "value_added_current_10k_cny": 1.0, "price_index": 1.0}]  # fmt: skip
    with pytest.raises(ConfigError, match="no emission factor for natural_gas"):
        indicator_table(Panel.from_rows(rows), cfg, "c", 2020)


def test_cnc_official_mean_and_sum_over_sum_differ_and_are_labelled() -> None:
    rows = [
        {"site": "big", "district": "d", "year": 2020, "key_process_nc_count": 10.0,
         "key_process_equipment_count": 100.0},
        {"site": "small", "district": "d", "year": 2020, "key_process_nc_count": 9.0,
         "key_process_equipment_count": 10.0},
        {"site": "none", "district": "d", "year": 2020, "key_process_nc_count": 0.0,
         "key_process_equipment_count": 0.0},  # no key processes: not an enterprise rate
    ]  # fmt: skip
    table = indicator_table(Panel.from_rows(rows), _config(["big", "small", "none"]), "c", 2020)
    official = table.row("cohort", "c", "key_process_cnc_rate_official_mean")
    sums = table.row("cohort", "c", "key_process_cnc_rate_sum_over_sum")
    assert official.value == pytest.approx(100 * (0.1 + 0.9) / 2)
    assert sums.value == pytest.approx(100 * 19 / 110)
    assert official.variant == "official_mean_of_rates" and sums.variant == "sum_over_sum"
    assert "mean" in get_indicator(official.indicator).definition
    assert official.details["enterprises"] == 2
    assert official.coverage.complete and official.coverage.reported == 3


def test_equipment_rates_by_count_and_value_and_connected() -> None:
    rows = [
        {"site": "a", "district": "d", "year": 2020, "production_equipment_count": 100.0,
         "intelligent_equipment_count": 20.0, "connected_equipment_count": 60.0,
         "production_equipment_value_10k_cny": 1000.0,
         "intelligent_equipment_value_10k_cny": 600.0},
        {"site": "b", "district": "d", "year": 2020, "production_equipment_count": 50.0,
         "intelligent_equipment_count": 40.0, "connected_equipment_count": 45.0,
         "production_equipment_value_10k_cny": 200.0,
         "intelligent_equipment_value_10k_cny": 100.0},
    ]  # fmt: skip
    t = indicator_table(Panel.from_rows(rows), _config(["a", "b"]), "c", 2020)
    assert t.row("cohort", "c", "intelligent_equipment_rate_count").value == pytest.approx(40.0)
    assert t.row("cohort", "c", "intelligent_equipment_rate_value").value == pytest.approx(
        100 * 700 / 1200
    )
    assert t.row("cohort", "c", "connected_equipment_ratio").value == pytest.approx(70.0)


def test_va_rate_change_and_land_output_per_park() -> None:
    rows = [
        {"site": "a", "district": "d", "park": "p1", "year": 2015,
         "value_added_current_10k_cny": 20.0, "gross_output_value_10k_cny": 100.0},
        {"site": "a", "district": "d", "park": "p1", "year": 2020,
         "value_added_current_10k_cny": 30.0, "gross_output_value_10k_cny": 120_000.0,
         "industrial_land_km2": 10.0},
        {"site": "b", "district": "d", "park": "p2", "year": 2015,
         "value_added_current_10k_cny": 10.0, "gross_output_value_10k_cny": 100.0},
        {"site": "b", "district": "d", "park": "p2", "year": 2020,
         "value_added_current_10k_cny": 50.0, "gross_output_value_10k_cny": 80_000.0,
         "industrial_land_km2": 20.0},
    ]  # fmt: skip
    t = indicator_table(Panel.from_rows(rows), _config(["a", "b"]), "c", 2020)
    pp = t.row("cohort", "c", "va_rate_change")
    assert pp.value == pytest.approx(100 * (80 / 200_000 - 30 / 200))
    assert pp.unit == "pp" and pp.coverage.base_year == 2015
    assert t.row("park", "p1", "land_output").value == pytest.approx(12.0 / 10)
    assert t.row("park", "p2", "land_output").value == pytest.approx(8.0 / 20)
    assert t.row("cohort", "c", "land_output").value == pytest.approx(20.0 / 30)
    assert not [r for r in t.level("park") if r.indicator != "land_output"]


def test_imported_values_are_labelled_and_sei_contribution_shown() -> None:
    rows = [{"site": "a", "district": "d", "year": 2020, "sei_value_added_10k_cny": 5.0,
             "value_added_current_10k_cny": 20.0}]  # fmt: skip
    t = indicator_table(Panel.from_rows(rows), _config(["a"]), "c", 2020)
    sei = t.row("cohort", "c", "sei_va_share_gdp")
    assert sei.value == 18.0 and "imported" in sei.flags
    contribution = sei.details["cohort_contribution"]
    assert isinstance(contribution, dict)
    assert contribution["sei_value_added_10k_cny"] == 5.0
    assert contribution["share_of_value_added_pct"] == pytest.approx(25.0)
    assert t.row("district", "d", "sei_va_share_gdp").value is None
    q = t.row("cohort", "c", "quality_competitiveness_index")
    assert q.value == 90.0 and "imported" in q.flags and q.targets[0].met is None
    none = indicator_table(Panel.from_rows(rows), _config(["a"]), "c", 2019 + 2)
    assert none.row("cohort", "c", "quality_competitiveness_index").reason == (
        "no imported value for 2021 in imported.quality_competitiveness_index"
    )


def test_targets_are_direction_aware() -> None:
    rows = [{"site": "a", "district": "d", "year": 2020, "rd_spend_10k_cny": 2.0,
             "main_business_revenue_10k_cny": 100.0}]  # fmt: skip
    t = indicator_table(Panel.from_rows(rows), _config(["a"]), "c", 2020)
    rd = t.row("cohort", "c", "rd_intensity")
    assert rd.target(2020).met is True and rd.target(2025).met is False  # type: ignore[union-attr]
    assert rd.details["approximate_target"] is True
    assert get_indicator("energy_intensity").direction == "at_most"


def test_green_factory_metrics_against_base_and_leading() -> None:
    row = {"site": "a", "district": "d", "year": 2020, "electricity_kwh": 100_000.0,
           "gross_output_value_10k_cny": 1000.0, "fresh_water_m3": 1500.0,
           "reused_water_m3": 3500.0, "waste_utilized_t": 9.8, "waste_generated_t": 10.0,
           "waste_prior_stock_utilized_t": 0.0, "renewable_electricity_kwh": 25_000.0,
           "industrial_land_km2": 0.05}  # fmt: skip
    cfg = _config(["a"])
    g = green_factory_metrics(Panel.from_rows([row]), cfg, "c", 2020)
    assert g.rule_set == "GBT36132-2018" and g.industries == ("machinery",)
    m = g.rows()[0]["metrics"]
    assert isinstance(m, dict)
    energy = m["unit_output_energy"]
    assert energy["value"] == pytest.approx(100_000 * 0.1229 / 1000 / 1000)  # 0.01229
    assert energy["meets_base"] is True and energy["meets_leading"] is True
    assert m["water_reuse_rate"]["value"] == pytest.approx(70.0)
    assert m["renewable_energy_share"]["value"] == pytest.approx(25.0)
    assert m["land_output"]["value"] == pytest.approx(0.1 / 0.05)
    assert m["land_output"]["meets_base"] is False
    assert m["solid_waste_utilization"]["meets_leading"] is True
    g25 = green_factory_metrics(
        Panel.from_rows([row]), cfg, "c", 2020, IndicatorOptions(green_rule_set="GBT36132-2025")
    )
    assert g25.rows()[0]["metrics"]["water_reuse_rate"]["base"] == 35.0  # type: ignore[index]
    with pytest.raises(ConfigError, match="unknown green-factory rule set"):
        green_factory_metrics(
            Panel.from_rows([row]), cfg, "c", 2020, IndicatorOptions(green_rule_set="x")
        )


def test_chained_declines() -> None:
    rows = _decline_rows("a", "d", {2015: (1000.0, 10.0), 2016: (900.0, 10.0), 2017: (810.0, 10.0)})
    out = chained_declines(Panel.from_rows(rows), _config(["a"]), "c", "energy_intensity_decline",
                           [2015, 2016, 2017])  # fmt: skip
    assert out["annual_pct"] == {2016: pytest.approx(10.0), 2017: pytest.approx(10.0)}
    assert out["chained_pct"] == pytest.approx(19.0)


def test_panel_refuses_duplicates_and_unknown_sources() -> None:
    with pytest.raises(ValueError, match="two rows for the same site and year"):
        Panel.from_rows([{"site": "a", "year": 2020}, {"site": "a", "year": 2020}])
    with pytest.raises(ValueError, match="telemetry"):
        Panel.from_rows([{"site": "a", "year": 2020, "energy_source": "guess"}])


def test_registry_describes_every_indicator() -> None:
    assert sorted({d.seed_number for d in INDICATORS if d.seed_number}) == list(range(1, 13))
    for d in INDICATORS:
        assert d.label_en and d.label_zh and d.unit and d.definition
        assert set(d.inputs) <= set(PANEL_COLUMNS)
    with pytest.raises(KeyError, match="unknown indicator"):
        get_indicator("oee")


# ----------------------------------------------------------- pandas baseline, performance


def test_pandas_baseline_equals_indicator_table() -> None:
    rng = np.random.default_rng(7)
    panel = _random_panel(rng, 200, 16, nan_share=0.03)
    sites = [f"s{i:04d}" for i in range(200)]
    cfg = _config(sites)
    for rounding in (False, True):
        table = indicator_table(
            panel, cfg, "c", 2020, IndicatorOptions(statistical_rounding=rounding)
        )
        params = table_parameters(cfg, "c", 2020) | {"statistical_rounding": rounding}
        baseline = seed_indicators(panel_frame(panel), **params)
        assert len(baseline) > 16 * 10
        assert compare(table, baseline) == []
    # and the comparison can fail
    key = next(iter(baseline))
    assert compare(table, {**baseline, key: (baseline[key] or 0.0) + 1.0})


def test_500_factories_16_districts_take_milliseconds() -> None:
    rng = np.random.default_rng(11)
    panel = _random_panel(rng, 500, 16, years=tuple(range(2015, 2025)), nan_share=0.02)
    cfg = _config([f"s{i:04d}" for i in range(500)])
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        table = indicator_table(panel, cfg, "c", 2020)
        times.append(time.perf_counter() - t0)
    assert len(table.level("district")) == 16 * len(INDICATORS)
    assert min(times) < 0.1, f"indicator_table took {min(times) * 1000:.1f} ms"
