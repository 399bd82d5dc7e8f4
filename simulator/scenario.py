"""The seeded scenario: what happens in the factory, generated in simulated time before anything
is published.

``build_scenario(config, seed, start, end)`` is a pure function: the same inputs give the same
timeline, bit for bit. The OPC UA server and the MQTT publisher only *play* it against the wall
clock, so the ground truth is exact and every published value is consistent with it.

All times are UTC integer nanoseconds aligned to whole milliseconds (OPC UA DateTime and the
``timestamp_ms`` of plain JSON both carry them exactly). Random streams are separate per machine
(``default_rng([seed, machine_index])``), so adding a machine does not change the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simulator.calendar import NS_PER_S, ShiftWindows, local_day_starts, shift_windows
from simulator.config import SimConfig
from zhizao.errors import ConfigError
from zhizao.site import MachineState, SiteModel, StateProfile

__all__ = [
    "OUTCOMES",
    "STATES",
    "MachineInfo",
    "MeterInfo",
    "Scenario",
    "build_scenario",
    "to_ns",
]

NS_PER_MS = 1_000_000
# state codes used in the scenario arrays
STATES: tuple[MachineState, ...] = (
    MachineState.PLANNED_DOWN,
    MachineState.SETUP,
    MachineState.IN_CYCLE,
    MachineState.DELAY,
    MachineState.IDLE,
)
PLANNED_DOWN, SETUP, IN_CYCLE, DELAY, IDLE = range(5)
OUTCOMES: tuple[str, ...] = ("good", "scrap", "rework")
NO_SHIFT = "no_shift"


def to_ns(value: int | float | str | datetime) -> int:
    """UTC nanoseconds (ms-aligned) from ns, an ISO 8601 string or an aware datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigError(f"time {value.isoformat()} has no time zone", expected="e.g. +08:00")
        ns = int(value.timestamp()) * NS_PER_S + value.microsecond * 1000
    else:
        ns = int(value)
    return ns - ns % NS_PER_MS


@dataclass(frozen=True, slots=True)
class MachineInfo:
    id: str
    type: str
    profile: StateProfile
    area: str
    line: str
    calendar: str


@dataclass(frozen=True, slots=True)
class MeterInfo:
    id: str
    medium: str
    unit: str
    signal: str
    rollover: float  # inf when the counter never rolls over
    initial: float
    topic: str | None


def _i64(x: list[int]) -> NDArray[np.int64]:
    return np.asarray(x, dtype=np.int64)


@dataclass(frozen=True)
class Scenario:
    """The whole simulated timeline as columns (the ground truth)."""

    config: SimConfig
    site: SiteModel
    seed: int
    start_ns: int
    end_ns: int
    machines: tuple[MachineInfo, ...]
    products: tuple[str, ...]
    reasons: tuple[str, ...]
    # state intervals; per machine they tile [start, end) without gaps
    st_machine: NDArray[np.int32]
    st_start_ns: NDArray[np.int64]
    st_end_ns: NDArray[np.int64]
    st_state: NDArray[np.uint8]
    st_reason: NDArray[np.int16]
    st_product: NDArray[np.int16]  # -1: none
    # spindle cutting (a subset of IN_CYCLE)
    cut_machine: NDArray[np.int32]
    cut_start_ns: NDArray[np.int64]
    cut_end_ns: NDArray[np.int64]
    cut_speed_rpm: NDArray[np.float64]
    cut_load_pct: NDArray[np.float64]
    # completed parts
    part_machine: NDArray[np.int32]
    part_ts_ns: NDArray[np.int64]
    part_product: NDArray[np.int16]
    part_outcome: NDArray[np.uint8]
    # power cycles: the part counters restart at 0
    reset_machine: NDArray[np.int32]
    reset_ts_ns: NDArray[np.int64]
    # connection drops (NO_DATA); disjoint per machine
    drop_machine: NDArray[np.int32]
    drop_start_ns: NDArray[np.int64]
    drop_end_ns: NDArray[np.int64]
    # part counters at start: columns part, good, scrap, rework, lifetime
    initial_counts: NDArray[np.int64]
    # meters: consumption rates as additive segments (unit per hour)
    meters: tuple[MeterInfo, ...]
    rate_meter: NDArray[np.int32]
    rate_start_ns: NDArray[np.int64]
    rate_end_ns: NDArray[np.int64]
    rate_per_h: NDArray[np.float64]
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # --- lookups -------------------------------------------------------------------------------
    def machine_index(self, machine_id: str) -> int:
        for i, m in enumerate(self.machines):
            if m.id == machine_id:
                return i
        raise KeyError(machine_id)

    def meter_index(self, meter_id: str) -> int:
        for i, m in enumerate(self.meters):
            if m.id == meter_id:
                return i
        raise KeyError(meter_id)

    def shifts(self, machine: int) -> ShiftWindows:
        key = f"shifts:{self.machines[machine].calendar}"
        if key not in self._cache:
            cal = self.site.calendars[self.machines[machine].calendar]
            self._cache[key] = shift_windows(cal, self.start_ns, self.end_ns)
        out: ShiftWindows = self._cache[key]
        return out

    def state_at(self, machine: int, ts_ns: int) -> tuple[MachineState, str, str | None]:
        """The true state, reason and product of ``machine`` at ``ts_ns``."""
        sel = np.flatnonzero(self.st_machine == machine)
        i = sel[np.searchsorted(self.st_start_ns[sel], ts_ns, side="right") - 1]
        prod = int(self.st_product[i])
        return (
            STATES[int(self.st_state[i])],
            self.reasons[int(self.st_reason[i])],
            self.products[prod] if prod >= 0 else None,
        )

    def in_drop(self, machine: int, ts_ns: int) -> bool:
        sel = self.drop_machine == machine
        return bool(np.any((self.drop_start_ns[sel] <= ts_ns) & (ts_ns < self.drop_end_ns[sel])))

    # --- meters ----------------------------------------------------------------------------------
    def meter_consumption(self, meter: int, ts_ns: NDArray[np.int64]) -> NDArray[np.float64]:
        """Consumption since the scenario start (not wrapped) at each of ``ts_ns``; never
        decreases, so a published counter only drops at a real rollover."""
        key = f"meter:{meter}"
        if key not in self._cache:
            sel = self.rate_meter == meter
            edges = np.concatenate((self.rate_start_ns[sel], self.rate_end_ns[sel]))
            deltas = np.concatenate((self.rate_per_h[sel], -self.rate_per_h[sel])) / 3600.0
            order = np.argsort(edges, kind="stable")
            points, first = np.unique(edges[order], return_index=True)
            # the rate after each breakpoint (unit per second); rounding noise is not a flow
            rate = np.cumsum(deltas[order])[np.r_[first[1:], len(order)] - 1]
            rate = np.where(np.abs(rate) < 1e-12, 0.0, np.maximum(rate, 0.0))
            dt_s = np.diff(points) / NS_PER_S
            cum = np.concatenate(([0.0], np.cumsum(rate[:-1] * dt_s)))
            self._cache[key] = (points, rate, cum)
        points, rate, cum = self._cache[key]
        t = np.asarray(ts_ns, dtype=np.int64)
        if len(points) == 0:
            return np.zeros(t.shape, dtype=np.float64)
        k = np.clip(np.searchsorted(points, t, side="right") - 1, 0, None)
        before = t < points[0]
        out: NDArray[np.float64] = np.where(
            before, 0.0, cum[k] + rate[k] * ((t - points[k]) / NS_PER_S)
        )
        # consumption before the first segment starts is zero; the origin is the scenario start
        return out - self._origin(meter, points, rate, cum)

    def _origin(
        self,
        meter: int,
        points: NDArray[np.int64],
        rate: NDArray[np.float64],
        cum: NDArray[np.float64],
    ) -> float:
        if len(points) == 0 or self.start_ns <= points[0]:
            return 0.0
        k = int(np.searchsorted(points, self.start_ns, side="right") - 1)
        return float(cum[k] + rate[k] * ((self.start_ns - points[k]) / NS_PER_S))

    def meter_reading(self, meter: int, ts_ns: NDArray[np.int64]) -> NDArray[np.float64]:
        """The counter a meter shows at ``ts_ns`` (wrapped at its rollover)."""
        info = self.meters[meter]
        raw = info.initial + self.meter_consumption(meter, ts_ns)
        return np.mod(raw, info.rollover) if math.isfinite(info.rollover) else raw

    def meter_rate(self, meter: int, ts_ns: NDArray[np.int64]) -> NDArray[np.float64]:
        """Instantaneous rate (unit per hour, e.g. kW) at ``ts_ns``."""
        self.meter_consumption(meter, np.zeros(0, dtype=np.int64))  # fills the cache
        points, rate, _ = self._cache[f"meter:{meter}"]
        t = np.asarray(ts_ns, dtype=np.int64)
        if len(points) == 0:
            return np.zeros(t.shape, dtype=np.float64)
        k = np.searchsorted(points, t, side="right") - 1
        out: NDArray[np.float64] = np.where(k >= 0, rate[np.clip(k, 0, None)] * 3600.0, 0.0)
        return out

    def meter_for_machine(self, machine_id: str, medium: str = "electricity") -> int | None:
        for i, (m, cfg) in enumerate(zip(self.meters, self.site.meters, strict=True)):
            if m.medium == medium and cfg.asset.split("/")[-1] == machine_id:
                return i
        return None


# --------------------------------------------------------------------------------------------
class _Timeline:
    """Collects one machine's intervals, merging equal neighbours."""

    def __init__(self) -> None:
        self.start: list[int] = []
        self.end: list[int] = []
        self.state: list[int] = []
        self.reason: list[int] = []
        self.product: list[int] = []

    def add(self, s: int, e: int, state: int, reason: int, product: int) -> None:
        if e <= s:
            return
        if (
            self.end
            and self.end[-1] == s
            and self.state[-1] == state
            and self.reason[-1] == reason
            and self.product[-1] == product
        ):
            self.end[-1] = e
            return
        self.start.append(s)
        self.end.append(e)
        self.state.append(state)
        self.reason.append(reason)
        self.product.append(product)


def _solar_kw(
    timezone: str, start_ns: int, end_ns: int, peak_kw: float
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Solar output as hourly pieces: peak x sin over 07:00-17:00 local time, every day."""
    s: list[int] = []
    rate: list[float] = []
    for _, midnight in local_day_starts(timezone, start_ns, end_ns):  # days, not samples
        for h in range(7, 17):
            s.append(midnight + h * 3600 * NS_PER_S)
            rate.append(peak_kw * math.sin(math.pi * (h + 0.5 - 7) / 10))
    starts = _i64(s)
    return starts, starts + 3600 * NS_PER_S, np.asarray(rate, np.float64)


def _ms(seconds: float) -> int:
    """A duration in ns, rounded to whole ms and at least 1 ms."""
    return max(1, round(seconds * 1000)) * NS_PER_MS


def build_scenario(
    config: SimConfig, seed: int, start: int | str | datetime, end: int | str | datetime
) -> Scenario:
    """Generate the factory's timeline for [start, end) from ``seed`` (pure, deterministic)."""
    start_ns, end_ns = to_ns(start), to_ns(end)
    if end_ns <= start_ns:
        raise ConfigError("the simulated time range is empty", expected="end after start")
    site = config.build_site()
    product_ids = tuple(p.id for p in site.products)
    reasons: list[str] = [NO_SHIFT]

    def reason_code(name: str) -> int:
        if name not in reasons:
            reasons.append(name)
        return reasons.index(name)

    machines: list[MachineInfo] = []
    for area, line, m in site.machines():
        mtype = site.machine_types[m.type]
        machines.append(
            MachineInfo(m.id, m.type, mtype.profile, area.id, line.id, m.calendar or line.calendar)
        )

    st: dict[str, list[int]] = {k: [] for k in ("m", "s", "e", "st", "r", "p")}
    cut: dict[str, list[Any]] = {k: [] for k in ("m", "s", "e", "rpm", "load")}
    parts: dict[str, list[int]] = {k: [] for k in ("m", "t", "p", "o")}
    resets: dict[str, list[int]] = {k: [] for k in ("m", "t")}
    initial_counts = np.zeros((len(machines), 5), dtype=np.int64)
    windows_cache: dict[str, ShiftWindows] = {}

    for mi, info in enumerate(machines):
        rng = np.random.default_rng([seed, mi])
        if info.calendar not in windows_cache:
            windows_cache[info.calendar] = shift_windows(
                site.calendars[info.calendar], start_ns, end_ns
            )
        win = windows_cache[info.calendar]
        beh = config.behaviour_for(info.id)
        products = [product_ids.index(p) for p in config.line_products.get(info.line, [])]
        if not products:
            products = list(range(len(product_ids)))
        if not products:
            raise ConfigError(f"line {info.line!r} has no products to make", key="line_products")
        tl = _Timeline()
        # planned down: everything outside the PBT windows (breaks inside shifts, or no shift)
        pbt = win.pbt_windows()
        t_prev = start_ns
        for w0, w1 in [*pbt, (end_ns, end_ns)]:
            if w0 > t_prev:
                _planned_down(tl, win, t_prev, w0, reason_code)
            t_prev = max(t_prev, w1)
        # machine behaviour inside the PBT windows
        initial = rng.integers(0, 20_000)
        scrap0 = int(initial * 0.015)
        rework0 = int(initial * 0.01)
        initial_counts[mi] = (
            initial,
            initial - scrap0 - rework0,
            scrap0,
            rework0,
            initial + int(rng.integers(100_000, 900_000)),
        )
        product = int(rng.choice(products))
        remaining = int(rng.integers(beh.order_parts_min, beh.order_parts_max + 1)) // 2 + 1
        speed = 1.0
        rpm = float(rng.uniform(4000, 9000))
        setup_left_ns = 0
        is_cnc = info.profile is StateProfile.OPC40502
        for w0, w1 in pbt:
            t = w0
            while t < w1:
                if setup_left_ns > 0:
                    d = min(setup_left_ns, w1 - t)
                    tl.add(t, t + d, SETUP, reason_code("order_change"), product)
                    setup_left_ns -= d
                    t += d
                    continue
                if remaining <= 0:
                    choices = [p for p in products if p != product] or products
                    product = int(rng.choice(choices))
                    remaining = int(rng.integers(beh.order_parts_min, beh.order_parts_max + 1))
                    speed = (
                        beh.reduced_speed_factor if rng.random() < beh.reduced_speed_share else 1.0
                    )
                    rpm = float(rng.uniform(4000, 9000))
                    setup_left_ns = _ms(rng.uniform(beh.setup_min_s, beh.setup_max_s))
                    continue
                pri_s = site.product(product_ids[product]).pri_s(info.id)
                ct_ns = _ms(pri_s / speed * (1.0 + abs(rng.normal(0.0, beh.cycle_jitter))))
                ct_h = ct_ns / NS_PER_S / 3600.0
                u = rng.random(4)
                if u[0] < 1.0 - math.exp(-beh.breakdown_per_h * ct_h):
                    d = min(_ms(_loguniform(rng, beh.breakdown_min_s, beh.breakdown_max_s)), w1 - t)
                    power_cycle = u[3] < beh.power_cycle_share
                    tl.add(
                        t,
                        t + d,
                        DELAY,
                        reason_code("power_cycle" if power_cycle else "breakdown"),
                        product,
                    )
                    t += d
                    if power_cycle:
                        resets["m"].append(mi)
                        resets["t"].append(t)
                    continue
                if u[1] < 1.0 - math.exp(-beh.waiting_per_h * ct_h):
                    d = min(_ms(rng.uniform(beh.waiting_min_s, beh.waiting_max_s)), w1 - t)
                    tl.add(t, t + d, IDLE, reason_code("waiting_material"), product)
                    t += d
                    continue
                if u[2] < 1.0 - math.exp(-beh.micro_stop_per_h * ct_h):
                    d = min(_ms(rng.uniform(beh.micro_stop_min_s, beh.micro_stop_max_s)), w1 - t)
                    tl.add(t, t + d, DELAY, reason_code("micro_stop"), product)
                    t += d
                    continue
                if t + ct_ns > w1:
                    # no part is started that cannot finish before the break
                    tl.add(t, w1, IDLE, reason_code("end_of_window"), product)
                    t = w1
                    continue
                reason = "reduced_speed" if speed < 1.0 else "producing"
                tl.add(t, t + ct_ns, IN_CYCLE, reason_code(reason), product)
                if is_cnc:
                    cut_ns = int(ct_ns * beh.cutting_share) // NS_PER_MS * NS_PER_MS
                    c0 = t + (ct_ns - cut_ns) // 2 // NS_PER_MS * NS_PER_MS
                    c1 = c0 + cut_ns
                    if c1 > c0:
                        cut["m"].append(mi)
                        cut["s"].append(c0)
                        cut["e"].append(c1)
                        cut["rpm"].append(round(rpm * speed, 1))
                        cut["load"].append(round(float(rng.uniform(35.0, 80.0)), 1))
                t += ct_ns
                r = rng.random()
                outcome = (
                    1 if r < beh.scrap_share else 2 if r < beh.scrap_share + beh.rework_share else 0
                )
                parts["m"].append(mi)
                parts["t"].append(t)
                parts["p"].append(product)
                parts["o"].append(outcome)
                remaining -= 1
        order = np.argsort(np.asarray(tl.start, dtype=np.int64), kind="stable")
        st["m"].extend([mi] * len(tl.start))
        st["s"].extend(np.asarray(tl.start, dtype=np.int64)[order].tolist())
        st["e"].extend(np.asarray(tl.end, dtype=np.int64)[order].tolist())
        st["st"].extend(np.asarray(tl.state)[order].tolist())
        st["r"].extend(np.asarray(tl.reason)[order].tolist())
        st["p"].extend(np.asarray(tl.product)[order].tolist())

    drops = _connection_drops(config, site, seed, machines, windows_cache, start_ns, end_ns)
    meters, rates = _meters(config, site, seed, machines, windows_cache, st, cut, start_ns, end_ns)

    return Scenario(
        config=config,
        site=site,
        seed=seed,
        start_ns=start_ns,
        end_ns=end_ns,
        machines=tuple(machines),
        products=product_ids,
        reasons=tuple(reasons),
        st_machine=np.asarray(st["m"], dtype=np.int32),
        st_start_ns=_i64(st["s"]),
        st_end_ns=_i64(st["e"]),
        st_state=np.asarray(st["st"], dtype=np.uint8),
        st_reason=np.asarray(st["r"], dtype=np.int16),
        st_product=np.asarray(st["p"], dtype=np.int16),
        cut_machine=np.asarray(cut["m"], dtype=np.int32),
        cut_start_ns=_i64(cut["s"]),
        cut_end_ns=_i64(cut["e"]),
        cut_speed_rpm=np.asarray(cut["rpm"], dtype=np.float64),
        cut_load_pct=np.asarray(cut["load"], dtype=np.float64),
        part_machine=np.asarray(parts["m"], dtype=np.int32),
        part_ts_ns=_i64(parts["t"]),
        part_product=np.asarray(parts["p"], dtype=np.int16),
        part_outcome=np.asarray(parts["o"], dtype=np.uint8),
        reset_machine=np.asarray(resets["m"], dtype=np.int32),
        reset_ts_ns=_i64(resets["t"]),
        drop_machine=drops[0],
        drop_start_ns=drops[1],
        drop_end_ns=drops[2],
        initial_counts=initial_counts,
        meters=meters,
        rate_meter=rates[0],
        rate_start_ns=rates[1],
        rate_end_ns=rates[2],
        rate_per_h=rates[3],
    )


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _planned_down(tl: _Timeline, win: ShiftWindows, s: int, e: int, reason_code: Any) -> None:
    """Split [s, e) into break intervals (named) and no-shift intervals."""
    t = s
    order = np.argsort(win.break_start_ns, kind="stable")
    for i in order.tolist():
        b0, b1 = int(win.break_start_ns[i]), int(win.break_end_ns[i])
        if b1 <= t or b0 >= e:
            continue
        if b0 > t:
            tl.add(t, b0, PLANNED_DOWN, reason_code(NO_SHIFT), -1)
        tl.add(max(b0, t), min(b1, e), PLANNED_DOWN, reason_code(win.break_name[i]), -1)
        t = min(b1, e)
    if t < e:
        tl.add(t, e, PLANNED_DOWN, reason_code(NO_SHIFT), -1)


def _connection_drops(
    config: SimConfig,
    site: SiteModel,
    seed: int,
    machines: list[MachineInfo],
    windows: dict[str, ShiftWindows],
    start_ns: int,
    end_ns: int,
) -> tuple[NDArray[np.int32], NDArray[np.int64], NDArray[np.int64]]:
    per_machine: dict[int, list[tuple[int, int]]] = {}
    for day_index, (_, midnight) in enumerate(local_day_starts(site.timezone, start_ns, end_ns)):
        rng = np.random.default_rng([seed, 1_000_000 + day_index])
        for _ in range(config.connection_drops_per_day):
            mi = int(rng.integers(0, len(machines)))
            win = windows[machines[mi].calendar]
            day_end = midnight + 86_400 * NS_PER_S
            sel = (win.shift_start_ns >= midnight) & (win.shift_start_ns < day_end)
            dur = _ms(rng.uniform(config.connection_drop_min_s, config.connection_drop_max_s))
            candidates = [
                (int(s), int(e))
                for s, e in zip(win.shift_start_ns[sel], win.shift_end_ns[sel], strict=True)
                if e - s > dur
            ]
            if not candidates:
                continue
            s, e = candidates[int(rng.integers(0, len(candidates)))]
            d0 = s + (int(rng.integers(0, (e - s - dur) // NS_PER_MS)) * NS_PER_MS)
            per_machine.setdefault(mi, []).append((d0, d0 + dur))
    m_out: list[int] = []
    s_out: list[int] = []
    e_out: list[int] = []
    for mi in sorted(per_machine):
        merged: list[list[int]] = []
        for s, e in sorted(per_machine[mi]):
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        for s, e in merged:
            m_out.append(mi)
            s_out.append(s)
            e_out.append(e)
    return np.asarray(m_out, dtype=np.int32), _i64(s_out), _i64(e_out)


def _meters(
    config: SimConfig,
    site: SiteModel,
    seed: int,
    machines: list[MachineInfo],
    windows: dict[str, ShiftWindows],
    st: dict[str, list[int]],
    cut: dict[str, list[Any]],
    start_ns: int,
    end_ns: int,
) -> tuple[
    tuple[MeterInfo, ...],
    tuple[NDArray[np.int32], NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]],
]:
    """Consumption rates per meter as additive segments; parent meters include their children."""
    rng = np.random.default_rng([seed, 2_000_000])
    machine_idx = {m.id: i for i, m in enumerate(machines)}
    st_m = np.asarray(st["m"], dtype=np.int64)
    st_s, st_e = _i64(st["s"]), _i64(st["e"])
    st_state = np.asarray(st["st"], dtype=np.int64)
    cut_m = np.asarray(cut["m"], dtype=np.int64)
    cut_s, cut_e = _i64(cut["s"]), _i64(cut["e"])
    site_win = windows[machines[0].calendar] if machines else None
    if site_win is None:
        first_cal = next(iter(site.calendars.values()))
        site_win = shift_windows(first_cal, start_ns, end_ns)
    shift_s, shift_e = site_win.shift_start_ns, site_win.shift_end_ns
    # off-shift complement of the site's shifts
    off_s = _i64([start_ns, *shift_e.tolist()])
    off_e = _i64([*shift_s.tolist(), end_ns])
    keep = off_e > off_s
    off_s, off_e = off_s[keep], off_e[keep]

    # compressor duty cycle inside shifts: loaded / unloaded periods of a few minutes
    comp_s: list[int] = []
    comp_e: list[int] = []
    comp_loaded: list[bool] = []
    for s, e in zip(shift_s.tolist(), shift_e.tolist(), strict=True):
        t = s
        loaded = True
        while t < e:
            d = min(_ms(rng.uniform(120, 600)), e - t)
            comp_s.append(t)
            comp_e.append(t + d)
            comp_loaded.append(loaded)
            loaded = not loaded
            t += d

    segs: list[tuple[int, NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]] = []
    infos: list[MeterInfo] = []
    own: dict[int, list[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]]] = {}
    parents: list[tuple[int, str]] = []
    solar: list[int] = []
    for k, meter in enumerate(site.meters):
        rollover = meter.rollover if meter.rollover is not None else math.inf
        target = meter.asset.split("/")[-1] if meter.asset else ""
        pieces: list[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]] = []
        if target in machine_idx:
            mi = machine_idx[target]
            sel = st_m == mi
            if meter.medium == "electricity":
                power = config.power_by_type.get(machines[mi].type)
                if power is None:
                    raise ConfigError(
                        f"no power profile for machine type {machines[mi].type!r}",
                        key="power_by_type",
                    )
                by_state = np.array(
                    [
                        power.off_shift_kw,
                        power.setup_kw,
                        power.in_cycle_kw,
                        power.delay_kw,
                        power.idle_kw,
                    ]
                )
                pieces.append((st_s[sel], st_e[sel], by_state[st_state[sel]]))
                csel = cut_m == mi
                pieces.append(
                    (
                        cut_s[csel],
                        cut_e[csel],
                        np.full(int(csel.sum()), power.cutting_kw - power.in_cycle_kw),
                    )
                )
                initial = float(rng.uniform(1_000.0, 50_000.0))
            else:  # a process medium on a machine (the washer's water) flows while in cycle
                busy = sel & (st_state == IN_CYCLE)
                pieces.append(
                    (st_s[busy], st_e[busy], np.full(int(busy.sum()), config.washer_m3_per_h))
                )
                initial = float(rng.uniform(100.0, 5_000.0))
        elif meter.medium in ("electricity", "compressed_air") and "compressor" in meter.id:
            cs, ce = _i64(comp_s), _i64(comp_e)
            is_loaded = np.asarray(comp_loaded, dtype=bool)
            if meter.medium == "electricity":
                rate = np.where(
                    is_loaded, config.compressor_loaded_kw, config.compressor_unloaded_kw
                )
                pieces.append((cs, ce, rate.astype(np.float64)))
                pieces.append((off_s, off_e, np.full(len(off_s), config.compressor_off_kw)))
            else:
                rate = np.where(is_loaded, config.compressor_air_m3_per_min * 60.0, 0.0)
                pieces.append((cs, ce, rate.astype(np.float64)))
            initial = float(rng.uniform(1_000.0, 50_000.0))
        elif meter.medium == "electricity" and meter.renewable:
            # rooftop solar: a half sine over the local daylight hours, hour by hour; the
            # plant consumes all of it, so the main (grid) meter takes it off its intake
            pieces.append(_solar_kw(site.timezone, start_ns, end_ns, config.solar_peak_kw))
            solar.append(k)
            initial = float(rng.uniform(1_000.0, 20_000.0))
        elif meter.medium == "electricity":
            pieces.append((shift_s, shift_e, np.full(len(shift_s), config.base_load_shift_kw)))
            pieces.append((off_s, off_e, np.full(len(off_s), config.base_load_off_kw)))
            parents.append((k, "electricity"))
            initial = float(rng.uniform(100_000.0, 500_000.0))
        elif meter.medium == "natural_gas":
            factor = 1.0 + 0.1 * rng.standard_normal(len(shift_s))
            pieces.append((shift_s, shift_e, config.gas_shift_m3_per_h * np.clip(factor, 0.5, 1.5)))
            pieces.append((off_s, off_e, np.full(len(off_s), config.gas_off_m3_per_h)))
            initial = float(rng.uniform(10_000.0, 90_000.0))
        elif meter.medium == "water":
            pieces.append((shift_s, shift_e, np.full(len(shift_s), config.water_base_m3_per_h)))
            pieces.append((off_s, off_e, np.full(len(off_s), config.water_base_m3_per_h * 0.1)))
            parents.append((k, "water"))
            initial = float(rng.uniform(1_000.0, 20_000.0))
        else:  # other media: a constant flow during shifts
            pieces.append((shift_s, shift_e, np.ones(len(shift_s))))
            initial = 0.0
        if math.isfinite(rollover):
            initial = initial % rollover
        own[k] = pieces
        infos.append(
            MeterInfo(
                meter.id,
                meter.medium,
                meter.unit,
                meter.signal,
                rollover,
                initial,
                meter.mqtt_topic,
            )
        )
    # one machine meter starts just below its rollover so that a rollover happens early
    machine_meters = [
        k
        for k, m in enumerate(site.meters)
        if m.medium == "electricity" and (m.asset.split("/")[-1] if m.asset else "") in machine_idx
    ]
    if config.rollover_headroom_kwh is not None and machine_meters:
        k = machine_meters[int(rng.integers(0, len(machine_meters)))]
        if math.isfinite(infos[k].rollover):
            infos[k] = MeterInfo(
                infos[k].id,
                infos[k].medium,
                infos[k].unit,
                infos[k].signal,
                infos[k].rollover,
                infos[k].rollover - config.rollover_headroom_kwh,
                infos[k].topic,
            )
    # a site-level electricity (water) meter without "compressor" is the main meter of its medium
    for k, medium in parents:
        for j, m in enumerate(site.meters):
            if j != k and m.medium == medium and (m.asset or "compressor" in m.id):
                own[k] = own[k] + own[j]
            elif j in solar and medium == "electricity":  # generated on site: less from the grid
                own[k] = own[k] + [(s, e, -r) for s, e, r in own[j]]
    for k, pieces in own.items():
        for s, e, r in pieces:
            segs.append((k, s, e, np.asarray(r, dtype=np.float64)))
    if segs:
        rate_meter = np.concatenate([np.full(len(s), k, dtype=np.int32) for k, s, _, _ in segs])
        rate_s = np.concatenate([s for _, s, _, _ in segs]).astype(np.int64)
        rate_e = np.concatenate([e for _, _, e, _ in segs]).astype(np.int64)
        rate_v = np.concatenate([r for _, _, _, r in segs]).astype(np.float64)
    else:
        rate_meter = np.zeros(0, dtype=np.int32)
        rate_s = rate_e = np.zeros(0, dtype=np.int64)
        rate_v = np.zeros(0, dtype=np.float64)
    return tuple(infos), (rate_meter, rate_s, rate_e, rate_v)
