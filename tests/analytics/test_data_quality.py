"""Defects found by the end-to-end comparison with the simulator's truth: connection drops are
NO_DATA (data-quality markers), hourly energy is the energy between the edge readings, and a
part completed at a product change keeps its own product's PRI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analytics.calendar import PlannedTime
from analytics.counters import increments_by_window
from analytics.engine import KpiEngine
from analytics.machine import MachineSignals, Signal, machine_components
from ingest.influx import InfluxWriter
from tests.analytics.helpers import MIN_NS, at
from tests.analytics.test_engine_influx import NEXT_DAY, TAGS, engine_config, rows
from tests.analytics.test_timeline import m1_context
from tests.conftest import InfluxDb

HOUR_NS = 60 * MIN_NS


def _hours(first: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    ws = at(first) + np.arange(n, dtype=np.int64) * HOUR_NS
    return ws, ws + HOUR_NS


def _in_cycle_from(hhmm: str) -> dict[str, Signal]:
    return {"state": Signal(np.array([at(hhmm)], np.int64), np.array(["IN_CYCLE"], object))}


def test_bad_state_signal_is_no_data_never_running() -> None:
    """The state signal went bad 08:20-08:35 (connection lost, no values): ADET without data,
    flagged, not APT, although the last state before the drop was IN_CYCLE."""
    ws, we = _hours("08:00", 1)
    planned = PlannedTime.always(int(ws[0]), int(we[0]))
    marks = Signal(np.array([at("08:20"), at("08:35")], np.int64), np.array([2.0, 0.0]))
    sig = MachineSignals({}, _in_cycle_from("07:00"), {"state": marks})
    c = machine_components(sig, m1_context(), planned, ws, we).components
    assert (c.apt_s[0], c.adet_s[0], c.adet_no_data_s[0]) == (2700.0, 900.0, 900.0)
    # the same signals without markers (the behaviour before the fix) count the drop as running
    plain = machine_components(MachineSignals({}, _in_cycle_from("07:00")), m1_context(),
                               planned, ws, we).components  # fmt: skip
    assert plain.apt_s[0] == 3600.0


def test_marker_carried_into_the_window_stale_counts_uncertain_does_not() -> None:
    ws, we = _hours("08:00", 1)
    planned = PlannedTime.always(int(ws[0]), int(we[0]))
    states = {
        **_in_cycle_from("07:00"),
        "mode": Signal(np.array([at("07:00")], np.int64), np.array(["IN_CYCLE"], object)),
    }
    quality = {
        # bad since before the window, good again at 08:05
        "state": Signal(np.array([at("07:50"), at("08:05")], np.int64), np.array([2.0, 0.0])),
        # another state signal: uncertain 08:10-08:20 (values still used), stale 08:30-08:40
        "mode": Signal(
            np.array([at("08:10"), at("08:20"), at("08:30"), at("08:40")], np.int64),
            np.array([1.0, 0.0, 3.0, 0.0]),
        ),
    }
    c = machine_components(
        MachineSignals({}, states, quality), m1_context(), planned, ws, we
    ).components
    assert c.adet_no_data_s[0] == 5 * 60 + 10 * 60
    assert c.apt_s[0] == 3600 - 15 * 60


def test_hourly_kwh_is_the_energy_between_the_edge_readings() -> None:
    """A meter read every minute across hour boundaries: each hour holds exactly
    reading(end) - reading(start), not the hour shifted back by one reading period."""
    ts = at("07:00") + np.arange(0, 181, dtype=np.int64) * MIN_NS
    kwh = np.cumsum(np.arange(181, dtype=np.float64))  # a different increment every minute
    ws, we = _hours("07:00", 3)
    planned = PlannedTime.always(int(ws[0]), int(we[-1]))
    sig = MachineSignals({"energy_kwh": Signal(ts, kwh)}, _in_cycle_from("06:00"))
    c = machine_components(sig, m1_context(), planned, ws, we).components
    edge = kwh[[0, 60, 120, 180]]
    assert c.kwh.tolist() == np.diff(edge).tolist()
    # events counted at their time (parts) keep [start, end): a part at 08:00 is the 08:00 hour's
    parts = increments_by_window(np.array([at("08:00")], np.int64), np.ones(1), ws, we)
    assert parts.tolist() == [0.0, 1.0, 0.0]


def test_part_completed_at_a_product_change_takes_the_old_products_pri() -> None:
    """The simulator publishes the next product id with the timestamp of the last part of the
    previous order: that part is valued with the product in force just before it."""
    ws, we = _hours("08:00", 1)
    parts_ts = at("08:00") + np.arange(0, 50, 10, dtype=np.int64) * MIN_NS  # 08:00 .. 08:40
    signals = MachineSignals(
        {
            "parts_total": Signal(parts_ts, np.array([0.0, 1, 2, 3, 4])),
            "parts_good": Signal(parts_ts, np.array([0.0, 1, 2, 3, 4])),
            "product": Signal(
                np.array([at("06:00"), at("08:20")], np.int64), np.array(["A", "B"], object)
            ),
        },
        _in_cycle_from("07:00"),
    )
    ctx = m1_context(pri_s_by_product={"A": 60.0, "B": 300.0})
    c = machine_components(
        signals, ctx, PlannedTime.always(int(ws[0]), int(we[0])), ws, we
    ).components
    # 08:20 is A's last part (the change to B is published at the same instant)
    assert c.pri_pq_s[0] == 2 * 60 + 2 * 300 and c.pri_gq_s[0] == 2 * 60 + 2 * 300


@pytest.mark.integration
async def test_engine_reads_markers_and_books_meter_readings_right_closed(
    tmp_path: Path, influx_db: InfluxDb
) -> None:
    """Raw data as the gateway writes it: the state signal's marker in ``data_quality`` (asset
    tags + ``measurement``), a machine meter read every minute."""
    cfg = engine_config(tmp_path, influx_db)
    assert cfg.influx is not None
    lines = [f'machine_state,{TAGS},machine=M1 state="IN_CYCLE" {at("07:00")}']
    lines += [
        f"data_quality,{TAGS},machine=M1,measurement=machine_state state={q}i {at(t)}"
        for t, q in (("07:00", 0), ("08:20", 2), ("08:35", 0))
    ]
    # neither another machine's marker nor a same-named field of another measurement applies
    lines += [f"data_quality,{TAGS},machine=M9,measurement=machine_state state=2i {at('08:00')}"]
    lines += [f"data_quality,{TAGS},machine=M1,measurement=other state=2i {at('08:40')}"]
    minutes = at("07:00") + np.arange(0, 181, dtype=np.int64) * MIN_NS
    kwh = np.cumsum(np.arange(181, dtype=np.float64))
    lines += [
        f"energy,{TAGS},machine=M1,meter=em-M1 energy_kwh={v} {t}"
        for t, v in zip(minutes.tolist(), kwh.tolist(), strict=True)
    ]
    async with InfluxWriter(cfg.influx) as writer:
        await writer.write_body(("\n".join(lines) + "\n").encode(), len(lines))
    await KpiEngine(cfg).run_once(at("00:01", NEXT_DAY))
    hours = {
        (v["machine"], v["time"]): v
        for v in rows(influx_db, "kpi_machine_hour").values()
    }  # fmt: skip
    h8 = hours[("M1", at("08:00"))]
    assert (h8["apt_s"], h8["adet_no_data_s"]) == (2700.0, 900.0)
    assert hours[("M1", at("09:00"))]["apt_s"] == 3600.0
    edge = kwh[[0, 60, 120, 180]]
    got = [hours[("M1", at(h))]["kwh"] for h in ("07:00", "08:00", "09:00")]
    assert got == np.diff(edge).tolist()
