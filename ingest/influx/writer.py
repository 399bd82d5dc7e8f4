"""``InfluxWriter``: line protocol into InfluxDB, bounded, concurrent, retried, and honest about
what was stored.

A write is cut into requests of at most ``max_lines_per_request`` lines and
``max_bytes_per_request`` bytes, sent with up to ``concurrency`` requests in flight. Connection
errors, 5xx and 429 are retried with exponential backoff and jitter (``Retry-After`` wins when the
server sends it). Retrying is safe because a point InfluxDB already stored is overwritten by an
identical one: a request that timed out after the server wrote it costs nothing on replay. A 400 is
never retried: the lines InfluxDB refused are parsed out of its answer and raised as
``PartialWriteError`` once every other request of the write has been sent. A missing database is a
``ConfigError`` (or is created, with ``create_database: true``).

``write_batch`` pipelines: while the requests of one piece of the batch are in flight, the next
piece is encoded in a worker thread, so encoding hides behind the server's own work.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import random
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType

import httpx
import numpy as np
from numpy.typing import NDArray

from ingest.influx.chunks import RequestChunk, line_ends_of, split_body
from ingest.influx.config import InfluxConfig
from ingest.influx.responses import error_text, parse_rejected_lines, retry_after_s
from ingest.influx.transport import Poster, Unreachable, make_poster
from ingest.lineprotocol import REJECT_REASONS, EncodedBatch, LineProtocolEncoder
from zhizao.errors import ConfigError, PartialWriteError, SinkError
from zhizao.model import Batch, SeriesTable

__all__ = ["InfluxWriter", "WriteReport", "WriterStats"]

log = logging.getLogger(__name__)

# The batch is encoded in pieces of at least this many lines (rounded up to whole requests) while
# earlier pieces are on the wire: big enough that numpy's per-call overhead vanishes, small enough
# that the first request leaves within milliseconds (measured: 8k-line pieces beat 64k-line ones).
PIPELINE_PIECE_LINES = 8_192
# Batches below this many samples are encoded in one go, inline.
PIPELINE_MIN_SAMPLES = 65_536
# Bodies below this are gzipped inline; above, in a thread (zlib releases the GIL).
GZIP_INLINE_BYTES = 262_144


@dataclass
class WriterStats:
    """Running totals since the writer started, for health pages and Prometheus."""

    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0
    bytes_sent: int = 0  # request body bytes on the wire (after gzip)
    lines_written: int = 0
    samples_written: int = 0  # samples InfluxDB confirmed (where the sample count is known)
    lines_rejected: int = 0  # lines InfluxDB refused (400 partial write)
    errors: dict[str, int] = field(default_factory=dict)  # by kind: connect, timeout, http_503, ...
    last_success_s: float | None = None  # wall clock (time.time) of the last confirmed request
    last_error: str | None = None

    def count_error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


@dataclass
class WriteReport:
    """What one ``write_*`` call did. ``rejected`` counts the samples the encoder refused, by
    reason; ``rejected_index`` / ``rejected_reason`` say which rows of the batch and why (codes
    into ``ingest.lineprotocol.REJECT_REASONS``)."""

    samples_written: int = 0
    lines_written: int = 0
    requests: int = 0
    retries: int = 0
    bytes_sent: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    rejected_index: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    rejected_reason: NDArray[np.uint8] = field(default_factory=lambda: np.empty(0, np.uint8))


@dataclass
class _Refused:
    """Lines a 400 refused in one request, numbered within the whole write (1-based)."""

    rejected: list[tuple[int | None, str, str]]
    lines: int
    accepted_lines: int


class InfluxWriter:
    """Async writer for one InfluxDB; use as ``async with InfluxWriter(config) as writer``.

    ``transport`` replaces httpx's network transport (v1 only), e.g. with ``httpx.MockTransport``
    to exercise status-code handling without a server; ``sleep`` replaces the backoff wait
    (tests record the delays instead of waiting them out).
    """

    def __init__(
        self,
        config: InfluxConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self.stats = WriterStats()
        self._transport = transport
        self._poster: Poster | None = None
        self._sem: asyncio.Semaphore | None = None
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._encoders: dict[int, tuple[SeriesTable, _LockedEncoder]] = {}
        self._failing_attempts = 0  # consecutive failed attempts, for log-once / recovered-once
        self._db_lock = asyncio.Lock()
        self._db_created = False

    async def __aenter__(self) -> InfluxWriter:
        self._ensure_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _ensure_open(self) -> Poster:
        if self._poster is None:
            self._poster = make_poster(self.config, self._transport)
            self._sem = asyncio.Semaphore(self.config.concurrency)
        return self._poster

    async def aclose(self) -> None:
        poster, self._poster = self._poster, None
        if poster is not None:
            await poster.aclose()

    # -- public writes -------------------------------------------------------------------------

    async def write_body(
        self, body: bytes, lines: int | None = None, samples: int | None = None
    ) -> WriteReport:
        """Write ready line protocol (``\\n``-separated, nanosecond timestamps). ``lines`` is
        checked against the body when given; ``samples`` only feeds the counters."""
        ends = line_ends_of(body)
        if lines is not None and lines != len(ends):
            raise ValueError(f"write_body: body has {len(ends)} lines, caller said {lines}")
        chunks = split_body(
            body, ends, self.config.max_lines_per_request, self.config.max_bytes_per_request
        )
        report = WriteReport()
        await self._run(_aiter(chunks), report)
        if samples is not None:
            # known only for the whole body, so counted once everything was confirmed
            report.samples_written = samples
            self.stats.samples_written += samples
        return report

    async def write_encoded(self, encoded: EncodedBatch) -> WriteReport:
        """Write an encoder result; its encoder rejections are carried into the report."""
        report = WriteReport(
            rejected=encoded.rejected_counts(),
            rejected_index=encoded.rejected_index,
            rejected_reason=encoded.rejected_reason,
        )
        chunks = split_body(
            encoded.body,
            encoded.line_ends,
            self.config.max_lines_per_request,
            self.config.max_bytes_per_request,
            encoded.line_samples,
        )
        await self._run(_aiter(chunks), report)
        return report

    async def write_batch(self, table: SeriesTable, batch: Batch) -> WriteReport:
        """Encode and write ``batch``; encoding of the next piece overlaps the current requests."""
        encoder = self._encoder(table)
        if len(batch) <= PIPELINE_MIN_SAMPLES:
            return await self.write_encoded(encoder.encode(batch))
        report = WriteReport()
        rejected_index: list[NDArray[np.int64]] = []
        rejected_reason: list[NDArray[np.uint8]] = []

        async def chunks() -> AsyncGenerator[RequestChunk, None]:
            per_request = self.config.max_lines_per_request
            requests_per_piece = -(-PIPELINE_PIECE_LINES // per_request)
            bounds = _piece_bounds(table, batch, requests_per_piece * per_request)
            line_offset = 0
            pending = asyncio.create_task(_encode_in_thread(encoder, batch, bounds[0], bounds[1]))
            try:
                for k in range(len(bounds) - 1):
                    encoded = await pending
                    if k + 2 < len(bounds):
                        pending = asyncio.create_task(
                            _encode_in_thread(encoder, batch, bounds[k + 1], bounds[k + 2])
                        )
                    rejected_index.append(encoded.rejected_index + bounds[k])
                    rejected_reason.append(encoded.rejected_reason)
                    for chunk in split_body(
                        encoded.body,
                        encoded.line_ends,
                        self.config.max_lines_per_request,
                        self.config.max_bytes_per_request,
                        encoded.line_samples,
                    ):
                        yield RequestChunk(
                            chunk.body,
                            chunk.lines,
                            chunk.samples,
                            chunk.first_line + line_offset,
                            chunk.line_samples,
                        )
                    line_offset += encoded.lines
            finally:
                if not pending.done():
                    pending.cancel()

        try:
            await self._run(chunks(), report)
        finally:
            if rejected_index:
                report.rejected_index = np.concatenate(rejected_index).astype(np.int64)
                report.rejected_reason = np.concatenate(rejected_reason).astype(np.uint8)
            report.rejected = _reason_counts(report.rejected_reason)
        return report

    def _encoder(self, table: SeriesTable) -> _LockedEncoder:
        # one encoder per table: it caches the encoded series prefixes; the table is kept alive
        # alongside so its id cannot be reused by another table
        entry = self._encoders.get(id(table))
        if entry is None or entry[0] is not table:
            entry = (table, _LockedEncoder(LineProtocolEncoder(table)))
            self._encoders[id(table)] = entry
        return entry[1]

    # -- request scheduling ---------------------------------------------------------------------

    async def _run(self, chunks: AsyncGenerator[RequestChunk, None], report: WriteReport) -> None:
        """Send every chunk (bounded in flight); raise the first hard error, or, after all were
        sent, one ``PartialWriteError`` for every line InfluxDB refused."""
        self._ensure_open()
        pending: set[asyncio.Task[_Refused | None]] = set()
        refused: list[_Refused] = []
        # chunks waiting for the semaphore hold memory; two rounds of them keep the pipe full
        max_pending = 2 * self.config.concurrency

        async def drain(until: int) -> None:
            nonlocal pending
            while len(pending) > until:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                errors = [exc for task in done if (exc := task.exception()) is not None]
                refused.extend(r for task in done if not task.exception() and (r := task.result()))
                if errors:
                    raise errors[0]

        try:
            # aclosing: on an error the producer (and its encode-ahead task) is shut down now,
            # not whenever the garbage collector finds it
            async with contextlib.aclosing(chunks) as source:
                async for chunk in source:
                    await drain(max_pending - 1)
                    pending.add(asyncio.create_task(self._send(chunk, report)))
            await drain(0)
        except BaseException:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            raise
        if refused:
            rejected = [r for part in refused for r in part.rejected]
            accepted = sum(part.accepted_lines for part in refused)
            lines = sum(part.lines for part in refused)
            raise PartialWriteError(
                f"InfluxDB refused {lines - accepted} line(s) of this write; the rest is stored "
                "and refused lines are not retried",
                rejected=rejected,
                accepted_lines=report.lines_written,
                detail=f"{self.config.host_port}, first: {_first_reason(rejected)}",
            )

    async def _send(self, chunk: RequestChunk, report: WriteReport) -> _Refused | None:
        assert self._sem is not None
        async with self._sem:
            body = chunk.body
            gzipped = self.config.gzip and self.config.api == "v1"
            if gzipped:
                body = (
                    gzip.compress(body, compresslevel=1)
                    if len(body) < GZIP_INLINE_BYTES
                    else await asyncio.to_thread(gzip.compress, body, 1)
                )
            return await self._send_with_retries(chunk, body, gzipped, report)

    async def _send_with_retries(
        self, chunk: RequestChunk, body: bytes, gzipped: bool, report: WriteReport
    ) -> _Refused | None:
        poster = self._ensure_open()
        cfg = self.config
        attempts = cfg.max_retries + 1
        attempt = 0
        created = False
        while True:
            attempt += 1
            self.stats.requests += 1
            report.requests += 1
            self.stats.bytes_sent += len(body)
            report.bytes_sent += len(body)
            retry_after: float | None = None
            try:
                reply = await poster.post(body, gzipped=gzipped)
            except Unreachable as exc:
                kind, status, cause = exc.kind, None, str(exc)
                sentence = "InfluxDB cannot be reached"
            else:
                if reply.status < 300:
                    self._succeeded(chunk, report)
                    return None
                text = error_text(reply.text)
                status = reply.status
                if _is_missing_target(status, text):
                    # one CREATE DATABASE per request: a database dropped again right after is
                    # an operator's decision, not something to fight in a loop
                    if not created and await self._create_database(text):
                        created = True
                        continue
                    self.stats.count_error("database_not_found")
                    raise self._missing_target_error(text)
                elif status == 429 or status >= 500:
                    kind, cause = f"http_{status}", f"HTTP {status}: {text}"
                    retry_after = retry_after_s(reply.headers, time.time())
                    sentence = (
                        "InfluxDB is overloaded (429)"
                        if status == 429
                        else f"InfluxDB failed the write (HTTP {status})"
                    )
                elif status == 400:
                    return self._refused(chunk, text, report)
                else:
                    self.stats.count_error(f"http_{status}")
                    raise self._hard_error(status, text)
            self.stats.count_error(kind)
            self.stats.last_error = cause
            if attempt >= attempts:
                raise SinkError(
                    f"InfluxDB write failed after {attempt} attempts; these samples are not "
                    "stored yet, the caller must keep them and try again later",
                    retryable=True,
                    retry_after_s=retry_after,
                    status=status,
                    detail=f"{cfg.host_port}, last error: {cause}, "
                    f"last success: {_ago(self.stats.last_success_s)}",
                )
            delay_s = self._delay_s(attempt, retry_after)
            self._log_failure(
                f"{sentence}; the write will be retried ({cfg.host_port}, attempt "
                f"{attempt}/{attempts}, next retry in {delay_s:.1f} s: {cause})"
            )
            self.stats.retries += 1
            report.retries += 1
            await self._sleep(delay_s)

    def _delay_s(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            # the server named its price; a little jitter keeps many clients from returning
            # in the same millisecond
            return float(retry_after * (1.0 + 0.1 * self._rng.random()))
        cfg = self.config
        base = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2 ** (attempt - 1))
        # "equal jitter": at least half the backoff, so retries spread but never hammer
        return float(base * (0.5 + 0.5 * self._rng.random()))

    def _log_failure(self, message: str) -> None:
        # first failure of a streak at WARNING, the rest at DEBUG: no log spam during an outage
        self._failing_attempts += 1
        log.log(logging.WARNING if self._failing_attempts == 1 else logging.DEBUG, message)

    def _succeeded(self, chunk: RequestChunk, report: WriteReport) -> None:
        if self._failing_attempts:
            log.info(
                "InfluxDB accepts writes again (%s, after %d failed attempts)",
                self.config.host_port,
                self._failing_attempts,
            )
            self._failing_attempts = 0
        samples = chunk.samples or 0
        self.stats.lines_written += chunk.lines
        self.stats.samples_written += samples
        self.stats.last_success_s = time.time()
        report.lines_written += chunk.lines
        report.samples_written += samples

    def _refused(self, chunk: RequestChunk, text: str, report: WriteReport) -> _Refused:
        parsed = parse_rejected_lines(text, chunk.body, chunk.lines)
        rejected = [
            (None if no is None else no + chunk.first_line, line, reason)
            for no, line, reason in parsed.rejected
        ]
        self.stats.count_error("partial_write" if parsed.partial else "bad_request")
        self.stats.lines_rejected += chunk.lines - parsed.accepted_lines
        self.stats.last_error = f"HTTP 400: {text}"
        self.stats.lines_written += parsed.accepted_lines
        report.lines_written += parsed.accepted_lines
        samples = _accepted_samples(chunk, parsed.accepted_lines, parsed.rejected)
        self.stats.samples_written += samples
        report.samples_written += samples
        return _Refused(rejected, chunk.lines, parsed.accepted_lines)

    async def _create_database(self, text: str) -> bool:
        """CREATE DATABASE when configured (v1); True when the write should be sent again."""
        if not (self.config.create_database and self.config.api == "v1"):
            return False
        if "database not found" not in text:
            return False
        # serialised so that N requests that all met the 404 send their CREATEs one by one;
        # CREATE DATABASE on an existing database is a no-op in InfluxDB
        async with self._db_lock:
            assert self._poster is not None
            try:
                reply = await self._poster.create_database()
            except Unreachable:
                return True  # the retry loop meets the outage on the next attempt and backs off
            if reply.status >= 300 or '"error"' in reply.text:
                raise ConfigError(
                    f"database {self.config.database!r} is missing and could not be created: "
                    f"{error_text(reply.text)}",
                    key="database",
                    expected="an existing database, or a user allowed to CREATE DATABASE",
                )
            if not self._db_created:
                self._db_created = True
                log.info(
                    "created InfluxDB database %r on %s",
                    self.config.database,
                    self.config.host_port,
                )
            return True

    def _missing_target_error(self, text: str) -> ConfigError:
        cfg = self.config
        lowered = text.lower()
        if "retention policy not found" in lowered:
            return ConfigError(
                f"InfluxDB has no retention policy {cfg.retention_policy!r} "
                f"in database {cfg.database!r}",
                key="retention_policy",
                expected=f"an existing retention policy on {cfg.host_port}, or empty",
            )
        if "database not found" in lowered:
            return ConfigError(
                f"InfluxDB has no database {cfg.database!r}; create it "
                f'(CREATE DATABASE "{cfg.database}") or set create_database: true',
                key="database",
                expected=f"an existing database on {cfg.host_port}",
            )
        if "bucket" in lowered:
            return ConfigError(
                f"InfluxDB has no bucket {cfg.bucket!r} in org {cfg.org!r}: {text}",
                key="bucket",
                expected=f"an existing bucket on {cfg.host_port}",
            )
        # a 404 without InfluxDB's wording: a proxy or a wrong path prefix in the URL
        return ConfigError(
            f"{cfg.url} answered 404 to a write ({text[:200]}); is this the InfluxDB base URL?",
            key="url",
            expected="the InfluxDB base URL (scheme, host, port, optional path prefix)",
        )

    def _hard_error(self, status: int, text: str) -> SinkError:
        cfg = self.config
        if status in (401, 403):
            sentence = "InfluxDB refused the credentials; check token or username/password"
        elif status == 413:
            sentence = "InfluxDB refused the request size; lower max_bytes_per_request"
        else:
            sentence = f"InfluxDB refused the write with HTTP {status}"
        return SinkError(
            sentence, retryable=False, status=status, detail=f"{cfg.host_port}: {text}"
        )


async def _aiter(chunks: Iterable[RequestChunk]) -> AsyncGenerator[RequestChunk, None]:
    for chunk in chunks:
        yield chunk


class _LockedEncoder:
    """An encoder shared by concurrent ``write_batch`` calls: its series-text cache is refreshed
    in place, so one encode at a time (pieces of one call are sequential anyway)."""

    def __init__(self, encoder: LineProtocolEncoder) -> None:
        self._encoder = encoder
        self._lock = threading.Lock()

    def encode(self, batch: Batch) -> EncodedBatch:
        with self._lock:
            return self._encoder.encode(batch)


async def _encode_in_thread(
    encoder: _LockedEncoder, batch: Batch, lo: int, hi: int
) -> EncodedBatch:
    piece = batch.take(slice(lo, hi))  # type: ignore[arg-type]  # views, no copy
    return await asyncio.to_thread(encoder.encode, piece)


def _piece_bounds(table: SeriesTable, batch: Batch, lines_per_piece: int) -> list[int]:
    """Row offsets cutting ``batch`` into pieces of ``lines_per_piece`` points each. A point is a
    run of rows with the same group and timestamp (one line of line protocol), so pieces end on
    line boundaries and, with ``lines_per_piece`` a multiple of the request size, requests come
    out exactly as large as from one big encode."""
    n = len(batch)
    s = batch.series
    groups = table.groups[np.clip(s, 0, max(len(table) - 1, 0))] if len(table) else s
    change = np.flatnonzero((groups[1:] != groups[:-1]) | (batch.ts_ns[1:] != batch.ts_ns[:-1]))
    point_starts = change.astype(np.int64) + 1  # first row of every point but the first
    cuts = point_starts[lines_per_piece - 1 :: lines_per_piece]
    return [0, *(int(c) for c in cuts), n]


def _accepted_samples(
    chunk: RequestChunk, accepted_lines: int, rejected: list[tuple[int | None, str, str]]
) -> int:
    """Samples of the lines InfluxDB kept, where the chunk knows its samples per line."""
    if chunk.samples is None or accepted_lines == 0:
        return 0
    if accepted_lines == chunk.lines:
        return chunk.samples
    numbered = [no for no, _, _ in rejected if no is not None]
    if chunk.line_samples is None or len(numbered) != chunk.lines - accepted_lines:
        return 0  # cannot tell which lines survived; undercount rather than invent
    idx = np.asarray(numbered, np.int64) - 1
    return int(chunk.samples - chunk.line_samples[idx].sum())


def _is_missing_target(status: int, text: str) -> bool:
    # InfluxDB 1.x answers a missing retention policy with 500, not 404
    return status == 404 or "retention policy not found" in text.lower()


def _first_reason(rejected: list[tuple[int | None, str, str]]) -> str:
    if not rejected:
        return "no detail"
    no, line, reason = rejected[0]
    where = f"line {no}" if no is not None else "line unknown"
    return f"{where}: {reason}: {line[:200]!r}" if line else f"{where}: {reason}"


def _ago(ts_s: float | None) -> str:
    if ts_s is None:
        return "never"
    return f"{time.time() - ts_s:.1f} s ago"


def _reason_counts(codes: NDArray[np.uint8]) -> dict[str, int]:
    values, counts = np.unique(codes, return_counts=True)
    return {REJECT_REASONS[int(c) - 1]: int(n) for c, n in zip(values, counts, strict=True)}
