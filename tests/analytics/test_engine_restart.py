"""A KPI engine killed (SIGKILL, a real ``zhizao kpi run`` process) between runs and in the
middle of one: the next run stores the same components as an engine that was never stopped.
Also its health endpoint: /metrics while it runs, /healthz 503 after failed runs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from analytics.config import KpiConfig, load_kpi_config
from analytics.engine import KpiEngine
from ingest.influx import InfluxQLReader, InfluxWriter
from tests.analytics.test_segments import EXACT, SITE, TAGS
from tests.conftest import _influx_post
from zhizao.localstack import InfluxServer, free_port, stop_process_group

S = 1_000_000_000
MEASUREMENTS = [
    "kpi_machine_hour", "kpi_machine_shift", "kpi_machine_day", "kpi_site_hour", "kpi_site_day",
    "kpi_machine_segment", "kpi_site_segment",
]  # fmt: skip


def raw_lines(rng: np.random.Generator, lo: int, hi: int) -> list[str]:
    lines = []
    for machine in ("M1", "M2"):
        t, count = lo, 0
        while t < hi:
            state = ["IN_CYCLE", "IDLE", "SETUP", "DELAY"][int(rng.integers(0, 4))]
            lines.append(f'machine_state,{TAGS},machine={machine} state="{state}" {t}')
            t += int(rng.integers(20, 900)) * S
        t = lo
        while t < hi:
            count = 0 if rng.random() < 0.02 else count + int(rng.integers(0, 3))
            lines.append(f"counter,{TAGS},machine={machine} part_count={count}i {t}")
            t += int(rng.integers(10, 200)) * S
    t, kwh = lo, 0.0
    while t < hi:
        kwh += float(rng.uniform(0, 3))
        lines.append(f"energy,{TAGS},machine=M1,meter=em-M1 energy_kwh={kwh!r} {t}")
        lines.append(f"energy,enterprise=acme,site=plant1,meter=em-main energy_kwh={kwh * 7!r} {t}")
        t += 60 * S
    return lines


def setup(tmp: Path, url: str, name: str, lines: list[str], health_port: int) -> KpiConfig:
    db = f"t_{uuid.uuid4().hex[:12]}"
    _influx_post(url, f'CREATE DATABASE "{db}"')
    d = tmp / name
    d.mkdir()
    (d / "site.yaml").write_text(yaml.safe_dump(SITE), encoding="utf-8")
    doc = {
        "sites": ["site.yaml"],
        "influx": {"url": url, "database": db},
        "heartbeat_s": 1800,
        "signals": {"state": [{"measurement": "machine_state", "field": "state"}]},
        "schedule": {"interval_s": 0.2, "backfill_s": 5 * 3600, "lookback_s": 20, "delay_s": 0},
        "health": {"port": health_port, "fail_after_runs": 2},
    }
    (d / "kpi.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    cfg = load_kpi_config(d / "kpi.yaml")
    assert cfg.influx is not None

    async def write() -> None:
        assert cfg.influx is not None
        async with InfluxWriter(cfg.influx) as writer:
            for i in range(0, len(lines), 5000):
                chunk = lines[i : i + 5000]
                await writer.write_body(("\n".join(chunk) + "\n").encode(), len(chunk))

    asyncio.run(write())
    return cfg


def start_engine(cfg_dir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "zhizao.cli", "kpi", "run", "-c", str(cfg_dir / "kpi.yaml")],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def metrics(port: int) -> dict[str, float]:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def wait_for(pred: Any, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


async def dump(cfg: KpiConfig) -> dict[tuple[str, str, int], dict[str, float]]:
    assert cfg.influx is not None
    out = {}
    async with InfluxQLReader(cfg.influx) as reader:
        for m in MEASUREMENTS:
            for s in await reader.query(f'SELECT * FROM "{m}" GROUP BY *'):
                for i, t in enumerate(s.time_ns.tolist()):
                    row = {k: float(v[i]) for k, v in s.values.items() if v[i] is not None}
                    out[(m, s.tags.get("machine", ""), int(t))] = row
    return out


@pytest.mark.integration
def test_killed_engine_continues_with_the_same_components(
    tmp_path: Path, influx_server: InfluxServer
) -> None:
    now = time.time_ns()
    rng = np.random.default_rng(16)
    # raw data up to a minute ahead: it becomes visible to the running engine as time passes
    lines = raw_lines(rng, now - 6 * 3600 * S, now + 60 * S)
    port = free_port()
    cfg = setup(tmp_path, influx_server.url, "killed", lines, port)
    cfg_dir = tmp_path / "killed"

    proc = start_engine(cfg_dir)
    try:
        # between runs: after two runs have finished and while none is in progress
        wait_for(lambda: metrics(port).get("zhizao_kpi_runs_total", 0) >= 2, "two runs")
        wait_for(lambda: metrics(port).get("zhizao_kpi_run_in_progress") == 0, "a pause")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # mid-run: the restarted engine's first run (segments read back, the look-back read)
        proc = start_engine(cfg_dir)
        wait_for(lambda: metrics(port).get("zhizao_kpi_run_in_progress") == 1, "a run")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        killed_mid_run = metrics(port) == {}
        assert killed_mid_run
    finally:
        stop_process_group(proc)

    # the next run, and an engine never stopped (one run over the same raw data, same clock)
    final = time.time_ns()
    asyncio.run(KpiEngine(cfg).run_once(final))
    fresh = setup(tmp_path, influx_server.url, "fresh", lines, 0)
    asyncio.run(KpiEngine(fresh).run_once(final))
    got, want = asyncio.run(dump(cfg)), asyncio.run(dump(fresh))
    assert len(want) > 100
    for key, row in want.items():
        assert key in got, key
        for name, value in row.items():
            if name in EXACT:
                assert got[key][name] == value, (key, name)
            else:
                assert got[key][name] == pytest.approx(value, rel=1e-9, abs=1e-12), (key, name)


@pytest.mark.integration
def test_health_endpoint_turns_503_after_failed_runs(tmp_path: Path) -> None:
    port = free_port()
    d = tmp_path / "down"
    d.mkdir()
    (d / "site.yaml").write_text(yaml.safe_dump(SITE), encoding="utf-8")
    doc = {
        "sites": ["site.yaml"],
        "influx": {"url": f"http://127.0.0.1:{free_port()}", "database": "x", "timeout_s": 1},
        "schedule": {"interval_s": 0.1},
        "health": {"port": port, "fail_after_runs": 2},
    }
    (d / "kpi.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    proc = start_engine(d)
    try:
        wait_for(lambda: metrics(port).get("zhizao_kpi_failed_runs_total", 0) >= 2, "failures")
        r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "unhealthy" and body["consecutive_failed_runs"] >= 2
        assert "cannot be reached" in body["last_error"]
        assert metrics(port)["zhizao_kpi_consecutive_failed_runs"] >= 2
    finally:
        stop_process_group(proc)


@pytest.mark.integration
def test_engine_down_for_longer_than_the_look_back_catches_up(
    tmp_path: Path, influx_server: InfluxServer
) -> None:
    """Restarted after three hours with a 20 s look-back, the engine recomputes from the first
    segment it had not finished (not just its look-back) and reads the rest back."""
    t0 = 1_772_400_000 * S  # 2026-03-02 05:20 in Shanghai
    lines = raw_lines(np.random.default_rng(3), t0 - 3600 * S, t0 + 6 * 3600 * S)
    cfg = setup(tmp_path, influx_server.url, "down", lines, 0)
    asyncio.run(KpiEngine(cfg).run_once(t0 + 2 * 3600 * S + 17 * S))
    later = t0 + 5 * 3600 * S + 41 * S
    rep = asyncio.run(KpiEngine(cfg).run_once(later))
    assert rep.segments > 3  # the three hours it was down, not just the open segment
    fresh = setup(tmp_path, influx_server.url, "fresh", lines, 0)
    asyncio.run(KpiEngine(fresh).run_once(later))
    got, want = asyncio.run(dump(cfg)), asyncio.run(dump(fresh))
    assert len(want) > 50
    for key, row in want.items():
        assert key in got, key
        for name, value in row.items():
            assert got[key][name] == pytest.approx(value, rel=1e-9, abs=1e-12), (key, name)
