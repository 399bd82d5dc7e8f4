"""The report template (XLSX, generated from the field catalog) and the parsing of filled files.

Layout of each sheet (``monthly``, ``annual``): column A is the period, then one column per
field of that kind in catalog order. Row 1 holds the Chinese names, row 2 the English names,
row 3 the field ids (what the import reads), row 4 the units, row 5 the hints; data from row 6.
Numeric columns carry Excel data validation (a number at least the field's minimum, whole
numbers where the field is an integer). A hidden ``template`` sheet states the template
version (``TEMPLATE_VERSION``, derived from the catalog) and the site; a file of another
version or for another site is refused with a sentence.

A CSV has a header row of field ids, optionally ``period`` first; UTF-8 with or without BOM
or GB18030.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation

from api.reports.fields import CATALOG_VERSION, KINDS, Kind, fields_for

__all__ = [
    "DATA_ROW",
    "TEMPLATE_VERSION",
    "FileRow",
    "ParsedFile",
    "RowIssue",
    "build_template",
    "parse_upload",
]

TEMPLATE_VERSION = f"1.{CATALOG_VERSION}"
INFO_SHEET = "template"
MAGIC = "zhizao report template"
ID_ROW, UNIT_ROW, HINT_ROW, DATA_ROW = 3, 4, 5, 6
DATA_ROWS = 1000  # rows that get data validation
_TEMPLATE_ROUTE = "GET /api/v1/sites/{site}/report-template.xlsx"


@dataclass(frozen=True, slots=True)
class RowIssue:
    """A refused cell (or row, when ``column`` is empty) of an uploaded file."""

    sheet: str
    row: int
    column: str
    field: str
    period: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "sheet": self.sheet,
            "row": self.row,
            "column": self.column,
            "field": self.field,
            "period": self.period,
            "message": self.message,
        }


@dataclass(slots=True)
class FileRow:
    """One data row: its period text and field id -> (raw cell value, column letter)."""

    sheet: str
    row: int
    period: str
    period_column: str
    cells: dict[str, tuple[Any, str]] = field(default_factory=dict)

    def column_of(self, fid: str) -> str:
        if fid == "period":
            return self.period_column
        cell = self.cells.get(fid)
        return cell[1] if cell is not None else ""


@dataclass(slots=True)
class ParsedFile:
    rows: list[FileRow] = field(default_factory=list)
    issues: list[RowIssue] = field(default_factory=list)  # file- and cell-level problems


def build_template(site: str, site_name: str = "") -> bytes:
    """The XLSX template for ``site`` (one sheet per period kind)."""
    wb = Workbook()
    wb.remove(wb.active)
    bold = Font(bold=True)
    head = PatternFill("solid", fgColor="DDEBF7")
    muted = Font(italic=True, color="666666")
    for kind in KINDS:
        ws = wb.create_sheet(kind)
        fields = fields_for(kind)
        example = "2025" if kind == "annual" else "2025-01"
        columns: list[tuple[str, str, str, str, str]] = [
            ("报告期", "Period", "period", "YYYY" if kind == "annual" else "YYYY-MM", example),
            *((f.label_zh, f.label_en, f.id, f.unit, f.hint) for f in fields),
        ]
        for col, (zh, en, fid, unit, hint) in enumerate(columns, start=1):
            for row, value in ((1, zh), (2, en), (ID_ROW, fid), (UNIT_ROW, unit), (HINT_ROW, hint)):
                c = ws.cell(row=row, column=col, value=value)
                c.alignment = Alignment(wrap_text=True, vertical="top")
                if row <= 2:
                    c.font, c.fill = bold, head
                elif row in (ID_ROW, HINT_ROW):
                    c.font = muted
            ws.column_dimensions[get_column_letter(col)].width = 12 if col == 1 else 18
        for r in range(DATA_ROW, DATA_ROW + DATA_ROWS):
            ws.cell(row=r, column=1).number_format = "@"  # "2025-03" must stay text
        for col, f in enumerate(fields, start=2):
            letter = get_column_letter(col)
            ref = f"{letter}{DATA_ROW}:{letter}{DATA_ROW + DATA_ROWS - 1}"
            if f.text:
                continue
            if f.minimum is None:
                dv = DataValidation(type="whole" if f.integer else "decimal")
            else:
                dv = DataValidation(
                    type="whole" if f.integer else "decimal",
                    operator="greaterThan" if f.exclusive_minimum else "greaterThanOrEqual",
                    formula1=f"{f.minimum:g}",
                )
            dv.error = f"{f.id}: a {'whole ' if f.integer else ''}number in {f.unit}"
            dv.errorTitle = f.label_en
            dv.prompt = f"{f.label_zh} / {f.label_en} ({f.unit})"
            dv.showErrorMessage = dv.showInputMessage = True
            dv.add(ref)
            ws.add_data_validation(dv)
        ws.freeze_panes = f"B{DATA_ROW}"
    info = wb.create_sheet(INFO_SHEET)
    for r, (k, v) in enumerate(
        (
            (MAGIC, TEMPLATE_VERSION),
            ("site", site),
            ("site_name", site_name),
            ("catalog_version", CATALOG_VERSION),
            ("generated", date.today().isoformat()),
        ),
        start=1,
    ):
        info.cell(row=r, column=1, value=k)
        info.cell(row=r, column=2, value=v)
    info.sheet_state = "hidden"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _period_text(value: Any, kind: Kind | None) -> str:
    """A period cell as text (Excel turns ``2025`` into a number and ``2025-03`` into a date)."""
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return f"{value.year:04d}" if kind == "annual" else f"{value.year:04d}-{value.month:02d}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _parse_xlsx(data: bytes, site: str) -> ParsedFile:
    out = ParsedFile()
    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:  # openpyxl raises many types for a broken file
        out.issues.append(RowIssue("", 0, "", "file", "", "the XLSX file cannot be read"))
        return out
    try:
        if INFO_SHEET not in wb.sheetnames:
            out.issues.append(
                RowIssue(
                    "",
                    0,
                    "",
                    "file",
                    "",
                    "this XLSX is not a zhizao report template; "
                    f"download one from {_TEMPLATE_ROUTE}",
                )
            )
            return out
        info = {
            str(r[0]): r[1]
            for r in wb[INFO_SHEET].iter_rows(min_row=1, max_col=2, values_only=True)
            if r and r[0] is not None
        }
        version = info.get(MAGIC)
        if version != TEMPLATE_VERSION:
            out.issues.append(
                RowIssue(
                    INFO_SHEET,
                    1,
                    "B",
                    "file",
                    "",
                    f"the file is a template of version {version!r} but this service reads "
                    f"version {TEMPLATE_VERSION!r}; download a new template from "
                    f"{_TEMPLATE_ROUTE} and copy the figures into it",
                )
            )
            return out
        if str(info.get("site")) != site:
            out.issues.append(
                RowIssue(
                    INFO_SHEET,
                    2,
                    "B",
                    "file",
                    "",
                    f"the template was made for site {info.get('site')!r}, not {site!r}; "
                    "upload it to its own site",
                )
            )
            return out
        for kind in KINDS:
            if kind not in wb.sheetnames:
                continue
            ws = wb[kind]
            rows = ws.iter_rows(min_row=1, values_only=True)
            ids: list[Any] = []
            for n, values in enumerate(rows, start=1):
                if n == ID_ROW:
                    ids = list(values)
                    expected = ["period", *(f.id for f in fields_for(kind))]
                    if [str(i) if i is not None else "" for i in ids[: len(expected)]] != expected:
                        out.issues.append(
                            RowIssue(
                                kind,
                                ID_ROW,
                                "",
                                "file",
                                "",
                                f"row {ID_ROW} of sheet {kind!r} (the field ids) was "
                                "changed; use the columns of the template as generated",
                            )
                        )
                        break
                if n < DATA_ROW:
                    continue
                if all(_empty(v) for v in values):
                    continue
                row = FileRow(kind, n, _period_text(values[0], kind), "A")
                for col, (fid, raw) in enumerate(zip(ids, values, strict=False), start=1):
                    if col == 1 or fid is None or _empty(raw):
                        continue
                    row.cells[str(fid)] = (raw, get_column_letter(col))
                out.rows.append(row)
    finally:
        wb.close()
    return out


def _decode(data: bytes) -> str | None:
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8")
        except UnicodeDecodeError:
            return None
    for encoding in ("utf-8", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def _parse_csv(data: bytes, period: str | None) -> ParsedFile:
    out = ParsedFile()
    text = _decode(data)
    if text is None:
        out.issues.append(
            RowIssue("", 0, "", "file", "", "the CSV is neither UTF-8 nor GB18030 text")
        )
        return out
    try:
        table = [r for r in csv.reader(io.StringIO(text, newline=""))]
    except csv.Error as exc:
        out.issues.append(RowIssue("", 0, "", "file", "", f"the CSV cannot be read: {exc}"))
        return out
    numbered = [(n, r) for n, r in enumerate(table, start=1) if any(c.strip() for c in r)]
    if not numbered:
        out.issues.append(RowIssue("", 0, "", "file", "", "the CSV is empty"))
        return out
    header_row, header = numbered[0]
    ids = [h.strip() for h in header]
    has_period = bool(ids) and ids[0].lower() == "period"
    data_rows = numbered[1:]
    if not has_period and (period is None or len(data_rows) != 1):
        out.issues.append(
            RowIssue(
                "",
                header_row,
                "A",
                "period",
                "",
                "the CSV needs a first column 'period', or exactly one data row and the "
                "period parameter",
            )
        )
        return out
    for n, values in data_rows:
        p = values[0].strip() if has_period and values else (period or "")
        row = FileRow("csv", n, p, "A" if has_period else "")
        if len(values) > len(ids):
            out.issues.append(
                RowIssue(
                    "csv",
                    n,
                    get_column_letter(len(ids) + 1),
                    "",
                    p,
                    f"row {n} has {len(values)} cells but the header has {len(ids)}",
                )
            )
        for col, (fid, raw) in enumerate(zip(ids, values, strict=False), start=1):
            if (has_period and col == 1) or not fid or _empty(raw):
                continue
            row.cells[fid] = (raw, get_column_letter(col))
        out.rows.append(row)
    return out


def parse_upload(data: bytes, site: str, period: str | None = None) -> ParsedFile:
    """The rows of an uploaded template (XLSX) or CSV; ``issues`` lists what cannot be read.
    The values are raw (validation is the caller's); ``period`` names the period of a CSV
    without a period column."""
    if data[:4] == b"PK\x03\x04" and zipfile.is_zipfile(io.BytesIO(data)):
        return _parse_xlsx(data, site)
    return _parse_csv(data, period)
