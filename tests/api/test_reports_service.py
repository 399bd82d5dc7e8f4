"""Reports in a real database (sqlite and PostgreSQL): revisions, history, as_of, bulk reads."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.db.models import CommissionConfigRevision, Report, ReportRevision, Site
from api.db.session import make_engine, make_sessionmaker, upgrade
from api.masterdata import import_site
from api.reports.service import (
    SiteNotFound,
    ValidationFailed,
    annual_inputs,
    current_report,
    get_revision,
    list_reports,
    list_revisions,
    monthly_inputs,
    submit_report,
)
from tests.api.reportdata import ANNUAL, month, site

NOW = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
A, B = "plant8", "plant9"


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    upgrade(db_url)
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as s:
        import_site(s, site(A))
        import_site(s, site(B))
        s.commit()
        yield s
    engine.dispose()


def _count(session: Session, model: type[object]) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_submit_read_back_correct_and_history(session: Session) -> None:
    first = submit_report(session, A, "2025", ANNUAL, author="alice", reason="", now=NOW)
    session.commit()
    assert first.created and first.report.revision == 1
    assert current_report(session, A, "2025") == first.report
    assert first.report.values["average_headcount"] == 420
    assert first.report.changed["park"] == {"old": None, "new": "Zhangjiang"}

    later = NOW + timedelta(days=3)
    fixed = {**ANNUAL, "rd_spend_10k_cny": 380.0, "park": "张江高科技园区"}
    second = submit_report(
        session, A, "2025", fixed, author="bob", reason="audited R&D figure", now=later
    )
    session.commit()
    assert second.created and second.report.revision == 2
    history = list_revisions(session, A, "2025")
    assert history is not None and [h.revision for h in history] == [1, 2]
    assert history[1].author == "bob" and history[1].reason == "audited R&D figure"
    assert history[1].created_at == later
    assert history[1].changed == {
        "park": {"old": "Zhangjiang", "new": "张江高科技园区"},
        "rd_spend_10k_cny": {"old": 360.0, "new": 380.0},
    }
    old = get_revision(session, A, "2025", 1)
    assert old is not None and old.values["rd_spend_10k_cny"] == 360.0 and old.author == "alice"
    assert get_revision(session, A, "2025", 3) is None
    cur = current_report(session, A, "2025")
    assert cur is not None and cur.values["park"] == "张江高科技园区"

    # as_of reproduces the old figures; None is the current revision
    before = annual_inputs(session, [A], [2025], as_of=NOW + timedelta(days=1))
    assert before[(A, 2025)].revision == 1
    assert before[(A, 2025)].values["rd_spend_10k_cny"] == 360.0
    assert annual_inputs(session, [A], [2025], as_of=NOW - timedelta(seconds=1)) == {}
    now = annual_inputs(session, [A], [2025])
    assert now[(A, 2025)].revision == 2 and now[(A, 2025)].author == "bob"
    assert now[(A, 2025)].created_at == later
    assert _count(session, ReportRevision) == 2 and _count(session, Report) == 1


def test_identical_submission_stores_nothing(session: Session) -> None:
    submit_report(session, A, "2025", ANNUAL, author="alice", now=NOW)
    session.commit()
    again = submit_report(session, A, "2025", dict(ANNUAL), author="bob", now=NOW)
    assert not again.created and "identical to revision 1" in again.message
    assert again.report.revision == 1
    assert _count(session, ReportRevision) == 1


def test_a_correction_needs_a_reason(session: Session) -> None:
    submit_report(session, A, "2025", ANNUAL, author="alice", now=NOW)
    session.commit()
    with pytest.raises(ValidationFailed) as exc:
        submit_report(session, A, "2025", {**ANNUAL, "rd_spend_10k_cny": 1.0}, author="b", now=NOW)
    assert [e.field for e in exc.value.errors] == ["reason"]
    session.rollback()
    assert _count(session, ReportRevision) == 1


def test_bad_reports_store_nothing(session: Session) -> None:
    bad = [
        ("2025", {**ANNUAL, "average_headcount": -1}, "average_headcount"),
        ("2025", {**ANNUAL, "rd_spend_10k_cny": "lots"}, "rd_spend_10k_cny"),
        (
            "2025",
            {k: v for k, v in ANNUAL.items() if k != "value_added_current_10k_cny"},
            "value_added_current_10k_cny",
        ),
        ("2026-04", month(4), "period"),  # NOW is 2026-03-10 in Shanghai
        ("2025", {**ANNUAL, "vat_payable_10k_cny": 600.0}, "value_added_current_10k_cny"),
        ("2025", {**ANNUAL, "revenue": 1.0}, "revenue"),
    ]
    for period, values, field in bad:
        with pytest.raises(ValidationFailed) as exc:
            submit_report(session, A, period, values, author="alice", now=NOW)
        assert field in {e.field for e in exc.value.errors}, (field, exc.value.errors)
    with pytest.raises(ValidationFailed) as exc:
        submit_report(session, A, "2025", ANNUAL, author="a", units={"waste_generated_t": "kg"},
                      now=NOW)  # fmt: skip
    assert "waste_generated_t" in exc.value.errors[0].message
    with pytest.raises(SiteNotFound):
        submit_report(session, "nowhere", "2025", ANNUAL, author="a", now=NOW)
    session.commit()
    assert _count(session, Report) == 0 and _count(session, ReportRevision) == 0


def test_month_sum_warning_on_either_submission(session: Session) -> None:
    for m in range(1, 13):
        r = submit_report(session, A, f"2025-{m:02d}", month(m), author="a", now=NOW)
        assert r.warnings == ()
    r = submit_report(
        session, A, "2025", {**ANNUAL, "electricity_kwh": 12_500_000.0}, author="a", now=NOW
    )
    assert r.created
    assert [w.field for w in r.warnings] == ["electricity_kwh"]
    assert "-500000" in r.warnings[0].message  # months 12 000 000 - annual 12 500 000
    session.commit()
    # correcting a month to close the gap: the warning is recomputed with the pending values
    r = submit_report(session, A, "2025-12", {**month(12), "electricity_kwh": 1_500_000.0},
                      author="a", reason="December meter read late", now=NOW)  # fmt: skip
    assert r.created and r.warnings == ()


def test_listing_and_monthly_inputs(session: Session) -> None:
    submit_report(session, A, "2025", ANNUAL, author="a", now=NOW)
    submit_report(session, A, "2025-02", month(2), author="a", now=NOW)
    submit_report(session, B, "2024", ANNUAL, author="b", now=NOW)
    session.commit()
    assert [r.period for r in list_reports(session, A)] == ["2025", "2025-02"]
    assert list_revisions(session, A, "2023") is None
    assert current_report(session, A, "garbage") is None
    got = annual_inputs(session, None, [2024, 2025])
    assert set(got) == {(A, 2025), (B, 2024)}
    assert set(annual_inputs(session, [B], [2025])) == set()
    assert annual_inputs(session, [], [2025]) == {}
    months = monthly_inputs(session, [A, B], [2025])
    assert set(months) == {(A, "2025-02")} and months[(A, "2025-02")].kind == "monthly"


def test_annual_inputs_bulk_read_is_one_query_and_fast(session: Session) -> None:
    site_id = {k: session.scalar(select(Site.id).where(Site.key == k)) for k in (A, B)}
    # 2 sites x 10 years x 3 revisions written directly (the validation is not under test here)
    for key, sid in site_id.items():
        for year in range(2015, 2025):
            rep = Report(site_id=sid, period_kind="annual", period=str(year), created_at=NOW)
            session.add(rep)
            session.flush()
            for n in (1, 2, 3):
                session.add(ReportRevision(report_id=rep.id, revision=n,
                    values={**ANNUAL, "rd_spend_10k_cny": float(n)}, author=key,
                    created_at=NOW + timedelta(days=n), reason="", changed={}))  # fmt: skip
    session.commit()
    statements: list[str] = []
    engine = session.get_bind()

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        t0 = time.perf_counter()
        got = annual_inputs(session, [A, B], range(2015, 2025), as_of=NOW + timedelta(days=2))
        elapsed = time.perf_counter() - t0
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(got) == 20 and {s.revision for s in got.values()} == {2}
    assert all(s.values["rd_spend_10k_cny"] == 2.0 for s in got.values())
    assert len(statements) == 1, statements
    assert elapsed < 1.0


def test_commission_config_revision_model(session: Session) -> None:
    session.add(CommissionConfigRevision(revision=1, source="plan.yaml", document={"a": 1},
                author="admin", reason="first", created_at=NOW))  # fmt: skip
    session.commit()
    row = session.scalars(select(CommissionConfigRevision)).one()
    assert row.document == {"a": 1} and row.created_at == NOW
    session.add(CommissionConfigRevision(revision=1, source="x", document={}, author="a",
                reason="", created_at=NOW))  # fmt: skip
    with pytest.raises(IntegrityError):
        session.commit()
