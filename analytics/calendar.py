"""Shift calendars: planned operation time (POT) and planned down time as UTC intervals.

Calendars are in the factory's local time (Asia/Shanghai by default, via ``zoneinfo``). A shift
that crosses midnight belongs to the date it starts (a holiday suppresses the shifts that *start*
on it). Overlapping shifts or breaks would count time twice and give impossible availabilities,
so they are refused with a ``ConfigError`` that names both entries.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from numpy.typing import NDArray

from zhizao.errors import ConfigError
from zhizao.site import ALL_DAYS, CalendarConfig

__all__ = [
    "PlannedTime",
    "ShiftInstance",
    "day_windows",
    "hour_windows",
    "local_date",
    "planned_time",
    "utc_ns",
    "zone",
]

I64 = NDArray[np.int64]


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"unknown time zone {name!r}",
            key="timezone",
            expected="an IANA zone such as Asia/Shanghai",
        ) from exc


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


def _local_ns(day: date, minutes: int, tz: ZoneInfo) -> int:
    wall = datetime(day.year, day.month, day.day) + timedelta(minutes=minutes)
    return _ns(wall.replace(tzinfo=tz))


def local_date(ts_ns: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(ts_ns // 1_000_000_000, tz).date()


@dataclass(frozen=True, slots=True)
class ShiftInstance:
    """One occurrence of a shift; ``date`` is the local date it starts on."""

    name: str
    date: date
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class PlannedTime:
    """Sorted, disjoint POT intervals and the planned down intervals inside them."""

    pot_start_ns: I64
    pot_end_ns: I64
    down_start_ns: I64
    down_end_ns: I64
    shifts: tuple[ShiftInstance, ...]
    # per planned down interval: (kind, name) of the calendar entry (break, maintenance, meeting)
    down_entries: tuple[tuple[str, str], ...] = ()

    @classmethod
    def always(cls, start_ns: int, end_ns: int) -> PlannedTime:
        """Everything planned (for machines without a calendar)."""
        one = ShiftInstance("all", date(1970, 1, 1), start_ns, end_ns)
        return cls(
            np.array([start_ns], np.int64), np.array([end_ns], np.int64),
            np.empty(0, np.int64), np.empty(0, np.int64), (one,),
        )  # fmt: skip


def _refuse_overlaps(
    starts: list[int], ends: list[int], names: list[str], what: str, calendar: str, tz: ZoneInfo
) -> None:
    order = np.argsort(np.asarray(starts, np.int64), kind="stable")
    for a, b in itertools.pairwise(order):
        if starts[b] < ends[a]:
            when = datetime.fromtimestamp(starts[b] / 1e9, tz).isoformat(timespec="minutes")
            raise ConfigError(
                f"calendar {calendar!r}: {what} {names[a]} and {names[b]} overlap at {when}; "
                "overlapping entries would count time twice",
                key=f"calendars.{calendar}",
                expected="shifts and breaks that do not overlap",
            )


def planned_time(
    cal: CalendarConfig, start_ns: int, end_ns: int, *, name: str = "calendar"
) -> PlannedTime:
    """POT and planned down of every shift instance that intersects [start_ns, end_ns)."""
    tz = zone(cal.timezone)
    first = local_date(start_ns, tz) - timedelta(days=1)  # a shift of the day before may cross in
    last = local_date(end_ns, tz)
    holidays = set(cal.holidays)
    shifts: list[ShiftInstance] = []
    pot_s: list[int] = []
    pot_e: list[int] = []
    down_s: list[int] = []
    down_e: list[int] = []
    down_names: list[str] = []
    down_entries: list[tuple[str, str]] = []
    day = first
    while day <= last:  # calendar days x shifts: a handful, not samples
        weekday = ALL_DAYS[day.weekday()]
        for shift in cal.shifts:
            if weekday not in shift.days or day in holidays:
                continue
            s_ns = _local_ns(day, shift.start_min, tz)
            e_ns = _local_ns(day, shift.end_min, tz)
            label = f"{shift.name!r} of {day.isoformat()}"
            for brk in shift.breaks:
                b0 = _minutes(brk.start)
                b0 = b0 + 1440 if b0 < shift.start_min else b0
                b1 = _minutes(brk.end)
                while b1 <= b0:  # the break ends on the next calendar day
                    b1 += 1440
                if not (shift.start_min <= b0 < b1 <= shift.end_min):
                    raise ConfigError(
                        f"calendar {name!r}: {brk.kind} {brk.name!r} ({brk.start}-{brk.end}) "
                        f"is not inside shift {shift.name!r} ({shift.start}-{shift.end})",
                        key=f"calendars.{name}.shifts",
                        expected="breaks inside their shift",
                    )
                if e_ns > start_ns and s_ns < end_ns:
                    down_s.append(_local_ns(day, b0, tz))
                    down_e.append(_local_ns(day, b1, tz))
                    down_names.append(f"{brk.kind} {brk.name!r} of {label}")
                    down_entries.append((brk.kind, brk.name))
            pot_s.append(s_ns)
            pot_e.append(e_ns)
            shifts.append(ShiftInstance(shift.name, day, s_ns, e_ns))
        day += timedelta(days=1)
    _refuse_overlaps(
        pot_s, pot_e, [f"shift {s.name!r} of {s.date}" for s in shifts], "shifts", name, tz
    )
    _refuse_overlaps(down_s, down_e, down_names, "planned down entries", name, tz)
    keep = [i for i, s in enumerate(shifts) if s.end_ns > start_ns and s.start_ns < end_ns]
    order = sorted(keep, key=lambda i: pot_s[i])
    d_order = np.argsort(np.asarray(down_s, np.int64), kind="stable")
    return PlannedTime(
        np.asarray([pot_s[i] for i in order], np.int64),
        np.asarray([pot_e[i] for i in order], np.int64),
        np.asarray(down_s, np.int64)[d_order] if down_s else np.empty(0, np.int64),
        np.asarray(down_e, np.int64)[d_order] if down_e else np.empty(0, np.int64),
        tuple(shifts[i] for i in order),
        tuple(down_entries[i] for i in d_order.tolist()),
    )


def _minutes(hhmm: str) -> int:
    h, m = (int(x) for x in hhmm.split(":"))
    return h * 60 + m


def day_windows(start_ns: int, end_ns: int, tz: ZoneInfo) -> tuple[I64, I64, list[date]]:
    """Local calendar days (00:00-24:00) intersecting [start_ns, end_ns), unclipped."""
    d = local_date(start_ns, tz)
    last = local_date(end_ns - 1, tz)
    s: list[int] = []
    e: list[int] = []
    days: list[date] = []
    while d <= last:
        s.append(_local_ns(d, 0, tz))
        e.append(_local_ns(d + timedelta(days=1), 0, tz))
        days.append(d)
        d += timedelta(days=1)
    return np.asarray(s, np.int64), np.asarray(e, np.int64), days


def hour_windows(start_ns: int, end_ns: int, tz: ZoneInfo | None = None) -> tuple[I64, I64]:
    """Whole local hours intersecting the range (UTC hours without ``tz``). The zone's offset at
    ``start_ns`` aligns them, so half-hour zones get local hours too."""
    h = 3_600_000_000_000
    off = 0
    if tz is not None:
        delta = datetime.fromtimestamp(start_ns // 1_000_000_000, tz).utcoffset()
        off = int(delta.total_seconds()) * 1_000_000_000 if delta is not None else 0
    first = ((start_ns + off) // h) * h - off
    s = np.arange(first, end_ns, h, dtype=np.int64)
    return s, s + h


def utc_ns(text: str, tz: ZoneInfo) -> int:
    """ISO 8601 time; a naive time is local to ``tz``."""
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return _ns(dt.astimezone(UTC))
