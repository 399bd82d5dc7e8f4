"""DOMAIN.md section 8, exactly: times exact, ratios to 1e-6."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.components import Components
from analytics.green import (
    CoefficientLibrary,
    co2_kg,
    comparable_value_added,
    comprehensive_energy_kgce,
    intensity_decline,
    solid_waste_utilization,
    value_added_cny,
)
from analytics.oee import cnc_utilization, iso22400_kpis, nakajima_kpis, six_big_losses_s

MIN = 60.0
PRI_S = 2.0 * MIN
# POT, planned down, ADOT, AUST, ADET breakdown, ADET minor, PQ, SQ, RQ, cutting min, kWh
TABLE = {
    "M1": (960, 60, 30, 45, 30, 15, 360, 6, 3, 585, 700),
    "M2": (960, 60, 60, 30, 70, 20, 324, 4, 5, 520, 620),
    "M3": (480, 30, 0, 30, 0, 15, 189, 2, 1, 300, 330),
}


def example_components() -> Components:
    rows = []
    for pot, down, adot, aust, brk, minor, pq, sq, rq, cut, kwh in TABLE.values():
        pbt = pot - down
        apt = pbt - adot - aust - brk - minor
        gq = pq - sq - rq
        rows.append(
            {
                "calendar_s": 1440 * MIN,
                "pot_s": pot * MIN,
                "planned_down_s": down * MIN,
                "pbt_s": pbt * MIN,
                "apt_s": apt * MIN,
                "aust_s": aust * MIN,
                "adet_s": (brk + minor) * MIN,
                "adet_minor_s": minor * MIN,
                "adot_s": adot * MIN,
                "in_cycle_s": apt * MIN,
                "in_cycle_pot_s": apt * MIN,
                "cutting_s": cut * MIN,
                "cutting_pot_s": cut * MIN,
                "cutting_pbt_s": cut * MIN,
                "aoet_s": (apt + aust + brk + minor) * MIN,
                "pq": pq,
                "gq": gq,
                "sq": sq,
                "rq": rq,
                "pri_pq_s": PRI_S * pq,
                "pri_gq_s": PRI_S * gq,
                "kwh": kwh,
            }
        )
    return Components.from_rows(rows)


def test_per_machine_time_elements_are_exact() -> None:
    c = example_components()
    assert (c.pbt_s / MIN).tolist() == [900, 900, 450]
    assert (c.apt_s / MIN).tolist() == [780, 720, 405]
    assert c.gq.tolist() == [351, 315, 186]
    # the ISO 22400 identity PBT = APT + AUST + ADET + ADOT holds exactly
    assert np.array_equal(c.pbt_s, c.apt_s + c.aust_s + c.adet_s + c.adot_s)


def test_per_machine_iso22400_ratios() -> None:
    k = iso22400_kpis(example_components())
    np.testing.assert_allclose(k["availability"].value, [0.866667, 0.8, 0.9], atol=1e-6)
    np.testing.assert_allclose(k["effectiveness"].value, [0.923077, 0.9, 0.933333], atol=1e-6)
    np.testing.assert_allclose(k["quality"].value, [0.975, 0.972222, 0.984127], atol=1e-6)
    np.testing.assert_allclose(k["oee"].value, [0.78, 0.7, 0.826667], atol=1e-6)
    product = k["availability"].value * k["effectiveness"].value * k["quality"].value
    np.testing.assert_allclose(product, k["oee"].value, rtol=1e-12)
    assert k["oee"].label == "OEE=PRI*GQ/PBT"
    assert k["availability"].at(0)["label"] == "APT/PBT"
    assert "flag" not in k["effectiveness"].at(0)


def test_nakajima_view_same_oee_other_split() -> None:
    c = example_components()
    n = nakajima_kpis(c)
    np.testing.assert_allclose(
        n["availability_tpm"].value, [0.883333, 0.822222, 0.933333], atol=1e-6
    )
    np.testing.assert_allclose(n["performance_tpm"].value, [0.905660, 0.875676, 0.9], atol=1e-6)
    np.testing.assert_allclose(n["oee_tpm"].value, [0.78, 0.7, 0.826667], atol=1e-6)
    tpm_product = n["availability_tpm"].value * n["performance_tpm"].value * n["quality_tpm"].value
    np.testing.assert_allclose(tpm_product, n["oee_tpm"].value, rtol=1e-12)
    losses = six_big_losses_s(c)
    assert (losses["breakdown_s"] / MIN).tolist() == [30, 70, 0]
    assert (losses["idling_minor_stops_s"] / MIN).tolist() == [15, 20, 15]
    assert (losses["setup_adjustment_s"] / MIN).tolist() == [45, 30, 30]
    # the losses plus the valuable time PRI x GQ close exactly to PBT
    closed = sum(losses.values()) + c.pri_gq_s
    np.testing.assert_allclose(closed, c.pbt_s, rtol=1e-12)


def test_line_oee_is_sum_over_sum_not_mean() -> None:
    c = example_components()
    line = c.total()
    oee = iso22400_kpis(line)["oee"]
    assert line.pri_gq_s[0] == 2 * 852 * MIN and line.pbt_s[0] == 2250 * MIN
    assert oee.value[0] == pytest.approx(0.757333, abs=1e-6)
    wrong_mean = float(np.mean(iso22400_kpis(c)["oee"].value))
    assert wrong_mean == pytest.approx(0.768889, abs=1e-6)
    assert abs(oee.value[0] - wrong_mean) > 0.01


def test_cutting_per_pbt_line() -> None:
    c = example_components()
    util = cnc_utilization(c.total())["cutting/PBT"]
    assert util.label == "cutting/PBT"
    assert util.numerator is not None and util.numerator[0] == 1405 * MIN
    assert util.value[0] == pytest.approx(0.624444, abs=1e-6)
    mean_of_ratios = float(np.mean(cnc_utilization(c)["cutting/PBT"].value))
    assert mean_of_ratios == pytest.approx(0.631481, abs=1e-6)


def test_plant_energy_kgce_and_per_good_part() -> None:
    lib = CoefficientLibrary.load()
    conv = lib.conversion("GBT2589-calorific")
    e = comprehensive_energy_kgce({"electricity": 4800, "natural_gas": 120, "diesel": 10}, conv)
    assert e.by_medium_kgce["electricity"] == pytest.approx(589.92, abs=1e-9)
    assert e.by_medium_kgce["natural_gas"] == pytest.approx(145.716, abs=1e-9)
    assert e.by_medium_kgce["diesel"] == pytest.approx(14.571, abs=1e-9)
    assert e.kgce == pytest.approx(750.207, abs=1e-9)
    assert e.conversion_set == "GBT2589-calorific" and e.convention == "calorific"
    gq = float(example_components().total().gq[0])
    assert e.kgce / gq == pytest.approx(0.880525, abs=1e-6)


def test_value_added_intensity_and_declines() -> None:
    va_cny = value_added_cny(852 * 1200, 760_000, 20_600)
    assert va_cny == 283_000
    va_10k = va_cny / 10_000
    tce = 750.207 / 1000
    assert tce / va_10k == pytest.approx(0.026509, abs=1e-6)
    comparable = float(comparable_value_added(va_10k, 1.10))
    intensity = tce / comparable
    assert intensity == pytest.approx(0.029160, abs=1e-6)
    d = intensity_decline(intensity, 0.0400)
    assert round(d.percent, 4) == 27.1000
    assert d.decline == pytest.approx(0.271, abs=1e-6)
    d_stat = intensity_decline(intensity, 0.0400, statistical_rounding=True)
    assert d_stat.intensity_t == 0.0292
    assert round(d_stat.percent, 4) == 27.0000


def test_co2_with_shanghai_2023_factor() -> None:
    lib = CoefficientLibrary.load()
    factors = [
        lib.factor("CN-SH-grid-2023"),
        lib.factor("natural-gas-default"),
        lib.factor("diesel-default"),
    ]
    r = co2_kg({"electricity": 4800, "natural_gas": 120, "diesel": 10}, factors)
    assert r.kgco2 == pytest.approx(3044.183, abs=1e-9)
    assert r.factors["electricity"] == {
        "id": "CN-SH-grid-2023",
        "value": 0.5737,
        "unit": "kgCO2/kWh",
        "year": 2023,
        "publisher": "MEE / NBS provincial electricity CO2 emission factors (Shanghai)",
    }


def test_solid_waste_below_target_raises_alert() -> None:
    r = solid_waste_utilization(12.6, 12.0, 1.0)
    assert r.rate == pytest.approx(0.969231, abs=1e-6)
    assert r.alert is True
    assert solid_waste_utilization(13.0, 12.0, 1.0).alert is False
