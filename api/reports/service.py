"""Reports in the database: submit (a new revision, never an update), read, history, and the
bulk reads of the indicator layer. Synchronous functions on a SQLAlchemy ``Session``; the
caller commits (so an import of many periods is one transaction).

Sites are named by their key (``site.key``, the site id of the site model). Every figure read
from here carries the revision it came from (``ReportSnapshot.revision``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.db.models import Report, ReportRevision, Site
from api.reports.fields import Kind
from api.reports.validate import (
    FieldIssue,
    Value,
    month_sum_warnings,
    parse_period,
    validate_report,
)

__all__ = [
    "ConcurrentSubmission",
    "ReportSnapshot",
    "RevisionInfo",
    "SiteNotFound",
    "SubmitResult",
    "ValidationFailed",
    "annual_inputs",
    "current_report",
    "get_revision",
    "list_reports",
    "list_revisions",
    "monthly_inputs",
    "site_today",
    "submit_report",
    "year_warnings",
]


class ValidationFailed(Exception):
    """The report was refused; ``errors`` lists every field-level problem (nothing stored)."""

    def __init__(self, errors: Iterable[FieldIssue], warnings: Iterable[FieldIssue] = ()) -> None:
        self.errors = tuple(errors)
        self.warnings = tuple(warnings)
        super().__init__("; ".join(e.message for e in self.errors))


class ConcurrentSubmission(Exception):
    """Another submission of the same period was stored between this one's read and write
    (the unique keys caught it); nothing of this one is stored. The caller rolls back."""

    def __init__(self, site: str, period: str) -> None:
        self.site = site
        self.period = period
        super().__init__(
            f"another submission of {site}'s {period} report was stored at the same time; "
            "read the current revision and submit again"
        )


class SiteNotFound(LookupError):
    """No site with that key."""


@dataclass(frozen=True, slots=True)
class ReportSnapshot:
    """A report's values as of one revision."""

    site: str
    period: str
    kind: Kind
    values: dict[str, Value]
    revision: int
    author: str
    created_at: datetime
    reason: str
    changed: dict[str, dict[str, Value | None]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RevisionInfo:
    """One entry of a report's history: who, when, why and what changed (old -> new)."""

    revision: int
    author: str
    created_at: datetime
    reason: str
    changed: dict[str, dict[str, Value | None]]


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """``created`` False: the submission equals the current revision and nothing was stored
    (``message`` says so)."""

    report: ReportSnapshot
    created: bool
    warnings: tuple[FieldIssue, ...]
    message: str


def _site(session: Session, site: str) -> Site:
    row = session.scalars(select(Site).where(Site.key == site).order_by(Site.id)).first()
    if row is None:
        raise SiteNotFound(f"site {site!r} not found")
    return row


def site_today(session: Session, site: str, now: datetime | None = None) -> date:
    """Today's date at ``site`` (its time zone) at ``now`` (default: the clock)."""
    row = _site(session, site)
    moment = now if now is not None else datetime.now(UTC)
    return moment.astimezone(ZoneInfo(row.timezone)).date()


def _snapshot(site: str, report: Report, rev: ReportRevision) -> ReportSnapshot:
    return ReportSnapshot(
        site=site,
        period=report.period,
        kind=report.period_kind,  # type: ignore[arg-type]
        values=dict(rev.values),
        revision=rev.revision,
        author=rev.author,
        created_at=rev.created_at,
        reason=rev.reason,
        changed=dict(rev.changed),
    )


def _latest(session: Session, report_id: int) -> ReportRevision | None:
    return session.scalars(
        select(ReportRevision)
        .where(ReportRevision.report_id == report_id)
        .order_by(ReportRevision.revision.desc())
        .limit(1)
    ).first()


def _diff(old: Mapping[str, Value], new: Mapping[str, Value]) -> dict[str, dict[str, Value | None]]:
    out: dict[str, dict[str, Value | None]] = {}
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if a != b or type(a) is not type(b):
            out[k] = {"old": a, "new": b}
    return out


def _year_values(session: Session, site_id: int, year: int) -> dict[str, dict[str, Value]]:
    """Current values of the site's annual report and monthly reports of ``year``."""
    periods = [f"{year:04d}"] + [f"{year:04d}-{m:02d}" for m in range(1, 13)]
    latest = (
        select(ReportRevision.report_id, func.max(ReportRevision.revision).label("rev"))
        .join(Report, Report.id == ReportRevision.report_id)
        .where(Report.site_id == site_id, Report.period.in_(periods))
        .group_by(ReportRevision.report_id)
        .subquery()
    )
    rows = session.execute(
        select(Report.period, ReportRevision.values)
        .join(latest, latest.c.report_id == Report.id)
        .join(
            ReportRevision,
            (ReportRevision.report_id == latest.c.report_id)
            & (ReportRevision.revision == latest.c.rev),
        )
    )
    return {period: dict(values) for period, values in rows}


def year_warnings(
    session: Session, site: str, year: int, pending: Mapping[str, Mapping[str, Value]] = {}
) -> tuple[FieldIssue, ...]:
    """Month-sum warnings of ``year`` at ``site``, with ``pending`` (period -> values) taking
    the place of what is stored (a submission's or an import's figures before the commit)."""
    row = _site(session, site)
    values = _year_values(session, row.id, year)
    values.update({p: dict(v) for p, v in pending.items()})
    annual = values.get(f"{year:04d}")
    if annual is None:
        return ()
    months: dict[int, Mapping[str, Value]] = {}
    for period, v in values.items():
        if len(period) == 7:
            months[int(period[5:])] = v
    return month_sum_warnings(annual, months)


def submit_report(
    session: Session,
    site: str,
    period: str,
    values: Mapping[str, Any],
    *,
    author: str,
    reason: str = "",
    units: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    check_year: bool = True,
) -> SubmitResult:
    """Validate and store ``values`` as the next revision of ``site``'s ``period`` report.

    Raises ``ValidationFailed`` with every error (nothing stored), ``SiteNotFound``,
    ``ConcurrentSubmission`` (another submission of the period won; roll back). A
    correction (revision 2 onwards) needs a ``reason``. A submission equal to the current
    revision stores nothing (``created=False``). Warnings (month sums vs the annual report of
    the same year, suspicious figures) come back in the result. Flushes; the caller commits."""
    moment = now if now is not None else datetime.now(UTC)
    if moment.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    row = _site(session, site)
    today = moment.astimezone(ZoneInfo(row.timezone)).date()
    checked = validate_report(period, values, today=today, units=units)
    if not checked.ok:
        raise ValidationFailed(checked.errors, checked.warnings)
    p = parse_period(period)
    reason = (reason or "").strip()
    if len(reason) > 2000:
        raise ValidationFailed([FieldIssue("reason", "reason must be at most 2000 characters")])
    report = session.scalars(
        select(Report).where(Report.site_id == row.id, Report.period == p.text)
    ).first()
    previous = _latest(session, report.id) if report is not None else None
    warnings = checked.warnings
    if check_year:
        warnings += year_warnings(session, site, p.year, {p.text: checked.values})
    if previous is not None and not _diff(previous.values, checked.values):
        snap = _snapshot(site, report, previous)  # type: ignore[arg-type]
        msg = f"identical to revision {previous.revision}; nothing stored"
        return SubmitResult(snap, False, warnings, msg)
    if previous is not None and not reason:
        raise ValidationFailed(
            [FieldIssue("reason", "say why the report is corrected (reason)", "missing")]
        )
    try:
        if report is None:
            report = Report(site_id=row.id, period_kind=p.kind, period=p.text, created_at=moment)
            session.add(report)
            session.flush()
        changed = _diff(previous.values if previous is not None else {}, checked.values)
        rev = ReportRevision(
            report_id=report.id,
            revision=(previous.revision + 1) if previous is not None else 1,
            values=checked.values,
            author=author,
            created_at=moment,
            reason=reason,
            changed=changed,
        )
        session.add(rev)
        session.flush()
    except IntegrityError as exc:
        # unique (site, period) or (report, revision): a concurrent submission won the race
        raise ConcurrentSubmission(site, p.text) from exc
    return SubmitResult(_snapshot(site, report, rev), True, warnings, f"revision {rev.revision}")


def _report(session: Session, site: str, period: str) -> Report | None:
    row = _site(session, site)
    try:
        text = parse_period(period).text
    except ValueError:
        return None
    return session.scalars(
        select(Report).where(Report.site_id == row.id, Report.period == text)
    ).first()


def current_report(session: Session, site: str, period: str) -> ReportSnapshot | None:
    """The current revision of ``site``'s ``period`` report (None: never reported)."""
    report = _report(session, site, period)
    rev = _latest(session, report.id) if report is not None else None
    if report is None or rev is None:
        return None
    return _snapshot(site, report, rev)


def list_reports(session: Session, site: str) -> list[ReportSnapshot]:
    """Every report of ``site`` at its current revision, by period."""
    row = _site(session, site)
    latest = (
        select(ReportRevision.report_id, func.max(ReportRevision.revision).label("rev"))
        .join(Report, Report.id == ReportRevision.report_id)
        .where(Report.site_id == row.id)
        .group_by(ReportRevision.report_id)
        .subquery()
    )
    rows = session.execute(
        select(Report, ReportRevision)
        .join(latest, latest.c.report_id == Report.id)
        .join(
            ReportRevision,
            (ReportRevision.report_id == latest.c.report_id)
            & (ReportRevision.revision == latest.c.rev),
        )
        .order_by(Report.period)
    )
    return [_snapshot(site, r, v) for r, v in rows]


def list_revisions(session: Session, site: str, period: str) -> list[RevisionInfo] | None:
    """The history of ``site``'s ``period`` report, oldest first (None: never reported)."""
    report = _report(session, site, period)
    if report is None:
        return None
    revs = session.scalars(
        select(ReportRevision)
        .where(ReportRevision.report_id == report.id)
        .order_by(ReportRevision.revision)
    )
    return [
        RevisionInfo(r.revision, r.author, r.created_at, r.reason, dict(r.changed)) for r in revs
    ]


def get_revision(session: Session, site: str, period: str, revision: int) -> ReportSnapshot | None:
    """Revision ``revision`` of ``site``'s ``period`` report (None: no such revision)."""
    report = _report(session, site, period)
    if report is None:
        return None
    rev = session.scalars(
        select(ReportRevision).where(
            ReportRevision.report_id == report.id, ReportRevision.revision == revision
        )
    ).first()
    return _snapshot(site, report, rev) if rev is not None else None


def _bulk(
    session: Session,
    site_keys: Iterable[str] | None,
    periods: list[str],
    as_of: datetime | None,
) -> list[ReportSnapshot]:
    """The revision in force at ``as_of`` of every report of ``periods`` (two joins, one query)."""
    if not periods:
        return []
    where = [Report.period.in_(periods)]
    keys = None if site_keys is None else sorted(set(site_keys))
    if keys is not None:
        if not keys:
            return []
        where.append(Site.key.in_(keys))
    rev_where = []
    if as_of is not None:
        if as_of.tzinfo is None:
            raise ValueError("as_of must be timezone-aware")
        rev_where.append(ReportRevision.created_at <= as_of)
    latest = (
        select(ReportRevision.report_id, func.max(ReportRevision.revision).label("rev"))
        .join(Report, Report.id == ReportRevision.report_id)
        .join(Site, Site.id == Report.site_id)
        .where(*where, *rev_where)
        .group_by(ReportRevision.report_id)
        .subquery()
    )
    rows = session.execute(
        select(
            Site.key,
            Report.period,
            Report.period_kind,
            ReportRevision.values,
            ReportRevision.revision,
            ReportRevision.author,
            ReportRevision.created_at,
            ReportRevision.reason,
        )
        .select_from(latest)
        .join(Report, Report.id == latest.c.report_id)
        .join(Site, Site.id == Report.site_id)
        .join(
            ReportRevision,
            (ReportRevision.report_id == latest.c.report_id)
            & (ReportRevision.revision == latest.c.rev),
        )
    )
    return [
        ReportSnapshot(key, period, kind, dict(values), rev, author, created, reason)
        for key, period, kind, values, rev, author, created, reason in rows
    ]


def annual_inputs(
    session: Session,
    site_keys: Iterable[str] | None,
    years: Iterable[int],
    as_of: datetime | None = None,
) -> dict[tuple[str, int], ReportSnapshot]:
    """The annual reports (period ``"YYYY"``) of ``site_keys`` (None: every site) for
    ``years``, keyed by (site key, year).

    Each value is the revision in force at ``as_of``: the latest revision created at or before
    it (``None``: the current revision), so a figure computed earlier can be reproduced. The
    snapshot's ``values`` (field id -> number or text), ``revision``, ``author`` and
    ``created_at`` say what was used; a (site, year) without a report at ``as_of`` is absent.
    One query, whatever the number of sites and years."""
    periods = sorted({f"{int(y):04d}" for y in years})
    return {(s.site, int(s.period)): s for s in _bulk(session, site_keys, periods, as_of)}


def monthly_inputs(
    session: Session,
    site_keys: Iterable[str] | None,
    years: Iterable[int],
    as_of: datetime | None = None,
) -> dict[tuple[str, str], ReportSnapshot]:
    """The monthly reports of ``years`` like ``annual_inputs``, keyed by (site key,
    ``"YYYY-MM"``)."""
    periods = sorted({f"{int(y):04d}-{m:02d}" for y in years for m in range(1, 13)})
    return {(s.site, s.period): s for s in _bulk(session, site_keys, periods, as_of)}
