"""Green factory: energy and CO2 per 10k CNY of output value (over the range and month by month)
from the catalog, the monthly bars' transformations giving the catalog's numbers, and the check
that a scaled KPI divided in Grafana is multiplied by its scale."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from analytics import catalog
from analytics.components import Components
from dashboards import checks
from dashboards.generate import DASHBOARD_FILES, VALUE_KPIS

ZONE = "Asia/Shanghai"


@pytest.fixture(scope="module")
def green() -> dict[str, Any]:
    board: dict[str, Any] = checks.load_dashboards()[DASHBOARD_FILES["zhizao-green-factory"]]
    return board


def _monthly_value_panel(board: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in board["panels"] if p["title"].startswith("Energy and CO2 per 10k CNY"))


def test_value_stats_are_the_catalog_expressions(green: dict[str, Any]) -> None:
    for kpi_id in VALUE_KPIS:
        k = catalog.get(kpi_id)
        panel = next(p for p in green["panels"] if p["title"] == k.label)
        assert panel["type"] == "stat"
        query = panel["targets"][0]["query"]
        assert catalog.influxql_expression(kpi_id) in query
        assert 'sum("output_value_metered_cny")' in query and "* 10000" in query
        assert 'FROM "kpi_machine_day"' in query
        assert panel["fieldConfig"]["defaults"]["unit"] == f"suffix: {k.unit}"


def _apply(
    transformations: list[dict[str, Any]], rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Grafana's formatTime (YYYY-MM, zone), groupBy (sum), calculateField (binary) and
    organize (exclude), as the barchart runs them on the query's day rows."""
    out = [dict(r) for r in rows]
    for t in transformations:
        o = t["options"]
        if t["id"] == "formatTime":
            tz = ZoneInfo(o["timezone"])
            for r in out:
                r["Time"] = datetime.fromtimestamp(r["Time"] / 1000, tz).strftime("%Y-%m")
        elif t["id"] == "groupBy":
            summed = [f for f, spec in o["fields"].items() if spec["operation"] == "aggregate"]
            groups: dict[str, dict[str, Any]] = {}
            for r in out:
                g = groups.setdefault(
                    r["Time"], {"Time": r["Time"]} | {f"{f} (sum)": 0.0 for f in summed}
                )
                for f in summed:
                    g[f"{f} (sum)"] += r[f]
            out = list(groups.values())
        elif t["id"] == "calculateField":
            b = o["binary"]
            for r in out:
                left = r[b["left"]]
                right = r[b["right"]] if b["right"] in r else float(b["right"])
                r[o["alias"]] = left / right if b["operator"] == "/" else left * right
        elif t["id"] == "organize":
            out = [{k: v for k, v in r.items() if not o["excludeByName"].get(k)} for r in out]
        else:  # pragma: no cover - a transformation this emulation does not know
            raise AssertionError(f"unknown transformation {t['id']}")
    return out


def test_monthly_value_bars_equal_the_catalog_per_month(green: dict[str, Any]) -> None:
    panel = _monthly_value_panel(green)
    query = panel["targets"][0]["query"]
    assert "GROUP BY time(1d)" in query and f"tz('{ZONE}')" in query
    for c in ("kgce", "kgco2", "output_value_metered_cny"):
        assert f'sum("{c}") AS "{c}"' in query
    # day rows of two local months (the first day of March starts at 16:00 UTC on Feb 28)
    tz = ZoneInfo(ZONE)
    days = [datetime(2026, 2, 27, tzinfo=tz), datetime(2026, 2, 28, tzinfo=tz),
            datetime(2026, 3, 1, tzinfo=tz), datetime(2026, 3, 2, tzinfo=tz)]  # fmt: skip
    kgce = [10.0, 20.0, 5.0, 7.0]
    kgco2 = [30.0, 50.0, 12.0, 20.0]
    value = [40_000.0, 60_000.0, 1_000.0, 30_000.0]
    rows = [{"Time": d.timestamp() * 1000, "kgce": a, "kgco2": b, "output_value_metered_cny": v}
            for d, a, b, v in zip(days, kgce, kgco2, value, strict=True)]  # fmt: skip
    got = {r["Time"]: r for r in _apply(panel["transformations"], rows)}
    assert set(got) == {"2026-02", "2026-03"}
    for month, sl in (("2026-02", slice(0, 2)), ("2026-03", slice(2, 4))):
        comps = Components.from_columns(
            {"kgce": kgce[sl], "kgco2": kgco2[sl], "output_value_metered_cny": value[sl]}
        ).total()
        want = catalog.evaluate(comps, VALUE_KPIS)
        shown = {k: v for k, v in got[month].items() if k != "Time"}
        assert set(shown) == {"kgce per 10k CNY", "kgCO2 per 10k CNY"}  # no raw sums left
        assert shown["kgce per 10k CNY"] == pytest.approx(float(want["kgce_per_10k_cny"].value[0]))
        assert shown["kgCO2 per 10k CNY"] == pytest.approx(
            float(want["kgco2_per_10k_cny"].value[0])
        )
    # sum over sum per month, not the mean of the days' ratios
    mean_of_days = np.mean([a / v * 10_000 for a, v in zip(kgce[2:], value[2:], strict=True)])
    assert got["2026-03"]["kgce per 10k CNY"] != pytest.approx(mean_of_days)


def test_a_scaled_division_without_its_scale_is_reported(green: dict[str, Any]) -> None:
    assert checks.all_problems({"x.json": green}) == []
    board = copy.deepcopy(green)
    panel = _monthly_value_panel(board)
    kept = [t for t in panel["transformations"]
            if not (t["id"] == "calculateField" and t["options"]["binary"]["operator"] == "*")]  # fmt: skip
    assert len(kept) == len(panel["transformations"]) - 2
    panel["transformations"] = kept
    problems = checks.all_problems({"x.json": board})
    assert any("not multiplied by the catalog KPI's scale 10000" in p for p in problems), problems
