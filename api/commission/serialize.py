"""JSON-ready views of the indicator table (shared by the API, the exports and the portal)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from analytics.indicators import (
    INDICATORS,
    IndicatorRow,
    IndicatorTable,
    get_indicator,
    rank_factories,
)
from api.commission.panel import PanelInputs, SiteInfo

__all__ = ["definitions", "finite", "flat_row", "ranking_json", "row_json", "table_json"]


def finite(obj: Any) -> Any:
    """Numbers that JSON and spreadsheets can hold: NaN and infinities become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def row_json(r: IndicatorRow) -> dict[str, Any]:
    return {
        "level": r.level,
        "group": r.group,
        "indicator": r.indicator,
        "seed_number": r.seed_number,
        "label_en": r.label_en,
        "label_zh": r.label_zh,
        "unit": r.unit,
        "kind": r.kind,
        "variant": r.variant,
        "value": finite(r.value),
        "reason": r.reason,
        "complete": r.coverage.complete,
        "flags": list(r.flags),
        "coverage": {
            "factories": r.coverage.factories,
            "reported": r.coverage.reported,
            "missing": list(r.coverage.missing),
            "base_year": r.coverage.base_year,
        },
        "targets": [
            {
                "year": t.year,
                "value": finite(t.value),
                "upper": finite(t.upper),
                "text": t.text,
                "source": t.source,
                "city_set": t.city_set,
                "met": t.met,
            }
            for t in r.targets
        ],
        "details": finite(dict(r.details)),
    }


def definitions() -> list[dict[str, Any]]:
    return [
        {
            "id": d.id,
            "seed_number": d.seed_number,
            "label_en": d.label_en,
            "label_zh": d.label_zh,
            "unit": d.unit,
            "kind": d.kind,
            "aggregation": d.aggregation,
            "variant": d.variant,
            "definition": d.definition,
            "inputs": list(d.inputs),
        }
        for d in INDICATORS
    ]


def table_json(
    table: IndicatorTable, inputs: PanelInputs, config_revision: int | None
) -> dict[str, Any]:
    return {
        "cohort": table.cohort_id,
        "cohort_name": table.cohort_name,
        "year": table.year,
        "base_year": table.base_year,
        "config": {
            "source": table.config_source,
            "version": table.config_version,
            "revision": config_revision,
        },
        "statistical_rounding": table.statistical_rounding,
        "energy_conversion": finite(dict(table.energy_conversion)),
        "rows": [row_json(r) for r in table.rows],
        "green_factory": {
            "rule_set": table.green.rule_set,
            "title": table.green.title,
            "factories": finite(table.green.rows()),
        },
        "unplaced_sites": list(table.unplaced_sites),
        "inputs": [
            {
                "site": rev.site,
                "period": rev.period,
                "revision": rev.revision,
                "author": rev.author,
                "created_at": rev.created_at,
                "telemetry_days": inputs.telemetry_days.get((rev.site, int(rev.period[:4]))),
                "metered": finite(dict(inputs.metered.get((rev.site, int(rev.period[:4])), {}))),
            }
            for rev in inputs.revisions
        ],
    }


def flat_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One indicator row (``row_json``) with scalar fields only, for tables that cannot unnest
    (Grafana's JSON datasource, spreadsheets): ``target_<year>`` and ``met_<year>`` per target
    year, coverage as counts and a share, lists joined with ", "."""
    cov = row["coverage"]
    out: dict[str, Any] = {
        k: row[k]
        for k in ("level", "group", "indicator", "seed_number", "label_en", "label_zh", "unit")
    }
    out |= {
        "kind": row["kind"],
        "variant": row["variant"],
        "value": row["value"],
        "complete": row["complete"],
        "factories": cov["factories"],
        "reported": cov["reported"],
        "coverage": cov["reported"] / cov["factories"] if cov["factories"] else None,
        "missing": ", ".join(cov["missing"]),
        "base_year": cov["base_year"],
        "flags": ", ".join(row["flags"]),
        "reason": row["reason"],
    }
    for t in row["targets"]:
        out[f"target_{t['year']}"] = t["value"]
        out[f"target_{t['year']}_text"] = t["text"]
        out[f"met_{t['year']}"] = t["met"]
    return out


def ranking_json(
    factory_rows: Sequence[IndicatorRow], sites: Mapping[str, SiteInfo], indicator_id: str
) -> dict[str, Any]:
    """The cohort's factories ranked by one indicator, best first (see ``rank_factories``)."""
    defn = get_indicator(indicator_id)
    rows = []
    for rank, r in rank_factories(factory_rows, indicator_id):
        info = sites.get(r.group)
        rows.append(
            {
                "rank": rank,
                "site": r.group,
                "name": info.name if info else r.group,
                "district": info.district if info else "",
                "value": finite(r.value),
                "unit": r.unit,
                "complete": r.coverage.complete,
                "flags": ", ".join(r.flags),
                "reason": r.reason,
            }
        )
    return {
        "indicator": defn.id,
        "label_en": defn.label_en,
        "label_zh": defn.label_zh,
        "unit": defn.unit,
        "direction": defn.direction,
        "rows": rows,
    }
