"""End to end through a real InfluxDB: the simulator's published values for a day, stored the way
the gateway stores them (measurement per signal family, field = signal name), then one engine run
and the stored components checked against the simulator's ground truth."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import yaml

from analytics.config import load_kpi_config
from analytics.engine import KpiEngine
from ingest.influx import InfluxWriter
from simulator.config import SimConfig
from simulator.scenario import Scenario, build_scenario, to_ns
from simulator.signals import BAD, build_change_table
from simulator.truth import iso22400_elements
from tests.conftest import InfluxDb

MIN_NS = 60 * 10**9


def _tagstr(tags: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(tags.items()))


def _field(value: Any, dtype: str) -> str:
    if dtype == "int":
        return f"{int(value)}i"
    if dtype == "bool":
        return "true" if value else "false"
    if dtype == "string":
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(float(value))


def gateway_lines(sc: Scenario, start: int, end: int) -> list[str]:
    table = build_change_table(sc, list(range(len(sc.machines))))
    paths = sc.site.machine_paths()
    lines: list[str] = []
    for spec_i, spec in enumerate(table.variables):
        info = sc.machines[spec.machine]
        sig = {s.name: s for s in sc.site.machine_types[info.type].signals}.get(spec.key)
        if sig is None:
            continue
        tags = _tagstr(paths[info.id].tags())
        rows = np.flatnonzero(table.var == spec_i)
        for r in rows.tolist():
            value = table.values[r]
            if value is BAD:
                # connection lost: the gateway can only say the machine is not available
                if spec.key != "machinery_item_state":
                    continue
                value = "NotAvailable"
            lines.append(
                f"{sig.measurement},{tags} {spec.key}={_field(value, sig.dtype)} {int(table.ts_ns[r])}"
            )
    grid = np.arange(start, end + 1, MIN_NS, dtype=np.int64)
    for info in sc.machines:
        k = sc.meter_for_machine(info.id)
        if k is None:
            continue
        readings = sc.meter_reading(k, grid)
        tags = _tagstr({**paths[info.id].tags(), "meter": sc.meters[k].id})
        lines += [
            f"energy,{tags} energy_kwh={float(v)!r} {int(t)}"
            for t, v in zip(grid, readings, strict=True)
        ]
    return lines


@pytest.mark.integration
async def test_engine_on_a_simulated_day_matches_the_truth(
    tmp_path: Path, influx_db: InfluxDb
) -> None:
    tz = ZoneInfo("Asia/Shanghai")
    start = to_ns(datetime(2026, 3, 2, tzinfo=tz))
    end = start + 86_400 * 10**9
    sc = build_scenario(SimConfig(), 5, start, end)
    (tmp_path / "site.yaml").write_text(
        yaml.safe_dump(sc.site.model_dump(mode="json", exclude_none=True)), encoding="utf-8"
    )
    cfg_doc = {
        "sites": ["site.yaml"],
        "influx": {"url": influx_db.url, "database": influx_db.database},
        "windows": ["day"],
        "schedule": {"backfill_s": 86400, "delay_s": 60},
        "energy": {"plant_meters": ["em-main", "gm-main", "wm-main"]},
    }
    (tmp_path / "kpi.yaml").write_text(yaml.safe_dump(cfg_doc), encoding="utf-8")
    cfg = load_kpi_config(tmp_path / "kpi.yaml")
    assert cfg.influx is not None
    lines = gateway_lines(sc, start, end)
    async with InfluxWriter(cfg.influx) as writer:
        await writer.write_body(("\n".join(lines) + "\n").encode(), len(lines))

    report = await KpiEngine(cfg).run_once(end + 60 * 10**9)
    assert report.machine_windows == len(sc.machines)
    res = influx_db.query('SELECT * FROM "kpi_machine_day" GROUP BY "machine"')["results"][0][
        "series"
    ]
    stored = {
        s["tags"]["machine"]: dict(zip(s["columns"], s["values"][0], strict=True)) for s in res
    }
    truth = iso22400_elements(sc, start, end)
    assert set(stored) == set(truth)
    for machine, t in truth.items():
        got = stored[machine]
        assert got["pbt_s"] == pytest.approx(t["pbt_s"], abs=1e-6)
        assert (got["pq"], got["gq"]) == (t["pq"], t["gq"])
        pairs = {
            "availability": (got["apt_s"] / got["pbt_s"], t["apt_s"] / t["pbt_s"]),
            "effectiveness": (got["pri_pq_s"] / got["apt_s"], t["pri_pq_s"] / t["apt_s"]),
            "quality": (got["gq"] / got["pq"], t["gq"] / t["pq"]),
            "oee": (got["pri_gq_s"] / got["pbt_s"], t["pri_gq_s"] / t["pbt_s"]),
        }
        for name, (ours, theirs) in pairs.items():
            assert ours == pytest.approx(theirs, abs=0.005), (machine, name)
        if t["energy_kwh"]:
            assert got["kwh"] / got["gq"] == pytest.approx(t["energy_kwh"] / t["gq"], rel=0.01)
        assert not math.isnan(got["kgce"])
