"""Absent is not zero for the ideal cycle time, through the stored components: the worked example
with a second product in the site model (so no machine has a default product by being the only
one) and a default product for M1 and M2 only. M3 has no product: the API gives it no OEE (null,
flag no_product) instead of 0, and the line's OEE is M1's and M2's PRI x GQ over their own
planned busy time, flagged partial_no_product, not over M3's time too."""

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
SITE_MODEL: dict[str, Any] = copy.deepcopy(wx.SITE_MODEL)
SITE_MODEL["products"].append({"id": "P-200", "ideal_cycle_s": 60.0})
KPI_CFG: dict[str, Any] = {**KPI, "default_product": {"M1": "P-100", "M2": "P-100"}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, influx_server: Any) -> Iterator[ApiServer]:
    tmp = tmp_path_factory.mktemp("no_product")
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
        **KPI_CFG,
    }
    (tmp / "kpi.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    engine = KpiEngine(load_kpi_config(tmp / "kpi.yaml"))
    report = asyncio.run(engine.run_once(now_ns=wx.at_minute(24 * 60 + 120)))
    assert report.points_written > 0
    with api_server(
        tmp, influx_url=db.url, database=name, sites=[SiteModel.model_validate(SITE_MODEL)],
        kpi=KPI_CFG,
    ) as srv:  # fmt: skip
        yield srv


def _history(server: ApiServer, level: str, kpis: str) -> list[dict[str, Any]]:
    out = server.json(
        f"/api/v1/sites/{wx.SITE}/kpis/history",
        **{"from": DAY, "to": NEXT, "level": level, "grouping": "day", "kpi": kpis},
    )
    rows: list[dict[str, Any]] = out["rows"]
    return rows


def test_machine_without_product_is_null_and_the_line_is_over_the_others(
    server: ApiServer,
) -> None:
    kpis = "oee,effectiveness,nee,availability"
    by_machine = {r["asset"]["machine"]: r for r in _history(server, "machine", kpis)}
    # machines with a product: the worked example's numbers, unchanged, without a flag
    for m in ("M1", "M2"):
        oee = by_machine[m]["kpis"]["oee"]
        assert oee["value"] == pytest.approx(wx.EXPECTED[m]["oee"], abs=1e-6), m
        assert not oee.get("flags"), oee
    # no product: null for that reason, never 0; time KPIs stay
    m3 = by_machine["M3"]
    for k in ("oee", "effectiveness", "nee"):
        assert m3["kpis"][k]["value"] is None, k
        assert [f["code"] for f in m3["kpis"][k]["flags"]] == ["no_product"], k
    assert m3["kpis"]["availability"]["value"] == pytest.approx(wx.EXPECTED["M3"]["availability"])
    assert m3["components"]["pbt_no_product_s"] == wx.EXPECTED["M3"]["pbt_s"]
    (line,) = _history(server, "line", kpis)
    good = wx.EXPECTED["M1"]["gq"] + wx.EXPECTED["M2"]["gq"]
    pbt = wx.EXPECTED["M1"]["pbt_s"] + wx.EXPECTED["M2"]["pbt_s"]
    oee = line["kpis"]["oee"]
    assert oee["value"] == pytest.approx(good * wx.PRI_S / pbt, abs=1e-9)  # 0.74
    (partial,) = [f for f in oee["flags"] if f["code"] == "partial_no_product"]
    assert "20 % of it left out" in partial["reason"]  # M3's 450 of 2250 minutes
    apt = wx.EXPECTED["M1"]["apt_s"] + wx.EXPECTED["M2"]["apt_s"]
    pri_pq = (wx.TABLE["M1"]["pq"] + wx.TABLE["M2"]["pq"]) * wx.PRI_S
    assert line["kpis"]["effectiveness"]["value"] == pytest.approx(pri_pq / apt, abs=1e-9)
    # availability needs no product: over all three machines
    all_pbt = pbt + wx.EXPECTED["M3"]["pbt_s"]
    assert line["components"]["pbt_s"] == all_pbt
    assert not line["kpis"]["availability"].get("flags")
