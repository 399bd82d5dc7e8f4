"""The KPI catalog and KPI history (machine, line, area, site; hour to month)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from analytics import catalog
from api.auth import PrincipalDep, SiteContext, site_access
from api.export import history_table, to_csv, to_xlsx
from api.history import Grouping, HistoryRequest, Level, history_rows
from api.params import bad_request, kpi_ids, time_range_ns
from api.plant import PlantGrouping, plant_rows
from api.schemas import HistoryOut, KpiDefinitionOut
from api.state import get_state

router = APIRouter(tags=["kpis"])

DEFAULT_KPIS: tuple[str, ...] = (
    "oee",
    "availability",
    "effectiveness",
    "quality",
    "kwh_per_good",
)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
Telemetry = Annotated[SiteContext, Depends(site_access("telemetry"))]
Aggregate = Annotated[SiteContext, Depends(site_access("aggregate"))]


@router.get(
    "/kpis",
    operation_id="list_kpis",
    summary="every KPI: id, label, definition, unit, components, InfluxQL, flag rules",
    response_model=list[KpiDefinitionOut],
)
def list_kpis(request: Request, principal: PrincipalDep) -> list[dict[str, object]]:
    state = get_state(request)
    return catalog.describe({"effectiveness_flag_above": state.kpi.effectiveness_flag_above})


def _max_days(request: Request, grouping: Grouping) -> float:
    limits = get_state(request).settings.limits
    if grouping == "hour":
        return limits.hour_max_days
    if grouping == "shift":
        return limits.shift_max_days
    return limits.day_max_days


async def _history(
    request: Request,
    ctx: SiteContext,
    level: Level,
    grouping: Grouping,
    start: str,
    end: str,
    kpi: str | None,
    area: str | None,
    line: str | None,
    machine: str | None,
) -> HistoryOut:
    site = ctx.model
    lo, hi = time_range_ns(
        site, start, end, max_days=_max_days(request, grouping), what=f"grouping {grouping!r}"
    )
    known = {(a.id, ln.id, m.id) for a, ln, m in site.machines()}
    if area is not None and area not in {a for a, _, _ in known}:
        raise bad_request("area", f"site {site.site!r} has no area {area!r}", area)
    if line is not None and line not in {ln for _, ln, _ in known}:
        raise bad_request("line", f"site {site.site!r} has no line {line!r}", line)
    if machine is not None and machine not in {m for _, _, m in known}:
        raise bad_request("machine", f"site {site.site!r} has no machine {machine!r}", machine)
    req = HistoryRequest(level, grouping, lo, hi, kpi_ids(kpi, DEFAULT_KPIS), area, line, machine)
    rows, q = await history_rows(get_state(request), site, req)
    return HistoryOut.model_validate(
        {
            "site": site.site,
            "level": level,
            "grouping": grouping,
            "timezone": site.timezone,
            "rows": rows,
            "query": q,
        }
    )


FromQ = Annotated[str, Query(alias="from", description="ISO 8601; without offset = site time")]
ToQ = Annotated[str, Query(alias="to", description="ISO 8601, exclusive")]
KpiQ = Annotated[
    str | None, Query(description="comma-separated catalog ids (default: OEE, A, E, Q, kWh/good)")
]


@router.get(
    "/sites/{site}/kpis/history",
    operation_id="kpi_history",
    summary="KPIs per machine, line, area or site, grouped by hour, shift, day, week, month or the whole range",
    response_model=HistoryOut,
    openapi_extra={"x-zhizao-policy": "telemetry"},
)
async def kpi_history(
    request: Request,
    ctx: Telemetry,
    start: FromQ,
    end: ToQ,
    level: Level = "machine",
    grouping: Grouping = "day",
    kpi: KpiQ = None,
    area: str | None = None,
    line: str | None = None,
    machine: str | None = None,
) -> HistoryOut:
    """Windows that *start* in [from, to) are included; every ratio is sum/sum of the rows'
    components (the catalog's definitions), in the site's local time."""
    return await _history(request, ctx, level, grouping, start, end, kpi, area, line, machine)


@router.get(
    "/sites/{site}/kpis/summary",
    operation_id="kpi_summary",
    summary="factory-level KPIs (the aggregate the commission may read)",
    response_model=HistoryOut,
    openapi_extra={"x-zhizao-policy": "aggregate"},
)
async def kpi_summary(
    request: Request,
    ctx: Aggregate,
    start: FromQ,
    end: ToQ,
    grouping: Grouping = "month",
    kpi: KpiQ = None,
) -> HistoryOut:
    return await _history(request, ctx, "site", grouping, start, end, kpi, None, None, None)


@router.get(
    "/sites/{site}/export/history.{fmt}",
    operation_id="export_kpi_history",
    summary="the KPI history table as CSV (UTF-8 with BOM) or XLSX (with definitions and query)",
    response_class=Response,
    responses={
        200: {
            "content": {
                "text/csv": {},
                XLSX: {},
            }
        }
    },
    openapi_extra={"x-zhizao-policy": "telemetry"},
)
async def export_history(
    request: Request,
    ctx: Telemetry,
    fmt: Literal["csv", "xlsx"],
    start: FromQ,
    end: ToQ,
    level: Level = "machine",
    grouping: Grouping = "day",
    kpi: KpiQ = None,
    area: str | None = None,
    line: str | None = None,
    machine: str | None = None,
) -> Response:
    out = await _history(request, ctx, level, grouping, start, end, kpi, area, line, machine)
    ids = kpi_ids(kpi, DEFAULT_KPIS)
    return _file(out, ids, fmt, f"{ctx.site}-kpi-{level}-{grouping}", ctx, start, end)


def _file(
    out: HistoryOut, ids: list[str], fmt: str, name: str, ctx: SiteContext, start: str, end: str
) -> Response:
    rows = [r.model_dump() for r in out.rows]
    header, table = history_table(rows, ids)
    if fmt == "csv":
        return Response(
            to_csv(header, table),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    body = to_xlsx(
        header,
        table,
        title="table",
        kpis=ids,
        query=out.query,
        about={
            "site": ctx.site,
            "level": out.level,
            "grouping": out.grouping,
            "from": start,
            "to": end,
            "timezone": ctx.model.timezone,
        },
    )
    return Response(
        body,
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
    )


def _view_ids(view: str) -> tuple[str, ...]:
    return tuple(k.id for k in catalog.CATALOG if k.view == view)


@router.get(
    "/sites/{site}/target",
    operation_id="target_vs_actual",
    summary="parts vs target hour by hour or per shift (target = PBT / PRI; null without a product or a plan)",
    response_model=HistoryOut,
    openapi_extra={"x-zhizao-policy": "telemetry"},
)
async def target_vs_actual(
    request: Request,
    ctx: Telemetry,
    start: FromQ,
    end: ToQ,
    level: Level = "machine",
    grouping: Literal["hour", "shift", "day"] = "hour",
    line: str | None = None,
    machine: str | None = None,
) -> HistoryOut:
    ids = ",".join((*_view_ids("target"), "oee"))
    return await _history(request, ctx, level, grouping, start, end, ids, None, line, machine)


@router.get(
    "/sites/{site}/energy",
    operation_id="energy",
    summary="kWh, kgce and kgCO2 per good and per produced part, with the factor and coefficient provenance",
    openapi_extra={"x-zhizao-policy": "telemetry"},
)
async def energy(
    request: Request,
    ctx: Telemetry,
    start: FromQ,
    end: ToQ,
    level: Level = "site",
    grouping: Grouping = "range",
) -> dict[str, Any]:
    out = await _history(
        request, ctx, level, grouping, start, end, ",".join(_view_ids("energy")), None, None, None
    )
    computer = get_state(request).site_computer(ctx.model)
    return {
        **out.model_dump(),
        "conversion": {
            "id": computer.conversion.id,
            "convention": computer.conversion.convention,
            "year": computer.conversion.year,
            "source": computer.conversion.source,
            "coefficients": {
                k: {"value": v.value, "unit": v.unit}
                for k, v in computer.conversion.coefficients.items()
            },
        },
        "emission_factors": [
            {
                "id": f.id,
                "medium": f.medium,
                "value": f.value,
                "unit": f.unit,
                "year": f.year,
                "publisher": f.publisher,
            }
            for f in computer.factors
        ],
    }


@router.get(
    "/sites/{site}/plant",
    operation_id="plant",
    summary="the plant's metered quantities, its output, water and energy per unit of output "
    "and the renewable share (the catalog's site KPIs), per hour, day, month or range",
    openapi_extra={"x-zhizao-policy": "telemetry"},
)
async def plant(
    request: Request,
    ctx: Telemetry,
    start: FromQ,
    end: ToQ,
    grouping: PlantGrouping = "range",
) -> dict[str, Any]:
    """From the KPI engine's plant rows (``kpi_site_hour``; ``kpi_site_day`` for day and month):
    each bucket's sums and the site KPIs over them (sum over sum). A KPI whose field the site
    does not have (no water meter, no meter marked renewable) is null with its reason, not 0."""
    site = ctx.model
    lo, hi = time_range_ns(
        site,
        start,
        end,
        max_days=_max_days(request, "hour" if grouping == "hour" else "day"),
        what=f"grouping {grouping!r}",
    )
    rows, q = await plant_rows(get_state(request), site, grouping, lo, hi)
    return {
        "site": site.site,
        "grouping": grouping,
        "timezone": site.timezone,
        "output_machines": site.output_machines(),
        "renewable_meters": [m.id for m in site.meters if m.renewable and not m.asset],
        "rows": rows,
        "query": q,
    }


@router.get(
    "/sites/{site}/losses",
    operation_id="losses",
    summary="the six big losses (Nakajima) and the ISO 22400 time elements, per machine, line, area or site",
    response_model=HistoryOut,
    openapi_extra={"x-zhizao-policy": "telemetry"},
)
async def losses(
    request: Request,
    ctx: Telemetry,
    start: FromQ,
    end: ToQ,
    level: Level = "line",
    grouping: Grouping = "range",
    line: str | None = None,
    machine: str | None = None,
) -> HistoryOut:
    """Losses in seconds; with PRI x GQ they add up to PBT. Each row also carries the ISO time
    elements (POT, planned down, PBT, APT, AUST, ADET, ADOT) and both factor splits. The
    stop-level view (reasons, Pareto, MTBF/MTTR) is ``.../machines/{machine}/stops``."""
    return await _history(
        request, ctx, level, grouping, start, end, ",".join(LOSS_IDS), None, line, machine
    )


LOSS_IDS = (*_view_ids("losses"), "availability", "availability_tpm", "performance_tpm", "oee")


@router.get(
    "/sites/{site}/export/losses.{fmt}",
    operation_id="export_losses",
    summary="the losses table as CSV (UTF-8 with BOM) or XLSX (with definitions and query)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, XLSX: {}}}},
    openapi_extra={"x-zhizao-policy": "telemetry"},
)
async def export_losses(
    request: Request,
    ctx: Telemetry,
    fmt: Literal["csv", "xlsx"],
    start: FromQ,
    end: ToQ,
    level: Level = "line",
    grouping: Grouping = "range",
    line: str | None = None,
    machine: str | None = None,
) -> Response:
    out = await _history(
        request, ctx, level, grouping, start, end, ",".join(LOSS_IDS), None, line, machine
    )
    return _file(out, list(LOSS_IDS), fmt, f"{ctx.site}-losses-{level}-{grouping}", ctx, start, end)
