"""Issue 17, gateway side: hostile conditions, each counted (emitted = stored + counted drops).

- a replaced gateway (fresh state directory, same id) is not silenced as duplicates (item 4);
- nobody subscribed at the central broker: nothing is deleted until ingest confirms (item 5);
- a full disk under the state directory: the gateway keeps running, counts, resumes (item 1);
- a wall-clock step does not expire the backlog (item 7).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml

from gateway.app import GatewayApp
from gateway.config import OutboxConfig, load_gateway_config
from gateway.health import write_status
from gateway.outbox import SqliteOutbox
from tests.conftest import InfluxDb
from tests.gateway.diskfull import SmallFs, small_fs
from tests.gateway.helpers import stored as stored_batch
from tests.gateway.helpers import wait_for
from tests.gateway.mqtt_helpers import Publisher
from tests.ingest._support import ServiceThread, make_config
from zhizao.localstack import MosquittoServer, free_port
from zhizao.model import Batch, FieldType, SeriesKey

TS0_MS = 1_767_225_600_000


def _gateway_yaml(
    state_dir: Path,
    device_port: int,
    uplink: dict[str, Any],
    *,
    gateway_id: str = "gw-h",
    outbox: dict[str, Any] | None = None,
) -> Path:
    cfg = {
        "gateway": {
            "id": gateway_id,
            "enterprise": "acme",
            "site": "s1",
            "state_dir": str(state_dir),
        },
        "sources": [
            {
                "type": "mqtt",
                "name": "meters",
                "broker": {
                    "port": device_port,
                    "client_id": f"gw-src-{uuid.uuid4().hex[:8]}",
                    "reconnect_max_s": 1,
                },
                "flush_interval_s": 0.05,
                "topics": [
                    {
                        "filter": "hostile/{meter}/power_kw",
                        "asset": {"area": "hall", "machine": "{meter}"},
                        "measurement": "energy",
                        "signal": "power_kw",
                    }
                ],
            }
        ],
        "outbox": outbox or {},
        "uplink": uplink,
        "metrics": {"port": 0},
    }
    path = state_dir.parent / f"gateway-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@contextlib.asynccontextmanager
async def _app(config_path: Path) -> AsyncIterator[tuple[GatewayApp, asyncio.Task[None]]]:
    app = GatewayApp(load_gateway_config(config_path))
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        yield app, task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def _alive(task: asyncio.Task[None]) -> None:
    if task.done():
        exc = task.exception()
        raise AssertionError(f"the gateway exited: {type(exc).__name__}: {exc}")


def _metrics(port: int | None) -> dict[str, float]:
    assert port is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^(zhizao_\S+) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def _publish(pub: Publisher, start: int, n: int, meters: int = 5) -> None:
    for i in range(start, start + n):
        body = {"timestamp_ms": TS0_MS + i, "value": float(i)}
        pub.publish(f"hostile/m{i % meters}/power_kw", orjson.dumps(body), qos=1)


def _ingest(mosquitto: MosquittoServer, influx_db: InfluxDb, tmp: Path, client: str) -> Any:
    cfg = make_config(
        mosquitto.port,
        influx_db.url,
        influx_db.database,
        tmp,
        mqtt={"client_id": client, "group": None},
    )
    return ServiceThread(cfg)


# ---------------------------------------------------------------------------- item 4


@pytest.mark.integration
async def test_replaced_gateway_with_fresh_state_is_stored_not_duplicate(
    tmp_path: Path, mosquitto: MosquittoServer, influx_db: InfluxDb
) -> None:
    """Two boxes with the same gateway id, each with a fresh state directory (a replaced box):
    both start their frame sequence at 1; every sample of both must be stored."""
    per_box = 1500
    uplink = {"type": "mqtt", "broker": {"port": mosquitto.port, "reconnect_max_s": 1}}
    pub = Publisher(mosquitto.port)
    sessions: list[str] = []
    with _ingest(mosquitto, influx_db, tmp_path, f"ingest-{uuid.uuid4().hex[:6]}") as ingest:
        try:
            for box in range(2):
                state = tmp_path / f"box{box}"
                config = _gateway_yaml(state, mosquitto.port, uplink)
                async with _app(config) as (app, task):
                    await wait_for(lambda: app.sources[0].stats.connected, 30, "source up")
                    await wait_for(lambda: app.uplink.stats.connected, 30, "uplink up")
                    await asyncio.to_thread(_publish, pub, box * per_box, per_box)
                    await wait_for(
                        lambda: app.outbox.stats.appended >= per_box, 60, "samples stored"
                    )
                    deadline = time.monotonic() + 60
                    while time.monotonic() < deadline and app.outbox.depth_samples:
                        _alive(task)
                        await asyncio.sleep(0.1)
                    sessions.append(getattr(app.outbox, "session", ""))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and influx_db.count("energy") < 2 * per_box:
                await asyncio.sleep(0.2)
            stored = influx_db.count("energy")
            quarantined = dict(ingest.service.quarantine.counts)
            new_sessions = getattr(ingest.service.pipeline.dedup, "sessions_started", 0)
        finally:
            pub.close()
    assert stored == 2 * per_box, f"{stored} of {2 * per_box} stored; quarantine {quarantined}"
    assert quarantined.get("duplicate_frame", 0) == 0, quarantined
    assert new_sessions == 1  # the second box is a new session of the same gateway, counted
    assert len(set(sessions)) == 2 and all(sessions), sessions


# ---------------------------------------------------------------------------- item 5


@pytest.mark.integration
async def test_nobody_subscribed_nothing_deleted_until_ingest_confirms(
    tmp_path: Path, mosquitto: MosquittoServer, influx_db: InfluxDb
) -> None:
    """No ingest at the central broker: the broker PUBACKs and discards; the gateway must keep
    every frame (shown as sent, not confirmed) and re-send until ingest, started later,
    confirms it stored them."""
    emitted = 5000
    uplink = {
        "type": "mqtt",
        "broker": {"port": mosquitto.port, "reconnect_max_s": 1},
        "confirm_timeout_s": 3,
        "max_samples_per_frame": 500,
    }
    config = _gateway_yaml(tmp_path / "state", mosquitto.port, uplink, gateway_id="gw-lonely")
    pub = Publisher(mosquitto.port)
    try:
        async with _app(config) as (app, task):
            await wait_for(lambda: app.uplink.stats.connected, 30, "uplink up")
            await wait_for(lambda: app.sources[0].stats.connected, 30, "source up")
            await asyncio.to_thread(_publish, pub, 0, emitted)
            await wait_for(lambda: app.outbox.stats.appended >= emitted, 60, "all in the outbox")
            # the broker took the frames (PUBACK) and nobody received them
            await wait_for(lambda: app.uplink.stats.frames_sent >= 10, 30, "frames published")
            await asyncio.sleep(1.0)
            before_ingest = app.outbox.depth_samples
            unconfirmed = app.uplink.stats.as_dict().get("unconfirmed_samples", 0)
            problems = app.snapshot().get("problems", [])
            ingest = _ingest(mosquitto, influx_db, tmp_path, f"ingest-{uuid.uuid4().hex[:6]}")
            with ingest:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and influx_db.count("energy") < emitted:
                    _alive(task)
                    await asyncio.sleep(0.2)
                await wait_for(lambda: app.outbox.depth_samples == 0, 30, "outbox drained")
                stored = influx_db.count("energy")
                confirmed = app.uplink.stats.samples_acked
    finally:
        pub.close()
    # (+1: the source's connection sample)
    assert before_ingest == emitted + 1, f"{emitted + 1 - before_ingest} deleted, nobody subscribed"
    assert unconfirmed > 0  # health shows them as sent, not confirmed
    assert any("not confirmed" in p for p in problems), problems
    assert stored == emitted, f"{stored} of {emitted} stored"
    assert confirmed == emitted + 1


# ---------------------------------------------------------------------------- item 1


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[SmallFs]:
    with small_fs(tmp_path / "fs", size_bytes=8 << 20) as fs:
        yield fs


@pytest.mark.integration
async def test_disk_full_gateway_keeps_running_counts_and_resumes(
    tmp_path: Path, mosquitto: MosquittoServer, tiny_fs: SmallFs
) -> None:
    """The state directory's file system fills up while samples arrive: the gateway stays up,
    reports it in health and metrics, counts what it could not store, keeps what it stored and
    stores again once space returns. Emitted = in the outbox + counted refused/dropped."""
    # nobody listens on the uplink: every stored sample stays in the outbox, to be counted
    uplink = {"type": "mqtt", "broker": {"port": free_port(), "reconnect_max_s": 1}}
    state = tiny_fs.path / "state"
    config = _gateway_yaml(state, mosquitto.port, uplink, outbox={"drop_policy": "refuse_new"})
    pub = Publisher(mosquitto.port)
    phase_a, phase_b, phase_c = 1000, 3000, 1000
    try:
        async with _app(config) as (app, task):
            await wait_for(lambda: app.sources[0].stats.connected, 30, "source up")

            def handled() -> int:
                st = app.outbox.stats
                return st.appended + st.refused

            await asyncio.to_thread(_publish, pub, 0, phase_a)
            await wait_for(lambda: handled() >= phase_a, 60, "phase A stored")
            await asyncio.sleep(2.5)  # a status file was written
            tiny_fs.fill()
            await asyncio.to_thread(_publish, pub, phase_a, phase_b)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and handled() < phase_a + phase_b:
                _alive(task)
                await asyncio.sleep(0.1)
            await asyncio.sleep(3.0)  # at least one status write attempt on the full disk
            _alive(task)
            full_metrics = _metrics(app.metrics_port)
            full_problems = app.snapshot()["problems"]
            refused_while_full = app.outbox.stats.refused
            tiny_fs.free()
            await asyncio.to_thread(_publish, pub, phase_a + phase_b, phase_c)
            await wait_for(lambda: handled() >= phase_a + phase_b + phase_c, 60, "phase C")
            await asyncio.sleep(2.5)
            _alive(task)
            ok_metrics = _metrics(app.metrics_port)
            stats = app.outbox.snapshot()
            status_age = (
                time.time() - orjson.loads((state / "status.json").read_bytes())["written_at_s"]
            )
    finally:
        pub.close()
    emitted = phase_a + phase_b + phase_c
    with SqliteOutbox(state / "outbox.sqlite") as outbox:
        batch = stored_batch(outbox)
        energy = [i for i, k in enumerate(outbox.table.keys) if k.measurement == "energy"]
        stored = int(np.isin(batch.series, energy).sum())
        kept = outbox.depth_samples
    dropped = sum(stats.dropped.values())
    assert stored + dropped + stats.refused == emitted, (stored, dropped, stats.refused)
    # every stored sample kept (+1: the connection sample written when the source stopped)
    assert kept == stats.appended - dropped + 1
    assert refused_while_full > 0 and stats.refused_disk_full == stats.refused
    assert stats.refused < phase_b + 1  # phase C after the space returned was stored
    assert full_metrics["zhizao_gateway_status_file_ok"] == 0
    assert full_metrics["zhizao_gateway_outbox_storage_ok"] == 0
    assert full_metrics["zhizao_gateway_outbox_refused_disk_full_samples_total"] > 0
    assert any("outbox" in p for p in full_problems), full_problems
    assert ok_metrics["zhizao_gateway_outbox_storage_ok"] == 1
    assert ok_metrics["zhizao_gateway_status_file_ok"] == 1
    assert status_age < 5  # the status file is written again
    assert stats.storage_error == ""


# ---------------------------------------------------------------------------- item 7


def test_clock_step_forward_does_not_expire_the_backlog(tmp_path: Path) -> None:
    """A box without RTC boots in 2000 and NTP steps it to 2026: nothing expires as ``age``."""
    wall = [946_684_800 * 10**9]  # 2000-01-01
    key = SeriesKey.make("energy", {"site": "s1", "machine": "m1"}, "power_kw", FieldType.FLOAT)
    config = OutboxConfig(max_age_s=7 * 86_400)
    with SqliteOutbox(tmp_path / "o.sqlite", config, clock_ns=lambda: wall[0]) as outbox:
        idx = outbox.series_index(key)
        for c in range(10):
            ts = np.arange(c * 1000, (c + 1) * 1000, dtype=np.int64)
            outbox.append(Batch.build(outbox.table, np.full(1000, idx), ts, ts / 2.0))
            wall[0] += 10**9
        wall[0] = 1_767_225_600 * 10**9  # NTP: 2026-01-01
        expired = outbox.expire()
        ts = np.arange(10_000, 10_100, dtype=np.int64)
        outbox.append(Batch.build(outbox.table, np.full(100, idx), ts, ts / 2.0))
        kept, dropped = outbox.depth_samples, dict(outbox.stats.dropped)
        age_s = outbox.oldest_age_s()
    with SqliteOutbox(tmp_path / "o.sqlite", config, clock_ns=lambda: wall[0]) as outbox:
        expired_after_restart = outbox.expire()
    assert expired == 0 and dropped["age"] == 0, f"{dropped['age']} of 10000 expired as age"
    assert kept == 10_100
    assert age_s < 60  # ages are what they were on the monotonic clock
    assert expired_after_restart == 0  # re-dated in the file too


def test_status_file_and_state_are_private(tmp_path: Path) -> None:
    """Item 10: the state directory is 0700 and the outbox and status files 0600, whatever
    the umask; a state directory left open to others is fixed at start-up."""
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    old = os.umask(0o000)
    try:
        config = _gateway_yaml(state, free_port(), {"type": "mqtt", "broker": {"port": 1}})
        app = GatewayApp(load_gateway_config(config))
        write_status(state, app.snapshot())
        app.outbox.close()
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in state.iterdir()}
    assert state.stat().st_mode & 0o777 == 0o700
    assert modes and all(m == 0o600 for m in modes.values()), modes
