"""The Sparkplug host on the source runtime, against a real Mosquitto: a failing receive task
ends the session (counted, logged once), the host reconnects and the broker redelivers what was
never acknowledged; samples the outbox refuses are counted by reason, never as collected."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.config import OutboxConfig, SparkplugSourceConfig
from gateway.outbox import SqliteOutbox
from gateway.sink import OutboxSink
from gateway.sources.sparkplug.source import SparkplugHost
from tests.gateway.helpers import stored, wait_for
from tests.gateway.mqtt_helpers import Publisher
from tests.gateway.test_mqtt_counts import _fill
from zhizao.localstack import MosquittoServer
from zhizao.model import Batch
from zhizao.sparkplug import BDSEQ_METRIC, DataType, pb, set_metric_value

pytestmark = pytest.mark.integration
TS0_MS = 1_767_225_600_000  # 2026-01-01
BASE = "spBv1.0/line9"


def _config(port: int) -> SparkplugSourceConfig:
    return SparkplugSourceConfig.model_validate(
        {
            "type": "sparkplug",
            "name": "spb",
            "broker": {
                "port": port,
                "client_id": f"gw-spb-rt-{uuid.uuid4().hex[:8]}",
                "reconnect_max_s": 1,
            },
            "group_id": "line9",
            "flush_interval_s": 0.05,
            "metrics": [
                {
                    "edge_node": "press-01",
                    "device": "plc",
                    "metric": "Press/Force",
                    "asset": {"area": "stamping", "line": "line9", "machine": "press-01"},
                    "measurement": "press",
                    "signal": "force_kn",
                }
            ],
        }
    )


def _payload(seq: int, metrics: list[tuple[str | None, int, int, Any]], ts_ms: int) -> bytes:
    p = pb.Payload()
    p.timestamp = ts_ms
    p.seq = seq
    for name, alias, datatype, value in metrics:
        m = p.metrics.add()
        if name is not None:
            m.name = name
        m.alias = alias
        m.datatype = datatype
        set_metric_value(m, datatype, value)
    return bytes(p.SerializeToString())


def _publish_node(edge: Publisher, n_data: int) -> None:
    """NBIRTH, DBIRTH (force 100.0) and ``n_data`` DDATA (force 101.0, 102.0, ...), QoS 1."""
    F = DataType.Double
    edge.publish(
        f"{BASE}/NBIRTH/press-01",
        _payload(0, [(BDSEQ_METRIC, 9, DataType.Int64, 1)], TS0_MS),
    )
    edge.publish(f"{BASE}/DBIRTH/press-01/plc", _payload(1, [("Press/Force", 1, F, 100.0)], TS0_MS))
    for i in range(n_data):
        edge.publish(
            f"{BASE}/DDATA/press-01/plc",
            _payload(2 + i, [(None, 1, F, 101.0 + i)], TS0_MS + 1 + i),
        )


@contextlib.asynccontextmanager
async def _running(host: SparkplugHost) -> Any:
    task = asyncio.create_task(host.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _FailOnce(OutboxSink):
    """The real outbox; the first emit with a press sample raises (a fault in the receive task)."""

    def __init__(self, outbox: SqliteOutbox) -> None:
        super().__init__(outbox)
        self.failed = False

    def press(self) -> list[int]:
        return [i for i, k in enumerate(self.outbox.table.keys) if k.measurement == "press"]

    async def emit(self, batch: Batch, **kw: Any) -> None:
        if not self.failed and np.isin(batch.series, self.press()).any():
            self.failed = True
            raise RuntimeError("injected receive fault")
        await super().emit(batch, **kw)


async def test_a_failing_receive_task_reconnects_and_nothing_unacknowledged_is_lost(
    tmp_path: Path, mosquitto: MosquittoServer, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = SqliteOutbox(tmp_path / "o.sqlite")
    sink = _FailOnce(outbox)
    host = SparkplugHost(
        _config(mosquitto.port), sink, enterprise="acme", site="s1", gateway_id="gw"
    )
    host.rebirth_holdoff_s = 0.0
    edge = Publisher(mosquitto.port)
    caplog.set_level(logging.INFO, logger="gateway.sources.sparkplug.source")
    try:
        async with _running(host) as task:
            await wait_for(lambda: host.stats.connected, 30, "connect")
            await asyncio.sleep(0.5)  # the SUBACK follows the CONNACK
            _publish_node(edge, 10)
            await wait_for(lambda: host.stats.task_failures["receive"] == 1, 30, "the failure")
            # read now: stopping the source below records its clean disconnect as the last error
            failure = host.stats.last_error
            await wait_for(
                lambda: host.sessions >= 2 and len(_forces(outbox, sink)) == 11,
                30,
                f"redelivered {host.stats} {_forces(outbox, sink)}",
            )
            assert not task.done()
    finally:
        edge.close()
    # the failed batch was never acknowledged: the broker delivered it again after the restart
    assert _forces(outbox, sink) == {100.0 + i for i in range(11)}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "receive task failed" in errors[0].getMessage()
    assert "injected receive fault" in failure
    outbox.close()


def _forces(outbox: SqliteOutbox, sink: _FailOnce) -> set[float]:
    batch = stored(outbox)
    return set(batch.value_f64[np.isin(batch.series, sink.press())].tolist())


async def test_refused_samples_are_counted_by_reason_not_collected(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    outbox = SqliteOutbox(
        tmp_path / "o.sqlite", OutboxConfig(max_bytes=1 << 16, drop_policy="refuse_new")
    )
    _fill(outbox)
    host = SparkplugHost(
        _config(mosquitto.port), OutboxSink(outbox), enterprise="acme", site="s1", gateway_id="gw"
    )
    edge = Publisher(mosquitto.port)
    try:
        async with _running(host) as task:
            # the connection sample is refused too: the host must not stop over it
            await wait_for(lambda: host.stats.connected, 30, "connect")
            await asyncio.sleep(0.5)
            _publish_node(edge, 5)  # 1 NBIRTH metric (bdSeq is not a sample) + 6 forces
            await wait_for(lambda: host.stats.rejected["outbox_full"] >= 6, 10, f"{host.stats}")
            assert host.stats.samples == 0
            assert not task.done() and host.stats.task_failures == {}
    finally:
        edge.close()
    outbox.close()
