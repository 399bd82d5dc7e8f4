"""Issue 12, "same numbers as the API": the worked example (DOMAIN section 8) in a real InfluxDB,
the real KPI engine, the real API; the key Grafana panels, run with Grafana's macro and
variable substitution emulated and reduced as Grafana reduces them, equal the API's answers for
the same window to 1e-6."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from dashboards.run import QueryContext, QueryResult, reduce_panel, run_dashboard
from tests.api import worked_example as wx
from tests.api.harness import ApiServer, api_server
from tests.api.test_worked_example_api import DAY, KPI, NEXT, load_example
from tests.conftest import InfluxDb, _influx_post
from zhizao.site import SiteModel

pytestmark = pytest.mark.integration
GENERATED = Path(__file__).resolve().parents[2] / "dashboards" / "generated"
MACHINES = ("M1", "M2", "M3")
RATIOS = {"oee": "oee", "availability": "availability", "effectiveness": "effectiveness",
          "quality": "quality"}  # fmt: skip


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, influx_server: Any
) -> Iterator[tuple[ApiServer, QueryContext]]:
    tmp = tmp_path_factory.mktemp("same")
    name = f"t_{uuid.uuid4().hex[:12]}"
    _influx_post(influx_server.url, f'CREATE DATABASE "{name}"')
    db = InfluxDb(influx_server.url, name, influx_server)
    load_example(tmp, db)
    with api_server(
        tmp, influx_url=db.url, database=name, sites=[SiteModel.model_validate(wx.SITE_MODEL)],
        kpi=KPI,
    ) as server:  # fmt: skip
        # both ends included, as Grafana's range: the last millisecond before the next day; the
        # JSON datasource (stop reasons) reads the same API with an engineer token
        ctx = QueryContext(influx_server.url, name, _ms(DAY), _ms(NEXT) - 1,
                           api_url=server.url, api_token=server.tokens["engineer"])  # fmt: skip
        yield server, ctx


def _board(name: str) -> dict[str, Any]:
    board: dict[str, Any] = json.loads((GENERATED / f"{name}.json").read_text(encoding="utf-8"))
    return board


def _run(ctx: QueryContext, board: str, machines: Sequence[str]) -> list[QueryResult]:
    choose = {"site": [wx.SITE], "area": [wx.AREA], "line": [wx.LINE], "machine": list(machines)}
    results = asyncio.run(run_dashboard(_board(board), ctx, choose))
    errors = [(r.panel, r.error) for r in results if r.error]
    assert not errors, errors
    return results


def _api(server: ApiServer, level: str, grouping: str, kpis: str) -> list[dict[str, Any]]:
    out = server.json(
        f"/api/v1/sites/{wx.SITE}/kpis/history",
        **{"from": DAY, "to": NEXT, "level": level, "grouping": grouping, "kpi": kpis},
    )
    rows: list[dict[str, Any]] = out["rows"]
    return rows


def _one(values: dict[Any, float | None]) -> float | None:
    assert len(values) == 1, values
    return next(iter(values.values()))


def test_line_oee_factors_and_energy_equal_the_api(stack: tuple[ApiServer, QueryContext]) -> None:
    server, ctx = stack
    results = _run(ctx, "line-live", MACHINES)  # $machine = All: the line
    (line,) = _api(server, "line", "range", "oee,availability,effectiveness,quality,kwh_per_good")
    for column, kpi in RATIOS.items():
        shown = _one(reduce_panel(results, "OEE and its factors", column))
        assert shown == pytest.approx(line["kpis"][kpi]["value"], abs=1e-6), kpi
    assert _one(reduce_panel(results, "OEE and its factors", "oee")) == pytest.approx(
        wx.LINE_OEE, abs=1e-6
    )
    shown = _one(reduce_panel(results, "Energy per good part", "kWh per good part"))
    assert shown == pytest.approx(line["kpis"]["kwh_per_good"]["value"], abs=1e-6)


def test_machine_oee_and_times_equal_the_api(stack: tuple[ApiServer, QueryContext]) -> None:
    server, ctx = stack
    rows = {r["asset"]["machine"]: r for r in _api(server, "machine", "range", "oee,availability,"
            "effectiveness,quality,kwh_per_good")}  # fmt: skip
    assert set(rows) == set(MACHINES)
    for m in MACHINES:
        results = _run(ctx, "line-live", [m])
        for column, kpi in RATIOS.items():
            shown = _one(reduce_panel(results, "OEE and its factors", column))
            assert shown == pytest.approx(rows[m]["kpis"][kpi]["value"], abs=1e-6), (m, kpi)
        comp = rows[m]["components"]
        for column, key in (("PBT", "pbt_s"), ("APT", "apt_s")):
            shown = _one(reduce_panel(results, "Times", column))
            assert shown == pytest.approx(comp[key], abs=1e-6), (m, column)
        # state-time totals: the hourly panel summed over the range (Grafana's "sum" legend)
        in_cycle = _one(reduce_panel(results, "Time by platform state, hour by hour", "IN_CYCLE",
                                     "sum"))  # fmt: skip
        assert in_cycle == pytest.approx(comp["apt_s"], abs=1e-6), m


def test_shift_report_rows_equal_the_api_shifts(stack: tuple[ApiServer, QueryContext]) -> None:
    server, ctx = stack
    results = _run(ctx, "shift-report", MACHINES)
    api_rows = _api(server, "machine", "shift", "oee,availability,effectiveness,quality,"
                    "kwh_per_good")  # fmt: skip
    assert api_rows
    panel = {
        col: reduce_panel(results, "Shifts by machine", col)
        for col in ("OEE", "A", "E", "Q", "kWh per good part")
    }
    compared = 0
    for row in api_rows:
        machine = row["asset"]["machine"]
        date, shift = str(row["window"]["label"]).rsplit(" ", 1)  # "2026-03-02 day"
        want_tags = {"date": date, "shift": shift, "line": wx.LINE, "machine": machine}
        keys = [k for k in panel["OEE"] if dict(k) == want_tags]
        if not keys:
            continue
        (key,) = keys
        for col, kpi in (("OEE", "oee"), ("A", "availability"), ("E", "effectiveness"),
                         ("Q", "quality"), ("kWh per good part", "kwh_per_good")):  # fmt: skip
            want = row["kpis"][kpi]["value"]
            got = panel[col][key]
            if want is None:
                assert got is None, (machine, col)
            else:
                assert got == pytest.approx(want, abs=1e-6), (machine, col, key)
        compared += 1
    assert compared == len(api_rows), (compared, api_rows[0])
