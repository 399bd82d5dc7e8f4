"""Yearly telemetry per factory for the commission: sums of the engine's ``kpi_site_month`` rows.

The commission never sees raw shop-floor data: what it gets from InfluxDB are the plant meters'
components (purchased energy per medium, water intake, kgce, kgCO2) that the KPI engine writes
per local day and sums per local month (``kpi_site_month``, with ``days`` = the day rows in it),
summed by InfluxDB per site over each local calendar year. One statement per (time zone, year)
and chunk of sites, all in one request, ``GROUP BY site``: twelve points per site and year.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from analytics.calendar import zone
from ingest.influx.reader import ResultSeries
from zhizao.influxql import ident, tag_in, time_range
from zhizao.schema import SITE_TAG, kpi_site_measurement

__all__ = ["YearTelemetry", "telemetry_statements", "year_bounds_ns", "yearly_telemetry"]

NS = 1_000_000_000
# at most this many sites per statement: InfluxQL's OR chain stays short and the server's
# query planner linear
SITES_PER_STATEMENT = 200


@dataclass(frozen=True, slots=True)
class YearTelemetry:
    """One site's metered quantities over one local calendar year (field -> sum)."""

    site: str
    year: int
    sums: Mapping[str, float]
    days: int  # day rows summed (365/366 = a complete year)


def year_bounds_ns(year: int, timezone: str) -> tuple[int, int]:
    tzinfo = zone(timezone)
    lo = datetime(year, 1, 1, tzinfo=tzinfo)
    hi = datetime(year + 1, 1, 1, tzinfo=tzinfo)
    return int(lo.timestamp()) * NS, int(hi.timestamp()) * NS


def telemetry_statements(
    sites_by_tz: Mapping[str, Sequence[str]], years: Iterable[int], prefix: str = "kpi_"
) -> list[tuple[str, int, str]]:
    """(time zone, year, statement) for every chunk of sites."""
    measurement = ident(kpi_site_measurement("month", prefix))
    out: list[tuple[str, int, str]] = []
    for year in sorted(set(years)):
        for tz_name, sites in sorted(sites_by_tz.items()):
            lo, hi = year_bounds_ns(year, tz_name)
            ordered = sorted(set(sites))
            for i in range(0, len(ordered), SITES_PER_STATEMENT):
                chunk = ordered[i : i + SITES_PER_STATEMENT]
                q = (
                    f"SELECT sum(*) FROM {measurement} WHERE "
                    f"{tag_in(SITE_TAG, chunk)} AND {time_range(lo, hi)} "
                    f"GROUP BY {ident(SITE_TAG)}"
                )
                out.append((tz_name, year, q))
    return out


async def yearly_telemetry(
    query: Callable[[str], Awaitable[list[ResultSeries]]],
    sites_by_tz: Mapping[str, Sequence[str]],
    years: Iterable[int],
    prefix: str = "kpi_",
) -> dict[tuple[str, int], YearTelemetry]:
    """Sums per (site, year); a site with no day rows in a year is absent (not zero)."""
    planned = telemetry_statements(sites_by_tz, years, prefix)
    if not planned:
        return {}
    series = await query(";\n".join(q for _, _, q in planned))
    out: dict[tuple[str, int], YearTelemetry] = {}
    for s in series:
        _, year, _ = planned[s.statement_id]
        site = s.tags.get(SITE_TAG)
        if site is None or not len(s):
            continue
        sums: dict[str, float] = {}
        days = 0
        for col, values in s.values.items():
            v = values[0]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            if col == "sum_days":
                days = int(v)
            elif col.startswith("sum_"):
                sums[col[4:]] = float(v)
        out[(site, year)] = YearTelemetry(site, year, sums, days)
    return out
