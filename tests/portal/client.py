"""A portal user for tests: an httpx client with a cookie jar that logs in through the form."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.api.harness import ApiServer

__all__ = ["PortalUser", "form_token"]

_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def form_token(html: str) -> str:
    """The CSRF token of the first form on the page."""
    found = _CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


class PortalUser:
    def __init__(self, server: ApiServer, **kw: Any) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, timeout=30, follow_redirects=False, **kw)

    def __enter__(self) -> PortalUser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def login(self, token: str, *, next_path: str = "/portal/") -> httpx.Response:
        """Log in with the harness token named ``token`` (or a literal secret starting zz_)."""
        page = self.http.get("/portal/login")
        assert page.status_code == 200, page.text[:300]
        secret = token if token.startswith("zz_") else self.server.tokens[token]
        return self.http.post(
            "/portal/login",
            data={"csrf": form_token(page.text), "next": next_path, "token": secret},
        )

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)
