"""The ingest service: MQTT messages in, InfluxDB points out, acknowledged only once stored.

``IngestPipeline`` is the synchronous, vectorized core (decode -> validate -> quarantine ->
counter increments) over one growing ``SeriesTable``; tests and benchmarks drive it directly.
``IngestService`` wraps it with the MQTT consumer, the InfluxDB writer, batching by size or age,
backpressure, metrics and ``/healthz``:

    paho thread --on_message--> inbox (bounded by the broker's Receive Maximum)
        --flush (points or age)--> prepare (pipeline) --queue (pipeline_depth)--> write (retried
        until stored) --> quarantine fsync --> PUBACK, in arrival order

A batch is never dropped: a failed write is retried until InfluxDB takes it. Meanwhile the
prepared-batch queue fills, preparation stops, the inbox fills to Receive Maximum and the broker
stops sending: memory stays bounded and unacknowledged messages wait in the broker's session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ingest.codecs import build_codecs
from ingest.config import IngestConfig
from ingest.confirm import confirm_topic, encode_confirmation
from ingest.consumer import InMessage, MqttConsumer
from ingest.counters import CounterTracker
from ingest.frames import peek_sample_count
from ingest.influx import InfluxQLReader, InfluxWriter
from ingest.influx.writer import WriterStats
from ingest.inputs import Settled
from ingest.lineprotocol import DEFAULT_KERNEL, REJECT_REASONS
from ingest.metrics import HealthServer, IngestMetrics
from ingest.quality_markers import QualityMarkers
from ingest.quarantine import QuarantineStore
from ingest.sparkplug_codec import SparkplugCodec
from ingest.validation import SAMPLE_REASONS, FrameDeduplicator, SampleValidator
from zhizao.errors import ConfigError, PartialWriteError, QueryError, SinkError, ValidationError
from zhizao.influxql import ident
from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable
from zhizao.retry import Backoff, Episode
from zhizao.service import run_until_signalled
from zhizao.sparkplug import NAMESPACE
from zhizao.sparkplug_host import is_rebirth_request, rebirth_command, rebirth_target

__all__ = ["IngestPipeline", "IngestService", "Prepared"]

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """One batch ready for InfluxDB: accepted samples plus counter increments."""

    table: SeriesTable
    batch: Batch
    message_of: NDArray[np.int64]  # input position of each sample's message
    topics: Sequence[str]
    frames: list[tuple[str, int]] = field(default_factory=list)  # (gateway, seq) to remember
    frame_sessions: list[str] = field(default_factory=list)  # the session of each of ``frames``
    # (site, gateway, session, seq) of every frame to confirm once stored: new and duplicates
    confirm: list[tuple[str, str, str, int]] = field(default_factory=list)
    samples_in: dict[str, int] = field(default_factory=dict)  # by codec
    messages_in: dict[str, int] = field(default_factory=dict)  # by codec
    accepted: int = 0  # raw samples accepted (increments not included)
    newest_frame_ns: int = 0  # creation time of the newest frame (0: none, or not sent)
    markers: int = 0  # data-quality markers added (at the end of ``batch``)


class IngestPipeline:
    """Decode, validate, quarantine and add counter increments; no I/O except the quarantine."""

    def __init__(
        self,
        config: IngestConfig,
        quarantine: QuarantineStore,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self.config = config
        self.table = SeriesTable()
        self.quarantine = quarantine
        self.metrics = metrics
        self.codecs = build_codecs(config, self.table)
        self.json = self.codecs.get("json")
        sp = self.codecs.get("sparkplug")
        self.sparkplug = sp if isinstance(sp, SparkplugCodec) else None  # its rebirth requests
        self.markers = QualityMarkers(self.table) if config.quality_markers else None
        self.validator = SampleValidator(config.validation)
        self.dedup = FrameDeduplicator(config.validation.duplicate_window)
        self.counters = CounterTracker(config.counters)
        self.frame_prefix = config.mqtt.topic_prefix
        self._gateway_ids: dict[tuple[str, str], int] = {}

    def subscriptions(self) -> list[str]:
        group = self.config.mqtt.group

        def shared(topic: str) -> str:
            return f"$share/{group}/{topic}" if group else topic

        return [t for codec in self.codecs.values() for t in codec.subscriptions(shared)]

    def presence_prefix(self) -> str:
        """Topic prefix of the group members' presence ("" without Sparkplug or a group)."""
        group = self.config.mqtt.group
        if self.sparkplug is None or not group:
            return ""
        return f"{self.frame_prefix}/ingest/{group}/members/"

    def control_subscriptions(self) -> list[str]:
        """Subscribed at QoS 0 without sharing: rebirth requests of every host, members."""
        if self.sparkplug is None:
            return []
        subs = [f"{NAMESPACE}/{self.sparkplug.config.group_filter}/NCMD/+"]
        if self.presence_prefix():
            subs.append(self.presence_prefix() + "+")
            subs.append(self.presence_prefix().replace("/members/", "/rebirth/") + "#")
        return subs

    def codec_of(self, topic: str) -> str | None:
        """The name of the first configured codec that recognises ``topic``."""
        for name, codec in self.codecs.items():
            if codec.matches(topic):
                return name
        return None

    def reject_message(self, topic: str, payload: bytes, reason: str, message: str) -> None:
        """Quarantine a whole message (``InputContext``)."""
        self.quarantine.add_payload(topic, payload, reason, message)
        self.count_rejected(reason)

    def count_rejected(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.messages_rejected.labels(reason).inc()

    def stream_of(self, gateway: str, session: str) -> int:
        """The counter stream of a gateway session (its frames are numbered in order)."""
        return self._gateway_ids.setdefault((gateway, session), len(self._gateway_ids))

    def prepare(
        self,
        topics: Sequence[str],
        payloads: Sequence[bytes],
        now_ns: int | None = None,
        content_types: Sequence[str | None] | None = None,
    ) -> Prepared:
        """One batch from many messages; rejects go to the quarantine (not yet flushed).

        ``content_types``: the MQTT 5 Content Type of each message, if any. A frame declaring
        another type (a future format version) is quarantined, not guessed at.
        """
        now_ns = time.time_ns() if now_ns is None else now_ns
        max_bytes = self.config.batch.max_message_bytes
        groups: dict[str, list[int]] = {name: [] for name in self.codecs}
        for pos, (topic, payload) in enumerate(zip(topics, payloads, strict=True)):
            name = self.codec_of(topic)
            if name is None:
                self.reject_message(
                    topic, payload, "unknown_topic", "no codec is configured for this topic"
                )
                continue
            refusal = self.codecs[name].admit(
                topic, content_types[pos] if content_types is not None else None
            )
            if refusal is not None:
                self.reject_message(topic, payload, *refusal)
            elif len(payload) > max_bytes:
                self.reject_message(
                    topic,
                    payload,
                    "too_large",
                    f"message of {len(payload)} bytes exceeds max_message_bytes {max_bytes}",
                )
            else:
                groups[name].append(pos)
        prep = Prepared(self.table, Batch.empty(), np.empty(0, np.int64), topics)
        parts: list[tuple[Settled, NDArray[np.int64], list[SeriesKey]]] = []
        for name, positions in groups.items():
            if not positions:
                continue
            codec = self.codecs[name]
            sub_topics = [topics[i] for i in positions]
            sub_payloads = [payloads[i] for i in positions]
            decoded = codec.decode_many(sub_topics, sub_payloads, now_ns)
            prep.messages_in[name] = len(positions)
            for local, err in decoded.errors:
                self.reject_message(sub_topics[local], sub_payloads[local], err.reason, str(err))
            settled = codec.settle(decoded, sub_topics, sub_payloads, self)
            prep.frames += [(gw, seq) for gw, seq, _ in settled.frames]
            prep.frame_sessions += [sess for *_, sess in settled.frames]
            prep.confirm += settled.confirm
            prep.newest_frame_ns = max(prep.newest_frame_ns, settled.newest_frame_ns)
            prep.samples_in[name] = len(settled.batch)
            pos_arr = np.asarray(positions, np.int64)
            parts.append((settled, pos_arr[settled.frame_index], decoded.refused))
        if not parts:
            return prep
        batch, message_of, declared = _concat_parts(parts)
        reason = self.validator.validate(self.table, batch, now_ns, declared)
        rejected = np.flatnonzero(reason)
        if len(rejected):
            self._quarantine_samples(batch, reason, rejected, message_of, topics, parts, declared)
        ok = reason == 0
        if len(rejected):
            accepted = batch.take(ok)
            message_of = message_of[ok]
        else:  # the common case: no copy
            accepted = batch
        prep.accepted = len(accepted)
        marks = None
        if self.markers is not None:
            marks, cause = self.markers.transitions(accepted, now_ns)
            marks_of = message_of[cause]
        if self.counters.specs:
            gw_col = np.concatenate([p.stream for p, _, _ in parts])
            seq_col = np.concatenate([p.seq for p, _, _ in parts])
            if len(rejected):
                gw_col, seq_col = gw_col[ok], seq_col[ok]
            accepted, rows = self.counters.with_increments(self.table, accepted, gw_col, seq_col)
            message_of = message_of[rows]
        if marks is not None and len(marks):
            accepted = Batch.concat([accepted, marks])
            message_of = np.concatenate((message_of, marks_of))
            prep.markers = len(marks)
        prep.batch = accepted
        prep.message_of = message_of
        if self.metrics is not None:
            for name, n in prep.messages_in.items():
                self.metrics.messages_in.labels(name).inc(n)
            for name, n in prep.samples_in.items():
                self.metrics.samples_in.labels(name).inc(n)
            if prep.markers:
                self.metrics.quality_markers.inc(prep.markers)
            self.metrics.counter_out_of_order.set(self.counters.out_of_order)
            self.metrics.counter_unknown_previous.set(self.counters.unknown_previous)
        return prep

    def prepare_safe(
        self,
        topics: Sequence[str],
        payloads: Sequence[bytes],
        content_types: Sequence[str | None] | None = None,
    ) -> Prepared:
        """``prepare``, but a message that trips a bug is quarantined instead of stopping ingest.

        A crash here would be a crash loop: the broker delivers the same message again on
        restart. The batch is retried message by message to isolate the culprit.
        """
        try:
            return self.prepare(topics, payloads, content_types=content_types)
        except Exception:
            log.exception("ingest pipeline failed on a batch; retrying message by message")
        parts: list[Prepared] = []
        for pos, (topic, payload) in enumerate(zip(topics, payloads, strict=True)):
            try:
                ctypes = None if content_types is None else [content_types[pos]]
                one = self.prepare([topic], [payload], content_types=ctypes)
            except Exception as exc:
                self.reject_message(
                    topic, payload, "internal_error", f"{type(exc).__name__}: {exc}"
                )
                continue
            one.message_of = np.where(one.message_of >= 0, pos, -1)
            parts.append(one)
        merged = Prepared(
            self.table, Batch.concat([p.batch for p in parts]), np.empty(0, np.int64), topics
        )
        merged.message_of = (
            np.concatenate([p.message_of for p in parts]) if parts else np.empty(0, np.int64)
        )
        for p in parts:
            merged.frames += p.frames
            merged.frame_sessions += p.frame_sessions
            merged.confirm += p.confirm
            merged.accepted += p.accepted
            merged.markers += p.markers
            merged.newest_frame_ns = max(merged.newest_frame_ns, p.newest_frame_ns)
            for codec, n in p.samples_in.items():
                merged.samples_in[codec] = merged.samples_in.get(codec, 0) + n
            for codec, n in p.messages_in.items():
                merged.messages_in[codec] = merged.messages_in.get(codec, 0) + n
        return merged

    def _quarantine_samples(
        self,
        batch: Batch,
        reason: NDArray[np.uint8],
        rejected: NDArray[np.int64],
        message_of: NDArray[np.int64],
        topics: Sequence[str],
        parts: list[tuple[Settled, NDArray[np.int64], list[SeriesKey]]],
        declared: NDArray[np.int32] | None,
    ) -> None:
        refused = [k for _, _, keys in parts for k in keys]
        combo = message_of[rejected] * 256 + reason[rejected]
        order = np.argsort(combo, kind="stable")
        rejected, combo = rejected[order], combo[order]
        starts = np.flatnonzero(np.r_[True, combo[1:] != combo[:-1]])
        ends = np.r_[starts[1:], len(combo)]
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            idx = rejected[a:b]
            code = int(reason[idx[0]])
            name = SAMPLE_REASONS[code - 1]
            msg_pos = int(message_of[idx[0]])
            keys = None
            if name == "type_change" and declared is not None:
                keys = [refused[int(d)] for d in declared[idx].tolist()]
            self.quarantine.add_samples(
                self.table,
                batch,
                idx,
                name,
                _SAMPLE_MESSAGES[name],
                topic=topics[msg_pos],
                keys=keys,
            )
            if self.metrics is not None:
                self.metrics.samples_rejected.labels(name).inc(len(idx))

    def quarantine_encoder_rejects(
        self, prep: Prepared, index: NDArray[np.int64], codes: NDArray[np.uint8]
    ) -> None:
        """Samples the line-protocol encoder refused (e.g. a string over 64 KiB)."""
        for code in np.unique(codes).tolist():
            idx = index[codes == code]
            name = f"influx_{REJECT_REASONS[int(code) - 1]}"
            pos = int(prep.message_of[idx[0]])
            self.quarantine.add_samples(
                prep.table,
                prep.batch,
                idx,
                name,
                "the InfluxDB line-protocol encoder refused these samples",
                topic=prep.topics[pos] if pos >= 0 else "",
            )
            if self.metrics is not None:
                self.metrics.samples_rejected.labels(name).inc(len(idx))

    def commit(self, prep: Prepared) -> None:
        """The batch is stored: remember its frames for duplicate detection."""
        sessions = prep.frame_sessions or [""] * len(prep.frames)
        for (gw, seq), sess in zip(prep.frames, sessions, strict=True):
            self.dedup.commit(gw, seq, sess)
        for gw, previous, new in self.dedup.take_new_sessions():
            log.warning(
                "gateway %s started a new session %s (previous %s): it was replaced, reinstalled "
                "or its state directory was reset; its frames are numbered from 1 again",
                gw,
                new or "-",
                previous or "-",
            )
        if self.metrics is not None:
            self.metrics.frame_gaps.set(self.dedup.gaps)
            self.metrics.gateway_sessions.set(self.dedup.sessions_started)


_SAMPLE_MESSAGES = {
    "unknown_series": "sample of a series (measurement) ingest is not configured to accept",
    "type_change": "sample type differs from the series' known type",
    "non_finite": "NaN or infinite float value",
    "ts_future": "timestamp too far in the future (validation.max_future_s)",
    "ts_past": "timestamp too far in the past (validation.max_past_s)",
}


def _concat_parts(
    parts: list[tuple[Settled, NDArray[np.int64], list[SeriesKey]]],
) -> tuple[Batch, NDArray[np.int64], NDArray[np.int32] | None]:
    """Concatenate codec outputs; the ``declared`` column is renumbered into one refused list."""
    declared: NDArray[np.int32] | None = None
    if any(p.declared is not None for p, _, _ in parts):
        cols = []
        offset = 0
        for p, _, refused in parts:
            d = p.declared
            if d is None:
                cols.append(np.full(len(p.batch), -1, np.int32))
            else:
                cols.append(np.where(d >= 0, d + offset, -1).astype(np.int32))
            offset += len(refused)
        declared = np.concatenate(cols)
    batch = Batch.concat([p.batch for p, _, _ in parts])
    return batch, np.concatenate([m for _, m, _ in parts]), declared


class _WriterCollector(Collector):
    """The InfluxDB writer's own request, retry and error counters, read at scrape time."""

    def __init__(self, service: IngestService) -> None:
        self.service = service

    def collect(self) -> Iterator[Any]:
        writer = self.service.writer
        st = writer.stats if writer is not None else WriterStats()
        yield CounterMetricFamily(
            "zhizao_ingest_influx_requests", "HTTP write requests (retries included)", st.requests
        )
        yield CounterMetricFamily(
            "zhizao_ingest_influx_retries", "write requests sent again after a failure", st.retries
        )
        yield CounterMetricFamily(
            "zhizao_ingest_influx_lines_rejected", "lines InfluxDB refused (400)", st.lines_rejected
        )
        errors = CounterMetricFamily(
            "zhizao_ingest_influx_request_errors",
            "failed write requests by kind (connect, timeout, http_503, ...)",
            labels=["kind"],
        )
        for kind, n in st.errors.items():
            errors.add_metric([kind], n)
        yield errors
        q = self.service.quarantine
        yield CounterMetricFamily(
            "zhizao_ingest_quarantine_rotated_out_records",
            "quarantine records deleted with the oldest rotated file",
            q.rotated_out,
        )
        yield GaugeMetricFamily(
            "zhizao_ingest_quarantine_bytes",
            "bytes the quarantine holds on disk (current and rotated files)",
            q.total_bytes,
        )


class IngestService:
    """MQTT -> pipeline -> InfluxDB, acknowledging each message once its points are stored."""

    def __init__(self, config: IngestConfig, *, metrics: IngestMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or IngestMetrics()
        self.quarantine = QuarantineStore(config.quarantine)
        self.pipeline = IngestPipeline(config, self.quarantine, self.metrics)
        self.consumer: MqttConsumer | None = None
        self.health_server: HealthServer | None = None
        self._inbox: deque[tuple[InMessage, int]] = deque()
        self._inbox_points = 0
        self._unacked: deque[float] = deque()  # received_s of messages not yet acknowledged
        self._wake: asyncio.Event | None = None
        self._busy = 0  # batches prepared and not yet acknowledged
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_write_s = time.monotonic()
        self.acked = 0
        self.samples_written = 0
        # computed when scraped, so they move while the service is stuck too
        self.metrics.inflight.set_function(lambda: len(self._unacked))
        self.metrics.consumer_lag.set_function(self._oldest_unacked_s)
        self.rebirths_sent = 0
        self.members: set[str] = set()  # client ids of the group's processes seen on the broker
        self.quarantine_error = ""  # why the quarantine cannot be written now ("" = it can)
        self.writer: InfluxWriter | None = None
        self.metrics.registry.register(_WriterCollector(self))
        self.influx_error = ""  # the last InfluxDB failure while a batch is held ("" = none)
        # one episode per kind of outage, shared by the concurrent writes: logged once when it
        # starts, once when it ends (zhizao.retry)
        self._influx_outage = Episode()
        self._quarantine_outage = Episode()

    # -- arrival (paho thread -> event loop) -------------------------------------------------
    def _on_message(self, msg: InMessage) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._arrive, msg)

    def _arrive(self, msg: InMessage) -> None:
        if msg.qos == 0 and self._control(msg):
            return
        points = peek_sample_count(msg.payload) if msg.topic.endswith("/frames") else 1
        self._inbox.append((msg, points))
        self._unacked.append(msg.received_s)
        self._inbox_points += points
        assert self._wake is not None
        if len(self._inbox) == 1 or self._inbox_points >= self.config.batch.flush_points:
            self._wake.set()

    def _oldest_unacked_s(self) -> float:
        try:
            return time.monotonic() - self._unacked[0]
        except IndexError:  # empty (or emptied by the event loop meanwhile)
            return 0.0

    # -- health ---------------------------------------------------------------------------
    def health(self) -> tuple[bool, dict[str, Any]]:
        connected = self.consumer is not None and self.consumer.connected.is_set()
        now = time.monotonic()
        waiting = len(self._unacked)
        stale = waiting > 0 and now - self._last_write_s > self.config.health.stale_write_s
        oldest = self._oldest_unacked_s()
        reasons = []
        if not connected:
            reasons.append("not connected to the MQTT broker")
        if stale:
            reasons.append(f"nothing stored for {now - self._last_write_s:.0f} s while data waits")
        if self.quarantine_error:
            reasons.append(self.quarantine_error)
        if self.influx_error:
            reasons.append(self.influx_error)
        return not reasons, {
            "reasons": reasons,
            "mqtt_connected": connected,
            "unacked_messages": waiting,
            "oldest_unacked_s": round(oldest, 3),
            "seconds_since_last_write": round(now - self._last_write_s, 3),
            "samples_written": self.samples_written,
            "messages_acked": self.acked,
            "encoder_kernel": DEFAULT_KERNEL,
        }

    # -- batching -------------------------------------------------------------------------
    async def _next_batch(self, stop: asyncio.Event) -> list[InMessage] | None:
        assert self._wake is not None
        cfg = self.config.batch
        age_s = cfg.flush_age_ms / 1000.0
        while not stop.is_set():
            timeout: float | None = None
            if self._inbox:
                waited = time.monotonic() - self._inbox[0][0].received_s
                if self._inbox_points >= cfg.flush_points or waited >= age_s:
                    break
                if cfg.flush_when_idle and self._busy < cfg.max_concurrent_writes:
                    # group commit: a writer slot is free, so waiting buys nothing; under load
                    # the slots are taken and batches grow while the writes run
                    break
                timeout = age_s - waited
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout if timeout else 1.0)
        if stop.is_set():
            return None
        out: list[InMessage] = []
        points = 0
        while self._inbox and (not out or points < cfg.flush_points):
            msg, n = self._inbox.popleft()
            self._inbox_points -= n
            points += n
            out.append(msg)
        return out

    async def _prepare_loop(
        self, queue: asyncio.Queue[tuple[list[InMessage], Prepared]], stop: asyncio.Event
    ) -> None:
        while True:
            msgs = await self._next_batch(stop)
            if msgs is None:
                return
            prep = self.pipeline.prepare_safe(
                [m.topic for m in msgs],
                [m.payload for m in msgs],
                [m.content_type for m in msgs],
            )
            self._request_rebirths()
            self._busy += 1
            await queue.put((msgs, prep))

    def _request_rebirths(self) -> None:
        """Send the rebirth requests due: one per node per hold-off across every process of the
        group (the requests of others are seen on the broker, and one process owns each node)."""
        sp = self.pipeline.sparkplug
        if sp is None or self.consumer is None:
            return
        plan = sp.host.rebirths_due(time.monotonic(), self._owns)
        for group, node in sorted(plan.send):
            topic, payload = rebirth_command(group, node, int(time.time() * 1000))
            self.consumer.publish(topic, payload, qos=0)
            self.rebirths_sent += 1
            self.metrics.rebirths_sent.inc()
        for group, node in sorted(plan.forward):
            # the owner may never get this node's data (the broker deals messages round robin)
            self.consumer.publish(f"{self._wish_prefix()}{group}/{node}", b"1", qos=0)

    def _owns(self, group: str, node: str) -> bool:
        """Whether this process asks ``node`` for rebirths: the group's members (presence
        messages on the broker) share the nodes out by a hash, so N processes send one."""
        if not self.config.mqtt.group:
            return True
        me = self.config.mqtt.client_id
        members = sorted(self.members | {me})
        return members[zlib.crc32(f"{group}/{node}".encode()) % len(members)] == me

    def _wish_prefix(self) -> str:
        """Topic prefix of rebirth wishes forwarded to a node's owner ("" without a group)."""
        presence = self.pipeline.presence_prefix()
        return presence.replace("/members/", "/rebirth/") if presence else ""

    def _control(self, msg: InMessage) -> bool:
        """Presence of the group's members and rebirth requests on the broker (QoS 0, never
        acknowledged nor batched); False: not a control message."""
        presence = self.pipeline.presence_prefix()
        if presence and msg.topic.startswith(presence):
            member = msg.topic[len(presence) :]
            if msg.payload:
                self.members.add(member)
            else:
                self.members.discard(member)
            return True
        sp = self.pipeline.sparkplug
        wish = self._wish_prefix()
        if wish and sp is not None and msg.topic.startswith(wish):
            group, _, node = msg.topic[len(wish) :].partition("/")
            if self._owns(group, node):
                sp.host.want_rebirth(group, node)
                self._request_rebirths()
            return True
        target = rebirth_target(msg.topic)
        if target is not None and sp is not None:
            if is_rebirth_request(msg.payload):
                sp.host.observe_rebirth(*target, time.monotonic())
            return True
        return False

    async def _write_loop(
        self, queue: asyncio.Queue[tuple[list[InMessage], Prepared]], writer: InfluxWriter
    ) -> None:
        """Store prepared batches, up to ``max_concurrent_writes`` at once; finish in order.

        Overlapping batches hides the tail of each write (its last requests leave the writer's
        concurrency idle); acknowledgements still go out in arrival order.
        """
        limit = self.config.batch.max_concurrent_writes
        pending: deque[tuple[list[InMessage], Prepared, asyncio.Task[None]]] = deque()
        getter: asyncio.Task[tuple[list[InMessage], Prepared]] | None = None
        try:
            while True:
                if getter is None and len(pending) < limit:
                    getter = asyncio.create_task(queue.get())
                waits: set[asyncio.Task[Any]] = {getter} if getter is not None else set()
                if pending:
                    waits.add(pending[0][2])
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if getter is not None and getter.done():
                    msgs, prep = getter.result()
                    getter = None
                    task = asyncio.create_task(self._store(msgs, prep, writer))
                    pending.append((msgs, prep, task))
                while pending and pending[0][2].done():
                    msgs, prep, task = pending.popleft()
                    task.result()
                    await self._finish(msgs, prep)
                    queue.task_done()
        finally:
            for *_, task in pending:
                task.cancel()
            if getter is not None:
                getter.cancel()

    async def _store(self, msgs: list[InMessage], prep: Prepared, writer: InfluxWriter) -> None:
        """Write one batch, retrying until InfluxDB takes it (the batch is never dropped).

        A 413 (request too large) is not an outage: the batch is cut in halves until each part
        fits, and a single sample InfluxDB still refuses is quarantined (``influx_too_large``),
        so one poison message never holds the samples behind it.
        """
        if len(prep.batch):
            await self._store_rows(msgs, prep, writer, np.arange(len(prep.batch), dtype=np.int64))

    async def _store_rows(
        self,
        msgs: list[InMessage],
        prep: Prepared,
        writer: InfluxWriter,
        rows: NDArray[np.int64],
    ) -> None:
        cfg = self.config.batch
        backoff = Backoff(cfg.retry_initial_s, cfg.retry_max_s)
        whole = len(rows) == len(prep.batch)
        while True:
            batch = prep.batch if whole else prep.batch.take(rows)
            t0 = time.monotonic()
            try:
                report = await writer.write_batch(prep.table, batch)
            except PartialWriteError as exc:
                self._quarantine_lines(prep, exc)
                break
            except SinkError as exc:
                if exc.status == 413 and not exc.retryable:
                    self.metrics.influx_errors.labels("http_413").inc()
                    await self._split_too_large(msgs, prep, writer, rows, exc)
                    break
                self._hold(msgs, exc)
                await asyncio.sleep(backoff.next_delay_s())
                continue
            except ConfigError as exc:
                self._hold(msgs, exc)
                await asyncio.sleep(backoff.next_delay_s())
                continue
            self.metrics.write_seconds.observe(time.monotonic() - t0)
            if len(report.rejected_index):
                self.pipeline.quarantine_encoder_rejects(
                    prep, rows[report.rejected_index], report.rejected_reason
                )
            written = len(batch) - len(report.rejected_index)
            if prep.markers:  # data-quality markers are counted on their own
                written -= int((rows >= len(prep.batch) - prep.markers).sum())
            self.samples_written += written
            self.metrics.samples_written.inc(written)
            break
        failed = self._influx_outage.recovered()
        if failed:
            self.influx_error = ""
            log.warning("InfluxDB writes recovered (%d failed writes retried)", failed)

    def _hold(self, msgs: list[InMessage], exc: Exception) -> None:
        kind = "retryable" if getattr(exc, "retryable", False) else type(exc).__name__
        status = getattr(exc, "status", None)
        if status is not None and not getattr(exc, "retryable", False):
            kind = f"http_{status}"
        self.metrics.influx_errors.labels(kind).inc()
        self.influx_error = f"InfluxDB: {exc}"
        if self._influx_outage.failed(self.influx_error):
            log.warning("InfluxDB write failed, holding %d messages: %s", len(msgs), exc)

    async def _split_too_large(
        self,
        msgs: list[InMessage],
        prep: Prepared,
        writer: InfluxWriter,
        rows: NDArray[np.int64],
        exc: SinkError,
    ) -> None:
        if len(rows) > 1:
            if len(rows) == len(prep.batch):
                log.warning(
                    "InfluxDB refused a write of %d samples as too large (HTTP 413); writing it "
                    "in smaller parts (lower influx.max_bytes_per_request to match the server's "
                    "max-body-size)",
                    len(rows),
                )
            half = len(rows) // 2
            await self._store_rows(msgs, prep, writer, rows[:half])
            await self._store_rows(msgs, prep, writer, rows[half:])
            return
        pos = int(prep.message_of[rows[0]])
        self.pipeline.quarantine.add_samples(
            prep.table,
            prep.batch,
            rows,
            "influx_too_large",
            f"InfluxDB refuses this sample's request as too large (HTTP 413): {exc}",
            topic=prep.topics[pos] if pos >= 0 else "",
        )
        self.metrics.samples_rejected.labels("influx_too_large").inc(len(rows))

    async def _flush_quarantine(self) -> None:
        """Make the quarantine durable, waiting (and holding the acknowledgements) while it
        cannot be written (a full disk): the broker keeps the messages meanwhile."""
        backoff = Backoff(self.config.batch.retry_initial_s, self.config.batch.retry_max_s)
        while self.quarantine.pending:
            try:
                await asyncio.to_thread(self.quarantine.flush)
            except OSError as exc:
                if self._quarantine_outage.failed(str(exc)):
                    log.error(
                        "the quarantine %s cannot be written (%s): holding %d unacknowledged "
                        "messages at the broker until it can; free space on that file system",
                        self.quarantine.path,
                        exc.strerror or exc,
                        len(self._unacked),
                    )
                self.quarantine_error = f"quarantine {self.quarantine.path}: {exc.strerror or exc}"
                self.metrics.quarantine_errors.inc()
                await asyncio.sleep(backoff.next_delay_s())
                continue
            if self._quarantine_outage.recovered():
                log.warning("the quarantine can be written again; catching up")
                self.quarantine_error = ""

    def _confirm(self, prep: Prepared) -> None:
        """Tell each gateway which of its frames are stored (retained, QoS 1)."""
        if not prep.confirm or not self.config.mqtt.confirm or self.consumer is None:
            return
        groups: dict[tuple[str, str, str], list[int]] = {}
        for site, gw, sess, seq in prep.confirm:
            if site:
                groups.setdefault((site, gw, sess), []).append(seq)
        now_ns = time.time_ns()
        for (site, gw, sess), seqs in groups.items():
            topic = confirm_topic(site, gw, self.config.mqtt.topic_prefix)
            self.consumer.publish(
                topic, encode_confirmation(gw, sess, seqs, now_ns), qos=1, retain=True
            )
            self.metrics.confirmations.inc()
            self.metrics.frames_confirmed.inc(len(seqs))

    async def _finish(self, msgs: list[InMessage], prep: Prepared) -> None:
        """Stored: make the quarantine durable, remember the frames, acknowledge in order,
        confirm the frames to their gateways."""
        await self._flush_quarantine()
        self.pipeline.commit(prep)
        assert self.consumer is not None
        self.consumer.ack(msgs)
        self._confirm(prep)
        self._busy -= 1
        if self._wake is not None:
            self._wake.set()
        now = time.monotonic()
        self._last_write_s = now
        self.metrics.last_write.set(time.time())
        self.metrics.batch_seconds.observe(now - msgs[0].received_s)
        if prep.newest_frame_ns:
            self.metrics.frame_age.set(max(0.0, time.time() - prep.newest_frame_ns / 1e9))
        for _ in msgs:
            self._unacked.popleft()
        self.acked += len(msgs)
        self.metrics.messages_acked.inc(len(msgs))

    def _quarantine_lines(self, prep: Prepared, exc: PartialWriteError) -> None:
        for line_no, line, why in exc.rejected:
            self.quarantine.add_payload(
                "", line.encode(), "influx_refused", f"line {line_no}: {why}"
            )
            self.metrics.samples_rejected.labels("influx_refused").inc()

    # -- life cycle -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (or SIGTERM/SIGINT when running the CLI)."""
        stop = stop or asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        presence = self.pipeline.presence_prefix()
        consumer = MqttConsumer(
            self.config.mqtt,
            self.pipeline.subscriptions(),
            self._on_message,
            control_topics=self.pipeline.control_subscriptions(),
            presence=(presence + self.config.mqtt.client_id, b"1") if presence else None,
        )
        consumer.on_connect_change = self._connect_changed
        self.consumer = consumer
        if self.config.quarantine.dead_letter_topic:
            self.quarantine.set_publisher(lambda t, p: consumer.publish(t, p))
        queue: asyncio.Queue[tuple[list[InMessage], Prepared]] = asyncio.Queue(
            self.config.batch.pipeline_depth
        )
        if self.config.counter_seed_from_influx and self.config.counters:
            await self.seed_counters()
        async with InfluxWriter(self.config.influx) as writer:
            self.writer = writer
            await asyncio.to_thread(consumer.start)
            prepare = asyncio.create_task(self._prepare_loop(queue, stop), name="ingest-prepare")
            write = asyncio.create_task(self._write_loop(queue, writer), name="ingest-write")
            stopped = asyncio.create_task(stop.wait(), name="ingest-stop")
            try:
                done, _ = await asyncio.wait(
                    [prepare, write, stopped], return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    if task in (prepare, write) and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                await prepare
                # let the writer finish what is prepared (bounded), then leave the rest to the
                # broker: unacknowledged messages are delivered again on the next start
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(queue.join(), 10.0)
            finally:
                for task in (prepare, write, stopped):
                    task.cancel()
                for task in (prepare, write, stopped):
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                await asyncio.to_thread(consumer.stop)
                self.quarantine.close()

    async def seed_counters(self) -> int:
        """Counter state from the last stored raw values; returns the series seeded.

        InfluxDB unreachable is logged, not fatal: the first increment per series is then lost,
        exactly as without seeding.
        """
        tracker, table = self.pipeline.counters, self.pipeline.table
        seeded = 0
        try:
            async with InfluxQLReader(self.config.influx) as reader:
                for spec in self.config.counters:
                    m, f = ident(spec.measurement), ident(spec.field)
                    kinds = await reader.query(f"SHOW FIELD KEYS FROM {m}")
                    dtype = None
                    for series in kinds:
                        if "fieldKey" not in series.values:
                            continue
                        for name, kind in zip(
                            series.values["fieldKey"].tolist(),
                            series.values["fieldType"].tolist(),
                            strict=False,
                        ):
                            if name == spec.field:
                                dtype = {"integer": FieldType.INT, "float": FieldType.FLOAT}.get(
                                    kind
                                )
                    if dtype is None:
                        continue
                    for series in await reader.query(f"SELECT last({f}) FROM {m} GROUP BY *"):
                        if not len(series.time_ns):
                            continue
                        tags = {k: v for k, v in series.tags.items() if v}
                        key = SeriesKey.make(spec.measurement, tags, spec.field, dtype)
                        value = series.values["last"][0]
                        try:
                            if tracker.seed(table, key, value, int(series.time_ns[0])):
                                seeded += 1
                        except ValidationError:
                            continue  # known with another type: leave it to validation
        except (QueryError, OSError) as exc:
            log.warning("counter state not seeded from InfluxDB: %s", exc)
        return seeded

    def _connect_changed(self, up: bool) -> None:
        self.metrics.mqtt_connected.set(1 if up else 0)
        if up:
            self.metrics.mqtt_connects.inc()

    def start_health(self) -> HealthServer | None:
        hc = self.config.health
        if not hc.port:
            return None
        # a port another process (often a second ingest) holds is a ConfigError naming it
        self.health_server = HealthServer(self.metrics, self.health, hc.host, hc.port).start()
        return self.health_server


def run_service(config: IngestConfig) -> int:
    """Blocking entry point for the CLI: SIGTERM/SIGINT stop cleanly."""
    service = IngestService(config)
    if DEFAULT_KERNEL != "c":
        log.warning(
            "the compiled line-protocol kernel (ingest/_lpkernel.c) is not built: encoding with "
            "the numpy layout (same bytes, about half the speed); reinstall with a C compiler"
        )
    return run_until_signalled(service.run, probe=service.start_health())
