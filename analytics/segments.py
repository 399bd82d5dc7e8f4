"""Segments: the pieces of time between every window boundary of a site (pure, no I/O).

A site's windows (local hours, shifts of every calendar its machines use, local days) all start
and end on a common set of edges; the time between two consecutive edges is a *segment*. Every
window is a union of whole segments, and every component is additive, so a window's row is the
sum of its segments' rows. The engine computes a segment from raw data once its data can no
longer change it, keeps the rows, and re-derives the hour, shift and day rows from them.

Exactness: a segment is computed from the raw samples of [start - micro_stop_s, known end] plus
the last sample of every signal before that (the state, counter reading, product, marker and
proof of life carried in), which gives the same state timeline there as the whole history
does; a stop is classified by its length inside that context, which decides breakdown or minor
stop exactly as its whole length does (a stop longer than the context is longer than the
threshold either way). Times are kept as integer nanoseconds, so a window's sum of segments is
bit-for-bit the number a computation of the whole window gives; PRI products, targets and
energy are float sums (equal to about 1e-15 relative).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from analytics.calendar import PlannedTime, day_windows, hour_windows, planned_time
from analytics.components import COMPONENT_FIELDS, Components
from analytics.compute import SiteComputer, SiteData, SiteResult, Windows
from analytics.config import COUNTER_ROLES
from analytics.machine import MachineSignals, Signal, machine_components
from analytics.notes import DataNote, Notes

__all__ = [
    "NS_FIELDS",
    "SUM_FIELDS",
    "SegmentRow",
    "SegmentStore",
    "compute_segments",
    "derive",
    "merge_data",
    "segment_edges",
    "segments_in",
    "since",
]

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
DAY_NS = 86_400_000_000_000

# components that are sums of whole nanoseconds (kept as int64 ns per segment)
NS_FIELDS: tuple[str, ...] = (
    "calendar_s", "pot_s", "planned_down_s", "pbt_s", "apt_s", "aust_s", "adet_s",
    "adet_minor_s", "adet_no_data_s", "adot_s", "in_cycle_s", "in_cycle_pot_s", "cutting_s",
    "cutting_pot_s", "cutting_pbt_s", "pbt_no_product_s", "apt_no_product_s",
    "aust_no_product_s", "adet_minor_no_product_s",
)  # fmt: skip
# derived per window from other components, the way machine_components derives them
DERIVED_FIELDS: tuple[str, ...] = ("aoet_s", "kgce", "kgco2")
SUM_FIELDS: tuple[str, ...] = tuple(
    f for f in COMPONENT_FIELDS if f not in NS_FIELDS and f not in DERIVED_FIELDS
)


@dataclass(slots=True)
class SegmentRow:
    """Every machine's components of one segment [start, end) (``end`` < the segment's edge
    while it is open) and the plant meters' quantities booked in it."""

    start_ns: int
    end_ns: int
    ns: I64  # (machines, NS_FIELDS) integer nanoseconds
    val: F64  # (machines, SUM_FIELDS)
    energy: dict[str, float] = field(default_factory=dict)
    # per machine, kept in memory only (not in the stored rows): seconds with a state code no
    # map knows in force, and where the IN_CYCLE stretch without a part in force at ``end``
    # began (carried into the next segment; None for rows read back after a restart)
    unknown_s: F64 | None = None
    in_cycle_since_ns: I64 | None = None


def segment_edges(computer: SiteComputer, lo_ns: int, hi_ns: int) -> I64:
    """Sorted edges of every window of the site around [lo, hi): the first is <= lo, the last
    >= hi (hour edges alone bracket any instant within an hour)."""
    hs, he = hour_windows(lo_ns, hi_ns, computer.tz)
    ds, de, _ = day_windows(lo_ns, hi_ns, computer.tz)
    parts = [hs, he, ds, de]
    for cal in _calendars(computer):
        plan = planned_time(computer.site.calendars[cal], lo_ns, hi_ns, name=cal)
        parts += [plan.pot_start_ns, plan.pot_end_ns]
    edges = np.unique(np.concatenate([np.asarray(p, np.int64) for p in parts]))
    first = int(np.searchsorted(edges, lo_ns, "right")) - 1
    last = int(np.searchsorted(edges, hi_ns, "left"))
    return edges[max(first, 0) : last + 1]


def segments_in(computer: SiteComputer, lo_ns: int, hi_ns: int) -> tuple[I64, I64]:
    """Segments intersecting [lo, hi), whole (the last one may reach past ``hi``)."""
    edges = segment_edges(computer, lo_ns, hi_ns)
    s, e = edges[:-1], edges[1:]
    keep = (e > lo_ns) & (s < hi_ns)
    return s[keep], e[keep]


def segment_start(computer: SiteComputer, t_ns: int) -> int:
    """Start of the segment holding ``t``."""
    s, _ = segments_in(computer, t_ns, t_ns + 1)
    return int(s[0])


def _calendars(computer: SiteComputer) -> list[str]:
    return sorted({m.calendar or line.calendar for _, line, m in computer.site.machines()})


def calendar_of(computer: SiteComputer) -> dict[str, str]:
    return {m.id: m.calendar or line.calendar for _, line, m in computer.site.machines()}


def since(sig: Signal, t_ns: int) -> Signal:
    """The samples at or after ``t`` and the last one before it (the value carried in)."""
    k = max(int(np.searchsorted(sig.ts_ns, t_ns, "left")) - 1, 0)
    return sig if k == 0 else Signal(sig.ts_ns[k:], sig.value[k:])


def _since_all(sigs: Mapping[str, Signal], t_ns: int) -> dict[str, Signal]:
    return {k: since(v, t_ns) for k, v in sigs.items()}


def sliced(data: SiteData, t_ns: int) -> SiteData:
    """``data`` from ``t`` on, with every signal's carried-in sample."""
    return SiteData(
        {
            m: MachineSignals(
                _since_all(s.signals, t_ns), _since_all(s.states, t_ns), _since_all(s.quality, t_ns)
            )
            for m, s in data.machines.items()
        },
        _since_all(data.meters, t_ns),
    )


def _cat(a: Signal | None, b: Signal) -> Signal:
    if a is None or not len(a):
        return b
    if not len(b):
        return a
    if int(b.ts_ns[0]) <= int(a.ts_ns[-1]):  # overlapping reads: the newer read wins
        a = Signal(a.ts_ns[a.ts_ns < b.ts_ns[0]], a.value[a.ts_ns < b.ts_ns[0]])
    obj = a.value.dtype.kind == "O" or b.value.dtype.kind == "O"
    value = np.concatenate(
        [np.asarray(a.value, object), np.asarray(b.value, object)] if obj else [a.value, b.value]
    )
    return Signal(np.concatenate([a.ts_ns, b.ts_ns]), value)


def _cat_all(old: Mapping[str, Signal], new: Mapping[str, Signal]) -> dict[str, Signal]:
    out = dict(old)
    for k, v in new.items():
        out[k] = _cat(out.get(k), v)
    return out


def merge_data(old: SiteData, new: SiteData) -> SiteData:
    """``old`` followed by ``new`` (samples of ``new`` are later than those of ``old``)."""
    machines = dict(old.machines)
    for m, s in new.machines.items():
        o = machines.get(m)
        machines[m] = (
            s
            if o is None
            else MachineSignals(
                _cat_all(o.signals, s.signals),
                _cat_all(o.states, s.states),
                _cat_all(o.quality, s.quality),
            )
        )
    return SiteData(machines, _cat_all(old.meters, new.meters))


def compute_segments(
    computer: SiteComputer,
    data: SiteData,
    seg_start_ns: I64,
    seg_end_ns: I64,
    known_until_ns: int,
    before: SegmentRow | None = None,
) -> tuple[list[SegmentRow], list[DataNote]]:
    """Rows of the given consecutive segments (the last one ends at most at ``known_until``)
    from ``data``, which holds the samples from ``seg_start[0] - micro_stop_s`` on with the
    carried-in sample of every signal (more is fine). ``before`` is the row of the segment
    that ends at ``seg_start[0]``, where known: the IN_CYCLE stretch without a part in force
    there continues (the notes measure a stretch by its whole length, as
    ``SiteComputer.compute`` does over its range)."""
    n = len(seg_start_ns)
    if not n:
        return [], []
    look_ns = int(computer.cfg.micro_stop_s * 1e9)
    ctx_lo = int(seg_start_ns[0]) - look_ns
    ctx_hi = min(int(seg_end_ns[-1]) + look_ns, max(known_until_ns, int(seg_end_ns[-1])))
    data = sliced(data, ctx_lo)
    calendars = calendar_of(computer)
    plans: dict[str, PlannedTime] = {}
    machines = list(computer.paths)
    parts: list[Components] = []
    notes: list[DataNote] = []
    unknown_s: list[F64] = []
    since: list[I64] = []
    carried = before.in_cycle_since_ns if before is not None else None
    if before is not None and before.end_ns != int(seg_start_ns[0]):
        carried = None
    empty = MachineSignals({})
    hours = computer.cfg.no_parts_in_cycle_s / 3600
    for j, machine in enumerate(machines):  # machines, not samples
        cal = calendars[machine]
        if cal not in plans:
            plans[cal] = planned_time(
                computer.site.calendars[cal], ctx_lo, max(ctx_hi, int(seg_end_ns[-1])), name=cal
            )
        signals = data.machines.get(machine, empty)
        ctx = computer.contexts[machine]
        res = machine_components(signals, ctx, plans[cal], seg_start_ns, seg_end_ns,
                                 context_start_ns=ctx_lo, context_end_ns=ctx_hi,
                                 in_cycle_since_ns=None if carried is None
                                 else int(carried[j]))  # fmt: skip
        # the notes SiteComputer.compute makes, in its words (analytics.notes)
        if res.unknown_state_codes:
            notes.append(Notes.unknown_state(machine, res.unknown_state_codes))
        if res.unknown_products:
            notes.append(Notes.unknown_product(machine, res.unknown_products))
        pbt_s = float(res.components.pbt_s.sum())
        if signals.get("product") is None and ctx.default_product is None and pbt_s > 0:
            notes.append(Notes.no_product(machine))
        if not signals.states:
            notes.append(Notes.no_state_data(machine))
        if res.in_cycle_without_parts_s > computer.cfg.no_parts_in_cycle_s:
            day = datetime.fromtimestamp(res.in_cycle_without_parts_start_ns / 1e9, computer.tz)
            roles = [r for r in COUNTER_ROLES if signals.get(r) is not None] or ["none"]
            notes.append(Notes.no_parts_in_cycle(machine, hours, day.date().isoformat(), roles))
        parts.append(res.components)
        unknown_s.append(np.asarray(res.unknown_state_s, np.float64))
        since.append(np.asarray(res.in_cycle_since_ns, np.int64))
    for meter in computer.plant:
        if meter.id not in data.meters:
            notes.append(Notes.plant_meter_without_data(meter.id))
    for machine, meter in computer.meter_of_machine.items():
        sigs = data.machines.get(machine)
        if sigs is None or sigs.get("energy_kwh") is None:
            notes.append(Notes.meter_without_data(machine, meter.id))
    unmetered = sorted(set(machines) - set(computer.meter_of_machine))
    if unmetered:
        notes.append(Notes.unmetered(unmetered))
    unknown_by_seg = np.stack(unknown_s, axis=1)  # (segments, machines)
    since_by_seg = np.stack(since, axis=1)
    comp = Components.concat(parts)  # machine-major: row j * n + i is machine j, segment i
    m = len(machines)
    # seconds back to the exact nanoseconds they were computed from (< 2^53 ns)
    ns = np.rint(np.column_stack([comp.column(f) for f in NS_FIELDS]) * 1e9).astype(np.int64)
    ns = ns.reshape(m, n, len(NS_FIELDS)).transpose(1, 0, 2)
    val = np.column_stack([comp.column(f) for f in SUM_FIELDS]).reshape(m, n, len(SUM_FIELDS))
    val = val.transpose(1, 0, 2)
    w = Windows("segment", seg_start_ns, seg_end_ns, [{} for _ in range(n)])
    _, _, fields = computer._plant_energy(data, w)
    # the site's output beside the plant meters, as SiteComputer.compute books it
    row_machine = [mid for mid in machines for _ in range(n)]  # machine-major, like comp
    fields.update(computer.site_output(comp, row_machine, np.tile(seg_start_ns, m), w))
    rows = [
        SegmentRow(
            int(seg_start_ns[i]),
            int(seg_end_ns[i]),
            np.ascontiguousarray(ns[i]),
            np.ascontiguousarray(val[i]),
            {k: float(v[i]) for k, v in fields.items()},
            np.ascontiguousarray(unknown_by_seg[i]),
            np.ascontiguousarray(since_by_seg[i]),
        )
        for i in range(n)
    ]
    return rows, notes


class SegmentStore:
    """A site's segment rows by start, for the windows the engine may still re-derive."""

    def __init__(self) -> None:
        self.rows: dict[int, SegmentRow] = {}

    def put(self, rows: Iterable[SegmentRow]) -> None:
        for r in rows:
            self.rows[r.start_ns] = r

    def prune(self, before_ns: int) -> None:
        """Forget segments ending at or before ``before``."""
        for s in [s for s, r in self.rows.items() if r.end_ns <= before_ns]:
            del self.rows[s]

    def covering(self, lo_ns: int, hi_ns: int) -> list[SegmentRow] | None:
        """The rows that tile [lo, hi) exactly, in order, or None where one is missing."""
        out = [self.rows[s] for s in sorted(self.rows) if lo_ns <= s < hi_ns]
        t = lo_ns
        for r in out:
            if r.start_ns != t:
                return None
            t = r.end_ns
        return out if t >= hi_ns else None


def window_sets(computer: SiteComputer, kind: str, lo_ns: int, hi_ns: int) -> list[
    tuple[list[int], Windows]
]:  # fmt: skip
    """Windows of ``kind`` touching [lo, hi), with the machines (indexes) they belong to: all
    machines for hours and days, the machines of each calendar for shifts."""
    if kind != "shift":
        return [(list(range(len(computer.paths))), computer.windows(kind, None, lo_ns, hi_ns))]
    calendars = calendar_of(computer)
    machines = list(computer.paths)
    out = []
    for cal in sorted(set(calendars.values())):
        idx = [j for j, m in enumerate(machines) if calendars[m] == cal]
        if idx:
            out.append((idx, computer.windows("shift", machines[idx[0]], lo_ns, hi_ns)))
    return out


def touched_start(computer: SiteComputer, kinds: Sequence[str], lo_ns: int, hi_ns: int) -> int:
    """The earliest start of any window of ``kinds`` touching [lo, hi)."""
    t = lo_ns
    for kind in kinds:
        for _, w in window_sets(computer, kind, lo_ns, hi_ns):
            if len(w.start_ns):
                t = min(t, int(w.start_ns[0]))
    return t


def derive(
    computer: SiteComputer, store: SegmentStore, kind: str, lo_ns: int, hi_ns: int
) -> tuple[SiteResult, list[str]]:
    """Rows of the windows of ``kind`` touching [lo, hi), each the sum of its segments (up to
    ``hi``, where the window in progress ends for now); windows with a missing segment are left
    out and named in the notes."""
    machines = list(computer.paths)
    paths = [computer.paths[m].tags() for m in machines]
    per_machine: list[list[tuple[int, int, dict[str, str], I64, F64]]] = [[] for _ in machines]
    e_start: list[int] = []
    e_rows: list[dict[str, float]] = []
    notes: list[str] = []
    for idx, w in window_sets(computer, kind, lo_ns, hi_ns):
        for ws, we, tags in zip(w.start_ns.tolist(), w.end_ns.tolist(), w.tags, strict=True):
            end = min(we, hi_ns)
            rows = store.covering(ws, end)
            if rows is None:
                notes.append(f"{kind} window at {ws}: a segment is missing; not written")
                continue
            ns: I64 = np.stack([r.ns for r in rows]).sum(axis=0, dtype=np.int64)
            val: F64 = np.stack([r.val for r in rows]).sum(axis=0)
            for j in idx:
                per_machine[j].append((ws, end, tags, ns[j], val[j]))
            if kind != "shift":
                e_start.append(ws)
                e_rows.append(_energy_sum(rows))
    starts: list[int] = []
    ends: list[int] = []
    tags_out: list[dict[str, str]] = []
    names: list[str] = []
    ns_rows: list[I64] = []
    val_rows: list[F64] = []
    for j, items in enumerate(per_machine):  # machine-major, like SiteComputer.compute
        for ws, end, tags, n_row, v_row in items:
            starts.append(ws)
            ends.append(end)
            tags_out.append({**paths[j], **tags})
            names.append(machines[j])
            ns_rows.append(n_row)
            val_rows.append(v_row)
    comp = _components(computer, names, ns_rows, val_rows)
    site_tags = {"enterprise": computer.site.enterprise, "site": computer.site.site}
    fields = sorted({k for r in e_rows for k in r})
    e_fields = {f: np.array([r.get(f, np.nan) for r in e_rows], np.float64) for f in fields}
    result = SiteResult(
        kind, names, tags_out, np.array(starts, np.int64), np.array(ends, np.int64), comp,
        np.array(e_start, np.int64), [dict(site_tags) for _ in e_start], e_fields, notes, {}, {},
    )  # fmt: skip
    return result, notes


def _energy_sum(rows: Sequence[SegmentRow]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in rows:
        for k, v in r.energy.items():
            if np.isfinite(v):
                out[k] = out.get(k, 0.0) + v
    return out


def _components(
    computer: SiteComputer, machines: list[str], ns_rows: list[I64], val_rows: list[F64]
) -> Components:
    n = len(machines)
    if not n:
        return Components.zeros(0)
    ns = np.stack(ns_rows)
    val = np.stack(val_rows)
    cols: dict[str, F64] = {}
    for i, name in enumerate(NS_FIELDS):
        # exact integer nanoseconds to seconds: the same float a whole-window bincount gives
        cols[name] = ns[:, i].astype(np.float64) / 1e9
    for i, name in enumerate(SUM_FIELDS):
        cols[name] = val[:, i]
    cols["aoet_s"] = cols["apt_s"] + cols["aust_s"] + cols["adet_s"]
    kgce = np.array([computer.contexts[m].kgce_per_kwh for m in machines])
    kgco2 = np.array([computer.contexts[m].kgco2_per_kwh for m in machines])
    cols["kgce"] = cols["kwh"] * kgce
    cols["kgco2"] = cols["kwh"] * kgco2
    return Components.from_columns(cols, n)
