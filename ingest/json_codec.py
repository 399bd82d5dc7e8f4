"""Plain per-tag JSON on ISA-95 topics: ``{"timestamp_ms": .., "value": ..}``, one sample each.

Topic: ``<prefix>/<asset path>/<measurement>/<field>``, the asset path given positionally by
``asset_levels`` (default enterprise/site/area/line/machine; at least enterprise and site). E.g.
``factory/acme/plant-1/press/line-2/m7/energy/power_kw`` -> measurement ``energy``, field
``power_kw``, tags enterprise=acme site=plant-1 area=press line=line-2 machine=m7.

Numbers are FLOAT (JSON does not tell 20 from 20.0 reliably, and a series must keep one type),
``true``/``false`` BOOL, strings STRING. An optional ``quality`` (0 good, 1 uncertain, 2 bad)
is kept. Each message is decoded by a compiled msgspec decoder (no dicts), and the values are
collected into the batch's columns at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec
import numpy as np
from pydantic import Field

from ingest.cache import ByteLRU
from ingest.frames import DecodedFrames, sample_dtypes
from ingest.inputs import InputContext, Settled, Shared, plain_settle
from zhizao.config import StrictModel
from zhizao.errors import DecodeError, ValidationError
from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable

__all__ = ["JSON_DECODE_REASONS", "JsonTagCodec", "JsonTopicConfig"]

JSON_DECODE_REASONS: tuple[str, ...] = ("bad_topic", "bad_json", "bad_value", "type_change")
# int64 nanoseconds end here
_MAX_MS = 2**63 // 10**6
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class JsonTopicConfig(StrictModel):
    """Which topics carry per-tag JSON and how their levels map to an asset path."""

    prefix: str = Field("factory", description="first topic level(s); subscription <prefix>/#")
    asset_levels: list[str] = Field(
        default_factory=lambda: ["enterprise", "site", "area", "line", "machine"],
        description="tag name of each topic level after the prefix (enterprise, site required)",
    )


class _Sample(msgspec.Struct, frozen=True):
    timestamp_ms: int
    value: float | int | bool | str
    quality: int = 0


_decoder = msgspec.json.Decoder(_Sample)


TOPIC_CACHE_BYTES = 16 * 1024 * 1024


class JsonTagCodec:
    """Decodes many per-tag JSON messages into one batch over a shared table."""

    def __init__(self, config: JsonTopicConfig, table: SeriesTable) -> None:
        self.config = config
        self.table = table
        self._prefix = config.prefix.strip("/") + "/"
        # (topic, dtype) -> global series index (or a DecodeError for a bad topic); bounded by
        # bytes (an entry costs its topic and ~300 bytes), so random topics cost no memory
        self._series: ByteLRU[tuple[str, FieldType], int | DecodeError] = ByteLRU(TOPIC_CACHE_BYTES)

    name = "json"

    def subscriptions(self, shared: Shared) -> list[str]:
        return [shared(self._prefix + "#")]

    def admit(self, topic: str, content_type: str | None) -> tuple[str, str] | None:
        return None

    def settle(
        self,
        decoded: DecodedFrames,
        topics: Sequence[str],
        payloads: Sequence[bytes],
        ctx: InputContext,
    ) -> Settled:
        return plain_settle(decoded)

    def matches(self, topic: str) -> bool:
        return topic.startswith(self._prefix)

    def _key(self, topic: str, dtype: FieldType) -> SeriesKey:
        parts = topic[len(self._prefix) :].split("/") if self.matches(topic) else []
        levels = self.config.asset_levels
        if not 4 <= len(parts) <= len(levels) + 2:
            raise DecodeError(
                "bad_topic",
                "per-tag JSON topic does not match <prefix>/<asset path>/<measurement>/<field>",
                detail=f"{topic!r}: {len(parts)} levels after {self._prefix!r}",
            )
        for p in parts:
            if not _NAME.match(p):
                raise DecodeError("bad_topic", "topic level is not a valid name", detail=repr(p))
        tags = dict(zip(levels, parts[:-2], strict=False))
        return SeriesKey.make(parts[-2], tags, parts[-1], dtype)

    def _series_of(self, topic: str, dtype: FieldType) -> int:
        hit = self._series.get((topic, dtype))
        if hit is None:
            try:
                hit = self.table.add(self._key(topic, dtype))
            except DecodeError as exc:
                hit = exc
            except ValidationError as exc:
                # the series is known with another type (a number, then a string): the message
                # is refused whole, and so is every later one of that type (the table keeps it)
                hit = DecodeError(
                    "type_change",
                    "sample type differs from the series' known type",
                    detail=str(exc),
                )
            self._series.put((topic, dtype), hit, len(topic) + 300)
        if isinstance(hit, int):
            return hit
        raise hit

    def decode_many(
        self,
        topics: Sequence[str],
        payloads: Sequence[bytes | bytearray | memoryview],
        now_ns: int | None = None,
    ) -> DecodedFrames:
        n = len(payloads)
        series = np.empty(n, np.int32)
        ts_ms = np.empty(n, np.int64)
        quality = np.empty(n, np.uint8)
        values: list[object] = [None] * n
        ok: list[int] = []
        errors: list[tuple[int, DecodeError]] = []
        k = 0
        for pos, (topic, payload) in enumerate(zip(topics, payloads, strict=True)):
            try:
                sample = _decoder.decode(payload)
            except (msgspec.DecodeError, ValueError) as exc:  # invalid UTF-8 is a ValueError
                errors.append(
                    (pos, DecodeError("bad_json", "message is not per-tag JSON", detail=str(exc)))
                )
                continue
            v = sample.value
            dtype = (
                FieldType.BOOL
                if isinstance(v, bool)
                else FieldType.STRING
                if isinstance(v, str)
                else FieldType.FLOAT
            )
            if not 0 <= sample.quality <= 3 or not -_MAX_MS < sample.timestamp_ms < _MAX_MS:
                errors.append(
                    (
                        pos,
                        DecodeError("bad_value", "timestamp or quality out of range", detail=topic),
                    )
                )
                continue
            try:
                s = self._series_of(topic, dtype)
            except DecodeError as exc:
                errors.append((pos, exc))
                continue
            series[k] = s
            ts_ms[k] = sample.timestamp_ms
            quality[k] = sample.quality
            values[k] = v
            ok.append(pos)
            k += 1
        series, ts_ms, quality = series[:k], ts_ms[:k], quality[:k]
        vals = np.empty(k, object)
        vals[:] = values[:k]
        dtypes = sample_dtypes(self.table, [], series)
        is_s = dtypes == FieldType.STRING
        is_b = dtypes == FieldType.BOOL
        is_f = ~is_s & ~is_b
        f64 = np.zeros(k)
        i64 = np.zeros(k, np.int64)
        if is_f.any():
            f64[is_f] = vals[is_f].astype(np.float64)
        if is_b.any():
            i64[is_b] = vals[is_b].astype(np.int64)
        strs = None
        if is_s.any():
            strs = np.full(k, None, object)
            strs[is_s] = vals[is_s]
        batch = Batch(series, ts_ms * 1_000_000, f64, i64, quality, strs)
        return DecodedFrames(
            table=self.table,
            batch=batch,
            frame_index=np.asarray(ok, np.int64),
            ok=ok,
            gateway_ids=[],
            seqs=[],
            errors=errors,
        )
