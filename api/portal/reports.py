"""The factory admin's report pages: a period's form generated from the field catalog, its
field-level errors, the revision history, and the upload of a filled template.

Everything goes through ``api.reports.service`` and ``api.reports.importer`` (the API routes'
own functions); access is ``authorize`` with the API's policies: reading under ``aggregate``,
writing under ``report``.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from api.auth import POLICIES, Policy, Principal, authorize
from api.portal.i18n import issue_text, translator
from api.portal.pages import (
    SESSION_COOKIE,
    error_page,
    get_portal,
    html_error,
    lang_of,
    redirect,
    render,
)
from api.portal.router import require_session
from api.reports.fields import FIELDS_BY_ID, ReportField, fields_for
from api.reports.importer import import_reports
from api.reports.service import (
    SiteNotFound,
    ValidationFailed,
    current_report,
    list_reports,
    list_revisions,
    submit_report,
)
from api.reports.template import build_template
from api.reports.validate import parse_period
from api.state import get_state
from zhizao.site import SiteModel

__all__ = ["router"]

router = APIRouter(prefix="/portal", include_in_schema=False)
PERIOD = re.compile(r"^\d{4}(-\d{2})?$")
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FIELD_PREFIX = "v."


@dataclass
class FormField:
    field: ReportField
    label: str
    other_label: str
    value: str
    errors: list[str]
    required: bool


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


async def _site_for(
    request: Request, site: str, policy: Policy
) -> tuple[Principal, SiteModel] | Response:
    principal = await require_session(request)
    if not isinstance(principal, Principal):
        return principal
    try:
        model = await authorize(get_state(request), principal, site[:64], policy)
    except HTTPException as exc:
        return error_page(request, exc, principal)
    return principal, model


def _period_or_error(request: Request, period: str, principal: Principal) -> Response | None:
    if PERIOD.match(period):
        try:
            parse_period(period)
            return None
        except ValueError:
            pass
    return html_error(request, 404, translator(lang_of(request))("report.bad_period"), principal)


def _may_write(principal: Principal) -> bool:
    return principal.role in POLICIES["report"]


@router.get("/sites/{site}/reports")
async def reports_index(request: Request, site: str, period: str | None = None) -> Response:
    found = await _site_for(request, site, "aggregate")
    if not isinstance(found, tuple):
        return found
    principal, model = found
    if period is not None:  # the "open a period" form
        bad = _period_or_error(request, period.strip(), principal)
        return bad or redirect(f"/portal/sites/{model.site}/reports/{period.strip()}")
    state = get_state(request)

    def load() -> list[Any]:
        with state.session() as s:
            return list_reports(s, model.site)

    t = translator(lang_of(request))
    return render(
        request,
        "reports.html",
        principal=principal,
        title=t("report.list_title", site=model.site),
        site=model,
        reports=await asyncio.to_thread(load),
        may_write=_may_write(principal),
    )


def _form_fields(
    period: str, values: dict[str, str], errors: dict[str, list[str]], lang: str
) -> list[FormField]:
    kind = parse_period(period).kind
    out = []
    for f in fields_for(kind):
        zh, en = f.label_zh, f.label_en
        out.append(
            FormField(
                field=f,
                label=zh if lang == "zh" else en,
                other_label=en if lang == "zh" else zh,
                value=values.get(f.id, ""),
                errors=errors.get(f.id, []),
                required=kind in f.required,
            )
        )
    return out


def _report_page(
    request: Request,
    principal: Principal,
    model: Any,
    period: str,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, list[str]] | None = None,
    general: list[str] | None = None,
    reason: str = "",
    notice: str = "",
    status_code: int = 200,
) -> Response:
    state = get_state(request)
    lang = lang_of(request)
    t = translator(lang)
    with state.session() as s:
        current = current_report(s, model.site, period)
    if values is None:
        values = {k: _text(v) for k, v in (current.values if current else {}).items()}
    return render(
        request,
        "report.html",
        status_code=status_code,
        principal=principal,
        title=t("report.title", site=model.site, period=period),
        site=model,
        period=period,
        kind=parse_period(period).kind,
        current=current,
        fields=_form_fields(period, values, errors or {}, lang),
        general=general or [],
        reason=reason,
        reason_errors=(errors or {}).get("reason", []),
        notice=notice,
        may_write=_may_write(principal),
    )


@router.get("/sites/{site}/reports/{period}")
async def report_form(request: Request, site: str, period: str) -> Response:
    found = await _site_for(request, site, "aggregate")
    if not isinstance(found, tuple):
        return found
    principal, model = found
    bad = _period_or_error(request, period, principal)
    if bad is not None:
        return bad
    t = translator(lang_of(request))
    notice = ""
    saved = request.query_params.get("saved", "")
    if saved.isdigit():
        notice = t("report.saved", revision=int(saved))
    elif request.query_params.get("unchanged", "").isdigit():
        notice = t("report.unchanged", revision=int(request.query_params["unchanged"]))
    return await asyncio.to_thread(_report_page, request, principal, model, period, notice=notice)


def _csrf_ok(request: Request, submitted: object) -> bool:
    return get_portal(request).keys.csrf_ok(
        request.cookies.get(SESSION_COOKIE), submitted if isinstance(submitted, str) else None
    )


@router.post("/sites/{site}/reports/{period}")
async def report_submit(request: Request, site: str, period: str) -> Response:
    found = await _site_for(request, site, "report")
    if not isinstance(found, tuple):
        return found
    principal, model = found
    t = translator(lang_of(request))
    form = await request.form()
    if not _csrf_ok(request, form.get("csrf")):
        return html_error(request, 403, t("csrf.refused"), principal)
    bad = _period_or_error(request, period, principal)
    if bad is not None:
        return bad
    values: dict[str, str] = {}
    for key, raw in form.items():
        if key.startswith(FIELD_PREFIX) and isinstance(raw, str):
            values[key.removeprefix(FIELD_PREFIX)] = raw.strip()[:200]
    reason_raw = form.get("reason")
    reason = reason_raw.strip()[:2000] if isinstance(reason_raw, str) else ""
    state = get_state(request)

    def submit() -> Response:
        with state.session() as s:
            try:
                result = submit_report(
                    s,
                    model.site,
                    period,
                    {k: v for k, v in values.items() if v != ""},
                    author=principal.name,
                    reason=reason,
                )
            except ValidationFailed as exc:
                s.rollback()
                by_field: dict[str, list[str]] = {}
                general: list[str] = []
                known = {f.id for f in fields_for(parse_period(period).kind)} | {"reason"}
                lang = lang_of(request)
                for e in exc.errors:
                    f = FIELDS_BY_ID.get(e.field)
                    text = issue_text(e.code, e.message, lang,
                                      f.label_zh if f is not None else "",
                                      f.unit if f is not None else "")  # fmt: skip
                    if e.field in known:
                        by_field.setdefault(e.field, []).append(text)
                    else:
                        general.append(text)
                return _report_page(
                    request,
                    principal,
                    model,
                    period,
                    values=values,
                    errors=by_field,
                    general=general,
                    reason=reason,
                    status_code=422,
                )
            except SiteNotFound:
                return html_error(request, 404, t("error.not_found"), principal)
            s.commit()
        key = "saved" if result.created else "unchanged"
        return redirect(
            f"/portal/sites/{model.site}/reports/{period}?{key}={result.report.revision}"
        )

    return await asyncio.to_thread(submit)


@router.get("/sites/{site}/report-template.xlsx")
async def report_template(request: Request, site: str) -> Response:
    """The API's XLSX template (``build_template``), for a download from the portal."""
    found = await _site_for(request, site, "aggregate")
    if not isinstance(found, tuple):
        return found
    _, model = found
    body = await asyncio.to_thread(build_template, model.site, model.name)
    return Response(
        body,
        media_type=XLSX,
        headers={
            "Content-Disposition": f'attachment; filename="{model.site}-report-template.xlsx"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/sites/{site}/reports/{period}/history")
async def report_history(request: Request, site: str, period: str) -> Response:
    found = await _site_for(request, site, "aggregate")
    if not isinstance(found, tuple):
        return found
    principal, model = found
    bad = _period_or_error(request, period, principal)
    if bad is not None:
        return bad
    state = get_state(request)

    def load() -> Any:
        with state.session() as s:
            return list_revisions(s, model.site, period)

    history = await asyncio.to_thread(load)
    t = translator(lang_of(request))
    if history is None:
        return html_error(request, 404, t("report.none", period=period), principal)
    return render(
        request,
        "history.html",
        principal=principal,
        title=t("report.history_title", site=model.site, period=period),
        site=model,
        period=period,
        revisions=list(reversed(history)),
    )


@router.post("/sites/{site}/reports-import")
async def report_import(request: Request, site: str) -> Response:
    found = await _site_for(request, site, "report")
    if not isinstance(found, tuple):
        return found
    principal, model = found
    t = translator(lang_of(request))
    form = await request.form(max_files=1, max_fields=10)
    if not _csrf_ok(request, form.get("csrf")):
        return html_error(request, 403, t("csrf.refused"), principal)
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return html_error(request, 400, t("import.no_file"), principal)
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        return html_error(request, 413, t("import.too_large"), principal)
    store_valid = form.get("store_valid") == "1"
    reason_raw = form.get("reason")
    reason = reason_raw.strip()[:2000] if isinstance(reason_raw, str) else ""
    name = upload.filename[:200]
    state = get_state(request)

    def run() -> Any:
        with state.session() as s:
            result = import_reports(
                s,
                model.site,
                data,
                author=principal.name,
                reason=reason or f"import of {name}",
                store_valid=store_valid,
            )
            if not result.ok and not store_valid:
                s.rollback()
            else:
                s.commit()
        return result

    result = await asyncio.to_thread(run)
    return render(
        request,
        "import.html",
        status_code=200 if result.ok else 422,
        principal=principal,
        title=t("import.title", site=model.site),
        site=model,
        result=result,
        filename=name,
        store_valid=store_valid,
    )
