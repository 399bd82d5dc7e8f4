"""What the portal's pages have in common: templates, the language, the session, errors.

A page is rendered by ``render(request, template, ...)``, which adds the translator, the
language-switch links (they return to the same page), the CSRF token of the session and the
security headers (a CSP that allows nothing but this origin: the portal works offline).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.auth import Principal
from api.portal.i18n import LANG_NAMES, LANGS, Lang, negotiate, translator
from api.portal.sessions import PortalKeys
from api.state import get_state
from api.tokens import active_token

__all__ = [
    "LANG_COOKIE",
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "Portal",
    "error_page",
    "get_portal",
    "html_error",
    "lang_of",
    "redirect",
    "render",
    "safe_next",
    "session_principal",
]

HERE = Path(__file__).parent
SESSION_COOKIE = "zz_portal"
LOGIN_COOKIE = "zz_portal_login"
LANG_COOKIE = "lang"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass
class Portal:
    """What the portal keeps per app: the signing keys and the template environment."""

    keys: PortalKeys
    templates: jinja2.Environment


def make_templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a missing value is a bug to see, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def get_portal(request: Request) -> Portal:
    portal: Any = request.app.state.zhizao_portal
    assert isinstance(portal, Portal)
    return portal


def install(app: FastAPI, keys: PortalKeys) -> None:
    app.state.zhizao_portal = Portal(keys, make_templates())


def base_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")) + "/portal"


def lang_of(request: Request) -> Lang:
    return negotiate(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))


def safe_next(value: str | None, default: str = "/portal/") -> str:
    """A path inside the portal to return to; anything else (another host, a scheme, a path
    outside /portal) becomes ``default``, so the switch and login links cannot redirect away."""
    if (
        not value
        or len(value) > 2000
        or not (value == "/portal" or value.startswith("/portal/"))
        or "//" in value
        or "\\" in value
        or any(ord(c) < 0x20 for c in value)
    ):
        return default
    return value


def here(request: Request) -> str:
    path = request.url.path
    return f"{path}?{request.url.query}" if request.url.query else path


async def session_principal(request: Request) -> Principal | None:
    """The principal of the request's session cookie: a valid signature, not expired, and a
    token that still exists and is neither revoked nor expired (asked on every request)."""
    value = get_portal(request).keys.read_session(request.cookies.get(SESSION_COOKIE))
    if value is None:
        return None
    state = get_state(request)

    def look_up() -> Principal | None:
        with state.session() as s:
            info = active_token(s, value.token_id)
        return Principal(info) if info is not None else None

    return await asyncio.to_thread(look_up)


def render(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    principal: Principal | None = None,
    title: str = "",
    refresh_s: int | None = None,
    **values: Any,
) -> HTMLResponse:
    portal = get_portal(request)
    lang = lang_of(request)
    t = translator(lang)
    cookie = request.cookies.get(SESSION_COOKIE)
    back = quote(here(request), safe="")
    context: dict[str, Any] = {
        "t": t,
        "lang": lang,
        "langs": [
            (code, LANG_NAMES[code], f"{base_path(request)}/lang/{code}?next={back}")
            for code in LANGS
        ],
        "base": base_path(request),
        "principal": principal,
        "csrf": portal.keys.csrf_for(cookie) if principal is not None and cookie else "",
        "title": title,
        "refresh_s": refresh_s,
        **values,
    }
    body = portal.templates.get_template(template).render(context)
    return HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)


def html_error(
    request: Request, status_code: int, message: str, principal: Principal | None = None
) -> HTMLResponse:
    t = translator(lang_of(request))
    return render(
        request,
        "error.html",
        status_code=status_code,
        principal=principal,
        title=t("error.title"),
        message=message,
    )


def error_page(request: Request, exc: HTTPException, principal: Principal | None) -> HTMLResponse:
    """The API's refusal as a page with one sentence in the reader's language."""
    t = translator(lang_of(request))
    detail = str(exc.detail)
    if exc.status_code == 404:
        message = t("error.not_found")
    elif exc.status_code == 403:
        policy = detail.rsplit("(", 1)[-1].rstrip(")") if "(" in detail else ""
        message = t("error.forbidden", policy=policy)
    elif exc.status_code == 503:
        message = t("error.unavailable")
    else:
        message = detail
    return html_error(request, exc.status_code, message, principal)


def redirect(url: str) -> Response:
    response = RedirectResponse(url, status_code=303)
    for k, v in SECURITY_HEADERS.items():
        response.headers[k] = v
    return response
