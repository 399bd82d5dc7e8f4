"""The KPI engine: on a schedule, read raw windows from InfluxDB, compute components per machine
and window, write them to ``kpi_*`` measurements.

Points are stamped with their window's start and keyed by the asset and window tags, so writing
a window again overwrites it: re-running is idempotent, and every run recomputes the windows of
the last ``lookback_s`` so late or replayed data is folded in. The window still in progress is
computed up to ``now - delay_s`` and completed by later runs. One engine serves the sites of its
configuration; run one engine per group of sites to scale out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
from numpy.typing import NDArray

from analytics.calendar import zone
from analytics.compute import SiteComputer, SiteResult
from analytics.config import KpiConfig
from analytics.green import CoefficientLibrary
from analytics.lineformat import component_batch
from analytics.reader import SiteReader
from ingest.influx import InfluxQLReader, InfluxWriter
from zhizao.errors import ConfigError
from zhizao.influxql import ident, tag_equals, time_range
from zhizao.model import Batch, SeriesTable
from zhizao.schema import (
    ENTERPRISE_TAG,
    SITE_TAG,
    kpi_machine_measurement,
    kpi_site_measurement,
)
from zhizao.site import load_site

__all__ = ["EngineReport", "KpiEngine", "compute_range", "site_batch"]

log = logging.getLogger(__name__)
I64 = NDArray[np.int64]
S_NS = 1_000_000_000


@dataclass(slots=True)
class EngineReport:
    """What one run did."""

    start_ns: int = 0
    end_ns: int = 0
    points_written: int = 0
    machine_windows: int = 0
    notes: list[str] = field(default_factory=list)


def compute_range(now_ns: int, cfg: KpiConfig, last_end_ns: int | None) -> tuple[int, int]:
    """[from, cutoff) to recompute: the look-back (or the back-fill on a first run) up to now - delay."""
    cutoff = now_ns - int(cfg.schedule.delay_s * S_NS)
    if last_end_ns is None:
        start = cutoff - int(cfg.schedule.backfill_s * S_NS)
    else:
        start = min(last_end_ns, cutoff) - int(cfg.schedule.lookback_s * S_NS)
    return start, cutoff


def site_batch(table: SeriesTable, result: SiteResult, prefix: str) -> Batch:
    """Components of one computed site result (machine components and plant energy)."""
    kind = result.kind
    parts = [
        component_batch(
            table,
            kpi_machine_measurement(kind, prefix),
            result.tags,
            result.start_ns,
            result.components.columns(),
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
            )
        )
    return Batch.concat(parts)


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
        self.last_end_ns: int | None = None
        self._logged: set[str] = set()
        self.failed_runs = 0  # consecutive
        self.total_failed_runs = 0

    # -- one run --------------------------------------------------------------------------------

    async def run_once(self, now_ns: int | None = None) -> EngineReport:
        now = time.time_ns() if now_ns is None else now_ns
        start, cutoff = compute_range(now, self.cfg, self.last_end_ns)
        report = EngineReport(start, cutoff)
        hb_ns = int(self.cfg.heartbeat_s * S_NS)
        async with InfluxQLReader(self.influx) as reader, InfluxWriter(self.influx) as writer:
            for computer in self.computers:
                lo, hi = start, cutoff
                for kind in self.cfg.windows:
                    k_lo, k_hi = computer.extent(kind, start, cutoff)
                    lo, hi = min(lo, k_lo), max(hi, k_hi)
                # + 1 ns: a meter reading at exactly the cut-off closes the last (start, end]
                data = await self.site_reader.read(
                    reader, computer.site, lo - hb_ns, min(hi, cutoff) + 1
                )
                batches: list[Batch] = []
                for kind in self.cfg.windows:
                    result = computer.compute(data, kind, start, cutoff)
                    report.machine_windows += len(result.components)
                    report.notes += [f"{computer.site.site} {kind}: {n}" for n in result.notes]
                    batches.append(site_batch(self._table, result, self.cfg.measurement_prefix))
                batch = Batch.concat(batches)
                if len(batch):
                    written = await writer.write_batch(self._table, batch)
                    report.points_written += written.lines_written
                    if written.rejected:
                        report.notes.append(
                            f"components refused by the encoder: {written.rejected}"
                        )
                if "day" in self.cfg.windows:
                    months = await self._month_rollup(reader, computer, start, cutoff)
                    if len(months):
                        written = await writer.write_batch(self._table, months)
                        report.points_written += written.lines_written
        self.last_end_ns = cutoff
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
        is retried on the next tick; the first failure and the recovery are logged once."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                rep = await self.run_once()
                if self.failed_runs:
                    log.warning("kpi runs recovered after %d failed runs", self.failed_runs)
                    self.failed_runs = 0
                for note in rep.notes:  # data-quality notes, each logged once (no log spam)
                    if note not in self._logged:
                        self._logged.add(note)
                        log.warning("kpi data quality: %s", note)
                log.info(
                    "kpi run: %d points for %d machine windows",
                    rep.points_written,
                    rep.machine_windows,
                )
            except Exception as exc:  # a failed run is retried on the next tick, never fatal
                self.failed_runs += 1
                self.total_failed_runs += 1
                level = logging.ERROR if self.failed_runs == 1 else logging.DEBUG
                log.log(
                    level,
                    "kpi run failed, retrying every %.0f s: %s",
                    self.cfg.schedule.interval_s,
                    exc,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.cfg.schedule.interval_s)
