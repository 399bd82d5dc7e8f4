"""Signed portal sessions and form tokens (HMAC-SHA256).

A session cookie holds ``<token id>.<expiry unix s>.<signature>``: which API token logged in and
until when, never the token's secret. Each request checks the signature and the expiry here and
then asks the database whether the token still exists and is neither revoked nor expired
(``api.tokens.active_token``). Every POST form carries a CSRF token derived from the session
cookie (or, for the login form, from a random pre-session cookie); the signing key never leaves
the process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from api.settings import ApiSettings

__all__ = ["SESSION_S", "PortalKeys", "SessionValue"]

SESSION_S = 8 * 3600  # one working shift and a bit; the token's own expiry is the other limit


@dataclass(frozen=True, slots=True)
class SessionValue:
    token_id: int
    expires_unix: int


class PortalKeys:
    """The portal's signing key: ``settings.portal_secret``, else random bytes made now."""

    def __init__(self, settings: ApiSettings) -> None:
        if settings.portal_secret is not None:
            secret = settings.portal_secret.get_secret_value().encode("utf-8")
        else:
            secret = secrets.token_bytes(32)
        # a derived key, so the configured secret itself is never an HMAC key of anything else
        self._key = hmac.new(secret, b"zhizao portal v1", hashlib.sha256).digest()

    def _mac(self, purpose: str, message: str) -> str:
        return hmac.new(self._key, f"{purpose}|{message}".encode(), hashlib.sha256).hexdigest()

    # -- sessions ---------------------------------------------------------------------------

    def sign_session(self, token_id: int, expires_unix: int) -> str:
        body = f"{token_id}.{expires_unix}"
        return f"{body}.{self._mac('session', body)}"

    def read_session(self, cookie: str | None, *, now: float | None = None) -> SessionValue | None:
        """The session in ``cookie``; None when absent, malformed, tampered with or expired."""
        if not cookie or len(cookie) > 200:
            return None
        parts = cookie.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            return None
        body = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(parts[2], self._mac("session", body)):
            return None
        value = SessionValue(int(parts[0]), int(parts[1]))
        if value.expires_unix <= (time.time() if now is None else now):
            return None
        return value

    # -- CSRF -------------------------------------------------------------------------------

    def csrf_for(self, cookie: str) -> str:
        """The form token of a session (or pre-session) cookie value."""
        return self._mac("csrf", cookie)[:40]

    def csrf_ok(self, cookie: str | None, submitted: str | None) -> bool:
        if not cookie or not submitted:
            return False
        return hmac.compare_digest(self.csrf_for(cookie), submitted)
