"""Packaging: the wheel (with the C line-protocol kernel) and the role extras. A fresh virtual
environment gets only ``zhizao[gateway]`` from the wheel; there the gateway runs against a real
Mosquitto and the other roles' packages (FastAPI, SQLAlchemy, influxdb-client, openpyxl) are
absent, while their commands say which extra to install."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from ingest.frames import FrameCodec
from zhizao.localstack import MosquittoServer, stop_process_group

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # no build isolation: the set-up's setuptools builds it (offline, and seconds, not minutes)
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (whl,) = out.glob("zhizao-*.whl")
    return whl


def test_the_wheel_carries_the_c_kernel_and_the_role_extras(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(z.read(meta_name).decode())
    assert [n for n in names if n.startswith("ingest/_lpkernel") and n.endswith(".so")], names
    assert "cp311" in wheel.name  # a platform wheel: the kernel is compiled, not pure Python
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"gateway", "ingest", "analytics", "api", "all", "dev"} <= extras
    requires = meta.get_all("Requires-Dist") or []
    core = [r for r in requires if "extra ==" not in r]
    for heavy in ("fastapi", "sqlalchemy", "influxdb-client", "openpyxl", "asyncua", "paho-mqtt"):
        assert not any(r.lower().startswith(heavy) for r in core), (heavy, core)
    bounded = {r.split(";")[0].replace(" ", "") for r in requires}
    for name in ("asyncua", "paho-mqtt", "fastapi"):
        spec = next(b for b in bounded if b.startswith(name))
        assert "<" in spec, f"{name} needs an upper bound: {spec}"


@pytest.fixture(scope="module")
def gateway_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("gwvenv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = venv / "bin" / "pip"
    res = subprocess.run(
        [str(pip), "install", "-q", f"zhizao[gateway] @ {wheel.as_uri()}"],
        capture_output=True,
        text=True,
        timeout=500,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return venv


def _py(venv: Path, code: str) -> subprocess.CompletedProcess[str]:
    # run outside the checkout so that the repository's packages cannot be imported by accident
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        check=False,
    )


def test_gateway_extra_pulls_no_api_or_influx_client_packages(gateway_venv: Path) -> None:
    for mod in ("fastapi", "sqlalchemy", "influxdb_client", "openpyxl", "uvicorn", "alembic"):
        res = _py(gateway_venv, f"import {mod}")
        assert res.returncode != 0 and "ModuleNotFoundError" in res.stderr, (mod, res.stderr)
    for mod in ("asyncua", "paho.mqtt", "gateway.app", "gateway.sources.opcua.source"):
        res = _py(gateway_venv, f"import {mod}")
        assert res.returncode == 0, (mod, res.stderr)
    res = _py(gateway_venv, "import zhizao, os; print(zhizao.__file__)")
    assert "site-packages" in res.stdout, res.stdout  # the installed copy, not the checkout


def test_gateway_help_works_and_other_roles_name_their_extra(gateway_venv: Path) -> None:
    zhizao = str(gateway_venv / "bin" / "zhizao")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run(
        [zhizao, "gateway", "--help"], capture_output=True, text=True, cwd="/", env=env
    )
    assert res.returncode == 0, res.stderr
    assert "run" in res.stdout and "browse" in res.stdout
    res = subprocess.run(
        [zhizao, "api", "run"], capture_output=True, text=True, cwd="/", env=env, timeout=60
    )
    assert res.returncode == 2
    assert "pip install 'zhizao[api]'" in res.stderr and "Traceback" not in res.stderr


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    server = MosquittoServer(data_dir=tmp_path / "mosquitto")
    server.start(timeout_s=30)
    try:
        yield server
    finally:
        server.stop()


def test_a_gateway_installed_with_only_its_extra_forwards_samples(
    gateway_venv: Path, broker: MosquittoServer, tmp_path: Path
) -> None:
    energy: list[tuple[str, float]] = []  # (series, value) of every energy sample in a frame

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        frame = FrameCodec.decode(m.payload)
        assert frame.gateway_id == "gw-pkg"
        b = frame.batch
        for s, v in zip(b.series.tolist(), b.value_f64.tolist(), strict=True):
            key = frame.table_keys[s]
            if key.measurement == "energy":
                energy.append((str(key), v))

    sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe("zhizao/v1/+/+/frames", qos=1)
    sub.loop_start()
    state = str(tmp_path / "state")
    cfg: dict[str, Any] = {
        "gateway": {"id": "gw-pkg", "enterprise": "acme", "site": "s1", "state_dir": state},
        "sources": [
            {
                "type": "mqtt",
                "name": "meters",
                "broker": {"port": broker.port, "client_id": f"src-{uuid.uuid4().hex[:6]}"},
                "flush_interval_s": 0.05,
                "topics": [
                    {
                        "filter": "plant/{meter}/power_kw",
                        "asset": {"machine": "{meter}"},
                        "measurement": "energy",
                        "signal": "power_kw",
                    }
                ],
            }
        ],
        "uplink": {
            "type": "mqtt",
            "broker": {"port": broker.port, "client_id": f"up-{uuid.uuid4().hex[:6]}"},
        },
    }
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen(
        [str(gateway_venv / "bin" / "zhizao"), "gateway", "run", "-c", "gateway.yaml"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    try:
        deadline = time.monotonic() + 30
        sent = 0
        while not energy and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            pub.publish(
                "plant/em1/power_kw",
                json.dumps({"timestamp_ms": int(time.time() * 1000), "value": 1.5 + sent}),
                qos=1,
            )
            sent += 1
            time.sleep(0.3)
        assert energy, "no energy sample from the gateway within 30 s"
    finally:
        pub.loop_stop()
        pub.disconnect()
        sub.loop_stop()
        sub.disconnect()
        stop_process_group(proc, signal.SIGTERM, 20.0)
        if proc.stderr:
            proc.stderr.close()
    key, value = energy[0]
    assert "'machine', 'em1'" in key and "power_kw" in key, key
    assert value >= 1.5 and float(value - 1.5).is_integer(), value  # one of those published
