"""DOMAIN section 8 end to end: raw data into the real InfluxDB, the KPI engine, the API."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from analytics import catalog
from analytics.config import load_kpi_config
from analytics.engine import KpiEngine
from tests.api import worked_example as wx
from tests.api.harness import ApiServer, api_server
from tests.conftest import InfluxDb
from zhizao.site import SiteModel

pytestmark = pytest.mark.integration
KPI = {
    "heartbeat_s": 86400,
    "signals": {"state": [{"measurement": "machine_state", "field": "state"}]},
}
DAY = "2026-03-02T00:00:00+08:00"
NEXT = "2026-03-03T00:00:00+08:00"


def load_example(tmp: Path, db: InfluxDb) -> None:
    body = "\n".join(wx.line_protocol()).encode()
    r = httpx.post(f"{db.url}/write", params={"db": db.database, "precision": "ns"}, content=body)
    assert r.status_code == 204, r.text
    (tmp / "site.yaml").write_text(yaml.safe_dump(wx.SITE_MODEL), encoding="utf-8")
    cfg = {
        "sites": ["site.yaml"],
        "influx": {"url": db.url, "database": db.database},
        "schedule": {"backfill_s": 2 * 86400, "lookback_s": 86400, "delay_s": 0},
        **KPI,
    }
    (tmp / "kpi.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    import asyncio

    engine = KpiEngine(load_kpi_config(tmp / "kpi.yaml"))
    report = asyncio.run(engine.run_once(now_ns=wx.at_minute(24 * 60 + 120)))
    assert report.points_written > 0


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory, influx_server: Any) -> Iterator[ApiServer]:
    import uuid

    from tests.conftest import _influx_post

    tmp = tmp_path_factory.mktemp("wx")
    name = f"t_{uuid.uuid4().hex[:12]}"
    _influx_post(influx_server.url, f'CREATE DATABASE "{name}"')
    db = InfluxDb(influx_server.url, name, influx_server)
    load_example(tmp, db)
    with api_server(
        tmp, influx_url=db.url, database=name, sites=[SiteModel.model_validate(wx.SITE_MODEL)],
        kpi=KPI,
    ) as server:  # fmt: skip
        yield server


def _history(server: ApiServer, **params: Any) -> list[dict[str, Any]]:
    out = server.json(
        f"/api/v1/sites/{wx.SITE}/kpis/history", **{"from": DAY, "to": NEXT, **params}
    )
    rows: list[dict[str, Any]] = out["rows"]
    return rows


def test_machine_day_kpis_equal_the_worked_example(example: ApiServer) -> None:
    rows = _history(
        example, level="machine", grouping="day", kpi="oee,availability,effectiveness,quality"
    )
    by_machine = {r["asset"]["machine"]: r for r in rows}
    assert set(by_machine) == {"M1", "M2", "M3"}
    for machine, want in wx.EXPECTED.items():
        row = by_machine[machine]
        assert row["components"]["pbt_s"] == want["pbt_s"]  # times exact
        assert row["components"]["apt_s"] == want["apt_s"]
        for kpi in ("oee", "availability", "effectiveness", "quality"):
            assert row["kpis"][kpi]["value"] == pytest.approx(want[kpi], abs=1e-6), (machine, kpi)
            assert row["kpis"][kpi]["label"] == catalog.get(kpi).label


def test_line_oee_is_sum_over_sum_not_the_mean_of_ratios(example: ApiServer) -> None:
    (line,) = _history(example, level="line", grouping="day", kpi="oee")
    assert line["kpis"]["oee"]["value"] == pytest.approx(wx.LINE_OEE, abs=1e-6)
    assert line["kpis"]["oee"]["value"] != pytest.approx(0.768889, abs=1e-4)
    assert line["components"]["pri_gq_s"] == pytest.approx(852 * wx.PRI_S)
    assert line["components"]["pbt_s"] == 2250 * 60


def test_every_grouping_gives_the_same_day_totals(example: ApiServer) -> None:
    day = _history(example, level="site", grouping="day", kpi="oee")
    hours = _history(example, level="site", grouping="hour", kpi="oee")
    shifts = _history(example, level="site", grouping="shift", kpi="oee")
    whole = _history(example, level="site", grouping="range", kpi="oee")
    month = _history(example, level="site", grouping="month", kpi="oee")
    assert len(hours) >= 16 and len(day) == 1 and len(whole) == 1 and len(month) == 1
    total = day[0]["components"]["pbt_s"]
    assert sum(h["components"]["pbt_s"] for h in hours) == total
    assert sum(s["components"]["pbt_s"] for s in shifts) == total
    assert whole[0]["components"]["pbt_s"] == total == month[0]["components"]["pbt_s"]
    assert whole[0]["kpis"]["oee"]["value"] == pytest.approx(wx.LINE_OEE, abs=1e-6)
    assert month[0]["window"]["label"] == "2026-03"
    assert hours[0]["window"]["start"].endswith("+08:00")  # local time of the site


def test_energy_per_good_part_and_flags(example: ApiServer) -> None:
    rows = _history(example, level="machine", grouping="day", kpi="kwh_per_good,quality")
    m1 = next(r for r in rows if r["asset"]["machine"] == "M1")
    assert m1["kpis"]["kwh_per_good"]["value"] == pytest.approx(700 / 351, abs=1e-9)
    # an hour without parts: quality is null with a flag, never 100 %
    hours = _history(example, level="machine", grouping="hour", kpi="quality", machine="M3")
    night = [h for h in hours if h["components"]["pq"] == 0]
    assert night and all(h["kpis"]["quality"]["value"] is None for h in night)
    assert all(h["kpis"]["quality"]["flags"][0]["code"] == "no_denominator" for h in night)


def test_plant_row_has_the_line_ends_output_and_absent_meters_are_null(
    example: ApiServer,
) -> None:
    """The worked example has machine meters only: the plant's output is the line's last
    machine (M3), its water per unit and renewable share are null with the reason, not 0."""
    out = example.json(f"/api/v1/sites/{wx.SITE}/plant", **{"from": DAY, "to": NEXT})
    assert out["output_machines"] == ["M3"] and out["renewable_meters"] == []
    (row,) = out["rows"]
    m3 = _history(example, level="machine", grouping="day", kpi="quality", machine="M3")
    assert row["quantities"]["output_gq"] == m3[0]["components"]["gq"] > 0
    for kpi_id, reason in (("water_per_output", "no plant water meter data"),
                           ("renewable_share", "renewable: true")):  # fmt: skip
        k = row["kpis"][kpi_id]
        assert k["value"] is None and reason in k["flag"], k
    days = example.json(
        f"/api/v1/sites/{wx.SITE}/plant", **{"from": DAY, "to": NEXT, "grouping": "day"}
    )
    assert [r["window"]["label"] for r in days["rows"]] == [DAY[:10]]
    assert days["rows"][0]["quantities"]["output_gq"] == row["quantities"]["output_gq"]
    r = example.get(
        f"/api/v1/sites/{wx.SITE}/plant", **{"from": DAY, "to": NEXT, "grouping": "shift"}
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "grouping", r.text
    r = example.get(
        f"/api/v1/sites/{wx.SITE}/kpis/history",
        **{"from": DAY, "to": NEXT, "kpi": "water_per_output"},
    )
    assert r.status_code == 422 and "GET .../plant" in r.text, r.text


def test_bad_input_is_a_4xx_naming_the_field(example: ApiServer) -> None:
    base = f"/api/v1/sites/{wx.SITE}/kpis/history"
    cases = [
        ({"from": NEXT, "to": DAY}, "to"),
        ({"from": "yesterday", "to": NEXT}, "from"),
        ({"from": DAY, "to": NEXT, "kpi": "oee,nonsense"}, "kpi"),
        ({"from": DAY, "to": NEXT, "machine": "M404"}, "machine"),
        ({"from": "2020-01-01T00:00", "to": NEXT, "grouping": "hour"}, "to"),
        ({"from": DAY, "to": NEXT, "grouping": "fortnight"}, "grouping"),
    ]
    for params, field in cases:
        r = example.get(base, **params)
        assert r.status_code == 422, (params, r.text)
        locs = [e["loc"][-1] for e in r.json()["detail"]]
        assert field in locs, (params, r.json())


def test_exports(example: ApiServer) -> None:
    import io

    import openpyxl

    base = f"/api/v1/sites/{wx.SITE}/export/history"
    csv = example.get(f"{base}.csv", **{"from": DAY, "to": NEXT, "level": "line", "kpi": "oee"})
    assert csv.status_code == 200 and csv.content.startswith("\ufeff".encode())
    text = csv.content.decode("utf-8-sig").splitlines()
    assert text[0].split(",")[:3] == ["area", "line", "window"]
    assert abs(float(text[1].split(",")[5]) - wx.LINE_OEE) < 1e-6
    xlsx = example.get(f"{base}.xlsx", **{"from": DAY, "to": NEXT, "level": "line", "kpi": "oee"})
    assert xlsx.status_code == 200
    wb = openpyxl.load_workbook(io.BytesIO(xlsx.content))
    assert wb.sheetnames == ["table", "definitions", "query"]
    assert wb["definitions"]["A2"].value == "oee"
    assert 'sum("pri_gq_s")' in str(wb["definitions"]["F2"].value)
    assert abs(float(wb["table"]["F2"].value) - wx.LINE_OEE) < 1e-6


def test_timeline_time_per_state_equals_the_stored_components(example: ApiServer) -> None:
    day = _history(example, level="machine", grouping="day", kpi="availability")
    for machine in ("M1", "M2", "M3"):
        out = example.json(
            f"/api/v1/sites/{wx.SITE}/machines/{machine}/timeline", token="engineer",
            **{"from": DAY, "to": NEXT},
        )  # fmt: skip
        ivs = out["intervals"]
        assert ivs[0]["start_ns"] == wx.at_minute(0) and ivs[-1]["end_ns"] == wx.at_minute(24 * 60)
        assert all(a["end_ns"] == b["start_ns"] for a, b in itertools.pairwise(ivs))
        pbt: dict[str, float] = {}
        for iv in ivs:
            if iv["in_pot"] and not iv["planned_down"]:
                pbt[iv["state"]] = pbt.get(iv["state"], 0.0) + (iv["end_ns"] - iv["start_ns"]) / 1e9
        comps = next(r for r in day if r["asset"]["machine"] == machine)["components"]
        assert pbt.get("IN_CYCLE", 0.0) == comps["apt_s"] == wx.EXPECTED[machine]["apt_s"]
        assert sum(pbt.values()) == comps["pbt_s"]
        assert pbt.get("SETUP", 0.0) == wx.TABLE[machine]["aust"] * 60
        assert pbt.get("IDLE", 0.0) == wx.TABLE[machine]["adot"] * 60
        minutes_delay = wx.TABLE[machine]["breakdown"] + wx.TABLE[machine]["minor"]
        assert pbt.get("DELAY", 0.0) == minutes_delay * 60
        assert {iv["codes"]["state"] for iv in ivs} >= {"IDLE", "SETUP", "IN_CYCLE"}


def test_live_view_of_the_line(example: ApiServer) -> None:
    # 06:50 local: M1 started with 45 min of setup, then production
    at = "2026-03-02T06:50:00+08:00"
    out = example.json(f"/api/v1/sites/{wx.SITE}/lines/{wx.LINE}/live", token="engineer", at=at)
    m1 = next(m for m in out["machines"] if m["machine"] == "M1")
    assert m1["state"] == "IN_CYCLE"
    assert m1["since"] == "2026-03-02T06:45:00+08:00"
    assert m1["time_in_state_s"] == 300.0
    assert out["shift"]["name"] == "day" and out["shift"]["start"] == "2026-03-02T06:00:00+08:00"
    line_shift = out["kpis"]["shift"]["line"][0]
    # the whole day's shift row: the same line OEE as the history
    assert line_shift["kpis"]["oee"]["value"] == pytest.approx(wx.LINE_OEE, abs=1e-6)
    assert example.get(f"/api/v1/sites/{wx.SITE}/lines/nope/live", "engineer").status_code == 404


def _stops(server: ApiServer, machine: str, start: str = DAY, end: str = NEXT) -> dict[str, Any]:
    out: dict[str, Any] = server.json(
        f"/api/v1/sites/{wx.SITE}/machines/{machine}/stops", token="engineer",
        **{"from": start, "to": end},
    )  # fmt: skip
    return out


def test_stops_pareto_and_mtbf(example: ApiServer) -> None:
    out = _stops(example, "M1")
    kinds = [s["kind"] for s in out["stops"]]
    assert kinds.count("breakdown") == 1 and kinds.count("minor_stop") == 15
    assert out["minor_stops"]["count"] == 15 and out["minor_stops"]["seconds"] == 15 * 60
    assert out["breakdowns"] == 1
    assert out["mtbf_s"] == pytest.approx(wx.EXPECTED["M1"]["apt_s"] / 1)
    assert out["mttr_s"] == pytest.approx(30 * 60)
    assert _stops(example, "M3")["mtbf_s"] is None  # no breakdown: null, never infinite


def test_a_stop_is_classified_by_its_whole_length(example: ApiServer) -> None:
    stop = next(s for s in _stops(example, "M1")["stops"] if s["kind"] == "breakdown")
    # a range that ends one minute into the 30-minute breakdown still calls it a breakdown
    cut_end = stop["start"].replace("+08:00", "")
    from datetime import datetime, timedelta

    end = (datetime.fromisoformat(cut_end) + timedelta(minutes=1)).isoformat() + "+08:00"
    cut = [s for s in _stops(example, "M1", DAY, end)["stops"] if s["start_ns"] == stop["start_ns"]]
    assert cut and cut[0]["kind"] == "breakdown" and cut[0]["cut_at_end"]
    # (the ISO 8601 range is to the microsecond; the stop starts at a fractional microsecond)
    assert cut[0]["duration_s"] == pytest.approx(60.0, abs=1e-3)
    assert cut[0]["length_s"] == pytest.approx(30 * 60, abs=1e-6)


def test_reasons_assigned_split_kept_and_in_the_pareto(example: ApiServer, tmp_path: Path) -> None:
    base = f"/api/v1/sites/{wx.SITE}/machines"
    m1 = next(s for s in _stops(example, "M1")["stops"] if s["kind"] == "breakdown")
    m2 = next(s for s in _stops(example, "M2")["stops"] if s["kind"] == "breakdown")
    with example.client("engineer") as c:
        r = c.post(f"{base}/M1/stops/reason", json={"start_ns": m1["start_ns"], "end_ns": m1["end_ns"],
                                                     "reason": "SPINDLE", "note": "bearing"})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["by"] == "engineer" and r.json()["reason"] == "SPINDLE"
        mid = (m2["start_ns"] + m2["end_ns"]) // 2
        r = c.post(f"{base}/M2/stops/split", json={"start_ns": m2["start_ns"], "end_ns": m2["end_ns"],
                   "at_ns": mid, "first_reason": "MECH", "second_reason": "MAT"})  # fmt: skip
        assert r.status_code == 200, r.text
        bad = c.post(f"{base}/M2/stops/reason", json={"start_ns": 1, "end_ns": 2, "reason": "NOPE"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "reason"
        bad = c.post(f"{base}/M2/stops/split", json={"start_ns": 1, "end_ns": 2, "at_ns": 5,
                     "first_reason": "MECH", "second_reason": "MAT"})  # fmt: skip
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "at_ns"
    with example.client("commission") as c:  # no stop lists, no assignments for the commission
        assert c.post(f"{base}/M1/stops/reason", json={}).status_code == 403
    p1 = {e["reason"]: e for e in _stops(example, "M1")["pareto_by_reason"]}
    assert p1["SPINDLE"]["seconds"] == 30 * 60
    p2 = _stops(example, "M2")
    by_reason = {e["reason"]: e["seconds"] for e in p2["pareto_by_reason"]}
    # setup and idle episodes are stops too; nobody gave them a reason
    unassigned = (wx.TABLE["M2"]["aust"] + wx.TABLE["M2"]["adot"]) * 60
    assert by_reason == {"MECH": 35 * 60, "MAT": 35 * 60, "unassigned": unassigned}
    by_cat = {e["category"]: e["seconds"] for e in p2["pareto_by_category"]}
    assert by_cat["breakdown"] == 35 * 60 and by_cat["material"] == 35 * 60
    # the KPI engine recomputes the day: the assignments are master data and stay
    cfg_dir = tmp_path
    (cfg_dir / "site.yaml").write_text(yaml.safe_dump(wx.SITE_MODEL), encoding="utf-8")
    (cfg_dir / "kpi.yaml").write_text(yaml.safe_dump({"sites": ["site.yaml"], "influx": {
        "url": example.influx_url, "database": example.influx_database}, **KPI}), encoding="utf-8")  # fmt: skip
    import asyncio

    asyncio.run(
        KpiEngine(load_kpi_config(cfg_dir / "kpi.yaml")).run_once(now_ns=wx.at_minute(26 * 60))
    )
    again = {e["reason"]: e["seconds"] for e in _stops(example, "M2")["pareto_by_reason"]}
    assert again == by_reason
    tl = example.json(f"{base}/M1/timeline", token="engineer", **{"from": DAY, "to": NEXT})
    assert any(iv["reason"] == "SPINDLE" and iv["state"] == "DELAY" for iv in tl["intervals"])
    # the Pareto over several machines (Grafana's Line live) is the machines' Paretos summed
    pareto = f"/api/v1/sites/{wx.SITE}/stop-reasons"
    span = {"from": DAY, "to": NEXT}
    both = example.json(pareto, token="engineer", line=wx.LINE, **span)
    want: dict[str, float] = {}
    line_machines = [m.id for _, ln, m in SiteModel.model_validate(wx.SITE_MODEL).machines()
                     if ln.id == wx.LINE]  # fmt: skip
    assert len(line_machines) >= 2 and both["machines"] == line_machines
    for m in line_machines:
        for e in _stops(example, m)["pareto_by_reason"]:
            want[e["reason"]] = want.get(e["reason"], 0.0) + e["seconds"]
    assert {r["reason"]: r["seconds"] for r in both["reasons"]} == want
    assert both["reasons"][0]["seconds"] == max(want.values())
    assert both["reasons"][-1]["cumulative_share"] == 1.0
    spindle = next(r for r in both["reasons"] if r["reason"] == "SPINDLE")
    assert (
        spindle["machines"] == "M1" and spindle["count"] == 1 and spindle["category"] == "breakdown"
    )
    only_m2 = example.json(pareto, token="engineer", machine="M2", **span)
    assert {r["reason"]: r["seconds"] for r in only_m2["reasons"]} == by_reason
    for field, value in (("machine", "M9"), ("line", "nope")):
        bad = example.get(pareto, "engineer", **{field: value}, **span)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", field]
    assert example.get(pareto, "commission", **span).status_code == 403


def test_losses_close_to_pbt_and_export(example: ApiServer) -> None:
    import io

    import openpyxl

    out = example.json(
        f"/api/v1/sites/{wx.SITE}/losses", token="engineer", **{"from": DAY, "to": NEXT}
    )
    (line,) = out["rows"]
    losses = sum(v["value"] for k, v in line["kpis"].items() if catalog.get(k).view == "losses")
    assert losses + line["components"]["pri_gq_s"] == pytest.approx(line["components"]["pbt_s"])
    assert line["kpis"]["idling_minor_stops_s"]["value"] == (15 + 20 + 15) * 60
    x = example.get(
        f"/api/v1/sites/{wx.SITE}/export/losses.xlsx", "engineer", **{"from": DAY, "to": NEXT}
    )
    assert x.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(x.content))["table"]
    header = [c.value for c in sheet[1]]
    assert sheet.cell(2, header.index("breakdown_s") + 1).value == (30 + 70) * 60
