"""Sparkplug B straight into ingest: ``zhizao.sparkplug_host`` adapted to the input layer.

The host state machine (births, aliases, seq, bdSeq, deaths to STALE, rebirth hold-off) and the
metric-to-series policy are the gateway's: the same edge node stores the same series whether it
reaches InfluxDB through a gateway or directly. What ingest adds: a message that cannot be
delivered whole is quarantined whole (reasons below, so it can be replayed), and the sequence
check is off on a shared subscription (each process sees only its share of the DATA messages).

Samples: a metric in the tag map (``metrics``) goes to its ISA-95 asset; any other one, with
``unmapped: auto``, to measurement ``sparkplug`` (``measurement``) tagged with the default asset
plus ``group``, ``edge_node`` and ``device``, field = the metric name in lower_snake.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field

from ingest.frames import DecodedFrames, sample_dtypes
from ingest.inputs import InputContext, Settled, Shared, plain_settle
from zhizao.assets import AssetSpec
from zhizao.config import StrictModel
from zhizao.errors import DecodeError
from zhizao.model import Batch, FieldType, SeriesTable
from zhizao.schema import SPARKPLUG
from zhizao.sparkplug import NAMESPACE
from zhizao.sparkplug_host import (
    DEFAULT_REBIRTH_HOLDOFF_S,
    HostIssue,
    SparkplugHostState,
    SparkplugMetricMap,
    SparkplugSeriesPolicy,
)

__all__ = ["SPARKPLUG_DECODE_REASONS", "SparkplugCodec", "SparkplugConfig"]

# the host's reasons as ingest's quarantine reasons (one name per cause across inputs)
_REASON = {
    "malformed_payload": "bad_protobuf",
    "data_before_birth": "no_birth",
    "birth_before_node_birth": "no_birth",
    "int_out_of_range": "type_mismatch",
}
SPARKPLUG_DECODE_REASONS: tuple[str, ...] = (
    "bad_topic",
    "bad_protobuf",
    "no_birth",
    "unknown_alias",
    "type_mismatch",
    "unsupported_datatype",
    "type_change",
    "bad_timestamp",
)
_MESSAGES = {
    "bad_topic": "not a Sparkplug B topic",
    "bad_protobuf": "Sparkplug payload is not a protobuf Payload",
    "no_birth": "Sparkplug DATA before its birth certificate; rebirth requested",
    "unknown_alias": "Sparkplug metric alias not in the birth certificate; rebirth requested",
    "type_mismatch": "Sparkplug metric value does not match its datatype or int64",
    "unsupported_datatype": "Sparkplug metric datatype not supported",
    "type_change": "Sparkplug metric re-born with another datatype than its series",
    "bad_timestamp": "Sparkplug timestamp beyond the year 2262 (int64 nanoseconds)",
}


class SparkplugConfig(StrictModel):
    """Sparkplug B input (the tag map has the keys of the gateway's Sparkplug source)."""

    group_filter: str = Field("+", description="group id to subscribe to ('+' = all)")
    enterprise: str | None = Field(None, description="enterprise of auto-mapped metrics")
    site: str | None = Field(None, description="site of auto-mapped metrics")
    metrics: list[SparkplugMetricMap] = Field(
        default_factory=list, description="metric -> ISA-95 asset, measurement, signal, type"
    )
    unmapped: Literal["auto", "drop"] = Field(
        "auto", description="metrics not in `metrics`: 'auto' stores them, 'drop' counts them"
    )
    unmapped_asset: AssetSpec | None = Field(
        None, description="asset of auto-mapped metrics; default enterprise/site"
    )
    measurement: str = Field(SPARKPLUG, description="InfluxDB measurement of auto-mapped metrics")
    rebirth_holdoff_s: float = Field(
        DEFAULT_REBIRTH_HOLDOFF_S, gt=0, description="at most one rebirth request per node per"
    )


class SparkplugCodec:
    """Decodes Sparkplug B messages in arrival order; keeps birth state between calls."""

    def __init__(
        self, config: SparkplugConfig, table: SeriesTable, *, check_seq: bool = False
    ) -> None:
        self.config = config
        self.table = table
        policy = SparkplugSeriesPolicy.from_config(
            config.metrics,
            unmapped=config.unmapped,
            unmapped_asset=config.unmapped_asset,
            enterprise=config.enterprise,
            site=config.site,
            measurement=config.measurement,
        )
        self.host = SparkplugHostState(
            policy,
            table.add,  # a type change raises: the host refuses the metric (type_change)
            check_seq=check_seq,
            strict=True,
            rebirth_holdoff_s=config.rebirth_holdoff_s,
        )
        self.skipped_metrics = 0  # metrics of types not stored (bytes, datasets, templates)
        self.stale_deaths = 0  # NDEATHs of an older session (bdSeq mismatch), ignored
        self.counted: dict[str, int] = {}  # issues that refuse nothing, by reason

    @property
    def rebirth_needed(self) -> set[tuple[str, str]]:
        """(group, node) this codec wants a rebirth of (the service sends them)."""
        return self.host.rebirth_wanted

    name = "sparkplug"

    def subscriptions(self, shared: Shared) -> list[str]:
        g = self.config.group_filter
        # births and deaths carry the alias state every process needs: not shared
        return [f"{NAMESPACE}/{g}/{t}/#" for t in ("NBIRTH", "NDEATH", "DBIRTH", "DDEATH")] + [
            shared(f"{NAMESPACE}/{g}/{t}/#") for t in ("NDATA", "DDATA")
        ]

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

    @staticmethod
    def matches(topic: str) -> bool:
        return topic.startswith(NAMESPACE + "/")

    def _error(self, topic: str, issues: list[HostIssue]) -> DecodeError | None:
        refusing = [i for i in issues if i.refuses]
        for i in issues:
            if not i.refuses:
                self.counted[i.reason] = self.counted.get(i.reason, 0) + i.count
                if i.reason == "stale_death":
                    self.stale_deaths += 1
                elif i.reason == "not_stored_datatype":
                    self.skipped_metrics += i.count
        if not refusing:
            return None
        reason = _REASON.get(refusing[0].reason, refusing[0].reason)
        return DecodeError(reason, _MESSAGES.get(reason, reason), detail=refusing[0].detail)

    def decode_many(
        self,
        topics: Sequence[str],
        payloads: Sequence[bytes | bytearray | memoryview],
        now_ns: int | None = None,
    ) -> DecodedFrames:
        """Decode in arrival order; a message without a timestamp takes ``now_ns``."""
        arrival_ns = time.time_ns() if now_ns is None else now_ns
        frame_of: list[int] = []
        ok: list[int] = []
        errors: list[tuple[int, DecodeError]] = []
        before = 0
        for pos, (topic, payload) in enumerate(zip(topics, payloads, strict=True)):
            err = self._error(topic, self.host.handle(topic, bytes(payload), arrival_ns))
            if err is not None:
                errors.append((pos, err))
                continue
            n = len(self.host.series)
            frame_of += [pos] * (n - before)
            before = n
            ok.append(pos)
        series, ts_ns, values, quality = self.host.take()
        n = len(series)
        s_arr = np.asarray(series, np.int32)
        dtypes = sample_dtypes(self.table, [], s_arr)
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
            np.asarray(ts_ns, np.int64),
            f64,
            i64,
            np.asarray(quality, np.uint8),
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
        )
