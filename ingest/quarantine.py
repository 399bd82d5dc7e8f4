"""Quarantine: rejected messages and samples, kept with their reason for inspection and replay.

One JSON object per line (JSONL) in a local file, appended and fsync'ed before the MQTT messages
they came from are acknowledged. Two kinds of record:

- ``payload``: a whole message that could not be decoded (or a duplicate frame): topic, reason,
  the raw payload in base64 (replay republishes it to its topic);
- ``samples``: the rejected samples of one message and one reason, columnar, with their series
  keys (replay re-encodes them as a gateway frame, so they pass validation again).

Replayed record ids are appended to ``<file>.replayed`` so ``list`` shows them and a second
replay skips them.

Bounded and rotated: when the file passes ``max_file_bytes``, or its oldest record is older than
``max_file_age_s``, it becomes ``<file>.1`` (the older ones move up to ``<file>.<max_files - 1>``,
and the oldest is deleted: its records are counted in ``rotated_out`` and logged), so the
quarantine never holds more than about ``max_file_bytes * max_files`` bytes, nor records much
older than ``max_file_age_s * max_files`` while new ones arrive. ``total_bytes`` (the
``zhizao_ingest_quarantine_bytes`` gauge) is what it holds on disk. ``read_records`` reads the rotated files too, oldest
first. Files are created 0600 (they hold plant data).

Records wait in memory until ``flush``, which writes them with plain ``os.write`` calls and
fsyncs. If the file system refuses (a full disk), the file is cut back to its last whole
record, the records stay pending and ``flush`` raises ``OSError``; the service then holds the
acknowledgements and tries again (nothing is acknowledged that is not durable).
"""

from __future__ import annotations

import base64
import contextlib
import logging
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
    "quarantine_files",
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
    max_file_bytes: int = Field(
        64 * 1024 * 1024, ge=4096, description="rotate the file when it grows past this"
    )
    max_file_age_s: float = Field(
        86400.0,
        ge=0,
        description="rotate the file when its oldest record is older than this (0 = never)",
    )
    max_files: int = Field(
        8, ge=1, description="files kept (the current one and rotated ones); oldest deleted"
    )


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


log = logging.getLogger(__name__)


def _rotated(path: Path, i: int) -> Path:
    return path if i == 0 else path.with_name(f"{path.name}.{i}")


def quarantine_files(path: str | Path) -> list[Path]:
    """The quarantine's files that exist, oldest first (rotated ones, then the current one)."""
    p = Path(path)
    out: list[Path] = []
    i = 1
    while _rotated(p, i).exists():
        out.append(_rotated(p, i))
        i += 1
    out.reverse()
    if p.exists():
        out.append(p)
    return out


def _first_record_ns(path: Path) -> int | None:
    """``at_ns`` of a file's first record (None: empty or unreadable)."""
    try:
        with path.open("rb") as f:
            return int(orjson.loads(f.readline())["at_ns"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _open_private(path: Path) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    if os.fstat(fd).st_mode & 0o077:
        os.fchmod(fd, 0o600)
    return fd


class QuarantineStore:
    """Appends records to the quarantine file; thread-safe; counts per reason."""

    def __init__(
        self,
        config: QuarantineConfig,
        *,
        publish: Callable[[str, bytes], object] | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config
        self.path = Path(config.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock_ns = clock_ns
        self._fd = _open_private(self.path)
        self._size = os.fstat(self._fd).st_size
        # time of the current file's oldest record (None: empty), for rotation by age
        self._oldest_ns = _first_record_ns(self.path) if self._size else None
        self._buffer: list[bytes] = []  # records not yet written (see flush)
        self._lock = threading.Lock()
        self.rotated_out = 0  # records deleted with the oldest rotated file
        self.write_errors = 0
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
            self._buffer.append(line + b"\n")
            self.pending += 1
        if self._publish is not None and self.config.dead_letter_topic:
            self._publish(self.config.dead_letter_topic, line)

    def add_payload(
        self, topic: str, payload: bytes, reason: str, message: str, *, keep_payload: bool = True
    ) -> None:
        """A whole message rejected (undecodable, duplicate, unknown topic, too large).

        ``keep_payload=False`` records the message without its bytes (a duplicate of something
        already stored: the count and the reason matter, the bytes are in InfluxDB)."""
        limit = self.config.max_payload_bytes if keep_payload else 0
        truncated = len(payload) > limit
        kept = payload[:limit] if truncated else payload
        self.counts[reason] += 1
        self._write(
            {
                "at_ns": self._clock_ns(),
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
                "at_ns": self._clock_ns(),
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
        """Make every record so far durable (before acknowledging their messages).

        Raises ``OSError`` when the file system refuses; the records stay pending (and the file
        ends with whole records), so a later ``flush`` retries them."""
        with self._lock:
            if not self._buffer:
                self.pending = 0
                return
            data = b"".join(self._buffer)
            age_s = self.config.max_file_age_s
            if (
                age_s
                and self._oldest_ns is not None
                and self._clock_ns() - self._oldest_ns >= age_s * 1e9
            ):
                self._rotate()
            start = self._size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
                if self.config.fsync:
                    os.fsync(self._fd)
            except OSError:
                self.write_errors += 1
                # never leave a torn record behind: cut the file back to what was whole
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, start)
                raise
            self._size = start + len(data)
            if self._oldest_ns is None:
                self._oldest_ns = _first_record_ns(self.path) or self._clock_ns()
            self._buffer.clear()
            self.pending = 0
            if self._size >= self.config.max_file_bytes:
                self._rotate()

    def _rotate(self) -> None:
        """The current file becomes ``.1``; the oldest beyond ``max_files`` is deleted."""
        keep = self.config.max_files
        oldest = _rotated(self.path, keep - 1) if keep > 1 else self.path
        if keep == 1:
            lost = sum(1 for _ in read_records_of(self.path))
        else:
            lost = sum(1 for _ in read_records_of(oldest)) if oldest.exists() else 0
        os.close(self._fd)
        if keep == 1:
            self.path.unlink(missing_ok=True)
        else:
            oldest.unlink(missing_ok=True)
            for i in range(keep - 2, -1, -1):
                src = _rotated(self.path, i)
                if src.exists():
                    os.replace(src, _rotated(self.path, i + 1))
        if lost:
            self.rotated_out += lost
            log.warning(
                "quarantine: the oldest file (%d records) was deleted to keep %d files of %d "
                "bytes (quarantine.max_files, max_file_bytes)",
                lost,
                keep,
                self.config.max_file_bytes,
            )
        self._fd = _open_private(self.path)
        self._size = 0
        self._oldest_ns = None

    @property
    def total_bytes(self) -> int:
        """Bytes the quarantine holds on disk (the current file and the rotated ones)."""
        total = 0
        for f in quarantine_files(self.path):
            with contextlib.suppress(OSError):
                total += f.stat().st_size
        return total

    def close(self) -> None:
        try:
            self.flush()
        finally:
            os.close(self._fd)


def _values_with_keys(batch: Batch, idx: NDArray[np.int64], keys: list[SeriesKey]) -> list[Any]:
    table = SeriesTable()
    local = np.array([table.add(k) for k in keys], np.int32) if keys else np.empty(0, np.int32)
    sub = batch.take(idx)
    relabelled = Batch(local, sub.ts_ns, sub.value_f64, sub.value_i64, sub.quality, sub.value_str)
    return _values_json(table, relabelled, np.arange(len(idx)))


def read_records(path: str | Path) -> Iterator[QuarantineRecord]:
    """Every record of the quarantine (rotated files first, oldest first); a torn last line
    from a crash is skipped."""
    for p in quarantine_files(path):
        yield from read_records_of(p)


def read_records_of(p: Path) -> Iterator[QuarantineRecord]:
    """Every record of one quarantine file."""
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
