"""The gateway's MQTT connection is the platform's one (``ingest.mqtt``): re-exported here for
the gateway's sources, its uplink and existing imports."""

from __future__ import annotations

from ingest.mqtt import BrokerSettings, IncomingMessage, MqttConnection

__all__ = ["BrokerSettings", "IncomingMessage", "MqttConnection"]
