"""Browse a companion-spec shaped asyncua server, emit a tag map, and collect with it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from asyncua import Server, ua

from gateway.config import OpcUaSourceConfig
from gateway.outbox import SqliteOutbox
from gateway.sink import OutboxSink
from gateway.sources.opcua.source import OpcUaSource
from tests.gateway.helpers import stored, wait_for
from zhizao.cli import main
from zhizao.localstack import free_port

pytestmark = pytest.mark.integration
CNC = "http://opcfoundation.org/UA/CNC/"
MACHINERY = "http://opcfoundation.org/UA/Machinery/"
MT = "http://opcfoundation.org/UA/MachineTool/"


async def _companion_server(port: int) -> Server:
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    cnc = await server.register_namespace(CNC)
    mach = await server.register_namespace(MACHINERY)
    mt = await server.register_namespace(MT)
    machines = await server.nodes.objects.add_folder(mach, "Machines")
    # OPC 40502: a CNC with one channel and two spindles
    m1 = await machines.add_object(cnc, "CNC-01")
    iface = await m1.add_object(cnc, "CncInterface")
    channels = await iface.add_object(cnc, "CncChannelList")
    ch = await channels.add_object(cnc, "Channel1")
    await ch.add_variable(cnc, "ChannelStatus", 2, ua.VariantType.Int32)
    await ch.add_variable(cnc, "ActProgramStatus", 1, ua.VariantType.Int32)
    await ch.add_variable(cnc, "ActOperationMode", 0, ua.VariantType.Int32)
    await ch.add_variable(cnc, "ActProgramName", "O1001", ua.VariantType.String)
    await ch.add_variable(cnc, "SomethingElse", 1.0, ua.VariantType.Double)
    spindles = await iface.add_object(cnc, "CncSpindleList")
    for i, speed in ((1, 8000.0), (2, 1200.0)):
        sp = await spindles.add_object(cnc, f"Spindle{i}")
        await sp.add_variable(cnc, "ActSpeed", speed, ua.VariantType.Double)
        await sp.add_variable(cnc, "ActLoad", 30.0 + i, ua.VariantType.Double)
    # OPC 40001 + 40501: a press with machinery state and a production counter
    m2 = await machines.add_object(mt, "Press-01")
    state = await m2.add_object(mach, "MachineryItemState")
    await state.add_variable(
        mach, "CurrentState", ua.LocalizedText("Executing"), ua.VariantType.LocalizedText
    )
    mode = await m2.add_object(mach, "MachineryOperationMode")
    await mode.add_variable(
        mach, "CurrentState", ua.LocalizedText("Processing"), ua.VariantType.LocalizedText
    )
    prod = await m2.add_object(mt, "Production")
    plan = await prod.add_object(mt, "ProductionPlan")
    job = await plan.add_object(mt, "Job1")
    await job.add_variable(mt, "RunsCompleted", 42, ua.VariantType.UInt32)
    await server.start()
    return server


async def test_browse_recognises_specs_and_emitted_config_collects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    server = await _companion_server(port)
    out = tmp_path / "tags.yaml"
    try:
        endpoint = f"opc.tcp://127.0.0.1:{port}"
        rc = await asyncio.to_thread(
            main,
            [
                "gateway",
                "browse",
                endpoint,
                "--emit-config",
                str(out),
                "--asset-prefix",
                "hall1/line1",
            ],
        )
        assert rc == 0
        listing = capsys.readouterr().out
        assert "OPC 40502" in listing and "OPC 40001" in listing and "OPC 40501" in listing
        assert "Machines/CNC-01/CncInterface/CncChannelList/Channel1/ChannelStatus" in listing
        tags = yaml.safe_load(out.read_text())["tags"]
        got = {(t["asset"]["machine"], t["measurement"], t["signal"], t["type"]) for t in tags}
        # the profile's signal names (zhizao.profiles): what its state map and the KPI roles
        # read; the first spindle keeps the plain name, the second is prefixed
        assert got == {
            ("CNC-01", "machine_state", "channel_status", "int"),
            ("CNC-01", "machine_state", "program_status", "int"),
            ("CNC-01", "machine_state", "operation_mode", "int"),
            ("CNC-01", "machine_state", "program_name", "string"),
            ("CNC-01", "spindle", "spindle_speed_rpm", "float"),
            ("CNC-01", "spindle", "spindle2_spindle_speed_rpm", "float"),
            ("CNC-01", "spindle", "spindle_load_pct", "float"),
            ("CNC-01", "spindle", "spindle2_spindle_load_pct", "float"),
            ("Press-01", "machine_state", "machinery_item_state", "string"),
            ("Press-01", "machine_state", "machinery_operation_mode", "string"),
            ("Press-01", "counter", "part_count", "int"),
        }
        assert all(t["asset"]["area"] == "hall1" and t["asset"]["line"] == "line1" for t in tags)
        # --pattern narrows the listing
        rc = await asyncio.to_thread(
            main, ["gateway", "browse", endpoint, "--pattern", "*Spindle2*"]
        )
        listing = capsys.readouterr().out
        assert "Spindle2/ActSpeed" in listing and "Spindle1" not in listing
        # the emitted section is a valid tag map that collects without hand editing
        config = OpcUaSourceConfig.model_validate(
            {
                "type": "opcua",
                "name": "cnc",
                "endpoint": endpoint,
                "security": {"policy": "None", "mode": "None"},
                "flush_interval_s": 0.05,
                "tags": tags,
            }
        )
        outbox = SqliteOutbox(tmp_path / "o.sqlite")
        source = OpcUaSource(
            config,
            OutboxSink(outbox),
            enterprise="acme",
            site="s1",
            gateway_id="gw",
            state_dir=tmp_path,
        )
        task = asyncio.create_task(source.run())
        try:
            await wait_for(lambda: source.stats.samples >= len(tags), 30, "initial values")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        batch = stored(outbox)
        # the device's values (not the gateway's connection and data-quality series)
        batch = batch.take(np.isin(batch.series, source._slots.series))
        values = dict(
            zip(
                (outbox.table.keys[i].field for i in batch.series),
                batch.values_for(outbox.table),
                strict=True,
            )
        )
        assert values["spindle_speed_rpm"] == 8000.0
        assert values["part_count"] == 42
        assert values["program_name"] == "O1001"
        assert values["machinery_item_state"] == "Executing"
        assert source.stats.rejected == {}
        outbox.close()
    finally:
        await server.stop()
