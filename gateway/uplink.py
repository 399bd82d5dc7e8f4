"""Uplinks drain the outbox: ``MqttUplink`` (frames, QoS 1) and ``InfluxUplink`` (direct write).

Both take chunks oldest first (the *live* lane first, then the *backlog* lane at
``replay_samples_per_s``, so a long outage never starves live data), and delete them from the
outbox only when the far side confirmed them: PUBACK of the frame's message id for MQTT, a
successful ``/write`` for InfluxDB. Anything unconfirmed is released and sent again later:
delivery is at-least-once, and InfluxDB overwrites an identical point (series + timestamp), so it
is effectively once.

MQTT flow control: every ``publish`` return code is checked. paho does not raise when its queue
is full (``MQTT_ERR_QUEUE_SIZE``) or the connection is down (``MQTT_ERR_NO_CONN``); both put the
chunks back and wait. At most ``max_inflight_frames`` frames are unacknowledged at a time, and a
frame without PUBACK after ``ack_timeout_s`` is released and re-sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from paho.mqtt.enums import MQTTErrorCode

from gateway.config import GatewayIdentityConfig, InfluxUplinkConfig, MqttUplinkConfig
from gateway.mqtt_client import MqttConnection
from gateway.outbox import OutboxChunk, SqliteOutbox
from gateway.sources.base import Backoff
from ingest.frames import FrameCodec, GatewayFrame, frame_topic
from zhizao.errors import PartialWriteError, SinkError
from zhizao.model import Batch

__all__ = ["InfluxUplink", "MqttUplink", "UplinkStats", "take_next"]

log = logging.getLogger(__name__)
_IDLE_S = 0.05
_EXPIRE_EVERY_S = 10.0


@dataclass
class UplinkStats:
    kind: str
    connected: bool = False
    frames_sent: int = 0
    samples_sent: int = 0
    frames_acked: int = 0
    samples_acked: int = 0
    retries: int = 0  # chunks put back for a later attempt (no ack in time, refused, errors)
    publish_errors: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)  # samples the store refused for good
    inflight_frames: int = 0
    last_ack_ns: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "connected": self.connected,
            "frames_sent": self.frames_sent,
            "samples_sent": self.samples_sent,
            "frames_acked": self.frames_acked,
            "samples_acked": self.samples_acked,
            "retries": self.retries,
            "publish_errors": dict(self.publish_errors),
            "rejected": dict(self.rejected),
            "inflight_frames": self.inflight_frames,
            "last_ack_ns": self.last_ack_ns,
        }


def take_next(outbox: SqliteOutbox, max_samples: int) -> list[OutboxChunk]:
    """Live chunks first; backlog only within the replay budget (token bucket)."""
    chunks = outbox.take(max_samples, lane="live")
    if chunks:
        return chunks
    budget = outbox.replay_budget()
    if budget <= 0:
        return []
    chunks = outbox.take(min(budget, max_samples), lane="backlog")
    outbox.spend_replay(sum(len(c.batch) for c in chunks))
    return chunks


@dataclass
class _Inflight:
    chunk_ids: list[int]
    samples: int
    sent_at: float


class MqttUplink:
    """Gateway frames to the central broker, ``zhizao/v1/<site>/<gateway-id>/frames``, QoS 1."""

    def __init__(
        self, config: MqttUplinkConfig, outbox: SqliteOutbox, identity: GatewayIdentityConfig
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.identity = identity
        self.topic = frame_topic(identity.site, identity.id, config.topic_prefix)
        self.stats = UplinkStats("mqtt")
        client_id = config.broker.client_id or f"zhizao-{identity.id}-uplink"
        self.connection = MqttConnection(
            config.broker,
            client_id,
            max_queued_messages=config.max_inflight_frames,
        )
        self._inflight: dict[int, _Inflight] = {}
        self._acks: list[int] = []
        self._wake = asyncio.Event()
        self._logged_rc: set[str] = set()

    def _on_puback(self, mid: int) -> None:
        # paho's network thread, holding paho's own lock: only hand the mid over
        self._loop.call_soon_threadsafe(self._ack_arrived, mid)

    def _ack_arrived(self, mid: int) -> None:
        self._acks.append(mid)
        self._wake.set()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.connection.start(self._loop, None, on_publish=self._on_puback)
        last_expire = time.monotonic()
        try:
            while True:
                self.stats.connected = self.connection.connected.is_set()
                await self._settle_acks()
                self._release_overdue()
                if time.monotonic() - last_expire > _EXPIRE_EVERY_S:
                    await asyncio.to_thread(self.outbox.expire)
                    last_expire = time.monotonic()
                if (
                    not self.stats.connected
                    or len(self._inflight) >= self.config.max_inflight_frames
                ):
                    await self._nap()
                    continue
                chunks = take_next(self.outbox, self.config.max_samples_per_frame)
                if not chunks:
                    await self._nap()
                    continue
                self._publish(chunks)
        finally:
            self.outbox.release([cid for f in self._inflight.values() for cid in f.chunk_ids])
            self._inflight.clear()
            self.connection.stop()

    async def _nap(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), _IDLE_S)

    def _publish(self, chunks: list[OutboxChunk]) -> None:
        ids = [c.chunk_id for c in chunks]
        batch = Batch.concat([c.batch for c in chunks])
        frame = GatewayFrame.from_table(
            self.identity.id, self.outbox.next_seq(), self.outbox.table, batch, time.time_ns()
        )
        payload = FrameCodec.encode(frame)
        rc, mid = self.connection.publish(self.topic, payload, qos=1)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.outbox.release(ids)
            self.stats.retries += len(ids)
            name = MQTTErrorCode(rc).name
            self.stats.publish_errors[name] += 1
            if name not in self._logged_rc:
                self._logged_rc.add(name)
                log.warning("uplink publish refused by the MQTT client (%s); will retry", name)
            return
        self._inflight[mid] = _Inflight(ids, len(batch), time.monotonic())
        self.stats.frames_sent += 1
        self.stats.samples_sent += len(batch)
        self.stats.inflight_frames = len(self._inflight)

    async def _settle_acks(self) -> None:
        if not self._acks:
            return
        mids, self._acks = self._acks, []
        done = [self._inflight.pop(m) for m in mids if m in self._inflight]
        self.stats.inflight_frames = len(self._inflight)
        if not done:
            return
        ids = [cid for f in done for cid in f.chunk_ids]
        await asyncio.to_thread(self.outbox.ack, ids)
        self.stats.frames_acked += len(done)
        self.stats.samples_acked += sum(f.samples for f in done)
        self.stats.last_ack_ns = time.time_ns()

    def _release_overdue(self) -> None:
        now = time.monotonic()
        overdue = [
            m for m, f in self._inflight.items() if now - f.sent_at > self.config.ack_timeout_s
        ]
        for mid in overdue:
            frame = self._inflight.pop(mid)
            # a late PUBACK for this mid is ignored; the chunks go out again (at-least-once)
            self.outbox.release(frame.chunk_ids)
            self.stats.retries += len(frame.chunk_ids)
        if overdue:
            self.stats.inflight_frames = len(self._inflight)


class InfluxUplink:
    """Direct InfluxDB writes through ``ingest.influx.InfluxWriter`` (single-box sites)."""

    def __init__(
        self, config: InfluxUplinkConfig, outbox: SqliteOutbox, identity: GatewayIdentityConfig
    ) -> None:
        from ingest.influx import InfluxConfig

        self.config = config
        self.influx = InfluxConfig.model_validate(config.influx)
        self.outbox = outbox
        self.stats = UplinkStats("influx")
        self._backoff = Backoff(self.influx.backoff_initial_s, self.influx.backoff_max_s)

    async def run(self) -> None:
        from ingest.influx import InfluxWriter

        last_expire = time.monotonic()
        async with InfluxWriter(self.influx) as writer:
            while True:
                if time.monotonic() - last_expire > _EXPIRE_EVERY_S:
                    await asyncio.to_thread(self.outbox.expire)
                    last_expire = time.monotonic()
                chunks = take_next(self.outbox, self.config.max_samples_per_write)
                if not chunks:
                    await asyncio.sleep(_IDLE_S)
                    continue
                ids = [c.chunk_id for c in chunks]
                batch = Batch.concat([c.batch for c in chunks])
                try:
                    report = await writer.write_batch(self.outbox.table, batch)
                except PartialWriteError as exc:
                    # InfluxDB refused some lines for good: retrying cannot help; count them
                    self.stats.rejected["partial_write"] += len(exc.rejected)
                    log.warning("InfluxDB refused %d lines for good: %s", len(exc.rejected), exc)
                except SinkError as exc:
                    self.outbox.release(ids)
                    self.stats.retries += len(ids)
                    self.stats.connected = False
                    self.stats.publish_errors[type(exc).__name__] += 1
                    await asyncio.sleep(exc.retry_after_s or self._backoff.next_delay_s())
                    continue
                else:
                    for reason, count in report.rejected.items():
                        self.stats.rejected[reason] += count
                self._backoff.reset()
                self.stats.connected = True
                await asyncio.to_thread(self.outbox.ack, ids)
                self.stats.frames_sent += 1
                self.stats.frames_acked += 1
                self.stats.samples_sent += len(batch)
                self.stats.samples_acked += len(batch)
                self.stats.last_ack_ns = time.time_ns()
