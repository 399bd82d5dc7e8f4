"""The plant as a whole: its meters' quantities, its output and the site KPIs of the catalog.

The KPI engine writes one plant row per site and window (``kpi_site_hour``, ``kpi_site_day``):
the plant meters' ``<medium>_<unit>`` quantities, kgce and kgCO2 of the purchased media, the
site's output (``output_gq``, ``output_value_cny``: the output machines' good parts and their
value) and, where a site-level meter is marked renewable, ``renewable_kgce`` and
``energy_use_kgce``. This module sums those rows per requested bucket (one query, ``sum(*)``)
and computes the site KPIs from the sums with ``analytics.catalog.evaluate_site``: the same
expressions the Green factory dashboard runs in InfluxQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any, Literal

import numpy as np

from analytics import catalog
from analytics.calendar import zone
from api.history import calendar_bucket, local_day_start_ns, local_iso
from api.state import AppState
from zhizao.influxql import duration, ident, tag_equals, time_range, tz
from zhizao.schema import ENTERPRISE_TAG, SITE_TAG, kpi_site_measurement
from zhizao.site import SiteModel

__all__ = ["PlantGrouping", "plant_rows"]

PlantGrouping = Literal["hour", "day", "month", "range"]
NS = 1_000_000_000
HOUR_NS = 3600 * NS
# the stored window each grouping sums (month: day rows, bucketed by local month here)
_SOURCE: dict[PlantGrouping, str] = {"hour": "hour", "range": "hour", "day": "day", "month": "day"}


def _local_day(ts_ns: int, site: SiteModel) -> date:
    return datetime.fromtimestamp(ts_ns / NS, zone(site.timezone)).date()


def build_query(site: SiteModel, grouping: PlantGrouping, lo: int, hi: int, prefix: str) -> str:
    where = tag_equals({SITE_TAG: site.site, ENTERPRISE_TAG: site.enterprise})
    meas = ident(kpi_site_measurement(_SOURCE[grouping], prefix))
    by = ""
    if grouping in ("hour", "day", "month"):
        step = duration("1h" if grouping == "hour" else "1d")
        by = f" GROUP BY time({step}) fill(none) {tz(site.timezone)}"
    return f"SELECT sum(*) FROM {meas} WHERE {where} AND {time_range(lo, hi)}{by}"


def _finite(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if np.isfinite(f) else None


async def plant_rows(
    state: AppState, site: SiteModel, grouping: PlantGrouping, lo: int, hi: int
) -> tuple[list[dict[str, object]], str]:
    """Rows of plant quantities and site KPIs per bucket, and the InfluxQL that read them."""
    q = build_query(site, grouping, lo, hi, state.kpi.measurement_prefix)
    series = await state.cached_query(q)
    buckets: dict[tuple[str, int, int], dict[str, float]] = {}
    for s in series:
        names = [k for k in s.values if k.startswith("sum_")]
        for i in range(len(s)):
            values = {k[4:]: _finite(s.values[k][i]) for k in names}
            present = {k: v for k, v in values.items() if v is not None}
            if not present:
                continue
            t = int(s.time_ns[i])
            if grouping == "hour":
                key = (local_iso(t, site), t, t + HOUR_NS)
            elif grouping == "day":
                d = _local_day(t, site)
                key = (d.isoformat(), t, local_day_start_ns(d + timedelta(days=1), site))
            elif grouping == "month":
                label, first, nxt = calendar_bucket("month", _local_day(t, site))
                key = (label, local_day_start_ns(first, site), local_day_start_ns(nxt, site))
            else:
                key = ("range", lo, hi)
            acc = buckets.setdefault(key, {})
            for k, v in present.items():
                acc[k] = acc.get(k, 0.0) + v
    keys: Sequence[tuple[str, int, int]] = sorted(buckets, key=lambda k: k[1])
    fields = sorted({f for b in buckets.values() for f in b})
    cols = {f: np.array([buckets[k].get(f, np.nan) for k in keys], np.float64) for f in fields}
    kpis = catalog.evaluate_site(cols, len(keys))
    rows: list[dict[str, object]] = []
    for i, (label, start, end) in enumerate(keys):
        rows.append(
            {
                "window": {
                    "label": label,
                    "start": local_iso(start, site),
                    "end": local_iso(end, site),
                },
                "quantities": dict(sorted(buckets[(label, start, end)].items())),
                "kpis": {k: {"id": k, **v.at(i)} for k, v in kpis.items()},
            }
        )
    return rows, q
