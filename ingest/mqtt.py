"""One paho-mqtt 2.x connection for every MQTT client of the platform: the gateway's sources and
uplink, ingest's consumer and ``zhizao ingest quarantine replay``.

* MQTT 5, persistent session (``clean_start`` false + session expiry), so QoS 1 messages wait for
  us at the broker while we are away (``persistent=False`` for a short-lived publisher).
* Bounded reconnect backoff (``reconnect_delay_set(min, max)``, never paho's 120 s / 10 min
  defaults); subscriptions are re-sent on every (re)connect, so a broker restarted without
  persistence (or a session that expired) still delivers.
* Incoming messages leave paho's network thread either through a thread-safe hand-off into an
  asyncio queue (``start(loop, queue)``) or through a callback that must not block
  (``on_message``); with ``manual_ack`` the PUBACK is sent only after the data is stored
  (``ack``).
* ``start`` connects in the background and retries forever (a gateway waits for its broker);
  ``start_blocking`` connects now and raises ``SourceUnavailable`` when the broker cannot be
  reached in time (a service that should say so at start-up).
* ``presence``: a retained message published on every connect, cleared on a clean stop and by
  the broker (the will) when the process dies.

It lives in ``ingest`` because the gateway may import ingest but ``zhizao`` must not import paho
(tests/zhizao/test_import_direction.py); it imports nothing of ingest, so the gateway extra alone
can import it. ``gateway.mqtt_client`` re-exports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import SecretStr

from zhizao.errors import SourceUnavailable

__all__ = ["BrokerSettings", "IncomingMessage", "MqttConnection"]

log = logging.getLogger(__name__)


class BrokerSettings(Protocol):
    """What a connection needs to know about its broker (the gateway's ``BrokerConfig`` and
    ingest's ``MqttConsumerConfig`` both are one)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> SecretStr | None: ...
    @property
    def tls(self) -> bool: ...
    @property
    def ca_file(self) -> str | Path | None: ...
    @property
    def keepalive_s(self) -> int: ...
    @property
    def clean_start(self) -> bool: ...
    @property
    def session_expiry_s(self) -> int: ...
    @property
    def reconnect_min_s(self) -> float: ...
    @property
    def reconnect_max_s(self) -> float: ...


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """One received MQTT message, still unacknowledged."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    arrival_ns: int  # time.time_ns() at arrival (a timestamp for samples without their own)
    received_s: float  # time.monotonic() at arrival (ages and latencies)
    content_type: str | None = None  # MQTT 5 Content Type, when the publisher set one


class MqttConnection:
    """A paho client running its own network thread; state readable from any thread."""

    def __init__(
        self,
        broker: BrokerSettings,
        client_id: str,
        *,
        subscriptions: Sequence[tuple[str, int]] = (),
        manual_ack: bool = False,
        receive_maximum: int = 10_000,
        will: tuple[str, bytes, int, bool] | None = None,
        presence: tuple[str, bytes] | None = None,
        on_connected: Callable[[MqttConnection], None] | None = None,
        on_message: Callable[[IncomingMessage], None] | None = None,
        max_queued_messages: int = 0,
        persistent: bool = True,
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self.subscriptions = list(subscriptions)
        self.presence = presence
        self.persistent = persistent
        self.connected = threading.Event()
        # the broker acknowledged the subscriptions (SUBACK) of the current session
        self.subscribed = threading.Event()
        self.connects = 0
        self.disconnects = 0
        self.last_error = ""
        self.failures = 0  # connection attempts the broker refused
        # called from paho's thread with the new state (True connected, False lost)
        self.on_connect_change: Callable[[bool], None] | None = None
        self._on_connected = on_connected
        self._on_message = on_message
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[IncomingMessage] | None = None
        self._on_publish: Callable[[int], None] | None = None
        c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
        # paho takes whole seconds; never less than one (a broker down is not hammered)
        min_s = max(1, int(broker.reconnect_min_s))
        c.reconnect_delay_set(min_delay=min_s, max_delay=max(min_s, int(broker.reconnect_max_s)))
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
        elif presence is not None:
            c.will_set(presence[0], None, qos=1, retain=True)  # the broker clears it for us
        # paho's own outgoing queue (0 = unbounded); the uplink bounds it and gets
        # MQTT_ERR_QUEUE_SIZE back (no exception) when it is full
        c.max_queued_messages_set(max_queued_messages)
        c.on_connect = self._handle_connect
        c.on_subscribe = self._handle_subscribe
        c.on_disconnect = self._handle_disconnect
        c.on_message = self._handle_message
        c.on_publish = self._handle_publish
        self._receive_maximum = receive_maximum
        self._stopping = False
        self.client = c

    # ------------------------------------------------------------------ life cycle

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.broker.session_expiry_s if self.persistent else 0
        props.ReceiveMaximum = self._receive_maximum
        return props

    @property
    def _clean_start(self) -> bool:
        return self.broker.clean_start or not self.persistent

    def start(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        queue: asyncio.Queue[IncomingMessage] | None = None,
        on_publish: Callable[[int], None] | None = None,
    ) -> None:
        """Connect in the background (retries forever with the configured backoff)."""
        self._loop, self._queue, self._on_publish = loop, queue, on_publish
        self.client.connect_async(
            self.broker.host,
            self.broker.port,
            keepalive=self.broker.keepalive_s,
            clean_start=self._clean_start,
            properties=self._connect_properties(),
        )
        self.client.loop_start()

    def start_blocking(self, timeout_s: float = 30.0) -> None:
        """Connect now, retrying for ``timeout_s``; ``SourceUnavailable`` naming the broker when
        it cannot be reached. Afterwards paho's thread reconnects by itself."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.client.connect(
                    self.broker.host,
                    self.broker.port,
                    keepalive=self.broker.keepalive_s,
                    clean_start=self._clean_start,
                    properties=self._connect_properties(),
                )
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise SourceUnavailable(
                        "cannot reach the MQTT broker",
                        detail=f"{self.broker.host}:{self.broker.port}: {exc}",
                    ) from exc
                time.sleep(0.5)
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect cleanly; a persistent session (and its unacknowledged messages) stays at
        the broker. A presence message is cleared first."""
        if self.presence is not None and self.connected.is_set():
            info = self.client.publish(self.presence[0], None, qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2.0)
        self._stopping = True  # our own disconnect is not a lost broker
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()
        self._stopping = False

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
            self.subscribed.clear()
            client.subscribe([(t, SubscribeOptions(qos=q)) for t, q in self.subscriptions])
        else:
            self.subscribed.set()
        if self.presence is not None:
            client.publish(self.presence[0], self.presence[1], qos=1, retain=True)
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
        if self.on_connect_change is not None:
            self.on_connect_change(True)

    def _handle_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self.subscribed.set()

    def _handle_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self.connected.is_set() and not self._stopping:
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
        if self.on_connect_change is not None:
            self.on_connect_change(False)

    def _handle_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        ctype = getattr(msg.properties, "ContentType", None) if msg.properties else None
        item = IncomingMessage(
            msg.topic,
            bytes(msg.payload),
            msg.qos,
            msg.mid,
            time.time_ns(),
            time.monotonic(),
            ctype,
        )
        if self._on_message is not None:
            self._on_message(item)
        elif self._loop is not None and self._queue is not None:
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

    def ack_all(self, messages: Sequence[IncomingMessage]) -> None:
        """PUBACK each QoS 1 message, in the order received (as MQTT requires)."""
        for m in messages:
            self.ack(m.mid, m.qos)

    def publish(
        self, topic: str, payload: bytes | None, qos: int = 1, retain: bool = False
    ) -> tuple[MQTTErrorCode, int]:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc, info.mid

    def publish_confirmed(
        self, topic: str, payload: bytes, *, qos: int = 1, timeout_s: float = 30.0
    ) -> None:
        """Publish and wait for the broker's acknowledgement; ``SourceUnavailable`` if it does
        not come within ``timeout_s`` (the message may or may not have arrived)."""
        info = self.client.publish(topic, payload, qos=qos)
        try:
            info.wait_for_publish(timeout=timeout_s)
            published = info.is_published()
        except (RuntimeError, ValueError):  # not connected, or paho's queue is full
            published = False
        if not published:
            raise SourceUnavailable(
                "the MQTT broker did not acknowledge a message",
                detail=f"{self.broker.host}:{self.broker.port}, topic {topic}, rc {info.rc}",
            )
