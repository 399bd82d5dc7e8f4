"""Request parameters shared by the routes, validated with errors that name the field."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import HTTPException

from analytics import catalog
from analytics.calendar import zone
from zhizao.site import SiteModel

__all__ = ["bad_request", "kpi_ids", "time_range_ns"]

NS = 1_000_000_000
DAY_NS = 86_400 * NS


def bad_request(field: str, message: str, value: Any = None, where: str = "query") -> HTTPException:
    """422 in FastAPI's own validation shape, so clients handle one error format."""
    item: dict[str, Any] = {"loc": [where, field], "msg": message, "type": "value_error"}
    if value is not None:
        item["input"] = value
    return HTTPException(422, detail=[item])


def parse_time_ns(field: str, text: str, site: SiteModel) -> int:
    """ISO 8601; a time without an offset is local to the site."""
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise bad_request(
            field,
            "not an ISO 8601 time (2026-11-26T08:00:00+08:00, or local 2026-11-26T08:00)",
            text,
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone(site.timezone))
    return int(dt.timestamp()) * NS + dt.microsecond * 1000


def time_range_ns(
    site: SiteModel, start: str, end: str, *, max_days: float | None = None, what: str = ""
) -> tuple[int, int]:
    lo = parse_time_ns("from", start, site)
    hi = parse_time_ns("to", end, site)
    if hi <= lo:
        raise bad_request("to", "`to` must be after `from`", end)
    if max_days is not None and hi - lo > max_days * DAY_NS:
        raise bad_request(
            "to",
            f"the range is longer than {max_days:g} days, the most {what or 'this request'} "
            "allows: ask for a shorter range or a coarser grouping",
            end,
        )
    return lo, hi


def kpi_ids(text: str | None, default: tuple[str, ...]) -> list[str]:
    """``oee,availability``: catalog ids, each checked."""
    if not text:
        return list(default)
    ids = [t.strip() for t in text.split(",") if t.strip()]
    for kid in ids:
        if kid in catalog.SITE_KPIS:
            raise bad_request(
                "kpi", f"{kid!r} is a site KPI (the plant as a whole): GET .../plant has it", kid
            )
        if kid not in catalog.KPIS:
            raise bad_request("kpi", f"unknown KPI id {kid!r}; GET /api/v1/kpis lists them", kid)
    return ids
