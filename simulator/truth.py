"""Ground truth: what really happened, as JSON Lines, and the ISO 22400 elements derived from it.

Definitions follow DOMAIN.md sections 1 and 3: POT is the scheduled shift time, planned down the
breaks inside the shifts, PBT = POT - planned down; APT = in cycle, AUST = setup, ADET = delays
(breakdowns, micro stops) plus NO_DATA (connection lost, reported separately as ``no_data_s``),
ADOT = idle (waiting, end of window). PBT = APT + AUST + ADET + ADOT holds exactly.
Quantities count parts completed in the window; GQ is first-pass good (PQ - SQ - RQ).

Records of the truth file (one JSON object per line, ``type`` first):
``meta`` (seed, range, config), ``state`` (machine, start_ns, end_ns, state, reason, product),
``cutting``, ``part`` (machine, ts_ns, product, outcome), ``counter_reset``, ``connection_drop``,
``meter`` (id, medium, unit, rollover, initial) and ``rate`` (meter, start_ns, end_ns, per_h).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from simulator.calendar import NS_PER_S
from simulator.config import SimConfig
from simulator.scenario import (
    DELAY,
    IDLE,
    IN_CYCLE,
    NO_SHIFT,
    OUTCOMES,
    PLANNED_DOWN,
    SETUP,
    STATES,
    MachineInfo,
    MeterInfo,
    Scenario,
    to_ns,
)
from zhizao.errors import ConfigError, DecodeError

__all__ = ["iso22400_elements", "meter_totals", "read_truth", "truth_report", "write_truth"]


def _measure_fn(
    starts: NDArray[np.int64], ends: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], ends[order]
    lengths = e - s
    before = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    return s, lengths, before


def _measure_upto(
    prepared: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]], t: NDArray[np.int64]
) -> NDArray[np.int64]:
    """Length of (disjoint) intervals before each ``t``."""
    s, lengths, before = prepared
    if len(s) == 0:
        return np.zeros(t.shape, dtype=np.int64)
    k = np.searchsorted(s, t, side="right") - 1
    kk = np.clip(k, 0, None)
    inside = np.clip(t - s[kk], 0, lengths[kk])
    out: NDArray[np.int64] = np.where(k >= 0, before[kk] + inside, 0).astype(np.int64)
    return out


def _overlap(s: NDArray[np.int64], e: NDArray[np.int64], prepared: Any) -> NDArray[np.int64]:
    out: NDArray[np.int64] = _measure_upto(prepared, e) - _measure_upto(prepared, s)
    return out


def iso22400_elements(sc: Scenario, from_ns: Any, to_ns_: Any) -> dict[str, dict[str, Any]]:
    """Per machine: ISO 22400 times (seconds) and quantities, cutting time and energy, for
    [from, to)."""
    a, b = to_ns(from_ns), to_ns(to_ns_)
    out: dict[str, dict[str, Any]] = {}
    no_shift = sc.reasons.index(NO_SHIFT) if NO_SHIFT in sc.reasons else -1
    for mi, info in enumerate(sc.machines):
        win = sc.shifts(mi)
        pot = int(
            np.clip(
                np.minimum(win.shift_end_ns, b) - np.maximum(win.shift_start_ns, a), 0, None
            ).sum()
        )
        sel = sc.st_machine == mi
        s = np.maximum(sc.st_start_ns[sel], a)
        e = np.minimum(sc.st_end_ns[sel], b)
        e = np.maximum(e, s)
        length = e - s
        state = sc.st_state[sel]
        reason = sc.st_reason[sel]
        dsel = sc.drop_machine == mi
        drops = _measure_fn(sc.drop_start_ns[dsel], sc.drop_end_ns[dsel])
        dropped = _overlap(s, e, drops)
        planned_down = int(length[(state == PLANNED_DOWN) & (reason != no_shift)].sum())
        times = {}
        for code in (SETUP, IN_CYCLE, DELAY, IDLE):
            m = state == code
            times[code] = int(length[m].sum() - dropped[m].sum())
        no_data = int(dropped[state != PLANNED_DOWN].sum())
        csel = sc.cut_machine == mi
        cs = np.maximum(sc.cut_start_ns[csel], a)
        ce = np.maximum(np.minimum(sc.cut_end_ns[csel], b), cs)
        cutting = int(((ce - cs) - _overlap(cs, ce, drops)).sum())
        psel = (sc.part_machine == mi) & (sc.part_ts_ns >= a) & (sc.part_ts_ns < b)
        outcomes = sc.part_outcome[psel]
        pq = int(psel.sum())
        sq = int((outcomes == OUTCOMES.index("scrap")).sum())
        rq = int((outcomes == OUTCOMES.index("rework")).sum())
        gq = pq - sq - rq
        pri_pq = 0.0
        pri_gq = 0.0
        prods = sc.part_product[psel]
        for p in np.unique(prods).tolist():
            pri = sc.site.product(sc.products[p]).pri_s(info.id)
            pri_pq += pri * int((prods == p).sum())
            pri_gq += pri * int(((prods == p) & (outcomes == 0)).sum())
        meter = sc.meter_for_machine(info.id)
        energy = None
        if meter is not None:
            c = sc.meter_consumption(meter, np.asarray([a, b], dtype=np.int64))
            energy = float(c[1] - c[0])
        pbt = pot - planned_down
        out[info.id] = {
            "area": info.area,
            "line": info.line,
            "pot_s": pot / NS_PER_S,
            "planned_down_s": planned_down / NS_PER_S,
            "pbt_s": pbt / NS_PER_S,
            "apt_s": times[IN_CYCLE] / NS_PER_S,
            "aust_s": times[SETUP] / NS_PER_S,
            "adet_s": (times[DELAY] + no_data) / NS_PER_S,
            "adot_s": times[IDLE] / NS_PER_S,
            "no_data_s": no_data / NS_PER_S,
            "no_data": no_data > 0,
            "cutting_s": cutting / NS_PER_S,
            "pq": pq,
            "gq": gq,
            "sq": sq,
            "rq": rq,
            "pri_pq_s": pri_pq,
            "pri_gq_s": pri_gq,
            "energy_kwh": energy,
            "counter_resets": int(
                ((sc.reset_machine == mi) & (sc.reset_ts_ns >= a) & (sc.reset_ts_ns < b)).sum()
            ),
        }
    return out


def meter_totals(sc: Scenario, from_ns: Any, to_ns_: Any) -> dict[str, dict[str, Any]]:
    """Consumption per meter in [from, to)."""
    a, b = to_ns(from_ns), to_ns(to_ns_)
    out: dict[str, dict[str, Any]] = {}
    for k, m in enumerate(sc.meters):
        c = sc.meter_consumption(k, np.asarray([a, b], dtype=np.int64))
        out[m.id] = {"medium": m.medium, "unit": m.unit, "quantity": float(c[1] - c[0])}
    return out


def truth_report(sc: Scenario, from_ns: Any, to_ns_: Any) -> dict[str, Any]:
    """What ``zhizao sim truth`` prints."""
    a, b = to_ns(from_ns), to_ns(to_ns_)
    return {
        "from_ns": a,
        "to_ns": b,
        "seed": sc.seed,
        "machines": iso22400_elements(sc, a, b),
        "meters": meter_totals(sc, a, b),
    }


# --- JSON Lines ----------------------------------------------------------------------------------
def write_truth(sc: Scenario, path: str | Path) -> int:
    """Write the scenario as JSON Lines; returns the number of records."""
    mids = [m.id for m in sc.machines]
    lines: list[bytes] = []

    def rec(obj: dict[str, Any]) -> None:
        lines.append(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY))

    rec(
        {
            "type": "meta",
            "seed": sc.seed,
            "start_ns": sc.start_ns,
            "end_ns": sc.end_ns,
            "config": sc.config.model_dump(mode="json"),
        }
    )
    for i in range(len(sc.st_machine)):
        p = int(sc.st_product[i])
        rec(
            {
                "type": "state",
                "machine": mids[sc.st_machine[i]],
                "start_ns": int(sc.st_start_ns[i]),
                "end_ns": int(sc.st_end_ns[i]),
                "state": STATES[int(sc.st_state[i])].value,
                "reason": sc.reasons[int(sc.st_reason[i])],
                "product": sc.products[p] if p >= 0 else None,
            }
        )
    for i in range(len(sc.cut_machine)):
        rec(
            {
                "type": "cutting",
                "machine": mids[sc.cut_machine[i]],
                "start_ns": int(sc.cut_start_ns[i]),
                "end_ns": int(sc.cut_end_ns[i]),
                "speed_rpm": float(sc.cut_speed_rpm[i]),
                "load_pct": float(sc.cut_load_pct[i]),
            }
        )
    for i in range(len(sc.part_machine)):
        rec(
            {
                "type": "part",
                "machine": mids[sc.part_machine[i]],
                "ts_ns": int(sc.part_ts_ns[i]),
                "product": sc.products[int(sc.part_product[i])],
                "outcome": OUTCOMES[int(sc.part_outcome[i])],
            }
        )
    for i in range(len(sc.reset_machine)):
        rec(
            {
                "type": "counter_reset",
                "machine": mids[sc.reset_machine[i]],
                "ts_ns": int(sc.reset_ts_ns[i]),
                "reason": "power_cycle",
            }
        )
    for i in range(len(sc.drop_machine)):
        rec(
            {
                "type": "connection_drop",
                "machine": mids[sc.drop_machine[i]],
                "start_ns": int(sc.drop_start_ns[i]),
                "end_ns": int(sc.drop_end_ns[i]),
            }
        )
    for mi, m in enumerate(sc.machines):
        rec({"type": "initial_counts", "machine": m.id, "counts": sc.initial_counts[mi].tolist()})
    for meter in sc.meters:
        rec(
            {
                "type": "meter",
                "id": meter.id,
                "medium": meter.medium,
                "unit": meter.unit,
                "signal": meter.signal,
                "rollover": meter.rollover if np.isfinite(meter.rollover) else None,
                "initial": meter.initial,
                "topic": meter.topic,
            }
        )
    for i in range(len(sc.rate_meter)):
        rec(
            {
                "type": "rate",
                "meter": sc.meters[int(sc.rate_meter[i])].id,
                "start_ns": int(sc.rate_start_ns[i]),
                "end_ns": int(sc.rate_end_ns[i]),
                "per_h": float(sc.rate_per_h[i]),
            }
        )
    Path(path).write_bytes(b"\n".join(lines) + b"\n")
    return len(lines)


def read_truth(path: str | Path) -> Scenario:
    """Read a truth file written by ``write_truth`` back into a ``Scenario``."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read truth file: {exc.strerror}", file=str(p)) from exc
    recs: dict[str, list[dict[str, Any]]] = {}
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise DecodeError("bad_json", "truth file line is not JSON", detail=f"{p}:{n}") from exc
        recs.setdefault(obj["type"], []).append(obj)
    if "meta" not in recs:
        raise DecodeError("no_meta", "truth file has no meta record", detail=str(p))
    meta = recs["meta"][0]
    config = SimConfig.model_validate(meta["config"])
    site = config.build_site()
    machines = []
    for area, line_cfg, m in site.machines():
        machines.append(
            MachineInfo(
                m.id,
                m.type,
                site.machine_types[m.type].profile,
                area.id,
                line_cfg.id,
                m.calendar or line_cfg.calendar,
            )
        )
    mids = {m.id: i for i, m in enumerate(machines)}
    products = tuple(pr.id for pr in site.products)
    reasons: list[str] = [NO_SHIFT]
    states = [s.value for s in STATES]

    def col(kind: str, key: str, fn: Any, dtype: Any) -> NDArray[Any]:
        return np.asarray([fn(r[key]) for r in recs.get(kind, [])], dtype=dtype)

    def reason_code(name: str) -> int:
        if name not in reasons:
            reasons.append(name)
        return reasons.index(name)

    meters = tuple(
        MeterInfo(
            r["id"],
            r["medium"],
            r["unit"],
            r["signal"],
            float(r["rollover"]) if r["rollover"] is not None else float("inf"),
            float(r["initial"]),
            r["topic"],
        )
        for r in recs.get("meter", [])
    )
    meter_idx = {m.id: i for i, m in enumerate(meters)}
    # the reason table must be complete before the state column is built from it
    for r in recs.get("state", []):
        reason_code(r["reason"])
    initial = np.zeros((len(machines), 5), dtype=np.int64)
    for r in recs.get("initial_counts", []):
        initial[mids[r["machine"]]] = r["counts"]
    return Scenario(
        config=config,
        site=site,
        seed=int(meta["seed"]),
        start_ns=int(meta["start_ns"]),
        end_ns=int(meta["end_ns"]),
        machines=tuple(machines),
        products=products,
        reasons=tuple(reasons),
        st_machine=col("state", "machine", mids.__getitem__, np.int32),
        st_start_ns=col("state", "start_ns", int, np.int64),
        st_end_ns=col("state", "end_ns", int, np.int64),
        st_state=col("state", "state", states.index, np.uint8),
        st_reason=col("state", "reason", reason_code, np.int16),
        st_product=col("state", "product", lambda x: products.index(x) if x else -1, np.int16),
        cut_machine=col("cutting", "machine", mids.__getitem__, np.int32),
        cut_start_ns=col("cutting", "start_ns", int, np.int64),
        cut_end_ns=col("cutting", "end_ns", int, np.int64),
        cut_speed_rpm=col("cutting", "speed_rpm", float, np.float64),
        cut_load_pct=col("cutting", "load_pct", float, np.float64),
        part_machine=col("part", "machine", mids.__getitem__, np.int32),
        part_ts_ns=col("part", "ts_ns", int, np.int64),
        part_product=col("part", "product", products.index, np.int16),
        part_outcome=col("part", "outcome", OUTCOMES.index, np.uint8),
        reset_machine=col("counter_reset", "machine", mids.__getitem__, np.int32),
        reset_ts_ns=col("counter_reset", "ts_ns", int, np.int64),
        drop_machine=col("connection_drop", "machine", mids.__getitem__, np.int32),
        drop_start_ns=col("connection_drop", "start_ns", int, np.int64),
        drop_end_ns=col("connection_drop", "end_ns", int, np.int64),
        initial_counts=initial,
        meters=meters,
        rate_meter=col("rate", "meter", meter_idx.__getitem__, np.int32),
        rate_start_ns=col("rate", "start_ns", int, np.int64),
        rate_end_ns=col("rate", "end_ns", int, np.int64),
        rate_per_h=col("rate", "per_h", float, np.float64),
    )
