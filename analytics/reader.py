"""Reading a site's raw signals from InfluxDB for the KPI engine and the API.

One statement per measurement family for the range, plus one ``last()`` per signal for the value
carried in from before it; the data-quality markers of the state signals beside them. Results
are grouped per machine and role exactly as ``machine_components`` expects them, so the engine's
windows and the API's timelines read the same things the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from analytics.compute import SiteData
from analytics.config import KpiConfig
from analytics.machine import MachineSignals, Signal
from analytics.sources import MachinePlan, read_plan
from ingest.influx import InfluxQLReader, ResultSeries
from zhizao.influxql import ident, tag_equals, tag_in, time_range
from zhizao.schema import AREA_TAG, ENTERPRISE_TAG, LINE_TAG, MACHINE_TAG, SITE_TAG
from zhizao.site import MeterConfig, SiteModel

__all__ = ["SiteReader"]

I64 = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class _Meters:
    meters: list[MeterConfig]
    ids: set[str]


class SiteReader:
    """Reads the raw signals the KPIs need (``read_plan``) for one site and range."""

    def __init__(self, cfg: KpiConfig) -> None:
        self.cfg = cfg
        # per site model (kept with it, so a new model is never mistaken for an old one): the
        # read plan and the meters by (measurement, field), which cost O(machines x meters)
        self._plans: dict[int, tuple[SiteModel, dict[str, MachinePlan]]] = {}
        self._meters: dict[int, tuple[SiteModel, dict[tuple[str, str], _Meters]]] = {}

    def plans(self, site: SiteModel) -> dict[str, MachinePlan]:
        hit = self._plans.get(id(site))
        if hit is None or hit[0] is not site:
            hit = self._plans[id(site)] = (site, read_plan(site, self.cfg))
        return hit[1]

    def _meters_of(self, site: SiteModel, measurement: str, fname: str) -> _Meters:
        hit = self._meters.get(id(site))
        if hit is None or hit[0] is not site:
            index: dict[tuple[str, str], _Meters] = {}
            for m in site.meters:
                key = (self.cfg.signals.measurement_of_meter(m.medium), m.signal)
                entry = index.setdefault(key, _Meters([], set()))
                entry.meters.append(m)
                entry.ids.add(m.id)
            hit = self._meters[id(site)] = (site, index)
        return hit[1].get((measurement, fname), _Meters([], set()))

    async def read(
        self,
        reader: InfluxQLReader,
        site: SiteModel,
        lo_ns: int,
        hi_ns: int,
        *,
        machines: Sequence[str] | None = None,
        states_only: bool = False,
    ) -> SiteData:
        """Raw signals of ``site`` in [lo, hi) plus the last sample before ``lo`` of every signal
        (the state, product and counter reading carried into the first window).

        ``machines`` limits the read to those machines (their own signals; no plant meters);
        ``states_only`` reads just the state signals and their data-quality markers.
        """
        plans, statements = self.statements(
            site, lo_ns, hi_ns, machines=machines, states_only=states_only
        )
        if not statements:
            return SiteData()
        # chunked: a server-side max-row-limit must never truncate a window silently
        series = await reader.query(";".join(statements), chunked=True, chunk_size=10_000)
        return self.assemble(site, plans, series)

    def statements(
        self,
        site: SiteModel,
        lo_ns: int,
        hi_ns: int,
        *,
        machines: Sequence[str] | None = None,
        states_only: bool = False,
        carry_in: bool = True,
        tag_columns: bool = False,
    ) -> tuple[dict[str, MachinePlan], list[str]]:
        """The InfluxQL statements ``read`` sends (one per measurement family for the range, one
        ``last()`` per signal for the carried-in value unless ``carry_in`` is False), and the
        plans they serve. With ``tag_columns`` the range statements return the tags ``assemble``
        needs as columns of one series per statement (``split_by_tags`` makes series of them):
        a thousand machines' minute costs InfluxDB and the client a third of a thousand series."""
        plans, fields, where = self.families(site, machines=machines, states_only=states_only)
        if not fields:
            return plans, []
        statements: list[str] = []
        for meas, names in fields.items():
            cols = ", ".join(ident(f) for f in names)
            if tag_columns:
                tags = ", ".join(f"{ident(t)}::tag" for t in self.tag_keys(meas))
                statements.append(
                    f"SELECT {tags}, {cols} FROM {ident(meas)} WHERE {where} AND {time_range(lo_ns, hi_ns)}"
                )
            else:
                statements.append(
                    f"SELECT {cols} FROM {ident(meas)} WHERE {where} AND {time_range(lo_ns, hi_ns)} GROUP BY *"
                )
            for f in names if carry_in else ():  # one selector per statement keeps its time
                statements.append(
                    f"SELECT last({ident(f)}) AS {ident(f)} FROM {ident(meas)} WHERE {where} AND time < {lo_ns} GROUP BY *"
                )
        return plans, statements

    def count_statements(self, site: SiteModel, lo_ns: int, hi_ns: int) -> list[str]:
        """One ``count()`` statement per measurement family over [lo, hi): the points ``read``
        would return there, counted by InfluxDB (the engine's check for late data)."""
        _, fields, where = self.families(site)
        return [
            f"SELECT {', '.join(f'count({ident(f)}) AS {ident(f)}' for f in names)} FROM "
            f"{ident(meas)} WHERE {where} AND {time_range(lo_ns, hi_ns)}"
            for meas, names in fields.items()
        ]

    def tag_keys(self, measurement: str) -> list[str]:
        """The tag keys ``assemble`` reads off a series of ``measurement``."""
        keys = [AREA_TAG, LINE_TAG, MACHINE_TAG]
        if self.cfg.signals.meter_tag:
            keys.append(self.cfg.signals.meter_tag)
        dq = self.cfg.signals.data_quality
        if dq is not None and measurement == dq.measurement:
            keys.append(dq.signal_tag)
        return keys

    def split_by_tags(self, series: Sequence[ResultSeries]) -> list[ResultSeries]:
        """Series of tag-column statements (``statements(tag_columns=True)``) as one series per
        tag set, the way ``GROUP BY *`` returns them; other series pass unchanged."""
        out: list[ResultSeries] = []
        for s in series:
            keys = [k for k in self.tag_keys(s.name) if k in s.values]
            if not keys or s.tags:
                out.append(s)
                continue
            cols = [s.values[k].tolist() for k in keys]
            index: dict[tuple[object, ...], int] = {}
            group = np.fromiter(
                (index.setdefault(t, len(index)) for t in zip(*cols, strict=True)),
                np.int64,
                len(s.time_ns),
            )
            order = np.argsort(group, kind="stable")
            bounds = np.searchsorted(group[order], np.arange(len(index) + 1))
            fields = {k: v for k, v in s.values.items() if k not in keys}
            for tags, g in index.items():  # tag sets, not samples
                idx = order[bounds[g] : bounds[g + 1]]
                out.append(
                    ResultSeries(
                        s.name,
                        {k: v for k, v in zip(keys, tags, strict=True) if isinstance(v, str) and v},
                        ["time", *fields],
                        s.time_ns[idx],
                        {k: v[idx] for k, v in fields.items()},
                        s.statement_id,
                    )
                )
        return out

    def families(
        self,
        site: SiteModel,
        *,
        machines: Sequence[str] | None = None,
        states_only: bool = False,
    ) -> tuple[dict[str, MachinePlan], dict[str, list[str]], str]:
        """The plans, the fields read per measurement (the data-quality markers of the state
        signals included) and the WHERE clause of the site (and machines)."""
        plans = self.plans(site)
        if machines is not None:
            plans = {m: p for m, p in plans.items() if m in set(machines)}
        fields: dict[str, set[str]] = {}
        for plan in plans.values():
            refs = plan.states if states_only else [*plan.states, *plan.roles.values()]
            for ref in refs:
                fields.setdefault(ref.measurement, set()).add(ref.field)
        if machines is None and not states_only:
            for m in site.meters:
                fields.setdefault(self.cfg.signals.measurement_of_meter(m.medium), set()).add(
                    m.signal
                )
        where = tag_equals({SITE_TAG: site.site, ENTERPRISE_TAG: site.enterprise})
        if machines is not None:
            if not plans:
                return plans, {}, where
            where += " AND " + tag_in(MACHINE_TAG, sorted(plans))
        out = {meas: sorted(names) for meas, names in sorted(fields.items())}
        dq = self.cfg.signals.data_quality
        if dq is not None:
            # the markers of the state signals (one field per signal, tagged with its measurement)
            marked = sorted({ref.field for plan in plans.values() for ref in plan.states})
            if marked:
                out[dq.measurement] = sorted(set(out.get(dq.measurement, [])) | set(marked))
        return plans, out, where

    def assemble(
        self, site: SiteModel, plans: dict[str, MachinePlan], series: Sequence[ResultSeries]
    ) -> SiteData:
        """Group raw series (InfluxDB's, or an export's rows as series) per machine and role:
        the one path from stored samples to ``SiteData``, for the engine, the API and
        ``zhizao kpi compute``."""
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
        known = self._meters_of(site, measurement, fname)
        meters = known.meters
        tag = signals.meter_tag
        if tag and tags.get(tag):
            return tags[tag] if tags[tag] in known.ids else None
        asset = "/".join(tags.get(k, "") for k in (AREA_TAG, LINE_TAG, MACHINE_TAG)).strip("/")
        hits = [m for m in meters if m.asset.strip("/") == asset]
        if not hits and tags.get(MACHINE_TAG):
            hits = [m for m in meters if m.asset.rstrip("/").split("/")[-1] == tags[MACHINE_TAG]]
        if not hits and not tags.get(MACHINE_TAG):
            # a site-level meter published under some area/line (e.g. utilities/main)
            hits = [m for m in meters if not m.asset]
        return hits[0].id if len(hits) == 1 else None


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
