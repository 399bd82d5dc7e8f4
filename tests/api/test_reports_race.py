"""Two submissions of one period at the same moment (sqlite and PostgreSQL): the second is
refused as a conflict naming the period, never a server error, and the first is intact."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, sessionmaker

from api.db.models import ReportRevision
from api.db.session import make_engine, make_sessionmaker, upgrade
from api.masterdata import import_site
from api.reports.service import ConcurrentSubmission, current_report, submit_report
from tests.api.reportdata import ANNUAL, site

NOW = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
A = "plant8"


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(db_url)
    engine = make_engine(db_url)
    maker = make_sessionmaker(engine)
    with maker() as s:
        import_site(s, site(A))
        s.commit()
    yield maker
    engine.dispose()


def _race(maker: sessionmaker[Session], first: dict[str, Any], second: dict[str, Any]) -> None:
    """``second`` reads the period, then ``first`` is stored and committed by another session
    just before ``second`` writes (inside its first flush)."""
    with maker() as loser:
        fired = []

        def other_session_wins(*_: Any) -> None:
            if fired:
                return
            fired.append(True)
            with maker() as winner:
                submit_report(winner, A, "2025", first, author="fa1", reason="r", now=NOW)
                winner.commit()

        event.listen(loser, "before_flush", other_session_wins)
        with pytest.raises(ConcurrentSubmission) as exc:
            submit_report(loser, A, "2025", second, author="fa2", reason="mine", now=NOW)
        assert fired
        assert "2025" in str(exc.value) and "submit again" in str(exc.value)
        loser.rollback()


def test_two_first_submissions_of_a_period(sessions: sessionmaker[Session]) -> None:
    _race(sessions, ANNUAL, {**ANNUAL, "rd_spend_10k_cny": 361.0})
    with sessions() as s:
        snap = current_report(s, A, "2025")
        assert snap is not None and snap.revision == 1 and snap.author == "fa1"
        assert snap.values["rd_spend_10k_cny"] == 360.0
        assert s.scalar(select(func.count()).select_from(ReportRevision)) == 1


def test_two_corrections_of_the_same_revision(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        submit_report(s, A, "2025", ANNUAL, author="fa", now=NOW)
        s.commit()
    _race(
        sessions,
        {**ANNUAL, "rd_spend_10k_cny": 362.0},
        {**ANNUAL, "rd_spend_10k_cny": 363.0},
    )
    with sessions() as s:
        snap = current_report(s, A, "2025")
        assert snap is not None and snap.revision == 2 and snap.author == "fa1"
        assert snap.values["rd_spend_10k_cny"] == 362.0
