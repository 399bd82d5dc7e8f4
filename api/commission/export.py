"""The indicator table as XLSX (one sheet per level, definitions, coverage, input revisions, the
green-factory metrics) and as CSV (UTF-8 with a byte-order mark, which Excel opens as UTF-8)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font

from api.commission.serialize import definitions

__all__ = ["LEVEL_SHEETS", "indicator_csv", "indicator_xlsx", "table_rows"]

LEVEL_SHEETS: dict[str, str] = {
    "cohort": "Cohort 全体",
    "district": "Districts 区",
    "park": "Parks 园区",
}
ROW_HEADER = (
    "level", "group", "indicator", "seed_number", "label_en", "label_zh", "unit", "kind",
    "variant", "value", "complete", "flags", "target_2020", "met_2020", "target_2025",
    "met_2025", "factories", "reported", "missing", "reason",
)  # fmt: skip


def _target(row: Mapping[str, Any], year: int) -> tuple[Any, Any]:
    for t in row["targets"]:
        if t["year"] == year:
            value = t["value"] if t["value"] is not None else t["text"]
            return value, t["met"]
    return None, None


def table_rows(table: Mapping[str, Any], level: str | None = None) -> list[list[Any]]:
    out: list[list[Any]] = []
    for r in table["rows"]:
        if level is not None and r["level"] != level:
            continue
        t20, m20 = _target(r, 2020)
        t25, m25 = _target(r, 2025)
        cov = r["coverage"]
        out.append([
            r["level"], r["group"], r["indicator"], r["seed_number"], r["label_en"],
            r["label_zh"], r["unit"], r["kind"], r["variant"], r["value"], r["complete"],
            ",".join(r["flags"]), t20, m20, t25, m25, cov["factories"], cov["reported"],
            ",".join(cov["missing"]), r["reason"],
        ])  # fmt: skip
    return out


def _sheet(wb: Workbook, title: str, header: Sequence[str], rows: list[list[Any]]) -> None:
    ws = wb.create_sheet(title[:31])
    ws.append(list(header))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for row in rows:
        ws.append([("" if v is None else v) if isinstance(v, str | None) else v for v in row])
    ws.freeze_panes = "A2"


def indicator_xlsx(table: Mapping[str, Any]) -> bytes:
    wb = Workbook()
    info = wb.active
    assert info is not None
    info.title = "About 说明"
    cfg = table["config"]
    for k, v in (
        ("cohort", table["cohort"]), ("cohort_name", table["cohort_name"]),
        ("year", table["year"]), ("base_year", table["base_year"]),
        ("config_source", cfg["source"]), ("config_version", cfg["version"]),
        ("config_revision", cfg["revision"]),
        ("statistical_rounding", table["statistical_rounding"]),
        ("energy_conversion", str(table["energy_conversion"].get("id", ""))),
        ("rule", "every group figure is a sum over sum on the group's reporting factories; "
                 "declines on a fixed panel; incomplete panels are flagged incomplete_panel"),
    ):  # fmt: skip
        info.append([k, v])
    for level, title in LEVEL_SHEETS.items():
        _sheet(wb, title, ROW_HEADER, table_rows(table, level))
    defs = definitions()
    _sheet(wb, "Definitions 定义", ("id", "seed_number", "label_en", "label_zh", "unit", "kind",
                                     "aggregation", "variant", "definition", "inputs"),
           [[d["id"], d["seed_number"], d["label_en"], d["label_zh"], d["unit"], d["kind"],
             d["aggregation"], d["variant"], d["definition"], ",".join(d["inputs"])]
            for d in defs])  # fmt: skip
    _sheet(wb, "Coverage 覆盖", ("level", "group", "indicator", "factories", "reported",
                                  "complete", "missing"),
           [[r["level"], r["group"], r["indicator"], r["coverage"]["factories"],
             r["coverage"]["reported"], r["complete"], ",".join(r["coverage"]["missing"])]
            for r in table["rows"]])  # fmt: skip
    _sheet(wb, "Inputs 输入版本", ("site", "period", "revision", "author", "created_at",
                                   "telemetry_days"),
           [[i["site"], i["period"], i["revision"], i["author"], i["created_at"],
             i["telemetry_days"]] for i in table["inputs"]])  # fmt: skip
    green = table["green_factory"]
    metric_ids = sorted({m for f in green["factories"] for m in f["metrics"]})
    _sheet(wb, "Green 绿色工厂", ["site", "district", "industry", "rule_set",
                                  *[f"{m} ({x})" for m in metric_ids for x in ("value", "base", "leading")]],
           [[f["site"], f["district"], f["industry"], f["rule_set"],
             *[f["metrics"][m][x] for m in metric_ids for x in ("value", "base", "leading")]]
            for f in green["factories"]])  # fmt: skip
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def indicator_csv(table: Mapping[str, Any]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([*ROW_HEADER, "cohort", "year", "config_version", "config_revision"])
    cfg = table["config"]
    for row in table_rows(table):
        w.writerow([*row, table["cohort"], table["year"], cfg["version"], cfg["revision"]])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")
