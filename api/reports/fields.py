"""The report field catalog: every figure a factory reports, with its unit and rules.

One frozen ``ReportField`` per field. Validation, the XLSX template, the import, the API's
``GET /report-fields`` and the docs field table (``markdown_table``) are all derived from
``FIELDS``; ``CATALOG_VERSION`` is a short hash of everything a template depends on, so a filled
template from another catalog is refused instead of being read into the wrong columns.

Flow fields (``flow=True``) are amounts over the period: twelve months should add up to the
year. The others are levels (an index, an average, a count at year end, a park name).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "AT_MOST",
    "CATALOG_VERSION",
    "FIELDS",
    "FIELDS_BY_ID",
    "KINDS",
    "ONE_OF_REQUIRED",
    "UNIT_ALIASES",
    "Kind",
    "ReportField",
    "fields_for",
    "markdown_table",
]

Kind = Literal["monthly", "annual"]
KINDS: tuple[Kind, ...] = ("monthly", "annual")
BOTH: frozenset[Kind] = frozenset(KINDS)
ANNUAL: frozenset[Kind] = frozenset({"annual"})
NONE: frozenset[Kind] = frozenset()

# what a client may write for a catalog unit (compared case-insensitively, spaces ignored)
UNIT_ALIASES: dict[str, frozenset[str]] = {
    "10k CNY": frozenset({"10kcny", "万元", "10,000cny", "10000cny"}),
    "persons": frozenset({"persons", "person", "人"}),
    "km2": frozenset({"km2", "km²", "平方公里", "平方千米"}),
    "t": frozenset({"t", "吨"}),
    "m3": frozenset({"m3", "m³", "立方米"}),
    "kWh": frozenset({"kwh", "千瓦时", "度"}),
    "kg": frozenset({"kg", "千克", "公斤"}),
    "MJ": frozenset({"mj", "兆焦"}),
    "count": frozenset({"count", "个", "台", "件", "项", "台套"}),
    "1": frozenset({"1", "", "ratio", "index"}),
    "text": frozenset({"text", ""}),
}


@dataclass(frozen=True, slots=True)
class ReportField:
    """One reported figure.

    ``minimum`` is inclusive unless ``exclusive_minimum``; ``integer`` fields take whole numbers
    only; ``text`` fields take a string (everything else is a number in ``unit``)."""

    id: str
    label_en: str
    label_zh: str
    unit: str
    kinds: frozenset[Kind]
    required: frozenset[Kind] = NONE
    minimum: float | None = 0.0
    exclusive_minimum: bool = False
    integer: bool = False
    text: bool = False
    flow: bool = True
    hint: str = ""

    def __post_init__(self) -> None:
        if not self.id.isidentifier() or self.id.lower() != self.id:
            raise ValueError(f"report field id {self.id!r} must be lower_snake")
        if self.unit not in UNIT_ALIASES:
            raise ValueError(f"report field {self.id}: unknown unit {self.unit!r}")
        if not self.required <= self.kinds:
            raise ValueError(f"report field {self.id}: required in a kind it does not appear in")

    def describe(self) -> dict[str, object]:
        """The field as JSON (``GET /report-fields``)."""
        return {
            "id": self.id,
            "label_en": self.label_en,
            "label_zh": self.label_zh,
            "unit": self.unit,
            "kinds": [k for k in KINDS if k in self.kinds],
            "required": [k for k in KINDS if k in self.required],
            "minimum": self.minimum,
            "exclusive_minimum": self.exclusive_minimum,
            "integer": self.integer,
            "text": self.text,
            "flow": self.flow,
            "hint": self.hint,
        }


def _money(id_: str, en: str, zh: str, hint: str, **kw: object) -> ReportField:
    return ReportField(id_, en, zh, "10k CNY", BOTH, hint=hint, **kw)  # type: ignore[arg-type]


FIELDS: tuple[ReportField, ...] = (
    # -- economic figures (DOMAIN 6: value added, output, revenue, spend) -------------------
    _money(
        "value_added_current_10k_cny",
        "Industrial value added (current prices)",
        "工业增加值（现价）",
        "at current prices; should equal gross output - intermediate input + VAT payable",
        required=BOTH,
    ),
    ReportField(
        "price_index",
        "Value-added price index vs the cohort base year",
        "增加值价格指数（以基期为1）",
        "1",
        BOTH,
        minimum=0.0,
        exclusive_minimum=True,
        flow=False,
        hint="deflator as a ratio to the cohort base year (e.g. 1.05); give it or the "
        "comparable-price value added",
    ),
    _money(
        "value_added_comparable_10k_cny",
        "Industrial value added (comparable prices)",
        "工业增加值（可比价）",
        "at base-year prices; give it or the price index",
    ),
    _money(
        "gross_output_value_10k_cny",
        "Gross industrial output value",
        "工业总产值",
        "current prices",
    ),
    _money(
        "intermediate_input_10k_cny",
        "Intermediate input",
        "工业中间投入",
        "current prices",
    ),
    _money("vat_payable_10k_cny", "VAT payable", "应交增值税", "current prices"),
    _money(
        "main_business_revenue_10k_cny",
        "Main business revenue",
        "主营业务收入",
        "current prices",
    ),
    _money(
        "sei_value_added_10k_cny",
        "Value added of strategic emerging industries",
        "战略性新兴产业增加值",
        "the part of value added from strategic emerging industries",
    ),
    _money("rd_spend_10k_cny", "R&D spend", "研发经费支出", "internal R&D expenditure"),
    _money(
        "it_spend_10k_cny",
        "IT (informatization) spend",
        "信息化投入",
        "hardware, software and services for informatization",
    ),
    ReportField(
        "valid_invention_patents",
        "Valid invention patents",
        "有效发明专利数",
        "count",
        ANNUAL,
        integer=True,
        flow=False,
        hint="granted and in force at year end",
    ),
    ReportField(
        "average_headcount",
        "Average headcount",
        "从业人员平均人数",
        "persons",
        BOTH,
        integer=True,
        flow=False,
        hint="average over the period, whole persons",
    ),
    ReportField(
        "industrial_land_km2",
        "Supplied industrial land area",
        "供应工业用地面积",
        "km2",
        ANNUAL,
        flow=False,
        hint="land used by the factory, in km2 (1 km2 = 100 ha = 1,500 mu)",
    ),
    ReportField(
        "park",
        "Industrial park",
        "所在园区",
        "text",
        ANNUAL,
        minimum=None,
        text=True,
        flow=False,
        hint="name of the park the land belongs to (empty: none)",
    ),
    # -- solid-waste ledger (DOMAIN 5) ------------------------------------------------------
    ReportField(
        "waste_generated_t",
        "General industrial solid waste generated",
        "一般工业固体废物产生量",
        "t",
        BOTH,
        hint="tonnes generated in the period",
    ),
    ReportField(
        "waste_utilized_t",
        "Solid waste comprehensively utilized",
        "一般工业固体废物综合利用量",
        "t",
        BOTH,
        hint="tonnes utilized, including prior-year stock utilized",
    ),
    ReportField(
        "waste_prior_stock_utilized_t",
        "Prior-year stock utilized",
        "综合利用往年贮存量",
        "t",
        BOTH,
        hint="tonnes of earlier years' stock utilized in the period",
    ),
    ReportField(
        "waste_disposed_t",
        "Solid waste disposed",
        "一般工业固体废物处置量",
        "t",
        BOTH,
        hint="tonnes disposed",
    ),
    ReportField(
        "waste_stored_t",
        "Solid waste stored",
        "一般工业固体废物贮存量",
        "t",
        BOTH,
        hint="tonnes put into storage in the period",
    ),
    # -- water and energy where not metered (DOMAIN 5) --------------------------------------
    ReportField(
        "fresh_water_m3",
        "Fresh water intake",
        "新鲜水取水量",
        "m3",
        BOTH,
        hint="only where the plant's intake is not metered",
    ),
    ReportField(
        "reused_water_m3",
        "Reused water",
        "重复利用水量",
        "m3",
        BOTH,
        hint="recycled and reused water, where not metered",
    ),
    ReportField(
        "electricity_kwh",
        "Electricity consumed",
        "电力消费量",
        "kWh",
        BOTH,
        hint="only where not metered",
    ),
    ReportField(
        "natural_gas_m3", "Natural gas", "天然气消费量", "m3", BOTH, hint="only where not metered"
    ),
    ReportField("diesel_kg", "Diesel", "柴油消费量", "kg", BOTH, hint="only where not metered"),
    ReportField("gasoline_kg", "Gasoline", "汽油消费量", "kg", BOTH, hint="only where not metered"),
    ReportField("steam_kg", "Steam", "蒸汽消费量", "kg", BOTH, hint="only where not metered"),
    ReportField("heat_mj", "Heat", "热力消费量", "MJ", BOTH, hint="only where not metered"),
    ReportField(
        "renewable_electricity_kwh",
        "Renewable electricity used",
        "可再生能源电力使用量",
        "kWh",
        BOTH,
        hint="own generation and green-power purchases",
    ),
    # -- equipment registry (DOMAIN 7: CNC, intelligent and connected rates) ---------------
    ReportField(
        "key_process_equipment_count",
        "Key-process equipment",
        "关键工序设备数",
        "count",
        ANNUAL,
        integer=True,
        flow=False,
        hint="equipment of key processes at year end",
    ),
    ReportField(
        "key_process_nc_count",
        "Numerically controlled key-process equipment",
        "关键工序数控设备数",
        "count",
        ANNUAL,
        integer=True,
        flow=False,
        hint="at most the key-process equipment",
    ),
    ReportField(
        "production_equipment_count",
        "Production equipment",
        "生产设备数",
        "count",
        ANNUAL,
        integer=True,
        flow=False,
        hint="all production equipment at year end",
    ),
    ReportField(
        "intelligent_equipment_count",
        "Intelligent equipment",
        "智能化设备数",
        "count",
        ANNUAL,
        integer=True,
        flow=False,
        hint="digitally controlled AND networked; at most the production equipment",
    ),
    ReportField(
        "connected_equipment_count",
        "Connected equipment",
        "联网设备数",
        "count",
        ANNUAL,
        integer=True,
        flow=False,
        hint="networked production equipment; at most the production equipment",
    ),
    ReportField(
        "production_equipment_value_10k_cny",
        "Original value of production equipment",
        "生产设备原值",
        "10k CNY",
        ANNUAL,
        flow=False,
        hint="original (purchase) value at year end",
    ),
    ReportField(
        "intelligent_equipment_value_10k_cny",
        "Original value of intelligent equipment",
        "智能化设备原值",
        "10k CNY",
        ANNUAL,
        flow=False,
        hint="at most the production equipment value",
    ),
)

FIELDS_BY_ID: dict[str, ReportField] = {f.id: f for f in FIELDS}
if len(FIELDS_BY_ID) != len(FIELDS):
    raise RuntimeError("report field ids must be unique")

# at least one of each group is required in every report (value added at comparable prices,
# or the index that deflates the current-price figure)
ONE_OF_REQUIRED: tuple[tuple[str, ...], ...] = (("price_index", "value_added_comparable_10k_cny"),)

# a level that must not exceed another (numerator <= denominator of a rate)
AT_MOST: tuple[tuple[str, str], ...] = (
    ("key_process_nc_count", "key_process_equipment_count"),
    ("intelligent_equipment_count", "production_equipment_count"),
    ("connected_equipment_count", "production_equipment_count"),
    ("intelligent_equipment_value_10k_cny", "production_equipment_value_10k_cny"),
)


def fields_for(kind: Kind) -> tuple[ReportField, ...]:
    """The fields of a ``monthly`` or ``annual`` report, in catalog order."""
    return tuple(f for f in FIELDS if kind in f.kinds)


def _version() -> str:
    shape = [
        [f.id, f.unit, sorted(f.kinds), sorted(f.required), f.minimum, f.integer, f.text]
        for f in FIELDS
    ]
    digest = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()
    return digest[:10]


CATALOG_VERSION: str = _version()


def markdown_table() -> str:
    """The field table of docs/API.md (a test checks the docs carry exactly this)."""
    lines = [
        "| field | 字段 | unit | monthly | annual | rules |",
        "|---|---|---|---|---|---|",
    ]
    for f in FIELDS:
        cells = []
        for kind in KINDS:
            cells.append("required" if kind in f.required else ("yes" if kind in f.kinds else ""))
        rules = []
        if f.text:
            rules.append("text")
        elif f.minimum is not None:
            rules.append(f"{'>' if f.exclusive_minimum else '>='} {f.minimum:g}")
        if f.integer:
            rules.append("integer")
        if f.flow:
            rules.append("flow")
        lines.append(
            f"| `{f.id}` ({f.label_en}) | {f.label_zh} | {f.unit} | {cells[0]} | {cells[1]} "
            f"| {', '.join(rules)} |"
        )
    lines.append("")
    lines.append(
        "One of `price_index` and `value_added_comparable_10k_cny` is required in every report. "
        f"Catalog version `{CATALOG_VERSION}`."
    )
    return "\n".join(lines)
