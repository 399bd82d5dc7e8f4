"""What runs every source: supervised sessions, honest emits, connection and quality markers.

A source builds a session (connect, subscribe) and hands its long-running tasks (flush, poll,
watchdog, ...) to ``SourceRuntime.supervise``; they run as children of one ``asyncio.TaskGroup``.
The first child that fails or returns ends the session: the others are cancelled, the source's
own loop disconnects, backs off and reconnects. Nothing stops silently:

* a lost connection (``SourceUnavailable``, ``ConnectionError``, ``TimeoutError``, or whatever
  the source's ``connection_lost`` says) is an outage, logged by the source as before;
* any other failure is a *task failure*: counted per task (``SourceStats.task_failures``,
  ``zhizao_gateway_source_task_failures_total{task}``), logged once at ERROR with its traceback
  when a task starts failing and once at INFO when a session has run ``recovered_after_s``
  without failures again (a fault that recurs every session is counted, not logged each time).

``emit`` stores a batch in the outbox and counts what it stored: device samples in
``stats.samples``, the gateway's own series (connection, data-quality markers) not at all. A
refusal of the outbox (``OutboxFull``: policy ``refuse_new``, or a full disk) is counted per
reason in ``stats.rejected`` (``outbox_full``, ``disk_full``) and never counted as collected.
``flush`` keeps a batch whose emit raised and stores it first at the next flush, so a failing
flush ends the session but loses nothing already received, up to ``max_pending_samples``: a
store that keeps failing (not a refusal, which is counted at once) would otherwise grow the
gateway's memory without bound, so beyond it the oldest kept batches are dropped and their
device samples counted in ``stats.rejected["store_failing"]``, logged once per episode.

``QualityMarkers`` holds the per-signal quality state behind the ``data_quality`` markers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from gateway.outbox import OutboxFull
from gateway.sources.base import SampleSink, SourceStats, connection_key
from zhizao.errors import SourceUnavailable
from zhizao.model import Batch
from zhizao.private import write_private
from zhizao.quality import Quality
from zhizao.retry import Episode

__all__ = [
    "Drained",
    "QualityMarkers",
    "SourceRuntime",
    "TaskFailed",
    "Work",
    "is_connection_loss",
]

Work = Callable[[], Awaitable[None]]
# a batch with its OPC UA server timestamps and status codes (None for other sources)
Drained = tuple[Batch, NDArray[np.int64] | None, NDArray[np.uint32] | None]
UNKNOWN_MARK = 255  # no marker written since the gateway started: the first sample writes one


class TaskFailed(Exception):
    """A supervised task of a session failed (not a lost connection): the session ended."""

    def __init__(self, task: str, cause: BaseException) -> None:
        self.task = task
        self.cause = cause
        super().__init__(f"task {task} failed: {type(cause).__name__}: {cause}")


class _ChildEnded(Exception):
    def __init__(self, task: str, cause: BaseException) -> None:
        self.task = task
        self.cause = cause
        super().__init__(task)


def is_connection_loss(exc: BaseException) -> bool:
    """The remote side is gone or silent: an outage, not a bug of the task."""
    return isinstance(exc, SourceUnavailable | ConnectionError | TimeoutError)


# samples a source keeps in memory while storing them fails (about 40 MB of columns)
MAX_PENDING_SAMPLES = 1_000_000


class SourceRuntime:
    """Supervision, emits and connection markers of one source (see the module docstring)."""

    def __init__(
        self,
        stats: SourceStats,
        sink: SampleSink,
        log: logging.Logger,
        *,
        enterprise: str,
        site: str,
        gateway_id: str,
        connection_lost: Callable[[BaseException], bool] = is_connection_loss,
        markers: QualityMarkers | None = None,
        max_pending_samples: int = MAX_PENDING_SAMPLES,
    ) -> None:
        self.stats = stats
        self.max_pending_samples = max_pending_samples
        self.sink = sink
        self.log = log
        self.connection_lost = connection_lost
        self.markers = markers
        self.conn_series = sink.series_index(
            connection_key(enterprise, site, gateway_id, stats.name)
        )
        own = [self.conn_series]
        if markers is not None:
            own.extend(markers.quality_series.tolist())
        # the gateway's own series: stored like samples, never counted as the device's
        self._own = np.array(sorted(set(own)), np.int32)
        self._episodes: dict[str, Episode] = {}  # task -> its failure episode
        self._pending: deque[Drained] = deque()
        self._pending_n = 0  # samples in _pending
        self._dropping = Episode()

    # ------------------------------------------------------------------ supervision

    async def supervise(
        self,
        tasks: Sequence[tuple[str, Work]],
        *,
        on_start: Sequence[tuple[str, Work]] = (),
        recovered_after_s: float,
    ) -> None:
        """Run ``tasks`` until the first one ends; always raises (the session is over).

        ``on_start`` steps run once, in order, while the tasks already run (the connection
        marker): a failing step ends the session like a failing task. Raises ``TaskFailed``, or
        the cause itself when it is a lost connection."""
        try:
            async with asyncio.TaskGroup() as group:
                for name, work in tasks:
                    group.create_task(self._child(name, work), name=f"{self.stats.name}-{name}")
                for name, work in on_start:
                    try:
                        await work()
                    except Exception as exc:
                        raise _ChildEnded(name, exc) from exc
                await asyncio.sleep(recovered_after_s)
                self._recovered()
        except BaseExceptionGroup as group_exc:
            ended = [e for e in group_exc.exceptions if isinstance(e, _ChildEnded)]
            others = [e for e in group_exc.exceptions if not isinstance(e, _ChildEnded)]
            if others:  # KeyboardInterrupt and the like: not ours to handle
                raise others[0] from None
            raise self._session_ended(ended) from None
        # unreachable: the children run until cancelled or failed
        raise AssertionError("supervised tasks ended without an exception")  # pragma: no cover

    async def _child(self, name: str, work: Work) -> None:
        try:
            await work()
        except Exception as exc:
            raise _ChildEnded(name, exc) from exc
        # a loop that returns stops collecting as surely as one that raises
        raise _ChildEnded(name, RuntimeError(f"the {name} task returned during the session"))

    def _session_ended(self, ended: list[_ChildEnded]) -> BaseException:
        first: BaseException | None = None
        for child in ended:
            if self.connection_lost(child.cause):
                first = first or child.cause
                continue
            self._task_failed(child.task, child.cause)
            first = first or TaskFailed(child.task, child.cause)
        assert first is not None
        return first

    def _task_failed(self, task: str, cause: BaseException) -> None:
        self.stats.task_failures[task] += 1
        text = f"{type(cause).__name__}: {cause}"
        self.stats.last_error = f"task {task}: {text}"
        if not self._episodes.setdefault(task, Episode()).failed(text):
            return  # logged when it started failing; counted every time
        self.log.error(
            "%s source %s: its %s task failed (%s); the session ends and is rebuilt with backoff "
            "(counted in zhizao_gateway_source_task_failures_total, logged again only after a "
            "recovery)",
            self.stats.kind,
            self.stats.name,
            task,
            text,
            exc_info=cause,
        )

    def _recovered(self) -> None:
        failing = sorted(t for t, e in self._episodes.items() if e.active)
        if not failing:
            return
        self.log.info(
            "%s source %s: running again after the failure of its %s task(s) (%s failures counted)",
            self.stats.kind,
            self.stats.name,
            ", ".join(failing),
            sum(self._episodes[t].recovered() for t in failing),
        )

    async def guarded(self, task: str, work: Work) -> bool:
        """``work`` outside a session (after it ended): a failure is counted and logged like a
        task failure, and the source goes on to reconnect. False if it failed."""
        try:
            await work()
        except Exception as exc:
            self._task_failed(task, exc)
            return False
        return True

    @property
    def failing(self) -> dict[str, str]:
        return {t: e.detail for t, e in self._episodes.items() if e.active}

    # ------------------------------------------------------------------ emits

    def own(self, series: Iterable[int]) -> None:
        """Mark series as the gateway's own (not counted as device samples)."""
        self._own = np.union1d(self._own, np.fromiter(series, np.int32)).astype(np.int32)

    async def emit(
        self,
        batch: Batch,
        *,
        server_ts_ns: NDArray[np.int64] | None = None,
        status_code: NDArray[np.uint32] | None = None,
    ) -> bool:
        """Store ``batch``; False when the outbox refused it (counted by reason). Any other
        failure raises (the caller's task fails)."""
        if len(batch) == 0:
            return True
        data = ~np.isin(batch.series, self._own)
        try:
            await self.sink.emit(batch, server_ts_ns=server_ts_ns, status_code=status_code)
        except OutboxFull as exc:
            # the outbox logged the episode; the source counts the device samples it lost
            n = int(np.count_nonzero(data))
            if n:
                self.stats.reject(exc.reason, n)
            if self.markers is not None:
                self.markers.forget(batch.series)
            return False
        if data.any():
            self.stats.samples += int(np.count_nonzero(data))
            self.stats.last_sample_ns = max(self.stats.last_sample_ns, int(batch.ts_ns[data].max()))
        return True

    async def flush(self, drained: Drained | None) -> None:
        """Emit ``drained`` after anything an earlier flush could not store. If an emit raises,
        the batches stay for the next flush (nothing received is lost) and the error goes up."""
        if drained is not None and len(drained[0]):
            self._pending.append(drained)
            self._pending_n += len(drained[0])
            self._bound_pending()
        while self._pending:
            batch, server_ts_ns, status = self._pending[0]
            await self.emit(batch, server_ts_ns=server_ts_ns, status_code=status)
            self._pending_n -= len(self._pending.popleft()[0])
        if self._dropping.active:
            n = self._dropping.recovered()
            self.log.info("%s: storing works again (%d batches were dropped)", self.stats.name, n)

    def _bound_pending(self) -> None:
        """Drop the oldest kept batches beyond ``max_pending_samples`` (the newest always
        stays), counting their device samples as rejected (``store_failing``)."""
        while self._pending_n > self.max_pending_samples and len(self._pending) > 1:
            batch = self._pending.popleft()[0]
            self._pending_n -= len(batch)
            lost = int(np.count_nonzero(~np.isin(batch.series, self._own)))
            if lost:
                self.stats.reject("store_failing", lost)
            if self.markers is not None:
                self.markers.forget(batch.series)
            if self._dropping.failed():
                self.log.error(
                    "%s: storing in the outbox keeps failing; beyond %d kept samples the oldest "
                    "are dropped and counted as rejected (store_failing)",
                    self.stats.name,
                    self.max_pending_samples,
                )

    @property
    def pending_samples(self) -> int:
        return self._pending_n

    async def connection(self, connected: bool) -> None:
        """One sample of the connection series: an outage is the interval between a 0 and a 1."""
        await self.emit(
            Batch(
                series=np.array([self.conn_series], np.int32),
                ts_ns=np.array([time.time_ns()], np.int64),
                value_f64=np.zeros(1, np.float64),
                value_i64=np.array([int(connected)], np.int64),
                quality=np.array([Quality.GOOD], np.uint8),
            )
        )


class QualityMarkers:
    """Per-signal data-quality state; only transitions become ``data_quality`` samples.

    A signal that goes Bad (or Uncertain, or delivers no value) writes its ``Quality`` code at
    the sample's timestamp, a good value afterwards writes 0: a KPI engine reading the markers
    sees the outage as an interval. State starts unknown, so the first sample of every signal
    after a gateway start writes its marker. A stopped gateway's last markers (bad, at the
    stop: ``bad_since_ns``, kept in ``state_file``) lie after the old source timestamp of a
    value that has not changed since, so a good first value older than them is marked good just
    after them: the device vouches that the value held, and a restart can never leave an
    unchanged signal marked bad until its next change. Markers the outbox refused are
    forgotten (state unknown again), so the next sample of the signal writes its marker again.
    """

    def __init__(self, quality_series: NDArray[np.int32], state_file: Path | None = None) -> None:
        self.quality_series = np.asarray(quality_series, np.int32)
        self.state_file = state_file
        n = len(self.quality_series)
        self.code = np.full(n, UNKNOWN_MARK, np.uint8)
        # time of each slot's last marker; before the first, the previous process's last bad
        # markers (0 when there were none)
        self.ts_ns = np.full(n, self._read_bad_since(), np.int64)

    def _read_bad_since(self) -> int:
        """When the previous process marked every signal bad (its stop), or 0."""
        if self.state_file is None:
            return 0
        try:
            return max(0, int(self.state_file.read_text(encoding="utf-8").strip()))
        except (OSError, ValueError):
            return 0

    def transitions(
        self,
        slot: NDArray[np.int64],
        ts_ns: NDArray[np.int64],
        srv_ns: NDArray[np.int64],
        code: NDArray[np.uint8],
    ) -> Batch:
        """Markers for the samples of one drain (arrival order kept per slot)."""
        order = np.argsort(slot, kind="stable")
        s, t, sv, c = slot[order], ts_ns[order], srv_ns[order], code[order]
        first = np.concatenate(([True], s[1:] != s[:-1]))
        prev = np.empty_like(c)
        prev[1:] = c[:-1]
        prev[first] = self.code[s[first]]
        ci = np.flatnonzero(c != prev)
        if not ci.size:
            return Batch.empty()
        cs, ct, cc = s[ci], t[ci], c[ci]
        cfirst = np.concatenate(([True], cs[1:] != cs[:-1]))
        prev_ts = np.empty_like(ct)
        prev_ts[1:] = ct[:-1]
        prev_ts[cfirst] = self.ts_ns[cs[cfirst]]
        # a good value re-sent after an outage keeps its old source timestamp (it did not
        # change): the signal is good again when it is seen, at the server's time
        stale_ts = (cc == Quality.GOOD) & (ct <= prev_ts)
        mts = np.where(stale_ts, np.maximum(sv[ci], prev_ts + 1), ct)
        clast = np.concatenate((cs[1:] != cs[:-1], [True]))
        self.code[cs[clast]] = cc[clast]
        self.ts_ns[cs[clast]] = mts[clast]
        return self._batch(cs, mts, cc)

    def all_bad(self, ts_ns: int) -> Batch:
        """The session is gone: every signal not already bad is bad from ``ts_ns``. The time is
        kept in ``state_file`` (a full disk only loses that refinement, never the source)."""
        if self.state_file is not None:
            with contextlib.suppress(OSError):
                write_private(self.state_file, str(ts_ns))
        s = np.flatnonzero(self.code != Quality.BAD)
        if not s.size:
            return Batch.empty()
        ts = np.maximum(np.int64(ts_ns), self.ts_ns[s] + 1)
        self.code[s] = Quality.BAD
        self.ts_ns[s] = ts
        return self._batch(s, ts, np.full(len(s), Quality.BAD, np.uint8))

    def forget(self, series: NDArray[np.int32]) -> None:
        """Markers of these series were not stored: their next sample writes one again."""
        self.code[np.isin(self.quality_series, series)] = UNKNOWN_MARK

    def _batch(
        self, slot: NDArray[np.int64], ts_ns: NDArray[np.int64], code: NDArray[np.uint8]
    ) -> Batch:
        n = len(slot)
        return Batch(
            series=self.quality_series[slot],
            ts_ns=np.asarray(ts_ns, np.int64),
            value_f64=np.zeros(n, np.float64),
            value_i64=code.astype(np.int64),
            quality=np.zeros(n, np.uint8),  # the marker itself is a good sample
        )
