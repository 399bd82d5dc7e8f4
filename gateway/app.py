"""``GatewayApp``: wires config -> sources -> outbox -> uplink, plus health; runs until stopped.

Two-phase life: the constructor validates and opens local state (outbox, series), ``run``
connects everything and keeps it running; every remote failure is retried inside the sources and
the uplink, so ``run`` only ends when asked to. A source that fails unexpectedly is logged and
started again after a pause (a crash loop of the whole process under ``Restart=always`` would
stop every other source too); only a configuration error ends ``run``. The status file is
written every ``STATUS_EVERY_S``; a failure to write it (a full disk) is reported in health and
metrics, never fatal.

The state directory is made 0700 and its files 0600, whatever the umask.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from gateway.config import GatewayConfig, MqttUplinkConfig
from gateway.health import (
    GatewayCollector,
    GatewayHealth,
    serve_metrics,
    status_snapshot,
    write_status,
)
from gateway.outbox import SqliteOutbox, private_dir
from gateway.sink import OutboxSink
from gateway.sources.base import Source
from gateway.sources.registry import kind_of
from gateway.uplink import InfluxUplink, MqttUplink
from zhizao.errors import ConfigError
from zhizao.service import run_until_signalled

__all__ = ["GatewayApp"]

log = logging.getLogger(__name__)
STATUS_EVERY_S = 2.0
SOURCE_RESTART_S = 5.0


class GatewayApp:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        ident = config.gateway
        private_dir(ident.state_dir)
        self.outbox = SqliteOutbox(config.state_path(config.outbox.path), config.outbox)
        self.sink = OutboxSink(self.outbox)
        common: dict[str, Any] = {
            "enterprise": ident.enterprise,
            "site": ident.site,
            "gateway_id": ident.id,
            "state_dir": ident.state_dir,
        }
        # the registry names each kind's class; only the protocols configured are imported
        self.sources: list[Source] = [
            kind_of(sc).load()(sc, self.sink, **common) for sc in config.sources
        ]
        self.uplink: MqttUplink | InfluxUplink
        if isinstance(config.uplink, MqttUplinkConfig):
            self.uplink = MqttUplink(config.uplink, self.outbox, ident)
        else:
            self.uplink = InfluxUplink(config.uplink, self.outbox, ident)
        self.metrics_port: int | None = None
        self._metrics_server: Any = None
        self._state = "running"  # then "stopped", or "error" when a configuration error ends it
        self._stop_reason = ""
        self.health = GatewayHealth()

    def snapshot(self) -> dict[str, Any]:
        snap = status_snapshot(
            self.config.gateway.id,
            [s.stats for s in self.sources],
            self.outbox,
            self.uplink.stats,
            self.metrics_port,
            self.health,
        )
        # the last status of a stopped gateway says so: a fresh file alone would read "running"
        snap["state"] = self._state
        if self._stop_reason:
            snap["stop_reason"] = self._stop_reason
        return snap

    def _write_status(self) -> None:
        try:
            write_status(self.config.gateway.state_dir, self.snapshot())
        except OSError as exc:
            self.health.status_write_errors += 1
            if not self.health.status_error:
                log.error(
                    "cannot write the status file in %s (%s); the gateway keeps running, "
                    "see /metrics (zhizao_gateway_status_write_errors_total)",
                    self.config.gateway.state_dir,
                    exc.strerror or exc,
                )
            self.health.status_error = f"status file: {exc.strerror or exc}"
        else:
            if self.health.status_error:
                log.warning("the status file can be written again")
            self.health.status_error = ""

    def _check_task(self, task: asyncio.Task[None], index: int) -> asyncio.Task[None]:
        """A task that ended is restarted after a pause; a ConfigError ends the run."""
        if not task.done() or task.cancelled():
            return task
        exc = task.exception()
        if exc is None:
            return task
        if isinstance(exc, ConfigError):
            raise exc
        is_source = index < len(self.sources)
        name = self.sources[index].name if is_source else "uplink"
        restart_at = self._restart_at.get(index)
        if restart_at is None:
            self.health.task_crashes += 1
            if is_source:
                self.sources[index].stats.last_error = f"{type(exc).__name__}: {exc}"
                self.sources[index].stats.connected = False
            else:
                self.uplink.stats.last_error = f"{type(exc).__name__}: {exc}"
                self.uplink.stats.connected = False
            log.error(
                "%s failed (%s: %s); restarting it in %.0f s",
                f"source {name}" if is_source else "the uplink",
                type(exc).__name__,
                exc,
                SOURCE_RESTART_S,
                exc_info=exc,
            )
            self._restart_at[index] = time.monotonic() + SOURCE_RESTART_S
            return task
        if time.monotonic() < restart_at:
            return task
        del self._restart_at[index]
        runner = self.sources[index].run() if is_source else self.uplink.run()
        return asyncio.create_task(runner, name=f"source-{name}" if is_source else name)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        m = self.config.metrics
        if m.enabled:
            collector = GatewayCollector(
                self.config.gateway.id,
                [s.stats for s in self.sources],
                self.outbox,
                self.uplink.stats,
                self.health,
            )
            self._metrics_server, self.metrics_port = serve_metrics(m.host, m.port, collector)
            log.info("metrics on http://%s:%s/metrics", m.host, self.metrics_port)
        tasks = [asyncio.create_task(s.run(), name=f"source-{s.name}") for s in self.sources]
        tasks.append(asyncio.create_task(self.uplink.run(), name="uplink"))
        self._restart_at: dict[int, float] = {}
        try:
            while not stop.is_set():
                tasks = [self._check_task(t, i) for i, t in enumerate(tasks)]
                await asyncio.to_thread(self._write_status)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0 if self._restart_at else STATUS_EVERY_S)
        except ConfigError as exc:
            self._state = "error"
            self._stop_reason = f"configuration error: {exc}"
            raise
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self._state == "running":
                self._state = "stopped"
            self._write_status()
            if self._metrics_server is not None:
                self._metrics_server.stop()
            self.outbox.close()


def run_forever(config: GatewayConfig) -> int:
    """Entry point of ``zhizao gateway run``: SIGTERM/SIGINT stop cleanly."""
    return run_until_signalled(lambda stop: GatewayApp(config).run(stop))
