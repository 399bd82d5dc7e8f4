"""``zhizao demo``: Ctrl-C stops everything in data-flow order and leaves no process and no
listening port behind (the --duration run and its JSON line are measured by hand: see
docs/SIZING.md; the KPI comparison is tests/e2e/test_pipeline.py)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_ctrl_c_stops_every_component_and_frees_every_port(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zhizao.cli",
            "demo",
            "--plain",
            "--speed",
            "300",
            "--interval-s",
            "2",
            "--data-dir",
            str(tmp_path / "demo"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    out: list[str] = []
    deadline = time.monotonic() + 150
    try:
        for line in proc.stdout:  # until the first KPI view is on screen
            out.append(line)
            if " OEE " in line or time.monotonic() > deadline:
                break
        text = "".join(out)
        assert " OEE " in text, text[-3000:]
        ports = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", text)}
        assert len(ports) >= 4, text  # InfluxDB, the API, Mosquitto, VictoriaMetrics
        assert all(_listening(p) for p in ports), ports
        # VictoriaMetrics scrapes the gateway, ingest and the API (with the demo's token)
        (vm,) = re.findall(r"metrics (http://127\.0\.0\.1:\d+)", text)
        up: dict[str, float] = {}
        while time.monotonic() < deadline and len(up) < 3:
            got = httpx.get(f"{vm}/api/v1/query", params={"query": "up"}, timeout=5).json()
            up = {r["metric"]["job"]: float(r["value"][1]) for r in got["data"]["result"]}
            time.sleep(1)
        assert up == {"gateway": 1.0, "ingest": 1.0, "api": 1.0}, up
        children = _descendants(proc.pid)
        assert len(children) >= 5, children  # servers, simulator, gateway, ingest, API
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest[-3000:]
    assert "stopping" in rest
    assert not [p for p in children if _alive(p)], "processes left behind"
    assert not [p for p in ports if _listening(p)], "ports left open"
    assert not (tmp_path / "demo").exists() or not any((tmp_path / "demo").iterdir())
