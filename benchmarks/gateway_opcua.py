"""Sustained OPC UA value changes/s through the gateway's OPC UA source into the durable outbox,
and the gateway process's CPU per 10,000 values/s.

Load: ``--servers`` asyncua server *processes* (this script in ``--serve`` mode), each with
``--vars`` Double variables that it rewrites round after round with a fresh source timestamp, at
an offered total of ``--rate`` values/s. The gateway (this process) runs one ``OpcUaSource`` per
server: subscriptions with StatusValueTimestamp, queue per item, bulk notification path, flushes
every 0.2 s into a ``SqliteOutbox`` with the shipped durability (synchronous=FULL).

On a 2-core machine the server processes compete with the gateway for CPU: the result is what one
gateway process sustains *while* its servers run on the same box, not its ceiling on a free core.
Prints ``{"name": "gateway_opcua", "values_per_s": .., "cpu_pct_per_10k": ..}`` plus the setup.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import emit, log
from gateway.config import OpcUaSourceConfig, OutboxConfig
from gateway.outbox import SqliteOutbox
from gateway.sink import OutboxSink
from gateway.sources.opcua.source import OpcUaSource
from zhizao.localstack import free_port


async def _serve(port: int, n_vars: int, rate: float) -> None:
    from asyncua import ua
    from asyncua.server import monitored_item_service
    from asyncua.server.server import Server

    def set_current_datavalue(self: Any, value: Any) -> None:
        # asyncua 2.1 deep-copies every DataValue per monitored item (~0.5 ms per write); the
        # load generator builds a fresh DataValue per write, so sharing it is safe and lets the
        # servers offer more load on this small machine. Server-side only; the gateway is stock.
        self.old_dvalue = self.current_dvalue
        self.current_dvalue = value

    monitored_item_service.MonitoredItemValues.set_current_datavalue = set_current_datavalue  # type: ignore[method-assign,assignment]
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    idx = await server.register_namespace("urn:zhizao:bench")
    folder = await server.nodes.objects.add_folder(idx, "Bench")
    nodes = []
    for i in range(n_vars):
        var = await folder.add_variable(ua.NodeId(f"V{i:05d}", idx), f"V{i:05d}", 0.0)  # type: ignore[arg-type]
        nodes.append(var.nodeid)
    await server.start()
    print("ready", flush=True)
    iserver = server.iserver
    loop = asyncio.get_running_loop()
    parent = os.getppid()
    k = 0
    period_s = n_vars / rate  # one round writes every variable once
    next_at = loop.time()
    while True:
        k += 1
        now = datetime.now(UTC)
        for j, nid in enumerate(nodes):
            await iserver.write_attribute_value(
                nid,
                ua.DataValue(ua.Variant(float(k), ua.VariantType.Double), SourceTimestamp=now),  # type: ignore[arg-type]
            )
            if j % 100 == 99:
                await asyncio.sleep(0)  # let the publish path run
        if os.getppid() != parent:
            return  # the benchmark died without cleaning up: do not linger as an orphan
        next_at += period_s
        await asyncio.sleep(max(0.0, next_at - loop.time()))


def _config(port: int, n_vars: int) -> OpcUaSourceConfig:
    return OpcUaSourceConfig.model_validate(
        {
            "type": "opcua",
            "name": f"bench{port}",
            "endpoint": f"opc.tcp://127.0.0.1:{port}",
            "security": {"policy": "None", "mode": "None"},
            "publishing_interval_ms": 100,
            "queue_size": 10,
            "watchdog_interval_s": 5,
            "flush_interval_s": 0.2,
            "tags": [
                {
                    "node": f"ns=2;s=V{i:05d}",
                    "asset": {"area": "bench", "machine": f"p{port}-m{i // 50:04d}"},
                    "measurement": "bench",
                    "signal": f"v{i % 50:02d}",
                }
                for i in range(n_vars)
            ],
        }
    )


async def _measure(
    ports: list[int], n_vars: int, warmup_s: float, window_s: float, tmp: Path
) -> dict[str, float]:
    outbox = SqliteOutbox(tmp / "outbox.sqlite", OutboxConfig(max_bytes=1 << 34))
    sink = OutboxSink(outbox)
    sources = [
        OpcUaSource(
            _config(p, n_vars),
            sink,
            enterprise="acme",
            site="bench",
            gateway_id="gw",
            state_dir=tmp,
        )
        for p in ports
    ]
    tasks = [asyncio.create_task(s.run()) for s in sources]
    try:
        deadline = time.monotonic() + 120
        while not all(s.stats.connected for s in sources):
            if time.monotonic() > deadline:
                raise SystemExit("gateway could not connect to the benchmark servers")
            await asyncio.sleep(0.2)
        await asyncio.sleep(warmup_s)
        n0, cpu0, t0 = outbox.stats.appended, time.process_time(), time.perf_counter()
        await asyncio.sleep(window_s)
        n1, cpu1, t1 = outbox.stats.appended, time.process_time(), time.perf_counter()
        rejected = sum(sum(s.stats.rejected.values()) for s in sources)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        outbox.close()
    wall = t1 - t0
    values_per_s = (n1 - n0) / wall
    cpu_pct = (cpu1 - cpu0) / wall * 100
    return {
        "values_per_s": values_per_s,
        "cpu_pct": cpu_pct,
        "cpu_pct_per_10k": cpu_pct / (values_per_s / 10_000) if values_per_s else float("nan"),
        "rejected": rejected,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--servers", type=int, default=2)
    # 2 x 2,000 variables: on 2 cores shared with the gateway, asyncua servers with more
    # variables cannot deliver the offered rate (10,000 variables: ~44k/s offered-and-delivered
    # while the gateway used ~56 % of one core), so the servers, not the gateway, would be measured
    parser.add_argument("--vars", type=int, default=2000, help="variables per server")
    parser.add_argument("--rate", type=float, default=60_000, help="offered values/s in total")
    parser.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(args.serve, args.vars, args.rate))
        return 0
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    logging.getLogger("gateway").setLevel(logging.ERROR)
    # SIGTERM (timeouts, make) must still run the finally below that kills the servers
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    warmup_s, window_s = (3.0, 6.0) if args.quick else (10.0, 30.0)
    ports = [free_port() for _ in range(args.servers)]
    procs = []
    try:
        for port in ports:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--serve",
                    str(port),
                    "--vars",
                    str(args.vars),
                    "--rate",
                    str(args.rate / args.servers),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
            )
            procs.append(proc)
        for proc in procs:
            assert proc.stdout is not None
            if "ready" not in proc.stdout.readline():
                raise SystemExit("benchmark OPC UA server did not start")
        log(f"{args.servers} servers x {args.vars} vars, offered {args.rate:,.0f} values/s")
        with tempfile.TemporaryDirectory(prefix="zhizao-gw-bench-") as tmp:
            result = asyncio.run(_measure(ports, args.vars, warmup_s, window_s, Path(tmp)))
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
    log(
        f"gateway process CPU {result['cpu_pct']:.1f} % of one core over {window_s:.0f} s; "
        f"{args.servers * args.vars} variables, offered {args.rate:,.0f}/s, {os.cpu_count()} cores "
        f"shared with the servers; outbox synchronous={OutboxConfig().synchronous}; "
        f"values rejected {result['rejected']}"
    )
    emit(
        {
            "name": "gateway_opcua",
            "values_per_s": result["values_per_s"],
            "cpu_pct_per_10k": result["cpu_pct_per_10k"],
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
