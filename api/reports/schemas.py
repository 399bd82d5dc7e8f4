"""Request and response models of the report routes (one per purpose)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from api.reports.service import ReportSnapshot, RevisionInfo
from api.reports.validate import FieldIssue

__all__ = [
    "ChangeOut",
    "ImportOut",
    "IssueOut",
    "RefusedCellOut",
    "ReportFieldOut",
    "ReportIn",
    "ReportOut",
    "ReportSummaryOut",
    "RevisionOut",
    "StoredPeriodOut",
    "SubmitOut",
]

ValueOut = float | int | str


class ReportFieldOut(BaseModel):
    id: str
    label_en: str
    label_zh: str
    unit: str
    kinds: list[str]
    required: list[str]
    minimum: float | None
    exclusive_minimum: bool
    integer: bool
    text: bool
    flow: bool = Field(description="an amount over the period (12 months add up to the year)")
    hint: str


class ReportIn(BaseModel):
    values: dict[str, Any] = Field(
        description="field id -> number in the catalog's unit (text for text fields); "
        "null or absent: not reported"
    )
    units: dict[str, str] | None = Field(
        default=None, description="optional field id -> the unit the values are in (checked)"
    )
    reason: str = Field(
        default="", max_length=2000, description="why; required for a correction (revision 2+)"
    )


class ChangeOut(BaseModel):
    old: ValueOut | None
    new: ValueOut | None


class IssueOut(BaseModel):
    field: str
    message: str
    code: str

    @classmethod
    def of(cls, issue: FieldIssue) -> IssueOut:
        return cls(field=issue.field, message=issue.message, code=issue.code)


class ReportOut(BaseModel):
    site: str
    period: str
    kind: str
    revision: int
    author: str
    created_at: datetime
    reason: str
    values: dict[str, ValueOut]
    changed: dict[str, ChangeOut] = Field(description="what this revision changed (old -> new)")

    @classmethod
    def of(cls, s: ReportSnapshot) -> ReportOut:
        return cls(
            site=s.site,
            period=s.period,
            kind=s.kind,
            revision=s.revision,
            author=s.author,
            created_at=s.created_at,
            reason=s.reason,
            values=s.values,
            changed={
                k: ChangeOut(old=v.get("old"), new=v.get("new")) for k, v in s.changed.items()
            },
        )


class ReportSummaryOut(BaseModel):
    period: str
    kind: str
    revision: int = Field(description="the current revision")
    author: str
    created_at: datetime


class RevisionOut(BaseModel):
    revision: int
    author: str
    created_at: datetime
    reason: str
    changed: dict[str, ChangeOut]

    @classmethod
    def of(cls, r: RevisionInfo) -> RevisionOut:
        return cls(
            revision=r.revision,
            author=r.author,
            created_at=r.created_at,
            reason=r.reason,
            changed={
                k: ChangeOut(old=v.get("old"), new=v.get("new")) for k, v in r.changed.items()
            },
        )


class SubmitOut(BaseModel):
    created: bool = Field(description="false: identical to the current revision, nothing stored")
    message: str
    report: ReportOut
    warnings: list[IssueOut]


class RefusedCellOut(BaseModel):
    sheet: str
    row: int
    column: str = Field(description="column letter (empty: the whole row or file)")
    field: str
    period: str
    message: str


class StoredPeriodOut(BaseModel):
    period: str
    revision: int


class PeriodIssueOut(IssueOut):
    period: str


class ImportOut(BaseModel):
    stored: list[StoredPeriodOut]
    unchanged: list[str] = Field(description="periods equal to their current revision")
    refused: list[RefusedCellOut]
    warnings: list[PeriodIssueOut]
