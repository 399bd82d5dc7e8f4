"""A whole site over a time range: windows per machine, machine components, plant energy.

Pure: the caller supplies the raw signals (``SiteData``) read from InfluxDB or a CSV export;
this module decides windows, calendars, PRIs, coefficients and returns rows of components.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from analytics import catalog
from analytics.aggregate import machine_hierarchy, rollup
from analytics.calendar import (
    PlannedTime,
    day_windows,
    hour_windows,
    planned_time,
    zone,
)
from analytics.components import Components
from analytics.config import COUNTER_ROLES, KpiConfig
from analytics.counters import counter_increments, increments_by_window
from analytics.green import CoefficientLibrary, EmissionFactorConfig
from analytics.machine import MachineContext, MachineSignals, Signal, machine_components
from analytics.notes import Notes
from analytics.oee import report_rows
from analytics.states import StateClassifier
from analytics.timeelements import TimeElementOptions
from zhizao.errors import ConfigError
from zhizao.schema import DATE_TAG
from zhizao.site import MeterConfig, SiteModel

__all__ = ["SiteComputer", "SiteData", "SiteResult", "Windows"]

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Windows:
    """Sorted, disjoint windows of one kind, with tags naming each (shift, date)."""

    kind: str
    start_ns: I64
    end_ns: I64
    tags: list[dict[str, str]]


@dataclass(slots=True)
class SiteData:
    machines: dict[str, MachineSignals] = field(default_factory=dict)
    meters: dict[str, Signal] = field(default_factory=dict)  # meter id -> counter readings


@dataclass(slots=True)
class SiteResult:
    kind: str
    machine: list[str]
    tags: list[dict[str, str]]  # ISA-95 tags + window tags, per row
    start_ns: I64
    end_ns: I64
    components: Components
    # plant energy per window (site-level purchased meters)
    energy_start_ns: I64
    energy_tags: list[dict[str, str]]
    energy_fields: dict[str, F64]
    notes: list[str]
    factors: dict[str, dict[str, object]]
    conversion: dict[str, object]
    # per row: seconds with an unknown state code in force; machines whose energy is metered
    unknown_state_s: F64 = field(default_factory=lambda: np.zeros(0))
    metered: frozenset[str] = frozenset()


class SiteComputer:
    """Everything needed to turn one site's raw data into components."""

    def __init__(
        self, site: SiteModel, cfg: KpiConfig, library: CoefficientLibrary | None = None
    ) -> None:
        self.site = site
        self.cfg = cfg
        self.library = library or CoefficientLibrary.load(cfg.energy.coefficients)
        self.conversion = self.library.conversion(cfg.energy.conversion)
        self.factors: list[EmissionFactorConfig] = [
            self.library.factor(f) for f in cfg.energy.emission_factors
        ]
        self.tz = zone(site.timezone)
        self.paths = site.machine_paths()
        self.meter_of_machine: dict[str, MeterConfig] = {}
        for meter in site.meters:
            if meter.medium != "electricity" or not meter.asset:
                continue
            mid = meter.asset.rstrip("/").split("/")[-1]
            if mid in self.paths:
                self.meter_of_machine[mid] = meter
        self.plant = self.plant_meters()  # refuse ambiguous meters at start-up
        # site-level renewable meters (on-site generation, contracted green power): their
        # energy is the renewable share's numerator, the site's use of energy its denominator
        self.renewable = [m for m in site.meters if m.renewable and not m.asset]
        self.output_machines = frozenset(site.output_machines())
        ef = {f.medium: f.value for f in self.factors}
        elec = self.conversion.coefficients.get("electricity")
        self.contexts: dict[str, MachineContext] = {}
        for _, line, m in site.machines():
            mtype = site.machine_types[m.type]
            # the machine's calendar decides whether idle without an order is planned down
            calendar = site.calendars[m.calendar or line.calendar]
            options = TimeElementOptions(
                micro_stop_s=cfg.micro_stop_s,
                no_order_is_planned_down=calendar.no_order_is_planned_down,
            )
            default = cfg.default_product.get(m.id) or cfg.default_product.get("*")
            if default is None and len(site.products) == 1:
                default = site.products[0].id
            limits = {s.name: s.rollover for s in mtype.signals if s.kind == "counter"}
            rollover_by_role = {
                role: limits.get(ref.field)
                for role in COUNTER_ROLES
                if (ref := getattr(cfg.signals, role)) is not None
            }
            em = self.meter_of_machine.get(m.id)
            self.contexts[m.id] = MachineContext(
                machine=m.id,
                classifier=StateClassifier.for_type(mtype),
                pri_s_by_product={p.id: p.pri_s(m.id) for p in site.products},
                default_product=default,
                heartbeat_s=cfg.heartbeat_s,
                options=options,
                cutting_load_pct=mtype.cutting_load_pct,
                rollover_by_role=rollover_by_role,
                energy_rollover=em.rollover if em else None,
                kgce_per_kwh=elec.value if elec else 0.0,
                kgco2_per_kwh=ef.get("electricity", 0.0),
                unit_value_cny_by_product={
                    p.id: p.unit_value_cny for p in site.products if p.unit_value_cny is not None
                },
            )

    # -- windows --------------------------------------------------------------------------------

    def planned(self, machine: str, start_ns: int, end_ns: int) -> PlannedTime:
        for _, line, m in self.site.machines():
            if m.id == machine:
                name = m.calendar or line.calendar
                return planned_time(self.site.calendars[name], start_ns, end_ns, name=name)
        raise KeyError(machine)

    def windows(self, kind: str, machine: str | None, start_ns: int, end_ns: int) -> Windows:
        """Windows of ``kind`` intersecting [start, end) (whole windows; ``range`` = exactly it)."""
        if kind == "range":
            return Windows(kind, np.array([start_ns], np.int64), np.array([end_ns], np.int64), [{}])
        if kind == "hour":
            s, e = hour_windows(start_ns, end_ns, self.tz)
            return Windows(kind, s, e, [{} for _ in s])
        if kind == "day":
            s, e, days = day_windows(start_ns, end_ns, self.tz)
            return Windows(kind, s, e, [{"date": d.isoformat()} for d in days])
        if kind == "shift":
            if machine is None:
                raise ValueError("shift windows belong to a machine's calendar")
            shifts = [
                x
                for x in self.planned(machine, start_ns, end_ns).shifts
                if x.end_ns > start_ns and x.start_ns < end_ns
            ]
            return Windows(
                kind,
                np.array([x.start_ns for x in shifts], np.int64),
                np.array([x.end_ns for x in shifts], np.int64),
                [{"shift": x.name, "date": x.date.isoformat()} for x in shifts],
            )
        raise ValueError(f"unknown window kind {kind!r}; expected hour, shift, day or range")

    @staticmethod
    def _clipped(w: Windows, start_ns: int, end_ns: int, clip_start: bool) -> Windows:
        s = np.maximum(w.start_ns, start_ns) if clip_start else w.start_ns
        e = np.minimum(w.end_ns, end_ns)
        keep = e > s
        return Windows(
            w.kind, s[keep], e[keep], [t for t, k in zip(w.tags, keep.tolist(), strict=True) if k]
        )

    def extent(self, kind: str, start_ns: int, end_ns: int) -> tuple[int, int]:
        """The time the windows of ``kind`` touching [start, end) cover (what must be read)."""
        lo, hi = start_ns, end_ns
        for machine in self.paths:
            w = self.windows(kind, machine, start_ns, end_ns)
            if len(w.start_ns):
                lo, hi = min(lo, int(w.start_ns[0])), max(hi, int(w.end_ns[-1]))
        return lo, hi

    # -- computation ----------------------------------------------------------------------------

    def compute(
        self,
        data: SiteData,
        kind: str,
        start_ns: int,
        end_ns: int,
        *,
        clip_start: bool = False,
        known_until_ns: int | None = None,
    ) -> SiteResult:
        """Components of every machine for the windows of ``kind`` touching [start, end).

        The last window ends at ``end_ns`` (a later run completes it); with ``clip_start`` the
        first window also starts no earlier than ``start_ns``. Stops are classified by their
        whole length: the timeline reaches ``micro_stop_s`` before the first window (the data
        carried in) and, when the data is known beyond ``end_ns`` (``known_until_ns``, e.g. an
        export that goes on), as far after the last one.
        """
        look_ns = int(self.cfg.micro_stop_s * 1e9)
        known_until = end_ns if known_until_ns is None else max(end_ns, known_until_ns)
        parts: list[Components] = []
        machines: list[str] = []
        tags: list[dict[str, str]] = []
        starts: list[I64] = []
        ends: list[I64] = []
        unknown_s: list[F64] = []
        notes: list[str] = []
        for machine, path in self.paths.items():  # machines, not samples
            w = self._clipped(
                self.windows(kind, machine, start_ns, end_ns), start_ns, end_ns, clip_start
            )
            if not len(w.start_ns):
                continue
            ctx_lo = int(w.start_ns[0]) - look_ns
            ctx_hi = min(int(w.end_ns[-1]) + look_ns, known_until)
            planned = self.planned(machine, ctx_lo, max(ctx_hi, int(w.end_ns[-1])))
            signals = data.machines.get(machine, MachineSignals({}))
            res = machine_components(signals, self.contexts[machine], planned, w.start_ns,
                                     w.end_ns, context_start_ns=ctx_lo,
                                     context_end_ns=ctx_hi)  # fmt: skip
            ctx = self.contexts[machine]
            # note texts stay the same from run to run (the engine logs each text once); the
            # seconds are in the rows (unknown_state_s)
            if res.unknown_state_codes:
                notes.append(str(Notes.unknown_state(machine, res.unknown_state_codes)))
            if res.unknown_products:
                notes.append(str(Notes.unknown_product(machine, res.unknown_products)))
            if (
                signals.get("product") is None
                and ctx.default_product is None
                and float(res.components.pbt_s.sum()) > 0
            ):
                notes.append(str(Notes.no_product(machine)))
            if not signals.states:
                notes.append(str(Notes.no_state_data(machine)))
            if res.in_cycle_without_parts_s > self.cfg.no_parts_in_cycle_s:
                day = datetime.fromtimestamp(res.in_cycle_without_parts_start_ns / 1e9, self.tz)
                roles = [r for r in COUNTER_ROLES if signals.get(r) is not None] or ["none"]
                hours = self.cfg.no_parts_in_cycle_s / 3600
                notes.append(
                    str(Notes.no_parts_in_cycle(machine, hours, day.date().isoformat(), roles))
                )
            rc = res.components
            n_good_above = int(np.count_nonzero(rc.gq > rc.pq))
            n_negative = int(np.count_nonzero((rc.sq < 0) | (rc.gq < 0) | (rc.rq < 0)))
            if n_good_above:
                notes.append(
                    f"{machine}: good parts exceed produced parts in {n_good_above} window(s): "
                    "check the counters' rollover limits (a reset read as a wrap?) and roles"
                )
            if n_negative:
                notes.append(
                    f"{machine}: negative part counts in {n_negative} window(s): check the "
                    "counters (the good/scrap split does not match the total)"
                )
            parts.append(res.components)
            machines += [machine] * len(w.start_ns)
            base = path.tags()
            tags += [{**base, **t} for t in w.tags]
            starts.append(w.start_ns)
            ends.append(w.end_ns)
            unknown_s.append(res.unknown_state_s)
        comp = Components.concat(parts)
        for meter in self.plant:
            if meter.id not in data.meters:
                notes.append(str(Notes.plant_meter_without_data(meter.id)))
        metered: set[str] = set()
        for machine, meter in self.meter_of_machine.items():
            sigs = data.machines.get(machine)
            if sigs is None or sigs.get("energy_kwh") is None:
                notes.append(str(Notes.meter_without_data(machine, meter.id)))
            else:
                metered.add(machine)
        unmetered = sorted(set(machines) - set(self.meter_of_machine))
        if unmetered:
            notes.append(str(Notes.unmetered(unmetered)))
        if kind == "shift":
            # a shift's plant energy is what the meters booked inside the shift windows, so that
            # kgce per good part divides the shift's energy by the shift's parts (never the day's)
            energy_windows = _union_windows(starts, ends, tags)
        else:
            energy_windows = self._clipped(
                self.windows(kind, None, start_ns, end_ns), start_ns, end_ns, True
            )
        e_start, e_tags, e_fields = self._plant_energy(data, energy_windows)
        row_start = np.concatenate(starts) if starts else np.empty(0, np.int64)
        e_fields.update(self.site_output(comp, machines, row_start, energy_windows))
        return SiteResult(
            kind, machines, tags,
            row_start,
            np.concatenate(ends) if ends else np.empty(0, np.int64),
            comp, e_start, e_tags, e_fields, notes,
            {f.medium: {"id": f.id, "value": f.value, "unit": f.unit, "year": f.year, "publisher": f.publisher} for f in self.factors},
            {"id": self.conversion.id, "convention": self.conversion.convention, "year": self.conversion.year, "source": self.conversion.source},
            np.concatenate(unknown_s) if unknown_s else np.empty(0, np.float64),
            frozenset(metered),
        )  # fmt: skip

    def plant_meters(self) -> list[MeterConfig]:
        """Meters whose sum is the plant's intake: configured, or the one site-level purchased
        meter per medium. Several candidates of one medium are refused: a main meter usually
        includes its sub-meters, and summing them would count energy twice."""
        wanted = self.cfg.energy.plant_meters
        if wanted:
            known = {m.id: m for m in self.site.meters}
            missing = [w for w in wanted if w not in known]
            if missing:
                raise ConfigError(
                    f"plant meters {missing} are not in site {self.site.site!r}",
                    key="energy.plant_meters",
                    expected=f"ids among {sorted(known)}",
                )
            return [known[w] for w in wanted]
        out = [m for m in self.site.meters if not m.asset and (m.purchased or m.medium == "water")]
        by_medium: dict[str, list[str]] = {}
        for m in out:
            # a purchased green-power supply on its own meter is an intake beside the grid's
            key = f"{m.medium} (renewable)" if m.renewable else m.medium
            by_medium.setdefault(key, []).append(m.id)
        clash = {k: v for k, v in by_medium.items() if len(v) > 1}
        if clash:
            raise ConfigError(
                f"site {self.site.site!r} has several site-level meters per medium {clash}; "
                "which of them measure the plant's intake?",
                key="energy.plant_meters",
                expected="the main meter ids (sub-meters would be counted twice)",
            )
        return out

    def _plant_energy(
        self, data: SiteData, w: Windows
    ) -> tuple[I64, list[dict[str, str]], dict[str, F64]]:
        n = len(w.start_ns)
        by_medium: dict[str, F64] = {}
        for meter in self.plant:
            q = self._meter_quantity(data, meter, w)
            if q is not None:
                by_medium[meter.medium] = by_medium.get(meter.medium, np.zeros(n)) + q
        coef = self.conversion.coefficients
        ef = {f.medium: f.value for f in self.factors}
        fields: dict[str, F64] = {}
        kgce = np.zeros(n)
        kgco2 = np.zeros(n)
        for medium, q in by_medium.items():
            unit = coef[medium].unit if medium in coef else ("m3" if medium == "water" else "")
            fields[f"{medium}_{unit.lower()}" if unit else medium] = q
            if medium in coef and medium not in ("water", "compressed_air"):
                kgce += q * coef[medium].value
            kgco2 += q * ef.get(medium, 0.0)
        fields["kgce"] = kgce
        fields["kgco2"] = kgco2
        if self.renewable:
            # written only where a renewable meter is configured: elsewhere the share is absent
            # (null), not 0 %; produced on site is not purchased, so it is added to the use
            renewable = np.zeros(n)
            use = kgce.copy()
            for meter in self.renewable:
                q = self._meter_quantity(data, meter, w)
                if q is None or meter.medium not in coef:
                    continue
                meter_kgce = q * coef[meter.medium].value
                renewable += meter_kgce
                if not meter.purchased:
                    use += meter_kgce
            fields["renewable_kgce"] = renewable
            fields["energy_use_kgce"] = use
        site_tags = {"enterprise": self.site.enterprise, "site": self.site.site}
        # plant day rows carry no ``date`` tag: one series per site (a tag per day would make a
        # year of a district's factories hundreds of thousands of series, and InfluxDB's cost of
        # a cross-site sum grows with series, not points); the timestamp is the local day start
        return w.start_ns, [{**site_tags, **{k: v for k, v in t.items() if k != DATE_TAG}}
                            for t in w.tags], fields  # fmt: skip

    @staticmethod
    def _meter_quantity(data: SiteData, meter: MeterConfig, w: Windows) -> F64 | None:
        """A meter's increments booked into each window (None: the meter has no data)."""
        sig = data.meters.get(meter.id)
        if sig is None or not len(sig):
            return None
        ts, inc, _ = counter_increments(
            sig.ts_ns, np.asarray(sig.value, np.float64), rollover=meter.rollover
        )
        q: F64 = increments_by_window(ts, inc, w.start_ns, w.end_ns, closed="right")
        return q

    def site_output(
        self, comp: Components, machines: list[str], row_start_ns: I64, w: Windows
    ) -> dict[str, F64]:
        """The site's output per window ``w``: good parts (``output_gq``) and their value
        (``output_value_cny``) of the output machines (``SiteModel.output_machines``), from the
        machine rows starting inside each window. The denominators of the plant's water and
        energy per unit, beside the plant meters' quantities in the same row."""
        n = len(w.start_ns)
        gq = np.zeros(n)
        value = np.zeros(n)
        if n and len(machines):
            mine = np.isin(np.asarray(machines, object), list(self.output_machines))
            idx = np.searchsorted(w.start_ns, row_start_ns, "right") - 1
            inside = mine & (idx >= 0)
            inside[inside] &= row_start_ns[inside] < w.end_ns[idx[inside]]
            gq = np.bincount(idx[inside], comp.gq[inside], n).astype(np.float64)
            value = np.bincount(idx[inside], comp.output_value_cny[inside], n).astype(np.float64)
        return {"output_gq": gq, "output_value_cny": value}

    def _planned_down(self, result: SiteResult) -> list[dict[str, object]]:
        """The calendars' planned down entries inside the result's range (which break, meeting
        or maintenance took the time), per calendar with the machines on it."""
        if not len(result.start_ns):
            return []
        lo, hi = int(result.start_ns.min()), int(result.end_ns.max())
        present = set(result.machine)
        by_calendar: dict[str, list[str]] = {}
        for _, line, m in self.site.machines():
            if m.id in present:
                by_calendar.setdefault(m.calendar or line.calendar, []).append(m.id)
        out: list[dict[str, object]] = []
        for name, machines in sorted(by_calendar.items()):
            pt = planned_time(self.site.calendars[name], lo, hi, name=name)
            for s0, e0, (kind, label) in zip(
                pt.down_start_ns.tolist(), pt.down_end_ns.tolist(), pt.down_entries, strict=True
            ):
                s1, e1 = max(s0, lo), min(e0, hi)
                if e1 > s1:
                    out.append({"calendar": name, "machines": machines, "kind": kind,
                                "name": label, "start_ns": s1, "end_ns": e1,
                                "duration_s": (e1 - s1) / 1e9})  # fmt: skip
        return out

    def report(self, result: SiteResult) -> dict[str, object]:
        """JSON-ready: per machine and window, roll-ups per line/factory/district, plant energy."""
        c = result.components
        flag = self.cfg.effectiveness_flag_above
        rows = report_rows(c, effectiveness_flag_above=flag)
        # absent is not zero: a machine without a known product has no PRI-based KPI, one
        # without an energy meter (or its data) no energy per part; each says so by a flag
        # (planned busy time none of which has a known product; the catalog's denominators
        # leave out the part of it without one, flagged partial_no_product)
        pri_ok = ~((c.pbt_no_product_s > 0) & (c.pbt_s - c.pbt_no_product_s <= 0))
        energy_ok = np.array([m in result.metered for m in result.machine], bool)
        out_rows = []
        for i, row in enumerate(rows):
            kpis = dict(row["kpis"])  # type: ignore[call-overload]
            if not pri_ok[i]:
                kpis.update({k: _absent(kpis[k], _NO_PRODUCT) for k in PRI_KPIS if k in kpis})
            if not energy_ok[i]:
                kpis.update({k: _absent(kpis[k], _NO_METER) for k in ENERGY_KPIS if k in kpis})
            out_rows.append({"machine": result.machine[i], "tags": result.tags[i], "window_start_ns": int(result.start_ns[i]),
                             "window_end_ns": int(result.end_ns[i]), **row, "kpis": kpis,
                             "unknown_state_s": float(result.unknown_state_s[i]) if len(result.unknown_state_s) == len(c) else 0.0})  # fmt: skip
        levels: dict[str, object] = {}
        if len(c):
            hier = machine_hierarchy(self.site, result.machine)
            keyed = {
                lvl: [f"{g}@{int(s)}" for g, s in zip(names, result.start_ns, strict=True)]
                for lvl, names in hier.items()
            }
            keyed["city"] = [f"city@{int(s)}" for s in result.start_ns]
            full = rollup(c, keyed)
            # PRI-based KPIs over the machines with a product, energy per part over the metered
            # machines: sum over sum of what can be computed, with the coverage stated
            subsets = {
                "with_product": (pri_ok, PRI_KPIS, _NO_PRODUCT),
                "metered": (energy_ok, ENERGY_KPIS, _NO_METER),
            }
            sub_rows: dict[str, dict[str, dict[str, dict[str, object]]]] = {}
            for name, (mask, _, _) in subsets.items():
                sel = np.flatnonzero(mask)
                part = rollup(c.take(sel), {k: [v[i] for i in sel] for k, v in keyed.items()})
                sub_rows[name] = {
                    level: dict(zip(names, (r["kpis"] for r in report_rows(comps, effectiveness_flag_above=flag)), strict=True))  # type: ignore[misc]
                    for level, (names, comps) in part.items()
                }  # fmt: skip
            for level, (names, comps) in full.items():
                if level == "machine":
                    continue
                total = _machines_by_group(keyed[level], result.machine)
                counted = {k: _machines_by_group(keyed[level], result.machine, m) for k, (m, _, _) in subsets.items()}  # fmt: skip
                out: list[dict[str, object]] = []
                for gname, r in zip(
                    names, report_rows(comps, effectiveness_flag_above=flag), strict=True
                ):
                    kpis = dict(r["kpis"])  # type: ignore[call-overload]
                    n = len(total[gname])
                    coverage: dict[str, object] = {"machines": n}
                    for key, (_, ids, reason) in subsets.items():
                        have = len(counted[key].get(gname, ()))
                        coverage[key] = have
                        if have == n:
                            continue
                        got = sub_rows[key].get(level, {}).get(gname)
                        for k in ids:
                            if k in kpis:
                                kpis[k] = (
                                    _partial(got[k], have, n, reason)  # type: ignore[arg-type]
                                    if got is not None
                                    else _absent(kpis[k], reason)
                                )
                    coverage["text"] = (
                        f"coverage: {coverage['with_product']}/{n} machines with a product "
                        f"(OEE), {coverage['metered']}/{n} metered (energy per part)"
                    )
                    out.append(
                        {
                            "group": gname.rsplit("@", 1)[0],
                            "window_start_ns": int(gname.rsplit("@", 1)[1]),
                            **r,
                            "kpis": kpis,
                            "coverage": coverage,
                        }
                    )
                levels[level] = out
        energy = [
            {
                "tags": t,
                "window_start_ns": int(s),
                **{k: float(v[i]) for k, v in result.energy_fields.items()},
            }
            for i, (t, s) in enumerate(zip(result.energy_tags, result.energy_start_ns, strict=True))
        ]
        # the catalog's site KPIs over the whole result: the plant rows' fields summed (sum over
        # sum), the output being the output machines' good parts (a part counted once)
        totals = {k: np.array([float(np.nansum(v))]) for k, v in result.energy_fields.items()}
        plant = catalog.evaluate_site(totals, 1) if len(result.energy_start_ns) else {}
        return {
            "site": f"{self.site.enterprise}/{self.site.site}",
            "window": result.kind,
            "planned_down": self._planned_down(result),
            "machines": out_rows,
            "rollups": levels,
            "plant_energy": energy,
            "plant_kpis": {k: {"id": k, **v.at(0)} for k, v in plant.items()},
            "energy_conversion": result.conversion,
            "emission_factors": result.factors,
            "notes": result.notes,
        }


_PRI_COMPONENTS = {"pri_pq_s", "pri_gq_s", "pri_startup_s"}
_ENERGY_COMPONENTS = {"kwh", "kgce", "kgco2"}
# KPI ids that need an ideal cycle time, and those that divide energy by parts
PRI_KPIS = frozenset(k.id for k in catalog.CATALOG if _PRI_COMPONENTS & set(k.components()))
ENERGY_KPIS = frozenset(
    k.id for k in catalog.CATALOG if k.view == "energy" and _ENERGY_COMPONENTS & set(k.components())
)
_NO_PRODUCT = {
    "code": "no_product",
    "reason": catalog.NO_PRODUCT_REASON,
}
_NO_METER = {
    "code": "no_meter",
    "reason": "no energy meter data: energy per part unknown, not 0",
}


def _absent(kpi: dict[str, object], flag: dict[str, str]) -> dict[str, object]:
    """A KPI that cannot be computed: null with the reason (never 0, never a wrong flag)."""
    out = {k: v for k, v in kpi.items() if k not in ("numerator", "denominator", "flag", "flags")}
    return {**out, "value": None, "flag": flag["reason"], "flags": [flag]}


def _partial(kpi: dict[str, object], have: int, n: int, flag: dict[str, str]) -> dict[str, object]:
    """A group KPI computed over the ``have`` of ``n`` machines that can be computed."""
    note = {
        "code": f"partial_{flag['code']}",
        "reason": f"over {have}/{n} machines ({flag['reason']})",
    }
    flags = [*kpi.get("flags", []), note]  # type: ignore[misc]
    return {**kpi, "coverage": f"{have}/{n} machines", "flag": "; ".join(str(f["reason"]) for f in flags), "flags": flags}  # fmt: skip


def _machines_by_group(
    groups: list[str], machines: list[str], mask: NDArray[np.bool_] | None = None
) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for i, (g, m) in enumerate(zip(groups, machines, strict=True)):
        if mask is None or mask[i]:
            out.setdefault(g, set()).add(m)
    return out


def _union_windows(starts: list[I64], ends: list[I64], tags: list[dict[str, str]]) -> Windows:
    """The machines' shift windows merged into disjoint intervals (machines on one calendar share
    their shifts; overlapping shifts of different calendars are merged so no kWh counts twice).
    Each merged interval keeps the shift and date tags of its first shift."""
    if not starts:
        return Windows("shift", np.empty(0, np.int64), np.empty(0, np.int64), [])
    s = np.concatenate(starts)
    e = np.concatenate(ends)
    order = np.lexsort((e, s))
    out_s: list[int] = []
    out_e: list[int] = []
    out_t: list[dict[str, str]] = []
    for i in order.tolist():  # one per shift window of a machine, not per sample
        lo, hi = int(s[i]), int(e[i])
        if out_s and lo < out_e[-1]:  # overlaps (or repeats) the previous one
            out_e[-1] = max(out_e[-1], hi)
            continue
        out_s.append(lo)
        out_e.append(hi)
        t = tags[i]
        out_t.append({k: t[k] for k in ("shift", "date") if k in t})
    return Windows("shift", np.array(out_s, np.int64), np.array(out_e, np.int64), out_t)
