"""Builders shared by the analytics tests: a worked-example day as raw on-change samples."""

from __future__ import annotations

from datetime import date

import numpy as np
from numpy.typing import NDArray

from analytics.calendar import _local_ns, zone
from zhizao.site import CalendarConfig

TZ = zone("Asia/Shanghai")
DAY = date(2026, 3, 2)  # a Monday
MIN_NS = 60_000_000_000

DAY_CALENDAR = CalendarConfig.model_validate(
    {
        "shifts": [
            {
                "name": "day",
                "start": "06:00",
                "end": "22:00",
                "breaks": [
                    {"name": "lunch", "start": "12:00", "end": "12:30"},
                    {"name": "dinner", "start": "18:00", "end": "18:30"},
                ],
            }
        ]
    }
)


def at(hhmm: str, day: date = DAY) -> int:
    h, m = (int(x) for x in hhmm.split(":"))
    return _local_ns(day, h * 60 + m, TZ)


def m1_state_samples() -> tuple[NDArray[np.int64], NDArray[np.object_]]:
    """Machine M1 of DOMAIN section 8 as on-change state samples (minutes after 06:00)."""
    segs: list[tuple[int, str]] = [(0, "IDLE")]  # from midnight, outside POT
    t = 360  # 06:00
    plan = [(45, "SETUP"), (200, "IN_CYCLE"), (30, "DELAY"), (85, "IN_CYCLE"), (30, "IDLE")]
    plan += [(9, "IN_CYCLE"), (1, "DELAY")] * 15  # minor stops of 1 minute
    plan += [(30, "IDLE"), (150, "IN_CYCLE"), (30, "IDLE"), (210, "IN_CYCLE")]
    for length, state in plan:
        segs.append((t, state))
        t += length
    assert t == 22 * 60
    segs.append((t, "IDLE"))
    ts = np.array([_local_ns(DAY, m, TZ) for m, _ in segs], np.int64)
    return ts, np.array([s for _, s in segs], object)
