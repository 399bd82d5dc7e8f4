"""The incremental KPI engine (segments) against a full recomputation from raw data, on a real
InfluxDB: random state, counter and meter streams over several days, data arriving late and out
of order, engines restarted between runs. Times and counts must be equal exactly, PRI products
and energy to 1e-9 relative."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.calendar import _local_ns, zone
from analytics.compute import SiteComputer
from analytics.config import KpiConfig, load_kpi_config
from analytics.engine import KpiEngine
from analytics.reader import SiteReader
from analytics.segments import NS_FIELDS
from ingest.influx import InfluxQLReader, InfluxWriter
from tests.conftest import _influx_post
from zhizao.localstack import InfluxServer
from zhizao.schema import COUNT_COMPONENTS
from zhizao.site import load_site

TZ = zone("Asia/Shanghai")
D0 = date(2026, 3, 2)  # a Monday
S = 1_000_000_000
MIN = 60 * S
HOUR = 3600 * S
TAGS = "enterprise=acme,site=plant1,area=machining,line=l1"
EXACT = set(NS_FIELDS) | set(COUNT_COMPONENTS) | {"aoet_s"}

SITE: dict[str, Any] = {
    "enterprise": "acme",
    "site": "plant1",
    "machine_types": {"cnc": {"profile": "custom"}},
    "calendars": {
        "day": {
            "shifts": [
                {
                    "name": "day",
                    "start": "06:00",
                    "end": "22:00",
                    "breaks": [{"name": "lunch", "start": "12:00", "end": "12:30"}],
                }
            ]
        },
        # a shift crossing midnight, its break after midnight, and a half-hour shift edge
        "night": {
            "shifts": [
                {
                    "name": "night",
                    "start": "21:30",
                    "end": "05:30",
                    "breaks": [{"name": "meal", "start": "02:00", "end": "02:30"}],
                }
            ]
        },
    },
    "products": [{"id": "P-100", "ideal_cycle_s": 47}],
    "areas": [
        {
            "id": "machining",
            "lines": [
                {
                    "id": "l1",
                    "calendar": "day",
                    "machines": [
                        {"id": "M1", "type": "cnc"},
                        {"id": "M2", "type": "cnc", "calendar": "night"},
                    ],
                }
            ],
        }
    ],
    "meters": [
        {
            "id": "em-M1",
            "medium": "electricity",
            "unit": "kWh",
            "signal": "energy_kwh",
            "asset": "machining/l1/M1",
        },
        {"id": "em-main", "medium": "electricity", "unit": "kWh", "signal": "energy_kwh"},
        # rooftop solar: the plant row's renewable_kgce and energy_use_kgce
        {
            "id": "pv",
            "medium": "electricity",
            "unit": "kWh",
            "signal": "energy_kwh",
            "purchased": False,
            "renewable": True,
        },
    ],
}


def at(day: int, minute: float) -> int:
    return _local_ns(D0 + timedelta(days=day), 0, TZ) + int(minute * MIN)


@dataclass
class Sample:
    ts: int
    line: str  # line protocol without the timestamp
    arrives: int  # when it reaches InfluxDB


def streams(rng: np.random.Generator, days: float, late_s: float) -> list[Sample]:
    """On-change raw data as a gateway writes it, with the named edge cases always present."""
    out: list[tuple[int, str]] = []
    end = at(0, days * 1440)
    for machine in ("M1", "M2"):
        t = at(-1, 23 * 60)  # before the first window
        states = ["IN_CYCLE", "IDLE", "SETUP", "DELAY"]
        while t < end:
            state = states[int(rng.choice(4, p=[0.5, 0.15, 0.1, 0.25]))]
            out.append((t, f'machine_state,{TAGS},machine={machine} state="{state}"'))
            # DELAY around the 120 s micro-stop threshold, some of everything long
            if state == "DELAY" and rng.random() < 0.7:
                t += int(rng.integers(30, 240)) * S
            else:
                t += int(rng.choice([rng.integers(20, 600), rng.integers(600, 9000)])) * S
        count = 0.0
        t = at(-1, 23 * 60) + int(rng.integers(1, 60)) * S
        while t < end:
            if rng.random() < 0.01:
                count = float(rng.integers(0, 3))  # a reset (power cycle)
            else:
                count += float(rng.integers(0, 4))
            out.append((t, f"counter,{TAGS},machine={machine} part_count={int(count)}i"))
            if machine == "M1" and rng.random() < 0.3:
                out.append((t, f"counter,{TAGS},machine=M1 scrap_part_count={int(count) // 9}i"))
            t += int(rng.integers(15, 400)) * S
    # a stop spanning many segments: DELAY from 23:10 to 05:50 across midnight and the night shift
    out.append((at(0, 23 * 60 + 10), f'machine_state,{TAGS},machine=M2 state="DELAY"'))
    out = [(t, x) for t, x in out if not (at(0, 23 * 60 + 10) < t < at(1, 350) and
                                          "machine=M2 state" in x)]  # fmt: skip
    out.append((at(1, 350), f'machine_state,{TAGS},machine=M2 state="IN_CYCLE"'))
    # a 150 s stop across the 10:00 edge of day 1, 100 s of it before: a breakdown in both hours
    out = [(t, x) for t, x in out if not (at(1, 590) < t < at(1, 610) and
                                          "machine=M1 state" in x)]  # fmt: skip
    out.append((at(1, 590), f'machine_state,{TAGS},machine=M1 state="IN_CYCLE"'))
    out.append((at(1, 600) - 100 * S, f'machine_state,{TAGS},machine=M1 state="DELAY"'))
    out.append((at(1, 600) + 50 * S, f'machine_state,{TAGS},machine=M1 state="IN_CYCLE"'))
    # a counter reset exactly at a segment edge (08:00), the drop sample on the edge itself
    out.append((at(1, 480) - 30 * S, f"counter,{TAGS},machine=M1 part_count=900i"))
    out.append((at(1, 480), f"counter,{TAGS},machine=M1 part_count=2i"))
    # a connection loss marked by the gateway: BAD from 10:07 to 10:41 on day 1
    out.append((at(1, 607), f"data_quality,{TAGS},machine=M1,measurement=machine_state state=2i"))
    out.append((at(1, 641), f"data_quality,{TAGS},machine=M1,measurement=machine_state state=0i"))
    t, kwh, main, pv = at(-1, 23 * 60), 0.0, 0.0, 0.0
    while t < end:
        kwh += float(rng.uniform(0, 2.5))
        main += float(rng.uniform(0, 40))
        pv += float(rng.uniform(0, 5))
        out.append((t, f"energy,{TAGS},machine=M1,meter=em-M1 energy_kwh={kwh!r}"))
        out.append((t, f"energy,enterprise=acme,site=plant1,meter=em-main energy_kwh={main!r}"))
        out.append((t, f"energy,enterprise=acme,site=plant1,meter=pv energy_kwh={pv!r}"))
        t += 600 * S
    dedup = {(ts, line.split(" ")[0], line.split(" ")[1].split("=")[0]): (ts, line)
             for ts, line in out}  # fmt: skip
    samples = []
    for ts, line in sorted(dedup.values()):
        late = rng.random() < 0.15
        samples.append(Sample(ts, line, ts + (int(rng.uniform(0, late_s) * S) if late else 0)))
    # data arriving after its segment was computed: a part counted at 13:20 on day 1 shows up
    # later, with the state change that came with it
    # (as late as the look-back lets it be and still be folded in)
    arrives = at(1, 800) + min(50 * MIN, int(late_s * S))
    samples.append(Sample(at(1, 800), f"counter,{TAGS},machine=M2 part_count=77777i", arrives))
    samples.append(Sample(at(1, 800), f'machine_state,{TAGS},machine=M2 state="SETUP"', arrives))
    return samples


def config(tmp: Path, url: str, db: str, lookback_s: float) -> KpiConfig:
    (tmp / "site.yaml").write_text(yaml.safe_dump(SITE), encoding="utf-8")
    doc = {
        "sites": ["site.yaml"],
        "influx": {"url": url, "database": db},
        "heartbeat_s": 1800,
        "signals": {"state": [{"measurement": "machine_state", "field": "state"}]},
        "schedule": {"backfill_s": 3600, "lookback_s": lookback_s, "delay_s": 60},
        "health": {"port": 0},
    }
    (tmp / "kpi.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_kpi_config(tmp / "kpi.yaml")


async def write(writer: InfluxWriter, samples: list[Sample]) -> None:
    if samples:
        body = "".join(f"{s.line} {s.ts}\n" for s in samples).encode()
        await writer.write_body(body, len(samples))


async def stored(cfg: KpiConfig, measurement: str) -> dict[tuple[str, int], dict[str, float]]:
    assert cfg.influx is not None
    async with InfluxQLReader(cfg.influx) as reader:
        series = await reader.query(f'SELECT * FROM "{measurement}" GROUP BY *')
    out = {}
    for s in series:
        for i, t in enumerate(s.time_ns.tolist()):
            row = {k: float(v[i]) for k, v in s.values.items() if v[i] is not None}
            out[(s.tags.get("machine", ""), int(t))] = row
    return out


async def full_recomputation(cfg: KpiConfig, lo: int, hi: int) -> dict[str, Any]:
    """Every window from all raw data at once, the way the engine computed them before
    segments (one read from before the first window, whole windows)."""
    assert cfg.influx is not None
    computer = SiteComputer(load_site(cfg.sites[0]), cfg)
    async with InfluxQLReader(cfg.influx) as reader:
        data = await SiteReader(cfg).read(reader, computer.site, lo - 2 * HOUR, hi + 1)
    return {kind: computer.compute(data, kind, lo, hi) for kind in cfg.windows}


def assert_equal_rows(
    kind: str, rows: dict[tuple[str, int], dict[str, float]], ref: Any, since_ns: int
) -> int:
    checked = 0
    for i, machine in enumerate(ref.machine):
        t = int(ref.start_ns[i])
        if t < since_ns:
            continue
        got = rows.get((machine, t))
        assert got is not None, f"{kind} row {machine}@{t} not stored"
        for name, col in ref.components.columns().items():
            want = float(col[i])
            if name in EXACT:
                assert got.get(name, 0.0) == want, (kind, machine, t, name, got.get(name), want)
            else:
                assert got.get(name, 0.0) == pytest.approx(want, rel=1e-9, abs=1e-9), (
                    kind, machine, t, name,
                )  # fmt: skip
        checked += 1
    return checked


async def scenario(
    tmp: Path, url: str, seed: int, days: float, lookback_s: float, steps: list[int],
    restarts: list[bool],
) -> tuple[KpiConfig, int, int]:  # fmt: skip
    db = f"t_{uuid.uuid4().hex[:12]}"
    _influx_post(url, f'CREATE DATABASE "{db}"')
    cfg = config(tmp, url, db, lookback_s)
    rng = np.random.default_rng(seed)
    # late data is folded in while it is inside the look-back of the run it reaches
    samples = streams(rng, days, late_s=min(max(lookback_s - max(steps) * 60 - 120, 0), 3600))
    end = at(0, days * 1440)
    now = at(0, 10)
    engine = KpiEngine(cfg)
    pending = sorted(samples, key=lambda s: s.arrives)
    k = 0
    i = 0
    async with engine.connect() as conn:
        writer = conn[1]
        while now < end + 2 * HOUR:
            n = next((j for j in range(i, len(pending)) if pending[j].arrives > now), len(pending))
            await write(writer, pending[i:n])
            i = n
            if restarts[k % len(restarts)]:
                engine = KpiEngine(cfg)  # a restarted engine: nothing kept in memory
            await engine.run_once(now, conn=conn)
            now += steps[k % len(steps)] * MIN
            k += 1
        await write(writer, pending[i:])
        await engine.run_once(now, conn=conn)
    return cfg, at(0, 0), now - 60 * S


@pytest.mark.integration
@settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**31),
    lookback_h=st.sampled_from([2.0, 3.0]),
    steps=st.lists(st.integers(15, 110), min_size=3, max_size=8),
    restarts=st.lists(st.booleans(), min_size=4, max_size=10).map(
        lambda r: [x and i % 3 == 0 for i, x in enumerate(r)]
    ),
)
def test_incremental_engine_equals_full_recomputation(
    tmp_path: Path,
    influx_server: InfluxServer,
    seed: int,
    lookback_h: float,
    steps: list[int],
    restarts: list[bool],
) -> None:
    async def main() -> None:
        cfg, lo, hi = await scenario(tmp_path, influx_server.url, seed, 2.2, lookback_h * 3600,
                                     steps, restarts)  # fmt: skip
        ref = await full_recomputation(cfg, lo, hi)
        checked = 0
        for kind in cfg.windows:
            rows = await stored(cfg, f"kpi_machine_{kind}")
            checked += assert_equal_rows(kind, rows, ref[kind], lo)
        assert checked >= 2 * (24 * 2 + 2)
        for kind in ("hour", "day"):
            site_rows = await stored(cfg, f"kpi_site_{kind}")
            r = ref[kind]
            for j, t in enumerate(r.energy_start_ns.tolist()):
                if t >= lo:
                    got = site_rows[("", int(t))]
                    # the site's output and the renewable fields are in the plant row too
                    assert {"output_gq", "output_value_cny", "renewable_kgce"} <= set(got)
                    for name, col in r.energy_fields.items():
                        assert got[name] == pytest.approx(float(col[j]), rel=1e-9), (kind, t, name)

    asyncio.run(main())


@pytest.mark.integration
async def test_the_named_cases_are_exact(tmp_path: Path, influx_server: InfluxServer) -> None:
    """A stop spanning many segments, a counter reset on a segment edge, a shift crossing
    midnight, data arriving after its segment was computed: each row equals the full
    recomputation, and the cases are really there (so the test cannot pass vacuously)."""
    cfg, lo, hi = await scenario(tmp_path, influx_server.url, 7, 2.2, 7200, [13, 41, 7, 60],
                                 [False, False, True, False, False])  # fmt: skip
    ref = await full_recomputation(cfg, lo, hi)
    for kind in cfg.windows:
        assert_equal_rows(kind, await stored(cfg, f"kpi_machine_{kind}"), ref[kind], lo)
    shifts = await stored(cfg, "kpi_machine_shift")
    night = shifts[("M2", at(0, 21 * 60 + 30))]
    # the 6 h 40 min stop inside the night shift is a breakdown, never minor stops
    assert night["adet_s"] >= (at(1, 330) - at(0, 23 * 60 + 10)) / S - 1800
    assert night["pot_s"] == 8 * 3600 and night["planned_down_s"] == 1800
    hours = await stored(cfg, "kpi_machine_hour")
    assert hours[("M2", at(1, 180))]["adet_minor_s"] == 0  # 03:00, mid-stop
    # the stop across 10:00 is whole in both hours: 100 s and 50 s of breakdown, not minor
    assert hours[("M1", at(1, 540))]["adet_minor_s"] == 0 < hours[("M1", at(1, 540))]["adet_s"]
    assert hours[("M1", at(1, 600))]["adet_minor_s"] == 0 < hours[("M1", at(1, 600))]["adet_s"]
    # the reset at 08:00 counts the 2 parts after it in the 08:00 hour, not 7:00's
    assert hours[("M1", at(1, 480))]["pq"] >= 2
    # the late part (77777 - previous) lands in 13:00 of day 1
    assert hours[("M2", at(1, 780))]["pq"] > 10_000
    assert (await stored(cfg, "kpi_machine_segment"))[("M2", at(1, 780))]["pq"] > 10_000
