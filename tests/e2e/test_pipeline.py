"""End to end: simulator -> OPC UA / MQTT / Sparkplug B -> gateway -> Mosquitto -> ingest ->
InfluxDB -> KPI engine, started by the same functions as ``make demo`` (``deploy/demo.py``), and
the stored KPI components compared with the simulator's ground truth for the same windows.

Eight and a half simulated hours from 03:30 run at 600x (about 50 wall seconds). The gateway
connects a few wall seconds (tens of simulated minutes) after the simulator started, well before
the early shift begins at 06:00 (15 wall seconds of margin); the comparison covers the whole
morning 06:00-11:00 (breaks, a power cycle with a counter reset, product changes), hour by hour
and in total. With seed 35 one machine loses its connection from about 06:40 to 07:01 while it is
in cycle (the OPC UA variables go Bad without a value, the session stays up): the gateway's
data-quality markers make that time NO_DATA (ADET), as in the truth, where before it was carried
as running. Parts made during the drop are counted when the counters come back, so per hour they
may move across the 07:00 edge (see ``test_each_hour_matches_the_truth``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from simulator.scenario import to_ns
from simulator.truth import iso22400_elements, read_truth

ROOT = Path(__file__).resolve().parents[2]
START = "2026-11-26T03:30:00+08:00"
SPEED = 600.0
SEED = 35
# compared hour windows (local time): wholly after the gateway connected, before the cut-off
COMPARE_FROM = "2026-11-26T06:00:00+08:00"
COMPARE_TO = "2026-11-26T11:00:00+08:00"
HOUR_NS = 3600 * 1_000_000_000

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _load_demo() -> ModuleType:
    if "zhizao_demo" in sys.modules:
        return sys.modules["zhizao_demo"]
    spec = importlib.util.spec_from_file_location("zhizao_demo", ROOT / "deploy" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["zhizao_demo"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


demo = _load_demo()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    options = demo.DemoOptions(
        data_dir=tmp_path_factory.mktemp("demo"),
        speed=SPEED,
        seed=SEED,
        start=START,
        hours=8.5,
        kpi_interval_s=2.0,
    )
    s = demo.start_stack(options, timeout_s=120.0)
    try:
        # the demo's loop, until the KPI cut-off has passed the compared windows
        target_cutoff = to_ns(COMPARE_TO) + 10 * 60 * 1_000_000_000
        deadline = time.monotonic() + 180.0
        while s.last_cutoff_ns is None or s.last_cutoff_ns < target_cutoff:
            assert time.monotonic() < deadline, (
                f"the pipeline did not reach {COMPARE_TO} in time; cut-off {s.last_cutoff_ns}"
            )
            demo.step(s)
            time.sleep(0.5)
        # settle: whatever the gateway still holds reaches InfluxDB, then one more KPI run over
        # the look-back (a loaded machine may deliver the last changes late)
        while (s.outbox_samples() or 0) > 0:
            assert time.monotonic() < deadline, "the gateway's outbox did not drain"
            time.sleep(0.2)
        status = s.gateway_status()
        assert status is not None
        acked = status["uplink"]["samples_acked"]
        written = "zhizao_ingest_samples_written_total"
        while s.ingest_metrics().get(written, 0) < acked:
            assert time.monotonic() < deadline, "ingest did not store what the broker confirmed"
            time.sleep(0.2)
        now = _run(s.sim_now_ns())
        s.last_cutoff_ns = min(s.last_cutoff_ns, to_ns(COMPARE_FROM))
        s.run_kpi_once(now)
        yield s
    finally:
        s.stop()


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_raw_data_arrived_for_every_machine_and_meter(stack: Any) -> None:
    counts = _run(stack.point_counts())
    for meas in ("machine_state", "counter", "spindle", "energy", "sparkplug"):
        assert counts.get(meas, 0) > 0, f"no {meas} points: {counts}"
    machines = {m.id for a in stack.site.areas for ln in a.lines for m in ln.machines}
    series = _run(stack.query('SHOW TAG VALUES FROM "machine_state" WITH KEY = "machine"'))
    assert {str(v) for v in series[0].values["value"]} == machines
    meters = {m.id for m in stack.site.meters if m.mqtt_topic}
    series = _run(stack.query('SHOW TAG VALUES FROM "energy" WITH KEY = "machine"'))
    assert meters <= {str(v) for v in series[0].values["value"]}


def test_kpi_components_written_for_every_machine_and_window(stack: Any) -> None:
    machines = {m.id for a in stack.site.areas for ln in a.lines for m in ln.machines}
    for hour in range(3):
        t = to_ns(COMPARE_FROM) + hour * HOUR_NS
        rows = _run(demo.kpi_rows(stack, "hour", t))
        assert {r["machine"] for r in rows} == machines, f"hour {hour}: {rows}"
        for r in rows:
            assert r["pbt_s"] > 0, r
    shift = _run(demo.kpi_rows(stack, "shift", to_ns(COMPARE_FROM)))  # the early shift
    assert {r["machine"] for r in shift} == machines
    site_rows = _run(stack.query('SELECT count("electricity_kwh") FROM "kpi_site_hour"'))
    assert site_rows and float(next(iter(site_rows[0].values.values()))[0]) > 0, (
        "plant meter components missing"
    )


def _measured(stack: Any) -> dict[str, dict[str, float]]:
    """Components per machine summed over the compared hour windows."""
    out: dict[str, dict[str, float]] = {}
    a, b = to_ns(COMPARE_FROM), to_ns(COMPARE_TO)
    for t in range(a, b, HOUR_NS):
        for r in _run(demo.kpi_rows(stack, "hour", t)):
            acc = out.setdefault(r["machine"], dict.fromkeys(demo.COMPONENTS, 0.0))
            for c in demo.COMPONENTS:
                acc[c] += r[c]
    return out


def _booked_parts(sc: Any, machine: str, t0: int, t1: int) -> tuple[int, int]:
    """(PQ, GQ) of ``machine`` in [t0, t1) as the counters report them: a part made while the
    machine's connection was down is counted when the connection returns (the counters catch
    up at the drop's end)."""
    mi = sc.machine_index(machine)
    ts = sc.part_ts_ns[sc.part_machine == mi].copy()
    good = sc.part_outcome[sc.part_machine == mi] == 0
    sel = sc.drop_machine == mi
    for d0, d1 in zip(sc.drop_start_ns[sel], sc.drop_end_ns[sel], strict=True):
        ts[(ts >= d0) & (ts < d1)] = d1
    inside = (ts >= t0) & (ts < t1)
    return int(inside.sum()), int((inside & good).sum())


def test_gateway_was_connected_before_the_compared_hours(stack: Any) -> None:
    """Precondition of the truth comparisons (a machine too loaded to start the gateway in 15
    wall seconds fails here, with this message, rather than as a KPI mismatch)."""
    first = _run(stack.query('SELECT first("energy_kwh") FROM "energy"'))
    assert first and len(first[0].time_ns)
    assert int(first[0].time_ns[0]) < to_ns(COMPARE_FROM) - 15 * 60 * 1_000_000_000, (
        "the gateway connected too late for the compared hours"
    )


def test_kpis_match_the_simulators_ground_truth(stack: Any) -> None:
    truth_sc = read_truth(stack.paths["truth"])
    truth = iso22400_elements(truth_sc, COMPARE_FROM, COMPARE_TO)
    # the seed puts a connection drop (bad status, no value) into the compared hours
    assert sum(t["no_data_s"] for t in truth.values()) > 0, "no connection drop to compare"
    measured = _measured(stack)
    assert set(measured) == set(truth)
    max_pri_s = max(p.ideal_cycle_s for p in stack.site.products)
    report = []
    for machine, t in sorted(truth.items()):
        m = measured[machine]
        report.append(f"{machine}: measured {m} truth {t}")
        # the shift calendar is exact; state times are exact up to OPC UA's ms timestamps, also
        # through the connection drop: NO_DATA, counted as ADET (DOMAIN section 3), not running
        assert m["pbt_s"] == pytest.approx(t["pbt_s"], abs=1.0), report[-1]
        assert m["apt_s"] == pytest.approx(t["apt_s"], abs=2.0), report[-1]
        assert m["adet_s"] == pytest.approx(t["adet_s"], abs=2.0), report[-1]
        assert m["adet_no_data_s"] == pytest.approx(t["no_data_s"], abs=2.0), report[-1]
        # parts counted in the whole range: exact, or one part off at a window edge (parts made
        # during the drop are booked when it ends, inside the range)
        assert abs(m["pq"] - t["pq"]) <= 1, report[-1]
        assert abs(m["gq"] - t["gq"]) <= 1, report[-1]
        # PRI-weighted counts: each part with its own product's PRI (a part completed at a
        # product change keeps the old product); only a part off at an edge may differ
        pri_tol = abs(m["pq"] - t["pq"]) * max_pri_s + 1e-6
        assert abs(m["pri_pq_s"] - t["pri_pq_s"]) <= pri_tol, report[-1]
        assert abs(m["pri_gq_s"] - t["pri_gq_s"]) <= pri_tol, report[-1]
        tm, tt = (
            demo.ratios(m),
            {
                "availability": t["apt_s"] / t["pbt_s"],
                "oee": t["pri_gq_s"] / t["pbt_s"],
            },
        )
        assert tm["availability"] == pytest.approx(tt["availability"], abs=0.01), report[-1]
        assert tm["oee"] == pytest.approx(tt["oee"], abs=0.02), report[-1]
        if t["energy_kwh"] is not None:
            # meter increments are booked into (start, end]: a window holds exactly the energy
            # between the readings at its edges (the meter is read on the minute)
            assert m["kwh"] == pytest.approx(t["energy_kwh"], abs=1e-6), report[-1]
    # and the line roll-up, sum over sum, within the same tolerance
    for line in {t["line"] for t in truth.values()}:
        ms = [measured[k] for k, t in truth.items() if t["line"] == line]
        ts = [t for t in truth.values() if t["line"] == line]
        oee_m = sum(x["pri_gq_s"] for x in ms) / sum(x["pbt_s"] for x in ms)
        oee_t = sum(x["pri_gq_s"] for x in ts) / sum(x["pbt_s"] for x in ts)
        assert oee_m == pytest.approx(oee_t, abs=0.02), f"line {line}"
        assert not math.isnan(oee_m)


def test_each_hour_matches_the_truth(stack: Any) -> None:
    """Window edges: every compared hour on its own (times exact to the ms, including the
    connection drop across 07:00; parts exact or one part at an edge, where parts made during
    the drop count at its end; energy exact)."""
    truth_sc = read_truth(stack.paths["truth"])
    a, b = to_ns(COMPARE_FROM), to_ns(COMPARE_TO)
    no_data_hours = 0
    for t0 in range(a, b, HOUR_NS):
        truth = iso22400_elements(truth_sc, t0, t0 + HOUR_NS)
        rows = {r["machine"]: r for r in _run(demo.kpi_rows(stack, "hour", t0))}
        assert set(rows) == set(truth)
        for machine, t in truth.items():
            m = rows[machine]
            msg = f"hour {t0}: {machine}: measured {m} truth {t}"
            assert m["pbt_s"] == pytest.approx(t["pbt_s"], abs=1.0), msg
            assert m["apt_s"] == pytest.approx(t["apt_s"], abs=2.0), msg
            assert m["adet_s"] == pytest.approx(t["adet_s"], abs=2.0), msg
            assert m["adet_no_data_s"] == pytest.approx(t["no_data_s"], abs=2.0), msg
            pq, gq = _booked_parts(truth_sc, machine, t0, t0 + HOUR_NS)
            assert abs(m["pq"] - pq) <= 1, msg
            assert abs(m["gq"] - gq) <= 1, msg
            if t["energy_kwh"] is not None:
                assert m["kwh"] == pytest.approx(t["energy_kwh"], abs=1e-6), msg
        no_data_hours += sum(t["no_data_s"] > 0 for t in truth.values())
    assert no_data_hours >= 2, "the drop should cross an hour edge"


def test_drop_is_marked_in_data_quality(stack: Any) -> None:
    """The gateway writes a BAD marker per signal at the drop's start and 0 at its end (only
    transitions: the other machines' signals have just their first, good, marker)."""
    sc = read_truth(stack.paths["truth"])
    assert len(sc.drop_machine) == 1
    machine = sc.machines[int(sc.drop_machine[0])].id
    d0, d1 = int(sc.drop_start_ns[0]), int(sc.drop_end_ns[0])
    series = _run(stack.query(f'SELECT * FROM "data_quality" WHERE "machine" = \'{machine}\''))
    assert series, "no data_quality points"
    s = series[0]
    fields = [c for c in s.values if c not in ("area", "line", "machine", "measurement", "site",
                                               "enterprise")]  # fmt: skip
    bad_at = {int(t) for f in fields for t, v in zip(s.time_ns, s.values[f], strict=True) if v == 2}
    good_at = {
        int(t) for f in fields for t, v in zip(s.time_ns, s.values[f], strict=True) if v == 0
    }
    assert bad_at == {d0}, (bad_at, d0)
    assert d1 in good_at
    others = _run(
        stack.query(
            f'SELECT count(*) FROM "data_quality" WHERE "machine" != \'{machine}\' '
            'GROUP BY "machine", "measurement"'
        )
    )
    assert others
    for o in others:
        # NaN: a field this machine's measurement does not have
        counts = [float(v[0]) for k, v in o.values.items() if k.startswith("count_")]
        counts = [c for c in counts if c == c]
        assert counts, o.tags
        assert all(c <= 1 for c in counts), (o.tags, o.values)


def test_nothing_quarantined(stack: Any) -> None:
    metrics = stack.ingest_metrics()
    assert metrics.get("zhizao_ingest_samples_written_total", 0) > 0
    assert metrics.get("zhizao_ingest_samples_rejected_total", 0) == 0, metrics
    assert metrics.get("zhizao_ingest_messages_rejected_total", 0) == 0, metrics
    quarantine = stack.paths["quarantine"]
    assert not quarantine.exists() or quarantine.read_text().strip() == ""
    status = stack.gateway_status()
    assert status is not None
    assert sum(status["outbox"]["dropped"].values()) == 0, status["outbox"]
    assert status["outbox"]["refused"] == 0, status["outbox"]
    for src in status["sources"]:
        assert src["samples"] > 0, src
        if src["kind"] == "mqtt":
            assert not src["rejected"], src
            continue
        if src["kind"] == "sparkplug":
            # the gateway subscribes after the simulator's (not retained) births: the DDATA
            # until its rebirth request is answered are refused, by the specification's rules
            assert set(src["rejected"]) <= {"data_before_birth", "data_before_birth_metrics"}
            continue
        # the simulator's connection drops send bad-status notifications without a value: the
        # gateway counts them as `no_value` (and nothing else), and only if a drop happened; the
        # outage itself is kept as data-quality markers (test_drop_is_marked_in_data_quality)
        assert set(src["rejected"]) <= {"no_value"}, src
        if src["rejected"]:
            sc = read_truth(stack.paths["truth"])
            assert len(sc.drop_start_ns) > 0, src
    assert stack.kpi_failures == []


def test_the_api_answers_match_the_truth(stack: Any, tmp_path: Path) -> None:
    """The API on the same InfluxDB: OEE and factors per machine and line within 0.5 percentage
    points of the simulator's truth, counts equal to the stored components, and the state
    timeline's time per state equal to the truth's."""
    from tests.api.harness import api_server

    truth_sc = read_truth(stack.paths["truth"])
    truth = iso22400_elements(truth_sc, COMPARE_FROM, COMPARE_TO)
    measured = _measured(stack)
    span = {"from": COMPARE_FROM, "to": COMPARE_TO}
    with api_server(
        tmp_path, influx_url=stack.influx.url, database=demo.DATABASE, sites=[stack.site],
        kpi_config_path=stack.paths["kpi"],
    ) as api:  # fmt: skip
        base = f"/api/v1/sites/{stack.site.site}"
        kpis = "oee,availability,effectiveness,quality_pri_weighted"
        rows = api.json(
            f"{base}/kpis/history", level="machine", grouping="range", kpi=kpis, **span
        )["rows"]
        by_machine = {r["asset"]["machine"]: r for r in rows}
        assert set(by_machine) == set(truth)
        for machine, t in truth.items():
            r = by_machine[machine]
            k = {name: v["value"] for name, v in r["kpis"].items()}
            msg = f"{machine}: api {k} truth {t}"
            assert k["oee"] == pytest.approx(t["pri_gq_s"] / t["pbt_s"], abs=0.005), msg
            assert k["availability"] == pytest.approx(t["apt_s"] / t["pbt_s"], abs=0.005), msg
            if t["apt_s"]:
                assert k["effectiveness"] == pytest.approx(t["pri_pq_s"] / t["apt_s"], abs=0.005), (
                    msg
                )
            for c in ("pq", "gq", "pbt_s", "apt_s"):
                assert r["components"][c] == measured[machine][c], msg  # the API adds nothing
            pq, gq = _booked_parts(truth_sc, machine, to_ns(COMPARE_FROM), to_ns(COMPARE_TO))
            assert abs(r["components"]["pq"] - pq) <= 1 and abs(r["components"]["gq"] - gq) <= 1, (
                msg
            )
            tl = api.json(f"{base}/machines/{machine}/timeline", **span)
            pbt: dict[str, float] = {}
            for iv in tl["intervals"]:
                if iv["in_pot"] and not iv["planned_down"]:
                    pbt[iv["state"]] = (
                        pbt.get(iv["state"], 0.0) + (iv["end_ns"] - iv["start_ns"]) / 1e9
                    )
            assert pbt.get("IN_CYCLE", 0.0) == pytest.approx(t["apt_s"], abs=2.0), msg
            assert pbt.get("SETUP", 0.0) == pytest.approx(t["aust_s"], abs=2.0), msg
            assert pbt.get("IDLE", 0.0) == pytest.approx(t["adot_s"], abs=2.0), msg
            delay = pbt.get("DELAY", 0.0) + pbt.get("NO_DATA", 0.0)
            assert delay == pytest.approx(t["adet_s"], abs=2.0), msg
        lines = api.json(f"{base}/kpis/history", level="line", grouping="range", kpi="oee", **span)[
            "rows"
        ]
        for row in lines:
            ts = [t for t in truth.values() if t["line"] == row["asset"]["line"]]
            want = sum(x["pri_gq_s"] for x in ts) / sum(x["pbt_s"] for x in ts)
            assert row["kpis"]["oee"]["value"] == pytest.approx(want, abs=0.005), row
