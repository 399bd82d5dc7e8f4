"""State timelines, time elements per window and the edge cases of issue 6."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.calendar import PlannedTime, day_windows, hour_windows, planned_time
from analytics.components import Components
from analytics.machine import MachineContext, MachineSignals, Signal, machine_components
from analytics.oee import iso22400_kpis, report_rows
from analytics.states import NO_DATA, STATE_CODE, StateClassifier, state_timeline
from analytics.timeelements import TimeElementOptions, time_elements
from tests.analytics.helpers import DAY, DAY_CALENDAR, MIN_NS, TZ, at, m1_state_samples
from zhizao.site import MachineState, MachineTypeConfig, StateProfile

CUSTOM = StateClassifier.for_type(MachineTypeConfig(profile=StateProfile.CUSTOM))
IN_CYCLE = STATE_CODE[MachineState.IN_CYCLE]
DELAY = STATE_CODE[MachineState.DELAY]


def m1_context(**kw: object) -> MachineContext:
    args: dict[str, object] = {
        "machine": "M1",
        "classifier": CUSTOM,
        "pri_s_by_product": {"P-100": 120.0},
        "default_product": "P-100",
        "heartbeat_s": 86400.0,
    }
    args.update(kw)
    return MachineContext(**args)  # type: ignore[arg-type]


def m1_counters() -> dict[str, Signal]:
    """360 parts (6 scrap, 3 rework) counted inside the in-cycle time, with a reset at 14:00."""
    ts = np.linspace(at("07:00"), at("21:50"), 360).astype(np.int64)
    total = np.arange(1, 361, dtype=np.float64)
    after = ts >= at("14:00")
    first_after = int(np.argmax(after))
    total[after] -= total[first_after - 1]  # the counter restarts at 0 before this part
    scrap_ts = ts[[10, 50, 100, 150, 200, 250]]
    rework_ts = ts[[20, 120, 220]]
    return {
        "parts_total": Signal(np.concatenate(([at("00:00")], ts)), np.concatenate(([0.0], total))),
        "parts_scrap": Signal(np.concatenate(([at("00:00")], scrap_ts)), np.arange(0.0, 7.0)),
        "parts_rework": Signal(np.concatenate(([at("00:00")], rework_ts)), np.arange(0.0, 4.0)),
    }


def test_m1_from_raw_samples_reproduces_the_worked_example() -> None:
    ts, states = m1_state_samples()
    ws, we, days = day_windows(at("00:00"), at("00:00") + 1440 * MIN_NS, TZ)
    assert days == [DAY]
    planned = planned_time(DAY_CALENDAR, int(ws[0]), int(we[-1]))
    signals = MachineSignals(m1_counters(), {"state": Signal(ts, states)})
    res = machine_components(signals, m1_context(), planned, ws, we)
    c = res.components
    minutes = {k: v[0] / 60 for k, v in c.columns().items() if k.endswith("_s")}
    assert minutes["pot_s"] == 960 and minutes["planned_down_s"] == 60 and minutes["pbt_s"] == 900
    assert minutes["apt_s"] == 780 and minutes["aust_s"] == 45 and minutes["adot_s"] == 30
    assert minutes["adet_s"] == 45 and minutes["adet_minor_s"] == 15
    assert (c.pq[0], c.sq[0], c.rq[0], c.gq[0]) == (360, 6, 3, 351)
    assert res.counter_resets == 1
    k = iso22400_kpis(c)
    assert k["oee"].value[0] == pytest.approx(0.78, abs=1e-6)
    assert k["availability"].value[0] == pytest.approx(0.866667, abs=1e-6)

    # hour windows partition the day: the components add up to the day's exactly
    hs, he = hour_windows(int(ws[0]), int(we[0]))
    hourly = machine_components(signals, m1_context(), planned, hs, he).components
    assert len(hourly) == 24
    for name, col in hourly.total().columns().items():
        if name != "calendar_s":
            assert col[0] == pytest.approx(c.column(name)[0], abs=1e-9), name


def test_heartbeat_gap_is_no_data_never_running() -> None:
    t0 = at("08:00")
    ts = np.array([t0, t0 + 60 * MIN_NS], np.int64)
    tl = state_timeline(
        ts, np.array([IN_CYCLE, IN_CYCLE]), start_ns=t0, end_ns=t0 + 61 * MIN_NS, heartbeat_s=300
    )
    durations = dict.fromkeys((IN_CYCLE, NO_DATA), 0.0)
    for code, d in zip(tl.code.tolist(), tl.duration_s().tolist(), strict=True):
        durations[code] += d
    assert durations[IN_CYCLE] == 300 + 60 and durations[NO_DATA] == 3300


def test_last_state_is_carried_into_the_window() -> None:
    ts = np.array([at("07:00")], np.int64)
    tl = state_timeline(
        ts, np.array([DELAY]), start_ns=at("08:00"), end_ns=at("09:00"), heartbeat_s=86400
    )
    assert (
        tl.code.tolist() == [DELAY]
        and tl.start_ns[0] == at("08:00")
        and tl.end_ns[0] == at("09:00")
    )


def _always(start: int, end: int) -> PlannedTime:
    return PlannedTime.always(start, end)


def test_stop_crossing_a_window_boundary_is_split_and_classified_whole() -> None:
    ts = np.array([at("10:00"), at("10:59"), at("11:02"), at("11:30"), at("11:30") + 30 * 10**9,
                   at("12:00") + 30 * 10**9], np.int64)  # fmt: skip
    codes = np.array([IN_CYCLE, DELAY, IN_CYCLE, DELAY, IN_CYCLE, IN_CYCLE])
    ws = np.array([at("10:00"), at("11:00")], np.int64)
    we = ws + 60 * MIN_NS
    tl = state_timeline(ts, codes, start_ns=int(ws[0]), end_ns=int(we[-1]), heartbeat_s=86400)
    c = time_elements(tl, _always(int(ws[0]), int(we[-1])), ws, we)
    # 3-minute stop 10:59-11:02: 1 min in the first hour, 2 in the second, a breakdown in both
    assert c.adet_s.tolist() == [60.0, 120.0 + 30.0]
    assert c.adet_minor_s.tolist() == [0.0, 30.0]  # only the 30 s stop at 11:30 is minor
    assert c.apt_s.tolist() == [59 * 60.0, 3600 - 150.0]
    # a 90 s stop crossing the boundary is minor on both sides (whole episode < 2 min)
    ts2 = np.array([at("10:00"), at("10:59") + 15 * 10**9, at("11:00") + 45 * 10**9], np.int64)
    tl2 = state_timeline(
        ts2,
        np.array([IN_CYCLE, DELAY, IN_CYCLE]),
        start_ns=int(ws[0]),
        end_ns=int(we[-1]),
        heartbeat_s=86400,
    )
    c2 = time_elements(tl2, _always(int(ws[0]), int(we[-1])), ws, we)
    assert c2.adet_minor_s.tolist() == [45.0, 45.0]
    c3 = time_elements(
        tl2, _always(int(ws[0]), int(we[-1])), ws, we, options=TimeElementOptions(micro_stop_s=60)
    )
    assert c3.adet_minor_s.tolist() == [0.0, 0.0]


def test_empty_window_and_machine_with_no_data() -> None:
    sunday = at("00:00", DAY.replace(day=1))
    ws = np.array([sunday], np.int64)
    we = ws + 1440 * MIN_NS
    planned = planned_time(DAY_CALENDAR, int(ws[0]), int(we[0]))  # weekdays only: nothing planned
    res = machine_components(MachineSignals({}), m1_context(), planned, ws, we)
    c = res.components
    assert c.pot_s[0] == 0 and c.pbt_s[0] == 0 and c.pq[0] == 0
    row = report_rows(c)[0]
    kpis = row["kpis"]
    assert isinstance(kpis, dict)
    assert kpis["oee"]["value"] is None and kpis["availability"]["value"] is None

    # a planned day with no data at all: all of PBT is ADET without data, flagged, never running
    ws = np.array([at("00:00")], np.int64)
    we = ws + 1440 * MIN_NS
    planned = planned_time(DAY_CALENDAR, int(ws[0]), int(we[0]))
    c = machine_components(MachineSignals({}), m1_context(), planned, ws, we).components
    assert c.pbt_s[0] == 900 * 60 and c.adet_no_data_s[0] == 900 * 60 and c.apt_s[0] == 0
    k = iso22400_kpis(c)
    assert k["availability"].value[0] == 0.0 and k["no_data_share"].value[0] == 1.0


def test_effectiveness_above_one_is_flagged_not_capped() -> None:
    c = Components.from_columns({"pbt_s": [3600, 3600], "apt_s": [3000, 3000], "pri_pq_s": [3300, 3000],
                                 "pri_gq_s": [3300, 3000], "pq": [110, 100], "gq": [110, 100]})  # fmt: skip
    k = iso22400_kpis(c)
    e = k["effectiveness"]
    assert e.value[0] == pytest.approx(1.1) and e.value[1] == pytest.approx(1.0)
    assert e.flag is not None and e.flag.tolist() == [True, False]
    assert "ideal cycle time" in str(e.at(0)["flag"])
    assert k["oee"].value[0] == pytest.approx(3300 / 3600)  # kept, not clamped


def test_products_change_inside_a_window() -> None:
    ws = np.array([at("08:00")], np.int64)
    we = ws + 60 * MIN_NS
    parts_ts = np.array([at("08:00"), at("08:10"), at("08:20"), at("08:40"), at("08:50")], np.int64)
    signals = MachineSignals({
        "parts_total": Signal(parts_ts, np.array([100.0, 101, 102, 103, 104])),
        "parts_good": Signal(parts_ts, np.array([50.0, 51, 52, 52, 53])),
        "product": Signal(np.array([at("06:00"), at("08:30")], np.int64), np.array(["A", "B"], object)),
    }, {"state": Signal(np.array([at("07:00")], np.int64), np.array(["IN_CYCLE"], object))})  # fmt: skip
    ctx = m1_context(pri_s_by_product={"A": 60.0, "B": 300.0})
    res = machine_components(signals, ctx, _always(int(ws[0]), int(we[0])), ws, we)
    c = res.components
    assert c.pq[0] == 4 and c.gq[0] == 3 and c.sq[0] == 1
    assert c.pri_pq_s[0] == 2 * 60 + 2 * 300 and c.pri_gq_s[0] == 2 * 60 + 300
    assert res.unknown_products == []


def test_any_own_sample_keeps_the_state_alive_but_a_meter_does_not() -> None:
    ws = np.array([at("08:00")], np.int64)
    we = ws + 60 * MIN_NS
    state = {"state": Signal(np.array([at("08:00")], np.int64), np.array(["IN_CYCLE"], object))}
    minutes = at("08:00") + np.arange(0, 60, dtype=np.int64) * MIN_NS
    counter = Signal(minutes, np.arange(60, dtype=np.float64))
    ctx = m1_context(heartbeat_s=300.0)
    planned = _always(int(ws[0]), int(we[0]))
    alone = machine_components(MachineSignals({}, state), ctx, planned, ws, we).components
    assert (alone.apt_s[0], alone.adet_no_data_s[0]) == (300.0, 3300.0)
    counted = machine_components(
        MachineSignals({"parts_total": counter}, state), ctx, planned, ws, we
    ).components
    assert (counted.apt_s[0], counted.adet_no_data_s[0]) == (3600.0, 0.0)
    metered = machine_components(
        MachineSignals({"energy_kwh": counter}, state), ctx, planned, ws, we
    ).components
    assert metered.apt_s[0] == 300.0


def test_cutting_needs_load_above_threshold_and_speed() -> None:
    ws = np.array([at("08:00")], np.int64)
    we = ws + 60 * MIN_NS
    t = at("08:00") + np.array([0, 10, 20, 30, 40], np.int64) * MIN_NS
    states = {"state": Signal(t[:1], np.array(["IN_CYCLE"], object))}
    load = Signal(t[:4], np.array([50.0, 50.0, 3.0, 50.0]))  # 08:20-08:30 below the 5 % threshold
    speed = Signal(t[[0, 3, 4]], np.array([1000.0, 0.0, 1000.0]))  # 08:30-08:40 spindle stopped
    ctx = m1_context()
    planned = _always(int(ws[0]), int(we[0]))
    both = machine_components(
        MachineSignals({"spindle_load_pct": load, "spindle_speed_rpm": speed}, states),
        ctx,
        planned,
        ws,
        we,
    )
    assert both.components.cutting_s[0] == (20 + 20) * 60  # 08:00-08:20 and 08:40-09:00
    load_only = machine_components(
        MachineSignals({"spindle_load_pct": load}, states), ctx, planned, ws, we
    )
    assert load_only.components.cutting_s[0] == (20 + 30) * 60
    assert both.components.cutting_s[0] <= both.components.in_cycle_s[0]
