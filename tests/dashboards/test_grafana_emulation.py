"""The emulation of Grafana's macros and reducers against values computed with Grafana's own
``@grafana/data`` (dashboards/reference/grafana_reference.json, made by make_reference.cjs)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from dashboards import grafana

REFERENCE = (
    Path(__file__).resolve().parents[2] / "dashboards" / "reference" / "grafana_reference.json"
)


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REFERENCE.read_text())
    return data


def test_reference_was_made_with_grafana_data(reference: dict[str, Any]) -> None:
    assert int(reference["grafana_data_version"].split(".")[0]) >= 13
    assert len(reference["intervals"]) > 500
    assert {"kwatth", "percentunit", "s", "dateTimeFromNow"} <= set(reference["units"])
    # the cases reach every branch of roundInterval, including a year
    assert {c["interval"] for c in reference["intervals"]} >= {
        "1s",
        "1m",
        "1h",
        "1d",
        "7d",
        "30d",
        "1y",
    }


def test_interval_matches_calculate_interval(reference: dict[str, Any]) -> None:
    wrong = []
    for case in reference["intervals"]:
        got = grafana.calculate_interval(case["range_ms"], case["resolution"], case["low_limit"])
        if (got.ms, got.text) != (case["interval_ms"], case["interval"]):
            wrong.append((case, got))
    assert wrong == []


def test_reducers_match_field_reducers(reference: dict[str, Any]) -> None:
    for case in reference["reducers"]:
        for calc, want in case["results"].items():
            got = grafana.reduce(case["values"], calc)
            if want is None:
                assert got is None, (case["values"], calc, got)
            else:
                assert got is not None and math.isclose(got, want, rel_tol=1e-12), (
                    case["values"],
                    calc,
                    got,
                    want,
                )
    with pytest.raises(ValueError, match="unknown reducer"):
        grafana.reduce([1.0], "median-ish")


def test_influxql_substitution() -> None:
    iv = grafana.calculate_interval(86_400_000, 1000, "10s")
    q = grafana.interpolate_influxql(
        'SELECT last("x") FROM "m" WHERE $timeFilter AND "machine" =~ /^$machine$/ '
        "GROUP BY time($__interval) LIMIT $__interval_ms",
        from_ms=1000,
        to_ms=2000,
        interval=iv,
        variables={"machine": ["CNC1", "CNC.2"]},
    )
    assert q == (
        'SELECT last("x") FROM "m" WHERE time >= 1000ms and time <= 2000ms AND '
        '"machine" =~ /^(CNC1|CNC\\.2)$/ GROUP BY time(1m) LIMIT 60000'
    )


def test_promql_substitution() -> None:
    iv = grafana.calculate_interval(3_600_000, 1000, "15s")
    e = grafana.interpolate_promql(
        'rate(x{instance=~"$instance"}[$__rate_interval]) + increase(y[$__range])',
        from_ms=0,
        to_ms=3_600_000,
        interval=iv,
        scrape_interval="15s",
        variables={"instance": ["127.0.0.1:9100"]},
    )
    # interval 15s: max(15s + 15s, 4 x 15s) = 60 s; the dot escaped for a PromQL string
    assert e == 'rate(x{instance=~"127\\\\.0\\\\.0\\\\.1:9100"}[60000ms]) + increase(y[3600s])'


def test_panel_resolution() -> None:
    assert grafana.panel_resolution({"maxDataPoints": 300, "gridPos": {"w": 24}}) == 300
    full = grafana.panel_resolution({"gridPos": {"w": 24}})
    half = grafana.panel_resolution({"gridPos": {"w": 12}})
    assert 1850 < full < 1920 and 900 < half < full / 2
