"""Report validation (pure): every rule gives a field-level error naming the field."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from api.reports import fields
from api.reports.validate import month_sum_warnings, parse_period, validate_report
from tests.api.reportdata import ANNUAL, month

TODAY = date(2026, 6, 15)


def _errors(period: str, values: dict[str, Any], **kw: Any) -> dict[str, str]:
    v = validate_report(period, values, today=TODAY, **kw)
    assert not v.ok and v.values == {}
    return {e.field: e.message for e in v.errors}


def test_a_good_annual_report_is_cleaned() -> None:
    v = validate_report("2025", {**ANNUAL, "average_headcount": "420", "park": " Zhangjiang "},
                        today=TODAY)  # fmt: skip
    assert v.ok, v.errors
    assert v.values["average_headcount"] == 420 and isinstance(v.values["average_headcount"], int)
    assert v.values["park"] == "Zhangjiang"
    assert v.values["gross_output_value_10k_cny"] == 12000.0
    assert v.warnings == ()


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"average_headcount": -3}, "average_headcount", "at least 0"),
        ({"average_headcount": 12.5}, "average_headcount", "whole number"),
        ({"rd_spend_10k_cny": "twelve"}, "rd_spend_10k_cny", "is text"),
        ({"rd_spend_10k_cny": True}, "rd_spend_10k_cny", "must be a number"),
        ({"rd_spend_10k_cny": [1]}, "rd_spend_10k_cny", "must be a number"),
        ({"price_index": 0}, "price_index", "greater than 0"),
        ({"value_added_current_10k_cny": None}, "value_added_current_10k_cny", "required"),
        ({"turnover": 5}, "turnover", "not a report field"),
        (
            {"key_process_nc_count": 9, "key_process_equipment_count": 8},
            "key_process_nc_count",
            "cannot exceed",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_field(
    change: dict[str, Any], field: str, words: str
) -> None:
    errors = _errors("2025", {**ANNUAL, **change})
    assert field in errors, errors
    assert words in errors[field]


def test_one_of_price_index_and_comparable_value_added_is_required() -> None:
    values = {k: v for k, v in ANNUAL.items() if k != "price_index"}
    errors = _errors("2025", values)
    assert "price_index or value_added_comparable_10k_cny" in errors["price_index"]
    ok = validate_report("2025", {**values, "value_added_comparable_10k_cny": 2857.1}, today=TODAY)
    assert ok.ok


def test_value_added_identity_names_the_three_and_the_difference() -> None:
    errors = _errors("2025", {**ANNUAL, "vat_payable_10k_cny": 400.0})
    msg = errors["value_added_current_10k_cny"]
    assert "gross_output_value_10k_cny" in msg and "intermediate_input_10k_cny" in msg
    assert "vat_payable_10k_cny" in msg and "+100.00" in msg
    # within 0.5 (10k CNY) holds
    assert validate_report("2025", {**ANNUAL, "vat_payable_10k_cny": 499.6}, today=TODAY).ok


def test_periods_future_and_malformed() -> None:
    assert "has not started" in _errors("2026-07", month(7))["period"]
    assert validate_report("2026-06", month(6), today=TODAY).ok  # the current month has begun
    assert "has not started" in _errors("2027", ANNUAL)["period"]
    for bad in ("2025-13", "25", "2025-1", "2025/03", "abcd"):
        assert "period" in _errors(bad, ANNUAL)
    assert parse_period("2025-03").kind == "monthly" and parse_period("2025").kind == "annual"


def test_annual_only_fields_are_refused_in_a_monthly_report() -> None:
    errors = _errors("2025-03", {**month(3), "valid_invention_patents": 3})
    assert "annual reports, not monthly" in errors["valid_invention_patents"]


def test_units_other_than_the_catalog_are_refused_naming_both() -> None:
    errors = _errors("2025", ANNUAL, units={"electricity_kwh": "MWh"})
    assert "kWh" in errors["electricity_kwh"] and "MWh" in errors["electricity_kwh"]
    ok = validate_report("2025", ANNUAL, today=TODAY,
                         units={"electricity_kwh": "kWh", "rd_spend_10k_cny": "万元"})  # fmt: skip
    assert ok.ok
    assert "units.nope" in _errors("2025", ANNUAL, units={"nope": "t"})


def test_every_error_is_reported_at_once() -> None:
    errors = _errors("2025", {**ANNUAL, "average_headcount": -1, "rd_spend_10k_cny": "x", "z": 1})
    assert {"average_headcount", "rd_spend_10k_cny", "z"} <= set(errors)


def test_percentage_price_index_is_a_warning() -> None:
    v = validate_report("2025", {**ANNUAL, "price_index": 105}, today=TODAY)
    assert v.ok and [w.field for w in v.warnings] == ["price_index"]


def test_month_sums_vs_annual() -> None:
    months = {m: month(m) for m in range(1, 13)}
    assert month_sum_warnings(ANNUAL, months) == ()
    months[5] = {**month(5), "electricity_kwh": 1_200_000.0}  # +200 000 kWh = +1.67 %
    warnings = month_sum_warnings(ANNUAL, months)
    assert [w.field for w in warnings] == ["electricity_kwh"]
    assert "+200000" in warnings[0].message and "12000000" in warnings[0].message
    # within 0.5 %: no warning; eleven months: no comparison
    months[5] = {**month(5), "electricity_kwh": 1_050_000.0}
    assert month_sum_warnings(ANNUAL, months) == ()
    del months[5]
    months[6] = {**month(6), "electricity_kwh": 9e9}
    assert month_sum_warnings(ANNUAL, months) == ()


def test_catalog_is_consistent() -> None:
    ids = [f.id for f in fields.FIELDS]
    assert len(ids) == len(set(ids)) >= 35
    units = {f.unit for f in fields.FIELDS}
    assert {"10k CNY", "persons", "km2", "t", "m3", "kWh", "count", "1"} <= units
    assert fields.FIELDS_BY_ID["average_headcount"].integer
    assert fields.FIELDS_BY_ID["park"].text and fields.FIELDS_BY_ID["park"].kinds == {"annual"}
    assert len(fields.CATALOG_VERSION) == 10
    for group in fields.ONE_OF_REQUIRED:
        assert all(g in fields.FIELDS_BY_ID for g in group)
