"""Several server processes serve one factory: each machine on exactly one shard."""

from __future__ import annotations

import asyncio

import pytest
from asyncua.client.client import Client

from simulator.config import NS_MACHINERY, NS_SIM, SimConfig
from simulator.runner import ShardedSimulator, shard_machines
from zhizao.localstack import free_port

pytestmark = pytest.mark.integration


async def _machines_on(port: int) -> tuple[set[str], int]:
    async with Client(f"opc.tcp://127.0.0.1:{port}", timeout=30, watchdog_intervall=10.0) as client:
        ma = await client.get_namespace_index(NS_MACHINERY)
        folder = await client.nodes.objects.get_child([f"{ma}:Machines"])
        names = {(await n.read_browse_name()).Name for n in await folder.get_children()}
        sim = await client.get_namespace_index(NS_SIM)
        signals = await client.nodes.objects.get_child(
            [f"{ma}:Machines", f"{sim}:{sorted(names)[0]}", f"{sim}:Signals"]
        )
        return names, len(await signals.get_children())


def test_two_shards_split_the_machines(tmp_path: object) -> None:
    config = SimConfig(machines=3, signals_per_machine=5)
    ports = [free_port(), free_port()]
    with ShardedSimulator(
        config, seed=3, ports=ports, start="2026-11-23T08:00:00+08:00", hours=2.0, speed=60.0
    ) as sharded:
        assert len(sharded.procs) == 2
        results = [asyncio.run(_machines_on(p)) for p in ports]
    first, second = results[0][0], results[1][0]
    assert first.isdisjoint(second)
    assert first | second == {"CNC1", "CNC2", "CNC3", "ASM1"}
    assert first == {"CNC1", "CNC3"}  # round robin: machines 0 and 2
    assert shard_machines(4, 2, 1) == [1, 3]
    assert all(n == 5 for _, n in results)
