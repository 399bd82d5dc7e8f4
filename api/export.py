"""Tables as files: CSV (UTF-8 with BOM, so Excel on Chinese Windows opens it) and XLSX (with a
sheet that states every KPI's definition and the query that produced the figures)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font

from analytics import catalog

__all__ = ["history_table", "to_csv", "to_xlsx"]

BOM = "\ufeff"


def history_table(
    rows: Sequence[Mapping[str, Any]], kpis: Sequence[str]
) -> tuple[list[str], list[list[Any]]]:
    """Flatten history rows: asset columns, window, KPI values (and flags), then components."""
    asset_keys: list[str] = []
    comp_keys: list[str] = []
    for r in rows:
        for k in r["asset"]:
            if k not in asset_keys:
                asset_keys.append(k)
        for k in r["components"]:
            if k not in comp_keys:
                comp_keys.append(k)
    header = [*asset_keys, "window", "start", "end"]
    for k in kpis:
        header += [k, f"{k}_flags"]
    header += comp_keys
    table: list[list[Any]] = []
    for r in rows:
        line: list[Any] = [r["asset"].get(k, "") for k in asset_keys]
        w = r["window"]
        line += [w["label"], w["start"], w["end"]]
        for k in kpis:
            v = r["kpis"][k]
            line += [v["value"], "; ".join(f["code"] for f in v.get("flags", []))]
        line += [r["components"].get(k, 0.0) for k in comp_keys]
        table.append(line)
    return header, table


def to_csv(header: Sequence[str], table: Sequence[Sequence[Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(header)
    for row in table:
        w.writerow(["" if v is None else v for v in row])
    return (BOM + buf.getvalue()).encode("utf-8")


def to_xlsx(
    header: Sequence[str],
    table: Sequence[Sequence[Any]],
    *,
    title: str,
    kpis: Sequence[str],
    query: str,
    about: Mapping[str, str],
) -> bytes:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = title[:31]
    ws.append(list(header))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for row in table:
        ws.append(list(row))
    ws.freeze_panes = "A2"
    defs = wb.create_sheet("definitions")
    defs.append(
        [
            "id",
            "label",
            "label_zh",
            "definition",
            "unit",
            "formula (InfluxQL over summed components)",
            "flag rules",
        ]
    )
    for cell in defs[1]:
        cell.font = Font(bold=True)
    for kid in kpis:
        k = catalog.get(kid)
        defs.append(
            [
                k.id,
                k.label,
                k.label_zh,
                k.definition,
                k.unit,
                catalog.influxql_expression(k.id),
                "; ".join(f"{f.code}: {f.reason}" for f in k.flags),
            ]
        )
    q = wb.create_sheet("query")
    for key, value in about.items():
        q.append([key, value])
    q.append(["influxql", query])
    q.append(
        [
            "rule",
            "every ratio is sum(numerator) / sum(denominator) of the rows' components; never a mean of ratios",
        ]
    )
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
