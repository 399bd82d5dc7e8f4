"""A secured session against the simulator collects every value change of a simulated hour."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from asyncua.client.client import Client

from gateway.config import OpcUaSourceConfig
from gateway.outbox import SqliteOutbox
from gateway.sink import OutboxSink
from gateway.sources.opcua.source import OpcUaSource
from simulator.config import SimConfig
from simulator.opcua_server import server_certificate_paths
from simulator.runner import FactorySimulator
from simulator.signals import BAD, build_change_table
from tests.gateway.helpers import stored, wait_for
from zhizao.localstack import free_port
from zhizao.model import FieldType
from zhizao.quality import Quality

pytestmark = pytest.mark.integration
_TYPES = {
    "Double": "float",
    "Float": "float",
    "Boolean": "bool",
    "String": "string",
    "LocalizedText": "string",
}


def _vtype(vtype: str) -> str:
    return _TYPES.get(vtype, "int")


async def test_secured_session_counts_match_simulator_truth(tmp_path: Path) -> None:
    port = free_port()
    sim_dir, gw_dir = tmp_path / "sim", tmp_path / "gw"
    # the gateway's persistent client certificate, as its first run would create it, is put on
    # the simulator's trust list (what an integrator does once)
    gw_pki = gw_dir / "pki"
    helper = Client(f"opc.tcp://127.0.0.1:{port}")
    helper.application_uri = "urn:zhizao:gateway"
    await helper.setup_self_signed_certificate(
        gw_pki / "client_key.pem",
        gw_pki / "client_cert.der",
        subject_attrs={"organizationName": "zhizao"},
    )
    (gw_pki / "client_key.pem").chmod(0o600)  # as the gateway creates it (others may not read)
    (sim_dir / "pki" / "trusted").mkdir(parents=True)
    shutil.copy(gw_pki / "client_cert.der", sim_dir / "pki" / "trusted" / "zhizao-gateway.der")
    start, end = "2026-11-23T09:00:00+08:00", "2026-11-23T10:00:00+08:00"
    async with FactorySimulator(
        SimConfig(machines=2),
        seed=11,
        start=start,
        end=end,
        speed=600,  # the simulated hour in 6 s
        opcua_endpoint=f"opc.tcp://127.0.0.1:{port}",
        state_dir=sim_dir,
        users={"gateway": "s3cret"},
        autostart=False,
        publish_mqtt=False,
    ) as sim:
        sc = sim.scenario
        trust = tmp_path / "trusted"
        trust.mkdir()
        shutil.copy(server_certificate_paths(sim_dir)[0], trust / "simulator.der")
        machines = list(range(len(sc.machines)))
        table = build_change_table(sc, machines)
        ns_sim = await _sim_namespace(port)
        tags: list[dict[str, Any]] = []
        for spec in table.variables:
            mid = sc.machines[spec.machine].id
            tags.append(
                {
                    "node": f"ns={ns_sim};s={mid}.{spec.node_id}",
                    "asset": {"area": "a", "machine": mid},
                    "measurement": "sim",
                    "signal": spec.key,
                    "type": _vtype(spec.vtype),
                }
            )
        config = OpcUaSourceConfig.model_validate(
            {
                "type": "opcua",
                "name": "sim",
                "endpoint": f"opc.tcp://127.0.0.1:{port}",
                "security": {"trust_dir": str(trust), "username": "gateway", "password": "s3cret"},
                "publishing_interval_ms": 50,
                "queue_size": 1000,
                "flush_interval_s": 0.1,
                "tags": tags,
            }
        )
        outbox = SqliteOutbox(tmp_path / "o.sqlite")
        source = OpcUaSource(
            config, OutboxSink(outbox), enterprise="e", site="s", gateway_id="gw", state_dir=gw_dir
        )
        task = asyncio.create_task(source.run())
        try:
            await wait_for(lambda: source.monitored_items == len(tags), 60, "subscribed")
            sim.start_clock()
            await sim.wait_finished(timeout_s=120)
            last_ns = int(table.ts_ns.max())
            await wait_for(lambda: source.stats.last_sample_ns >= last_ns, 60, "last change")
            await asyncio.sleep(0.5)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    batch = stored(outbox)
    keys = outbox.table.keys
    # truth: every change after the start (the value at the start arrives as the initial sample)
    start_ns = sc.start_ns
    later = table.ts_ns > start_ns
    good_truth = later & np.array([v is not BAD for v in table.values])
    assert int(good_truth.sum()) > 100  # a meaningful hour
    series_of_var = [
        outbox.table.find(
            next(
                k
                for k in keys
                if k.field == spec.key and k.tag_dict["machine"] == sc.machines[spec.machine].id
            )
        )
        for spec in table.variables
    ]
    for v, spec in enumerate(table.variables):
        s = series_of_var[v]
        mask = (batch.series == s) & (batch.quality == Quality.GOOD) & (batch.ts_ns > start_ns)
        truth_ts = table.ts_ns[good_truth & (table.var == v)]
        # every change, once, with its simulated source timestamp (whole ms)
        np.testing.assert_array_equal(np.sort(batch.ts_ns[mask]), truth_ts, err_msg=spec.key)
        if keys[s].dtype == FieldType.INT:
            truth_vals = [table.values[i] for i in np.flatnonzero(good_truth & (table.var == v))]
            assert batch.value_i64[mask].tolist() == [int(x) for x in truth_vals], spec.key
    assert source.stats.rejected.get("wrong_type", 0) == 0
    outbox.close()


async def _sim_namespace(port: int) -> int:
    client = Client(f"opc.tcp://127.0.0.1:{port}")
    client.set_user("gateway")
    client.set_password("s3cret")
    # namespaces are public: GetEndpoints-level access is enough, but a session is simplest
    try:
        await client.connect()
        return int(await client.get_namespace_index("urn:zhizao:simulator"))
    finally:
        await client.disconnect()
