"""The MQTT source counts honestly when the outbox refuses: samples the outbox refused are
counted as rejected (``outbox_full``), never as collected, and the source keeps running."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from gateway.config import MqttSourceConfig, OutboxConfig
from gateway.outbox import OutboxFull, SqliteOutbox
from gateway.sink import OutboxSink
from gateway.sources.mqtt.source import MqttSource
from tests.gateway.helpers import stored, wait_for
from tests.gateway.mqtt_helpers import Publisher
from zhizao.localstack import MosquittoServer
from zhizao.model import Batch, FieldType, SeriesKey

pytestmark = pytest.mark.integration
TS0_MS = 1_767_225_600_000


def _fill(outbox: SqliteOutbox) -> None:
    """Append until the outbox (refuse_new) refuses even a single sample: nothing more fits."""
    idx = outbox.series_index(SeriesKey.make("filler", {"site": "s1"}, "v", FieldType.FLOAT))
    start = 0
    for size in (500, 50, 5, 1):
        while True:
            ts = np.arange(start, start + size, dtype=np.int64)
            start += size
            try:
                outbox.append(Batch.build(outbox.table, np.full(size, idx), ts, ts * 1.0))
            except OutboxFull:
                break


async def test_refused_samples_are_counted_as_rejected_not_collected(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    outbox = SqliteOutbox(
        tmp_path / "o.sqlite", OutboxConfig(max_bytes=1 << 16, drop_policy="refuse_new")
    )
    _fill(outbox)
    config = MqttSourceConfig.model_validate(
        {
            "type": "mqtt",
            "name": "meters",
            "broker": {
                "port": mosquitto.port,
                "client_id": f"gw-counts-{uuid.uuid4().hex[:8]}",
                "reconnect_max_s": 1,
            },
            "flush_interval_s": 0.05,
            "topics": [
                {
                    "filter": "counts/{meter}/power_kw",
                    "asset": {"machine": "{meter}"},
                    "measurement": "energy",
                    "signal": "power_kw",
                }
            ],
        }
    )
    source = MqttSource(config, OutboxSink(outbox), enterprise="acme", site="s1", gateway_id="gw")
    pub = Publisher(mosquitto.port)
    task = asyncio.create_task(source.run())
    try:
        # the connection sample is refused too: the source must not stop over it
        await wait_for(lambda: source.stats.connected, 30, "connect")
        await asyncio.sleep(0.5)  # the SUBACK follows the CONNACK
        for i in range(30):
            pub.publish(
                "counts/m1/power_kw", orjson.dumps({"timestamp_ms": TS0_MS + i, "value": i})
            )
        await wait_for(
            lambda: source.stats.rejected["outbox_full"] >= 30,
            5,
            f"refusals counted {source.stats} {source.connection.connects} {source.sessions} {outbox.stats}",
        )
        assert source.stats.samples == 0
        # room again: the next samples are stored and counted as collected
        chunks = outbox.take(10**9)
        outbox.ack([c.chunk_id for c in chunks])
        for i in range(30, 50):
            pub.publish(
                "counts/m1/power_kw", orjson.dumps({"timestamp_ms": TS0_MS + i, "value": i})
            )
        await wait_for(lambda: source.stats.samples >= 20, 30, "stored again")
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        pub.close()
    energy = [i for i, k in enumerate(outbox.table.keys) if k.measurement == "energy"]
    batch = stored(outbox)
    kept = batch.value_f64[np.isin(batch.series, energy)]
    assert sorted(kept.tolist()) == [float(i) for i in range(30, 50)]
    assert source.stats.samples == 20 and source.stats.rejected["outbox_full"] == 30
    assert source.stats.task_failures == {}
    outbox.close()


class _FailOnce(OutboxSink):
    """The real outbox; the first emit of device samples raises (a fault in the receive task)."""

    def __init__(self, outbox: SqliteOutbox, measurement: str) -> None:
        super().__init__(outbox)
        self.measurement = measurement
        self.failed = False

    def _series(self) -> list[int]:
        keys = self.outbox.table.keys
        return [i for i, k in enumerate(keys) if k.measurement == self.measurement]

    async def emit(self, batch: Batch, **kw: Any) -> None:
        if not self.failed and np.isin(batch.series, self._series()).any():
            self.failed = True
            raise RuntimeError("injected receive fault")
        await super().emit(batch, **kw)


async def test_a_failing_receive_task_reconnects_and_the_broker_redelivers(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    outbox = SqliteOutbox(tmp_path / "o.sqlite")
    sink = _FailOnce(outbox, "energy")
    config = MqttSourceConfig.model_validate(
        {
            "type": "mqtt",
            "name": "meters",
            "broker": {
                "port": mosquitto.port,
                "client_id": f"gw-redeliver-{uuid.uuid4().hex[:8]}",
                "reconnect_max_s": 1,
            },
            "flush_interval_s": 0.05,
            "topics": [
                {
                    "filter": "redeliver/{meter}/power_kw",
                    "asset": {"machine": "{meter}"},
                    "measurement": "energy",
                    "signal": "power_kw",
                }
            ],
        }
    )
    source = MqttSource(config, sink, enterprise="acme", site="s1", gateway_id="gw")
    pub = Publisher(mosquitto.port)
    task = asyncio.create_task(source.run())
    try:
        await wait_for(lambda: source.stats.connected, 30, "connect")
        await asyncio.sleep(0.5)  # the SUBACK follows the CONNACK
        for i in range(10):
            pub.publish(
                "redeliver/m1/power_kw", orjson.dumps({"timestamp_ms": TS0_MS + i, "value": i})
            )
        await wait_for(lambda: source.stats.task_failures["receive"] == 1, 30, "failure")
        await wait_for(lambda: source.sessions >= 2 and source.stats.samples >= 10, 30, "again")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        pub.close()
    batch = stored(outbox)
    values = set(batch.value_f64[np.isin(batch.series, sink._series())].tolist())
    # the failed batch was never acknowledged: the broker delivered it again after the restart
    assert values == {float(i) for i in range(10)}
    outbox.close()
