"""The MQTT publisher logs in with the credentials of its URL; a wrong password is refused."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from simulator.clock import SimClock
from simulator.config import SimConfig
from simulator.mqtt_publisher import MqttFactoryPublisher
from simulator.scenario import build_scenario
from zhizao.errors import SourceUnavailable
from zhizao.localstack import LocalServer, MosquittoServer

pytestmark = pytest.mark.integration


def test_credentials_from_the_url(
    tmp_path: Path, server_factory: Callable[[LocalServer], LocalServer]
) -> None:
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwords), "sim", "p@ss:word"], check=True)
    passwords.chmod(0o600)
    # mosquitto started as root drops to its own user unless told to stay (the file is 0600)
    broker = MosquittoServer(
        extra_conf=f"allow_anonymous false\npassword_file {passwords}\nuser root\n"
    )
    server_factory(broker)
    sc = build_scenario(
        SimConfig(machines=1), 1, "2026-11-23T06:00:00+08:00", "2026-11-23T07:00:00+08:00"
    )
    ok = MqttFactoryPublisher(
        sc, SimClock(sc.start_ns), f"mqtt://sim:p%40ss%3Aword@127.0.0.1:{broker.port}"
    )
    ok.start(timeout_s=20)
    try:
        assert ok.births == 1
    finally:
        ok.stop()
    wrong = MqttFactoryPublisher(
        sc, SimClock(sc.start_ns), f"mqtt://sim:guess@127.0.0.1:{broker.port}"
    )
    with pytest.raises(SourceUnavailable, match=r"[Nn]ot authori"):
        wrong.start(timeout_s=30)
    assert wrong.births == 0
