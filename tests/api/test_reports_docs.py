"""docs/API.md carries the report field table generated from the catalog, and the error example
it shows is the message validation gives."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from api.reports import fields
from api.reports.validate import validate_report
from tests.api.reportdata import ANNUAL

API_MD = Path(__file__).resolve().parents[2] / "docs" / "API.md"


def test_docs_field_table_is_generated_from_the_catalog() -> None:
    text = API_MD.read_text(encoding="utf-8")
    assert fields.markdown_table() in text, (
        "docs/API.md's report field table differs: paste api.reports.fields.markdown_table()"
    )
    assert all(f"`{f.id}`" in text for f in fields.FIELDS)


def test_docs_error_example_is_what_validation_says() -> None:
    checked = validate_report("2025", {**ANNUAL, "average_headcount": -4}, today=date(2026, 3, 1))
    [error] = checked.errors
    text = API_MD.read_text(encoding="utf-8")
    assert f'"msg": "{error.message}", "type": "{error.code}"' in text
