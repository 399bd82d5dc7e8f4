"""Reconstructing ISO 22400 elements from what a client received, the way a gateway and a KPI
engine would (DOMAIN.md section 3), independently of the simulator's own truth code."""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.calendar import shift_windows
from simulator.client import BAD_VALUE
from zhizao.site import CalendarConfig, MachineState, MachineTypeConfig

Samples = dict[str, list[tuple[int, Any]]]


def state_from_machinery(v: dict[str, Any]) -> MachineState:
    if any(x is BAD_VALUE for x in v.values()):
        return MachineState.NO_DATA
    if v["machinery_operation_mode"] == "Setup":
        return MachineState.SETUP
    return {
        "Executing": MachineState.IN_CYCLE,
        "OutOfService": MachineState.DELAY,
        "NotExecuting": MachineState.IDLE,
        "NotAvailable": MachineState.NO_DATA,
    }[v["machinery_item_state"]]


def state_from_cnc_channel(v: dict[str, Any]) -> MachineState:
    """OPC 40502 rule of DOMAIN.md: not automatic = setup; interrupted or alarm = delay;
    running and active = in cycle; otherwise idle."""
    if any(x is BAD_VALUE for x in v.values()):
        return MachineState.NO_DATA
    if v["operation_mode"] != 2:
        return MachineState.SETUP
    if v["channel_status"] == 1 or v["program_status"] in (3, 4) or v["alarm_active"]:
        return MachineState.DELAY
    if v["program_status"] == 1 and v["channel_status"] == 0:
        return MachineState.IN_CYCLE
    return MachineState.IDLE


def state_from_state_map(mtype: MachineTypeConfig) -> Any:
    def classify(v: dict[str, Any]) -> MachineState:
        if any(x is BAD_VALUE for x in v.values()):
            return MachineState.NO_DATA
        mode = mtype.state_map.get(f"packml_unit_mode={v['packml_unit_mode']}")
        if mode is not None:
            return mode
        return mtype.state_map[f"packml_state={v['packml_state']}"]

    return classify


def timeline(samples: Samples, keys: list[str], classify: Any) -> list[tuple[int, MachineState]]:
    """(change time, platform state) after applying all changes at each time."""
    events = sorted((ts, k, val) for k in keys for ts, val in samples[k])
    current: dict[str, Any] = {}
    out: list[tuple[int, MachineState]] = []
    i = 0
    while i < len(events):
        ts = events[i][0]
        while i < len(events) and events[i][0] == ts:
            current[events[i][1]] = events[i][2]
            i += 1
        if len(current) == len(keys):
            state = classify(current)
            if not out or out[-1][1] is not state:
                out.append((ts, state))
    return out


def state_times_ns(
    tl: list[tuple[int, MachineState]], calendar: CalendarConfig, a: int, b: int
) -> dict[str, int]:
    """Time per ISO element inside the PBT windows of [a, b) (planned down from the calendar)."""
    win = shift_windows(calendar, a, b)
    pbt = win.pbt_windows()
    pot = int((win.shift_end_ns - win.shift_start_ns).sum())
    out = {"pot": pot, "pbt": sum(e - s for s, e in pbt)}
    per_state: dict[MachineState, int] = {}
    bounds = [t for t, _ in tl] + [b]
    for (t0, state), t1 in zip(tl, bounds[1:], strict=True):
        s0, s1 = max(t0, a), min(t1, b)
        for w0, w1 in pbt:
            overlap = min(s1, w1) - max(s0, w0)
            if overlap > 0:
                per_state[state] = per_state.get(state, 0) + overlap
    out["apt"] = per_state.get(MachineState.IN_CYCLE, 0)
    out["aust"] = per_state.get(MachineState.SETUP, 0)
    out["adet"] = per_state.get(MachineState.DELAY, 0) + per_state.get(MachineState.NO_DATA, 0)
    out["adot"] = per_state.get(MachineState.IDLE, 0)
    out["no_data"] = per_state.get(MachineState.NO_DATA, 0)
    return out


def counter_increments(values: list[tuple[int, Any]], rollover: float | None = None) -> float:
    """Sum of non-negative differences; a drop is a reset (or a rollover when the limit is known)."""
    good = [(t, v) for t, v in sorted(values, key=lambda x: x[0]) if v is not BAD_VALUE]
    x = np.asarray([v for _, v in good], dtype=np.float64)
    if len(x) < 2:
        return 0.0
    d = np.diff(x)
    # a drop is a rollover when the limit is known, else a reset (post-reset value counts)
    d = np.where(d < 0, d + rollover, d) if rollover is not None else np.where(d < 0, x[1:], d)
    return float(d.sum())
