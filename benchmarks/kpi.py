"""KPI benchmark: 100 machines x 1 day of 1-second state samples plus part counters.

Timed: every machine's components for the day and its 24 hours (state timelines, shift calendar
with breaks, micro-stop split, reset-aware counters, PRI), the roll-ups to lines and the factory,
and all labelled KPIs at every level. Baseline, in the same run: a straightforward pandas
implementation of the same day OEE (machines, lines, factory), checked to agree to 1e-9.

Prints {"name": "kpi", "seconds": .., "baseline_seconds": .., "ratio": ..}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from typing import Any

import numpy as np
from numpy.typing import NDArray

from analytics.aggregate import rollup
from analytics.calendar import _local_ns, day_windows, hour_windows, planned_time, zone
from analytics.components import Components
from analytics.machine import MachineContext, MachineSignals, Signal, machine_components
from analytics.oee import all_kpis
from analytics.states import StateClassifier
from zhizao.site import CalendarConfig, MachineTypeConfig, StateProfile

TZ = zone("Asia/Shanghai")
DAY_START_NS = _local_ns(date(2026, 3, 2), 0, TZ)  # a Monday
SECONDS = 86_400
PRI_S = 60.0
# published state codes (PackML StateCurrent) -> platform states via the PackML profile
EXECUTE, HELD, SUSPENDED, STOPPED, ABORTED = 6, 11, 5, 2, 9
CALENDAR = CalendarConfig.model_validate(
    {
        "shifts": [
            {"name": "early", "start": "06:00", "end": "14:00", "days": ["mon"],
             "breaks": [{"name": "lunch", "start": "11:30", "end": "12:00"}]},
            {"name": "late", "start": "14:00", "end": "22:00", "days": ["mon"],
             "breaks": [{"name": "dinner", "start": "19:00", "end": "19:30"}]},
        ]
    }
)  # fmt: skip


def make_machine(
    rng: np.random.Generator,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """One machine-day: state code and part counter sampled every second."""
    kinds = np.array([EXECUTE, HELD, SUSPENDED, ABORTED])
    seq = rng.choice(len(kinds), size=4000, p=[0.6, 0.25, 0.1, 0.05])
    length = np.where(seq == 0, rng.integers(120, 1800, 4000), rng.integers(5, 900, 4000))
    state = np.repeat(kinds[seq], length)[:SECONDS]
    state[: 6 * 3600] = STOPPED  # before the first shift
    running = state == EXECUTE
    cycle_s = PRI_S * rng.uniform(1.0, 1.2)
    parts = np.floor(np.cumsum(running) / cycle_s)
    reset_at = int(rng.integers(30_000, 80_000))
    parts[reset_at:] -= parts[reset_at]  # a power cycle resets the counter
    ts = DAY_START_NS + np.arange(SECONDS, dtype=np.int64) * 1_000_000_000
    return ts, state.astype(np.int64), parts


def ours(
    data: list[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]], lines: list[str]
) -> tuple[Components, dict[str, Any]]:
    clf = StateClassifier.for_type(MachineTypeConfig(profile=StateProfile.PACKML))
    ctx = MachineContext("m", clf, {"P": PRI_S}, "P", heartbeat_s=5.0)
    ds, de, _ = day_windows(DAY_START_NS, DAY_START_NS + SECONDS * 1_000_000_000, TZ)
    hs, he = hour_windows(int(ds[0]), int(de[0]))
    planned = planned_time(CALENDAR, int(ds[0]), int(de[0]))
    hour_rows: list[Components] = []
    for ts, state, parts in data:  # machines, each fully vectorized
        signals = MachineSignals(
            {"parts_total": Signal(ts, parts)}, {"packml_state": Signal(ts, state)}
        )
        hour_rows.append(machine_components(signals, ctx, planned, hs, he).components)
    hours = Components.concat(hour_rows)
    # the 24 hours partition the day, so the day's components are their sums (sum/sum)
    day = hours.sum_by(np.repeat(np.arange(len(data)), len(hs)), len(data))
    out: dict[str, Any] = {"machine": all_kpis(day), "machine_hour": all_kpis(hours)}
    groups = rollup(day, {"line": lines, "factory": ["f"] * len(lines)})
    for level in ("line", "factory"):
        out[level] = all_kpis(groups[level][1])
    assert len(hs) == 24 and len(ds) == 1
    return day, out


def baseline(
    data: list[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]], lines: list[str]
) -> dict[str, Any]:
    """Straightforward pandas: one long frame, durations by shift(-1), time of day for the
    calendar, pivot by state, counter diffs with resets, then sums per machine, line, factory."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "machine": np.repeat(np.arange(len(data)), SECONDS),
            "ts": pd.to_datetime(np.concatenate([d[0] for d in data]), unit="ns", utc=True),
            "state": np.concatenate([d[1] for d in data]),
            "parts": np.concatenate([d[2] for d in data]),
        }
    )
    frame = frame.sort_values(["machine", "ts"])
    nxt = frame.groupby("machine")["ts"].shift(-1)
    frame["dur_s"] = (nxt - frame["ts"]).dt.total_seconds().fillna(1.0).clip(upper=5.0)
    local = frame["ts"].dt.tz_convert("Asia/Shanghai")
    minute = local.dt.hour * 60 + local.dt.minute
    in_shift = (minute >= 360) & (minute < 1320)
    in_break = ((minute >= 690) & (minute < 720)) | ((minute >= 1140) & (minute < 1170))
    pbt = frame[in_shift & ~in_break]
    names = {EXECUTE: "run", HELD: "delay", ABORTED: "delay", SUSPENDED: "idle", STOPPED: "idle"}
    times = pbt.assign(kind=pbt["state"].map(names)).pivot_table(
        index="machine", columns="kind", values="dur_s", aggfunc="sum", fill_value=0.0
    )
    diff = frame.groupby("machine")["parts"].diff().fillna(0.0)
    frame["inc"] = diff.where(diff >= 0, frame["parts"])
    per = pd.DataFrame({"pbt": times.sum(axis=1), "run": times["run"]})
    per["pq"] = frame.groupby("machine")["inc"].sum()
    per["pri_gq"] = PRI_S * per["pq"]
    per["line"] = lines
    out = {"machine": per["pri_gq"] / per["pbt"]}
    by_line = per.groupby("line")[["pri_gq", "pbt"]].sum()
    out["line"] = by_line["pri_gq"] / by_line["pbt"]
    out["factory"] = per["pri_gq"].sum() / per["pbt"].sum()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20 machines instead of 100")
    parser.add_argument("--machines", type=int, default=0)
    args = parser.parse_args(argv)
    n = args.machines or (20 if args.quick else 100)
    rng = np.random.default_rng(42)
    data = [make_machine(rng) for _ in range(n)]
    lines = [f"line-{i // 10:02d}" for i in range(n)]

    best = float("inf")
    for _ in range(2 if args.quick else 3):
        t0 = time.perf_counter()
        _day, kpis = ours(data, lines)
        best = min(best, time.perf_counter() - t0)
    t0 = time.perf_counter()
    base = baseline(data, lines)
    base_s = time.perf_counter() - t0

    # the two implementations must agree, or the comparison means nothing
    np.testing.assert_allclose(kpis["machine"]["oee"].value, base["machine"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(kpis["line"]["oee"].value, base["line"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(kpis["factory"]["oee"].value[0], base["factory"], rtol=1e-9)
    print(f"# {n} machines, {n * SECONDS:,} state samples; factory OEE {kpis['factory']['oee'].value[0]:.4f}",
          file=sys.stderr)  # fmt: skip
    print(json.dumps({"name": "kpi", "seconds": round(best, 4), "baseline_seconds": round(base_s, 4),
                      "ratio": round(base_s / best, 2)}), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
