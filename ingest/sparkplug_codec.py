"""Sparkplug B NBIRTH/DBIRTH/NDATA/DDATA into batches, with the birth-certificate alias state.

A birth certificate maps metric aliases to names and datatypes; later DATA messages may carry
only aliases. The state is kept per edge node (NBIRTH) and per device (DBIRTH); a death clears it.
A DATA message from a node or device whose birth this process has not seen cannot be decoded
(reason ``no_birth``); its edge node is listed in ``rebirth_needed`` so the service can ask for a
rebirth (NCMD ``Node Control/Rebirth``), which is what Sparkplug host applications do.

Samples: measurement ``sparkplug`` (configurable), tags ``group``, ``node`` and ``device``
(when a device), field = the metric name; the metric timestamp (ms), else the payload's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from google.protobuf.message import DecodeError as ProtobufDecodeError
from pydantic import Field

from ingest.frames import DecodedFrames, RefusedKeys, sample_dtypes
from zhizao.config import StrictModel
from zhizao.errors import DecodeError
from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable
from zhizao.sparkplug import (
    BDSEQ_METRIC,
    INT64_MAX,
    INT64_MIN,
    NAMESPACE,
    DataType,
    MessageType,
    SparkplugTopic,
    field_type_of,
    metric_value,
    pb,
)

__all__ = ["SPARKPLUG_DECODE_REASONS", "SparkplugCodec", "SparkplugConfig"]

SPARKPLUG_DECODE_REASONS: tuple[str, ...] = (
    "bad_topic",
    "bad_protobuf",
    "no_birth",
    "unknown_alias",
    "type_mismatch",
    "unsupported_datatype",
)

_SKIPPED = {DataType.Bytes, DataType.File, DataType.DataSet, DataType.Template}


def _check_text(msg: pb.Payload, topic: str) -> None:
    """proto2 strings are not UTF-8 checked on parse: protobuf hands out bytes for broken ones."""
    for m in msg.metrics:
        if not isinstance(m.name, str) or (
            m.WhichOneof("value") == "string_value" and not isinstance(m.string_value, str)
        ):
            raise DecodeError(
                "bad_protobuf", "Sparkplug metric name or string is not valid UTF-8", detail=topic
            )


def _bd_seq(msg: pb.Payload) -> int | None:
    for m in msg.metrics:
        if m.name == BDSEQ_METRIC:
            value = metric_value(m, int(m.datatype) or int(DataType.Int64))
            return int(value) if isinstance(value, int) else None
    return None


class SparkplugConfig(StrictModel):
    """Sparkplug B input."""

    group_filter: str = Field("+", description="group id to subscribe to ('+' = all)")
    measurement: str = Field("sparkplug", description="InfluxDB measurement of Sparkplug metrics")


@dataclass
class _Alias:
    name: str
    datatype: int


@dataclass
class _Birth:
    aliases: dict[int, _Alias] = field(default_factory=dict)
    datatypes: dict[str, int] = field(default_factory=dict)  # by name
    bd_seq: int | None = None  # NBIRTH's bdSeq: an NDEATH must carry the same to count


class SparkplugCodec:
    """Decodes Sparkplug B messages in arrival order; keeps birth state between calls."""

    def __init__(self, config: SparkplugConfig, table: SeriesTable) -> None:
        self.config = config
        self.table = table
        self._births: dict[tuple[str, str, str | None], _Birth] = {}
        self._series: dict[tuple[str, str, str | None, str, FieldType], int] = {}
        self.rebirth_needed: set[tuple[str, str]] = set()  # (group, node); the caller clears it
        self.skipped_metrics = 0  # metrics of types not ingested (bytes, datasets, templates)
        self.stale_deaths = 0  # NDEATHs of an older session (bdSeq mismatch), ignored
        self.refused = RefusedKeys()

    def subscriptions(self) -> list[str]:
        g = self.config.group_filter
        return [
            f"{NAMESPACE}/{g}/{t}/#"
            for t in ("NBIRTH", "NDEATH", "DBIRTH", "DDEATH", "NDATA", "DDATA")
        ]

    @staticmethod
    def matches(topic: str) -> bool:
        return topic.startswith(NAMESPACE + "/")

    def _series_of(self, t: SparkplugTopic, name: str, ftype: FieldType) -> int:
        ck = (t.group_id, t.edge_node_id, t.device_id, name, ftype)
        s = self._series.get(ck)
        if s is None:
            tags = {"group": t.group_id, "node": t.edge_node_id}
            if t.device_id is not None:
                tags["device"] = t.device_id
            key = SeriesKey.make(self.config.measurement, tags, name, ftype)
            s = self.refused.series_of(self.table, key)
            self._series[ck] = s
        return s

    def decode_many(
        self, topics: Sequence[str], payloads: Sequence[bytes | bytearray | memoryview]
    ) -> DecodedFrames:
        series: list[int] = []
        ts_ms: list[int] = []
        values: list[object] = []
        frame_of: list[int] = []
        ok: list[int] = []
        errors: list[tuple[int, DecodeError]] = []
        for pos, (topic, payload) in enumerate(zip(topics, payloads, strict=True)):
            try:
                rows = self._decode_one(topic, bytes(payload))
            except DecodeError as exc:
                errors.append((pos, exc))
                continue
            for s, ts, v in rows:
                series.append(s)
                ts_ms.append(ts)
                values.append(v)
                frame_of.append(pos)
            ok.append(pos)
        n = len(series)
        s_arr = np.asarray(series, np.int32)
        dtypes = sample_dtypes(self.table, self.refused.keys, s_arr)
        vals = np.empty(n, object)
        vals[:] = values
        f64 = np.zeros(n)
        i64 = np.zeros(n, np.int64)
        is_f = dtypes == FieldType.FLOAT
        is_i = (dtypes == FieldType.INT) | (dtypes == FieldType.BOOL)
        is_s = dtypes == FieldType.STRING
        if is_f.any():
            f64[is_f] = vals[is_f].astype(np.float64)
        if is_i.any():
            i64[is_i] = vals[is_i].astype(np.int64)
        strs = None
        if is_s.any():
            strs = np.full(n, None, object)
            strs[is_s] = vals[is_s]
        batch = Batch(
            s_arr,
            np.asarray(ts_ms, np.int64) * 1_000_000,
            f64,
            i64,
            np.zeros(n, np.uint8),
            strs,
        )
        return DecodedFrames(
            self.table,
            batch,
            np.asarray(frame_of, np.int64),
            ok,
            [],
            [],
            errors,
            list(self.refused.keys),
        )

    def _decode_one(self, topic: str, payload: bytes) -> list[tuple[int, int, object]]:
        t = SparkplugTopic.parse(topic)
        mtype = t.message_type
        if mtype in (MessageType.STATE, MessageType.NCMD, MessageType.DCMD):
            return []
        msg = pb.Payload()
        try:
            msg.ParseFromString(payload)
        except ProtobufDecodeError as exc:
            raise DecodeError(
                "bad_protobuf", "Sparkplug payload is not a protobuf Payload", detail=str(exc)
            ) from exc
        _check_text(msg, topic)
        node_key = (t.group_id, t.edge_node_id, None)
        own_key = (t.group_id, t.edge_node_id, t.device_id)
        if mtype is MessageType.NDEATH:
            node = self._births.get(node_key)
            death_bd = _bd_seq(msg)
            if node is not None and None not in (node.bd_seq, death_bd) and node.bd_seq != death_bd:
                # the will message of an older session, delivered after the new NBIRTH: stale
                self.stale_deaths += 1
                return []
            for k in [k for k in self._births if k[:2] == node_key[:2]]:
                del self._births[k]
            return []
        if mtype is MessageType.DDEATH:
            self._births.pop(own_key, None)
            return []
        birth: _Birth | None
        if mtype in (MessageType.NBIRTH, MessageType.DBIRTH):
            if mtype is MessageType.NBIRTH:
                # a new node session: every device birth of the old one is void
                for k in [k for k in self._births if k[:2] == node_key[:2]]:
                    del self._births[k]
            birth = _Birth(bd_seq=_bd_seq(msg) if mtype is MessageType.NBIRTH else None)
            for m in msg.metrics:
                if m.HasField("alias"):
                    birth.aliases[int(m.alias)] = _Alias(m.name, int(m.datatype))
                birth.datatypes[m.name] = int(m.datatype)
            self._births[own_key] = birth
        else:
            birth = self._births.get(own_key)
            if birth is None or (t.device_id is not None and node_key not in self._births):
                self.rebirth_needed.add((t.group_id, t.edge_node_id))
                raise DecodeError(
                    "no_birth",
                    "Sparkplug DATA before its birth certificate; rebirth requested",
                    detail=topic,
                )
        payload_ts = int(msg.timestamp) if msg.HasField("timestamp") else None
        rows: list[tuple[int, int, object]] = []
        for m in msg.metrics:
            if m.name:
                name = m.name
                dt = int(m.datatype) if m.HasField("datatype") else birth.datatypes.get(name, 0)
            elif m.HasField("alias"):
                alias = birth.aliases.get(int(m.alias))
                if alias is None:
                    self.rebirth_needed.add((t.group_id, t.edge_node_id))
                    raise DecodeError(
                        "unknown_alias",
                        "Sparkplug metric alias not in the birth certificate",
                        detail=f"{topic}: alias {m.alias}",
                    )
                name, dt = alias.name, alias.datatype
            else:
                raise DecodeError(
                    "unknown_alias", "Sparkplug metric has neither name nor alias", detail=topic
                )
            if name.startswith(("Node Control/", "Device Control/")) or name == "bdSeq":
                continue
            ftype = field_type_of(dt)
            if ftype is None:
                if dt in _SKIPPED:
                    self.skipped_metrics += 1
                    continue
                raise DecodeError(
                    "unsupported_datatype",
                    "Sparkplug metric datatype not supported",
                    detail=f"{name}: {dt}",
                )
            value = metric_value(m, dt)
            if value is None:  # is_null: no sample
                continue
            ts = int(m.timestamp) if m.HasField("timestamp") else payload_ts
            if ts is None:
                raise DecodeError(
                    "bad_protobuf", "Sparkplug metric has no timestamp", detail=f"{topic}: {name}"
                )
            if ftype is FieldType.INT and not INT64_MIN <= int(value) <= INT64_MAX:
                raise DecodeError(
                    "type_mismatch", "Sparkplug UInt64 value does not fit int64", detail=name
                )
            rows.append((self._series_of(t, name, ftype), ts, value))
        return rows
