"""Factory reports: read, submit (a new revision), history, template and import.

Reads use the ``aggregate`` policy (a commission token reads every factory's reported inputs);
writes use ``report`` (factory admins of the site and admins). A refused report answers 422
with FastAPI-style ``detail`` entries naming each field (``loc: ["body", "values", field]``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    HTTPException,
    Query,
    Request,
    Response,
    UploadFile,
)
from fastapi import Path as PathParam

from api.auth import PrincipalDep, SiteContext, site_access
from api.reports.fields import FIELDS
from api.reports.importer import import_reports
from api.reports.schemas import (
    ImportOut,
    IssueOut,
    PeriodIssueOut,
    RefusedCellOut,
    ReportFieldOut,
    ReportIn,
    ReportOut,
    ReportSummaryOut,
    RevisionOut,
    StoredPeriodOut,
    SubmitOut,
)
from api.reports.service import (
    ConcurrentSubmission,
    ValidationFailed,
    current_report,
    get_revision,
    list_reports,
    list_revisions,
    submit_report,
)
from api.reports.template import build_template
from api.reports.validate import FieldIssue
from api.state import get_state

router = APIRouter(tags=["reports"])

Aggregate = Annotated[SiteContext, Depends(site_access("aggregate"))]
Write = Annotated[SiteContext, Depends(site_access("report"))]
PERIOD_PATTERN = r"^\d{4}(-\d{2})?$"
PeriodP = Annotated[
    str, PathParam(description="YYYY (annual) or YYYY-MM (monthly)", pattern=PERIOD_PATTERN)
]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAX_UPLOAD_BYTES = 10 * 1024 * 1024


def _no_report(period: str) -> HTTPException:
    return HTTPException(404, detail=f"no report for period {period!r}")


def _loc(issue: FieldIssue) -> list[str]:
    if issue.field == "period":
        return ["path", "period"]
    if issue.field in ("reason", "values"):
        return ["body", issue.field]
    if issue.field.startswith("units."):
        return ["body", "units", issue.field.removeprefix("units.")]
    return ["body", "values", issue.field]


@router.get(
    "/report-fields",
    operation_id="list_report_fields",
    summary="the report field catalog (ids, names in Chinese and English, units, rules)",
    response_model=list[ReportFieldOut],
)
def report_fields(principal: PrincipalDep) -> list[ReportFieldOut]:
    return [ReportFieldOut.model_validate(f.describe()) for f in FIELDS]


@router.get(
    "/sites/{site}/reports",
    operation_id="list_reports",
    summary="the site's reported periods with their current revision",
    response_model=list[ReportSummaryOut],
    openapi_extra={"x-zhizao-policy": "aggregate"},
)
def reports(request: Request, ctx: Aggregate) -> list[ReportSummaryOut]:
    with get_state(request).session() as s:
        rows = list_reports(s, ctx.site)
    return [
        ReportSummaryOut(
            period=r.period,
            kind=r.kind,
            revision=r.revision,
            author=r.author,
            created_at=r.created_at,
        )
        for r in rows
    ]


@router.get(
    "/sites/{site}/reports/{period}",
    operation_id="get_report",
    summary="a period's report at its current revision",
    response_model=ReportOut,
    openapi_extra={"x-zhizao-policy": "aggregate"},
)
def report(request: Request, ctx: Aggregate, period: PeriodP) -> ReportOut:
    with get_state(request).session() as s:
        snap = current_report(s, ctx.site, period)
    if snap is None:
        raise _no_report(period)
    return ReportOut.of(snap)


@router.put(
    "/sites/{site}/reports/{period}",
    operation_id="put_report",
    summary="submit a period's report: a new revision (never an update in place)",
    response_model=SubmitOut,
    responses={
        409: {"description": "another submission of the period was stored at the same time"}
    },
    openapi_extra={"x-zhizao-policy": "report"},
)
def put_report(request: Request, ctx: Write, period: PeriodP, body: ReportIn) -> SubmitOut:
    with get_state(request).session() as s:
        try:
            result = submit_report(
                s,
                ctx.site,
                period,
                body.values,
                author=ctx.principal.name,
                reason=body.reason,
                units=body.units,
            )
        except ValidationFailed as exc:
            s.rollback()
            raise HTTPException(
                422,
                detail=[{"loc": _loc(e), "msg": e.message, "type": e.code} for e in exc.errors],
            ) from None
        except ConcurrentSubmission as exc:
            s.rollback()
            raise HTTPException(409, detail=str(exc)) from None
        s.commit()
    return SubmitOut(
        created=result.created,
        message=result.message,
        report=ReportOut.of(result.report),
        warnings=[IssueOut.of(w) for w in result.warnings],
    )


@router.get(
    "/sites/{site}/reports/{period}/revisions",
    operation_id="list_report_revisions",
    summary="a report's history: who, when, why and what changed",
    response_model=list[RevisionOut],
    openapi_extra={"x-zhizao-policy": "aggregate"},
)
def revisions(request: Request, ctx: Aggregate, period: PeriodP) -> list[RevisionOut]:
    with get_state(request).session() as s:
        history = list_revisions(s, ctx.site, period)
    if history is None:
        raise _no_report(period)
    return [RevisionOut.of(r) for r in history]


@router.get(
    "/sites/{site}/reports/{period}/revisions/{n}",
    operation_id="get_report_revision",
    summary="one revision of a report (old figures stay readable)",
    response_model=ReportOut,
    openapi_extra={"x-zhizao-policy": "aggregate"},
)
def revision(
    request: Request,
    ctx: Aggregate,
    period: PeriodP,
    n: Annotated[int, PathParam(ge=1, le=1_000_000, description="revision number")],
) -> ReportOut:
    with get_state(request).session() as s:
        snap = get_revision(s, ctx.site, period, n)
    if snap is None:
        raise HTTPException(404, detail=f"no revision {n} of the report for period {period!r}")
    return ReportOut.of(snap)


@router.get(
    "/sites/{site}/report-template.xlsx",
    operation_id="get_report_template",
    summary="the XLSX report template (one sheet per period kind, Chinese and English names)",
    response_class=Response,
    responses={200: {"content": {XLSX: {}}}},
    openapi_extra={"x-zhizao-policy": "aggregate"},
)
def template(ctx: Aggregate) -> Response:
    body = build_template(ctx.site, ctx.model.name)
    return Response(
        body,
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{ctx.site}-report-template.xlsx"'},
    )


@router.post(
    "/sites/{site}/reports/import",
    operation_id="import_reports",
    summary="import a filled template (XLSX) or a CSV; a file with errors stores nothing "
    "unless store_valid",
    response_model=ImportOut,
    responses={409: {"description": "another submission of a period was stored at the same time"}},
    openapi_extra={"x-zhizao-policy": "report"},
)
def import_file(
    request: Request,
    ctx: Write,
    file: Annotated[UploadFile, File(description="the filled template (XLSX) or a CSV")],
    store_valid: Annotated[
        bool, Query(description="store the valid periods of a file with errors")
    ] = False,
    period: Annotated[
        str | None,
        Query(
            description="the period of a one-row CSV without a period column",
            pattern=PERIOD_PATTERN,
        ),
    ] = None,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> ImportOut:
    data = file.file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, detail="the file is larger than 10 MiB; split it by year")
    name = file.filename or "upload"
    with get_state(request).session() as s:
        try:
            result = import_reports(
                s,
                ctx.site,
                data,
                author=ctx.principal.name,
                reason=reason.strip() or f"import of {name[:200]}",
                store_valid=store_valid,
                period=period,
            )
        except ConcurrentSubmission as exc:
            s.rollback()  # the whole file: nothing of it is stored
            raise HTTPException(409, detail=str(exc)) from None
        if not result.ok and not store_valid:
            s.rollback()
            detail: list[dict[str, Any]] = [
                {
                    "loc": ["body", "file", i.sheet, i.row, i.column],
                    "msg": i.message,
                    "type": "import",
                    **i.as_dict(),
                }
                for i in result.refused
            ]
            raise HTTPException(422, detail=detail)
        s.commit()
    return ImportOut(
        stored=[StoredPeriodOut(period=p, revision=r) for p, r in result.stored],
        unchanged=list(result.unchanged),
        refused=[RefusedCellOut.model_validate(i.as_dict()) for i in result.refused],
        warnings=[
            PeriodIssueOut(period=p, field=w.field, message=w.message, code=w.code)
            for p, w in result.warnings
        ],
    )
