"""API latency under an open-loop load, against the same InfluxQL sent straight to InfluxDB.

Starts a private InfluxDB, loads 100 machines (5 lines) with on-change raw states for a simulated
week (a day with --quick), runs the real KPI engine over it, starts `zhizao api run` as its own
process, then drives 50 concurrent clients with an open-loop generator: requests are *scheduled*
at a fixed arrival rate and each latency is measured from its scheduled time, so a slow answer
delays nothing and hides nothing (no coordinated omission). The mix, in equal parts: a line's
live view, a month of daily history for the factory, a machine's state timeline for a day.

The ceiling: the same generator sends, for each request, exactly the InfluxQL statements the API
sends for it (built by the same functions: ``api.history.build_query`` and
``analytics.reader.SiteReader.statements``) straight to InfluxDB's ``/query``.

    python benchmarks/api.py [--quick]

Prints {"name": "api", "live_p50_ms", "live_p99_ms", "history_p99_ms", "timeline_p99_ms",
"requests_per_s", "direct_p99_ms", "overhead_ratio", ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analytics import catalog  # noqa: E402
from analytics.calendar import hour_windows  # noqa: E402
from analytics.config import load_kpi_config  # noqa: E402
from analytics.engine import KpiEngine  # noqa: E402
from analytics.reader import SiteReader  # noqa: E402
from api.db.session import make_engine, make_sessionmaker, upgrade  # noqa: E402
from api.history import HistoryRequest, build_query  # noqa: E402
from api.masterdata import import_site  # noqa: E402
from api.routers.kpis import DEFAULT_KPIS  # noqa: E402
from api.routers.machines import LIVE_KPIS, LIVE_LOOKBACK_NS  # noqa: E402
from api.telemetry import planned_for  # noqa: E402
from api.tokens import create_token  # noqa: E402
from benchmarks._common import emit, log, percentile, start_api  # noqa: E402
from zhizao.influxql import ident, tag_equals  # noqa: E402
from zhizao.localstack import InfluxServer, free_port, stop_process_group  # noqa: E402
from zhizao.schema import CONNECTED_FIELD, CONNECTION_MEASUREMENT, GATEWAY_TAG, SOURCE_TAG  # noqa: E402
from zhizao.site import SiteModel  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
NS = 1_000_000_000
HOUR_NS = 3600 * NS
DAY_NS = 24 * HOUR_NS
LINES, PER_LINE = 5, 20
STATES = np.array(["IN_CYCLE", "SETUP", "DELAY", "IDLE"], object)
STATE_P = [0.72, 0.08, 0.1, 0.1]
CLIENTS = 50


def site_model() -> SiteModel:
    def machines(li: int) -> list[dict[str, str]]:
        return [{"id": f"M{li * PER_LINE + i:03d}", "type": "cnc"} for i in range(PER_LINE)]

    return SiteModel.model_validate(
        {
            "enterprise": "bench",
            "site": "bench-1",
            "timezone": "Asia/Shanghai",
            "machine_types": {
                "cnc": {
                    "profile": "custom",
                    "signals": [{"name": "state", "measurement": "machine_state", "kind": "state", "dtype": "string"}],
                }
            },
            "calendars": {
                "two": {
                    "shifts": [
                        {"name": "early", "start": "06:00", "end": "14:00", "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                         "breaks": [{"name": "lunch", "start": "10:00", "end": "10:30"}]},
                        {"name": "late", "start": "14:00", "end": "22:00", "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                         "breaks": [{"name": "dinner", "start": "18:00", "end": "18:30"}]},
                    ]
                }
            },
            "products": [{"id": "P1", "ideal_cycle_s": 90}],
            "areas": [{"id": "a1", "lines": [{"id": f"l{li + 1}", "calendar": "two", "machines": machines(li)} for li in range(LINES)]}],
        }
    )  # fmt: skip


def raw_lines(site: SiteModel, start_ns: int, days: int, seed: int = 1) -> list[str]:
    """On-change states (a change every 1-10 minutes) and a part counter per machine."""
    rng = np.random.default_rng(seed)
    out: list[str] = []
    for _, line, m in site.machines():
        n = days * 24 * 60 // 5
        gaps = rng.integers(60, 600, n) * NS
        ts = start_ns + np.cumsum(gaps) - gaps[0]
        ts = ts[ts < start_ns + days * DAY_NS]
        codes = rng.choice(len(STATES), len(ts), p=STATE_P)
        tags = f"area=a1,enterprise=bench,line={line.id},machine={m.id},site=bench-1"
        out += [
            f'machine_state,{tags} state="{s}" {t}'
            for t, s in zip(ts.tolist(), STATES[codes].tolist(), strict=True)
        ]
        parts = np.cumsum(codes == 0)
        out += [
            f"counter,{tags} part_count={int(p)}i {t}"
            for t, p in zip(ts[::3].tolist(), parts[::3].tolist(), strict=True)
        ]
    return out


def write(url: str, db: str, lines: list[str]) -> None:
    with httpx.Client(base_url=url, timeout=120) as c:
        c.post("/query", data={"q": f'CREATE DATABASE "{db}"'}).raise_for_status()
        for i in range(0, len(lines), 50_000):
            r = c.post(
                "/write",
                params={"db": db, "precision": "ns"},
                content="\n".join(lines[i : i + 50_000]),
            )
            assert r.status_code == 204, r.text


async def open_loop(
    rate_per_s: float,
    duration_s: float,
    kinds: list[str],
    send: Callable[[str, int], Awaitable[None]],
) -> tuple[dict[str, list[float]], float, int]:
    """Requests scheduled at a fixed rate; latency from the scheduled time, in ms."""
    lat: dict[str, list[float]] = {k: [] for k in kinds}
    errors = 0
    sem = asyncio.Semaphore(CLIENTS)  # 50 clients: a request waits for a free client (counted)
    t0 = time.perf_counter() + 0.2
    n = int(rate_per_s * duration_s)

    async def one(i: int) -> None:
        nonlocal errors
        scheduled = t0 + i / rate_per_s
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        kind = kinds[i % len(kinds)]
        async with sem:
            try:
                await send(kind, i)
            except Exception as exc:  # a failed request is counted, never dropped silently
                errors += 1
                if errors <= 3:
                    log(f"{kind} request failed: {type(exc).__name__}: {exc}")
                return
        lat[kind].append((time.perf_counter() - scheduled) * 1000)

    await asyncio.gather(*(one(i) for i in range(n)))
    return lat, time.perf_counter() - t0, errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--quick", action="store_true", help="a day of data, shorter load phases (< 30 s)"
    )
    ap.add_argument("--rate", type=float, default=0.0, help="requests per second (default 10)")
    args = ap.parse_args(argv)
    days = 1 if args.quick else 7
    # 50 clients each asking every 5 s: 10 requests/s, scheduled whatever the answers take
    rate, duration = (10.0, 6.0) if args.quick else (10.0, 30.0)
    if args.rate:
        rate = args.rate
    site = site_model()
    end_day = datetime(2026, 11, 30, tzinfo=TZ)
    start_ns = int((end_day - timedelta(days=days)).timestamp()) * NS
    end_ns = int(end_day.timestamp()) * NS
    tmp = Path(tempfile.mkdtemp(prefix="zhizao-bench-api-"))
    influx = InfluxServer().start()
    api_proc: subprocess.Popen[bytes] | None = None
    try:
        db = "bench"
        t = time.perf_counter()
        lines = raw_lines(site, start_ns, days)
        write(influx.url, db, lines)
        log(f"{len(lines):,} raw points in {time.perf_counter() - t:.1f} s")
        (tmp / "site.yaml").write_text(
            yaml.safe_dump(site.model_dump(mode="json")), encoding="utf-8"
        )
        (tmp / "kpi.yaml").write_text(yaml.safe_dump({
            "sites": ["site.yaml"], "influx": {"url": influx.url, "database": db},
            "schedule": {"backfill_s": days * 86400 + 3600, "lookback_s": 3600, "delay_s": 0},
        }), encoding="utf-8")  # fmt: skip
        kcfg = load_kpi_config(tmp / "kpi.yaml")
        t = time.perf_counter()
        rep = asyncio.run(KpiEngine(kcfg).run_once(now_ns=end_ns))
        log(
            f"KPI engine: {rep.points_written:,} component points in {time.perf_counter() - t:.1f} s"
        )
        db_url = f"sqlite:///{tmp / 'api.sqlite'}"
        upgrade(db_url)
        sessions = make_sessionmaker(make_engine(db_url))
        with sessions() as s:
            import_site(s, site)
            token, _ = create_token(s, name="bench", role="admin", site=None, expires_at=None)
            s.commit()
        port = free_port()
        api_proc = start_api(tmp, {
            "database_url": db_url, "influx": {"url": influx.url, "database": db},
            "kpi_config": str(tmp / "kpi.yaml"),
        }, port)  # fmt: skip
        base = f"http://127.0.0.1:{port}"

        machines = [m.id for _, _, m in site.machines()]
        live_at = end_ns - 3 * HOUR_NS  # 21:00, in the late shift
        day_lo = end_ns - DAY_NS
        month_lo = end_ns - 30 * DAY_NS
        iso = lambda ns: datetime.fromtimestamp(ns / NS, TZ).isoformat()  # noqa: E731

        def api_request(kind: str, i: int) -> tuple[str, dict[str, str]]:
            if kind == "live":
                return f"/api/v1/sites/bench-1/lines/l{i % LINES + 1}/live", {"at": iso(live_at)}
            if kind == "history":
                return "/api/v1/sites/bench-1/kpis/history", {"level": "site", "grouping": "day",
                                                              "from": iso(month_lo), "to": iso(end_ns)}  # fmt: skip
            m = machines[i % len(machines)]
            return f"/api/v1/sites/bench-1/machines/{m}/timeline", {
                "from": iso(day_lo),
                "to": iso(end_ns),
            }

        # the same statements the API sends, built by the same functions
        reader = SiteReader(kcfg)
        hb = int(kcfg.heartbeat_s * NS)
        prefix = kcfg.measurement_prefix

        def direct_statements(kind: str, i: int) -> list[str]:
            if kind == "history":
                req = HistoryRequest("site", "day", month_lo, end_ns, DEFAULT_KPIS)
                return [build_query(site, req, catalog.components_needed(req.kpis), prefix)]
            if kind == "timeline":
                m = machines[i % len(machines)]
                return [";".join(reader.statements(site, day_lo - hb, end_ns, machines=[m])[1])]
            line = f"l{i % LINES + 1}"
            ms = [m.id for _, ln, m in site.machines() if ln.id == line]
            out = [
                ";".join(
                    reader.statements(
                        site, live_at - LIVE_LOOKBACK_NS - hb, live_at + 1, machines=ms
                    )[1]
                )
            ]
            hour = int(hour_windows(live_at, live_at + 1, TZ)[0][0])
            planned = planned_for(site, ms[0], live_at - DAY_NS, live_at + 1)
            shift = next(x.start_ns for x in planned.shifts if x.start_ns <= live_at < x.end_ns)
            for grouping, w in (("hour", hour), ("shift", shift)):
                for level in ("machine", "line"):
                    req = HistoryRequest(level, grouping, w, w + 1, LIVE_KPIS, line=line)  # type: ignore[arg-type]
                    out.append(build_query(site, req, catalog.components_needed(LIVE_KPIS), prefix))
            out.append(
                f"SELECT last({ident(CONNECTED_FIELD)}) AS {ident(CONNECTED_FIELD)} FROM {ident(CONNECTION_MEASUREMENT)} "
                f"WHERE {tag_equals({'site': site.site, 'enterprise': site.enterprise})} GROUP BY {ident(GATEWAY_TAG)}, {ident(SOURCE_TAG)}"
            )
            return out

        kinds = ["live", "history", "timeline"]
        serial: dict[str, float] = {}

        async def run_api() -> tuple[dict[str, list[float]], float, int]:
            limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
            async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"},
                                         limits=limits, timeout=60) as c:  # fmt: skip

                async def send(kind: str, i: int) -> None:
                    path, params = api_request(kind, i)
                    r = await c.get(path, params=params)
                    r.raise_for_status()
                    await r.aread()

                for k in kinds:  # warm: the first of each kind fills caches (site model, computer)
                    await send(k, 0)
                for k in kinds:  # one at a time, for the record: the latency without queueing
                    t = time.perf_counter()
                    for j in range(5):
                        await send(k, j)
                    serial[k] = (time.perf_counter() - t) / 5 * 1000
                return await open_loop(rate, duration, kinds, send)

        async def run_direct() -> tuple[dict[str, list[float]], float, int]:
            limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
            async with httpx.AsyncClient(base_url=influx.url, limits=limits, timeout=60) as c:

                async def send(kind: str, i: int) -> None:
                    for q in direct_statements(kind, i):
                        r = await c.post("/query", params={"db": db, "epoch": "ns", "chunked": "true",
                                                           "chunk_size": "10000"}, data={"q": q})  # fmt: skip
                        r.raise_for_status()
                        assert b'"error"' not in r.content, r.content[:300]

                return await open_loop(rate, duration, kinds, send)

        api_lat, api_elapsed, api_err = asyncio.run(run_api())
        direct_lat, _, direct_err = asyncio.run(run_direct())
        done = sum(len(v) for v in api_lat.values())
        all_api = [x for v in api_lat.values() for x in v]
        all_direct = [x for v in direct_lat.values() for x in v]
        record = {
            "name": "api",
            "machines": len(machines),
            "days": days,
            "rate_per_s": rate,
            "live_p50_ms": percentile(api_lat["live"], 50),
            "live_p99_ms": percentile(api_lat["live"], 99),
            "history_p99_ms": percentile(api_lat["history"], 99),
            "timeline_p99_ms": percentile(api_lat["timeline"], 99),
            "requests_per_s": done / api_elapsed,
            "api_p99_ms": percentile(all_api, 99),
            "direct_p99_ms": percentile(all_direct, 99),
            "direct_live_p99_ms": percentile(direct_lat["live"], 99),
            "direct_history_p99_ms": percentile(direct_lat["history"], 99),
            "direct_timeline_p99_ms": percentile(direct_lat["timeline"], 99),
            "overhead_ratio": percentile(all_api, 99) / percentile(all_direct, 99),
            "errors": api_err + direct_err,
            **{f"serial_{k}_ms": v for k, v in serial.items()},
        }
        emit(record)
        return 0 if record["errors"] == 0 else 1
    finally:
        if api_proc is not None:
            stop_process_group(api_proc, signal.SIGTERM)
        influx.cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
