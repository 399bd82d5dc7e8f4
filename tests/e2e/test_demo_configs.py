"""The configurations ``make demo`` generates, checked without servers: each one passes its
component's own validation, and the OPC UA tag map names exactly the simulator's nodes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from analytics.config import load_kpi_config
from gateway.config import load_gateway_config
from ingest.config import IngestConfig
from simulator.config import SimConfig
from simulator.scenario import build_scenario
from simulator.signals import machine_variables
from zhizao.config import load_model
from zhizao.localstack import InfluxServer, MosquittoServer

ROOT = Path(__file__).resolve().parents[2]


def _load_demo() -> ModuleType:
    name = "zhizao_demo"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "deploy" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


demo = _load_demo()


@pytest.fixture
def stack(tmp_path: Path) -> Any:
    site = SimConfig().build_site()
    site_path = tmp_path / "site.yaml"
    site_path.write_text(yaml.safe_dump(site.model_dump(mode="json", exclude_none=True)))
    s = demo.DemoStack(
        demo.DemoOptions(data_dir=tmp_path),
        site,
        0,
        InfluxServer(port=18086),  # never started: only the URLs go into the configs
        MosquittoServer(port=11883),
    )
    s.paths = {
        "site": site_path,
        "gateway_state": tmp_path / "gateway",
        "quarantine": tmp_path / "quarantine.jsonl",
    }
    s.ports = {"gateway_metrics": 19108, "ingest_metrics": 19109}
    return s


def test_gateway_config_is_valid_and_maps_every_simulated_node(stack: Any, tmp_path: Path) -> None:
    cfg = demo.gateway_config(stack, "opc.tcp://127.0.0.1:4840", 2, tmp_path / "trusted")
    path = tmp_path / "gateway.yaml"
    demo.write_yaml(path, cfg, "test")
    gw = load_gateway_config(path)
    opcua = next(s for s in gw.sources if s.type == "opcua")
    mapped = {t.node for t in opcua.tags}
    sc = build_scenario(SimConfig(), 0, 0, 3600 * 1_000_000_000)
    served = {
        f"ns=2;s={sc.machines[mi].id}.{v.node_id}"
        for mi in range(len(sc.machines))
        for v in machine_variables(sc, mi)
    }
    assert mapped <= served, sorted(mapped - served)
    # every state, counter and product signal the KPI engine reads is mapped
    types = {m.id: m.type for a in stack.site.areas for ln in a.lines for m in ln.machines}
    for machine in sc.machines:
        mtype = stack.site.machine_types[types[machine.id]]
        wanted = {
            s.name
            for s in mtype.signals
            if s.kind in ("state", "counter") or s.name == "product_id"
        }
        got = {t.signal for t in opcua.tags if t.node.split(";s=")[1].startswith(machine.id + ".")}
        assert wanted <= got, (machine.id, wanted - got)
    # every meter with a topic is mapped once, to its own asset (machine tag = meter id)
    mqtt = next(s for s in gw.sources if s.type == "mqtt")
    spb = next(s for s in gw.sources if s.type == "sparkplug")
    assets = [t.asset["machine"] for t in mqtt.topics if t.signal != "power_kw"]  # type: ignore[index]
    assets += [m.asset["machine"] for m in spb.metrics]  # type: ignore[index]
    assert sorted(assets) == sorted(m.id for m in stack.site.meters if m.mqtt_topic)


def test_ingest_and_kpi_configs_are_valid(stack: Any, tmp_path: Path) -> None:
    path = tmp_path / "ingest.yaml"
    demo.write_yaml(path, demo.ingest_config(stack), "test")
    ingest = load_model(IngestConfig, path)
    assert ingest.validation.max_future_s == 0  # the simulated clock runs ahead
    path = tmp_path / "kpi.yaml"
    demo.write_yaml(path, demo.kpi_config(stack, backfill_s=3600), "test")
    kpi = load_kpi_config(path)
    assert kpi.signals.meter_tag == "machine"
    assert kpi.energy.plant_meters == ["em-main", "gm-main", "wm-main"]


def test_ratios_are_sum_over_sum() -> None:
    rows = [
        {"line": "l", "machine": "a", "pbt_s": 100.0, "apt_s": 50.0, "pq": 5.0, "gq": 4.0,
         "pri_pq_s": 40.0, "pri_gq_s": 32.0, "kwh": 8.0, "pq_metered": 5.0, "gq_metered": 4.0},
        {"line": "l", "machine": "b", "pbt_s": 300.0, "apt_s": 300.0, "pq": 0.0, "gq": 0.0,
         "pri_pq_s": 0.0, "pri_gq_s": 0.0, "kwh": 0.0, "pq_metered": 0.0, "gq_metered": 0.0},
    ]  # fmt: skip
    table = dict(demo.kpi_table(rows))
    assert table["line l"]["oee"] == pytest.approx(32.0 / 400.0)
    assert table["line l"]["availability"] == pytest.approx(350.0 / 400.0)
    assert table["  a"]["kwh_per_good"] == pytest.approx(2.0)
    assert table["factory"] == table["line l"]


def test_prometheus_sums_add_label_sets() -> None:
    text = '# HELP x\nx_total{reason="a"} 2.0\nx_total{reason="b"} 3\ny 1e3\n'
    assert demo.prometheus_sums(text) == {"x_total": 5.0, "y": 1000.0}
