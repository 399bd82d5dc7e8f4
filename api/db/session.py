"""Engines, sessions and schema migrations for the API database (sqlite or PostgreSQL).

``upgrade(url)`` runs the Alembic revisions in ``api/migrations`` programmatically (no
alembic.ini at run time); ``current_revision(url)`` says where a database stands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

__all__ = [
    "MIGRATIONS",
    "alembic_config",
    "current_revision",
    "head_revision",
    "make_engine",
    "make_sessionmaker",
    "upgrade",
]

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    try:
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=5000")
    finally:
        cur.close()


def make_engine(url: str) -> sqlalchemy.Engine:
    """An engine for ``url``: sqlite with foreign keys ON and WAL; PostgreSQL with pre-ping.

    A sqlite file's directory is created when missing; ``sqlite://`` (memory) shares one
    connection so every session sees the same database.
    """
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        kwargs: dict[str, Any] = {}
        if u.database in (None, "", ":memory:"):
            kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        else:
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sqlalchemy.create_engine(u, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sqlalchemy.create_engine(u, pool_pre_ping=True)


def make_sessionmaker(engine: sqlalchemy.Engine) -> sessionmaker[Session]:
    """Sessions on ``engine``; objects stay readable after commit (``expire_on_commit=False``)."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(connection: sqlalchemy.Connection | None = None) -> Config:
    """An Alembic configuration for ``api/migrations`` (the connection goes in ``attributes``)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "api/migrations/versions holds the revisions"
    return head


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (creating the tables from empty)."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` stands at (None: never migrated)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rev: str | None = MigrationContext.configure(conn).get_current_revision()
            return rev
    finally:
        engine.dispose()
