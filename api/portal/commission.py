"""The commission's pages: the indicator table vs the 2020/2025 targets per cohort and district
with coverage and flags, a district's factories with their reported inputs (never telemetry),
and the XLSX download.

Every number comes from the API's commission routes themselves (``get_indicators``,
``get_factories``, ``get_indicators_xlsx``), and access is the API's ``cross_site_access``
decision: commission and admin tokens only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from api.auth import Principal, cross_site_access
from api.commission.service import load_config
from api.portal.i18n import translator
from api.portal.pages import error_page, html_error, lang_of, render
from api.portal.router import require_session
from api.reports.fields import FIELDS_BY_ID
from api.routers.commission import (
    get_factories,
    get_indicators,
    get_indicators_xlsx,
    table_request,
)
from api.state import get_state

__all__ = ["router"]

router = APIRouter(prefix="/portal", include_in_schema=False)
_commission_only = cross_site_access("commission")


@dataclass
class IndicatorView:
    indicator: str
    label: str
    other_label: str
    unit: str
    value: float | None
    text: str
    targets: dict[int, dict[str, Any]]
    reported: int
    factories: int
    missing: list[str]
    complete: bool
    flags: list[str]
    variant: str


@dataclass
class GroupView:
    level: str
    group: str
    rows: list[IndicatorView] = field(default_factory=list)


def _number(value: Any) -> str:
    if value is None:
        return "—"
    v = float(value)
    if v == 0 or abs(v) >= 1000:
        return f"{v:,.1f}"
    if abs(v) >= 1:
        return f"{v:,.3f}"
    return f"{v:.6f}"


def _groups(table: dict[str, Any], lang: str) -> list[GroupView]:
    groups: dict[tuple[str, str], GroupView] = {}
    for r in table["rows"]:
        if r["level"] not in ("cohort", "district"):
            continue
        key = (r["level"], str(r["group"]))
        g = groups.setdefault(key, GroupView(r["level"], str(r["group"])))
        zh, en = r["label_zh"], r["label_en"]
        g.rows.append(
            IndicatorView(
                indicator=r["indicator"],
                label=zh if lang == "zh" else en,
                other_label=en if lang == "zh" else zh,
                unit=r["unit"],
                value=r["value"],
                text=_number(r["value"]),
                targets={int(t["year"]): t for t in r["targets"]},
                reported=r["coverage"]["reported"],
                factories=r["coverage"]["factories"],
                missing=list(r["coverage"]["missing"]),
                complete=bool(r["complete"]),
                flags=list(r["flags"]),
                variant=str(r.get("variant") or ""),
            )
        )
    return sorted(groups.values(), key=lambda g: (g.level != "cohort", g.group))


def _year(raw: str | None, t: Callable[..., str]) -> int | str | None:
    """The year asked for (None: the API's default), or the sentence saying why not."""
    if raw is None or raw == "":
        return None
    if raw.isdigit() and 1990 <= int(raw) <= 2100:
        return int(raw)
    return t("commission.bad_year")


async def _commission_principal(request: Request) -> Principal | Response:
    principal = await require_session(request)
    if not isinstance(principal, Principal):
        return principal
    try:
        _commission_only(request, principal)
    except HTTPException as exc:
        return error_page(request, exc, principal)
    return principal


def _table_error(request: Request, exc: HTTPException, principal: Principal) -> Response:
    t = translator(lang_of(request))
    if exc.status_code == 404:  # no configuration stored yet
        return html_error(request, 404, t("commission.no_config"), principal)
    if exc.status_code == 422:
        return html_error(request, 400, t("commission.bad_cohort"), principal)
    return error_page(request, exc, principal)


def _cohorts(request: Request) -> list[tuple[str, str]]:
    with get_state(request).session() as s:
        rev = load_config(s)
    return [(c.id, c.name) for c in rev.config.cohorts]


@router.get("/commission")
async def commission_table(
    request: Request, cohort: str | None = None, year: str | None = None
) -> Response:
    principal = await _commission_principal(request)
    if not isinstance(principal, Principal):
        return principal
    lang = lang_of(request)
    t = translator(lang)
    y = _year(year, t)
    if isinstance(y, str):
        return html_error(request, 400, y, principal)
    cohort = (cohort or "").strip()[:64] or None
    try:
        cohorts = await asyncio.to_thread(_cohorts, request)
        table = await get_indicators(request, principal, table_request(cohort=cohort, year=y))
    except HTTPException as exc:
        return _table_error(request, exc, principal)
    query = urlencode({"cohort": table["cohort"], "year": table["year"]})
    return render(
        request,
        "commission.html",
        principal=principal,
        title=t("commission.title"),
        table=table,
        groups=_groups(table, lang),
        cohorts=cohorts,
        years=list(range(date.today().year, 2014, -1)),
        query=query,
    )


def _inputs(values: dict[str, Any], lang: str) -> list[dict[str, Any]]:
    out = []
    for fid, value in values.items():
        f = FIELDS_BY_ID.get(fid)
        out.append(
            {
                "id": fid,
                "label": (f.label_zh if lang == "zh" else f.label_en) if f else fid,
                "unit": f.unit if f and f.unit not in ("1", "text") else "",
                "value": value,
            }
        )
    return out


@router.get("/commission/districts/{district}")
async def commission_district(
    request: Request, district: str, cohort: str | None = None, year: str | None = None
) -> Response:
    principal = await _commission_principal(request)
    if not isinstance(principal, Principal):
        return principal
    lang = lang_of(request)
    t = translator(lang)
    y = _year(year, t)
    if isinstance(y, str):
        return html_error(request, 400, y, principal)
    district = district[:256]
    cohort = (cohort or "").strip()[:64] or None
    try:
        table = await get_indicators(request, principal, table_request(cohort=cohort, year=y))
        found = await get_factories(
            request, principal, cohort=cohort, year=y, district=district, as_of=None
        )
    except HTTPException as exc:
        return _table_error(request, exc, principal)
    groups = [g for g in _groups(table, lang) if g.level == "district" and g.group == district]
    if not groups and not found["factories"]:
        return html_error(request, 404, t("commission.no_district", district=district), principal)
    factories = [
        {**f, "inputs": _inputs(f["report"]["values"], lang) if f["report"] else []}
        for f in found["factories"]
    ]
    return render(
        request,
        "district.html",
        principal=principal,
        title=t("commission.district_title", district=district),
        district=district,
        table=table,
        groups=groups,
        factories=factories,
        query=urlencode({"cohort": table["cohort"], "year": table["year"]}),
    )


@router.get("/commission/indicators.xlsx")
async def commission_xlsx(
    request: Request, cohort: str | None = None, year: str | None = None
) -> Response:
    """The API's XLSX export (``get_indicators_xlsx``) for a download link of the portal."""
    principal = await _commission_principal(request)
    if not isinstance(principal, Principal):
        return principal
    t = translator(lang_of(request))
    y = _year(year, t)
    if isinstance(y, str):
        return html_error(request, 400, y, principal)
    try:
        response = await get_indicators_xlsx(
            request, principal, table_request(cohort=(cohort or "").strip()[:64] or None, year=y)
        )
    except HTTPException as exc:
        return _table_error(request, exc, principal)
    response.headers["Cache-Control"] = "no-store"
    return response
