"""Issue 17 item 13: every refusal and every connection error reaches the operator."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from gateway.app import GatewayApp
from gateway.config import load_gateway_config
from tests.gateway.helpers import wait_for
from zhizao.errors import ConfigError
from zhizao.localstack import LocalServer, MosquittoServer, free_port


def _config(tmp: Path, broker: dict[str, object]) -> Path:
    cfg = {
        "gateway": {"id": "gw", "enterprise": "e", "site": "s", "state_dir": str(tmp / "state")},
        "sources": [
            {
                "type": "mqtt",
                "name": "meters",
                "broker": broker,
                "topics": [
                    {
                        "filter": "a/{m}",
                        "asset": {"machine": "{m}"},
                        "measurement": "e",
                        "signal": "p",
                    }
                ],
            }
        ],
        "uplink": {"type": "mqtt", "broker": {"port": free_port()}},
        "metrics": {"port": 0},
    }
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_url_as_mqtt_host_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = _config(tmp_path, {"host": "mqtt://127.0.0.1", "port": 1883})
    with pytest.raises(ConfigError) as err:
        load_gateway_config(path)
    assert err.value.key == "sources[0].mqtt.broker.host"
    assert "URL" in str(err.value)


def test_duplicate_yaml_keys_are_refused_naming_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("gateway:\n  id: a\n  id: b\n")
    with pytest.raises(ConfigError) as err:
        load_gateway_config(path)
    assert "duplicate key 'id'" in str(err.value)
    assert err.value.key is not None and err.value.key.startswith("line 3")


def test_ingest_exports_influx_retry_metrics(tmp_path: Path) -> None:
    from ingest.service import IngestService
    from tests.ingest._support import make_config

    service = IngestService(make_config(1883, "http://127.0.0.1:1", "db", tmp_path))
    text = generate_latest(service.metrics.registry).decode()
    for name in (
        "zhizao_ingest_influx_requests_total",
        "zhizao_ingest_influx_retries_total",
        "zhizao_ingest_quarantine_rotated_out_records_total",
    ):
        assert name in text


class AuthMosquitto(MosquittoServer):
    """Mosquitto that requires a user name and password (user ``gw``, password ``right``)."""

    def prepare(self) -> None:
        super().prepare()
        assert self.data_dir is not None
        passwd = self.data_dir / "passwd"
        subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "gw", "right"], check=True)
        passwd.chmod(0o644)
        conf = self.data_dir / "mosquitto.conf"
        text = conf.read_text().replace("allow_anonymous true", "allow_anonymous false")
        conf.write_text(text + f"\npassword_file {passwd}\n")


@pytest.mark.integration
async def test_device_broker_refusing_credentials_is_in_the_status(
    tmp_path: Path, server_factory: Callable[[LocalServer], LocalServer]
) -> None:
    broker = server_factory(AuthMosquitto())
    path = _config(
        tmp_path,
        {
            "port": broker.port,
            "username": "gw",
            "password": "wrong",
            "client_id": f"gw-{uuid.uuid4().hex[:6]}",
            "reconnect_max_s": 1,
        },
    )
    app = GatewayApp(load_gateway_config(path))
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        await wait_for(lambda: bool(app.sources[0].stats.last_error), 30, "last_error set")
        await asyncio.sleep(2.5)
        status = app.snapshot()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    src = status["sources"][0]
    assert not src["connected"]
    assert "refused" in src["last_error"], src
    assert src["connect_failures"] >= 1
