"""ISO 22400-2 KPIs, the Nakajima/TPM view with the six big losses, and CNC utilization.

Every formula is the KPI catalog's (``analytics.catalog``); these are its views by family.
Everything is computed from ``Components`` columns, so the same function serves a machine, a line
or a whole city: roll the components up with ``Components.sum_by`` first, then call these
(sum of numerators over sum of denominators, DOMAIN rule 0).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from analytics import catalog
from analytics.components import Components
from analytics.results import Kpi

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
EFFECTIVENESS_FLAG_ABOVE = catalog.DEFAULT_LIMITS["effectiveness_flag_above"]


def _view(
    c: Components, view: str, effectiveness_flag_above: float = EFFECTIVENESS_FLAG_ABOVE
) -> dict[str, Kpi]:
    ids = [k.id for k in catalog.CATALOG if k.view == view]
    return catalog.evaluate(c, ids, limits={"effectiveness_flag_above": effectiveness_flag_above})


def iso22400_kpis(
    c: Components, *, effectiveness_flag_above: float = EFFECTIVENESS_FLAG_ABOVE
) -> dict[str, Kpi]:
    """The KPIs of DOMAIN section 2 (ISO 22400 view: minor stops are availability loss)."""
    return _view(c, "iso22400", effectiveness_flag_above)


def six_big_losses_s(c: Components) -> dict[str, F64]:
    """The Nakajima losses in seconds. With the valuable time PRI x GQ they add up to PBT.

    ``idle_no_order_s`` (ADOT) and ``no_data_s`` are not among the six but are availability losses
    by default (DOMAIN section 2); they are reported next to them so the sum closes.
    """
    return {k: v.value for k, v in _view(c, "losses").items()}


def nakajima_kpis(c: Components) -> dict[str, Kpi]:
    """TPM view: minor stops (shorter than the threshold) count as speed loss, same OEE."""
    return _view(c, "tpm")


def cnc_utilization(c: Components) -> dict[str, Kpi]:
    """Every CNC utilization variant of DOMAIN section 4, keyed by its label (``cutting/PBT``)."""
    return {k.label: k for k in _view(c, "utilization").values()}


def specific_energy_kpis(c: Components) -> dict[str, Kpi]:
    """Energy per good part (the Chinese unit-product convention) and per produced part."""
    return _view(c, "energy")


def all_kpis(
    c: Components, *, effectiveness_flag_above: float = EFFECTIVENESS_FLAG_ABOVE
) -> dict[str, Kpi]:
    """Every KPI of the catalog except the loss totals, keyed by catalog id."""
    ids = [k.id for k in catalog.CATALOG if k.view != "losses"]
    return catalog.evaluate(c, ids, limits={"effectiveness_flag_above": effectiveness_flag_above})


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
