"""Stored components that keep "absent is not zero" exact (parts counted while a machine's energy
meter has data) and the output value (good parts x unit_value_cny) behind energy per 10k CNY."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from analytics import catalog
from analytics.compute import SiteComputer, SiteData
from analytics.config import KpiConfig
from analytics.machine import MachineSignals, Signal
from analytics.segments import SegmentStore, compute_segments, derive, segments_in
from tests.analytics.helpers import at
from tests.analytics.test_offline_cli import SITE
from zhizao.site import SiteModel

S = 10**9
VALUE = {"P-100": 1200.0, "P-200": 800.0}  # P-300 has no unit value


def _site() -> SiteModel:
    site: dict[str, Any] = copy.deepcopy(SITE)
    site["products"] = [
        {"id": "P-100", "ideal_cycle_s": 120, "unit_value_cny": VALUE["P-100"]},
        {"id": "P-200", "ideal_cycle_s": 60, "unit_value_cny": VALUE["P-200"]},
        {"id": "P-300", "ideal_cycle_s": 60},
    ]
    site["areas"][0]["lines"][0]["machines"] = [{"id": f"M{i}", "type": "cnc"} for i in (1, 2, 3)]
    site["meters"] = [
        {"id": f"em-{m}", "medium": "electricity", "unit": "kWh", "signal": "energy_kwh",
         "asset": f"machining/l1/{m}"}
        for m in ("M1", "M3")
    ]  # fmt: skip
    return SiteModel.model_validate(site)


def _cfg() -> KpiConfig:
    return KpiConfig.model_validate({"sites": ["site.yaml"], "heartbeat_s": 86400})


def _machine(
    products: list[tuple[str, str]], *, meter_from: str | None, scrap_every: int = 0
) -> MachineSignals:
    """IN_CYCLE 06:00-10:00; a part every 2 minutes (each ``scrap_every``-th one scrap); the
    product changes at the given times; a meter reading every minute from ``meter_from`` on."""
    t = np.arange(at("06:00"), at("10:00"), 120 * S, dtype=np.int64)
    n = np.arange(len(t), dtype=float)
    signals: dict[str, Signal] = {"parts_total": Signal(t, n)}
    if scrap_every:
        signals["parts_scrap"] = Signal(t, np.floor(n / scrap_every))
    signals["product"] = Signal(
        np.array([at(hhmm) for hhmm, _ in products], np.int64),
        np.array([p for _, p in products], object),
    )
    if meter_from is not None:
        m = np.arange(at(meter_from), at("10:00") + 1, 60 * S, dtype=np.int64)
        signals["energy_kwh"] = Signal(m, 5000.0 + 0.5 * np.arange(len(m), dtype=float))
    states = Signal(
        np.array([at("06:00"), at("10:00")], np.int64), np.array(["IN_CYCLE", "IDLE"], object)
    )
    return MachineSignals(signals, {"state": states})


def _data() -> SiteData:
    return SiteData(
        {
            # metered throughout; P-100 then P-200 from 08:00; every 10th part scrap
            "M1": _machine([("06:00", "P-100"), ("08:00", "P-200")], meter_from="05:50",
                           scrap_every=10),
            # no meter in the site model, no meter data
            "M2": _machine([("06:00", "P-100")], meter_from=None),
            # its meter starts reporting at 07:00; P-300 (no unit value) from 09:00
            "M3": _machine([("06:00", "P-200"), ("09:00", "P-300")], meter_from="07:00"),
        }
    )  # fmt: skip


def _by_machine(computer: SiteComputer, kind: str = "range") -> dict[str, dict[str, float]]:
    res = computer.compute(_data(), kind, at("00:00"), at("23:00"))
    assert len(res.machine) == 3
    return {m: res.components.row(i) for i, m in enumerate(res.machine)}


def _parts_at(hhmm_from: str, hhmm_to: str) -> int:
    """Parts counted in [from, to) by ``_machine`` (one per 2 minutes, the first at 06:00 is the
    counter's first reading and counts none)."""
    t = np.arange(at("06:00"), at("10:00"), 120 * S, dtype=np.int64)[1:]
    return int(np.count_nonzero((t >= at(hhmm_from)) & (t < at(hhmm_to))))


def test_metered_parts_and_output_value_per_machine() -> None:
    rows = _by_machine(SiteComputer(_site(), _cfg()))
    m1, m2, m3 = rows["M1"], rows["M2"], rows["M3"]
    # fully metered: the metered counts are the counts, so energy per part is unchanged
    assert m1["pq"] == 119 and m1["pq_metered"] == m1["pq"] and m1["gq_metered"] == m1["gq"]
    assert m1["gq"] == 119 - 11
    # good parts of each product times its value (a part counted at a change is the old one's)
    good_p100 = _parts_at("06:00", "08:00") + 1 - 6  # scrap counted at 20, 40, ... 110 parts
    value = good_p100 * VALUE["P-100"] + (m1["gq"] - good_p100) * VALUE["P-200"]
    assert m1["output_value_cny"] == pytest.approx(value)
    assert m1["output_value_metered_cny"] == m1["output_value_cny"] and m1["gq_valued"] == m1["gq"]
    # no meter: no metered parts at all (not "all parts at 0 kWh")
    assert m2["pq"] == 119 and m2["pq_metered"] == 0 and m2["gq_metered"] == 0
    assert m2["kwh"] == 0 and m2["output_value_metered_cny"] == 0
    assert m2["output_value_cny"] == 119 * VALUE["P-100"]
    # a meter from 07:00: only the parts counted from its first reading on, whose energy it has
    assert m3["pq_metered"] == _parts_at("07:00", "10:00")
    assert m3["gq_metered"] == m3["pq_metered"]
    assert m3["kwh"] == pytest.approx(0.5 * 180)
    # P-300 has no unit value: its good parts are not valued (absent, not 0 CNY each)
    p300 = _parts_at("09:00", "10:00") - 1  # the part counted at 09:00 is still P-200
    assert m3["gq_valued"] == 119 - p300
    assert m3["output_value_cny"] == pytest.approx((119 - p300) * VALUE["P-200"])
    assert m3["output_value_metered_cny"] == pytest.approx(
        (_parts_at("07:00", "09:00") + 1) * VALUE["P-200"]
    )


def test_catalog_energy_per_part_is_over_the_metered_parts_with_flags() -> None:
    computer = SiteComputer(_site(), _cfg())
    res = computer.compute(_data(), "range", at("00:00"), at("23:00"))
    c = res.components
    kpis = catalog.evaluate(c, ["kwh_per_good", "kwh_per_part", "kgce_per_10k_cny"])
    i = {m: res.machine.index(m) for m in ("M1", "M2", "M3")}
    row = {m: c.row(j) for m, j in i.items()}
    # the fully metered machine: exactly what it was (kWh / GQ), no flag
    assert kpis["kwh_per_good"].value[i["M1"]] == row["M1"]["kwh"] / row["M1"]["gq"]
    assert not kpis["kwh_per_good"].flags_at(i["M1"])
    # no meter: null, not 0, and the reasons say there is no meter data
    assert np.isnan(kpis["kwh_per_good"].value[i["M2"]])
    codes = [f["code"] for f in kpis["kwh_per_good"].flags_at(i["M2"])]
    assert codes == ["no_denominator", "no_meter"]
    assert all("meter" in f["reason"] for f in kpis["kwh_per_good"].flags_at(i["M2"]))
    # a meter started late: over the parts it metered, flagged
    assert kpis["kwh_per_part"].value[i["M3"]] == row["M3"]["kwh"] / row["M3"]["pq_metered"]
    assert [f["code"] for f in kpis["kwh_per_part"].flags_at(i["M3"])] == ["no_meter"]
    # the line: the metered machines' energy over their own good parts, never over all parts
    line = catalog.evaluate(c.total(), ["kwh_per_good", "kgce_per_10k_cny", "kgco2_per_10k_cny"])
    metered_good = row["M1"]["gq"] + row["M3"]["gq_metered"]
    assert line["kwh_per_good"].value[0] == pytest.approx(
        (row["M1"]["kwh"] + row["M3"]["kwh"]) / metered_good
    )
    all_good = sum(r["gq"] for r in row.values())
    assert line["kwh_per_good"].value[0] != pytest.approx(c.kwh.sum() / all_good)
    # per 10k CNY of output value: the metered value, scale 10,000, the unvalued parts flagged
    value = row["M1"]["output_value_metered_cny"] + row["M3"]["output_value_metered_cny"]
    want = (row["M1"]["kgce"] + row["M3"]["kgce"]) / value * 10_000
    assert line["kgce_per_10k_cny"].value[0] == pytest.approx(want)
    assert {f["code"] for f in line["kgce_per_10k_cny"].flags_at(0)} == {
        "no_meter",
        "no_unit_value",
    }
    assert kpis["kgce_per_10k_cny"].value[i["M1"]] == pytest.approx(
        row["M1"]["kgce"] / row["M1"]["output_value_cny"] * 10_000
    )
    assert np.isnan(kpis["kgce_per_10k_cny"].value[i["M2"]])


def test_report_rollup_equals_the_stored_components_sum_over_sum() -> None:
    computer = SiteComputer(_site(), _cfg())
    res = computer.compute(_data(), "range", at("00:00"), at("23:00"))
    report: dict[str, Any] = computer.report(res)
    (line,) = report["rollups"]["line"]
    stored = catalog.evaluate(res.components.total(), ["kwh_per_good"])
    assert line["kpis"]["kwh_per_good"]["value"] == pytest.approx(
        float(stored["kwh_per_good"].value[0])
    )


def test_windows_are_sums_of_segments_for_the_new_components() -> None:
    computer = SiteComputer(_site(), _cfg())
    lo, hi = at("00:00"), at("23:00")
    whole = computer.compute(_data(), "hour", lo, hi)
    s, e = segments_in(computer, lo, hi)
    e = np.minimum(e, hi)
    rows, _ = compute_segments(computer, _data(), s, e, hi)
    store = SegmentStore()
    store.put(rows)
    derived, _ = derive(computer, store, "hour", lo, hi)
    key = {
        (m, int(t)): i
        for i, (m, t) in enumerate(zip(derived.machine, derived.start_ns, strict=True))
    }
    names = ("pq_metered", "gq_metered", "gq_valued", "output_value_cny",
             "output_value_metered_cny")  # fmt: skip
    nonzero = 0
    for i, (m, t) in enumerate(zip(whole.machine, whole.start_ns, strict=True)):
        j = key[(m, int(t))]
        for name in names:
            want = float(whole.components.column(name)[i])
            assert float(derived.components.column(name)[j]) == pytest.approx(want), (m, t, name)
            nonzero += want != 0
    assert nonzero > 20
