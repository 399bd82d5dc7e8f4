"""Quarantine: rejected messages and samples, kept with their reason for inspection and replay.

One JSON object per line (JSONL) in a local file, appended and fsync'ed before the MQTT messages
they came from are acknowledged. Two kinds of record:

- ``payload``: a whole message that could not be decoded (or a duplicate frame): topic, reason,
  the raw payload in base64 (replay republishes it to its topic);
- ``samples``: the rejected samples of one message and one reason, columnar, with their series
  keys (replay re-encodes them as a gateway frame, so they pass validation again).

Replayed record ids are appended to ``<file>.replayed`` so ``list`` shows them and a second
replay skips them.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray
from pydantic import Field

from zhizao.config import StrictModel
from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable

__all__ = [
    "QuarantineConfig",
    "QuarantineRecord",
    "QuarantineStore",
    "mark_replayed",
    "read_records",
    "record_frame",
    "replayed_ids",
]


class QuarantineConfig(StrictModel):
    """Where rejected data goes."""

    path: str = Field("ingest-quarantine.jsonl", description="JSONL file, appended")
    dead_letter_topic: str | None = Field(
        None, description="also publish every record (QoS 1) to this MQTT topic"
    )
    max_payload_bytes: int = Field(
        1_048_576, ge=0, description="raw payloads above this are kept truncated (not replayable)"
    )
    fsync: bool = Field(True, description="fsync before acknowledging the messages")


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    """One parsed line of the quarantine file."""

    id: str
    at_ns: int
    reason: str
    message: str
    kind: str  # "payload" | "samples"
    topic: str
    raw: dict[str, Any]

    @property
    def count(self) -> int:
        if self.kind == "samples":
            return len(self.raw["samples"]["ts_ns"])
        return 1

    def payload(self) -> bytes:
        return base64.b64decode(self.raw.get("payload_b64", ""))

    @property
    def replayable(self) -> bool:
        return self.kind == "samples" or not self.raw.get("payload_truncated", False)


def _key_json(key: SeriesKey) -> dict[str, Any]:
    return {
        "measurement": key.measurement,
        "tags": dict(key.tags),
        "field": key.field,
        "dtype": key.dtype.name.lower(),
    }


def _values_json(table: SeriesTable, batch: Batch, idx: NDArray[np.int64]) -> list[Any]:
    """Typed sample values as JSON-ready Python objects (non-finite floats as strings)."""
    sub = batch.take(idx)
    vals = np.empty(len(idx), object)
    s = sub.series
    known = (s >= 0) & (s < len(table))
    dt = np.where(known, table.dtypes[np.where(known, s, 0)], FieldType.FLOAT)
    f = sub.value_f64
    finite = np.isfinite(f)
    fvals = np.where(finite, f, 0.0).astype(object)
    # orjson writes NaN/inf as null; keep them readable and exact as strings
    fvals[~finite] = np.array([repr(float(x)) for x in f[~finite]], object)
    is_f = dt == FieldType.FLOAT
    vals[is_f] = fvals[is_f]
    is_i = (dt == FieldType.INT) | (dt == FieldType.BOOL)
    vals[is_i] = sub.value_i64[is_i].astype(object)
    if sub.value_str is not None:
        is_s = dt == FieldType.STRING
        vals[is_s] = sub.value_str[is_s]
    return vals.tolist()


class QuarantineStore:
    """Appends records to the quarantine file; thread-safe; counts per reason."""

    def __init__(
        self,
        config: QuarantineConfig,
        *,
        publish: Callable[[str, bytes], object] | None = None,
    ) -> None:
        self.config = config
        self.path = Path(config.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 - lives as long as the store
        self._lock = threading.Lock()
        self._publish = publish
        self._seq = 0
        self._prefix = f"{os.getpid():x}-{time.time_ns():x}"
        self.counts: Counter[str] = Counter()  # samples (or messages) per reason
        self.pending = 0  # records written since the last flush

    def set_publisher(self, publish: Callable[[str, bytes], object] | None) -> None:
        self._publish = publish

    def _next_id(self) -> str:
        self._seq += 1
        return f"{self._prefix}-{self._seq}"

    def _write(self, record: dict[str, Any]) -> None:
        line = orjson.dumps(record)
        with self._lock:
            record_id = self._next_id()
            line = b'{"id":"' + record_id.encode() + b'",' + line[1:]
            self._file.write(line + b"\n")
            self.pending += 1
        if self._publish is not None and self.config.dead_letter_topic:
            self._publish(self.config.dead_letter_topic, line)

    def add_payload(self, topic: str, payload: bytes, reason: str, message: str) -> None:
        """A whole message rejected (undecodable, duplicate, unknown topic, too large)."""
        limit = self.config.max_payload_bytes
        truncated = len(payload) > limit
        kept = payload[:limit] if truncated else payload
        self.counts[reason] += 1
        self._write(
            {
                "at_ns": time.time_ns(),
                "reason": reason,
                "message": message,
                "kind": "payload",
                "topic": topic,
                "payload_bytes": len(payload),
                "payload_truncated": truncated,
                "payload_b64": base64.b64encode(kept).decode("ascii"),
            }
        )

    def add_samples(
        self,
        table: SeriesTable,
        batch: Batch,
        idx: NDArray[np.int64],
        reason: str,
        message: str,
        *,
        topic: str = "",
        keys: list[SeriesKey] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Rejected samples ``batch[idx]`` (one reason, usually one message).

        ``keys`` overrides the key per sample position for samples whose ``series`` is -1
        (type changes: the key the message declared, which the table refused).
        """
        if len(idx) == 0:
            return
        s = batch.series[idx]
        if keys is None:
            uniq, local = np.unique(s, return_inverse=True)
            key_list = [
                _key_json(table.keys[i]) if 0 <= i < len(table) else {"series": int(i)}
                for i in uniq.tolist()
            ]
        else:
            local = np.arange(len(idx))
            key_list = [_key_json(k) for k in keys]
        self.counts[reason] += len(idx)
        self._write(
            {
                "at_ns": time.time_ns(),
                "reason": reason,
                "message": message,
                "kind": "samples",
                "topic": topic,
                **(extra or {}),
                "series": key_list,
                "samples": {
                    "series": local.reshape(-1).tolist(),
                    "ts_ns": batch.ts_ns[idx].tolist(),
                    "value": _values_json(table, batch, idx)
                    if keys is None
                    else _values_with_keys(batch, idx, keys),
                    "quality": batch.quality[idx].tolist(),
                },
            }
        )

    def flush(self) -> None:
        """Make every record so far durable (before acknowledging their messages)."""
        with self._lock:
            self._file.flush()
            if self.config.fsync and self.pending:
                os.fsync(self._file.fileno())
            self.pending = 0

    def close(self) -> None:
        self.flush()
        self._file.close()


def _values_with_keys(batch: Batch, idx: NDArray[np.int64], keys: list[SeriesKey]) -> list[Any]:
    table = SeriesTable()
    local = np.array([table.add(k) for k in keys], np.int32) if keys else np.empty(0, np.int32)
    sub = batch.take(idx)
    relabelled = Batch(local, sub.ts_ns, sub.value_f64, sub.value_i64, sub.quality, sub.value_str)
    return _values_json(table, relabelled, np.arange(len(idx)))


def read_records(path: str | Path) -> Iterator[QuarantineRecord]:
    """Every record of a quarantine file (a torn last line from a crash is skipped)."""
    p = Path(path)
    if not p.exists():
        return
    with open(p, "rb") as f:
        for line in f:
            try:
                raw = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            yield QuarantineRecord(
                id=raw["id"],
                at_ns=raw["at_ns"],
                reason=raw["reason"],
                message=raw["message"],
                kind=raw["kind"],
                topic=raw.get("topic", ""),
                raw=raw,
            )


def replayed_ids(path: str | Path) -> set[str]:
    p = Path(str(path) + ".replayed")
    if not p.exists():
        return set()
    return set(p.read_text(encoding="utf-8").split())


def mark_replayed(path: str | Path, ids: list[str]) -> None:
    with open(str(path) + ".replayed", "a", encoding="utf-8") as f:
        f.write("".join(i + "\n" for i in ids))
        f.flush()
        os.fsync(f.fileno())


def record_frame(record: QuarantineRecord) -> tuple[SeriesTable, Batch]:
    """The samples of a ``samples`` record as a table and batch (for replay as a frame)."""
    keys = [
        SeriesKey.make(k["measurement"], k["tags"], k["field"], FieldType.parse(k["dtype"]))
        for k in record.raw["series"]
    ]
    table = SeriesTable()
    local = np.array([table.add(k) for k in keys], np.int32)
    smp = record.raw["samples"]
    values = np.array(
        [
            float(v) if isinstance(v, str) and keys[s].dtype is FieldType.FLOAT else v
            for s, v in zip(smp["series"], smp["value"], strict=True)
        ],
        dtype=object,
    )
    batch = Batch.build(
        table, local[np.asarray(smp["series"], np.int64)], smp["ts_ns"], values, smp["quality"]
    )
    return table, batch
