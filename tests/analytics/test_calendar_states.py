"""Shift calendars (midnight, holidays, overlaps refused) and state classification maps."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from analytics.calendar import day_windows, planned_time
from analytics.states import STATE_CODE, StateClassifier, state_timeline
from analytics.timeelements import time_elements
from tests.analytics.helpers import DAY, MIN_NS, TZ, at
from zhizao.errors import ConfigError
from zhizao.site import CalendarConfig, MachineState, MachineTypeConfig, StateProfile

NIGHT = {
    "name": "night",
    "start": "22:00",
    "end": "06:00",
    "days": ["mon", "tue"],
    "breaks": [{"name": "meal", "start": "02:00", "end": "02:30"}],
}


def test_shift_crossing_midnight_belongs_to_its_start_date() -> None:
    cal = CalendarConfig.model_validate({"shifts": [NIGHT], "holidays": ["2026-03-03"]})
    start, end = at("00:00"), at("00:00", date(2026, 3, 5))
    planned = planned_time(cal, start, end)
    # Monday's shift runs into Tuesday; Tuesday (a holiday) starts no shift, so nothing else
    assert [(s.name, s.date) for s in planned.shifts] == [("night", DAY)]
    assert planned.pot_start_ns.tolist() == [at("22:00")]
    assert planned.pot_end_ns.tolist() == [at("06:00", date(2026, 3, 3))]
    assert planned.down_start_ns.tolist() == [at("02:00", date(2026, 3, 3))]
    ws, we, days = day_windows(start, end, TZ)
    assert days == [DAY, date(2026, 3, 3), date(2026, 3, 4)]
    tl = state_timeline(np.array([start], np.int64), np.array([STATE_CODE[MachineState.IN_CYCLE]]),
                        start_ns=start, end_ns=end, heartbeat_s=10 * 86400)  # fmt: skip
    c = time_elements(tl, planned, ws, we)
    # the Monday calendar day holds 2 h of the shift, Tuesday the other 6 h with the 30 min meal
    assert (c.pot_s / 60).tolist() == [120, 360, 0]
    assert (c.planned_down_s / 60).tolist() == [0, 30, 0]
    assert (c.apt_s / 60).tolist() == [120, 330, 0]


@pytest.mark.parametrize(
    ("shifts", "needle"),
    [
        (
            [
                {"name": "early", "start": "06:00", "end": "14:30"},
                {"name": "late", "start": "14:00", "end": "22:00"},
            ],
            "'early'",
        ),
        (
            [
                {**NIGHT, "days": ["mon", "tue", "wed", "thu", "fri"]},
                {"name": "morning", "start": "05:00", "end": "13:00"},
            ],
            "'morning'",
        ),
    ],
)
def test_overlapping_calendar_entries_are_refused(
    shifts: list[dict[str, object]], needle: str
) -> None:
    cal = CalendarConfig.model_validate({"shifts": shifts})
    with pytest.raises(ConfigError, match="overlap") as err:
        planned_time(cal, at("00:00"), at("00:00", date(2026, 3, 4)), name="plant")
    assert needle in str(err.value) and "plant" in str(err.value)


def test_overlapping_breaks_and_breaks_outside_the_shift_are_refused() -> None:
    breaks = [
        {"name": "a", "start": "10:00", "end": "10:30"},
        {"name": "b", "start": "10:15", "end": "10:45"},
    ]
    cal = CalendarConfig.model_validate(
        {"shifts": [{"name": "d", "start": "08:00", "end": "16:00", "breaks": breaks}]}
    )
    with pytest.raises(ConfigError, match="overlap"):
        planned_time(cal, at("00:00"), at("23:00"))
    outside = [{"name": "late", "start": "17:00", "end": "17:30"}]
    cal = CalendarConfig.model_validate(
        {"shifts": [{"name": "d", "start": "08:00", "end": "16:00", "breaks": outside}]}
    )
    with pytest.raises(ConfigError, match="not inside shift"):
        planned_time(cal, at("00:00"), at("23:00"))


NAMES = [s.value for s in MachineState]


def _classify(
    profile: StateProfile, codes: list[object], signal: str = "", **kw: object
) -> list[str]:
    clf = StateClassifier.for_type(MachineTypeConfig(profile=profile, **kw))  # type: ignore[arg-type]
    out, unknown = clf.classify(np.array(codes, dtype=object), signal)
    return [
        NAMES[i] if not u else "UNKNOWN"
        for i, u in zip(out.tolist(), unknown.tolist(), strict=True)
    ]


def test_state_maps_per_profile() -> None:
    assert _classify(StateProfile.OPC40001, ["Executing", "NotExecuting", "OutOfService", "NotAvailable"]) == [
        "IN_CYCLE", "IDLE", "DELAY", "NO_DATA"]  # fmt: skip
    assert _classify(StateProfile.OPC40001, [3, 2, 1.0], signal="machinery_item_state") == [
        "IN_CYCLE",
        "IDLE",
        "DELAY",
    ]
    assert _classify(StateProfile.OPC40502, ["Running", "Waiting", "Interrupted", "Stopped"]) == [
        "IN_CYCLE", "IN_CYCLE", "DELAY", "IDLE"]  # fmt: skip
    assert _classify(StateProfile.OPC40502, [1, 3, 0], signal="program_status") == [
        "IN_CYCLE",
        "DELAY",
        "IDLE",
    ]
    assert _classify(StateProfile.OPC40502, ["Waiting"], waiting_is_in_cycle=False) == ["DELAY"]
    assert _classify(StateProfile.PACKML, [6, 11, 5, 9, 0.0], signal="packml_state") == [
        "IN_CYCLE", "DELAY", "IDLE", "DELAY", "NO_DATA"]  # fmt: skip
    assert _classify(StateProfile.PACKML, ["Execute", "Held", "Suspended"]) == [
        "IN_CYCLE",
        "DELAY",
        "IDLE",
    ]
    # a bare number is ambiguous between signals: unknown unless the signal is named
    assert _classify(StateProfile.PACKML, [6]) == ["UNKNOWN"]
    custom = {"RUN": "IN_CYCLE", "7": "SETUP"}
    assert _classify(StateProfile.CUSTOM, ["RUN", 7, "IN_CYCLE", "bogus"], state_map=custom) == [
        "IN_CYCLE", "SETUP", "IN_CYCLE", "UNKNOWN"]  # fmt: skip


def test_site_state_map_overrides_the_profile_default() -> None:
    assert _classify(StateProfile.PACKML, ["Suspended"], state_map={"Suspended": "DELAY"}) == [
        "DELAY"
    ]
    assert _classify(
        StateProfile.PACKML, [5], "packml_state", state_map={"packml_state=5": "DELAY"}
    ) == ["DELAY"]


def test_several_state_signals_combine_most_restrictive_first() -> None:
    clf = StateClassifier.for_type(MachineTypeConfig(profile=StateProfile.OPC40001))
    item = (
        np.array([0, 10, 20], np.int64),
        np.array(["Executing", "Executing", "NotExecuting"], object),
    )
    mode = (np.array([5, 15], np.int64), np.array(["Processing", "Setup"], object))
    other = (np.array([25], np.int64), np.array(["gibberish"], object))
    ts, code, unknown = clf.combine(
        {"machinery_item_state": item, "machinery_operation_mode": mode}
    )
    assert ts.tolist() == [0, 5, 10, 15, 20]
    assert [NAMES[c] for c in code.tolist()] == [
        "IN_CYCLE",
        "IN_CYCLE",
        "IN_CYCLE",
        "SETUP",
        "SETUP",
    ]
    assert unknown == []
    ts, code, unknown = clf.combine({"custom_state": other})
    assert [NAMES[c] for c in code.tolist()] == ["NO_DATA"] and unknown == [
        "custom_state=gibberish"
    ]


def test_unknown_codes_do_not_stop_the_rest() -> None:
    n = 10_000
    codes = np.array(["Executing", "weird"] * (n // 2), dtype=object)
    clf = StateClassifier.for_type(MachineTypeConfig(profile=StateProfile.OPC40001))
    out, unknown = clf.classify(codes)
    assert int(unknown.sum()) == n // 2
    assert int((out == STATE_CODE[MachineState.IN_CYCLE]).sum()) == n // 2
    assert MIN_NS == 60 * 10**9


def test_hour_windows_follow_local_hours() -> None:
    from analytics.calendar import hour_windows, zone

    kolkata = zone("Asia/Kolkata")  # UTC+05:30
    s, e = hour_windows(at("08:10"), at("10:00"), kolkata)
    assert ((s + 5 * 3600 * 10**9 + 1800 * 10**9) % (3600 * 10**9) == 0).all()
    s, e = hour_windows(at("08:10"), at("10:00"), TZ)
    assert s.tolist() == [at("08:00"), at("09:00")] and e[-1] == at("10:00")
