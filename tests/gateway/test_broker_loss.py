"""Issue 17 item 5, the broker variants: a central broker that loses what it PUBACKed (SIGKILLed
right after the acknowledgements; without persistence, restarted while ingest was down) loses
nothing end to end, because the gateway deletes a frame only on ingest's confirmation and
re-sends what stays unconfirmed. Counted: every emitted sample stored exactly once."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import InfluxDb
from tests.gateway.helpers import wait_for
from tests.gateway.mqtt_helpers import Publisher
from tests.gateway.test_hostile import _alive, _app, _gateway_yaml, _ingest, _publish
from zhizao.localstack import MosquittoServer

pytestmark = pytest.mark.integration


def _uplink(port: int) -> dict[str, Any]:
    return {
        "type": "mqtt",
        "broker": {"port": port, "reconnect_max_s": 1},
        "confirm_timeout_s": 3,
        "max_samples_per_frame": 500,
    }


async def _until_stored(influx_db: InfluxDb, n: int, task: asyncio.Task[None], s: float) -> int:
    deadline = time.monotonic() + s
    while time.monotonic() < deadline and influx_db.count("energy") < n:
        _alive(task)
        await asyncio.sleep(0.2)
    return influx_db.count("energy")


@pytest.mark.parametrize("persistence", [True, False], ids=["persistent", "no-persistence"])
async def test_central_broker_killed_right_after_pubacks_loses_nothing(
    tmp_path: Path, mosquitto: MosquittoServer, influx_db: InfluxDb, server_factory: Any,
    persistence: bool,
) -> None:  # fmt: skip
    """Ingest was subscribed (persistent session) and is down; the gateway publishes, the broker
    PUBACKs and queues for ingest, and is SIGKILLed at once (what it queued is lost: without
    persistence always, with Debian's default persistence everything since the last autosave),
    then restarted; ingest comes back. Everything ends up stored once."""
    central = server_factory(MosquittoServer(persistence=persistence))
    emitted = 3000
    client = f"ingest-{uuid.uuid4().hex[:6]}"
    with _ingest(central, influx_db, tmp_path, client):  # its session and subscription exist
        await asyncio.sleep(1.0)
    config = _gateway_yaml(tmp_path / "state", mosquitto.port, _uplink(central.port),
                           gateway_id="gw-kill")  # fmt: skip
    pub = Publisher(mosquitto.port)
    try:
        async with _app(config) as (app, task):
            await wait_for(lambda: app.uplink.stats.connected, 30, "uplink up")
            await wait_for(lambda: app.sources[0].stats.connected, 30, "source up")
            await asyncio.to_thread(_publish, pub, 0, emitted)
            await wait_for(lambda: app.outbox.stats.appended >= emitted, 60, "all in the outbox")
            await wait_for(lambda: app.uplink.stats.samples_sent >= emitted, 30, "all PUBACKed")
            central.stop(kill=True)  # right after the PUBACKs: the queued frames die with it
            acked_before = app.uplink.stats.samples_acked
            central.start()
            with _ingest(central, influx_db, tmp_path, client):
                stored = await _until_stored(influx_db, emitted, task, 60)
                await wait_for(lambda: app.outbox.depth_samples == 0, 30, "outbox drained")
                confirmed = app.uplink.stats.samples_acked
    finally:
        pub.close()
    assert acked_before == 0, "deleted from the outbox before ingest confirmed"
    assert stored == emitted, f"{stored} of {emitted} stored"
    assert confirmed == emitted + 1  # (+1: the source's connection sample)
    assert influx_db.count("energy") == emitted  # exactly once (re-sends deduplicated)


async def test_central_broker_killed_while_ingest_runs_loses_nothing(
    tmp_path: Path, mosquitto: MosquittoServer, influx_db: InfluxDb, server_factory: Any
) -> None:
    """Ingest running; the broker SIGKILLed in the middle of a stream of publications and
    restarted without its state: samples in flight are re-sent, none lost, none twice."""
    central = server_factory(MosquittoServer(persistence=False))
    emitted = 4000
    config = _gateway_yaml(tmp_path / "state", mosquitto.port, _uplink(central.port),
                           gateway_id="gw-kill2")  # fmt: skip
    pub = Publisher(mosquitto.port)
    try:
        with _ingest(central, influx_db, tmp_path, f"ingest-{uuid.uuid4().hex[:6]}"):
            async with _app(config) as (app, task):
                await wait_for(lambda: app.uplink.stats.connected, 30, "uplink up")
                await wait_for(lambda: app.sources[0].stats.connected, 30, "source up")
                await asyncio.to_thread(_publish, pub, 0, emitted // 2)
                await wait_for(lambda: app.uplink.stats.samples_sent > 0, 30, "publishing")
                central.stop(kill=True)
                await asyncio.to_thread(_publish, pub, emitted // 2, emitted // 2)
                central.start()
                stored = await _until_stored(influx_db, emitted, task, 90)
                await wait_for(lambda: app.outbox.depth_samples == 0, 30, "outbox drained")
    finally:
        pub.close()
    assert stored == emitted, f"{stored} of {emitted} stored"
