"""``GatewayApp``: wires config -> sources -> outbox -> uplink, plus health; runs until stopped.

Two-phase life: the constructor validates and opens local state (outbox, series), ``run``
connects everything and keeps it running; every remote failure is retried inside the sources and
the uplink, so ``run`` only ends when asked to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from gateway.config import (
    GatewayConfig,
    MqttSourceConfig,
    MqttUplinkConfig,
    OpcUaSourceConfig,
    SparkplugSourceConfig,
)
from gateway.health import GatewayCollector, serve_metrics, status_snapshot, write_status
from gateway.outbox import SqliteOutbox
from gateway.sink import OutboxSink
from gateway.sources.base import Source
from gateway.uplink import InfluxUplink, MqttUplink

__all__ = ["GatewayApp"]

log = logging.getLogger(__name__)
STATUS_EVERY_S = 2.0


class GatewayApp:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        ident = config.gateway
        ident.state_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = SqliteOutbox(config.state_path(config.outbox.path), config.outbox)
        self.sink = OutboxSink(self.outbox)
        common: dict[str, Any] = {
            "enterprise": ident.enterprise,
            "site": ident.site,
            "gateway_id": ident.id,
            "state_dir": ident.state_dir,
        }
        self.sources: list[Source] = []
        for sc in config.sources:
            if isinstance(sc, OpcUaSourceConfig):
                from gateway.sources.opcua import OpcUaSource

                self.sources.append(OpcUaSource(sc, self.sink, **common))
            elif isinstance(sc, MqttSourceConfig):
                from gateway.sources.mqtt import MqttSource

                self.sources.append(MqttSource(sc, self.sink, **common))
            elif isinstance(sc, SparkplugSourceConfig):
                from gateway.sources.sparkplug import SparkplugHost

                self.sources.append(SparkplugHost(sc, self.sink, **common))
        self.uplink: MqttUplink | InfluxUplink
        if isinstance(config.uplink, MqttUplinkConfig):
            self.uplink = MqttUplink(config.uplink, self.outbox, ident)
        else:
            self.uplink = InfluxUplink(config.uplink, self.outbox, ident)
        self.metrics_port: int | None = None
        self._metrics_server: Any = None

    def snapshot(self) -> dict[str, Any]:
        return status_snapshot(
            self.config.gateway.id,
            [s.stats for s in self.sources],
            self.outbox,
            self.uplink.stats,
            self.metrics_port,
        )

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        m = self.config.metrics
        if m.enabled:
            collector = GatewayCollector(
                self.config.gateway.id,
                [s.stats for s in self.sources],
                self.outbox,
                self.uplink.stats,
            )
            self._metrics_server, self.metrics_port = serve_metrics(m.host, m.port, collector)
            log.info("metrics on http://%s:%s/metrics", m.host, self.metrics_port)
        tasks = [asyncio.create_task(s.run(), name=f"source-{s.name}") for s in self.sources]
        tasks.append(asyncio.create_task(self.uplink.run(), name="uplink"))
        try:
            while not stop.is_set():
                for task in tasks:
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                await asyncio.to_thread(
                    write_status, self.config.gateway.state_dir, self.snapshot()
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), STATUS_EVERY_S)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            write_status(self.config.gateway.state_dir, self.snapshot())
            if self._metrics_server is not None:
                self._metrics_server.shutdown()
            self.outbox.close()


def run_forever(config: GatewayConfig) -> int:
    """Entry point of ``zhizao gateway run``: SIGTERM/SIGINT stop cleanly."""

    async def main() -> None:
        app = GatewayApp(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await app.run(stop)

    asyncio.run(main())
    return 0
