"""Sparkplug B helpers shared by the simulator, the gateway and ingest.

The payload schema is ``zhizao/sparkplug_b.proto`` (written from the Eclipse Sparkplug 3.0
specification) with its generated module ``zhizao.sparkplug_b_pb2``. This module adds what every
user of it needs and nothing protocol-stateful: topic parsing and formatting, the data type
numbers, and converting a ``Metric``'s value to and from Python (signed integers travel as their
two's-complement bit pattern in the unsigned ``int_value``/``long_value`` fields).

Topics (specification chapter 4)::

    spBv1.0/<group_id>/<NBIRTH|NDEATH|NDATA|NCMD>/<edge_node_id>
    spBv1.0/<group_id>/<DBIRTH|DDEATH|DDATA|DCMD>/<edge_node_id>/<device_id>
    spBv1.0/STATE/<host_id>                      (host application state, 3.0)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from zhizao import sparkplug_b_pb2 as pb
from zhizao.errors import DecodeError
from zhizao.model import FieldType

__all__ = [
    "BDSEQ_METRIC",
    "FLOAT_TYPES",
    "INT64_MAX",
    "INT64_MIN",
    "INT_TYPES",
    "NAMESPACE",
    "REBIRTH_METRIC",
    "STRING_TYPES",
    "DataType",
    "MessageType",
    "MetricValue",
    "SparkplugTopic",
    "field_type_of",
    "metric_value",
    "next_seq",
    "pb",
    "set_metric_value",
]

NAMESPACE = "spBv1.0"
BDSEQ_METRIC = "bdSeq"
REBIRTH_METRIC = "Node Control/Rebirth"

MetricValue = int | float | bool | str | bytes | None


class MessageType(StrEnum):
    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    NDATA = "NDATA"
    NCMD = "NCMD"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    DDATA = "DDATA"
    DCMD = "DCMD"
    STATE = "STATE"

    @property
    def is_device(self) -> bool:
        return self.value.startswith("D")


class DataType(IntEnum):
    """Sparkplug B data type numbers (the ``DataType`` enum of the .proto)."""

    Unknown = 0
    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    UUID = 15
    DataSet = 16
    Bytes = 17
    File = 18
    Template = 19
    PropertySet = 20
    PropertySetList = 21


@dataclass(frozen=True, slots=True)
class SparkplugTopic:
    """A parsed Sparkplug B topic. For ``STATE`` topics ``group_id`` is "" and the host id is
    in ``edge_node_id``."""

    group_id: str
    message_type: MessageType
    edge_node_id: str
    device_id: str | None = None

    def __post_init__(self) -> None:
        for part in (self.group_id, self.edge_node_id, self.device_id or ""):
            if any(c in part for c in "/+#"):
                raise ValueError(f"Sparkplug topic element {part!r} contains '/', '+' or '#'")
        if self.message_type is MessageType.STATE:
            if self.device_id is not None:
                raise ValueError("a STATE topic has no device id")
            return
        if not self.group_id or not self.edge_node_id:
            raise ValueError("a Sparkplug topic needs a group id and an edge node id")
        if self.message_type.is_device != (self.device_id is not None):
            raise ValueError(
                f"{self.message_type} topics {'need' if self.message_type.is_device else 'take no'} "
                "device id"
            )

    @classmethod
    def parse(cls, topic: str) -> SparkplugTopic:
        """Parse ``topic``; raises ``DecodeError(reason="bad_topic")`` if it is not Sparkplug B."""
        parts = topic.split("/")
        try:
            if len(parts) < 3 or parts[0] != NAMESPACE:
                raise ValueError(f"does not start with {NAMESPACE}/")
            if parts[1] == MessageType.STATE and len(parts) == 3:
                return cls("", MessageType.STATE, parts[2])
            if len(parts) not in (4, 5):
                raise ValueError("expected 4 or 5 levels")
            mtype = MessageType(parts[2])
            return cls(parts[1], mtype, parts[3], parts[4] if len(parts) == 5 else None)
        except ValueError as exc:
            raise DecodeError(
                "bad_topic", "not a Sparkplug B topic", detail=f"{topic!r}: {exc}"
            ) from exc

    def format(self) -> str:
        if self.message_type is MessageType.STATE:
            return f"{NAMESPACE}/STATE/{self.edge_node_id}"
        base = f"{NAMESPACE}/{self.group_id}/{self.message_type}/{self.edge_node_id}"
        return f"{base}/{self.device_id}" if self.device_id is not None else base

    def __str__(self) -> str:
        return self.format()


# Sparkplug data types by the zhizao field type their values are stored as
INT_TYPES = frozenset(
    {
        DataType.Int8,
        DataType.Int16,
        DataType.Int32,
        DataType.Int64,
        DataType.UInt8,
        DataType.UInt16,
        DataType.UInt32,
        DataType.UInt64,
        DataType.DateTime,
    }
)
FLOAT_TYPES = frozenset({DataType.Float, DataType.Double})
STRING_TYPES = frozenset({DataType.String, DataType.Text, DataType.UUID})
# zhizao stores integers as int64: a UInt64 above INT64_MAX has no exact representation
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def field_type_of(datatype: int) -> FieldType | None:
    """The zhizao field type a Sparkplug data type is stored as (None: not stored)."""
    try:
        kind = DataType(datatype)
    except ValueError:
        return None
    if kind in INT_TYPES:
        return FieldType.INT
    if kind in FLOAT_TYPES:
        return FieldType.FLOAT
    if kind is DataType.Boolean:
        return FieldType.BOOL
    if kind in STRING_TYPES:
        return FieldType.STRING
    return None


def next_seq(seq: int) -> int:
    """The message sequence number after ``seq`` (0..255, wrapping)."""
    return (seq + 1) % 256


_SIGNED_BITS = {DataType.Int8: 8, DataType.Int16: 16, DataType.Int32: 32, DataType.Int64: 64}
_UNSIGNED_BITS = {DataType.UInt8: 8, DataType.UInt16: 16, DataType.UInt32: 32, DataType.UInt64: 64}
_INT_FIELD = {
    DataType.Int8: "int_value",
    DataType.Int16: "int_value",
    DataType.Int32: "int_value",
    DataType.UInt8: "int_value",
    DataType.UInt16: "int_value",
    DataType.UInt32: "int_value",
    DataType.Int64: "long_value",
    DataType.UInt64: "long_value",
    DataType.DateTime: "long_value",
}
_STRING_TYPES = (DataType.String, DataType.Text, DataType.UUID)


def _signed(raw: int, bits: int) -> int:
    raw &= (1 << bits) - 1
    return raw - (1 << bits) if raw >> (bits - 1) else raw


def _f32(x: float) -> float:
    # float_value is a protobuf float: round-trip it the way the wire does
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def metric_value(metric: pb.Payload.Metric, datatype: int | None = None) -> MetricValue:
    """The Python value of ``metric``.

    ``datatype`` overrides ``metric.datatype`` (DATA messages may omit it: the consumer knows it
    from the birth). Returns None for ``is_null``. Raises ``DecodeError`` for a value that does not
    match its datatype or for types this platform does not ingest (DataSet, Template, arrays).
    """
    dt = int(datatype if datatype is not None else metric.datatype)
    if metric.is_null:
        return None
    field = metric.WhichOneof("value")
    try:
        kind = DataType(dt)
    except ValueError:
        raise DecodeError(
            "unsupported_datatype", "Sparkplug metric has an unsupported datatype", detail=str(dt)
        ) from None
    expected: str | tuple[str, ...]
    if kind in _INT_FIELD:
        expected = (_INT_FIELD[kind], "long_value", "int_value")
    elif kind is DataType.Float:
        expected = ("float_value", "double_value")
    elif kind is DataType.Double:
        expected = ("double_value", "float_value")
    elif kind is DataType.Boolean:
        expected = ("boolean_value",)
    elif kind in _STRING_TYPES:
        expected = ("string_value",)
    elif kind in (DataType.Bytes, DataType.File):
        expected = ("bytes_value",)
    else:
        raise DecodeError(
            "unsupported_datatype",
            "Sparkplug metric has a datatype this platform does not ingest",
            detail=f"{metric.name or metric.alias}: {kind.name}",
        )
    if field not in expected:
        raise DecodeError(
            "type_mismatch",
            "Sparkplug metric value does not match its datatype",
            detail=f"{metric.name or metric.alias}: datatype {kind.name}, value field {field}",
        )
    raw = getattr(metric, field)
    if kind in _SIGNED_BITS:
        return _signed(int(raw), _SIGNED_BITS[kind])
    if kind in _UNSIGNED_BITS:
        return int(raw) & ((1 << _UNSIGNED_BITS[kind]) - 1)
    if kind is DataType.DateTime:
        return int(raw)
    if kind in (DataType.Float, DataType.Double):
        return float(raw)
    if kind is DataType.Boolean:
        return bool(raw)
    if kind in _STRING_TYPES:
        return str(raw)
    return bytes(raw)


def set_metric_value(metric: pb.Payload.Metric, datatype: int, value: MetricValue) -> None:
    """Store ``value`` in ``metric`` as ``datatype`` (sets ``metric.datatype`` too)."""
    kind = DataType(datatype)
    metric.datatype = int(kind)
    if value is None:
        metric.is_null = True
        metric.ClearField("value")
        return
    if kind in _INT_FIELD:
        if isinstance(value, (str, bytes, float)):
            raise TypeError(f"{kind.name} needs an int, got {type(value).__name__}")
        bits = _SIGNED_BITS.get(kind) or _UNSIGNED_BITS.get(kind) or 64
        setattr(metric, _INT_FIELD[kind], int(value) & ((1 << bits) - 1))
    elif kind in (DataType.Float, DataType.Double):
        if isinstance(value, (str, bytes)):
            raise TypeError(f"{kind.name} needs a number, got {type(value).__name__}")
        if kind is DataType.Float:
            metric.float_value = _f32(float(value))
        else:
            metric.double_value = float(value)
    elif kind is DataType.Boolean:
        metric.boolean_value = bool(value)
    elif kind in _STRING_TYPES:
        metric.string_value = str(value)
    elif kind in (DataType.Bytes, DataType.File):
        if not isinstance(value, bytes):
            raise TypeError(f"{kind.name} needs bytes, got {type(value).__name__}")
        metric.bytes_value = value
    else:
        raise ValueError(f"cannot set a value of Sparkplug type {kind.name}")
