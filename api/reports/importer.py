"""Import of a filled template (XLSX) or a CSV into the report service.

Every row is validated first. A file with any refused row or cell stores nothing unless
``store_valid``; then the valid periods are stored and the refused ones listed. Every refused
cell is named by sheet, row, column (letter) and field. The caller commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from api.reports.service import ValidationFailed, site_today, submit_report, year_warnings
from api.reports.template import FileRow, RowIssue, parse_upload
from api.reports.validate import FieldIssue, parse_period, validate_report

__all__ = ["ImportResult", "import_reports"]


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did: ``stored`` (period, revision), ``unchanged`` periods (equal to their
    current revision), ``refused`` cells, and month-sum ``warnings`` (period, issue)."""

    stored: tuple[tuple[str, int], ...]
    unchanged: tuple[str, ...]
    refused: tuple[RowIssue, ...]
    warnings: tuple[tuple[str, FieldIssue], ...]

    @property
    def ok(self) -> bool:
        return not self.refused


def _issue(row: FileRow, e: FieldIssue, period: str) -> RowIssue:
    fid = e.field
    column = row.column_of(fid)
    return RowIssue(row.sheet, row.row, column, fid, period, e.message)


def _misplaced(row: FileRow) -> RowIssue | None:
    """A period of the other kind on a template sheet (a month on the annual sheet)."""
    if row.sheet not in ("monthly", "annual"):
        return None
    try:
        kind = parse_period(row.period).kind
    except ValueError:
        return None  # malformed: validation names it
    if kind == row.sheet:
        return None
    return RowIssue(
        row.sheet,
        row.row,
        row.period_column,
        "period",
        row.period,
        f"period {row.period} is {kind}; put it on the {kind} sheet",
    )


def import_reports(
    session: Session,
    site: str,
    data: bytes,
    *,
    author: str,
    reason: str = "",
    store_valid: bool = False,
    period: str | None = None,
    now: datetime | None = None,
) -> ImportResult:
    """Import ``data`` (XLSX template or CSV) into ``site``'s reports (see the module doc).

    Raises ``ConcurrentSubmission`` when another submission of one of the file's periods was
    stored meanwhile; the caller rolls back, so nothing of the file is stored."""
    moment = now if now is not None else datetime.now(UTC)
    parsed = parse_upload(data, site, period)
    if any(i.field == "file" for i in parsed.issues) or (not parsed.rows and not parsed.issues):
        issues = parsed.issues or [RowIssue("", 0, "", "file", "", "the file has no data rows")]
        return ImportResult((), (), tuple(issues), ())
    today = site_today(session, site, moment)
    refused: list[RowIssue] = list(parsed.issues)
    bad_rows = {(i.sheet, i.row) for i in parsed.issues}
    good: list[tuple[FileRow, str, dict[str, Any]]] = []
    seen: dict[str, int] = {}
    for row in parsed.rows:
        values = {fid: raw for fid, (raw, _col) in row.cells.items()}
        misplaced = _misplaced(row)
        if misplaced is not None:
            # the row's fields are those of its sheet: field errors against the other kind
            # would only hide the one thing to fix
            refused.append(misplaced)
            continue
        checked = validate_report(row.period, values, today=today)
        issues = [_issue(row, e, row.period) for e in checked.errors]
        if not issues:
            p = parse_period(row.period)
            if p.text in seen:
                issues.append(
                    RowIssue(
                        row.sheet,
                        row.row,
                        row.period_column,
                        "period",
                        p.text,
                        f"period {p.text} is also in row {seen[p.text]}; give each period once",
                    )
                )
            else:
                seen[p.text] = row.row
        if issues or (row.sheet, row.row) in bad_rows:
            refused.extend(issues)
            continue
        good.append((row, parse_period(row.period).text, checked.values))
    if refused and not store_valid:
        return ImportResult((), (), tuple(refused), ())
    reason = reason.strip() or "import"
    stored: list[tuple[str, int]] = []
    unchanged: list[str] = []
    years: set[int] = set()
    for row, text, values in good:
        try:
            result = submit_report(
                session,
                site,
                text,
                values,
                author=author,
                reason=reason,
                now=moment,
                check_year=False,
            )
        except ValidationFailed as exc:  # a rule that needs the stored report (none today)
            refused.extend(_issue(row, e, text) for e in exc.errors)
            continue
        years.add(parse_period(text).year)
        if result.created:
            stored.append((text, result.report.revision))
        else:
            unchanged.append(text)
    warnings = tuple(
        (f"{y:04d}", w) for y in sorted(years) for w in year_warnings(session, site, y)
    )
    return ImportResult(tuple(stored), tuple(unchanged), tuple(refused), warnings)
