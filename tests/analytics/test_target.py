"""Target quantity as components: ``target_q`` (integral of 1/PRI over PBT with a known product)
and ``pbt_no_product_s`` (PBT without one), so targets roll up sum/sum like every component."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analytics.calendar import PlannedTime, day_windows, hour_windows, planned_time
from analytics.components import Components, target_or_none
from analytics.compute import SiteComputer
from analytics.config import KpiConfig
from analytics.engine import KpiEngine
from analytics.machine import MachineSignals, Signal, machine_components
from analytics.timeelements import TimeElementOptions
from ingest.influx import InfluxWriter
from tests.analytics.helpers import DAY_CALENDAR, MIN_NS, TZ, at, m1_state_samples
from tests.analytics.test_engine_influx import NEXT_DAY, engine_config, raw_day, rows
from tests.analytics.test_offline_cli import SITE
from tests.analytics.test_timeline import m1_context, m1_counters
from tests.conftest import InfluxDb
from zhizao.site import SiteModel

HOUR = 60 * MIN_NS
PRI = {"A": 120.0, "B": 60.0}


def _day() -> tuple[np.ndarray, np.ndarray, PlannedTime]:
    ws, we, _ = day_windows(at("00:00"), at("00:00") + 1440 * MIN_NS, TZ)
    return ws, we, planned_time(DAY_CALENDAR, int(ws[0]), int(we[-1]))


def _m1(product: Signal | None = None) -> MachineSignals:
    ts, states = m1_state_samples()
    roles = m1_counters()
    if product is not None:
        roles = {**roles, "product": product}
    return MachineSignals(roles, {"state": Signal(ts, states)})


def _products(*changes: tuple[str, str]) -> Signal:
    return Signal(
        np.array([at(t) for t, _ in changes], np.int64), np.array([p for _, p in changes], object)
    )


def test_worked_example_with_a_product_change_mid_hour_gives_the_exact_target() -> None:
    """PBT 06:00-22:00 minus lunch and dinner (900 min). Product A (PRI 120 s) until 10:30, then
    B (PRI 60 s): 270 min of A = 135 parts, 630 min of B = 630 parts, 765 in all."""
    ws, we, planned = _day()
    signals = _m1(_products(("05:00", "A"), ("10:30", "B")))
    ctx = m1_context(pri_s_by_product=PRI, default_product=None)
    day = machine_components(signals, ctx, planned, ws, we).components
    assert day.pbt_s[0] == 900 * 60 and day.pbt_no_product_s[0] == 0.0
    assert day.target_q[0] == 765.0
    assert target_or_none(day)[0] == 765.0

    hs, he = hour_windows(int(ws[0]), int(we[0]))
    hours = machine_components(signals, ctx, planned, hs, he).components
    by_hour = dict(zip(((hs - at("00:00")) // HOUR).tolist(), hours.target_q.tolist(), strict=True))
    assert by_hour[6] == 30.0  # a whole hour of A
    assert by_hour[10] == 15.0 + 30.0  # 30 min of A, then 30 min of B
    assert by_hour[12] == 30.0  # lunch 12:00-12:30 is not PBT
    assert by_hour[18] == 30.0 and by_hour[21] == 60.0 and by_hour[22] == 0.0
    # the hours partition the day: the target adds up (sum/sum roll-ups stay exact)
    assert hours.target_q.sum() == pytest.approx(765.0, abs=1e-9)
    assert (hours.pbt_no_product_s == 0).all()
    # hours without PBT have no target (null), never 0 parts expected
    shown = target_or_none(hours)
    assert np.isnan(shown[hours.pbt_s == 0]).all() and len(shown[hours.pbt_s == 0]) == 8
    assert shown[6] == 30.0
    # target attainment from the same components: PQ / target
    assert day.pq[0] / target_or_none(day)[0] == pytest.approx(360 / 765)


def test_no_product_means_no_target() -> None:
    ws, we, planned = _day()
    ctx = m1_context(pri_s_by_product=PRI, default_product=None)
    c = machine_components(_m1(), ctx, planned, ws, we).components
    assert c.pbt_no_product_s[0] == c.pbt_s[0] == 900 * 60
    assert c.target_q[0] == 0.0 and np.isnan(target_or_none(c)[0])
    # a machine without any data still has a plan but no product: null, not an invented number
    empty = machine_components(MachineSignals({}), ctx, planned, ws, we).components
    assert empty.pbt_no_product_s[0] == empty.pbt_s[0] and np.isnan(target_or_none(empty)[0])


def test_default_product_gives_pbt_over_pri() -> None:
    ws, we, planned = _day()
    c = machine_components(_m1(), m1_context(), planned, ws, we).components  # P-100, PRI 120 s
    assert c.target_q[0] == 900 * 60 / 120 and c.pbt_no_product_s[0] == 0.0
    assert target_or_none(c)[0] == 450.0


def test_time_before_the_first_product_and_unknown_products_have_no_product() -> None:
    """No default product: until the first product id (08:00) there is no PRI, and product X has
    none on this machine either (09:00-10:00). Those hours show no target; the others do."""
    ws, we, planned = _day()
    signals = _m1(_products(("08:00", "A"), ("09:00", "X"), ("10:00", "B")))
    ctx = m1_context(pri_s_by_product=PRI, default_product=None)
    res = machine_components(signals, ctx, planned, ws, we)
    c = res.components
    assert res.unknown_products == ["X"]
    assert c.pbt_no_product_s[0] == (120 + 60) * 60  # 06:00-08:00 and 09:00-10:00
    # A 08:00-09:00 (30), B 10:00-22:00 minus the breaks (660 min -> 660)
    assert c.target_q[0] == 30.0 + 660.0
    assert np.isnan(target_or_none(c)[0])  # part of the day's PBT has no product
    hs, he = hour_windows(int(ws[0]), int(we[0]))
    h = machine_components(signals, ctx, planned, hs, he).components
    shown = target_or_none(h)
    idx = ((hs - at("00:00")) // HOUR).tolist()
    got = dict(zip(idx, shown.tolist(), strict=True))
    assert np.isnan(got[6]) and np.isnan(got[7]) and np.isnan(got[9])
    assert got[8] == 30.0 and got[10] == 60.0
    # the components still roll up: the day is the sum of its hours
    assert h.pbt_no_product_s.sum() == c.pbt_no_product_s[0]
    assert h.target_q.sum() == pytest.approx(c.target_q[0], abs=1e-9)


def test_product_id_at_the_instant_of_a_part_changes_the_rate_from_that_instant() -> None:
    """A part counted at the change keeps the old PRI (it was made by the old order), but the
    time from the change on runs at the new product's rate."""
    lo, hi = at("08:00"), at("09:00")
    ws, we = np.array([lo], np.int64), np.array([hi], np.int64)
    parts = Signal(np.array([lo, at("08:30")], np.int64), np.array([0.0, 1.0]))
    signals = MachineSignals(
        {"parts_total": parts, "product": _products(("07:00", "A"), ("08:30", "B"))},
        {"state": Signal(np.array([lo], np.int64), np.array(["IN_CYCLE"], object))},
    )
    ctx = m1_context(pri_s_by_product=PRI, default_product=None)
    c = machine_components(signals, ctx, PlannedTime.always(lo, hi), ws, we).components
    assert c.pri_pq_s[0] == 120.0  # the part at 08:30 is A's
    assert c.target_q[0] == 15.0 + 30.0  # 30 min of A + 30 min of B


def test_target_covers_pbt_only() -> None:
    """Idle with no order counted as planned down leaves PBT, and the target with it."""
    ws, we, planned = _day()
    plain = machine_components(_m1(), m1_context(), planned, ws, we).components
    opts = TimeElementOptions(no_order_is_planned_down=True)
    no_order = machine_components(_m1(), m1_context(options=opts), planned, ws, we).components
    assert plain.adot_s[0] == 30 * 60 and no_order.pbt_s[0] == plain.pbt_s[0] - 30 * 60
    assert no_order.target_q[0] == no_order.pbt_s[0] / 120 == 435.0


def test_the_calendars_no_order_rule_reaches_the_engine() -> None:
    """``no_order_is_planned_down`` of the machine's calendar (site model) moves IDLE inside POT
    to planned down in the engine's components, and the target follows PBT."""
    _, data = raw_day()
    start, end = at("00:00"), at("00:00", NEXT_DAY)
    results = {}
    for flag in (False, True):
        site: dict[str, Any] = copy.deepcopy(SITE)
        site["calendars"]["day"]["no_order_is_planned_down"] = flag
        computer = SiteComputer(
            SiteModel.model_validate(site), KpiConfig(sites=[Path("site.yaml")])
        )
        res = computer.compute(data, "day", start, end)
        results[flag] = res.components.take(np.array([res.machine.index("M1")]))
    plain, no_order = results[False], results[True]
    assert plain.adot_s[0] == 30 * 60 and no_order.adot_s[0] == 0.0
    assert no_order.planned_down_s[0] == plain.planned_down_s[0] + 30 * 60
    assert no_order.pbt_s[0] == 870 * 60 and no_order.target_q[0] == 870 * 60 / 120


@pytest.mark.parametrize("seed", range(8))
def test_random_products_target_is_the_integral_of_one_over_pri(seed: int) -> None:
    """Against a brute-force minute-by-minute integral, and windows partition the whole."""
    rng = np.random.default_rng(seed)
    lo = at("00:00")
    ws, we, planned = _day()
    n = int(rng.integers(1, 30))
    change_min = np.sort(rng.choice(np.arange(0, 1440), n, replace=False))
    names = rng.choice(np.array(["A", "B", "X"], object), n)
    product = Signal(lo + change_min.astype(np.int64) * MIN_NS, names)
    default = rng.choice(np.array(["A", "none"], object))
    ctx = m1_context(
        pri_s_by_product=PRI, default_product=None if default == "none" else str(default)
    )
    signals = _m1(product)
    c = machine_components(signals, ctx, planned, ws, we).components
    # brute force: every minute of the day (all changes and calendar edges are whole minutes)
    minutes = lo + np.arange(1440, dtype=np.int64) * MIN_NS
    k = np.searchsorted(product.ts_ns, minutes, "right") - 1
    current = np.where(k >= 0, names[np.clip(k, 0, None)], default)
    pri = np.array([PRI.get(str(p), np.nan) for p in current])
    in_pot = (minutes >= at("06:00")) & (minutes < at("22:00"))
    breaks = ((minutes >= at("12:00")) & (minutes < at("12:30"))) | (
        (minutes >= at("18:00")) & (minutes < at("18:30"))
    )
    pbt = in_pot & ~breaks
    known = np.isfinite(pri)
    assert c.pbt_no_product_s[0] == 60.0 * (pbt & ~known).sum()
    assert c.target_q[0] == pytest.approx((60.0 / pri[pbt & known]).sum(), rel=1e-12)
    hs, he = hour_windows(int(ws[0]), int(we[0]))
    h = machine_components(signals, ctx, planned, hs, he).components
    assert h.target_q.sum() == pytest.approx(c.target_q[0], rel=1e-12)
    assert h.pbt_no_product_s.sum() == c.pbt_no_product_s[0]


def test_target_or_none_after_a_roll_up() -> None:
    c = Components.from_columns(
        {"pbt_s": [3600, 3600, 0], "target_q": [30, 60, 0], "pbt_no_product_s": [0, 600, 0]}
    )
    assert target_or_none(c).tolist()[:1] == [30.0]
    assert np.isnan(target_or_none(c)[1:]).all()  # part without product; no PBT
    line = c.take(np.array([0, 2])).total()  # sum first, then the rule
    assert target_or_none(line).tolist() == [30.0]
    assert np.isnan(target_or_none(c.total())[0])


@pytest.mark.integration
async def test_engine_stores_the_target_components(tmp_path: Path, influx_db: InfluxDb) -> None:
    """The engine writes target_q and pbt_no_product_s like any component; the line target for
    the day is one sum over the stored rows."""
    cfg = engine_config(tmp_path, influx_db)
    assert cfg.influx is not None
    lines, _ = raw_day()
    async with InfluxWriter(cfg.influx) as writer:
        await writer.write_body(("\n".join(lines) + "\n").encode(), len(lines))
    await KpiEngine(cfg).run_once(at("00:01", NEXT_DAY))
    day = rows(influx_db, "kpi_machine_day")
    # both machines run the site's only product P-100 (PRI 120 s) over 900 min of PBT
    for got in day.values():
        assert got["target_q"] == pytest.approx(450.0, abs=1e-9)
        assert got["pbt_no_product_s"] == 0
    hours = rows(influx_db, "kpi_machine_hour")
    m1 = [v for (tags, _), v in hours.items() if ("machine", "M1") in tags]
    assert sum(v["target_q"] for v in m1) == pytest.approx(450.0, abs=1e-9)
    q = influx_db.query(
        'SELECT sum("target_q"), sum("pbt_no_product_s") FROM "kpi_machine_hour" '
        "WHERE \"line\" = 'l1'"
    )
    values = q["results"][0]["series"][0]["values"][0]
    assert values[1] == pytest.approx(900.0, abs=1e-9) and values[2] == 0
