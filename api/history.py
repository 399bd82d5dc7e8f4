"""KPI history: stored components summed by InfluxDB, ratios from the KPI catalog.

One InfluxQL statement per request: ``SELECT sum(<component>) ... GROUP BY <level tags>,
<window>`` over the ``kpi_machine_*`` measurement of the grouping, reading only the components
the requested KPIs need. Ratios are computed from the sums by ``analytics.catalog.evaluate``, so
a line's OEE is sum(PRI x GQ) / sum(PBT) over its machines, never a mean of machine ratios.
Weeks and months are sums of day rows (InfluxQL has no calendar month); days and shifts are the
engine's own windows in the site's local time (tags ``date`` and ``shift``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

import numpy as np

from analytics import catalog
from analytics.calendar import planned_time, zone
from analytics.components import Components
from api.state import AppState
from zhizao.influxql import duration, ident, tag_equals, time_range, tz
from zhizao.schema import (
    AREA_TAG,
    DATE_TAG,
    ENTERPRISE_TAG,
    LINE_TAG,
    MACHINE_TAG,
    SHIFT_TAG,
    SITE_TAG,
    kpi_machine_measurement,
)
from zhizao.site import SiteModel

__all__ = [
    "GROUPINGS",
    "LEVELS",
    "Grouping",
    "HistoryRequest",
    "Level",
    "calendar_bucket",
    "history_rows",
    "local_day_start_ns",
    "local_iso",
]

Level = Literal["machine", "line", "area", "site"]
Grouping = Literal["hour", "shift", "day", "week", "month", "range"]
LEVELS: tuple[Level, ...] = ("machine", "line", "area", "site")
GROUPINGS: tuple[Grouping, ...] = ("hour", "shift", "day", "week", "month", "range")
LEVEL_TAGS: dict[Level, tuple[str, ...]] = {
    "machine": (AREA_TAG, LINE_TAG, MACHINE_TAG),
    "line": (AREA_TAG, LINE_TAG),
    "area": (AREA_TAG,),
    "site": (),
}
# which stored window each grouping reads
SOURCE_WINDOW: dict[Grouping, str] = {
    "hour": "hour",
    "shift": "shift",
    "day": "day",
    "week": "day",
    "month": "day",
    "range": "hour",
}
NS = 1_000_000_000
HOUR_NS = 3600 * NS


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    level: Level
    grouping: Grouping
    start_ns: int
    end_ns: int
    kpis: Sequence[str]
    area: str | None = None
    line: str | None = None
    machine: str | None = None


def local_iso(ts_ns: int, site: SiteModel) -> str:
    return datetime.fromtimestamp(ts_ns / NS, zone(site.timezone)).isoformat()


def local_day_start_ns(day: date, site: SiteModel) -> int:
    wall = datetime(day.year, day.month, day.day, tzinfo=zone(site.timezone))
    return int(wall.timestamp()) * NS


def calendar_bucket(grouping: Grouping, d: date) -> tuple[str, date, date]:
    """Label, first day and day after the last of the week or month holding ``d``."""
    if grouping == "week":
        monday = d - timedelta(days=d.weekday())
        iso = monday.isocalendar()
        return f"{iso.year}-W{iso.week:02d}", monday, monday + timedelta(days=7)
    first = d.replace(day=1)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return f"{first.year}-{first.month:02d}", first, nxt


def build_query(
    site: SiteModel, req: HistoryRequest, components: Sequence[str], prefix: str
) -> str:
    filters = {SITE_TAG: site.site, ENTERPRISE_TAG: site.enterprise}
    for key, value in ((AREA_TAG, req.area), (LINE_TAG, req.line), (MACHINE_TAG, req.machine)):
        if value is not None:
            filters[key] = value
    group: list[str] = [ident(t) for t in LEVEL_TAGS[req.level]]
    tail = ""
    if req.grouping == "hour":
        group.insert(0, f"time({duration('1h')})")
        tail = f" fill(none) {tz(site.timezone)}"
    elif req.grouping == "shift":
        group += [ident(DATE_TAG), ident(SHIFT_TAG)]
    elif req.grouping in ("day", "week", "month"):
        group.append(ident(DATE_TAG))
    cols = ", ".join(f"sum({ident(c)}) AS {ident(c)}" for c in components)
    meas = ident(kpi_machine_measurement(SOURCE_WINDOW[req.grouping], prefix))
    by = f" GROUP BY {', '.join(group)}" if group else ""
    return (
        f"SELECT {cols} FROM {meas} WHERE {tag_equals(filters)} AND "
        f"{time_range(req.start_ns, req.end_ns)}{by}{tail}"
    )


def _shift_instance(site: SiteModel, cal_name: str, day: str, shift: str) -> tuple[int, int]:
    d = date.fromisoformat(day)
    lo = local_day_start_ns(d, site)
    planned = planned_time(site.calendars[cal_name], lo, lo + 36 * HOUR_NS, name=cal_name)
    for inst in planned.shifts:
        if inst.name == shift and inst.date == d:
            return inst.start_ns, inst.end_ns
    return lo, lo + 24 * HOUR_NS  # a shift since removed from the calendar: its day


def _shift_bounds(
    site: SiteModel,
    asset: dict[str, str],
    day: str,
    shift: str,
    memo: dict[tuple[str, str, str], tuple[int, int]],
) -> tuple[int, int]:
    """The shift instance's start and end from the calendar of the group's (first) machine."""
    cal_name = None
    for area, line, m in site.machines():
        ids = {AREA_TAG: area.id, LINE_TAG: line.id, MACHINE_TAG: m.id}
        if all(asset.get(k, v) == v for k, v in ids.items()):
            cal_name = m.calendar or line.calendar
            break
    if cal_name is None:
        cal_name = next(iter(site.calendars))
    key = (cal_name, day, shift)
    if key not in memo:  # one calendar evaluation per shift instance, not per row
        memo[key] = _shift_instance(site, cal_name, day, shift)
    return memo[key]


def total_row(
    rows: Sequence[dict[str, Any]],
    kpis: Sequence[str],
    asset: dict[str, str],
    limits: dict[str, float],
) -> dict[str, Any] | None:
    """The sum of ``rows`` (their components, over any windows and machines) as one row, with
    the KPIs recomputed from the sums: a line's total from its machines' rows, no new query."""
    if not rows:
        return None
    names = list(rows[0]["components"])
    sums = {c: sum(float(r["components"][c]) for r in rows) for c in names}
    comps = Components.from_columns({c: [v] for c, v in sums.items()}, 1)
    values = catalog.evaluate(comps, kpis, limits=limits)
    first = rows[0]["window"]
    return {
        "asset": asset,
        "window": first,
        "components": sums,
        "kpis": {k: {"id": k, **v.at(0)} for k, v in values.items()},
    }


async def history_rows(
    state: AppState, site: SiteModel, req: HistoryRequest
) -> tuple[list[dict[str, object]], str]:
    """Rows of components and KPIs for the request, and the InfluxQL that read them."""
    components = catalog.components_needed(req.kpis)
    q = build_query(site, req, components, state.kpi.measurement_prefix)
    series = await state.cached_query(q, chunked=True)
    keys: list[tuple[tuple[tuple[str, str], ...], str, int, int]] = []
    sums: dict[tuple[tuple[tuple[str, str], ...], str, int, int], dict[str, float]] = {}
    level_tags = LEVEL_TAGS[req.level]
    memo: dict[tuple[str, str, str], tuple[int, int]] = {}
    for s in series:
        asset = tuple((t, s.tags.get(t, "")) for t in level_tags)
        for i in range(len(s)):
            if req.grouping == "hour":
                start = int(s.time_ns[i])
                label, end = local_iso(start, site), start + HOUR_NS
            elif req.grouping == "shift":
                day, shift = s.tags.get(DATE_TAG, ""), s.tags.get(SHIFT_TAG, "")
                start, end = _shift_bounds(site, dict(asset), day, shift, memo)
                label = f"{day} {shift}"
            elif req.grouping == "day":
                d = date.fromisoformat(s.tags.get(DATE_TAG, ""))
                start, end = (
                    local_day_start_ns(d, site),
                    local_day_start_ns(d + timedelta(days=1), site),
                )
                label = d.isoformat()
            elif req.grouping in ("week", "month"):
                d = date.fromisoformat(s.tags.get(DATE_TAG, ""))
                label, first, nxt = calendar_bucket(req.grouping, d)
                start, end = local_day_start_ns(first, site), local_day_start_ns(nxt, site)
            else:
                start, end, label = req.start_ns, req.end_ns, "range"
            key = (asset, label, start, end)
            acc = sums.get(key)
            if acc is None:
                acc = sums[key] = dict.fromkeys(components, 0.0)
                keys.append(key)
            for c in components:
                v = s.values[c][i] if c in s.values else 0.0
                acc[c] += 0.0 if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)
    keys.sort(key=lambda k: (k[2], k[0]))
    comps = Components.from_columns({c: [sums[k][c] for k in keys] for c in components}, len(keys))
    limits = {"effectiveness_flag_above": state.kpi.effectiveness_flag_above}
    kpis = catalog.evaluate(comps, req.kpis, limits=limits)
    rows: list[dict[str, object]] = []
    for i, (asset, label, start, end) in enumerate(keys):
        rows.append(
            {
                "asset": dict(asset),
                "window": {
                    "label": label,
                    "start": local_iso(start, site),
                    "end": local_iso(end, site),
                },
                "components": {c: sums[(asset, label, start, end)][c] for c in components},
                "kpis": {k: {"id": k, **v.at(i)} for k, v in kpis.items()},
            }
        )
    return rows, q
