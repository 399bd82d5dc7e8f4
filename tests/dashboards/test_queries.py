"""Every dashboard query, executed on a simulated day (simulator -> OPC UA / MQTT / Sparkplug B ->
gateway -> Mosquitto -> ingest -> InfluxDB -> KPI engine, started by ``deploy/demo.py`` as in
``tests/e2e/test_pipeline.py``), with Grafana's macro and variable substitution emulated; the
Line-live OEE against the simulator's truth; the health dashboard's PromQL against
VictoriaMetrics scraping the running gateway and ingest.

One fixture for the whole module: 20.5 simulated hours from 03:00 at 600x (about two wall
minutes), so both shifts (06:00-22:00) are complete and computed.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from analytics.catalog import components_needed, evaluate
from analytics.components import Components
from dashboards import grafana
from dashboards.checks import iter_panels, load_dashboards
from dashboards.generate import DASHBOARD_FILES, generate
from dashboards.run import QueryContext, QueryResult, reduce_panel, run_dashboard
from simulator.scenario import to_ns
from simulator.truth import iso22400_elements, read_truth
from tests.conftest import _start
from tests.e2e.test_pipeline import demo
from zhizao.localstack import VictoriaMetricsServer, free_port

START = "2026-11-26T03:00:00+08:00"
HOURS = 20.5
SPEED = 600.0
SEED = 35
DAY = "2026-11-26T00:00:00+08:00"
DAY_FROM_MS = to_ns(DAY) // 1_000_000
DAY_TO_MS = DAY_FROM_MS + 86_400_000 - 1  # Grafana's "today": to 23:59:59.999, both ends in
CUTOFF = "2026-11-26T22:10:00+08:00"  # the KPI engine has computed beyond the late shift
REFERENCE = (
    Path(__file__).resolve().parents[2] / "dashboards" / "reference" / "grafana_reference.json"
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@dataclass
class ScrapingVictoriaMetrics(VictoriaMetricsServer):
    """VictoriaMetrics scraping the given Prometheus endpoints every 2 s (``-promscrape.config``),
    with recent samples visible at once (``-search.latencyOffset``)."""

    targets: list[str] = field(default_factory=list)

    def prepare(self) -> None:
        assert self.data_dir is not None
        config = {
            "global": {"scrape_interval": "2s"},
            "scrape_configs": [
                {"job_name": "zhizao", "static_configs": [{"targets": self.targets}]}
            ],
        }
        (self.data_dir / "scrape.yaml").write_text(json.dumps(config))

    def command(self) -> list[str]:
        assert self.data_dir is not None
        return [
            *super().command(),
            f"-promscrape.config={self.data_dir / 'scrape.yaml'}",
            "-search.latencyOffset=1s",
        ]


@dataclass
class Day:
    stack: Any
    vm: ScrapingVictoriaMetrics
    wall_from_ms: int
    boards: dict[str, dict[str, Any]]
    may_be_empty: dict[str, dict[int, str]]
    api_token: str = ""  # the demo's admin token (the JSON datasource's bearer token)

    def ctx(self, from_ms: int = DAY_FROM_MS, to_ms: int = DAY_TO_MS) -> QueryContext:
        return QueryContext(
            self.stack.influx.url,
            demo.DATABASE,
            from_ms,
            to_ms,
            prometheus_url=self.vm.url,
            api_url=demo.api_url(self.stack),
            api_token=self.api_token,
        )


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day]:
    options = demo.DemoOptions(
        data_dir=tmp_path_factory.mktemp("day"),
        speed=SPEED,
        seed=SEED,
        start=START,
        hours=HOURS,
        kpi_interval_s=2.0,
    )
    wall_from_ms = int(time.time() * 1000)
    s = demo.start_stack(options, timeout_s=120.0)
    kpi_port = free_port()  # a long-running KPI engine's /metrics, started once the day is in
    vm = ScrapingVictoriaMetrics(
        targets=[
            f"127.0.0.1:{s.ports['gateway_metrics']}",
            f"127.0.0.1:{s.ports['ingest_metrics']}",
            f"127.0.0.1:{kpi_port}",
        ]
    )
    try:
        _start(vm)
        deadline = time.monotonic() + 420.0
        while s.last_cutoff_ns is None or s.last_cutoff_ns < to_ns(CUTOFF):
            assert time.monotonic() < deadline, (
                f"the day did not complete; cut-off {s.last_cutoff_ns}"
            )
            demo.step(s)
            time.sleep(0.5)
        while (s.outbox_samples() or 0) > 0:
            assert time.monotonic() < deadline, "the gateway's outbox did not drain"
            time.sleep(0.2)
        # one last KPI run over the whole day, with everything stored
        s.last_cutoff_ns = to_ns("2026-11-26T05:00:00+08:00")
        s.run_kpi_once(asyncio.run(s.sim_now_ns()))
        generated = generate(s.site)
        token = demo.start_api(s)  # the stop reasons live in the API's database
        # `zhizao kpi run` as deployed (its own schedule on the wall clock, /metrics on a port):
        # the health dashboard's engine panels read its metrics; it only reaches back a minute
        live = yaml.safe_load(s.paths["kpi"].read_text(encoding="utf-8"))
        live["schedule"] = {"interval_s": 2, "lookback_s": 60, "backfill_s": 60, "delay_s": 0}
        live["health"] = {"host": "127.0.0.1", "port": kpi_port}
        live_path = s.paths["kpi"].with_name("kpi-live.yaml")
        live_path.write_text(yaml.safe_dump(live), encoding="utf-8")
        s.spawn("kpi-engine", "kpi", "run", "-c", str(live_path))
        yield Day(s, vm, wall_from_ms, load_dashboards(), generated.may_be_empty, token)
    finally:
        vm.cleanup()
        s.stop()


def _run(day: Day, uid: str, ctx: QueryContext, **choose: list[str]) -> list[QueryResult]:
    return asyncio.run(run_dashboard(day.boards[DASHBOARD_FILES[uid]], ctx, choose or None))


def _assert_all_ran(day: Day, uid: str, results: list[QueryResult]) -> None:
    assert results
    errors = [f"{r.panel} {r.ref}: {r.error}\n  {r.query}" for r in results if r.error]
    assert errors == [], "\n".join(errors)
    for r in results:
        assert "$" not in r.query.replace("$/", "/"), f"unsubstituted macro: {r.query}"
    empty = [
        f"{r.panel} {r.ref}: {r.query}"
        for r in results
        if r.points == 0 and r.panel_id not in day.may_be_empty.get(uid, {})
    ]
    assert empty == [], "panels without data:\n" + "\n".join(empty)


def test_generated_for_the_stack_site_are_the_committed_dashboards(day: Day) -> None:
    assert {b["uid"] for b in day.boards.values()} == set(DASHBOARD_FILES)
    assert generate(day.stack.site).dashboards == {b["uid"]: b for b in day.boards.values()}


@pytest.mark.parametrize("uid", ["zhizao-line-live", "zhizao-shift-report", "zhizao-green-factory"])
def test_every_query_runs_and_returns_data(day: Day, uid: str) -> None:
    results = _run(day, uid, day.ctx())
    _assert_all_ran(day, uid, results)
    # $__interval as Grafana computes it: the same as @grafana/data for this range and width
    reference = json.loads(REFERENCE.read_text())["intervals"]
    board = day.boards[DASHBOARD_FILES[uid]]
    panels = {p["id"]: p for p in iter_panels(board)}
    checked = 0
    for r in results:
        if r.kind != "influxql":
            continue  # the stop-reason Pareto reads the API
        panel = panels[r.panel_id]
        raw = next(t["query"] for t in panel["targets"] if t["refId"] == r.ref)
        if "$__interval" not in raw:
            continue
        res = grafana.panel_resolution(panel)
        case = next(
            c
            for c in reference
            if c["range_ms"] == DAY_TO_MS - DAY_FROM_MS
            and c["resolution"] == res
            and c["low_limit"] == "10s"
        )
        assert f"time({case['interval']})" in r.query, (case, r.query)
        checked += 1
    assert checked or uid != "zhizao-line-live"


def test_variables_list_the_sites_machines(day: Day) -> None:
    machines = sorted(m.id for _, _, m in day.stack.site.machines())
    results = _run(day, "zhizao-line-live", day.ctx(), line=["al1"])
    state = [r for r in results if r.panel == "Current state"]
    tags = {dict(k)["machine"] for r in state for k in r.by_tags("state")}
    assert tags == {"ASM1"}  # the line filter reached the query
    results = _run(day, "zhizao-line-live", day.ctx())
    tags = {
        dict(k)["machine"]
        for r in results
        if r.panel == "Current state"
        for k in r.by_tags("state")
    }
    assert sorted(tags) == machines


def _truth_line(day: Day, line: str) -> dict[str, float]:
    sc = read_truth(day.stack.paths["truth"])
    truth = iso22400_elements(sc, DAY, to_ns(DAY) + 86_400 * 1_000_000_000)
    rows = [t for t in truth.values() if t["line"] == line]
    pbt = sum(t["pbt_s"] for t in rows)
    return {
        "oee": sum(t["pri_gq_s"] for t in rows) / pbt,
        "availability": sum(t["apt_s"] for t in rows) / pbt,
    }


@pytest.mark.parametrize("line", ["ml1", "al1"])
def test_line_live_oee_equals_the_simulators_truth(day: Day, line: str) -> None:
    results = _run(day, "zhizao-line-live", day.ctx(), line=[line])
    shown = {
        k: reduce_panel(results, "OEE and its factors", k)[()] for k in ("oee", "availability")
    }
    truth = _truth_line(day, line)
    print(f"line {line}: shown {shown}, truth {truth}")  # the margin, in the -rA report
    for k in ("oee", "availability"):
        value = shown[k]
        assert value is not None and not math.isnan(value)
        assert abs(value - truth[k]) <= 0.005, (line, k, value, truth[k])
    assert 0.2 < truth["oee"] < 1.0


def test_shift_report_rows_are_the_catalogs_values(day: Day) -> None:
    results = _run(day, "zhizao-shift-report", day.ctx())
    (by_machine,) = [r for r in results if r.panel == "Shifts by machine"]
    rows = {
        tuple(sorted(s["tags"].items())): dict(zip(s["columns"], s["values"][0], strict=True))
        for s in by_machine.series
    }
    machines = {m.id for _, _, m in day.stack.site.machines()}
    assert {dict(k)["machine"] for k in rows} == machines
    assert {dict(k)["shift"] for k in rows} == {"early", "late"}
    assert len(rows) == 2 * len(machines)
    # the same rows' components, evaluated by the catalog in Python
    fields = sorted(components_needed(["oee", "availability", "kwh_per_good"]))
    q = (
        "SELECT "
        + ", ".join(f'sum("{f}") AS "{f}"' for f in fields)
        + f' FROM "kpi_machine_shift" WHERE time >= {DAY_FROM_MS}ms AND time <= {DAY_TO_MS}ms'
        ' GROUP BY "date", "shift", "line", "machine"'
    )
    comps = asyncio.run(day.stack.query(q))
    assert len(comps) == len(rows)
    for s in comps:
        key = tuple(sorted(s.tags.items()))
        c = Components.from_columns({f: [float(s.values[f][0])] for f in fields})
        kpis = evaluate(c, ["oee", "availability", "kwh_per_good"])
        for kpi_id, col in (
            ("oee", "OEE"),
            ("availability", "A"),
            ("kwh_per_good", "kWh per good part"),
        ):
            assert rows[key][col] == pytest.approx(float(kpis[kpi_id].value[0]), rel=1e-9), (
                key,
                col,
            )


def test_health_promql_runs_against_victoria_metrics(day: Day) -> None:
    (engine,) = [p for p in day.stack.procs if p.name == "kpi-engine"]
    # the engine's first runs, scraped, then old enough to lie on the panels' query steps
    deadline = time.monotonic() + 120
    while True:
        ctx = day.ctx(day.wall_from_ms, int(time.time() * 1000))
        results = _run(day, "zhizao-health", ctx)
        since = [r for r in results if r.panel == "KPI engine: time since the last successful run"]
        ages = [float(v) for r in since for s in r.series for _, v in s["values"]]
        # every engine panel has points, from a scrape after the engine's first successful run
        # (before it the engine exports last success 0: an age of 56 years)
        engine_panels = [r for r in results if r.panel.startswith("KPI engine: ")]
        if all(r.points for r in engine_panels) and ages and ages[-1] < 60:
            break
        assert time.monotonic() < deadline and engine.proc.poll() is None, (
            f"no engine metrics on the panels; engine log:\n{demo.tail(engine.log_path)}"
        )
        time.sleep(2)
    _assert_all_ran(day, "zhizao-health", results)
    prom = [r for r in results if r.kind == "promql"]
    assert len(prom) >= 13
    instances = {s["metric"].get("instance") for r in prom for s in r.series}
    assert {
        f"127.0.0.1:{day.stack.ports['gateway_metrics']}",
        f"127.0.0.1:{day.stack.ports['ingest_metrics']}",
    } <= instances
    (since,) = [r for r in prom if r.panel == "KPI engine: time since the last successful run"]
    ages = [float(v) for s in since.series for _, v in s["values"]]
    assert ages and 0 <= ages[-1] < 60, ages[-5:]  # the running engine succeeded just now
    # the connection series carries the gateway's clock (the simulated day lies in the past)
    live = _run(day, "zhizao-line-live", ctx)
    (conn,) = [r for r in live if r.panel == "Gateway connection per source"]
    assert conn.error is None and conn.points > 0, conn.query
    assert {s["tags"]["source"] for s in conn.series} >= {"sim-opcua", "meters"}
    (acked,) = [r for r in prom if r.panel == "Samples confirmed per second"]
    rates = [float(v) for s in acked.series for _, v in s["values"]]
    assert max(rates) > 0, "the gateway confirmed nothing during the day"


def _api(day: Day, method: str, path: str, **kw: Any) -> Any:
    r = httpx.request(
        method,
        f"{demo.api_url(day.stack)}/api/v1/sites/{day.stack.site.site}{path}",
        headers={"Authorization": f"Bearer {day.api_token}"},
        timeout=60,
        **kw,
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_stop_reasons_panel_is_the_apis_pareto(day: Day) -> None:
    """An operator assigns a reason to the day's longest stop; the Line-live panel shows the
    API's per-machine Paretos summed: the same seconds and counts per reason."""
    span = {"from": "2026-11-26T00:00:00+08:00", "to": "2026-11-27T00:00:00+08:00"}
    machines = [m.id for _, _, m in day.stack.site.machines()]
    longest = max(
        ((m, st) for m in machines for st in _api(day, "GET", f"/machines/{m}/stops", params=span)["stops"]
         if st["kind"] != "minor_stop"),
        key=lambda x: x[1]["end_ns"] - x[1]["start_ns"],
    )  # fmt: skip
    machine, stop = longest
    body = {"start_ns": stop["start_ns"], "end_ns": stop["end_ns"], "reason": "spindle"}
    _api(day, "POST", f"/machines/{machine}/stops/reason", json=body)
    want: dict[str, list[float]] = {}
    for m in machines:
        for e in _api(day, "GET", f"/machines/{m}/stops", params=span)["pareto_by_reason"]:
            acc = want.setdefault(e["reason"], [0.0, 0.0])
            acc[0] += e["seconds"]
            acc[1] += e["count"]
    results = _run(day, "zhizao-line-live", day.ctx())
    (res,) = [r for r in results if r.panel == "Top loss reasons (assigned stops)"]
    assert res.error is None, res.error
    (series,) = res.series
    rows = [dict(zip(series["columns"], v, strict=True)) for v in series["values"]]
    labels = {r.code: r.label for r in day.stack.site.reasons} | {"unassigned": "unassigned"}
    got = {r["Reason"]: [r["Downtime"], r["Stops"]] for r in rows}
    assert got == {labels[k]: pytest.approx(v, rel=1e-9) for k, v in want.items()}
    assert "Spindle fault" in got and got["Spindle fault"][1] == 1
    assert rows == sorted(rows, key=lambda r: -r["Downtime"])
    assert rows[-1]["Cumulative"] == pytest.approx(1.0)


def test_green_factory_plant_panels_are_the_apis_plant_row(day: Day) -> None:
    """Water and energy per unit of the site's output and the renewable share: each Green-factory
    stat equals the API's ``/plant`` over the same day, the output is the line ends' good parts
    (the API's machine rows for CNC3 and ASM1) and the solar meter's energy is the share's
    numerator."""
    results = _run(day, "zhizao-green-factory", day.ctx())
    span = {"from": "2026-11-26T00:00:00+08:00", "to": "2026-11-27T00:00:00+08:00"}
    plant = _api(day, "GET", "/plant", params={**span, "grouping": "range"})
    assert plant["output_machines"] == ["CNC3", "ASM1"]
    assert plant["renewable_meters"] == ["pv-roof"]
    (row,) = plant["rows"]
    for kpi_id, k in (("water_per_output", "m3/output"), ("water_per_10k_cny", "m3/10k CNY"),
                      ("plant_kgce_per_output", "plant kgce/output"),
                      ("renewable_share", "renewable/energy use")):  # fmt: skip
        want = row["kpis"][kpi_id]["value"]
        assert want is not None and want > 0, (kpi_id, row)
        (shown,) = reduce_panel(results, k, k).values()
        assert shown == pytest.approx(want, rel=1e-9), kpi_id
    machines = _api(day, "GET", "/kpis/history",
                    params={**span, "level": "machine", "grouping": "range", "kpi": "quality"})  # fmt: skip
    gq = sum(r["components"]["gq"] for r in machines["rows"]
             if r["asset"]["machine"] in plant["output_machines"])  # fmt: skip
    assert row["quantities"]["output_gq"] == gq > 0
    q = (
        'SELECT last("energy_kwh") - first("energy_kwh") AS "kwh" FROM "energy" WHERE '
        f"\"machine\" = 'pv-roof' AND time > {DAY_FROM_MS}ms AND time <= {DAY_TO_MS + 1}ms"
    )
    (pv,) = asyncio.run(day.stack.query(q))
    kwh = float(pv.values["kwh"][0])
    assert row["quantities"]["renewable_kgce"] == pytest.approx(kwh * 0.1229, rel=0.02)
