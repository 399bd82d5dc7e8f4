"""Value changes per second that the simulator delivers to a subscribing OPC UA client, with 1, 2
and 4 server processes (shards).

Each shard serves a share of the machines; every machine has ``signals`` analog signals that
change on every tick. One asyncua client (in this process) subscribes to all of them on every
shard with bulk subscriptions and counts the values it receives in a fixed window.

Usage: python benchmarks/simulator.py [--quick]
Prints one JSON object per case: {"name": "simulator", "shards": N, "values_per_s": X}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asyncua import ua
from asyncua.client.client import Client

from simulator.client import create_bulk_subscription
from simulator.config import NS_SIM, SimConfig
from simulator.runner import ShardedSimulator, shard_machines
from zhizao.localstack import free_port

START = "2026-11-23T06:00:00+08:00"


async def measure(ports: list[int], config: SimConfig, window_s: float, warmup_s: float) -> float:
    site = config.build_site()
    machine_ids = [m.id for _, _, m in site.machines()]
    received = 0

    def count(items: list[tuple[int, Any]]) -> None:
        nonlocal received
        received += len(items)

    clients: list[Client] = []
    try:
        for shard, port in enumerate(ports):
            # a loaded server answers slowly: do not take a slow probe for a dead link
            client = Client(f"opc.tcp://127.0.0.1:{port}", timeout=60, watchdog_intervall=30.0)
            await client.connect()
            clients.append(client)
            ns = await client.get_namespace_index(NS_SIM)
            sub = await create_bulk_subscription(client, count, period_ms=100)
            nodes = [
                client.get_node(ua.NodeId(f"{machine_ids[m]}.Signals.S{j:04d}", ns))
                for m in shard_machines(len(machine_ids), len(ports), shard)
                for j in range(config.signals_per_machine)
            ]
            sub_any: Any = sub
            for i in range(0, len(nodes), 1000):  # stay below server operation limits
                await sub_any.subscribe_data_change(
                    nodes[i : i + 1000], queuesize=0
                )  # every change, not the latest per publish
        await asyncio.sleep(warmup_s)
        c0, t0 = received, time.perf_counter()
        await asyncio.sleep(window_s)
        c1, t1 = received, time.perf_counter()
        return (c1 - c0) / (t1 - t0)
    finally:
        for client in clients:
            # the shard may already be gone; the number is taken
            with contextlib.suppress(Exception):
                await client.disconnect()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small factory, short windows")
    parser.add_argument("--shards", type=int, nargs="*", default=[1, 2, 4])
    args = parser.parse_args(argv)
    if args.quick:
        config = SimConfig(machines=6, signals_per_machine=100, connection_drops_per_day=0)
        window_s, warmup_s = 1.0, 0.5
    else:
        config = SimConfig(machines=50, signals_per_machine=200, connection_drops_per_day=0)
        window_s, warmup_s = 10.0, 3.0
    # shard i keeps its server certificate in state/shard<i>, so later cases reuse it
    state = Path(tempfile.mkdtemp(prefix="zhizao-bench-sim-"))
    for shards in args.shards:
        ports = [free_port() for _ in range(shards)]
        with ShardedSimulator(
            config,
            seed=1,
            ports=ports,
            start=START,
            hours=1.0 if args.quick else 8.0,
            speed=60.0,
            tick_s=0.05,
            state_dir=state,
            trust_any_client=True,
            kill_on_exit=True,
        ):
            rate = asyncio.run(measure(ports, config, window_s, warmup_s))
        print(
            json.dumps({"name": "simulator", "shards": shards, "values_per_s": round(rate, 1)}),
            flush=True,
        )
    shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
