"""Durable store-and-forward: ``SqliteOutbox``.

Samples are stored here before anyone is told they were accepted, and leave only when the uplink
confirms them. One row holds one *chunk*: the columns of a ``Batch`` as raw numpy bytes (plus the
optional OPC UA server timestamps and status codes), so appending or draining 10,000 samples costs
one SQLite row, not 10,000.

Durability (``OutboxConfig.synchronous``), SQLite in WAL mode:
  * ``full``   -- the WAL is fsynced at every commit: an acknowledged append survives SIGKILL *and*
                  power loss. The shipped default.
  * ``normal`` -- fsync only at checkpoints: survives SIGKILL and process crashes; a power cut may
                  roll back the last commits (the file is never corrupted).

Bounds: ``max_bytes`` (payload bytes of the stored chunks) and ``max_age_s``. When a bound is hit
the configured ``drop_policy`` decides: ``drop_oldest`` deletes whole oldest chunks (never one that
is in flight to the uplink) and ``refuse_new`` refuses the new chunk. Every dropped or refused
sample is counted exactly, by reason, and each episode is logged once when it starts and once when
it ends.

Series keys are persisted next to the chunks, so stored series indices stay meaningful after a
restart even if the tag map changed meanwhile.

Session: a random 63-bit epoch is stored when the outbox file is created (``session``, 16 hex
digits). It travels in every frame next to the frame sequence number, which lives in the same
file: a gateway started with a fresh state directory starts a new session at sequence 1, and
ingest does not mistake its frames for duplicates of the old box's.

A full disk (or any write the file system refuses) never takes the process down: the append is
rolled back, the condition is reported (``storage_error``), the configured policy applies
(``drop_oldest`` deletes the oldest chunks not in flight to make room inside the file and
retries once; otherwise the new samples are refused), every refused or dropped sample is counted
(reason ``disk_full``), and the next append that succeeds clears the condition.

Files are created 0600 in a 0700 directory, whatever the umask (the outbox holds plant data).
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
import orjson
from numpy.typing import NDArray

from gateway.config import OutboxConfig
from zhizao.errors import SinkError, ValidationError
from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable

__all__ = ["AppendResult", "OutboxChunk", "OutboxFull", "OutboxStats", "SqliteOutbox"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    idx INTEGER PRIMARY KEY, measurement TEXT NOT NULL, tags TEXT NOT NULL,
    field TEXT NOT NULL, dtype INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created_ns INTEGER NOT NULL,
    samples INTEGER NOT NULL, nbytes INTEGER NOT NULL,
    series BLOB NOT NULL, ts_ns BLOB NOT NULL, f64 BLOB, i64 BLOB, quality BLOB NOT NULL,
    str BLOB, server_ts_ns BLOB, status BLOB);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_COLUMNS = "id, created_ns, series, ts_ns, f64, i64, quality, str, server_ts_ns, status"
_STR_ENCODER = msgspec.msgpack.Encoder()
_STR_DECODER = msgspec.msgpack.Decoder(list[str | None])
# a drop episode ends when the outbox is back under this fraction of max_bytes
_EPISODE_END_FRACTION = 0.9
# wall minus monotonic moving by more than this between two readings is a clock step
CLOCK_STEP_S = 5.0


class OutboxFull(SinkError):
    """The outbox refused a chunk; the samples were not stored. ``reason``: ``outbox_full`` (a
    bound under ``refuse_new``, or every stored chunk in flight) or ``disk_full`` (the file
    system refused the write and no room could be made)."""

    def __init__(
        self,
        message: str,
        *,
        refused: int,
        detail: str | None = None,
        reason: str = "outbox_full",
    ) -> None:
        self.refused = refused
        self.reason = reason
        super().__init__(message, retryable=True, detail=detail)


@dataclass(frozen=True, slots=True)
class OutboxChunk:
    """One stored chunk; ``batch.series`` indexes ``SqliteOutbox.table``."""

    chunk_id: int
    created_ns: int
    batch: Batch
    server_ts_ns: NDArray[np.int64] | None = None
    status_code: NDArray[np.uint32] | None = None


@dataclass(frozen=True, slots=True)
class AppendResult:
    chunk_id: int | None
    accepted: int
    dropped: int  # older samples dropped to make room (drop_oldest)


@dataclass(slots=True)
class OutboxStats:
    chunks: int = 0
    samples: int = 0
    bytes: int = 0
    oldest_age_s: float = 0.0
    appended: int = 0
    acked: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {"full": 0, "age": 0})
    refused: int = 0
    refused_disk_full: int = 0  # part of ``refused``: the file system refused the write
    storage_errors: int = 0  # writes the file system refused (disk full, I/O error)
    storage_error: str = ""  # the current condition, "" when writes succeed


@dataclass(slots=True)
class _Meta:
    created_ns: int
    samples: int
    nbytes: int


def _blob(col: NDArray[np.generic] | None, *, sparse: bool = False) -> bytes | None:
    """Raw bytes of a column; an all-zero filler column is stored as NULL."""
    if col is None or (sparse and not col.any()):
        return None
    return np.ascontiguousarray(col).tobytes()


def is_storage_full(exc: BaseException) -> bool:
    """A write the file system refused: SQLITE_FULL / SQLITE_IOERR*, or ENOSPC/EDQUOT/EIO."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR)
        return "disk is full" in str(exc) or "disk I/O error" in str(exc)
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS)
    return False


def private_file(path: Path) -> None:
    """Create ``path`` (if missing) as 0600 and make sure an existing one is 0600."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            log.warning("%s was readable by others; made it 0600", path)
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and make it 0700 (warns when it was open to others)."""
    path.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("%s had mode %o; made it 0700 (it holds data and keys)", path, mode)
        os.chmod(path, 0o700)


def _col(blob: bytes | None, dtype: type[np.generic], n: int) -> NDArray[np.generic]:
    if blob is None:
        return np.zeros(n, dtype)
    return np.frombuffer(blob, dtype=dtype).copy()


def _strings(blob: bytes, n: int) -> NDArray[np.object_]:
    out = np.empty(n, dtype=object)
    out[:] = _STR_DECODER.decode(blob)
    return out


class SqliteOutbox:
    """SQLite (WAL) outbox of columnar chunks. Thread-safe; every method is short and blocking."""

    def __init__(
        self,
        path: str | Path,
        config: OutboxConfig | None = None,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        mono_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.config = config or OutboxConfig()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):  # SQLite gives its side files the database's mode
            p = self.path.with_name(self.path.name + suffix)
            if suffix == "" or p.exists():
                private_file(p)
        self._clock_ns = clock_ns
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={self.config.synchronous.upper()}")
        self._db.execute("PRAGMA journal_size_limit=67108864")
        self._db.executescript(_SCHEMA)
        self.table = SeriesTable()
        for measurement, tags, fld, dtype in self._db.execute(
            "SELECT measurement, tags, field, dtype FROM series ORDER BY idx"
        ):
            key = SeriesKey(
                measurement, tuple(tuple(t) for t in orjson.loads(tags)), fld, FieldType(dtype)
            )
            try:
                self.table.add(key)
            except ValidationError:  # both types stored (a type edited in an earlier run)
                self._add_second_type(key)
        self._meta: OrderedDict[int, _Meta] = OrderedDict(
            (cid, _Meta(created, n, nb))
            for cid, created, n, nb in self._db.execute(
                "SELECT id, created_ns, samples, nbytes FROM chunks ORDER BY id"
            )
        )
        self._bytes = sum(m.nbytes for m in self._meta.values())
        self._samples = sum(m.samples for m in self._meta.values())
        self._inflight: set[int] = set()
        self.stats = OutboxStats()
        self._episode: dict[str, int] | None = None  # reason -> samples dropped this episode
        self._tokens = 0.0
        self._tokens_at = time.monotonic()
        self._unpersisted: list[int] = []  # series indices a full disk kept out of the file
        self._registered: set[int] = set()  # series indices registered by this process
        # chunks deleted in the open transaction (restored in memory if it rolls back)
        self._undo: list[tuple[int, _Meta, str | None]] = []
        self._ack_pending: set[int] = set()  # confirmed chunks a full disk kept from deleting
        self._mono_ns = mono_ns
        self._clock_offset_ns: int | None = None  # wall minus monotonic at the last reading
        self.clock_steps = 0
        self.session = self._session()

    def _session(self) -> str:
        """The session id of this outbox file, created with it (see the module docstring)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'session'").fetchone()
        if row is None:
            value = secrets.randbits(63) or 1
            self._db.execute("INSERT INTO meta VALUES ('session', ?)", (value,))
            row = (value,)
        return f"{int(row[0]):016x}"

    def _storage_failed(self, exc: BaseException, what: str) -> None:
        self.stats.storage_errors += 1
        if not self.stats.storage_error:
            log.error(
                "outbox %s: the file system refused a write (%s) while %s; the gateway keeps "
                "running, applies drop_policy %s and counts what it cannot store. Free space on "
                "that file system.",
                self.path,
                exc,
                what,
                self.config.drop_policy,
            )
        self.stats.storage_error = f"{what}: {exc}"

    def _storage_ok(self) -> None:
        if self.stats.storage_error:
            log.warning("outbox %s can be written again", self.path)
            self.stats.storage_error = ""

    # ------------------------------------------------------------------ series

    def series_index(self, key: SeriesKey) -> int:
        """Index of ``key`` in ``table``, persisting it if new.

        A series known with another type raises ``ValidationError("type_change")`` when that
        type was registered by this process (a device changing its type: the source refuses
        the sample, counted). When the other type only comes from the file (the type was edited
        in gateway.yaml between two runs) the new type is accepted under its own index: the
        stored backlog keeps, and is sent under, its old type.
        """
        with self._lock:
            idx = self.table.find(key)
            if idx is not None:
                self._registered.add(idx)
                return idx
            try:
                idx = self.table.add(key)
            except ValidationError:
                name = (key.measurement, key.tags, key.field)
                old = [
                    i
                    for i, k in enumerate(self.table.keys)
                    if (k.measurement, k.tags, k.field) == name
                ]
                if any(i in self._registered for i in old):
                    raise
                log.warning(
                    "series %s.%s %s changed type to %s in the configuration; stored samples "
                    "of the old type are sent as they are (ingest refuses whichever type "
                    "InfluxDB does not have as type_change: rename the signal to change a type)",
                    key.measurement,
                    key.field,
                    dict(key.tags),
                    key.dtype.name,
                )
                idx = self._add_second_type(key)
            self._registered.add(idx)
            try:
                self._persist_series(idx)
            except sqlite3.Error as exc:
                if not is_storage_full(exc):
                    raise
                # written with the next chunk that fits: the chunk needs it, nothing else does
                self._unpersisted.append(idx)
                self._storage_failed(exc, "registering a series")
            return idx

    def _add_second_type(self, key: SeriesKey) -> int:
        # SeriesTable refuses a second type per name; the outbox's table holds both (each with
        # its own index). zhizao.model keeps the type per name in _type_of_name.
        self.table._type_of_name[(key.measurement, key.tags, key.field)] = key.dtype
        return self.table.add(key)

    def _persist_series(self, idx: int) -> None:
        key = self.table.keys[idx]
        self._db.execute(
            "INSERT OR REPLACE INTO series VALUES (?, ?, ?, ?, ?)",
            (idx, key.measurement, orjson.dumps(key.tags).decode(), key.field, int(key.dtype)),
        )

    # ------------------------------------------------------------------ append

    def append(
        self,
        batch: Batch,
        *,
        server_ts_ns: NDArray[np.int64] | None = None,
        status_code: NDArray[np.uint32] | None = None,
    ) -> AppendResult:
        """Store ``batch`` durably. Returns only after the commit (per ``synchronous``).

        Raises ``OutboxFull`` under ``refuse_new`` when a bound is hit, and under either policy
        when the file system refuses the write and no room can be made (``storage_error``).
        """
        n = len(batch)
        if n == 0:
            return AppendResult(None, 0, 0)
        if n and int(batch.series.max()) >= len(self.table):
            raise ValueError("outbox append: series index not registered with series_index()")
        strs = None
        if batch.value_str is not None:
            strs = _STR_ENCODER.encode(batch.value_str.tolist())
        row = (
            _blob(batch.series),
            _blob(batch.ts_ns),
            _blob(batch.value_f64, sparse=True),
            _blob(batch.value_i64, sparse=True),
            _blob(batch.quality),
            strs,
            _blob(server_ts_ns),
            _blob(status_code),
        )
        nbytes = sum(len(b) for b in row if b is not None)
        with self._lock:
            try:
                return self._append_locked(n, nbytes, row)
            except sqlite3.Error as exc:
                if not is_storage_full(exc):
                    raise
                self._storage_failed(exc, "storing new samples")
            # the file system is full: make room inside the file (drop_oldest) and try once more
            dropped = 0
            if self.config.drop_policy == "drop_oldest":
                dropped = self._drop_for_disk(nbytes)
                if dropped:
                    try:
                        result = self._append_locked(n, nbytes, row)
                    except sqlite3.Error as exc:
                        if not is_storage_full(exc):
                            raise
                        self._storage_failed(exc, "storing new samples")
                    else:
                        return AppendResult(result.chunk_id, result.accepted, dropped)
            self.stats.refused += n
            self.stats.refused_disk_full += n
            self._episode_note("disk_full", n)
            raise OutboxFull(
                "outbox cannot be written (the file system refused it): new samples refused",
                refused=n,
                detail=self.stats.storage_error,
                reason="disk_full",
            )

    def _drop_for_disk(self, need_bytes: int) -> int:
        """Delete the oldest chunks not in flight (reason ``disk_full``); 0 if that fails too."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            dropped = self._drop_oldest_locked(max(need_bytes, 1), "disk_full")
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            if not is_storage_full(exc):
                raise
            return 0
        self._undo.clear()
        return dropped

    def _rollback(self) -> None:
        """Roll the transaction back and restore the in-memory view of the deleted chunks."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        if not self._undo:
            return
        for cid, meta, reason in self._undo:
            self._meta[cid] = meta
            self._bytes += meta.nbytes
            self._samples += meta.samples
            if reason is not None:
                self.stats.dropped[reason] = self.stats.dropped.get(reason, 0) - meta.samples
        self._meta = OrderedDict(sorted(self._meta.items()))
        self._undo.clear()

    def _append_locked(self, n: int, nbytes: int, row: tuple[bytes | None, ...]) -> AppendResult:
        self._retry_acks()
        now_ns = self._now_ns()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for idx in self._unpersisted:
                self._persist_series(idx)
            dropped = self._expire(now_ns)
            if self._bytes + nbytes > self.config.max_bytes:
                if self.config.drop_policy == "refuse_new":
                    self._db.execute("COMMIT")
                    self._undo.clear()
                    self.stats.refused += n
                    self._episode_note("refused", n)
                    raise OutboxFull(
                        "outbox full: new samples refused (drop_policy refuse_new)",
                        refused=n,
                        detail=f"{self._bytes} of {self.config.max_bytes} bytes used",
                    )
                dropped += self._drop_oldest_locked(
                    self._bytes + nbytes - self.config.max_bytes, "full"
                )
                if self._bytes + nbytes > self.config.max_bytes:
                    # everything left is in flight: nothing older can go, so the new chunk can't
                    self._db.execute("COMMIT")
                    self._undo.clear()
                    self.stats.refused += n
                    self._episode_note("refused", n)
                    raise OutboxFull(
                        "outbox full: every stored chunk is in flight, new samples refused",
                        refused=n,
                    )
            cur = self._db.execute(
                "INSERT INTO chunks (created_ns, samples, nbytes, series, ts_ns, f64, i64,"
                " quality, str, server_ts_ns, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (now_ns, n, nbytes, *row),
            )
            self._db.execute("COMMIT")
        except OutboxFull:
            raise
        except BaseException:
            self._rollback()
            raise
        self._undo.clear()
        self._unpersisted.clear()
        self._storage_ok()
        chunk_id = int(cur.lastrowid or 0)
        self._meta[chunk_id] = _Meta(now_ns, n, nbytes)
        self._bytes += nbytes
        self._samples += n
        self.stats.appended += n
        if not dropped:
            self._maybe_end_episode()
        return AppendResult(chunk_id, n, dropped)

    def _now_ns(self) -> int:
        """The wall clock, with steps of it detected against the monotonic clock.

        A box without a real-time clock boots at some old date and is stepped forward by NTP
        later: without this, every chunk stored before the step would look years old and expire
        as ``age``. A step (wall minus monotonic moving by more than ``CLOCK_STEP_S`` between two
        readings) is logged and the stored creation times are shifted by it, in memory and in
        the file, so ages stay what they were on the monotonic clock.
        """
        wall = self._clock_ns()
        offset = wall - self._mono_ns()
        last, self._clock_offset_ns = self._clock_offset_ns, offset
        if last is not None and abs(offset - last) > CLOCK_STEP_S * 1_000_000_000:
            step = offset - last
            self.clock_steps += 1
            log.warning(
                "the wall clock stepped by %+.1f s; outbox ages are kept on the monotonic clock "
                "(%d stored chunks re-dated)",
                step / 1e9,
                len(self._meta),
            )
            for m in self._meta.values():
                m.created_ns += step
            try:
                self._db.execute("UPDATE chunks SET created_ns = created_ns + ?", (step,))
            except sqlite3.Error as exc:  # in memory is what counts while running
                if not is_storage_full(exc):
                    raise
                self._storage_failed(exc, "re-dating chunks after a clock step")
        return wall

    def _expire(self, now_ns: int) -> int:
        cutoff = now_ns - int(self.config.max_age_s * 1e9)
        old = [
            cid
            for cid, m in self._meta.items()
            if m.created_ns < cutoff and cid not in self._inflight
        ]
        return self._delete_locked(old, reason="age") if old else 0

    def _drop_oldest_locked(self, need_bytes: int, reason: str) -> int:
        victims: list[int] = []
        freed = 0
        for cid, m in self._meta.items():
            if freed >= need_bytes:
                break
            if cid in self._inflight:
                continue
            victims.append(cid)
            freed += m.nbytes
        return self._delete_locked(victims, reason=reason)

    def _delete_locked(self, ids: Sequence[int], *, reason: str | None) -> int:
        """Delete chunk rows (inside the caller's transaction, if any); returns samples removed."""
        samples = 0
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            self._db.execute(
                f"DELETE FROM chunks WHERE id IN ({','.join('?' * len(part))})", tuple(part)
            )
        for cid in ids:
            m = self._meta.pop(cid, None)
            if m is None:
                continue
            self._undo.append((cid, m, reason))
            samples += m.samples
            self._bytes -= m.nbytes
            self._samples -= m.samples
        if reason is not None and samples:
            self.stats.dropped[reason] = self.stats.dropped.get(reason, 0) + samples
            self._episode_note(reason, samples)
        return samples

    def _episode_note(self, reason: str, samples: int) -> None:
        if self._episode is None:
            self._episode = {}
            log.warning(
                "outbox bound reached (%s): %s samples lost so far by policy %s; "
                "max_bytes=%d max_age_s=%s. Logged once until the episode ends.",
                reason,
                samples,
                self.config.drop_policy,
                self.config.max_bytes,
                self.config.max_age_s,
            )
        self._episode[reason] = self._episode.get(reason, 0) + samples

    def _maybe_end_episode(self) -> None:
        if (
            self._episode is not None
            and self._bytes < _EPISODE_END_FRACTION * self.config.max_bytes
        ):
            log.warning(
                "outbox drop episode ended; samples lost in it by reason: %s", self._episode
            )
            self._episode = None

    def expire(self) -> int:
        """Apply the age bound now (the uplink loop calls this periodically)."""
        with self._lock:
            self._retry_acks()
            try:
                self._db.execute("BEGIN IMMEDIATE")
                dropped = self._expire(self._now_ns())
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                if not is_storage_full(exc):
                    raise
                self._storage_failed(exc, "expiring old chunks")
                return 0
            except BaseException:
                self._rollback()
                raise
            self._undo.clear()
            return dropped

    # ------------------------------------------------------------------ drain

    def take(
        self,
        max_samples: int,
        *,
        lane: str = "any",
        max_chunks: int = 10_000,
    ) -> list[OutboxChunk]:
        """The oldest chunks not in flight, marked in flight until ``ack`` or ``release``.

        ``lane``: ``live`` (younger than ``live_window_s``), ``backlog`` (older), or ``any``.
        At least one chunk is returned when one is available, even if it exceeds ``max_samples``.
        """
        with self._lock:
            cutoff = self._now_ns() - int(self.config.live_window_s * 1e9)
            ids: list[int] = []
            total = 0
            for cid, m in self._meta.items():
                if cid in self._inflight:
                    continue
                if lane == "live" and m.created_ns < cutoff:
                    continue
                if lane == "backlog" and m.created_ns >= cutoff:
                    break  # ids grow with time: the rest are live
                if ids and total + m.samples > max_samples:
                    break
                ids.append(cid)
                total += m.samples
                if len(ids) >= max_chunks or total >= max_samples:
                    break
            if not ids:
                return []
            self._inflight.update(ids)
            return self._read_locked(ids)

    def _read_locked(self, ids: Sequence[int]) -> list[OutboxChunk]:
        out: list[OutboxChunk] = []
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM chunks WHERE id IN ({','.join('?' * len(part))})"
                " ORDER BY id",
                tuple(part),
            ).fetchall()
            for cid, created, series, ts, f64, i64, quality, strs, sts, status in rows:
                n = len(series) // 4
                batch = Batch(
                    series=_col(series, np.int32, n),  # type: ignore[arg-type]
                    ts_ns=_col(ts, np.int64, n),  # type: ignore[arg-type]
                    value_f64=_col(f64, np.float64, n),  # type: ignore[arg-type]
                    value_i64=_col(i64, np.int64, n),  # type: ignore[arg-type]
                    quality=_col(quality, np.uint8, n),  # type: ignore[arg-type]
                    value_str=None if strs is None else _strings(strs, n),
                )
                out.append(
                    OutboxChunk(
                        cid,
                        created,
                        batch,
                        None if sts is None else _col(sts, np.int64, n),  # type: ignore[arg-type]
                        None if status is None else _col(status, np.uint32, n),  # type: ignore[arg-type]
                    )
                )
        return out

    def ack(self, chunk_ids: Iterable[int]) -> int:
        """The uplink confirmed these chunks: delete them. Returns samples removed."""
        ids = list(chunk_ids)
        if not ids:
            return 0
        with self._lock:
            self._ack_pending.update(ids)
            return self._retry_acks()

    def _retry_acks(self) -> int:
        """Delete the confirmed chunks; if the file system refuses, they stay in flight (never
        sent again, never dropped) and the next call tries again."""
        if not self._ack_pending:
            return 0
        ids = sorted(self._ack_pending)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            n = self._delete_locked(ids, reason=None)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            if not is_storage_full(exc):
                raise
            self._storage_failed(exc, "deleting confirmed chunks")
            return 0
        except BaseException:
            self._rollback()
            raise
        self._undo.clear()
        self._ack_pending.clear()
        self._inflight.difference_update(ids)
        self.stats.acked += n
        self._maybe_end_episode()
        return n

    def release(self, chunk_ids: Iterable[int]) -> None:
        """The uplink failed these chunks: they become available again (same place in order)."""
        with self._lock:
            self._inflight.difference_update(chunk_ids)

    def release_all(self) -> None:
        with self._lock:
            self._inflight.clear()

    # ------------------------------------------------------------------ rate limit, meta, stats

    def replay_budget(self) -> int:
        """Samples the backlog lane may send now (token bucket at ``replay_samples_per_s``)."""
        with self._lock:
            now = time.monotonic()
            rate = self.config.replay_samples_per_s
            self._tokens = min(rate, self._tokens + (now - self._tokens_at) * rate)
            self._tokens_at = now
            return int(self._tokens)

    def spend_replay(self, samples: int) -> None:
        with self._lock:
            self._tokens -= samples

    def next_seq(self, name: str = "frame_seq") -> int:
        """A persistent counter (frame sequence numbers survive restarts).

        Raises ``sqlite3.Error`` when the file system refuses the update: a number is never
        handed out unless it is stored (a reused number would be taken for a duplicate)."""
        return self.reserve_seq(1, name)[0]

    def reserve_seq(self, count: int, name: str = "frame_seq") -> tuple[int, int]:
        """Reserve ``count`` numbers of a persistent counter at once: ``(first, last)``, stored
        (one commit) before they are handed out, so a restart continues after ``last`` (numbers
        reserved and not used are skipped, never repeated). Raises ``sqlite3.Error`` when the
        file system refuses the update."""
        if count < 1:
            raise ValueError("reserve_seq: count must be at least 1")
        with self._lock:
            self._db.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = value + ?",
                (name, count, count),
            )
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
            last = int(row[0])
            return last - count + 1, last

    def unreserve_seq(self, reserved_last: int, used_last: int, name: str = "frame_seq") -> bool:
        """Give back the unused end of the last reservation (a clean stop), so the next process
        continues right after ``used_last``. Only when nothing was reserved since; True if done."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE meta SET value = ? WHERE key = ? AND value = ?",
                (used_last, name, reserved_last),
            )
            return cur.rowcount == 1

    @property
    def depth_samples(self) -> int:
        return self._samples

    @property
    def depth_bytes(self) -> int:
        return self._bytes

    @property
    def depth_chunks(self) -> int:
        return len(self._meta)

    @property
    def inflight_chunks(self) -> int:
        return len(self._inflight)

    def oldest_age_s(self) -> float:
        with self._lock:
            if not self._meta:
                return 0.0
            first = next(iter(self._meta.values()))
            return max(0.0, (self._now_ns() - first.created_ns) / 1e9)

    def snapshot(self) -> OutboxStats:
        with self._lock:
            return OutboxStats(
                chunks=len(self._meta),
                samples=self._samples,
                bytes=self._bytes,
                oldest_age_s=self.oldest_age_s(),
                appended=self.stats.appended,
                acked=self.stats.acked,
                dropped=dict(self.stats.dropped),
                refused=self.stats.refused,
                refused_disk_full=self.stats.refused_disk_full,
                storage_errors=self.stats.storage_errors,
                storage_error=self.stats.storage_error,
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteOutbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
