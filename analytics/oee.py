"""ISO 22400-2 KPIs, the Nakajima/TPM view with the six big losses, and CNC utilization.

Everything is computed from ``Components`` columns, so the same function serves a machine, a line
or a whole city: roll the components up with ``Components.sum_by`` first, then call these
(sum of numerators over sum of denominators, DOMAIN rule 0).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from analytics.components import Components
from analytics.results import Kpi, safe_ratio

__all__ = [
    "EFFECTIVENESS_FLAG_ABOVE",
    "all_kpis",
    "cnc_utilization",
    "iso22400_kpis",
    "nakajima_kpis",
    "report_rows",
    "six_big_losses_s",
    "specific_energy_kpis",
]

F64 = NDArray[np.float64]
# ISO 22400 allows E > 1; above this it almost certainly means a wrong ideal cycle time
EFFECTIVENESS_FLAG_ABOVE = 1.05


def iso22400_kpis(
    c: Components, *, effectiveness_flag_above: float = EFFECTIVENESS_FLAG_ABOVE
) -> dict[str, Kpi]:
    """The KPIs of DOMAIN section 2 (ISO 22400 view: minor stops are availability loss)."""
    aupt = c.apt_s + c.aust_s
    aubt = aupt + c.adet_s
    availability = Kpi.ratio("availability", "APT/PBT", "APT / PBT", c.apt_s, c.pbt_s)
    effectiveness = Kpi.ratio(
        "effectiveness", "PRI*PQ/APT", "sum(PRI x PQ) / APT (not capped)", c.pri_pq_s, c.apt_s
    )
    effectiveness = effectiveness.flagged(
        np.nan_to_num(effectiveness.value) > effectiveness_flag_above,
        f"effectiveness above {effectiveness_flag_above}: check the ideal cycle time (PRI)",
    )
    quality = Kpi.ratio("quality", "GQ/PQ", "GQ / PQ", c.gq, c.pq)
    oee = Kpi.ratio("oee", "OEE=PRI*GQ/PBT", "sum(PRI x GQ) / PBT", c.pri_gq_s, c.pbt_s)
    if effectiveness.flag is not None:
        oee = oee.flagged(effectiveness.flag, effectiveness.flag_reason)
    e_times_q = safe_ratio(c.pri_gq_s, c.apt_s)  # E x Q with PRI-weighted quality
    nee_value = safe_ratio(aupt, c.pbt_s) * e_times_q
    return {
        "availability": availability,
        "effectiveness": effectiveness,
        "quality": quality,
        # equal to GQ/PQ for one product; with several PRIs it makes A x E x Q == OEE exactly
        "quality_pri_weighted": Kpi.ratio(
            "quality_pri_weighted",
            "PRI*GQ/PRI*PQ",
            "sum(PRI x GQ) / sum(PRI x PQ)",
            c.pri_gq_s,
            c.pri_pq_s,
        ),
        "oee": oee,
        "nee": Kpi(
            "nee",
            "NEE=AUPT/PBT*E*Q",
            "AUPT / PBT x sum(PRI x GQ) / APT (= AUPT/PBT x E x Q; setup not a loss)",
            nee_value,
        ),
        "utilization_efficiency": Kpi.ratio(
            "utilization_efficiency", "APT/AUBT", "APT / (APT + AUST + ADET)", c.apt_s, aubt
        ),
        "allocation_efficiency": Kpi.ratio(
            "allocation_efficiency", "AUBT/PBT", "(APT + AUST + ADET) / PBT", aubt, c.pbt_s
        ),
        "technical_efficiency": Kpi.ratio(
            "technical_efficiency",
            "APT/(APT+ADET)",
            "APT / (APT + ADET)",
            c.apt_s,
            c.apt_s + c.adet_s,
        ),
        "setup_rate": Kpi.ratio("setup_rate", "AUST/AUPT", "AUST / (APT + AUST)", c.aust_s, aupt),
        "throughput_rate": Kpi.ratio(
            "throughput_rate",
            "PQ/AOET",
            "PQ / AOET, items per hour",
            c.pq,
            c.aoet_s,
            unit="1/h",
            scale=3600.0,
        ),
        "scrap_ratio": Kpi.ratio("scrap_ratio", "SQ/PQ", "SQ / PQ", c.sq, c.pq),
        "rework_ratio": Kpi.ratio("rework_ratio", "RQ/PQ", "RQ / PQ", c.rq, c.pq),
        "no_data_share": Kpi.ratio(
            "no_data_share",
            "NO_DATA/PBT",
            "time without data inside PBT (counted as ADET) / PBT",
            c.adet_no_data_s,
            c.pbt_s,
        ),
    }


def six_big_losses_s(c: Components) -> dict[str, F64]:
    """The Nakajima losses in seconds. With the valuable time PRI x GQ they add up to PBT.

    ``idle_no_order_s`` (ADOT) and ``no_data_s`` are not among the six but are availability losses
    by default (DOMAIN section 2); they are reported next to them so the sum closes.
    """
    breakdown = c.adet_s - c.adet_minor_s - c.adet_no_data_s
    quality_loss = c.pri_pq_s - c.pri_gq_s
    return {
        "breakdown_s": breakdown,
        "setup_adjustment_s": c.aust_s.copy(),
        "idling_minor_stops_s": c.adet_minor_s.copy(),
        # negative when the machine beats its ideal cycle time (E > 1): shown, not hidden
        "reduced_speed_s": c.apt_s - c.pri_pq_s,
        "process_defects_s": quality_loss - c.pri_startup_s,
        "startup_yield_s": c.pri_startup_s.copy(),
        "idle_no_order_s": c.adot_s.copy(),
        "no_data_s": c.adet_no_data_s.copy(),
    }


def nakajima_kpis(c: Components) -> dict[str, Kpi]:
    """TPM view: minor stops (shorter than the threshold) count as speed loss, same OEE."""
    operating = c.apt_s + c.adet_minor_s
    return {
        "availability_tpm": Kpi.ratio(
            "availability_tpm",
            "(APT+minor)/PBT",
            "(APT + minor stops) / PBT (Nakajima: minor stops are speed loss)",
            operating,
            c.pbt_s,
        ),
        "performance_tpm": Kpi.ratio(
            "performance_tpm",
            "PRI*PQ/(APT+minor)",
            "sum(PRI x PQ) / (APT + minor stops)",
            c.pri_pq_s,
            operating,
        ),
        "quality_tpm": Kpi.ratio("quality_tpm", "GQ/PQ", "GQ / PQ", c.gq, c.pq),
        "oee_tpm": Kpi.ratio(
            "oee_tpm", "OEE=PRI*GQ/PBT", "sum(PRI x GQ) / PBT", c.pri_gq_s, c.pbt_s
        ),
    }


def cnc_utilization(c: Components) -> dict[str, Kpi]:
    """Every CNC utilization variant of DOMAIN section 4, each labelled numerator/denominator."""
    spec = (
        ("in_cycle/PBT", c.apt_s, c.pbt_s, "IN_CYCLE inside PBT / PBT"),
        ("in_cycle/POT", c.in_cycle_pot_s, c.pot_s, "IN_CYCLE inside POT / POT"),
        ("in_cycle/calendar", c.in_cycle_s, c.calendar_s, "IN_CYCLE / calendar time"),
        ("cutting/PBT", c.cutting_pbt_s, c.pbt_s, "cutting inside PBT / PBT"),
        ("cutting/POT", c.cutting_pot_s, c.pot_s, "cutting inside POT / POT"),
        ("cutting/calendar", c.cutting_s, c.calendar_s, "cutting / calendar time"),
        ("cutting/in_cycle", c.cutting_s, c.in_cycle_s, "cutting / IN_CYCLE (calendar)"),
    )
    return {
        label: Kpi.ratio("utilization " + label, label, definition, num, den)
        for label, num, den, definition in spec
    }


def specific_energy_kpis(c: Components) -> dict[str, Kpi]:
    """Energy per good part (the Chinese unit-product convention) and per produced part."""
    return {
        "kwh_per_good": Kpi.ratio(
            "kwh_per_good", "kWh/GQ", "electricity / good quantity", c.kwh, c.gq, unit="kWh"
        ),
        "kwh_per_part": Kpi.ratio(
            "kwh_per_part", "kWh/PQ", "electricity / produced quantity", c.kwh, c.pq, unit="kWh"
        ),
        "kgce_per_good": Kpi.ratio(
            "kgce_per_good",
            "kgce/GQ",
            "comprehensive energy (GB/T 2589) / good quantity",
            c.kgce,
            c.gq,
            unit="kgce",
        ),
        "kgce_per_part": Kpi.ratio(
            "kgce_per_part",
            "kgce/PQ",
            "comprehensive energy (GB/T 2589) / produced quantity",
            c.kgce,
            c.pq,
            unit="kgce",
        ),
        "kgco2_per_good": Kpi.ratio(
            "kgco2_per_good", "kgCO2/GQ", "emissions / good quantity", c.kgco2, c.gq, unit="kgCO2"
        ),
    }


def all_kpis(
    c: Components, *, effectiveness_flag_above: float = EFFECTIVENESS_FLAG_ABOVE
) -> dict[str, Kpi]:
    """Every component-based KPI (ISO 22400, TPM, CNC utilization, specific energy)."""
    out: dict[str, Kpi] = {}
    out.update(iso22400_kpis(c, effectiveness_flag_above=effectiveness_flag_above))
    out.update(nakajima_kpis(c))
    out.update({f"utilization {k}": v for k, v in cnc_utilization(c).items()})
    out.update(specific_energy_kpis(c))
    return out


def report_rows(
    c: Components, *, effectiveness_flag_above: float = EFFECTIVENESS_FLAG_ABOVE
) -> list[dict[str, object]]:
    """Per row: components, labelled KPIs and the six big losses, ready for JSON."""
    kpis = all_kpis(c, effectiveness_flag_above=effectiveness_flag_above)
    losses = six_big_losses_s(c)
    rows: list[dict[str, object]] = []
    for i in range(len(c)):
        rows.append(
            {
                "components": c.row(i),
                "kpis": {name: k.at(i) for name, k in kpis.items()},
                "nakajima_losses_s": {name: float(v[i]) for name, v in losses.items()},
            }
        )
    return rows
