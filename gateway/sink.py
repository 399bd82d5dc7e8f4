"""``OutboxSink``: what sources emit into. ``emit`` returns after the durable commit."""

from __future__ import annotations

import asyncio

import numpy as np
from numpy.typing import NDArray

from gateway.outbox import SqliteOutbox
from zhizao.model import Batch, SeriesKey, SeriesTable

__all__ = ["OutboxSink"]


class OutboxSink:
    """Adapts ``SqliteOutbox`` to the sources' ``SampleSink``; commits run off the event loop."""

    def __init__(self, outbox: SqliteOutbox) -> None:
        self.outbox = outbox

    @property
    def table(self) -> SeriesTable:
        return self.outbox.table

    def series_index(self, key: SeriesKey) -> int:
        return self.outbox.series_index(key)

    async def emit(
        self,
        batch: Batch,
        *,
        server_ts_ns: NDArray[np.int64] | None = None,
        status_code: NDArray[np.uint32] | None = None,
    ) -> None:
        # an fsync can take milliseconds: keep the event loop (and the OPC UA sessions) free
        await asyncio.to_thread(
            self.outbox.append, batch, server_ts_ns=server_ts_ns, status_code=status_code
        )
