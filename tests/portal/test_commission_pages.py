"""The commission's pages against a real API server: the indicator table vs targets with
coverage, the district drill-down (reported inputs, never telemetry), the XLSX download, roles."""

from __future__ import annotations

import io
import re
from typing import Any

import openpyxl
import pytest

from api.commission.export import LEVEL_SHEETS, ROW_HEADER
from tests.api import test_commission as tc
from tests.api.harness import ApiServer
from tests.portal.client import PortalUser

pytestmark = pytest.mark.integration
EN = {"Accept-Language": "en"}
QUERY = {"cohort": "panel", "year": str(tc.YEAR)}


def _api_table(server: ApiServer) -> dict[str, Any]:
    table: dict[str, Any] = server.json("/api/v1/commission/indicators", "commission", **QUERY)
    return table


def _shown(html: str, level: str, group: str) -> dict[str, str]:
    table = re.search(
        rf'<table class="list indicators" data-level="{level}" data-group="{group}">(.*?)</table>',
        html,
        re.S,
    )
    assert table is not None, (level, group)
    rows = re.findall(
        r'<tr data-indicator="([a-z0-9_]+)".*?data-value="([^"]*)"', table.group(1), re.S
    )
    return dict(rows)


def test_the_table_shows_the_apis_figures_per_cohort_and_district(
    commission_server: ApiServer,
) -> None:
    api = _api_table(commission_server)
    with PortalUser(commission_server, headers=EN) as user:
        user.login("commission")
        page = user.get("/portal/commission", params=QUERY)
        assert page.status_code == 200
    html = page.text
    checked = 0
    for r in api["rows"]:
        if r["level"] not in ("cohort", "district"):
            continue
        shown = _shown(html, r["level"], r["group"])
        want = "" if r["value"] is None else repr(float(r["value"]))
        assert shown[r["indicator"]] in (want, str(r["value"])), (r["group"], r["indicator"])
        checked += 1
    assert checked >= 2 * 12
    # coverage and flags: the 2025 energy decline lacks B1 and C1's base year
    decline = next(r for r in api["rows"] if r["level"] == "cohort"
                   and r["indicator"] == "energy_intensity_decline")  # fmt: skip
    assert not decline["complete"]
    row = re.search(
        r'data-level="cohort".*?<tr data-indicator="energy_intensity_decline" class="incomplete">(.*?)</tr>',
        html,
        re.S,
    )
    assert row is not None
    cov = decline["coverage"]
    assert f'data-coverage="{cov["reported"]}/{cov["factories"]}"' in row.group(1)
    assert "incomplete" in row.group(1) and tc.C1 in row.group(1)
    assert 'href="/portal/commission/districts/Pudong?cohort=panel&amp;year=2025"' in html
    assert 'href="/portal/commission/indicators.xlsx?cohort=panel&amp;year=2025"' in html


def test_a_district_lists_its_factories_reported_inputs_only(
    commission_server: ApiServer,
) -> None:
    api = commission_server.json(
        "/api/v1/commission/factories", "commission", district="Pudong", **QUERY
    )
    with PortalUser(commission_server, headers=EN) as user:
        user.login("commission")
        page = user.get("/portal/commission/districts/Pudong", params=QUERY)
        assert page.status_code == 200
        missing = user.get("/portal/commission/districts/Atlantis", params=QUERY)
        assert missing.status_code == 404
    html = page.text
    sites = re.findall(r'<section class="card factory" data-site="([^"]+)">', html)
    assert sites == [f["site"] for f in api["factories"]] == [tc.B1, tc.GREEN]
    green = html.split(f'data-site="{tc.GREEN}"')[1]
    for fid, value in tc.REPORT_2025.items():
        assert re.search(
            rf'<tr data-input="{fid}">.*?data-value="{re.escape(str(value))}"', green, re.S
        ), fid
    assert 'data-metered="electricity_kwh"' in green
    assert "Industrial value added (current prices)" in green
    assert tc.C1 not in re.findall(r'data-site="([^"]+)"', html)  # Minhang
    assert "data-machine" not in html and "/lines/" not in html


def test_the_xlsx_download_is_the_apis_export(commission_server: ApiServer) -> None:
    api = _api_table(commission_server)
    with PortalUser(commission_server) as user:
        user.login("commission")
        r = user.get("/portal/commission/indicators.xlsx", params=QUERY)
    assert r.status_code == 200 and r.content[:2] == b"PK"
    assert 'filename="indicators-panel-2025.xlsx"' in r.headers["content-disposition"]
    ws = openpyxl.load_workbook(io.BytesIO(r.content))[LEVEL_SHEETS["cohort"]]
    header = [c.value for c in ws[1]]
    assert header == list(ROW_HEADER)
    got = {row[2]: row[header.index("value")] for row in ws.iter_rows(min_row=2, values_only=True)}
    for row in api["rows"]:
        if row["level"] == "cohort":
            want = row["value"]
            assert got[row["indicator"]] == (
                pytest.approx(want, rel=1e-12) if want is not None else None
            )


def test_only_commission_and_admin_open_the_commission_pages(
    commission_server: ApiServer,
) -> None:
    for role, status in (("engineer", 403), ("factory_admin", 403), ("admin", 200)):
        with PortalUser(commission_server, headers=EN) as user:
            user.login(role)
            for path in ("/portal/commission", "/portal/commission/districts/Pudong",
                         "/portal/commission/indicators.xlsx"):  # fmt: skip
                r = user.get(path, params=QUERY)
                assert r.status_code == status, (role, path)
            if status == 403:
                assert "Your role may not open this page (commission)." in r.text
    with PortalUser(commission_server, headers=EN) as user:
        user.login("commission")
        assert user.get("/portal/commission", params={"year": "20x5"}).status_code == 400
        bad = user.get("/portal/commission", params={"cohort": "nope", "year": "2025"})
        assert bad.status_code == 400 and "There is no such cohort" in bad.text
        assert 'id="commission"' in user.get("/portal/").text
