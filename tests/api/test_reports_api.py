"""The report routes on a real server: submit, read, correct, history, errors, roles, template
download and import over HTTP."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from openpyxl import load_workbook

from api.reports.fields import FIELDS
from tests.api.harness import ApiServer, api_server
from tests.api.reportdata import ANNUAL, month, site

A, B = "plant8", "plant9"
BASE = "/api/v1/sites"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    # the report routes never reach InfluxDB; the reader points at a closed loopback port
    with api_server(
        tmp_path_factory.mktemp("reports"),
        influx_url="http://127.0.0.1:9",
        database="none",
        sites=[site(A), site(B)],
        foreign=B,
    ) as s:
        yield s


def _put(server: ApiServer, token: str, site_: str, period: str, body: dict[str, Any]) -> Any:
    with server.client(token) as c:
        return c.put(f"{BASE}/{site_}/reports/{period}", json=body)


def test_submit_read_correct_and_history(server: ApiServer) -> None:
    r = _put(server, "factory_admin", A, "2024", {"values": ANNUAL, "reason": "first filing"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["created"] and out["report"]["revision"] == 1 and out["warnings"] == []
    assert out["report"]["author"] == "factory_admin"
    got = server.json(f"{BASE}/{A}/reports/2024", token="factory_admin")
    assert got["values"] == {**ANNUAL}
    assert got["values"]["average_headcount"] == 420
    # the same again: nothing stored
    again = _put(server, "factory_admin", A, "2024", {"values": ANNUAL}).json()
    assert not again["created"] and "identical to revision 1" in again["message"]
    # a correction without a reason is refused at the field
    fixed = {**ANNUAL, "average_headcount": 430}
    r = _put(server, "factory_admin", A, "2024", {"values": fixed})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "reason"]
    r = _put(server, "factory_admin", A, "2024", {"values": fixed, "reason": "HR recount"})
    assert r.status_code == 200 and r.json()["report"]["revision"] == 2
    history = server.json(f"{BASE}/{A}/reports/2024/revisions", token="commission")
    assert [h["revision"] for h in history] == [1, 2]
    assert history[1]["reason"] == "HR recount"
    assert history[1]["changed"] == {"average_headcount": {"old": 420, "new": 430}}
    first = server.json(f"{BASE}/{A}/reports/2024/revisions/1", token="engineer")
    assert first["values"]["average_headcount"] == 420
    assert server.get(f"{BASE}/{A}/reports/2024/revisions/3").status_code == 404
    listing = server.json(f"{BASE}/{A}/reports", token="factory_admin")
    assert {(x["period"], x["revision"]) for x in listing} >= {("2024", 2)}


@pytest.mark.parametrize(
    ("period", "values", "units", "field"),
    [
        ("2023", {**ANNUAL, "average_headcount": -5}, None, "average_headcount"),
        ("2023", {**ANNUAL, "rd_spend_10k_cny": "a lot"}, None, "rd_spend_10k_cny"),
        ("2023", {k: v for k, v in ANNUAL.items() if not k.startswith("value_added_c")}, None,
         "value_added_current_10k_cny"),
        ("2023", ANNUAL, {"electricity_kwh": "MWh"}, "electricity_kwh"),
        ("2023", {**ANNUAL, "gross_output_value_10k_cny": 13000.0}, None,
         "value_added_current_10k_cny"),
        ("2023", {**ANNUAL, "made_up": 1}, None, "made_up"),
    ],
)  # fmt: skip
def test_bad_reports_are_refused_at_the_field_and_nothing_stored(
    server: ApiServer, period: str, values: dict[str, Any], units: Any, field: str
) -> None:
    body: dict[str, Any] = {"values": values}
    if units:
        body["units"] = units
    r = _put(server, "factory_admin", A, period, body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert ["body", "values", field] in [d["loc"] for d in detail]
    assert all(isinstance(d["msg"], str) and "Traceback" not in d["msg"] for d in detail)
    assert server.get(f"{BASE}/{A}/reports/{period}").status_code == 404


def test_future_month_is_refused_on_the_period(server: ApiServer) -> None:
    r = _put(server, "factory_admin", A, "2999-01", {"values": month(1)})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["path", "period"]
    assert "has not started" in r.json()["detail"][0]["msg"]


def test_month_sum_warning_in_the_response(server: ApiServer) -> None:
    for m in range(1, 13):
        assert _put(server, "factory_admin", A, f"2022-{m:02d}", {"values": month(m)}).is_success
    r = _put(server, "factory_admin", A, "2022", {"values": {**ANNUAL, "waste_generated_t": 1100}})
    assert r.status_code == 200
    warnings = r.json()["warnings"]
    assert [w["field"] for w in warnings] == ["waste_generated_t"]
    assert "+100" in warnings[0]["message"]  # months 1200 t, annual 1100 t


def test_roles_and_scope(server: ApiServer) -> None:
    assert _put(server, "admin", B, "2024", {"values": ANNUAL}).status_code == 200
    # a factory admin of B cannot read or write A's reports, and sees the same 404 as missing
    r = server.get(f"{BASE}/{A}/reports/2024", token="foreign_factory_admin")
    missing = server.get(f"{BASE}/nope/reports/2024", token="foreign_factory_admin")
    assert r.status_code == missing.status_code == 404
    assert r.json()["detail"].replace(A, "x") == missing.json()["detail"].replace("nope", "x")
    assert _put(server, "foreign_factory_admin", A, "2021", {"values": ANNUAL}).status_code == 404
    # an engineer reads but cannot write; commission reads every factory but cannot write
    assert _put(server, "engineer", A, "2021", {"values": ANNUAL}).status_code == 403
    assert server.get(f"{BASE}/{B}/reports/2024", token="commission").status_code == 200
    assert server.get(f"{BASE}/{B}/reports/2024", token="engineer").status_code == 404
    assert _put(server, "commission", B, "2021", {"values": ANNUAL}).status_code == 403
    assert server.get(f"{BASE}/{A}/reports/2021").status_code == 404


def test_field_catalog_route(server: ApiServer) -> None:
    listing = server.json("/api/v1/report-fields", token="engineer")
    assert [f["id"] for f in listing] == [f.id for f in FIELDS]
    park = next(f for f in listing if f["id"] == "park")
    assert park["label_zh"] == "所在园区" and park["kinds"] == ["annual"]


def test_template_download_fill_import_read_back(server: ApiServer) -> None:
    r = server.get(f"{BASE}/{A}/report-template.xlsx", token="factory_admin")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats")
    wb = load_workbook(io.BytesIO(r.content))
    ws = wb["annual"]
    ids = [c.value for c in ws[3]]
    ws.cell(row=6, column=1, value="2020")
    for fid, v in ANNUAL.items():
        ws.cell(row=6, column=ids.index(fid) + 1, value=v)
    buf = io.BytesIO()
    wb.save(buf)
    with server.client("factory_admin") as c:
        r = c.post(
            f"{BASE}/{A}/reports/import",
            files={"file": ("filled.xlsx", buf.getvalue(), "application/octet-stream")},
        )
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == [{"period": "2020", "revision": 1}]
    got = server.json(f"{BASE}/{A}/reports/2020")
    assert got["values"] == ANNUAL and got["reason"] == "import of filled.xlsx"


def test_import_with_a_bad_cell_names_it_and_stores_nothing(server: ApiServer) -> None:
    csv_text = (
        "period,value_added_current_10k_cny,price_index,average_headcount\r\n"
        "2019,100,1.0,10\r\n"
        "2018,100,1.0,-10\r\n"
    )
    with server.client("factory_admin") as c:
        r = c.post(f"{BASE}/{A}/reports/import", files={"file": ("r.csv", csv_text.encode())})
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert [(d["row"], d["column"], d["field"]) for d in detail] == [
            (3, "D", "average_headcount")
        ]
        assert server.get(f"{BASE}/{A}/reports/2019").status_code == 404
        r = c.post(
            f"{BASE}/{A}/reports/import",
            params={"store_valid": "true"},
            files={"file": ("r.csv", csv_text.encode())},
        )
        assert r.status_code == 200
        assert r.json()["stored"] == [{"period": "2019", "revision": 1}]
        assert [x["row"] for x in r.json()["refused"]] == [3]
    assert server.get(f"{BASE}/{A}/reports/2019").status_code == 200
    assert server.get(f"{BASE}/{A}/reports/2018").status_code == 404
