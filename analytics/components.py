"""KPI *components*: the times, counts and quantities every ratio is built from.

Ratios are never stored or summed. A row of ``Components`` is one work unit (machine, line, ...)
over one window; rolling up is a plain column sum (``sum_by``) and ratios are recomputed from the
summed components (DOMAIN rule 0). These are also the fields of the ``kpi_*`` measurements.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray

from zhizao.schema import COMPONENT_FIELDS as SCHEMA_FIELDS

__all__ = ["COMPONENT_FIELDS", "Components", "group_index", "target_or_none"]

F64 = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Components:
    """Equal-length float64 columns, one row per work unit and window. Times in seconds."""

    calendar_s: F64  # window length (calendar time)
    pot_s: F64  # planned operation time (shift calendar)
    planned_down_s: F64  # breaks, planned maintenance inside POT
    pbt_s: F64  # POT - planned down
    apt_s: F64  # IN_CYCLE inside PBT
    aust_s: F64  # SETUP inside PBT
    adet_s: F64  # DELAY + NO_DATA inside PBT
    adet_minor_s: F64  # part of ADET in stops shorter than the micro-stop threshold
    adet_no_data_s: F64  # part of ADET without data (data-quality flag)
    adot_s: F64  # IDLE inside PBT
    in_cycle_s: F64  # IN_CYCLE anywhere in the window (calendar)
    in_cycle_pot_s: F64  # IN_CYCLE inside POT
    cutting_s: F64  # cutting (spindle) anywhere in the window
    cutting_pot_s: F64
    cutting_pbt_s: F64
    aoet_s: F64  # order execution time (AUBT when no order data is published)
    pq: F64  # produced quantity
    gq: F64  # good quantity (first pass)
    sq: F64  # scrap
    rq: F64  # rework
    pri_pq_s: F64  # sum of PRI x produced item (per product)
    pri_gq_s: F64  # sum of PRI x good item
    pri_startup_s: F64  # PRI x start-up rejects (Nakajima start-up yield loss)
    kwh: F64  # electricity
    kgce: F64  # comprehensive energy
    kgco2: F64  # emissions
    # ideal quantity in PBT with a known product (integral of 1/PRI in force) and PBT without a
    # known product; the target is shown only where the second is 0 (never an invented number)
    target_q: F64
    pbt_no_product_s: F64
    # parts counted while the machine's energy meter has data (energy per part divides by these)
    pq_metered: F64
    gq_metered: F64
    # good parts with a known unit value, and their output value in CNY (all, and metered)
    gq_valued: F64
    output_value_cny: F64
    output_value_metered_cny: F64
    # APT, AUST and minor stops while no product (PRI) is known: left out of the PRI-based KPIs'
    # denominators with pbt_no_product_s
    apt_no_product_s: F64
    aust_no_product_s: F64
    adet_minor_no_product_s: F64

    def __post_init__(self) -> None:
        n = len(self.calendar_s)
        for f in fields(self):
            col = getattr(self, f.name)
            if col.shape != (n,):
                raise ValueError(f"Components.{f.name} has shape {col.shape}, expected ({n},)")

    def __len__(self) -> int:
        return len(self.calendar_s)

    @classmethod
    def zeros(cls, n: int) -> Components:
        return cls(**{name: np.zeros(n, np.float64) for name in COMPONENT_FIELDS})

    @classmethod
    def from_columns(
        cls, columns: Mapping[str, Sequence[float] | F64], n: int | None = None
    ) -> Components:
        """Build from a partial mapping; missing components are zero. Unknown names are refused."""
        unknown = set(columns) - set(COMPONENT_FIELDS)
        if unknown:
            raise ValueError(f"unknown KPI components {sorted(unknown)}; known: {COMPONENT_FIELDS}")
        if n is None:
            n = len(next(iter(columns.values()))) if columns else 0
        out = {name: np.zeros(n, np.float64) for name in COMPONENT_FIELDS}
        for name, col in columns.items():
            out[name] = np.asarray(col, dtype=np.float64).reshape(n).copy()
        return cls(**out)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, float]]) -> Components:
        rows = list(rows)
        return cls.from_columns(
            {k: [r.get(k, 0.0) for r in rows] for k in COMPONENT_FIELDS}, len(rows)
        )

    def column(self, name: str) -> F64:
        col: F64 = getattr(self, name)
        return col

    def columns(self) -> dict[str, F64]:
        return {name: getattr(self, name) for name in COMPONENT_FIELDS}

    def row(self, i: int) -> dict[str, float]:
        return {name: float(getattr(self, name)[i]) for name in COMPONENT_FIELDS}

    def take(self, idx: NDArray[np.integer] | NDArray[np.bool_]) -> Components:
        return Components(**{name: getattr(self, name)[idx] for name in COMPONENT_FIELDS})

    def sum_by(self, group: NDArray[np.integer], n_groups: int) -> Components:
        """Roll rows up into ``n_groups`` groups: every component is summed (sum/sum later)."""
        g = np.asarray(group, dtype=np.int64)
        return Components(
            **{
                name: np.bincount(g, weights=getattr(self, name), minlength=n_groups)[
                    :n_groups
                ].astype(np.float64)
                for name in COMPONENT_FIELDS
            }
        )

    def total(self) -> Components:
        return self.sum_by(np.zeros(len(self), np.int64), 1)

    @classmethod
    def concat(cls, parts: Sequence[Components]) -> Components:
        if not parts:
            return cls.zeros(0)
        return cls(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in COMPONENT_FIELDS})


COMPONENT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Components))
if COMPONENT_FIELDS != SCHEMA_FIELDS:  # pragma: no cover - one vocabulary, checked at import
    raise ImportError(
        f"analytics.Components fields {COMPONENT_FIELDS} differ from zhizao.schema {SCHEMA_FIELDS}"
    )


def target_or_none(c: Components) -> F64:
    """The target quantity per row, NaN (null) where it would be an invented number.

    ``target_q`` (ideal quantity = integral of 1/PRI over PBT) is shown only where there is
    planned busy time and a known product (a PRI) throughout it: ``pbt_s > 0`` and
    ``pbt_no_product_s == 0``. Rows are components, so a roll-up (``sum_by``) first and this after.
    """
    ok = (c.pbt_s > 0) & (c.pbt_no_product_s == 0)
    out: F64 = np.where(ok, c.target_q, np.nan)
    return out


def group_index(keys: Sequence[object]) -> tuple[NDArray[np.int64], list[object]]:
    """Dense group ids for a key per row (e.g. the line of each machine) and the group keys."""
    uniq: dict[object, int] = {}
    ids = np.fromiter((uniq.setdefault(k, len(uniq)) for k in keys), np.int64, len(keys))
    return ids, list(uniq)
