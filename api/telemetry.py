"""Raw-signal views of machines (timelines, live state, stops), read through the engine's own
read path (``analytics.reader.SiteReader``) and computed by ``analytics`` functions, so a
timeline's time per state is exactly what the KPI engine counts."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from analytics.calendar import PlannedTime, planned_time
from analytics.machine import MachineSignals
from analytics.reader import SiteReader
from analytics.states import STATES
from analytics.timeline import MachineTimeline, machine_timeline
from api.state import AppState
from zhizao.site import SiteModel

__all__ = ["Interval", "machine_intervals", "read_signals"]


@dataclass(frozen=True, slots=True)
class Interval:
    start_ns: int
    end_ns: int
    state: str
    codes: dict[str, Any]
    in_pot: bool
    planned_down: bool


async def read_signals(
    state: AppState,
    site: SiteModel,
    machines: Sequence[str],
    lo_ns: int,
    hi_ns: int,
) -> dict[str, MachineSignals]:
    """The machines' raw signals in [lo, hi) plus what the heartbeat needs before ``lo``.

    Every signal of the machine is read, not only its states: a state is trusted for
    ``heartbeat_s`` after the machine's last sample of *any* signal (the engine's rule), so a
    quiet state signal beside a ticking counter is still a known state.
    """
    reader = SiteReader(state.kpi)
    assert state.reader is not None
    hb_ns = int(state.kpi.heartbeat_s * 1e9)
    t0 = time.perf_counter()
    try:
        data = await reader.read(state.reader, site, lo_ns - hb_ns, hi_ns, machines=machines)
    finally:
        state.metrics.influx_query.observe(time.perf_counter() - t0)
    return dict(data.machines)


def planned_for(site: SiteModel, machine: str, lo_ns: int, hi_ns: int) -> PlannedTime:
    for _, line, m in site.machines():
        if m.id == machine:
            name = m.calendar or line.calendar
            return planned_time(site.calendars[name], lo_ns, hi_ns, name=name)
    raise KeyError(machine)


def timeline_of(
    state: AppState,
    site: SiteModel,
    machine: str,
    signals: MachineSignals,
    lo_ns: int,
    hi_ns: int,
) -> MachineTimeline:
    """The machine's timeline with exactly the engine's classifier, heartbeat and options."""
    ctx = state.site_computer(site).contexts[machine]
    return machine_timeline(
        signals,
        ctx.classifier,
        planned_for(site, machine, lo_ns, hi_ns),
        lo_ns,
        hi_ns,
        heartbeat_s=ctx.heartbeat_s,
        options=ctx.options,
    )


def machine_intervals(
    state: AppState,
    site: SiteModel,
    machine: str,
    signals: MachineSignals,
    lo_ns: int,
    hi_ns: int,
) -> list[Interval]:
    tl = timeline_of(state, site, machine, signals, lo_ns, hi_ns)
    return [
        Interval(
            int(tl.start_ns[i]),
            int(tl.end_ns[i]),
            STATES[int(tl.state[i])].value,
            dict(tl.codes[i]),
            bool(tl.in_pot[i]),
            bool(tl.planned_down[i]),
        )
        for i in range(len(tl.start_ns))
    ]


def current_state(
    state: AppState,
    site: SiteModel,
    machine: str,
    signals: MachineSignals,
    lo_ns: int,
    hi_ns: int,
) -> Interval | None:
    """The state at ``hi_ns`` as one interval from the start of its run (calendar edges inside
    one state are not changes) and the source codes in force now; None for an empty range."""
    tl = timeline_of(state, site, machine, signals, lo_ns, hi_ns)
    n = len(tl.start_ns)
    if n == 0:
        return None
    last = n - 1
    other = np.flatnonzero(tl.state != tl.state[last])
    first = int(other[-1]) + 1 if len(other) else 0
    return Interval(
        int(tl.start_ns[first]),
        int(tl.end_ns[last]),
        STATES[int(tl.state[last])].value,
        dict(tl.codes[last]),
        bool(tl.in_pot[last]),
        bool(tl.planned_down[last]),
    )
