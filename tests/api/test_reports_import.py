"""The XLSX template and the import of filled templates and CSVs (sqlite and PostgreSQL)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.db.models import ReportRevision
from api.db.session import make_engine, make_sessionmaker, upgrade
from api.masterdata import import_site
from api.reports.fields import FIELDS_BY_ID, fields_for
from api.reports.importer import import_reports
from api.reports.service import current_report
from api.reports.template import DATA_ROW, TEMPLATE_VERSION, build_template
from tests.api.reportdata import ANNUAL, month, site

NOW = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
A = "plant8"


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    upgrade(db_url)
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as s:
        import_site(s, site(A))
        import_site(s, site("plant9"))
        s.commit()
        yield s
    engine.dispose()


def _revisions(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(ReportRevision)) or 0)


def _fill(rows: dict[str, list[tuple[str, dict[str, Any]]]], site_key: str = A) -> bytes:
    wb = load_workbook(io.BytesIO(build_template(site_key, "Plant")))
    for sheet, periods in rows.items():
        ws = wb[sheet]
        ids = [c.value for c in ws[3]]
        for i, (period, values) in enumerate(periods):
            ws.cell(row=DATA_ROW + i, column=1, value=period)
            for fid, v in values.items():
                ws.cell(row=DATA_ROW + i, column=ids.index(fid) + 1, value=v)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _import(session: Session, data: bytes, **kw: Any) -> Any:
    return import_reports(session, A, data, author="fa", now=NOW, **kw)


def test_template_layout() -> None:
    wb = load_workbook(io.BytesIO(build_template(A, "Plant")))
    assert wb.sheetnames == ["monthly", "annual", "template"]
    assert wb["template"].sheet_state == "hidden"
    assert wb["template"]["B1"].value == TEMPLATE_VERSION and wb["template"]["B2"].value == A
    annual = wb["annual"]
    ids = [c.value for c in annual[3]]
    assert ids == ["period", *(f.id for f in fields_for("annual"))]
    col = ids.index("average_headcount") + 1
    assert annual.cell(row=1, column=col).value == "从业人员平均人数"
    assert annual.cell(row=2, column=col).value == "Average headcount"
    assert annual.cell(row=4, column=col).value == "persons"
    assert "valid_invention_patents" not in [c.value for c in wb["monthly"][3]]
    rules = {str(dv.sqref).split(":")[0][:-1]: dv for dv in annual.data_validations.dataValidation}
    from openpyxl.utils import get_column_letter

    head = rules[get_column_letter(col)]
    assert head.type == "whole" and head.operator == "greaterThanOrEqual" and head.formula1 == "0"
    pi = rules[get_column_letter(ids.index("price_index") + 1)]
    assert pi.type == "decimal" and pi.operator == "greaterThan"


def test_round_trip_xlsx(session: Session) -> None:
    data = _fill({"annual": [("2025", ANNUAL)], "monthly": [("2025-01", month(1)),
                                                           ("2025-02", month(2))]})  # fmt: skip
    result = _import(session, data, reason="Q1 filing")
    session.commit()
    assert result.ok and result.stored == (("2025-01", 1), ("2025-02", 1), ("2025", 1))
    got = current_report(session, A, "2025")
    assert got is not None and got.values == ANNUAL and got.reason == "Q1 filing"
    feb = current_report(session, A, "2025-02")
    assert feb is not None and feb.values == month(2)
    # importing the same file again stores nothing
    again = _import(session, data)
    assert (
        again.ok and again.stored == () and set(again.unchanged) == {"2025", "2025-01", "2025-02"}
    )
    assert _revisions(session) == 3


def test_excel_turned_periods_into_numbers_and_dates(session: Session) -> None:
    data = _fill({"annual": [("2024", ANNUAL)]})
    wb = load_workbook(io.BytesIO(data))
    wb["annual"].cell(row=DATA_ROW, column=1, value=2024)
    wb["monthly"].cell(row=DATA_ROW, column=1, value=datetime(2024, 3, 1))
    ids = [c.value for c in wb["monthly"][3]]
    for fid, v in month(3).items():
        wb["monthly"].cell(row=DATA_ROW, column=ids.index(fid) + 1, value=v)
    buf = io.BytesIO()
    wb.save(buf)
    result = _import(session, buf.getvalue())
    assert result.ok, result.refused
    assert {p for p, _ in result.stored} == {"2024", "2024-03"}


def _csv(rows: list[list[Any]]) -> str:
    return "".join(",".join(str(c) for c in r) + "\r\n" for r in rows)


CSV_FIELDS = ["value_added_current_10k_cny", "price_index", "average_headcount", "park"]


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [("utf-8", True), ("utf-8", False), ("gb18030", False)],
)
def test_csv_encodings_with_chinese_text(session: Session, encoding: str, bom: bool) -> None:
    text = _csv([["period", *CSV_FIELDS], ["2023", 3000, 1.02, 400, "漕河泾开发区"]])
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding)
    if encoding == "gb18030":
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")  # the test really sends non-UTF-8 bytes
    result = _import(session, data)
    session.commit()
    assert result.ok, result.refused
    got = current_report(session, A, "2023")
    assert got is not None and got.values["park"] == "漕河泾开发区"
    assert got.values["average_headcount"] == 400 and got.values["price_index"] == 1.02


def test_csv_without_period_column_takes_the_parameter(session: Session) -> None:
    text = _csv([CSV_FIELDS, [3000, 1.02, 400, ""]])
    assert not _import(session, text.encode()).ok  # no period anywhere
    result = _import(session, text.encode(), period="2023")
    assert result.ok and result.stored == (("2023", 1),)


def test_one_bad_cell_stores_nothing_and_is_named(session: Session) -> None:
    text = _csv(
        [
            ["period", *CSV_FIELDS, "rd_spend_10k_cny"],
            ["2021", 3000, 1.0, 400, "", 10],
            ["2022", 3000, 1.0, 400, "", "ten"],
            ["2022-05", 250, 1.0, 400, "", 1],
        ]
    )
    result = _import(session, text.encode())
    assert not result.ok and result.stored == ()
    where = {(r.row, r.column, r.field) for r in result.refused}
    assert (3, "F", "rd_spend_10k_cny") in where
    assert {r.row for r in result.refused} == {3}  # the other rows are fine
    session.commit()
    assert _revisions(session) == 0
    stored = _import(session, text.encode(), store_valid=True)
    session.commit()
    assert {p for p, _ in stored.stored} == {"2021", "2022-05"}
    assert [r.row for r in stored.refused] == [3]
    assert _revisions(session) == 2


def test_every_bad_cell_of_a_template_is_listed(session: Session) -> None:
    data = _fill({"annual": [("2025", {**ANNUAL, "average_headcount": -4}),
                             ("2024", {**ANNUAL, "rd_spend_10k_cny": "n/a"}),
                             ("2030", ANNUAL),
                             ("2023-04", ANNUAL)]})  # fmt: skip
    result = _import(session, data)
    assert not result.ok and _revisions(session) == 0
    ids = ["period", *(f.id for f in fields_for("annual"))]
    from openpyxl.utils import get_column_letter

    def col(fid: str) -> str:
        return get_column_letter(ids.index(fid) + 1)

    where = {(r.sheet, r.row, r.column, r.field) for r in result.refused}
    assert ("annual", 6, col("average_headcount"), "average_headcount") in where
    assert ("annual", 7, col("rd_spend_10k_cny"), "rd_spend_10k_cny") in where
    assert ("annual", 8, "A", "period") in where  # 2030 has not started
    assert ("annual", 9, "A", "period") in where  # a month on the annual sheet
    assert len({r.row for r in result.refused}) == 4


def test_a_template_from_another_version_or_site_is_refused(session: Session) -> None:
    data = _fill({"annual": [("2025", ANNUAL)]})
    wb = load_workbook(io.BytesIO(data))
    wb["template"]["B1"] = "0.old"
    buf = io.BytesIO()
    wb.save(buf)
    result = _import(session, buf.getvalue())
    assert not result.ok and "version '0.old'" in result.refused[0].message
    assert "download a new template" in result.refused[0].message
    other = _fill({"annual": [("2025", ANNUAL)]}, site_key="plant9")
    result = _import(session, other)
    assert not result.ok and "made for site 'plant9'" in result.refused[0].message
    plain = Workbook()
    buf = io.BytesIO()
    plain.save(buf)
    result = _import(session, buf.getvalue())
    assert not result.ok and "not a zhizao report template" in result.refused[0].message
    assert _revisions(session) == 0


def test_unreadable_files(session: Session) -> None:
    assert (
        "neither UTF-8 nor GB18030" in _import(session, b"\xff\xfe\x00\x81\x30").refused[0].message
    )
    assert not _import(session, b"PK\x03\x04garbage").ok
    assert not _import(session, b"").ok
    bad_header = _csv([["period", "no_such_field"], ["2025", 1]])
    refused = _import(session, bad_header.encode()).refused
    assert any(r.field == "no_such_field" and r.column == "B" for r in refused)


def test_month_sum_warning_from_an_import(session: Session) -> None:
    rows = [(f"2025-{m:02d}", month(m)) for m in range(1, 13)]
    data = _fill({"monthly": rows, "annual": [("2025", {**ANNUAL, "electricity_kwh": 11e6})]})
    result = _import(session, data)
    assert result.ok
    assert [(p, w.field) for p, w in result.warnings] == [("2025", "electricity_kwh")]
    assert FIELDS_BY_ID["electricity_kwh"].flow
