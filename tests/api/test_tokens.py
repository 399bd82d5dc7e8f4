"""API tokens on sqlite and PostgreSQL: only hashes stored, the role/site rules, expiry,
revocation, last use."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from api.db.models import ApiToken
from api.db.session import make_engine, make_sessionmaker, upgrade
from api.masterdata import import_site
from api.tokens import (
    Role,
    create_token,
    ensure_bootstrap_token,
    list_tokens,
    revoke_token,
    verify_token,
)
from tests.api.sitedata import sim_site


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    upgrade(db_url)
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as s:
        import_site(s, sim_site())
        s.commit()
        yield s
    engine.dispose()


SITE = sim_site().site


def _table_text(session: Session) -> str:
    """Every value of every column of api_token, as text."""
    rows = session.execute(
        sa.select(sa.table("api_token", *[sa.column(c.name) for c in ApiToken.__table__.columns]))
    ).all()
    return "\n".join(repr(tuple(r)) for r in rows)


def test_created_secret_verifies_and_only_its_hash_is_stored(session: Session) -> None:
    secret, info = create_token(
        session, name="line 1 tablet", role="engineer", site=SITE, expires_at=None
    )
    session.commit()
    assert secret.startswith("zz_") and len(secret) >= 3 + 43  # 32 bytes urlsafe = 43 chars
    assert (info.role, info.site, info.revoked, info.last_used_at) == (
        "engineer",
        SITE,
        False,
        None,
    )
    stored = _table_text(session)
    assert secret not in stored and secret[3:] not in stored
    assert hashlib.sha256(secret.encode()).hexdigest() in stored
    got = verify_token(session, secret)
    assert got is not None and got.id == info.id and got.site == SITE and got.role == "engineer"
    # two tokens never share a secret
    other, _ = create_token(session, name="x", role="admin", site=None, expires_at=None)
    assert other != secret


def test_unknown_revoked_and_expired_tokens_do_not_verify(session: Session) -> None:
    assert verify_token(session, "zz_" + "A" * 43) is None
    assert verify_token(session, "") is None
    secret, info = create_token(session, name="r", role="commission", site=None, expires_at=None)
    assert verify_token(session, secret) is not None
    assert revoke_token(session, info.id) is True
    assert revoke_token(session, info.id) is False  # already revoked
    assert revoke_token(session, 999_999) is False
    session.commit()
    assert verify_token(session, secret) is None
    assert next(t for t in list_tokens(session) if t.id == info.id).revoked is True

    now = datetime.now(UTC)
    soon = now + timedelta(hours=1)
    s2, _ = create_token(session, name="temp", role="admin", site=None, expires_at=soon)
    session.commit()
    assert verify_token(session, s2, now=now) is not None
    assert verify_token(session, s2, now=soon) is None
    assert verify_token(session, s2, now=soon + timedelta(seconds=1)) is None


def test_role_and_site_rules(session: Session) -> None:
    scoped: tuple[Role, ...] = ("engineer", "factory_admin")
    unscoped: tuple[Role, ...] = ("commission", "admin")
    for role in scoped:
        with pytest.raises(
            ValueError, match=r"^site: an? (engineer|factory_admin) token needs the site"
        ):
            create_token(session, name="n", role=role, site=None, expires_at=None)
        with pytest.raises(ValueError, match=r"^site: 'atlantis' does not exist"):
            create_token(session, name="n", role=role, site="atlantis", expires_at=None)
    for role in unscoped:
        with pytest.raises(
            ValueError, match=r"^site: an? (commission|admin) token sees every site"
        ):
            create_token(session, name="n", role=role, site=SITE, expires_at=None)
    with pytest.raises(ValueError, match=r"^role: 'root' is not one of"):
        create_token(session, name="n", role="root", site=None, expires_at=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^name:"):
        create_token(session, name="  ", role="admin", site=None, expires_at=None)
    with pytest.raises(ValueError, match=r"^expires_at:"):
        create_token(session, name="n", role="admin", site=None, expires_at=datetime(2030, 1, 1))
    assert list_tokens(session) == []
    _, fa = create_token(session, name="boss", role="factory_admin", site=SITE, expires_at=None)
    _, cm = create_token(session, name="ministry", role="commission", site=None, expires_at=None)
    assert (fa.site, cm.site) == (SITE, None)
    assert [(t.name, t.site) for t in list_tokens(session)] == [("boss", SITE), ("ministry", None)]


def test_last_used_is_set_at_most_once_a_minute(session: Session) -> None:
    secret, info = create_token(session, name="u", role="admin", site=None, expires_at=None)
    session.commit()
    t0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    first = verify_token(session, secret, now=t0)
    session.commit()
    assert first is not None and first.last_used_at == t0
    second = verify_token(session, secret, now=t0 + timedelta(seconds=30))
    assert second is not None and second.last_used_at == t0
    third = verify_token(session, secret, now=t0 + timedelta(minutes=2))
    session.commit()
    assert third is not None and third.last_used_at == t0 + timedelta(minutes=2)
    session.expunge_all()
    listed = next(t for t in list_tokens(session) if t.id == info.id)
    assert listed.last_used_at == t0 + timedelta(minutes=2)


def test_bootstrap_token_is_idempotent_and_hashed(session: Session) -> None:
    secret = "a-long-random-bootstrap-secret-0123456789"
    a = ensure_bootstrap_token(session, secret)
    session.commit()
    b = ensure_bootstrap_token(session, secret)
    session.commit()
    assert a == b and (a.name, a.role, a.site) == ("bootstrap", "admin", None)
    assert len(list_tokens(session)) == 1
    assert secret not in _table_text(session)
    got = verify_token(session, secret)
    assert got is not None and got.id == a.id
    # a revoked bootstrap token stays revoked; a new secret registers a new one
    revoke_token(session, a.id)
    assert ensure_bootstrap_token(session, secret).revoked is True
    assert verify_token(session, secret) is None
    c = ensure_bootstrap_token(session, secret + "-rotated")
    assert c.id != a.id and not c.revoked
    with pytest.raises(ValueError, match="bootstrap_admin_token"):
        ensure_bootstrap_token(session, "")
