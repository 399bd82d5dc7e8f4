"""``MqttConsumer``: ingest's subscription on the platform's one MQTT connection
(``ingest.mqtt.MqttConnection``, the class the gateway's sources and uplink use), MQTT 5, QoS 1
with manual acknowledgement.

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

import threading
from collections.abc import Callable

from ingest.config import MqttConsumerConfig
from ingest.mqtt import IncomingMessage, MqttConnection

__all__ = ["InMessage", "MqttConsumer"]

# one received message, still unacknowledged (the connection's type, under ingest's old name)
InMessage = IncomingMessage


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
        self.connection = MqttConnection(
            config,
            config.client_id,
            subscriptions=[(t, 1) for t in topics] + [(t, 0) for t in self.control_topics],
            manual_ack=True,
            receive_maximum=config.receive_maximum,
            presence=presence,
            on_message=on_message,
        )

    @property
    def connected(self) -> threading.Event:
        return self.connection.connected

    @property
    def subscribed(self) -> threading.Event:
        """Set once the broker acknowledged the subscriptions (messages published from then on
        reach this consumer)."""
        return self.connection.subscribed

    @property
    def connects(self) -> int:
        return self.connection.connects

    @property
    def on_connect_change(self) -> Callable[[bool], None] | None:
        return self.connection.on_connect_change

    @on_connect_change.setter
    def on_connect_change(self, callback: Callable[[bool], None] | None) -> None:
        self.connection.on_connect_change = callback

    def start(self, timeout_s: float = 30.0) -> None:
        """Connect (retrying until ``timeout_s``, then ``SourceUnavailable``) and start the
        network thread."""
        self.connection.start_blocking(timeout_s)

    def ack(self, messages: list[InMessage]) -> None:
        """PUBACK each QoS 1 message (in the order received, as MQTT requires)."""
        self.connection.ack_all(messages)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.connection.publish(topic, payload, qos=qos, retain=retain)

    def stop(self) -> None:
        """Disconnect cleanly; the broker keeps the session (and unacknowledged messages)."""
        self.connection.stop()
