"""Running the simulator: in-process (``FactorySimulator``, an async context manager) or as
several server processes (``ShardedSimulator``), each serving a share of the machines on its own
OPC UA port. Every shard builds the same scenario from the same seed and follows one shared
clock, so together they publish exactly one factory.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.process
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo

from simulator.clock import SimClock
from simulator.config import SimConfig
from simulator.mqtt_publisher import MqttFactoryPublisher
from simulator.opcua_server import OpcUaFactoryServer
from simulator.scenario import Scenario, build_scenario, to_ns
from simulator.truth import write_truth
from zhizao.errors import SourceUnavailable

__all__ = ["FactorySimulator", "ShardedSimulator", "default_start_ns", "shard_machines"]


def default_start_ns(config: SimConfig) -> int:
    """Local midnight of today in the site's time zone."""
    tz = ZoneInfo(config.build_site().timezone)
    now = datetime.now(tz)
    return to_ns(datetime(now.year, now.month, now.day, tzinfo=tz))


def shard_machines(n_machines: int, shards: int, shard: int) -> list[int]:
    """Machines served by ``shard`` (round robin, so big and small lines spread evenly)."""
    return [m for m in range(n_machines) if m % shards == shard]


class FactorySimulator:
    """The whole simulator in this process: OPC UA server, optional MQTT publisher, truth file.

    With ``autostart=False`` the clock stands at the scenario start until ``start_clock()``, so a
    test can subscribe first and miss nothing.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        seed: int = 0,
        start: int | str | datetime | None = None,
        end: int | str | datetime | None = None,
        hours: float = 24.0,
        speed: float = 60.0,
        opcua_endpoint: str | None = "opc.tcp://127.0.0.1:4840",
        mqtt_url: str | None = None,
        sparkplug_host_id: str | None = None,
        state_dir: str | Path | None = None,
        truth_file: str | Path | None = None,
        users: dict[str, str] | None = None,
        trust_any_client: bool = False,
        autostart: bool = True,
        machines: list[int] | None = None,
        publish_mqtt: bool = True,
        wall_start_s: float | None = None,
        tick_s: float = 0.05,
    ) -> None:
        self.config = config or SimConfig()
        start_ns = to_ns(start) if start is not None else default_start_ns(self.config)
        end_ns = to_ns(end) if end is not None else start_ns + int(hours * 3600) * 1_000_000_000
        self.scenario: Scenario = build_scenario(self.config, seed, start_ns, end_ns)
        self.clock = SimClock(start_ns, speed)
        self.opcua_endpoint = opcua_endpoint
        self.mqtt_url = mqtt_url if publish_mqtt else None
        self.sparkplug_host_id = sparkplug_host_id
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="zhizao-sim-")
            state_dir = self._tmp.name
        self.state_dir = Path(state_dir)
        self.truth_file = truth_file
        self.users = users
        self.trust_any_client = trust_any_client
        self.autostart = autostart
        self.machines = machines
        self.wall_start_s = wall_start_s
        self.tick_s = tick_s
        self.opcua: OpcUaFactoryServer | None = None
        self.mqtt: MqttFactoryPublisher | None = None

    async def __aenter__(self) -> FactorySimulator:
        if self.truth_file is not None:
            await asyncio.to_thread(write_truth, self.scenario, self.truth_file)
        try:
            if self.opcua_endpoint:
                self.opcua = OpcUaFactoryServer(
                    self.scenario,
                    self.clock,
                    self.opcua_endpoint,
                    self.state_dir,
                    machines=self.machines,
                    users=self.users,
                    trust_any_client=self.trust_any_client,
                    tick_s=self.tick_s,
                )
                await self.opcua.__aenter__()
            if self.mqtt_url:
                self.mqtt = MqttFactoryPublisher(
                    self.scenario,
                    self.clock,
                    self.mqtt_url,
                    primary_host_id=self.sparkplug_host_id,
                )
                await self.mqtt.__aenter__()
        except BaseException:
            await self._close()
            raise
        if self.wall_start_s is not None:
            self.clock.start(self.wall_start_s)
        elif self.autostart:
            self.clock.start()
        return self

    def start_clock(self) -> None:
        self.clock.start()

    async def wait_finished(self, timeout_s: float) -> None:
        """Until every part has published the scenario's end (raises TimeoutError)."""
        async with asyncio.timeout(timeout_s):
            for part in (self.opcua, self.mqtt):
                if part is not None:
                    await part.finished.wait()

    async def _close(self) -> None:
        if self.mqtt is not None:
            await self.mqtt.__aexit__(None, None, None)
            self.mqtt = None
        if self.opcua is not None:
            await self.opcua.__aexit__(None, None, None)
            self.opcua = None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()
        if self._tmp is not None:
            self._tmp.cleanup()

    async def serve_forever(self) -> None:
        """Until the scenario ends, then keep serving the last values until cancelled."""
        await self.wait_finished(timeout_s=1e9)
        await asyncio.Event().wait()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# --- shards (processes) --------------------------------------------------------------------------
def _shard_main(kwargs: dict[str, Any], ready: Any) -> None:
    # a fresh process: stop cleanly on SIGTERM
    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        async with FactorySimulator(**kwargs):
            ready.set()
            await stop.wait()

    asyncio.run(main())


@dataclass
class ShardedSimulator:
    """``shards`` server processes, shard i on port ``ports[i]``; MQTT from shard 0 only."""

    config: SimConfig
    seed: int
    ports: list[int]
    start: int | str | datetime | None = None
    hours: float = 24.0
    speed: float = 60.0
    mqtt_url: str | None = None
    state_dir: Path | None = None
    users: dict[str, str] | None = None
    trust_any_client: bool = False
    start_delay_s: float = 0.0
    tick_s: float = 0.05
    # SIGKILL instead of a clean stop on exit (benchmarks: the next case starts sooner)
    kill_on_exit: bool = False
    procs: list[multiprocessing.process.BaseProcess] = field(default_factory=list)
    wall_start_s: float | None = None

    def __enter__(self) -> ShardedSimulator:
        # fork is much faster to start (nothing re-imported); it is only safe while this
        # process has no other threads, otherwise spawn
        single = (
            threading.active_count() == 1
            and "fork" in multiprocessing.get_all_start_methods()
            and not _loop_running()
        )
        ctx: Any = multiprocessing.get_context("fork" if single else "spawn")
        start_ns = to_ns(self.start) if self.start is not None else default_start_ns(self.config)
        state_dir = self.state_dir or Path(tempfile.mkdtemp(prefix="zhizao-sim-shards-"))
        n_machines = len(self.config.build_site().machines())
        # every shard follows the same clock; it starts once all shards had time to come up
        self.wall_start_s = time.time() + self.start_delay_s
        events = []
        for i, port in enumerate(self.ports):
            ready = ctx.Event()
            kwargs: dict[str, Any] = {
                "config": self.config,
                "seed": self.seed,
                "start": start_ns,
                "hours": self.hours,
                "speed": self.speed,
                "opcua_endpoint": f"opc.tcp://127.0.0.1:{port}",
                "mqtt_url": self.mqtt_url if i == 0 else None,
                "state_dir": state_dir / f"shard{i}",
                "users": self.users,
                "trust_any_client": self.trust_any_client,
                "machines": shard_machines(n_machines, len(self.ports), i),
                "wall_start_s": self.wall_start_s,
                "tick_s": self.tick_s,
            }
            proc = ctx.Process(target=_shard_main, args=(kwargs, ready), daemon=True)
            proc.start()
            self.procs.append(proc)
            events.append(ready)
        deadline = time.monotonic() + 120.0
        for i, ready in enumerate(events):
            while not ready.wait(0.2):
                if not self.procs[i].is_alive() or time.monotonic() > deadline:
                    self.__exit__(None, None, None)
                    raise SourceUnavailable(
                        "a simulator shard did not start", detail=f"port {self.ports[i]}"
                    )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for proc in self.procs:
            if proc.is_alive():
                if self.kill_on_exit:
                    proc.kill()
                else:
                    proc.terminate()
        for proc in self.procs:
            proc.join(15)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        self.procs.clear()
