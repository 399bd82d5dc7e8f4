"""Reset- and rollover-aware counter increments, and their attribution to windows and products.

Part and energy counters only grow, except at a reset (power cycle, operator reset) or a rollover
(2^16, 2^32 ...). An increment is never negative: a drop is a reset and the post-reset value is
the increment; with a configured rollover limit, a drop from the top ``wrap_fraction`` of the
range is a wrap and counts ``limit - previous + value``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

from ingest.counters import counter_steps

__all__ = ["counter_increments", "increments_by_window"]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


def counter_increments(
    ts_ns: I64,
    value: F64,
    *,
    rollover: float | None = None,
    wrap_fraction: float = 0.1,
) -> tuple[I64, F64, NDArray[np.bool_]]:
    """Sorted timestamps, the increment ending at each sample (0 for the first) and a reset mask.

    Increments are attributed to the timestamp of the later sample. NaN values are dropped.
    """
    ts = np.asarray(ts_ns, np.int64)
    v = np.asarray(value, np.float64)
    ok = np.isfinite(v)
    ts, v = ts[ok], v[ok]
    if len(ts) > 1 and not bool(np.all(ts[1:] >= ts[:-1])):
        order = np.argsort(ts, kind="stable")
        ts, v = ts[order], v[order]
    if len(v) == 0:
        return ts, v, np.zeros(0, bool)
    prev = np.concatenate(([v[0]], v[:-1]))
    limit = np.full(len(v), np.nan if rollover is None else float(rollover))
    band = np.full(len(v), 1.0 - wrap_fraction)
    inc, reset = counter_steps(v, prev, limit, band)
    return ts, inc.astype(np.float64, copy=False), reset


def increments_by_window(
    ts_ns: I64,
    increment: F64,
    win_start_ns: I64,
    win_end_ns: I64,
    *,
    closed: Literal["left", "right"] = "left",
) -> F64:
    """Sum of increments per window (sorted, disjoint).

    ``closed="left"``: windows [start, end), for events counted at their time (a part completed
    at t). ``closed="right"``: windows (start, end], for cumulative meters, whose increment
    between readings t_{i-1} and t_i belongs to (t_{i-1}, t_i]: a window then holds exactly the
    energy between the readings at its two edges.
    """
    ws = np.asarray(win_start_ns, np.int64)
    we = np.asarray(win_end_ns, np.int64)
    ts = np.asarray(ts_ns, np.int64)
    nw = len(ws)
    if not nw:
        return np.zeros(0, np.float64)
    if closed == "left":
        w = np.searchsorted(ws, ts, "right") - 1
        inside = (w >= 0) & (ts < we[np.clip(w, 0, None)])
    else:
        w = np.searchsorted(we, ts, "left")  # first window ending at or after ts
        inside = (w < nw) & (ts > ws[np.clip(w, 0, nw - 1)])
    w = np.where(inside, w, nw)
    out: F64 = np.bincount(w, weights=increment, minlength=nw + 1)[:nw].astype(np.float64)
    return out
