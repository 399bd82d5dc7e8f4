"""Analytics: pure numpy KPI functions and the KPI engine.

For readers of stored components (the API, reports): sum the ``kpi_*`` fields over any set of
machines and windows, then ``kpis_from_components`` gives every labelled KPI from those sums.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from analytics.components import COMPONENT_FIELDS, Components
from analytics.oee import report_rows

__all__ = ["COMPONENT_FIELDS", "Components", "kpis_from_components"]


def kpis_from_components(rows: Sequence[Mapping[str, float]]) -> list[dict[str, object]]:
    """One report (components, labelled KPIs, Nakajima losses) per row of summed components.

    Keys that are not components (tags, ``time``) are ignored; missing components count as 0.
    """
    return report_rows(Components.from_rows(rows))
