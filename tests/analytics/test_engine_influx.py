"""The KPI engine against a real InfluxDB: raw day in, components out, re-runs idempotent."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from analytics.compute import SiteComputer, SiteData
from analytics.config import KpiConfig, load_kpi_config
from analytics.engine import KpiEngine
from analytics.machine import MachineSignals, Signal
from ingest.influx import InfluxWriter
from tests.analytics.helpers import at, m1_state_samples
from tests.analytics.test_offline_cli import SITE
from tests.analytics.test_timeline import m1_counters
from tests.conftest import InfluxDb
from zhizao.cli import main
from zhizao.site import load_site

NEXT_DAY = date(2026, 3, 3)
TAGS = "enterprise=acme,line=l1,site=plant1,area=machining"


def raw_day() -> tuple[list[str], SiteData]:
    """Line protocol for M1 (the worked example) and M9 (counters only), and the same as SiteData."""
    lines: list[str] = []
    ts, states = m1_state_samples()
    lines += [
        f'machine_state,{TAGS},machine=M1 state="{s}" {t}'
        for t, s in zip(ts.tolist(), states, strict=True)
    ]
    roles: dict[str, Signal] = {}
    fields = {
        "parts_total": "part_count",
        "parts_scrap": "scrap_part_count",
        "parts_rework": "rework_part_count",
    }
    for role, sig in m1_counters().items():
        lines += [
            f"counter,{TAGS},machine=M1 {fields[role]}={int(v)}i {t}"
            for t, v in zip(sig.ts_ns.tolist(), sig.value.tolist(), strict=True)
        ]
        roles[role] = Signal(sig.ts_ns, sig.value.astype(np.float64))
    m9_ts = np.array([at("10:00"), at("11:00")], np.int64)
    lines += [
        f"counter,{TAGS},machine=M9 part_count={v}i {t}"
        for t, v in zip(m9_ts.tolist(), (5, 9), strict=True)
    ]
    kwh_ts = np.array([at("00:00"), at("12:00"), at("23:59")], np.int64)
    kwh = np.array([100.0, 400.0, 800.0])
    lines += [
        f"energy,{TAGS},machine=M1,meter=em-M1 energy_kwh={v} {t}"
        for t, v in zip(kwh_ts.tolist(), kwh.tolist(), strict=True)
    ]
    main_kwh = np.array([0.0, 3000.0, 4800.0])
    lines += [
        f"energy,enterprise=acme,site=plant1,meter=em-main energy_kwh={v} {t}"
        for t, v in zip(kwh_ts.tolist(), main_kwh.tolist(), strict=True)
    ]
    # the gas meter is published without a meter tag, under a utilities area (matched by signal)
    gas = np.array([10.0, 70.0, 130.0])
    lines += [
        f"energy,enterprise=acme,site=plant1,area=utilities,line=main gas_m3={v} {t}"
        for t, v in zip(kwh_ts.tolist(), gas.tolist(), strict=True)
    ]
    data = SiteData(
        machines={
            "M1": MachineSignals(
                {**roles, "energy_kwh": Signal(kwh_ts, kwh)}, {"state": Signal(ts, states)}
            ),
            "M9": MachineSignals({"parts_total": Signal(m9_ts, np.array([5.0, 9.0]))}),
        },
        meters={"em-main": Signal(kwh_ts, main_kwh), "gm-main": Signal(kwh_ts, gas)},
    )
    return lines, data


def engine_config(tmp_path: Path, db: InfluxDb) -> KpiConfig:
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(SITE), encoding="utf-8")
    cfg = {
        "sites": ["site.yaml"],
        "influx": {"url": db.url, "database": db.database},
        "heartbeat_s": 86400,
        "signals": {"state": [{"measurement": "machine_state", "field": "state"}]},
        "schedule": {"backfill_s": 86400, "lookback_s": 86400, "delay_s": 60},
    }
    (tmp_path / "kpi.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return load_kpi_config(tmp_path / "kpi.yaml")


def rows(db: InfluxDb, measurement: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    res = db.query(f'SELECT * FROM "{measurement}" GROUP BY *')["results"][0].get("series", [])
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for s in res:
        for v in s["values"]:
            out[(tuple(sorted(s["tags"].items())), v[0])] = {
                **s["tags"],
                **dict(zip(s["columns"], v, strict=True)),
            }
    return out


@pytest.mark.integration
async def test_engine_writes_components_equal_to_the_pure_computation(
    tmp_path: Path, influx_db: InfluxDb
) -> None:
    cfg = engine_config(tmp_path, influx_db)
    assert cfg.influx is not None
    lines, data = raw_day()
    async with InfluxWriter(cfg.influx) as writer:
        await writer.write_body(("\n".join(lines) + "\n").encode(), len(lines))
    assert influx_db.count("machine_state") == len(m1_state_samples()[0])

    engine = KpiEngine(cfg)
    now = at("00:01", NEXT_DAY)
    report = await engine.run_once(now)
    start, cutoff = report.start_ns, report.end_ns
    assert cutoff == at("00:00", NEXT_DAY) and start == at("00:00")
    # 2 machines x (24 hours + 1 shift + 1 day) + plant energy rows (24 hours + 1 day + 1 month)
    assert report.machine_windows == 2 * 26 and report.points_written == 2 * 26 + 26

    day = rows(influx_db, "kpi_machine_day")
    assert len(day) == 2
    m1 = next(v for (tags, _), v in day.items() if ("machine", "M1") in tags)
    assert m1["time"] == at("00:00") and m1["date"] == "2026-03-02"
    computer = SiteComputer(load_site(tmp_path / "site.yaml"), cfg)
    expected = computer.compute(data, "day", start, cutoff)
    for i, machine in enumerate(expected.machine):
        got = next(v for (tags, _), v in day.items() if ("machine", machine) in tags)
        for name, col in expected.components.columns().items():
            assert got.get(name) == pytest.approx(float(col[i]), abs=1e-9), (machine, name)
    assert (
        m1["pbt_s"] == 900 * 60 and m1["apt_s"] == 780 * 60 and m1["gq"] == 351 and m1["kwh"] == 700
    )
    assert m1["pri_gq_s"] / m1["pbt_s"] == pytest.approx(0.78, abs=1e-6)
    shift = rows(influx_db, "kpi_machine_shift")
    assert {v["shift"] for v in shift.values()} == {"day"} and len(shift) == 2
    site_day = rows(influx_db, "kpi_site_day")
    assert len(site_day) == 1
    # the month row is the sum of the month's day rows
    (month,) = rows(influx_db, "kpi_site_month").values()
    assert month["time"] == at("00:00", date(2026, 3, 1))  # the local month start
    assert month["days"] == 1 and month["electricity_kwh"] == 4800
    plant = next(iter(site_day.values()))
    assert plant["electricity_kwh"] == 4800 and plant["natural_gas_m3"] == 120
    assert plant["kgce"] == pytest.approx(4800 * 0.1229 + 120 * 1.2143, abs=1e-9)
    assert plant["kgco2"] == pytest.approx(4800 * 0.5737 + 120 * 2.1622, abs=1e-9)
    # line OEE read back as sum/sum over the stored components, the way dashboards do
    q = influx_db.query(
        'SELECT sum("pri_gq_s") / sum("pbt_s") FROM "kpi_machine_day" WHERE "line" = \'l1\''
    )
    # M1 351 good parts, M9 4 parts (no good/scrap counters: all good), PRI 120 s, PBT 2 x 900 min
    assert q["results"][0]["series"][0]["values"][0][1] == pytest.approx(
        (351 + 4) * 120 / (1800 * 60), abs=1e-9
    )

    # re-running is idempotent: same points, same values
    counts = {
        m: influx_db.count(m)
        for m in (
            "kpi_machine_hour",
            "kpi_machine_shift",
            "kpi_machine_day",
            "kpi_site_hour",
            "kpi_site_day",
        )
    }
    before = rows(influx_db, "kpi_machine_hour")
    await KpiEngine(cfg).run_once(now)
    assert {m: influx_db.count(m) for m in counts} == counts
    assert rows(influx_db, "kpi_machine_hour") == before

    # late data inside the look-back is folded in by the next run, still without new points
    async with InfluxWriter(cfg.influx) as writer:
        await writer.write_body(
            f"counter,{TAGS},machine=M9 part_count=12i {at('11:30')}\n".encode(), 1
        )
    await engine.run_once(now)  # a later tick of the same engine: look-back from its last run
    assert {m: influx_db.count(m) for m in counts} == counts
    m9 = next(
        v
        for (tags, _), v in rows(influx_db, "kpi_machine_day").items()
        if ("machine", "M9") in tags
    )
    assert m9["pq"] == 4 + 3


@pytest.mark.integration
async def test_engine_partitions_by_site(tmp_path: Path, influx_db: InfluxDb) -> None:
    cfg = engine_config(tmp_path, influx_db)
    other = dict(SITE, site="plant2")
    (tmp_path / "site2.yaml").write_text(yaml.safe_dump(other), encoding="utf-8")
    cfg = cfg.model_copy(update={"sites": [*cfg.sites, tmp_path / "site2.yaml"]})
    assert cfg.influx is not None
    lines, _ = raw_day()
    async with InfluxWriter(cfg.influx) as writer:
        await writer.write_body(("\n".join(lines) + "\n").encode(), len(lines))
    only2 = KpiEngine(cfg, sites=["plant2"])
    await only2.run_once(at("00:01", NEXT_DAY))
    day = rows(influx_db, "kpi_machine_day")
    assert {dict(tags)["site"] for tags, _ in day} == {"plant2"}
    # plant2 has no raw data: its machines are NO_DATA for the whole PBT, never running
    assert all(
        v["adet_no_data_s"] == v["pbt_s"] == 900 * 60 and v["apt_s"] == 0 for v in day.values()
    )


@pytest.mark.integration
async def test_cli_run_once(
    tmp_path: Path, influx_db: InfluxDb, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = engine_config(tmp_path, influx_db)
    assert cfg.influx is not None
    lines, _ = raw_day()
    async with InfluxWriter(cfg.influx) as writer:
        await writer.write_body(("\n".join(lines) + "\n").encode(), len(lines))
    # the CLI runs its own event loop: run it in a worker thread of this test's loop

    rc = await asyncio.to_thread(
        main,
        ["kpi", "run", "-c", str(tmp_path / "kpi.yaml"), "--once", "--now", "2026-03-03T00:01"],
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["points_written"] == 2 * 26 + 26
    assert influx_db.count("kpi_machine_day") == 2


@pytest.mark.integration
async def test_window_in_progress_is_completed_by_later_runs(
    tmp_path: Path, influx_db: InfluxDb
) -> None:
    cfg = engine_config(tmp_path, influx_db)
    assert cfg.influx is not None
    lines, _ = raw_day()
    async with InfluxWriter(cfg.influx) as writer:
        await writer.write_body(("\n".join(lines) + "\n").encode(), len(lines))
    engine = KpiEngine(cfg)
    await engine.run_once(at("12:31"))  # cutoff 12:30 (delay 60 s)
    day = rows(influx_db, "kpi_machine_day")
    n_points = len(day)  # the back-fill also wrote the day before (all NO_DATA)
    m1 = next(v for (tags, t), v in day.items() if ("machine", "M1") in tags and t == at("00:00"))
    assert m1["calendar_s"] == 12.5 * 3600
    assert m1["pot_s"] == 390 * 60 and m1["planned_down_s"] == 30 * 60
    await engine.run_once(at("00:01", NEXT_DAY))
    day = rows(influx_db, "kpi_machine_day")
    assert len(day) == n_points  # the same points, overwritten
    m1 = next(v for (tags, t), v in day.items() if ("machine", "M1") in tags and t == at("00:00"))
    assert m1["calendar_s"] == 86400 and m1["pbt_s"] == 900 * 60


async def test_scheduled_engine_survives_an_unreachable_influxdb(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from zhizao.localstack import free_port

    (tmp_path / "site.yaml").write_text(yaml.safe_dump(SITE), encoding="utf-8")
    doc = {
        "sites": ["site.yaml"],
        "influx": {"url": f"http://127.0.0.1:{free_port()}", "database": "none", "timeout_s": 2},
        "schedule": {"interval_s": 0.05},
    }
    (tmp_path / "kpi.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    engine = KpiEngine(load_kpi_config(tmp_path / "kpi.yaml"))
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run_forever(stop))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while engine.total_failed_runs < 3:
        assert loop.time() < deadline, "the engine did not retry"
        assert not task.done()
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 30)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "cannot be reached" in errors[0]  # logged once, not per tick
