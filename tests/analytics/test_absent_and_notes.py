"""Issue 14: absent is not zero (no meter, no product: null with a note, the line over what can be
computed, with its coverage), unknown state codes reported beside a signal that maps, and
counters that never move while the machine is in cycle."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from analytics.compute import SiteComputer, SiteData
from analytics.config import KpiConfig
from analytics.machine import MachineSignals, Signal
from tests.analytics.helpers import at
from tests.analytics.test_offline_cli import SITE
from zhizao.site import SiteModel

S = 10**9


def _site(machines: int, **type_cfg: Any) -> SiteModel:
    site = copy.deepcopy(SITE)
    site["products"] = [{"id": "P-100", "ideal_cycle_s": 120}, {"id": "P-200", "ideal_cycle_s": 60}]
    site["areas"][0]["lines"][0]["machines"] = [
        {"id": f"M{i}", "type": "cnc"} for i in range(1, machines + 1)
    ]
    if type_cfg:
        site["machine_types"] = {"cnc": type_cfg}
    return SiteModel.model_validate(site)


def _running(product: str | None, *, parts: bool = True, meter: bool = False) -> MachineSignals:
    """IN_CYCLE 06:00-10:00, then IDLE; a part every 2 minutes while running."""
    t = np.arange(at("06:00"), at("10:00"), 120 * S, dtype=np.int64)
    signals: dict[str, Signal] = {
        "parts_total": Signal(t, np.arange(len(t), dtype=float) if parts else np.full(len(t), 5.0))
    }
    if product:
        signals["product"] = Signal(t[:1], np.array([product], object))
    if meter:
        signals["energy_kwh"] = Signal(t, 1000.0 + np.arange(len(t), dtype=float))
    states = Signal(
        np.array([at("06:00"), at("10:00")], np.int64), np.array(["IN_CYCLE", "IDLE"], object)
    )
    return MachineSignals(signals, {"state": states})


def _cfg(**kw: Any) -> KpiConfig:
    return KpiConfig.model_validate({"sites": ["site.yaml"], "heartbeat_s": 86400, **kw})


def test_no_meter_and_no_product_are_null_with_notes_and_the_line_states_its_coverage() -> None:
    computer = SiteComputer(_site(4), _cfg())
    data = SiteData(
        {
            "M1": _running("P-100", meter=True),
            "M2": _running("P-100"),
            "M3": _running("P-200"),
            "M4": _running(None),  # two products, no product id, no default product
        }
    )
    result = computer.compute(data, "range", at("06:00"), at("22:00"))
    report = computer.report(result)
    rows = {r["machine"]: r for r in report["machines"]}  # type: ignore[attr-defined]
    # a machine with a meter: a number; without one: null with the reason, not 0
    assert rows["M1"]["kpis"]["kwh_per_part"]["value"] == 119 / 119
    for m in ("M2", "M3", "M4"):
        kpi = rows[m]["kpis"]["kwh_per_part"]
        assert kpi["value"] is None and kpi["flags"][0]["code"] == "no_meter"
    # no product: OEE null because of the product, not "no planned busy time"
    oee4 = rows["M4"]["kpis"]["oee"]
    assert oee4["value"] is None and [f["code"] for f in oee4["flags"]] == ["no_product"]
    notes = " | ".join(report["notes"])  # type: ignore[arg-type]
    assert "M4: no product id and no default product" in notes
    assert "machines without an energy meter ['M2', 'M3', 'M4']" in notes
    # the line: OEE over the three machines with a product, the coverage said
    line = report["rollups"]["line"][0]  # type: ignore[index]
    pbt = 16 * 3600 - 3600  # POT minus the two breaks
    want = (2 * 119 * 120 + 119 * 60) / (3 * pbt)
    assert abs(line["kpis"]["oee"]["value"] - want) < 1e-12
    assert line["kpis"]["oee"]["coverage"] == "3/4 machines"
    assert line["coverage"]["with_product"] == 3 and line["coverage"]["machines"] == 4
    assert "coverage: 3/4 machines" in line["coverage"]["text"]
    # energy per part of the line: over the metered machine only
    assert line["kpis"]["kwh_per_part"]["value"] == 1.0
    assert line["kpis"]["kwh_per_part"]["coverage"] == "1/4 machines"
    # time KPIs need no product: availability is over all four machines
    assert line["kpis"]["availability"]["denominator"] == 4 * pbt


def test_unknown_codes_are_reported_even_where_another_state_signal_maps() -> None:
    site = _site(1, profile="opc40502")  # state signals of the profile
    computer = SiteComputer(site, _cfg())
    states = {
        "program_status": Signal(np.array([at("06:00")], np.int64), np.array([1])),
        # an operation mode no CNC map knows, for two hours, then Automatic (neutral)
        "operation_mode": Signal(np.array([at("06:00"), at("08:00")], np.int64), np.array([7, 2])),
    }
    data = SiteData({"M1": MachineSignals({}, states)})
    result = computer.compute(data, "range", at("06:00"), at("22:00"))
    report = computer.report(result)
    notes = " | ".join(report["notes"])  # type: ignore[arg-type]
    assert "unknown state codes ['operation_mode=7']" in notes
    assert report["machines"][0]["unknown_state_s"] == 7200.0  # type: ignore[index]
    # the state still comes from the program status: in cycle, not NO_DATA
    assert result.components.adet_no_data_s[0] == 0.0
    assert result.components.apt_s[0] > 0


def test_counters_that_never_move_in_cycle_get_a_note() -> None:
    site = _site(2)
    data = SiteData({"M1": _running("P-100", parts=False), "M2": _running("P-100")})
    report = SiteComputer(site, _cfg(no_parts_in_cycle_s=3600)).report(
        SiteComputer(site, _cfg(no_parts_in_cycle_s=3600)).compute(
            data, "range", at("06:00"), at("22:00")
        )
    )
    notes = [n for n in report["notes"] if "without a part counted" in n]  # type: ignore[union-attr]
    assert notes == [
        "M1: IN_CYCLE for more than 1 h without a part counted on 2026-03-02: check its part "
        "counters (read: parts_total) and their tag map"
    ]
    # below the configured time: no note
    calm = SiteComputer(site, _cfg(no_parts_in_cycle_s=5 * 3600))
    report = calm.report(calm.compute(data, "range", at("06:00"), at("22:00")))
    assert not [n for n in report["notes"] if "without a part counted" in n]  # type: ignore[union-attr]
