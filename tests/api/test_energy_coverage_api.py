"""Absent is not zero through the stored components: the worked example with M3's meter taken out
of the site model (its raw meter points stay in InfluxDB, unread) and a unit value for P-100.
The API gives M3 no energy per part (null, flag no_meter) instead of 0 kWh, the line's energy per
good part is M1's and M2's energy over their own good parts, and energy per 10k CNY of output
value is over the metered machines' output value."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from analytics.config import load_kpi_config
from analytics.engine import KpiEngine
from tests.api import worked_example as wx
from tests.api.harness import ApiServer, api_server
from tests.api.test_worked_example_api import DAY, KPI, NEXT
from tests.conftest import InfluxDb, _influx_post
from zhizao.site import SiteModel

pytestmark = pytest.mark.integration
UNIT_VALUE_CNY = 1200.0
SITE_MODEL: dict[str, Any] = copy.deepcopy(wx.SITE_MODEL)
SITE_MODEL["meters"] = [m for m in SITE_MODEL["meters"] if m["id"] != "em-M3"]
SITE_MODEL["products"][0]["unit_value_cny"] = UNIT_VALUE_CNY


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, influx_server: Any) -> Iterator[ApiServer]:
    tmp = tmp_path_factory.mktemp("coverage")
    name = f"t_{uuid.uuid4().hex[:12]}"
    _influx_post(influx_server.url, f'CREATE DATABASE "{name}"')
    db = InfluxDb(influx_server.url, name, influx_server)
    body = "\n".join(wx.line_protocol()).encode()
    r = httpx.post(f"{db.url}/write", params={"db": db.database, "precision": "ns"}, content=body)
    assert r.status_code == 204, r.text
    (tmp / "site.yaml").write_text(yaml.safe_dump(SITE_MODEL), encoding="utf-8")
    cfg = {
        "sites": ["site.yaml"],
        "influx": {"url": db.url, "database": db.database},
        "schedule": {"backfill_s": 2 * 86400, "lookback_s": 86400, "delay_s": 0},
        **KPI,
    }
    (tmp / "kpi.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    engine = KpiEngine(load_kpi_config(tmp / "kpi.yaml"))
    report = asyncio.run(engine.run_once(now_ns=wx.at_minute(24 * 60 + 120)))
    assert report.points_written > 0
    with api_server(
        tmp, influx_url=db.url, database=name, sites=[SiteModel.model_validate(SITE_MODEL)],
        kpi=KPI,
    ) as srv:  # fmt: skip
        yield srv


def _history(server: ApiServer, level: str, kpis: str) -> list[dict[str, Any]]:
    out = server.json(
        f"/api/v1/sites/{wx.SITE}/kpis/history",
        **{"from": DAY, "to": NEXT, "level": level, "grouping": "day", "kpi": kpis},
    )
    rows: list[dict[str, Any]] = out["rows"]
    return rows


def test_unmetered_machine_is_null_and_the_line_is_over_the_metered_parts(
    server: ApiServer,
) -> None:
    kpis = "kwh_per_good,kwh_per_part,kgce_per_good"
    by_machine = {r["asset"]["machine"]: r for r in _history(server, "machine", kpis)}
    # a fully metered machine: the worked example's number, unchanged
    assert by_machine["M1"]["kpis"]["kwh_per_good"]["value"] == pytest.approx(700 / 351, abs=1e-9)
    # no meter: null with the reason, never 0 kWh per part
    m3 = by_machine["M3"]["kpis"]
    for k in kpis.split(","):
        assert m3[k]["value"] is None, k
        codes = [f["code"] for f in m3[k]["flags"]]
        assert "no_meter" in codes, (k, codes)
        assert all("meter" in f["reason"] for f in m3[k]["flags"]), m3[k]["flags"]
    assert by_machine["M3"]["components"]["gq_metered"] == 0
    (line,) = _history(server, "line", kpis)
    metered_good = wx.EXPECTED["M1"]["gq"] + wx.EXPECTED["M2"]["gq"]
    kwh = wx.TABLE["M1"]["kwh"] + wx.TABLE["M2"]["kwh"]
    assert line["components"]["gq_metered"] == metered_good
    assert line["kpis"]["kwh_per_good"]["value"] == pytest.approx(kwh / metered_good, abs=1e-9)
    all_good = metered_good + wx.EXPECTED["M3"]["gq"]
    assert line["kpis"]["kwh_per_good"]["value"] != pytest.approx(kwh / all_good, abs=1e-6)
    assert "no_meter" in [f["code"] for f in line["kpis"]["kwh_per_good"]["flags"]]


def test_energy_per_output_value_is_over_the_metered_output_value(server: ApiServer) -> None:
    (line,) = _history(server, "line", "kgce_per_10k_cny,kgco2_per_10k_cny,kgce_per_good")
    metered_good = wx.EXPECTED["M1"]["gq"] + wx.EXPECTED["M2"]["gq"]
    comps = line["components"]
    assert comps["output_value_metered_cny"] == pytest.approx(metered_good * UNIT_VALUE_CNY)
    kgce = line["kpis"]["kgce_per_10k_cny"]
    assert kgce["value"] == pytest.approx(
        comps["kgce"] / comps["output_value_metered_cny"] * 10_000, rel=1e-12
    )
    # kgce per 10k CNY = kgce per good part x 10,000 / unit value (one product, all valued)
    per_good = line["kpis"]["kgce_per_good"]["value"]
    assert kgce["value"] == pytest.approx(per_good * 10_000 / UNIT_VALUE_CNY, rel=1e-12)
    assert kgce["unit"] == "kgce/10k CNY"
