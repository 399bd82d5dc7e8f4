"""Sparkplug B host application (``SparkplugHost``): the gateway's adapter of the one host.

Births, aliases, sequence, bdSeq, deaths to STALE, the rebirth hold-off per node and the
metric-to-series policy are ``zhizao.sparkplug_host`` (ingest's Sparkplug codec runs the same,
so an edge node stores the same series through either). This module adds the MQTT side: one
connection, rebirth requests (NCMD ``Node Control/Rebirth`` = true) sent when the state machine
wants them and counting the ones other hosts were seen to send, every issue counted by reason
(the first of each reason logged), and the host's STATE (``spBv1.0/STATE/<host_id>``, retained,
with a will) when ``host_id`` is configured.

Sessions run on the source runtime (``gateway.sources.runtime``) like the MQTT source's: the
receive task (collect, decode, store, acknowledge) is supervised, so a failure in it ends the
session (counted in ``zhizao_gateway_source_task_failures_total{task="receive"}``, logged once),
the connection is closed and opened again after a backoff. Messages are acknowledged only once
their samples are in the outbox (or refused by it, counted by reason): the broker delivers a
QoS 1 message whose store failed again in the next session. The state machine saw it once
already, so its ``seq`` looks repeated (``seq_gap``) and a rebirth is requested, which is how a
Sparkplug host recovers its view of a node anyway.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from gateway.mqtt_client import IncomingMessage, MqttConnection
from gateway.sources.base import Backoff, SampleSink, SourceStats
from gateway.sources.mqtt_session import MqttSession
from gateway.sources.runtime import SourceRuntime
from gateway.sources.sparkplug.config import SparkplugSourceConfig
from zhizao.model import Batch
from zhizao.sparkplug import NAMESPACE
from zhizao.sparkplug_host import (
    SparkplugHostState,
    SparkplugSeriesPolicy,
    is_rebirth_request,
    rebirth_command,
    rebirth_target,
)

__all__ = ["SparkplugHost"]

log = logging.getLogger(__name__)


class SparkplugHost(MqttSession):
    """Sparkplug B host application source."""

    def __init__(
        self,
        config: SparkplugSourceConfig,
        sink: SampleSink,
        *,
        enterprise: str,
        site: str,
        gateway_id: str,
        state_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.sink = sink
        self.stats = SourceStats(config.name, "sparkplug")
        self.enterprise, self.site = enterprise, site
        self.rebirth_requests = 0
        self._logged: set[str] = set()
        policy = SparkplugSeriesPolicy.from_config(
            config.metrics,
            unmapped=config.unmapped,
            unmapped_asset=config.unmapped_asset,
            enterprise=enterprise,
            site=site,
        )
        self.state = SparkplugHostState(policy, sink.series_index)
        self.runtime = SourceRuntime(
            self.stats, sink, log, enterprise=enterprise, site=site, gateway_id=gateway_id
        )
        self._backoff = Backoff(config.broker.reconnect_min_s, config.broker.reconnect_max_s)
        self._was_connected = False
        self.sessions = 0
        subs = [(f"{NAMESPACE}/{config.group_id}/#", 1)]
        will = None
        if config.host_id:
            will = (
                f"{NAMESPACE}/STATE/{config.host_id}",
                orjson.dumps({"online": False, "timestamp": int(time.time() * 1000)}),
                1,
                True,
            )
        client_id = config.broker.client_id or f"zhizao-{gateway_id}-{config.name}"
        self.connection = MqttConnection(
            config.broker,
            client_id,
            subscriptions=subs,
            manual_ack=True,
            will=will,
            on_connected=self._announce,
        )
        # samples being assembled for the next emit
        self._series: list[int] = []
        self._ts: list[int] = []
        self._values: list[Any] = []
        self._quality: list[int] = []

    # ------------------------------------------------------------------ run loop

    def _announce(self, conn: MqttConnection) -> None:
        if self.config.host_id:
            conn.publish(
                f"{NAMESPACE}/STATE/{self.config.host_id}",
                orjson.dumps({"online": True, "timestamp": int(time.time() * 1000)}),
                qos=1,
                retain=True,
            )

    def _session_ended(self) -> None:
        # samples of a failed store are dropped: their messages were not acknowledged
        self._series, self._ts, self._values, self._quality = [], [], [], []

    async def _process(self, msgs: list[IncomingMessage]) -> None:
        for msg in msgs:
            self.handle(msg.topic, msg.payload, msg.arrival_ns)
        await self._flush()
        # stored (or refused by the outbox and counted): only now may the broker forget
        for msg in msgs:
            self.connection.ack(msg.mid, msg.qos)

    async def _flush(self) -> None:
        """Store the assembled samples; refusals of the outbox are counted by reason
        (``outbox_full``, ``disk_full``) by the runtime, any other failure raises."""
        if not self._series:
            return
        # take the buffers first: whatever happens below, a sample is never flushed twice
        series, ts, values, quality = self._series, self._ts, self._values, self._quality
        self._series, self._ts, self._values, self._quality = [], [], [], []
        vals = np.empty(len(values), dtype=object)
        vals[:] = values
        await self.runtime.emit(Batch.build(self.sink.table, series, ts, vals, quality))

    # ------------------------------------------------------------------ protocol

    @property
    def rebirth_holdoff_s(self) -> float:
        return self.state.rebirth_holdoff_s

    @rebirth_holdoff_s.setter
    def rebirth_holdoff_s(self, value: float) -> None:
        self.state.rebirth_holdoff_s = value

    def _count(self, reason: str, detail: str, n: int = 1) -> None:
        self.stats.reject(reason, n)
        if reason not in self._logged:
            self._logged.add(reason)
            log.warning(
                "Sparkplug host %s: %s (%s); further ones are only counted",
                self.name,
                reason,
                detail,
            )

    def handle(self, topic_text: str, payload: bytes, arrival_ns: int) -> None:
        """Process one message (synchronous, no I/O except rebirth requests)."""
        target = rebirth_target(topic_text)
        if target is not None and is_rebirth_request(payload):
            # another host's request (or our own echo): it starts the node's hold-off
            self.state.observe_rebirth(*target, time.monotonic())
        for issue in self.state.handle(topic_text, payload, arrival_ns):
            self._count(issue.reason, issue.detail, issue.count)
        series, ts, values, quality = self.state.take()
        self._series += series
        self._ts += ts
        self._values += values
        self._quality += quality
        for group, node in self.state.rebirths_due(time.monotonic()).send:
            topic, cmd = rebirth_command(group, node, int(time.time() * 1000))
            self.connection.publish(topic, cmd, qos=0)
            self.rebirth_requests += 1
