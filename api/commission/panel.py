"""The commission's panel: factory reports and yearly telemetry sums, one row per (site, year).

Reported figures come from the factories' annual reports (the revision in force at ``as_of``);
metered figures (energy per medium, fresh water) from the KPI engine's plant-meter day rows,
summed per local calendar year. Where a site has metered a quantity in a year, the meter wins
and the row says ``telemetry``; where it has not, the reported figure is used and the row says
``reported``; a quantity neither metered nor reported stays NaN (not reported, never zero).
Energy is one block: where a factory meters or reports some media, a medium it leaves out is 0
(it used none), so that the factory is not excluded for a blank cell.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from analytics.indicators import ENERGY_MEDIA, PANEL_COLUMNS, Panel
from api.commission.telemetry import YearTelemetry

__all__ = [
    "METERED_ENERGY",
    "METERED_WATER",
    "InputRevision",
    "PanelInputs",
    "SiteInfo",
    "build_panel",
]

METERED_ENERGY: tuple[str, ...] = tuple(ENERGY_MEDIA)  # kpi_site_day fields of the media
# the plant's fresh-water intake meters (medium "water", unit m3) in kpi_site_day
METERED_WATER = "water_m3"
FRESH_WATER = "fresh_water_m3"


@dataclass(frozen=True, slots=True)
class SiteInfo:
    key: str
    name: str
    district: str
    timezone: str


@dataclass(frozen=True, slots=True)
class InputRevision:
    """Which report revision a figure used (``None``: no report for that period)."""

    site: str
    period: str
    revision: int | None
    author: str | None = None
    created_at: str | None = None


@dataclass(frozen=True, slots=True)
class PanelInputs:
    panel: Panel
    revisions: tuple[InputRevision, ...]
    telemetry_days: Mapping[tuple[str, int], int]  # day rows per (site, year) that were summed
    parks: Mapping[tuple[str, int], str]
    # the yearly metered totals used per (site, year) (panel column -> value)
    metered: Mapping[tuple[str, int], Mapping[str, float]]


def _float(v: Any) -> float:
    if v is None or isinstance(v, bool):
        return float("nan")
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f


def _present(v: Any) -> bool:
    f = _float(v)
    return f == f


def build_panel(
    sites: Iterable[SiteInfo],
    years: Iterable[int],
    reports: Mapping[tuple[str, int], tuple[Mapping[str, Any], InputRevision]],
    telemetry: Mapping[tuple[str, int], YearTelemetry],
) -> PanelInputs:
    """One panel row per site and year that has a report or telemetry."""
    site_list = list(sites)
    year_list = sorted(set(years))
    rows_site: list[str] = []
    rows_district: list[str] = []
    rows_park: list[str] = []
    rows_year: list[int] = []
    energy_src: list[str] = []
    water_src: list[str] = []
    values: dict[str, list[float]] = {c: [] for c in PANEL_COLUMNS}
    revisions: list[InputRevision] = []
    days: dict[tuple[str, int], int] = {}
    parks: dict[tuple[str, int], str] = {}
    metered_used: dict[tuple[str, int], dict[str, float]] = {}
    for info in site_list:
        for year in year_list:  # sites x years, not samples
            report = reports.get((info.key, year))
            tele = telemetry.get((info.key, year))
            revisions.append(
                report[1] if report is not None else InputRevision(info.key, str(year), None)
            )
            if report is None and tele is None:
                continue
            reported = report[0] if report is not None else {}
            metered = dict(tele.sums) if tele is not None and tele.days > 0 else {}
            if tele is not None:
                days[(info.key, year)] = tele.days
            has_energy = any(m in metered for m in METERED_ENERGY)
            has_water = METERED_WATER in metered
            # a report that gives some energy media and leaves others empty used none of those
            # (the indicators need every medium: empty would exclude the factory)
            reports_energy = any(_present(reported.get(m)) for m in METERED_ENERGY)
            used: dict[str, float] = {}
            for col in PANEL_COLUMNS:
                if col in METERED_ENERGY and has_energy:
                    # a medium the plant meters none of is 0 for that year, not "not reported"
                    used[col] = float(metered.get(col, 0.0))
                    values[col].append(used[col])
                elif col == FRESH_WATER and has_water:
                    used[col] = float(metered[METERED_WATER])
                    values[col].append(used[col])
                elif col in METERED_ENERGY and reports_energy:
                    v = _float(reported.get(col))
                    values[col].append(0.0 if v != v else v)  # NaN -> none used
                else:
                    values[col].append(_float(reported.get(col)))
            if used:
                metered_used[(info.key, year)] = used
            park = str(reported.get("park") or "")
            parks[(info.key, year)] = park
            rows_site.append(info.key)
            rows_district.append(info.district)
            rows_park.append(park)
            rows_year.append(year)
            energy_src.append("telemetry" if has_energy else "reported")
            water_src.append("telemetry" if has_water else "reported")
    panel = Panel(
        site=np.array(rows_site, object),
        district=np.array(rows_district, object),
        park=np.array(rows_park, object),
        year=np.array(rows_year, np.int64),
        columns={c: np.array(v, np.float64) for c, v in values.items()},
        energy_source=np.array(energy_src, object),
        water_source=np.array(water_src, object),
    )
    return PanelInputs(panel, tuple(revisions), days, parks, metered_used)
