"""The factory admin's report pages against a real API server: the form from the field catalog,
field-level errors with the values kept, revisions and their history, the template upload, and
who may do what (the API's policies)."""

from __future__ import annotations

import re
from html import escape
from typing import Any

import pytest

from api.reports.fields import fields_for
from tests.api import reportdata
from tests.api import worked_example as wx
from tests.api.harness import ApiServer
from tests.portal.client import PortalUser, form_token
from tests.portal.conftest import FOREIGN

pytestmark = pytest.mark.integration
REPORTS = f"/portal/sites/{wx.SITE}/reports"
EN = {"Accept-Language": "en"}


def _form(values: dict[str, Any], csrf: str, reason: str = "") -> dict[str, str]:
    return {"csrf": csrf, "reason": reason, **{f"v.{k}": str(v) for k, v in values.items()}}


def _field_block(html: str, field: str) -> str:
    found = re.search(
        rf'<div class="field[^"]*" data-field="{field}">(.*?)</div>\s*(?=<div class="field|<button|<p class="notice)',
        html,
        re.S,
    )
    assert found is not None, field
    return found.group(1)


def test_the_form_lists_the_catalog_fields_in_both_languages(portal_server: ApiServer) -> None:
    with PortalUser(portal_server, headers=EN) as user:
        user.login("factory_admin")
        page = user.get(f"{REPORTS}/2025")
        assert page.status_code == 200
        for f in fields_for("annual"):
            assert f'name="v.{f.id}"' in page.text, f.id
            assert escape(f.label_en) in page.text and escape(f.label_zh) in page.text
        assert "10k CNY" in page.text and "Nothing has been reported for this period." in page.text
        monthly = user.get(f"{REPORTS}/2025-03").text
        assert set(re.findall(r'name="v\.([a-z0-9_]+)"', monthly)) == {
            f.id for f in fields_for("monthly")
        }
        assert user.get(f"{REPORTS}/2025-13").status_code == 404
        assert user.get(f"{REPORTS}/next-year").status_code == 404


def test_a_refused_report_shows_errors_at_the_fields_and_keeps_the_values(
    portal_server: ApiServer,
) -> None:
    with PortalUser(portal_server, headers=EN) as user:
        user.login("factory_admin")
        page = user.get(f"{REPORTS}/2025")
        bad = {**reportdata.ANNUAL, "average_headcount": -5, "rd_spend_10k_cny": "lots"}
        r = user.http.post(f"{REPORTS}/2025", data=_form(bad, form_token(page.text)))
        assert r.status_code == 422
        assert "The report was not stored" in r.text
        head = _field_block(r.text, "average_headcount")
        assert 'class="field-error"' in head and 'aria-invalid="true"' in head
        assert 'value="-5"' in head
        assert 'class="field-error"' in _field_block(r.text, "rd_spend_10k_cny")
        assert 'value="lots"' in r.text
        assert 'class="field-error"' not in _field_block(r.text, "park")
        assert 'value="Zhangjiang"' in r.text  # the other values are kept
        assert portal_server.get(f"/api/v1/sites/{wx.SITE}/reports/2025").status_code == 404

        r = user.http.post(f"{REPORTS}/2025", data=_form(reportdata.ANNUAL, form_token(r.text)))
        assert r.status_code == 303 and r.headers["location"] == f"{REPORTS}/2025?saved=1"
        stored = user.get(r.headers["location"])
        assert "Stored as revision 1." in stored.text
        assert 'value="420"' in _field_block(stored.text, "average_headcount")
        api = portal_server.json(f"/api/v1/sites/{wx.SITE}/reports/2025", "factory_admin")
        assert api["revision"] == 1 and api["author"] == "factory_admin"

        corrected = {**reportdata.ANNUAL, "average_headcount": 430}
        r = user.http.post(f"{REPORTS}/2025", data=_form(corrected, form_token(stored.text)))
        assert r.status_code == 422
        assert 'class="field-error"' in _field_block(r.text, "reason")  # a correction needs why
        r = user.http.post(
            f"{REPORTS}/2025", data=_form(corrected, form_token(r.text), "headcount recounted")
        )
        assert r.headers["location"] == f"{REPORTS}/2025?saved=2"
        same = user.http.post(
            f"{REPORTS}/2025", data=_form(corrected, form_token(stored.text), "again")
        )
        assert same.headers["location"] == f"{REPORTS}/2025?unchanged=2"

        history = user.get(f"{REPORTS}/2025/history")
        assert history.status_code == 200
        revisions = re.findall(r'<tr data-revision="(\d+)">', history.text)
        assert revisions == ["2", "1"]
        second = history.text.split('<tr data-revision="2">')[1].split("</tr>")[0]
        assert "headcount recounted" in second and 'data-changed="average_headcount"' in second
        assert "420 → 430" in second
        assert 'data-changed="park"' not in second


def test_who_may_read_and_write_reports(portal_server: ApiServer) -> None:
    with PortalUser(portal_server, headers=EN) as engineer:
        engineer.login("engineer")
        page = engineer.get(f"{REPORTS}/2024")
        assert page.status_code == 200 and "may read reports but not submit" in page.text
        csrf = form_token(page.text)
        r = engineer.http.post(f"{REPORTS}/2024", data=_form(reportdata.ANNUAL, csrf))
        assert r.status_code == 403
    with PortalUser(portal_server, headers=EN) as foreign:
        foreign.login("foreign_factory_admin")
        assert foreign.get(f"{REPORTS}/2024").status_code == 404
        assert foreign.get(f"/portal/sites/{FOREIGN}/reports/2024").status_code == 200
    with PortalUser(portal_server, headers=EN) as commission:
        commission.login("commission")
        assert commission.get(f"{REPORTS}/2025/history").status_code == 200
    with PortalUser(portal_server, headers=EN) as admin:
        admin.login("factory_admin")
        page = admin.get(f"{REPORTS}/2024")
        r = admin.http.post(f"{REPORTS}/2024", data=_form(reportdata.ANNUAL, "0" * 40))
        assert r.status_code == 403 and "did not come from this portal" in r.text
        assert portal_server.get(f"/api/v1/sites/{wx.SITE}/reports/2024").status_code == 404


def _csv(rows: list[dict[str, Any]]) -> bytes:
    ids = ["period", *reportdata.ANNUAL]
    lines = [",".join(ids)]
    for row in rows:
        lines.append(",".join(str(row.get(k, "")) for k in ids))
    return ("\ufeff" + "\n".join(lines) + "\n").encode("utf-8")


def test_an_uploaded_file_with_errors_stores_nothing_and_names_the_cells(
    portal_server: ApiServer,
) -> None:
    good = {"period": "2023", **reportdata.ANNUAL}
    bad = {"period": "2022", **reportdata.ANNUAL, "average_headcount": "many"}
    with PortalUser(portal_server, headers=EN) as user:
        user.login("factory_admin")
        index = user.get(REPORTS)
        assert 'id="import-form"' in index.text
        csrf = form_token(index.text.split('id="import-form"')[1])
        files = {"file": ("reports.csv", _csv([good, bad]), "text/csv")}
        r = user.http.post(
            f"/portal/sites/{wx.SITE}/reports-import", data={"csrf": csrf}, files=files
        )
        assert r.status_code == 422
        assert "reports.csv has 1 problems; nothing was stored." in r.text
        cell = re.search(
            r'<tr data-row="(\d+)" data-column="([A-Z]+)" data-field="average_headcount">', r.text
        )
        assert cell is not None and cell.group(1) == "3"
        for period in ("2023", "2022"):
            assert portal_server.get(f"/api/v1/sites/{wx.SITE}/reports/{period}").status_code == 404

        r = user.http.post(
            f"/portal/sites/{wx.SITE}/reports-import",
            data={"csrf": csrf, "store_valid": "1"},
            files={"file": ("reports.csv", _csv([good, bad]), "text/csv")},
        )
        assert 'data-stored="2023"' in r.text and "the valid periods were stored" in r.text
        assert portal_server.json(f"/api/v1/sites/{wx.SITE}/reports/2023")["revision"] == 1
        no_csrf = user.http.post(f"/portal/sites/{wx.SITE}/reports-import", files=files)
        assert no_csrf.status_code == 403


def test_the_template_download_is_the_apis(portal_server: ApiServer) -> None:
    with PortalUser(portal_server) as user:
        user.login("factory_admin")
        portal = user.get(f"/portal/sites/{wx.SITE}/report-template.xlsx")
    api = portal_server.get(f"/api/v1/sites/{wx.SITE}/report-template.xlsx", "factory_admin")
    assert portal.status_code == api.status_code == 200
    assert portal.content[:2] == b"PK"
    assert portal.headers["content-type"] == api.headers["content-type"]


def test_field_errors_are_in_chinese_on_a_chinese_page(portal_server: ApiServer) -> None:
    with PortalUser(portal_server, headers={"Accept-Language": "zh-CN,zh;q=0.9"}) as user:
        user.login("factory_admin")
        page = user.get(f"{REPORTS}/2024")
        bad = {**reportdata.ANNUAL, "average_headcount": -5, "rd_spend_10k_cny": "lots"}
        r = user.http.post(f"{REPORTS}/2024", data=_form(bad, form_token(page.text)))
        assert r.status_code == 422
        head = _field_block(r.text, "average_headcount")
        assert "超出允许范围" in head and "average_headcount must be at least 0" in head
        assert "须为数值" in _field_block(r.text, "rd_spend_10k_cny")
