"""Tables of the API database (typed SQLAlchemy 2 declarative models).

Portable types only (sqlite and PostgreSQL): String, Integer, BigInteger for nanosecond times,
Float, Boolean, JSON, DateTime(timezone=True). Natural keys are unique: a site key per
enterprise, a machine/line/area/product/meter/reason key per site. ``site.model`` holds the full
validated site model as JSON, so ``load_site_model`` rebuilds exactly what was imported; the
other master-data tables are the same data, normalized for queries and reports.

Schema changes go through a new Alembic revision in ``api/migrations/versions``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "ApiToken",
    "Area",
    "Base",
    "Calendar",
    "CommissionConfigRevision",
    "Enterprise",
    "Line",
    "Machine",
    "MachineType",
    "Meter",
    "Product",
    "ProductMachinePri",
    "Reason",
    "Report",
    "ReportRevision",
    "Site",
    "StopAssignmentRow",
]

# constraint names the same on every database (Alembic needs names to alter them later)
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always gives aware UTC datetimes (sqlite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("datetimes stored in the API database must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


KEY = 128  # length of natural keys (ids in the site model)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Enterprise(Base):
    __tablename__ = "enterprise"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(KEY), unique=True)


class Site(Base):
    __tablename__ = "site"
    __table_args__ = (UniqueConstraint("enterprise_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(KEY), index=True)
    name: Mapped[str] = mapped_column(String(256), default="")
    district: Mapped[str] = mapped_column(String(256), default="")
    timezone: Mapped[str] = mapped_column(String(64))
    # the full validated SiteModel (model_dump(mode="json"))
    model: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Area(Base):
    __tablename__ = "area"
    __table_args__ = (UniqueConstraint("site_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(KEY))
    name: Mapped[str] = mapped_column(String(256), default="")
    position: Mapped[int] = mapped_column(Integer, default=0)


class Line(Base):
    __tablename__ = "line"
    __table_args__ = (UniqueConstraint("site_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    area_id: Mapped[int] = mapped_column(ForeignKey("area.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(KEY))
    name: Mapped[str] = mapped_column(String(256), default="")
    calendar: Mapped[str] = mapped_column(String(KEY))
    position: Mapped[int] = mapped_column(Integer, default=0)


class MachineType(Base):
    __tablename__ = "machine_type"
    __table_args__ = (UniqueConstraint("site_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(KEY))
    profile: Mapped[str] = mapped_column(String(32))
    state_map: Mapped[dict[str, Any]] = mapped_column(JSON)
    signals: Mapped[list[Any]] = mapped_column(JSON)
    # the whole MachineTypeConfig (namespaces, cutting load, ...)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)


class Machine(Base):
    __tablename__ = "machine"
    __table_args__ = (UniqueConstraint("site_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    line_id: Mapped[int] = mapped_column(ForeignKey("line.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(KEY))
    type: Mapped[str] = mapped_column(String(KEY))
    cell: Mapped[str | None] = mapped_column(String(KEY))
    key_process: Mapped[bool] = mapped_column(Boolean, default=False)
    nc_controlled: Mapped[bool] = mapped_column(Boolean, default=False)
    networked: Mapped[bool] = mapped_column(Boolean, default=True)
    original_value_cny: Mapped[float | None] = mapped_column(Float)
    calendar: Mapped[str | None] = mapped_column(String(KEY))
    position: Mapped[int] = mapped_column(Integer, default=0)


class Calendar(Base):
    __tablename__ = "calendar"
    __table_args__ = (UniqueConstraint("site_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(KEY))
    timezone: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)


class Product(Base):
    __tablename__ = "product"
    __table_args__ = (UniqueConstraint("site_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(KEY))
    name: Mapped[str] = mapped_column(String(256), default="")
    ideal_cycle_s: Mapped[float] = mapped_column(Float)
    unit_value_cny: Mapped[float | None] = mapped_column(Float)


class ProductMachinePri(Base):
    """A product's PRI (ideal cycle time) on one machine, where it differs from the default."""

    __tablename__ = "product_machine_pri"
    __table_args__ = (UniqueConstraint("product_id", "machine"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    machine: Mapped[str] = mapped_column(String(KEY))
    ideal_cycle_s: Mapped[float] = mapped_column(Float)


class Meter(Base):
    __tablename__ = "meter"
    __table_args__ = (UniqueConstraint("site_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(KEY))
    medium: Mapped[str] = mapped_column(String(32))
    unit: Mapped[str] = mapped_column(String(16))
    signal: Mapped[str] = mapped_column(String(KEY))
    asset: Mapped[str] = mapped_column(String(512), default="")
    purchased: Mapped[bool] = mapped_column(Boolean, default=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)


# -- revision 0002 ------------------------------------------------------------------------------


class Reason(Base):
    __tablename__ = "reason"
    __table_args__ = (UniqueConstraint("site_id", "code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(KEY))
    label: Mapped[str] = mapped_column(String(256))
    label_zh: Mapped[str] = mapped_column(String(256), default="")
    category: Mapped[str] = mapped_column(String(32))
    parent: Mapped[str | None] = mapped_column(String(KEY))
    position: Mapped[int] = mapped_column(Integer, default=0)


class StopAssignmentRow(Base):
    """A reason given to a machine's stop over [start_ns, end_ns); rows are never deleted."""

    __tablename__ = "stop_assignment"
    __table_args__ = (Index("ix_stop_assignment_lookup", "site_id", "machine", "start_ns"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    machine: Mapped[str] = mapped_column(String(KEY))
    start_ns: Mapped[int] = mapped_column(BigInteger)
    end_ns: Mapped[int] = mapped_column(BigInteger)
    reason_code: Mapped[str | None] = mapped_column(String(KEY))
    note: Mapped[str] = mapped_column(String(2000), default="")
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ApiToken(Base):
    """An API token; only the SHA-256 of its secret is stored."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(32))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


# -- revision 0003 ------------------------------------------------------------------------------


class Report(Base):
    """A factory's report for one period (``2025`` annual, ``2025-03`` monthly); its figures
    live in ``report_revision`` rows, never updated in place."""

    __tablename__ = "report"
    __table_args__ = (
        UniqueConstraint("site_id", "period"),
        Index("ix_report_period", "period"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    period_kind: Mapped[str] = mapped_column(String(16))
    period: Mapped[str] = mapped_column(String(7))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ReportRevision(Base):
    """One revision of a report: the full set of values, who, when, why and what changed."""

    __tablename__ = "report_revision"
    __table_args__ = (UniqueConstraint("report_id", "revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("report.id", ondelete="CASCADE"))
    revision: Mapped[int] = mapped_column(Integer)
    values: Mapped[dict[str, Any]] = mapped_column(JSON)
    author: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    reason: Mapped[str] = mapped_column(String(2000), default="")
    # field -> {"old": value | None, "new": value | None}
    changed: Mapped[dict[str, Any]] = mapped_column(JSON)


class CommissionConfigRevision(Base):
    """A version of the commission's configuration (cohorts, districts, base years, targets)
    with its source; rows are only ever added."""

    __tablename__ = "commission_config_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, unique=True)
    source: Mapped[str] = mapped_column(String(2000))
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    author: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(String(2000), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
