"""Shift calendars as UTC time windows (integer nanoseconds, millisecond-aligned)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from zhizao.site import ALL_DAYS, CalendarConfig

__all__ = ["ShiftWindows", "local_day_starts", "shift_windows"]

NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class ShiftWindows:
    """Shifts (POT) and the planned-down breaks inside them, clipped to a time range."""

    shift_start_ns: NDArray[np.int64]
    shift_end_ns: NDArray[np.int64]
    break_start_ns: NDArray[np.int64]
    break_end_ns: NDArray[np.int64]
    break_name: tuple[str, ...]

    def pbt_windows(self) -> list[tuple[int, int]]:
        """Shift time minus breaks, as sorted disjoint windows."""
        out: list[tuple[int, int]] = []
        order = np.argsort(self.break_start_ns, kind="stable")
        bs, be = self.break_start_ns[order], self.break_end_ns[order]
        for s, e in zip(self.shift_start_ns.tolist(), self.shift_end_ns.tolist(), strict=True):
            t = s
            inside = (bs >= s) & (be <= e)
            for b0, b1 in zip(bs[inside].tolist(), be[inside].tolist(), strict=True):
                if b0 > t:
                    out.append((t, b0))
                t = max(t, b1)
            if t < e:
                out.append((t, e))
        return out


def _to_ns(dt: datetime) -> int:
    return int(dt.timestamp()) * NS_PER_S + dt.microsecond * 1000


def shift_windows(calendar: CalendarConfig, start_ns: int, end_ns: int) -> ShiftWindows:
    """The calendar's shifts and breaks between ``start_ns`` and ``end_ns`` (clipped)."""
    tz = ZoneInfo(calendar.timezone)
    first = datetime.fromtimestamp(start_ns / NS_PER_S, tz).date() - timedelta(days=1)
    last = datetime.fromtimestamp(end_ns / NS_PER_S, tz).date()
    holidays = set(calendar.holidays)
    ss: list[int] = []
    se: list[int] = []
    bs: list[int] = []
    be: list[int] = []
    names: list[str] = []
    day = first
    while day <= last:
        if day not in holidays:
            weekday = ALL_DAYS[day.weekday()]
            for shift in calendar.shifts:
                if weekday not in shift.days:
                    continue
                midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
                s = _local_ns(midnight, shift.start_min, tz)
                e = _local_ns(midnight, shift.end_min, tz)
                cs, ce = max(s, start_ns), min(e, end_ns)
                if ce <= cs:
                    continue
                ss.append(cs)
                se.append(ce)
                for brk in shift.breaks:
                    b0 = _hhmm_min(brk.start)
                    b1 = _hhmm_min(brk.end)
                    if b0 < shift.start_min:  # the break is after midnight of a night shift
                        b0 += 1440
                    if b1 <= b0:
                        b1 += 1440
                    bs0 = max(_local_ns(midnight, b0, tz), cs)
                    be0 = min(_local_ns(midnight, b1, tz), ce)
                    if be0 > bs0:
                        bs.append(bs0)
                        be.append(be0)
                        names.append(brk.name)
        day += timedelta(days=1)
    return ShiftWindows(
        np.asarray(ss, dtype=np.int64),
        np.asarray(se, dtype=np.int64),
        np.asarray(bs, dtype=np.int64),
        np.asarray(be, dtype=np.int64),
        tuple(names),
    )


def _hhmm_min(text: str) -> int:
    h, m = (int(x) for x in text.split(":"))
    return h * 60 + m


def _local_ns(midnight: datetime, minutes: int, tz: ZoneInfo) -> int:
    # wall-clock arithmetic in local time, then to UTC (correct across DST changes)
    naive = midnight.replace(tzinfo=None) + timedelta(minutes=minutes)
    return _to_ns(naive.replace(tzinfo=tz))


def local_day_starts(timezone: str, start_ns: int, end_ns: int) -> list[tuple[date, int]]:
    """Local dates overlapping [start, end) with the UTC ns of their midnight."""
    tz = ZoneInfo(timezone)
    day = datetime.fromtimestamp(start_ns / NS_PER_S, tz).date()
    out: list[tuple[date, int]] = []
    while True:
        midnight = _to_ns(datetime(day.year, day.month, day.day, tzinfo=tz))
        if midnight >= end_ns:
            break
        out.append((day, midnight))
        day += timedelta(days=1)
    return out
