"""Stops of a machine, their reasons, the downtime Pareto, MTBF and MTTR (pure, no I/O).

Stops are derived from the one machine timeline (``analytics.timeline.machine_timeline``), so
their time inside PBT is exactly the ADET / AUST / ADOT the engine stores, and a minor stop here
is a minor stop in ``adet_minor_s``: a DELAY episode (contiguous DELAY time, whatever the
calendar or the windows say) shorter than ``micro_stop_s``, classified by its whole length.

Definitions (ISO 22400-2 style, see analytics/README.md):

- kinds: ``breakdown`` (DELAY episode >= ``micro_stop_s``), ``minor_stop`` (shorter),
  ``no_data`` (NO_DATA episode: missing, stale or bad data), ``setup`` (SETUP), ``idle``
  (IDLE, i.e. ADOT; IDLE that counts as planned down has no PBT time and is not listed).
- ``duration_s``: the stop's time inside PBT and inside the requested range; only that time
  counts anywhere (Pareto, MTTR). ``length_s``: the whole episode (calendar time) that decides
  minor vs breakdown.
- MTBF = APT / number of breakdowns; MTTR = breakdown time / number of breakdowns, both over the
  requested range; ``None`` when there is no breakdown (never infinity).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from analytics.calendar import PlannedTime
from analytics.machine import MachineSignals
from analytics.states import NO_DATA, STATE_CODE, StateClassifier
from analytics.timeelements import DEFAULT_MICRO_STOP_S, TimeElementOptions
from analytics.timeline import MachineTimeline, machine_timeline
from zhizao.site import MachineState, MachineTypeConfig

__all__ = [
    "KINDS",
    "STOP_LOOKAROUND_S",
    "Stops",
    "machine_stops",
    "machine_timeline",
    "reason_analysis",
    "stops_from_timeline",
]

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
KINDS = ("breakdown", "minor_stop", "no_data", "setup", "idle")
# how far beyond the requested range a caller reads signals (and the calendar) for stops: the
# classification is exact when this is >= micro_stop_s; a stop's full start/end is known when it
# fits inside this margin (else ``open_start`` / ``open_end`` say that it goes on beyond it)
STOP_LOOKAROUND_S = 4 * 3600.0
UNASSIGNED = "unassigned"

_DELAY = STATE_CODE[MachineState.DELAY]
_SETUP = STATE_CODE[MachineState.SETUP]
_IDLE = STATE_CODE[MachineState.IDLE]
_IN_CYCLE = STATE_CODE[MachineState.IN_CYCLE]
_EPISODE_KIND = {_DELAY: "breakdown", NO_DATA: "no_data", _SETUP: "setup", _IDLE: "idle"}


@dataclass(frozen=True, slots=True)
class Stops:
    """The stops of one machine touching a range, as columns (one row per stop, by start).

    ``start_ns``/``end_ns`` are the whole episode's (inside the read range); ``cut_at_start`` /
    ``cut_at_end``: the requested range cuts it; ``open_start`` / ``open_end``: it reaches the
    edge of what was read, so it really began earlier / goes on later. The counted time of stop
    ``i`` is the union of pieces ``piece_start_ns[piece_stop == i]`` .. ``piece_end_ns`` (PBT
    inside the requested range). ``apt_s`` is the APT of the requested range (for MTBF).
    """

    start_ns: I64
    end_ns: I64
    kind: NDArray[np.object_]
    length_s: F64
    duration_s: F64
    cut_at_start: NDArray[np.bool_]
    cut_at_end: NDArray[np.bool_]
    open_start: NDArray[np.bool_]
    open_end: NDArray[np.bool_]
    piece_stop: NDArray[np.int64]
    piece_start_ns: I64
    piece_end_ns: I64
    range_start_ns: int
    range_end_ns: int
    apt_s: float
    micro_stop_s: float

    def __len__(self) -> int:
        return len(self.start_ns)

    def records(self) -> list[dict[str, Any]]:
        """JSON-ready rows: start_ns, end_ns, kind, duration_s, length_s and the flags."""
        return [
            {
                "start_ns": int(self.start_ns[i]),
                "end_ns": int(self.end_ns[i]),
                "kind": str(self.kind[i]),
                "duration_s": float(self.duration_s[i]),
                "length_s": float(self.length_s[i]),
                "cut_at_start": bool(self.cut_at_start[i]),
                "cut_at_end": bool(self.cut_at_end[i]),
                "open_start": bool(self.open_start[i]),
                "open_end": bool(self.open_end[i]),
            }
            for i in range(len(self))
        ]


def stops_from_timeline(
    tl: MachineTimeline,
    start_ns: int,
    end_ns: int,
    *,
    micro_stop_s: float = DEFAULT_MICRO_STOP_S,
    kinds: Collection[str] = KINDS,
) -> Stops:
    """Stops touching [start_ns, end_ns) from a timeline read over a wider range.

    An episode is a maximal run of touching intervals whose state is DELAY, NO_DATA, SETUP or
    IDLE (one state per episode, as in ``time_elements``); DELAY episodes are breakdowns or minor
    stops by their whole length inside the timeline. Stops without PBT time inside the range are
    left out, and so are kinds not in ``kinds``.
    """
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown stop kinds {sorted(unknown)}; known: {list(KINDS)}")
    n = len(tl)
    read_lo = int(tl.start_ns[0]) if n else start_ns
    read_hi = int(tl.end_ns[-1]) if n else end_ns
    lo, hi = max(start_ns, read_lo), min(end_ns, read_hi)
    in_range = (tl.end_ns > lo) & (tl.start_ns < hi)
    rng_s = np.clip(tl.start_ns, lo, hi)
    rng_e = np.clip(tl.end_ns, lo, hi)
    apt_ns = float(((rng_e - rng_s) * (tl.in_pbt & (tl.state == _IN_CYCLE) & in_range)).sum())
    stop_like = np.isin(tl.state, list(_EPISODE_KIND))
    touching = np.concatenate(([False], tl.start_ns[1:] == tl.end_ns[:-1]))
    same = np.concatenate(([False], tl.state[1:] == tl.state[:-1]))
    new = stop_like & ~(touching & same & np.concatenate(([False], stop_like[:-1])))
    episode = np.cumsum(new) - 1  # valid where stop_like
    idx = np.flatnonzero(stop_like)
    ep = episode[idx]
    n_ep = int(new.sum())
    first = np.flatnonzero(new)
    ep_start = tl.start_ns[first]
    ep_end = np.zeros(n_ep, np.int64)
    np.maximum.at(ep_end, ep, tl.end_ns[idx])
    length_s = (ep_end - ep_start).astype(np.float64) / 1e9
    state = tl.state[first]
    kind = np.array([_EPISODE_KIND[int(s)] for s in state.tolist()], dtype=object)
    minor = (state == _DELAY) & (length_s < micro_stop_s)
    kind[minor] = "minor_stop"
    # counted pieces: PBT inside the range
    counted = in_range[idx] & tl.in_pbt[idx] & (rng_e[idx] > rng_s[idx])
    p_ep, p_s, p_e = ep[counted], rng_s[idx][counted], rng_e[idx][counted]
    dur_s = np.bincount(p_ep, weights=(p_e - p_s).astype(np.float64), minlength=n_ep) / 1e9
    keep = (dur_s > 0) & np.isin(kind, list(kinds))
    new_id = np.cumsum(keep) - 1
    pk = keep[p_ep]
    return Stops(
        start_ns=ep_start[keep],
        end_ns=ep_end[keep],
        kind=kind[keep],
        length_s=length_s[keep],
        duration_s=dur_s[keep],
        cut_at_start=ep_start[keep] < start_ns,
        cut_at_end=ep_end[keep] > end_ns,
        open_start=ep_start[keep] <= read_lo,
        open_end=ep_end[keep] >= read_hi,
        piece_stop=new_id[p_ep[pk]].astype(np.int64),
        piece_start_ns=p_s[pk],
        piece_end_ns=p_e[pk],
        range_start_ns=start_ns,
        range_end_ns=end_ns,
        apt_s=apt_ns / 1e9,
        micro_stop_s=micro_stop_s,
    )


def machine_stops(
    signals: MachineSignals,
    machine_type: MachineTypeConfig | StateClassifier,
    planned: PlannedTime,
    start_ns: int,
    end_ns: int,
    *,
    heartbeat_s: float,
    micro_stop_s: float = DEFAULT_MICRO_STOP_S,
    options: TimeElementOptions | None = None,
    lookaround_s: float = STOP_LOOKAROUND_S,
    known_until_ns: int | None = None,
    kinds: Collection[str] = KINDS,
) -> Stops:
    """The stops of a machine touching [start_ns, end_ns).

    The caller reads ``signals`` and ``planned`` over [start - L, end + L] with
    L = ``lookaround_s`` (default ``STOP_LOOKAROUND_S``, 4 h; never less than ``micro_stop_s``,
    which is what makes the minor/breakdown classification exact), plus the usual carry-in
    (``SiteReader`` reads the last sample before its range). Stops are classified by their whole
    length within that read range and reported with their full start/end. ``known_until_ns``
    (e.g. now) ends the timeline there: without it a state is carried up to ``heartbeat_s``
    past its last sample, into time that has not happened yet.
    """
    look_ns = int(max(lookaround_s, micro_stop_s) * 1e9)
    read_lo, read_hi = start_ns - look_ns, end_ns + look_ns
    if known_until_ns is not None:
        read_hi = max(min(read_hi, known_until_ns), read_lo)
    opts = options or TimeElementOptions(micro_stop_s=micro_stop_s)
    tl = machine_timeline(
        signals, machine_type, planned, read_lo, read_hi, heartbeat_s=heartbeat_s,
        options=opts, with_codes=False,
    )  # fmt: skip
    return stops_from_timeline(
        tl, start_ns, min(end_ns, read_hi), micro_stop_s=micro_stop_s, kinds=kinds
    )


Assignment = tuple[int, int, str | None, str | None]


def _pareto(
    keys: NDArray[np.object_],
    seconds: F64,
    stop: NDArray[np.int64],
    stop_kind: NDArray[np.object_],
    total_s: float,
) -> list[dict[str, Any]]:
    """Entries per key, sorted by seconds (then key): seconds, count of stops, share."""
    out: list[dict[str, Any]] = []
    if len(keys) == 0:
        return out
    uniq, inv = np.unique(keys.astype(str), return_inverse=True)
    secs = np.bincount(inv, weights=seconds, minlength=len(uniq))
    for j, key in enumerate(uniq.tolist()):
        mask = inv == j
        by_kind: dict[str, float] = {}
        for k, s in zip(stop_kind[stop[mask]].tolist(), seconds[mask].tolist(), strict=True):
            by_kind[k] = by_kind.get(k, 0.0) + s
        out.append(
            {
                "key": key,
                "seconds": float(secs[j]),
                "count": len(np.unique(stop[mask])),
                "seconds_by_kind": dict(sorted(by_kind.items())),
            }
        )
    out.sort(key=lambda e: (-e["seconds"], e["key"]))
    cum = 0.0
    for e in out:
        cum += e["seconds"]
        e["share"] = e["seconds"] / total_s if total_s > 0 else None
        e["cumulative_share"] = cum / total_s if total_s > 0 else None
    return out


def reason_analysis(stops: Stops, assignments: Iterable[Assignment]) -> dict[str, Any]:
    """Reasons per stop, the downtime Pareto by reason and by category, MTBF and MTTR.

    ``assignments`` are ``(start_ns, end_ns, reason_code, category)``; one may cover only part
    of a stop (a split), and a stop's time under no assignment stays ``unassigned`` (a ``None``
    reason too). Where assignments overlap, the later one in the sequence wins. Only a stop's
    counted time (PBT inside the range) is attributed.

    Returns ``stops`` (``Stops.records()`` plus ``reasons`` = [{reason, category, seconds}] and
    ``unassigned_s``), ``pareto_by_reason`` / ``pareto_by_category`` (non-minor stops; entries
    {reason|category, seconds, count, share, cumulative_share, seconds_by_kind}, sorted by
    seconds), ``minor_stops`` ({count, seconds, by_reason}), ``by_kind`` ({kind: {count,
    seconds}}), ``breakdowns``, ``breakdown_s``, ``apt_s``, ``mtbf_s`` and ``mttr_s``.
    """
    assigned = [a for a in assignments if a[1] > a[0]]
    # elementary segments: the counted pieces cut at every assignment edge
    edges = np.array([t for a in assigned for t in (a[0], a[1])], np.int64)
    ps, pe, pstop = stops.piece_start_ns, stops.piece_end_ns, stops.piece_stop
    if len(ps):
        cut = np.unique(np.concatenate((ps, pe, edges)))
        # each elementary segment [cut[j], cut[j+1]) lies in at most one piece (pieces disjoint)
        seg_s, seg_e = cut[:-1], cut[1:]
        order = np.argsort(ps, kind="stable")
        k = np.searchsorted(ps[order], seg_s, "right") - 1
        kk = np.clip(k, 0, None)
        inside = (k >= 0) & (seg_e <= pe[order][kk])
        seg_s, seg_e, seg_stop = seg_s[inside], seg_e[inside], pstop[order][kk[inside]]
    else:
        seg_s = seg_e = np.empty(0, np.int64)
        seg_stop = np.empty(0, np.int64)
    owner = np.full(len(seg_s), -1, np.int64)
    for j, (a_s, a_e, _, _) in enumerate(assigned):  # a few assignments per range
        owner[(seg_s >= a_s) & (seg_e <= a_e)] = j
    reason = np.array(
        [UNASSIGNED if o < 0 or assigned[o][2] is None else str(assigned[o][2]) for o in owner],
        dtype=object,
    )
    category = np.array(
        [
            UNASSIGNED if o < 0 or assigned[o][2] is None else str(assigned[o][3] or "other")
            for o in owner
        ],
        dtype=object,
    )
    secs = (seg_e - seg_s).astype(np.float64) / 1e9

    rows = stops.records()
    for row in rows:
        row["reasons"] = []
        row["unassigned_s"] = 0.0
    for st, r, c, s in zip(seg_stop.tolist(), reason, category, secs.tolist(), strict=True):
        if r == UNASSIGNED:
            rows[st]["unassigned_s"] += s
            continue
        found = next((x for x in rows[st]["reasons"] if x["reason"] == r), None)
        if found is None:
            rows[st]["reasons"].append({"reason": r, "category": c, "seconds": s})
        else:
            found["seconds"] += s

    kind = stops.kind
    seg_kind = kind[seg_stop] if len(seg_stop) else np.empty(0, object)
    major = seg_kind != "minor_stop"
    major_total = float(secs[major].sum())
    by_reason = _pareto(reason[major], secs[major], seg_stop[major], kind, major_total)
    for e in by_reason:
        e["reason"] = e.pop("key")
    by_category = _pareto(category[major], secs[major], seg_stop[major], kind, major_total)
    for e in by_category:
        e["category"] = e.pop("key")
    minor = ~major
    minor_total = float(secs[minor].sum())
    minor_by_reason = _pareto(reason[minor], secs[minor], seg_stop[minor], kind, minor_total)
    for e in minor_by_reason:
        e["reason"] = e.pop("key")

    by_kind: dict[str, dict[str, float | int]] = {}
    for kd in KINDS:
        m = kind == kd
        by_kind[kd] = {"count": int(m.sum()), "seconds": float(stops.duration_s[m].sum())}
    n_break = int(by_kind["breakdown"]["count"])
    breakdown_s = float(by_kind["breakdown"]["seconds"])
    return {
        "stops": rows,
        "pareto_by_reason": by_reason,
        "pareto_by_category": by_category,
        "minor_stops": {
            "count": int(by_kind["minor_stop"]["count"]),
            "seconds": float(by_kind["minor_stop"]["seconds"]),
            "by_reason": minor_by_reason,
        },
        "by_kind": by_kind,
        "breakdowns": n_break,
        "breakdown_s": breakdown_s,
        "apt_s": stops.apt_s,
        "mtbf_s": stops.apt_s / n_break if n_break else None,
        "mttr_s": breakdown_s / n_break if n_break else None,
    }
