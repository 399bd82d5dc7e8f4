"""API tokens: creation, verification, listing, revocation.

A secret is ``"zz_" + secrets.token_urlsafe(32)`` (256 random bits), shown once at creation;
the database keeps only its SHA-256 (hex). Verification looks the hash up and compares it in
constant time. ``engineer`` and ``factory_admin`` tokens are scoped to one existing site;
``commission`` and ``admin`` tokens see every site and carry none. The functions flush but
never commit: the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.models import ApiToken, Site

__all__ = [
    "PREFIX",
    "ROLES",
    "SCOPED_ROLES",
    "Role",
    "TokenInfo",
    "active_token",
    "create_token",
    "ensure_bootstrap_token",
    "hash_secret",
    "list_tokens",
    "revoke_token",
    "verify_token",
]

Role = Literal["engineer", "factory_admin", "commission", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
SCOPED_ROLES: frozenset[Role] = frozenset({"engineer", "factory_admin"})
PREFIX = "zz_"
BOOTSTRAP_NAME = "bootstrap"
# last_used_at is written at most this often per token (a read stays a read)
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    role: Role
    site: str | None  # factory scope; None for commission/admin
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked: bool
    created_at: datetime


def hash_secret(secret: str) -> str:
    """SHA-256 hex of a token secret (what the database stores)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _role(value: str) -> Role:
    for r in ROLES:
        if r == value:
            return r
    raise ValueError(f"role: {value!r} is not one of {', '.join(ROLES)}")


def _info(row: ApiToken, site: str | None) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        name=row.name,
        role=_role(row.role),
        site=site,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked=row.revoked_at is not None,
        created_at=row.created_at,
    )


def _site_key(session: Session, site_id: int | None) -> str | None:
    if site_id is None:
        return None
    return session.get_one(Site, site_id).key


def _a(role: str) -> str:
    return f"an {role}" if role[0] in "aeiou" else f"a {role}"


def _site_id(session: Session, role: Role, site: str | None) -> int | None:
    if role in SCOPED_ROLES:
        if not site:
            raise ValueError(f"site: {_a(role)} token needs the site (factory) it belongs to")
        found = session.scalars(select(Site.id).where(Site.key == site).order_by(Site.id)).first()
        if found is None:
            raise ValueError(f"site: {site!r} does not exist; import its site model first")
        return found
    if site is not None:
        raise ValueError(f"site: {_a(role)} token sees every site; give no site")
    return None


def _insert(
    session: Session,
    *,
    secret: str,
    name: str,
    role: str,
    site: str | None,
    expires_at: datetime | None,
) -> TokenInfo:
    name = name.strip()
    if not name or len(name) > 256:
        raise ValueError("name: give the token a name of 1 to 256 characters")
    r = _role(role)
    if expires_at is not None and expires_at.tzinfo is None:
        raise ValueError("expires_at: give the expiry with a timezone (e.g. 2027-01-01T00:00Z)")
    site_id = _site_id(session, r, site)
    row = ApiToken(
        name=name,
        role=r,
        site_id=site_id,
        secret_sha256=hash_secret(secret),
        expires_at=expires_at,
        created_at=_now(),
    )
    session.add(row)
    session.flush()
    return _info(row, site if site_id is not None else None)


def create_token(
    session: Session,
    *,
    name: str,
    role: Role,
    site: str | None,
    expires_at: datetime | None,
) -> tuple[str, TokenInfo]:
    """A new token: its secret (show it once, it is not stored) and its description."""
    secret = PREFIX + secrets.token_urlsafe(32)
    return secret, _insert(
        session, secret=secret, name=name, role=role, site=site, expires_at=expires_at
    )


def ensure_bootstrap_token(session: Session, secret: str) -> TokenInfo:
    """Register ``secret`` as an admin token named "bootstrap" (only its hash; idempotent).

    A token with that secret that already exists is returned as it is; a revoked one stays
    revoked (an operator revoked it on purpose: change the secret to get a new one).
    """
    if not secret:
        raise ValueError("bootstrap_admin_token: the secret is empty")
    digest = hash_secret(secret)
    row = session.scalars(select(ApiToken).where(ApiToken.secret_sha256 == digest)).first()
    if row is not None:
        return _info(row, _site_key(session, row.site_id))
    return _insert(
        session, secret=secret, name=BOOTSTRAP_NAME, role="admin", site=None, expires_at=None
    )


def verify_token(session: Session, secret: str, *, now: datetime | None = None) -> TokenInfo | None:
    """The token with ``secret``; None when unknown, revoked or expired.

    Updates ``last_used_at`` (at most once a minute per token; the caller commits).
    """
    if not secret or len(secret) > 512:
        return None
    now = now or _now()
    digest = hash_secret(secret)
    # one query per request: the token and its site's key
    found = session.execute(
        select(ApiToken, Site.key)
        .outerjoin(Site, ApiToken.site_id == Site.id)
        .where(ApiToken.secret_sha256 == digest)
    ).first()
    if found is None:
        return None
    row, site_key = found
    if not hmac.compare_digest(row.secret_sha256, digest):
        return None
    if row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
        session.flush()
    return _info(row, site_key)


def active_token(
    session: Session, token_id: int, *, now: datetime | None = None
) -> TokenInfo | None:
    """The token with database id ``token_id``; None when missing, revoked or expired (the
    portal's sessions hold the id, never the secret, and re-check it on every request)."""
    now = now or _now()
    found = session.execute(
        select(ApiToken, Site.key)
        .outerjoin(Site, ApiToken.site_id == Site.id)
        .where(ApiToken.id == token_id)
    ).first()
    if found is None:
        return None
    row, site_key = found
    if row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    return _info(row, site_key)


def list_tokens(session: Session) -> list[TokenInfo]:
    """Every token (revoked ones too), oldest first; secrets are never part of it."""
    keys = dict(session.execute(select(Site.id, Site.key)).tuples().all())
    rows = session.scalars(select(ApiToken).order_by(ApiToken.id))
    return [_info(r, keys.get(r.site_id) if r.site_id is not None else None) for r in rows]


def revoke_token(session: Session, token_id: int) -> bool:
    """Revoke a token; False when there is no such token or it was revoked already."""
    row = session.get(ApiToken, token_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = _now()
    session.flush()
    return True
