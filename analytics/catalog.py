"""The KPI catalog: every KPI described once, as data.

Each ``KpiDefinition`` says what a KPI counts: its id, label, definition, unit, and its value as
sums of stored components (``zhizao.schema.COMPONENT_FIELDS``): ``scale x prod(sum(num_i) /
sum(den_i))``; one factor for a plain ratio, two for NEE, none (a signed sum of seconds) for the
Nakajima losses. From these descriptions come

Site KPIs (``SITE_CATALOG``, scope ``site``) are ratios of the plant row's fields
(``zhizao.schema.SITE_COMPONENT_FIELDS``): the plant's water and energy per unit of its output,
and the renewable share; ``evaluate_site`` computes them from those sums.

- the Python values (``evaluate``), used by the engine's reports, ``kpi compute``, the API, the
  portal and the demo's terminal view;
- the InfluxQL (``influxql_expression``, ``influxql_select``) of the dashboards, always
  ``sum(..) / sum(..)`` over the ``kpi_*`` components, never a mean of ratios;
- the API's ``GET /kpis`` listing (``describe``) and the README table (``markdown_table``).

So no view can compute a KPI differently from another. A zero denominator gives null with a
flag naming why (no planned time, no parts), never 0 or 1; values are never capped (a flag marks
effectiveness above the configured limit, DOMAIN rule 5).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from analytics.components import Components
from analytics.results import Kpi, safe_ratio
from zhizao.influxql import ident
from zhizao.schema import COMPONENT_FIELDS, SITE_COMPONENT_FIELDS

__all__ = [
    "CATALOG",
    "DEFAULT_LIMITS",
    "KPIS",
    "NO_PRODUCT_REASON",
    "SITE_CATALOG",
    "SITE_KPIS",
    "FlagRule",
    "KpiDefinition",
    "UnknownKpi",
    "View",
    "components_needed",
    "describe",
    "evaluate",
    "evaluate_site",
    "get",
    "influxql_expression",
    "influxql_select",
    "markdown_table",
]

F64 = NDArray[np.float64]
View = Literal["iso22400", "tpm", "utilization", "energy", "target", "losses", "plant"]
Scope = Literal["machine", "site"]
SCOPE_FIELDS: dict[str, tuple[str, ...]] = {
    "machine": COMPONENT_FIELDS,
    "site": SITE_COMPONENT_FIELDS,
}


class Columns(Protocol):
    """Equal-length float columns by component name: machine ``Components`` or plant rows."""

    def __len__(self) -> int: ...

    def column(self, name: str) -> NDArray[np.float64]: ...


@dataclass(frozen=True, slots=True)
class SiteColumns:
    """Plant rows (``kpi_site_*`` sums) by field; a field the rows do not have (no water meter,
    no renewable meter) is NaN: absent, so its KPIs are null, never 0."""

    columns: Mapping[str, NDArray[np.float64]]
    rows: int

    def __len__(self) -> int:
        return self.rows

    def column(self, name: str) -> NDArray[np.float64]:
        col = self.columns.get(name)
        return np.full(self.rows, np.nan) if col is None else np.asarray(col, np.float64)


# a sum of components; a leading "-" subtracts one ("apt_s", "-pri_pq_s")
Sum = tuple[str, ...]
DEFAULT_LIMITS: dict[str, float] = {"effectiveness_flag_above": 1.05}


class UnknownKpi(KeyError):
    """A KPI id that is not in the catalog."""

    def __init__(self, kpi_id: str) -> None:
        super().__init__(kpi_id)
        self.kpi_id = kpi_id

    def __str__(self) -> str:
        return f"unknown KPI id {self.kpi_id!r}; known: {', '.join(KPIS)}"


@dataclass(frozen=True, slots=True)
class FlagRule:
    """When a row is flagged.

    ``above``: the ratio ``sum(numerator) / sum(denominator)`` exceeds a limit (a fixed ``limit``
    or the configurable ``limit_param``); ``negative``: the sum is below zero; ``positive``: the
    sum is above zero; ``zero``: the sum is zero; ``only``: the sum is above zero and the
    ``denominator`` sum is zero (all the time is of this kind); ``partly``: both are above zero.
    ``nullify`` also turns the value into null (a target with unknown product time must not be
    shown as a number); ``explains_empty`` rows get this rule's reason instead of the KPI's
    ``when_empty`` one.
    """

    code: str
    reason: str
    when: Literal["above", "negative", "positive", "zero", "only", "partly"]
    numerator: Sum
    denominator: Sum = ()
    limit: float = 1.0
    limit_param: str = ""
    nullify: bool = False
    explains_empty: bool = False
    # the reason names ``{share}``: the numerator as a percentage of this sum, row by row
    share_of: Sum = ()

    def mask(self, c: Columns, limits: Mapping[str, float]) -> NDArray[np.bool_]:
        num = _sum(c, self.numerator)
        if self.when == "negative":
            return np.asarray(num < 0)
        if self.when == "positive":
            return np.asarray(num > 0)
        if self.when == "zero":
            return np.asarray(num == 0)
        if self.when in ("only", "partly"):
            rest = _sum(c, self.denominator) > 0
            return np.asarray((num > 0) & (rest if self.when == "partly" else ~rest))
        limit = limits.get(self.limit_param, self.limit) if self.limit_param else self.limit
        ratio = safe_ratio(num, _sum(c, self.denominator))
        return np.asarray(np.nan_to_num(ratio) > limit)

    def text(self, limits: Mapping[str, float], share: str = "") -> str:
        limit = limits.get(self.limit_param, self.limit) if self.limit_param else self.limit
        return self.reason.format(limit=limit, share=share or "part")

    def texts(
        self, c: Columns, mask: NDArray[np.bool_], limits: Mapping[str, float]
    ) -> list[tuple[NDArray[np.bool_], str]]:
        """The flagged rows by reason: one reason, or one per share (in whole percent) that
        occurs among the flagged rows."""
        if not self.share_of:
            return [(mask, self.text(limits))]
        pct = np.rint(100 * safe_ratio(_sum(c, self.numerator), _sum(c, self.share_of)))
        out: list[tuple[NDArray[np.bool_], str]] = []
        for p in np.unique(pct[mask]).tolist():  # at most 101 distinct shares, not rows
            # a share that rounds to 0 or 100 % is still some, not none or all
            text = f"{min(max(p, 1), 99):.0f} %"
            out.append((mask & (pct == p), self.text(limits, text)))
        return out


@dataclass(frozen=True, slots=True)
class KpiDefinition:
    """One KPI: ``scale x prod(sum(numerator_i) / sum(denominator_i))`` over stored components."""

    id: str
    label: str
    definition: str
    view: View
    numerator: Sum
    denominator: Sum = ()  # empty: a total (seconds), not a ratio
    # further ratio factors (NEE = AUPT/PBT x PRI*GQ/APT)
    factors: tuple[tuple[Sum, Sum], ...] = ()
    unit: str = "ratio"
    scale: float = 1.0
    # why the value is null when a denominator is zero (shown as a flag)
    when_empty: str = "no planned busy time in the window"
    flags: tuple[FlagRule, ...] = ()
    label_zh: str = ""
    # machine: over the kpi_machine_* components; site: over the plant row (kpi_site_*)
    scope: Scope = "machine"

    def __post_init__(self) -> None:
        if not self.id.replace("_", "").isalnum() or self.id.lower() != self.id:
            raise ValueError(f"KPI id {self.id!r} is not lower_snake")
        for name in self.components():
            if name not in SCOPE_FIELDS[self.scope]:
                raise ValueError(f"KPI {self.id!r} uses unknown {self.scope} component {name!r}")

    @property
    def terms(self) -> tuple[tuple[Sum, Sum], ...]:
        return ((self.numerator, self.denominator), *self.factors)

    @property
    def is_ratio(self) -> bool:
        return bool(self.denominator)

    def components(self) -> list[str]:
        names: list[str] = []
        parts: list[Sum] = [s for t in self.terms for s in t]
        parts += [s for f in self.flags for s in (f.numerator, f.denominator)]
        for s in parts:
            for term in s:
                name = term.lstrip("-")
                if name not in names:
                    names.append(name)
        return names


def _sum(c: Columns, terms: Sum) -> F64:
    out = np.zeros(len(c), np.float64)
    for term in terms:
        col = c.column(term.lstrip("-"))
        out = out - col if term.startswith("-") else out + col
    return out


def _text(terms: Sum) -> str:
    out = ""
    for i, term in enumerate(terms):
        name = term.lstrip("-").upper().removesuffix("_S")
        if i == 0:
            out = ("-" if term.startswith("-") else "") + name
        else:
            out += (" - " if term.startswith("-") else " + ") + name
    return out


# PRI-based KPIs divide by the time with a known product (an ideal cycle time): the time without
# one (``*_no_product_s``) has no PRI x part in the numerators either, so a line's OEE is over the
# machines and the time that can be computed (absent is not zero), with a flag saying so
_PBT_KNOWN: Sum = ("pbt_s", "-pbt_no_product_s")
_APT_KNOWN: Sum = ("apt_s", "-apt_no_product_s")
_AUPT_KNOWN: Sum = ("apt_s", "aust_s", "-apt_no_product_s", "-aust_no_product_s")
_OPERATING_TPM_KNOWN: Sum = (
    "apt_s",
    "adet_minor_s",
    "-apt_no_product_s",
    "-adet_minor_no_product_s",
)
NO_PRODUCT_REASON = "no product (ideal cycle time) known: publish product_id or set default_product"
_PRI_NO_PRODUCT = FlagRule(
    "no_product",
    NO_PRODUCT_REASON,
    "only",
    ("pbt_no_product_s",),
    _PBT_KNOWN,
    nullify=True,
    explains_empty=True,
)
_PRI_PARTIAL = FlagRule(
    "partial_no_product",
    "over the planned busy time with a known product only ({share} of it left out, "
    f"pbt_no_product_s: {NO_PRODUCT_REASON})",
    "partly",
    ("pbt_no_product_s",),
    _PBT_KNOWN,
    share_of=("pbt_s",),
)
_PRI_FLAGS = (_PRI_NO_PRODUCT, _PRI_PARTIAL)
_E_ABOVE = FlagRule(
    "effectiveness_above_limit",
    "effectiveness above {limit}: check the ideal cycle time (PRI)",
    "above",
    ("pri_pq_s",),
    _APT_KNOWN,
    limit_param="effectiveness_flag_above",
)
_GOOD_ABOVE_PRODUCED = FlagRule(
    "good_exceeds_produced",
    "more good parts than produced parts: check the counters (a reset read as a rollover?)",
    "above",
    ("gq",),
    ("pq",),
    limit=1.0,
)
_NEGATIVE_SCRAP = FlagRule(
    "negative_count",
    "a part count is negative: check the counters",
    "negative",
    ("sq",),
)
_COUNT_FLAGS = (_GOOD_ABOVE_PRODUCED, _NEGATIVE_SCRAP)
_NO_PARTS = "no parts produced in the window"
_NO_GOOD = "no good parts in the window"
# energy per part divides by the parts counted while the machine's meter has data (GQ_metered,
# PQ_metered): a machine without a meter is null (absent, not 0 kWh), a line is over its
# metered machines' own parts, and parts left out are flagged
_NO_METER_TEXT = "no energy meter data"
_NO_METERED_GOOD = f"no good parts counted while an energy meter had data ({_NO_METER_TEXT}?)"
_NO_METERED_PARTS = f"no parts counted while an energy meter had data ({_NO_METER_TEXT}?)"
_UNMETERED_GOOD = FlagRule(
    "no_meter",
    f"good parts counted without {_NO_METER_TEXT}: energy per part is over the metered ones only",
    "positive",
    ("gq", "-gq_metered"),
)
_UNMETERED_PARTS = FlagRule(
    "no_meter",
    f"parts counted without {_NO_METER_TEXT}: energy per part is over the metered ones only",
    "positive",
    ("pq", "-pq_metered"),
)
# energy per output value divides by the metered good parts' value; good parts of a product
# without unit_value_cny have no value and are flagged (their value is absent, not 0)
_UNVALUED_GOOD = FlagRule(
    "no_unit_value",
    "good parts of products without unit_value_cny: not in the output value",
    "positive",
    ("gq", "-gq_valued"),
)
_NO_VALUE = (
    "no output value while an energy meter had data (no meter data, no good parts or no "
    "unit_value_cny for the products)"
)
_NO_PLAN = FlagRule(
    "no_planned_time",
    "no planned busy time in the window: no target",
    "zero",
    ("pbt_s",),
    nullify=True,
)
_NO_PRODUCT = FlagRule(
    "no_product",
    "no product (ideal cycle time) known for part of the planned busy time: no target",
    "positive",
    ("pbt_no_product_s",),
    nullify=True,
)


def _ratio(
    id: str,
    label: str,
    definition: str,
    num: Sum,
    den: Sum,
    *,
    view: View = "iso22400",
    unit: str = "ratio",
    scale: float = 1.0,
    when_empty: str = "no planned busy time in the window",
    flags: tuple[FlagRule, ...] = (),
    label_zh: str = "",
    scope: Scope = "machine",
) -> KpiDefinition:
    return KpiDefinition(
        id,
        label,
        definition,
        view,
        num,
        den,
        unit=unit,
        scale=scale,
        when_empty=when_empty,
        flags=flags,
        label_zh=label_zh,
        scope=scope,
    )


def _loss(
    id: str,
    label: str,
    definition: str,
    terms: Sum,
    label_zh: str,
    flags: tuple[FlagRule, ...] = (),
) -> KpiDefinition:
    return KpiDefinition(
        id,
        label,
        definition,
        "losses",
        terms,
        unit="s",
        when_empty="",
        flags=flags,
        label_zh=label_zh,
    )


_AUBT: Sum = ("apt_s", "aust_s", "adet_s")
_AUPT: Sum = ("apt_s", "aust_s")
_OPERATING_TPM: Sum = ("apt_s", "adet_minor_s")

CATALOG: tuple[KpiDefinition, ...] = (
    # -- ISO 22400-2 (minor stops are availability loss) ---------------------------------------
    _ratio("availability", "APT/PBT", "APT / PBT", ("apt_s",), ("pbt_s",), label_zh="可用率"),
    _ratio(
        "effectiveness",
        "PRI*PQ/APT",
        "sum(PRI x PQ) / APT with a known product (not capped)",
        ("pri_pq_s",),
        _APT_KNOWN,
        when_empty="no production time in the window",
        flags=(_E_ABOVE, *_PRI_FLAGS),
        label_zh="性能效率",
    ),
    _ratio(
        "quality",
        "GQ/PQ",
        "GQ / PQ",
        ("gq",),
        ("pq",),
        when_empty=_NO_PARTS,
        flags=_COUNT_FLAGS,
        label_zh="质量合格率",
    ),
    _ratio(
        "quality_pri_weighted",
        "PRI*GQ/PRI*PQ",
        "sum(PRI x GQ) / sum(PRI x PQ)",
        ("pri_gq_s",),
        ("pri_pq_s",),
        when_empty=_NO_PARTS,
        flags=(*_COUNT_FLAGS, *_PRI_FLAGS),
        label_zh="质量率(按节拍加权)",
    ),
    _ratio(
        "oee",
        "OEE=PRI*GQ/PBT",
        "sum(PRI x GQ) / PBT with a known product",
        ("pri_gq_s",),
        _PBT_KNOWN,
        flags=(_E_ABOVE, *_COUNT_FLAGS, *_PRI_FLAGS),
        label_zh="设备综合效率",
    ),
    KpiDefinition(
        "nee",
        "NEE=AUPT/PBT*E*Q",
        "AUPT / PBT x sum(PRI x GQ) / APT, each with a known product (= AUPT/PBT x E x Q; "
        "setup not a loss)",
        "iso22400",
        _AUPT_KNOWN,
        _PBT_KNOWN,
        factors=(((("pri_gq_s",), _APT_KNOWN)),),
        flags=(_E_ABOVE, *_PRI_FLAGS),
        label_zh="净设备效率",
    ),
    _ratio(
        "utilization_efficiency",
        "APT/AUBT",
        "APT / (APT + AUST + ADET)",
        ("apt_s",),
        _AUBT,
        when_empty="no busy time in the window",
        label_zh="利用效率",
    ),
    _ratio(
        "allocation_efficiency",
        "AUBT/PBT",
        "(APT + AUST + ADET) / PBT",
        _AUBT,
        ("pbt_s",),
        label_zh="分配效率",
    ),
    _ratio(
        "technical_efficiency",
        "APT/(APT+ADET)",
        "APT / (APT + ADET)",
        ("apt_s",),
        ("apt_s", "adet_s"),
        when_empty="no production or delay time in the window",
        label_zh="技术效率",
    ),
    _ratio(
        "setup_rate",
        "AUST/AUPT",
        "AUST / (APT + AUST)",
        ("aust_s",),
        _AUPT,
        when_empty="no processing time in the window",
        label_zh="换型率",
    ),
    _ratio(
        "throughput_rate",
        "PQ/AOET",
        "PQ / AOET, items per hour",
        ("pq",),
        ("aoet_s",),
        unit="1/h",
        scale=3600.0,
        when_empty="no order execution time in the window",
        label_zh="产出率",
    ),
    _ratio(
        "scrap_ratio",
        "SQ/PQ",
        "SQ / PQ",
        ("sq",),
        ("pq",),
        when_empty=_NO_PARTS,
        flags=(_NEGATIVE_SCRAP,),
        label_zh="废品率",
    ),
    _ratio(
        "rework_ratio",
        "RQ/PQ",
        "RQ / PQ",
        ("rq",),
        ("pq",),
        when_empty=_NO_PARTS,
        label_zh="返工率",
    ),
    _ratio(
        "no_data_share",
        "NO_DATA/PBT",
        "time without data inside PBT (counted as ADET) / PBT",
        ("adet_no_data_s",),
        ("pbt_s",),
        label_zh="无数据占比",
    ),
    # -- Nakajima / TPM (minor stops are speed loss; same OEE) ---------------------------------
    _ratio(
        "availability_tpm",
        "(APT+minor)/PBT",
        "(APT + minor stops) / PBT (Nakajima: minor stops are speed loss)",
        _OPERATING_TPM,
        ("pbt_s",),
        view="tpm",
        label_zh="时间开动率(TPM)",
    ),
    _ratio(
        "performance_tpm",
        "PRI*PQ/(APT+minor)",
        "sum(PRI x PQ) / (APT + minor stops) with a known product",
        ("pri_pq_s",),
        _OPERATING_TPM_KNOWN,
        view="tpm",
        when_empty="no operating time in the window",
        flags=(_E_ABOVE, *_PRI_FLAGS),
        label_zh="性能开动率(TPM)",
    ),
    _ratio(
        "quality_tpm",
        "GQ/PQ",
        "GQ / PQ",
        ("gq",),
        ("pq",),
        view="tpm",
        when_empty=_NO_PARTS,
        flags=_COUNT_FLAGS,
        label_zh="合格品率(TPM)",
    ),
    _ratio(
        "oee_tpm",
        "OEE=PRI*GQ/PBT",
        "sum(PRI x GQ) / PBT with a known product",
        ("pri_gq_s",),
        _PBT_KNOWN,
        view="tpm",
        flags=(_E_ABOVE, *_COUNT_FLAGS, *_PRI_FLAGS),
        label_zh="设备综合效率(TPM)",
    ),
    # -- CNC utilization (DOMAIN section 4: every figure names its numerator and denominator) --
    _ratio(
        "util_in_cycle_pbt",
        "in_cycle/PBT",
        "IN_CYCLE inside PBT / PBT",
        ("apt_s",),
        ("pbt_s",),
        view="utilization",
        label_zh="运行/负荷时间",
    ),
    _ratio(
        "util_in_cycle_pot",
        "in_cycle/POT",
        "IN_CYCLE inside POT / POT",
        ("in_cycle_pot_s",),
        ("pot_s",),
        view="utilization",
        when_empty="no planned operation time in the window",
        label_zh="运行/计划时间",
    ),
    _ratio(
        "util_in_cycle_calendar",
        "in_cycle/calendar",
        "IN_CYCLE / calendar time",
        ("in_cycle_s",),
        ("calendar_s",),
        view="utilization",
        when_empty="empty window",
        label_zh="运行/日历时间",
    ),
    _ratio(
        "util_cutting_pbt",
        "cutting/PBT",
        "cutting inside PBT / PBT",
        ("cutting_pbt_s",),
        ("pbt_s",),
        view="utilization",
        label_zh="切削/负荷时间",
    ),
    _ratio(
        "util_cutting_pot",
        "cutting/POT",
        "cutting inside POT / POT",
        ("cutting_pot_s",),
        ("pot_s",),
        view="utilization",
        when_empty="no planned operation time in the window",
        label_zh="切削/计划时间",
    ),
    _ratio(
        "util_cutting_calendar",
        "cutting/calendar",
        "cutting / calendar time",
        ("cutting_s",),
        ("calendar_s",),
        view="utilization",
        when_empty="empty window",
        label_zh="切削/日历时间",
    ),
    _ratio(
        "util_cutting_in_cycle",
        "cutting/in_cycle",
        "cutting / IN_CYCLE (calendar)",
        ("cutting_s",),
        ("in_cycle_s",),
        view="utilization",
        when_empty="no in-cycle time in the window",
        label_zh="切削/运行时间",
    ),
    # -- specific energy (per good part: the Chinese unit-product convention) ------------------
    _ratio(
        "kwh_per_good",
        "kWh/GQ",
        "electricity / good quantity counted while metered",
        ("kwh",),
        ("gq_metered",),
        view="energy",
        unit="kWh",
        when_empty=_NO_METERED_GOOD,
        flags=(_UNMETERED_GOOD,),
        label_zh="单件电耗(合格品)",
    ),
    _ratio(
        "kwh_per_part",
        "kWh/PQ",
        "electricity / produced quantity counted while metered",
        ("kwh",),
        ("pq_metered",),
        view="energy",
        unit="kWh",
        when_empty=_NO_METERED_PARTS,
        flags=(_UNMETERED_PARTS,),
        label_zh="单件电耗(产出)",
    ),
    _ratio(
        "kgce_per_good",
        "kgce/GQ",
        "comprehensive energy (GB/T 2589) / good quantity counted while metered",
        ("kgce",),
        ("gq_metered",),
        view="energy",
        unit="kgce",
        when_empty=_NO_METERED_GOOD,
        flags=(_UNMETERED_GOOD,),
        label_zh="单件综合能耗(合格品)",
    ),
    _ratio(
        "kgce_per_part",
        "kgce/PQ",
        "comprehensive energy (GB/T 2589) / produced quantity counted while metered",
        ("kgce",),
        ("pq_metered",),
        view="energy",
        unit="kgce",
        when_empty=_NO_METERED_PARTS,
        flags=(_UNMETERED_PARTS,),
        label_zh="单件综合能耗(产出)",
    ),
    _ratio(
        "kgco2_per_good",
        "kgCO2/GQ",
        "emissions / good quantity counted while metered",
        ("kgco2",),
        ("gq_metered",),
        view="energy",
        unit="kgCO2",
        when_empty=_NO_METERED_GOOD,
        flags=(_UNMETERED_GOOD,),
        label_zh="单件碳排放(合格品)",
    ),
    _ratio(
        "kgco2_per_part",
        "kgCO2/PQ",
        "emissions / produced quantity counted while metered",
        ("kgco2",),
        ("pq_metered",),
        view="energy",
        unit="kgCO2",
        when_empty=_NO_METERED_PARTS,
        flags=(_UNMETERED_PARTS,),
        label_zh="单件碳排放(产出)",
    ),
    # -- energy per output value (the commission's convention: per 10,000 CNY) ---------------
    _ratio(
        "kgce_per_10k_cny",
        "kgce/10k CNY",
        "comprehensive energy (GB/T 2589) per 10,000 CNY of output value (good parts x "
        "unit_value_cny) counted while metered",
        ("kgce",),
        ("output_value_metered_cny",),
        view="energy",
        unit="kgce/10k CNY",
        scale=10_000.0,
        when_empty=_NO_VALUE,
        flags=(_UNMETERED_GOOD, _UNVALUED_GOOD),
        label_zh="万元产值综合能耗",
    ),
    _ratio(
        "kgco2_per_10k_cny",
        "kgCO2/10k CNY",
        "emissions per 10,000 CNY of output value (good parts x unit_value_cny) counted while "
        "metered",
        ("kgco2",),
        ("output_value_metered_cny",),
        view="energy",
        unit="kgCO2/10k CNY",
        scale=10_000.0,
        when_empty=_NO_VALUE,
        flags=(_UNMETERED_GOOD, _UNVALUED_GOOD),
        label_zh="万元产值碳排放",
    ),
    # -- target vs actual (target = ideal rate x PBT; null without a product or a plan) --------
    KpiDefinition(
        "target_q",
        "target=PBT/PRI",
        "ideal quantity in the planned busy time: integral of 1/PRI of the product in force",
        "target",
        ("target_q",),
        unit="items",
        when_empty="",
        flags=(_NO_PLAN, _NO_PRODUCT),
        label_zh="目标产量",
    ),
    _ratio(
        "target_attainment",
        "PQ/target",
        "PQ / (PBT / PRI)",
        ("pq",),
        ("target_q",),
        view="target",
        when_empty="no target (no planned busy time or no product)",
        flags=(_NO_PRODUCT,),
        label_zh="目标达成率",
    ),
    # -- the six big losses (Nakajima), in seconds; with PRI x GQ they add up to PBT ----------
    _loss(
        "breakdown_s",
        "breakdown",
        "ADET - minor stops - no data",
        ("adet_s", "-adet_minor_s", "-adet_no_data_s"),
        "故障停机",
    ),
    _loss("setup_adjustment_s", "setup/adjustment", "AUST", ("aust_s",), "换型调整"),
    _loss(
        "idling_minor_stops_s",
        "idling and minor stops",
        "stops shorter than the threshold",
        ("adet_minor_s",),
        "空转与短暂停机",
    ),
    _loss(
        "reduced_speed_s",
        "reduced speed",
        "APT with a known product - sum(PRI x PQ) (negative when E > 1)",
        ("apt_s", "-apt_no_product_s", "-pri_pq_s"),
        "速度损失",
        _PRI_FLAGS,
    ),
    _loss(
        "process_defects_s",
        "process defects",
        "sum(PRI x (PQ - GQ)) - start-up rejects",
        ("pri_pq_s", "-pri_gq_s", "-pri_startup_s"),
        "加工缺陷",
        _PRI_FLAGS,
    ),
    _loss(
        "startup_yield_s",
        "start-up yield",
        "sum(PRI x start-up rejects)",
        ("pri_startup_s",),
        "启动损失",
        _PRI_FLAGS,
    ),
    _loss(
        "idle_no_order_s",
        "idle / no order",
        "ADOT (availability loss unless planned down)",
        ("adot_s",),
        "待料/无订单",
    ),
    _loss(
        "no_data_s",
        "no data",
        "time without data inside PBT (ADET, flagged)",
        ("adet_no_data_s",),
        "无数据",
    ),
)

_NO_OUTPUT = "no good parts at the site's output machines (SiteModel.output_machines)"
_NO_OUTPUT_VALUE = "no output value (good parts of the output machines x unit_value_cny)"
# the plant as a whole (GB/T 36132 green-factory metrics): its meters over its output, so a part
# counts once, not once per operation; scope "site" reads the kpi_site_* rows
SITE_CATALOG: tuple[KpiDefinition, ...] = (
    _ratio(
        "water_per_output",
        "m3/output",
        "fresh water intake of the plant water meters / good parts of the output machines "
        "(unit-product water intake)",
        ("water_m3",),
        ("output_gq",),
        view="plant",
        unit="m3",
        when_empty=f"{_NO_OUTPUT}, or no plant water meter data",
        label_zh="单位产品取水量",
        scope="site",
    ),
    _ratio(
        "water_per_10k_cny",
        "m3/10k CNY",
        "fresh water intake of the plant water meters per 10,000 CNY of output value (good "
        "parts of the output machines x unit_value_cny): unit-output water intake",
        ("water_m3",),
        ("output_value_cny",),
        view="plant",
        unit="m3/10k CNY",
        scale=10_000.0,
        when_empty=f"{_NO_OUTPUT_VALUE}, or no plant water meter data",
        label_zh="单位产值取水量",
        scope="site",
    ),
    _ratio(
        "plant_kgce_per_output",
        "plant kgce/output",
        "comprehensive energy of the plant's purchased media (GB/T 2589) / good parts of the "
        "output machines (unit-product comprehensive energy)",
        ("kgce",),
        ("output_gq",),
        view="plant",
        unit="kgce",
        when_empty=_NO_OUTPUT,
        label_zh="单位产品综合能耗(全厂)",
        scope="site",
    ),
    _ratio(
        "plant_kgco2_per_output",
        "plant kgCO2/output",
        "CO2 of the plant's purchased media / good parts of the output machines",
        ("kgco2",),
        ("output_gq",),
        view="plant",
        unit="kgCO2",
        when_empty=_NO_OUTPUT,
        label_zh="单位产品碳排放(全厂)",
        scope="site",
    ),
    _ratio(
        "renewable_share",
        "renewable/energy use",
        "renewable energy (site-level meters marked renewable) / the site's use of energy "
        "(purchased media plus renewable energy produced on site), both in kgce",
        ("renewable_kgce",),
        ("energy_use_kgce",),
        view="plant",
        when_empty="no renewable meter in the site model (mark a site-level meter "
        "renewable: true), or no energy use",
        label_zh="可再生能源使用比例",
        scope="site",
    ),
)

KPIS: dict[str, KpiDefinition] = {k.id: k for k in CATALOG}
SITE_KPIS: dict[str, KpiDefinition] = {k.id: k for k in SITE_CATALOG}
if len(KPIS) != len(CATALOG) or len(SITE_KPIS) != len(SITE_CATALOG) or KPIS.keys() & SITE_KPIS:
    raise ValueError("KPI ids in the catalog must be unique")  # pragma: no cover


def get(kpi_id: str) -> KpiDefinition:
    try:
        return KPIS.get(kpi_id) or SITE_KPIS[kpi_id]
    except KeyError:
        raise UnknownKpi(kpi_id) from None


def components_needed(ids: Iterable[str] | None = None) -> list[str]:
    """The components (in schema order) that the given KPIs (default: all) are computed from."""
    wanted = {
        n for k in (CATALOG if ids is None else [get(i) for i in ids]) for n in k.components()
    }
    return [n for n in COMPONENT_FIELDS if n in wanted]


def _value(k: KpiDefinition, c: Columns) -> tuple[F64, F64 | None, F64 | None]:
    num = _sum(c, k.numerator)
    if not k.is_ratio:
        return num * k.scale, None, None
    den = _sum(c, k.denominator)
    value = safe_ratio(num, den)
    for fnum, fden in k.factors:
        value = value * safe_ratio(_sum(c, fnum), _sum(c, fden))
    return value * k.scale, num, den


def evaluate(
    c: Components,
    ids: Iterable[str] | None = None,
    *,
    limits: Mapping[str, float] | None = None,
) -> dict[str, Kpi]:
    """Every KPI (or those named) for each row of ``c``, keyed by id, with its flags."""
    wanted = list(CATALOG) if ids is None else [get(i) for i in ids]
    return _evaluate(c, wanted, "machine", limits)


def evaluate_site(
    rows: Mapping[str, F64], n: int, ids: Iterable[str] | None = None
) -> dict[str, Kpi]:
    """The site KPIs (or those named) for each of ``n`` plant rows (sums of ``kpi_site_*``
    fields by name; a missing field is absent, so its KPIs are null with their reason)."""
    wanted = list(SITE_CATALOG) if ids is None else [get(i) for i in ids]
    return _evaluate(SiteColumns(rows, n), wanted, "site", None)


def _evaluate(
    c: Columns,
    wanted: list[KpiDefinition],
    scope: Scope,
    limits: Mapping[str, float] | None,
) -> dict[str, Kpi]:
    lim = {**DEFAULT_LIMITS, **(limits or {})}
    out: dict[str, Kpi] = {}
    for k in wanted:
        if k.scope != scope:
            raise ValueError(f"KPI {k.id!r} is a {k.scope} KPI, not computed from {scope} rows")
        value, num, den = _value(k, c)
        kpi = Kpi(k.id, k.label, k.definition, value, k.unit, num, den)
        masks = [rule.mask(c, lim) for rule in k.flags]
        if k.is_ratio and k.when_empty:
            empty = np.isnan(value)
            for rule, mask in zip(k.flags, masks, strict=True):
                if rule.explains_empty:
                    empty &= ~mask
            kpi = kpi.flagged(empty, k.when_empty, "no_denominator")
        for rule, mask in zip(k.flags, masks, strict=True):
            if rule.nullify and mask.any():
                kpi = Kpi(
                    kpi.name,
                    kpi.label,
                    kpi.definition,
                    np.where(mask, np.nan, kpi.value),
                    kpi.unit,
                    kpi.numerator,
                    kpi.denominator,
                    kpi.flags,
                )
            for rows, text in rule.texts(c, mask, lim):
                kpi = kpi.flagged(rows, text, rule.code)
        out[k.id] = kpi
    return out


# -- InfluxQL ---------------------------------------------------------------------------------


def _influx_sum(terms: Sum) -> str:
    out = ""
    for i, term in enumerate(terms):
        s = f"sum({ident(term.lstrip('-'))})"
        if i == 0:
            out = ("-" if term.startswith("-") else "") + s
        else:
            out += (" - " if term.startswith("-") else " + ") + s
    return f"({out})" if len(terms) > 1 else out


def influxql_expression(kpi_id: str) -> str:
    """The KPI as one InfluxQL expression over summed components, e.g.
    ``sum("pri_gq_s") / (sum("pbt_s") - sum("pbt_no_product_s"))``: valid for any GROUP BY (sum
    over sum)."""
    k = get(kpi_id)
    parts = [_influx_sum(k.numerator)]
    if k.is_ratio:
        parts[0] += f" / {_influx_sum(k.denominator)}"
    for fnum, fden in k.factors:
        parts.append(f"{_influx_sum(fnum)} / {_influx_sum(fden)}")
    expr = " * ".join(f"({p})" if len(parts) > 1 else p for p in parts)
    if k.scale != 1.0:
        expr = f"({expr}) * {k.scale:g}"
    return expr


def influxql_select(kpi_ids: Iterable[str]) -> str:
    """``<expr> AS "id", ...``: the select list for the given KPIs."""
    return ", ".join(f"{influxql_expression(i)} AS {ident(i)}" for i in kpi_ids)


# -- listings ---------------------------------------------------------------------------------


def describe(limits: Mapping[str, float] | None = None) -> list[dict[str, object]]:
    """The catalog as JSON-ready dicts (the API's ``GET /kpis``)."""
    lim = {**DEFAULT_LIMITS, **(limits or {})}
    # the shape is api.schemas.KpiDefinitionOut (the OpenAPI document states it)
    return [
        {
            "id": k.id,
            "label": k.label,
            "label_zh": k.label_zh,
            "definition": k.definition,
            "unit": k.unit,
            "view": k.view,
            "numerator": list(k.numerator),
            "denominator": list(k.denominator),
            "factors": [{"numerator": list(n), "denominator": list(d)} for n, d in k.factors],
            "scale": k.scale,
            "influxql": influxql_expression(k.id),
            "when_empty": k.when_empty,
            "flags": [{"code": f.code, "reason": f.text(lim)} for f in k.flags],
            "scope": k.scope,
        }
        for k in (*CATALOG, *SITE_CATALOG)
    ]


def _formula(k: KpiDefinition) -> str:
    def one(n: Sum, d: Sum) -> str:
        num = f"({_text(n)})" if len(n) > 1 else _text(n)
        den = f"({_text(d)})" if len(d) > 1 else _text(d)
        return f"{num} / {den}"

    if not k.is_ratio:
        return _text(k.numerator)
    text = " x ".join(one(n, d) for n, d in k.terms)
    return f"{k.scale:g} x {text}" if k.scale != 1.0 else text


def markdown_table() -> str:
    """The catalog as a Markdown table (the README's KPI section is generated from this)."""
    rows = [
        "| id | label | definition | from components | unit | view |",
        "|---|---|---|---|---|---|",
    ]
    for k in (*CATALOG, *SITE_CATALOG):
        flags = "; ".join(f.code for f in k.flags)
        definition = k.definition + (f" (flags: {flags})" if flags else "")
        rows.append(
            f"| `{k.id}` | `{k.label}` | {definition} | `{_formula(k)}` | {k.unit} | {k.view} |"
        )
    return "\n".join(rows)
