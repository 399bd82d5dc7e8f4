"""The session loop the MQTT-based sources (plain MQTT, Sparkplug B) share: open the broker
connection, run the receive task under the source runtime's supervision, follow the
connection's state (markers, counters, backoff reset), and on a failed session drop the
connection and open it again after a backoff, so the broker redelivers what was not
acknowledged. A source supplies ``_process(messages)`` and, if it buffers, ``_session_ended()``."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from gateway.mqtt_client import IncomingMessage, MqttConnection
from gateway.sources.runtime import SourceRuntime, TaskFailed
from zhizao.retry import Backoff

__all__ = ["MqttSession"]


class MqttSession:
    """Base of a source whose data arrives through one ``MqttConnection``."""

    connection: MqttConnection
    runtime: SourceRuntime
    stats: Any  # the source's SourceStats
    config: Any  # has flush_interval_s
    _backoff: Backoff
    _was_connected: bool
    sessions: int

    async def _process(self, msgs: list[IncomingMessage]) -> None:
        raise NotImplementedError

    def _session_ended(self) -> None:
        """Forget what a failed session left half done (its messages were not acknowledged)."""

    async def run(self) -> None:
        """Sessions of the broker connection; paho reconnects within one by itself. A failing
        receive task ends the session: the connection is dropped and opened again after a
        backoff, so the broker redelivers every message that was not acknowledged."""
        while True:
            queue: asyncio.Queue[IncomingMessage] = asyncio.Queue()
            self.connection.start(asyncio.get_running_loop(), queue)
            self.sessions += 1
            try:
                await self.runtime.supervise(
                    [("receive", functools.partial(self._receive, queue))],
                    recovered_after_s=max(1.0, 5 * self.config.flush_interval_s),
                )
            except TaskFailed as exc:
                self.stats.last_error = str(exc)  # logged once and counted by the runtime
            finally:
                self.connection.stop()
                self._session_ended()
                if self._was_connected:
                    self._was_connected = False
                    self.stats.connected = False
                    await self.runtime.guarded(
                        "markers", functools.partial(self.runtime.connection, False)
                    )
                self.stats.connected = False
            await asyncio.sleep(self._backoff.next_delay_s())

    async def _receive(self, queue: asyncio.Queue[IncomingMessage]) -> None:
        while True:
            msgs = await self._collect(queue)
            now_connected = self.connection.connected.is_set()
            if self.connection.last_error:  # e.g. the broker refused our credentials
                self.stats.last_error = self.connection.last_error
                self.stats.connect_failures = self.connection.failures
            if now_connected != self._was_connected:
                self.stats.connected = now_connected
                self.stats.reconnects = max(0, self.connection.connects - 1)
                await self.runtime.connection(now_connected)
                self._was_connected = now_connected
                if now_connected:
                    self._backoff.reset()
            if msgs:
                await self._process(msgs)

    async def _collect(self, queue: asyncio.Queue[IncomingMessage]) -> list[IncomingMessage]:
        """Whatever arrived within one flush interval (at least the wait for one message)."""
        msgs: list[IncomingMessage] = []
        try:
            first = await asyncio.wait_for(queue.get(), timeout=self.config.flush_interval_s)
        except TimeoutError:
            return msgs
        msgs.append(first)
        await asyncio.sleep(self.config.flush_interval_s)
        while not queue.empty():
            msgs.append(queue.get_nowait())
        return msgs
