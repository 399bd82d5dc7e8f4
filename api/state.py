"""What the running API holds: settings, the database, the InfluxDB reader, caches, metrics.

Created by the app's lifespan (``api.app.create_app``) and reached from a request through
``get_state(request)``. Database work is synchronous SQLAlchemy (run in FastAPI's thread pool);
InfluxDB reads are async through one pooled ``InfluxQLReader``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import HTTPException, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from analytics.compute import SiteComputer
from analytics.config import KpiConfig, load_kpi_config
from api.db.session import make_engine, make_sessionmaker
from api.masterdata import load_site_model
from api.metrics import ApiMetrics
from api.settings import ApiSettings
from ingest.influx import InfluxQLReader, ResultSeries
from zhizao.errors import QueryError
from zhizao.site import SiteModel

__all__ = ["AppState", "InfluxUnavailable", "get_state"]

RETRY_AFTER_S = 5


class InfluxUnavailable(HTTPException):
    """503 with Retry-After: InfluxDB cannot answer right now (never a 500, never a hang)."""

    def __init__(self, detail: str) -> None:
        super().__init__(503, detail=detail, headers={"Retry-After": str(RETRY_AFTER_S)})


@dataclass
class AppState:
    settings: ApiSettings
    engine: Engine
    sessions: sessionmaker[Session]
    kpi: KpiConfig
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    reader: InfluxQLReader | None = None
    _sites: dict[str, SiteModel | None] = field(default_factory=dict)
    _computers: dict[str, SiteComputer] = field(default_factory=dict)
    _answers: dict[str, tuple[float, list[ResultSeries]]] = field(default_factory=dict)
    _in_flight: dict[str, asyncio.Future[list[ResultSeries]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, settings: ApiSettings) -> AppState:
        engine = make_engine(settings.database_url.get_secret_value())
        if settings.kpi_config is not None:
            kpi = load_kpi_config(settings.kpi_config)
        else:
            # the engine's defaults; the site list is the engine's business (the API's sites
            # come from the database)
            kpi = KpiConfig.model_validate({"sites": ["(database)"]})
        return cls(settings, engine, make_sessionmaker(engine), kpi)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as s:
            yield s

    # -- master data cache (site models change rarely; writes call forget_site) --------------

    def cached_site_model(self, site: str) -> SiteModel | None:
        with self._lock:
            return self._sites.get(site)

    def site_model(self, site: str, *, use_cache: bool = True) -> SiteModel | None:
        with self._lock:
            if use_cache and site in self._sites:
                return self._sites[site]
        with self.session() as s:
            model = load_site_model(s, site)
        with self._lock:
            # remember only existing sites: a flood of random ids must not grow the cache
            if model is not None:
                self._sites[site] = model
        return model

    def forget_site(self, site: str | None = None) -> None:
        with self._lock:
            if site is None:
                self._sites.clear()
            else:
                self._sites.pop(site, None)

    def site_computer(self, site: SiteModel) -> SiteComputer:
        """The engine's per-site computer (machine contexts, calendars, coefficients)."""
        key = f"{site.enterprise}/{site.site}"
        with self._lock:
            comp = self._computers.get(key)
            if comp is not None and comp.site is site:
                return comp
        comp = SiteComputer(site, self.kpi)
        with self._lock:
            self._computers[key] = comp
        return comp

    # -- InfluxDB -------------------------------------------------------------------------------

    async def cached_query(self, q: str, *, chunked: bool = False) -> list[ResultSeries]:
        """``query`` for KPI components: identical queries in flight share one round trip, and
        an answer is reused for ``settings.kpi_cache_s`` (the engine rewrites components every
        few minutes; fifty people watching one factory cost one query, not fifty)."""
        ttl = self.settings.kpi_cache_s
        now = time.monotonic()
        hit = self._answers.get(q)
        if hit is not None and hit[0] > now:
            self.metrics.cache.labels(result="hit").inc()
            return hit[1]
        pending = self._in_flight.get(q)
        if pending is not None:
            self.metrics.cache.labels(result="shared").inc()
            return await asyncio.shield(pending)
        self.metrics.cache.labels(result="miss").inc()
        task = asyncio.ensure_future(self.query(q, chunked=chunked))
        self._in_flight[q] = task
        try:
            result = await asyncio.shield(task)
        finally:
            self._in_flight.pop(q, None)
        if ttl > 0:
            if len(self._answers) > 1000:  # bounded: drop what expired, else everything
                live = {k: v for k, v in self._answers.items() if v[0] > now}
                self._answers = live if len(live) <= 1000 else {}
            self._answers[q] = (now + ttl, result)
        return result

    async def query(self, q: str, *, chunked: bool = False) -> list[ResultSeries]:
        """Run InfluxQL; unreachable or failing InfluxDB becomes a 503 with Retry-After."""
        assert self.reader is not None, "the lifespan opens the reader"
        t0 = time.perf_counter()
        try:
            return await self.reader.query(q, chunked=chunked)
        except QueryError as exc:
            unreachable = isinstance(exc.__cause__, httpx.HTTPError) or "HTTP 5" in str(exc)
            self.metrics.influx_errors.labels(
                kind="unreachable" if unreachable else "refused"
            ).inc()
            if unreachable:
                raise InfluxUnavailable("InfluxDB cannot be reached; try again shortly") from exc
            if "database not found" in str(exc):
                # a deployment problem, not the client's: not ready rather than an internal error
                raise InfluxUnavailable(
                    f"InfluxDB has no database {self.settings.influx.database!r} yet"
                ) from exc
            raise
        finally:
            self.metrics.influx_query.observe(time.perf_counter() - t0)


def get_state(request: Request) -> AppState:
    state: Any = request.app.state.zhizao
    assert isinstance(state, AppState)
    return state
