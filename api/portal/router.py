"""The portal's routes: login and logout, the language switch, home, the engineer's line overview.

Every page takes its numbers from the API's own route functions (``line_live`` here) and its
access decision from ``api.auth.authorize``: the portal is another view of the API, never a
second implementation of a formula or a rule.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import select

from api.auth import CROSS_SITE_POLICIES, UNSCOPED, Principal, SiteContext, authorize
from api.db.models import Site
from api.portal.i18n import parse_lang, translator
from api.portal.overview import line_view
from api.portal.pages import (
    LANG_COOKIE,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    error_page,
    get_portal,
    html_error,
    lang_of,
    redirect,
    render,
    safe_next,
    session_principal,
)
from api.portal.sessions import SESSION_S
from api.routers.machines import line_live
from api.state import get_state
from api.tokens import verify_token

__all__ = ["require_session", "router"]

router = APIRouter(prefix="/portal", include_in_schema=False)
REFRESH_S = 30
LANG_MAX_AGE_S = 365 * 86400
FORM_MAX_CHARS = 4096


def _login_url(next_path: str, *, ended: bool = False) -> str:
    params = {"next": next_path}
    if ended:
        params["ended"] = "1"
    return "/portal/login?" + urlencode(params)


async def require_session(request: Request) -> Principal | Response:
    """The session's principal, or a redirect to the login form that returns here."""
    principal = await session_principal(request)
    if principal is not None:
        return principal
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    ended = request.cookies.get(SESSION_COOKIE) is not None
    response = redirect(_login_url(safe_next(here), ended=ended))
    if ended:
        response.delete_cookie(SESSION_COOKIE, path="/portal")
    return response


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    out: dict[str, str] = {}
    for key, value in form.items():
        if isinstance(value, str):
            out[key] = value[:FORM_MAX_CHARS]
    return out


def _csrf_refused(request: Request, principal: Principal | None = None) -> Response:
    return html_error(request, 403, translator(lang_of(request))("csrf.refused"), principal)


# -- login, logout, language ----------------------------------------------------------------


def _login_page(
    request: Request, next_path: str, *, error: str = "", notice: str = "", status_code: int = 200
) -> Response:
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    t = translator(lang_of(request))
    response = render(
        request,
        "login.html",
        status_code=status_code,
        title=t("login.title"),
        next_path=next_path,
        login_csrf=get_portal(request).keys.csrf_for(nonce),
        error=error,
        notice=notice,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=3600,
        path="/portal",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


@router.get("/login")
async def login_form(
    request: Request, next: str | None = None, ended: str | None = None
) -> Response:
    t = translator(lang_of(request))
    notice = ""
    if ended:
        notice = t("login.expired")
    elif request.query_params.get("bye"):
        notice = t("logout.done")
    return _login_page(request, safe_next(next), notice=notice)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    keys = get_portal(request).keys
    if not keys.csrf_ok(request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
        return _csrf_refused(request)
    next_path = safe_next(form.get("next"))
    t = translator(lang_of(request))
    secret = form.get("token", "").strip()
    if not secret:
        return _login_page(request, next_path, error=t("login.empty"), status_code=400)
    state = get_state(request)

    def check() -> Any:
        with state.session() as s:
            info = verify_token(s, secret)
            s.commit()  # last_used_at
        return info

    info = await asyncio.to_thread(check)
    if info is None:
        state.metrics.auth_failures.labels(reason="invalid").inc()
        return _login_page(request, next_path, error=t("login.wrong"), status_code=401)
    expires = int(time.time()) + SESSION_S
    if info.expires_at is not None:
        expires = min(expires, int(info.expires_at.timestamp()))
    response = redirect(next_path)
    response.set_cookie(
        SESSION_COOKIE,
        keys.sign_session(info.id, expires),
        max_age=max(0, expires - int(time.time())),
        path="/portal",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/portal")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await _form(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not get_portal(request).keys.csrf_ok(cookie, form.get("csrf")):
        return _csrf_refused(request, await session_principal(request))
    response = redirect("/portal/login?bye=1")
    response.delete_cookie(SESSION_COOKIE, path="/portal")
    return response


@router.get("/lang/{lang}")
async def switch_language(request: Request, lang: str, next: str | None = None) -> Response:
    """Set the language and return to the page the link was on."""
    chosen = parse_lang(lang)
    response = redirect(safe_next(next))
    if chosen is not None:
        response.set_cookie(
            LANG_COOKIE,
            chosen,
            max_age=LANG_MAX_AGE_S,
            path="/portal",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="lax",
        )
    return response


# -- pages ----------------------------------------------------------------------------------


def _visible_sites(request: Request, principal: Principal) -> list[dict[str, str]]:
    state = get_state(request)
    with state.session() as s:
        q = select(Site.key, Site.name, Site.district).order_by(Site.key)
        if principal.role not in UNSCOPED:  # a scoped token sees its own site only
            q = q.where(Site.key == (principal.token.site or ""))
        rows = s.execute(q).all()
    return [{"key": k, "name": n or k, "district": d} for k, n, d in rows]


@router.get("")
@router.get("/")
async def home(request: Request) -> Response:
    principal = await require_session(request)
    if not isinstance(principal, Principal):
        return principal
    t = translator(lang_of(request))
    sites = await asyncio.to_thread(_visible_sites, request, principal)
    return render(
        request,
        "home.html",
        principal=principal,
        title=t("home.title"),
        sites=sites,
        telemetry=principal.role != "commission",
        commission=principal.role in CROSS_SITE_POLICIES["commission"],
    )


@router.get("/sites/{site}")
async def site_overview(request: Request, site: str, at: str | None = None) -> Response:
    """The engineer's line overview: every line's machines with their current state, the
    current shift's OEE and factors, parts vs target and energy per good part."""
    principal = await require_session(request)
    if not isinstance(principal, Principal):
        return principal
    state = get_state(request)
    t = translator(lang_of(request))
    try:
        model = await authorize(state, principal, site[:64], "telemetry")
        ctx = SiteContext(principal, model)
        lines = list(dict.fromkeys(ln.id for _, ln, _ in model.machines()))
        lives = await asyncio.gather(*(line_live(request, ctx, line, at) for line in lines))
    except HTTPException as exc:
        if exc.status_code == 422:
            return html_error(request, 400, t("error.bad_at"), principal)
        return error_page(request, exc, principal)
    limit = state.kpi.effectiveness_flag_above
    views = [line_view(live, t) for live in lives]
    return render(
        request,
        "site.html",
        principal=principal,
        title=t("site.title", site=model.site),
        site=model,
        lines=views,
        now=lives[0]["now"] if lives else "",
        e_limit=limit,
        refresh_s=None if at else REFRESH_S,
    )
