"""Validation of one report (pure: no database, ``today`` is injected).

``validate_report`` returns the cleaned values (numbers as ``int``/``float``, text stripped) and
every field-level error and warning at once, each naming its field and saying in one sentence
what to fix. ``month_sum_warnings`` compares twelve monthly reports with the annual one.

Rules: the period is ``YYYY`` (annual) or ``YYYY-MM`` (monthly) and has started by ``today``;
unknown fields and fields of the other kind are refused; required fields (and one of the
price index or the comparable-price value added); numbers only, finite, at least the field's
minimum, whole where the field is an integer; a unit sent by the client must be the catalog's;
the value-added identity VA = GOV - intermediate input + VAT within 0.5 (10k CNY) when all
four are given; equipment sub-counts at most their totals.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from api.reports.fields import (
    AT_MOST,
    FIELDS_BY_ID,
    ONE_OF_REQUIRED,
    UNIT_ALIASES,
    Kind,
    ReportField,
)

__all__ = [
    "MONTH_SUM_TOLERANCE",
    "VA_TOLERANCE_10K_CNY",
    "FieldIssue",
    "Period",
    "Validation",
    "Value",
    "month_sum_warnings",
    "parse_period",
    "validate_report",
]

Value = int | float | str
VA_TOLERANCE_10K_CNY = 0.5
MONTH_SUM_TOLERANCE = 0.005  # relative to the annual figure
_PERIOD = re.compile(r"^(\d{4})(?:-(\d{2}))?$")
VA, GOV, II, VAT = (
    "value_added_current_10k_cny",
    "gross_output_value_10k_cny",
    "intermediate_input_10k_cny",
    "vat_payable_10k_cny",
)


@dataclass(frozen=True, slots=True)
class FieldIssue:
    """An error or warning about one field (``field`` may be ``period``, ``reason``, ``units``)."""

    field: str
    message: str
    code: str = "value_error"

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "code": self.code}


@dataclass(frozen=True, slots=True)
class Period:
    """A report period: ``2025`` (annual) or ``2025-03`` (monthly)."""

    text: str
    kind: Kind
    year: int
    month: int | None

    @property
    def start(self) -> date:
        return date(self.year, self.month or 1, 1)


@dataclass(frozen=True, slots=True)
class Validation:
    values: dict[str, Value]
    errors: tuple[FieldIssue, ...] = ()
    warnings: tuple[FieldIssue, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.errors


def _num(x: float) -> str:
    """A number as people write it (no exponent, at most 4 decimals)."""
    if not math.isfinite(x) or abs(x) >= 1e15:
        return f"{x:g}"
    text = f"{x:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def parse_period(text: str) -> Period:
    """``YYYY`` or ``YYYY-MM`` as a Period; ValueError with a sentence otherwise."""
    m = _PERIOD.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"period {text!r} is not YYYY (annual) or YYYY-MM (monthly)")
    year = int(m.group(1))
    if not 1900 <= year <= 2999:
        raise ValueError(f"period {text!r}: the year must be between 1900 and 2999")
    if m.group(2) is None:
        return Period(f"{year:04d}", "annual", year, None)
    month = int(m.group(2))
    if not 1 <= month <= 12:
        raise ValueError(f"period {text!r}: the month must be 01 to 12")
    return Period(f"{year:04d}-{month:02d}", "monthly", year, month)


def _unit_ok(f: ReportField, given: str) -> bool:
    norm = "".join(str(given).split()).lower()
    return norm == "".join(f.unit.split()).lower() or norm in UNIT_ALIASES[f.unit]


def _number(f: ReportField, raw: Any) -> tuple[Value | None, FieldIssue | None]:
    """The number in ``raw`` (a JSON number or a numeric string), or the error."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str | Decimal):
        return None, FieldIssue(
            f.id, f"{f.id} must be a number in {f.unit}, not {type(raw).__name__}", "type_error"
        )
    if isinstance(raw, str):
        text = raw.strip().replace(",", "")
        try:
            num = Decimal(text)
        except InvalidOperation:
            return None, FieldIssue(
                f.id, f"{f.id} must be a number in {f.unit}; {raw[:40]!r} is text", "type_error"
            )
        value: float = float(num)
    else:
        value = float(raw)
    if not math.isfinite(value):
        return None, FieldIssue(f.id, f"{f.id} must be a finite number", "value_error")
    if f.minimum is not None:
        low = value <= f.minimum if f.exclusive_minimum else value < f.minimum
        if low:
            op = "greater than" if f.exclusive_minimum else "at least"
            return None, FieldIssue(
                f.id, f"{f.id} must be {op} {_num(f.minimum)} {f.unit}, not {_num(value)}", "range"
            )
    if f.integer:
        if value != math.floor(value):
            return None, FieldIssue(
                f.id, f"{f.id} must be a whole number of {f.unit}, not {_num(value)}", "integer"
            )
        return int(value), None
    return value, None


def validate_report(
    period: str,
    values: Mapping[str, Any],
    *,
    today: date,
    units: Mapping[str, Any] | None = None,
) -> Validation:
    """Check one report of ``period``; every problem is returned, none raised.

    ``values`` maps field id -> number (or numeric string) / text; ``None`` and empty strings
    mean "not reported". ``units`` optionally maps field id -> the unit the client used."""
    errors: list[FieldIssue] = []
    warnings: list[FieldIssue] = []
    try:
        p = parse_period(period)
    except ValueError as exc:
        return Validation({}, (FieldIssue("period", str(exc), "period"),))
    if p.start > today:
        errors.append(
            FieldIssue(
                "period",
                f"period {p.text} has not started yet (today is {today.isoformat()}); "
                "report a period that has begun",
                "future",
            )
        )
    clean: dict[str, Value] = {}
    if not isinstance(values, Mapping):
        return Validation({}, (FieldIssue("values", "values must be an object", "type_error"),))
    for fid, raw in values.items():
        f = FIELDS_BY_ID.get(fid) if isinstance(fid, str) else None
        if f is None:
            errors.append(
                FieldIssue(
                    str(fid),
                    f"{str(fid)[:64]!r} is not a report field; GET /api/v1/report-fields "
                    "lists them",
                    "unknown_field",
                )
            )
            continue
        if p.kind not in f.kinds:
            errors.append(
                FieldIssue(
                    fid,
                    f"{fid} belongs in {' and '.join(sorted(f.kinds))} reports, not {p.kind} ones",
                    "kind",
                )
            )
            continue
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        if f.text:
            if not isinstance(raw, str | int | float) or isinstance(raw, bool):
                errors.append(FieldIssue(fid, f"{fid} must be text", "type_error"))
            elif len(str(raw).strip()) > 256:
                errors.append(FieldIssue(fid, f"{fid} must be at most 256 characters", "length"))
            else:
                clean[fid] = str(raw).strip()
            continue
        num, issue = _number(f, raw)
        if issue is not None:
            errors.append(issue)
        elif num is not None:
            clean[fid] = num
    for fid, unit in (units or {}).items():
        f = FIELDS_BY_ID.get(fid) if isinstance(fid, str) else None
        if f is None:
            errors.append(
                FieldIssue(
                    f"units.{str(fid)[:64]}", f"units: {str(fid)[:64]!r} is not a report field"
                )
            )
        elif not isinstance(unit, str) or not _unit_ok(f, unit):
            errors.append(
                FieldIssue(
                    fid,
                    f"{fid} is reported in {f.unit}, not {str(unit)[:32]!r}; convert the value "
                    f"to {f.unit}",
                    "unit",
                )
            )
    refused = {e.field for e in errors}
    for f in FIELDS_BY_ID.values():
        if p.kind in f.required and f.id not in clean and f.id not in refused:
            errors.append(FieldIssue(f.id, f"{f.id} is required in {p.kind} reports", "missing"))
    for group in ONE_OF_REQUIRED:
        if not any(g in clean or g in refused for g in group):
            errors.append(
                FieldIssue(
                    group[0],
                    f"give {' or '.join(group)} (one of them is required)",
                    "missing",
                )
            )
    if all(k in clean for k in (VA, GOV, II, VAT)):
        expected = float(clean[GOV]) - float(clean[II]) + float(clean[VAT])
        diff = float(clean[VA]) - expected
        if abs(diff) > VA_TOLERANCE_10K_CNY:
            errors.append(
                FieldIssue(
                    VA,
                    f"{VA} {_num(float(clean[VA]))} differs from {GOV} - {II} + {VAT} = "
                    f"{_num(expected)} by {diff:+.2f} 10k CNY (at most 0.5 allowed); correct one of "
                    "the four",
                    "identity",
                )
            )
    for part, total in AT_MOST:
        if part in clean and total in clean and float(clean[part]) > float(clean[total]):
            errors.append(
                FieldIssue(
                    part,
                    f"{part} {clean[part]} cannot exceed {total} {clean[total]}",
                    "range",
                )
            )
    pi = clean.get("price_index")
    if isinstance(pi, float | int) and pi > 10:
        warnings.append(
            FieldIssue(
                "price_index",
                f"price_index {_num(pi)} looks like a percentage; the index is a ratio to the "
                "base year (e.g. 1.05)",
                "suspicious",
            )
        )
    if errors:
        return Validation({}, tuple(errors), tuple(warnings))
    return Validation(clean, (), tuple(warnings))


def month_sum_warnings(
    annual: Mapping[str, Any], months: Mapping[int, Mapping[str, Any]]
) -> tuple[FieldIssue, ...]:
    """For every flow field present in the annual report and in all twelve monthly reports: a
    warning when the months' sum differs from the annual figure by more than 0.5 % of it
    (neither figure is picked silently; the warning states both and the difference)."""
    out: list[FieldIssue] = []
    if set(months) != set(range(1, 13)):
        return ()
    for fid, year_value in annual.items():
        f = FIELDS_BY_ID.get(fid)
        if f is None or not f.flow or f.text or "monthly" not in f.kinds:
            continue
        month_values = [months[m].get(fid) for m in range(1, 13)]
        if any(not isinstance(v, int | float) for v in month_values):
            continue
        total = math.fsum(float(v) for v in month_values)  # type: ignore[arg-type]
        diff = total - float(year_value)
        if abs(diff) > MONTH_SUM_TOLERANCE * abs(float(year_value)) and abs(diff) > 1e-9:
            sign = "+" if diff > 0 else ""
            rel = f" ({diff / float(year_value):+.2%})" if float(year_value) else ""
            out.append(
                FieldIssue(
                    fid,
                    f"{fid}: the 12 monthly reports add up to {_num(total)} {f.unit} but the annual "
                    f"report says {_num(float(year_value))}; difference {sign}{_num(diff)}{rel}",
                    "month_sum",
                )
            )
    return tuple(out)
