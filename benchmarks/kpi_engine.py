"""KPI engine benchmark: steady-state runs of the incremental engine on a real InfluxDB.

An InfluxDB 1.x started by this script holds 1,000 machines x two days of on-change raw data
(state changes about every 30 s, a part counter sample every cycle of 45-90 s, an energy meter
reading every 10 s per machine and for the plant), bulk-loaded as line protocol. The engine's
first run (back-fill, not timed) is followed by steady-state runs, one per simulated minute,
each after that minute's new raw data was written. Measured per steady-state run: wall time and
raw points (field values) read, against the points written since the previous run.

Baseline, in the same run: today's full-window approach before segments (read every window the
look-back touches from its start, one heartbeat earlier, and compute every hour, shift and day
row from raw data), at the same instant; its rows must equal the engine's (times and counts
exactly, PRI products and energy to 1e-9 relative).

Prints {"name": "kpi_engine", "machines": .., "run_s": .., "points_read_per_run": ..,
"points_new_per_run": .., "baseline_run_s": .., "ratio": ..}.

Usage: python benchmarks/kpi_engine.py [--quick] [--machines N] [--runs R]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analytics.calendar import _local_ns, zone
from analytics.config import KpiConfig, load_kpi_config
from analytics.engine import KpiEngine, site_batch
from analytics.segments import NS_FIELDS
from benchmarks._common import emit, log
from ingest.influx import InfluxQLReader, InfluxWriter
from zhizao.localstack import InfluxServer
from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable
from zhizao.schema import COUNT_COMPONENTS

S = 1_000_000_000
TZ = zone("Asia/Shanghai")
DAY = date(2026, 3, 3)  # the steady state runs on this day's morning
STATES = np.array(["IN_CYCLE", "IDLE", "SETUP", "DELAY"], object)
STATE_P = [0.6, 0.15, 0.05, 0.2]
EXACT = set(NS_FIELDS) | set(COUNT_COMPONENTS) | {"aoet_s"}


def site_model(n: int) -> dict[str, Any]:
    lines = [
        {"id": f"l{k:02d}", "calendar": "two-shift",
         "machines": [{"id": f"m{i:04d}", "type": "cnc"} for i in range(k * 20, min(n, k * 20 + 20))]}
        for k in range((n + 19) // 20)
    ]  # fmt: skip
    meters = [
        {"id": f"em-m{i:04d}", "medium": "electricity", "unit": "kWh", "signal": "energy_kwh",
         "asset": f"a1/l{i // 20:02d}/m{i:04d}"}
        for i in range(n)
    ]  # fmt: skip
    meters.append({"id": "em-main", "medium": "electricity", "unit": "kWh", "signal": "energy_kwh"})
    shifts = [
        {"name": "early", "start": "06:00", "end": "14:00",
         "breaks": [{"name": "lunch", "start": "11:30", "end": "12:00"}]},
        {"name": "late", "start": "14:00", "end": "22:00",
         "breaks": [{"name": "dinner", "start": "18:00", "end": "18:30"}]},
    ]  # fmt: skip
    return {
        "enterprise": "bench", "site": "plant", "machine_types": {"cnc": {"profile": "custom"}},
        "calendars": {"two-shift": {"shifts": shifts}},
        "products": [{"id": "P", "ideal_cycle_s": 50}],
        "areas": [{"id": "a1", "lines": lines}], "meters": meters,
    }  # fmt: skip


class RawData:
    """Every machine's raw samples over [lo, hi), columnar, to be written minute by minute."""

    def __init__(self, n: int, lo: int, hi: int, seed: int = 16) -> None:
        rng = np.random.default_rng(seed)
        self.table = SeriesTable()
        tags = [{"enterprise": "bench", "site": "plant", "area": "a1", "line": f"l{i // 20:02d}",
                 "machine": f"m{i:04d}"} for i in range(n)]  # fmt: skip
        st = [self.table.add(SeriesKey.make("machine_state", t, "state", FieldType.STRING))
              for t in tags]  # fmt: skip
        pc = [self.table.add(SeriesKey.make("counter", t, "part_count", FieldType.INT))
              for t in tags]  # fmt: skip
        em = [self.table.add(SeriesKey.make("energy", {**t, "meter": f"em-m{i:04d}"}, "energy_kwh",
                                            FieldType.FLOAT)) for i, t in enumerate(tags)]  # fmt: skip
        main = self.table.add(SeriesKey.make("energy", {"enterprise": "bench", "site": "plant",
                                                        "meter": "em-main"}, "energy_kwh",
                                             FieldType.FLOAT))  # fmt: skip
        span_s = (hi - lo) // S
        series: list[NDArray[np.int32]] = []
        ts: list[NDArray[np.int64]] = []
        f64: list[NDArray[np.float64]] = []
        i64: list[NDArray[np.int64]] = []
        strs: list[NDArray[np.object_]] = []

        def add(
            sid: int, t: NDArray[np.int64], f: Any = None, i: Any = None, s: Any = None
        ) -> None:
            k = len(t)
            series.append(np.full(k, sid, np.int32))
            ts.append(t)
            f64.append(np.zeros(k) if f is None else np.asarray(f, np.float64))
            i64.append(np.zeros(k, np.int64) if i is None else np.asarray(i, np.int64))
            strs.append(np.full(k, None, object) if s is None else s)

        for m in range(n):  # machines, each vectorized
            k = int(span_s / 30 * 1.2) + 10
            t = lo + np.cumsum(rng.exponential(30.0, k) * S).astype(np.int64)
            t = t[t < hi]
            add(st[m], np.concatenate(([lo], t)), s=STATES[rng.choice(4, len(t) + 1, p=STATE_P)])
            k = int(span_s / 45) + 10
            t = lo + np.cumsum(rng.uniform(45, 90, k) * S).astype(np.int64)
            t = t[t < hi]
            add(pc[m], t, i=np.arange(1, len(t) + 1))
            t = np.arange(lo + int(rng.integers(0, 10)) * S, hi, 10 * S, dtype=np.int64)
            add(em[m], t, f=np.cumsum(rng.uniform(0, 0.02, len(t))))
        t = np.arange(lo, hi, 10 * S, dtype=np.int64)
        add(main, t, f=np.cumsum(rng.uniform(0, 15, len(t))))
        order = np.argsort(np.concatenate(ts), kind="stable")
        self.ts = np.concatenate(ts)[order]
        self.batch = Batch(
            series=np.concatenate(series)[order], ts_ns=self.ts,
            value_f64=np.concatenate(f64)[order], value_i64=np.concatenate(i64)[order],
            quality=np.zeros(len(order), np.uint8), value_str=np.concatenate(strs)[order],
        )  # fmt: skip

    def between(self, lo: int, hi: int) -> Batch:
        """Samples with lo < t <= hi."""
        a, b = np.searchsorted(self.ts, [lo, hi], "right")
        return self.batch.take(np.arange(a, b))


def config(tmp: Path, url: str, db: str, n: int) -> KpiConfig:
    (tmp / "site.yaml").write_text(yaml.safe_dump(site_model(n)), encoding="utf-8")
    doc = {
        "sites": ["site.yaml"], "influx": {"url": url, "database": db, "timeout_s": 600},
        "signals": {"state": [{"measurement": "machine_state", "field": "state"}]},
        "schedule": {"interval_s": 60, "lookback_s": 7200, "backfill_s": 3600, "delay_s": 60},
        "energy": {"plant_meters": ["em-main"]}, "health": {"port": 0},
    }  # fmt: skip
    (tmp / "kpi.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_kpi_config(tmp / "kpi.yaml")


async def baseline_run(engine: KpiEngine, now_ns: int, prefix: str) -> tuple[float, int]:
    """Today's engine before segments, at ``now``: every window of the look-back from its start
    (a heartbeat earlier), every row computed from raw data. Returns (seconds, points read)."""
    cfg = engine.cfg
    t0 = time.perf_counter()
    cutoff = now_ns - int(cfg.schedule.delay_s * S)
    start = cutoff - int(cfg.schedule.lookback_s * S)
    hb = int(cfg.heartbeat_s * S)
    points = 0
    async with InfluxQLReader(engine.influx) as reader, InfluxWriter(engine.influx) as writer:
        for computer in engine.computers:
            lo, hi = start, cutoff
            for kind in cfg.windows:
                k_lo, k_hi = computer.extent(kind, start, cutoff)
                lo, hi = min(lo, k_lo), max(hi, k_hi)
            plans, statements = engine.site_reader.statements(
                computer.site, lo - hb, min(hi, cutoff) + 1
            )
            series = await reader.query(";".join(statements), chunked=True, chunk_size=10_000)
            points += sum(
                int(np.count_nonzero(_present(c))) for s in series for c in s.values.values()
            )
            data = engine.site_reader.assemble(computer.site, plans, series)
            table = SeriesTable()
            for kind in cfg.windows:
                result = computer.compute(data, kind, start, cutoff)
                await writer.write_batch(table, site_batch(table, result, prefix))
    return time.perf_counter() - t0, points


def _present(col: NDArray[Any]) -> NDArray[np.bool_]:
    if col.dtype.kind == "f":
        return np.asarray(~np.isnan(col))
    if col.dtype.kind == "O":
        return np.asarray(np.array([v is not None for v in col.tolist()], bool))
    return np.ones(len(col), bool)


async def rows(
    cfg: KpiConfig, measurement: str, since_ns: int
) -> dict[tuple[str, int], dict[str, float]]:
    assert cfg.influx is not None
    async with InfluxQLReader(cfg.influx) as reader:
        series = await reader.query(f'SELECT * FROM "{measurement}" WHERE time >= {since_ns} GROUP BY *',
                                    chunked=True)  # fmt: skip
    out = {}
    for s in series:
        for i, t in enumerate(s.time_ns.tolist()):
            out[(s.tags.get("machine", ""), int(t))] = {
                k: float(v[i]) for k, v in s.values.items() if v[i] is not None
            }
    return out


async def compare(cfg: KpiConfig, since_ns: int) -> int:
    """The engine's rows equal the baseline's; returns the number of rows compared."""
    n = 0
    for kind in cfg.windows:
        ours = await rows(cfg, f"kpi_machine_{kind}", since_ns)
        base = await rows(cfg, f"base_machine_{kind}", since_ns)
        assert base and set(base) <= set(ours), (kind, len(base), len(ours))
        for key, want in base.items():
            got = ours[key]
            for name, v in want.items():
                ok = (
                    got.get(name) == v
                    if name in EXACT
                    else abs(got.get(name, 0.0) - v) <= 1e-9 * max(abs(v), 1e-9)
                )
                assert ok, (kind, key, name, got.get(name), v)
            n += 1
    return n


async def bench(n: int, history_h: float, runs: int) -> dict[str, Any]:
    now0 = _local_ns(DAY, 8 * 60, TZ) + 60 * S  # 08:01: cut-off 08:00 (delay 60 s)
    lo = now0 - int(history_h * 3600 * S)
    hi = now0 + (runs + 1) * 60 * S
    t = time.perf_counter()
    raw = RawData(n, lo, hi)
    log(
        f"{n} machines: {len(raw.batch):,} raw samples generated in {time.perf_counter() - t:.1f} s"
    )
    server = InfluxServer()
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            urllib.request.urlopen(
                urllib.request.Request(f"{server.url}/query?q=CREATE+DATABASE+bench", method="POST")
            ).read()
            cfg = config(Path(tmp), server.url, "bench", n)
            assert cfg.influx is not None
            t = time.perf_counter()
            history = raw.between(lo - 1, now0)
            async with InfluxWriter(cfg.influx) as writer:
                await writer.write_batch(raw.table, history)
            log(
                f"history: {len(history):,} samples ({history_h:g} h) loaded in {time.perf_counter() - t:.1f} s"
            )
            engine = KpiEngine(cfg)
            async with engine.connect() as conn:
                t = time.perf_counter()
                rep = await engine.run_once(now0, conn=conn)
                log(f"first run (back-fill {rep.segments} segments, {rep.points_read:,} points read): "
                    f"{time.perf_counter() - t:.1f} s")  # fmt: skip
                run_s: list[float] = []
                read: list[int] = []
                new: list[int] = []
                now = now0
                for _ in range(runs):
                    fresh = raw.between(now - 60 * S, now)  # the minute that became visible
                    await conn[1].write_batch(raw.table, fresh)
                    now += 60 * S
                    rep = await engine.run_once(now, conn=conn)
                    run_s.append(rep.duration_s)
                    read.append(rep.points_read)
                    new.append(len(fresh))
                    log(f"steady run: {rep.duration_s:.3f} s, {rep.points_read:,} points read, "
                        f"{len(fresh):,} new, {rep.segments} segments, {rep.machine_windows} windows, "
                        f"{rep.points_written + rep.segment_points_written} points written, phases "
                        f"{ {k: round(v, 3) for k, v in rep.phase_s.items()} }")  # fmt: skip
            # a restarted engine: segments read back, only the look-back read from raw data
            restarted = KpiEngine(cfg)
            rep = await restarted.run_once(now)
            log(f"restarted engine's first run: {rep.duration_s:.1f} s, {rep.points_read:,} raw "
                f"points read ({rep.segments} segments from raw data)")  # fmt: skip
            base_s, base_read = await baseline_run(engine, now, "base_")
            log(f"baseline run: {base_s:.1f} s, {base_read:,} points read")
            compared = await compare(cfg, _local_ns(DAY, 0, TZ))
            log(f"{compared} window rows identical to the baseline's")
    finally:
        server.stop()
    run = statistics.median(run_s)
    return {
        "name": "kpi_engine", "machines": n, "run_s": round(run, 3),
        "points_read_per_run": int(statistics.median(read)),
        "points_new_per_run": int(statistics.median(new)),
        "baseline_run_s": round(base_s, 3), "ratio": round(base_s / run, 1),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 machines, 10 h of history")
    parser.add_argument("--machines", type=int, default=0)
    parser.add_argument("--runs", type=int, default=0, help="steady-state runs")
    args = parser.parse_args(argv)
    n = args.machines or (60 if args.quick else 1000)
    runs = args.runs or (3 if args.quick else 5)
    emit(asyncio.run(bench(n, 10.0 if args.quick else 48.0, runs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
