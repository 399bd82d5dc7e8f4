"""An independent pandas implementation of the seed's 12 indicators (DOMAIN section 6).

The commission benchmark's in-run baseline, and a cross-check of ``analytics.indicators`` in the
tests: plain ``groupby(...).sum()`` over a long DataFrame (one row per site and year), written
from DOMAIN.md without reusing the numpy code. Indicators 1 and 6 are published city values;
for 1 the baseline gives the cohort's SEI share of value added (``sei_contribution``), for 6
nothing.

``seed_indicators`` returns ``{(level, group, indicator_id): value or None}`` for the levels
``district``, ``cohort`` and (indicator 8) ``park``; ``compare`` lists the differences to an
``IndicatorTable``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ENERGY_COLUMNS", "compare", "panel_frame", "seed_indicators", "table_parameters"]

ENERGY_COLUMNS = (
    "electricity_kwh",
    "natural_gas_m3",
    "diesel_kg",
    "gasoline_kg",
    "steam_kg",
    "heat_mj",
)
MEDIUM = {
    "electricity_kwh": "electricity",
    "natural_gas_m3": "natural_gas",
    "diesel_kg": "diesel",
    "gasoline_kg": "gasoline",
    "steam_kg": "steam",
    "heat_mj": "heat",
}
Key = tuple[str, str, str]


def panel_frame(panel: Any) -> pd.DataFrame:
    """An ``analytics.indicators.Panel`` as a DataFrame (the data only, no computation)."""
    data: dict[str, Any] = {
        "site": panel.site.astype(str),
        "district": panel.district.astype(str),
        "park": panel.park.astype(str),
        "year": panel.year,
    }
    data.update({k: v for k, v in panel.columns.items()})
    return pd.DataFrame(data)


def table_parameters(config: Any, cohort_id: str, year: int) -> dict[str, Any]:
    """Coefficients and factors of a commission config, resolved as plain numbers."""
    from analytics.green import CoefficientLibrary

    lib = CoefficientLibrary.load()
    conv = lib.conversion(config.energy_conversion)
    cohort = config.cohort(cohort_id)
    extra = {f.id: f for f in config.co2.extra_factors}

    def factors(y: int) -> dict[str, float]:
        set_year = max(k for k in config.co2.factor_sets if k <= y)
        out = {}
        for fid in config.co2.factor_sets[set_year]:
            f = extra.get(fid) or lib.factor(fid)
            out[f.medium] = f.value
        return out

    return {
        "members": list(cohort.sites),
        "year": year,
        "base_year": cohort.base_year,
        "kgce": {m: c.value for m, c in conv.coefficients.items()},
        "kgco2_year": factors(year),
        "kgco2_base": factors(cohort.base_year),
        "statistical_rounding": config.statistical_rounding,
        "cohort_id": cohort_id,
    }


def _groups(
    df: pd.DataFrame, cols: Sequence[str], cohort_id: str, by: str = "district"
) -> dict[tuple[str, str], pd.Series]:
    sums = df.groupby(by)[list(cols)].sum()
    out = {(by, str(g)): sums.loc[g] for g in sums.index if str(g) != ""}
    out[("cohort", cohort_id)] = df[list(cols)].sum()
    return out


def seed_indicators(
    df: pd.DataFrame,
    *,
    members: Sequence[str],
    year: int,
    base_year: int,
    kgce: Mapping[str, float],
    kgco2_year: Mapping[str, float],
    kgco2_base: Mapping[str, float],
    statistical_rounding: bool = False,
    cohort_id: str = "cohort",
) -> dict[Key, float | None]:
    df = df[df["site"].isin(list(members))].copy()
    energy_cols = [c for c in ENERGY_COLUMNS if c in df.columns]
    for c in ("value_added_comparable_10k_cny", "price_index"):
        if c not in df.columns:
            df[c] = np.nan
    df["va_comp"] = df["value_added_comparable_10k_cny"].where(
        df["value_added_comparable_10k_cny"].notna(),
        df["value_added_current_10k_cny"] / df["price_index"],
    )
    df["energy_ok"] = df[energy_cols].notna().all(axis=1) if energy_cols else False
    df["tce"] = sum(df[c].fillna(0) * kgce[MEDIUM[c]] for c in energy_cols) / 1000.0
    cur_rows = (df["year"] == year).to_numpy()
    df["tco2_cur"] = 0.0
    df["tco2_fix"] = 0.0
    for c in energy_cols:
        q = df[c].fillna(0.0).to_numpy()
        f_base = kgco2_base.get(MEDIUM[c], 0.0)
        f_cur = np.where(cur_rows, kgco2_year.get(MEDIUM[c], 0.0), f_base)
        df["tco2_fix"] += q * f_base / 1000.0
        df["tco2_cur"] += q * f_cur / 1000.0
    t = df[df["year"] == year]
    b = df[df["year"] == base_year]
    out: dict[Key, float | None] = {}

    def ratio(
        ind: str,
        num: str,
        den: str,
        scale: float,
        extra_cols: Sequence[str] = (),
        by: str = "district",
        den_add: str | None = None,
    ) -> None:
        cols = [num, den, *extra_cols] + ([den_add] if den_add else [])
        rows = t[t[cols].notna().all(axis=1)]
        for (lvl, g), s in _groups(rows, cols, cohort_id, by).items():
            d = s[den] + (s[den_add] if den_add else 0.0)
            out[(lvl, g, ind)] = scale * s[num] / d if d != 0 else None

    ratio("rd_intensity", "rd_spend_10k_cny", "main_business_revenue_10k_cny", 100.0)
    ratio(
        "invention_patents_per_revenue",
        "valid_invention_patents",
        "main_business_revenue_10k_cny",
        1e4,
    )
    ratio("it_intensity", "it_spend_10k_cny", "main_business_revenue_10k_cny", 100.0)
    ratio("labour_productivity", "value_added_current_10k_cny", "average_headcount", 1.0)
    for by in ("district", "park"):
        ratio("land_output", "gross_output_value_10k_cny", "industrial_land_km2", 1e-4, by=by)
    ratio(
        "solid_waste_utilization",
        "waste_utilized_t",
        "waste_generated_t",
        100.0,
        den_add="waste_prior_stock_utilized_t",
    )
    ratio("sei_contribution", "sei_value_added_10k_cny", "value_added_current_10k_cny", 100.0)

    def fixed(cols_ok: Sequence[str], extra_ok: str | None = None) -> pd.DataFrame:
        def ok(frame: pd.DataFrame) -> pd.Series:
            m = frame[list(cols_ok)].notna().all(axis=1)
            return m & frame[extra_ok] if extra_ok else m

        tt, bb = t[ok(t)], b[ok(b)]
        return tt.merge(bb, on="site", suffixes=("", "_0"))

    def rnd(x: float) -> float:
        return round(x, 4) if statistical_rounding else x

    def decline(ind: str, frame: pd.DataFrame, q: str, q0: str) -> None:
        cols = [q, "va_comp", q0, "va_comp_0"]
        for key, s in _groups(frame, cols, cohort_id).items():
            if s["va_comp"] == 0 or s["va_comp_0"] == 0 or s[q0] == 0:
                out[(*key, ind)] = None
                continue
            it, i0 = rnd(s[q] / s["va_comp"]), rnd(s[q0] / s["va_comp_0"])
            out[(*key, ind)] = 100.0 * (1.0 - it / i0) if i0 else None

    fe = fixed(["va_comp"], "energy_ok")
    decline("energy_intensity_decline", fe, "tce", "tce_0")
    decline("co2_intensity_decline_fixed_factor", fe, "tco2_fix", "tco2_fix_0")
    decline("co2_intensity_decline_current_factor", fe, "tco2_cur", "tco2_cur_0")
    if "fresh_water_m3" in df.columns:
        fw = fixed(["va_comp", "fresh_water_m3"])
        decline("water_intensity_decline", fw, "fresh_water_m3", "fresh_water_m3_0")
    fv = fixed(["value_added_current_10k_cny", "gross_output_value_10k_cny"])
    cols = [
        "value_added_current_10k_cny",
        "gross_output_value_10k_cny",
        "value_added_current_10k_cny_0",
        "gross_output_value_10k_cny_0",
    ]
    for key, s in _groups(fv, cols, cohort_id).items():
        if s[cols[1]] == 0 or s[cols[3]] == 0:
            out[(*key, "va_rate_change")] = None
        else:
            out[(*key, "va_rate_change")] = 100.0 * (
                s[cols[0]] / s[cols[1]] - s[cols[2]] / s[cols[3]]
            )
    return out


def compare(table: Any, baseline: Mapping[Key, float | None], rel: float = 1e-9) -> list[str]:
    """Differences between an ``IndicatorTable`` and the baseline (empty: equal)."""
    problems: list[str] = []
    computed = {ind for (_, _, ind) in baseline}
    for r in table.rows:
        key = (r.level, r.group, r.indicator)
        if r.indicator in computed and r.value is not None and key not in baseline:
            problems.append(f"{r.level} {r.group} {r.indicator}: not in the baseline")
    for (level, group, ind), expected in baseline.items():
        if ind == "sei_contribution":
            row = table.row(level, group, "sei_va_share_gdp")
            got = row.details.get("cohort_contribution", {}).get("share_of_value_added_pct")
        else:
            try:
                got = table.row(level, group, ind).value
            except KeyError:
                problems.append(f"{level} {group} {ind}: missing in the table")
                continue
        if expected is None or got is None:
            if expected is not got:
                problems.append(f"{level} {group} {ind}: table {got}, baseline {expected}")
        elif not math.isclose(got, expected, rel_tol=rel, abs_tol=1e-12):
            problems.append(f"{level} {group} {ind}: table {got!r}, baseline {expected!r}")
    return problems
