"""Response models (one per purpose), so the OpenAPI document states every response's shape."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "AssetNode",
    "FlagOut",
    "HistoryOut",
    "HistoryRow",
    "KpiDefinitionOut",
    "KpiValue",
    "SiteOut",
    "SiteTree",
    "WindowOut",
]


class FlagOut(BaseModel):
    code: str
    reason: str


class KpiValue(BaseModel):
    id: str = Field(description="catalog id (GET /kpis)")
    label: str
    definition: str
    value: float | None = Field(description="null where the denominator is zero (see flags)")
    unit: str
    numerator: float | None = None
    denominator: float | None = None
    flag: str | None = None
    flags: list[FlagOut] = Field(default_factory=list)


class WindowOut(BaseModel):
    label: str
    start: str = Field(description="ISO 8601 in the site's time zone")
    end: str


class HistoryRow(BaseModel):
    asset: dict[str, str]
    window: WindowOut
    components: dict[str, float] = Field(description="summed components the KPIs come from")
    kpis: dict[str, KpiValue]


class HistoryOut(BaseModel):
    site: str
    level: str
    grouping: str
    timezone: str
    rows: list[HistoryRow]
    query: str = Field(description="the InfluxQL that read the components")


class KpiDefinitionOut(BaseModel):
    id: str
    label: str
    label_zh: str
    definition: str
    unit: str
    view: str
    numerator: list[str]
    denominator: list[str]
    factors: list[dict[str, list[str]]]
    scale: float
    influxql: str
    when_empty: str
    flags: list[FlagOut]
    # machine: over kpi_machine_* components; site: over the plant rows (GET .../plant)
    scope: str = "machine"


class SiteOut(BaseModel):
    enterprise: str
    site: str
    name: str
    district: str
    timezone: str


class AssetNode(BaseModel):
    id: str
    name: str = ""
    level: str
    path: str
    children: list[AssetNode] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)


class SiteTree(SiteOut):
    areas: list[AssetNode]
