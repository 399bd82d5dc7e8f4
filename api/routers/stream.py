"""Server-Sent Events for a line: state changes and KPI updates, resumable with Last-Event-ID.

State events are the starts of the machines' timeline intervals, computed from the stored raw
signals, so they are deterministic: an event's id is ``<interval start ns>-<machine>``, and a
client that reconnects with ``Last-Event-ID`` gets every interval that started after it, read
again from InfluxDB; nothing is held in the server's memory and nothing is lost while the
client was away. KPI events (the line's hour in progress) carry no id. A comment line is sent
every ``stream_keepalive_s`` so proxies keep the connection open. The generator only awaits, so a
stream never blocks other requests.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import StreamingResponse

from analytics.machine import MachineSignals
from api.auth import SiteContext, site_access
from api.history import HistoryRequest, history_rows, local_iso
from api.routers.machines import HOUR_NS, _line_machines
from api.state import get_state
from api.telemetry import machine_intervals, read_signals

router = APIRouter(tags=["stream"])
Telemetry = Annotated[SiteContext, Depends(site_access("telemetry"))]
# how far back a first connection (without Last-Event-ID) starts: the current state of each machine
INITIAL_LOOKBACK_NS = HOUR_NS


def _event(data: dict[str, Any], *, event: str, event_id: str | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


def _parse_last_id(value: str | None) -> tuple[int, str] | None:
    if not value:
        return None
    ts, _, machine = value.partition("-")
    try:
        return int(ts), machine
    except ValueError:
        return None


@router.get(
    "/sites/{site}/lines/{line}/stream",
    operation_id="line_stream",
    summary="Server-Sent Events: state changes (with ids, resumable) and KPI updates of a line",
    openapi_extra={"x-zhizao-policy": "telemetry"},
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def line_stream(
    request: Request,
    ctx: Telemetry,
    line: str,
    last_event_id: Annotated[str | None, Header()] = None,
    once: bool = False,
) -> StreamingResponse:
    """``once=true`` sends what is there and ends (for clients that poll)."""
    state = get_state(request)
    site = ctx.model
    machines = _line_machines(site, line)
    limits = state.settings.limits
    cursor = _parse_last_id(last_event_id)

    async def events() -> AsyncIterator[bytes]:
        nonlocal cursor
        sent_kpi: str | None = None
        last_keepalive = time.monotonic()
        yield b"retry: 2000\n\n"
        while True:
            now = time.time_ns()
            # resuming: from 1 ns before the last event, so the interval open at the range start
            # (clipped there) sorts before the cursor and a change at exactly its time does not
            lo = cursor[0] - 1 if cursor else now - INITIAL_LOOKBACK_NS
            signals = await read_signals(state, site, machines, lo, now + HOUR_NS)
            newest = max(
                (
                    int(s.ts_ns[-1])
                    for sig in signals.values()
                    for s in sig.states.values()
                    if len(s)
                ),
                default=now,
            )
            hi = max(now, newest + 1)
            found: list[tuple[int, str, dict[str, Any]]] = []
            for machine in machines:
                sig = signals.get(machine) or MachineSignals({})
                prev: str | None = None
                for iv in machine_intervals(state, site, machine, sig, lo, hi):
                    if iv.state == prev:
                        continue  # a calendar edge inside one state is no state change
                    prev = iv.state
                    found.append(
                        (
                            iv.start_ns,
                            machine,
                            {
                                "machine": machine,
                                "state": iv.state,
                                "codes": iv.codes,
                                "since": local_iso(iv.start_ns, site),
                                "since_ns": iv.start_ns,
                            },
                        )
                    )
            found.sort(key=lambda e: (e[0], e[1]))
            for ts, machine, data in found:
                # the open interval at the range start is not a change, except on a first connect
                if cursor is not None and (ts, machine) <= cursor:
                    continue
                cursor = (ts, machine)
                yield _event(data, event="state", event_id=f"{ts}-{machine}")
            if cursor is None:
                cursor = (lo, "")
            hour = hi - 1 - (hi - 1) % HOUR_NS
            rows, _ = await history_rows(
                state,
                site,
                HistoryRequest(
                    "line",
                    "hour",
                    hour,
                    hour + 1,
                    ("oee", "availability", "effectiveness", "quality", "kwh_per_good"),
                    line=line,
                ),
            )
            kpi = json.dumps(rows, sort_keys=True)
            if rows and kpi != sent_kpi:
                sent_kpi = kpi
                yield _event(
                    {"line": line, "window": rows[0]["window"], "kpis": rows[0]["kpis"]},
                    event="kpi",
                )
            if once or await request.is_disconnected():
                return
            if time.monotonic() - last_keepalive >= limits.stream_keepalive_s:
                last_keepalive = time.monotonic()
                yield b": keep-alive\n\n"
            await asyncio.sleep(limits.stream_poll_s)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
