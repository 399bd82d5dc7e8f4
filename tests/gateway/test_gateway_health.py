"""``/healthz`` of the gateway beside ``/metrics``: 200 while the sources are connected and the
outbox can be written, 503 with the reasons otherwise. A real full disk under the state
directory (a small tmpfs): reported in health and metrics, new samples refused with a counted
reason, everything stored kept, and collection resumes when space returns."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from gateway.outbox import SqliteOutbox
from tests.gateway.diskfull import SmallFs, small_fs
from tests.gateway.helpers import stored, wait_for
from tests.gateway.opcua_server import TestOpcUaServer, node_id
from zhizao.errors import ConfigError
from zhizao.localstack import free_port

pytestmark = pytest.mark.integration
N_VARS = 5


def _get(port: int | None, path: str) -> tuple[int, str]:
    assert port is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _health(app: GatewayApp) -> tuple[int, dict[str, Any]]:
    status, body = _get(app.metrics_port, "/healthz")
    return status, json.loads(body)


def _metric(app: GatewayApp, name: str) -> float:
    _, text = _get(app.metrics_port, "/metrics")
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[SmallFs]:
    with small_fs(tmp_path / "fs", size_bytes=8 << 20) as fs:
        yield fs


@contextlib.asynccontextmanager
async def _gateway(state: Path, opcua_port: int) -> AsyncIterator[GatewayApp]:
    config = GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw-h", "enterprise": "acme", "site": "s1", "state_dir": state},
            "sources": [
                {
                    "type": "opcua",
                    "name": "cnc",
                    "endpoint": f"opc.tcp://127.0.0.1:{opcua_port}",
                    "security": {"policy": "None", "mode": "None"},
                    "publishing_interval_ms": 50,
                    "watchdog_interval_s": 0.5,
                    "reconnect_min_s": 0.1,
                    "reconnect_max_s": 0.5,
                    "flush_interval_s": 0.05,
                    "tags": [
                        {
                            "node": node_id(i),
                            "asset": {"machine": f"m{i}"},
                            "measurement": "spindle",
                            "signal": "speed_rpm",
                        }
                        for i in range(N_VARS)
                    ],
                }
            ],
            # keep what is stored: a full disk refuses new samples instead of dropping old ones
            "outbox": {"drop_policy": "refuse_new"},
            # nobody listens: the uplink is down (not unhealthy) and every sample stays stored
            "uplink": {"type": "mqtt", "broker": {"port": free_port(), "reconnect_max_s": 1}},
            "metrics": {"port": 0},
        }
    )
    app = GatewayApp(config)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        await wait_for(lambda: app.metrics_port is not None, 10, "metrics server")
        yield app
        assert not task.done(), "the gateway exited"
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def _spindle(outbox: SqliteOutbox) -> list[float]:
    series = [i for i, k in enumerate(outbox.table.keys) if k.measurement == "spindle"]
    batch = stored(outbox)
    return sorted(batch.value_f64[np.isin(batch.series, series)].tolist())


async def test_healthz_reports_sources_and_a_full_disk_and_recovers(tiny_fs: SmallFs) -> None:
    state = tiny_fs.path / "state"
    port = free_port()
    async with _gateway(state, port) as app:
        source = app.sources[0]
        status, body = _health(app)  # no OPC UA server yet
        assert status == 503 and body["status"] == "unhealthy"
        assert any("source cnc is not connected" in r for r in body["reasons"]), body
        async with TestOpcUaServer(port, N_VARS) as srv:
            await wait_for(lambda: _health(app)[0] == 200, 30, "healthy once connected")
            assert _health(app)[1]["reasons"] == []
            assert _metric(app, "zhizao_gateway_healthy") == 1
            await srv.write_round(1)
            await wait_for(lambda: _spindle(app.outbox).count(1.0) == N_VARS, 30, "round 1")
            kept = _spindle(app.outbox)

            tiny_fs.fill()
            await srv.write_round(2)
            await wait_for(lambda: source.stats.rejected["disk_full"] >= N_VARS, 30, "refused")
            status, body = _health(app)
            assert status == 503, body
            assert any("outbox cannot be written" in r and "full" in r for r in body["reasons"])
            assert body["outbox"]["writable"] is False
            assert _metric(app, "zhizao_gateway_healthy") == 0
            assert _metric(app, "zhizao_gateway_outbox_storage_ok") == 0
            refused = _metric(
                app,
                'zhizao_gateway_source_rejected_total{kind="opcua",reason="disk_full",source="cnc"}',
            )
            assert refused >= N_VARS
            assert source.stats.samples == len(kept)  # refused samples are not counted stored
            assert source.stats.connected  # a full disk does not end the session

            tiny_fs.free()
            await srv.write_round(3)
            await wait_for(lambda: _spindle(app.outbox).count(3.0) == N_VARS, 30, "round 3")
            await wait_for(lambda: _health(app)[0] == 200, 30, "healthy again")
            assert _metric(app, "zhizao_gateway_outbox_storage_ok") == 1
        values = _spindle(app.outbox)
    # everything stored before the disk filled up is still there; round 2 was refused
    assert all(values.count(v) >= kept.count(v) for v in set(kept))
    assert 2.0 not in values
    assert source.stats.task_failures == {}


async def test_a_metrics_port_in_use_is_a_configuration_error(tmp_path: Path) -> None:
    """Another service on the box holds the port: one sentence naming it, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        config = GatewayConfig.model_validate(
            {
                "gateway": {
                    "id": "gw-p",
                    "enterprise": "acme",
                    "site": "s1",
                    "state_dir": tmp_path,
                },
                "sources": [
                    {
                        "type": "opcua",
                        "name": "cnc",
                        "endpoint": f"opc.tcp://127.0.0.1:{free_port()}",
                        "security": {"policy": "None", "mode": "None"},
                    }
                ],
                "uplink": {"type": "mqtt", "broker": {"port": free_port()}},
                "metrics": {"port": busy},
            }
        )
        with pytest.raises(ConfigError) as err:
            await GatewayApp(config).run(asyncio.Event())
    assert f"127.0.0.1:{busy}" in str(err.value) and err.value.key == "metrics.port"
