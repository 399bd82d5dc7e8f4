"""A plain paho publisher/recorder for tests (the devices and the central side)."""

from __future__ import annotations

import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class Publisher:
    """Connects to 127.0.0.1:port, publishes QoS 1 and waits for the PUBACK; records subscriptions."""

    def __init__(self, port: int, *, subscribe: str | None = None, client_id: str = "") -> None:
        self.received: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        connected = threading.Event()

        def on_connect(c: mqtt.Client, u: object, f: object, rc: object, p: object) -> None:
            if subscribe:
                c.subscribe(subscribe, qos=1)
            connected.set()

        def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
            with self._lock:
                self.received.append((msg.topic, bytes(msg.payload)))

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not connected.wait(30):
            raise AssertionError("test publisher could not connect")
        time.sleep(0.2)  # let the SUBACK arrive before anything is published

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout=30)

    def messages(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.received)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
