"""``zhizao sim run`` as an operator starts it: a process that serves, writes its truth, stops on Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from asyncua.client.client import Client

from simulator.config import NS_MACHINERY
from zhizao.localstack import free_port

pytestmark = pytest.mark.integration


async def _machine_count(port: int) -> int:
    async with Client(f"opc.tcp://127.0.0.1:{port}", timeout=30, watchdog_intervall=10.0) as client:
        ma = await client.get_namespace_index(NS_MACHINERY)
        folder = await client.nodes.objects.get_child([f"{ma}:Machines"])
        return len(await folder.get_children())


def test_sim_run_serves_writes_truth_and_stops_on_interrupt(tmp_path: Path) -> None:
    port = free_port()
    truth = tmp_path / "truth.jsonl"
    cmd = [
        sys.executable, "-m", "zhizao.cli", "sim", "run",
        "--opcua-endpoint", f"opc.tcp://127.0.0.1:{port}",
        "--speed", "600", "--start", "2026-11-23T06:00:00+08:00", "--hours", "2",
        "--seed", "4", "--state-dir", str(tmp_path / "state"), "--truth-file", str(truth),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while "machines on" not in (line := proc.stderr.readline() if proc.stderr else ""):
            assert proc.poll() is None and time.monotonic() < deadline, line
        assert asyncio.run(_machine_count(port)) == 4
        meta = json.loads(truth.read_text().splitlines()[0])
        assert meta["type"] == "meta" and meta["seed"] == 4
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(30)
    assert rc in (0, 130)
    assert (tmp_path / "state" / "pki" / "own" / "server_cert.der").exists()


def test_sim_run_rejects_a_bad_endpoint() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "zhizao.cli", "sim", "run", "--opcua-endpoint", "http://x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert "opc.tcp://127.0.0.1:PORT" in res.stderr
