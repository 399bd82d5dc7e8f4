"""The portal: server-rendered pages under ``/portal`` (Jinja2, a small CSS file and a few lines
of vendored JavaScript; no CDN, works offline), in Chinese and English.

``mount_portal(app, settings)`` adds the routes and the static files and makes the signing keys
(``settings.portal_secret``, else a random in-memory key).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.portal import commission, reports
from api.portal.pages import HERE, install
from api.portal.router import router
from api.portal.sessions import PortalKeys
from api.settings import ApiSettings

__all__ = ["mount_portal"]


def mount_portal(app: FastAPI, settings: ApiSettings) -> None:
    install(app, PortalKeys(settings))
    app.include_router(router)
    app.include_router(reports.router)
    app.include_router(commission.router)
    app.mount("/portal/static", StaticFiles(directory=HERE / "static"), name="portal-static")
