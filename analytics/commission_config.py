"""The commission's data: cohorts, targets, imported statistics, factor choices, green-factory rules.

All of it is data with a source (DOMAIN sections 6 and 7): the plan's targets for 2020 and 2025,
the targets the city sets for the binding indicators 9 and 10, the published city statistics the
platform imports (indicator 1's SEI share of GDP, indicator 6's quality index), the emission-factor
set of each year (for the fixed-factor and current-factor CO2 variants), and the GB/T 36132 rule
sets with base and leading values per industry. One YAML document, with a ``source`` and a
``version``; ``analytics/commission.sample.yaml`` is a commented example a test loads.

Units of targets and imported values are the indicator's display unit (``%`` as percent: 1.7
means 1.7 %; a decline of 20 % is 20.0).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from analytics.green import EmissionFactorConfig
from zhizao.config import StrictModel, load_model, parse_model

__all__ = [
    "DEFAULT_SAMPLE",
    "CityTargetConfig",
    "Co2Config",
    "CohortConfig",
    "CommissionConfig",
    "GreenFactoryConfig",
    "GreenMetricRuleConfig",
    "GreenRuleSetConfig",
    "ImportedValueConfig",
    "IndicatorTargetConfig",
    "TargetValueConfig",
    "load_commission_config",
    "parse_commission_config",
]

DEFAULT_SAMPLE = Path(__file__).with_name("commission.sample.yaml")
TargetKind = Literal["indicative", "binding"]


class CohortConfig(StrictModel):
    """A chosen set of factories followed together (site keys of the site model / API)."""

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    sites: list[str] = Field(min_length=1)
    base_year: int = Field(2015, ge=1990, le=2100)

    @model_validator(mode="after")
    def _unique_sites(self) -> CohortConfig:
        seen: set[str] = set()
        for s in self.sites:
            if s in seen:
                raise ValueError(f"site {s!r} is listed twice in cohort {self.id!r}")
            seen.add(s)
        return self


class TargetValueConfig(StrictModel):
    """One year's target. ``value`` None: qualitative (``lead nationally``) or set by the city."""

    value: float | None = None
    upper: float | None = None  # a range such as "+1 to 1.5 pp": value is the lower end
    approximate: bool = False  # the plan says "about" (左右)
    text: str = Field(min_length=1)  # the plan's wording


class IndicatorTargetConfig(StrictModel):
    """The plan's targets for one indicator (keyed by indicator id in ``targets``)."""

    seed_number: int | None = Field(None, ge=1, le=12)
    kind: TargetKind
    source: str = Field(min_length=1)
    base_year: int | None = None  # declines and +pp targets are "vs" this year
    by_year: dict[int, TargetValueConfig] = Field(default_factory=dict)


class CityTargetConfig(StrictModel):
    """A target the city set for a binding indicator (9, 10): 完成本市下达目标."""

    year: int
    value: float
    base_year: int
    source: str = Field(min_length=1)


class ImportedValueConfig(StrictModel):
    """A published statistic the platform does not compute (indicators 1 and 6)."""

    year: int
    value: float
    unit: str
    source: str = Field(min_length=1)
    published: date | None = None


class Co2Config(StrictModel):
    """Emission factors per year: the ids (``analytics/coefficients.yaml`` or ``extra_factors``)
    of one factor per medium. A year without its own set uses the nearest earlier year's set (the
    factor's own data year is shown with every result)."""

    factor_sets: dict[int, list[str]] = Field(min_length=1)
    extra_factors: list[EmissionFactorConfig] = Field(default_factory=list)
    default_variant: Literal["fixed_factor", "current_factor"] = "fixed_factor"


class GreenMetricRuleConfig(StrictModel):
    """Base (qualifying) and leading value of one GB/T 36132 metric for one industry."""

    base: float | None = None
    leading: float | None = None
    source: str = Field(min_length=1)


class GreenRuleSetConfig(StrictModel):
    """One edition of GB/T 36132 with its configured values per industry and metric id."""

    id: Literal["GBT36132-2018", "GBT36132-2025"]
    title: str
    effective_from: date
    effective_until: date | None = None
    industries: dict[str, dict[str, GreenMetricRuleConfig]] = Field(default_factory=dict)


class GreenFactoryConfig(StrictModel):
    default_rule_set: Literal["GBT36132-2018", "GBT36132-2025"]
    rule_sets: list[GreenRuleSetConfig] = Field(min_length=1)
    industry_of_site: dict[str, str] = Field(default_factory=dict)
    default_industry: str = "general"

    @model_validator(mode="after")
    def _known_default(self) -> GreenFactoryConfig:
        ids = [r.id for r in self.rule_sets]
        if len(set(ids)) != len(ids):
            raise ValueError("a green-factory rule set id is listed twice")
        if self.default_rule_set not in ids:
            raise ValueError(f"default_rule_set {self.default_rule_set!r} is not in rule_sets")
        return self

    def rule_set(self, rule_set_id: str | None = None) -> GreenRuleSetConfig:
        wanted = rule_set_id or self.default_rule_set
        for r in self.rule_sets:
            if r.id == wanted:
                return r
        raise KeyError(f"unknown green-factory rule set {wanted!r}")


class CommissionConfig(StrictModel):
    """The whole commission document (one version of it)."""

    source: str = Field(min_length=1)
    version: str = Field(min_length=1)
    energy_conversion: str = "GBT2589-calorific"
    statistical_rounding: bool = False
    solid_waste_alert_below_pct: float = Field(97.0, gt=0, le=100)
    cohorts: list[CohortConfig] = Field(min_length=1)
    targets: dict[str, IndicatorTargetConfig] = Field(default_factory=dict)
    city_targets: dict[str, list[CityTargetConfig]] = Field(default_factory=dict)
    imported: dict[str, list[ImportedValueConfig]] = Field(default_factory=dict)
    co2: Co2Config
    green_factory: GreenFactoryConfig

    @model_validator(mode="after")
    def _consistent(self) -> CommissionConfig:
        ids = [c.id for c in self.cohorts]
        if len(set(ids)) != len(ids):
            raise ValueError("a cohort id is listed twice")
        for name, entries in self.city_targets.items():
            years = [e.year for e in entries]
            if len(set(years)) != len(years):
                raise ValueError(f"city_targets.{name} has two targets for the same year")
        for name, values in self.imported.items():
            years = [v.year for v in values]
            if len(set(years)) != len(years):
                raise ValueError(f"imported.{name} has two values for the same year")
        return self

    def cohort(self, cohort_id: str) -> CohortConfig:
        for c in self.cohorts:
            if c.id == cohort_id:
                return c
        raise KeyError(
            f"unknown cohort {cohort_id!r}; known: {', '.join(c.id for c in self.cohorts)}"
        )

    def imported_value(self, name: str, year: int) -> ImportedValueConfig | None:
        for v in self.imported.get(name, ()):
            if v.year == year:
                return v
        return None

    def city_target(self, indicator_id: str, year: int) -> CityTargetConfig | None:
        for t in self.city_targets.get(indicator_id, ()):
            if t.year == year:
                return t
        return None

    def factor_set_year(self, year: int) -> int:
        """The year whose factor set applies to ``year`` (nearest configured year not after it)."""
        earlier = [y for y in self.co2.factor_sets if y <= year]
        if not earlier:
            raise KeyError(
                f"no emission-factor set for {year} or earlier; configured: "
                f"{sorted(self.co2.factor_sets)}"
            )
        return max(earlier)


def parse_commission_config(data: Any, *, file: str | None = None) -> CommissionConfig:
    """Validate a decoded document (e.g. from the API); a ``ConfigError`` names the key."""
    return parse_model(CommissionConfig, data, file=file)


def load_commission_config(path: str | Path = DEFAULT_SAMPLE) -> CommissionConfig:
    """Read and validate a commission YAML document."""
    return load_model(CommissionConfig, path)
