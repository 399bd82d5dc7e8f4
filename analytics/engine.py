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

import numpy as np
from numpy.typing import NDArray

from analytics.compute import SiteComputer, SiteData, SiteResult
from analytics.config import KpiConfig
from analytics.green import CoefficientLibrary
from analytics.lineformat import component_batch
from analytics.machine import MachineSignals, Signal
from analytics.sources import MachinePlan, read_plan
from ingest.influx import InfluxQLReader, InfluxWriter, ResultSeries
from zhizao.errors import ConfigError
from zhizao.influxql import ident, tag_equals, time_range
from zhizao.model import Batch, SeriesTable
from zhizao.schema import (
    ENTERPRISE_TAG,
    MACHINE_TAG,
    SITE_TAG,
    kpi_machine_measurement,
    kpi_site_measurement,
)
from zhizao.site import SiteModel, load_site

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
        self.last_end_ns: int | None = None
        self._logged: set[str] = set()
        self.failed_runs = 0  # consecutive
        self.total_failed_runs = 0

    # -- reading --------------------------------------------------------------------------------

    async def read_site(
        self, reader: InfluxQLReader, site: SiteModel, lo_ns: int, hi_ns: int
    ) -> SiteData:
        """Raw signals of ``site`` in [lo, hi) plus the last sample before ``lo`` of every signal
        (the state, product and counter reading carried into the first window)."""
        plans = read_plan(site, self.cfg)
        fields: dict[str, set[str]] = {}
        for plan in plans.values():
            for ref in [*plan.states, *plan.roles.values()]:
                fields.setdefault(ref.measurement, set()).add(ref.field)
        for m in site.meters:
            fields.setdefault(self.cfg.signals.measurement_of_meter(m.medium), set()).add(m.signal)
        where = tag_equals({SITE_TAG: site.site, ENTERPRISE_TAG: site.enterprise})
        statements: list[str] = []
        for meas, names in sorted(fields.items()):
            cols = ", ".join(ident(f) for f in sorted(names))
            statements.append(
                f"SELECT {cols} FROM {ident(meas)} WHERE {where} AND {time_range(lo_ns, hi_ns)} GROUP BY *"
            )
            for f in sorted(names):  # one selector per statement keeps the point's own time
                statements.append(
                    f"SELECT last({ident(f)}) AS {ident(f)} FROM {ident(meas)} WHERE {where} AND time < {lo_ns} GROUP BY *"
                )
        dq = self.cfg.signals.data_quality
        if dq is not None:
            # the markers of the state signals (one field per signal, tagged with its measurement)
            marked = sorted({ref.field for plan in plans.values() for ref in plan.states})
            cols = ", ".join(ident(f) for f in marked)
            statements.append(
                f"SELECT {cols} FROM {ident(dq.measurement)} WHERE {where} AND {time_range(lo_ns, hi_ns)} GROUP BY *"
            )
            for f in marked:
                statements.append(
                    f"SELECT last({ident(f)}) AS {ident(f)} FROM {ident(dq.measurement)} WHERE {where} AND time < {lo_ns} GROUP BY *"
                )
        # chunked: a server-side max-row-limit must never truncate a window silently
        series = await reader.query(";".join(statements), chunked=True, chunk_size=10_000)
        return self._assemble(site, plans, series)

    def _assemble(
        self, site: SiteModel, plans: dict[str, MachinePlan], series: list[ResultSeries]
    ) -> SiteData:
        parts: dict[tuple[str, str, str], list[tuple[I64, NDArray[np.generic]]]] = {}
        meter_parts: dict[str, list[tuple[I64, NDArray[np.generic]]]] = {}
        meter_meas = {self.cfg.signals.measurement_of_meter(m.medium) for m in site.meters}
        dq = self.cfg.signals.data_quality
        # (machine, signal's measurement, field) -> marker chunks
        marks: dict[tuple[str, str, str], list[tuple[I64, NDArray[np.generic]]]] = {}
        for s in series:
            machine = s.tags.get(MACHINE_TAG, "")
            for fname, col in s.values.items():
                ok = _present(col)
                if not ok.any():
                    continue
                ts, vals = s.time_ns[ok], col[ok]
                if dq is not None and s.name == dq.measurement:
                    key = (machine, s.tags.get(dq.signal_tag, ""), fname)
                    marks.setdefault(key, []).append((ts, vals))
                    continue
                if s.name in meter_meas:
                    mid = self._meter_id(site, s.name, s.tags, fname)
                    if mid is not None:
                        meter_parts.setdefault(mid, []).append((ts, vals))
                        continue
                if machine:
                    parts.setdefault((machine, s.name, fname), []).append((ts, vals))
        data = SiteData()
        for machine, plan in plans.items():
            states = {}
            quality = {}
            for ref in plan.states:
                sig = _merge(parts.get((machine, ref.measurement, ref.field)), obj=True)
                if sig is not None:
                    states[ref.field] = sig
                mark = _merge(marks.get((machine, ref.measurement, ref.field)))
                if mark is not None:
                    quality[ref.field] = mark
            roles: dict[str, Signal] = {}
            for role, ref in plan.roles.items():
                sig = _merge(
                    parts.get((machine, ref.measurement, ref.field)), obj=role == "product"
                )
                if sig is not None:
                    roles[role] = sig
            if plan.energy_meter is not None:
                sig = _merge(meter_parts.get(plan.energy_meter.id))
                if sig is not None:
                    roles["energy_kwh"] = sig
            if states or roles or quality:
                data.machines[machine] = MachineSignals(roles, states, quality)
        for mid, chunks in meter_parts.items():
            sig = _merge(chunks)
            if sig is not None:
                data.meters[mid] = sig
        return data

    def _meter_id(
        self, site: SiteModel, measurement: str, tags: dict[str, str], fname: str
    ) -> str | None:
        """The site-model meter a stored series belongs to: by its meter tag, else by asset."""
        signals = self.cfg.signals
        meters = [
            m for m in site.meters
            if m.signal == fname and signals.measurement_of_meter(m.medium) == measurement
        ]  # fmt: skip
        tag = signals.meter_tag
        if tag and tags.get(tag):
            return tags[tag] if any(m.id == tags[tag] for m in meters) else None
        asset = "/".join(tags.get(k, "") for k in ("area", "line", "machine")).strip("/")
        hits = [m for m in meters if m.asset.strip("/") == asset]
        if not hits and tags.get("machine"):
            hits = [m for m in meters if m.asset.rstrip("/").split("/")[-1] == tags["machine"]]
        if not hits and not tags.get("machine"):
            # a site-level meter published under some area/line (e.g. utilities/main)
            hits = [m for m in meters if not m.asset]
        return hits[0].id if len(hits) == 1 else None

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
                data = await self.read_site(reader, computer.site, lo - hb_ns, min(hi, cutoff) + 1)
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
        self.last_end_ns = cutoff
        return report

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


def _present(col: NDArray[np.generic]) -> NDArray[np.bool_]:
    if col.dtype.kind == "f":
        return np.asarray(~np.isnan(col))
    if col.dtype.kind == "O":
        return np.asarray(np.array([v is not None for v in col.tolist()], bool))
    return np.ones(len(col), bool)


def _merge(
    chunks: list[tuple[I64, NDArray[np.generic]]] | None, *, obj: bool = False
) -> Signal | None:
    if not chunks:
        return None
    ts = np.concatenate([c[0] for c in chunks])
    vals = np.concatenate([np.asarray(c[1], dtype=object) for c in chunks])
    order = np.argsort(ts, kind="stable")
    ts, vals = ts[order], vals[order]
    keep = np.concatenate(([True], ts[1:] != ts[:-1]))  # the carry-in may repeat a sample
    ts, vals = ts[keep], vals[keep]
    return Signal(ts, vals if obj else vals.astype(np.float64))
