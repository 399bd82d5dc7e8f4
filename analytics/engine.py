"""The KPI engine: on a schedule, turn new raw data in InfluxDB into components per machine and
window, written to ``kpi_*`` measurements.

Incremental and exact (``analytics.segments``): components are computed per *segment* (the time
between window edges) and a window's row is the sum of its segments. A run reads only the raw
samples that arrived since the last one (one chunked query per measurement family and site),
recomputes the segments they can change (the open one, and the one before while a stop that
crosses their edge is shorter than ``micro_stop_s``), and re-derives the hour, shift and day rows
those belong to from the segment rows it keeps. Late data is found by counting, in InfluxDB, the
points of the last ``lookback_s``: where the count differs from what the engine read, that look-
back is read again and recomputed. Segment rows are stored (``kpi_machine_segment``,
``kpi_site_segment``), so a restarted engine reads back its segments and only the look-back of
raw data. Points are stamped with their window's (segment's) start and keyed by the asset and
window tags, so writing one again overwrites it: re-running is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
from numpy.typing import NDArray

from analytics.calendar import zone
from analytics.compute import SiteComputer, SiteData, SiteResult
from analytics.config import KpiConfig
from analytics.green import CoefficientLibrary
from analytics.health import EngineMetrics
from analytics.lineformat import component_batch
from analytics.notes import DataNote, Notes
from analytics.reader import SiteReader
from analytics.segments import (
    NS_FIELDS,
    SUM_FIELDS,
    SegmentRow,
    SegmentStore,
    compute_segments,
    derive,
    merge_data,
    segment_start,
    segments_in,
    sliced,
    touched_start,
    window_sets,
)
from analytics.segments import _components as segment_components
from ingest.influx import InfluxQLReader, InfluxWriter
from zhizao.errors import ConfigError
from zhizao.influxql import ident, tag_equals, time_range
from zhizao.model import Batch, SeriesTable
from zhizao.retry import Episode
from zhizao.schema import (
    ENTERPRISE_TAG,
    KPI_SEGMENT,
    MACHINE_TAG,
    SITE_TAG,
    kpi_machine_measurement,
    kpi_site_measurement,
)
from zhizao.site import load_site

__all__ = ["EngineReport", "KpiEngine", "SiteState", "compute_range", "site_batch"]

log = logging.getLogger(__name__)
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
S_NS = 1_000_000_000


@dataclass(slots=True)
class EngineReport:
    """What one run did."""

    start_ns: int = 0
    end_ns: int = 0
    points_written: int = 0  # window rows (kpi_machine_*, kpi_site_* of hours, shifts, days)
    segment_points_written: int = 0  # kpi_machine_segment and kpi_site_segment rows
    machine_windows: int = 0
    points_read: int = 0  # raw samples (field values) returned by InfluxDB
    segments: int = 0  # segments computed from raw data
    late_rereads: int = 0  # sites whose look-back was read again because of late data
    duration_s: float = 0.0
    # wall time per phase: late-data check, raw read, segment computation, writes
    phase_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    data_notes: list[tuple[str, DataNote]] = field(default_factory=list)  # (site, note)
    # (site, segment start) -> per machine, the seconds with an unknown state code in the
    # segments this run computed (the metric counts what is new of them, analytics.health)
    unknown_state_s: dict[tuple[str, int], F64] = field(default_factory=dict)

    def add_notes(self, site: str, notes: Iterable[DataNote], where: str = "") -> None:
        for n in notes:
            self.notes.append(f"{site}{where}: {n.text}")
            self.data_notes.append((site, n))

    @contextlib.contextmanager
    def timing(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.phase_s[phase] = self.phase_s.get(phase, 0.0) + time.perf_counter() - t0


def compute_range(now_ns: int, cfg: KpiConfig, last_end_ns: int | None) -> tuple[int, int]:
    """[from, cutoff) to recompute: the look-back (or the back-fill on a first run) up to now - delay."""
    cutoff = now_ns - int(cfg.schedule.delay_s * S_NS)
    if last_end_ns is None:
        start = cutoff - int(cfg.schedule.backfill_s * S_NS)
    else:
        start = min(last_end_ns, cutoff) - int(cfg.schedule.lookback_s * S_NS)
    return start, cutoff


def site_batch(
    table: SeriesTable,
    result: SiteResult,
    prefix: str,
    *,
    cache: dict[tuple[object, ...], NDArray[np.int32]] | None = None,
) -> Batch:
    """Components of one computed site result (machine components and plant energy)."""
    kind = result.kind
    parts = [
        component_batch(
            table,
            kpi_machine_measurement(kind, prefix),
            result.tags,
            result.start_ns,
            result.components.columns(),
            cache=cache,
        )
    ]
    if kind != "shift":  # plant meters have no shift calendar; their day rows come from "day"
        parts.append(
            component_batch(
                table,
                kpi_site_measurement(kind, prefix),
                result.energy_tags,
                result.energy_start_ns,
                result.energy_fields,
                cache=cache,
            )
        )
    return Batch.concat(parts)


@dataclass(slots=True)
class SiteState:
    """What the engine keeps of one site between runs."""

    store: SegmentStore = field(default_factory=SegmentStore)
    data: SiteData | None = None  # raw samples (with the value carried into their first)
    known_ns: int | None = None  # cut-off of the last run: raw data read up to and including it
    counted_lo: int = 0  # ``seen`` holds every raw point read from here to ``known_ns``
    seen: dict[tuple[str, str], I64] = field(default_factory=dict)  # (measurement, field) -> ts


@dataclass(slots=True)
class RawRead:
    data: SiteData
    points: int
    seen: dict[tuple[str, str], I64]


class KpiEngine:
    """Computes and writes KPI components for the sites of one configuration."""

    def __init__(self, cfg: KpiConfig, *, sites: Iterable[str] | None = None) -> None:
        if cfg.influx is None:
            raise ConfigError(
                "the KPI engine needs an `influx` section",
                key="influx",
                expected="url and database",
            )
        self.cfg = cfg
        self.influx = cfg.influx
        # one series table for the engine's lifetime: the encoder caches each series' text once
        self._table = SeriesTable()
        self._series_ids: dict[tuple[object, ...], NDArray[np.int32]] = {}
        library = CoefficientLibrary.load(cfg.energy.coefficients)
        models = [load_site(p) for p in cfg.sites]
        wanted = set(sites or [])
        if wanted:
            unknown = wanted - {m.site for m in models}
            if unknown:
                raise ConfigError(
                    f"sites {sorted(unknown)} are not in the configuration", key="sites"
                )
            models = [m for m in models if m.site in wanted]
        self.computers = [SiteComputer(m, cfg, library) for m in models]
        self.site_reader = SiteReader(cfg)
        self.states = {c.site.site: SiteState() for c in self.computers}
        self.metrics = EngineMetrics(cfg.health.fail_after_runs)
        self.last_end_ns: int | None = None
        self._logged: set[str] = set()
        # (site, segment start) -> unknown-state seconds per machine already counted in the
        # metric: a segment recomputed (the open one, every run) adds only what is new
        self._unknown_counted: dict[tuple[str, int], F64] = {}
        # failed runs: a new failure text is logged at ERROR even inside a streak (zhizao.retry)
        self._runs = Episode(relog_on_change=True)

    @property
    def failed_runs(self) -> int:
        """Failed runs since the last success."""
        return self._runs.failures

    @property
    def total_failed_runs(self) -> int:
        return self._runs.total

    def _ids(self) -> dict[tuple[object, ...], NDArray[np.int32]]:
        """Series ids of the rows written (day rows add a date a day: start over now and then)."""
        if len(self._series_ids) > 200_000:
            self._series_ids.clear()
        return self._series_ids

    @property
    def _micro_ns(self) -> int:
        return int(self.cfg.micro_stop_s * S_NS)

    @property
    def _lookback_ns(self) -> int:
        return int(self.cfg.schedule.lookback_s * S_NS)

    # -- one run --------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[tuple[InfluxQLReader, InfluxWriter]]:
        """Clients for several runs (``run_once(conn=...)``): opening them costs more than a
        steady-state run's queries."""
        async with InfluxQLReader(self.influx) as reader, InfluxWriter(self.influx) as writer:
            yield reader, writer

    async def run_once(
        self,
        now_ns: int | None = None,
        *,
        conn: tuple[InfluxQLReader, InfluxWriter] | None = None,
    ) -> EngineReport:
        t0 = time.perf_counter()
        now = time.time_ns() if now_ns is None else now_ns
        start, cutoff = compute_range(now, self.cfg, self.last_end_ns)
        report = EngineReport(start, cutoff)
        if conn is None:
            async with self.connect() as fresh:
                return await self.run_once(now, conn=fresh)
        reader, writer = conn
        for computer in self.computers:
            try:
                await self._run_site(reader, writer, computer, cutoff, report)
            except BaseException:
                # what this run computed may not be stored: the next run starts over from the
                # stored segments (it recomputes from the first one missing), never from memory
                self.states[computer.site.site] = SiteState()
                raise
        self.last_end_ns = cutoff
        report.duration_s = time.perf_counter() - t0
        return report

    async def _run_site(
        self,
        reader: InfluxQLReader,
        writer: InfluxWriter,
        computer: SiteComputer,
        cutoff: int,
        report: EngineReport,
    ) -> None:
        state = self.states[computer.site.site]
        micro = self._micro_ns
        if state.known_ns is None or cutoff < state.known_ns or state.data is None:
            state.store = SegmentStore()
            r_lo = await self._resume(reader, computer, state.store, cutoff)
            rows = await self._recompute(reader, computer, state, r_lo, cutoff, report)
        else:
            # the open segment, and the one before while a stop crossing their edge is short
            r_lo = segment_start(computer, state.known_ns - micro)
            # the late-data count runs on the server while the new samples are read and the
            # segments computed; it decides before anything is written
            check = asyncio.create_task(self._late_data(reader, computer, state, cutoff))
            try:
                with report.timing("read"):
                    new = await self._read(
                        reader, computer, state.known_ns + 1, cutoff + 1, carry_in=False
                    )
                    state.data = merge_data(state.data, new.data)
                    for k, v in new.seen.items():
                        state.seen[k] = np.concatenate(
                            [state.seen.get(k, np.empty(0, np.int64)), v]
                        )
                report.points_read += new.points
                state.known_ns = cutoff
                rows = self._compute(computer, state, r_lo, cutoff, report)
                with report.timing("check"):
                    late = await check
            finally:
                check.cancel()
            if late:
                report.late_rereads += 1
                r_lo = min(r_lo, segment_start(computer, cutoff - self._lookback_ns))
                rows = await self._recompute(reader, computer, state, r_lo, cutoff, report)
        state.known_ns = cutoff
        state.store.put(rows)
        with report.timing("write"):
            await self._write_windows(writer, reader, computer, state.store, r_lo, cutoff, report)
            # only segments no later run recomputes (one write per segment): a restart
            # recomputes the open one from raw data anyway
            final = [r for r in rows if r.end_ns <= cutoff - micro]
            batch = self._segment_batch(computer, final)
            if len(batch):
                written = await writer.write_batch(self._table, batch)
                report.segment_points_written += written.lines_written
        self._forget(computer, state, cutoff)

    async def _recompute(
        self,
        reader: InfluxQLReader,
        computer: SiteComputer,
        state: SiteState,
        r_lo: int,
        cutoff: int,
        report: EngineReport,
    ) -> list[SegmentRow]:
        """Segments of [r_lo, cutoff) from raw data read again (with the carried-in samples)."""
        micro = self._micro_ns
        with report.timing("read"):
            raw = await self._read(reader, computer, r_lo - micro, cutoff + 1, carry_in=True)
        state.data, state.seen, state.counted_lo = raw.data, raw.seen, r_lo - micro
        report.points_read += raw.points
        return self._compute(computer, state, r_lo, cutoff, report)

    def _compute(
        self,
        computer: SiteComputer,
        state: SiteState,
        r_lo: int,
        cutoff: int,
        report: EngineReport,
    ) -> list[SegmentRow]:
        """Segments of [r_lo, cutoff) from the raw data held. Their windows are written before
        them, so a stored segment always has its windows written (a restart re-derives from
        the first segment not stored); segment rows are stored once final (ended
        ``micro_stop_s`` before the cut-off)."""
        assert state.data is not None
        s, e = segments_in(computer, r_lo, cutoff)
        # the segment before carries in where an IN_CYCLE stretch without a part began
        before = state.store.rows.get(segment_start(computer, int(s[0]) - 1)) if len(s) else None
        with report.timing("compute"):
            rows, notes = compute_segments(computer, state.data, s, np.minimum(e, cutoff), cutoff,
                                           before)  # fmt: skip
        report.segments += len(rows)
        report.add_notes(computer.site.site, notes)
        for r in rows:  # a re-read later in the run replaces what this computation found
            if r.unknown_s is not None:
                report.unknown_state_s[(computer.site.site, r.start_ns)] = r.unknown_s
        return rows

    def _count_unknown(self, rep: EngineReport) -> dict[tuple[str, str], float]:
        """(site, machine) -> the unknown-state seconds a successful run adds to what earlier
        runs counted of the same segments (the open segment is recomputed every run)."""
        machines = {c.site.site: list(c.paths) for c in self.computers}
        out: dict[tuple[str, str], float] = {}
        for key, secs in rep.unknown_state_s.items():
            counted = self._unknown_counted.get(key)
            new = secs if counted is None else np.maximum(secs - counted, 0.0)
            for j in np.flatnonzero(new > 0).tolist():  # machines with unknown codes only
                k = (key[0], machines[key[0]][j])
                out[k] = out.get(k, 0.0) + float(new[j])
            self._unknown_counted[key] = secs if counted is None else np.maximum(counted, secs)
        # a later run recomputes no segment starting before its look-back (segments are an
        # hour at most)
        oldest = rep.end_ns - self._lookback_ns - 3600 * S_NS
        for key in [k for k in self._unknown_counted if k[1] < oldest]:
            del self._unknown_counted[key]
        return out

    async def _write_windows(
        self,
        writer: InfluxWriter,
        reader: InfluxQLReader,
        computer: SiteComputer,
        store: SegmentStore,
        lo: int,
        hi: int,
        report: EngineReport,
    ) -> None:
        batches: list[Batch] = []
        for kind in self.cfg.windows:
            result, notes = derive(computer, store, kind, lo, hi)
            report.machine_windows += len(result.components)
            report.add_notes(computer.site.site, map(Notes.missing_segment, notes), f" {kind}")
            report.add_notes(computer.site.site, _count_notes(kind, result))
            batches.append(
                site_batch(self._table, result, self.cfg.measurement_prefix, cache=self._ids())
            )
        batch = Batch.concat(batches)
        if len(batch):
            written = await writer.write_batch(self._table, batch)
            report.points_written += written.lines_written
            if written.rejected:
                report.notes.append(f"components refused by the encoder: {written.rejected}")
        if "day" in self.cfg.windows:
            months = await self._month_rollup(reader, computer, lo, hi)
            if len(months):
                written = await writer.write_batch(self._table, months)
                report.points_written += written.lines_written

    def _forget(self, computer: SiteComputer, state: SiteState, cutoff: int) -> None:
        """Keep the segments of the windows a later run may re-derive, the raw data its
        segments need, and the timestamps its late-data check counts."""
        look = self._lookback_ns
        state.store.prune(touched_start(computer, self.cfg.windows, cutoff - look, cutoff))
        if state.data is not None:
            state.data = sliced(state.data, segment_start(computer, cutoff - self._micro_ns)
                                - self._micro_ns)  # fmt: skip
        keep_from = max(state.counted_lo, cutoff - look)
        state.seen = {k: v[v >= keep_from] for k, v in state.seen.items()}
        state.counted_lo = keep_from

    # -- reading --------------------------------------------------------------------------------

    async def _read(
        self, reader: InfluxQLReader, computer: SiteComputer, lo: int, hi: int, *, carry_in: bool
    ) -> RawRead:
        """Raw samples of the site in [lo, hi) (one statement per measurement family), with the
        last sample before ``lo`` of every signal when ``carry_in``."""
        plans, statements = self.site_reader.statements(
            computer.site, lo, hi, carry_in=carry_in, tag_columns=True
        )
        if not statements or hi <= lo:
            return RawRead(SiteData(), 0, {})
        # chunked: a server-side max-row-limit must never truncate a window silently
        whole = await reader.query(";".join(statements), chunked=True, chunk_size=10_000)
        ranged = {i for i, st in enumerate(statements) if " last(" not in st}
        points = 0
        seen: dict[tuple[str, str], list[I64]] = {}
        for sr in whole:  # one series per range statement: count before splitting per tag set
            tags = set(self.site_reader.tag_keys(sr.name)) if sr.statement_id in ranged else set()
            for fname, col in sr.values.items():
                if fname in tags:
                    continue
                ok = _present(col)
                points += int(ok.sum())
                if sr.statement_id in ranged:
                    seen.setdefault((sr.name, fname), []).append(sr.time_ns[ok])
        series = self.site_reader.split_by_tags(whole)
        data = self.site_reader.assemble(computer.site, plans, series)
        return RawRead(data, points, {k: np.concatenate(v) for k, v in seen.items()})

    async def _late_data(
        self, reader: InfluxQLReader, computer: SiteComputer, state: SiteState, cutoff: int
    ) -> bool:
        """Whether InfluxDB holds other points in the look-back than the engine read there
        (late, replayed or deleted data): one count() per measurement family."""
        assert state.known_ns is not None
        lo = max(cutoff - self._lookback_ns, state.counted_lo)
        hi = state.known_ns + 1
        if hi <= lo:
            return False
        statements = self.site_reader.count_statements(computer.site, lo, hi)
        if not statements:
            return False
        db: dict[tuple[str, str], int] = {}
        for sr in await reader.query(";".join(statements)):
            for fname, col in sr.values.items():
                v = col[0] if len(col) else 0
                db[(sr.name, fname)] = int(v) if v is not None and np.isfinite(float(v)) else 0
        ours = {k: int(np.count_nonzero((v >= lo) & (v < hi))) for k, v in state.seen.items()}
        keys = set(db) | set(ours)
        return any(db.get(k, 0) != ours.get(k, 0) for k in keys)

    async def _resume(
        self, reader: InfluxQLReader, computer: SiteComputer, store: SegmentStore, cutoff: int
    ) -> int:
        """First run of a site in this process: read back the stored segments of the windows
        the look-back touches and return where raw recomputation starts (the look-back, or the
        first segment not stored, or the back-fill when nothing is)."""
        kinds = self.cfg.windows
        fresh = touched_start(computer, kinds, cutoff - int(self.cfg.schedule.backfill_s * S_NS),
                              cutoff)  # fmt: skip
        fresh = touched_start(computer, kinds, fresh, cutoff)  # a shift crossing into it
        lo = min(fresh, touched_start(computer, kinds, cutoff - self._lookback_ns, cutoff))
        stored = await self._load_segments(reader, computer, lo, cutoff)
        if not stored:
            return fresh
        r_lo = segment_start(computer, max(cutoff - self._lookback_ns, fresh))
        for _ in range(8):  # a few windows deep at most
            w_lo = touched_start(computer, kinds, r_lo, cutoff)
            s, e = segments_in(computer, w_lo, r_lo)
            gap = next(
                (int(a) for a, b in zip(s.tolist(), e.tolist(), strict=True)
                 if a not in stored or stored[a].end_ns != b),
                None,
            )  # fmt: skip
            if gap is None or gap >= r_lo:
                break
            r_lo = max(segment_start(computer, gap), fresh)
        store.put(r for a, r in stored.items() if a < r_lo)
        return r_lo

    async def _load_segments(
        self, reader: InfluxQLReader, computer: SiteComputer, lo: int, hi: int
    ) -> dict[int, SegmentRow]:
        """Stored segment rows of [lo, hi) that hold every machine and the plant row."""
        site = computer.site
        prefix = self.cfg.measurement_prefix
        where = tag_equals({SITE_TAG: site.site, ENTERPRISE_TAG: site.enterprise})
        q = ";".join(
            f"SELECT * FROM {ident(m)} WHERE {where} AND {time_range(lo, hi)} GROUP BY *"
            for m in (kpi_machine_measurement(KPI_SEGMENT, prefix),
                      kpi_site_measurement(KPI_SEGMENT, prefix))
        )  # fmt: skip
        series = await reader.query(q, chunked=True, chunk_size=10_000)
        machines = {m: j for j, m in enumerate(computer.paths)}
        n = len(machines)
        ns: dict[int, I64] = {}
        val: dict[int, F64] = {}
        have: dict[int, set[int]] = {}
        ends: dict[int, int] = {}
        energy: dict[int, dict[str, float]] = {}
        for sr in series:
            if sr.statement_id == 1:
                for i, t in enumerate(sr.time_ns.tolist()):
                    energy[t] = {
                        k: float(v[i])
                        for k, v in sr.values.items()
                        if v[i] is not None and np.isfinite(float(v[i]))
                    }
                continue
            j = machines.get(sr.tags.get(MACHINE_TAG, ""))
            if j is None:
                continue
            cols = {k: np.asarray(v, np.float64) for k, v in sr.values.items()}
            zero = np.zeros(len(sr.time_ns))
            ns_cols = np.column_stack(
                [np.rint(np.nan_to_num(cols.get(f, zero)) * 1e9) for f in NS_FIELDS]
            ).astype(np.int64)
            v_cols = np.column_stack([np.nan_to_num(cols.get(f, zero)) for f in SUM_FIELDS])
            for i, t in enumerate(sr.time_ns.tolist()):  # segments x machines, not samples
                if t not in ns:
                    ns[t] = np.zeros((n, len(NS_FIELDS)), np.int64)
                    val[t] = np.zeros((n, len(SUM_FIELDS)), np.float64)
                    have[t] = set()
                ns[t][j] = ns_cols[i]
                val[t][j] = v_cols[i]
                have[t].add(j)
                ends[t] = t + int(ns_cols[i][0])  # calendar_s
        out: dict[int, SegmentRow] = {}
        for t in ns:
            if len(have[t]) == n and t in energy:
                out[t] = SegmentRow(t, ends[t], ns[t], val[t], energy[t])
        return out

    def _segment_batch(self, computer: SiteComputer, rows: list[SegmentRow]) -> Batch:
        """``kpi_machine_segment`` (every component, like the window rows) and
        ``kpi_site_segment`` rows (plant meters)."""
        if not rows:
            return Batch.empty()
        machines = list(computer.paths)
        paths = [computer.paths[m].tags() for m in machines]
        prefix = self.cfg.measurement_prefix
        comp = segment_components(
            computer,
            machines * len(rows),
            [r.ns[j] for r in rows for j in range(len(machines))],
            [r.val[j] for r in rows for j in range(len(machines))],
        )
        ts = np.repeat(np.array([r.start_ns for r in rows], np.int64), len(machines))
        tags = paths * len(rows)
        site_tags = {ENTERPRISE_TAG: computer.site.enterprise, SITE_TAG: computer.site.site}
        names = sorted({k for r in rows for k in r.energy})
        e_fields = {k: np.array([r.energy.get(k, np.nan) for r in rows]) for k in names}
        return Batch.concat(
            [
                component_batch(self._table, kpi_machine_measurement(KPI_SEGMENT, prefix), tags, ts,
                                comp.columns(), cache=self._ids()),
                component_batch(self._table, kpi_site_measurement(KPI_SEGMENT, prefix),
                                [site_tags] * len(rows),
                                np.array([r.start_ns for r in rows], np.int64), e_fields,
                                cache=self._ids()),
            ]
        )  # fmt: skip

    # -- rebuild --------------------------------------------------------------------------------

    async def rebuild(
        self,
        site: str,
        lo_ns: int,
        hi_ns: int,
        *,
        now_ns: int | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> EngineReport:
        """Recompute [lo, hi) of ``site`` from raw data (after a site-model change), widened to
        whole windows and cut at ``now - delay_s``, a local day at a time; segment and window
        rows are overwritten. The scheduled engine never needs this."""
        computer = next((c for c in self.computers if c.site.site == site), None)
        if computer is None:
            raise ConfigError(f"site {site!r} is not in the configuration", key="site")
        now = time.time_ns() if now_ns is None else now_ns
        cutoff = now - int(self.cfg.schedule.delay_s * S_NS)
        kinds = self.cfg.windows
        a = touched_start(computer, kinds, lo_ns, min(hi_ns, cutoff))
        a = touched_start(computer, kinds, a, min(hi_ns, cutoff))
        b = min(_touched_end(computer, kinds, lo_ns, hi_ns), cutoff)
        report = EngineReport(a, b)
        if b <= a:
            return report
        micro = self._micro_ns
        store = SegmentStore()
        t0 = time.perf_counter()
        async with InfluxQLReader(self.influx) as reader, InfluxWriter(self.influx) as writer:
            chunk_lo = a
            while chunk_lo < b:
                chunk_hi = min(_next_day(computer, chunk_lo), b)
                known = min(chunk_hi + micro, cutoff)
                raw = await self._read(reader, computer, chunk_lo - micro, known + 1, carry_in=True)
                report.points_read += raw.points
                s, e = segments_in(computer, chunk_lo, chunk_hi)
                before = store.rows.get(segment_start(computer, chunk_lo - 1))
                rows, notes = compute_segments(computer, raw.data, s, np.minimum(e, chunk_hi),
                                               known, before)  # fmt: skip
                store.put(rows)
                report.segments += len(rows)
                report.add_notes(site, notes)
                await self._write_windows(writer, reader, computer, store, chunk_lo, chunk_hi,
                                          report)  # fmt: skip
                batch = self._segment_batch(computer, rows)
                if len(batch):
                    written = await writer.write_batch(self._table, batch)
                    report.segment_points_written += written.lines_written
                if progress is not None:
                    progress(
                        f"{site}: {_iso(chunk_lo, computer)} .. {_iso(chunk_hi, computer)}: "
                        f"{len(rows)} segments from {raw.points} raw points, "
                        f"{time.perf_counter() - t0:.1f} s"
                    )
                store.prune(touched_start(computer, kinds, chunk_hi, max(b, chunk_hi + 1)))
                chunk_lo = chunk_hi
        # a running engine of this process continues from what it holds
        self.states[site] = SiteState()
        report.duration_s = time.perf_counter() - t0
        return report

    async def _month_rollup(
        self, reader: InfluxQLReader, computer: SiteComputer, start_ns: int, cutoff_ns: int
    ) -> Batch:
        """``kpi_site_month``: the plant-meter day rows of every local month this run touched,
        summed (``days`` = day rows). Cross-site yearly figures (the commission's) then read
        twelve points per site instead of 365; the month rows are rewritten whenever a day of
        theirs is, so they always equal the sum of their days."""
        site = computer.site
        tzinfo = zone(site.timezone)
        first = datetime.fromtimestamp(start_ns / S_NS, tzinfo).date().replace(day=1)
        last = datetime.fromtimestamp(max(start_ns, cutoff_ns - 1) / S_NS, tzinfo).date()
        bounds: list[tuple[int, int]] = []
        m = first
        while m <= last:  # months, not samples
            nxt = date(m.year + (m.month == 12), m.month % 12 + 1, 1)
            lo = int(datetime(m.year, m.month, 1, tzinfo=tzinfo).timestamp()) * S_NS
            hi = int(datetime(nxt.year, nxt.month, 1, tzinfo=tzinfo).timestamp()) * S_NS
            bounds.append((lo, hi))
            m = nxt
        prefix = self.cfg.measurement_prefix
        where = tag_equals({SITE_TAG: site.site, ENTERPRISE_TAG: site.enterprise})
        day = ident(kpi_site_measurement("day", prefix))
        q = ";".join(
            f"SELECT sum(*), count(kgce) FROM {day} WHERE {where} AND {time_range(lo, hi)}"
            for lo, hi in bounds
        )
        series = await reader.query(q)
        tags: list[dict[str, str]] = []
        ts: list[int] = []
        rows: list[dict[str, float]] = []
        for s in series:
            values = {
                k[4:]: float(v[0])
                for k, v in s.values.items()
                if k.startswith("sum_") and len(v) and np.isfinite(v[0])
            }
            if not values:
                continue
            values["days"] = float(s.values["count"][0]) if "count" in s.values else 0.0
            tags.append({ENTERPRISE_TAG: site.enterprise, SITE_TAG: site.site})
            ts.append(bounds[s.statement_id][0])
            rows.append(values)
        if not rows:
            return Batch.empty()
        names = sorted({k for r in rows for k in r})
        cols = {n: np.array([r.get(n, np.nan) for r in rows], np.float64) for n in names}
        return component_batch(
            self._table, kpi_site_measurement("month", prefix), tags, np.array(ts, np.int64), cols
        )

    async def run_forever(self, stop: asyncio.Event | None = None) -> None:
        """Run every ``schedule.interval_s`` until ``stop`` is set. A failed run (InfluxDB down)
        is retried on the next tick; a failure is logged at ERROR whenever it differs from the
        last one logged (repeats at DEBUG), the recovery at WARNING."""
        stop = stop or asyncio.Event()
        async with self.connect() as conn:  # the clients reconnect by themselves
            while not stop.is_set():
                self.metrics.started()
                try:
                    rep = await self.run_once(conn=conn)
                except Exception as exc:  # a failed run is retried on the next tick, never fatal
                    self._failed(exc)
                else:
                    self._succeeded(rep)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.cfg.schedule.interval_s)

    def _succeeded(self, rep: EngineReport) -> None:
        failed = self._runs.recovered()
        if failed:
            log.warning("kpi runs recovered after %d failed runs", failed)
        written = rep.points_written + rep.segment_points_written
        self.metrics.succeeded(rep.duration_s, rep.points_read, written, rep.segments,
                               rep.machine_windows, rep.late_rereads)  # fmt: skip
        for note in rep.notes:  # data-quality notes, each logged once (no log spam)
            if note not in self._logged:
                self._logged.add(note)
                log.warning("kpi data quality: %s", note)
        kinds: dict[tuple[str, str], set[str]] = {}
        for site, n in rep.data_notes:
            kinds.setdefault((site, n.kind), set()).add(n.text)
        self.metrics.data_notes(
            [c.site.site for c in self.computers], {k: len(v) for k, v in kinds.items()}
        )
        self.metrics.unknown_state(self._count_unknown(rep))
        log.info(
            "kpi run: %d raw points read, %d segments, %d machine windows, %d points written "
            "(%d segment rows), %d late-data re-reads, %.2f s",
            rep.points_read, rep.segments, rep.machine_windows, rep.points_written,
            rep.segment_points_written, rep.late_rereads, rep.duration_s,
        )  # fmt: skip

    def _failed(self, exc: Exception) -> None:
        text = str(exc)
        # a new failure is news even inside a streak of failed runs; the same one repeated is not
        level = logging.ERROR if self._runs.failed(text) else logging.DEBUG
        self.metrics.failed_run(text)
        log.log(
            level,
            "kpi run failed (%d in a row), retrying every %.0f s: %s",
            self.failed_runs,
            self.cfg.schedule.interval_s,
            text,
        )


def _present(col: NDArray[np.generic]) -> NDArray[np.bool_]:
    if col.dtype.kind == "f":
        return np.asarray(~np.isnan(col))
    if col.dtype.kind == "O":
        return np.asarray(np.array([v is not None for v in col.tolist()], bool))
    return np.ones(len(col), bool)


def _count_notes(kind: str, result: SiteResult) -> list[DataNote]:
    """The derived rows' count checks (as ``SiteComputer.compute`` names them)."""
    c = result.components
    above = c.gq > c.pq
    negative = (c.sq < 0) | (c.gq < 0) | (c.rq < 0)
    out = []
    for machine in sorted({result.machine[i] for i in np.flatnonzero(above).tolist()}):
        out.append(
            Notes.count_check(
                f"{machine}: good parts exceed produced parts in {kind} windows: check "
                "the counters' rollover limits (a reset read as a wrap?) and roles"
            )
        )
    for machine in sorted({result.machine[i] for i in np.flatnonzero(negative).tolist()}):
        out.append(
            Notes.count_check(
                f"{machine}: negative part counts in {kind} windows: check the counters "
                "(the good/scrap split does not match the total)"
            )
        )
    return out


def _touched_end(computer: SiteComputer, kinds: Iterable[str], lo: int, hi: int) -> int:
    t = hi
    for kind in kinds:
        for _, w in window_sets(computer, kind, lo, hi):
            if len(w.end_ns):
                t = max(t, int(w.end_ns[-1]))
    return t


def _next_day(computer: SiteComputer, t_ns: int) -> int:
    d = datetime.fromtimestamp(t_ns // S_NS, computer.tz).date()
    nxt = date.fromordinal(d.toordinal() + 1)
    return int(datetime(nxt.year, nxt.month, nxt.day, tzinfo=computer.tz).timestamp()) * S_NS


def _iso(t_ns: int, computer: SiteComputer) -> str:
    return datetime.fromtimestamp(t_ns / S_NS, computer.tz).isoformat(timespec="minutes")
