"""Sparkplug B host application (``SparkplugHost``): births, aliases, sequence, deaths.

State per edge node (group, node): the ``bdSeq`` of its NBIRTH, the last ``seq``, and one alias
map for the node and its devices (aliases are unique per edge node). The rules, from the
Sparkplug 3.0 specification, and what this host does:

* NBIRTH resets the node (aliases, seq, bdSeq); DBIRTH adds a device's metrics. Birth values are
  samples too.
* NDATA/DDATA decode aliases through the births. Data from a node or device without a birth
  (``data_before_birth``), an unknown alias (``unknown_alias``) or a ``seq`` gap (``seq_gap``) is
  counted and answered with a rebirth request: NCMD ``Node Control/Rebirth`` = true, at most once
  per ``_REBIRTH_HOLDOFF_S`` per node. Data that decodes is kept even across a gap.
* NDEATH (only when its ``bdSeq`` matches the birth's; otherwise ``stale_death``) and DDEATH mark
  the node's or device's series: one sample per series with the last value and quality STALE at
  the death time, so a dashboard shows "stale since", and nothing is invented.
* The host publishes its STATE (``spBv1.0/STATE/<host_id>``, retained, with a will) when
  ``host_id`` is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from google.protobuf.message import DecodeError as ProtobufDecodeError

from gateway.configbase import field_type, resolve_asset
from gateway.mqtt_client import IncomingMessage, MqttConnection
from gateway.outbox import OutboxFull
from gateway.sources.base import SampleSink, SourceStats, connection_key, emit_connection
from gateway.sources.sparkplug.config import SparkplugSourceConfig
from zhizao.errors import DecodeError, ValidationError
from zhizao.model import Batch, SeriesKey
from zhizao.quality import Quality
from zhizao.sparkplug import (
    BDSEQ_METRIC,
    INT64_MAX,
    INT64_MIN,
    NAMESPACE,
    REBIRTH_METRIC,
    DataType,
    MessageType,
    SparkplugTopic,
    field_type_of,
    metric_value,
    next_seq,
    pb,
    set_metric_value,
)

__all__ = ["SparkplugHost"]

log = logging.getLogger(__name__)

_REBIRTH_HOLDOFF_S = 5.0  # per node; a storm of bad messages sends one request


def _snake(name: str) -> str:
    out = re.sub(r"[^A-Za-z0-9]+", "_", name)
    out = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", out).lower().strip("_")
    return out if out and out[0].isalpha() else f"m_{out}"


@dataclass(slots=True)
class _Metric:
    name: str
    datatype: int
    device: str | None
    series: int | None  # None: not mapped (unmapped=drop, or a type we do not ingest)
    last_value: Any = None
    refusal: str = ""  # why ``series`` is None when it is not "unmapped" (e.g. type_change)


@dataclass(slots=True)
class _Node:
    bdseq: int | None = None
    seq: int | None = None
    born: bool = False
    devices: set[str] = field(default_factory=set)
    by_alias: dict[int, _Metric] = field(default_factory=dict)
    by_name: dict[tuple[str | None, str], _Metric] = field(default_factory=dict)
    last_rebirth_s: float = 0.0


class SparkplugHost:
    """Sparkplug B host application source."""

    def __init__(
        self,
        config: SparkplugSourceConfig,
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
        self.stats = SourceStats(config.name, "sparkplug")
        self.enterprise, self.site = enterprise, site
        self.nodes: dict[tuple[str, str], _Node] = {}
        self.rebirth_requests = 0
        self.rebirth_holdoff_s = _REBIRTH_HOLDOFF_S
        self._logged: set[str] = set()
        self._mapped = {(m.edge_node, m.device, m.metric): m for m in config.metrics}
        self._conn_series = sink.series_index(
            connection_key(enterprise, site, gateway_id, config.name)
        )
        subs = [(f"{NAMESPACE}/{config.group_id}/#", 1)]
        will = None
        if config.host_id:
            will = (
                f"{NAMESPACE}/STATE/{config.host_id}",
                orjson.dumps({"online": False, "timestamp": int(time.time() * 1000)}),
                1,
                True,
            )
        client_id = config.broker.client_id or f"zhizao-{gateway_id}-{config.name}"
        self.connection = MqttConnection(
            config.broker,
            client_id,
            subscriptions=subs,
            manual_ack=True,
            will=will,
            on_connected=self._announce,
        )
        # samples being assembled for the next emit
        self._series: list[int] = []
        self._ts: list[int] = []
        self._values: list[Any] = []
        self._quality: list[int] = []

    # ------------------------------------------------------------------ run loop

    def _announce(self, conn: MqttConnection) -> None:
        if self.config.host_id:
            conn.publish(
                f"{NAMESPACE}/STATE/{self.config.host_id}",
                orjson.dumps({"online": True, "timestamp": int(time.time() * 1000)}),
                qos=1,
                retain=True,
            )

    async def run(self) -> None:
        queue: asyncio.Queue[IncomingMessage] = asyncio.Queue()
        self.connection.start(asyncio.get_running_loop(), queue)
        was_connected = False
        try:
            while True:
                msgs: list[IncomingMessage] = []
                try:
                    msgs.append(
                        await asyncio.wait_for(queue.get(), timeout=self.config.flush_interval_s)
                    )
                    await asyncio.sleep(self.config.flush_interval_s)
                    while not queue.empty():
                        msgs.append(queue.get_nowait())
                except TimeoutError:
                    pass
                now_connected = self.connection.connected.is_set()
                if self.connection.last_error:  # e.g. the broker refused our credentials
                    self.stats.last_error = self.connection.last_error
                    self.stats.connect_failures = self.connection.failures
                if now_connected != was_connected:
                    self.stats.connected = now_connected
                    self.stats.reconnects = max(0, self.connection.connects - 1)
                    await emit_connection(self.sink, self._conn_series, now_connected)
                    was_connected = now_connected
                if msgs:
                    for msg in msgs:
                        self.handle(msg.topic, msg.payload, msg.arrival_ns)
                    await self._flush()
                    for msg in msgs:
                        self.connection.ack(msg.mid, msg.qos)
        finally:
            self.connection.stop()
            if was_connected:
                with contextlib.suppress(Exception):
                    await emit_connection(self.sink, self._conn_series, False)
            self.stats.connected = False

    async def _flush(self) -> None:
        if not self._series:
            return
        # take the buffers first: whatever happens below, a sample is never flushed twice
        series, ts, values, quality = self._series, self._ts, self._values, self._quality
        self._series, self._ts, self._values, self._quality = [], [], [], []
        vals = np.empty(len(values), dtype=object)
        vals[:] = values
        batch = Batch.build(self.sink.table, series, ts, vals, quality)
        last = max(ts)
        try:
            await self.sink.emit(batch)
        except OutboxFull:
            return
        self.stats.samples += len(batch)
        self.stats.last_sample_ns = last

    # ------------------------------------------------------------------ protocol

    def _count(self, reason: str, detail: str) -> None:
        self.stats.reject(reason)
        if reason not in self._logged:
            self._logged.add(reason)
            log.warning(
                "Sparkplug host %s: %s (%s); further ones are only counted",
                self.name,
                reason,
                detail,
            )

    def handle(self, topic_text: str, payload: bytes, arrival_ns: int) -> None:
        """Process one message (synchronous, no I/O except rebirth requests)."""
        try:
            topic = SparkplugTopic.parse(topic_text)
        except DecodeError as exc:
            self._count(exc.reason, topic_text)
            return
        mtype = topic.message_type
        if mtype in (MessageType.STATE, MessageType.NCMD, MessageType.DCMD):
            return  # other hosts' state and commands (ours included) are not data
        msg = pb.Payload()
        try:
            msg.ParseFromString(payload)
        except ProtobufDecodeError:
            self._count("malformed_payload", topic_text)
            return
        key = (topic.group_id, topic.edge_node_id)
        node = self.nodes.setdefault(key, _Node())
        payload_ts_ns = msg.timestamp * 1_000_000 if msg.HasField("timestamp") else arrival_ns
        if mtype is MessageType.NBIRTH:
            self._nbirth(topic, node, msg, payload_ts_ns)
        elif mtype is MessageType.NDEATH:
            self._ndeath(topic, node, msg, payload_ts_ns)
        elif mtype is MessageType.DBIRTH:
            self._dbirth(topic, node, msg, payload_ts_ns)
        elif mtype is MessageType.DDEATH:
            self._ddeath(topic, node, msg, payload_ts_ns)
        elif mtype in (MessageType.NDATA, MessageType.DDATA):
            self._data(topic, node, msg, payload_ts_ns)

    def _check_seq(self, topic: SparkplugTopic, node: _Node, msg: pb.Payload) -> None:
        if not msg.HasField("seq"):
            return
        seq = int(msg.seq)
        if node.seq is not None and seq != next_seq(node.seq):
            self._count("seq_gap", f"{topic}: expected {next_seq(node.seq)}, got {seq}")
            self._request_rebirth(topic)
        node.seq = seq

    def _nbirth(self, topic: SparkplugTopic, node: _Node, msg: pb.Payload, ts_ns: int) -> None:
        node.by_alias.clear()
        node.by_name.clear()
        node.devices.clear()
        node.born = True
        node.seq = int(msg.seq) if msg.HasField("seq") else None
        node.bdseq = None
        for m in msg.metrics:
            if m.name == BDSEQ_METRIC:
                node.bdseq = int(m.long_value or m.int_value)
        self._register_and_emit(topic, node, None, msg, ts_ns)

    def _dbirth(self, topic: SparkplugTopic, node: _Node, msg: pb.Payload, ts_ns: int) -> None:
        if not node.born:
            self._count("birth_before_node_birth", str(topic))
            self._request_rebirth(topic)
            return
        self._check_seq(topic, node, msg)
        assert topic.device_id is not None
        node.devices.add(topic.device_id)
        self._register_and_emit(topic, node, topic.device_id, msg, ts_ns)

    def _register_and_emit(
        self,
        topic: SparkplugTopic,
        node: _Node,
        device: str | None,
        msg: pb.Payload,
        ts_ns: int,
    ) -> None:
        for m in msg.metrics:
            if not m.name or m.name == BDSEQ_METRIC or m.name.startswith("Node Control/"):
                continue
            try:
                series = self._series_for(topic, device, m)
                refusal = ""
            except ValidationError as exc:
                # a re-birth with another datatype: the series keeps its first type; this
                # metric's samples are refused (counted as type_change) until the node is fixed
                series, refusal = None, exc.reason
                log.warning(
                    "Sparkplug host %s: %s re-births metric %r with another datatype (%s); its "
                    "samples are refused and counted as type_change",
                    self.name,
                    topic,
                    m.name,
                    exc,
                )
            metric = _Metric(m.name, int(m.datatype), device, series, refusal=refusal)
            node.by_name[(device, m.name)] = metric
            if m.HasField("alias"):
                node.by_alias[int(m.alias)] = metric
            self._sample(metric, m, ts_ns)

    def _series_for(
        self, topic: SparkplugTopic, device: str | None, m: pb.Payload.Metric
    ) -> int | None:
        ftype = field_type_of(int(m.datatype))
        mapped = self._mapped.get((topic.edge_node_id, device, m.name))
        if mapped is not None:
            dtype = field_type(mapped.type)
            asset = resolve_asset(mapped.asset, self.enterprise, self.site)
            return self.sink.series_index(
                SeriesKey.make(mapped.measurement, asset.tags(), mapped.signal, dtype)
            )
        if self.config.unmapped == "drop" or ftype is None:
            return None
        spec = self.config.unmapped_asset or {}
        asset = resolve_asset(spec, self.enterprise, self.site)
        tags = {**asset.tags(), "edge_node": topic.edge_node_id, "group": topic.group_id}
        if device is not None:
            tags["device"] = device
        return self.sink.series_index(SeriesKey.make("sparkplug", tags, _snake(m.name), ftype))

    def _sample(self, metric: _Metric, m: pb.Payload.Metric, default_ts_ns: int) -> None:
        if metric.series is None:
            self._count(metric.refusal or "unmapped_metric", metric.name)
            return
        try:
            value = metric_value(m, metric.datatype)
        except DecodeError as exc:
            self._count(exc.reason, f"{metric.name}: {exc}")
            return
        if value is None:
            self._count("null_value", metric.name)
            return
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            # valid Sparkplug (UInt64), but zhizao stores integers as int64: refuse it with a
            # reason rather than store a wrong value
            self._count("int_out_of_range", f"{metric.name}: {value}")
            return
        ts_ns = m.timestamp * 1_000_000 if m.HasField("timestamp") else default_ts_ns
        metric.last_value = value
        self._series.append(metric.series)
        self._ts.append(ts_ns)
        self._values.append(value)
        self._quality.append(Quality.GOOD)

    def _data(self, topic: SparkplugTopic, node: _Node, msg: pb.Payload, ts_ns: int) -> None:
        device = topic.device_id
        if not node.born or (device is not None and device not in node.devices):
            self._count("data_before_birth", str(topic))
            self.stats.reject("data_before_birth_metrics", len(msg.metrics) - 1)
            self._request_rebirth(topic)
            return
        self._check_seq(topic, node, msg)
        for m in msg.metrics:
            metric = (
                node.by_alias.get(int(m.alias))
                if m.HasField("alias") and not m.name
                else node.by_name.get((device, m.name))
            )
            if metric is None or metric.device != device:
                self._count("unknown_alias", f"{topic}: {m.alias or m.name}")
                self._request_rebirth(topic)
                continue
            self._sample(metric, m, ts_ns)

    def _ndeath(self, topic: SparkplugTopic, node: _Node, msg: pb.Payload, ts_ns: int) -> None:
        bdseq = next(
            (int(m.long_value or m.int_value) for m in msg.metrics if m.name == BDSEQ_METRIC), None
        )
        if node.bdseq is not None and bdseq is not None and bdseq != node.bdseq:
            self._count("stale_death", f"{topic}: bdSeq {bdseq}, birth had {node.bdseq}")
            return
        self._stale(node, None, ts_ns)
        node.born = False
        node.devices.clear()
        node.seq = None

    def _ddeath(self, topic: SparkplugTopic, node: _Node, msg: pb.Payload, ts_ns: int) -> None:
        self._check_seq(topic, node, msg)
        assert topic.device_id is not None
        self._stale(node, topic.device_id, ts_ns)
        node.devices.discard(topic.device_id)

    def _stale(self, node: _Node, device: str | None, ts_ns: int) -> None:
        """Last value of every series of the node (device None) or one device, quality STALE."""
        for metric in node.by_name.values():
            if device is not None and metric.device != device:
                continue
            if metric.series is None or metric.last_value is None:
                continue
            self._series.append(metric.series)
            self._ts.append(ts_ns)
            self._values.append(metric.last_value)
            self._quality.append(Quality.STALE)

    def _request_rebirth(self, topic: SparkplugTopic) -> None:
        node = self.nodes.setdefault((topic.group_id, topic.edge_node_id), _Node())
        now = time.monotonic()
        if node.last_rebirth_s and now - node.last_rebirth_s < self.rebirth_holdoff_s:
            return
        node.last_rebirth_s = now
        cmd = pb.Payload()
        cmd.timestamp = int(time.time() * 1000)
        metric = cmd.metrics.add()
        metric.name = REBIRTH_METRIC
        metric.timestamp = cmd.timestamp
        metric.datatype = DataType.Boolean
        set_metric_value(metric, DataType.Boolean, True)
        target = SparkplugTopic(topic.group_id, MessageType.NCMD, topic.edge_node_id)
        self.connection.publish(target.format(), cmd.SerializeToString(), qos=0)
        self.rebirth_requests += 1
