"""``MqttConsumer``: paho-mqtt 2.x, MQTT 5, QoS 1 with manual acknowledgement.

- persistent session (``clean_start=False`` + Session Expiry Interval): messages published while
  ingest is down wait in the broker, and messages received but never acknowledged (ingest killed)
  are delivered again when the same client id reconnects;
- ``manual_ack=True``: paho does not send PUBACK on its own; ``ack`` sends it once the points are
  stored or quarantined;
- Receive Maximum bounds the unacknowledged messages the broker sends at once, so a slow InfluxDB
  stops the flow at the broker instead of growing ingest's memory (backpressure);
- shared subscriptions (``$share/<group>/...``) split the load over N ingest processes.

paho's network thread hands each message to ``on_message`` (a callable that must not block).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.config import MqttConsumerConfig
from zhizao.errors import SourceUnavailable

__all__ = ["InMessage", "MqttConsumer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InMessage:
    """One received MQTT message, still unacknowledged."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_s: float  # time.monotonic()
    content_type: str | None = None


class MqttConsumer:
    """Subscribes, delivers messages to ``on_message``, acknowledges on request."""

    def __init__(
        self,
        config: MqttConsumerConfig,
        topics: list[str],
        on_message: Callable[[InMessage], None],
        *,
        control_topics: list[str] | None = None,
        presence: tuple[str, bytes] | None = None,
    ) -> None:
        """``control_topics`` are subscribed at QoS 0 (nothing to acknowledge, so they never
        wait behind data). ``presence``: a retained (topic, payload) published on every connect
        and cleared on stop, or by the broker through the will when the process dies."""
        self.config = config
        self.topics = topics
        self.control_topics = control_topics or []
        self.presence = presence
        self._on_message = on_message
        self.connected = threading.Event()
        self.connects = 0
        self.on_connect_change: Callable[[bool], None] | None = None
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if config.username is not None:
            c.username_pw_set(
                config.username,
                config.password.get_secret_value() if config.password is not None else None,
            )
        if config.tls:
            c.tls_set(ca_certs=config.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        if presence is not None:
            c.will_set(presence[0], None, qos=1, retain=True)
        c.reconnect_delay_set(min_delay=1, max_delay=max(1, int(config.reconnect_max_s)))
        c.on_connect = self._connected
        c.on_disconnect = self._disconnected
        c.on_message = self._message
        self._client = c
        self._lost_logged = False

    def _connected(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning("MQTT broker refused the connection: %s", reason)
            return
        # the session may already hold the subscriptions; subscribing again is harmless and
        # covers a session that expired while ingest was away
        client.subscribe(
            [(t, SubscribeOptions(qos=1)) for t in self.topics]
            + [(t, SubscribeOptions(qos=0)) for t in self.control_topics]
        )
        if self.presence is not None:
            client.publish(self.presence[0], self.presence[1], qos=1, retain=True)
        self.connects += 1
        if self._lost_logged:
            log.warning("MQTT connection to %s:%d restored", self.config.host, self.config.port)
            self._lost_logged = False
        self.connected.set()
        if self.on_connect_change is not None:
            self.on_connect_change(True)

    def _disconnected(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected.clear()
        if self.on_connect_change is not None:
            self.on_connect_change(False)
        if not self._lost_logged and reason.is_failure:
            log.warning(
                "MQTT connection to %s:%d lost (%s); reconnecting",
                self.config.host,
                self.config.port,
                reason,
            )
            self._lost_logged = True

    def _message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        ctype = getattr(msg.properties, "ContentType", None) if msg.properties else None
        self._on_message(
            InMessage(msg.topic, bytes(msg.payload), msg.mid, msg.qos, time.monotonic(), ctype)
        )

    def start(self, timeout_s: float = 30.0) -> None:
        """Connect (retrying until ``timeout_s``) and start the network thread."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._client.connect(
                    self.config.host,
                    self.config.port,
                    keepalive=self.config.keepalive_s,
                    clean_start=False,
                    properties=props,
                )
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise SourceUnavailable(
                        "cannot reach the MQTT broker",
                        detail=f"{self.config.host}:{self.config.port}: {exc}",
                    ) from exc
                time.sleep(0.5)
        self._client.loop_start()

    def ack(self, messages: list[InMessage]) -> None:
        """PUBACK each QoS 1 message (in the order received, as MQTT requires)."""
        for m in messages:
            if m.qos > 0:
                self._client.ack(m.mid, m.qos)

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        return self._client.publish(topic, payload, qos=qos, retain=retain)

    def stop(self) -> None:
        """Disconnect cleanly; the broker keeps the session (and unacknowledged messages)."""
        if self.presence is not None and self.connected.is_set():
            info = self._client.publish(self.presence[0], None, qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2.0)
        self._client.disconnect()
        self._client.loop_stop()
