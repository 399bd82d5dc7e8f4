"""Against the simulator's ground truth over a simulated day: OEE and its factors within 0.5
percentage points, energy per good part within 1 %.

The simulator's published value changes (what its OPC UA servers serve) are fed to the pure KPI
functions as a gateway would store them; its truth is computed from its own state intervals.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from analytics.compute import SiteComputer, SiteData
from analytics.config import EnergyConfig, KpiConfig
from analytics.machine import MachineSignals, Signal
from analytics.oee import iso22400_kpis
from analytics.sources import read_plan
from simulator.config import SimConfig
from simulator.scenario import build_scenario, to_ns
from simulator.signals import BAD, build_change_table
from simulator.truth import iso22400_elements

MIN_NS = 60 * 10**9
# the simulated site has a main meter and a compressor sub-meter: name the main meters
PLANT = EnergyConfig(plant_meters=["em-main", "gm-main", "wm-main"])


def simulated_day(seed: int) -> tuple[object, SiteData, int, int]:
    tz = ZoneInfo("Asia/Shanghai")
    start = to_ns(datetime(2026, 3, 2, tzinfo=tz))
    end = start + 86_400 * 10**9
    sc = build_scenario(SimConfig(), seed, start, end)
    table = build_change_table(sc, list(range(len(sc.machines))))
    cfg = KpiConfig(sites=[Path("site.yaml")], energy=PLANT)
    plans = read_plan(sc.site, cfg)
    data = SiteData()
    var = np.asarray(table.var)
    values = np.empty(len(table.values), dtype=object)
    values[:] = table.values
    for mi, info in enumerate(sc.machines):
        plan = plans[info.id]
        state_names = {s.field for s in plan.states}
        role_of = {ref.field: role for role, ref in plan.roles.items()}
        states: dict[str, Signal] = {}
        roles: dict[str, Signal] = {}
        for vi, spec in enumerate(table.variables):
            if spec.machine != mi:
                continue
            rows = var == vi
            ts, vals = table.ts_ns[rows], values[rows]
            bad = np.array([v is BAD for v in vals.tolist()], bool)
            if spec.key in state_names:
                # a gateway stores a lost connection as no data
                states[spec.key] = Signal(ts, np.where(bad, "NO_DATA", vals).astype(object))
            elif spec.key in role_of:
                role = role_of[spec.key]
                if role == "product":
                    roles[role] = Signal(ts[~bad], vals[~bad].astype(object))
                else:
                    roles[role] = Signal(ts[~bad], vals[~bad].astype(np.float64))
        meter = sc.meter_for_machine(info.id)
        if meter is not None:  # the MQTT meter, read once a minute
            grid = np.arange(start, end + 1, MIN_NS, dtype=np.int64)
            roles["energy_kwh"] = Signal(grid, sc.meter_reading(meter, grid))
        data.machines[info.id] = MachineSignals(roles, states)
    return sc, data, start, end


@pytest.mark.parametrize("seed", [3, 11])
def test_oee_and_energy_match_the_simulator_truth(seed: int) -> None:
    sc, data, start, end = simulated_day(seed)
    truth = iso22400_elements(sc, start, end)  # type: ignore[arg-type]
    # on-change signals: a state holds until the next change (drops are published as bad values)
    cfg = KpiConfig(sites=[Path("site.yaml")], heartbeat_s=86_400, energy=PLANT)
    computer = SiteComputer(sc.site, cfg)  # type: ignore[attr-defined]
    result = computer.compute(data, "range", start, end)
    kpis = iso22400_kpis(result.components)
    compared = 0
    for i, machine in enumerate(result.machine):
        t = truth[machine]
        if t["pbt_s"] == 0 or t["pq"] == 0:
            continue
        want = {
            "availability": t["apt_s"] / t["pbt_s"],
            "effectiveness": t["pri_pq_s"] / t["apt_s"],
            "quality": t["gq"] / t["pq"],
            "oee": t["pri_gq_s"] / t["pbt_s"],
        }
        for name, value in want.items():
            assert kpis[name].value[i] == pytest.approx(value, abs=0.005), (machine, name)
        # times and counts are exact up to float rounding: the same intervals, counted twice
        c = result.components
        assert c.apt_s[i] == pytest.approx(t["apt_s"], abs=1e-6)
        assert c.adet_no_data_s[i] == pytest.approx(t["no_data_s"], abs=1e-6)
        assert c.cutting_s[i] == pytest.approx(t["cutting_s"], abs=1e-6)
        assert (c.pq[i], c.gq[i], c.sq[i], c.rq[i]) == (t["pq"], t["gq"], t["sq"], t["rq"])
        if t["energy_kwh"]:
            got = result.components.kwh[i] / result.components.gq[i]
            assert got == pytest.approx(t["energy_kwh"] / t["gq"], rel=0.01), machine
        compared += 1
    assert compared >= 3
