"""The commission's view end to end (issue 11): factory reports through the API, plant-meter
telemetry through the real InfluxDB and the KPI engine, the indicators read back.

DOMAIN section 8: intensity 0.026509 tce/10k CNY, 0.029160 at comparable prices, decline
27.1000 % (27.0000 % with statistical rounding), CO2 3,044.183 kg, solid waste 96.9231 % with an
alert. Then: sum/sum across factories, revisions and ``as_of``, roles, exports.
"""

from __future__ import annotations

import asyncio
import copy
import csv
import io
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import openpyxl
import pytest
import yaml

from analytics.commission_config import DEFAULT_SAMPLE
from analytics.config import load_kpi_config
from analytics.engine import KpiEngine
from api.commission.export import LEVEL_SHEETS, ROW_HEADER
from tests.api import worked_example as wx
from tests.api.harness import ApiServer, api_server
from tests.conftest import _influx_post
from zhizao.site import SiteModel

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")
GREEN, B1, C1 = "wx-green", "b-1", "c-1"  # GREEN is the token's own factory (first site)
YEAR, BASE = 2025, 2015
VA_2025 = (852 * 1200 - 760_000 + 20_600) / 10_000  # 28.3 (10k CNY)
TCE = 0.750207
ENERGY = {"electricity_kwh": 4800.0, "natural_gas_m3": 120.0, "diesel_kg": 10.0}


def _site(key: str, district: str, plant_meters: bool) -> SiteModel:
    doc = copy.deepcopy(wx.SITE_MODEL)
    doc.update(site=key, district=district, name=f"factory {key}")
    if plant_meters:
        doc["meters"] = [
            *doc["meters"],
            {"id": "em-main", "medium": "electricity", "unit": "kWh", "signal": "energy_kwh"},
            {"id": "gm-main", "medium": "natural_gas", "unit": "m3", "signal": "gas_m3"},
            {"id": "dm-main", "medium": "diesel", "unit": "kg", "signal": "diesel_kg"},
        ]
    return SiteModel.model_validate(doc)


def _ns(*args: int) -> int:
    return int(datetime(*args, tzinfo=TZ).timestamp()) * 1_000_000_000


def _plant_telemetry(db_url: str, database: str, tmp: Path, site: SiteModel) -> None:
    """One day of plant-meter readings (4,800 kWh, 120 m3 gas, 10 kg diesel) in the report year,
    turned into kpi_site_day rows by the real KPI engine."""
    tags = f"enterprise={site.enterprise},site={site.site}"
    t0, t1 = _ns(YEAR, 3, 2, 0, 0), _ns(YEAR, 3, 2, 23, 59)
    lines = []
    for meter, field, total in (("em-main", "energy_kwh", 4800), ("gm-main", "gas_m3", 120),
                                ("dm-main", "diesel_kg", 10)):  # fmt: skip
        lines.append(f"energy,{tags},meter={meter} {field}=1000 {t0}")
        lines.append(f"energy,{tags},meter={meter} {field}={1000 + total} {t1}")
    r = httpx.post(f"{db_url}/write", params={"db": database, "precision": "ns"},
                   content="\n".join(lines).encode())  # fmt: skip
    assert r.status_code == 204, r.text
    (tmp / "site.yaml").write_text(yaml.safe_dump(site.model_dump(mode="json")), "utf-8")
    cfg = {
        "sites": ["site.yaml"],
        "influx": {"url": db_url, "database": database},
        "heartbeat_s": 86400,
        "schedule": {"backfill_s": 2 * 86400, "lookback_s": 86400, "delay_s": 0},
    }
    (tmp / "kpi.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    engine = KpiEngine(load_kpi_config(tmp / "kpi.yaml"))
    asyncio.run(engine.run_once(now_ns=_ns(YEAR, 3, 3, 2, 0)))


def _config() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        json.dumps(yaml.safe_load(DEFAULT_SAMPLE.read_text(encoding="utf-8")), default=str)
    )
    doc["cohorts"] = [
        {"id": "wx", "name": "worked example", "base_year": BASE, "sites": [GREEN]},
        {"id": "panel", "name": "three factories", "base_year": BASE, "sites": [GREEN, B1, C1]},
    ]
    doc["green_factory"]["industry_of_site"] = {}
    return doc


def _put_report(
    server: ApiServer, token: str, site: str, period: str, values: dict[str, Any], reason: str
) -> httpx.Response:
    with server.client(token) as c:
        return c.put(f"/api/v1/sites/{site}/reports/{period}",
                     json={"values": values, "reason": reason})  # fmt: skip


REPORT_2025 = {
    "value_added_current_10k_cny": VA_2025,
    "gross_output_value_10k_cny": 852 * 1200 / 10_000,
    "intermediate_input_10k_cny": 76.0,
    "vat_payable_10k_cny": 2.06,
    "price_index": 1.10,
    "waste_generated_t": 12.0,
    "waste_utilized_t": 12.6,
    "waste_prior_stock_utilized_t": 1.0,
}
# the base year, before any meter: reported energy, VA chosen so the intensity is exactly 0.0400
REPORT_2015 = {"value_added_current_10k_cny": TCE / 0.0400, "price_index": 1.0, **ENERGY}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, influx_server: Any) -> Iterator[ApiServer]:
    tmp = tmp_path_factory.mktemp("commission")
    name = f"t_{uuid.uuid4().hex[:12]}"
    _influx_post(influx_server.url, f'CREATE DATABASE "{name}"')
    green = _site(GREEN, "Pudong", plant_meters=True)
    sites = [green, _site(B1, "Pudong", False), _site(C1, "Minhang", False)]
    _plant_telemetry(influx_server.url, name, tmp, green)
    with api_server(tmp, influx_url=influx_server.url, database=name, sites=sites) as s:
        with s.client("commission") as c:
            r = c.put("/api/v1/commission/config",
                      json={"document": _config(), "reason": "first cohorts"})  # fmt: skip
            assert r.status_code == 200, r.text
        for period, values in ((str(YEAR), REPORT_2025), (str(BASE), REPORT_2015)):
            r = _put_report(s, "factory_admin", GREEN, period, values, "annual report")
            assert r.status_code == 200, r.text
        yield s


def _cohort_rows(table: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["indicator"]: r for r in table["rows"] if r["level"] == "cohort"}


def test_worked_example_through_the_api(server: ApiServer) -> None:
    table = server.json("/api/v1/commission/indicators", "commission", cohort="wx", year=YEAR)
    rows = _cohort_rows(table)
    assert rows["energy_consumption"]["value"] == pytest.approx(TCE, abs=1e-9)
    assert rows["energy_intensity_current_prices"]["value"] == pytest.approx(0.026509, abs=1e-6)
    assert rows["energy_intensity"]["value"] == pytest.approx(0.029160, abs=1e-6)
    decline = rows["energy_intensity_decline"]
    assert decline["value"] / 100 == pytest.approx(0.271000, abs=1e-6)
    assert decline["complete"] and decline["coverage"]["base_year"] == BASE
    # the 2025 energy is the engine's metered day (the 2015 energy the report's, see below)
    assert decline["details"]["source"] == {"telemetry": 1, "reported": 0}
    assert rows["co2_emissions"]["value"] * 1000 == pytest.approx(3044.183, abs=1e-6)
    waste = rows["solid_waste_utilization"]
    assert waste["value"] / 100 == pytest.approx(0.969231, abs=1e-6)
    assert "alert_below_target" in waste["flags"]
    assert next(t for t in waste["targets"] if t["year"] == 2025)["met"] is False
    rounded = server.json("/api/v1/commission/indicators", "commission", cohort="wx",
                          year=YEAR, statistical_rounding="true")  # fmt: skip
    r = _cohort_rows(rounded)["energy_intensity_decline"]
    assert r["value"] / 100 == pytest.approx(0.270000, abs=1e-6)
    # every figure names its configuration and report revisions
    assert table["config"]["revision"] == 1
    used = {(i["site"], i["period"]): i["revision"] for i in table["inputs"]}
    assert used == {(GREEN, "2015"): 1, (GREEN, "2025"): 1}
    green_in = next(i for i in table["inputs"] if i["period"] == "2025")
    assert green_in["metered"]["electricity_kwh"] == 4800 and green_in["telemetry_days"] >= 1
    base_in = next(i for i in table["inputs"] if i["period"] == "2015")
    assert base_in["metered"] == {} and base_in["telemetry_days"] is None


def test_aggregation_is_sum_over_sum_on_the_panel(server: ApiServer) -> None:
    """Two more factories report R&D spend and revenue; the cohort's rate is sum/sum, which
    here differs from the mean of factory rates by more than a percentage point."""
    rd = {GREEN: (1.0, 100.0), B1: (9.0, 100.0), C1: (50.0, 10_000.0)}  # rates 1 %, 9 %, 0.5 %
    for site, (spend, revenue) in rd.items():
        values = {**(REPORT_2025 if site == GREEN else {"value_added_current_10k_cny": 10.0,
                                                         "price_index": 1.0}),
                  "rd_spend_10k_cny": spend, "main_business_revenue_10k_cny": revenue}  # fmt: skip
        r = _put_report(server, "admin", site, str(YEAR), values, "R&D figures")
        assert r.status_code == 200, r.text
    table = server.json("/api/v1/commission/indicators", "commission", cohort="panel", year=YEAR)
    cohort = _cohort_rows(table)["rd_intensity"]
    sum_over_sum = 100 * 60.0 / 10_200.0
    mean_of_rates = (1.0 + 9.0 + 0.5) / 3
    assert abs(sum_over_sum - mean_of_rates) > 1.0
    assert cohort["value"] == pytest.approx(sum_over_sum, rel=1e-9)
    assert cohort["complete"] and cohort["coverage"]["reported"] == 3
    pudong = next(r for r in table["rows"] if r["level"] == "district"
                  and r["group"] == "Pudong" and r["indicator"] == "rd_intensity")  # fmt: skip
    assert pudong["value"] == pytest.approx(100 * 10.0 / 200.0, rel=1e-9)
    # B1 and C1 reported no base year: the energy decline is over the fixed panel of GREEN only,
    # and says it is incomplete
    decline = _cohort_rows(table)["energy_intensity_decline"]
    assert decline["coverage"]["reported"] == 1 and set(decline["coverage"]["missing"]) == {B1, C1}
    assert "incomplete_panel" in decline["flags"] and not decline["complete"]


def test_a_correction_changes_the_figure_and_the_old_one_stays_reproducible(
    server: ApiServer,
) -> None:
    before = server.json("/api/v1/commission/indicators", "commission", cohort="wx", year=2024)
    assert _cohort_rows(before)["energy_intensity"]["value"] is None  # nothing reported for 2024
    values = {"value_added_current_10k_cny": 20.0, "price_index": 1.0, **ENERGY}
    assert _put_report(server, "factory_admin", GREEN, "2024", values, "first").status_code == 200
    first = server.json("/api/v1/commission/indicators", "commission", cohort="wx", year=2024)
    time.sleep(0.05)
    stamp = datetime.now(UTC).isoformat()
    time.sleep(0.05)
    fixed = {**values, "value_added_current_10k_cny": 25.0}
    r = _put_report(server, "factory_admin", GREEN, "2024", fixed, "VA corrected by the auditor")
    assert r.status_code == 200, r.text
    second = server.json("/api/v1/commission/indicators", "commission", cohort="wx", year=2024)
    v1 = _cohort_rows(first)["energy_intensity"]["value"]
    v2 = _cohort_rows(second)["energy_intensity"]["value"]
    assert v1 == pytest.approx(TCE / 20.0, rel=1e-9) and v2 == pytest.approx(TCE / 25.0, rel=1e-9)
    old = server.json("/api/v1/commission/indicators", "commission", cohort="wx", year=2024,
                      as_of=stamp)  # fmt: skip
    assert _cohort_rows(old)["energy_intensity"]["value"] == pytest.approx(v1, rel=1e-12)
    assert {i["revision"] for i in old["inputs"] if i["period"] == "2024"} == {1}
    assert {i["revision"] for i in second["inputs"] if i["period"] == "2024"} == {2}
    history = server.json(f"/api/v1/sites/{GREEN}/reports/2024/revisions", "commission")
    text = str(history)
    assert "VA corrected by the auditor" in text and "value_added_current_10k_cny" in text


def test_only_commission_and_admin_see_the_commission_routes(server: ApiServer) -> None:
    paths = ["/api/v1/commission/indicators", "/api/v1/commission/config",
             "/api/v1/commission/factories", "/api/v1/commission/indicators.xlsx"]  # fmt: skip
    for token, want in (("engineer", 403), ("factory_admin", 403), ("commission", 200),
                        ("admin", 200)):  # fmt: skip
        for path in paths:
            r = server.get(path, token, cohort="wx", year=YEAR)
            assert r.status_code == want, (token, path, r.status_code, r.text[:200])
    with server.client("factory_admin") as c:
        r = c.put("/api/v1/commission/config", json={"document": _config(), "reason": "x"})
    assert r.status_code == 403
    # the drill-down shows reported inputs and yearly metered totals, no raw telemetry
    got = server.json("/api/v1/commission/factories", "commission", cohort="panel", year=YEAR,
                      district="Pudong")  # fmt: skip
    assert {f["site"] for f in got["factories"]} == {GREEN, B1}
    green = next(f for f in got["factories"] if f["site"] == GREEN)
    assert green["report"]["values"]["waste_utilized_t"] == 12.6
    assert green["metered"]["natural_gas_m3"] == 120
    # the commission token reaches no raw-telemetry route of a factory
    assert server.get(f"/api/v1/sites/{GREEN}/machines/M1/timeline", "commission",
                      **{"from": "2025-03-02T00:00:00+08:00",
                         "to": "2025-03-03T00:00:00+08:00"}).status_code == 403  # fmt: skip


def test_bad_configuration_is_refused_naming_the_field(server: ApiServer) -> None:
    doc = _config()
    doc["cohorts"][0]["base_year"] = "last year"
    with server.client("commission") as c:
        r = c.put("/api/v1/commission/config", json={"document": doc, "reason": "typo"})
        assert r.status_code == 422
        assert "base_year" in r.text
        # the same document again is no new revision
        r = c.put("/api/v1/commission/config", json={"document": _config(), "reason": "same"})
        assert r.status_code == 200 and r.json()["created"] is False
        assert r.json()["revision"] == 1
    missing = server.get("/api/v1/commission/indicators", "commission", cohort="nope", year=YEAR)
    assert missing.status_code == 422 and "nope" in missing.text
    # a time without its offset is ambiguous across factories: refused, naming the field
    for path in ("/api/v1/commission/indicators", "/api/v1/commission/config",
                 "/api/v1/commission/factories"):  # fmt: skip
        naive = server.get(path, "commission", cohort="wx", year=YEAR, as_of="2025-06-30T00:00")
        assert naive.status_code == 422, (path, naive.text)
        assert naive.json()["detail"][0]["loc"] == ["query", "as_of"]


def test_exports_match_the_api(server: ApiServer) -> None:
    table = server.json("/api/v1/commission/indicators", "commission", cohort="wx", year=YEAR)
    r = server.get("/api/v1/commission/indicators.xlsx", "commission", cohort="wx", year=YEAR)
    assert r.status_code == 200
    wb = openpyxl.load_workbook(io.BytesIO(r.content))
    assert {*LEVEL_SHEETS.values(), "Definitions 定义", "Coverage 覆盖", "Inputs 输入版本"} <= set(
        wb.sheetnames
    )
    ws = wb[LEVEL_SHEETS["cohort"]]
    header = [c.value for c in ws[1]]
    assert header == list(ROW_HEADER)
    got = {row[2]: row[header.index("value")] for row in ws.iter_rows(min_row=2, values_only=True)}
    for ind, row in _cohort_rows(table).items():
        if row["value"] is None:
            assert got[ind] in (None, "")
        else:
            assert got[ind] == pytest.approx(row["value"], rel=1e-12), ind
    inputs = list(wb["Inputs 输入版本"].iter_rows(min_row=2, values_only=True))
    assert any(a == GREEN and b == "2025" and isinstance(c, int) for a, b, c, *_ in inputs)
    r = server.get("/api/v1/commission/indicators.csv", "commission", cohort="wx", year=YEAR)
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    cohort_csv = {x["indicator"]: x for x in rows if x["level"] == "cohort"}
    assert float(cohort_csv["energy_intensity"]["value"]) == pytest.approx(
        _cohort_rows(table)["energy_intensity"]["value"], rel=1e-12
    )


def test_commission_config_from_yaml_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from zhizao.cli import main

    db = f"sqlite:///{tmp_path / 'api.sqlite'}"
    args = ["api", "commission-config", str(DEFAULT_SAMPLE), "--db", db, "--reason", "first"]
    assert main(args) == 0
    assert "revision 1 stored" in capsys.readouterr().out
    assert main(args) == 0
    assert "unchanged: revision 1" in capsys.readouterr().out
    doc = yaml.safe_load(DEFAULT_SAMPLE.read_text(encoding="utf-8"))
    doc["cohorts"][0]["base_year"] = "last year"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    assert main(["api", "commission-config", str(bad), "--db", db, "--reason", "x"]) == 2
    err = capsys.readouterr().err
    assert "base_year" in err and "Traceback" not in err


def test_ranking_rows_cohorts_and_years(server: ApiServer) -> None:
    """The routes the Commission dashboard reads: a ranking in the indicator's direction with
    shared ranks for equal values, flat rows equal to the table's, the cohorts and their years."""
    rd = {GREEN: (1.0, 100.0), B1: (2.0, 200.0), C1: (50.0, 1_000.0)}  # 1 %, 1 % (tie), 5 %
    for site, (spend, revenue) in rd.items():
        values = {**(REPORT_2025 if site == GREEN else {"value_added_current_10k_cny": 10.0,
                                                         "price_index": 1.0}),
                  "rd_spend_10k_cny": spend, "main_business_revenue_10k_cny": revenue}  # fmt: skip
        assert _put_report(server, "admin", site, str(YEAR), values, "R&D").status_code == 200
    got = server.json("/api/v1/commission/ranking", "commission", cohort="panel", year=YEAR,
                      indicator="rd_intensity")  # fmt: skip
    assert got["direction"] == "at_least"
    assert [(r["rank"], r["site"]) for r in got["rows"]] == [(1, C1), (2, B1), (2, GREEN)]
    assert [r["value"] for r in got["rows"]] == pytest.approx([5.0, 1.0, 1.0], rel=1e-12)
    lower = server.json("/api/v1/commission/ranking", "commission", cohort="panel", year=YEAR,
                        indicator="energy_intensity")  # fmt: skip
    assert lower["direction"] == "at_most"
    assert [(r["rank"], r["site"]) for r in lower["rows"]] == [(1, GREEN), (None, B1), (None, C1)]
    assert "reported every input" in lower["rows"][1]["reason"]
    bad = server.get("/api/v1/commission/ranking", "commission", indicator="oee")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "indicator"]
    assert server.get("/api/v1/commission/ranking", "engineer", indicator="rd_intensity"
                      ).status_code == 403  # fmt: skip
    # flat rows are the table's rows, scalars only; the table itself carries no factory rows
    table = server.json("/api/v1/commission/indicators", "commission", cohort="panel", year=YEAR)
    assert not [k for k in table if k.startswith("_")]
    flat = server.json("/api/v1/commission/indicator-rows", "commission", cohort="panel",
                       year=YEAR, level="district")  # fmt: skip
    district_rows = [r for r in table["rows"] if r["level"] == "district"]
    assert [(r["group"], r["indicator"], r["value"]) for r in flat] == [
        (r["group"], r["indicator"], r["value"]) for r in district_rows
    ]
    assert all(not isinstance(v, dict | list) for r in flat for v in r.values())
    waste = next(r for r in flat if r["indicator"] == "solid_waste_utilization"
                 and r["group"] == "Pudong")  # fmt: skip
    assert waste["met_2025"] is False and waste["target_2025"] == 97.0
    assert server.get("/api/v1/commission/indicator-rows", "commission",
                      level="machine").status_code == 422  # fmt: skip
    cohorts = server.json("/api/v1/commission/cohorts", "commission")
    assert [(c["id"], c["factories"], c["base_year"]) for c in cohorts] == [
        ("wx", 1, BASE), ("panel", 3, BASE)]  # fmt: skip
    years = [y["year"] for y in server.json("/api/v1/commission/years", "commission",
                                            cohort="panel")]  # fmt: skip
    assert years[0] == max(datetime.now(TZ).year - 1, BASE) and years[-1] == BASE
    assert years == sorted(years, reverse=True) and YEAR in years
