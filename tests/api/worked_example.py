"""DOMAIN section 8's worked example as raw on-change data: three CNC machines, one day.

The state samples are laid out so that each machine's time elements inside PBT are exactly the
table's (breaks come from the calendar, whatever the machine does then), the part counters end at
PQ, SQ and RQ, and each machine's energy meter advances by its kWh inside the shift.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from analytics.calendar import _local_ns, zone

TZ = zone("Asia/Shanghai")
DAY = date(2026, 3, 2)  # a Monday
ENTERPRISE, SITE, AREA, LINE = "acme", "plant8", "machining", "l1"
PRI_S = 120.0


def _long_day() -> dict[str, Any]:
    return {
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


SITE_MODEL: dict[str, Any] = {
    "enterprise": ENTERPRISE,
    "site": SITE,
    "name": "Worked example plant",
    "district": "Pudong",
    "machine_types": {"cnc": {"profile": "custom"}},
    "calendars": {
        "long": _long_day(),
        "half": {
            "shifts": [
                {
                    "name": "day",
                    "start": "06:00",
                    "end": "14:00",
                    "breaks": [{"name": "lunch", "start": "10:00", "end": "10:30"}],
                }
            ]
        },
    },
    "products": [{"id": "P-100", "ideal_cycle_s": PRI_S}],
    "areas": [
        {
            "id": AREA,
            "lines": [
                {
                    "id": LINE,
                    "calendar": "long",
                    "machines": [
                        {"id": "M1", "type": "cnc", "key_process": True, "nc_controlled": True},
                        {"id": "M2", "type": "cnc", "key_process": True, "nc_controlled": True},
                        {"id": "M3", "type": "cnc", "calendar": "half"},
                    ],
                }
            ],
        }
    ],
    "meters": [
        {
            "id": f"em-{m}",
            "medium": "electricity",
            "unit": "kWh",
            "signal": "energy_kwh",
            "asset": f"{AREA}/{LINE}/{m}",
        }
        for m in ("M1", "M2", "M3")
    ],
    "reasons": [
        {"code": "MECH", "label": "mechanical failure", "category": "breakdown"},
        {"code": "SPINDLE", "label": "spindle fault", "category": "breakdown", "parent": "MECH"},
        {"code": "MAT", "label": "waiting for material", "category": "material"},
    ],
}

# minutes: ADOT, AUST, breakdown, minor stops (1 min each), PQ, SQ, RQ, kWh
TABLE: dict[str, dict[str, float]] = {
    "M1": {"adot": 30, "aust": 45, "breakdown": 30, "minor": 15, "pq": 360, "sq": 6, "rq": 3, "kwh": 700},
    "M2": {"adot": 60, "aust": 30, "breakdown": 70, "minor": 20, "pq": 324, "sq": 4, "rq": 5, "kwh": 620},
    "M3": {"adot": 0, "aust": 30, "breakdown": 0, "minor": 15, "pq": 189, "sq": 2, "rq": 1, "kwh": 330},
}  # fmt: skip
PBT_MIN = {"M1": 900, "M2": 900, "M3": 450}
BREAKS = {"M1": [(360 + 360, 30), (720 + 360, 30)], "M3": [(600, 30)]}  # (start minute, length)
BREAKS["M2"] = BREAKS["M1"]
# the results the API must give (DOMAIN section 8)
EXPECTED = {
    "M1": {"pbt_s": 900 * 60, "apt_s": 780 * 60, "gq": 351, "availability": 0.866667,
           "effectiveness": 0.923077, "quality": 0.975, "oee": 0.78},
    "M2": {"pbt_s": 900 * 60, "apt_s": 720 * 60, "gq": 315, "availability": 0.8,
           "effectiveness": 0.9, "quality": 0.972222, "oee": 0.7},
    "M3": {"pbt_s": 450 * 60, "apt_s": 405 * 60, "gq": 186, "availability": 0.9,
           "effectiveness": 0.933333, "quality": 0.984127, "oee": 0.826667},
}  # fmt: skip
LINE_OEE = 2 * 852 / 2250  # 0.757333, not the mean of machine OEEs (0.768889)


def at_minute(minute: float) -> int:
    """Local minute of DAY as UTC ns."""
    return _local_ns(DAY, 0, TZ) + round(minute * 60_000_000_000)


def _wall(machine: str, pbt_minute: float) -> float:
    """Wall-clock minute (after midnight) of a PBT minute offset: breaks are skipped."""
    wall = 360 + pbt_minute
    for start, length in BREAKS[machine]:
        if wall >= start:
            wall += length
    return wall


def plan(machine: str) -> list[tuple[float, str]]:
    """(PBT minutes, state) in order, adding up to the machine's PBT."""
    t = TABLE[machine]
    apt = PBT_MIN[machine] - t["adot"] - t["aust"] - t["breakdown"] - t["minor"]
    out: list[tuple[float, str]] = [(t["aust"], "SETUP")]
    minor = int(t["minor"])
    chunk = apt / (minor + 2)
    for _ in range(minor):
        out += [(chunk, "IN_CYCLE"), (1, "DELAY")]
    out.append((chunk, "IN_CYCLE"))
    if t["breakdown"]:
        out.append((t["breakdown"], "DELAY"))
    out.append((chunk, "IN_CYCLE"))
    if t["adot"]:
        out.append((t["adot"], "IDLE"))
    return [(m, s) for m, s in out if m > 0]


def line_protocol() -> list[str]:
    """Every raw point of the example day (state, counters, meters)."""
    lines: list[str] = []
    for machine in TABLE:
        tags = f"area={AREA},enterprise={ENTERPRISE},line={LINE},machine={machine},site={SITE}"
        lines.append(f'machine_state,{tags} state="IDLE" {at_minute(0)}')
        pbt = 0.0
        for minutes, state in plan(machine):
            lines.append(f'machine_state,{tags} state="{state}" {at_minute(_wall(machine, pbt))}')
            pbt += minutes
        assert abs(pbt - PBT_MIN[machine]) < 1e-9
        lines.append(f'machine_state,{tags} state="IDLE" {at_minute(_wall(machine, pbt))}')
        t = TABLE[machine]
        # counters: start at 0 before the shift, end at the totals mid-shift (inside PBT)
        for field, total in (("part_count", t["pq"]), ("scrap_part_count", t["sq"]),
                             ("rework_part_count", t["rq"])):  # fmt: skip
            lines.append(f"counter,{tags} {field}=0i {at_minute(300)}")
            lines.append(f"counter,{tags} {field}={int(total // 2)}i {at_minute(500)}")
            lines.append(
                f"counter,{tags} {field}={int(total)}i {at_minute(_wall(machine, pbt) - 5)}"
            )
        meter = f"{tags},meter=em-{machine}"
        lines.append(f"energy,{meter} energy_kwh=1000 {at_minute(360)}")
        lines.append(
            f"energy,{meter} energy_kwh={1000 + t['kwh']} {at_minute(_wall(machine, pbt))}"
        )
    return lines
