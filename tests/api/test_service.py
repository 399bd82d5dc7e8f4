"""`zhizao api run` as a process; readiness; InfluxDB down answers 503 with Retry-After."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.api import worked_example as wx
from tests.api.harness import api_server, seed
from tests.conftest import _influx_post
from zhizao.localstack import InfluxServer, free_port
from zhizao.site import SiteModel

pytestmark = pytest.mark.integration


def test_api_run_serves_probes_and_refuses_unsafe_config(
    tmp_path: Path, influx_server: Any
) -> None:
    db_url = f"sqlite:///{tmp_path / 'api.sqlite'}"
    tokens = seed(db_url, [SiteModel.model_validate(wx.SITE_MODEL)])
    port = free_port()
    cfg = {"host": "127.0.0.1", "port": port, "database_url": db_url,
           "influx": {"url": influx_server.url, "database": "zhizao"}}  # fmt: skip
    (tmp_path / "api.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZHIZAO_API_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "zhizao.cli", "api", "run", "-c", str(tmp_path / "api.yaml")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "the API did not come up"
            time.sleep(0.2)
        ready = httpx.get(f"{url}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["checks"] == {
            "database": "ok",
            "influxdb": "ok",
        }
        r = httpx.get(
            f"{url}/api/v1/kpis", headers={"Authorization": f"Bearer {tokens['engineer']}"}
        )
        assert r.status_code == 200 and any(k["id"] == "oee" for k in r.json())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode()
    # uvicorn shuts down cleanly, then re-raises SIGTERM so a supervisor sees how it ended
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "Finished server process" in out, out
    assert tokens["engineer"] not in out  # no secret in the log
    # an unsafe configuration is refused with one sentence, before binding
    cfg["bootstrap_admin_token"] = "change-me"
    (tmp_path / "api.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    bad = subprocess.run(
        [sys.executable, "-m", "zhizao.cli", "api", "run", "-c", str(tmp_path / "api.yaml")],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2, bad.stderr
    assert "bootstrap_admin_token" in bad.stderr and "Traceback" not in bad.stderr


def test_influxdb_down_gives_503_with_retry_after(tmp_path: Path, server_factory: Any) -> None:
    influx = server_factory(InfluxServer())
    _influx_post(influx.url, 'CREATE DATABASE "zhizao"')
    with api_server(
        tmp_path, influx_url=influx.url, database="zhizao",
        sites=[SiteModel.model_validate(wx.SITE_MODEL)],
    ) as server:  # fmt: skip
        path = f"/api/v1/sites/{wx.SITE}/kpis/history"
        params = {"from": "2026-03-02T00:00:00+08:00", "to": "2026-03-03T00:00:00+08:00"}
        assert server.get(path, "engineer", **params).status_code == 200
        influx.stop()
        t0 = time.monotonic()
        r = server.get(path, "engineer", **params)
        assert r.status_code == 503 and r.headers["Retry-After"].isdigit(), r.text
        assert time.monotonic() - t0 < 15  # never a hang
        ready = server.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"] == "ok"
        influx.start()
        assert server.get(path, "engineer", **params).status_code == 200


def test_kpi_answers_are_shared_and_reused_briefly(tmp_path: Path, influx_server: Any) -> None:
    _influx_post(influx_server.url, 'CREATE DATABASE "zhizao_cache"')
    with api_server(
        tmp_path, influx_url=influx_server.url, database="zhizao_cache",
        sites=[SiteModel.model_validate(wx.SITE_MODEL)], kpi_cache_s=30.0,
    ) as server:  # fmt: skip
        path = f"/api/v1/sites/{wx.SITE}/kpis/history"
        params = {"from": "2026-03-02T00:00:00+08:00", "to": "2026-03-03T00:00:00+08:00"}
        for _ in range(3):
            assert server.get(path, "engineer", **params).status_code == 200
        metrics = server.get("/metrics", "admin").text
        assert 'zhizao_api_kpi_cache_total{result="miss"} 1.0' in metrics
        assert 'zhizao_api_kpi_cache_total{result="hit"} 2.0' in metrics
        # another range is another query
        assert (
            server.get(
                path, "engineer", **{**params, "to": "2026-03-04T00:00:00+08:00"}
            ).status_code
            == 200
        )
        assert 'result="miss"} 2.0' in server.get("/metrics", "admin").text
