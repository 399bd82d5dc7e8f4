"""Probes (no token: they reveal no factory data) and Prometheus metrics (any valid token; a
scraper sends it as ``Authorization: Bearer``)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.auth import PrincipalDep
from api.state import get_state
from zhizao.errors import QueryError

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="healthz", summary="the process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    operation_id="readyz",
    summary="InfluxDB and the database answer",
    responses={503: {"description": "a dependency is down"}},
)
async def readyz(request: Request) -> JSONResponse:
    state = get_state(request)
    checks: dict[str, str] = {}

    def db_ok() -> None:
        with state.session() as s:
            s.execute(text("SELECT 1"))

    try:
        await asyncio.to_thread(db_ok)
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means "not ready"; the text says which
        checks["database"] = f"unavailable: {type(exc).__name__}"
    try:
        assert state.reader is not None
        await state.reader.query("SHOW DATABASES")
        checks["influxdb"] = "ok"
    except QueryError as exc:
        checks["influxdb"] = f"unavailable: {exc}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ok else "not ready", "checks": checks},
        status_code=200 if ok else 503,
        headers=None if ok else {"Retry-After": "5"},
    )


@router.get(
    "/metrics", operation_id="metrics", summary="Prometheus metrics", include_in_schema=False
)
async def metrics(request: Request, principal: PrincipalDep) -> Response:
    return Response(
        generate_latest(get_state(request).metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
