"""One paho-mqtt 2.x connection shaped for a gateway that runs for months.

* MQTT 5, persistent session (``clean_start`` false + session expiry), so QoS 1 messages wait for
  us at the broker while we are away.
* Bounded reconnect backoff (``reconnect_delay_set(min, max)``, never paho's 120 s / 10 min
  defaults); subscriptions are re-sent on every (re)connect, so a broker restarted without
  persistence still delivers.
* Incoming messages cross from paho's network thread into asyncio through a thread-safe hand-off;
  with ``manual_ack`` the PUBACK is sent only after the samples are stored (``ack``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.config import BrokerConfig

__all__ = ["IncomingMessage", "MqttConnection"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    topic: str
    payload: bytes
    qos: int
    mid: int
    arrival_ns: int


class MqttConnection:
    """A paho client running its own network thread; state readable from any thread."""

    def __init__(
        self,
        broker: BrokerConfig,
        client_id: str,
        *,
        subscriptions: Sequence[tuple[str, int]] = (),
        manual_ack: bool = False,
        receive_maximum: int = 10_000,
        will: tuple[str, bytes, int, bool] | None = None,
        on_connected: Callable[[MqttConnection], None] | None = None,
        max_queued_messages: int = 0,
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self.subscriptions = list(subscriptions)
        self.connected = threading.Event()
        self.connects = 0
        self.disconnects = 0
        self.last_error = ""
        self.failures = 0  # connection attempts the broker refused
        self._on_connected = on_connected
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[IncomingMessage] | None = None
        self._on_publish: Callable[[int], None] | None = None
        c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
        c.reconnect_delay_set(min_delay=broker.reconnect_min_s, max_delay=broker.reconnect_max_s)
        if broker.username is not None:
            c.username_pw_set(
                broker.username,
                broker.password.get_secret_value() if broker.password is not None else None,
            )
        if broker.tls:
            c.tls_set(
                ca_certs=str(broker.ca_file) if broker.ca_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        if will is not None:
            c.will_set(will[0], will[1], qos=will[2], retain=will[3])
        # paho's own outgoing queue (0 = unbounded); the uplink bounds it and gets
        # MQTT_ERR_QUEUE_SIZE back (no exception) when it is full
        c.max_queued_messages_set(max_queued_messages)
        c.on_connect = self._handle_connect
        c.on_disconnect = self._handle_disconnect
        c.on_message = self._handle_message
        c.on_publish = self._handle_publish
        self._receive_maximum = receive_maximum
        self.client = c

    # ------------------------------------------------------------------ life cycle

    def start(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        queue: asyncio.Queue[IncomingMessage] | None = None,
        on_publish: Callable[[int], None] | None = None,
    ) -> None:
        """Connect in the background (retries forever with the configured backoff)."""
        self._loop, self._queue, self._on_publish = loop, queue, on_publish
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.broker.session_expiry_s
        props.ReceiveMaximum = self._receive_maximum
        self.client.connect_async(
            self.broker.host,
            self.broker.port,
            keepalive=self.broker.keepalive_s,
            clean_start=self.broker.clean_start,
            properties=props,
        )
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()

    # ------------------------------------------------------------------ paho callbacks (its thread)

    def _handle_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self.failures += 1
            self.last_error = f"broker refused the connection: {reason_code}"
            log.warning("MQTT %s: %s", self.client_id, self.last_error)
            return
        if self.subscriptions:
            client.subscribe([(t, SubscribeOptions(qos=q)) for t, q in self.subscriptions])
        self.last_error = ""
        self.connects += 1
        self.connected.set()
        if self.connects > 1:
            log.warning(
                "MQTT %s: connected again to %s:%s (session present: %s)",
                self.client_id,
                self.broker.host,
                self.broker.port,
                flags.session_present,
            )
        if self._on_connected is not None:
            self._on_connected(self)

    def _handle_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self.connected.is_set():
            self.disconnects += 1
            log.warning(
                "MQTT %s: lost the broker %s:%s (%s); reconnecting every %s-%ss",
                self.client_id,
                self.broker.host,
                self.broker.port,
                reason_code,
                self.broker.reconnect_min_s,
                self.broker.reconnect_max_s,
            )
        if not (self.last_error.startswith("broker refused") and not self.connected.is_set()):
            self.last_error = f"disconnected: {reason_code}"
        self.connected.clear()

    def _handle_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if self._loop is None or self._queue is None:
            return
        item = IncomingMessage(msg.topic, bytes(msg.payload), msg.qos, msg.mid, time.time_ns())
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _handle_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._on_publish is not None:
            self._on_publish(mid)

    # ------------------------------------------------------------------ actions

    def ack(self, mid: int, qos: int) -> None:
        if qos > 0:
            self.client.ack(mid, qos)

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> tuple[MQTTErrorCode, int]:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc, info.mid
