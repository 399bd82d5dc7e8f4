"""The OPC UA server: companion-spec browse paths, values that follow the seed, security."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography.x509.oid import ExtendedKeyUsageOID

from simulator.client import browse_machine_variable
from simulator.config import NS_CNC, NS_MACHINERY, NS_PACKML, NS_SIM, SimConfig
from simulator.opcua_server import server_certificate_paths
from simulator.runner import FactorySimulator
from simulator.signals import BAD
from zhizao.localstack import free_port
from zhizao.site import MachineState

pytestmark = pytest.mark.integration

START = "2026-11-23T09:30:00+08:00"  # inside the early shift, after the morning break
END = "2026-11-23T11:30:00+08:00"


def _ts_ns(dv: Any) -> int:
    ts = dv.SourceTimestamp
    return int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000


async def test_browse_finds_companion_spec_nodes_and_values_follow_the_seed(tmp_path: Path) -> None:
    port = free_port()
    async with FactorySimulator(
        SimConfig(),
        seed=21,
        start=START,
        end=END,
        speed=600.0,
        opcua_endpoint=f"opc.tcp://127.0.0.1:{port}",
        state_dir=tmp_path,
    ) as sim:
        assert sim.opcua is not None
        sc, table = sim.scenario, sim.opcua.table
        async with Client(
            f"opc.tcp://127.0.0.1:{port}", timeout=30, watchdog_intervall=10.0
        ) as client:
            namespaces = await client.get_namespace_array()
            for uri in (NS_CNC, NS_MACHINERY, NS_PACKML, NS_SIM):
                assert uri in namespaces
            cnc = namespaces.index(NS_CNC)
            ma = namespaces.index(NS_MACHINERY)
            sim_ns = namespaces.index(NS_SIM)
            # by browse path, written the way an integrator would from the specification
            status = await client.nodes.objects.get_child(
                [
                    f"{ma}:Machines",
                    f"{sim_ns}:CNC2",
                    f"{cnc}:CncInterface",
                    f"{cnc}:CncChannelList",
                    f"{cnc}:Channel1",
                    f"{cnc}:ChannelStatus",
                ]
            )
            assert (await status.read_browse_name()) == ua.QualifiedName("ChannelStatus", cnc)
            spindles = await client.nodes.objects.get_child(
                [f"{ma}:Machines", f"{sim_ns}:CNC2", f"{cnc}:CncInterface", f"{cnc}:CncSpindleList"]
            )
            spindle = (await spindles.get_children())[0]
            names = {(await c.read_browse_name()).Name for c in await spindle.get_children()}
            assert {"ActSpeed", "ActLoad", "ActStatus", "Override"} <= names
            item_state = await client.nodes.objects.get_child(
                [
                    f"{ma}:Machines",
                    f"{sim_ns}:CNC2",
                    f"{ma}:MachineryBuildingBlocks",
                    f"{ma}:MachineryItemState",
                    "0:CurrentState",
                ]
            )
            # every published value equals what the scenario says at its source timestamp
            checked_states = 0
            first_seen: dict[str, int] = {}
            for _round in range(2):
                for k, spec in enumerate(table.variables):
                    mid = sc.machines[spec.machine].id
                    node = await browse_machine_variable(client, mid, spec)
                    dv = await node.read_data_value(raise_on_bad_status=False)
                    ts = _ts_ns(dv)
                    sel = np.flatnonzero((table.var == k) & (table.ts_ns <= ts))
                    expected = table.values[int(sel[-1])]
                    if expected is BAD:
                        assert dv.StatusCode.is_bad()
                        continue
                    value = dv.Value.Value
                    value = value.Text if isinstance(value, ua.LocalizedText) else value
                    assert value == expected, (mid, spec.key, ts)
                    assert int(table.ts_ns[int(sel[-1])]) == ts
                    if spec.key == "machinery_item_state" and not sc.in_drop(spec.machine, ts):
                        state = sc.state_at(spec.machine, ts)[0]
                        assert (value == "Executing") == (
                            state in (MachineState.IN_CYCLE, MachineState.SETUP)
                        )
                        checked_states += 1
                    first_seen.setdefault(f"{mid}/{spec.key}", ts)
                if _round == 0:
                    # let simulated time run on, then check again: values have moved on
                    before = _ts_ns(await item_state.read_data_value())
                    deadline = time.monotonic() + 60
                    while sim.opcua.values_written < 60 + len(table.variables):
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.2)
            assert checked_states == 2 * 3  # three CNC machines, two rounds
            assert sim.clock.now_ns() > sc.start_ns
            assert _ts_ns(await item_state.read_data_value()) >= before


async def _make_client_cert(directory: Path, name: str) -> tuple[Path, Path, str]:
    uri = f"urn:zhizao:test:{name}"
    key, cert = directory / f"{name}_key.pem", directory / f"{name}_cert.der"
    await setup_self_signed_certificate(
        key, cert, uri, "127.0.0.1", [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": name}
    )
    return cert, key, uri


async def _secure_client(
    port: int, cert: Path, key: Path, uri: str, server_cert: Path, user: str, password: str
) -> Client:
    client = Client(f"opc.tcp://127.0.0.1:{port}", timeout=15, watchdog_intervall=10.0)
    client.application_uri = uri
    await client.set_security(
        SecurityPolicyBasic256Sha256,
        str(cert),
        str(key),
        server_certificate=str(server_cert),
        mode=ua.MessageSecurityMode.SignAndEncrypt,
    )
    client.set_user(user)
    client.set_password(password)
    return client


async def test_security_refuses_wrong_certificate_and_wrong_password(tmp_path: Path) -> None:
    state = tmp_path / "state"
    certs = tmp_path / "certs"
    certs.mkdir()
    good_cert, good_key, good_uri = await _make_client_cert(certs, "gateway")
    bad_cert, bad_key, bad_uri = await _make_client_cert(certs, "intruder")
    (state / "pki" / "trusted").mkdir(parents=True)
    (state / "pki" / "trusted" / "gateway.der").write_bytes(good_cert.read_bytes())
    port = free_port()
    endpoint = f"opc.tcp://127.0.0.1:{port}"
    users = {"operator": "s3cret"}
    async with FactorySimulator(
        SimConfig(),
        seed=1,
        start=START,
        end=END,
        speed=1.0,
        opcua_endpoint=endpoint,
        state_dir=state,
        users=users,
    ):
        server_cert, _ = server_certificate_paths(state)
        first_cert = server_cert.read_bytes()
        # trusted certificate and right password: in, and encrypted
        ok = await _secure_client(
            port, good_cert, good_key, good_uri, server_cert, "operator", "s3cret"
        )
        async with ok:
            ns = await ok.get_namespace_index(NS_MACHINERY)
            machines = await ok.nodes.objects.get_child([f"{ns}:Machines"])
            assert len(await machines.get_children()) == 4
        # a certificate that is not in the trust list
        intruder = await _secure_client(
            port, bad_cert, bad_key, bad_uri, server_cert, "operator", "s3cret"
        )
        with pytest.raises(ua.UaStatusCodeError) as info:
            async with intruder:
                pass
        assert info.value.code == ua.StatusCodes.BadCertificateUntrusted
        assert len(list((state / "pki" / "rejected").iterdir())) == 1
        # a trusted certificate with a wrong password
        wrong = await _secure_client(
            port, good_cert, good_key, good_uri, server_cert, "operator", "guess"
        )
        with pytest.raises(ua.UaStatusCodeError) as info:
            async with wrong:
                pass
        assert info.value.code in (
            ua.StatusCodes.BadUserAccessDenied,
            ua.StatusCodes.BadIdentityTokenRejected,
            ua.StatusCodes.BadIdentityTokenInvalid,
        )
        # anonymous on the None endpoint is refused once users are configured
        with pytest.raises(ua.UaStatusCodeError):
            async with Client(endpoint, timeout=15, watchdog_intervall=10.0):
                pass
    # the server certificate was created on first run and is kept
    async with FactorySimulator(
        SimConfig(),
        seed=1,
        start=START,
        end=END,
        speed=1.0,
        opcua_endpoint=endpoint,
        state_dir=state,
        users=users,
    ):
        assert server_cert.read_bytes() == first_cert
