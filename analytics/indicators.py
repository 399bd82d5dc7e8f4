"""The commission's indicators (DOMAIN sections 5 to 8) as pure numpy functions over a panel.

A ``Panel`` holds one row per factory and year: site key, district, park, year, and numeric
columns named like the factory reports and the yearly telemetry sums
(``value_added_current_10k_cny``, ``electricity_kwh``, ...; NaN = not reported, 0 = none). Every
indicator is described once, as a frozen ``IndicatorDefinition`` in ``INDICATORS`` (id, seed
number, labels, unit, kind, definition, input columns, a compute function), like the KPI catalog.

Rules (DOMAIN rule 1 and section 5):

- every group figure (district, park, whole cohort) is a ratio of sums over the factories that
  reported every input the indicator needs, never a mean of factory ratios; the one exception
  is the official key-process CNC rate (a mean of enterprise rates), shown next to its sum/sum
  variant and labelled;
- declines (9, 10, 11) and indicator 5 compare the year with the cohort's base year on a FIXED
  panel: only factories with complete inputs in both years count, and the coverage says how many;
  value added at comparable prices is the reported comparable VA or VA_current / price_index;
- CO2 comes in two labelled variants, fixed-factor (the base year's factor set in both periods)
  and current-factor (each year's set), with factor id, value, year and publisher;
- coverage: per indicator and group, the cohort's factories, how many reported every input, which
  did not; a figure over an incomplete panel carries the flag ``incomplete_panel``; a group with
  nothing to compute gives ``None`` with a reason, never 0 or NaN.

``indicator_table`` evaluates everything for one cohort and year, vectorized per indicator (group
sums by ``np.bincount`` on district codes), plus the GB/T 36132 metrics per factory.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from analytics.commission_config import (
    CohortConfig,
    CommissionConfig,
    GreenRuleSetConfig,
    ImportedValueConfig,
)
from analytics.green import (
    NOT_COUNTED_AS_ENERGY,
    CoefficientLibrary,
    ConversionSetConfig,
    EmissionFactorConfig,
    chained_decline,
    intensity_decline,
)
from zhizao.errors import ConfigError

__all__ = [
    "ENERGY_MEDIA",
    "GREEN_METRICS",
    "INDICATORS",
    "PANEL_COLUMNS",
    "Coverage",
    "GreenFactoryTable",
    "GreenMetric",
    "GreenMetricColumn",
    "IndicatorDefinition",
    "IndicatorOptions",
    "IndicatorRow",
    "IndicatorTable",
    "Panel",
    "Parts",
    "TargetStatus",
    "chained_decline",
    "chained_declines",
    "comparable_value_added",
    "get_indicator",
    "green_factory_metrics",
    "indicator_table",
    "rank_factories",
]

F64 = NDArray[np.float64]
Bool = NDArray[np.bool_]
Obj = NDArray[np.object_]
Aggregation = Literal["ratio", "total", "decline", "pp_change", "mean_of_rates", "imported"]
Direction = Literal["at_least", "at_most"]
Level = Literal["district", "park", "cohort", "factory"]

# panel column -> medium of the coefficient library; the unit is the one the column names
ENERGY_MEDIA: dict[str, tuple[str, str]] = {
    "electricity_kwh": ("electricity", "kWh"),
    "natural_gas_m3": ("natural_gas", "m3"),
    "diesel_kg": ("diesel", "kg"),
    "gasoline_kg": ("gasoline", "kg"),
    "steam_kg": ("steam", "kg"),
    "heat_mj": ("heat", "MJ"),
}
VA_CURRENT = "value_added_current_10k_cny"
VA_COMPARABLE = "value_added_comparable_10k_cny"
PRICE_INDEX = "price_index"
VA_INPUTS = (VA_COMPARABLE, VA_CURRENT, PRICE_INDEX)
# every numeric column the indicators read (the integrator's panel uses exactly these names)
PANEL_COLUMNS: tuple[str, ...] = (
    VA_CURRENT,
    PRICE_INDEX,
    VA_COMPARABLE,
    "gross_output_value_10k_cny",
    "intermediate_input_10k_cny",
    "vat_payable_10k_cny",
    "main_business_revenue_10k_cny",
    "sei_value_added_10k_cny",
    "rd_spend_10k_cny",
    "it_spend_10k_cny",
    "valid_invention_patents",
    "average_headcount",
    "industrial_land_km2",
    "waste_generated_t",
    "waste_utilized_t",
    "waste_prior_stock_utilized_t",
    "waste_disposed_t",
    "waste_stored_t",
    "fresh_water_m3",
    "reused_water_m3",
    *ENERGY_MEDIA,
    "renewable_electricity_kwh",
    "key_process_equipment_count",
    "key_process_nc_count",
    "production_equipment_count",
    "intelligent_equipment_count",
    "connected_equipment_count",
    "production_equipment_value_10k_cny",
    "intelligent_equipment_value_10k_cny",
)
SOURCES = frozenset({"telemetry", "reported"})


# --------------------------------------------------------------------------------------- panel


@dataclass(frozen=True, slots=True, eq=False)
class Panel:
    """One row per (site, year); ``columns`` maps a column name to float64 values (NaN = not
    reported). ``energy_source``/``water_source`` say per row whether the energy and water
    figures are telemetry sums or reported values."""

    site: Obj
    district: Obj
    park: Obj
    year: NDArray[np.int64]
    columns: Mapping[str, F64]
    energy_source: Obj
    water_source: Obj
    site_codes: NDArray[np.int64] = field(init=False, repr=False)
    site_names: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.site)
        set_ = functools.partial(object.__setattr__, self)
        for name in ("site", "district", "park", "energy_source", "water_source"):
            arr = np.asarray(getattr(self, name), dtype=object)
            if arr.shape != (n,):
                raise ValueError(f"panel column {name!r} has {arr.size} values, expected {n}")
            set_(name, arr)
        year = np.asarray(self.year)
        if year.shape != (n,) or (n and not np.issubdtype(year.dtype, np.integer)):
            raise ValueError(f"panel column 'year' needs {n} integer values")
        set_("year", year.astype(np.int64))
        cols: dict[str, F64] = {}
        for name, values in self.columns.items():
            arr64 = np.asarray(values, dtype=np.float64)
            if arr64.shape != (n,):
                raise ValueError(f"panel column {name!r} has {arr64.size} values, expected {n}")
            cols[name] = arr64
        set_("columns", cols)
        for name in ("energy_source", "water_source"):
            bad = set(getattr(self, name).tolist()) - SOURCES
            if bad:
                raise ValueError(
                    f"panel column {name!r} holds {sorted(map(str, bad))}; "
                    "use 'telemetry' or 'reported'"
                )
        names, codes = np.unique(self.site.astype(str), return_inverse=True)
        set_("site_codes", codes.astype(np.int64).reshape(-1))
        set_("site_names", tuple(str(s) for s in names))
        if n:
            key = self.site_codes * 10_000 + self.year
            if np.unique(key).size != n:
                raise ValueError("the panel has two rows for the same site and year")

    def __len__(self) -> int:
        return len(self.site)

    def column(self, name: str) -> F64:
        got = self.columns.get(name)
        return got if got is not None else np.full(len(self), np.nan)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> Panel:
        """Rows as mappings: ``site``, ``district``, ``year``, optional ``park``,
        ``energy_source``, ``water_source`` (default "reported"), numeric columns (None = NaN)."""
        rows = list(rows)
        meta = {"site", "district", "park", "year", "energy_source", "water_source"}
        names: list[str] = []
        for r in rows:
            names.extend(k for k in r if k not in meta and k not in names)
        cols = {
            c: np.array([np.nan if r.get(c) is None else float(r[c]) for r in rows], np.float64)
            for c in names
        }
        return cls(
            site=np.array([str(r["site"]) for r in rows], object),
            district=np.array([str(r.get("district") or "") for r in rows], object),
            park=np.array([str(r.get("park") or "") for r in rows], object),
            year=np.array([int(r["year"]) for r in rows], np.int64),
            columns=cols,
            energy_source=np.array([r.get("energy_source", "reported") for r in rows], object),
            water_source=np.array([r.get("water_source", "reported") for r in rows], object),
        )


@dataclass(frozen=True, slots=True, eq=False)
class _Frame:
    """One year of the panel aligned on the cohort's members (NaN where a member has no row)."""

    year: int
    present: Bool
    values: dict[str, F64]
    park: Obj
    energy_source: Obj
    water_source: Obj

    def col(self, name: str) -> F64:
        got = self.values.get(name)
        return got if got is not None else np.full(self.present.size, np.nan)


def _member_index(panel: Panel, members: Sequence[str]) -> NDArray[np.int64]:
    """Per panel row, the member index of its site (-1: not in the cohort)."""
    lookup = {s: i for i, s in enumerate(members)}
    of_code = np.array([lookup.get(s, -1) for s in panel.site_names], np.int64)
    return of_code[panel.site_codes] if len(panel) else np.zeros(0, np.int64)


def _frame(panel: Panel, member_of_row: NDArray[np.int64], m: int, year: int) -> _Frame:
    rows = np.flatnonzero((panel.year == year) & (member_of_row >= 0))
    idx = member_of_row[rows]
    present = np.zeros(m, bool)
    present[idx] = True
    values: dict[str, F64] = {}
    for name, col in panel.columns.items():
        out = np.full(m, np.nan)
        out[idx] = col[rows]
        values[name] = out

    def obj(arr: Obj) -> Obj:
        out = np.full(m, "", dtype=object)
        out[idx] = arr[rows]
        return out

    return _Frame(
        year, present, values, obj(panel.park), obj(panel.energy_source), obj(panel.water_source)
    )


# ----------------------------------------------------------------------------- building blocks


def comparable_value_added(
    va_current: F64, price_index: F64, va_comparable: F64 | None = None
) -> tuple[F64, Bool]:
    """VA at comparable (base-year) prices per factory: the reported comparable VA where given,
    else VA_current / price_index; and where it is known."""
    with np.errstate(divide="ignore", invalid="ignore"):
        derived = np.asarray(va_current, np.float64) / np.asarray(price_index, np.float64)
    if va_comparable is not None:
        derived = np.where(np.isfinite(va_comparable), va_comparable, derived)
    ok = np.isfinite(derived)
    return np.where(ok, derived, np.nan), ok


def _media_columns(ctx: _Ctx) -> list[str]:
    return [c for c in ENERGY_MEDIA if c in ctx.panel.columns]


def _kgce(ctx: _Ctx, frame: _Frame) -> tuple[F64, Bool]:
    """Comprehensive energy per member (GB/T 2589 coefficients of the configured set); complete
    only where every energy column of the panel is reported (0 = medium not used)."""
    conv = ctx.conversion
    media = _media_columns(ctx)
    total = np.zeros(frame.present.size)
    ok = frame.present.copy() if media else np.zeros(frame.present.size, bool)
    for col in media:
        medium, unit = ENERGY_MEDIA[col]
        if medium in NOT_COUNTED_AS_ENERGY:
            continue
        coef = conv.coefficients.get(medium)
        if coef is None:
            raise ConfigError(
                f"the energy conversion set {conv.id!r} has no coefficient for {medium}",
                key="energy_conversion",
                expected=f"a set with a coefficient for {medium} in kgce/{unit}",
            )
        if coef.unit != unit:
            raise ConfigError(
                f"the {medium} coefficient of {conv.id!r} is per {coef.unit}, the panel's "
                f"{col} is in {unit}",
                key="energy_conversion",
                expected=f"kgce per {unit}",
            )
        q = frame.col(col)
        ok &= np.isfinite(q)
        total += np.nan_to_num(q) * coef.value
    return np.where(ok, total, np.nan), ok


def _factor_set(ctx: _Ctx, year: int) -> tuple[int, dict[str, EmissionFactorConfig]]:
    cfg = ctx.config
    try:
        set_year = cfg.factor_set_year(year)
    except KeyError as exc:
        raise ConfigError(
            str(exc.args[0]), key="co2.factor_sets", expected="a set for the base year or earlier"
        ) from exc
    extra = {f.id: f for f in cfg.co2.extra_factors}
    out: dict[str, EmissionFactorConfig] = {}
    for fid in cfg.co2.factor_sets[set_year]:
        f = extra.get(fid) or ctx.library.factor(fid)
        if f.medium in out:
            raise ConfigError(
                f"the {set_year} emission-factor set names two factors for {f.medium}",
                key=f"co2.factor_sets.{set_year}",
                expected="one factor per medium",
            )
        out[f.medium] = f
    return set_year, out


def _provenance(set_year: int, factors: Mapping[str, EmissionFactorConfig]) -> dict[str, object]:
    return {
        "factor_set_year": set_year,
        "factors": {
            m: {
                "id": f.id,
                "value": f.value,
                "unit": f.unit,
                "year": f.year,
                "publisher": f.publisher,
            }
            for m, f in sorted(factors.items())
        },
    }


def _kgco2(
    ctx: _Ctx, frame: _Frame, factors: Mapping[str, EmissionFactorConfig], set_year: int
) -> tuple[F64, Bool]:
    media = _media_columns(ctx)
    total = np.zeros(frame.present.size)
    ok = frame.present.copy() if media else np.zeros(frame.present.size, bool)
    for col in media:
        medium, unit = ENERGY_MEDIA[col]
        q = frame.col(col)
        ok &= np.isfinite(q)
        f = factors.get(medium)
        if f is None:
            if np.any(np.nan_to_num(q) != 0):
                raise ConfigError(
                    f"no emission factor for {medium} in the {set_year} set, but factories "
                    f"reported {col} for {frame.year}",
                    key=f"co2.factor_sets.{set_year}",
                    expected=f"a factor id for {medium} (kgCO2/{unit})",
                )
            continue
        if f.unit != f"kgCO2/{unit}":
            raise ConfigError(
                f"emission factor {f.id!r} is in {f.unit}, the panel's {col} is in {unit}",
                key=f"co2.factor_sets.{set_year}",
                expected=f"kgCO2/{unit}",
            )
        total += np.nan_to_num(q) * f.value
    return np.where(ok, total, np.nan), ok


class _Ctx:
    """Everything one evaluation shares; the per-frame energy and CO2 are computed once."""

    def __init__(
        self,
        panel: Panel,
        config: CommissionConfig,
        cohort: CohortConfig,
        year: int,
        base_year: int,
        statistical_rounding: bool,
        library: CoefficientLibrary,
    ) -> None:
        self.panel, self.config, self.cohort = panel, config, cohort
        self.year, self.base_year = year, base_year
        self.statistical_rounding = statistical_rounding
        self.library = library
        self.conversion: ConversionSetConfig = library.conversion(config.energy_conversion)
        self.members: tuple[str, ...] = tuple(cohort.sites)
        self.m = len(self.members)
        member_of_row = _member_index(panel, self.members)
        self.t = _frame(panel, member_of_row, self.m, year)
        self.base = _frame(panel, member_of_row, self.m, base_year)
        self._cache: dict[tuple[str, int], tuple[F64, Bool]] = {}
        self.factors_t = _factor_set(self, year)
        self.factors_0 = _factor_set(self, base_year)

    def frame(self, year: int) -> _Frame:
        return self.t if year == self.year else self.base

    def kgce(self, frame: _Frame) -> tuple[F64, Bool]:
        key = ("kgce", frame.year)
        if key not in self._cache:
            self._cache[key] = _kgce(self, frame)
        return self._cache[key]

    def kgco2(self, frame: _Frame, factor_year: int) -> tuple[F64, Bool]:
        key = (f"kgco2@{factor_year}", frame.year)
        if key not in self._cache:
            set_year, factors = self.factors_t if factor_year == self.year else self.factors_0
            self._cache[key] = _kgco2(self, frame, factors, set_year)
        return self._cache[key]

    def va_comparable(self, frame: _Frame) -> tuple[F64, Bool]:
        key = ("va_comparable", frame.year)
        if key not in self._cache:
            self._cache[key] = comparable_value_added(
                frame.col(VA_CURRENT), frame.col(PRICE_INDEX), frame.values.get(VA_COMPARABLE)
            )
        return self._cache[key]


# ------------------------------------------------------------------------------- definitions


@dataclass(frozen=True, slots=True)
class Parts:
    """Per member numerator and denominator (year t) and whether the member's inputs are
    complete; for declines and +pp also the base year's."""

    numerator: F64
    denominator: F64
    complete: Bool
    base_numerator: F64 | None = None
    base_denominator: F64 | None = None
    base_complete: Bool | None = None
    details: Mapping[str, object] = field(default_factory=dict)
    imported: ImportedValueConfig | None = None
    imported_reason: str = ""


Compute = Callable[[_Ctx], Parts]


@dataclass(frozen=True, slots=True)
class IndicatorDefinition:
    """One indicator, described once. ``value = scale x sum(numerator) / sum(denominator)``
    over the group's complete factories (``aggregation`` says otherwise where it must)."""

    id: str
    seed_number: int | None
    label_en: str
    label_zh: str
    unit: str
    kind: Literal["indicative", "binding", "monitoring"]
    definition: str
    inputs: tuple[str, ...]
    compute: Compute
    aggregation: Aggregation = "ratio"
    scale: float = 1.0
    direction: Direction = "at_least"
    variant: str = ""  # label of the variant (CO2 factor, CNC method, ...)
    target_key: str = ""  # the key of its targets in the config (default: id)
    per_park: bool = False
    source_column: Literal["energy", "water", ""] = ""

    def __post_init__(self) -> None:
        if not self.id.replace("_", "").isalnum() or self.id.lower() != self.id:
            raise ValueError(f"indicator id {self.id!r} is not lower_snake")
        if self.aggregation in ("decline", "pp_change") and not self.inputs:
            raise ValueError(f"indicator {self.id!r} needs inputs")

    @property
    def targets_key(self) -> str:
        return self.target_key or self.id


def _cols(frame: _Frame, *names: str) -> tuple[list[F64], Bool]:
    arrays = [frame.col(n) for n in names]
    ok = frame.present.copy()
    for a in arrays:
        ok &= np.isfinite(a)
    return arrays, ok


def _simple_ratio(num_col: str, den_col: str) -> Compute:
    def compute(ctx: _Ctx) -> Parts:
        (num, den), ok = _cols(ctx.t, num_col, den_col)
        return Parts(num, den, ok)

    return compute


def _ones(ctx: _Ctx) -> F64:
    return np.ones(ctx.m)


def _energy_intensity_parts(ctx: _Ctx, frame: _Frame) -> tuple[F64, F64, Bool]:
    kgce, ok_e = ctx.kgce(frame)
    va, ok_v = ctx.va_comparable(frame)
    return kgce / 1000.0, va, ok_e & ok_v


def _energy_decline(ctx: _Ctx) -> Parts:
    nt, dt, ot = _energy_intensity_parts(ctx, ctx.t)
    n0, d0, o0 = _energy_intensity_parts(ctx, ctx.base)
    return Parts(nt, dt, ot, n0, d0, o0, _energy_details(ctx))


def _energy_details(ctx: _Ctx) -> dict[str, object]:
    c = ctx.conversion
    return {
        "energy_conversion": {
            "id": c.id,
            "convention": c.convention,
            "year": c.year,
            "source": c.source,
        }
    }


def _energy_intensity(ctx: _Ctx) -> Parts:
    n, d, ok = _energy_intensity_parts(ctx, ctx.t)
    return Parts(n, d, ok, details=_energy_details(ctx))


def _energy_intensity_current(ctx: _Ctx) -> Parts:
    kgce, ok_e = ctx.kgce(ctx.t)
    (va,), ok_v = _cols(ctx.t, VA_CURRENT)
    return Parts(kgce / 1000.0, va, ok_e & ok_v, details=_energy_details(ctx))


def _energy_total(ctx: _Ctx) -> Parts:
    kgce, ok = ctx.kgce(ctx.t)
    return Parts(kgce / 1000.0, _ones(ctx), ok, details=_energy_details(ctx))


def _co2_parts(ctx: _Ctx, frame: _Frame, factor_year: int) -> tuple[F64, F64, Bool]:
    kg, ok_c = ctx.kgco2(frame, factor_year)
    va, ok_v = ctx.va_comparable(frame)
    return kg / 1000.0, va, ok_c & ok_v


def _co2_decline(variant: Literal["fixed_factor", "current_factor"]) -> Compute:
    def compute(ctx: _Ctx) -> Parts:
        t_factor_year = ctx.base_year if variant == "fixed_factor" else ctx.year
        nt, dt, ot = _co2_parts(ctx, ctx.t, t_factor_year)
        n0, d0, o0 = _co2_parts(ctx, ctx.base, ctx.base_year)
        t_set = ctx.factors_0 if variant == "fixed_factor" else ctx.factors_t
        details = {
            "variant": variant,
            "factors_year": _provenance(*t_set),
            "factors_base_year": _provenance(*ctx.factors_0),
        }
        return Parts(nt, dt, ot, n0, d0, o0, details)

    return compute


def _co2_total(ctx: _Ctx) -> Parts:
    kg, ok = ctx.kgco2(ctx.t, ctx.year)
    return Parts(kg / 1000.0, _ones(ctx), ok, details={"factors": _provenance(*ctx.factors_t)})


def _co2_intensity(ctx: _Ctx) -> Parts:
    n, d, ok = _co2_parts(ctx, ctx.t, ctx.year)
    return Parts(n, d, ok, details={"factors": _provenance(*ctx.factors_t)})


def _water_decline(ctx: _Ctx) -> Parts:
    def parts(frame: _Frame) -> tuple[F64, F64, Bool]:
        (w,), ok_w = _cols(frame, "fresh_water_m3")
        va, ok_v = ctx.va_comparable(frame)
        return w, va, ok_w & ok_v

    return Parts(*parts(ctx.t), *parts(ctx.base))


def _water_intensity(ctx: _Ctx) -> Parts:
    (w,), ok_w = _cols(ctx.t, "fresh_water_m3")
    va, ok_v = ctx.va_comparable(ctx.t)
    return Parts(w, va, ok_w & ok_v)


def _va_rate_change(ctx: _Ctx) -> Parts:
    (vt, gt), ot = _cols(ctx.t, VA_CURRENT, "gross_output_value_10k_cny")
    (v0, g0), o0 = _cols(ctx.base, VA_CURRENT, "gross_output_value_10k_cny")
    return Parts(vt, gt, ot, v0, g0, o0)


def _solid_waste(ctx: _Ctx) -> Parts:
    (u, g, p), ok = _cols(
        ctx.t, "waste_utilized_t", "waste_generated_t", "waste_prior_stock_utilized_t"
    )
    return Parts(u, g + p, ok)


def _imported(name: str, with_sei: bool) -> Compute:
    def compute(ctx: _Ctx) -> Parts:
        value = ctx.config.imported_value(name, ctx.year)
        reason = "" if value else f"no imported value for {ctx.year} in imported.{name}"
        if with_sei:
            (sei, va), ok = _cols(ctx.t, "sei_value_added_10k_cny", VA_CURRENT)
            return Parts(sei, va, ok, imported=value, imported_reason=reason)
        ones = _ones(ctx)
        return Parts(ones, ones, np.ones(ctx.m, bool), imported=value, imported_reason=reason)

    return compute


def _land_output(ctx: _Ctx) -> Parts:
    (gov, land), ok = _cols(ctx.t, "gross_output_value_10k_cny", "industrial_land_km2")
    return Parts(gov, land, ok)


def _water_reuse(ctx: _Ctx) -> Parts:
    (reused, fresh), ok = _cols(ctx.t, "reused_water_m3", "fresh_water_m3")
    return Parts(reused, reused + fresh, ok)


def _cnc(ctx: _Ctx) -> Parts:
    (nc, total), ok = _cols(ctx.t, "key_process_nc_count", "key_process_equipment_count")
    return Parts(nc, total, ok)


_VA_TEXT = "VA at comparable prices = reported comparable VA, else VA_current / price_index"
_ENERGY_TEXT = (
    "energy = sum(quantity_i x kgce coefficient_i) over the panel's energy columns (GB/T 2589, "
    "configured set; 0 = medium not used, NaN = not reported)"
)
_FIXED = "fixed panel: factories with complete inputs in both the year and the base year"
_ENERGY_INPUTS = (*ENERGY_MEDIA, *VA_INPUTS)

INDICATORS: tuple[IndicatorDefinition, ...] = (
    IndicatorDefinition(
        id="sei_va_share_gdp",
        seed_number=1,
        label_en="Strategic emerging industry VA share of city GDP",
        label_zh="战略性新兴产业增加值占全市生产总值比重",
        unit="%",
        kind="indicative",
        definition=(
            "imported published city statistic; the cohort's contribution is sum(SEI VA) and "
            "sum(SEI VA) / sum(VA_current) in details"
        ),
        inputs=("sei_value_added_10k_cny", VA_CURRENT),
        compute=_imported("sei_va_share_gdp", True),
        aggregation="imported",
        scale=100.0,
    ),
    IndicatorDefinition(
        id="rd_intensity",
        seed_number=2,
        label_en="R&D spend / main business revenue",
        label_zh="研发经费内部支出占主营业务收入比重",
        unit="%",
        kind="indicative",
        definition="sum(R&D spend) / sum(main business revenue)",
        inputs=("rd_spend_10k_cny", "main_business_revenue_10k_cny"),
        compute=_simple_ratio("rd_spend_10k_cny", "main_business_revenue_10k_cny"),
        scale=100.0,
    ),
    IndicatorDefinition(
        id="invention_patents_per_revenue",
        seed_number=3,
        label_en="Valid invention patents per 100M CNY revenue",
        label_zh="每亿元主营业务收入有效发明专利数",
        unit="count/1e8 CNY",
        kind="indicative",
        definition="sum(valid invention patents) / (sum(main business revenue, 10k CNY) / 10,000)",
        inputs=("valid_invention_patents", "main_business_revenue_10k_cny"),
        compute=_simple_ratio("valid_invention_patents", "main_business_revenue_10k_cny"),
        scale=10000.0,
    ),
    IndicatorDefinition(
        id="it_intensity",
        seed_number=4,
        label_en="IT investment / main business revenue",
        label_zh="信息化投入占主营业务收入比重",
        unit="%",
        kind="indicative",
        definition="sum(IT spend) / sum(main business revenue)",
        inputs=("it_spend_10k_cny", "main_business_revenue_10k_cny"),
        compute=_simple_ratio("it_spend_10k_cny", "main_business_revenue_10k_cny"),
        scale=100.0,
    ),
    IndicatorDefinition(
        id="va_rate_change",
        seed_number=5,
        label_en="Industrial VA rate, change vs the base year",
        label_zh="工业增加值率(比基年提高)",
        unit="pp",
        kind="indicative",
        definition=(
            f"100 x (sum(VA_current)/sum(GOV) in the year - the same in the base year); {_FIXED}"
        ),
        inputs=(VA_CURRENT, "gross_output_value_10k_cny"),
        compute=_va_rate_change,
        aggregation="pp_change",
        scale=100.0,
    ),
    IndicatorDefinition(
        id="quality_competitiveness_index",
        seed_number=6,
        label_en="Manufacturing quality competitiveness index",
        label_zh="制造业质量竞争力指数",
        unit="index",
        kind="indicative",
        definition="imported published value",
        inputs=(),
        compute=_imported("quality_competitiveness_index", False),
        aggregation="imported",
    ),
    IndicatorDefinition(
        id="labour_productivity",
        seed_number=7,
        label_en="Industrial labour productivity",
        label_zh="工业劳动生产率",
        unit="10k CNY/person",
        kind="indicative",
        definition="sum(VA_current) / sum(average headcount)",
        inputs=(VA_CURRENT, "average_headcount"),
        compute=_simple_ratio(VA_CURRENT, "average_headcount"),
    ),
    IndicatorDefinition(
        id="land_output",
        seed_number=8,
        label_en="Output per km2 of supplied industrial land",
        label_zh="工业园区单位土地产值(已供应工业用地)",
        unit="100M CNY/km2",
        kind="indicative",
        definition=(
            "sum(gross output value, 10k CNY) / 10,000 / sum(industrial land, km2), per park too"
        ),
        inputs=("gross_output_value_10k_cny", "industrial_land_km2"),
        compute=_land_output,
        scale=0.0001,
        per_park=True,
    ),
    IndicatorDefinition(
        id="energy_intensity_decline",
        seed_number=9,
        label_en="Decline of energy per unit industrial VA",
        label_zh="单位工业增加值能耗下降幅度",
        unit="%",
        kind="binding",
        definition=(
            f"100 x (1 - (sum(tce_t)/sum(VA_t)) / (sum(tce_0)/sum(VA_0))); {_VA_TEXT}; "
            f"{_ENERGY_TEXT}; {_FIXED}"
        ),
        inputs=_ENERGY_INPUTS,
        compute=_energy_decline,
        aggregation="decline",
        scale=100.0,
        source_column="energy",
    ),
    IndicatorDefinition(
        id="co2_intensity_decline_fixed_factor",
        seed_number=10,
        label_en="Decline of CO2 per unit industrial VA (fixed factor)",
        label_zh="单位工业增加值二氧化碳排放量下降幅度(固定因子)",
        unit="%",
        kind="binding",
        definition=(
            "100 x (1 - (sum(tCO2_t)/sum(VA_t)) / (sum(tCO2_0)/sum(VA_0))), the base year's "
            f"factor set in both periods (what the factories changed); {_VA_TEXT}; {_FIXED}"
        ),
        inputs=_ENERGY_INPUTS,
        compute=_co2_decline("fixed_factor"),
        aggregation="decline",
        scale=100.0,
        variant="fixed_factor",
        target_key="co2_intensity_decline",
        source_column="energy",
    ),
    IndicatorDefinition(
        id="co2_intensity_decline_current_factor",
        seed_number=10,
        label_en="Decline of CO2 per unit industrial VA (current factor)",
        label_zh="单位工业增加值二氧化碳排放量下降幅度(当年因子)",
        unit="%",
        kind="binding",
        definition=(
            "100 x (1 - (sum(tCO2_t)/sum(VA_t)) / (sum(tCO2_0)/sum(VA_0))), each year's own "
            f"factor set; {_VA_TEXT}; {_FIXED}"
        ),
        inputs=_ENERGY_INPUTS,
        compute=_co2_decline("current_factor"),
        aggregation="decline",
        scale=100.0,
        variant="current_factor",
        target_key="co2_intensity_decline",
        source_column="energy",
    ),
    IndicatorDefinition(
        id="water_intensity_decline",
        seed_number=11,
        label_en="Decline of water per unit industrial VA",
        label_zh="单位工业增加值用水量下降幅度",
        unit="%",
        kind="binding",
        definition=(
            "100 x (1 - (sum(fresh water_t)/sum(VA_t)) / (sum(fresh water_0)/sum(VA_0))), fresh "
            f"intake only; {_VA_TEXT}; {_FIXED}"
        ),
        inputs=("fresh_water_m3", *VA_INPUTS),
        compute=_water_decline,
        aggregation="decline",
        scale=100.0,
        source_column="water",
    ),
    IndicatorDefinition(
        id="solid_waste_utilization",
        seed_number=12,
        label_en="Industrial solid-waste utilization rate",
        label_zh="工业固体废弃物综合利用率",
        unit="%",
        kind="binding",
        definition=(
            "sum(utilized) / sum(generated + prior-year stock utilized); alert below the "
            "configured rate"
        ),
        inputs=("waste_utilized_t", "waste_generated_t", "waste_prior_stock_utilized_t"),
        compute=_solid_waste,
        scale=100.0,
    ),
    IndicatorDefinition(
        id="energy_intensity",
        seed_number=None,
        label_en="Energy per unit VA (comparable prices)",
        label_zh="单位工业增加值能耗(可比价)",
        unit="tce/10k CNY",
        kind="monitoring",
        definition=f"sum(tce) / sum(VA at comparable prices); {_VA_TEXT}; {_ENERGY_TEXT}",
        inputs=_ENERGY_INPUTS,
        compute=_energy_intensity,
        direction="at_most",
        source_column="energy",
    ),
    IndicatorDefinition(
        id="energy_intensity_current_prices",
        seed_number=None,
        label_en="Energy per unit VA (current prices)",
        label_zh="单位工业增加值能耗(现价)",
        unit="tce/10k CNY",
        kind="monitoring",
        definition=f"sum(tce) / sum(VA_current); {_ENERGY_TEXT}",
        inputs=(*ENERGY_MEDIA, VA_CURRENT),
        compute=_energy_intensity_current,
        direction="at_most",
        source_column="energy",
    ),
    IndicatorDefinition(
        id="energy_consumption",
        seed_number=None,
        label_en="Comprehensive energy consumption",
        label_zh="综合能源消费量",
        unit="tce",
        kind="monitoring",
        definition=f"sum(tce); {_ENERGY_TEXT}",
        inputs=tuple(ENERGY_MEDIA),
        compute=_energy_total,
        aggregation="total",
        direction="at_most",
        source_column="energy",
    ),
    IndicatorDefinition(
        id="co2_emissions",
        seed_number=None,
        label_en="CO2 emissions (current factor)",
        label_zh="二氧化碳排放量(当年因子)",
        unit="tCO2",
        kind="monitoring",
        definition="sum(quantity_i x EF_i) / 1000 with the year's factor set",
        inputs=tuple(ENERGY_MEDIA),
        compute=_co2_total,
        aggregation="total",
        direction="at_most",
        variant="current_factor",
        source_column="energy",
    ),
    IndicatorDefinition(
        id="co2_intensity",
        seed_number=None,
        label_en="CO2 per unit VA (current factor, comparable prices)",
        label_zh="单位工业增加值二氧化碳排放量",
        unit="tCO2/10k CNY",
        kind="monitoring",
        definition=f"sum(tCO2) / sum(VA at comparable prices), the year's factor set; {_VA_TEXT}",
        inputs=_ENERGY_INPUTS,
        compute=_co2_intensity,
        direction="at_most",
        variant="current_factor",
        source_column="energy",
    ),
    IndicatorDefinition(
        id="water_intensity",
        seed_number=None,
        label_en="Fresh water per unit VA (comparable prices)",
        label_zh="单位工业增加值用水量",
        unit="m3/10k CNY",
        kind="monitoring",
        definition=f"sum(fresh water) / sum(VA at comparable prices); {_VA_TEXT}",
        inputs=("fresh_water_m3", *VA_INPUTS),
        compute=_water_intensity,
        direction="at_most",
        source_column="water",
    ),
    IndicatorDefinition(
        id="water_reuse_rate",
        seed_number=None,
        label_en="Water reuse rate",
        label_zh="水重复利用率",
        unit="%",
        kind="monitoring",
        definition="sum(reused) / sum(fresh intake + reused)",
        inputs=("reused_water_m3", "fresh_water_m3"),
        compute=_water_reuse,
        scale=100.0,
        source_column="water",
    ),
    IndicatorDefinition(
        id="key_process_cnc_rate_official_mean",
        seed_number=None,
        label_en="CNC rate of key processes (official: mean of enterprise rates)",
        label_zh="关键工序数控化率(企业平均, 官方口径)",
        unit="%",
        kind="monitoring",
        definition=(
            "mean over enterprises with key-process equipment of (NC key-process equipment / "
            "key-process equipment) -- the official regional statistic (DOMAIN section 7)"
        ),
        inputs=("key_process_nc_count", "key_process_equipment_count"),
        compute=_cnc,
        aggregation="mean_of_rates",
        scale=100.0,
        variant="official_mean_of_rates",
        target_key="key_process_cnc_rate",
    ),
    IndicatorDefinition(
        id="key_process_cnc_rate_sum_over_sum",
        seed_number=None,
        label_en="CNC rate of key processes (sum over sum)",
        label_zh="关键工序数控化率(加总口径)",
        unit="%",
        kind="monitoring",
        definition="sum(NC key-process equipment) / sum(key-process equipment)",
        inputs=("key_process_nc_count", "key_process_equipment_count"),
        compute=_cnc,
        scale=100.0,
        variant="sum_over_sum",
        target_key="key_process_cnc_rate",
    ),
    IndicatorDefinition(
        id="intelligent_equipment_rate_count",
        seed_number=None,
        label_en="Intelligent-equipment rate (by count)",
        label_zh="智能装备普及率(按台数)",
        unit="%",
        kind="monitoring",
        definition=(
            "sum(digitally controlled AND networked production equipment) / sum(production "
            "equipment), by count (operational definition, DOMAIN section 7)"
        ),
        inputs=("intelligent_equipment_count", "production_equipment_count"),
        compute=_simple_ratio("intelligent_equipment_count", "production_equipment_count"),
        scale=100.0,
        variant="by_count",
        target_key="intelligent_equipment_rate",
    ),
    IndicatorDefinition(
        id="intelligent_equipment_rate_value",
        seed_number=None,
        label_en="Intelligent-equipment rate (by original value)",
        label_zh="智能装备普及率(按原值)",
        unit="%",
        kind="monitoring",
        definition=(
            "sum(original value of intelligent equipment) / sum(original value of production "
            "equipment)"
        ),
        inputs=("intelligent_equipment_value_10k_cny", "production_equipment_value_10k_cny"),
        compute=_simple_ratio(
            "intelligent_equipment_value_10k_cny", "production_equipment_value_10k_cny"
        ),
        scale=100.0,
        variant="by_original_value",
        target_key="intelligent_equipment_rate",
    ),
    IndicatorDefinition(
        id="connected_equipment_ratio",
        seed_number=None,
        label_en="Connected-equipment ratio",
        label_zh="设备联网率",
        unit="%",
        kind="monitoring",
        definition="sum(connected production equipment) / sum(production equipment)",
        inputs=("connected_equipment_count", "production_equipment_count"),
        compute=_simple_ratio("connected_equipment_count", "production_equipment_count"),
        scale=100.0,
    ),
)
_BY_ID = {d.id: d for d in INDICATORS}
assert len(_BY_ID) == len(INDICATORS), "indicator ids must be unique"


def get_indicator(indicator_id: str) -> IndicatorDefinition:
    try:
        return _BY_ID[indicator_id]
    except KeyError:
        raise KeyError(f"unknown indicator {indicator_id!r}; known: {', '.join(_BY_ID)}") from None


# --------------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Coverage:
    """Who of the group's cohort factories reported every input (for declines: in both years)."""

    factories: int
    reported: int
    missing: tuple[str, ...]
    base_year: int | None = None  # set for fixed-panel figures

    @property
    def complete(self) -> bool:
        return not self.missing and self.factories > 0


@dataclass(frozen=True, slots=True)
class TargetStatus:
    year: int
    value: float | None
    upper: float | None
    text: str
    source: str
    city_set: bool
    met: bool | None  # None: no numeric target or no value


@dataclass(frozen=True, slots=True)
class IndicatorRow:
    level: Level
    group: str
    indicator: str
    seed_number: int | None
    label_en: str
    label_zh: str
    unit: str
    kind: str
    variant: str
    value: float | None
    reason: str | None  # why value is None
    targets: tuple[TargetStatus, ...]
    coverage: Coverage
    flags: tuple[str, ...]
    details: Mapping[str, object]

    def target(self, year: int) -> TargetStatus | None:
        return next((t for t in self.targets if t.year == year), None)


@dataclass(frozen=True, slots=True)
class GreenMetric:
    """One GB/T 36132 quantitative metric (ids as in the rule sets' per-industry values)."""

    id: str
    label_en: str
    label_zh: str
    unit: str
    direction: Direction
    definition: str


GREEN_METRICS: tuple[GreenMetric, ...] = (
    GreenMetric(
        "unit_output_energy",
        "Energy per unit output value",
        "单位产值综合能耗",
        "tce/10k CNY",
        "at_most",
        "tce / gross output value",
    ),
    GreenMetric(
        "unit_output_co2",
        "CO2 per unit output value",
        "单位产值碳排放量",
        "tCO2/10k CNY",
        "at_most",
        "tCO2 (the year's factor set) / gross output value",
    ),
    GreenMetric(
        "unit_output_water",
        "Water intake per unit output value",
        "单位产值取水量",
        "m3/10k CNY",
        "at_most",
        "fresh water intake / gross output value",
    ),
    GreenMetric(
        "water_reuse_rate",
        "Water reuse rate",
        "水重复利用率",
        "%",
        "at_least",
        "reused / (fresh intake + reused)",
    ),
    GreenMetric(
        "solid_waste_utilization",
        "General solid-waste utilization rate",
        "一般固体废物综合利用率",
        "%",
        "at_least",
        "utilized / (generated + prior-year stock utilized)",
    ),
    GreenMetric(
        "renewable_energy_share",
        "Renewable energy share",
        "可再生能源使用比例",
        "%",
        "at_least",
        "renewable electricity (kgce) / comprehensive energy (kgce)",
    ),
    GreenMetric(
        "land_output",
        "Output per land area",
        "单位用地面积产值",
        "100M CNY/km2",
        "at_least",
        "gross output value / 10,000 / industrial land",
    ),
)


@dataclass(frozen=True, slots=True, eq=False)
class GreenMetricColumn:
    """One metric over the cohort's factories (arrays aligned with ``GreenFactoryTable.sites``)."""

    metric: GreenMetric
    value: F64  # NaN: inputs missing or a zero denominator
    base: F64  # NaN: no configured value for the factory's industry
    leading: F64
    meets_base: Bool  # only meaningful where value and base are known
    meets_leading: Bool


@dataclass(frozen=True, slots=True, eq=False)
class GreenFactoryTable:
    rule_set: str
    title: str
    year: int
    sites: tuple[str, ...]
    districts: tuple[str, ...]
    industries: tuple[str, ...]
    metrics: tuple[GreenMetricColumn, ...]

    def rows(self) -> list[dict[str, object]]:
        """One dict per factory: metric id -> value, base, leading, meets (None when unknown)."""

        def num(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        out: list[dict[str, object]] = []
        for i, site in enumerate(self.sites):
            metrics: dict[str, object] = {}
            for col in self.metrics:
                v, b, ld = num(col.value[i]), num(col.base[i]), num(col.leading[i])
                metrics[col.metric.id] = {
                    "value": v,
                    "unit": col.metric.unit,
                    "base": b,
                    "leading": ld,
                    "meets_base": None if v is None or b is None else bool(col.meets_base[i]),
                    "meets_leading": None
                    if v is None or ld is None
                    else bool(col.meets_leading[i]),
                }
            out.append(
                {
                    "site": site,
                    "district": self.districts[i],
                    "industry": self.industries[i],
                    "rule_set": self.rule_set,
                    "metrics": metrics,
                }
            )
        return out


@dataclass(frozen=True, slots=True, eq=False)
class IndicatorTable:
    cohort_id: str
    cohort_name: str
    year: int
    base_year: int
    config_source: str
    config_version: str
    statistical_rounding: bool
    energy_conversion: Mapping[str, object]
    rows: tuple[IndicatorRow, ...]
    green: GreenFactoryTable
    unplaced_sites: tuple[str, ...]  # cohort sites without any panel row (no district known)
    # each factory as its own group (IndicatorOptions.per_factory), for rankings
    factory_rows: tuple[IndicatorRow, ...] = ()

    def row(self, level: Level, group: str, indicator: str) -> IndicatorRow:
        for r in self.rows:
            if r.level == level and r.group == group and r.indicator == indicator:
                return r
        raise KeyError(f"no row for {level} {group!r}, indicator {indicator!r}")

    def level(self, level: Level) -> list[IndicatorRow]:
        return [r for r in self.rows if r.level == level]


@dataclass(frozen=True, slots=True)
class IndicatorOptions:
    statistical_rounding: bool | None = None  # None: the config's default
    green_rule_set: str | None = None  # None: the config's default_rule_set
    base_year: int | None = None  # None: the cohort's base year
    indicators: tuple[str, ...] | None = None  # None: all of INDICATORS
    library: CoefficientLibrary | None = None  # None: analytics/coefficients.yaml
    per_factory: bool = False  # also every indicator per factory (IndicatorTable.factory_rows)


# ------------------------------------------------------------------------------ evaluation


@functools.lru_cache(maxsize=1)
def _default_library() -> CoefficientLibrary:
    return CoefficientLibrary.load()


@dataclass(frozen=True, slots=True, eq=False)
class _Grouping:
    level: Level
    codes: NDArray[np.int64]  # per member; -1: in no group of this level
    names: tuple[str, ...]


def _districts(panel: Panel, ctx: _Ctx) -> tuple[Obj, tuple[str, ...]]:
    """District per member: the year's row, else the base year's, else the latest row."""
    district = np.full(ctx.m, "", dtype=object)
    member_of_row = _member_index(panel, ctx.members)
    rows = np.flatnonzero(member_of_row >= 0)
    order = rows[np.argsort(panel.year[rows], kind="stable")]
    district[member_of_row[order]] = panel.district[order]
    for y in (ctx.base_year, ctx.year):
        sel = rows[panel.year[rows] == y]
        district[member_of_row[sel]] = panel.district[sel]
    unplaced = tuple(ctx.members[i] for i in np.flatnonzero(district == ""))
    return district, unplaced


def _grouping(level: Level, labels: Obj) -> _Grouping:
    known = labels != ""
    names = sorted(set(labels[known].tolist()))
    lookup = {n: i for i, n in enumerate(names)}
    codes = np.array([lookup.get(x, -1) for x in labels.tolist()], np.int64)
    return _Grouping(level, codes, tuple(str(n) for n in names))


def _gsum(x: F64, mask: Bool, g: _Grouping) -> F64:
    sel = mask & (g.codes >= 0)
    return np.bincount(g.codes[sel], weights=x[sel], minlength=len(g.names)).astype(np.float64)


def _gcount(mask: Bool, g: _Grouping) -> NDArray[np.int64]:
    sel = mask & (g.codes >= 0)
    return np.bincount(g.codes[sel], minlength=len(g.names)).astype(np.int64)


def _missing_by_group(
    members: tuple[str, ...], not_ok: Bool, g: _Grouping
) -> list[tuple[str, ...]]:
    out: list[list[str]] = [[] for _ in g.names]
    for i in np.flatnonzero(not_ok & (g.codes >= 0)).tolist():
        out[g.codes[i]].append(members[i])
    return [tuple(x) for x in out]


def _targets(
    defn: IndicatorDefinition, config: CommissionConfig, value: float | None
) -> tuple[tuple[TargetStatus, ...], int | None]:
    tcfg = config.targets.get(defn.targets_key)
    if tcfg is None:
        return (), None
    out: list[TargetStatus] = []
    for year in sorted(tcfg.by_year):
        tv = tcfg.by_year[year]
        city = config.city_target(defn.targets_key, year)
        target = city.value if city else tv.value
        source = f"{tcfg.source}; city: {city.source}" if city else tcfg.source
        met: bool | None = None
        if target is not None and value is not None:
            met = value >= target if defn.direction == "at_least" else value <= target
        out.append(TargetStatus(year, target, tv.upper, tv.text, source, city is not None, met))
    return tuple(out), tcfg.base_year


def _fmt_inputs(defn: IndicatorDefinition) -> str:
    return ", ".join(defn.inputs) if defn.inputs else "nothing"


def _evaluate(
    defn: IndicatorDefinition, ctx: _Ctx, groupings: Sequence[_Grouping]
) -> list[IndicatorRow]:
    parts = defn.compute(ctx)
    fixed = defn.aggregation in ("decline", "pp_change")
    ok = parts.complete
    if fixed and parts.base_complete is not None:
        ok = ok & parts.base_complete
    # the official CNC rate averages enterprises that have key processes; one without any
    # reported completely (coverage) but has no rate
    has_rate = ok & (parts.denominator > 0)
    rows: list[IndicatorRow] = []
    for g in groupings:
        if defn.per_park is False and g.level == "park":
            continue
        n_all = _gcount(np.ones(ctx.m, bool), g)
        n_ok = _gcount(ok, g)
        missing = _missing_by_group(ctx.members, ~ok, g)
        num = _gsum(np.where(ok, parts.numerator, 0.0), ok, g)
        den = _gsum(np.where(ok, parts.denominator, 0.0), ok, g)
        if fixed:
            assert parts.base_numerator is not None and parts.base_denominator is not None
            num0 = _gsum(np.where(ok, parts.base_numerator, 0.0), ok, g)
            den0 = _gsum(np.where(ok, parts.base_denominator, 0.0), ok, g)
        if defn.aggregation == "mean_of_rates":
            with np.errstate(divide="ignore", invalid="ignore"):
                rates = np.where(has_rate, parts.numerator / parts.denominator, 0.0)
            rate_sum = _gsum(rates, has_rate, g)
            n_rates = _gcount(has_rate, g)
        for gi, name in enumerate(g.names):
            value: float | None = None
            reason: str | None = None
            flags: list[str] = []
            details: dict[str, object] = dict(parts.details)
            if n_ok[gi] == 0 and defn.aggregation != "imported":
                years = f"{ctx.year} and {ctx.base_year}" if fixed else str(ctx.year)
                reason = (
                    f"no factory of {g.level} {name!r} reported every input "
                    f"({_fmt_inputs(defn)}) for {years}"
                )
            elif defn.aggregation == "ratio":
                if den[gi] == 0:
                    reason = f"the sum of the denominator is 0 over {n_ok[gi]} factories"
                else:
                    value = defn.scale * float(num[gi] / den[gi])
                details["numerator"], details["denominator"] = float(num[gi]), float(den[gi])
            elif defn.aggregation == "total":
                value = defn.scale * float(num[gi])
            elif defn.aggregation == "mean_of_rates":
                if n_rates[gi] == 0:
                    reason = f"no factory of {g.level} {name!r} has key-process equipment"
                else:
                    value = defn.scale * float(rate_sum[gi] / n_rates[gi])
                details["enterprises"] = int(n_rates[gi])
            elif defn.aggregation == "pp_change":
                if den[gi] == 0 or den0[gi] == 0:
                    reason = "gross output value sums to 0 in the year or the base year"
                else:
                    rate_t, rate_0 = float(num[gi] / den[gi]), float(num0[gi] / den0[gi])
                    value = defn.scale * (rate_t - rate_0)
                    details["rate_pct"], details["base_rate_pct"] = 100 * rate_t, 100 * rate_0
            elif defn.aggregation == "decline":
                if den[gi] == 0 or den0[gi] == 0:
                    reason = "value added sums to 0 in the year or the base year"
                elif num0[gi] == 0:
                    reason = "the base-year quantity sums to 0: the decline is undefined"
                else:
                    d = intensity_decline(
                        float(num[gi] / den[gi]),
                        float(num0[gi] / den0[gi]),
                        statistical_rounding=ctx.statistical_rounding,
                    )
                    if d.intensity_0 == 0:
                        reason = "the base-year intensity rounds to 0: the decline is undefined"
                    else:
                        value = defn.scale * d.decline
                    details["intensity"] = d.intensity_t
                    details["base_intensity"] = d.intensity_0
                    details["statistical_rounding"] = ctx.statistical_rounding
                details["fixed_panel_factories"] = int(n_ok[gi])
            elif defn.aggregation == "imported":
                flags.append("imported")
                if g.level != "cohort":
                    reason = f"a published city statistic: no {g.level} value"
                elif parts.imported is None:
                    reason = parts.imported_reason
                else:
                    value = parts.imported.value
                    details["imported"] = parts.imported.model_dump(mode="json")
                if defn.inputs:
                    details["cohort_contribution"] = {
                        "sei_value_added_10k_cny": float(num[gi]),
                        "share_of_value_added_pct": float(100 * num[gi] / den[gi])
                        if den[gi]
                        else None,
                        "factories": int(n_ok[gi]),
                    }
            if missing[gi] and defn.inputs:
                # an imported figure is not over the panel; only its cohort contribution is
                imported = defn.aggregation == "imported"
                flags.append("incomplete_contribution" if imported else "incomplete_panel")
            if (
                defn.id == "solid_waste_utilization"
                and value is not None
                and (value < ctx.config.solid_waste_alert_below_pct)
            ):
                flags.append("alert_below_target")
                details["alert_below_pct"] = ctx.config.solid_waste_alert_below_pct
            if defn.source_column:
                src = ctx.t.energy_source if defn.source_column == "energy" else ctx.t.water_source
                sel = ok & (g.codes == gi)
                details["source"] = {
                    "telemetry": int(np.count_nonzero(src[sel] == "telemetry")),
                    "reported": int(np.count_nonzero(src[sel] == "reported")),
                }
            targets, target_base = _targets(defn, ctx.config, value)
            if fixed and target_base is not None and target_base != ctx.base_year:
                flags.append("target_base_year_differs")
            if any(
                t.value is not None
                and ctx.config.targets[defn.targets_key].by_year[t.year].approximate
                for t in targets
            ):
                details["approximate_target"] = True
            coverage = Coverage(
                int(n_all[gi]),
                int(n_ok[gi]),
                missing[gi] if defn.inputs else (),
                ctx.base_year if fixed else None,
            )
            rows.append(
                IndicatorRow(
                    g.level,
                    name,
                    defn.id,
                    defn.seed_number,
                    defn.label_en,
                    defn.label_zh,
                    defn.unit,
                    defn.kind,
                    defn.variant,
                    value,
                    reason,
                    targets,
                    coverage,
                    tuple(flags),
                    details,
                )
            )
    return rows


def _context(
    panel: Panel, config: CommissionConfig, cohort_id: str, year: int, options: IndicatorOptions
) -> _Ctx:
    try:
        cohort = config.cohort(cohort_id)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0]), key="cohorts") from exc
    rounding = (
        config.statistical_rounding
        if options.statistical_rounding is None
        else options.statistical_rounding
    )
    base_year = options.base_year if options.base_year is not None else cohort.base_year
    return _Ctx(
        panel, config, cohort, year, base_year, rounding, options.library or _default_library()
    )


def indicator_table(
    panel: Panel,
    config: CommissionConfig,
    cohort_id: str,
    year: int,
    options: IndicatorOptions | None = None,
) -> IndicatorTable:
    """Every indicator for one cohort and year, per district, per park (indicator 8) and for
    the whole cohort, against the configured targets, with coverage and flags; plus the
    GB/T 36132 metrics per factory."""
    options = options or IndicatorOptions()
    ctx = _context(panel, config, cohort_id, year, options)
    district, unplaced = _districts(panel, ctx)
    groupings = [
        _grouping("district", district),
        _Grouping("cohort", np.zeros(ctx.m, np.int64), (ctx.cohort.id,)),
        _grouping("park", ctx.t.park),
    ]
    defs = (
        INDICATORS
        if options.indicators is None
        else tuple(get_indicator(i) for i in options.indicators)
    )
    rows: list[IndicatorRow] = []
    for defn in defs:
        rows.extend(_evaluate(defn, ctx, groupings))
    factory_rows: list[IndicatorRow] = []
    if options.per_factory:
        # a factory is a group of one: its figure is its own numerator over its own denominator
        by_factory = [_Grouping("factory", np.arange(ctx.m, dtype=np.int64), ctx.members)]
        for defn in defs:
            factory_rows.extend(_evaluate(defn, ctx, by_factory))
    c = ctx.conversion
    return IndicatorTable(
        ctx.cohort.id,
        ctx.cohort.name,
        year,
        ctx.base_year,
        config.source,
        config.version,
        ctx.statistical_rounding,
        {"id": c.id, "convention": c.convention, "year": c.year, "source": c.source},
        tuple(rows),
        _green(ctx, district, options.green_rule_set),
        unplaced,
        tuple(factory_rows),
    )


def rank_factories(
    rows: Sequence[IndicatorRow], indicator_id: str
) -> list[tuple[int | None, IndicatorRow]]:
    """One indicator's factory rows, best first in the indicator's direction (``at_least``:
    highest first; ``at_most``: lowest first). Equal values share a rank (1, 2, 2, 4); a factory
    without a value comes last with rank None and keeps its reason. Ties and the unranked are
    ordered by site key, so the order is stable."""
    defn = get_indicator(indicator_id)
    mine = [r for r in rows if r.level == "factory" and r.indicator == indicator_id]
    sign = -1.0 if defn.direction == "at_least" else 1.0
    valued = sorted(
        (r for r in mine if r.value is not None),
        key=lambda r: (sign * float(r.value or 0), r.group),
    )
    out: list[tuple[int | None, IndicatorRow]] = []
    for i, r in enumerate(valued):
        same = i > 0 and valued[i - 1].value == r.value
        out.append((out[-1][0] if same else i + 1, r))
    out += [(None, r) for r in sorted((r for r in mine if r.value is None), key=lambda r: r.group)]
    return out


def chained_declines(
    panel: Panel,
    config: CommissionConfig,
    cohort_id: str,
    indicator_id: str,
    years: Sequence[int],
    options: IndicatorOptions | None = None,
) -> dict[str, object]:
    """Year-on-year declines of one decline indicator (each on its own fixed panel of two
    consecutive years) for the whole cohort, chained: 1 - prod(1 - d_y)."""
    defn = get_indicator(indicator_id)
    if defn.aggregation != "decline":
        raise ValueError(f"{indicator_id!r} is not a decline indicator")
    options = options or IndicatorOptions()
    annual: dict[int, float | None] = {}
    for prev, cur in itertools.pairwise(years):
        opts = IndicatorOptions(
            options.statistical_rounding, None, prev, (indicator_id,), options.library
        )
        ctx = _context(panel, config, cohort_id, cur, opts)
        cohort = _Grouping("cohort", np.zeros(ctx.m, np.int64), (cohort_id,))
        (row,) = _evaluate(defn, ctx, [cohort])
        annual[cur] = row.value
    known = [v for v in annual.values() if v is not None]
    complete = len(known) == len(annual) and bool(annual)
    return {
        "annual_pct": annual,
        "chained_pct": 100 * chained_decline([v / 100 for v in known]) if complete else None,
        "reason": None if complete else "a year has no decline (see annual_pct)",
    }


def green_factory_metrics(
    panel: Panel,
    config: CommissionConfig,
    cohort_id: str,
    year: int,
    options: IndicatorOptions | None = None,
) -> GreenFactoryTable:
    """GB/T 36132 quantitative metrics per factory of the cohort, against the rule set's base
    and leading values for the factory's industry."""
    options = options or IndicatorOptions()
    ctx = _context(panel, config, cohort_id, year, options)
    district, _ = _districts(panel, ctx)
    return _green(ctx, district, options.green_rule_set)


def _green(ctx: _Ctx, district: Obj, rule_set_id: str | None) -> GreenFactoryTable:
    gf = ctx.config.green_factory
    try:
        rules: GreenRuleSetConfig = gf.rule_set(rule_set_id)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0]), key="green_factory.rule_sets") from exc
    t = ctx.t
    kgce, ok_e = ctx.kgce(t)
    kgco2, ok_c = ctx.kgco2(t, ctx.year)
    gov = t.col("gross_output_value_10k_cny")
    fresh, reused = t.col("fresh_water_m3"), t.col("reused_water_m3")
    util = t.col("waste_utilized_t")
    waste_den = t.col("waste_generated_t") + t.col("waste_prior_stock_utilized_t")
    elec = ctx.conversion.coefficients.get("electricity")
    renew_kgce = t.col("renewable_electricity_kwh") * (elec.value if elec else np.nan)
    land = t.col("industrial_land_km2")

    def ratio(num: F64, den: F64, scale: float = 1.0) -> F64:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = scale * num / den
        return np.where(np.isfinite(out), out, np.nan)

    values = {
        "unit_output_energy": ratio(np.where(ok_e, kgce / 1000.0, np.nan), gov),
        "unit_output_co2": ratio(np.where(ok_c, kgco2 / 1000.0, np.nan), gov),
        "unit_output_water": ratio(fresh, gov),
        "water_reuse_rate": ratio(reused, fresh + reused, 100.0),
        "solid_waste_utilization": ratio(util, waste_den, 100.0),
        "renewable_energy_share": ratio(renew_kgce, np.where(ok_e, kgce, np.nan), 100.0),
        "land_output": ratio(gov, land, 1e-4),
    }
    industries = [gf.industry_of_site.get(s, gf.default_industry) for s in ctx.members]
    unique = sorted(set(industries))
    code = np.array([unique.index(i) for i in industries], np.int64)
    columns: list[GreenMetricColumn] = []
    for metric in GREEN_METRICS:
        per_ind = [rules.industries.get(i, {}).get(metric.id) for i in unique]
        base_by = np.array([np.nan if r is None or r.base is None else r.base for r in per_ind])
        lead_by = np.array(
            [np.nan if r is None or r.leading is None else r.leading for r in per_ind]
        )
        base, lead = base_by[code], lead_by[code]
        v = values[metric.id]
        if metric.direction == "at_least":
            meets_b, meets_l = v >= base, v >= lead
        else:
            meets_b, meets_l = v <= base, v <= lead
        columns.append(GreenMetricColumn(metric, v, base, lead, meets_b, meets_l))
    return GreenFactoryTable(
        rules.id,
        rules.title,
        ctx.year,
        ctx.members,
        tuple(str(d) for d in district),
        tuple(industries),
        tuple(columns),
    )
