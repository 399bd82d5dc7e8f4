"""Reset- and rollover-aware counter increments, vectorized, with state kept between batches.

For a series declared as a counter (parts, kWh, m3) ingest writes the raw value and, next to it,
the increment since the previous sample of the same series (field ``<field>_inc`` by default).
InfluxQL's ``NON_NEGATIVE_DIFFERENCE`` drops the interval of a reset; stored increments keep it,
so a KPI is ``SUM(<field>_inc)`` over any window.

Rules (DOMAIN.md rule 4):
- increment = value - previous value when that is >= 0;
- a drop is a reset: the post-reset value is the increment (the counter restarted from 0);
- with ``rollover_limit`` (the modulus, e.g. 65536 for a 16-bit counter) a drop from a previous
  value in the top ``rollover_band`` of the range is a rollover: increment = limit - prev + value;
- the first sample of a series this process has seen gets no increment (there is no previous
  value), and a sample not newer than the last one seen gets none either (a redelivery: the
  increment was computed and written the first time);
- for gateway frames, the previous sample is used only if this process saw every frame of that
  gateway in between (frame sequence numbers without a gap). With several ingest processes on a
  shared subscription a gateway's frames alternate between them: a process that missed frame
  ``n-1`` cannot know the value before frame ``n``, and guessing from older state would count
  the interval twice. Such samples get no increment and are counted
  (``unknown_previous``); for exact increments with N processes, partition gateways between
  processes (``mqtt.frame_filter``) instead of sharing one subscription.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from zhizao.config import StrictModel
from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable

__all__ = ["CounterSpec", "CounterTracker", "counter_increments", "counter_steps"]


# a frame sequence number this far below the highest seen means the gateway started over
_SEQ_RESTART = 1000
# "gateway" of a state seeded from InfluxDB at start-up: the stored last value, trusted once
_SEED = -2


class CounterSpec(StrictModel):
    """A signal that is a counter: every series with this measurement and field, any tags."""

    measurement: str
    field: str
    rollover_limit: float | None = Field(
        None, gt=0, description="counter modulus, e.g. 65536 for 16 bits; none = never wraps"
    )
    rollover_band: float = Field(
        0.9,
        gt=0,
        le=1,
        description="a drop counts as a rollover only from a previous value >= band x limit",
    )
    increment_field: str | None = Field(None, description="default: <field>_inc")

    @model_validator(mode="after")
    def _check(self) -> CounterSpec:
        if self.increment_field == self.field:
            raise ValueError("increment_field must differ from field")
        return self

    @property
    def inc_field(self) -> str:
        return self.increment_field or f"{self.field}_inc"


def counter_steps(
    value: NDArray[np.float64] | NDArray[np.int64],
    prev: NDArray[np.float64] | NDArray[np.int64],
    limit: NDArray[np.float64],
    band: NDArray[np.float64],
) -> tuple[NDArray[np.float64] | NDArray[np.int64], NDArray[np.bool_]]:
    """Increment per sample from its previous value, and where the counter was reset (a drop
    that is not a rollover). ``limit`` is NaN where there is none. The one place that says what a
    counter drop means (DOMAIN.md rule 4); ingest and the KPI engine both call it."""
    inc = value - prev
    drop = inc < 0
    if not drop.any():
        return inc, drop
    has_limit = ~np.isnan(limit)
    rollover = drop & has_limit & (prev >= np.where(has_limit, limit * band, np.inf))
    wrapped = np.where(has_limit, limit, 0).astype(inc.dtype) - prev + value
    inc = np.where(rollover, wrapped, np.where(drop, value, inc))
    return inc, drop & ~rollover


def counter_increments(
    value: NDArray[np.float64] | NDArray[np.int64],
    prev: NDArray[np.float64] | NDArray[np.int64],
    limit: NDArray[np.float64],
    band: NDArray[np.float64],
) -> NDArray[np.float64] | NDArray[np.int64]:
    """Increment per sample from its previous value; ``limit`` is NaN where there is none."""
    return counter_steps(value, prev, limit, band)[0]


@dataclass
class _TypeState:
    last_value: NDArray[np.generic]
    last_ts: NDArray[np.int64]
    has_last: NDArray[np.bool_]


class CounterTracker:
    """Computes increments for the counter series of successive batches over one table."""

    def __init__(self, specs: list[CounterSpec]) -> None:
        self.specs = {(s.measurement, s.field): s for s in specs}
        self._seen = 0  # table rows examined
        self._inc_series = np.empty(0, np.int32)  # -1: not a counter
        self._limit = np.empty(0, np.float64)
        self._band = np.empty(0, np.float64)
        self._last_f = np.zeros(0, np.float64)
        self._last_i = np.zeros(0, np.int64)
        self._last_ts = np.zeros(0, np.int64)
        self._has_last = np.zeros(0, np.bool_)
        self._last_gw = np.zeros(0, np.int64)  # gateway of each series' last sample (-1: none)
        self._last_seq = np.zeros(0, np.int64)  # frame sequence number of that sample
        self._gw_seen: dict[int, int] = {}  # gateway -> highest frame seq seen
        self._gw_break: dict[int, int] = {}  # gateway -> highest seq that followed a gap
        self.out_of_order = 0  # samples not newer than the last seen (no increment)
        self.unknown_previous = 0  # samples whose previous value this process cannot know
        self.last_source = np.empty(0, np.int64)  # rows of the last batch that got increments

    def _refresh(self, table: SeriesTable) -> None:
        if not self.specs:
            return
        while self._seen < len(table):
            # adding increment series grows the table inside this loop; they are never counters
            start, stop = self._seen, len(table)
            inc = np.full(stop - start, -1, np.int32)
            limit = np.full(stop - start, np.nan)
            band = np.ones(stop - start)
            for i, key in enumerate(table.keys[start:stop]):
                spec = self.specs.get((key.measurement, key.field))
                if spec is None or key.dtype not in (FieldType.INT, FieldType.FLOAT):
                    continue
                inc_key = SeriesKey(key.measurement, key.tags, spec.inc_field, key.dtype)
                inc[i] = table.add(inc_key)
                limit[i] = np.nan if spec.rollover_limit is None else spec.rollover_limit
                band[i] = spec.rollover_band
            self._inc_series = np.concatenate([self._inc_series, inc])
            self._limit = np.concatenate([self._limit, limit])
            self._band = np.concatenate([self._band, band])
            self._seen = stop
        grow = len(table) - len(self._last_ts)
        if grow > 0:
            self._last_f = np.concatenate([self._last_f, np.zeros(grow)])
            self._last_i = np.concatenate([self._last_i, np.zeros(grow, np.int64)])
            self._last_ts = np.concatenate([self._last_ts, np.zeros(grow, np.int64)])
            self._has_last = np.concatenate([self._has_last, np.zeros(grow, np.bool_)])
            self._last_gw = np.concatenate([self._last_gw, np.full(grow, -1, np.int64)])
            self._last_seq = np.concatenate([self._last_seq, np.zeros(grow, np.int64)])

    def seed(self, table: SeriesTable, key: SeriesKey, value: float, ts_ns: int) -> bool:
        """Start ``key``'s state from its last stored raw value (False if not a counter)."""
        spec = self.specs.get((key.measurement, key.field))
        if spec is None or key.dtype not in (FieldType.INT, FieldType.FLOAT):
            return False
        s = table.add(key)
        self._refresh(table)
        if key.dtype is FieldType.FLOAT:
            self._last_f[s] = value
        else:
            self._last_i[s] = int(value)
        self._last_ts[s] = ts_ns
        self._has_last[s] = True
        self._last_gw[s] = _SEED
        self._last_seq[s] = 0
        return True

    def _latest_breaks(
        self, gateway: NDArray[np.int64], seq: NDArray[np.int64]
    ) -> NDArray[np.int64]:
        """Per sample: the highest frame seq <= its own that followed a gap (-1 for non-frames).

        A previous sample at frame ``a`` is usable for a sample at frame ``b`` only if no frame
        in ``a+1 .. b`` followed a gap, i.e. ``latest_break(b) <= a``.
        """
        out = np.full(len(gateway), -1, np.int64)
        is_frame = gateway >= 0
        if not is_frame.any():
            return out
        pairs, inverse = np.unique(
            np.stack([gateway[is_frame], seq[is_frame]], axis=1), axis=0, return_inverse=True
        )
        breaks = np.empty(len(pairs), np.int64)
        # per frame, not per sample: a batch holds a handful of frames per gateway
        for k, (gw, sq) in enumerate(pairs.tolist()):
            seen = self._gw_seen.get(gw)
            if seen is not None and sq == seen + 1:
                self._gw_seen[gw] = sq
                breaks[k] = self._gw_break[gw]
                continue
            if seen is None or sq > seen + 1 or sq + _SEQ_RESTART < seen:
                # first frame, a gap (another process or a loss), or a gateway whose sequence
                # numbers started over: nothing before this frame can be trusted
                self._gw_seen[gw] = sq
                self._gw_break[gw] = sq
            # an old frame (redelivery, reordering) links to nothing either
            breaks[k] = sq
        out[is_frame] = breaks[inverse.reshape(-1)]
        return out

    def increments(
        self,
        table: SeriesTable,
        batch: Batch,
        gateway: NDArray[np.int64] | None = None,
        seq: NDArray[np.int64] | None = None,
    ) -> Batch:
        """Increment samples (new series in ``table``) for the counter samples of ``batch``.

        ``batch`` must hold accepted samples only; state advances, so call once per batch.
        ``gateway`` (an id per gateway, -1 for samples not from frames) and ``seq`` (frame
        sequence number) let the tracker refuse a previous value across a missed frame.
        """
        self.last_source = np.empty(0, np.int64)
        if not self.specs or len(batch) == 0:
            return Batch.empty()
        self._refresh(table)
        s_all = batch.series
        idx = np.flatnonzero(self._inc_series[s_all] >= 0)
        if len(idx) == 0:
            return Batch.empty()
        if gateway is None or seq is None:
            gateway = np.full(len(batch), -1, np.int64)
            seq = np.zeros(len(batch), np.int64)
        gw_all, seq_all = gateway, seq
        s = s_all[idx]
        ts = batch.ts_ns[idx]
        # newer than the state only, and one sample per (series, ts): redeliveries carry no delta
        fresh = ~self._has_last[s] | (ts > self._last_ts[s])
        self.out_of_order += int(len(idx) - np.count_nonzero(fresh))
        idx, s, ts = idx[fresh], s[fresh], ts[fresh]
        order = np.lexsort((ts, s))
        idx, s, ts = idx[order], s[order], ts[order]
        if len(s) > 1:
            same = np.r_[False, (s[1:] == s[:-1]) & (ts[1:] == ts[:-1])]
            idx, s, ts = idx[~same], s[~same], ts[~same]
        n = len(s)
        if n == 0:
            return Batch.empty()
        first = np.r_[True, s[1:] != s[:-1]]
        last = np.r_[s[1:] != s[:-1], True]
        is_float = table.dtypes[s] == FieldType.FLOAT
        gw, sq = gw_all[idx], seq_all[idx]
        brk = self._latest_breaks(gw, sq)
        prev_gw = np.r_[np.int64(-1), gw[:-1]]
        prev_sq = np.r_[np.int64(0), sq[:-1]]
        prev_gw[first] = self._last_gw[s[first]]
        prev_sq[first] = self._last_seq[s[first]]
        # same gateway (or both not from frames) and no missed frame in between; or the value
        # InfluxDB held at start-up (a single consumer has stored every frame before it)
        contiguous = ((prev_gw == gw) & ((gw < 0) | (brk <= prev_sq))) | (prev_gw == _SEED)
        known = ~first | self._has_last[s]
        has_prev = known & contiguous
        self.unknown_previous += int(np.count_nonzero(known & ~contiguous))
        f64 = np.zeros(n)
        i64 = np.zeros(n, np.int64)
        for want_float in (True, False):
            m = is_float if want_float else ~is_float
            if not m.any():
                continue
            sel = np.flatnonzero(m)
            ss = s[sel]
            if want_float:
                v: NDArray[np.float64] | NDArray[np.int64] = batch.value_f64[idx[sel]]
                state: NDArray[np.float64] | NDArray[np.int64] = self._last_f
            else:
                v = batch.value_i64[idx[sel]]
                state = self._last_i
            prev = np.empty_like(v)
            prev[1:] = v[:-1]
            prev[0] = 0
            f = first[sel]
            prev[f] = state[ss[f]]
            inc = counter_increments(v, prev, self._limit[ss], self._band[ss])
            if want_float:
                f64[sel] = inc
            else:
                i64[sel] = inc
            state[ss[last[sel]]] = v[last[sel]]
        self._last_ts[s[last]] = ts[last]
        self._has_last[s[last]] = True
        self._last_gw[s[last]] = gw[last]
        self._last_seq[s[last]] = sq[last]
        keep = np.flatnonzero(has_prev)
        self.last_source = idx[keep].astype(np.int64)
        return Batch(
            series=self._inc_series[s[keep]].astype(np.int32),
            ts_ns=ts[keep],
            value_f64=f64[keep],
            value_i64=i64[keep],
            quality=batch.quality[idx[keep]],
        )

    def with_increments(
        self,
        table: SeriesTable,
        batch: Batch,
        gateway: NDArray[np.int64] | None = None,
        seq: NDArray[np.int64] | None = None,
    ) -> tuple[Batch, NDArray[np.int64]]:
        """``batch`` with each increment right after its raw sample, and the row of ``batch``
        each output row comes from.

        Adjacent samples of one measurement + tags + timestamp become one line-protocol line, so
        the raw value and its increment are stored atomically (never one without the other).
        """
        inc = self.increments(table, batch, gateway, seq)
        rows = np.arange(len(batch), dtype=np.int64)
        if len(inc) == 0:
            return batch, rows
        source = np.concatenate([rows, self.last_source])
        order = np.argsort(source, kind="stable")  # raw before its increment
        return Batch.concat([batch, inc]).take(order), source[order]
