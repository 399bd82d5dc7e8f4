"""Alembic revisions of the API database, on sqlite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from api.db.session import current_revision, head_revision, make_engine, make_sessionmaker, upgrade
from api.masterdata import import_site, load_site_model
from tests.api.sitedata import sim_site
from zhizao.site import SiteModel


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_from_empty_to_head(db_url: str) -> None:
    assert current_revision(db_url) is None
    upgrade(db_url)
    assert current_revision(db_url) == head_revision() == "0003"
    tables = _tables(db_url)
    assert {"enterprise", "site", "machine", "product_machine_pri", "api_token"} <= tables
    assert {"reason", "stop_assignment"} <= tables
    assert {"report", "report_revision", "commission_config_revision"} <= tables
    upgrade(db_url)  # again: nothing to do
    assert current_revision(db_url) == "0003"


def test_upgrade_from_the_previous_revision_keeps_data(db_url: str) -> None:
    upgrade(db_url, "0001")
    assert current_revision(db_url) == "0001"
    assert "api_token" not in _tables(db_url)
    # data written by the 0001 schema (raw SQL: today's models already know 0002's tables)
    model = sim_site(reasons=[])
    data = model.model_dump(mode="json")
    engine = make_engine(db_url)
    site = sa.table(
        "site",
        sa.column("id"),
        sa.column("enterprise_id"),
        sa.column("key"),
        sa.column("name"),
        sa.column("district"),
        sa.column("timezone"),
        sa.column("model", sa.JSON),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO enterprise (id, key) VALUES (1, :k)"), {"k": model.enterprise}
        )
        conn.execute(
            site.insert().values(
                id=1,
                enterprise_id=1,
                key=model.site,
                name=model.name,
                district=model.district,
                timezone=model.timezone,
                model=data,
                updated_at=datetime.now(UTC),
            )
        )
    engine.dispose()

    upgrade(db_url)
    assert current_revision(db_url) == "0003"
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as s:
        loaded = load_site_model(s, model.site)
        assert loaded == model
        # the upgraded database takes the newer data (reasons) through a normal re-import
        report = import_site(s, sim_site())
        s.commit()
        # the 0001-era row is found and updated, not duplicated; the reason tree lands in 0002's table
        assert s.scalar(sa.select(sa.func.count()).select_from(sa.table("site"))) == 1
        assert "reason:BRK" in report.created
        assert not any(x.startswith(("site:", "enterprise:")) for x in report.created)
        again = load_site_model(s, model.site)
        assert isinstance(again, SiteModel) and len(again.reasons) == len(sim_site().reasons)
    engine.dispose()


def test_head_schema_matches_the_models(db_url: str) -> None:
    """The revisions build exactly the tables, columns, types, keys and indexes of api.db.models
    (a model change without a revision fails here)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from api.db.models import Base

    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
