"""Issue 14 item 5: the offline calculator and the engine agree on the same data.

Raw samples go into a real InfluxDB; the engine computes and stores its components; ``zhizao
export`` writes the same range as CSV; ``zhizao kpi compute`` on that CSV must give identical
components for every machine (times, counts, energy), and the same plant energy. The data uses
every feature both paths must read alike: on-change states, part counters with a reset, a machine
meter published with its meter tag (``meter:<id>`` in the export), site meters with and without a
meter tag, and a data-quality marker on the state signal (a stretch of NO_DATA).
"""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import pytest

from analytics.engine import KpiEngine
from ingest.influx import InfluxWriter
from tests.analytics.helpers import at
from tests.analytics.test_engine_influx import NEXT_DAY, TAGS, engine_config, raw_day, rows
from tests.conftest import InfluxDb
from zhizao.cli import main

pytestmark = pytest.mark.integration


async def test_export_then_compute_equals_the_engine(
    tmp_path: Path, influx_db: InfluxDb, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = engine_config(tmp_path, influx_db)
    assert cfg.influx is not None
    lines, _ = raw_day()
    # the gateway lost M1's state signal from 09:00 to 09:20 (BAD), then it was good again
    lines += [
        f"data_quality,{TAGS},machine=M1,measurement=machine_state state=2i {at('09:00')}",
        f"data_quality,{TAGS},machine=M1,measurement=machine_state state=0i {at('09:20')}",
    ]
    async with InfluxWriter(cfg.influx) as writer:
        await writer.write_body(("\n".join(lines) + "\n").encode(), len(lines))
    await KpiEngine(cfg).run_once(at("00:01", NEXT_DAY))
    stored = {
        v["machine"]: v for v in rows(influx_db, "kpi_machine_day").values()
    }  # one day row per machine
    assert set(stored) == {"M1", "M9"}
    assert stored["M1"]["adet_no_data_s"] == 20 * 60  # the marker reached the engine

    out = tmp_path / "export.csv"
    rc = await asyncio.to_thread(
        main,
        ["export", "--site", str(tmp_path / "site.yaml"), "-c", str(tmp_path / "kpi.yaml"),
         "--from", "2026-03-02T00:00", "--to", "2026-03-03T00:00", "--out", str(out)],
    )  # fmt: skip
    assert rc == 0
    with out.open(encoding="utf-8") as fh:
        exported = list(csv.DictReader(fh))
    signals = {r["signal"] for r in exported}
    assert {"machine_state.state", "data_quality.state", "meter:em-M1", "meter:em-main"} <= signals
    assert "energy.gas_m3" in signals
    # every stored raw sample is exported exactly once
    raw = sum(1 for ln in lines if not ln.startswith("kpi_"))
    assert len(exported) == raw
    capsys.readouterr()

    rc = await asyncio.to_thread(
        main,
        ["kpi", "compute", "--samples", str(out), "--site", str(tmp_path / "site.yaml"),
         "-c", str(tmp_path / "kpi.yaml"), "--from", "2026-03-02T00:00",
         "--to", "2026-03-03T00:00", "--window", "day", "--json"],
    )  # fmt: skip
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert not any("skipped" in n for n in report["notes"]), report["notes"]
    offline = {r["machine"]: r["components"] for r in report["machines"]}
    assert set(offline) == set(stored)
    for machine, comps in offline.items():
        for name, value in comps.items():
            assert stored[machine][name] == pytest.approx(value, rel=1e-9, abs=1e-9), (
                machine,
                name,
            )
    plant = next(iter(rows(influx_db, "kpi_site_day").values()))
    energy = report["plant_energy"][0]
    for name in ("electricity_kwh", "natural_gas_m3", "kgce", "kgco2"):
        assert energy[name] == pytest.approx(plant[name], rel=1e-9), name
