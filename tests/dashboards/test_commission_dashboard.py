"""The Commission dashboard's queries, run as Grafana's Infinity datasource runs them, against
the real API (reports in its database, plant-meter totals from the real InfluxDB and KPI engine):
every variable and panel answers, and the panels show the API's own figures."""

from __future__ import annotations

import asyncio
import math
from datetime import date
from typing import Any

import httpx
import pytest

from analytics.indicators import get_indicator
from dashboards import checks
from dashboards.generate import DASHBOARD_FILES
from dashboards.run import QueryContext, QueryResult, resolve_variables, run_dashboard
from tests.api.harness import ApiServer
from tests.api.test_commission import B1, C1, GREEN, REPORT_2025, YEAR, _put_report, server

pytestmark = pytest.mark.integration
__all__ = ["server"]  # the API with the worked example's factories (tests/api/test_commission)

RD = {GREEN: (1.0, 100.0), B1: (9.0, 100.0), C1: (50.0, 10_000.0)}  # R&D rates 1 %, 9 %, 0.5 %
CHOICE = {"cohort": ["panel"], "year": [str(YEAR)], "indicator": ["rd_intensity"]}


@pytest.fixture(scope="module")
def reported(server: ApiServer) -> ApiServer:
    for site, (spend, revenue) in RD.items():
        base = (
            REPORT_2025
            if site == GREEN
            else {"value_added_current_10k_cny": 10.0, "price_index": 1.0}
        )
        values = {**base, "rd_spend_10k_cny": spend, "main_business_revenue_10k_cny": revenue}
        r = _put_report(server, "admin", site, str(YEAR), values, "R&D figures")
        assert r.status_code == 200, r.text
    return server


def _board() -> dict[str, Any]:
    return checks.load_dashboards()[DASHBOARD_FILES["zhizao-commission"]]


def _ctx(server: ApiServer, token: str = "commission") -> QueryContext:
    return QueryContext(
        server.influx_url, "unused", 0, 1, api_url=server.url, api_token=server.tokens[token]
    )


def _table(results: list[QueryResult], title: str) -> list[dict[str, Any]]:
    (res,) = [r for r in results if r.panel == title]
    assert res.error is None, res.error
    (series,) = res.series
    return [dict(zip(series["columns"], row, strict=True)) for row in series["values"]]


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def test_every_variable_and_panel_answers(reported: ApiServer) -> None:
    board = _board()

    async def run() -> tuple[dict[str, list[str]], list[QueryResult]]:
        async with httpx.AsyncClient() as c:
            defaults = await resolve_variables(board, _ctx(reported), c)
            return defaults, await run_dashboard(board, _ctx(reported), CHOICE, client=c)

    defaults, results = asyncio.run(run())
    # Grafana's defaults: the first cohort, the last complete year, the plan's first indicator
    assert defaults == {
        "cohort": ["wx"],
        "year": [str(max(date.today().year - 1, YEAR))],
        "indicator": ["sei_va_share_gdp"],
    }
    assert len(results) == 4
    for r in results:
        assert r.error is None, (r.panel, r.error)
        assert r.points > 0, (r.panel, r.query)
        assert "cohort=panel" in r.query and f"year={YEAR}" in r.query


def test_panels_show_the_api_figures(reported: ApiServer) -> None:
    results = asyncio.run(run_dashboard(_board(), _ctx(reported), CHOICE))
    table = reported.json("/api/v1/commission/indicators", "commission", cohort="panel", year=YEAR)
    api = {(r["level"], r["group"], r["label_en"]): r for r in table["rows"]}
    cohort = _table(results, "Cohort: indicators vs the 2020 and 2025 targets")
    assert len(cohort) == len([k for k in api if k[0] == "cohort"])
    for row in cohort:
        want = api[("cohort", "panel", row["Indicator"])]
        assert _same(row["Value"], want["value"]), row
        assert row["Reported"] == want["coverage"]["reported"]
        met = {t["year"]: t["met"] for t in want["targets"]}
        for year in (2020, 2025):
            shown = row[f"{year} met"]
            assert shown == (None if met.get(year) is None else str(met[year]).lower()), row
    districts = _table(results, "Districts: indicators vs the targets")
    assert {r["District"] for r in districts} == {"Pudong", "Minhang"}
    for row in districts:
        assert _same(row["Value"], api[("district", row["District"], row["Indicator"])]["value"])
    rd = next(
        r for r in districts if r["District"] == "Pudong" and r["Indicator"].startswith("R&D")
    )
    assert _same(rd["Value"], 100 * 10.0 / 200.0)  # sum over sum of GREEN and B1
    coverage = _table(results, "Coverage: who reported")
    label = get_indicator("energy_intensity_decline").label_en
    decline = next(r for r in coverage if r["Indicator"] == label)
    # B1 and C1 reported no base year: the fixed panel is GREEN alone
    assert decline["Reported"] == 1 and decline["Factories"] == 3
    assert decline["Coverage"] == pytest.approx(1 / 3) and decline["Missing"] == f"{B1}, {C1}"


def test_the_ranking_follows_the_indicator_direction(reported: ApiServer) -> None:
    results = asyncio.run(run_dashboard(_board(), _ctx(reported), CHOICE))
    ranked = _table(results, "Factories ranked by rd_intensity")
    assert [(r["Rank"], r["Factory"], r["District"]) for r in ranked] == [
        (1.0, f"factory {B1}", "Pudong"),
        (2.0, f"factory {GREEN}", "Pudong"),
        (3.0, f"factory {C1}", "Minhang"),
    ]
    assert [r["Value"] for r in ranked] == pytest.approx([9.0, 1.0, 0.5], rel=1e-12)
    # energy intensity: lower is better; only GREEN has energy (metered) and a base year
    lower = asyncio.run(
        run_dashboard(_board(), _ctx(reported), {**CHOICE, "indicator": ["energy_intensity"]})
    )
    ranked = _table(lower, "Factories ranked by energy_intensity")
    assert ranked[0]["Factory"] == f"factory {GREEN}" and ranked[0]["Rank"] == 1.0
    assert [r["Rank"] for r in ranked[1:]] == [None, None]
    assert all(r["Why no value"] for r in ranked[1:])


def test_the_datasource_token_decides_what_the_dashboard_shows(reported: ApiServer) -> None:
    results = asyncio.run(
        run_dashboard(_board(), _ctx(reported, "engineer"), CHOICE, variables=CHOICE)
    )
    assert results and all(r.error and "403" in r.error for r in results)
