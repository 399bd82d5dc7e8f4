"""The FastAPI application: ``create_app(settings)``.

The lifespan owns the clients: it migrates the database to the current revision, opens the
pooled InfluxDB reader, and (when configured) registers the bootstrap admin token, hashed.
Every route lives under ``/api/v1`` except the probes and ``/metrics``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.routing import Match

from api.db.session import upgrade
from api.portal import mount_portal
from api.routers import commission, health, kpis, machines, reports, sites, stream
from api.settings import ApiSettings
from api.state import AppState
from api.tokens import ensure_bootstrap_token
from ingest.influx import InfluxQLReader
from zhizao import __version__
from zhizao.errors import ZhizaoError

__all__ = ["API_PREFIX", "create_app"]

log = logging.getLogger(__name__)
API_PREFIX = "/api/v1"


def create_app(settings: ApiSettings) -> FastAPI:
    settings.check_safe()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        upgrade(settings.database_url.get_secret_value())
        state = AppState.build(settings)
        if settings.bootstrap_admin_token is not None:
            with state.session() as s:
                ensure_bootstrap_token(s, settings.bootstrap_admin_token.get_secret_value())
                s.commit()
        state.reader = InfluxQLReader(settings.influx)
        app.state.zhizao = state
        try:
            yield
        finally:
            await state.reader.aclose()
            state.engine.dispose()

    app = FastAPI(
        title="zhizao API",
        version=__version__,
        description=(
            "Live and historical KPIs (ISO 22400, TPM, CNC utilization, energy) of smart and green "
            "demonstration factories. Every ratio is computed from summed components by the KPI "
            "catalog (`GET /api/v1/kpis`). Authenticate with `Authorization: Bearer <token>`."
        ),
        lifespan=lifespan,
    )

    @app.middleware("http")
    async def count_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        t0 = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            state = getattr(request.app.state, "zhizao", None)
            if state is not None:
                route = _route_template(request)
                state.metrics.requests.labels(route, request.method, str(status)).inc()
                state.metrics.latency.labels(route).observe(time.perf_counter() - t0)

    @app.exception_handler(ZhizaoError)
    async def zhizao_error(request: Request, exc: ZhizaoError) -> JSONResponse:
        # a server-side problem the operator must see in the log; the client gets no internals
        log.error("request %s %s failed: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": "internal error; the API's log says why"}, status_code=500)

    app.include_router(health.router)
    for router in (
        kpis.router,
        sites.router,
        machines.router,
        stream.router,
        commission.router,
        reports.router,
    ):
        app.include_router(router, prefix=API_PREFIX)
    mount_portal(app, settings)  # /portal: server-rendered pages on the same routes' functions
    return app


def _route_template(request: Request) -> str:
    """The matched route's path template (``/api/v1/sites/{site}``), never the raw path: raw
    paths would make one metric series per id."""
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "other"))
    return "unmatched"
