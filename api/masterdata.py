"""Master data in the API database: import a site model, read it back, stop-reason assignments.

``import_site`` is idempotent: it compares every row with what the model says and reports what
it created and updated (and removed), never duplicating a row. ``load_site_model`` rebuilds the
``SiteModel`` from the stored JSON (equal to the model imported). The functions flush but never
commit: the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.models import (
    Area,
    Base,
    Calendar,
    Enterprise,
    Line,
    Machine,
    MachineType,
    Meter,
    Product,
    ProductMachinePri,
    Reason,
    Site,
    StopAssignmentRow,
)
from zhizao.site import SiteModel

__all__ = [
    "ImportReport",
    "SiteRow",
    "StopAssignment",
    "assign_stop_reason",
    "import_site",
    "list_sites",
    "load_site_model",
    "split_stop",
    "stop_assignments",
]

R = TypeVar("R", bound=Base)


@dataclass
class ImportReport:
    """What an import changed; entries are ``"<kind>:<key>"`` (``machine:VMC-01``)."""

    site: str
    created: list[str]
    updated: list[str]
    unchanged: int
    deleted: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted)


@dataclass(frozen=True)
class SiteRow:
    enterprise: str
    site: str
    name: str
    district: str
    timezone: str


@dataclass
class StopAssignment:
    id: int
    site: str
    machine: str
    start_ns: int
    end_ns: int
    reason_code: str | None
    note: str
    created_by: str
    created_at: datetime


def _now() -> datetime:
    return datetime.now(UTC)


class _Sync:
    """Brings the rows of one site in line with a model, counting what it touched."""

    def __init__(self, session: Session, report: ImportReport) -> None:
        self.session = session
        self.report = report
        self.stale: list[tuple[str, Base]] = []

    def rows(
        self,
        kind: str,
        model: type[R],
        existing: Iterable[R],
        key_of: Callable[[R], str],
        wanted: dict[str, dict[str, Any]],
    ) -> dict[str, R]:
        """Create/update rows so that they hold ``wanted`` (key -> column values)."""
        have = {key_of(r): r for r in existing}
        out: dict[str, R] = {}
        for key, values in wanted.items():
            row = have.pop(key, None)
            if row is None:
                row = model(**values)
                self.session.add(row)
                self.report.created.append(f"{kind}:{key}")
            elif any(getattr(row, c) != v for c, v in values.items()):
                for c, v in values.items():
                    setattr(row, c, v)
                self.report.updated.append(f"{kind}:{key}")
            else:
                self.report.unchanged += 1
            out[key] = row
        self.stale.extend((f"{kind}:{k}", r) for k, r in have.items())
        self.session.flush()
        return out

    def delete_stale(self) -> None:
        # children were synced after their parents: delete them first
        for name, row in reversed(self.stale):
            self.session.delete(row)
            self.report.deleted.append(name)
        self.session.flush()


def _site_row(session: Session, site: str) -> Site | None:
    return session.scalars(select(Site).where(Site.key == site).order_by(Site.id)).first()


def import_site(session: Session, model: SiteModel) -> ImportReport:
    """Create or update the site of ``model`` and everything in it (idempotent)."""
    report = ImportReport(site=model.site, created=[], updated=[], unchanged=0)
    data = model.model_dump(mode="json")
    ent = session.scalars(select(Enterprise).where(Enterprise.key == model.enterprise)).first()
    if ent is None:
        ent = Enterprise(key=model.enterprise)
        session.add(ent)
        session.flush()
        report.created.append(f"enterprise:{model.enterprise}")
    other = _site_row(session, model.site)
    if other is not None and other.enterprise_id != ent.id:
        raise ValueError(
            f"site: {model.site!r} already belongs to another enterprise; site ids must be unique"
        )
    site = other
    own = {"name": model.name, "district": model.district, "timezone": model.timezone}
    if site is None:
        site = Site(enterprise_id=ent.id, key=model.site, model=data, updated_at=_now(), **own)
        session.add(site)
        session.flush()
        report.created.append(f"site:{model.site}")
        site_changed = json_changed = False
    else:
        site_changed = any(getattr(site, c) != v for c, v in own.items())
        json_changed = site.model != data
        for c, v in own.items():
            setattr(site, c, v)

    sync = _Sync(session, report)
    sid = site.id

    def of_site(m: type[R]) -> list[R]:
        return list(session.scalars(select(m).where(m.site_id == sid)))  # type: ignore[attr-defined]

    sync.rows(
        "calendar",
        Calendar,
        of_site(Calendar),
        lambda r: r.key,
        {
            k: {
                "site_id": sid,
                "key": k,
                "timezone": c.timezone,
                "config": c.model_dump(mode="json"),
            }
            for k, c in model.calendars.items()
        },
    )
    sync.rows(
        "machine_type",
        MachineType,
        of_site(MachineType),
        lambda r: r.key,
        {
            k: {
                "site_id": sid,
                "key": k,
                "profile": t.profile.value,
                "state_map": {s: v.value for s, v in t.state_map.items()},
                "signals": [s.model_dump(mode="json") for s in t.signals],
                "config": t.model_dump(mode="json"),
            }
            for k, t in model.machine_types.items()
        },
    )
    areas = sync.rows(
        "area",
        Area,
        of_site(Area),
        lambda r: r.key,
        {
            a.id: {"site_id": sid, "key": a.id, "name": a.name, "position": i}
            for i, a in enumerate(model.areas)
        },
    )
    lines = sync.rows(
        "line",
        Line,
        of_site(Line),
        lambda r: r.key,
        {
            ln.id: {
                "site_id": sid,
                "area_id": areas[a.id].id,
                "key": ln.id,
                "name": ln.name,
                "calendar": ln.calendar,
                "position": i,
            }
            for a in model.areas
            for i, ln in enumerate(a.lines)
        },
    )
    sync.rows(
        "machine",
        Machine,
        of_site(Machine),
        lambda r: r.key,
        {
            m.id: {
                "site_id": sid,
                "line_id": lines[ln.id].id,
                "key": m.id,
                "type": m.type,
                "cell": m.cell,
                "key_process": m.key_process,
                "nc_controlled": m.nc_controlled,
                "networked": m.networked,
                "original_value_cny": m.original_value_cny,
                "calendar": m.calendar,
                "position": i,
            }
            for a in model.areas
            for ln in a.lines
            for i, m in enumerate(ln.machines)
        },
    )
    products = sync.rows(
        "product",
        Product,
        of_site(Product),
        lambda r: r.key,
        {
            p.id: {
                "site_id": sid,
                "key": p.id,
                "name": p.name,
                "ideal_cycle_s": p.ideal_cycle_s,
                "unit_value_cny": p.unit_value_cny,
            }
            for p in model.products
        },
    )
    pid_key = {r.id: k for k, r in products.items()}
    pris = session.scalars(
        select(ProductMachinePri).where(ProductMachinePri.product_id.in_(list(pid_key)))
    )
    sync.rows(
        "pri",
        ProductMachinePri,
        pris,
        lambda r: f"{pid_key[r.product_id]}@{r.machine}",
        {
            f"{p.id}@{m}": {"product_id": products[p.id].id, "machine": m, "ideal_cycle_s": s}
            for p in model.products
            for m, s in p.ideal_cycle_s_by_machine.items()
        },
    )
    sync.rows(
        "meter",
        Meter,
        of_site(Meter),
        lambda r: r.key,
        {
            m.id: {
                "site_id": sid,
                "key": m.id,
                "medium": m.medium,
                "unit": m.unit,
                "signal": m.signal,
                "asset": m.asset,
                "purchased": m.purchased,
                "config": m.model_dump(mode="json"),
            }
            for m in model.meters
        },
    )
    sync.rows(
        "reason",
        Reason,
        of_site(Reason),
        lambda r: r.code,
        {
            r.code: {
                "site_id": sid,
                "code": r.code,
                "label": r.label,
                "label_zh": r.label_zh,
                "category": r.category,
                "parent": r.parent,
                "position": i,
            }
            for i, r in enumerate(model.reasons)
        },
    )
    sync.delete_stale()
    if f"site:{model.site}" not in report.created:
        if site_changed or (json_changed and not report.changed):
            report.updated.insert(0, f"site:{model.site}")
        else:
            report.unchanged += 1
        if json_changed or site_changed:
            site.model = data
            site.updated_at = _now()
    session.flush()
    return report


def load_site_model(session: Session, site: str) -> SiteModel | None:
    """The site model stored for ``site`` (None: no such site)."""
    row = _site_row(session, site)
    if row is None:
        return None
    return SiteModel.model_validate(row.model)


def list_sites(session: Session) -> list[SiteRow]:
    """Every stored site, ordered by enterprise and site id."""
    rows = session.execute(
        select(Enterprise.key, Site.key, Site.name, Site.district, Site.timezone)
        .join(Enterprise, Site.enterprise_id == Enterprise.id)
        .order_by(Enterprise.key, Site.key)
    )
    return [SiteRow(e, s, n, d, tz) for e, s, n, d, tz in rows]


# -- stop-reason assignments -------------------------------------------------------------------


def _assignment(row: StopAssignmentRow, site: str) -> StopAssignment:
    return StopAssignment(
        id=row.id,
        site=site,
        machine=row.machine,
        start_ns=row.start_ns,
        end_ns=row.end_ns,
        reason_code=row.reason_code,
        note=row.note,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _site_for_assignment(session: Session, site: str, machine: str) -> Site:
    row = _site_row(session, site)
    if row is None:
        raise ValueError(f"site: {site!r} does not exist")
    found = session.scalars(
        select(Machine.id).where(Machine.site_id == row.id, Machine.key == machine)
    ).first()
    if found is None:
        raise ValueError(f"machine: {machine!r} is not a machine of site {site!r}")
    return row


def _check_reason(session: Session, site: Site, reason_code: str | None, name: str) -> None:
    if reason_code is None:
        return
    found = session.scalars(
        select(Reason.id).where(Reason.site_id == site.id, Reason.code == reason_code)
    ).first()
    if found is None:
        raise ValueError(f"{name}: {reason_code!r} is not in the stop-reason tree of {site.key!r}")


def _check_range(start_ns: int, end_ns: int) -> None:
    if end_ns <= start_ns:
        raise ValueError("end_ns: the end must be after start_ns")


def _add(
    session: Session,
    site: Site,
    machine: str,
    start_ns: int,
    end_ns: int,
    reason_code: str | None,
    note: str,
    created_by: str,
) -> StopAssignment:
    row = StopAssignmentRow(
        site_id=site.id,
        machine=machine,
        start_ns=start_ns,
        end_ns=end_ns,
        reason_code=reason_code,
        note=note,
        created_by=created_by,
        created_at=_now(),
    )
    session.add(row)
    session.flush()
    return _assignment(row, site.key)


def assign_stop_reason(
    session: Session,
    *,
    site: str,
    machine: str,
    start_ns: int,
    end_ns: int,
    reason_code: str | None,
    note: str,
    created_by: str,
) -> StopAssignment:
    """Record ``reason_code`` (None: clear) for ``machine`` over [start_ns, end_ns)."""
    _check_range(start_ns, end_ns)
    s = _site_for_assignment(session, site, machine)
    _check_reason(session, s, reason_code, "reason_code")
    return _add(session, s, machine, start_ns, end_ns, reason_code, note, created_by)


def split_stop(
    session: Session,
    *,
    site: str,
    machine: str,
    start_ns: int,
    end_ns: int,
    at_ns: int,
    first_reason: str | None,
    second_reason: str | None,
    note: str,
    created_by: str,
) -> list[StopAssignment]:
    """Split a stop at ``at_ns``: two assignments, [start, at) and [at, end)."""
    _check_range(start_ns, end_ns)
    if not start_ns < at_ns < end_ns:
        raise ValueError("at_ns: the split point must lie strictly inside the stop")
    s = _site_for_assignment(session, site, machine)
    _check_reason(session, s, first_reason, "first_reason")
    _check_reason(session, s, second_reason, "second_reason")
    return [
        _add(session, s, machine, start_ns, at_ns, first_reason, note, created_by),
        _add(session, s, machine, at_ns, end_ns, second_reason, note, created_by),
    ]


def stop_assignments(
    session: Session, *, site: str, machine: str | None, start_ns: int, end_ns: int
) -> list[StopAssignment]:
    """The effective assignments overlapping [start_ns, end_ns), ordered by machine and time.

    Where several assignments cover the same time, the newest wins: older ones come back
    clipped to the parts nobody overrode (an interval covered entirely disappears). History is
    kept in the table; this is the view of it.
    """
    s = _site_row(session, site)
    if s is None:
        return []
    q = select(StopAssignmentRow).where(
        StopAssignmentRow.site_id == s.id,
        StopAssignmentRow.start_ns < end_ns,
        StopAssignmentRow.end_ns > start_ns,
    )
    if machine is not None:
        q = q.where(StopAssignmentRow.machine == machine)
    rows = list(session.scalars(q.order_by(StopAssignmentRow.id.desc())))
    out: list[StopAssignment] = []
    covered: dict[str, list[tuple[int, int]]] = {}
    for row in rows:  # newest first
        taken = covered.setdefault(row.machine, [])
        for a, b in _subtract((row.start_ns, row.end_ns), taken):
            if b <= start_ns or a >= end_ns:
                continue  # what is left of an older one can lie outside the range
            piece = _assignment(row, s.key)
            piece.start_ns, piece.end_ns = a, b
            out.append(piece)
        taken.append((row.start_ns, row.end_ns))
    out.sort(key=lambda x: (x.machine, x.start_ns))
    return out


def _subtract(span: tuple[int, int], taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Parts of ``span`` outside every interval of ``taken``."""
    parts = [span]
    for ta, tb in taken:
        nxt: list[tuple[int, int]] = []
        for a, b in parts:
            if tb <= a or ta >= b:
                nxt.append((a, b))
                continue
            if a < ta:
                nxt.append((a, ta))
            if tb < b:
                nxt.append((tb, b))
        parts = nxt
    return parts
