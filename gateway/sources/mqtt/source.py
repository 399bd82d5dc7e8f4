"""MQTT source: topic filters with named segments mapped to assets and signals, JSON payloads.

``factory/{area}/{meter}/{signal}`` matches like ``factory/+/+/+`` and names the levels, which the
asset and signal templates use. The payload is JSON; ``value_path`` and ``timestamp_path`` are
dotted paths into it (default ``{"timestamp_ms": .., "value": ..}``).

Messages are acknowledged (PUBACK, manual ack) only after their samples are in the outbox, so a
crash before that means redelivery, never loss. Anything that cannot become a sample is counted
with its reason (``unknown_topic``, ``malformed_json``, ``missing_value``, ``wrong_type``,
``bad_timestamp``, ``bad_asset``), logged once per reason, acknowledged, and the source goes on.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from gateway.configbase import field_type, resolve_asset
from gateway.mqtt_client import IncomingMessage, MqttConnection
from gateway.sources.base import Backoff, SampleSink, SourceStats
from gateway.sources.mqtt.config import MqttSourceConfig, MqttTopicConfig
from gateway.sources.mqtt_session import MqttSession
from gateway.sources.runtime import SourceRuntime
from zhizao.errors import ConfigError, ValidationError
from zhizao.model import Batch, FieldType, SeriesKey

__all__ = ["MqttSource", "TopicMatcher", "coerce_value"]

log = logging.getLogger(__name__)

_TS_SCALE = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
# plausible source timestamps: 2000-01-01 .. 2100-01-01
_TS_MIN_NS, _TS_MAX_NS = 946_684_800 * 10**9, 4_102_444_800 * 10**9


class Rejected(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


def _compile(filter_: str) -> re.Pattern[str]:
    parts = []
    for level in filter_.split("/"):
        if level == "+":
            parts.append("[^/]+")
        elif level == "#":
            parts.append(".*")
        elif level.startswith("{") and level.endswith("}"):
            parts.append(f"(?P<{level[1:-1]}>[^/]+)")
        else:
            parts.append(re.escape(level))
    return re.compile("/".join(parts) + r"\Z")


def _path(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, dict) or part not in doc:
            raise KeyError(dotted)
        doc = doc[part]
    return doc


def coerce_value(value: Any, dtype: FieldType) -> float | int | bool | str:
    """A JSON value as ``dtype``; raises ``Rejected('wrong_type')`` instead of guessing."""
    if dtype == FieldType.FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Rejected("wrong_type", f"expected a number, got {type(value).__name__}")
        if not math.isfinite(value):
            raise Rejected("wrong_type", "not a finite number")
        return float(value)
    if dtype == FieldType.INT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Rejected("wrong_type", f"expected an integer, got {type(value).__name__}")
        if isinstance(value, float) and not value.is_integer():
            raise Rejected("wrong_type", f"expected an integer, got {value}")
        return int(value)
    if dtype == FieldType.BOOL:
        if isinstance(value, bool):
            return value
        if value in (0, 1) and not isinstance(value, float):
            return bool(value)
        raise Rejected("wrong_type", f"expected a boolean, got {value!r}")
    if not isinstance(value, str):
        raise Rejected("wrong_type", f"expected a string, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class _Route:
    series: int
    dtype: FieldType
    topic: MqttTopicConfig


class TopicMatcher:
    """Topic -> (series index, dtype, topic config); series are created on first sight."""

    def __init__(
        self, topics: list[MqttTopicConfig], sink: SampleSink, enterprise: str, site: str
    ) -> None:
        self._rules = [(t, _compile(t.filter)) for t in topics]
        self._sink = sink
        self._enterprise, self._site = enterprise, site
        self._cache: dict[str, _Route] = {}

    def route(self, topic: str) -> _Route:
        hit = self._cache.get(topic)
        if hit is not None:
            return hit
        for cfg, pattern in self._rules:
            m = pattern.match(topic)
            if m is None:
                continue
            names = m.groupdict()
            try:
                asset_spec = (
                    cfg.asset.format(**names)
                    if isinstance(cfg.asset, str)
                    else {k: v.format(**names) for k, v in cfg.asset.items()}
                )
                asset = resolve_asset(asset_spec, self._enterprise, self._site)
                signal = cfg.signal.format(**names)
                if not re.fullmatch(r"[a-z][a-z0-9_]*", signal):
                    raise Rejected("bad_signal", f"signal {signal!r} from topic {topic!r}")
            except ConfigError as exc:
                raise Rejected("bad_asset", f"{topic!r}: {exc}") from exc
            dtype = field_type(cfg.type)
            key = SeriesKey.make(cfg.measurement, asset.tags(), signal, dtype)
            try:
                series = self._sink.series_index(key)
            except ValidationError as exc:  # the series is mapped with another type already
                raise Rejected("type_change", f"{topic!r}: {exc}") from exc
            route = _Route(series, dtype, cfg)
            if len(self._cache) < 100_000:
                self._cache[topic] = route
            return route
        raise Rejected("unknown_topic", topic)


def decode_json_sample(
    payload: bytes, route: _Route, arrival_ns: int
) -> tuple[int, float | int | bool | str]:
    """(ts_ns, value) of one JSON message, or ``Rejected`` with the reason."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise Rejected("malformed_json", str(exc)) from exc
    cfg = route.topic
    try:
        raw = _path(doc, cfg.value_path)
    except KeyError:
        raise Rejected("missing_value", f"no {cfg.value_path!r} in payload") from None
    value = coerce_value(raw, route.dtype)
    if cfg.timestamp_path is None:
        return arrival_ns, value
    try:
        ts = _path(doc, cfg.timestamp_path)
    except KeyError:
        raise Rejected("bad_timestamp", f"no {cfg.timestamp_path!r} in payload") from None
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise Rejected("bad_timestamp", f"{ts!r} is not a number")
    ts_ns = round(ts * _TS_SCALE[cfg.timestamp_unit])
    if not _TS_MIN_NS <= ts_ns <= _TS_MAX_NS:
        raise Rejected("bad_timestamp", f"{ts!r} {cfg.timestamp_unit} is out of range")
    return ts_ns, value


class MqttSource(MqttSession):
    """JSON-per-tag MQTT source (UMH-style ``{"timestamp_ms", "value"}`` and configurable paths)."""

    def __init__(
        self,
        config: MqttSourceConfig,
        sink: SampleSink,
        *,
        enterprise: str,
        site: str,
        gateway_id: str,
        state_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.sink = sink
        self.stats = SourceStats(config.name, "mqtt")
        self.matcher = TopicMatcher(config.topics, sink, enterprise, site)
        self.runtime = SourceRuntime(
            self.stats, sink, log, enterprise=enterprise, site=site, gateway_id=gateway_id
        )
        client_id = config.broker.client_id or f"zhizao-{gateway_id}-{config.name}"
        self.connection = MqttConnection(
            config.broker,
            client_id,
            subscriptions=[(t.subscription, t.qos) for t in config.topics],
            manual_ack=True,
        )
        self._backoff = Backoff(config.broker.reconnect_min_s, config.broker.reconnect_max_s)
        self._logged_reasons: set[str] = set()
        self._was_connected = False
        self.sessions = 0

    def _reject(self, exc: Rejected) -> None:
        self.stats.reject(exc.reason)
        if exc.reason not in self._logged_reasons:
            self._logged_reasons.add(exc.reason)
            log.warning(
                "MQTT source %s: message not used (%s: %s); further ones with this reason are "
                "only counted",
                self.name,
                exc.reason,
                exc.detail,
            )

    async def _process(self, msgs: list[IncomingMessage]) -> None:
        series: list[int] = []
        ts: list[int] = []
        values: list[Any] = []
        for msg in msgs:
            try:
                route = self.matcher.route(msg.topic)
                t, v = decode_json_sample(msg.payload, route, msg.arrival_ns)
            except Rejected as exc:
                self._reject(exc)
                continue
            series.append(route.series)
            ts.append(t)
            values.append(v)
        if series:
            vals = np.empty(len(values), dtype=object)
            vals[:] = values
            batch = Batch.build(self.sink.table, series, ts, vals)
            # stored, or refused by the outbox and counted by reason (outbox_full, disk_full):
            # either way the broker gets its PUBACK (the drop policy decided)
            await self.runtime.emit(batch)
        # stored (or rejected with a reason): only now may the broker forget them
        for msg in msgs:
            self.connection.ack(msg.mid, msg.qos)
