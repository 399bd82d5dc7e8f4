"""docs/KPI-RULES.md's worked example is what the code computes, so the page cannot drift.

The page's machine-readable tables (between ``<!-- worked-example:NAME -->`` markers) are read
here: the machines' inputs become components, the KPI catalog and the green functions compute
them, and every quoted number must equal the computed value rounded to the decimals shown (times
and counts exactly). The same day as raw on-change samples (``tests/api/worked_example.py``)
goes through the engine's own reading and computing path and must give the page's numbers too.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from analytics import catalog
from analytics.components import Components
from analytics.compute import SiteComputer
from analytics.config import KpiConfig
from analytics.green import (
    CoefficientLibrary,
    co2_kg,
    comparable_value_added,
    comprehensive_energy_kgce,
    intensity_decline,
    solid_waste_utilization,
    value_added_cny,
)
from analytics.offline import load_csv
from tests.analytics import test_worked_example as analytics_example
from tests.api import worked_example as raw_example
from zhizao.config import parse_model
from zhizao.schema import COMPONENT_FIELDS
from zhizao.site import load_site

DOC = Path(__file__).resolve().parents[2] / "docs" / "KPI-RULES.md"
MIN = 60.0
PRI_S = 120.0
MACHINE_COLUMNS = [
    "machine", "POT (min)", "planned down (min)", "ADOT (min)", "AUST (min)", "breakdowns (min)",
    "minor stops (min)", "PQ", "SQ", "RQ", "cutting (min)", "kWh",
]  # fmt: skip
RESULT_COLUMNS = ["id", "unit", "M1", "M2", "M3", "line", "mean of the machines (wrong)"]
UNIT_DIVISOR = {"min": MIN, "parts": 1.0, "ratio": 1.0, "kWh": 1.0}
# the raw example publishes states, counters and meters, no spindle signals
NOT_IN_RAW_SAMPLES = {"cutting_s", "cutting_pot_s", "cutting_pbt_s"}


def _cells(line: str) -> list[str]:
    return [c.strip().strip("`") for c in line.strip().strip("|").split("|")]


def doc_table(name: str) -> list[dict[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    m = re.search(
        rf"<!-- worked-example:{name} -->\n(.*?)\n<!-- /worked-example:{name} -->", text, re.S
    )
    assert m, f"docs/KPI-RULES.md lost its <!-- worked-example:{name} --> table"
    lines = m.group(1).strip().splitlines()
    header = _cells(lines[0])
    assert set(lines[1].replace("|", "").strip()) <= {"-", ":", " "}, lines[1]
    return [dict(zip(header, _cells(line), strict=True)) for line in lines[2:]]


def assert_quoted(quoted: str, computed: float, where: str) -> None:
    """A quoted number is the computed one rounded to the decimals shown; integers exactly."""
    decimals = len(quoted.split(".")[1]) if "." in quoted else 0
    if decimals == 0:
        assert computed == float(quoted), f"{where}: the page says {quoted}, the code {computed}"
    else:
        assert math.isclose(round(computed, decimals), float(quoted), abs_tol=1e-12), (
            f"{where}: the page says {quoted}, the code computes {computed:.{decimals + 3}f}"
        )


def doc_machines() -> dict[str, list[float]]:
    rows = doc_table("machines")
    assert list(rows[0]) == MACHINE_COLUMNS, "the machines table's columns changed"
    return {r["machine"]: [float(r[c]) for c in MACHINE_COLUMNS[1:]] for r in rows}


def components_from_doc() -> Components:
    rows = []
    for pot, down, adot, aust, brk, minor, pq, sq, rq, cut, kwh in doc_machines().values():
        pbt = pot - down
        apt = pbt - adot - aust - brk - minor
        rows.append(
            {
                "calendar_s": 1440 * MIN,
                "pot_s": pot * MIN,
                "planned_down_s": down * MIN,
                "pbt_s": pbt * MIN,
                "apt_s": apt * MIN,
                "aust_s": aust * MIN,
                "adet_s": (brk + minor) * MIN,
                "adet_minor_s": minor * MIN,
                "adot_s": adot * MIN,
                "in_cycle_s": apt * MIN,
                "in_cycle_pot_s": apt * MIN,
                "cutting_s": cut * MIN,
                "cutting_pot_s": cut * MIN,
                "cutting_pbt_s": cut * MIN,
                "aoet_s": (apt + aust + brk + minor) * MIN,
                "pq": pq,
                "gq": pq - sq - rq,
                "sq": sq,
                "rq": rq,
                "pri_pq_s": PRI_S * pq,
                "pri_gq_s": PRI_S * (pq - sq - rq),
                "kwh": kwh,
                # every machine of the example has its meter all day: all its parts are metered
                **{
                    f"{q}_metered": n
                    for q, n in (("pq", pq), ("gq", pq - sq - rq))
                    if f"{q}_metered" in COMPONENT_FIELDS
                },
            }
        )
    return Components.from_rows(rows)


def values_of(row_id: str, c: Components) -> np.ndarray:
    if row_id in catalog.KPIS:
        return np.asarray(catalog.evaluate(c, [row_id])[row_id].value, np.float64)
    assert row_id in COMPONENT_FIELDS, f"{row_id!r} is neither a catalog KPI nor a component"
    return np.asarray(c.column(row_id), np.float64)


def needs(row_id: str) -> set[str]:
    return set(catalog.get(row_id).components()) if row_id in catalog.KPIS else {row_id}


def check_results(
    c: Components, *, machines_only: bool = False, skip: set[str] | None = None
) -> int:
    checked = 0
    line = c.total()
    for row in doc_table("results"):
        assert list(row) == RESULT_COLUMNS, "the results table's columns changed"
        rid, unit = row["id"], row["unit"]
        if skip and needs(rid) & skip:
            continue
        per_machine = values_of(rid, c) / UNIT_DIVISOR[unit]
        for i, machine in enumerate(("M1", "M2", "M3")):
            assert_quoted(row[machine], float(per_machine[i]), f"{rid} of {machine}")
            checked += 1
        if machines_only:
            continue
        assert_quoted(
            row["line"], float(values_of(rid, line)[0] / UNIT_DIVISOR[unit]), f"{rid} line"
        )
        if row["mean of the machines (wrong)"]:
            mean = float(np.mean(per_machine))
            assert_quoted(row["mean of the machines (wrong)"], mean, f"mean of {rid}")
            assert abs(mean - values_of(rid, line)[0]) > 1e-3, f"{rid}: the mean is not wrong"
        checked += 2
    return checked


def test_the_machines_are_the_examples_the_other_tests_use() -> None:
    doc = doc_machines()
    assert {m: tuple(v) for m, v in doc.items()} == {
        m: tuple(float(x) for x in v) for m, v in analytics_example.TABLE.items()
    }
    for machine, t in raw_example.TABLE.items():
        pot, down, adot, aust, brk, minor, pq, sq, rq, _cut, kwh = doc[machine]
        assert pot - down == raw_example.PBT_MIN[machine]
        assert (adot, aust, brk, minor, pq, sq, rq, kwh) == (
            t["adot"], t["aust"], t["breakdown"], t["minor"], t["pq"], t["sq"], t["rq"], t["kwh"]
        )  # fmt: skip


def test_every_quoted_machine_and_line_number_is_what_the_catalog_computes() -> None:
    c = components_from_doc()
    # the page's rows are checked, and the headline figures are among them
    ids = {r["id"] for r in doc_table("results")}
    assert {"pbt_s", "apt_s", "gq", "availability", "effectiveness", "quality", "oee"} <= ids
    assert check_results(c) == 5 * len(ids)
    # A x E x Q is OEE, in both views
    k = catalog.evaluate(c)
    for a, e, q, oee in (("availability", "effectiveness", "quality", "oee"),
                         ("availability_tpm", "performance_tpm", "quality_tpm", "oee_tpm")):  # fmt: skip
        np.testing.assert_allclose(k[a].value * k[e].value * k[q].value, k[oee].value, rtol=1e-12)


def _raw_samples_csv(path: Path) -> None:
    """The raw example's line protocol as a ``zhizao export`` CSV (what ``kpi compute`` reads)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["timestamp", "asset", "signal", "value"])
        for line in raw_example.line_protocol():
            head, field_set, ts = line.rsplit(" ", 2)
            measurement, *pairs = head.split(",")
            tags = dict(p.split("=", 1) for p in pairs)
            field, value = field_set.split("=", 1)
            asset = "/".join(tags[k] for k in ("enterprise", "site", "area", "line", "machine"))
            signal = f"meter:{tags['meter']}" if "meter" in tags else f"{measurement}.{field}"
            out.writerow([ts, asset, signal, value.strip('"').removesuffix("i")])


def test_the_engine_gives_the_page_numbers_from_raw_samples(tmp_path: Path) -> None:
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(raw_example.SITE_MODEL), encoding="utf-8")
    _raw_samples_csv(tmp_path / "samples.csv")
    site = load_site(site_file)
    # the raw example's states change only at its plan, with breaks longer than a gap an hour's
    # heartbeat allows: trust a state all day (the page's rule on heartbeat_s)
    cfg = parse_model(KpiConfig, {"sites": [str(site_file)], "heartbeat_s": 86400})
    data, notes = load_csv(tmp_path / "samples.csv", site, cfg)
    assert notes == []
    start, end = raw_example.at_minute(0), raw_example.at_minute(24 * 60)
    result = SiteComputer(site, cfg).compute(data, "range", start, end, clip_start=True)
    assert result.machine == ["M1", "M2", "M3"]
    assert check_results(result.components, skip=NOT_IN_RAW_SAMPLES) > 0


def test_every_quoted_plant_number_is_what_the_green_functions_compute() -> None:
    inputs = {r["input"]: r["value"] for r in doc_table("plant-inputs")}
    lib = CoefficientLibrary.load()
    conversion = lib.conversion(inputs["conversion_set"])
    media = ("electricity", "natural_gas", "diesel")
    quantities = {m: float(inputs[m]) for m in media}
    factors = {m: lib.factor(inputs[f"factor_{m}"]) for m in media}
    energy = comprehensive_energy_kgce(quantities, conversion)
    emissions = co2_kg(quantities, list(factors.values()))
    good_parts = float(components_from_doc().total().gq[0])
    va_10k = (
        value_added_cny(
            good_parts * float(inputs["output_value_per_good_part"]),
            float(inputs["intermediate_input"]),
            float(inputs["vat_payable"]),
        )
        / 10_000
    )
    tce = energy.kgce / 1000
    comparable = tce / float(comparable_value_added(va_10k, float(inputs["price_index"])))
    decline = intensity_decline(comparable, float(inputs["base_intensity"]))
    official = intensity_decline(
        comparable, float(inputs["base_intensity"]), statistical_rounding=True
    )
    waste = solid_waste_utilization(
        float(inputs["waste_utilized"]),
        float(inputs["waste_generated"]),
        float(inputs["waste_prior_stock_utilized"]),
    )
    computed: dict[str, float | str] = {
        **{f"{m}_coefficient": conversion.coefficients[m].value for m in media},
        **{f"{m}_factor": factors[m].value for m in media},
        **{f"{m}_kgce": energy.by_medium_kgce[m] for m in media},
        "kgce": energy.kgce,
        "tce": tce,
        "kgce_per_good": energy.kgce / good_parts,
        "value_added": va_10k,
        "energy_intensity_current": tce / va_10k,
        "energy_intensity_comparable": comparable,
        "energy_intensity_statistical_rounding": official.intensity_t,
        "decline": decline.percent,
        "decline_statistical_rounding": official.percent,
        "kgco2": emissions.kgco2,
        "solid_waste_utilization": 100 * waste.rate,
        "solid_waste_alert": "yes" if waste.alert else "no",
    }
    rows = {r["id"]: r["value"] for r in doc_table("plant-results")}
    assert set(rows) == set(computed), "the plant-results table's ids changed"
    for rid, quoted in rows.items():
        value = computed[rid]
        if isinstance(value, str):
            assert quoted == value, f"{rid}: the page says {quoted}, the code {value}"
        else:
            assert_quoted(quoted, value, rid)


def _quoted_numbers() -> set[float]:
    tables = [doc_table(n) for n in ("machines", "results", "plant-inputs", "plant-results")]
    out: set[float] = set()
    for rows in tables:
        for row in rows:
            out |= {float(c) for c in row.values() if re.fullmatch(r"-?\d+(\.\d+)?", c)}
    return out


def test_the_prose_quotes_only_numbers_of_the_checked_tables() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## 10. Worked example") :]
    prose = re.sub(
        r"<!-- worked-example:(\S+) -->.*?<!-- /worked-example:\1 -->", "", section, flags=re.S
    )
    precise = [n.replace(",", "") for n in re.findall(r"\d[\d,]*\.\d{3,}", prose)]
    assert len(precise) > 10
    quoted = _quoted_numbers()
    stray = [n for n in precise if float(n) not in quoted]
    assert stray == [], (
        f"numbers in the worked example's prose that no checked table holds: {stray}"
    )


@pytest.mark.parametrize("name", ["machines", "results", "plant-inputs", "plant-results"])
def test_the_tables_are_there(name: str) -> None:
    assert len(doc_table(name)) >= 3
