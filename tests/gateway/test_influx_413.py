"""Issue 17 gap: the gateway's direct InfluxDB uplink met a 413 by retrying for ever. Against a
real InfluxDB with a 100 kB body limit, an outbox holding 500 small samples, one 40-string
sample group too large as one request and one sample too large alone: everything that can fit
is stored, the single oversized sample is counted, and the outbox empties
(emitted = stored + counted)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.config import GatewayIdentityConfig, InfluxUplinkConfig
from gateway.outbox import SqliteOutbox
from gateway.uplink import InfluxUplink
from tests.ingest.test_hostile import SmallBodyInflux, _create_db, _Db
from zhizao.model import Batch, FieldType, SeriesKey

pytestmark = pytest.mark.integration
T0 = 1_790_000_000_000_000_000


def _strings(outbox: SqliteOutbox, name: str, n: int, text: str, ts: int) -> Batch:
    idx = [outbox.series_index(SeriesKey.make("notes", {"gateway": "gw1"}, f"{name}_{i:02d}",
                                              FieldType.STRING)) for i in range(n)]  # fmt: skip
    values = np.empty(n, dtype=object)
    values[:] = [text] * n
    return Batch.build(outbox.table, np.array(idx, dtype=np.int32),
                       np.full(n, ts, np.int64), values)  # fmt: skip


def _floats(outbox: SqliteOutbox, start: int, n: int) -> Batch:
    key = SeriesKey.make("energy", {"gateway": "gw1"}, "power_kw", FieldType.FLOAT)
    idx = outbox.series_index(key)
    return Batch.build(outbox.table, np.full(n, idx, np.int32),
                       T0 + np.arange(start, start + n, dtype=np.int64) * 1_000_000_000,
                       np.arange(n, dtype=np.float64))  # fmt: skip


def _count(db: _Db, measurement: str) -> int:
    series = db.query(f'SELECT count(*) FROM "{measurement}"')["results"][0].get("series")
    if not series:
        return 0
    return int(sum(v for v in series[0]["values"][0][1:] if v is not None))


def test_direct_uplink_splits_a_413_and_counts_what_never_fits(
    tmp_path: Path, server_factory: Any
) -> None:
    influx = server_factory(SmallBodyInflux())
    _create_db(influx.url, "gw413")
    db = _Db(influx.url, "gw413")
    outbox = SqliteOutbox(tmp_path / "outbox.sqlite")
    outbox.append(_floats(outbox, 0, 250))
    outbox.append(_strings(outbox, "text", 40, '"' * 30_000, T0))  # 2.4 MB at once; 60 kB each
    outbox.append(_strings(outbox, "huge", 1, "\\" * 60_000, T0 + 1))  # 120 kB: never fits
    outbox.append(_floats(outbox, 250, 250))
    emitted = 250 + 40 + 1 + 250
    config = InfluxUplinkConfig.model_validate(
        {"type": "influx", "influx": {"url": influx.url, "database": "gw413"}}
    )
    ident = GatewayIdentityConfig(id="gw1", enterprise="e1", site="s1", state_dir=tmp_path)
    uplink = InfluxUplink(config, outbox, ident)

    async def drive() -> None:
        task = asyncio.create_task(uplink.run())
        deadline = time.monotonic() + 45
        try:
            while outbox.depth_samples > 0 and time.monotonic() < deadline:
                assert not task.done(), task
                await asyncio.sleep(0.2)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(drive())
    try:
        assert outbox.depth_samples == 0, "the uplink held the batch (413 retried as an outage)"
        stored = _count(db, "energy") + _count(db, "notes")
        counted = sum(uplink.stats.rejected.values())
        assert uplink.stats.rejected["influx_too_large"] == 1
        assert _count(db, "energy") == 500 and _count(db, "notes") == 40
        assert stored + counted == emitted, (stored, dict(uplink.stats.rejected))
        assert uplink.stats.publish_errors["http_413"] > 0
    finally:
        outbox.close()
