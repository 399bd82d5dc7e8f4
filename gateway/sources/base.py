"""What every source shares: the sink it emits into, its statistics, backoff (``zhizao.retry``),
gap markers.

A source knows nothing of InfluxDB, KPIs or the uplink: it turns device data into ``Batch``es of
series registered with the sink and awaits ``sink.emit``, which returns once the samples are
durably stored (the outbox). It reconnects by itself and never raises out of ``run``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable
from zhizao.quality import Quality
from zhizao.retry import Backoff  # the platform's one retry policy, re-exported for sources
from zhizao.schema import (
    CONNECTED_FIELD,
    CONNECTION_MEASUREMENT,
    ENTERPRISE_TAG,
    GATEWAY_TAG,
    QUALITY_MEASUREMENT,
    SITE_TAG,
    SOURCE_TAG,
)

__all__ = [
    "CONNECTION_MEASUREMENT",
    "QUALITY_MEASUREMENT",
    "Backoff",
    "SampleSink",
    "Source",
    "SourceStats",
    "connection_key",
]

# the connection-loss interval of a source is visible as the series ``CONNECTION_MEASUREMENT``
# (bool ``connected``); per-signal data-quality markers go to ``QUALITY_MEASUREMENT``: asset tags
# + tag ``measurement``, field = the signal, value = ``zhizao.quality.Quality`` code on a
# transition (0 when the signal is good again). The names live in zhizao.schema.


class SampleSink(Protocol):
    """Where sources put samples. ``emit`` returns after the samples are stored durably."""

    @property
    def table(self) -> SeriesTable: ...

    def series_index(self, key: SeriesKey) -> int: ...

    def emit(
        self,
        batch: Batch,
        *,
        server_ts_ns: NDArray[np.int64] | None = None,
        status_code: NDArray[np.uint32] | None = None,
    ) -> Awaitable[None]: ...


class Source(Protocol):
    name: str
    stats: SourceStats

    async def run(self) -> None: ...


@dataclass
class SourceStats:
    """Per-source health, read by the metrics endpoint and ``zhizao gateway status``."""

    name: str
    kind: str
    connected: bool = False
    samples: int = 0
    last_sample_ns: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    last_error: str = ""
    # reason -> count of messages/values that were not turned into samples
    rejected: Counter[str] = field(default_factory=Counter)
    # task -> failures of a supervised task (``gateway.sources.runtime``) that ended a session
    task_failures: Counter[str] = field(default_factory=Counter)
    since_ns: int = field(default_factory=time.time_ns)

    def reject(self, reason: str, count: int = 1) -> None:
        self.rejected[reason] += count

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "connected": self.connected,
            "samples": self.samples,
            "last_sample_ns": self.last_sample_ns,
            "reconnects": self.reconnects,
            "connect_failures": self.connect_failures,
            "last_error": self.last_error,
            "rejected": dict(self.rejected),
            "task_failures": dict(self.task_failures),
        }


def connection_key(enterprise: str, site: str, gateway_id: str, source: str) -> SeriesKey:
    return SeriesKey.make(
        CONNECTION_MEASUREMENT,
        {ENTERPRISE_TAG: enterprise, SITE_TAG: site, GATEWAY_TAG: gateway_id, SOURCE_TAG: source},
        CONNECTED_FIELD,
        FieldType.BOOL,
    )


async def emit_connection(sink: SampleSink, key_index: int, connected: bool) -> None:
    """One sample of the connection series: the gap is an interval between a 0 and a 1."""
    batch = Batch(
        series=np.array([key_index], np.int32),
        ts_ns=np.array([time.time_ns()], np.int64),
        value_f64=np.zeros(1, np.float64),
        value_i64=np.array([int(connected)], np.int64),
        quality=np.array([Quality.GOOD], np.uint8),
    )
    await sink.emit(batch)
