"""GatewayApp in-process: direct InfluxDB uplink, metrics endpoint, status command, drop reporting."""

from __future__ import annotations

import asyncio
import contextlib
import re
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from gateway.app import GatewayApp
from gateway.config import load_gateway_config
from tests.conftest import InfluxDb
from tests.gateway.helpers import wait_for
from tests.gateway.mqtt_helpers import Publisher
from zhizao.cli import main
from zhizao.localstack import MosquittoServer, free_port

pytestmark = pytest.mark.integration
TS0_MS = 1_767_225_600_000


def _write_config(tmp: Path, device_port: int, uplink: dict[str, Any], **outbox: Any) -> Path:
    cfg = {
        "gateway": {
            "id": "gw-app",
            "enterprise": "acme",
            "site": "s1",
            "state_dir": str(tmp / "state"),
        },
        "sources": [
            {
                "type": "mqtt",
                "name": "meters",
                "broker": {
                    "port": device_port,
                    "client_id": f"gw-app-{tmp.name}",
                    "reconnect_max_s": 1,
                },
                "flush_interval_s": 0.05,
                "topics": [
                    {
                        "filter": "app/{meter}/power_kw",
                        "asset": {"area": "hall", "machine": "{meter}"},
                        "measurement": "energy",
                        "signal": "power_kw",
                    }
                ],
            }
        ],
        "outbox": outbox,
        "uplink": uplink,
        "metrics": {"port": 0},
    }
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@contextlib.asynccontextmanager
async def _app(config_path: Path) -> AsyncIterator[GatewayApp]:
    app = GatewayApp(load_gateway_config(config_path))
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        yield app
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^(zhizao_\S+) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


async def test_direct_influx_uplink_metrics_and_status(
    tmp_path: Path,
    mosquitto: MosquittoServer,
    influx_db: InfluxDb,
    capsys: pytest.CaptureFixture[str],
) -> None:
    uplink = {"type": "influx", "influx": {"url": influx_db.url, "database": influx_db.database}}
    config = _write_config(tmp_path, mosquitto.port, uplink)
    pub = Publisher(mosquitto.port)
    try:
        async with _app(config) as app:
            await wait_for(lambda: app.sources[0].stats.connected, 30, "source connected")
            for i in range(300):
                body = {"timestamp_ms": TS0_MS + i * 1000, "value": float(i)}
                pub.publish(f"app/m{i % 3}/power_kw", orjson.dumps(body))
            await wait_for(lambda: app.uplink.stats.samples_acked >= 300, 60, "written to InfluxDB")
            await wait_for(lambda: app.outbox.depth_samples == 0, 30, "outbox drained")
            assert app.metrics_port is not None
            metrics = _metrics(app.metrics_port)
            await asyncio.sleep(2.5)  # the status file is rewritten every 2 s
            rc = await asyncio.to_thread(main, ["gateway", "status", "-c", str(config)])
            out = capsys.readouterr().out
    finally:
        pub.close()
    assert influx_db.count("energy") == 300
    res = influx_db.query('SELECT sum("power_kw") FROM "energy" GROUP BY "machine"')
    sums = {s["tags"]["machine"]: s["values"][0][1] for s in res["results"][0]["series"]}
    assert sums == {f"m{k}": float(sum(range(k, 300, 3))) for k in range(3)}
    assert metrics['zhizao_gateway_source_samples_total{kind="mqtt",source="meters"}'] == 300
    assert metrics['zhizao_gateway_source_connected{kind="mqtt",source="meters"}'] == 1
    assert metrics["zhizao_gateway_uplink_samples_acked_total"] >= 300
    assert metrics["zhizao_gateway_outbox_samples"] == 0
    assert rc == 0
    assert "gateway gw-app: running" in out
    assert "source meters (mqtt): connected, 300 samples" in out


async def test_outbox_full_drop_oldest_reported_exactly(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    # nobody listens on the uplink port: everything stays in the 64 KiB outbox, oldest dropped
    uplink = {"type": "mqtt", "broker": {"port": free_port(), "reconnect_max_s": 1}}
    config = _write_config(
        tmp_path, mosquitto.port, uplink, max_bytes=65536, drop_policy="drop_oldest"
    )
    pub = Publisher(mosquitto.port)
    sent = 4000
    try:
        async with _app(config) as app:
            await wait_for(lambda: app.sources[0].stats.connected, 30, "source connected")
            for i in range(sent):
                pub.publish(
                    f"app/m{i % 4}/power_kw",
                    orjson.dumps({"timestamp_ms": TS0_MS + i, "value": 1.0}),
                    qos=1,
                )
                if i % 500 == 499:  # chunks well below max_bytes, so older ones make room
                    await asyncio.sleep(0.3)
            # a source counts what it stored; what the outbox refused is counted there
            await wait_for(
                lambda: app.sources[0].stats.samples + app.outbox.stats.refused >= sent,
                60,
                "all accepted or refused",
            )
            assert app.metrics_port is not None
            metrics = _metrics(app.metrics_port)
            stats = app.outbox.snapshot()
    finally:
        pub.close()
    dropped = stats.dropped["full"]
    assert dropped > 500  # device samples, not only the connection sample
    # every accepted sample is either still stored or counted as dropped: nothing unaccounted
    assert stats.appended == stats.samples + dropped
    assert metrics['zhizao_gateway_outbox_dropped_samples_total{reason="full"}'] == dropped
    assert metrics["zhizao_gateway_outbox_samples"] == stats.samples
    assert stats.bytes <= 65536
