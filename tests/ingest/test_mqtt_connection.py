"""The platform's one MQTT connection (``ingest.mqtt.MqttConnection``): the gateway's sources and
uplink, ingest's consumer and the quarantine replay all run on it, none builds its own paho
client; what ingest needs of it (a start that fails in one sentence, presence, the callback
hand-off, ordered acknowledgements) against a real Mosquitto."""

from __future__ import annotations

import re
import threading
import uuid
from pathlib import Path

import pytest

from gateway import mqtt_client
from ingest.config import MqttConsumerConfig
from ingest.consumer import MqttConsumer
from ingest.mqtt import IncomingMessage, MqttConnection
from tests.gateway.mqtt_helpers import Publisher
from tests.ingest._support import wait_until
from zhizao.errors import SourceUnavailable
from zhizao.localstack import MosquittoServer, free_port

ROOT = Path(__file__).resolve().parents[2]
CLIENT_CALL = re.compile(r"\bmqtt\.Client\(|\bClient\(\s*(callback_api_version|CallbackAPIVersion)")


def test_only_the_shared_connection_builds_a_paho_client() -> None:
    builders = sorted(
        str(path.relative_to(ROOT))
        for package in ("gateway", "ingest", "zhizao", "analytics", "api")
        for path in (ROOT / package).rglob("*.py")
        if CLIENT_CALL.search(path.read_text(encoding="utf-8"))
    )
    assert builders == ["ingest/mqtt.py"]
    assert mqtt_client.MqttConnection is MqttConnection  # the gateway's name is the same class


def test_a_broker_that_cannot_be_reached_is_one_sentence_naming_it() -> None:
    port = free_port()  # nothing listens there
    config = MqttConsumerConfig.model_validate({"port": port, "client_id": "unreachable"})
    consumer = MqttConsumer(config, ["x/#"], lambda m: None)
    with pytest.raises(SourceUnavailable, match=f"cannot reach the MQTT broker.*127.0.0.1:{port}"):
        consumer.start(timeout_s=0.2)


@pytest.mark.integration
def test_consumer_presence_callback_and_ordered_acks(mosquitto: MosquittoServer) -> None:
    client_id = f"conn-{uuid.uuid4().hex[:8]}"
    config = MqttConsumerConfig.model_validate({"port": mosquitto.port, "client_id": client_id})
    got: list[IncomingMessage] = []
    lock = threading.Lock()

    def on_message(msg: IncomingMessage) -> None:  # paho's thread: must not block
        with lock:
            got.append(msg)

    presence = f"test/presence/{client_id}"
    watcher = Publisher(mosquitto.port, subscribe=presence)
    changes: list[bool] = []
    consumer = MqttConsumer(config, [f"test/{client_id}/#"], on_message, presence=(presence, b"1"))
    consumer.on_connect_change = changes.append
    consumer.start(timeout_s=10)
    pub = Publisher(mosquitto.port)
    try:
        wait_until(lambda: consumer.connected.is_set(), 10, "connected")
        wait_until(lambda: (presence, b"1") in watcher.messages(), 10, "presence published")
        for i in range(3):
            pub.publish(f"test/{client_id}/m", str(i).encode())
        wait_until(lambda: len(got) == 3, 10, "3 messages through the callback")
        assert [m.payload for m in got] == [b"0", b"1", b"2"]
        assert all(m.qos == 1 and m.arrival_ns > 0 and m.received_s > 0 for m in got)
        consumer.ack(got)
    finally:
        consumer.stop()
        pub.close()
    # a clean stop clears the retained presence (an empty retained message)
    wait_until(lambda: (presence, b"") in watcher.messages(), 10, "presence cleared")
    watcher.close()
    assert changes[0] is True
    # the acknowledged messages are not delivered again to the same session
    again: list[IncomingMessage] = []
    second = MqttConsumer(config, [f"test/{client_id}/#"], again.append)
    second.start(timeout_s=10)
    try:
        wait_until(lambda: second.connected.is_set(), 10, "reconnected")
        probe = Publisher(mosquitto.port)
        probe.publish(f"test/{client_id}/m", b"after")
        probe.close()
        wait_until(lambda: len(again) >= 1, 10, "the next message")
        assert [m.payload for m in again] == [b"after"]
    finally:
        second.stop()


@pytest.mark.integration
def test_publish_confirmed_raises_when_the_broker_does_not_acknowledge(
    mosquitto: MosquittoServer,
) -> None:
    config = MqttConsumerConfig.model_validate(
        {"port": mosquitto.port, "client_id": f"confirm-{uuid.uuid4().hex[:8]}"}
    )
    conn = MqttConnection(config, config.client_id, persistent=False)
    conn.start_blocking(timeout_s=10)
    try:
        wait_until(lambda: conn.connected.is_set(), 10, "connected")
        conn.publish_confirmed("test/confirmed", b"x", timeout_s=10)
    finally:
        conn.stop()
    # stopped: nothing can be acknowledged any more
    with pytest.raises(SourceUnavailable, match="did not acknowledge"):
        conn.publish_confirmed("test/confirmed", b"y", timeout_s=0.5)
