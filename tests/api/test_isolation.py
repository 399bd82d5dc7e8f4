"""Tenant isolation: every route x every role x own / foreign / nonexistent factory.

The matrix is generated from the OpenAPI document, so a new route cannot escape it: every route
under ``/sites/{site}`` must declare its policy (``x-zhizao-policy``), and the test checks that
the server behaves as the policy table of ``api.auth`` says. A denied site answers exactly like
a missing one (404, same body).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from api.auth import POLICIES, UNSCOPED
from tests.api import worked_example as wx
from tests.api.harness import ApiServer, api_server
from tests.api.reportdata import ANNUAL
from tests.conftest import _influx_post
from zhizao.site import SiteModel

pytestmark = pytest.mark.integration
ROLES = ("engineer", "factory_admin", "commission", "admin")
OWN, FOREIGN, MISSING = wx.SITE, "plant9", "no-such-site"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, influx_server: Any) -> Iterator[ApiServer]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    _influx_post(influx_server.url, f'CREATE DATABASE "{name}"')
    own = SiteModel.model_validate(wx.SITE_MODEL)
    foreign = SiteModel.model_validate({**wx.SITE_MODEL, "site": FOREIGN})
    with api_server(
        tmp_path_factory.mktemp("iso"),
        influx_url=influx_server.url,
        database=name,
        sites=[own, foreign],
        foreign=FOREIGN,
    ) as s:
        for site in (OWN, FOREIGN):  # a report to read at {period} and {n}
            with s.client("admin") as c:
                r = c.put(
                    f"/api/v1/sites/{site}/reports/{PARAMS['period']}", json={"values": ANNUAL}
                )
            assert r.status_code == 200, r.text
        yield s


def _operations(server: ApiServer) -> list[tuple[str, str, dict[str, Any]]]:
    doc = server.json("/openapi.json", token="admin")
    ops = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in ("get", "put", "post", "delete", "patch"):
                ops.append((method, path, op))
    return ops


PARAMS = {
    "from": "2026-03-02T00:00:00+08:00",
    "to": "2026-03-03T00:00:00+08:00",
    "line": wx.LINE,
    "machine": "M1",
    "area": wx.AREA,
    "fmt": "csv",
    "period": "2025",
    "n": 1,
    "indicator": "rd_intensity",
}


def _url(path: str, site: str) -> str:
    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        return site if name == "site" else str(PARAMS[name])

    return re.sub(r"\{(\w+)\}", fill, path)


def _query(op: dict[str, Any]) -> dict[str, str]:
    out = {
        p["name"]: str(PARAMS[p["name"]])
        for p in op.get("parameters", [])
        if p["in"] == "query" and p.get("required")
    }
    if any(p["name"] == "once" for p in op.get("parameters", [])):
        out["once"] = "true"  # a stream that ends after what is there
    return out


def test_every_site_route_declares_a_policy(server: ApiServer) -> None:
    site_ops = [(m, p, op) for m, p, op in _operations(server) if "{site}" in p]
    assert len(site_ops) >= 5
    missing = [
        f"{m.upper()} {p}" for m, p, op in site_ops if op.get("x-zhizao-policy") not in POLICIES
    ]
    assert not missing, f"routes without x-zhizao-policy: {missing}"


def test_every_route_needs_a_token(server: ApiServer) -> None:
    for method, path, op in _operations(server):
        if path in ("/healthz", "/readyz"):
            continue
        with server.client() as c:
            r = c.request(method, _url(path, OWN), params=_query(op))
        assert r.status_code == 401, f"{method} {path} without a token: {r.status_code}"
        with server.client() as c:
            r = c.request(
                method,
                _url(path, OWN),
                params=_query(op),
                headers={"Authorization": "Bearer zz_not-a-real-token"},
            )
        assert r.status_code == 401, f"{method} {path} with a bad token: {r.status_code}"


def test_matrix(server: ApiServer) -> None:
    checked = 0
    for method, path, op in _operations(server):
        if "{site}" not in path:
            continue
        policy = op["x-zhizao-policy"]
        for role in ROLES:
            bodies: dict[str, tuple[int, str]] = {}
            for which, site in (("own", OWN), ("foreign", FOREIGN), ("missing", MISSING)):
                with server.client(role) as c:
                    r = c.request(method, _url(path, site), params=_query(op), json={})
                exists = which != "missing"
                in_scope = role in UNSCOPED or which == "own"
                if not exists or not in_scope:
                    want = "404"
                elif role not in POLICIES[policy]:
                    want = "403"
                else:
                    want = "allowed"
                got = r.status_code
                ok = got not in (401, 403, 404) if want == "allowed" else got == int(want)
                assert ok, (
                    f"{role} {which} {method.upper()} {path}: {got} (expected {want}) {r.text[:200]}"
                )
                if got == 404:
                    detail = r.json()["detail"].replace(site, "<site>")
                    bodies[which] = (got, detail)
                checked += 1
            if "foreign" in bodies and "missing" in bodies:
                assert bodies["foreign"] == bodies["missing"], (role, path, bodies)
    assert checked >= 5 * 4 * 3


def test_sites_listing_is_scoped(server: ApiServer) -> None:
    assert {s["site"] for s in server.json("/api/v1/sites", token="engineer")} == {OWN}
    assert {s["site"] for s in server.json("/api/v1/sites", token="foreign_engineer")} == {FOREIGN}
    assert {s["site"] for s in server.json("/api/v1/sites", token="commission")} == {OWN, FOREIGN}


def test_auth_failures_are_counted_without_the_secret(server: ApiServer) -> None:
    with server.client() as c:
        c.get("/api/v1/kpis", headers={"Authorization": "Bearer zz_secret-that-must-not-leak"})
        assert c.get("/metrics").status_code == 401
    metrics = server.get("/metrics", "admin").text
    assert 'zhizao_api_auth_failures_total{reason="invalid"}' in metrics
    assert "secret-that-must-not-leak" not in metrics
    assert all(t not in metrics for t in server.tokens.values())
