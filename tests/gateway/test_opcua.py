"""OPC UA source against real asyncua servers: security, bulk collection, limits, self-healing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.config import OpcUaSourceConfig, OutboxConfig
from gateway.outbox import SqliteOutbox
from gateway.sink import OutboxSink
from gateway.sources.opcua.source import OpcUaSource, server_certificate_fingerprint
from tests.gateway.helpers import go, start_process, stored, wait_for
from tests.gateway.opcua_server import BASE_TS, TestOpcUaServer, node_id
from zhizao.localstack import free_port
from zhizao.quality import Quality

pytestmark = pytest.mark.integration
BASE_MS = int(BASE_TS.timestamp() * 1000)
# how long the OPC UA server stays dead in the restart test (the figure)
SERVER_OUTAGE_S = 20.0


def _source_config(endpoint: str, n_vars: int, **extra: Any) -> OpcUaSourceConfig:
    tags = [
        {
            "node": node_id(i),
            "asset": {"area": "hall", "line": "line1", "machine": f"m{i:05d}"},
            "measurement": "spindle",
            "signal": "speed_rpm",
        }
        for i in range(n_vars)
    ]
    tags += extra.pop("extra_tags", [])
    return OpcUaSourceConfig.model_validate(
        {
            "type": "opcua",
            "name": "cnc",
            "endpoint": endpoint,
            "publishing_interval_ms": 50,
            "watchdog_interval_s": 0.5,
            "request_timeout_s": 2,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1,
            "flush_interval_s": 0.05,
            "tags": tags,
            **extra,
        }
    )


@contextlib.asynccontextmanager
async def _running(source: OpcUaSource) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(source.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _machine_series(outbox: SqliteOutbox) -> dict[int, int]:
    """series index -> machine number for the spindle series."""
    return {
        i: int(k.tag_dict["machine"][1:])
        for i, k in enumerate(outbox.table.keys)
        if k.measurement == "spindle" and k.tag_dict["machine"] != "ghost"
    }


async def test_secured_session_collects_every_change(tmp_path: Path) -> None:
    n_vars, rounds = 20, 40
    server_dir = tmp_path / "server-pki"
    srv = TestOpcUaServer(
        free_port(),
        n_vars + 1,  # the last one is polled, not subscribed
        secure_dir=server_dir,
        username="operator",
        password="s3cret",
        max_items_per_call=7,
    )
    await srv.start()
    try:
        trust = tmp_path / "trusted"
        trust.mkdir()
        (trust / "server.der").write_bytes(srv.cert_path.read_bytes())
        config = _source_config(
            srv.endpoint,
            n_vars,
            security={"trust_dir": str(trust), "username": "operator", "password": "s3cret"},
            extra_tags=[
                {
                    "node": "ns=2;s=DoesNotExist",
                    "asset": {"area": "hall", "line": "line1", "machine": "ghost"},
                    "measurement": "spindle",
                    "signal": "speed_rpm",
                },
                {
                    "node": node_id(n_vars),
                    "asset": {"area": "hall", "line": "line1", "machine": "poller"},
                    "measurement": "polled",
                    "signal": "speed_rpm",
                    "mode": "poll",
                    "poll_interval_s": 0.1,
                },
            ],
        )
        outbox = SqliteOutbox(tmp_path / "outbox.sqlite", OutboxConfig())
        source = OpcUaSource(
            config,
            OutboxSink(outbox),
            enterprise="acme",
            site="s1",
            gateway_id="gw",
            state_dir=tmp_path,
        )
        async with _running(source):
            await wait_for(lambda: source.stats.connected, 60, "secure session")
            assert source.items_per_call_used == 7  # read from OperationLimits
            assert source.monitored_items == n_vars  # the bad node did not stop the others
            assert source.bad_nodes == {"ns=2;s=DoesNotExist": "BadNodeIdUnknown"}
            for k in range(1, rounds + 1):
                await srv.write_round(k)
                await asyncio.sleep(0.01)
            # per series, changes arrive in order: the last round seen everywhere means all are in
            await wait_for(
                lambda: int((stored(outbox).value_f64 == rounds).sum()) >= n_vars,
                60,
                "all value changes",
            )
            await asyncio.sleep(0.3)  # anything extra (duplicates) would show up now
        # the client certificate was created on first run and persists
        assert (tmp_path / "pki" / "client_cert.der").exists()
        batch = stored(outbox)
        machine = _machine_series(outbox)
        spindle = np.isin(batch.series, list(machine))
        sub = batch.take(spindle)
        # every change of every variable, once: value k at source time BASE + k ms
        per_series = {s: sub.value_f64[sub.series == s] for s in machine}
        for s, values in per_series.items():
            if machine[s] == 0 and len(values) == 0:
                continue
            np.testing.assert_array_equal(values[values > 0], np.arange(1, rounds + 1))
        ts_ms = sub.ts_ns // 1_000_000 - BASE_MS
        np.testing.assert_array_equal(ts_ms[sub.value_f64 > 0], sub.value_f64[sub.value_f64 > 0])
        assert int((sub.value_f64 > 0).sum()) == n_vars * rounds
        assert (sub.quality == Quality.GOOD).all()
        assert source.stats.rejected["BadNodeIdUnknown"] == 1
        # the polled tag produced samples of its own series
        polled = [i for i, k in enumerate(outbox.table.keys) if k.measurement == "polled"]
        assert (batch.series == polled[0]).sum() >= 1
        # server timestamps and status codes are stored next to each sample
        chunks = outbox.take(10**9)
        data_chunks = [c for c in chunks if int(c.batch.series[0]) in machine]
        assert data_chunks
        for c in data_chunks:
            assert c.server_ts_ns is not None and c.status_code is not None
            assert (c.server_ts_ns > c.batch.ts_ns).all()  # written "now", sourced in 2026-01-01
            assert (c.status_code == 0).all()
        outbox.close()
    finally:
        await srv.stop()


async def test_untrusted_server_certificate_is_refused(tmp_path: Path) -> None:
    srv = TestOpcUaServer(free_port(), 2, secure_dir=tmp_path / "server-pki")
    await srv.start()
    try:
        config = _source_config(srv.endpoint, 2, security={"server_fingerprint_sha256": "AB" * 32})
        outbox = SqliteOutbox(tmp_path / "o.sqlite")
        source = OpcUaSource(
            config,
            OutboxSink(outbox),
            enterprise="acme",
            site="s1",
            gateway_id="gw",
            state_dir=tmp_path,
        )
        async with _running(source):
            await wait_for(lambda: source.stats.connect_failures >= 1, 30, "refusal")
            assert not source.stats.connected
            assert "not trusted" in source.stats.last_error
            real = server_certificate_fingerprint(srv.cert_path.read_bytes())
            assert real.replace(":", "") in source.stats.last_error.replace(":", "")
        outbox.close()
    finally:
        await srv.stop()


async def test_server_killed_and_restarted_reconnects_and_shows_gap(tmp_path: Path) -> None:
    # The issue asks for a 20 s outage; 5 s exercises the same path (watchdog, backoff capped at
    # 1 s here, re-subscribe) and keeps the suite lean.
    port, n_vars = free_port(), 10
    args = ["--port", str(port), "--vars", str(n_vars), "--period-s", "0.05"]
    proc = start_process("tests.gateway.opcua_server", *args, "--rounds", "40", "--wait-go")
    outbox = SqliteOutbox(tmp_path / "o.sqlite")
    config = _source_config(
        f"opc.tcp://127.0.0.1:{port}", n_vars, security={"policy": "None", "mode": "None"}
    )
    source = OpcUaSource(
        config,
        OutboxSink(outbox),
        enterprise="acme",
        site="s1",
        gateway_id="gw",
        state_dir=tmp_path,
    )
    proc2: subprocess.Popen[str] | None = None
    try:
        async with _running(source):
            await wait_for(lambda: source.monitored_items == n_vars, 60, "subscribed")
            go(proc)
            await wait_for(
                lambda: int((stored(outbox).value_f64 == 39).sum()) == n_vars, 60, "first run"
            )
            os.killpg(proc.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            proc.wait()
            await wait_for(lambda: not source.stats.connected, 30, "loss detected")
            # the server stays dead for the 20 s before it comes back
            await asyncio.sleep(max(0.0, SERVER_OUTAGE_S - (time.monotonic() - killed_at)))
            proc2 = start_process(
                "tests.gateway.opcua_server",
                *args,
                "--rounds",
                "30",
                "--first-round",
                "1000",
                "--wait-go",
            )
            await wait_for(lambda: source.stats.connected, 60, "reconnect")
            await wait_for(lambda: source.sessions == 2, 60, "re-subscribed")
            go(proc2)
            await wait_for(
                lambda: int((stored(outbox).value_f64 >= 1000).sum()) >= n_vars * 30,
                60,
                "values resume",
            )
            await asyncio.sleep(0.3)  # duplicates, if any, would show up now
        assert source.sessions == 2 and source.stats.reconnects == 1
        batch = stored(outbox)
        conn = [i for i, k in enumerate(outbox.table.keys) if k.measurement == "gateway_connection"]
        mask = batch.series == conn[0]
        # connected, lost, connected again (and closed at shutdown): the gap is an interval
        assert batch.value_i64[mask].tolist() == [1, 0, 1, 0]
        lost_ns, back_ns = batch.ts_ns[mask][1], batch.ts_ns[mask][2]
        assert back_ns - lost_ns >= 5_000_000_000
        spindle = np.isin(batch.series, conn, invert=True)
        values = batch.value_f64[spindle]
        # nothing invented: only the values the two server runs wrote (0 = initial value)
        expected = set(range(40)) | set(range(1000, 1030)) | {0.0}
        assert set(values.tolist()) <= expected
        assert int((values >= 1000).sum()) == n_vars * 30
        assert int(((values > 0) & (values < 40)).sum()) == n_vars * 39
    finally:
        for p in (proc, proc2):
            if p is not None:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                if p.stdout is not None:
                    p.stdout.close()
        outbox.close()
