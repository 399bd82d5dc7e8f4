"""One machine's state timeline with its source codes and calendar status (pure, no I/O).

``machine_timeline`` is the single place where a machine's raw state signals become platform
states: ``machine_components`` (the KPI engine, the offline calculator) builds its time elements
from it, and the API's "State timeline" and stop lists read it, so a timeline's time per state
inside PBT is exactly the APT / AUST / ADET / ADOT the engine stores.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, overload

import numpy as np
from numpy.typing import NDArray

from analytics.calendar import PlannedTime
from analytics.states import (
    NO_DATA,
    STATE_CODE,
    STATES,
    StateClassifier,
    StateTimeline,
    _as_text,
    _normalize,
    state_timeline,
)
from analytics.timeelements import TimeElementOptions, member
from zhizao.quality import Quality
from zhizao.site import MachineState, MachineTypeConfig

if TYPE_CHECKING:  # machine.py imports this module; the types are only annotations here
    from analytics.machine import MachineSignals, Signal

__all__ = ["IntervalCodes", "MachineTimeline", "machine_timeline"]

I64 = NDArray[np.int64]
_PLANNED = STATE_CODE[MachineState.PLANNED_DOWN]
_IDLE = STATE_CODE[MachineState.IDLE]


class IntervalCodes(Sequence[dict[str, str | None]]):
    """Per interval, the source code of each state signal in force at its start (``None``
    before the signal's first sample). Indexing builds one small dict; nothing per interval is
    built until asked for."""

    __slots__ = ("_columns", "_n")

    def __init__(self, columns: Mapping[str, NDArray[np.object_]], n: int) -> None:
        self._columns = dict(columns)
        self._n = n

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> dict[str, str | None]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, str | None]]: ...
    def __getitem__(self, i: int | slice) -> dict[str, str | None] | list[dict[str, str | None]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        if not -self._n <= i < self._n:
            raise IndexError(i)
        return {name: col[i] for name, col in self._columns.items()}

    def __iter__(self) -> Iterator[dict[str, str | None]]:
        return (self[i] for i in range(self._n))

    def column(self, signal: str) -> NDArray[np.object_]:
        """One state signal's code per interval."""
        return self._columns[signal]

    @property
    def signals(self) -> list[str]:
        return list(self._columns)


@dataclass(frozen=True, slots=True)
class MachineTimeline:
    """Contiguous intervals [start_ns, end_ns) covering the requested range.

    ``state`` is the platform state code (index into ``analytics.states.STATES``); NO_DATA where
    the data is missing (no sample, heartbeat expired), marked BAD/STALE, or an unknown code.
    Intervals are split at state changes, source code changes and calendar edges, so each has
    one state, one set of source codes and one calendar status: ``in_pot`` (inside planned
    operation time), ``planned_down`` (inside POT and planned down: a calendar break or
    maintenance, the PLANNED_DOWN state, or IDLE with ``no_order_is_planned_down``) and
    ``in_pbt`` (= in_pot and not planned_down: the time the time elements count).
    """

    start_ns: I64
    end_ns: I64
    state: NDArray[np.int8]
    in_pot: NDArray[np.bool_]
    planned_down: NDArray[np.bool_]
    in_pbt: NDArray[np.bool_]
    codes: IntervalCodes
    unknown_codes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.start_ns)

    def duration_s(self) -> NDArray[np.float64]:
        out: NDArray[np.float64] = (self.end_ns - self.start_ns).astype(np.float64) / 1e9
        return out

    def states(self) -> StateTimeline:
        """The plain state segments (what ``time_elements`` consumes)."""
        return StateTimeline(self.start_ns, self.end_ns, self.state)

    def seconds_by_state(self, *, pbt_only: bool = True) -> dict[MachineState, float]:
        """Total time per platform state (inside PBT by default), seconds, exact in ns."""
        mask = self.in_pbt if pbt_only else np.ones(len(self), bool)
        ns = np.bincount(
            self.state[mask].astype(np.int64),
            weights=(self.end_ns - self.start_ns)[mask].astype(np.float64),
            minlength=len(STATES),
        )
        return {s: float(ns[i]) / 1e9 for i, s in enumerate(STATES)}


def _mark_bad_quality(
    ts: I64, codes: NDArray[np.int8], quality: Mapping[str, Signal]
) -> tuple[I64, NDArray[np.int8]]:
    """The on-change state stream with NO_DATA wherever a state signal's marker is bad.

    Marker times join the stream; in between, the carried state holds unless some marker in
    force is BAD or STALE (a lost connection: DOMAIN section 3, counted as ADET and flagged).
    """
    marks = [q for q in quality.values() if len(q)]
    if not marks or not len(ts):  # no state at all is NO_DATA anyway
        return ts, codes
    all_ts = np.unique(np.concatenate([ts, *(q.ts_ns for q in marks)]))
    k = np.searchsorted(ts, all_ts, "right") - 1
    out = np.where(k >= 0, codes[np.clip(k, 0, None)], np.int8(NO_DATA)).astype(np.int8)
    bad = np.zeros(len(all_ts), bool)
    for q in marks:
        order = np.argsort(q.ts_ns, kind="stable")
        qk = np.searchsorted(q.ts_ns[order], all_ts, "right") - 1
        qv = np.asarray(q.value, np.float64)[order]
        bad |= (qk >= 0) & (qv[np.clip(qk, 0, None)] >= Quality.BAD)
    # before a state signal's first sample there is nothing to carry: keep the stream as it was
    keep = (k >= 0) | bad
    return all_ts[keep], np.where(bad, np.int8(NO_DATA), out)[keep].astype(np.int8)


def _state_segments(
    signals: MachineSignals,
    classifier: StateClassifier,
    heartbeat_s: float,
    start_ns: int,
    end_ns: int,
) -> tuple[StateTimeline, list[str]]:
    """Platform state segments over [start, end): combined state signals, the machine's other
    samples as proof of life, data-quality markers, the heartbeat."""
    streams = {name: (sig.ts_ns, sig.value) for name, sig in signals.states.items() if len(sig)}
    ts, codes, unknown = classifier.combine(streams)
    # any sample of the machine proves the connection is alive: re-assert the carried state there
    # (a separate energy meter proves nothing about the machine's own connection)
    own = [sig for role, sig in signals.signals.items() if role != "energy_kwh"]
    alive = [sig.ts_ns for sig in (*own, *signals.states.values()) if len(sig)]
    hb_ns = int(heartbeat_s * 1e9)
    if alive and len(ts):
        # only state gaps longer than the heartbeat need help; elsewhere the state holds anyway
        long_gap = np.flatnonzero(np.diff(ts) > hb_ns)
        tail = [a[a > ts[-1]] for a in alive]  # after the last state sample
        live = np.concatenate(tail)
        if long_gap.size:
            gap_lo, gap_hi = ts[long_gap], ts[long_gap + 1]
            inner = np.concatenate(alive)
            g = np.searchsorted(gap_lo, inner, "right") - 1
            gg = np.clip(g, 0, None)
            live = np.concatenate(
                (live, inner[(g >= 0) & (inner > gap_lo[gg]) & (inner < gap_hi[gg])])
            )
        if live.size:
            k = np.searchsorted(ts, live, "right") - 1
            ts, idx = np.unique(np.concatenate((ts, live)), return_index=True)
            codes = np.concatenate((codes, codes[k]))[idx]
    ts, codes = _mark_bad_quality(ts, codes, signals.quality)
    tl = state_timeline(ts, codes, start_ns=start_ns, end_ns=end_ns, heartbeat_s=heartbeat_s)
    return tl, unknown


def _code_changes(sig: Signal) -> tuple[I64, NDArray[np.object_]]:
    """A state signal's samples where its value changes, and the code text of each."""
    order = np.argsort(sig.ts_ns, kind="stable")
    ts = np.asarray(sig.ts_ns, np.int64)[order]
    vals = np.asarray(sig.value)[order]
    if len(vals) > 1:
        changed = np.concatenate(([True], np.asarray(vals[1:] != vals[:-1], bool)))
        ts, vals = ts[changed], vals[changed]
    text = np.array([_normalize(str(c)) for c in _as_text(vals).tolist()], dtype=object)
    return ts, text


def machine_timeline(
    signals: MachineSignals,
    machine_type: MachineTypeConfig | StateClassifier,
    planned: PlannedTime,
    start_ns: int,
    end_ns: int,
    *,
    heartbeat_s: float,
    options: TimeElementOptions | None = None,
    with_codes: bool = True,
) -> MachineTimeline:
    """The machine's timeline over [start_ns, end_ns).

    ``signals`` are the machine's raw signals as the engine reads them (``SiteReader``: state
    signals, their data-quality markers and the machine's other signals, with the last sample
    before ``start_ns`` carried in); ``machine_type`` gives the state map (or a ready
    ``StateClassifier``); ``heartbeat_s`` and ``options`` are the engine's (``KpiConfig``
    ``heartbeat_s``; ``TimeElementOptions`` for ``no_order_is_planned_down``); ``planned`` must
    cover the range. ``with_codes=False`` skips the source-code column (the engine does not need
    it; the states, boundaries apart from code changes, and calendar flags are the same).
    """
    options = options or TimeElementOptions()
    classifier = (
        machine_type
        if isinstance(machine_type, StateClassifier)
        else StateClassifier.for_type(machine_type)
    )
    if end_ns <= start_ns:
        e = np.empty(0, np.int64)
        b = np.empty(0, bool)
        return MachineTimeline(e, e.copy(), np.empty(0, np.int8), b, b.copy(), b.copy(),
                               IntervalCodes({}, 0))  # fmt: skip
    tl, unknown = _state_segments(signals, classifier, heartbeat_s, start_ns, end_ns)
    changes: dict[str, tuple[I64, NDArray[np.object_]]] = {}
    if with_codes:
        changes = {name: _code_changes(sig) for name, sig in sorted(signals.states.items())}
    parts = [tl.start_ns, tl.end_ns, planned.pot_start_ns, planned.pot_end_ns,
             planned.down_start_ns, planned.down_end_ns, *(c[0] for c in changes.values())]  # fmt: skip
    bp = np.unique(np.concatenate([np.asarray(p, np.int64) for p in parts]))
    bp = bp[(bp > start_ns) & (bp < end_ns)]
    seg_s = np.concatenate(([np.int64(start_ns)], bp))
    seg_e = np.concatenate((bp, [np.int64(end_ns)]))
    k = np.searchsorted(tl.start_ns, seg_s, "right") - 1  # the timeline covers the whole range
    state = tl.code[k].astype(np.int8)
    in_pot = member(planned.pot_start_ns, planned.pot_end_ns, seg_s)
    down = member(planned.down_start_ns, planned.down_end_ns, seg_s) | (state == _PLANNED)
    if options.no_order_is_planned_down:
        down |= state == _IDLE
    planned_down = in_pot & down
    # index of the code in force per signal (-1 before its first sample)
    code_idx = {
        name: np.searchsorted(c_ts, seg_s, "right") - 1 for name, (c_ts, _) in changes.items()
    }
    same = (state[1:] == state[:-1]) & (in_pot[1:] == in_pot[:-1])
    same &= planned_down[1:] == planned_down[:-1]
    for idx in code_idx.values():
        same &= idx[1:] == idx[:-1]
    first = np.concatenate(([True], ~same))
    last = np.concatenate((~same, [True]))
    columns: dict[str, NDArray[np.object_]] = {}
    for name, (_, text) in changes.items():
        idx = code_idx[name][first]
        col = np.full(len(idx), None, dtype=object)
        col[idx >= 0] = text[idx[idx >= 0]]
        columns[name] = col
    n = int(first.sum())
    return MachineTimeline(
        seg_s[first],
        seg_e[last],
        state[first],
        in_pot[first],
        planned_down[first],
        (in_pot & ~down)[first],
        IntervalCodes(columns, n),
        unknown,
    )
