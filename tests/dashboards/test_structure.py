"""The generated dashboards: up to date, and every structural rule holds (and each rule's check
can fail: a broken copy of a dashboard is reported)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from analytics.catalog import influxql_expression
from dashboards import checks
from dashboards.generate import DASHBOARD_FILES, OUT_DIR, generate, render, stale
from simulator.config import load_sim_config

ROOT = Path(__file__).resolve().parents[2]
PROVISIONING = ROOT / "dashboards" / "provisioning"


@pytest.fixture(scope="module")
def boards() -> dict[str, dict[str, Any]]:
    return checks.load_dashboards()


def _by_uid(boards: dict[str, dict[str, Any]], uid: str) -> dict[str, Any]:
    return copy.deepcopy(boards[DASHBOARD_FILES[uid]])


def test_committed_files_are_what_the_generator_writes(tmp_path: Path) -> None:
    generated = generate(load_sim_config(None).build_site())
    assert stale(generated) == [], "run: python -m dashboards.generate --site <zhizao sim site>"
    # and the comparison sees a difference
    (tmp_path / "line-live.json").write_text("{}")
    assert str(tmp_path / "line-live.json") in stale(generated, tmp_path)
    assert set(DASHBOARD_FILES.values()) == {p.name for p in OUT_DIR.glob("*.json")}
    for uid, board in generated.dashboards.items():
        assert json.loads(render(board))["uid"] == uid


def test_every_rule_holds(boards: dict[str, dict[str, Any]]) -> None:
    assert len(boards) == 5
    assert checks.all_problems() == []


def test_variables_are_chained_by_their_parents(boards: dict[str, dict[str, Any]]) -> None:
    for name, board in boards.items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        if board["uid"] == "zhizao-commission":
            # the commission sees cohorts and years, never a site's machines
            assert list(variables) == ["cohort", "year", "indicator"], name
            assert variables["year"]["query"]["infinityQuery"]["url_options"]["params"] == [
                {"key": "cohort", "value": "$cohort"}
            ]
            continue
        assert "site" in variables, name
        if board["uid"] == "zhizao-health":
            continue
        assert list(variables)[:4] == ["site", "area", "line", "machine"], name
        assert 'WHERE "site" =~ /^$site$/' in variables["area"]["query"]
        assert variables["machine"]["query"].endswith(
            'WHERE "site" =~ /^$site$/ AND "area" =~ /^$area$/ AND "line" =~ /^$line$/'
        )
        assert variables["machine"]["multi"] and variables["machine"]["includeAll"]


def test_every_panel_says_what_it_shows(boards: dict[str, dict[str, Any]]) -> None:
    for name, board in boards.items():
        assert board["timezone"] == "Asia/Shanghai"  # the site's zone: "today" is a local day
        for panel in checks.iter_panels(board):
            if panel["type"] != "row":
                assert panel["description"], (name, panel["title"])


def test_key_panels_use_the_catalog(boards: dict[str, dict[str, Any]]) -> None:
    text = json.dumps(boards["line-live.json"])
    for kpi in ("oee", "availability", "effectiveness", "quality", "kwh_per_good"):
        assert json.dumps(influxql_expression(kpi))[1:-1] in text, kpi
    shift = json.dumps(boards["shift-report.json"])
    assert json.dumps(influxql_expression("oee"))[1:-1] in shift


def _first_influx_target(board: dict[str, Any], kind: str = "stat") -> dict[str, Any]:
    for panel in checks.iter_panels(board):
        if panel["type"] == kind and panel["targets"]:
            t: dict[str, Any] = panel["targets"][0]
            if t["datasource"]["type"] == "influxdb":
                return t
    raise AssertionError(f"no {kind} panel")


def _problems(board: dict[str, Any]) -> list[str]:
    return checks.all_problems({"x.json": board})


_OEE = influxql_expression("oee")


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (lambda q: q.replace("$timeFilter", "$__timeFilter(time)"), "forbidden '$__timeFilter'"),
        (lambda q: 'from(bucket: "zhizao") |> range(start: -1h)', "forbidden 'from(bucket'"),
        (lambda q: q.replace(_OEE, 'sum("pri_gq_s") / count("pbt_s")'), "not a catalog expression"),
        (lambda q: q.replace(_OEE, 'mean("oee")'), "mean() over KPI"),
        (lambda q: q + " GROUP BY time(1h)", "shows only the last bucket"),
        (lambda q: q.replace("$site", "$plant"), "undefined variables ['plant']"),
        (lambda q: q + " AND $__unknown", "unknown macros"),
    ],
)  # fmt: skip
def test_a_broken_query_is_reported(
    boards: dict[str, dict[str, Any]], mutation: Any, expected: str
) -> None:
    board = _by_uid(boards, "zhizao-line-live")
    target = _first_influx_target(board)
    # the OEE stat
    for panel in checks.iter_panels(board):
        if panel["title"] == "OEE and its factors":
            target = panel["targets"][0]
    target["query"] = mutation(target["query"])
    assert any(expected in p for p in _problems(board)), _problems(board)


def test_a_day_without_time_zone_is_reported(boards: dict[str, dict[str, Any]]) -> None:
    board = _by_uid(boards, "zhizao-green-factory")
    t = _first_influx_target(board, "timeseries")
    assert "GROUP BY time(1d)" in t["query"]
    t["query"] = t["query"].replace(" tz('Asia/Shanghai')", "")
    assert any("without tz('Asia/Shanghai')" in p for p in _problems(board))
    t["query"] = t["query"].replace("time(1d)", "time(1y)")
    assert any("not an InfluxQL duration" in p for p in _problems(board))


def test_an_interval_that_can_become_years_is_reported(boards: dict[str, dict[str, Any]]) -> None:
    board = _by_uid(boards, "zhizao-line-live")
    panel = next(p for p in board["panels"] if p["title"] == "Machine state")
    assert _problems(board) == []
    panel["maxDataPoints"] = 20  # 10 years / 20 points: a year per bucket
    assert any("becomes 1y" in p for p in _problems(board))


def test_units_datasources_ids_and_calculations_are_checked(
    boards: dict[str, dict[str, Any]],
) -> None:
    board = _by_uid(boards, "zhizao-line-live")
    board["panels"][1]["fieldConfig"]["defaults"]["unit"] = "kilowatthours"
    board["panels"][2]["targets"][0]["datasource"] = {"type": "influxdb", "uid": "${DS_INFLUX}"}
    board["panels"][3]["id"] = board["panels"][4]["id"]
    problems = _problems(board)
    assert any("'kilowatthours' is not a Grafana unit" in p for p in problems), problems
    assert any("${DS_INFLUX}" in p and "not provisioned" in p for p in problems), problems
    assert any("panel ids not unique" in p for p in problems), problems
    green = _by_uid(boards, "zhizao-green-factory")
    month = next(p for p in green["panels"] if "month by month" in p["title"])
    calc = next(t for t in month["transformations"] if t["id"] == "calculateField")
    calc["options"]["binary"]["right"] = "kgco2 (sum)"
    assert any("division kgce/kgco2 is not a catalog KPI" in p for p in _problems(green))
    board = _by_uid(boards, "zhizao-shift-report")
    board["schemaVersion"] = 39
    assert any("schemaVersion 39" in p for p in _problems(board))


def test_provisioning_defines_the_datasources_the_dashboards_use() -> None:
    ds = yaml.safe_load((PROVISIONING / "datasources" / "zhizao.yaml").read_text())
    by_uid = {d["uid"]: d for d in ds["datasources"]}
    assert set(by_uid) == {
        "zhizao-influxdb",
        "zhizao-victoriametrics",
        "zhizao-api",
        "zhizao-api-site",
    }
    influx = by_uid["zhizao-influxdb"]
    assert influx["type"] == "influxdb" and influx["jsonData"]["version"] == "InfluxQL"
    assert influx["jsonData"]["dbName"] == "${ZHIZAO_INFLUXDB_DATABASE}"
    assert by_uid["zhizao-victoriametrics"]["type"] == "prometheus"
    api = by_uid["zhizao-api"]
    assert api["jsonData"]["auth_method"] == "bearerToken"
    assert api["secureJsonData"]["bearerToken"] == "${ZHIZAO_COMMISSION_TOKEN}"
    assert api["jsonData"]["allowedHosts"] == [api["url"]]  # the token goes to the API only
    assert ds["apiVersion"] == 1
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "zhizao.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and Path(provider["options"]["path"]).is_absolute()
    assert checks.provisioned_datasources() == {
        "zhizao-influxdb": "influxdb",
        "zhizao-victoriametrics": "prometheus",
        "zhizao-api": "yesoreyeram-infinity-datasource",
        "zhizao-api-site": "yesoreyeram-infinity-datasource",
    }


def test_json_targets_are_checked(boards: dict[str, dict[str, Any]]) -> None:
    board = _by_uid(boards, "zhizao-commission")
    assert _problems(board) == []
    ranking = next(p for p in board["panels"] if p["title"].startswith("Factories ranked"))
    target = ranking["targets"][0]
    target["root_selector"] = 'rows[district="Pudong"]'  # JSONata: outside the emulation
    target["url"] = "https://example.org/indicators"
    target["url_options"]["params"].append({"key": "district", "value": "$district"})
    problems = _problems(board)
    assert any("is not a field path" in p for p in problems), problems
    assert any("must read the zhizao API" in p for p in problems), problems
    assert any("undefined variables ['district']" in p for p in problems), problems
    var = board["templating"]["list"][1]["query"]["infinityQuery"]
    var["url_options"]["params"][0]["value"] = "$indicator"  # defined only after $year
    assert any("uses ['indicator'] before" in p for p in _problems(board)), _problems(board)
