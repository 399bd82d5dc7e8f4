"""Issue 14, the integrator's first hour: browse a machine-tool server shaped like OPC 40501 /
40001 (umati), get its part counters and program state under the profile's signal names, and a
tag map on standard output; paged browsing (BrowseNext); a security policy the server does not
offer is a configuration error."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from asyncua import Server, ua

from analytics.states import STATES, StateClassifier
from gateway.browse import BrowseOptions, browse_server
from gateway.config import OpcUaSourceConfig
from gateway.outbox import SqliteOutbox
from gateway.sink import OutboxSink
from gateway.sources.opcua.source import OpcUaSource
from tests.gateway.opcua_server import TestOpcUaServer, page_browse_results
from zhizao.cli import main
from zhizao.errors import ConfigError
from zhizao.localstack import free_port
from zhizao.profiles import PROFILES
from zhizao.site import MachineState, MachineTypeConfig, StateProfile

pytestmark = pytest.mark.integration
DI = "http://opcfoundation.org/UA/DI/"
MACHINERY = "http://opcfoundation.org/UA/Machinery/"
MT = "http://opcfoundation.org/UA/MachineTool/"


async def _machine_tool(server: Server, machines: Any, name: str, *, lifetime: bool) -> None:
    """One machine as OPC 40501-1 lays it out (browse names and namespaces of the spec)."""
    mt, ma, di = [await server.get_namespace_index(u) for u in (MT, MACHINERY, DI)]
    m = await machines.add_object(mt, name)
    bb = await m.add_object(ma, "MachineryBuildingBlocks")
    item = await bb.add_object(ma, "MachineryItemState")
    await item.add_variable(ma, "CurrentState", ua.LocalizedText("Executing"))
    mode = await bb.add_object(ma, "MachineryOperationMode")
    await mode.add_variable(ma, "CurrentState", ua.LocalizedText("Setup"))
    counters = await bb.add_object(di, "OperationCounters")
    await counters.add_variable(di, "OperationCycleCounter", 7, ua.VariantType.UInt32)
    monitoring = await m.add_object(mt, "Monitoring")
    tool = await monitoring.add_object(mt, "MachineTool")
    await tool.add_variable(mt, "OperationMode", 1, ua.VariantType.Int32)
    channel = await monitoring.add_object(mt, "Channel1")
    await channel.add_variable(mt, "ChannelState", 1, ua.VariantType.Int32)
    await channel.add_variable(mt, "FeedOverride", 100.0, ua.VariantType.Double)
    spindle = await monitoring.add_object(mt, "Spindle1")
    await spindle.add_variable(mt, "IsRotating", True, ua.VariantType.Boolean)
    production = await m.add_object(mt, "Production")
    active = await production.add_object(mt, "ActiveProgram")
    await active.add_variable(mt, "Name", "O4711", ua.VariantType.String)
    state = await active.add_object(mt, "State")
    await state.add_variable(mt, "CurrentState", ua.LocalizedText("Running"))
    plan = await production.add_object(mt, "ProductionPlan")
    job = await plan.add_object(mt, "Job_0815")
    await job.add_variable(mt, "RunsCompleted", 41, ua.VariantType.UInt32)
    await job.add_variable(mt, "RunsPlanned", 100, ua.VariantType.UInt32)
    if lifetime:
        stats = await production.add_object(mt, "Statistics")
        await stats.add_variable(mt, "PartsProducedInLifetime", 12345, ua.VariantType.UInt32)


async def _machine_tool_server(port: int, *, max_refs: int) -> Server:
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    for uri in (DI, MACHINERY, MT):
        await server.register_namespace(uri)
    machines = await server.nodes.objects.add_folder(
        await server.get_namespace_index(MACHINERY), "Machines"
    )
    await _machine_tool(server, machines, "DMU-50", lifetime=True)
    await _machine_tool(server, machines, "CTX-400", lifetime=False)
    page_browse_results(server, max_refs)
    await server.start()
    return server


async def test_machine_tool_browse_proposes_counters_and_profile_names_on_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    server = await _machine_tool_server(port, max_refs=2)
    try:
        rc = await asyncio.to_thread(
            main, ["gateway", "browse", f"opc.tcp://127.0.0.1:{port}", "--emit-config"]
        )
    finally:
        await server.stop()
    assert rc == 0
    out = capsys.readouterr()
    # the tag map alone is on standard output (redirectable), the listing on stderr
    doc = yaml.safe_load(out.out)
    assert "OPC 40501" in out.err and "DMU-50/Production/Statistics" in out.err
    assert "DMU-50: machine type with profile: opc40501" in out.out
    tags = doc["tags"]
    by_machine: dict[str, dict[str, dict[str, Any]]] = {}
    for t in tags:
        by_machine.setdefault(t["asset"]["machine"], {})[t["signal"]] = t
    profile = PROFILES[StateProfile.OPC40501]
    wanted = {
        "machinery_item_state",
        "machinery_operation_mode",
        "channel_state",
        "machine_tool_operation_mode",
        "program_state",
        "program_name",
        "feed_override_pct",
        "spindle_rotating",
        "part_count",
        "job_runs_planned",
    }
    for machine in ("DMU-50", "CTX-400"):
        # exactly the profile's names: what its state map and the counter roles read
        assert set(by_machine[machine]) == wanted
        assert set(by_machine[machine]) <= set(profile.signal_names())
        assert by_machine[machine]["part_count"]["measurement"] == "counter"
    # the lifetime part count wins over the cycle counter and the job's runs ...
    lifetime = by_machine["DMU-50"]["part_count"]["node"]
    runs = by_machine["CTX-400"]["part_count"]["node"]
    assert lifetime != runs
    # ... and a machine without statistics counts its operation cycles (one part per cycle)
    assert "CTX-400 part_count <- Machines/CTX-400/MachineryBuildingBlocks/OperationCounters" in (
        out.out
    )
    assert by_machine["CTX-400"]["program_state"]["type"] == "string"

    # a machine type that names the profile reads exactly these signals, and the server's
    # values classify without unknown codes: setup mode is SETUP, not production
    mtype = MachineTypeConfig(profile=StateProfile.OPC40501)
    states = {s.name for s in mtype.signals if s.kind == "state"}
    assert states <= set(by_machine["DMU-50"])
    clf = StateClassifier.for_type(mtype)
    ts = np.array([1], np.int64)
    values = {
        "machinery_item_state": "Executing",
        "machinery_operation_mode": "Setup",
        "channel_state": 1,
        "machine_tool_operation_mode": 1,
        "program_state": "Running",
    }
    _, code, unknown = clf.combine({k: (ts, np.array([v])) for k, v in values.items()})
    assert unknown == []
    assert STATES[int(code[0])] is MachineState.SETUP
    values["machinery_operation_mode"] = "Processing"
    _, code, unknown = clf.combine({k: (ts, np.array([v])) for k, v in values.items()})
    assert unknown == [] and STATES[int(code[0])] is MachineState.IN_CYCLE


async def test_browse_follows_continuation_points() -> None:
    port = free_port()
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    idx = await server.register_namespace("urn:zhizao:test:big")
    folder = await server.nodes.objects.add_folder(idx, "Plant")
    for i in range(60):
        await folder.add_variable(idx, f"Tag{i:03d}", float(i))
    pager = page_browse_results(server, 7)
    await server.start()
    try:
        result = await browse_server(f"opc.tcp://127.0.0.1:{port}", BrowseOptions(depth=3))
    finally:
        await server.stop()
    names = {v.path[-1] for v in result.variables if v.path[0] == "Plant"}
    assert names == {f"Tag{i:03d}" for i in range(60)}
    assert pager.browse_next_calls >= 8  # 60 references in pages of 7


def _secure_source(endpoint: str, trust_dir: Path) -> dict[str, Any]:
    return {
        "type": "opcua",
        "name": "cnc",
        "endpoint": endpoint,
        "security": {
            "policy": "Basic256Sha256",
            "mode": "SignAndEncrypt",
            "trust_dir": str(trust_dir),
        },
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.2,
        "tags": [
            {
                "node": "ns=2;s=Var00000",
                "asset": {"machine": "m1"},
                "measurement": "spindle",
                "signal": "spindle_speed_rpm",
            }
        ],
    }


async def test_security_not_offered_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with TestOpcUaServer(free_port(), 2) as server:  # offers only None/None
        # browse: one sentence naming what the server offers, exit 2
        rc = await asyncio.to_thread(
            main,
            [
                "gateway",
                "browse",
                server.endpoint,
                "--security",
                f"Basic256Sha256,SignAndEncrypt,{tmp_path}/c.der,{tmp_path}/k.pem",
            ],
        )
        err = capsys.readouterr().err.strip()
        assert rc == 2
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert "does not offer Basic256Sha256/SignAndEncrypt" in err and "None/None" in err

        # the gateway's source ends with the error instead of retrying forever
        config = OpcUaSourceConfig.model_validate(_secure_source(server.endpoint, tmp_path))
        outbox = SqliteOutbox(tmp_path / "o.sqlite")
        source = OpcUaSource(
            config,
            OutboxSink(outbox),
            enterprise="acme",
            site="s1",
            gateway_id="gw",
            state_dir=tmp_path,
        )
        try:
            with pytest.raises(ConfigError) as caught:
                await asyncio.wait_for(source.run(), 30)
        finally:
            outbox.close()
        assert "None/None" in str(caught.value)
        assert source.stats.last_error.startswith("configuration error")
        assert source.stats.connect_failures == 1  # tried once, not again and again


async def test_gateway_status_reports_a_stopped_and_a_failed_gateway(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.app import GatewayApp
    from gateway.config import load_gateway_config

    async with TestOpcUaServer(free_port(), 2) as server:
        for case, source in (
            ("stopped", {**_secure_source(server.endpoint, tmp_path), "security": {"policy": "None", "mode": "None"}}),
            ("error", _secure_source(server.endpoint, tmp_path)),
        ):  # fmt: skip
            state = tmp_path / case
            cfg = {
                "gateway": {"id": "gw1", "enterprise": "acme", "site": "s1", "state_dir": str(state)},
                "sources": [source],
                "uplink": {"type": "influx", "influx": {"url": f"http://127.0.0.1:{free_port()}", "database": "x"}},
                "metrics": {"enabled": False},
            }  # fmt: skip
            path = tmp_path / f"{case}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            app = GatewayApp(load_gateway_config(path))
            stop = asyncio.Event()
            task = asyncio.create_task(app.run(stop))
            if case == "stopped":
                for _ in range(100):
                    await asyncio.sleep(0.1)
                    if app.sources[0].stats.connected:
                        break
                stop.set()
                await asyncio.wait_for(task, 30)
            else:
                with pytest.raises(ConfigError):
                    await asyncio.wait_for(task, 30)
            with contextlib.suppress(Exception):
                app.outbox.close()
            capsys.readouterr()
            # right after the stop the status file is fresh: it must still not read "running"
            rc = await asyncio.to_thread(main, ["gateway", "status", "-c", str(path)])
            text = capsys.readouterr().out
            assert rc == 1
            first = text.splitlines()[0]
            assert "running" not in first.lower()
            if case == "stopped":
                assert "STOPPED at" in first
            else:
                assert "STOPPED by an error" in first and "None/None" in first


async def test_browsing_the_simulator_proposes_its_site_models_signal_names(tmp_path: Path) -> None:
    """The project's own OPC 40502 / PackML factory: the proposed tags carry exactly the names its
    site model reads (no renaming between browse and the KPI engine)."""
    from simulator.config import SimConfig, default_site
    from simulator.runner import FactorySimulator

    port = free_port()
    async with FactorySimulator(
        SimConfig(),
        seed=3,
        start="2026-11-23T09:30:00+08:00",
        end="2026-11-23T10:30:00+08:00",
        speed=600.0,
        opcua_endpoint=f"opc.tcp://127.0.0.1:{port}",
        state_dir=tmp_path,
    ):
        result = await browse_server(f"opc.tcp://127.0.0.1:{port}", BrowseOptions())
    site = default_site()
    type_of = {m.id: site.machine_types[m.type] for _, _, m in site.machines()}
    proposed: dict[str, set[str]] = {}
    for p in result.proposals:
        proposed.setdefault(p.machine, set()).add(p.signal)
    assert set(proposed) == set(type_of)
    for machine, names in proposed.items():
        mtype = type_of[machine]
        assert result.profiles[machine] is mtype.profile
        known = {s.name for s in mtype.signals}
        assert names - known <= {"machine_speed"}, (
            machine
        )  # PackML CurMachSpeed: sim calls it line_speed_pct
        # every state signal the site model reads is found, under its own name
        assert {s.name for s in mtype.signals if s.kind == "state"} <= names, machine
        assert {"part_count", "good_part_count", "product_id"} <= names


async def test_gateway_run_ends_with_exit_2_on_a_security_mismatch(tmp_path: Path) -> None:
    import os
    import sys

    async with TestOpcUaServer(free_port(), 2) as server:
        cfg = {
            "gateway": {"id": "gw1", "enterprise": "acme", "site": "s1", "state_dir": str(tmp_path / "state")},
            "sources": [_secure_source(server.endpoint, tmp_path)],
            "uplink": {"type": "influx", "influx": {"url": f"http://127.0.0.1:{free_port()}", "database": "x"}},
            "metrics": {"enabled": False},
        }  # fmt: skip
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(cfg))
        root = Path(__file__).resolve().parents[2]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "zhizao.cli", "gateway", "run", "-c", str(path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(root)},
        )  # fmt: skip
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 2
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith("zhizao: OPC UA server") and "None/None" in last
    assert "Traceback" not in err.decode()
