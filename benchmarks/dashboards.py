"""Dashboard benchmark: every panel query of every InfluxDB dashboard, as Grafana sends them on a
refresh (all panels of a dashboard concurrently, after macro and variable substitution with every
machine selected), for a 24 h and a 30 d range.

Data: 100 machines (80 CNC with OPC 40001 state strings, 20 PackML cells) with a week in a
private InfluxDB: the KPI engine's measurements as it writes them (kpi_machine_hour / shift / day,
kpi_site_day), state changes every 3 minutes, part counters and meters every 5 minutes,
data-quality markers and gateway connection events. The 30 d range covers the week and 23 empty
days before it. The health dashboard (PromQL against VictoriaMetrics) is not part of this run.
Goals: a dashboard refresh under 1 s for 24 h and under 3 s for 30 d.

Prints {"name": "dashboards", "refresh_24h_s": .., "refresh_30d_s": .., "slowest_panel": "..",
"slowest_panel_ms": .., ...}; ``--quick``: 20 machines, 2 days.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dashboards.checks import load_dashboards  # noqa: E402
from dashboards.run import QueryContext, resolve_variables, run_dashboard  # noqa: E402
from zhizao.localstack import InfluxServer  # noqa: E402
from zhizao.schema import COMPONENT_FIELDS  # noqa: E402

DB = "bench"
SITE = "pudong-1"
ENTERPRISE = "zhizao-demo"
TZ_OFFSET_S = 8 * 3600
# the week ends on a local midnight; 2026-11-23 00:00 +08:00 is a Monday
WEEK_START_S = 1795363200 - TZ_OFFSET_S
CNC_STATES = ("Executing", "Executing", "Executing", "NotExecuting", "OutOfService")
PACKML_STATES = (6, 6, 6, 4, 11)
REPEATS = 3


def _assets(n: int) -> list[tuple[str, str, str, str]]:
    """(area, line, machine, kind): 5 machines per line, 4 lines per area."""
    out = []
    for i in range(n):
        line = i // 5
        kind = "cnc" if i < n * 4 // 5 else "asm"
        out.append((f"area{line // 4}", f"line{line}", f"M{i:03d}", kind))
    return out


def _tags(area: str, line: str, machine: str) -> str:
    return f"enterprise={ENTERPRISE},site={SITE},area={area},line={line},machine={machine}"


def _components(rng: np.random.Generator, seconds: float, planned: float) -> dict[str, float]:
    pbt = planned
    apt = pbt * rng.uniform(0.55, 0.85)
    aust = (pbt - apt) * 0.2
    adet = (pbt - apt) * 0.5
    adot = pbt - apt - aust - adet
    pq = float(np.floor(apt / 90.0))
    sq = float(np.floor(pq * 0.02))
    gq = pq - sq
    c = dict.fromkeys(COMPONENT_FIELDS, 0.0)
    c.update(
        calendar_s=seconds,
        pot_s=planned * 1.05,
        planned_down_s=planned * 0.05,
        pbt_s=pbt,
        apt_s=apt,
        aust_s=aust,
        adet_s=adet,
        adet_minor_s=adet * 0.3,
        adet_no_data_s=adet * 0.05,
        adot_s=adot,
        in_cycle_s=apt,
        in_cycle_pot_s=apt,
        cutting_s=apt * 0.7,
        cutting_pot_s=apt * 0.7,
        cutting_pbt_s=apt * 0.7,
        aoet_s=apt + aust + adet,
        pq=pq,
        gq=gq,
        sq=sq,
        pri_pq_s=pq * 80.0,
        pri_gq_s=gq * 80.0,
        kwh=apt / 3600 * 7.5,
        kgce=apt / 3600 * 7.5 * 0.1229,
        kgco2=apt / 3600 * 7.5 * 0.5737,
        target_q=pbt / 80.0,
    )
    return c


def _fields(c: dict[str, float]) -> str:
    return ",".join(f"{k}={v:.6g}" for k, v in sorted(c.items()))


def make_lines(machines: int, days: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    lines: list[str] = []
    start = WEEK_START_S + (7 - days) * 86400
    end = WEEK_START_S + 7 * 86400
    for area, line, machine, kind in _assets(machines):
        tags = _tags(area, line, machine)
        for h in range(start, end, 3600):
            local_h = (h + TZ_OFFSET_S) % 86400 // 3600
            planned = 3600.0 if 6 <= local_h < 22 else 0.0
            lines.append(f"kpi_machine_hour,{tags} {_fields(_components(rng, 3600, planned))} {h}")
        for d in range(start, end, 86400):
            date = time.strftime("%Y-%m-%d", time.gmtime(d + TZ_OFFSET_S))
            for name, off in (("early", 6), ("late", 14)):
                c = _components(rng, 8 * 3600, 7.25 * 3600)
                lines.append(
                    f"kpi_machine_shift,{tags},date={date},shift={name} {_fields(c)} {d + off * 3600}"
                )
            c = _components(rng, 86400, 14.5 * 3600)
            lines.append(f"kpi_machine_day,{tags},date={date} {_fields(c)} {d}")
        states = CNC_STATES if kind == "cnc" else PACKML_STATES
        field = "machinery_item_state" if kind == "cnc" else "packml_state"
        for t in range(start, end, 180):
            v = states[int(rng.integers(len(states)))]
            value = f'"{v}"' if kind == "cnc" else f"{v}i"
            lines.append(f'machine_state,{tags} {field}={value},product_id="P-100" {t}')
        for i, t in enumerate(range(start, end, 300)):
            lines.append(f"counter,{tags} part_count={i * 3}i {t}")
            lines.append(f"energy,{tags} energy_kwh={i * 0.6:.3f} {t}")
        for t in range(start, end, 86400):
            lines.append(f"data_quality,{tags},measurement=machine_state {field}=0i {t + 3600}")
    for d in range(start, end, 86400):
        lines.append(
            f"kpi_site_day,enterprise={ENTERPRISE},site={SITE} electricity_kwh=9000,"
            f"natural_gas_m3=120,water_m3=35,kgce=1250,kgco2=5400 {d}"
        )
    for t in range(start, end, 43200):
        for source in ("opcua", "meters"):
            lines.append(
                f"gateway_connection,enterprise={ENTERPRISE},site={SITE},gateway=gw1,"
                f"source={source} connected=true {t}"
            )
    return lines


async def _load(url: str, lines: list[str]) -> None:
    async with httpx.AsyncClient(timeout=120) as client:
        await client.post(f"{url}/query", params={"q": f"CREATE DATABASE {DB}"})
        for i in range(0, len(lines), 20000):
            body = "\n".join(lines[i : i + 20000]).encode()
            r = await client.post(f"{url}/write", params={"db": DB, "precision": "s"}, content=body)
            if r.status_code != 204:
                raise RuntimeError(f"write failed: {r.status_code} {r.text[:300]}")


async def _measure(url: str, range_days: int) -> dict[str, Any]:
    end_ms = (WEEK_START_S + 7 * 86400) * 1000 - 1
    ctx = QueryContext(url, DB, end_ms + 1 - range_days * 86_400_000, end_ms)
    out: dict[str, Any] = {"dashboards": {}, "slowest": ("", 0.0)}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64), timeout=60) as client:
        for name, board in load_dashboards().items():
            if any(
                t["datasource"]["type"] != "influxdb"
                for p in board["panels"]
                for t in p.get("targets", [])
            ):
                # the health dashboard queries VictoriaMetrics; the commission dashboard the
                # API, whose indicator table benchmarks/commission.py measures
                continue
            variables = await resolve_variables(board, ctx, client)  # on load, not per refresh
            times = []
            for _ in range(REPEATS):
                t0 = time.perf_counter()
                results = await run_dashboard(board, ctx, client=client, variables=variables)
                times.append(time.perf_counter() - t0)
                errors = [f"{r.panel}: {r.error}" for r in results if r.error]
                if errors:
                    raise RuntimeError("; ".join(errors))
                for r in results:
                    if r.elapsed_s > out["slowest"][1]:
                        out["slowest"] = (f"{board['title']} / {r.panel} ({r.ref})", r.elapsed_s)
            out["dashboards"][name] = statistics.median(times)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="20 machines, 2 days")
    args = p.parse_args(argv)
    machines, days = (20, 2) if args.quick else (100, 7)
    server = InfluxServer()
    server.start(timeout_s=60)
    try:
        t0 = time.perf_counter()
        lines = make_lines(machines, days)
        asyncio.run(_load(server.url, lines))
        load_s = time.perf_counter() - t0
        r24 = asyncio.run(_measure(server.url, 1))
        r30 = asyncio.run(_measure(server.url, 30))
    finally:
        server.cleanup()
    slowest = max((r24["slowest"], r30["slowest"]), key=lambda s: s[1])
    result = {
        "name": "dashboards",
        "machines": machines,
        "days": days,
        "points": len(lines),
        "load_s": round(load_s, 2),
        "refresh_24h_s": round(max(r24["dashboards"].values()), 3),
        "refresh_30d_s": round(max(r30["dashboards"].values()), 3),
        "slowest_panel": slowest[0],
        "slowest_panel_ms": round(slowest[1] * 1000, 1),
        "per_dashboard_24h_s": {k: round(v, 3) for k, v in r24["dashboards"].items()},
        "per_dashboard_30d_s": {k: round(v, 3) for k, v in r30["dashboards"].items()},
        "goals": {"refresh_24h_s": 1.0, "refresh_30d_s": 3.0},
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
