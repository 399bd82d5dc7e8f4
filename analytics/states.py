"""Machine states: classification of source codes into platform states, and state timelines.

Source signals differ per machine type (OPC 40502 CNC, OPC 40001/40501 machinery, PackML, custom
codes). ``StateClassifier`` maps them to the platform states of DOMAIN section 3, vectorized over
the distinct codes (never per sample). ``state_timeline`` turns on-change samples into contiguous
segments: the last state before a window is carried into it, and a state is trusted only for
``heartbeat_s`` after its sample; the rest of a longer gap is NO_DATA, never "running".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from zhizao.profiles import PROFILES
from zhizao.quality import Quality
from zhizao.site import MachineState, MachineTypeConfig, StateProfile

__all__ = [
    "DEFAULT_STATE_MAPS",
    "NO_DATA",
    "PRECEDENCE",
    "STATES",
    "STATE_CODE",
    "UNMAPPED",
    "StateClassifier",
    "StateTimeline",
    "state_timeline",
]

STATES: tuple[MachineState, ...] = tuple(MachineState)
STATE_CODE: dict[MachineState, int] = {s: i for i, s in enumerate(STATES)}
NO_DATA = STATE_CODE[MachineState.NO_DATA]
_S = MachineState

# Source code -> platform state per profile: the registry of ``zhizao.profiles`` (its signals,
# state maps and neutral codes are listed in docs/PROFILES.md).
DEFAULT_STATE_MAPS: dict[StateProfile, Mapping[str, MachineState]] = {
    p: prof.state_map for p, prof in PROFILES.items()
}

# When several state signals speak at once (program status, channel status, operation mode ...),
# the most restrictive wins: a machine is IN_CYCLE only if no signal says otherwise.
PRECEDENCE: tuple[MachineState, ...] = (
    _S.IN_CYCLE, _S.IDLE, _S.PLANNED_DOWN, _S.SETUP, _S.DELAY, _S.NO_DATA,
)  # fmt: skip
_RANK = np.array([PRECEDENCE.index(s) for s in STATES], np.int8)  # state code -> rank
_BY_RANK = np.array([STATE_CODE[s] for s in PRECEDENCE], np.int8)  # rank -> state code
UNMAPPED = -1


def _as_text(values: NDArray[np.generic]) -> NDArray[np.str_]:
    """Codes as strings; integral floats (``3.0``) become ``"3"`` so numeric enums match."""
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        ok = np.isfinite(arr) & (arr == np.round(arr))
        out = arr.astype(str)
        out[ok] = arr[ok].astype(np.int64).astype(str)
        return out
    if arr.dtype.kind == "b":
        return arr.astype(np.int64).astype(str)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64).astype(str)
    return arr.astype(str)


def _normalize(code: str) -> str:
    """``"3.0"`` (an integral float that went through an object column) -> ``"3"``."""
    head, dot, tail = code.partition(".")
    if dot and tail.strip("0") == "" and head.lstrip("-").isdigit():
        return head
    return code


@dataclass(frozen=True, slots=True)
class StateClassifier:
    """Source codes of one or more state signals -> platform state codes (index into ``STATES``)."""

    mapping: Mapping[str, MachineState]
    # codes that are known but name no state (an operation mode "Automatic"): never "unknown"
    neutral: frozenset[str] = frozenset()

    @classmethod
    def for_type(cls, machine_type: MachineTypeConfig) -> StateClassifier:
        # platform state names map to themselves, so a source may publish them directly
        mapping: dict[str, MachineState] = {s.value: s for s in STATES}
        profile = PROFILES[machine_type.profile]
        mapping.update(profile.state_map)
        if machine_type.profile is StateProfile.OPC40502 and not machine_type.waiting_is_in_cycle:
            mapping.update({"Waiting": _S.DELAY, "program_status=2": _S.DELAY})
        mapping.update(machine_type.state_map)  # the site model wins
        return cls(mapping, profile.neutral)

    def is_neutral(self, signal: str, code: str) -> bool:
        return f"{signal}={code}" in self.neutral or code in self.neutral

    def lookup(self, codes: NDArray[np.generic], signal: str = "") -> NDArray[np.int8]:
        """State code per sample, ``UNMAPPED`` (-1) where the map knows neither key.

        Work is done on the distinct codes only, then spread with one ``take``.
        """
        arr = np.asarray(codes)
        if len(arr) == 0:
            return np.empty(0, np.int8)
        if arr.dtype.kind in "iub":
            # small integer enums (the common case): a direct table instead of a sort
            ints = arr.astype(np.int64)
            lo, hi = int(ints.min()), int(ints.max())
            if hi - lo < 65536:
                present = np.flatnonzero(np.bincount(ints - lo, minlength=hi - lo + 1))
                table = np.full(hi - lo + 1, UNMAPPED, np.int8)
                table[present] = self._lut(present + lo, signal)
                return table[ints - lo]
        uniq, inv = np.unique(_as_text(arr), return_inverse=True)
        return self._lut(uniq, signal)[inv]

    def _lut(self, uniq: NDArray[np.generic], signal: str) -> NDArray[np.int8]:
        lut = np.full(len(uniq), UNMAPPED, np.int8)
        for j, raw in enumerate(_as_text(uniq).tolist()):  # distinct codes, a handful
            code = _normalize(str(raw))
            state = self.mapping.get(f"{signal}={code}") if signal else None
            if state is None:
                state = self.mapping.get(code)
            if state is not None:
                lut[j] = STATE_CODE[state]
        return lut

    def classify(
        self, codes: NDArray[np.generic], signal: str = ""
    ) -> tuple[NDArray[np.int8], NDArray[np.bool_]]:
        """One state signal: platform codes and an ``unknown`` mask (unknown become NO_DATA)."""
        looked = self.lookup(codes, signal)
        unknown = looked == UNMAPPED
        return np.where(unknown, np.int8(NO_DATA), looked).astype(np.int8), unknown

    def combine(
        self, signals: Mapping[str, tuple[NDArray[np.int64], NDArray[np.generic]]]
    ) -> tuple[NDArray[np.int64], NDArray[np.int8], list[str]]:
        """Several state signals (name -> (ts_ns, codes)) -> one on-change state stream.

        Each signal is carried forward from its last sample; at every change of any signal the
        most restrictive mapped state wins (``PRECEDENCE``). Where no signal maps to a state the
        result is NO_DATA. Every ``signal=code`` that no map knows (and is not neutral) is
        returned, also where another signal still gives the state.
        """
        items = [
            (name, np.asarray(ts, np.int64), np.asarray(v))
            for name, (ts, v) in signals.items()
            if len(ts)
        ]
        if not items:
            return np.empty(0, np.int64), np.empty(0, np.int8), []
        if len(items) == 1 and bool(np.all(items[0][1][1:] > items[0][1][:-1])):
            name, ts, vals = items[0]
            looked = self.lookup(vals, name)
            if not (looked == UNMAPPED).any():
                return ts, looked, []
        all_ts = np.unique(np.concatenate([ts for _, ts, _ in items]))
        best = np.full(len(all_ts), -1, np.int8)
        unknown_codes: set[str] = set()
        for name, ts, vals in items:  # a few signals per machine, each vectorized
            order = np.argsort(ts, kind="stable")
            looked = self.lookup(vals[order], name)
            k = np.searchsorted(ts[order], all_ts, "right") - 1
            at = np.where(k >= 0, looked[np.clip(k, 0, None)], UNMAPPED)
            rank = np.where(at >= 0, _RANK[np.clip(at, 0, None)], -1).astype(np.int8)
            best = np.maximum(best, rank)
            # codes no map knows are reported even where another signal gives the state (the
            # state is then that signal's; where none maps it is NO_DATA); neutral codes are known
            unmapped = vals[order][looked == UNMAPPED]
            if len(unmapped):
                for c in np.unique(_as_text(unmapped)).tolist():
                    code = _normalize(str(c))
                    if not self.is_neutral(name, code):
                        unknown_codes.add(f"{name}={code}")
        state = np.where(best >= 0, _BY_RANK[np.clip(best, 0, None)], np.int8(NO_DATA)).astype(
            np.int8
        )
        return all_ts, state, sorted(unknown_codes)

    def unknown_seconds(
        self,
        signals: Mapping[str, tuple[NDArray[np.int64], NDArray[np.generic]]],
        win_start_ns: NDArray[np.int64],
        win_end_ns: NDArray[np.int64],
    ) -> NDArray[np.float64]:
        """Per window, the seconds during which some state signal's last published code is one
        no map knows (neutral codes are known): the metric beside the notes' code list."""
        ws = np.asarray(win_start_ns, np.int64)
        we = np.asarray(win_end_ns, np.int64)
        pts: list[NDArray[np.int64]] = []
        flags: list[tuple[NDArray[np.int64], NDArray[np.bool_]]] = []
        for name, (ts_raw, vals_raw) in signals.items():
            if not len(ts_raw):
                continue
            order = np.argsort(np.asarray(ts_raw, np.int64), kind="stable")
            ts = np.asarray(ts_raw, np.int64)[order]
            vals = np.asarray(vals_raw)[order]
            bad = self.lookup(vals, name) == UNMAPPED
            if bad.any():
                uniq, inv = np.unique(_as_text(vals[bad]), return_inverse=True)
                known = np.array([self.is_neutral(name, _normalize(str(c))) for c in uniq.tolist()])
                bad[bad] = ~known[inv]
            pts.append(ts)
            flags.append((ts, bad))
        if not pts or not len(ws):
            return np.zeros(len(ws), np.float64)
        t = np.unique(np.concatenate(pts))
        any_bad = np.zeros(len(t), bool)
        for ts, bad in flags:
            k = np.searchsorted(ts, t, "right") - 1
            any_bad |= (k >= 0) & bad[np.clip(k, 0, None)]
        # integral of the step function "some code unknown" up to x, at the window edges
        f = any_bad.astype(np.float64)
        cum = np.concatenate(([0.0], np.cumsum(f[:-1] * np.diff(t).astype(np.float64))))

        def integral(x: NDArray[np.int64]) -> NDArray[np.float64]:
            k = np.searchsorted(t, x, "right") - 1
            kk = np.clip(k, 0, None)
            out = cum[kk] + f[kk] * (x - t[kk]).astype(np.float64)
            return np.where(k >= 0, out, 0.0)

        return (integral(we) - integral(ws)) / 1e9


@dataclass(frozen=True, slots=True)
class StateTimeline:
    """Contiguous segments [start_ns, end_ns) covering a range, each with one code."""

    start_ns: NDArray[np.int64]
    end_ns: NDArray[np.int64]
    code: NDArray[np.int8]

    def duration_s(self) -> NDArray[np.float64]:
        return (self.end_ns - self.start_ns).astype(np.float64) / 1e9


def state_timeline(
    ts_ns: NDArray[np.int64],
    code: NDArray[np.integer],
    *,
    start_ns: int,
    end_ns: int,
    heartbeat_s: float,
    quality: NDArray[np.uint8] | None = None,
    no_data_code: int = NO_DATA,
) -> StateTimeline:
    """Segments over [start_ns, end_ns) from on-change samples.

    The last sample before ``start_ns`` is carried in; a sample holds for at most ``heartbeat_s``
    (the gap after that, up to the next sample, is ``no_data_code``), and so does time before the
    first known sample. Samples with bad or stale quality count as no data.
    """
    ts = np.asarray(ts_ns, np.int64)
    c = np.asarray(code).astype(np.int8)
    order = np.argsort(ts, kind="stable")
    ts, c = ts[order], c[order]
    if quality is not None:
        q = np.asarray(quality)[order]
        c = np.where((q == Quality.BAD) | (q == Quality.STALE), np.int8(no_data_code), c)
    # keep the last sample at or before start (carry-in) and everything before the end
    first = max(int(np.searchsorted(ts, start_ns, "right")) - 1, 0)
    last = int(np.searchsorted(ts, end_ns, "left"))
    ts, c = ts[first:last], c[first:last]
    hb_ns = np.int64(round(heartbeat_s * 1e9))
    if len(ts) == 0:
        return StateTimeline(
            np.array([start_ns], np.int64),
            np.array([end_ns], np.int64),
            np.array([no_data_code], np.int8),
        )
    # runs: consecutive samples of one code with no gap above the heartbeat (1 s samples of a
    # steady state collapse into one run, so the rest works on runs, not samples)
    gap = np.diff(ts)
    new = np.concatenate(([True], (c[1:] != c[:-1]) | (gap > hb_ns)))
    first_i = np.flatnonzero(new)
    last_i = np.append(first_i[1:] - 1, len(ts) - 1)
    run_start = ts[first_i]
    nxt = np.append(run_start[1:], np.int64(end_ns))
    held_end = np.minimum(nxt, ts[last_i] + hb_ns)
    rc = c[first_i]
    starts = np.concatenate(([np.int64(start_ns)], np.column_stack((run_start, held_end)).ravel()))
    ends = np.concatenate(([run_start[0]], np.column_stack((held_end, nxt)).ravel()))
    codes = np.concatenate(
        ([np.int8(no_data_code)], np.column_stack((rc, np.full_like(rc, no_data_code))).ravel())
    )
    starts = np.clip(starts, start_ns, end_ns)
    ends = np.clip(ends, start_ns, end_ns)
    keep = ends > starts
    starts, ends, codes = starts[keep], ends[keep], codes[keep].astype(np.int8)
    # merge touching segments of one code (a NO_DATA gap next to a NO_DATA sample, ...)
    new = np.concatenate(([True], (codes[1:] != codes[:-1]) | (starts[1:] != ends[:-1])))
    last_of_run = np.concatenate((new[1:], [True]))
    return StateTimeline(starts[new], ends[last_of_run], codes[new])
