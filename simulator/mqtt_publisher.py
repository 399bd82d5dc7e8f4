"""The MQTT side of the demonstration factory (paho-mqtt 2.x).

Plain JSON per tag on ISA-95 topics (``{"timestamp_ms": .., "value": ..}``): every meter's counter
on its ``mqtt_topic`` and, for electricity meters, the instantaneous power on the sibling topic
``.../power_kw``; published every ``meter_period_s`` of simulated time (aligned to the epoch) and at
the scenario's start and end, so that counter differences over whole periods are exact.

Meters whose topic starts with ``spBv1.0/`` (the compressor) are published by one Sparkplug B
edge node: NBIRTH (bdSeq, ``Node Control/Rebirth``, an uptime metric) and DBIRTH (names, aliases, datatypes, values),
then NDATA and DDATA by alias with ``seq`` 0..255 wrapping, NDEATH as the MQTT will (and before a clean
disconnect). An NCMD ``Node Control/Rebirth`` = true is answered with a new NBIRTH + DBIRTH.
Device data produced while the node is offline (QoS 0 data is dropped by the MQTT client while
disconnected) is held and sent after the next births as DDATA with ``is_historical`` set, as an
edge node with store-and-forward does. With a primary host (``primary_host_id``, Sparkplug 3.0),
the node publishes births and data only while the host's retained ``spBv1.0/STATE/<host>`` says
online, so nothing is sent while the host is away (a broker restart loses neither side's data).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import urllib.parse
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulator.clock import SimClock
from simulator.scenario import Scenario
from zhizao.errors import ConfigError, SourceUnavailable
from zhizao.sparkplug import (
    BDSEQ_METRIC,
    REBIRTH_METRIC,
    DataType,
    MessageType,
    SparkplugTopic,
    metric_value,
    next_seq,
    pb,
    set_metric_value,
)

__all__ = ["MqttFactoryPublisher", "SparkplugMetricSpec", "parse_mqtt_url", "publish_times"]

log = logging.getLogger(__name__)
NS_PER_MS = 1_000_000


def parse_mqtt_url(url: str) -> tuple[str, int]:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("mqtt", "tcp") or not parsed.hostname:
        raise ConfigError(
            f"not an MQTT URL: {url!r}", key="--mqtt-url", expected="mqtt://host:port"
        )
    return parsed.hostname, parsed.port or 1883


def publish_times(sc: Scenario, period_s: float) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Simulated times at which the meters publish: aligned multiples of the period, plus the
    scenario's start and end."""
    period_ns = round(period_s * 1000) * NS_PER_MS
    first = -(-sc.start_ns // period_ns) * period_ns
    aligned = np.arange(first, sc.end_ns + 1, period_ns, dtype=np.int64)
    return np.unique(np.concatenate((aligned, [sc.start_ns, sc.end_ns]))).astype(np.int64)


@dataclass(frozen=True, slots=True)
class SparkplugMetricSpec:
    name: str
    alias: int
    datatype: DataType


SPARKPLUG_METRICS = (
    SparkplugMetricSpec("energy_kwh", 1, DataType.Double),
    SparkplugMetricSpec("power_kw", 2, DataType.Double),
    SparkplugMetricSpec("air_m3", 3, DataType.Double),
    SparkplugMetricSpec("running", 4, DataType.Boolean),
    SparkplugMetricSpec("pressure_bar", 5, DataType.Float),
)


# a node-level metric, so that NDATA carries something: simulated seconds since the start
NODE_METRIC = SparkplugMetricSpec("Node Info/Simulated Uptime s", 100, DataType.Int64)


class MqttFactoryPublisher:
    """Publishes the scenario's meters as plain JSON and one Sparkplug B edge node."""

    def __init__(
        self,
        scenario: Scenario,
        clock: SimClock,
        url: str,
        *,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        qos: int = 1,
        primary_host_id: str | None = None,
    ) -> None:
        self.scenario = scenario
        # Sparkplug 3.0: with a primary host, the node is born (and sends data) only while the
        # host's retained STATE says it is online, and holds its data otherwise
        self.primary_host_id = primary_host_id
        self._host_online = threading.Event()
        if primary_host_id is None:
            self._host_online.set()
        self.clock = clock
        self.host, self.port = parse_mqtt_url(url)
        self.qos = qos
        cfg = scenario.config
        self.group = cfg.sparkplug_group
        self.edge = cfg.sparkplug_edge_node
        self.device = cfg.sparkplug_device
        self.times = publish_times(scenario, cfg.meter_period_s)
        self.messages_published = 0
        self.births = 0
        self.finished = asyncio.Event()
        self._pos = 0
        self._seq = 0
        self._bdseq = 0
        # re-entrant: _on_connect holds it across the births, the backlog and "connected"
        self._lock = threading.RLock()
        # device data produced while offline, sent after the next births as historical data
        # (Sparkplug data is QoS 0, which the MQTT client drops while disconnected)
        self._held: collections.deque[tuple[int, dict[str, Any]]] = collections.deque()
        self.held_max = 1_000_000
        self.historical_published = 0
        self.dropped_offline = 0  # beyond held_max
        self._connected = threading.Event()
        self._answered = threading.Event()  # the broker accepted or refused the connection
        self._refused: str | None = None
        self._last_ts_ns = scenario.start_ns
        self._json_meters = [
            k
            for k, m in enumerate(scenario.meters)
            if m.topic and not m.topic.startswith("spBv1.0/")
        ]
        self._spb_meters = {
            m.signal: k
            for k, m in enumerate(scenario.meters)
            if m.topic and m.topic.startswith("spBv1.0/")
        }
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"zhizao-sim-{self.edge}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        # credentials in the URL (mqtt://user:password@host:port) unless given explicitly
        parsed = urllib.parse.urlparse(url)
        username = username or (urllib.parse.unquote(parsed.username) if parsed.username else None)
        if password is None and parsed.password is not None:
            password = urllib.parse.unquote(parsed.password)
        if username:
            self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self._task: asyncio.Task[None] | None = None

    # --- topics ----------------------------------------------------------------------------------
    def _topic(self, mtype: MessageType, device: bool = False) -> str:
        return SparkplugTopic(
            self.group, mtype, self.edge, self.device if device else None
        ).format()

    # --- life cycle --------------------------------------------------------------------------------
    def start(self, timeout_s: float = 10.0) -> None:
        death = pb.Payload(timestamp=self.clock.now_ns() // NS_PER_MS)
        set_metric_value(death.metrics.add(name=BDSEQ_METRIC), DataType.Int64, self._bdseq)
        self._client.will_set(
            self._topic(MessageType.NDEATH), death.SerializeToString(), qos=1, retain=False
        )
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise SourceUnavailable(
                "cannot connect to the MQTT broker", detail=f"{self.host}:{self.port}: {exc}"
            ) from exc
        self._client.loop_start()
        if not self._answered.wait(timeout_s) or self._refused is not None:
            self._client.disconnect()
            self._client.loop_stop()
            raise SourceUnavailable(
                "MQTT broker did not accept the simulator's connection",
                detail=f"{self.host}:{self.port}: {self._refused or f'no answer in {timeout_s:g}s'}",
            )

    def stop(self) -> None:
        if self._connected.is_set():
            death = pb.Payload(timestamp=self._last_ts_ns // NS_PER_MS)
            set_metric_value(death.metrics.add(name=BDSEQ_METRIC), DataType.Int64, self._bdseq)
            info = self._client.publish(
                self._topic(MessageType.NDEATH), death.SerializeToString(), qos=1
            )
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(5.0)
        self._client.disconnect()
        self._client.loop_stop()

    async def __aenter__(self) -> MqttFactoryPublisher:
        await asyncio.to_thread(self.start)
        self._task = asyncio.create_task(self.run())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self.stop)

    # --- paho callbacks (network thread) ----------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if rc.is_failure:
            self._refused = str(rc)
            self._answered.set()
            return
        client.subscribe(self._topic(MessageType.NCMD), qos=1)
        if self.primary_host_id is not None:
            self._host_online.clear()  # until the host's STATE (retained) says otherwise
            client.subscribe(self._state_topic(), qos=1)
        with self._lock:  # no device data between the births and the backlog
            self._connected.set()
            if self._host_online.is_set():
                self._publish_births()
        self._answered.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        self._connected.clear()

    def _state_topic(self) -> str:
        return f"spBv1.0/STATE/{self.primary_host_id}"

    def _on_host_state(self, payload: bytes | bytearray) -> None:
        try:
            online = bool(orjson.loads(payload).get("online"))
        except (orjson.JSONDecodeError, AttributeError):
            log.warning("ignored an undecodable host STATE on %s", self._state_topic())
            return
        with self._lock:
            if online and not self._host_online.is_set():
                self._host_online.set()
                if self._connected.is_set():
                    self._publish_births()  # and the data held while the host was away
            elif not online:
                self._host_online.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self.primary_host_id is not None and msg.topic == self._state_topic():
            self._on_host_state(msg.payload)
            return
        try:
            payload = pb.Payload.FromString(msg.payload)
        except Exception:  # a foreign payload on our command topic: ignore it, say so once
            log.warning("ignored an undecodable NCMD on %s", msg.topic)
            return
        for metric in payload.metrics:
            if metric.name == REBIRTH_METRIC and metric_value(metric, DataType.Boolean):
                self._publish_births()

    # --- Sparkplug -------------------------------------------------------------------------------
    def _device_values(self, ts_ns: int) -> dict[str, Any]:
        t = np.asarray([ts_ns], dtype=np.int64)
        sc = self.scenario
        out: dict[str, Any] = {}
        if "energy_kwh" in self._spb_meters:
            k = self._spb_meters["energy_kwh"]
            out["energy_kwh"] = float(sc.meter_reading(k, t)[0])
            out["power_kw"] = float(sc.meter_rate(k, t)[0])
        if "air_m3" in self._spb_meters:
            k = self._spb_meters["air_m3"]
            out["air_m3"] = float(sc.meter_reading(k, t)[0])
            running = bool(sc.meter_rate(k, t)[0] > 0)
            out["running"] = running
            out["pressure_bar"] = 7.2 if running else 6.6
        return out

    def _publish_births(self) -> None:
        with self._lock:
            ts_ns = self._last_ts_ns
            ts_ms = ts_ns // NS_PER_MS
            self._seq = 0
            nbirth = pb.Payload(timestamp=ts_ms, seq=self._seq)
            set_metric_value(
                nbirth.metrics.add(name=BDSEQ_METRIC, timestamp=ts_ms), DataType.Int64, self._bdseq
            )
            set_metric_value(
                nbirth.metrics.add(name=REBIRTH_METRIC, timestamp=ts_ms), DataType.Boolean, False
            )
            set_metric_value(
                nbirth.metrics.add(name=NODE_METRIC.name, alias=NODE_METRIC.alias, timestamp=ts_ms),
                NODE_METRIC.datatype,
                self._node_uptime_s(ts_ns),
            )
            self._client.publish(self._topic(MessageType.NBIRTH), nbirth.SerializeToString(), qos=0)
            self._seq = next_seq(self._seq)
            dbirth = pb.Payload(timestamp=ts_ms, seq=self._seq)
            values = self._device_values(ts_ns)
            for spec in SPARKPLUG_METRICS:
                if spec.name in values:
                    m = dbirth.metrics.add(name=spec.name, alias=spec.alias, timestamp=ts_ms)
                    set_metric_value(m, spec.datatype, values[spec.name])
            self._client.publish(
                self._topic(MessageType.DBIRTH, device=True), dbirth.SerializeToString(), qos=0
            )
            self._seq = next_seq(self._seq)
            self.births += 1
            self.messages_published += 2
            self._publish_held()

    def _publish_held(self) -> None:
        """The device data held while offline, oldest first, flagged historical (after a birth,
        so the host knows the aliases). Stops at the first refused publish and keeps the rest."""
        while self._held:
            ts_ns, values = self._held[0]
            if not self._send_ddata(ts_ns, values, historical=True):
                return
            self._held.popleft()
            self.historical_published += 1

    def _send_ddata(self, ts_ns: int, values: dict[str, Any], *, historical: bool) -> bool:
        ts_ms = ts_ns // NS_PER_MS
        payload = pb.Payload(timestamp=ts_ms, seq=self._seq)
        for spec in SPARKPLUG_METRICS:
            if spec.name in values:
                m = payload.metrics.add(alias=spec.alias, timestamp=ts_ms)
                if historical:
                    m.is_historical = True
                set_metric_value(m, spec.datatype, values[spec.name])
        info = self._client.publish(
            self._topic(MessageType.DDATA, device=True), payload.SerializeToString(), qos=0
        )
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        self._seq = next_seq(self._seq)
        self.messages_published += 1
        return True

    def _node_uptime_s(self, ts_ns: int) -> int:
        return (ts_ns - self.scenario.start_ns) // 1_000_000_000

    def _publish_ndata(self, ts_ns: int) -> None:
        ts_ms = ts_ns // NS_PER_MS
        with self._lock:
            if not (self._connected.is_set() and self._host_online.is_set()):
                return  # the node's uptime is not worth holding; the next births carry it
            payload = pb.Payload(timestamp=ts_ms, seq=self._seq)
            m = payload.metrics.add(alias=NODE_METRIC.alias, timestamp=ts_ms)
            set_metric_value(m, NODE_METRIC.datatype, self._node_uptime_s(ts_ns))
            info = self._client.publish(
                self._topic(MessageType.NDATA), payload.SerializeToString(), qos=0
            )
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                self._seq = next_seq(self._seq)
                self.messages_published += 1

    def _publish_ddata(self, ts_ns: int) -> None:
        values = self._device_values(ts_ns)
        if not values:
            return
        with self._lock:
            live = self._connected.is_set() and self._host_online.is_set() and not self._held
            if live and self._send_ddata(ts_ns, values, historical=False):
                return
            # offline (or the client refused it): keep it for the next births
            if len(self._held) >= self.held_max:
                self.dropped_offline += 1
                return
            self._held.append((ts_ns, values))

    # --- plain JSON ------------------------------------------------------------------------------
    def _publish_json(self, ts_ns: int) -> None:
        t = np.asarray([ts_ns], dtype=np.int64)
        ts_ms = ts_ns // NS_PER_MS
        for k in self._json_meters:
            meter = self.scenario.meters[k]
            assert meter.topic is not None
            reading = float(self.scenario.meter_reading(k, t)[0])
            self._client.publish(
                meter.topic, orjson.dumps({"timestamp_ms": ts_ms, "value": reading}), qos=self.qos
            )
            self.messages_published += 1
            if meter.medium == "electricity":
                power = float(self.scenario.meter_rate(k, t)[0])
                topic = meter.topic.rsplit("/", 1)[0] + "/power_kw"
                self._client.publish(
                    topic, orjson.dumps({"timestamp_ms": ts_ms, "value": power}), qos=self.qos
                )
                self.messages_published += 1

    def publish_due(self) -> int:
        """Publish every period boundary the clock has passed; returns how many boundaries."""
        now = min(self.clock.now_ns(), self.scenario.end_ns)
        j = int(np.searchsorted(self.times, now, side="right"))
        n = 0
        for pos in range(self._pos, j):
            ts_ns = int(self.times[pos])
            self._last_ts_ns = ts_ns
            self._publish_json(ts_ns)
            self._publish_ndata(ts_ns)
            self._publish_ddata(ts_ns)
            n += 1
        self._pos = max(self._pos, j)
        return n

    async def run(self, tick_s: float = 0.05) -> None:
        while True:
            self.publish_due()
            if self._pos >= len(self.times):
                self.finished.set()
                return
            await asyncio.sleep(tick_s)
