"""The plant row's output and renewable fields, and the site KPIs of the catalog computed from
them: water and energy per unit of the site's output (its output machines' good parts, a part
counted once, not once per operation) and the renewable share where a meter is marked
renewable; against the simulator's own meter totals and truth over a simulated day."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analytics import catalog
from analytics.components import Components
from analytics.compute import SiteComputer
from analytics.config import EnergyConfig, KpiConfig
from analytics.machine import Signal
from simulator.truth import iso22400_elements, meter_totals
from tests.analytics.test_against_simulator import MIN_NS, simulated_day
from zhizao.errors import ConfigError
from zhizao.site import SiteModel

PLANT = EnergyConfig(plant_meters=["em-main", "gm-main", "wm-main"])
ELECTRICITY_KGCE = 0.1229  # the default calorific-value coefficient, kgce per kWh


def _site(
    lines: list[list[dict[str, Any]]], meters: list[dict[str, Any]] | None = None
) -> SiteModel:
    return SiteModel.model_validate(
        {
            "enterprise": "acme",
            "site": "p1",
            "machine_types": {"cnc": {"profile": "custom"}},
            "calendars": {"c": {"shifts": [{"name": "day", "start": "06:00", "end": "22:00"}]}},
            "areas": [
                {
                    "id": "a",
                    "lines": [
                        {"id": f"l{i}", "calendar": "c", "machines": ms}
                        for i, ms in enumerate(lines)
                    ],
                }
            ],
            "meters": meters or [],
        }
    )


def test_output_machines_are_the_line_ends_unless_marked() -> None:
    site = _site(
        [
            [{"id": "A1", "type": "cnc"}, {"id": "A2", "type": "cnc"}],  # serial: its end
            [
                {"id": "B1", "type": "cnc", "output": True},
                {"id": "B2", "type": "cnc", "output": True},
            ],
            [{"id": "C1", "type": "cnc"}, {"id": "C2", "type": "cnc", "output": False}],
        ]
    )
    # parallel machines each finish parts; a line whose end is marked not output has none
    assert site.output_machines() == ["A2", "B1", "B2"]


def test_a_green_power_meter_beside_the_grid_meter_is_not_a_clash() -> None:
    meter = {"medium": "electricity", "unit": "kWh", "signal": "energy_kwh"}
    lines = [[{"id": "M1", "type": "cnc"}]]
    cfg = KpiConfig(sites=[Path("site.yaml")])
    both = _site(lines, [{"id": "grid", **meter}, {"id": "green", **meter, "renewable": True}])
    assert [m.id for m in SiteComputer(both, cfg).plant] == ["grid", "green"]
    two_grids = _site(lines, [{"id": "g1", **meter}, {"id": "g2", **meter}])
    with pytest.raises(ConfigError, match="several site-level meters"):
        SiteComputer(two_grids, cfg)


@pytest.fixture(scope="module")
def day() -> tuple[Any, Any, int, int]:
    sc, data, start, end = simulated_day(5)
    grid = np.arange(start, end + 1, MIN_NS, dtype=np.int64)
    for k, meter in enumerate(sc.meters):  # type: ignore[attr-defined]
        if not meter.id.endswith("-main") and meter.id != "pv-roof":
            continue
        data.meters[meter.id] = Signal(grid, sc.meter_reading(k, grid))  # type: ignore[attr-defined]
    cfg = KpiConfig(sites=[Path("site.yaml")], heartbeat_s=86_400, energy=PLANT)
    computer = SiteComputer(sc.site, cfg)  # type: ignore[attr-defined]
    return sc, computer.compute(data, "day", start, end), start, end


def test_the_plant_row_holds_the_sites_output_and_renewable_energy(
    day: tuple[Any, Any, int, int],
) -> None:
    sc, result, start, end = day
    (i,) = np.flatnonzero(result.energy_start_ns == start)
    f = {k: float(v[i]) for k, v in result.energy_fields.items()}
    truth = iso22400_elements(sc, start, end)
    outputs = sc.site.output_machines()
    assert outputs == ["CNC3", "ASM1"]  # the demonstration factory's line ends
    assert f["output_gq"] == sum(truth[m]["gq"] for m in outputs) > 0
    c = result.components
    rows = np.isin(np.asarray(result.machine), outputs)
    assert f["output_value_cny"] == pytest.approx(float(c.output_value_cny[rows].sum()), rel=1e-12)
    totals = meter_totals(sc, start, end)
    assert f["water_m3"] == pytest.approx(totals["wm-main"]["quantity"], rel=1e-9)
    pv_kgce = totals["pv-roof"]["quantity"] * ELECTRICITY_KGCE
    assert f["renewable_kgce"] == pytest.approx(pv_kgce, rel=1e-9) and pv_kgce > 0
    # generated on site, so not in the purchased kgce: the site's use is both
    assert f["energy_use_kgce"] == pytest.approx(f["kgce"] + pv_kgce, rel=1e-12)


def test_the_site_kpis_are_sums_over_sums_of_the_plant_row(
    day: tuple[Any, Any, int, int],
) -> None:
    _, result, start, _ = day
    (i,) = np.flatnonzero(result.energy_start_ns == start)
    f = {k: np.asarray(v[i : i + 1]) for k, v in result.energy_fields.items()}
    k = catalog.evaluate_site(f, 1)
    w, gq, value = f["water_m3"][0], f["output_gq"][0], f["output_value_cny"][0]
    assert k["water_per_output"].value[0] == pytest.approx(w / gq, rel=1e-12)
    assert k["water_per_10k_cny"].value[0] == pytest.approx(10_000 * w / value, rel=1e-12)
    assert k["plant_kgce_per_output"].value[0] == pytest.approx(f["kgce"][0] / gq, rel=1e-12)
    share = f["renewable_kgce"][0] / f["energy_use_kgce"][0]
    assert k["renewable_share"].value[0] == pytest.approx(share, rel=1e-12)
    assert 0 < share < 1
    assert k["renewable_share"].at(0).get("flags") is None


def test_without_a_renewable_meter_the_share_is_absent_not_zero() -> None:
    rows = {"kgce": np.array([12.0]), "water_m3": np.array([3.0]), "output_gq": np.array([0.0])}
    k = catalog.evaluate_site(rows, 1)
    share = k["renewable_share"].at(0)
    assert share["value"] is None and share["numerator"] is None
    assert "mark a site-level meter renewable" in str(share["flag"])
    water = k["water_per_output"].at(0)
    assert water["value"] is None and "output machines" in str(water["flag"])
    with pytest.raises(ValueError, match="site KPI"):
        catalog.evaluate(Components.zeros(1), ["water_per_output"])
