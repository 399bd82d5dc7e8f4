"""`zhizao api run --log-format json`: every stderr line is one JSON object, one request line per
request with its route template, status and duration, and no secret anywhere in the output."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.api import worked_example as wx
from tests.api.harness import seed
from tests.conftest import _influx_post
from zhizao.localstack import free_port
from zhizao.logs import token_fingerprint
from zhizao.site import SiteModel

pytestmark = pytest.mark.integration

HISTORY = "/api/v1/sites/{site}/kpis/history"


def _wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, "the API exited before it came up"
        assert time.monotonic() < deadline, "the API did not come up"
        time.sleep(0.2)


def test_json_logs_have_request_lines_and_no_secrets(tmp_path: Path, influx_server: Any) -> None:
    _influx_post(influx_server.url, 'CREATE DATABASE "zhizao_logs"')
    db_url = f"sqlite:///{tmp_path / 'api.sqlite'}"
    tokens = seed(db_url, [SiteModel.model_validate(wx.SITE_MODEL)])
    valid = tokens["engineer"]
    invalid = "zz_" + secrets.token_urlsafe(32)  # well-formed, never issued
    bootstrap = secrets.token_urlsafe(32)
    port = free_port()
    cfg = {
        "host": "127.0.0.1",
        "port": port,
        "database_url": db_url,
        "influx": {"url": influx_server.url, "database": "zhizao_logs"},
        "bootstrap_admin_token": bootstrap,
        "log_level": "INFO",
    }
    (tmp_path / "api.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZHIZAO_API_", "ZHIZAO_LOG"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "zhizao.cli", "api", "run", "-c", str(tmp_path / "api.yaml"),
         "--log-format", "json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    params = {"from": "2026-03-02T00:00:00+08:00", "to": "2026-03-03T00:00:00+08:00"}
    try:
        _wait_up(url, proc)
        ok = httpx.get(
            url + HISTORY.format(site=wx.SITE),
            params=params,
            headers={"Authorization": f"Bearer {valid}"},
            timeout=30,
        )
        assert ok.status_code == 200, ok.text
        bad = httpx.get(
            url + HISTORY.format(site=wx.SITE),
            params=params,
            headers={"Authorization": f"Bearer {invalid}"},
            timeout=30,
        )
        assert bad.status_code == 401
        admin = httpx.get(
            f"{url}/api/v1/kpis", headers={"Authorization": f"Bearer {bootstrap}"}, timeout=30
        )
        assert admin.status_code == 200
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        out_b, err_b = proc.communicate(timeout=20)
    out, err = out_b.decode(), err_b.decode()
    assert proc.returncode in (0, -signal.SIGTERM), err

    for secret in (valid, invalid, bootstrap):
        assert secret not in out and secret not in err, "a token secret reached the output"

    records: list[dict[str, Any]] = []
    for line in err.splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)  # every line is one JSON object
        assert isinstance(obj, dict), line
        assert {"ts", "level", "logger", "message"} <= obj.keys(), line
        assert obj["ts"].endswith("Z"), line
        assert datetime.fromisoformat(obj["ts"]).utcoffset() is not None
        assert obj["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}, line
        records.append(obj)
    # uvicorn's own lines come through the same formatter
    assert any(r["logger"].startswith("uvicorn") for r in records), err
    assert any("Finished server process" in r["message"] for r in records), err

    access = [r for r in records if r["logger"] == "api.access"]
    history = [r for r in access if r["route"] == "/api/v1/sites/{site}/kpis/history"]
    assert [r["status"] for r in history] == [200, 401], access
    assert all(r["method"] == "GET" and r["site"] == wx.SITE for r in history)
    assert all(isinstance(r["duration_ms"], float) and r["duration_ms"] > 0 for r in history)
    assert history[0]["token"] == token_fingerprint(valid)
    assert history[1]["token"] == token_fingerprint(invalid)
    assert history[0]["token"] != history[1]["token"]
    kpis = [r for r in access if r["route"] == "/api/v1/kpis"]
    assert len(kpis) == 1 and kpis[0]["status"] == 200 and "site" not in kpis[0]
    assert kpis[0]["token"] == token_fingerprint(bootstrap)
    # the probes are logged by route too; no raw query string ever
    assert all("?" not in r["message"] and "from=" not in json.dumps(r) for r in access)
