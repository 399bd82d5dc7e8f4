"""The commission's view: the action plan's indicators per district and cohort vs the targets,
with coverage, the versioned configuration behind them, drill-down to the factories' reported
inputs (never raw telemetry), and exports. Commission and admin tokens only."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from analytics.indicators import get_indicator
from api.auth import Principal, cross_site_access
from api.commission.export import indicator_csv, indicator_xlsx
from api.commission.serialize import definitions, flat_row, ranking_json
from api.commission.service import (
    FACTORY_ROWS,
    SITES,
    CommissionCache,
    TableRequest,
    config_revisions,
    indicator_table_json,
    load_config,
    public_table,
    reported_inputs,
    site_infos,
    store_config,
)
from api.state import get_state

router = APIRouter(tags=["commission"])

CommissionDep = Annotated[Principal, Depends(cross_site_access("commission"))]
POLICY = {"x-zhizao-policy": "commission"}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class ConfigIn(BaseModel):
    document: dict[str, Any] = Field(
        description="cohorts, targets, factors, rule sets (analytics/commission.sample.yaml)"
    )
    reason: str = Field(min_length=1, max_length=1000, description="why this change")


class ConfigOut(BaseModel):
    revision: int
    source: str
    version: str
    author: str
    reason: str
    created_at: datetime
    created: bool = True
    document: dict[str, Any]


class ConfigRevisionOut(BaseModel):
    revision: int
    source: str
    author: str
    reason: str
    created_at: datetime


def _default_year() -> int:
    return date.today().year - 1  # the last complete year


Cohort = Annotated[str | None, Query(max_length=64, description="cohort id (default: the first)")]
Year = Annotated[int | None, Query(ge=1990, le=2100, description="default: last complete year")]
Rounding = Annotated[
    bool | None, Query(description="round intensities to 4 decimals first (default: config)")
]
RuleSet = Annotated[str | None, Query(max_length=32, description="GBT36132-2018 or GBT36132-2025")]
AsOf = Annotated[
    datetime | None,
    Query(description="the figures as they were at this time (configuration and reports)"),
]
ConfigRev = Annotated[int | None, Query(ge=1, le=2**31 - 1, description="a configuration revision")]


def _aware(as_of: datetime | None) -> datetime | None:
    """``as_of`` spans factories in several time zones: it must say its own offset."""
    if as_of is not None and as_of.tzinfo is None:
        raise HTTPException(
            422,
            detail=[{"loc": ["query", "as_of"], "type": "value_error",
                     "msg": "as_of needs a UTC offset, e.g. 2025-06-30T00:00:00+08:00"}],
        )  # fmt: skip
    return as_of


def table_request(
    cohort: Cohort = None,
    year: Year = None,
    statistical_rounding: Rounding = None,
    green_rule_set: RuleSet = None,
    as_of: AsOf = None,
    config_revision: ConfigRev = None,
) -> TableRequest:
    """The table's query parameters, shared by the JSON, XLSX and CSV routes."""
    return TableRequest(
        cohort,
        year or _default_year(),
        statistical_rounding,
        green_rule_set,
        _aware(as_of),
        config_revision,
    )


TableQuery = Annotated[TableRequest, Depends(table_request)]


@router.get(
    "/commission/config",
    operation_id="commission_config",
    summary="the commission's configuration in force (or a revision)",
    response_model=ConfigOut,
    openapi_extra=POLICY,
)
def get_config(
    request: Request, _p: CommissionDep, revision: ConfigRev = None, as_of: AsOf = None
) -> ConfigOut:
    with get_state(request).session() as s:
        rev = load_config(s, revision=revision, as_of=_aware(as_of))
    return ConfigOut(
        revision=rev.revision, source=rev.source, version=rev.version, author=rev.author,
        reason=rev.reason, created_at=rev.created_at, document=dict(rev.document),
    )  # fmt: skip


@router.put(
    "/commission/config",
    operation_id="put_commission_config",
    summary="store a new configuration revision (validated; identical = no new revision)",
    response_model=ConfigOut,
    openapi_extra=POLICY,
)
def put_config(
    request: Request, principal: CommissionDep, body: Annotated[ConfigIn, Body()]
) -> ConfigOut:
    state = get_state(request)
    with state.session() as s:
        rev, created = store_config(s, body.document, author=principal.name, reason=body.reason)
    CommissionCache.of(request).reset()
    return ConfigOut(
        revision=rev.revision, source=rev.source, version=rev.version, author=rev.author,
        reason=rev.reason, created_at=rev.created_at, created=created,
        document=dict(rev.document),
    )  # fmt: skip


@router.get(
    "/commission/config/revisions",
    operation_id="commission_config_revisions",
    summary="every configuration revision: who, when, why",
    response_model=list[ConfigRevisionOut],
    openapi_extra=POLICY,
)
def get_config_revisions(request: Request, _p: CommissionDep) -> list[ConfigRevisionOut]:
    with get_state(request).session() as s:
        rows = config_revisions(s)
        return [
            ConfigRevisionOut(
                revision=r.revision,
                source=r.source,
                author=r.author,
                reason=r.reason,
                created_at=r.created_at,
            )
            for r in rows
        ]


@router.get(
    "/commission/indicator-definitions",
    operation_id="commission_indicator_definitions",
    summary="every indicator: labels, unit, kind, definition, inputs",
    openapi_extra=POLICY,
)
def get_definitions(_p: CommissionDep) -> list[dict[str, Any]]:
    return definitions()


@router.get(
    "/commission/indicators",
    operation_id="commission_indicators",
    summary="the indicator table per district, park and cohort vs the 2020/2025 targets",
    openapi_extra=POLICY,
)
async def get_indicators(
    request: Request,
    _p: CommissionDep,
    req: TableQuery,
) -> dict[str, Any]:
    return public_table(await indicator_table_json(request, req))


IndicatorId = Annotated[str, Query(min_length=1, max_length=64, description="indicator id")]


def _known_indicator(indicator: str | None) -> str | None:
    if indicator is None:
        return None
    try:
        return get_indicator(indicator).id
    except KeyError as exc:
        raise HTTPException(
            422,
            detail=[{"loc": ["query", "indicator"], "msg": str(exc.args[0]),
                     "type": "value_error"}],
        ) from exc  # fmt: skip


@router.get(
    "/commission/indicator-rows",
    operation_id="commission_indicator_rows",
    summary="the indicator table as flat rows (one object of scalars per row), for Grafana's "
    "JSON datasource and other tools that cannot unnest",
    openapi_extra=POLICY,
)
async def get_indicator_rows(
    request: Request,
    _p: CommissionDep,
    req: TableQuery,
    level: Annotated[Literal["district", "park", "cohort"] | None, Query()] = None,
    indicator: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> list[dict[str, Any]]:
    wanted = _known_indicator(indicator)
    table = await indicator_table_json(request, req)
    return [
        flat_row(r)
        for r in table["rows"]
        if (level is None or r["level"] == level) and (wanted is None or r["indicator"] == wanted)
    ]


@router.get(
    "/commission/ranking",
    operation_id="commission_ranking",
    summary="the cohort's factories ranked by one indicator, best first in the indicator's "
    "direction; factories without a figure last, with the reason",
    openapi_extra=POLICY,
)
async def get_ranking(
    request: Request, _p: CommissionDep, req: TableQuery, indicator: IndicatorId
) -> dict[str, Any]:
    wanted = _known_indicator(indicator)
    assert wanted is not None
    table = await indicator_table_json(request, dataclasses.replace(req, rank_by=wanted))
    out = ranking_json(table[FACTORY_ROWS], table[SITES], wanted)
    return {"cohort": table["cohort"], "year": table["year"], **out}


@router.get(
    "/commission/cohorts",
    operation_id="commission_cohorts",
    summary="the configured cohorts: id, name, base year, number of factories",
    openapi_extra=POLICY,
)
def get_cohorts(request: Request, _p: CommissionDep) -> list[dict[str, Any]]:
    with get_state(request).session() as s:
        rev = load_config(s)
    return [
        {"id": c.id, "name": c.name, "base_year": c.base_year, "factories": len(c.sites)}
        for c in rev.config.cohorts
    ]


@router.get(
    "/commission/years",
    operation_id="commission_years",
    summary="the years a cohort can be reported for, newest first: from the last complete "
    "year back to its base year",
    openapi_extra=POLICY,
)
def get_years(request: Request, _p: CommissionDep, cohort: Cohort = None) -> list[dict[str, int]]:
    with get_state(request).session() as s:
        rev = load_config(s)
    cohort_id = cohort or rev.config.cohorts[0].id
    try:
        base = rev.config.cohort(cohort_id).base_year
    except KeyError as exc:
        raise HTTPException(
            422,
            detail=[{"loc": ["query", "cohort"], "msg": str(exc.args[0]), "type": "value_error"}],
        ) from exc
    return [{"year": y} for y in range(max(_default_year(), base), base - 1, -1)]


@router.get(
    "/commission/indicators.xlsx",
    operation_id="commission_indicators_xlsx",
    summary="the indicator table as XLSX (levels, definitions, coverage, input revisions)",
    response_class=Response,
    responses={200: {"content": {XLSX: {}}}},
    openapi_extra=POLICY,
)
async def get_indicators_xlsx(
    request: Request,
    _p: CommissionDep,
    req: TableQuery,
) -> Response:
    table = await indicator_table_json(request, req)
    name = f"indicators-{table['cohort']}-{table['year']}.xlsx"
    return Response(
        indicator_xlsx(table),
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get(
    "/commission/indicators.csv",
    operation_id="commission_indicators_csv",
    summary="the indicator table as CSV (UTF-8 with BOM)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
    openapi_extra=POLICY,
)
async def get_indicators_csv(
    request: Request,
    _p: CommissionDep,
    req: TableQuery,
) -> Response:
    table = await indicator_table_json(request, req)
    name = f"indicators-{table['cohort']}-{table['year']}.csv"
    return Response(
        indicator_csv(table),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get(
    "/commission/factories",
    operation_id="commission_factories",
    summary="a district's factories (or the cohort's) with their reported inputs and yearly "
    "metered totals; never raw telemetry",
    openapi_extra=POLICY,
)
async def get_factories(
    request: Request,
    _p: CommissionDep,
    cohort: Cohort = None,
    year: Year = None,
    district: Annotated[str | None, Query(max_length=256)] = None,
    as_of: AsOf = None,
) -> dict[str, Any]:
    req = TableRequest(cohort, year or _default_year(), None, None, _aware(as_of), None)
    table = await indicator_table_json(request, req)
    state = get_state(request)
    with state.session() as s:
        rev = load_config(s, as_of=as_of)
        members = rev.config.cohort(table["cohort"]).sites
        infos = {i.key: i for i in site_infos(s, members)}
        reports = reported_inputs(s, list(infos), [table["year"]], as_of)
    green = {f["site"]: f for f in table["green_factory"]["factories"]}
    metered = {
        (i["site"], i["period"]): (i["telemetry_days"], i["metered"]) for i in table["inputs"]
    }
    out = []
    for key in sorted(infos):
        info = infos[key]
        if district is not None and info.district != district:
            continue
        rep = reports.get((key, table["year"]))
        out.append(
            {
                "site": key,
                "name": info.name,
                "district": info.district,
                "report": None
                if rep is None
                else {
                    "values": dict(rep[0]),
                    "revision": rep[1].revision,
                    "author": rep[1].author,
                    "created_at": rep[1].created_at,
                },
                # yearly totals of the plant meters (sums of the engine's day rows), not raw data
                "metered": metered.get((key, str(table["year"])), (None, {}))[1],
                "telemetry_days": metered.get((key, str(table["year"])), (None, {}))[0],
                "green_factory": green.get(key),
            }
        )
    return {"cohort": table["cohort"], "year": table["year"], "district": district,
            "factories": out}  # fmt: skip
