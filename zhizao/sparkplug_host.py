"""The one Sparkplug B host state machine and metric-to-series policy (gateway and ingest).

The gateway's Sparkplug source and ingest's Sparkplug codec both adapt this module, so the same
edge node produces the same stored series through either. No I/O, no MQTT, no InfluxDB: the
caller feeds messages in arrival order and takes samples and rebirth requests out.

State per edge node (group, node): the ``bdSeq`` of its NBIRTH, the last ``seq``, and one alias
map for the node and its devices (aliases are unique per edge node). The rules, from the
Sparkplug 3.0 specification:

* NBIRTH resets the node (aliases, seq, bdSeq); DBIRTH adds a device's metrics. Birth values are
  samples too (quality GOOD).
* NDATA/DDATA decode aliases through the births. Data from a node or device without a birth
  (``data_before_birth``), an unknown alias (``unknown_alias``) or a ``seq`` gap (``seq_gap``,
  when ``check_seq``) asks for a rebirth; data that decodes is kept even across a gap.
* NDEATH (only when its ``bdSeq`` matches the birth's; otherwise ``stale_death``) and DDEATH
  restate the last value of each of the node's or device's series with quality STALE at the
  death time, so the quality markers turn the outage into NO_DATA and nothing is invented.
* Rebirth requests: at most one per node per ``rebirth_holdoff_s``, counting the requests other
  hosts were seen to send (``observe_rebirth``). With ``owns`` (N ingest processes on one shared
  subscription share the nodes out) a host sends only for its own nodes and forwards its wish for
  the others to their owner (``want_rebirth`` there), at most once per hold-off too.

Series: a metric listed in the tag map (``SparkplugMetricMap``: edge node, device, metric ->
asset, measurement, signal, type, the same keys as every other source's tag map) goes to its
ISA-95 asset; any other metric, with ``unmapped: auto``, to measurement ``sparkplug`` with the
default asset's tags plus ``group``, ``edge_node`` and ``device``, field = the metric name in
lower_snake; ``unmapped: drop`` counts it instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from google.protobuf.message import DecodeError as ProtobufDecodeError
from pydantic import Field

from zhizao.assets import AssetSpec, resolve_asset
from zhizao.config import StrictModel
from zhizao.errors import DecodeError, ValidationError
from zhizao.model import FieldType, SeriesKey
from zhizao.quality import Quality
from zhizao.schema import SPARKPLUG
from zhizao.sparkplug import (
    BDSEQ_METRIC,
    INT64_MAX,
    INT64_MIN,
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

__all__ = [
    "DEFAULT_REBIRTH_HOLDOFF_S",
    "HostIssue",
    "MetricTarget",
    "RebirthPlan",
    "SparkplugHostState",
    "SparkplugMetricMap",
    "SparkplugSeriesPolicy",
    "is_rebirth_request",
    "issue_counts",
    "rebirth_command",
    "rebirth_target",
    "snake_name",
]

DEFAULT_REBIRTH_HOLDOFF_S = 5.0  # per node; a storm of bad messages sends one request
# metric types a host does not store as samples (no numeric or text value)
_NOT_STORED = frozenset({DataType.Bytes, DataType.File, DataType.DataSet, DataType.Template})
_SIGNAL = r"^[a-z][a-z0-9_]*$"
_MAX_MS = (2**63 - 1) // 1_000_000  # int64 nanoseconds end here


def snake_name(name: str) -> str:
    """A Sparkplug metric name (``Motor/Speed RPM``) as a field name (``motor_speed_rpm``)."""
    out = re.sub(r"[^A-Za-z0-9]+", "_", name)
    out = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", out).lower().strip("_")
    return out if out and out[0].isalpha() else f"m_{out}"


class SparkplugMetricMap(StrictModel):
    """One Sparkplug metric (by name, as in the BIRTH) of one edge node / device, and where its
    samples land (the keys of the gateway's Sparkplug source ``metrics`` list)."""

    edge_node: str
    device: str | None = None
    metric: str
    asset: AssetSpec = Field(
        description="enterprise/site/area/line/cell/machine, or a mapping of levels"
    )
    measurement: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    signal: str = Field(pattern=_SIGNAL, description="field name, unit in the name: power_kw")
    type: Literal["float", "int", "bool", "string"] = "float"
    unit: str | None = Field(default=None, description="informational, e.g. kW, rpm")


class MetricTarget(Protocol):
    """What the policy reads of a tag-map entry (the gateway's and ingest's models both fit)."""

    @property
    def edge_node(self) -> str: ...
    @property
    def device(self) -> str | None: ...
    @property
    def metric(self) -> str: ...
    @property
    def asset(self) -> AssetSpec: ...
    @property
    def measurement(self) -> str: ...
    @property
    def signal(self) -> str: ...
    @property
    def type(self) -> str: ...


class SparkplugSeriesPolicy:
    """Metric -> series key, the same for every host."""

    def __init__(
        self,
        mapped: Mapping[tuple[str, str | None, str], SeriesKey],
        *,
        unmapped: Literal["auto", "drop"] = "auto",
        unmapped_tags: Mapping[str, str] | None = None,
        measurement: str = SPARKPLUG,
    ) -> None:
        self.mapped = dict(mapped)
        self.unmapped = unmapped
        self.unmapped_tags = dict(unmapped_tags or {})
        self.measurement = measurement

    @classmethod
    def from_config(
        cls,
        metrics: Iterable[MetricTarget],
        *,
        unmapped: Literal["auto", "drop"] = "auto",
        unmapped_asset: AssetSpec | None = None,
        enterprise: str | None = None,
        site: str | None = None,
        measurement: str = SPARKPLUG,
    ) -> SparkplugSeriesPolicy:
        """The policy of a tag map; auto-mapped metrics hang under ``unmapped_asset`` (default:
        the enterprise and site, when given)."""
        mapped = {
            (m.edge_node, m.device, m.metric): SeriesKey.make(
                m.measurement,
                resolve_asset(m.asset, enterprise, site).tags(),
                m.signal,
                FieldType.parse(m.type),
            )
            for m in metrics
        }
        tags: dict[str, str] = {}
        if unmapped_asset is not None:
            tags = resolve_asset(unmapped_asset, enterprise, site).tags()
        elif enterprise and site:
            tags = {"enterprise": enterprise, "site": site}
        return cls(mapped, unmapped=unmapped, unmapped_tags=tags, measurement=measurement)

    def key_of(
        self, topic: SparkplugTopic, device: str | None, name: str, datatype: int
    ) -> SeriesKey | None:
        """The series of one metric; None when it is not stored (dropped, or no stored type)."""
        mapped = self.mapped.get((topic.edge_node_id, device, name))
        if mapped is not None:
            return mapped
        ftype = field_type_of(datatype)
        if self.unmapped == "drop" or ftype is None:
            return None
        tags = {**self.unmapped_tags, "edge_node": topic.edge_node_id, "group": topic.group_id}
        if device is not None:
            tags["device"] = device
        return SeriesKey.make(self.measurement, tags, snake_name(name), ftype)


@dataclass(frozen=True, slots=True)
class HostIssue:
    """Something a message could not deliver. ``refuses``: samples it carried are not stored
    (a strict host refuses the whole message for it); otherwise it is only counted."""

    reason: str
    detail: str
    count: int = 1
    refuses: bool = True


@dataclass(slots=True)
class RebirthPlan:
    """Rebirth requests to send, and wishes to forward to the nodes' owners."""

    send: list[tuple[str, str]] = field(default_factory=list)
    forward: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class _Metric:
    name: str
    datatype: int
    device: str | None
    series: int | None  # None: not stored (dropped, a type not stored, or refused)
    last_value: Any = None
    refusal: str = ""  # why ``series`` is None when the policy did map it (e.g. type_change)


@dataclass(slots=True)
class _Node:
    bdseq: int | None = None
    seq: int | None = None
    born: bool = False
    devices: set[str] = field(default_factory=set)
    by_alias: dict[int, _Metric] = field(default_factory=dict)
    by_name: dict[tuple[str | None, str], _Metric] = field(default_factory=dict)
    last_rebirth_s: float | None = None  # sent or seen (monotonic)
    rebirth_wanted: bool = False


def _bdseq(msg: pb.Payload) -> int | None:
    for m in msg.metrics:
        if m.name == BDSEQ_METRIC:
            try:
                value = metric_value(m, int(m.datatype) or int(DataType.Int64))
            except DecodeError:
                return None
            return int(value) if isinstance(value, int) else None
    return None


def _check_text(msg: pb.Payload) -> None:
    """proto2 strings are not UTF-8 checked on parse: protobuf hands out bytes for broken ones."""
    for m in msg.metrics:
        if not isinstance(m.name, str) or (
            m.WhichOneof("value") == "string_value" and not isinstance(m.string_value, str)
        ):
            raise DecodeError("malformed_payload", "Sparkplug metric name or string is not UTF-8")


SeriesOf = Callable[[SeriesKey], int]  # a key's index; raises ValidationError on a type change


class SparkplugHostState:
    """Births, aliases, seq, bdSeq, deaths and rebirth hold-off of every edge node seen.

    ``handle`` decodes one message into the pending sample columns (``take``) and returns what it
    could not deliver. ``strict``: a message with any refusing issue contributes no samples
    (ingest quarantines it whole, so it can be replayed); otherwise the rest of it is kept.
    """

    def __init__(
        self,
        policy: SparkplugSeriesPolicy,
        series_of: SeriesOf,
        *,
        check_seq: bool = True,
        strict: bool = False,
        rebirth_holdoff_s: float = DEFAULT_REBIRTH_HOLDOFF_S,
    ) -> None:
        self.policy = policy
        self.series_of = series_of
        self.check_seq = check_seq
        self.strict = strict
        self.rebirth_holdoff_s = rebirth_holdoff_s
        self.nodes: dict[tuple[str, str], _Node] = {}
        self.series: list[int] = []
        self.ts_ns: list[int] = []
        self.values: list[Any] = []
        self.quality: list[int] = []

    # ------------------------------------------------------------------ samples out
    def take(self) -> tuple[list[int], list[int], list[Any], list[int]]:
        """The samples decoded since the last call (series, ts_ns, value, quality)."""
        out = (self.series, self.ts_ns, self.values, self.quality)
        self.series, self.ts_ns, self.values, self.quality = [], [], [], []
        return out

    # ------------------------------------------------------------------ rebirths
    @property
    def rebirth_wanted(self) -> set[tuple[str, str]]:
        return {k for k, n in self.nodes.items() if n.rebirth_wanted}

    def _want_rebirth(self, topic: SparkplugTopic) -> None:
        self.nodes.setdefault((topic.group_id, topic.edge_node_id), _Node()).rebirth_wanted = True

    def observe_rebirth(self, group: str, node: str, now_s: float) -> None:
        """A rebirth request for ``node`` was seen on the broker (another host's, or ours)."""
        n = self.nodes.setdefault((group, node), _Node())
        n.last_rebirth_s = now_s
        n.rebirth_wanted = False

    def want_rebirth(self, group: str, node: str) -> None:
        """Another process of the group wants a rebirth of ``node``, which this host owns."""
        self.nodes.setdefault((group, node), _Node()).rebirth_wanted = True

    def rebirths_due(
        self, now_s: float, owns: Callable[[str, str], bool] | None = None
    ) -> RebirthPlan:
        """The nodes to ask for a rebirth now (``send``), and those owned by another host of
        the group to tell their owner about (``forward``); either restarts the node's hold-off.
        A node still in its hold-off is forgotten until its next bad message."""
        plan = RebirthPlan()
        for key, n in self.nodes.items():
            if not n.rebirth_wanted:
                continue
            n.rebirth_wanted = False
            if n.last_rebirth_s is not None and now_s - n.last_rebirth_s < self.rebirth_holdoff_s:
                continue
            n.last_rebirth_s = now_s
            (plan.send if owns is None or owns(*key) else plan.forward).append(key)
        return plan

    # ------------------------------------------------------------------ messages in
    def handle(self, topic_text: str, payload: bytes, arrival_ns: int) -> list[HostIssue]:
        """Process one message in arrival order; returns its issues (empty: all delivered)."""
        try:
            topic = SparkplugTopic.parse(topic_text)
        except DecodeError as exc:
            return [HostIssue(exc.reason, f"{topic_text}: {exc.detail or exc}")]
        mtype = topic.message_type
        if mtype in (MessageType.STATE, MessageType.NCMD, MessageType.DCMD):
            return []  # host state and commands are not data
        msg = pb.Payload()
        try:
            msg.ParseFromString(payload)
            _check_text(msg)
        except ProtobufDecodeError:
            return [HostIssue("malformed_payload", f"{topic}: not a Sparkplug B Payload")]
        except DecodeError as exc:
            return [HostIssue(exc.reason, f"{topic}: {exc}")]
        if msg.HasField("timestamp") and msg.timestamp > _MAX_MS:
            return [HostIssue("bad_timestamp", f"{topic}: {msg.timestamp} ms")]
        node = self.nodes.setdefault((topic.group_id, topic.edge_node_id), _Node())
        ts_ns = int(msg.timestamp) * 1_000_000 if msg.HasField("timestamp") else arrival_ns
        rows: list[tuple[_Metric, int, Any, int]] = []
        issues: list[HostIssue] = []
        if mtype is MessageType.NBIRTH:
            self._nbirth(topic, node, msg, ts_ns, rows, issues)
        elif mtype is MessageType.DBIRTH:
            self._dbirth(topic, node, msg, ts_ns, rows, issues)
        elif mtype is MessageType.NDEATH:
            self._ndeath(topic, node, msg, ts_ns, rows, issues)
        elif mtype is MessageType.DDEATH:
            self._ddeath(topic, node, msg, ts_ns, rows, issues)
        else:
            self._data(topic, node, msg, ts_ns, rows, issues)
        if self.strict and any(i.refuses for i in issues):
            return issues
        for metric, ts, value, quality in rows:
            assert metric.series is not None
            self.series.append(metric.series)
            self.ts_ns.append(ts)
            self.values.append(value)
            self.quality.append(quality)
            metric.last_value = value
        return issues

    def _seq(
        self, topic: SparkplugTopic, node: _Node, msg: pb.Payload, issues: list[HostIssue]
    ) -> None:
        if not msg.HasField("seq"):
            return
        seq = int(msg.seq)
        if self.check_seq and node.seq is not None and seq != next_seq(node.seq):
            detail = f"{topic}: expected {next_seq(node.seq)}, got {seq}"
            issues.append(HostIssue("seq_gap", detail, refuses=False))
            self._want_rebirth(topic)
        node.seq = seq

    def _nbirth(
        self,
        topic: SparkplugTopic,
        node: _Node,
        msg: pb.Payload,
        ts_ns: int,
        rows: list[tuple[_Metric, int, Any, int]],
        issues: list[HostIssue],
    ) -> None:
        node.by_alias.clear()
        node.by_name.clear()
        node.devices.clear()
        node.born = True
        node.seq = int(msg.seq) if msg.HasField("seq") else None
        node.bdseq = _bdseq(msg)
        self._register(topic, node, None, msg, ts_ns, rows, issues)

    def _dbirth(
        self,
        topic: SparkplugTopic,
        node: _Node,
        msg: pb.Payload,
        ts_ns: int,
        rows: list[tuple[_Metric, int, Any, int]],
        issues: list[HostIssue],
    ) -> None:
        if not node.born:
            issues.append(HostIssue("birth_before_node_birth", str(topic)))
            self._want_rebirth(topic)
            return
        self._seq(topic, node, msg, issues)
        assert topic.device_id is not None
        node.devices.add(topic.device_id)
        self._register(topic, node, topic.device_id, msg, ts_ns, rows, issues)

    def _register(
        self,
        topic: SparkplugTopic,
        node: _Node,
        device: str | None,
        msg: pb.Payload,
        ts_ns: int,
        rows: list[tuple[_Metric, int, Any, int]],
        issues: list[HostIssue],
    ) -> None:
        for m in msg.metrics:
            if not m.name or m.name == BDSEQ_METRIC or m.name.startswith(_CONTROL):
                continue
            datatype = int(m.datatype)
            key = self.policy.key_of(topic, device, m.name, datatype)
            series, refusal = None, ""
            if key is not None:
                try:
                    series = self.series_of(key)
                except ValidationError as exc:
                    # a re-birth with another datatype: the series keeps its first type; this
                    # metric's samples are refused (type_change) until the node is fixed
                    refusal = exc.reason
            metric = _Metric(m.name, datatype, device, series, refusal=refusal)
            node.by_name[(device, m.name)] = metric
            if m.HasField("alias"):
                node.by_alias[int(m.alias)] = metric
            self._sample(metric, m, ts_ns, rows, issues)

    def _sample(
        self,
        metric: _Metric,
        m: pb.Payload.Metric,
        default_ts_ns: int,
        rows: list[tuple[_Metric, int, Any, int]],
        issues: list[HostIssue],
    ) -> None:
        if metric.series is None:
            if metric.refusal:
                issues.append(HostIssue(metric.refusal, metric.name))
            elif metric.datatype in _NOT_STORED:
                issues.append(HostIssue("not_stored_datatype", metric.name, refuses=False))
            elif field_type_of(metric.datatype) is None:
                detail = f"{metric.name}: datatype {metric.datatype}"
                issues.append(HostIssue("unsupported_datatype", detail))
            else:
                issues.append(HostIssue("unmapped_metric", metric.name, refuses=False))
            return
        try:
            value = metric_value(m, metric.datatype)
        except DecodeError as exc:
            issues.append(HostIssue(exc.reason, f"{metric.name}: {exc}"))
            return
        if value is None:  # is_null: the edge node has no value; nothing is invented
            issues.append(HostIssue("null_value", metric.name, refuses=False))
            return
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            # valid Sparkplug (UInt64), but zhizao stores integers as int64: refuse it with a
            # reason rather than store a wrong value
            issues.append(HostIssue("int_out_of_range", f"{metric.name}: {value}"))
            return
        if m.HasField("timestamp") and m.timestamp > _MAX_MS:
            issues.append(HostIssue("bad_timestamp", f"{metric.name}: {m.timestamp} ms"))
            return
        ts = int(m.timestamp) * 1_000_000 if m.HasField("timestamp") else default_ts_ns
        rows.append((metric, ts, value, Quality.GOOD))

    def _data(
        self,
        topic: SparkplugTopic,
        node: _Node,
        msg: pb.Payload,
        ts_ns: int,
        rows: list[tuple[_Metric, int, Any, int]],
        issues: list[HostIssue],
    ) -> None:
        device = topic.device_id
        if not node.born or (device is not None and device not in node.devices):
            issues.append(HostIssue("data_before_birth", str(topic), count=1))
            if len(msg.metrics) > 1:
                n = len(msg.metrics) - 1
                issues.append(HostIssue("data_before_birth_metrics", str(topic), count=n))
            self._want_rebirth(topic)
            return
        self._seq(topic, node, msg, issues)
        for m in msg.metrics:
            metric = (
                node.by_alias.get(int(m.alias))
                if m.HasField("alias") and not m.name
                else node.by_name.get((device, m.name))
            )
            if metric is None or metric.device != device:
                issues.append(HostIssue("unknown_alias", f"{topic}: {m.alias or m.name}"))
                self._want_rebirth(topic)
                continue
            self._sample(metric, m, ts_ns, rows, issues)

    def _ndeath(
        self,
        topic: SparkplugTopic,
        node: _Node,
        msg: pb.Payload,
        ts_ns: int,
        rows: list[tuple[_Metric, int, Any, int]],
        issues: list[HostIssue],
    ) -> None:
        bdseq = _bdseq(msg)
        if node.bdseq is not None and bdseq is not None and bdseq != node.bdseq:
            # the will message of an older session, delivered after the new NBIRTH
            detail = f"{topic}: bdSeq {bdseq}, birth had {node.bdseq}"
            issues.append(HostIssue("stale_death", detail, refuses=False))
            return
        if node.born:
            self._stale(node, None, ts_ns, rows)
        node.born = False
        node.devices.clear()
        node.seq = None

    def _ddeath(
        self,
        topic: SparkplugTopic,
        node: _Node,
        msg: pb.Payload,
        ts_ns: int,
        rows: list[tuple[_Metric, int, Any, int]],
        issues: list[HostIssue],
    ) -> None:
        self._seq(topic, node, msg, issues)
        assert topic.device_id is not None
        if topic.device_id in node.devices:
            self._stale(node, topic.device_id, ts_ns, rows)
        node.devices.discard(topic.device_id)

    @staticmethod
    def _stale(
        node: _Node, device: str | None, ts_ns: int, rows: list[tuple[_Metric, int, Any, int]]
    ) -> None:
        """Last value of every series of the node (device None: its own and its live devices')
        or of one device, quality STALE (a device already dead was restated at its death)."""
        for metric in node.by_name.values():
            if device is not None and metric.device != device:
                continue
            if device is None and metric.device is not None and metric.device not in node.devices:
                continue
            if metric.series is None or metric.last_value is None:
                continue
            rows.append((metric, ts_ns, metric.last_value, Quality.STALE))


_CONTROL = ("Node Control/", "Device Control/")


def rebirth_target(topic_text: str) -> tuple[str, str] | None:
    """(group, node) of an NCMD topic (a rebirth request, when its payload says so)."""
    parts = topic_text.split("/")
    if len(parts) == 4 and parts[2] == MessageType.NCMD:
        return parts[1], parts[3]
    return None


def is_rebirth_request(payload: bytes) -> bool:
    msg = pb.Payload()
    try:
        msg.ParseFromString(payload)
    except ProtobufDecodeError:
        return False
    return any(m.name == REBIRTH_METRIC and m.boolean_value for m in msg.metrics)


def rebirth_command(group: str, node: str, now_ms: int) -> tuple[str, bytes]:
    """Topic and payload of an NCMD ``Node Control/Rebirth`` = true."""
    cmd = pb.Payload()
    cmd.timestamp = now_ms
    metric = cmd.metrics.add()
    metric.name = REBIRTH_METRIC
    metric.timestamp = now_ms
    set_metric_value(metric, DataType.Boolean, True)
    return SparkplugTopic(group, MessageType.NCMD, node).format(), cmd.SerializeToString()


def issue_counts(issues: Sequence[HostIssue]) -> dict[str, int]:
    """Issues by reason (what a host's statistics count)."""
    out: dict[str, int] = {}
    for i in issues:
        out[i.reason] = out.get(i.reason, 0) + i.count
    return out
