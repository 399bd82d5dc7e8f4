"""The KPI catalog: one definition per KPI, Python and InfluxQL agree, flags instead of caps."""

from __future__ import annotations

import math
import re
from pathlib import Path

import httpx
import numpy as np
import pytest

from analytics import catalog
from analytics.components import COMPONENT_FIELDS, Components
from analytics.oee import iso22400_kpis, six_big_losses_s
from tests.conftest import InfluxDb
from zhizao import schema
from zhizao.influxql import (
    InfluxQLError,
    duration,
    ident,
    literal,
    tag_equals,
    tag_in,
    time_range,
    tz,
)

ROOT = Path(__file__).resolve().parents[2]


def test_components_are_the_schema_vocabulary() -> None:
    assert COMPONENT_FIELDS == schema.COMPONENT_FIELDS


def test_ids_are_unique_lower_snake_and_use_known_components() -> None:
    ids = [k.id for k in catalog.CATALOG]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", i) for i in ids)
    for k in catalog.CATALOG:
        assert set(k.components()) <= set(COMPONENT_FIELDS), k.id
    with pytest.raises(catalog.UnknownKpi, match="unknown KPI id 'nope'"):
        catalog.get("nope")


def _random_components(n: int, seed: int) -> Components:
    rng = np.random.default_rng(seed)
    cols = {name: rng.integers(0, 5000, n).astype(np.float64) for name in COMPONENT_FIELDS}
    cols["pbt_s"][0] = 0.0  # a row without planned time
    cols["pq"][1] = cols["gq"][1] = 0.0  # a row without parts
    return Components.from_columns(cols, n)


def test_flags_instead_of_caps() -> None:
    c = Components.from_columns(
        {"pbt_s": [3600.0, 0.0], "apt_s": [1000.0, 0.0], "pri_pq_s": [2000.0, 0.0],
         "pri_gq_s": [1900.0, 0.0], "pq": [20.0, 0.0], "gq": [19.0, 0.0]}
    )  # fmt: skip
    k = catalog.evaluate(c, ["effectiveness", "oee", "quality", "availability"])
    assert k["effectiveness"].value[0] == pytest.approx(2.0)  # not capped at 1
    assert [f["code"] for f in k["effectiveness"].flags_at(0)] == ["effectiveness_above_limit"]
    assert math.isnan(k["quality"].value[1])  # no parts: null, not 100 %
    assert k["quality"].flags_at(1)[0]["reason"] == "no parts produced in the window"
    assert math.isnan(k["availability"].value[1])
    assert k["availability"].flags_at(1)[0]["code"] == "no_denominator"
    assert k["availability"].at(0).get("flags") is None
    # the limit is configurable
    k2 = catalog.evaluate(c, ["effectiveness"], limits={"effectiveness_flag_above": 2.5})
    assert k2["effectiveness"].flags_at(0) == []


def test_counts_that_cannot_be_are_flagged() -> None:
    c = Components.from_columns({"pq": [10.0, 10.0], "gq": [12.0, 9.0], "sq": [-2.0, 1.0]})
    q = catalog.evaluate(c, ["quality"])["quality"]
    assert {f["code"] for f in q.flags_at(0)} == {"good_exceeds_produced", "negative_count"}
    assert q.flags_at(1) == []


def test_target_is_null_without_product_or_plan() -> None:
    c = Components.from_columns(
        {"pbt_s": [3600.0, 3600.0, 0.0], "target_q": [30.0, 20.0, 0.0],
         "pbt_no_product_s": [0.0, 600.0, 0.0], "pq": [27.0, 18.0, 0.0]}
    )  # fmt: skip
    k = catalog.evaluate(c, ["target_q", "target_attainment"])
    assert k["target_q"].value[0] == 30.0 and math.isnan(k["target_q"].value[1])
    assert math.isnan(k["target_q"].value[2])
    assert k["target_attainment"].value[0] == pytest.approx(0.9)
    assert math.isnan(k["target_attainment"].value[1])


def test_losses_close_to_pbt() -> None:
    c = _random_components(50, 3)
    # make the rows consistent: PBT = APT + AUST + ADET + ADOT
    pbt = c.apt_s + c.aust_s + c.adet_s + c.adot_s
    # with a known product throughout (the losses are over the time with a known product)
    unknown = {f: np.zeros(len(c)) for f in c.columns() if f.endswith("_no_product_s")}
    c = Components(**{**c.columns(), "pbt_s": pbt, **unknown})
    losses = six_big_losses_s(c)
    assert set(losses) == {k.id for k in catalog.CATALOG if k.view == "losses"}
    np.testing.assert_allclose(sum(losses.values()) + c.pri_gq_s, pbt, rtol=0, atol=1e-6)


def test_iso_view_equals_catalog() -> None:
    c = _random_components(20, 1)
    a = iso22400_kpis(c)
    b = catalog.evaluate(c, list(a))
    for kid in a:
        np.testing.assert_array_equal(a[kid].value, b[kid].value)


def test_readme_table_is_generated_from_the_catalog() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert catalog.markdown_table() in readme, (
        "README's KPI table differs: paste catalog.markdown_table()"
    )


def test_describe_lists_every_kpi_with_its_influxql() -> None:
    listing = catalog.describe()
    assert [d["id"] for d in listing] == [k.id for k in (*catalog.CATALOG, *catalog.SITE_CATALOG)]
    assert {d["scope"] for d in listing if d["id"] in catalog.SITE_KPIS} == {"site"}
    oee = next(d for d in listing if d["id"] == "oee")
    # the planned busy time without a known product is not in OEE's denominator
    assert oee["influxql"] == 'sum("pri_gq_s") / (sum("pbt_s") - sum("pbt_no_product_s"))'
    assert oee["numerator"] == ["pri_gq_s"]
    assert oee["denominator"] == ["pbt_s", "-pbt_no_product_s"]


def test_influxql_helpers_quote_and_refuse() -> None:
    assert ident('a"b') == '"a\\"b"'
    assert literal("it's\\") == "'it\\'s\\\\'"
    assert literal("two\nlines") == "'two\\nlines'"
    assert tag_equals({"b": "2", "a": "1"}) == "\"a\" = '1' AND \"b\" = '2'"
    assert tag_in("m", ["x", "y"]) == "(\"m\" = 'x' OR \"m\" = 'y')"
    assert time_range(1, 2) == "time >= 1 AND time < 2"
    assert tz("Asia/Shanghai") == "tz('Asia/Shanghai')"
    for bad in (lambda: ident(""), lambda: tag_in("m", []), lambda: time_range(2, 1),
                lambda: duration("1mo"), lambda: duration("1y"), lambda: tz("Mars/Olympus")):  # fmt: skip
        with pytest.raises(InfluxQLError):
            bad()


@pytest.mark.integration
def test_influxql_of_every_kpi_equals_python_on_a_real_influxdb(influx_db: InfluxDb) -> None:
    """Rows of random components in InfluxDB, grouped by a tag: every catalog expression read back
    through InfluxQL equals the Python value of the summed components (sum over sum)."""
    c = _random_components(12, 7)
    groups = ["g1", "g2", "g1", "g3"] * 3
    lines = []
    for i in range(len(c)):
        fields = ",".join(f"{k}={v!r}" for k, v in c.row(i).items())
        lines.append(
            f"kpi_test,grp={groups[i]},odd=it's\\ a\\,tag {fields} {1_000_000_000 * (i + 1)}"
        )
    r = httpx.post(f"{influx_db.url}/write", params={"db": influx_db.database, "precision": "ns"},
                   content="\n".join(lines))  # fmt: skip
    assert r.status_code == 204, r.text
    ids = [k.id for k in catalog.CATALOG]
    where = tag_equals({"odd": "it's a,tag"})
    q = (
        f"SELECT {catalog.influxql_select(ids)} FROM {ident('kpi_test')} "
        f"WHERE {where} AND {time_range(0, 10**12)} GROUP BY {ident('grp')}"
    )
    res = influx_db.query(q)["results"][0]
    assert "error" not in res, res
    names = sorted(set(groups))
    idx = np.array([names.index(g) for g in groups])
    summed = c.sum_by(idx, len(names))
    want = catalog.evaluate(summed)
    for s in res["series"]:
        g = names.index(s["tags"]["grp"])
        row = dict(zip(s["columns"], s["values"][0], strict=True))
        for kid in ids:
            py = float(want[kid].value[g])
            got = row[kid]
            if math.isnan(py):
                continue  # InfluxQL has no null for x/0; the API computes ratios in Python
            assert got == pytest.approx(py, rel=1e-9, abs=1e-9), (kid, s["tags"])
