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

from zhizao.quality import Quality
from zhizao.site import MachineState, MachineTypeConfig, StateProfile

__all__ = [
    "DEFAULT_STATE_MAPS",
    "NO_DATA",
    "STATES",
    "STATE_CODE",
    "StateClassifier",
    "StateTimeline",
    "state_timeline",
]

STATES: tuple[MachineState, ...] = tuple(MachineState)
STATE_CODE: dict[MachineState, int] = {s: i for i, s in enumerate(STATES)}
NO_DATA = STATE_CODE[MachineState.NO_DATA]
_S = MachineState

# Source code (as published) -> platform state. "code|mode" keys refine a code by an operation
# mode published next to it (e.g. OPC 40001 MachineryItemState + MachineryOperationMode).
_OPC40502: dict[str, MachineState] = {
    # CncChannelProgramStatus (names and enum values 0..4)
    "Running": _S.IN_CYCLE,
    "Stopped": _S.IDLE,
    "Waiting": _S.IN_CYCLE,  # dwell; waiting_is_in_cycle=False turns it into DELAY
    "Interrupted": _S.DELAY,
    "Canceled": _S.DELAY,
    # CncChannelStatus
    "Active": _S.IN_CYCLE,
    "Reset": _S.IDLE,
    # channel not in automatic, with a setup reason
    "Setup": _S.SETUP,
    "Running|Setup": _S.SETUP,
    "Active|Setup": _S.SETUP,
    "Running|Manual": _S.SETUP,
    "Active|Manual": _S.SETUP,
    "Running|MDA": _S.SETUP,
    "Active|MDA": _S.SETUP,
    "Alarm": _S.DELAY,
}
_OPC40001: dict[str, MachineState] = {
    # MachineryItemState names and values (0 NotAvailable, 1 OutOfService, 2 NotExecuting, 3 Executing)
    "NotAvailable": _S.NO_DATA,
    "OutOfService": _S.DELAY,
    "NotExecuting": _S.IDLE,
    "Executing": _S.IN_CYCLE,
    "0": _S.NO_DATA,
    "1": _S.DELAY,
    "2": _S.IDLE,
    "3": _S.IN_CYCLE,
    # MachineryOperationMode refines Executing (0 None, 1 Maintenance, 2 Setup, 3 Processing)
    "Executing|Processing": _S.IN_CYCLE,
    "Executing|Setup": _S.SETUP,
    "Executing|Maintenance": _S.DELAY,
    "3|3": _S.IN_CYCLE,
    "3|2": _S.SETUP,
    "3|1": _S.DELAY,
}
_PACKML_NAMES = (
    "Undefined", "Clearing", "Stopped", "Starting", "Idle", "Suspended", "Execute", "Stopping",
    "Aborting", "Aborted", "Holding", "Held", "Unholding", "Suspending", "Unsuspending",
    "Resetting", "Completing", "Complete",
)  # fmt: skip
_PACKML_STATE: dict[str, MachineState] = {
    "Undefined": _S.NO_DATA,
    "Execute": _S.IN_CYCLE,
    # starved/blocked by upstream/downstream and ready states: available but not producing
    "Idle": _S.IDLE, "Stopped": _S.IDLE, "Starting": _S.IDLE, "Resetting": _S.IDLE,
    "Complete": _S.IDLE, "Completing": _S.IDLE, "Suspended": _S.IDLE, "Suspending": _S.IDLE,
    "Unsuspending": _S.IDLE,
    # internal faults and operator holds: unplanned interruption
    "Held": _S.DELAY, "Holding": _S.DELAY, "Unholding": _S.DELAY, "Aborting": _S.DELAY,
    "Aborted": _S.DELAY, "Clearing": _S.DELAY, "Stopping": _S.DELAY,
}  # fmt: skip
_PACKML: dict[str, MachineState] = {
    **_PACKML_STATE,
    **{str(i): _PACKML_STATE[n] for i, n in enumerate(_PACKML_NAMES)},
    **{f"{n}|Maintenance": _S.SETUP for n in ("Execute", "6")},
    **{f"{n}|Manual": _S.SETUP for n in ("Execute", "6")},
}

DEFAULT_STATE_MAPS: dict[StateProfile, Mapping[str, MachineState]] = {
    StateProfile.OPC40502: _OPC40502,
    StateProfile.OPC40001: _OPC40001,
    StateProfile.PACKML: _PACKML,
    StateProfile.CUSTOM: {},
}


def _as_text(values: NDArray[np.generic]) -> NDArray[np.object_]:
    """Codes as strings; integral floats (``3.0``) become ``"3"`` so numeric enums match."""
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        ok = np.isfinite(arr) & (arr == np.round(arr))
        out = np.full(arr.shape, "", dtype=object)
        out[ok] = arr[ok].astype(np.int64).astype(str).astype(object)
        return out
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64).astype(str).astype(object)
    return arr.astype(str).astype(object)


def _normalize(code: str) -> str:
    """``"3.0"`` (an integral float that went through an object column) -> ``"3"``."""
    head, dot, tail = code.partition(".")
    if dot and tail.strip("0") == "" and head.lstrip("-").isdigit():
        return head
    return code


@dataclass(frozen=True, slots=True)
class StateClassifier:
    """Source code (and optional mode) -> platform state code (index into ``STATES``)."""

    mapping: Mapping[str, MachineState]

    @classmethod
    def for_type(cls, machine_type: MachineTypeConfig) -> StateClassifier:
        mapping: dict[str, MachineState] = {
            s.value: s for s in STATES
        }  # platform names map to themselves
        mapping.update(DEFAULT_STATE_MAPS[machine_type.profile])
        if machine_type.profile is StateProfile.OPC40502 and not machine_type.waiting_is_in_cycle:
            mapping.update({"Waiting": _S.DELAY, "2": _S.DELAY})
        mapping.update(machine_type.state_map)  # the site model wins
        return cls(mapping)

    def classify(
        self, codes: NDArray[np.generic], modes: NDArray[np.generic] | None = None
    ) -> tuple[NDArray[np.int8], NDArray[np.bool_]]:
        """Platform state codes and an ``unknown`` mask (unknown codes become NO_DATA).

        Work is done on the distinct (code, mode) pairs only, then spread with one ``take``.
        """
        text = _as_text(codes)
        n = len(text)
        if n == 0:
            return np.empty(0, np.int8), np.empty(0, bool)
        uc, ci = np.unique(text.astype(str), return_inverse=True)
        if modes is None:
            um, mi = np.array([""]), np.zeros(n, np.int64)
        else:
            um, mi = np.unique(_as_text(modes).astype(str), return_inverse=True)
        pair = ci.astype(np.int64) * len(um) + mi
        up, pi = np.unique(pair, return_inverse=True)
        lut = np.empty(len(up), np.int8)
        known = np.empty(len(up), bool)
        for j, p in enumerate(up.tolist()):  # distinct pairs, a handful
            code, mode = _normalize(str(uc[p // len(um)])), _normalize(str(um[p % len(um)]))
            state = self.mapping.get(f"{code}|{mode}") if mode else None
            if state is None:
                state = self.mapping.get(code)
            known[j] = state is not None
            lut[j] = STATE_CODE[state] if state is not None else NO_DATA
        return lut[pi], ~known[pi]


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
            np.array([start_ns], np.int64), np.array([end_ns], np.int64),
            np.array([no_data_code], np.int8),
        )  # fmt: skip
    nxt = np.append(ts[1:], np.int64(end_ns))
    held_end = np.minimum(nxt, ts + hb_ns)
    starts = np.concatenate(([np.int64(start_ns)], np.column_stack((ts, held_end)).ravel()))
    ends = np.concatenate(([ts[0]], np.column_stack((held_end, nxt)).ravel()))
    codes = np.concatenate(
        ([np.int8(no_data_code)], np.column_stack((c, np.full_like(c, no_data_code))).ravel())
    )
    starts = np.clip(starts, start_ns, end_ns)
    ends = np.clip(ends, start_ns, end_ns)
    keep = ends > starts
    return StateTimeline(starts[keep], ends[keep], codes[keep].astype(np.int8))
