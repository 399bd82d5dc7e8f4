"""Energy, carbon, water, waste and commission indicators beyond the worked example."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.green import (
    CoefficientLibrary,
    EnergyBaseline,
    chained_decline,
    check_same_convention,
    co2_decline_variants,
    comprehensive_energy_kgce,
    equipment_penetration,
    key_process_cnc_rate,
    per_value_added,
    water_reuse_rate,
)
from zhizao.errors import ConfigError

LIB = CoefficientLibrary.load()


def test_every_coefficient_and_factor_carries_source_and_year() -> None:
    assert LIB.conversion("GBT2589-calorific").coefficients["electricity"].value == 0.1229
    for s in LIB.energy_conversion:
        assert s.source and s.year >= 2000
    for f in LIB.emission_factors:
        assert f.publisher and f.year >= 2000
    assert LIB.factor("SH-carbon-market-2022").value == 0.42
    with pytest.raises(ConfigError, match="unknown emission factor"):
        LIB.factor("nope")


def test_on_site_media_and_water_are_not_energy() -> None:
    conv = LIB.conversion("GBT2589-calorific")
    e = comprehensive_energy_kgce({"electricity": 100, "compressed_air": 5000, "water": 30}, conv)
    assert e.kgce == pytest.approx(12.29) and set(e.by_medium_kgce) == {"electricity"}
    with pytest.raises(ConfigError, match="no kgce coefficient"):
        comprehensive_energy_kgce({"coal": 1}, conv)


def test_conventions_are_never_mixed_between_periods() -> None:
    base = comprehensive_energy_kgce({"electricity": 1000}, LIB.conversion("GBT2589-calorific"))
    eq = comprehensive_energy_kgce(
        {"electricity": 1000}, LIB.conversion("GBT2589-equivalent-approx")
    )
    assert eq.kgce == pytest.approx(300.0)
    check_same_convention(base, base)
    with pytest.raises(ConfigError, match="different energy conversion conventions"):
        check_same_convention(base, eq)


def test_chained_declines_multiply() -> None:
    assert chained_decline([0.05, 0.04, 0.03]) == pytest.approx(1 - 0.95 * 0.96 * 0.97)
    assert chained_decline([]) == 0.0


def test_co2_decline_fixed_and_current_factor() -> None:
    f_2015 = [
        LIB.factor("CN-SH-grid-2023").model_copy(update={"id": "base", "value": 0.70, "year": 2015})
    ]
    f_2023 = [LIB.factor("CN-SH-grid-2023")]
    d = co2_decline_variants(
        {"electricity": 1000}, 10.0, {"electricity": 1000}, 10.0, f_2023, f_2015
    )
    # same consumption and value added: fixed factor shows no change, the grid got cleaner
    assert d["fixed_factor"].decline == pytest.approx(0.0)
    assert d["current_factor"].decline == pytest.approx(1 - 0.5737 / 0.70)


def test_water_reuse_and_intensity_sum_over_sum() -> None:
    assert water_reuse_rate(300.0, 700.0) == pytest.approx(0.3)
    assert water_reuse_rate(np.array([100.0, 200.0]), np.array([100.0, 600.0])) == pytest.approx(
        0.3
    )
    # intensity over factories is sum/sum, not a mean of factory intensities
    assert float(per_value_added(np.array([10.0, 30.0]), np.array([10.0, 90.0]))) == pytest.approx(
        0.4
    )


def test_iso50006_regression_baseline_and_enpi() -> None:
    q = np.array([100.0, 200.0, 300.0, 400.0, 500.0])
    dd = np.array([5.0, 0.0, 10.0, 2.0, 7.0])
    energy = 1000 + 2.5 * q + 30 * dd
    b = EnergyBaseline.fit(energy, q, dd)
    assert (b.intercept, b.per_unit, b.per_degree_day) == pytest.approx((1000, 2.5, 30))
    assert b.r2 == pytest.approx(1.0)
    assert float(b.enpi_ratio(1800.0, 300.0, 0.0)) == pytest.approx(1800 / 1750)
    assert float(b.savings(1600.0, 300.0, 0.0)) == pytest.approx(150.0)
    with pytest.raises(ValueError, match="at least"):
        EnergyBaseline.fit(energy[:2], q[:2])


def test_key_process_cnc_rate_shows_both_variants() -> None:
    r = key_process_cnc_rate([9, 1], [10, 10])
    assert r["official_mean_of_rates"]["value"] == pytest.approx(0.5)
    r = key_process_cnc_rate([90, 1], [100, 10])
    assert r["official_mean_of_rates"]["value"] == pytest.approx((0.9 + 0.1) / 2)
    assert r["sum_over_sum"]["value"] == pytest.approx(91 / 110)
    assert "official" in str(r["official_mean_of_rates"]["label"])


def test_equipment_penetration_by_count_and_value() -> None:
    r = equipment_penetration([True, True, False], [True, False, True], [100.0, 300.0, None])
    assert r["by_count"]["value"] == pytest.approx(1 / 3)
    assert r["by_value"]["value"] == pytest.approx(100 / 400)
    assert r["by_value"]["equipment_without_value"] == 1
