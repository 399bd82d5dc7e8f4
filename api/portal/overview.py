"""The engineer page's view of a line: the API's live answer (``line_live``) arranged for a
table, with every value kept as the API gave it (``value``) beside its display text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SHOWN_KPIS", "Cell", "LineView", "MachineView", "duration_text", "line_view"]

# the columns, in order; every id is one of the live route's KPIs
SHOWN_KPIS: tuple[str, ...] = (
    "oee",
    "availability",
    "effectiveness",
    "quality",
    "target_q",
    "target_attainment",
    "kwh_per_good",
)
RATIOS = frozenset({"oee", "availability", "effectiveness", "quality", "target_attainment"})
E_ABOVE = "effectiveness_above_limit"
KNOWN_STATES = frozenset({"IN_CYCLE", "IDLE", "SETUP", "DELAY", "NO_DATA"})


@dataclass(frozen=True, slots=True)
class Cell:
    kpi: str
    value: float | None
    text: str
    flags: tuple[str, ...] = ()  # the catalog's reasons
    e_above: bool = False


@dataclass
class MachineView:
    machine: str
    state: str
    state_known: bool
    in_state: str
    since: str
    since_truncated: bool
    data_age: str
    good: float | None
    produced: float | None
    cells: dict[str, Cell] = field(default_factory=dict)


@dataclass
class LineView:
    line: str
    shift: dict[str, str] | None
    total: dict[str, Cell] | None
    good: float | None
    produced: float | None
    machines: list[MachineView]


def duration_text(seconds: float | None, t: Callable[..., str]) -> str:
    if seconds is None:
        return t("value.none")
    s = max(0.0, float(seconds))
    if s < 120:
        return t("unit.s", v=f"{s:.0f}")
    if s < 7200:
        return t("unit.min", v=f"{s / 60:.0f}")
    return t("unit.h", v=f"{s / 3600:.1f}")


def _cell(kpi: str, entry: dict[str, Any] | None, t: Callable[..., str]) -> Cell:
    if entry is None:
        return Cell(kpi, None, t("value.none"))
    raw = entry.get("value")
    value = None if raw is None else float(raw)
    if value is None:
        text = t("value.none")
    elif kpi in RATIOS:
        text = f"{value * 100:.1f} %"
    elif kpi == "target_q":
        text = f"{value:.0f}"
    else:
        text = f"{value:.3f} {entry.get('unit', '')}".strip()
    flags = entry.get("flags") or []
    return Cell(
        kpi,
        value,
        text,
        tuple(str(f.get("reason", "")) for f in flags),
        any(f.get("code") == E_ABOVE for f in flags),
    )


def _cells(row: dict[str, Any] | None, t: Callable[..., str]) -> dict[str, Cell]:
    kpis: dict[str, Any] = row["kpis"] if row else {}
    return {k: _cell(k, kpis.get(k), t) for k in SHOWN_KPIS}


def _count(row: dict[str, Any] | None, name: str) -> float | None:
    if row is None:
        return None
    v = row["components"].get(name)
    return None if v is None else float(v)


def _clock(iso: str) -> str:
    """``2026-03-02T06:45:00+08:00`` -> ``06:45`` (the site's local time, as the API gives it)."""
    return iso[11:16] if len(iso) >= 16 else iso


def line_view(live: dict[str, Any], t: Callable[..., str]) -> LineView:
    """One line of the live answer: machines in the site model's order, the shift's rows."""
    shift_kpis = live["kpis"].get("shift") or {"machine": [], "line": []}
    by_machine = {r["asset"].get("machine"): r for r in shift_kpis["machine"]}
    total = shift_kpis["line"][0] if shift_kpis["line"] else None
    machines: list[MachineView] = []
    for m in live["machines"]:
        row = by_machine.get(m["machine"])
        machines.append(
            MachineView(
                machine=m["machine"],
                state=m["state"],
                state_known=m["state"] in KNOWN_STATES,
                in_state=duration_text(m["time_in_state_s"], t),
                since=_clock(m["since"]),
                since_truncated=bool(m["since_truncated"]),
                data_age=duration_text(m["data_age_s"], t),
                good=_count(row, "gq"),
                produced=_count(row, "pq"),
                cells=_cells(row, t),
            )
        )
    shift = live.get("shift")
    return LineView(
        line=live["line"],
        shift=None
        if shift is None
        else {
            "name": shift["name"],
            "date": shift["date"],
            "start": _clock(shift["start"]),
            "end": _clock(shift["end"]),
        },
        total=_cells(total, t) if total else None,
        good=_count(total, "gq"),
        produced=_count(total, "pq"),
        machines=machines,
    )
