"""The seeded scenario and its ground truth, without any server."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from simulator.config import BehaviourConfig, SimConfig
from simulator.scenario import build_scenario
from simulator.signals import BAD, build_change_table
from simulator.truth import iso22400_elements, meter_totals, read_truth, truth_report, write_truth
from zhizao.cli import main as zhizao_main
from zhizao.errors import ConfigError
from zhizao.site import MachineState, load_site

DAY = ("2026-11-23T00:00:00+08:00", "2026-11-24T00:00:00+08:00")
H = 1_000_000_000 * 3600


def _truth_bytes(tmp_path: Path, seed: int, name: str) -> bytes:
    sc = build_scenario(SimConfig(), seed, *DAY)
    write_truth(sc, tmp_path / name)
    return (tmp_path / name).read_bytes()


def test_same_seed_same_truth_different_seed_different(tmp_path: Path) -> None:
    a = _truth_bytes(tmp_path, 11, "a.jsonl")
    b = _truth_bytes(tmp_path, 11, "b.jsonl")
    c = _truth_bytes(tmp_path, 12, "c.jsonl")
    assert a == b
    assert a != c
    ra = truth_report(build_scenario(SimConfig(), 11, *DAY), *DAY)
    rc = truth_report(build_scenario(SimConfig(), 12, *DAY), *DAY)
    assert ra["machines"] != rc["machines"]


def test_adding_a_machine_does_not_change_the_others() -> None:
    # (the machine whose connection drops is drawn among all machines, so no drops here)
    small = build_scenario(SimConfig(machines=3, connection_drops_per_day=0), 5, *DAY)
    big = build_scenario(SimConfig(machines=4, connection_drops_per_day=0), 5, *DAY)
    assert iso22400_elements(big, *DAY)["CNC1"] == iso22400_elements(small, *DAY)["CNC1"]
    assert "CNC4" in iso22400_elements(big, *DAY)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_time_model_identities_hold_for_every_machine(seed: int) -> None:
    sc = build_scenario(SimConfig(), seed, *DAY)
    for m in iso22400_elements(sc, *DAY).values():
        # two 8 h shifts; breaks 15 + 30 min in each
        assert m["pot_s"] == 16 * 3600
        assert m["planned_down_s"] == 90 * 60
        assert m["pbt_s"] == pytest.approx(
            m["apt_s"] + m["aust_s"] + m["adet_s"] + m["adot_s"], abs=1e-6
        )
        assert m["gq"] == m["pq"] - m["sq"] - m["rq"]
        # cycles are never faster than ideal, so effectiveness stays <= 1 unless parts were
        # made while the connection was down (NO_DATA time is ADET, the parts still count)
        assert 0 < m["pri_pq_s"] <= m["apt_s"] + m["no_data_s"]
        assert m["cutting_s"] <= m["apt_s"]
        assert m["energy_kwh"] > 0


def test_state_intervals_tile_the_range_and_breaks_are_planned_down() -> None:
    sc = build_scenario(SimConfig(), 3, *DAY)
    for mi in range(len(sc.machines)):
        sel = sc.st_machine == mi
        s, e = sc.st_start_ns[sel], sc.st_end_ns[sel]
        assert s[0] == sc.start_ns and e[-1] == sc.end_ns
        assert np.array_equal(s[1:], e[:-1])
        assert np.all(e > s)
        assert np.all(s % 1_000_000 == 0)
    # 09:05 local is inside the morning break; 03:00 is the non-working night
    t_break = sc.start_ns + 9 * H + 5 * 60 * 1_000_000_000
    assert sc.state_at(0, t_break) == (MachineState.PLANNED_DOWN, "break", None)
    assert sc.state_at(0, sc.start_ns + 3 * H)[1] == "no_shift"
    assert sc.state_at(0, sc.start_ns + 10 * H)[0] is not MachineState.PLANNED_DOWN


def test_the_scenario_contains_the_events_the_issue_asks_for() -> None:
    sc = build_scenario(SimConfig(), 7, *DAY)
    reasons = {sc.reasons[int(r)] for r in sc.st_reason}
    assert {
        "order_change",
        "micro_stop",
        "waiting_material",
        "break",
        "lunch",
        "no_shift",
    } <= reasons
    assert reasons & {"breakdown", "power_cycle"}
    assert len(sc.reset_machine) > 0  # power cycles reset the part counters
    assert len(sc.drop_machine) == 1  # one connection drop per day
    assert {0, 1, 2} <= set(sc.part_outcome.tolist())  # good, scrap and rework
    # power depends on state: cutting draws more than idle
    k = sc.meter_index("em-CNC1")
    cut = int(sc.cut_start_ns[sc.cut_machine == 0][0]) + 1_000_000
    idle_night = sc.start_ns + 2 * H
    assert (
        sc.meter_rate(k, np.asarray([cut]))[0] > 3 * sc.meter_rate(k, np.asarray([idle_night]))[0]
    )


def test_an_energy_counter_rolls_over_and_the_truth_is_unwrapped() -> None:
    sc = build_scenario(SimConfig(), 7, *DAY)
    t = np.arange(sc.start_ns, sc.end_ns + 1, 60 * 1_000_000_000, dtype=np.int64)
    rolled = []
    for k, meter in enumerate(sc.meters):
        reading = sc.meter_reading(k, t)
        if np.any(np.diff(reading) < 0):
            rolled.append(meter.id)
            d = np.diff(reading)
            total = float(np.where(d < 0, d + meter.rollover, d).sum())
            assert total == pytest.approx(meter_totals(sc, *DAY)[meter.id]["quantity"], rel=1e-9)
    assert len(rolled) == 1 and rolled[0].startswith("em-")


def test_plant_meters_include_their_sub_meters() -> None:
    sc = build_scenario(SimConfig(), 4, *DAY)
    totals = {k: v["quantity"] for k, v in meter_totals(sc, *DAY).items()}
    subs = sum(v for k, v in totals.items() if k.startswith("em-") and k != "em-main")
    base = 16 * SimConfig().base_load_shift_kw + 8 * SimConfig().base_load_off_kw
    # the rooftop solar is consumed on site: the grid (main) meter takes in that much less
    assert totals["pv-roof"] > 0
    assert totals["em-main"] == pytest.approx(subs + base - totals["pv-roof"], rel=1e-9)
    assert totals["wm-main"] > totals["wm-ASM1"] > 0
    assert totals["gm-main"] > 0


def test_truth_file_round_trips(tmp_path: Path) -> None:
    sc = build_scenario(SimConfig(), 9, *DAY)
    n = write_truth(sc, tmp_path / "t.jsonl")
    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    assert len(lines) == n
    kinds = {json.loads(line)["type"] for line in lines}
    assert {"meta", "state", "part", "counter_reset", "connection_drop", "meter", "rate"} <= kinds
    back = read_truth(tmp_path / "t.jsonl")
    window = ("2026-11-23T06:00:00+08:00", "2026-11-23T14:00:00+08:00")
    assert truth_report(back, *window) == truth_report(sc, *window)


def test_no_data_counts_as_adet_with_a_flag() -> None:
    sc = build_scenario(SimConfig(), 7, *DAY)
    mi = int(sc.drop_machine[0])
    d0, d1 = int(sc.drop_start_ns[0]), int(sc.drop_end_ns[0])
    mid = sc.machines[mi].id
    inside = iso22400_elements(sc, d0, d1)[mid]
    assert inside["no_data"] is True
    assert inside["adet_s"] == inside["no_data_s"]
    assert inside["apt_s"] == inside["aust_s"] == inside["adot_s"] == 0
    # what the server publishes: bad status from the drop's start, values again at its end
    table = build_change_table(sc, [mi])
    at_start = [table.values[k] for k in np.flatnonzero(table.ts_ns == d0)]
    assert at_start and all(v is BAD for v in at_start)
    assert not any(table.values[k] is BAD for k in np.flatnonzero(table.ts_ns == d1))


def test_change_table_follows_the_scenario() -> None:
    sc = build_scenario(SimConfig(), 2, *DAY)
    table = build_change_table(sc, [0])
    keys = [v.key for v in table.variables]
    item = keys.index("machinery_item_state")
    expected = {
        MachineState.IN_CYCLE: "Executing",
        MachineState.SETUP: "Executing",
        MachineState.DELAY: "OutOfService",
        MachineState.IDLE: "NotExecuting",
        MachineState.PLANNED_DOWN: "NotExecuting",
    }
    checked = 0
    for k in np.flatnonzero(table.var == item).tolist():
        ts, value = int(table.ts_ns[k]), table.values[k]
        if value is BAD or sc.in_drop(0, ts):
            continue
        assert value == expected[sc.state_at(0, ts)[0]]
        checked += 1
    assert checked > 20
    # part counter: one increment per completed part; a power cycle restarts it at 0
    part = keys.index("part_count")
    counts = [table.values[k] for k in np.flatnonzero(table.var == part).tolist()]
    parts = int((sc.part_machine == 0).sum())
    increments = sum(max(b - a, 0) if b >= a else b for a, b in itertools.pairwise(counts))
    assert increments == parts


def test_bad_ranges_and_configs_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        build_scenario(SimConfig(), 1, DAY[1], DAY[0])
    with pytest.raises(ConfigError):
        build_scenario(SimConfig(), 1, "2026-11-23T00:00:00", DAY[1])
    with pytest.raises(ValueError, match="setup_min_s"):
        BehaviourConfig(setup_min_s=100, setup_max_s=10)


def test_scale_config_builds_50_machines_with_signals() -> None:
    config = SimConfig(machines=50, signals_per_machine=200)
    sc = build_scenario(config, 1, DAY[0], "2026-11-23T08:00:00+08:00")
    assert len(sc.machines) == 51  # 50 CNC + the assembly cell
    assert sc.machines[0].id == "CNC01" and sc.machines[49].id == "CNC50"


def test_cli_site_prints_a_loadable_site_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert zhizao_main(["sim", "site"]) == 0
    path = tmp_path / "site.yaml"
    path.write_text(capsys.readouterr().out)
    site = load_site(path)
    assert site == SimConfig().build_site()
    cnc = site.machine_types["cnc-mill"]
    assert cnc.namespaces["CNC"] == "http://opcfoundation.org/UA/CNC/"
    assert any(s.opcua_path and s.opcua_path.endswith("CNC:ActSpeed") for s in cnc.signals)
    assert {p.id: p.ideal_cycle_s for p in site.products}["P-100"] == 120.0


def test_cli_truth_matches_the_truth_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "sim.yaml"
    config.write_text(yaml.safe_dump({"machines": 2, "meter_period_s": 120}))
    sc = build_scenario(SimConfig(machines=2, meter_period_s=120), 3, *DAY)
    write_truth(sc, tmp_path / "truth.jsonl")
    window = ["--from", "2026-11-23T06:00:00+08:00", "--to", "2026-11-23T22:00:00+08:00"]
    assert (
        zhizao_main(["sim", "truth", "--truth-file", str(tmp_path / "truth.jsonl"), *window]) == 0
    )
    from_file = json.loads(capsys.readouterr().out)
    args = [
        "sim",
        "truth",
        "--config",
        str(config),
        "--seed",
        "3",
        "--start",
        DAY[0],
        "--hours",
        "24",
    ]
    assert zhizao_main([*args, *window]) == 0
    rebuilt = json.loads(capsys.readouterr().out)
    assert from_file == rebuilt
    assert set(from_file["machines"]) == {"CNC1", "CNC2", "ASM1"}
    cnc1 = from_file["machines"]["CNC1"]
    for key in ("pot_s", "pbt_s", "apt_s", "aust_s", "adet_s", "adot_s", "pq", "gq", "sq", "rq"):
        assert key in cnc1
    assert cnc1["pot_s"] == 16 * 3600


def test_the_commented_sample_config_parses() -> None:
    from simulator.config import load_sim_config

    config = load_sim_config(Path(__file__).parents[2] / "simulator" / "sim.example.yaml")
    assert config.behaviour_for("CNC3").breakdown_per_h == 0.3
    assert config.behaviour_for("CNC1") == config.behaviour
    assert config.build_site() == SimConfig().build_site()


def test_unknown_config_keys_name_the_file_and_key(tmp_path: Path) -> None:
    from simulator.config import load_sim_config

    bad = tmp_path / "sim.yaml"
    bad.write_text("machines: 3\nbehavior: {}\n")
    with pytest.raises(ConfigError) as info:
        load_sim_config(bad)
    assert info.value.key == "behavior" and info.value.file == str(bad)
