"""MQTT source, JSON per tag: see ``source`` for the design.

``config`` (the model), ``source`` (the code), ``sample.yaml`` (a commented ``sources:`` entry).
The package imports nothing eagerly: reading a configuration must not load the protocol
stack, and ``gateway.config`` imports ``config`` while the source code imports ``gateway.config``.
Names of ``source`` are still reachable as ``gateway.sources.mqtt.<name>`` (loaded on first use).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.sources.mqtt.source import MqttSource, TopicMatcher, coerce_value

__all__ = ["MqttSource", "TopicMatcher", "coerce_value"]


def __getattr__(name: str) -> Any:
    return getattr(importlib.import_module(f"{__name__}.source"), name)
