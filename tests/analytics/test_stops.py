"""Machine timelines with source codes, stops, reasons, Pareto and MTBF/MTTR (analytics.stops)."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.calendar import PlannedTime, hour_windows, planned_time
from analytics.machine import MachineSignals, Signal, machine_components
from analytics.states import STATE_CODE, STATES
from analytics.stops import STOP_LOOKAROUND_S, machine_stops, reason_analysis, stops_from_timeline
from analytics.timeelements import TimeElementOptions
from analytics.timeline import machine_timeline
from tests.analytics.helpers import DAY_CALENDAR, MIN_NS, at, m1_state_samples
from tests.analytics.test_timeline import CUSTOM, m1_context
from zhizao.site import MachineState, MachineTypeConfig, StateProfile

S = MachineState
SEC = 1_000_000_000
CNC = MachineTypeConfig(profile=StateProfile.OPC40502)


def _day() -> tuple[int, int, PlannedTime]:
    lo, hi = at("00:00"), at("00:00") + 1440 * MIN_NS
    return lo, hi, planned_time(DAY_CALENDAR, lo, hi)


def _components_by_state(
    c_apt: float, c_aust: float, c_adet: float, c_adot: float
) -> dict[S, float]:
    return {S.IN_CYCLE: c_apt, S.SETUP: c_aust, S.DELAY: c_adet, S.IDLE: c_adot}


def _assert_timeline_equals_components(
    signals: MachineSignals, heartbeat_s: float, options: TimeElementOptions | None = None
) -> None:
    lo, hi, planned = _day()
    ctx = m1_context(heartbeat_s=heartbeat_s, options=options or TimeElementOptions())
    hs, he = hour_windows(lo, hi)
    c = machine_components(signals, ctx, planned, hs, he).components.total()
    tl = machine_timeline(
        signals, CUSTOM, planned, lo, hi, heartbeat_s=heartbeat_s, options=options
    )
    by = tl.seconds_by_state()
    assert by[S.IN_CYCLE] == pytest.approx(c.apt_s[0], abs=1e-6)
    assert by[S.SETUP] == pytest.approx(c.aust_s[0], abs=1e-6)
    assert by[S.DELAY] + by[S.NO_DATA] == pytest.approx(c.adet_s[0], abs=1e-6)
    assert by[S.NO_DATA] == pytest.approx(c.adet_no_data_s[0], abs=1e-6)
    assert by[S.IDLE] == pytest.approx(c.adot_s[0], abs=1e-6)
    assert by[S.PLANNED_DOWN] == 0.0  # PLANNED_DOWN is never inside PBT
    d = tl.duration_s()
    assert d[tl.in_pbt].sum() == pytest.approx(c.pbt_s[0], abs=1e-6)
    assert d[tl.in_pot].sum() == pytest.approx(c.pot_s[0], abs=1e-6)
    assert d[tl.planned_down].sum() == pytest.approx(c.planned_down_s[0], abs=1e-6)
    # contiguous cover of the range
    assert tl.start_ns[0] == lo and tl.end_ns[-1] == hi
    assert np.array_equal(tl.start_ns[1:], tl.end_ns[:-1])
    assert (tl.end_ns > tl.start_ns).all()


def test_worked_example_timeline_equals_the_components() -> None:
    ts, states = m1_state_samples()
    signals = MachineSignals({}, {"state": Signal(ts, states)})
    _assert_timeline_equals_components(signals, 86400.0)
    lo, hi, planned = _day()
    tl = machine_timeline(signals, CUSTOM, planned, lo, hi, heartbeat_s=86400.0)
    by = tl.seconds_by_state()
    assert by[S.IN_CYCLE] == 780 * 60 and by[S.SETUP] == 45 * 60 and by[S.IDLE] == 30 * 60
    assert by[S.DELAY] == 45 * 60
    # split at the calendar edges: the lunch break is its own planned-down interval
    lunch = np.flatnonzero((tl.start_ns == at("12:00")) & (tl.end_ns == at("12:30")))
    assert len(lunch) == 1 and tl.planned_down[lunch[0]] and not tl.in_pbt[lunch[0]]
    assert tl.codes[int(lunch[0])] == {"state": "IDLE"} and tl.state[lunch[0]] == STATE_CODE[S.IDLE]
    first = tl.codes[0]
    assert first == {"state": "IDLE"} and not tl.in_pot[0] and tl.end_ns[0] == at("06:00")


def test_source_codes_per_interval_and_no_data_before_the_first_sample() -> None:
    lo, hi = at("08:00"), at("09:00")
    planned = PlannedTime.always(lo, hi)
    t = at
    prog = Signal(np.array([t("08:10"), t("08:20"), t("08:30")], np.int64),
                  np.array(["Running", "Waiting", "Interrupted"], object))  # fmt: skip
    chan = Signal(np.array([t("08:05"), t("08:40")], np.int64), np.array([0.0, 2.0]))
    signals = MachineSignals({}, {"program_status": prog, "channel_status": chan})
    tl = machine_timeline(signals, CNC, planned, lo, hi, heartbeat_s=86400.0)
    got = [
        (int((s - lo) // MIN_NS), STATES[int(c)].value, tl.codes[i])
        for i, (s, c) in enumerate(zip(tl.start_ns, tl.state, strict=True))
    ]
    assert got == [
        (0, "NO_DATA", {"channel_status": None, "program_status": None}),
        (5, "IN_CYCLE", {"channel_status": "0", "program_status": None}),
        (10, "IN_CYCLE", {"channel_status": "0", "program_status": "Running"}),
        # Waiting is still in cycle (dwell) but a new source code: its own interval
        (20, "IN_CYCLE", {"channel_status": "0", "program_status": "Waiting"}),
        (30, "DELAY", {"channel_status": "0", "program_status": "Interrupted"}),
        (40, "DELAY", {"channel_status": "2", "program_status": "Interrupted"}),
    ]
    assert list(tl.codes)[-1] == tl.codes[-1] and len(tl.codes) == len(tl)
    # without codes the states and their totals are the same
    plain = machine_timeline(signals, CNC, planned, lo, hi, heartbeat_s=86400.0, with_codes=False)
    assert plain.seconds_by_state() == tl.seconds_by_state()
    assert len(plain) == 3  # NO_DATA, IN_CYCLE, DELAY: merged where only the codes differ


def test_bad_marker_is_no_data_and_unknown_codes_reported() -> None:
    lo, hi = at("08:00"), at("09:00")
    planned = PlannedTime.always(lo, hi)
    state = Signal(
        np.array([at("07:00"), at("08:40")], np.int64), np.array(["IN_CYCLE", "WAT"], object)
    )
    marks = Signal(np.array([at("08:20"), at("08:30")], np.int64), np.array([2.0, 0.0]))
    tl = machine_timeline(MachineSignals({}, {"state": state}, {"state": marks}), CUSTOM, planned,
                          lo, hi, heartbeat_s=86400.0)  # fmt: skip
    by = tl.seconds_by_state()
    assert by[S.IN_CYCLE] == 30 * 60 and by[S.NO_DATA] == 30 * 60
    assert tl.unknown_codes == ["state=WAT"]


def test_empty_range() -> None:
    tl = machine_timeline(
        MachineSignals({}), CUSTOM, PlannedTime.always(0, 1), 5, 5, heartbeat_s=1.0
    )
    assert len(tl) == 0 and len(tl.codes) == 0


@pytest.mark.parametrize("seed", range(12))
def test_random_streams_timeline_equals_the_components(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lo, hi, _ = _day()
    names = np.array([s.value for s in STATES] + ["BOGUS"], object)
    states: dict[str, Signal] = {}
    quality: dict[str, Signal] = {}
    for name in ("a", "b")[: 1 + seed % 2]:
        n = int(rng.integers(1, 400))
        ts = np.sort(rng.integers(lo - 3600 * SEC, hi, n)).astype(np.int64)
        states[name] = Signal(ts, names[rng.integers(0, len(names), n)])
        if rng.random() < 0.6:
            m = int(rng.integers(1, 20))
            quality[name] = Signal(
                np.sort(rng.integers(lo, hi, m)).astype(np.int64),
                rng.choice([0.0, 1.0, 2.0, 3.0], m),
            )
    others: dict[str, Signal] = {}
    if rng.random() < 0.5:
        n = int(rng.integers(1, 300))
        others["parts_total"] = Signal(
            np.sort(rng.integers(lo, hi, n)).astype(np.int64), np.arange(n, dtype=np.float64)
        )
    hb = float(rng.choice([60.0, 900.0, 3600.0, 86400.0]))
    opts = TimeElementOptions(no_order_is_planned_down=bool(seed % 3 == 0))
    _assert_timeline_equals_components(MachineSignals(others, states, quality), hb, opts)


def test_timeline_states_are_platform_codes() -> None:
    assert STATE_CODE[S.NO_DATA] == STATES.index(S.NO_DATA)


# -- stops ------------------------------------------------------------------------------------


def _m1() -> MachineSignals:
    ts, states = m1_state_samples()
    return MachineSignals({}, {"state": Signal(ts, states)})


def _assert_stops_equal_components(signals: MachineSignals, heartbeat_s: float) -> None:
    lo, hi, planned = _day()
    ctx = m1_context(heartbeat_s=heartbeat_s)
    hs, he = hour_windows(lo, hi)
    c = machine_components(signals, ctx, planned, hs, he).components.total()
    tl = machine_timeline(signals, CUSTOM, planned, lo, hi, heartbeat_s=heartbeat_s)
    st = stops_from_timeline(tl, lo, hi)
    a = reason_analysis(st, [])
    by = {k: v["seconds"] for k, v in a["by_kind"].items()}
    assert by["minor_stop"] == pytest.approx(c.adet_minor_s[0], abs=1e-6)
    assert by["no_data"] == pytest.approx(c.adet_no_data_s[0], abs=1e-6)
    assert by["breakdown"] == pytest.approx(
        c.adet_s[0] - c.adet_minor_s[0] - c.adet_no_data_s[0], abs=1e-6
    )
    assert by["setup"] == pytest.approx(c.aust_s[0], abs=1e-6)
    assert by["idle"] == pytest.approx(c.adot_s[0], abs=1e-6)
    assert a["apt_s"] == pytest.approx(c.apt_s[0], abs=1e-6)
    # every stop's counted time is unassigned without assignments, and the Pareto holds it all
    total = sum(e["seconds"] for e in a["pareto_by_reason"]) + a["minor_stops"]["seconds"]
    assert total == pytest.approx(float(st.duration_s.sum()), abs=1e-6)
    assert all(r["unassigned_s"] == pytest.approx(r["duration_s"]) for r in a["stops"])


def test_worked_example_stops_mtbf_mttr() -> None:
    _assert_stops_equal_components(_m1(), 86400.0)
    lo, hi, planned = _day()
    st = machine_stops(_m1(), CUSTOM, planned, lo, hi, heartbeat_s=86400.0)
    a = reason_analysis(st, [])
    assert a["by_kind"]["breakdown"] == {"count": 1, "seconds": 1800.0}
    assert a["by_kind"]["minor_stop"] == {"count": 15, "seconds": 900.0}
    assert a["by_kind"]["setup"] == {"count": 1, "seconds": 2700.0}
    assert a["mtbf_s"] == 780 * 60 / 1 and a["mttr_s"] == 1800.0
    breakdown = next(r for r in a["stops"] if r["kind"] == "breakdown")
    assert (breakdown["start_ns"], breakdown["end_ns"]) == (at("10:05"), at("10:35"))
    # no breakdowns: MTBF and MTTR are null, never infinity
    none = reason_analysis(
        machine_stops(_m1(), CUSTOM, planned, at("07:00"), at("09:00"), heartbeat_s=86400.0), []
    )
    assert none["breakdowns"] == 0 and none["mtbf_s"] is None and none["mttr_s"] is None
    assert none["apt_s"] == 7200.0


def test_a_cut_stop_keeps_its_full_extent_and_class() -> None:
    planned = _day()[2]
    st = machine_stops(_m1(), CUSTOM, planned, at("10:00"), at("10:20"), heartbeat_s=86400.0)
    (row,) = st.records()
    assert row["kind"] == "breakdown" and row["cut_at_end"] and not row["cut_at_start"]
    assert (row["start_ns"], row["end_ns"]) == (at("10:05"), at("10:35"))
    assert row["duration_s"] == 15 * 60 and row["length_s"] == 30 * 60
    assert not row["open_start"] and not row["open_end"]
    # the first minor stop is 12:39-12:40 (06:00 + 45 + 200 + 30 + 85 + 30 + 9); cut to 30 s
    first_minor = at("12:39")
    st = machine_stops(_m1(), CUSTOM, planned, first_minor + 30 * SEC, first_minor + 45 * SEC,
                       heartbeat_s=86400.0)  # fmt: skip
    (row,) = st.records()
    assert row["kind"] == "minor_stop" and row["cut_at_start"] and row["cut_at_end"]
    assert row["duration_s"] == 15.0 and row["length_s"] == 60.0
    # a 30 min stop cut to 1 minute is still a breakdown, even with the shortest lookaround
    st = machine_stops(_m1(), CUSTOM, planned, at("10:10"), at("10:11"), heartbeat_s=86400.0,
                       lookaround_s=0.0)  # fmt: skip
    (row,) = st.records()
    assert row["kind"] == "breakdown" and row["open_start"] and row["open_end"]
    assert STOP_LOOKAROUND_S >= 120


def test_only_pbt_time_counts_and_the_timeline_ends_at_known_until() -> None:
    planned = _day()[2]
    # IDLE 12:00-12:30 is the lunch break: planned down, no PBT time, not a stop
    st = machine_stops(_m1(), CUSTOM, planned, at("11:50"), at("12:38"), heartbeat_s=86400.0)
    assert [r["kind"] for r in st.records()] == []
    # a DELAY running into the night shift-end is counted up to 22:00 only
    state = Signal(np.array([at("21:30")], np.int64), np.array(["DELAY"], object))
    sig = MachineSignals({}, {"state": state})
    st = machine_stops(sig, CUSTOM, planned, at("21:00"), at("23:00"), heartbeat_s=86400.0,
                       known_until_ns=at("22:30"))  # fmt: skip
    no_data, row = st.records()  # nothing known before 21:30: a no-data stop
    assert no_data["kind"] == "no_data" and no_data["duration_s"] == 1800.0
    assert row["duration_s"] == 1800.0 and row["end_ns"] == at("22:30") and row["open_end"]
    assert row["length_s"] == 3600.0


def test_reasons_split_pareto_and_minor_stops_separate() -> None:
    lo, hi, planned = _day()
    st = machine_stops(_m1(), CUSTOM, planned, lo, hi, heartbeat_s=86400.0)
    first_minor = at("12:39")
    a = reason_analysis(
        st,
        [
            # the breakdown split 10 / 20 minutes
            (at("10:05"), at("10:15"), "tool_break", "tooling"),
            (at("10:15"), at("10:35"), "no_material", "logistics"),
            # the setup: 45 min, a quarter of which is left unassigned
            (at("06:00"), at("06:30"), "changeover", "setup"),
            # an overlapping later assignment wins for 06:20-06:30
            (at("06:20"), at("06:30"), "tool_break", "tooling"),
            # one minor stop
            (first_minor, first_minor + 60 * SEC, "jam", "material"),
            # an assignment with no reason is unassigned
            (at("06:30"), at("06:40"), None, None),
        ],
    )
    pareto = [(e["reason"], e["seconds"], e["count"]) for e in a["pareto_by_reason"]]
    assert pareto == [  # by seconds, ties by name
        ("unassigned", 2700.0, 2),
        ("changeover", 1200.0, 1),
        ("no_material", 1200.0, 1),
        ("tool_break", 1200.0, 2),
    ]
    by_reason = {e["reason"]: e for e in a["pareto_by_reason"]}
    assert by_reason["unassigned"]["seconds"] == 900.0 + 1800.0  # setup rest + the idle stops
    assert by_reason["tool_break"]["seconds"] == 600.0 + 600.0
    assert by_reason["tool_break"]["count"] == 2
    assert by_reason["no_material"]["seconds"] == 1200.0
    assert by_reason["changeover"]["seconds"] == 1200.0
    secs = [e["seconds"] for e in a["pareto_by_reason"]]
    assert secs == sorted(secs, reverse=True)
    assert a["pareto_by_reason"][-1]["cumulative_share"] == pytest.approx(1.0)
    cats = {e["category"]: e["seconds"] for e in a["pareto_by_category"]}
    assert cats == {"tooling": 1200.0, "logistics": 1200.0, "setup": 1200.0,
                    "unassigned": 2700.0}  # fmt: skip
    assert a["minor_stops"]["count"] == 15 and a["minor_stops"]["seconds"] == 900.0
    minor = {e["reason"]: e["seconds"] for e in a["minor_stops"]["by_reason"]}
    assert minor == {"jam": 60.0, "unassigned": 840.0}
    breakdown = next(r for r in a["stops"] if r["kind"] == "breakdown")
    assert breakdown["reasons"] == [
        {"reason": "tool_break", "category": "tooling", "seconds": 600.0},
        {"reason": "no_material", "category": "logistics", "seconds": 1200.0},
    ]
    assert breakdown["unassigned_s"] == 0.0


@pytest.mark.parametrize("seed", range(8))
def test_random_streams_stops_equal_the_components(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    lo = _day()[0]
    names = np.array(["IN_CYCLE", "DELAY", "SETUP", "IDLE", "NO_DATA", "PLANNED_DOWN"], object)
    n = int(rng.integers(1, 600))
    # short and long episodes around the 2 minute threshold
    ts = np.sort(lo + np.cumsum(rng.exponential(200.0, n) * SEC).astype(np.int64))
    sig = MachineSignals({}, {"state": Signal(ts, names[rng.integers(0, len(names), n)])})
    _assert_stops_equal_components(sig, float(rng.choice([300.0, 3600.0, 86400.0])))


def test_no_data_at_all_is_one_no_data_stop_and_edges() -> None:
    lo, hi, planned = _day()
    st = machine_stops(MachineSignals({}), CUSTOM, planned, lo, hi, heartbeat_s=3600.0)
    (row,) = st.records()
    assert row["kind"] == "no_data" and row["duration_s"] == 900 * 60  # PBT only, breaks out
    assert row["open_start"] and row["open_end"]
    a = reason_analysis(st, [])
    assert a["mtbf_s"] is None and a["apt_s"] == 0.0
    assert a["pareto_by_reason"][0]["seconds_by_kind"] == {"no_data": 900 * 60.0}
    # an empty range has no stops; an unknown kind is refused
    assert (
        len(machine_stops(_m1(), CUSTOM, planned, at("10:10"), at("10:10"), heartbeat_s=1.0)) == 0
    )
    only = machine_stops(_m1(), CUSTOM, planned, lo, hi, heartbeat_s=86400.0, kinds=("setup",))
    assert [r["kind"] for r in only.records()] == ["setup"]
    with pytest.raises(ValueError, match="unknown stop kinds"):
        machine_stops(_m1(), CUSTOM, planned, lo, hi, heartbeat_s=1.0, kinds=("coffee",))
