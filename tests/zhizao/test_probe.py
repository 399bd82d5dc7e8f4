"""zhizao.probe: the one /metrics + /healthz server the gateway, ingest and the KPI engine use."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest

from zhizao.errors import ConfigError
from zhizao.probe import ProbeServer


def _get(port: int, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_metrics_health_and_unknown_paths() -> None:
    state = {"ok": True}
    server = ProbeServer(
        "127.0.0.1",
        0,
        metrics=lambda: (b"x_total 3\n", "text/plain; version=0.0.4"),
        health=lambda: (state["ok"], {"why": None if state["ok"] else "outbox full"}),
        service="test",
        port_key="metrics.port",
    ).start()
    try:
        assert _get(server.port, "/metrics") == (200, "text/plain; version=0.0.4", b"x_total 3\n")
        status, ctype, body = _get(server.port, "/healthz")
        assert (status, ctype, json.loads(body)) == (
            200, "application/json", {"status": "ok", "why": None})  # fmt: skip
        state["ok"] = False
        status, _, body = _get(server.port, "/healthz?verbose=1")
        assert status == 503 and json.loads(body) == {"status": "unhealthy", "why": "outbox full"}
        assert _get(server.port, "/metricsfoo")[0] == 404
    finally:
        server.stop()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", server.port)) != 0  # stopped: the port is free


def test_a_taken_port_is_a_config_error_naming_it() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        with pytest.raises(ConfigError) as err:
            ProbeServer("127.0.0.1", port, metrics=lambda: (b"", "text/plain"),
                        health=lambda: (True, {}), service="ingest", port_key="health.port")  # fmt: skip
    assert f"127.0.0.1:{port}" in str(err.value) and "ingest" in str(err.value)
    assert err.value.key == "health.port"
