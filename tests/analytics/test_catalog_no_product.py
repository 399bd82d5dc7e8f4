"""Absent is not zero in the stored path: the PRI-based KPIs divide by the time with a known
product, so a line with a machine without a product is over the machines that can be computed
(flagged partial_no_product), and the machine itself is null with no_product, never 0."""

from __future__ import annotations

import math

import pytest

from analytics import catalog
from analytics.components import Components

PRI_RATIOS = ("oee", "oee_tpm", "effectiveness", "performance_tpm", "nee", "quality_pri_weighted")


def _two_machines() -> Components:
    """M1 with a product; M2 running as much, with no product (no PRI x part, all unknown)."""
    return Components.from_columns(
        {"pbt_s": [3600.0, 3600.0], "apt_s": [3000.0, 3000.0], "aust_s": [200.0, 200.0],
         "adet_s": [400.0, 400.0], "adet_minor_s": [100.0, 100.0], "pq": [25.0, 25.0],
         "gq": [20.0, 20.0], "pri_pq_s": [2500.0, 0.0], "pri_gq_s": [2000.0, 0.0],
         "pbt_no_product_s": [0.0, 3600.0], "apt_no_product_s": [0.0, 3000.0],
         "aust_no_product_s": [0.0, 200.0], "adet_minor_no_product_s": [0.0, 100.0]}
    )  # fmt: skip


def test_line_pri_kpis_are_over_the_machines_with_a_product_and_flagged() -> None:
    c = _two_machines()
    machines = catalog.evaluate(c, PRI_RATIOS)
    line = catalog.evaluate(c.total(), PRI_RATIOS)
    assert line["oee"].value[0] == pytest.approx(2000 / 3600)  # not 2000 / 7200
    for k in PRI_RATIOS:
        assert line[k].value[0] == pytest.approx(machines[k].value[0]), k
        assert [f["code"] for f in line[k].flags_at(0)] == ["partial_no_product"], k
        # the machine with a product: no flag; the one without: null, for that reason only
        assert machines[k].flags_at(0) == [], k
        assert math.isnan(machines[k].value[1]), k
        assert [f["code"] for f in machines[k].flags_at(1)] == ["no_product"], k
    assert machines["oee"].flags_at(1)[0]["reason"] == catalog.NO_PRODUCT_REASON
    # the flag names the share of the planned busy time left out
    assert "50 % of it left out" in line["oee"].flags_at(0)[0]["reason"]
    # the speed loss is over the time with a known product too (not all of M2's APT)
    loss = catalog.evaluate(c.total(), ["reduced_speed_s"])["reduced_speed_s"]
    assert loss.value[0] == pytest.approx(3000 - 2500)


def test_partly_unknown_window_is_over_its_known_time() -> None:
    c = Components.from_columns(
        {"pbt_s": [3600.0, 3600.0], "apt_s": [3000.0, 3000.0], "pri_gq_s": [600.0, 1200.0],
         "pri_pq_s": [900.0, 1500.0], "pq": [10.0, 10.0], "gq": [8.0, 8.0],
         "pbt_no_product_s": [2400.0, 1.0], "apt_no_product_s": [2100.0, 0.0]}
    )  # fmt: skip
    k = catalog.evaluate(c, ["oee", "effectiveness", "availability"])
    assert k["oee"].value[0] == pytest.approx(600 / 1200)
    assert k["effectiveness"].value[0] == pytest.approx(900 / 900)
    assert k["oee"].value[1] == pytest.approx(1200 / 3599)
    # each row's flag names its own share; a share that rounds to 0 % is still some
    reasons = [[f["reason"] for f in k["oee"].flags_at(i)] for i in (0, 1)]
    assert len(reasons[0]) == len(reasons[1]) == 1
    assert "67 % of it left out" in reasons[0][0] and "1 % of it left out" in reasons[1][0]
    # time KPIs need no product: over all of PBT, no flag
    assert k["availability"].value[0] == pytest.approx(3000 / 3600)
    assert k["availability"].flags_at(0) == []
    assert [f["code"] for f in k["oee"].flags_at(1)] == ["partial_no_product"]
    expr = catalog.influxql_expression("effectiveness")
    assert expr == 'sum("pri_pq_s") / (sum("apt_s") - sum("apt_no_product_s"))'
