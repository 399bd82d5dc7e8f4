"""Per-sample validation (vectorized) and duplicate-frame detection.

A rejected sample gets a reason code; the rest of the batch proceeds. Codes index
``SAMPLE_REASONS`` (0 = accepted) so a whole batch's verdict is one ``uint8`` column.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from zhizao.config import StrictModel
from zhizao.model import Batch, FieldType, SeriesTable

__all__ = [
    "SAMPLE_REASONS",
    "FrameDeduplicator",
    "SampleValidator",
    "ValidationConfig",
    "reason_code",
]

# position = code - 1; 0 means accepted
SAMPLE_REASONS: tuple[str, ...] = (
    "unknown_series",  # measurement not in the configured allow-list, or no series at all
    "type_change",  # the series is known with another value type
    "non_finite",  # NaN or +-inf in a float series: InfluxDB cannot store it
    "ts_future",  # further in the future than `max_future_s`
    "ts_past",  # older than `max_past_s`
)
_CODE = {name: i + 1 for i, name in enumerate(SAMPLE_REASONS)}


def reason_code(name: str) -> int:
    return _CODE[name]


class ValidationConfig(StrictModel):
    """Rules every sample must pass before it is written."""

    max_future_s: float = Field(
        300.0, ge=0, description="reject samples stamped further ahead than this (clock skew)"
    )
    max_past_s: float = Field(
        400 * 86400.0,
        ge=0,
        description="reject samples older than this; 0 disables the check (backfills)",
    )
    allowed_measurements: list[str] | None = Field(
        None, description="if set, samples of any other measurement are 'unknown_series'"
    )
    duplicate_window: int = Field(
        65_536, ge=0, description="frame sequence numbers remembered per gateway; 0 disables"
    )


class SampleValidator:
    """Checks whole batches at once; keeps a per-series allow-list in sync with the table."""

    def __init__(self, config: ValidationConfig) -> None:
        self.config = config
        self._allowed = (
            None if config.allowed_measurements is None else frozenset(config.allowed_measurements)
        )
        self._series_ok = np.empty(0, np.bool_)

    def _refresh(self, table: SeriesTable) -> NDArray[np.bool_]:
        n_old = len(self._series_ok)
        if n_old < len(table):
            new = [
                self._allowed is None or k.measurement in self._allowed for k in table.keys[n_old:]
            ]
            self._series_ok = np.concatenate([self._series_ok, np.array(new, np.bool_)])
        return self._series_ok

    def validate(
        self,
        table: SeriesTable,
        batch: Batch,
        now_ns: int,
        declared: NDArray[np.int32] | None = None,
    ) -> NDArray[np.uint8]:
        """Reason code per sample (0 = accepted). ``declared >= 0``: the message declared a key
        the table knows with another type (``DecodedFrames.declared``)."""
        n = len(batch)
        reason = np.zeros(n, np.uint8)
        if n == 0:
            return reason
        ok_series = self._refresh(table)
        s = batch.series
        in_table = (s >= 0) & (s < len(table))
        safe = np.where(in_table, s, 0)
        if declared is not None:
            reason[declared >= 0] = _CODE["type_change"]
        unknown = (s < 0) | (s >= len(table)) | (in_table & ~ok_series[safe])
        reason[unknown & (reason == 0)] = _CODE["unknown_series"]
        is_float = in_table & (table.dtypes[safe] == FieldType.FLOAT)
        bad = is_float & ~np.isfinite(batch.value_f64) & (reason == 0)
        reason[bad] = _CODE["non_finite"]
        if self.config.max_future_s:
            future = batch.ts_ns > now_ns + int(self.config.max_future_s * 1e9)
            reason[future & (reason == 0)] = _CODE["ts_future"]
        if self.config.max_past_s:
            past = batch.ts_ns < now_ns - int(self.config.max_past_s * 1e9)
            reason[past & (reason == 0)] = _CODE["ts_past"]
        return reason


@dataclass
class _GatewaySeqs:
    order: deque[int] = field(default_factory=deque)
    seen: set[int] = field(default_factory=set)
    max_seq: int = -1


class FrameDeduplicator:
    """Remembers the last ``window`` stored frame sequence numbers per (gateway, session).

    Only frames whose points were stored are remembered (``commit``): a frame redelivered while
    its first copy is still waiting for InfluxDB is processed again (InfluxDB overwrites the
    identical points), never acknowledged as a duplicate of something not yet stored.

    The session is the gateway's random epoch (``GatewayFrame.session``): a gateway replaced or
    reinstalled with a fresh state directory starts again at sequence 1 under a new session, and
    those frames are new, not duplicates. ``sessions_started`` counts sessions seen after the
    first one of a gateway (``new_sessions`` lists them until ``take_new_sessions``).
    """

    def __init__(self, window: int, *, max_sessions_per_gateway: int = 8) -> None:
        self.window = window
        self._gateways: dict[tuple[str, str], _GatewaySeqs] = {}
        self._sessions: dict[str, list[str]] = {}  # gateway -> sessions, oldest first
        self._max_sessions = max_sessions_per_gateway
        self.gaps = 0  # frames missing between consecutive sequence numbers (a metric)
        self.sessions_started = 0
        self.new_sessions: list[tuple[str, str, str]] = []  # (gateway, previous, new)

    def is_duplicate(self, gateway_id: str, seq: int, session: str = "") -> bool:
        if not self.window:
            return False
        g = self._gateways.get((gateway_id, session))
        return g is not None and seq in g.seen

    def commit(self, gateway_id: str, seq: int, session: str = "") -> None:
        known = self._sessions.setdefault(gateway_id, [])
        if session not in known:
            if known:
                self.sessions_started += 1
                self.new_sessions.append((gateway_id, known[-1], session))
            known.append(session)
            if len(known) > self._max_sessions:  # bounded: forget the oldest session's seqs
                self._gateways.pop((gateway_id, known.pop(0)), None)
        if not self.window:
            return
        g = self._gateways.setdefault((gateway_id, session), _GatewaySeqs())
        if seq in g.seen:
            return
        if g.max_seq >= 0 and seq > g.max_seq + 1:
            self.gaps += seq - g.max_seq - 1
        g.max_seq = max(g.max_seq, seq)
        g.seen.add(seq)
        g.order.append(seq)
        if len(g.order) > self.window:
            g.seen.discard(g.order.popleft())

    def take_new_sessions(self) -> list[tuple[str, str, str]]:
        out, self.new_sessions = self.new_sessions, []
        return out
