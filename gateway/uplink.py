"""Uplinks drain the outbox: ``MqttUplink`` (frames, QoS 1) and ``InfluxUplink`` (direct write).

Both take chunks oldest first (the *live* lane first, then the *backlog* lane at
``replay_samples_per_s``, so a long outage never starves live data), and delete them from the
outbox only when the far side confirmed them: for MQTT, ingest's end-to-end confirmation that
the frame is stored (``confirmation: ingest``, the default; the broker's PUBACK only marks it
sent) or the PUBACK itself (``confirmation: broker``); a successful ``/write`` for InfluxDB. Anything unconfirmed is released and sent again later:
delivery is at-least-once, and InfluxDB overwrites an identical point (series + timestamp), so it
is effectively once.

MQTT flow control: every ``publish`` return code is checked. paho does not raise when its queue
is full (``MQTT_ERR_QUEUE_SIZE``) or the connection is down (``MQTT_ERR_NO_CONN``); both put the
chunks back and wait. At most ``max_inflight_frames`` frames are unacknowledged at a time, and a
frame without PUBACK after ``ack_timeout_s`` is released and re-sent.

Off the event loop: outbox reads (``take``), acknowledgements and expiry run in a worker thread
(``asyncio.to_thread``), and frame sequence numbers come from blocks reserved in the outbox
(``SequenceBlocks``: one commit per ``SEQ_BLOCK`` frames instead of an fsync per frame). A clean
stop gives the unused end of the block back; after a crash the next process starts after the
block, so numbers are skipped (ingest counts them in ``zhizao_ingest_frame_gaps``), never repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from paho.mqtt.enums import MQTTErrorCode

from gateway.config import GatewayIdentityConfig, InfluxUplinkConfig, MqttUplinkConfig
from gateway.mqtt_client import IncomingMessage, MqttConnection
from gateway.outbox import OutboxChunk, SqliteOutbox
from gateway.sources.base import Backoff
from ingest.confirm import confirm_topic, decode_confirmation
from ingest.frames import FrameCodec, GatewayFrame, frame_topic
from zhizao.errors import DecodeError, PartialWriteError, SinkError
from zhizao.model import Batch

if TYPE_CHECKING:
    from ingest.influx import InfluxWriter

__all__ = ["SEQ_BLOCK", "InfluxUplink", "MqttUplink", "SequenceBlocks", "UplinkStats", "take_next"]

log = logging.getLogger(__name__)
_IDLE_S = 0.05
_EXPIRE_EVERY_S = 10.0
SEQ_BLOCK = 1000  # frame sequence numbers reserved per commit


@dataclass
class UplinkStats:
    kind: str
    connected: bool = False
    frames_sent: int = 0
    samples_sent: int = 0
    frames_acked: int = 0  # frames whose samples left the outbox (confirmed)
    samples_acked: int = 0
    retries: int = 0  # chunks put back for a later attempt (no ack in time, refused, errors)
    publish_errors: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)  # samples the store refused for good
    inflight_frames: int = 0  # awaiting the broker's PUBACK
    last_ack_ns: int = 0
    confirmation: str = "broker"  # what deletes a frame from the outbox: broker PUBACK / ingest
    unconfirmed_frames: int = 0  # PUBACK received, ingest's confirmation not yet
    unconfirmed_samples: int = 0
    confirm_timeouts: int = 0  # frames re-sent because no confirmation came in time
    confirmations: int = 0  # confirmation messages of this gateway's session received
    last_error: str = ""

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
            "confirmation": self.confirmation,
            "unconfirmed_frames": self.unconfirmed_frames,
            "unconfirmed_samples": self.unconfirmed_samples,
            "confirm_timeouts": self.confirm_timeouts,
            "confirmations": self.confirmations,
            "last_error": self.last_error,
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


class SequenceBlocks:
    """Frame sequence numbers from blocks reserved in the outbox (see the module docstring).

    Blocking (SQLite): called from the uplink's worker thread, one caller at a time."""

    def __init__(self, outbox: SqliteOutbox, block: int = SEQ_BLOCK, name: str = "frame_seq"):
        self.outbox = outbox
        self.block = block
        self.name = name
        self._next = 1
        self._last = 0  # end of the current block (0: none reserved yet)
        self.reservations = 0

    def next(self) -> int:
        """The next number; reserves a new block first when the current one is used up.
        Raises ``sqlite3.Error`` when that reservation cannot be stored."""
        if self._next > self._last:
            self._next, self._last = self.outbox.reserve_seq(self.block, self.name)
            self.reservations += 1
        seq = self._next
        self._next += 1
        return seq

    def give_back(self) -> None:
        """A clean stop: the next process continues right after the last number used."""
        if (
            self._last
            and self._next <= self._last
            and self.outbox.unreserve_seq(self._last, self._next - 1, self.name)
        ):
            self._last = self._next - 1


@dataclass(frozen=True, slots=True)
class _Frame:
    chunk_ids: list[int]
    samples: int
    seq: int
    payload: bytes


@dataclass
class _Inflight:
    chunk_ids: list[int]
    samples: int
    sent_at: float
    seq: int = 0


class MqttUplink:
    """Gateway frames to the central broker, ``zhizao/v1/<site>/<gateway-id>/frames``, QoS 1.

    With ``confirmation: ingest`` (the default) a frame has three states: *in flight* (published,
    no PUBACK yet), *sent* (PUBACK: the broker has it) and *confirmed* (ingest stored it and said
    so on ``<prefix>/<site>/<gateway-id>/confirm``, see ``ingest.confirm``). Only confirmed
    frames leave the outbox. A sent frame without confirmation after ``confirm_timeout_s`` is
    released and sent again in a new frame (ingest stores identical points once: InfluxDB
    overwrites them), at most ``max_unconfirmed_frames`` frames are out at a time, and health
    shows the sent-but-not-confirmed frames and samples.
    """

    def __init__(
        self, config: MqttUplinkConfig, outbox: SqliteOutbox, identity: GatewayIdentityConfig
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.identity = identity
        self.topic = frame_topic(identity.site, identity.id, config.topic_prefix)
        self.confirm_topic = confirm_topic(identity.site, identity.id, config.topic_prefix)
        self.end_to_end = config.confirmation == "ingest"
        self.stats = UplinkStats("mqtt", confirmation=config.confirmation)
        client_id = config.broker.client_id or f"zhizao-{identity.id}-uplink"
        self.connection = MqttConnection(
            config.broker,
            client_id,
            subscriptions=[(self.confirm_topic, 1)] if self.end_to_end else [],
            max_queued_messages=config.max_inflight_frames,
        )
        self.seqs = SequenceBlocks(outbox)
        self._inflight: dict[int, _Inflight] = {}  # mid -> frame awaiting PUBACK
        self._sent: dict[int, _Inflight] = {}  # seq -> frame awaiting ingest's confirmation
        self._early: set[int] = set()  # seqs confirmed before their PUBACK was seen
        self._acks: list[int] = []
        self._wake = asyncio.Event()
        self._logged_rc: set[str] = set()
        self._confirm_queue: asyncio.Queue[IncomingMessage] = asyncio.Queue()
        self._unlogged_timeouts = 0
        self._next_timeout_log = 0.0

    def _on_puback(self, mid: int) -> None:
        # paho's network thread, holding paho's own lock: only hand the mid over
        self._loop.call_soon_threadsafe(self._ack_arrived, mid)

    def _ack_arrived(self, mid: int) -> None:
        self._acks.append(mid)
        self._wake.set()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.connection.start(self._loop, self._confirm_queue, on_publish=self._on_puback)
        last_expire = time.monotonic()
        try:
            while True:
                self.stats.connected = self.connection.connected.is_set()
                if not self.stats.connected and self.connection.last_error:
                    self.stats.last_error = self.connection.last_error
                await self._settle_acks()
                await self._settle_confirmations()
                self._release_overdue()
                if time.monotonic() - last_expire > _EXPIRE_EVERY_S:
                    await asyncio.to_thread(self.outbox.expire)
                    last_expire = time.monotonic()
                if (
                    not self.stats.connected
                    or len(self._inflight) >= self.config.max_inflight_frames
                    or len(self._inflight) + len(self._sent) >= self.config.max_unconfirmed_frames
                ):
                    await self._nap()
                    continue
                # SQLite reads, the sequence block and the encoding stay off the event loop
                frame = await asyncio.to_thread(self._next_frame)
                if frame is None or not self._publish(frame):
                    await self._nap()
        finally:
            # every chunk this uplink holds, including one taken by a worker thread whose
            # result a cancellation discarded (the uplink is the outbox's only reader)
            self.outbox.release_all()
            self._inflight.clear()
            self._sent.clear()
            self.connection.stop()
            with contextlib.suppress(sqlite3.Error):  # a full disk: the numbers are skipped
                self.seqs.give_back()

    async def _nap(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), _IDLE_S)

    def _next_frame(self) -> _Frame | None:
        """The next frame from the outbox, numbered and encoded (worker thread), or None."""
        chunks = take_next(self.outbox, self.config.max_samples_per_frame)
        if not chunks:
            return None
        ids = [c.chunk_id for c in chunks]
        try:
            seq = self.seqs.next()
        except sqlite3.Error as exc:
            # the sequence number cannot be stored (a full disk): never send an unstored one
            self.outbox.release(ids)
            self.stats.publish_errors["outbox_write_failed"] += 1
            self.stats.last_error = f"frame sequence number not stored: {exc}"
            return None
        try:
            batch = Batch.concat([c.batch for c in chunks])
            frame = GatewayFrame.from_table(
                self.identity.id,
                seq,
                self.outbox.table,
                batch,
                time.time_ns(),
                session=self.outbox.session,
            )
            return _Frame(ids, len(batch), seq, FrameCodec.encode(frame))
        except BaseException:
            self.outbox.release(ids)
            raise

    def _publish(self, frame: _Frame) -> bool:
        ids, payload, seq = frame.chunk_ids, frame.payload, frame.seq
        rc, mid = self.connection.publish(self.topic, payload, qos=1)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.outbox.release(ids)
            self.stats.retries += len(ids)
            name = MQTTErrorCode(rc).name
            self.stats.publish_errors[name] += 1
            if name not in self._logged_rc:
                self._logged_rc.add(name)
                log.warning("uplink publish refused by the MQTT client (%s); will retry", name)
            return False
        self._inflight[mid] = _Inflight(ids, frame.samples, time.monotonic(), seq)
        self.stats.frames_sent += 1
        self.stats.samples_sent += frame.samples
        self.stats.inflight_frames = len(self._inflight)
        return True

    async def _confirmed(self, frames: list[_Inflight]) -> None:
        """Delete confirmed frames' chunks from the outbox."""
        if not frames:
            return
        ids = [cid for f in frames for cid in f.chunk_ids]
        await asyncio.to_thread(self.outbox.ack, ids)
        self.stats.frames_acked += len(frames)
        self.stats.samples_acked += sum(f.samples for f in frames)
        self.stats.last_ack_ns = time.time_ns()

    def _count_unconfirmed(self) -> None:
        self.stats.inflight_frames = len(self._inflight)
        self.stats.unconfirmed_frames = len(self._sent)
        self.stats.unconfirmed_samples = sum(f.samples for f in self._sent.values())

    async def _settle_acks(self) -> None:
        if not self._acks:
            return
        mids, self._acks = self._acks, []
        done = [self._inflight.pop(m) for m in mids if m in self._inflight]
        if not done:
            self._count_unconfirmed()
            return
        if not self.end_to_end:
            self._count_unconfirmed()
            await self._confirmed(done)
            return
        now = time.monotonic()
        confirmed = []
        for f in done:
            if f.seq in self._early:
                self._early.discard(f.seq)
                confirmed.append(f)
            else:
                f.sent_at = now  # the confirmation timeout runs from the broker's PUBACK
                self._sent[f.seq] = f
        self._count_unconfirmed()
        await self._confirmed(confirmed)

    async def _settle_confirmations(self) -> None:
        confirmed: list[_Inflight] = []
        while not self._confirm_queue.empty():
            msg = self._confirm_queue.get_nowait()
            try:
                conf = decode_confirmation(msg.payload)
            except DecodeError as exc:
                self.stats.publish_errors["bad_confirmation"] += 1
                log.warning("uplink: unreadable confirmation on %s ignored: %s", msg.topic, exc)
                continue
            if conf.gateway != self.identity.id or conf.session != self.outbox.session:
                continue  # another session's (an earlier install's retained message)
            self.stats.confirmations += 1
            for seq in [s for s in self._sent if conf.covers(s)]:
                confirmed.append(self._sent.pop(seq))
            pending = {f.seq for f in self._inflight.values()}
            for a, b in conf.ranges:
                if b - a < 4096:
                    self._early.update(s for s in range(a, b + 1) if s in pending)
        if confirmed:
            self._count_unconfirmed()
            await self._confirmed(confirmed)

    def _release_overdue(self) -> None:
        now = time.monotonic()
        overdue = [
            m for m, f in self._inflight.items() if now - f.sent_at > self.config.ack_timeout_s
        ]
        for mid in overdue:
            frame = self._inflight.pop(mid)
            self._early.discard(frame.seq)
            # a late PUBACK for this mid is ignored; the chunks go out again (at-least-once)
            self.outbox.release(frame.chunk_ids)
            self.stats.retries += len(frame.chunk_ids)
        late = [s for s, f in self._sent.items() if now - f.sent_at > self.config.confirm_timeout_s]
        for seq in late:
            frame = self._sent.pop(seq)
            self.outbox.release(frame.chunk_ids)
            self.stats.retries += len(frame.chunk_ids)
            self.stats.confirm_timeouts += 1
        self._unlogged_timeouts += len(late)
        if self._unlogged_timeouts and now >= self._next_timeout_log:
            # at most once a minute, with the count since the last time
            self._next_timeout_log = now + 60.0
            log.warning(
                "uplink: %d frame(s) accepted by the broker were not confirmed by ingest within "
                "%.0f s; sending them again (is ingest running and subscribed to %s?)",
                self._unlogged_timeouts,
                self.config.confirm_timeout_s,
                self.topic,
            )
            self._unlogged_timeouts = 0
        if overdue or late:
            self._count_unconfirmed()


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
        self._warned_413 = False

    async def run(self) -> None:
        from ingest.influx import InfluxWriter

        last_expire = time.monotonic()
        async with InfluxWriter(self.influx) as writer:
            while True:
                if time.monotonic() - last_expire > _EXPIRE_EVERY_S:
                    await asyncio.to_thread(self.outbox.expire)
                    last_expire = time.monotonic()
                chunks = await asyncio.to_thread(
                    take_next, self.outbox, self.config.max_samples_per_write
                )
                if not chunks:
                    await asyncio.sleep(_IDLE_S)
                    continue
                ids = [c.chunk_id for c in chunks]
                batch = Batch.concat([c.batch for c in chunks])
                try:
                    await self._write(writer, batch)
                except SinkError as exc:
                    self.outbox.release(ids)
                    self.stats.retries += len(ids)
                    self.stats.connected = False
                    self.stats.publish_errors[type(exc).__name__] += 1
                    await asyncio.sleep(exc.retry_after_s or self._backoff.next_delay_s())
                    continue
                self._backoff.reset()
                self.stats.connected = True
                await asyncio.to_thread(self.outbox.ack, ids)
                self.stats.frames_sent += 1
                self.stats.frames_acked += 1
                self.stats.samples_sent += len(batch)
                self.stats.samples_acked += len(batch)
                self.stats.last_ack_ns = time.time_ns()

    async def _write(self, writer: InfluxWriter, batch: Batch) -> None:
        """Write ``batch``; a 413 is cut down to fit like ingest does (``write_fitting``), and a
        single sample InfluxDB still refuses as too large is dropped and counted
        (``influx_too_large``): retrying it could never succeed and would hold every sample
        behind it. Other errors propagate (the batch is released and retried)."""
        from ingest.influx.fit import write_fitting

        whole = len(batch)

        async def write(rows: NDArray[np.int64]) -> None:
            part = batch if len(rows) == whole else batch.take(rows)
            try:
                report = await writer.write_batch(self.outbox.table, part)
            except PartialWriteError as exc:
                # InfluxDB refused some lines for good: retrying cannot help; count them
                self.stats.rejected["partial_write"] += len(exc.rejected)
                log.warning("InfluxDB refused %d lines for good: %s", len(exc.rejected), exc)
                return
            for reason, count in report.rejected.items():
                self.stats.rejected[reason] += count

        def refused(rows: NDArray[np.int64], exc: SinkError) -> None:
            self.stats.rejected["influx_too_large"] += len(rows)
            log.warning(
                "InfluxDB refuses a single sample's request as too large (HTTP 413), dropped and "
                "counted as influx_too_large: %s",
                exc,
            )

        splits = await write_fitting(write, np.arange(whole, dtype=np.int64), refused)
        if splits:
            self.stats.publish_errors["http_413"] += splits
            if not self._warned_413:
                self._warned_413 = True
                log.warning(
                    "InfluxDB refused a write of %d samples as too large (HTTP 413); writing in "
                    "smaller parts (lower uplink.influx.max_bytes_per_request or "
                    "max_samples_per_write to match the server's max-body-size)",
                    whole,
                )
