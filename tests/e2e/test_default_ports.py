"""Gateway, ingest, KPI engine and API start together on one machine with their default
configurations (issue 15): four real ``zhizao ... run`` processes whose configurations leave
every port of their own at its default (docs/PORTS.md) and point only at the test's InfluxDB and
Mosquitto. Each answers its health probe on its own default port on 127.0.0.1, listens on
loopback only, and stops cleanly on SIGTERM.

The default ports are fixed, so a port already taken on the machine fails the test at once with
the port and the service named (never a hang, never a probe answered by somebody else).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from analytics.config import HealthConfig as KpiHealthConfig
from api.settings import ApiSettings
from gateway.config import MetricsConfig
from ingest.config import HealthConfig as IngestHealthConfig
from tests.conftest import InfluxDb
from zhizao.localstack import MosquittoServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
ZHIZAO = (sys.executable, "-m", "zhizao.cli")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Service:
    name: str  # as in docs/PORTS.md
    command: str  # zhizao <command> run
    host: str  # the default host of its configuration model
    port: int  # the default port of its configuration model
    probe: str  # the documented health path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.probe}"


def _default(model: Any, field: str) -> Any:
    return model.model_fields[field].default


# the defaults read from the configuration models, not repeated here
SERVICES = (
    Service(
        "API",
        "api",
        _default(ApiSettings, "host"),
        _default(ApiSettings, "port"),
        "/healthz",
    ),
    Service(
        "gateway",
        "gateway",
        _default(MetricsConfig, "host"),
        _default(MetricsConfig, "port"),
        "/healthz",
    ),
    Service(
        "ingest",
        "ingest",
        _default(IngestHealthConfig, "host"),
        _default(IngestHealthConfig, "port"),
        "/healthz",
    ),
    Service(
        "KPI engine",
        "kpi",
        _default(KpiHealthConfig, "host"),
        _default(KpiHealthConfig, "port"),
        "/healthz",
    ),
)


def _configs(tmp: Path, mosquitto: MosquittoServer, influx: InfluxDb) -> dict[str, dict[str, Any]]:
    """Minimal configurations: the servers to talk to and where to keep state; no ports."""
    broker = {"host": "127.0.0.1", "port": mosquitto.port}
    influx_cfg = {"url": influx.url, "database": influx.database}
    return {
        "gateway": {
            "gateway": {
                "id": "gw-ports",
                "enterprise": "acme",
                "site": "s1",
                "state_dir": str(tmp / "gateway-state"),
            },
            "sources": [
                {
                    "type": "mqtt",
                    "name": "meters",
                    "broker": {**broker, "client_id": "gw-ports-meters"},
                    "topics": [
                        {
                            "filter": "ports/{meter}/power_kw",
                            "asset": {"machine": "{meter}"},
                            "measurement": "energy",
                            "signal": "power_kw",
                        }
                    ],
                }
            ],
            "uplink": {"type": "mqtt", "broker": {**broker, "client_id": "gw-ports-uplink"}},
        },
        "ingest": {
            "mqtt": {**broker, "client_id": "ingest-ports"},
            "influx": influx_cfg,
            "quarantine": {"path": str(tmp / "quarantine")},
        },
        "kpi": {"sites": [str(ROOT / "zhizao" / "site.sample.yaml")], "influx": influx_cfg},
        "api": {
            "database_url": f"sqlite:///{tmp / 'api.sqlite'}",
            "influx": influx_cfg,
            "log_level": "INFO",  # uvicorn's shutdown lines are INFO
        },
    }


def _port_taken(host: str, port: int) -> bool:
    """Whether something else holds the port (bound as the services bind: with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _listening(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of the sockets listening on ``port``."""
    out: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as fh:
            next(fh)
            for line in fh:
                local, state = line.split()[1], line.split()[3]
                addr, hex_port = local.rsplit(":", 1)
                if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                    out.add(addr)
    return out


LOOPBACK_V4 = "0100007F"  # 127.0.0.1 in /proc/net/tcp's little-endian hex


def _probe(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _tail(path: Path) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-2000:]


def test_the_four_services_start_together_on_their_default_ports(
    tmp_path: Path, mosquitto: MosquittoServer, influx_db: InfluxDb
) -> None:
    ports = [s.port for s in SERVICES]
    assert len(set(ports)) == len(ports), f"two services share a default port: {SERVICES}"
    for s in SERVICES:
        # loopback only: nothing listens on the network unless the operator says so
        assert s.host == "127.0.0.1", f"the {s.name}'s default host is {s.host}, not loopback"
    busy = [s for s in SERVICES if _port_taken(s.host, s.port)]
    if busy:
        pytest.fail(
            "default port(s) already in use on this machine: "
            + ", ".join(f"{s.port} ({s.name}'s default)" for s in busy)
            + "; stop whatever listens there (ss -ltnp) and run the test again",
            pytrace=False,
        )

    env = {k: v for k, v in os.environ.items() if not k.startswith("ZHIZAO_API_")}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    try:
        for s in SERVICES:
            cfg = tmp_path / f"{s.command}.yaml"
            cfg.write_text(yaml.safe_dump(_configs(tmp_path, mosquitto, influx_db)[s.command]))
            logs[s.name] = tmp_path / f"{s.command}.log"
            with logs[s.name].open("wb") as log:
                procs[s.name] = subprocess.Popen(
                    [*ZHIZAO, s.command, "run", "-c", str(cfg)],
                    cwd=tmp_path,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )

        answers: dict[str, tuple[int, str]] = {}
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(answers) < len(SERVICES):
            for s in SERVICES:
                if s.name in answers:
                    continue
                code = procs[s.name].poll()
                assert code is None, (
                    f"{s.name} exited with {code} at start-up:\n{_tail(logs[s.name])}"
                )
                try:
                    status, body = _probe(s.url)
                except OSError:
                    continue  # not listening yet
                if status == 200:
                    answers[s.name] = (status, body)
            if time.monotonic() > deadline:
                missing = [s for s in SERVICES if s.name not in answers]
                details = "\n".join(
                    f"--- {s.name} ({s.url}): {_last_probe(s.url)}\n{_tail(logs[s.name])}"
                    for s in missing
                )
                pytest.fail(
                    f"not healthy within {START_TIMEOUT_S:.0f} s: "
                    f"{', '.join(s.name for s in missing)}\n{details}",
                    pytrace=False,
                )
            time.sleep(0.3)

        for s in SERVICES:
            addrs = _listening(s.port)
            assert addrs == {LOOPBACK_V4}, f"{s.name} listens on {addrs} for port {s.port}"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        stopped: dict[str, int | None] = {}
        for name, proc in procs.items():
            try:
                stopped[name] = proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                stopped[name] = None
    # a clean stop: each ends by itself on SIGTERM. uvicorn (the API) shuts down gracefully and
    # then raises the captured signal again, so its status is -SIGTERM (what systemd counts as a
    # clean stop); its log shows that the shutdown ran to the end
    clean = {s.name: 0 for s in SERVICES}
    if stopped.get("API") == -signal.SIGTERM and "Application shutdown complete" in _tail(
        logs["API"]
    ):
        clean["API"] = -signal.SIGTERM
    assert stopped == clean, (
        stopped,
        {name: _tail(path) for name, path in logs.items() if stopped.get(name) != clean[name]},
    )
    for s in SERVICES:
        assert not _listening(s.port), f"{s.name} still listens on {s.port} after its stop"


def _last_probe(url: str) -> str:
    try:
        status, body = _probe(url)
    except OSError as exc:
        return f"no answer ({exc})"
    return f"HTTP {status}: {body[:300]}"
