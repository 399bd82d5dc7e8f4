"""The commission's figures: versioned configuration, the panel, the indicator table, caching.

The configuration (cohorts, targets, factors, green-factory rule sets) is data: every change is
a new revision (who, when, why, the document, its declared source and version), nothing is
overwritten. An indicator table names the configuration revision and every report revision it
used; ``as_of`` recomputes a table as it was at that time (configuration and reports then).

Reads are bounded: one query for the cohort's sites, one bulk read of the annual reports of the
year and the base year, and one InfluxDB request for the yearly telemetry sums of those sites
(``api.commission.telemetry``). Tables are cached per (cohort, year, options, as_of,
configuration revision, newest report revision); telemetry sums for ``TELEMETRY_TTL_S``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import HTTPException, Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from analytics.commission_config import CommissionConfig, parse_commission_config
from analytics.indicators import IndicatorOptions, indicator_table
from api.commission.panel import InputRevision, PanelInputs, SiteInfo, build_panel
from api.commission.serialize import table_json
from api.commission.telemetry import YearTelemetry, yearly_telemetry
from api.db.models import CommissionConfigRevision, ReportRevision, Site
from api.reports.service import annual_inputs
from api.state import AppState, get_state
from zhizao.errors import ConfigError

__all__ = [
    "TELEMETRY_TTL_S",
    "CommissionCache",
    "ConfigRevision",
    "TableRequest",
    "config_revisions",
    "indicator_table_json",
    "load_config",
    "public_table",
    "reported_inputs",
    "site_infos",
    "store_config",
    "store_validated_config",
]

TELEMETRY_TTL_S = 60.0  # yearly sums move slowly; the engine rewrites day rows every few minutes
TABLE_CACHE_ENTRIES = 64


@dataclass(frozen=True, slots=True)
class ConfigRevision:
    revision: int
    source: str
    version: str
    author: str
    reason: str
    created_at: datetime
    config: CommissionConfig
    document: Mapping[str, Any]


def _revision(row: CommissionConfigRevision) -> ConfigRevision:
    cfg = parse_commission_config(row.document)
    return ConfigRevision(
        row.revision, row.source, cfg.version, row.author, row.reason, row.created_at, cfg,
        row.document,
    )  # fmt: skip


def load_config(
    session: Session, *, revision: int | None = None, as_of: datetime | None = None
) -> ConfigRevision:
    """The configuration revision asked for, or the one in force at ``as_of``, or the newest;
    404 with a sentence when there is none."""
    q = select(CommissionConfigRevision)
    if revision is not None:
        q = q.where(CommissionConfigRevision.revision == revision)
    elif as_of is not None:
        q = q.where(CommissionConfigRevision.created_at <= as_of)
    row = session.scalars(q.order_by(CommissionConfigRevision.revision.desc()).limit(1)).first()
    if row is None:
        what = (
            f"revision {revision}"
            if revision is not None
            else "a configuration in force at that time"
            if as_of is not None
            else "a configuration yet"
        )
        raise HTTPException(
            404,
            detail=f"the commission has no {what}: PUT /api/v1/commission/config "
            "with cohorts, targets and factors (see analytics/commission.sample.yaml)",
        )
    return _revision(row)


def config_revisions(session: Session) -> list[CommissionConfigRevision]:
    q = select(CommissionConfigRevision).order_by(CommissionConfigRevision.revision)
    return list(session.scalars(q))


def store_config(
    session: Session, document: Mapping[str, Any], *, author: str, reason: str
) -> tuple[ConfigRevision, bool]:
    """A new revision (validated first); an identical document creates nothing (False)."""
    try:
        cfg = parse_commission_config(dict(document))
    except ConfigError as exc:
        key = getattr(exc, "key", None)
        loc: list[str | int] = ["body", "document", *(str(key).split(".") if key else [])]
        raise HTTPException(
            422, detail=[{"loc": loc, "msg": str(exc), "type": "value_error"}]
        ) from exc
    return store_validated_config(session, cfg, author=author, reason=reason)


def store_validated_config(
    session: Session, cfg: CommissionConfig, *, author: str, reason: str
) -> tuple[ConfigRevision, bool]:
    """``store_config`` for a configuration already validated (``zhizao api commission-config``
    loads it from YAML)."""
    current = session.scalars(
        select(CommissionConfigRevision).order_by(CommissionConfigRevision.revision.desc()).limit(1)
    ).first()
    normal = cfg.model_dump(mode="json")
    if current is not None and current.document == normal:
        return _revision(current), False
    row = CommissionConfigRevision(
        revision=(current.revision + 1) if current is not None else 1,
        source=cfg.source,
        document=normal,
        author=author,
        reason=reason,
        created_at=datetime.now().astimezone(),
    )
    session.add(row)
    session.commit()
    return _revision(row), True


# ----------------------------------------------------------------------------------- inputs


def site_infos(session: Session, keys: Sequence[str]) -> list[SiteInfo]:
    rows = session.execute(
        select(Site.key, Site.name, Site.district, Site.timezone).where(Site.key.in_(list(keys)))
    ).all()
    return [SiteInfo(k, n or k, d or "", tz) for k, n, d, tz in rows]


def reported_inputs(
    session: Session, keys: Sequence[str], years: Sequence[int], as_of: datetime | None
) -> dict[tuple[str, int], tuple[Mapping[str, Any], InputRevision]]:
    snaps = annual_inputs(session, list(keys), list(years), as_of)
    out: dict[tuple[str, int], tuple[Mapping[str, Any], InputRevision]] = {}
    for (site, year), snap in snaps.items():
        created = snap.created_at.isoformat() if snap.created_at is not None else None
        out[(site, year)] = (
            snap.values,
            InputRevision(site, str(year), snap.revision, snap.author, created),
        )
    return out


def _reports_version(session: Session) -> tuple[int, int]:
    got = session.execute(select(func.max(ReportRevision.id), func.count())).one()
    return int(got[0] or 0), int(got[1] or 0)


# ------------------------------------------------------------------------------------ cache


@dataclass
class CommissionCache:
    """Per app: computed tables and telemetry sums (bounded, thread-safe)."""

    tables: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    telemetry: dict[tuple[Any, ...], tuple[float, dict[tuple[str, int], YearTelemetry]]] = field(
        default_factory=dict
    )
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: dict[tuple[Any, ...], asyncio.Future[dict[str, Any]]] = field(default_factory=dict)

    def reset(self) -> None:
        """Forget computed tables (a new configuration revision was stored)."""
        with self.lock:
            self.tables.clear()

    @classmethod
    def of(cls, request: Request) -> CommissionCache:
        cache = getattr(request.app.state, "commission_cache", None)
        if cache is None:
            cache = cls()
            request.app.state.commission_cache = cache
        assert isinstance(cache, CommissionCache)
        return cache


async def _telemetry(
    state: AppState, cache: CommissionCache, sites: Sequence[SiteInfo], years: Sequence[int]
) -> dict[tuple[str, int], YearTelemetry]:
    by_tz: dict[str, list[str]] = {}
    for s in sites:
        by_tz.setdefault(s.timezone, []).append(s.key)
    key = (tuple(sorted((tz, tuple(sorted(v))) for tz, v in by_tz.items())), tuple(years))
    now = time.monotonic()
    hit = cache.telemetry.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    got = await yearly_telemetry(state.query, by_tz, years, prefix=state.kpi.measurement_prefix)
    with cache.lock:
        if len(cache.telemetry) > TABLE_CACHE_ENTRIES:
            cache.telemetry.clear()
        cache.telemetry[key] = (now + TELEMETRY_TTL_S, got)
    return got


FACTORY_ROWS = "_factory_rows"  # keys of the cached table that the API does not show
SITES = "_sites"


@dataclass(frozen=True, slots=True)
class TableRequest:
    cohort: str | None
    year: int
    statistical_rounding: bool | None = None
    green_rule_set: str | None = None
    as_of: datetime | None = None
    config_revision: int | None = None
    rank_by: str | None = None  # an indicator id: compute it per factory (for a ranking) only


def _compute(
    rev: ConfigRevision,
    cohort_id: str,
    req: TableRequest,
    sites: list[SiteInfo],
    reports: Mapping[tuple[str, int], tuple[Mapping[str, Any], InputRevision]],
    telemetry: Mapping[tuple[str, int], YearTelemetry],
    years: list[int],
) -> dict[str, Any]:
    inputs: PanelInputs = build_panel(sites, years, reports, telemetry)
    # a ranking needs one indicator per factory; the table needs every indicator per group
    options = IndicatorOptions(
        statistical_rounding=req.statistical_rounding,
        green_rule_set=req.green_rule_set,
        indicators=None if req.rank_by is None else (req.rank_by,),
        per_factory=req.rank_by is not None,
    )
    try:
        table = indicator_table(inputs.panel, rev.config, cohort_id, req.year, options)
    except ConfigError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    out = table_json(table, inputs, rev.revision)
    out["as_of"] = req.as_of.isoformat() if req.as_of is not None else None
    out["unknown_sites"] = sorted(set(rev.config.cohort(cohort_id).sites) - {s.key for s in sites})
    # for rankings (not part of the public table: see public_table)
    out[FACTORY_ROWS] = table.factory_rows
    out[SITES] = {s.key: s for s in sites}
    return out


def public_table(table: Mapping[str, Any]) -> dict[str, Any]:
    """The indicator table as the API shows it: without the per-factory rows kept for
    rankings (a district's table must not grow with the number of factories)."""
    return {k: v for k, v in table.items() if k not in (FACTORY_ROWS, SITES)}


async def indicator_table_json(request: Request, req: TableRequest) -> dict[str, Any]:
    """The indicator table of one cohort and year as JSON (cached, single flight)."""
    state = get_state(request)
    cache = CommissionCache.of(request)

    def db_part() -> tuple[ConfigRevision, str, list[SiteInfo], tuple[int, int]]:
        with state.session() as s:
            rev = load_config(s, revision=req.config_revision, as_of=req.as_of)
            cohort_id = req.cohort or rev.config.cohorts[0].id
            try:
                cohort = rev.config.cohort(cohort_id)
            except KeyError as exc:
                raise HTTPException(
                    422,
                    detail=[{"loc": ["query", "cohort"], "msg": str(exc.args[0]),
                             "type": "value_error"}],
                ) from exc  # fmt: skip
            return rev, cohort_id, site_infos(s, cohort.sites), _reports_version(s)

    rev, cohort_id, sites, version = await asyncio.to_thread(db_part)
    base_year = rev.config.cohort(cohort_id).base_year
    years = sorted({req.year, base_year})
    key = (cohort_id, req, rev.revision, version)
    hit = cache.tables.get(key)
    if hit is not None:
        return hit
    pending = cache.in_flight.get(key)
    if pending is not None:
        return await asyncio.shield(pending)

    async def build() -> dict[str, Any]:
        telemetry = await _telemetry(state, cache, sites, years)

        def rest() -> dict[str, Any]:
            with state.session() as s:
                reports = reported_inputs(s, [x.key for x in sites], years, req.as_of)
            return _compute(rev, cohort_id, req, sites, reports, telemetry, years)

        return await asyncio.to_thread(rest)

    task = asyncio.ensure_future(build())
    cache.in_flight[key] = task
    try:
        result = await asyncio.shield(task)
    finally:
        cache.in_flight.pop(key, None)
    with cache.lock:
        if len(cache.tables) >= TABLE_CACHE_ENTRIES:
            cache.tables.clear()
        cache.tables[key] = result
    return result
