"""Live line view, machine state timelines, stops and their reasons."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from analytics import stops as stops_fn
from analytics.calendar import hour_windows, zone
from analytics.machine import MachineSignals
from api.auth import SiteContext, site_access
from api.history import Grouping, HistoryRequest, history_rows, local_iso, total_row
from api.masterdata import assign_stop_reason, split_stop, stop_assignments
from api.params import bad_request, parse_time_ns, time_range_ns
from api.state import get_state
from api.telemetry import current_state, machine_intervals, planned_for, read_signals
from zhizao.influxql import ident, tag_equals
from zhizao.schema import (
    AREA_TAG,
    CONNECTED_FIELD,
    CONNECTION_MEASUREMENT,
    ENTERPRISE_TAG,
    GATEWAY_TAG,
    LINE_TAG,
    SITE_TAG,
    SOURCE_TAG,
)
from zhizao.site import SiteModel

router = APIRouter(tags=["machines"])
Telemetry = Annotated[SiteContext, Depends(site_access("telemetry"))]
Assign = Annotated[SiteContext, Depends(site_access("assign"))]
NS = 1_000_000_000
HOUR_NS = 3600 * NS
# how far back the live view looks for the current state's start (older: since_truncated)
LIVE_LOOKBACK_NS = HOUR_NS
LIVE_KPIS = (
    "oee",
    "availability",
    "effectiveness",
    "quality",
    "kwh_per_good",
    "target_q",
    "target_attainment",
)


def _line_machines(site: SiteModel, line: str) -> list[str]:
    machines = [m.id for _, ln, m in site.machines() if ln.id == line]
    if not machines:
        # the site is in scope (checked by the dependency); an unknown line of it is a plain 404
        raise HTTPException(404, detail=f"line {line!r} not found")
    return machines


def _machine(site: SiteModel, machine: str) -> str:
    if machine not in {m.id for _, _, m in site.machines()}:
        raise HTTPException(404, detail=f"machine {machine!r} not found")
    return machine


def _now_ns(site: SiteModel, at: str | None) -> int:
    return parse_time_ns("at", at, site) if at else time.time_ns()


AtQ = Annotated[str | None, Query(description="evaluate as of this time (ISO 8601); default now")]


@router.get(
    "/sites/{site}/lines/{line}/live",
    operation_id="line_live",
    summary="current state and time in state of every machine, shift and hour KPIs, parts vs target, data freshness",
    openapi_extra={"x-zhizao-policy": "telemetry"},
)
async def line_live(request: Request, ctx: Telemetry, line: str, at: AtQ = None) -> dict[str, Any]:
    state = get_state(request)
    site = ctx.model
    machines = _line_machines(site, line)
    area = next(a.id for a, ln, _ in site.machines() if ln.id == line)
    now = _now_ns(site, at)
    lo = now - LIVE_LOOKBACK_NS
    planned = planned_for(site, machines[0], now - 24 * HOUR_NS, now + 1)
    shift = next((s for s in planned.shifts if s.start_ns <= now < s.end_ns), None)
    hour_start = int(hour_windows(now, now + 1, zone(site.timezone))[0][0])  # local hour
    in_progress: list[tuple[str, Grouping, int]] = [("hour", "hour", hour_start)]
    if shift is not None:
        in_progress.append(("shift", "shift", shift.start_ns))
    # the raw read, the KPI rows and the connections at once: one round trip of latency
    raw_task = asyncio.create_task(read_signals(state, site, machines, lo, now + 1))
    conn_task = asyncio.create_task(
        state.query(
            f"SELECT last({ident(CONNECTED_FIELD)}) AS {ident(CONNECTED_FIELD)} FROM "
            f"{ident(CONNECTION_MEASUREMENT)} WHERE "
            f"{tag_equals({SITE_TAG: site.site, ENTERPRISE_TAG: site.enterprise})} "
            f"GROUP BY {ident(GATEWAY_TAG)}, {ident(SOURCE_TAG)}"
        )
    )
    window_tasks = [
        asyncio.create_task(
            history_rows(state, site, HistoryRequest("machine", g, w, w + 1, LIVE_KPIS, line=line))
        )
        for _, g, w in in_progress
    ]
    raw = await raw_task
    conn = await conn_task
    windows = [await t for t in window_tasks]
    signals = raw
    out_machines: list[dict[str, Any]] = []
    for machine in machines:
        sig = signals.get(machine)
        current = current_state(state, site, machine, sig, lo, now) if sig else None
        since = current.start_ns if current else lo
        last_ns = {
            name: int(s.ts_ns[-1])
            for name, s in ({**(sig.signals if sig else {}), **(sig.states if sig else {})}).items()
            if len(s)
        }
        out_machines.append(
            {
                "machine": machine,
                "state": current.state if current else "NO_DATA",
                "codes": current.codes if current else {},
                "since": local_iso(since, site),
                "time_in_state_s": (now - since) / NS,
                # the state began before the look-back: at least this long
                "since_truncated": since <= lo,
                "last_sample": {k: local_iso(v, site) for k, v in sorted(last_ns.items())},
                "data_age_s": (now - max(last_ns.values())) / NS if last_ns else None,
            }
        )
    limits = {"effectiveness_flag_above": state.kpi.effectiveness_flag_above}
    kpis: dict[str, Any] = {"hour": None, "shift": None}
    for (name, _, _), (rows, _q) in zip(in_progress, windows, strict=True):
        total = total_row(rows, LIVE_KPIS, {AREA_TAG: area, LINE_TAG: line}, limits)
        kpis[name] = {"machine": rows, "line": [total] if total else []}
    gateways = [
        {
            "gateway": s.tags.get(GATEWAY_TAG, ""),
            "source": s.tags.get(SOURCE_TAG, ""),
            "connected": bool(s.values[CONNECTED_FIELD][0]) if len(s) else None,
            "since": local_iso(int(s.time_ns[0]), site) if len(s) else None,
        }
        for s in conn
    ]
    return {
        "site": site.site,
        "line": line,
        "now": local_iso(now, site),
        "shift": {
            "name": shift.name,
            "date": shift.date.isoformat(),
            "start": local_iso(shift.start_ns, site),
            "end": local_iso(shift.end_ns, site),
        }
        if shift
        else None,
        "machines": out_machines,
        "kpis": kpis,
        "gateways": gateways,
    }


@router.get(
    "/sites/{site}/machines/{machine}/timeline",
    operation_id="machine_timeline",
    summary="state intervals (platform state, source codes, reason) from the raw state signals",
    openapi_extra={"x-zhizao-policy": "telemetry"},
)
async def timeline(
    request: Request,
    ctx: Telemetry,
    machine: str,
    start: Annotated[str, Query(alias="from")],
    end: Annotated[str, Query(alias="to")],
) -> dict[str, Any]:
    state = get_state(request)
    site = ctx.model
    _machine(site, machine)
    lo, hi = time_range_ns(
        site, start, end, max_days=state.settings.limits.timeline_max_days, what="a timeline"
    )
    signals = await read_signals(state, site, [machine], lo, hi)
    sig = signals.get(machine) or MachineSignals({})
    intervals = machine_intervals(state, site, machine, sig, lo, hi)
    with state.session() as s:
        assigned = stop_assignments(s, site=site.site, machine=machine, start_ns=lo, end_ns=hi)
    totals: dict[str, float] = {}
    rows = []
    for iv in intervals:
        reason = next(
            (a.reason_code for a in assigned if a.start_ns <= iv.start_ns < a.end_ns), None
        )
        totals[iv.state] = totals.get(iv.state, 0.0) + (iv.end_ns - iv.start_ns) / NS
        rows.append(
            {
                "start": local_iso(iv.start_ns, site),
                "end": local_iso(iv.end_ns, site),
                "start_ns": iv.start_ns,
                "end_ns": iv.end_ns,
                "state": iv.state,
                "codes": iv.codes,
                "in_pot": iv.in_pot,
                "planned_down": iv.planned_down,
                "reason": reason,
            }
        )
    return {"site": site.site, "machine": machine, "intervals": rows, "total_s_by_state": totals}


class ReasonIn(BaseModel):
    start_ns: int = Field(description="stop start, UTC ns (from the stop list)")
    end_ns: int
    reason: str = Field(description="a code of the site's reason tree")
    note: str = Field(default="", max_length=2000)


class SplitIn(BaseModel):
    start_ns: int
    end_ns: int
    at_ns: int = Field(description="where the stop is split, inside it")
    first_reason: str
    second_reason: str
    note: str = Field(default="", max_length=2000)


def _assignment(a: Any, site: SiteModel) -> dict[str, Any]:
    return {
        "id": a.id,
        "start": local_iso(a.start_ns, site),
        "end": local_iso(a.end_ns, site),
        "start_ns": a.start_ns,
        "end_ns": a.end_ns,
        "reason": a.reason_code,
        "note": a.note,
        "by": a.created_by,
        "at": a.created_at.isoformat(),
    }


@router.get(
    "/sites/{site}/machines/{machine}/stops",
    operation_id="machine_stops",
    summary="stops (breakdowns, minor stops, no data, setup, idle) with their assigned reasons, Pareto, MTBF/MTTR",
    openapi_extra={"x-zhizao-policy": "telemetry"},
)
async def machine_stops(
    request: Request,
    ctx: Telemetry,
    machine: str,
    start: Annotated[str, Query(alias="from")],
    end: Annotated[str, Query(alias="to")],
) -> dict[str, Any]:
    state = get_state(request)
    site = ctx.model
    _machine(site, machine)
    lo, hi = time_range_ns(
        site, start, end, max_days=state.settings.limits.timeline_max_days, what="a stop list"
    )
    return await _stops(request, site, machine, lo, hi)


async def _analyses(
    request: Request, site: SiteModel, machines: list[str], lo: int, hi: int
) -> dict[str, tuple[dict[str, Any], list[Any]]]:
    """Per machine: its stops touching [lo, hi), classified by their whole length (read
    STOP_LOOKAROUND_S around the range), with the assigned reasons, the Pareto and MTBF/MTTR;
    and the assignments. One read of the raw signals for all machines."""
    state = get_state(request)
    margin = int(max(stops_fn.STOP_LOOKAROUND_S, state.kpi.micro_stop_s) * NS)
    now = time.time_ns()
    read_hi = max(min(hi + margin, now), hi)
    signals = await read_signals(state, site, machines, lo - margin, read_hi)
    categories = {r.code: r.category for r in site.reasons}
    contexts = state.site_computer(site).contexts
    out: dict[str, tuple[dict[str, Any], list[Any]]] = {}
    for machine in machines:
        sig = signals.get(machine) or MachineSignals({})
        ctx = contexts[machine]
        found = stops_fn.machine_stops(
            sig,
            ctx.classifier,
            planned_for(site, machine, lo - margin, hi + margin),
            lo,
            hi,
            heartbeat_s=ctx.heartbeat_s,
            micro_stop_s=state.kpi.micro_stop_s,
            options=ctx.options,
            known_until_ns=max(now, hi),
        )
        with state.session() as s:
            assigned = stop_assignments(
                s, site=site.site, machine=machine, start_ns=lo - margin, end_ns=hi + margin
            )
        # oldest first: where assignments overlap the later (newer) one wins
        ordered = sorted(assigned, key=lambda a: a.created_at)
        analysis = stops_fn.reason_analysis(
            found,
            [
                (a.start_ns, a.end_ns, a.reason_code, categories.get(a.reason_code or "", "other"))
                for a in ordered
            ],
        )
        out[machine] = (analysis, assigned)
    return out


async def _stops(
    request: Request, site: SiteModel, machine: str, lo: int, hi: int
) -> dict[str, Any]:
    """One machine's stops, reasons, Pareto and MTBF/MTTR (see ``_analyses``)."""
    analysis, assigned = (await _analyses(request, site, [machine], lo, hi))[machine]
    return {
        "site": site.site,
        "machine": machine,
        "stops": [
            {
                **stop,
                "start": local_iso(stop["start_ns"], site),
                "end": local_iso(stop["end_ns"], site),
            }
            for stop in analysis["stops"]
        ],
        "pareto_by_reason": analysis["pareto_by_reason"],
        "pareto_by_category": analysis["pareto_by_category"],
        "minor_stops": analysis["minor_stops"],
        "by_kind": analysis["by_kind"],
        "breakdowns": analysis["breakdowns"],
        "apt_s": analysis["apt_s"],
        "mtbf_s": analysis["mtbf_s"],
        "mttr_s": analysis["mttr_s"],
        "assignments": [_assignment(a, site) for a in assigned],
    }


def _csv(field: str, value: str | None, known: set[str]) -> set[str] | None:
    if value is None or value == "":
        return None
    wanted = {v.strip() for v in value.split(",") if v.strip()}
    unknown = sorted(wanted - known)
    if unknown:
        raise bad_request(field, f"unknown {field} {', '.join(unknown)}; known: "
                                 f"{', '.join(sorted(known))}")  # fmt: skip
    return wanted


@router.get(
    "/sites/{site}/stop-reasons",
    operation_id="stop_reasons",
    summary="the downtime Pareto by assigned stop reason over a site's machines (or some lines "
    "or machines), minor stops apart",
    openapi_extra={"x-zhizao-policy": "telemetry"},
)
async def stop_reasons(
    request: Request,
    ctx: Telemetry,
    start: Annotated[str, Query(alias="from")],
    end: Annotated[str, Query(alias="to")],
    line: Annotated[str | None, Query(description="line ids, comma-separated")] = None,
    machine: Annotated[str | None, Query(description="machine ids, comma-separated")] = None,
) -> dict[str, Any]:
    """Each machine's stops are classified and attributed to their assigned reasons exactly as
    ``.../machines/{machine}/stops`` does; the seconds and counts of the same reason are summed
    over the machines, and the shares are of the summed total. Time no reason covers is
    ``unassigned``."""
    state = get_state(request)
    site = ctx.model
    assets = [(ln.id, m.id) for _, ln, m in site.machines()]
    lines = _csv("line", line, {ln for ln, _ in assets})
    chosen = _csv("machine", machine, {m for _, m in assets})
    machines = [
        m for ln, m in assets if (lines is None or ln in lines) and (chosen is None or m in chosen)
    ]
    if not machines:
        raise bad_request(
            "machine", "no machine of the chosen lines is among the machines asked for"
        )
    lo, hi = time_range_ns(
        site, start, end, max_days=state.settings.limits.timeline_max_days, what="a stop Pareto"
    )
    analyses = await _analyses(request, site, machines, lo, hi)
    labels = {r.code: r.label for r in site.reasons}
    merged: dict[str, dict[str, Any]] = {}
    minor = {"count": 0, "seconds": 0.0}
    for m, (analysis, _) in analyses.items():
        for e in analysis["pareto_by_reason"]:
            row = merged.setdefault(e["reason"], {"reason": e["reason"], "seconds": 0.0,
                                                  "count": 0, "machines": []})  # fmt: skip
            row["seconds"] += e["seconds"]
            row["count"] += e["count"]
            row["machines"].append(m)
        minor["count"] += int(analysis["minor_stops"]["count"])
        minor["seconds"] += float(analysis["minor_stops"]["seconds"])
    total = sum(r["seconds"] for r in merged.values())
    rows = sorted(merged.values(), key=lambda r: (-r["seconds"], r["reason"]))
    cumulative = 0.0
    categories = {r.code: r.category for r in site.reasons}
    for r in rows:
        cumulative += r["seconds"]
        r["label"] = labels.get(r["reason"], r["reason"])
        r["category"] = categories.get(r["reason"], r["reason"])
        r["share"] = r["seconds"] / total if total else None
        r["cumulative_share"] = cumulative / total if total else None
        r["machines"] = ", ".join(r["machines"])
    return {
        "site": site.site,
        "from": local_iso(lo, site),
        "to": local_iso(hi, site),
        "machines": machines,
        "reasons": rows,
        "minor_stops": minor,
    }


def _refuse(field: str, exc: ValueError) -> HTTPException:
    return bad_request(field, str(exc), where="body")


@router.post(
    "/sites/{site}/machines/{machine}/stops/reason",
    operation_id="assign_stop_reason",
    summary="assign a reason from the site's reason tree to a stop (kept across recomputations)",
    openapi_extra={"x-zhizao-policy": "assign"},
)
def post_reason(
    request: Request, ctx: Assign, machine: str, body: Annotated[ReasonIn, Body()]
) -> dict[str, Any]:
    site = ctx.model
    _machine(site, machine)
    if body.end_ns <= body.start_ns:
        raise bad_request("end_ns", "end_ns must be after start_ns", body.end_ns, where="body")
    if body.reason not in {r.code for r in site.reasons}:
        raise bad_request(
            "reason",
            f"unknown reason {body.reason!r}; GET .../reasons lists them",
            body.reason,
            where="body",
        )
    state = get_state(request)
    with state.session() as s:
        try:
            a = assign_stop_reason(
                s,
                site=site.site,
                machine=machine,
                start_ns=body.start_ns,
                end_ns=body.end_ns,
                reason_code=body.reason,
                note=body.note,
                created_by=ctx.principal.name,
            )
        except ValueError as exc:
            raise _refuse("reason", exc) from None
        s.commit()
        return _assignment(a, site)


@router.post(
    "/sites/{site}/machines/{machine}/stops/split",
    operation_id="split_stop",
    summary="split a stop in two with different reasons",
    openapi_extra={"x-zhizao-policy": "assign"},
)
def post_split(
    request: Request, ctx: Assign, machine: str, body: Annotated[SplitIn, Body()]
) -> list[dict[str, Any]]:
    site = ctx.model
    _machine(site, machine)
    if not body.start_ns < body.at_ns < body.end_ns:
        raise bad_request(
            "at_ns", "at_ns must lie strictly inside the stop", body.at_ns, where="body"
        )
    codes = {r.code for r in site.reasons}
    for name in ("first_reason", "second_reason"):
        if getattr(body, name) not in codes:
            raise bad_request(
                name, f"unknown reason {getattr(body, name)!r}", getattr(body, name), where="body"
            )
    state = get_state(request)
    with state.session() as s:
        try:
            parts = split_stop(
                s,
                site=site.site,
                machine=machine,
                start_ns=body.start_ns,
                end_ns=body.end_ns,
                at_ns=body.at_ns,
                first_reason=body.first_reason,
                second_reason=body.second_reason,
                note=body.note,
                created_by=ctx.principal.name,
            )
        except ValueError as exc:
            raise _refuse("at_ns", exc) from None
        s.commit()
        return [_assignment(a, site) for a in parts]
