"""Writing to an InfluxDB that refuses a request as too large (HTTP 413).

A 413 is not an outage: retrying the same request can never succeed. ``write_fitting`` cuts the
rows in halves until each part is accepted; a single row InfluxDB still refuses is handed to
``refused`` (the gateway's direct uplink counts it as dropped), so one oversized sample never
holds the others. Used by the gateway's direct InfluxDB uplink; ingest's writer loop
(``ingest.service``) still halves on its own, interleaved with its outage retries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import numpy as np
from numpy.typing import NDArray

from zhizao.errors import SinkError

__all__ = ["is_too_large", "write_fitting"]

Rows = NDArray[np.int64]


def is_too_large(exc: BaseException) -> bool:
    """InfluxDB (or a proxy in front) refused the request's size for good."""
    return isinstance(exc, SinkError) and exc.status == 413 and not exc.retryable


async def write_fitting(
    write: Callable[[Rows], Awaitable[None]],
    rows: Rows,
    refused: Callable[[Rows, SinkError], Awaitable[None] | None],
) -> int:
    """``write(rows)``, halving on a 413 until every part fits; a single refused row goes to
    ``refused``. Any other error propagates (the caller retries as for an outage). Returns how
    many 413s were met (0 when the first write fitted)."""
    try:
        await write(rows)
        return 0
    except SinkError as exc:
        if not is_too_large(exc):
            raise
        if len(rows) <= 1:
            result = refused(rows, exc)
            if result is not None:
                await result
            return 1
    half = len(rows) // 2
    return (
        1
        + await write_fitting(write, rows[:half], refused)
        + await write_fitting(write, rows[half:], refused)
    )
