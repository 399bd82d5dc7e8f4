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
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.routing import Match

from api.auth import PrincipalDep
from api.db.session import upgrade
from api.portal import mount_portal
from api.routers import commission, health, kpis, machines, reports, sites, stream
from api.settings import ApiSettings
from api.state import AppState
from api.tokens import ensure_bootstrap_token
from ingest.influx import InfluxQLReader
from zhizao import __version__
from zhizao.errors import ZhizaoError
from zhizao.logs import token_fingerprint

__all__ = ["API_PREFIX", "create_app"]

log = logging.getLogger(__name__)
access_log = logging.getLogger("api.access")
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

    public_docs = settings.environment == "development"
    app = FastAPI(
        title="zhizao API",
        version=__version__,
        description=(
            "Live and historical KPIs (ISO 22400, TPM, CNC utilization, energy) of smart and green "
            "demonstration factories. Every ratio is computed from summed components by the KPI "
            "catalog (`GET /api/v1/kpis`). Authenticate with `Authorization: Bearer <token>`."
        ),
        lifespan=lifespan,
        # the API's description is public only in development (a browsable /docs on a developer's
        # machine); elsewhere every route but /healthz and /readyz needs a token, this one too
        openapi_url="/openapi.json" if public_docs else None,
        docs_url="/docs" if public_docs else None,
        redoc_url="/redoc" if public_docs else None,
    )
    if not public_docs:

        @app.get("/openapi.json", include_in_schema=False)
        def openapi_document(_principal: PrincipalDep) -> dict[str, Any]:
            return app.openapi()

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
            elapsed = time.perf_counter() - t0
            route, params = _route_match(request)
            state = getattr(request.app.state, "zhizao", None)
            if state is not None:
                state.metrics.requests.labels(route, request.method, str(status)).inc()
                state.metrics.latency.labels(route).observe(elapsed)
            _log_request(request, route, params, status, elapsed)

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


def _route_match(request: Request) -> tuple[str, dict[str, str]]:
    """The matched route's path template (``/api/v1/sites/{site}``) and its path parameters, read
    after routing; the template, never the raw path, names metric series and log lines (one
    series per id else). FastAPI >= 0.165 keeps included routers as branches whose routes carry
    the template without the prefix: the full one is on the effective route context."""
    scope = request.scope
    params = {str(k): str(v) for k, v in (scope.get("path_params") or {}).items()}
    fastapi_scope = scope.get("fastapi")
    context = (
        fastapi_scope.get("effective_route_context") if isinstance(fastapi_scope, dict) else None
    )
    template = getattr(context, "path_format", None)
    if isinstance(template, str):
        return template, params
    for route in request.app.router.routes:  # routes on the app itself (the probes)
        match, child = route.matches(scope)
        if match == Match.FULL and isinstance(getattr(route, "path", None), str):
            params = {str(k): str(v) for k, v in child.get("path_params", {}).items()}
            return str(route.path), params
    return "unmatched", params


def _log_request(
    request: Request, route: str, params: dict[str, str], status: int, elapsed: float
) -> None:
    """One line per request: method, route template, status, duration, site, and the token's
    fingerprint (never the token, the query string or any header)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    extra: dict[str, object] = {
        "method": request.method,
        "route": route,
        "status": status,
        "duration_ms": round(elapsed * 1000.0, 3),
    }
    if "site" in params:
        extra["site"] = params["site"]
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        extra["token"] = token_fingerprint(secret.strip())
    if request.client is not None:
        extra["client"] = request.client.host
    access_log.info(
        "%s %s %d %.1f ms", request.method, route, status, elapsed * 1000.0, extra=extra
    )
