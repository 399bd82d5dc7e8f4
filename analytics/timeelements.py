"""ISO 22400 time elements per window from a state timeline and a shift calendar.

All boundaries (state changes, heartbeat expiries, shifts, breaks, window edges, cutting changes)
are merged into one sorted list of elementary segments; each has one state, one calendar status
and one window, so every time element is a weighted ``bincount``. No loop over samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from analytics.calendar import PlannedTime
from analytics.components import COMPONENT_FIELDS, Components
from analytics.states import NO_DATA, STATE_CODE, StateTimeline
from zhizao.site import MachineState

__all__ = [
    "DEFAULT_MICRO_STOP_S",
    "PriSteps",
    "TimeElementOptions",
    "member",
    "time_elements",
]

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
DEFAULT_MICRO_STOP_S = 120.0
_IN_CYCLE = STATE_CODE[MachineState.IN_CYCLE]
_SETUP = STATE_CODE[MachineState.SETUP]
_DELAY = STATE_CODE[MachineState.DELAY]
_IDLE = STATE_CODE[MachineState.IDLE]
_PLANNED = STATE_CODE[MachineState.PLANNED_DOWN]


@dataclass(frozen=True, slots=True)
class TimeElementOptions:
    # a DELAY episode shorter than this is a minor stop (Nakajima speed loss); default 2 min
    micro_stop_s: float = DEFAULT_MICRO_STOP_S
    # "no order / waiting" (IDLE) counted as planned down instead of ADOT (DOMAIN section 2)
    no_order_is_planned_down: bool = False


@dataclass(frozen=True, slots=True)
class PriSteps:
    """The PRI (ideal cycle time, s per item) in force over time: a step function.

    ``change_ns`` (sorted) are the times a product id was published and ``pri_s`` the PRI of
    that product (NaN for a product without a PRI); before the first change ``default_pri_s``
    holds (NaN when no default product is known). Several changes at one instant: the last wins.
    """

    change_ns: I64
    pri_s: F64
    default_pri_s: float = float("nan")

    @classmethod
    def constant(cls, pri_s: float) -> PriSteps:
        return cls(np.empty(0, np.int64), np.empty(0, np.float64), pri_s)

    def in_force(self, t: I64) -> F64:
        """PRI of the product running during [t, next change) (NaN: no known product)."""
        return self._at(np.searchsorted(self.change_ns, t, "right") - 1)

    def before(self, t: I64) -> F64:
        """PRI of the product in force just before ``t``: a part counted at ``t`` belongs to the
        order that made it, even when the next product id is published at the same instant."""
        return self._at(np.searchsorted(self.change_ns, t, "left") - 1)

    def _at(self, k: NDArray[np.intp]) -> F64:
        if len(self.change_ns) == 0:
            return np.full(len(k), self.default_pri_s, np.float64)
        out: F64 = np.where(k >= 0, self.pri_s[np.clip(k, 0, None)], self.default_pri_s)
        return out


def member(starts: I64, ends: I64, t: I64) -> NDArray[np.bool_]:
    """Whether each ``t`` lies in one of the sorted disjoint intervals [starts, ends)."""
    if len(starts) == 0:
        return np.zeros(len(t), bool)
    k = np.searchsorted(starts, t, "right") - 1
    kk = np.clip(k, 0, None)
    return (k >= 0) & (t < ends[kk])


def _delay_episode_minor(tl: StateTimeline, micro_stop_s: float) -> NDArray[np.bool_]:
    """Per timeline segment: is it part of a DELAY episode shorter than the threshold?

    Consecutive DELAY segments without a gap form one episode, so a stop is classified by its
    whole length even when windows cut it into pieces.
    """
    is_delay = tl.code == _DELAY
    if not is_delay.any():
        return np.zeros(len(tl.code), bool)
    prev_delay = np.concatenate(([False], is_delay[:-1]))
    touching = np.concatenate(([False], tl.start_ns[1:] == tl.end_ns[:-1]))
    new_episode = is_delay & ~(prev_delay & touching)
    episode = np.cumsum(new_episode) - 1
    dur = tl.duration_s()
    ep_len = np.bincount(episode[is_delay], weights=dur[is_delay])
    minor = np.zeros(len(tl.code), bool)
    minor[is_delay] = ep_len[episode[is_delay]] < micro_stop_s
    return minor


def time_elements(
    timeline: StateTimeline,
    planned: PlannedTime,
    win_start_ns: I64,
    win_end_ns: I64,
    *,
    cutting: StateTimeline | None = None,
    options: TimeElementOptions = TimeElementOptions(),
    pri: PriSteps | None = None,
) -> Components:
    """Time components (seconds) of one machine for each window [win_start, win_end).

    Windows are sorted and disjoint. Counts and energy stay zero here (see ``counters``).
    Time outside the timeline's range is NO_DATA. With ``pri`` (the PRI in force over time)
    ``target_q`` is the ideal quantity, the integral of 1/PRI over PBT time with a known product,
    and ``pbt_no_product_s`` the PBT time without one (all of PBT without ``pri``), likewise
    ``apt_no_product_s``, ``aust_no_product_s`` and ``adet_minor_no_product_s``.
    """
    ws = np.asarray(win_start_ns, np.int64)
    we = np.asarray(win_end_ns, np.int64)
    nw = len(ws)
    if nw == 0:
        return Components.zeros(0)
    lo, hi = ws[0], we[-1]
    parts = [ws, we, timeline.start_ns, timeline.end_ns, planned.pot_start_ns, planned.pot_end_ns,
             planned.down_start_ns, planned.down_end_ns]  # fmt: skip
    if cutting is not None:
        parts += [cutting.start_ns, cutting.end_ns]
    if pri is not None:
        parts.append(pri.change_ns)
    bp = np.unique(np.concatenate(parts))
    bp = bp[(bp >= lo) & (bp <= hi)]
    seg_s, seg_e = bp[:-1], bp[1:]
    # integer nanoseconds summed in float64 are exact (below 2^53 ns, ~104 days); seconds at the end
    dur = (seg_e - seg_s).astype(np.float64)

    w = np.searchsorted(ws, seg_s, "right") - 1
    in_win = (w >= 0) & (seg_s < we[np.clip(w, 0, None)])
    w = np.where(in_win, w, nw)  # bucket nw collects time between windows, dropped below

    k = np.searchsorted(timeline.start_ns, seg_s, "right") - 1
    kk = np.clip(k, 0, None)
    covered = (
        (k >= 0) & (seg_s < timeline.end_ns[kk])
        if len(timeline.code)
        else np.zeros(len(seg_s), bool)
    )
    state = np.where(covered, timeline.code[kk] if len(timeline.code) else NO_DATA, NO_DATA)
    minor_tl = _delay_episode_minor(timeline, options.micro_stop_s)
    minor = covered & (minor_tl[kk] if len(timeline.code) else False)

    in_pot = member(planned.pot_start_ns, planned.pot_end_ns, seg_s)
    down = member(planned.down_start_ns, planned.down_end_ns, seg_s) | (state == _PLANNED)
    if options.no_order_is_planned_down:
        down |= state == _IDLE
    planned_down = in_pot & down
    in_pbt = in_pot & ~down
    in_cycle = state == _IN_CYCLE
    if cutting is not None:
        cut = member(cutting.start_ns, cutting.end_ns, seg_s)
        ck = np.clip(np.searchsorted(cutting.start_ns, seg_s, "right") - 1, 0, None)
        cut &= (cutting.code[ck] == 1) & in_cycle if len(cutting.code) else False
    else:
        cut = np.zeros(len(seg_s), bool)
    delay_like = (state == _DELAY) | (state == NO_DATA)

    def total(mask: NDArray[np.bool_]) -> NDArray[np.float64]:
        ns = np.bincount(w, weights=dur * mask, minlength=nw + 1)[:nw]
        out: NDArray[np.float64] = ns.astype(np.float64) / 1e9
        return out

    cols = {
        "calendar_s": (we - ws).astype(np.float64) / 1e9,
        "pot_s": total(in_pot),
        "planned_down_s": total(planned_down),
        "pbt_s": total(in_pbt),
        "apt_s": total(in_pbt & in_cycle),
        "aust_s": total(in_pbt & (state == _SETUP)),
        "adet_s": total(in_pbt & delay_like),
        "adet_minor_s": total(in_pbt & minor),
        "adet_no_data_s": total(in_pbt & (state == NO_DATA)),
        "adot_s": total(in_pbt & (state == _IDLE)),
        "in_cycle_s": total(in_cycle),
        "in_cycle_pot_s": total(in_pot & in_cycle),
        "cutting_s": total(cut),
        "cutting_pot_s": total(in_pot & cut),
        "cutting_pbt_s": total(in_pbt & cut),
    }
    cols["aoet_s"] = cols["apt_s"] + cols["aust_s"] + cols["adet_s"]
    if pri is None:
        unknown = np.ones(len(seg_s), bool)
    else:
        seg_pri = pri.in_force(seg_s)
        known = np.isfinite(seg_pri) & (seg_pri > 0)
        unknown = ~known
        # ns / PRI summed, seconds at the end: exact where the true target is representable
        ideal = np.where(in_pbt & known, dur / np.where(known, seg_pri, 1.0), 0.0)
        cols["target_q"] = np.bincount(w, weights=ideal, minlength=nw + 1)[:nw] / 1e9
    # the time without an ideal cycle time, left out of the PRI-based KPIs' denominators
    cols["pbt_no_product_s"] = total(in_pbt & unknown)
    cols["apt_no_product_s"] = total(in_pbt & in_cycle & unknown)
    cols["aust_no_product_s"] = total(in_pbt & (state == _SETUP) & unknown)
    cols["adet_minor_no_product_s"] = total(in_pbt & minor & unknown)
    assert set(cols) <= set(COMPONENT_FIELDS)
    return Components.from_columns(cols, nw)
