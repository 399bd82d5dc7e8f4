"""Labelled KPI results: every figure says what it counts (DOMAIN rule 2).

A ``Kpi`` is a column of values (one per row of the components it was computed from) with its
name, a short label such as ``"in_cycle/PBT"`` and a definition such as ``"APT / PBT"``. A zero
denominator gives NaN (shown as ``null``), never a made-up 0 or 1. Values are never capped; a
``flag`` column marks rows that need a look (e.g. effectiveness above 1.05).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Kpi", "KpiFlag", "safe_ratio"]

F64 = NDArray[np.float64]


def safe_ratio(numerator: F64, denominator: F64) -> F64:
    """numerator / denominator with NaN where the denominator is 0 (no warning, no clamping)."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


@dataclass(frozen=True, slots=True)
class KpiFlag:
    """Rows of a KPI that need a look: a stable ``code`` for programs, a ``reason`` for people."""

    code: str
    reason: str
    mask: NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Kpi:
    """One KPI over many rows."""

    name: str
    label: str
    definition: str
    value: F64
    unit: str = "ratio"
    numerator: F64 | None = None
    denominator: F64 | None = None
    flags: tuple[KpiFlag, ...] = ()

    @classmethod
    def ratio(
        cls,
        name: str,
        label: str,
        definition: str,
        numerator: F64,
        denominator: F64,
        *,
        unit: str = "ratio",
        scale: float = 1.0,
    ) -> Kpi:
        num = np.asarray(numerator, np.float64)
        den = np.asarray(denominator, np.float64)
        return cls(name, label, definition, safe_ratio(num, den) * scale, unit, num, den)

    @property
    def flag(self) -> NDArray[np.bool_] | None:
        """Rows with any flag (None when the KPI has no flag rule that fired anywhere)."""
        if not self.flags:
            return None
        out = np.zeros(len(self.value), bool)
        for f in self.flags:
            out |= f.mask
        return out

    @property
    def flag_reason(self) -> str:
        return "; ".join(f.reason for f in self.flags)

    def flagged(self, flag: NDArray[np.bool_], reason: str, code: str = "flag") -> Kpi:
        """A copy with one more flag (rows where ``flag`` is true)."""
        mask = np.asarray(flag, bool)
        if not mask.any():
            return self
        return Kpi(
            self.name,
            self.label,
            self.definition,
            self.value,
            self.unit,
            self.numerator,
            self.denominator,
            (*self.flags, KpiFlag(code, reason, mask)),
        )

    def flags_at(self, i: int) -> list[dict[str, str]]:
        return [{"code": f.code, "reason": f.reason} for f in self.flags if bool(f.mask[i])]

    def at(self, i: int) -> dict[str, object]:
        """Row ``i`` as a JSON-ready dict (NaN becomes None)."""
        v = float(self.value[i])
        out: dict[str, object] = {
            "label": self.label,
            "definition": self.definition,
            "value": None if math.isnan(v) else v,
            "unit": self.unit,
        }
        if self.numerator is not None and self.denominator is not None:
            num, den = float(self.numerator[i]), float(self.denominator[i])
            out["numerator"] = None if math.isnan(num) else num  # absent (no such meter)
            out["denominator"] = None if math.isnan(den) else den
        flags = self.flags_at(i)
        if flags:
            out["flag"] = "; ".join(f["reason"] for f in flags)
            out["flags"] = flags
        return out
