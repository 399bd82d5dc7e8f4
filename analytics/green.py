"""Energy, carbon, water, waste and commission indicators (DOMAIN sections 5 to 7).

Coefficients and emission factors are data (``coefficients.yaml``, or a file named in kpi.yaml),
loaded into ``CoefficientLibrary``; every result names the set or factor it used, with its year and
source, so a base period and a reporting period can be checked for mixed conventions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from zhizao.config import StrictModel, load_model
from zhizao.errors import ConfigError

__all__ = [
    "DEFAULT_COEFFICIENTS",
    "CoefficientLibrary",
    "ConversionSetConfig",
    "DeclineResult",
    "EmissionFactorConfig",
    "EmissionResult",
    "EnergyBaseline",
    "EnergyResult",
    "WasteResult",
    "chained_decline",
    "check_same_convention",
    "co2_decline_variants",
    "co2_kg",
    "comparable_value_added",
    "comprehensive_energy_kgce",
    "equipment_penetration",
    "intensity_decline",
    "key_process_cnc_rate",
    "per_value_added",
    "solid_waste_utilization",
    "value_added_cny",
    "water_reuse_rate",
]

DEFAULT_COEFFICIENTS = Path(__file__).with_name("coefficients.yaml")
F64 = NDArray[np.float64]
# produced on site from purchased energy, or not energy at all: never added again (DOMAIN 5)
NOT_COUNTED_AS_ENERGY = frozenset({"compressed_air", "chilled_water", "water"})


class CoefficientConfig(StrictModel):
    value: float = Field(gt=0)
    unit: str


class ConversionSetConfig(StrictModel):
    """One versioned set of kgce conversion coefficients."""

    id: str
    convention: Literal["calorific", "equivalent"]
    source: str
    year: int
    kj_per_kgce: float = 29307.0
    coefficients: dict[str, CoefficientConfig]


class EmissionFactorConfig(StrictModel):
    id: str
    medium: str
    value: float = Field(ge=0)
    unit: str
    year: int
    publisher: str


class CoefficientLibrary(StrictModel):
    energy_conversion: list[ConversionSetConfig]
    emission_factors: list[EmissionFactorConfig]

    @classmethod
    def load(cls, path: str | Path | None = None) -> CoefficientLibrary:
        return load_model(cls, path or DEFAULT_COEFFICIENTS)

    def conversion(self, set_id: str) -> ConversionSetConfig:
        for s in self.energy_conversion:
            if s.id == set_id:
                return s
        raise ConfigError(
            f"unknown energy conversion set {set_id!r}",
            key="energy.conversion",
            expected=f"one of {[s.id for s in self.energy_conversion]}",
        )

    def factor(self, factor_id: str) -> EmissionFactorConfig:
        for f in self.emission_factors:
            if f.id == factor_id:
                return f
        raise ConfigError(
            f"unknown emission factor {factor_id!r}",
            key="energy.emission_factors",
            expected=f"one of {[f.id for f in self.emission_factors]}",
        )


@dataclass(frozen=True, slots=True)
class EnergyResult:
    kgce: float
    by_medium_kgce: dict[str, float]
    conversion_set: str
    convention: str
    year: int
    source: str
    label: str = "kgce = sum(quantity_i x coefficient_i) (GB/T 2589)"

    @property
    def tce(self) -> float:
        return self.kgce / 1000.0


def comprehensive_energy_kgce(
    quantities: Mapping[str, float], conversion: ConversionSetConfig
) -> EnergyResult:
    """Comprehensive energy of purchased media; on-site media and water are not counted again."""
    by: dict[str, float] = {}
    for medium, qty in quantities.items():
        if medium in NOT_COUNTED_AS_ENERGY:
            continue
        coef = conversion.coefficients.get(medium)
        if coef is None:
            raise ConfigError(
                f"no kgce coefficient for medium {medium!r} in set {conversion.id!r}",
                expected=f"one of {sorted(conversion.coefficients)}",
            )
        by[medium] = float(qty) * coef.value
    return EnergyResult(
        sum(by.values()),
        by,
        conversion.id,
        conversion.convention,
        conversion.year,
        conversion.source,
    )


@dataclass(frozen=True, slots=True)
class EmissionResult:
    kgco2: float
    by_medium_kgco2: dict[str, float]
    # medium -> factor id, value, unit, year, publisher (stored with every emission result)
    factors: dict[str, dict[str, object]]
    label: str = "kgCO2 = sum(quantity_i x EF_i)"


def co2_kg(
    quantities: Mapping[str, float], factors: Sequence[EmissionFactorConfig]
) -> EmissionResult:
    """Emissions of fuels and purchased electricity/heat with the given factors (one per medium)."""
    by_medium = {f.medium: f for f in factors}
    if len(by_medium) != len(factors):
        raise ConfigError("two emission factors for the same medium", expected="one per medium")
    by: dict[str, float] = {}
    used: dict[str, dict[str, object]] = {}
    for medium, qty in quantities.items():
        if medium in NOT_COUNTED_AS_ENERGY or (float(qty) == 0.0 and medium not in by_medium):
            continue
        f = by_medium.get(medium)
        if f is None:
            raise ConfigError(
                f"no emission factor configured for medium {medium!r}",
                key="energy.emission_factors",
                expected=f"a factor for {medium}",
            )
        by[medium] = float(qty) * f.value
        used[medium] = {
            "id": f.id,
            "value": f.value,
            "unit": f.unit,
            "year": f.year,
            "publisher": f.publisher,
        }
    return EmissionResult(sum(by.values()), by, used)


def value_added_cny(
    gross_output_cny: float, intermediate_input_cny: float, vat_payable_cny: float
) -> float:
    """Enterprise value added, production method (from periodic reports)."""
    return gross_output_cny - intermediate_input_cny + vat_payable_cny


def comparable_value_added(va_current: float | F64, price_index: float | F64) -> F64:
    """Value added at comparable (base-year) prices."""
    return np.asarray(va_current, np.float64) / np.asarray(price_index, np.float64)


def per_value_added(quantity: float | F64, value_added_10k_cny: float | F64) -> F64:
    """Intensity: quantity (tce, tCO2, m3) per 10,000 CNY of value added, sum/sum over arrays."""
    q = np.asarray(quantity, np.float64)
    va = np.asarray(value_added_10k_cny, np.float64)
    return np.asarray(q.sum() / va.sum() if q.ndim else q / va, np.float64)


@dataclass(frozen=True, slots=True)
class DeclineResult:
    decline: float  # 0.271 means 27.1 %
    intensity_t: float
    intensity_0: float
    statistical_rounding: bool
    label: str = "1 - (X_t/VA_t) / (X_0/VA_0)"

    @property
    def percent(self) -> float:
        return 100.0 * self.decline


def intensity_decline(
    intensity_t: float, intensity_0: float, *, statistical_rounding: bool = False, decimals: int = 4
) -> DeclineResult:
    """Decline of an intensity vs the base year. Statistics offices round each intensity to
    ``decimals`` before dividing; ``statistical_rounding`` reproduces that."""
    it, i0 = float(intensity_t), float(intensity_0)
    if statistical_rounding:
        it, i0 = round(it, decimals), round(i0, decimals)
    if i0 == 0:
        raise ValueError("base-year intensity is 0: the decline is undefined")
    return DeclineResult(1.0 - it / i0, it, i0, statistical_rounding)


def chained_decline(annual_declines: Sequence[float] | F64) -> float:
    """Declines over several years chain multiplicatively: 1 - prod(1 - d_y)."""
    d = np.asarray(annual_declines, np.float64)
    return float(1.0 - np.prod(1.0 - d))


@dataclass(frozen=True, slots=True)
class WasteResult:
    rate: float
    target: float
    alert: bool
    label: str = "utilized / (generated + prior-year stock utilized)"


def solid_waste_utilization(
    utilized_t: float | F64,
    generated_t: float | F64,
    prior_stock_utilized_t: float | F64 = 0.0,
    *,
    target: float = 0.97,
) -> WasteResult:
    """Solid-waste comprehensive utilization rate (sum/sum over factories); alert below target."""
    u = float(np.sum(utilized_t))
    den = float(np.sum(generated_t) + np.sum(prior_stock_utilized_t))
    rate = u / den if den else float("nan")
    return WasteResult(rate, target, bool(den and rate < target))


def water_reuse_rate(reused_m3: float | F64, fresh_intake_m3: float | F64) -> float:
    """reused / (fresh intake + reused)."""
    r = float(np.sum(reused_m3))
    den = r + float(np.sum(fresh_intake_m3))
    return r / den if den else float("nan")


@dataclass(frozen=True, slots=True)
class EnergyBaseline:
    """ISO 50006 regression baseline E_expected = a + b x Q (+ c x degree-days)."""

    intercept: float
    per_unit: float
    per_degree_day: float = 0.0
    r2: float = float("nan")

    @classmethod
    def fit(cls, energy: F64, production: F64, degree_days: F64 | None = None) -> EnergyBaseline:
        e = np.asarray(energy, np.float64)
        cols = [np.ones_like(e), np.asarray(production, np.float64)]
        if degree_days is not None:
            cols.append(np.asarray(degree_days, np.float64))
        x = np.column_stack(cols)
        if len(e) < x.shape[1] + 1:
            raise ValueError(f"baseline needs at least {x.shape[1] + 1} periods, got {len(e)}")
        coef, *_ = np.linalg.lstsq(x, e, rcond=None)
        resid = e - x @ coef
        ss_tot = float(((e - e.mean()) ** 2).sum())
        r2 = 1.0 - float((resid**2).sum()) / ss_tot if ss_tot else float("nan")
        return cls(
            float(coef[0]), float(coef[1]), float(coef[2]) if degree_days is not None else 0.0, r2
        )

    def expected(self, production: float | F64, degree_days: float | F64 = 0.0) -> F64:
        q = np.asarray(production, np.float64)
        return np.asarray(
            self.intercept + self.per_unit * q + self.per_degree_day * np.asarray(degree_days),
            np.float64,
        )

    def enpi_ratio(
        self, actual: float | F64, production: float | F64, degree_days: float | F64 = 0.0
    ) -> F64:
        """EnPI = actual / expected (below 1 is better than the baseline)."""
        return np.asarray(actual, np.float64) / self.expected(production, degree_days)

    def savings(
        self, actual: float | F64, production: float | F64, degree_days: float | F64 = 0.0
    ) -> F64:
        return self.expected(production, degree_days) - np.asarray(actual, np.float64)


def check_same_convention(base: EnergyResult, current: EnergyResult) -> None:
    """Refuse a comparison of periods converted with different conventions (DOMAIN section 5)."""
    if base.convention != current.convention:
        raise ConfigError(
            "base and reporting period use different energy conversion conventions",
            key="energy.conversion",
            expected=f"the same convention in both periods (base {base.conversion_set!r} is "
            f"{base.convention}, reporting {current.conversion_set!r} is {current.convention})",
        )


def co2_decline_variants(
    quantities_t: Mapping[str, float],
    va_t_10k_cny: float,
    quantities_0: Mapping[str, float],
    va_0_10k_cny: float,
    factors_t: Sequence[EmissionFactorConfig],
    factors_0: Sequence[EmissionFactorConfig],
    *,
    statistical_rounding: bool = False,
) -> dict[str, DeclineResult]:
    """CO2-intensity decline with the base-year factors in both periods (``fixed_factor``: shows
    what the factory changed) and with each period's own factors (``current_factor``)."""
    base = co2_kg(quantities_0, factors_0).kgco2 / 1000.0 / va_0_10k_cny
    fixed = co2_kg(quantities_t, factors_0).kgco2 / 1000.0 / va_t_10k_cny
    current = co2_kg(quantities_t, factors_t).kgco2 / 1000.0 / va_t_10k_cny
    return {
        "fixed_factor": intensity_decline(fixed, base, statistical_rounding=statistical_rounding),
        "current_factor": intensity_decline(
            current, base, statistical_rounding=statistical_rounding
        ),
    }


def equipment_penetration(
    digitally_controlled: Sequence[bool],
    networked: Sequence[bool],
    original_value_cny: Sequence[float | None],
) -> dict[str, dict[str, object]]:
    """Intelligent-equipment penetration (operational definition, DOMAIN section 7): digitally
    controlled AND networked equipment / all equipment, by count and by original value."""
    smart = np.asarray(digitally_controlled, bool) & np.asarray(networked, bool)
    value = np.array([np.nan if v is None else v for v in original_value_cny], np.float64)
    known = ~np.isnan(value)
    return {
        "by_count": {
            "label": "digitally controlled and networked equipment / all equipment (count)",
            "value": float(smart.mean()) if smart.size else None,
        },
        "by_value": {
            "label": "original value of digitally controlled and networked equipment / all (known values)",
            "value": float(value[known & smart].sum() / value[known].sum())
            if value[known].sum()
            else None,
            "equipment_without_value": int((~known).sum()),
        },
    }


def key_process_cnc_rate(
    nc_key_equipment: Sequence[int] | F64, key_equipment: Sequence[int] | F64
) -> dict[str, dict[str, object]]:
    """CNC rate of key processes over enterprises, both variants labelled (DOMAIN section 7).

    The official regional statistic is the mean of enterprise rates; sum/sum is shown next to it.
    """
    nc = np.asarray(nc_key_equipment, np.float64)
    total = np.asarray(key_equipment, np.float64)
    has = total > 0
    rates = nc[has] / total[has]
    return {
        "official_mean_of_rates": {
            "label": "mean(NC key equipment / key equipment) over enterprises (official method)",
            "value": float(rates.mean()) if rates.size else None,
            "enterprises": int(has.sum()),
        },
        "sum_over_sum": {
            "label": "sum(NC key equipment) / sum(key equipment)",
            "value": float(nc.sum() / total.sum()) if total.sum() else None,
            "numerator": float(nc.sum()),
            "denominator": float(total.sum()),
        },
    }
