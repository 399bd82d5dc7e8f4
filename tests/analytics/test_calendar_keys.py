"""Issue 14 item 3: every key the calendar schema accepts changes the result (one case per key;
a key added to the schema without a case here fails the coverage test)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from analytics.compute import SiteComputer, SiteData
from analytics.config import KpiConfig
from analytics.machine import MachineSignals, Signal
from tests.analytics.helpers import DAY, at, m1_state_samples
from tests.analytics.test_offline_cli import SITE
from tests.analytics.test_timeline import m1_counters
from zhizao.site import BreakConfig, CalendarConfig, ShiftConfig, SiteModel

Cal = dict[str, Any]


def _shift(cal: Cal) -> dict[str, Any]:
    shift: dict[str, Any] = cal["shifts"][0]
    return shift


def _break(cal: Cal) -> dict[str, Any]:
    brk: dict[str, Any] = _shift(cal)["breaks"][0]
    return brk


# key -> how to change it (on a copy of the base calendar: one day shift 06:00-22:00, Monday to
# Friday, lunch and dinner breaks)
CHANGES: dict[str, Callable[[Cal], None]] = {
    "calendar.timezone": lambda c: c.update(timezone="Asia/Tokyo"),
    "calendar.shifts": lambda c: c["shifts"].append({"name": "night", "start": "22:00", "end": "06:00"}),
    "calendar.holidays": lambda c: c.update(holidays=[DAY.isoformat()]),
    "calendar.no_order_is_planned_down": lambda c: c.update(no_order_is_planned_down=True),
    "shift.name": lambda c: _shift(c).update(name="early"),
    "shift.start": lambda c: _shift(c).update(start="07:00"),
    "shift.end": lambda c: _shift(c).update(end="21:00"),
    "shift.days": lambda c: _shift(c).update(days=["sat", "sun"]),
    "shift.breaks": lambda c: _shift(c).update(breaks=[]),
    "break.name": lambda c: _break(c).update(name="tiffin"),
    "break.start": lambda c: _break(c).update(start="11:30"),
    "break.end": lambda c: _break(c).update(end="12:45"),
    "break.kind": lambda c: _break(c).update(kind="maintenance"),
}  # fmt: skip


def _result(calendar: Cal) -> dict[str, Any]:
    site = copy.deepcopy(SITE)
    site["calendars"] = {"day": calendar}
    model = SiteModel.model_validate(site)
    cfg = KpiConfig.model_validate({"sites": ["site.yaml"], "heartbeat_s": 86400})
    computer = SiteComputer(model, cfg)
    ts, states = m1_state_samples()
    data = SiteData({"M1": MachineSignals(m1_counters(), {"state": Signal(ts, states)})})
    out: dict[str, Any] = {}
    for kind in ("range", "shift"):
        report = computer.report(
            computer.compute(data, kind, at("00:00"), at("00:00") + 86400 * 10**9)
        )
        out[kind] = {
            "rows": [(r["tags"], r["components"]) for r in report["machines"]],
            "planned_down": report["planned_down"],
        }
    return out


def test_every_schema_key_has_a_case() -> None:
    keys = {f"calendar.{k}" for k in CalendarConfig.model_fields}
    keys |= {f"shift.{k}" for k in ShiftConfig.model_fields}
    keys |= {f"break.{k}" for k in BreakConfig.model_fields}
    assert keys == set(CHANGES)


@pytest.mark.parametrize("key", sorted(CHANGES))
def test_each_calendar_key_changes_the_result(key: str) -> None:
    base_calendar: Cal = copy.deepcopy(SITE["calendars"]["day"])
    changed: Cal = copy.deepcopy(base_calendar)
    CHANGES[key](changed)
    CalendarConfig.model_validate(changed)  # still a valid calendar
    base, result = _result(base_calendar), _result(changed)
    assert json.dumps(result, sort_keys=True, default=str) != json.dumps(
        base, sort_keys=True, default=str
    ), f"{key} is accepted by the schema but changes nothing"


def test_break_name_and_kind_are_what_the_planned_down_time_is_booked_as() -> None:
    calendar: Cal = copy.deepcopy(SITE["calendars"]["day"])
    _break(calendar).update(kind="maintenance", name="spindle-check")
    down = _result(calendar)["range"]["planned_down"]
    assert [(d["kind"], d["name"], d["duration_s"]) for d in down] == [
        ("maintenance", "spindle-check", 1800.0),
        ("break", "dinner", 1800.0),
    ]
