"""One machine's raw signals -> KPI components per window (pure, no I/O).

Used by the KPI engine (signals read from InfluxDB), the offline ``kpi compute`` (CSV export) and
the benchmark, so every path computes the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from analytics.calendar import PlannedTime
from analytics.components import Components
from analytics.counters import counter_increments, increments_by_window
from analytics.states import STATE_CODE, StateClassifier, StateTimeline, state_timeline
from analytics.timeelements import PriSteps, TimeElementOptions, time_elements
from analytics.timeline import machine_timeline
from zhizao.site import MachineState

__all__ = ["MachineContext", "MachineResult", "MachineSignals", "Signal", "machine_components"]

I64 = NDArray[np.int64]
_NEVER_NS = np.iinfo(np.int64).max


@dataclass(frozen=True, slots=True)
class Signal:
    """Samples of one signal: timestamps (UTC ns) and values (numeric or object)."""

    ts_ns: I64
    value: NDArray[np.generic]

    @classmethod
    def empty(cls) -> Signal:
        return cls(np.empty(0, np.int64), np.empty(0, np.float64))

    def __len__(self) -> int:
        return len(self.ts_ns)


@dataclass(frozen=True, slots=True)
class MachineSignals:
    """Raw signals of one machine: state signals by their name (``machinery_item_state``,
    ``program_status`` ... or just ``state``), other signals by role (``parts_total``,
    ``parts_good``, ``parts_scrap``, ``parts_rework``, ``parts_startup_scrap``, ``product``,
    ``spindle_load_pct``, ``spindle_speed_rpm``, ``cutting``, ``energy_kwh``). Missing roles are absent."""

    signals: Mapping[str, Signal]
    states: Mapping[str, Signal] = field(default_factory=dict)
    # data-quality markers of the state signals, by state signal name (``Quality`` codes at
    # transitions, 0 = good again): where any is BAD or STALE the machine is NO_DATA
    quality: Mapping[str, Signal] = field(default_factory=dict)

    def get(self, role: str) -> Signal | None:
        s = self.signals.get(role)
        return s if s is not None and len(s) else None


@dataclass(frozen=True, slots=True)
class MachineContext:
    machine: str
    classifier: StateClassifier
    # product id -> PRI seconds on this machine; default_product when no product signal
    pri_s_by_product: Mapping[str, float]
    default_product: str | None
    heartbeat_s: float = 300.0
    options: TimeElementOptions = field(default_factory=TimeElementOptions)
    cutting_load_pct: float = 5.0
    # counter role -> that signal's own rollover limit (None: any drop is a reset); each counter
    # has its own range, so one 16-bit counter must not make a 32-bit counter's reset a "wrap"
    rollover_by_role: Mapping[str, float | None] = field(default_factory=dict)
    energy_rollover: float | None = None
    kgce_per_kwh: float = 0.1229
    kgco2_per_kwh: float = 0.0
    # product id -> output value per good part (CNY); products without one are left out
    unit_value_cny_by_product: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MachineResult:
    components: Components
    unknown_state_codes: list[str]
    counter_resets: int
    unknown_products: list[str]
    # per window: seconds with a state code no map knows in force (reported even where another
    # state signal still gave the state)
    unknown_state_s: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    # the longest IN_CYCLE stretch inside the windows without any part counted, and its start:
    # counters that never move while the machine runs (a wrong tag map, a dead counter)
    in_cycle_without_parts_s: float = 0.0
    in_cycle_without_parts_start_ns: int = 0
    # per window: where the IN_CYCLE stretch without a part in force at the window's end began
    # (the end itself where the machine is not in cycle there); the next segment carries it in
    in_cycle_since_ns: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))


def _carried(sig: Signal, t: I64) -> NDArray[np.float64]:
    """Value of ``sig`` in force at each ``t`` (NaN before its first sample)."""
    order = np.argsort(sig.ts_ns, kind="stable")
    k = np.searchsorted(sig.ts_ns[order], t, "right") - 1
    vals = np.asarray(sig.value, np.float64)[order]
    return np.where(k >= 0, vals[np.clip(k, 0, None)], np.nan)


def _counter_window(
    sig: Signal | None, rollover: float | None
) -> tuple[I64, NDArray[np.float64], int]:
    if sig is None:
        return np.empty(0, np.int64), np.empty(0, np.float64), 0
    ts, inc, reset = counter_increments(
        sig.ts_ns, np.asarray(sig.value, np.float64), rollover=rollover
    )
    nz = inc != 0  # a counter polled every second mostly repeats itself
    return ts[nz], inc[nz], int(reset.sum())


def _first_ns(sig: Signal | None) -> int:
    """Time of a counter's first reading (never, for a counter not published)."""
    if sig is None:
        return _NEVER_NS
    ok = np.isfinite(np.asarray(sig.value, np.float64))
    return int(sig.ts_ns[ok].min()) if ok.any() else _NEVER_NS


def _pri_steps(prod: Signal | None, ctx: MachineContext) -> tuple[PriSteps, set[str]]:
    """The PRI in force over time from the product signal (or the default product), and the
    product ids without a PRI on this machine (their time has no known product)."""
    return _product_steps(prod, ctx.default_product, ctx.pri_s_by_product)


def _product_steps(
    prod: Signal | None, default_product: str | None, by_product: Mapping[str, float]
) -> tuple[PriSteps, set[str]]:
    """A per-product number (PRI, unit value) in force over time, NaN where the product has
    none, and the product ids without one."""
    unknown: set[str] = set()
    default = by_product.get(default_product or "", np.nan)
    if prod is None:
        if default_product and default_product not in by_product:
            unknown.add(default_product)
        return PriSteps.constant(default), unknown
    # the number per product change, then per part by position: no per-part strings
    names, which = np.unique(np.asarray(prod.value).astype(str), return_inverse=True)
    of_name = np.array([by_product.get(n, np.nan) for n in names.tolist()], np.float64)
    unknown.update(n for n in names.tolist() if n not in by_product)
    order = np.argsort(prod.ts_ns, kind="stable")
    return PriSteps(
        np.asarray(prod.ts_ns, np.int64)[order], of_name[which[order]], default
    ), unknown


def machine_components(
    signals: MachineSignals,
    ctx: MachineContext,
    planned: PlannedTime,
    win_start_ns: I64,
    win_end_ns: I64,
    *,
    context_start_ns: int | None = None,
    context_end_ns: int | None = None,
    in_cycle_since_ns: int | None = None,
) -> MachineResult:
    """Components of one machine for each window (sorted, disjoint).

    ``context_start_ns`` / ``context_end_ns`` widen the state timeline beyond the windows (the
    data known there; ``planned`` must cover it): a stop cut by the first or last window is then
    a breakdown or a minor stop by its whole length, not by the piece inside the range. Only the
    windows' own time is counted. ``in_cycle_since_ns`` is where an IN_CYCLE stretch without
    a part that is in force before the first window began (``in_cycle_since_ns`` of the window
    before, computed earlier): a stretch is then measured by its whole length.
    """
    ws = np.asarray(win_start_ns, np.int64)
    we = np.asarray(win_end_ns, np.int64)
    lo, hi = (int(ws[0]), int(we[-1])) if len(ws) else (0, 0)
    tl_lo = min(lo, context_start_ns) if context_start_ns is not None and len(ws) else lo
    tl_hi = max(hi, context_end_ns) if context_end_ns is not None and len(ws) else hi

    # the one timeline (analytics.timeline): the API's timelines and stops read the same states
    mtl = machine_timeline(signals, ctx.classifier, planned, tl_lo, tl_hi,
                           heartbeat_s=ctx.heartbeat_s, options=ctx.options,
                           with_codes=False)  # fmt: skip
    unknown = mtl.unknown_codes
    timeline = mtl.states()

    cutting = None
    cut_sig = signals.get("cutting")
    load = signals.get("spindle_load_pct")
    if cut_sig is not None:
        cut_codes = (np.asarray(cut_sig.value, np.float64) > 0).astype(np.int8)
        cutting = state_timeline(cut_sig.ts_ns, cut_codes, start_ns=lo, end_ns=hi,
                                 heartbeat_s=ctx.heartbeat_s, no_data_code=0)  # fmt: skip
    elif load is not None:
        # DOMAIN section 3: spindle load above the type's threshold and, where published,
        # spindle speed above 0 (each carried forward to the other's samples)
        cut_ts = load.ts_ns
        cut = np.asarray(load.value, np.float64) > ctx.cutting_load_pct
        speed = signals.get("spindle_speed_rpm")
        if speed is not None:
            cut_ts = np.unique(np.concatenate((load.ts_ns, speed.ts_ns)))
            cut = _carried(load, cut_ts) > ctx.cutting_load_pct
            cut &= _carried(speed, cut_ts) > 0
        cutting = state_timeline(cut_ts, cut.astype(np.int8), start_ns=lo, end_ns=hi,
                                 heartbeat_s=ctx.heartbeat_s, no_data_code=0)  # fmt: skip

    # PRI of the product in force over time: per part counted (product changes inside a window)
    # and per PBT instant (the target quantity, integral of 1/PRI)
    pri, unknown_products = _pri_steps(signals.get("product"), ctx)
    comp = time_elements(timeline, planned, ws, we, cutting=cutting, options=ctx.options, pri=pri)
    cols = comp.columns()

    resets = 0
    pq_ts, pq_inc, r = _counter_window(
        signals.get("parts_total"), ctx.rollover_by_role.get("parts_total")
    )
    resets += r
    gq_ts, gq_inc, r = _counter_window(
        signals.get("parts_good"), ctx.rollover_by_role.get("parts_good")
    )
    resets += r
    sq_ts, sq_inc, r = _counter_window(
        signals.get("parts_scrap"), ctx.rollover_by_role.get("parts_scrap")
    )
    resets += r
    rq_ts, rq_inc, r = _counter_window(
        signals.get("parts_rework"), ctx.rollover_by_role.get("parts_rework")
    )
    resets += r
    su_ts, su_inc, r = _counter_window(
        signals.get("parts_startup_scrap"), ctx.rollover_by_role.get("parts_startup_scrap")
    )
    resets += r

    # A counter role counts from its first sample on (its first reading is no increment):
    # before the good counter's first sample good parts are PQ - SQ - RQ, and scrap is PQ - GQ
    # only while the good counter is published and neither scrap nor rework is. The rule is
    # per instant, not per range, so a role first published mid-day splits the parts of a
    # segment exactly as a whole-day computation does (the carried-in sample says "published").
    good_from = _first_ns(signals.get("parts_good"))
    split_from = min(_first_ns(signals.get("parts_scrap")), _first_ns(signals.get("parts_rework")))

    def before_good(t: I64) -> NDArray[np.float64]:
        return (t < good_from).astype(np.float64)

    def scrap_by_difference(t: I64) -> NDArray[np.float64]:
        return ((t >= good_from) & (t < split_from)).astype(np.float64)

    cols["pq"] = increments_by_window(pq_ts, pq_inc, ws, we)
    rq = increments_by_window(rq_ts, rq_inc, ws, we)
    sq = increments_by_window(sq_ts, sq_inc, ws, we)
    if good_from <= split_from:  # no-op where the good counter never is published
        sq = sq + (
            increments_by_window(pq_ts, pq_inc * scrap_by_difference(pq_ts), ws, we)
            - increments_by_window(gq_ts, gq_inc * scrap_by_difference(gq_ts), ws, we)
        )
    cols["sq"], cols["rq"] = sq, rq

    def good(weight: Callable[[I64], NDArray[np.float64]]) -> NDArray[np.float64]:
        """Per window: the good parts, each weighted by ``weight`` at the time it was counted
        (the good counter's increments from its first sample on, PQ - SQ - RQ before)."""
        out: NDArray[np.float64] = increments_by_window(gq_ts, gq_inc * weight(gq_ts), ws, we)
        if len(ws) and good_from > int(ws[0]):  # before the good counter: PQ - SQ - RQ

            def early(t: I64) -> NDArray[np.float64]:
                return weight(t) * before_good(t)

            out = out + (
                increments_by_window(pq_ts, pq_inc * early(pq_ts), ws, we)
                - increments_by_window(sq_ts, sq_inc * early(sq_ts), ws, we)
                - increments_by_window(rq_ts, rq_inc * early(rq_ts), ws, we)
            )
        return out

    def pri_known(t: I64) -> NDArray[np.float64]:
        """PRI of each part; 0 for a part without a known product: it adds no ideal time, as
        its product-less time (``*_no_product_s``) leaves the PRI-based KPIs' denominators."""
        return np.nan_to_num(pri.before(t), nan=0.0)

    cols["gq"] = good(lambda t: np.ones(len(t), np.float64))
    cols["pri_pq_s"] = increments_by_window(pq_ts, pq_inc * pri_known(pq_ts), ws, we)
    cols["pri_gq_s"] = good(pri_known)
    cols["pri_startup_s"] = increments_by_window(su_ts, su_inc * pri_known(su_ts), ws, we)

    idle_s, idle_at, since = _in_cycle_without_parts(
        timeline, np.concatenate((pq_ts, gq_ts, sq_ts, rq_ts, su_ts)), ws, we, in_cycle_since_ns
    )
    streams = {name: (sig.ts_ns, sig.value) for name, sig in signals.states.items()}
    unknown_s = ctx.classifier.unknown_seconds(streams, ws, we)

    e_sig = signals.get("energy_kwh")
    e_ts, e_inc, r = _counter_window(e_sig, ctx.energy_rollover)
    resets += r
    # energy is counted from the meter's first reading on (an increment needs a previous
    # reading), so are the parts energy per part divides by: a machine without a meter has none
    first_kwh_ns = int(e_sig.ts_ns.min()) if e_sig is not None else None

    def metered(t: I64) -> NDArray[np.float64]:
        if first_kwh_ns is None:
            return np.zeros(len(t), np.float64)
        return (t >= first_kwh_ns).astype(np.float64)

    value, _ = _product_steps(signals.get("product"), ctx.default_product,
                              ctx.unit_value_cny_by_product)  # fmt: skip

    def valued(t: I64) -> NDArray[np.float64]:
        return np.isfinite(value.before(t)).astype(np.float64)

    def value_cny(t: I64) -> NDArray[np.float64]:
        return np.nan_to_num(value.before(t), nan=0.0)

    cols["pq_metered"] = increments_by_window(pq_ts, pq_inc * metered(pq_ts), ws, we)
    cols["gq_metered"] = good(metered)
    cols["gq_valued"] = good(valued)
    cols["output_value_cny"] = good(value_cny)
    cols["output_value_metered_cny"] = good(lambda t: value_cny(t) * metered(t))
    # a meter increment belongs to (previous reading, this reading]: windows (start, end]
    cols["kwh"] = increments_by_window(e_ts, e_inc, ws, we, closed="right")
    cols["kgce"] = cols["kwh"] * ctx.kgce_per_kwh
    cols["kgco2"] = cols["kwh"] * ctx.kgco2_per_kwh
    return MachineResult(
        Components.from_columns(cols, len(ws)),
        unknown,
        resets,
        sorted(p for p in unknown_products if p),
        unknown_s,
        idle_s,
        idle_at,
        since,
    )


def _in_cycle_without_parts(
    timeline: StateTimeline, part_ts_ns: I64, ws: I64, we: I64, carried_since_ns: int | None
) -> tuple[float, int, I64]:
    """Longest stretch of IN_CYCLE inside the windows with no part counted (the gaps between a
    run's start, the parts counted inside it and its end; vectorized over runs and parts), its
    start, and per window where the stretch in force at its end began. A run already in
    progress before the first window starts at ``carried_since_ns`` where that is known."""
    if not len(ws):
        return 0.0, 0, np.zeros(0, np.int64)
    lo, hi = int(ws[0]), int(we[-1])
    run = timeline.code == STATE_CODE[MachineState.IN_CYCLE]
    starts = np.maximum(timeline.start_ns[run], lo)
    ends = np.minimum(timeline.end_ns[run], hi)
    keep = ends > starts
    begun = starts.copy()  # where each run's stretch began: the run's start, or carried in
    begun[(timeline.start_ns[run] < lo) & (starts == lo)] = (
        lo if carried_since_ns is None else min(carried_since_ns, lo)
    )
    starts, ends, begun = starts[keep], ends[keep], begun[keep]
    since = np.asarray(we, np.int64).copy()  # not in cycle at the end: no stretch
    if not len(starts):
        return 0.0, 0, since
    parts = np.unique(np.asarray(part_ts_ns, np.int64))
    r = np.searchsorted(starts, parts, "right") - 1
    inside = (r >= 0) & (parts < ends[np.clip(r, 0, None)])
    parts = parts[inside]
    # per window end e: the run holding e - 1, and the last part counted in it before e
    r_end = np.searchsorted(starts, we, "left") - 1
    in_run = (r_end >= 0) & (ends[np.clip(r_end, 0, None)] >= we)
    k = np.searchsorted(parts, we, "left") - 1
    padded = np.concatenate((parts, [np.iinfo(np.int64).min]))  # k = -1: no part before
    last_part = padded[k]
    run_begun = begun[np.clip(r_end, 0, None)]
    part_in_run = last_part >= starts[np.clip(r_end, 0, None)]
    since = np.where(in_run, np.where(part_in_run, last_part, run_begun), since)
    # points in time order: each run's start, its parts, its end; a gap starts at a start or a
    # part and ends at the next point (runs are disjoint, so that point is in the same run)
    t = np.concatenate((begun, parts, ends))
    kind = np.concatenate(
        (
            np.zeros(len(starts), np.int8),
            np.ones(len(parts), np.int8),
            np.full(len(ends), 2, np.int8),
        )
    )
    order = np.lexsort((kind, t))
    t, kind = t[order], kind[order]
    gap = np.diff(t)
    valid = kind[:-1] != 2
    if not valid.any():
        return 0.0, 0, since
    gap = np.where(valid, gap, -1)
    i = int(np.argmax(gap))
    return float(gap[i]) / 1e9, int(t[i]), since
