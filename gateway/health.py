"""Health: ``/metrics`` and ``/healthz`` on a local port, and the status file behind
``zhizao gateway status``.

Metrics are produced at scrape time from the sources', outbox's and uplink's own counters (a
custom collector on a private registry), so the hot paths never touch a metric object.
``/healthz`` answers 200 while every source is connected and the outbox can be written, else 503,
both with a JSON body whose ``reasons`` say what is wrong ("outbox: ... database or disk is
full", "source cnc-hall1 is not connected: ..."). An uplink outage is not unhealthy: the outbox
holds the samples until it is back (its state is in the body and in the metrics).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.outbox import SqliteOutbox
from gateway.sources.base import SourceStats
from gateway.uplink import UplinkStats
from zhizao.probe import ProbeServer

__all__ = [
    "GatewayCollector",
    "GatewayHealth",
    "healthz",
    "read_status",
    "serve_metrics",
    "status_snapshot",
    "write_status",
]

STATUS_FILE = "status.json"


@dataclass
class GatewayHealth:
    """The process's own conditions (beside the sources', outbox's and uplink's counters)."""

    status_error: str = ""  # why the status file cannot be written ("" = it can)
    status_write_errors: int = 0
    task_crashes: int = 0  # sources or the uplink that failed unexpectedly and were restarted

    def problems(self, outbox: SqliteOutbox, uplink: UplinkStats) -> list[str]:
        out = []
        o = outbox.stats
        if o.storage_error:
            out.append(f"outbox: {o.storage_error}")
        if self.status_error:
            out.append(self.status_error)
        if uplink.unconfirmed_frames:
            out.append(
                f"{uplink.unconfirmed_samples} samples sent, not confirmed by ingest "
                f"({uplink.unconfirmed_frames} frames)"
            )
        return out


def healthz(
    sources: Sequence[SourceStats], outbox: SqliteOutbox, uplink: UplinkStats
) -> tuple[bool, dict[str, Any]]:
    """(healthy, JSON body) of ``/healthz``: every source connected and the outbox writable."""
    reasons: list[str] = []
    o = outbox.stats
    if o.storage_error:
        reasons.append(f"outbox cannot be written: {o.storage_error}")
    for s in sources:
        if not s.connected:
            why = f": {s.last_error}" if s.last_error else ""
            reasons.append(f"source {s.name} is not connected{why}")
    body = {
        "reasons": reasons,
        "sources": {s.name: {"connected": s.connected, "kind": s.kind} for s in sources},
        "outbox": {
            "writable": not o.storage_error,
            "samples": outbox.depth_samples,
            "refused_disk_full": o.refused_disk_full,
        },
        "uplink": {"connected": uplink.connected, "kind": uplink.kind},
    }
    return not reasons, body


class GatewayCollector(Collector):
    def __init__(
        self,
        gateway_id: str,
        sources: Sequence[SourceStats],
        outbox: SqliteOutbox,
        uplink: UplinkStats,
        health: GatewayHealth | None = None,
    ) -> None:
        self.gateway_id = gateway_id
        self.sources = sources
        self.outbox = outbox
        self.uplink = uplink
        self.health = health or GatewayHealth()

    def healthz(self) -> tuple[bool, dict[str, Any]]:
        return healthz(self.sources, self.outbox, self.uplink)

    def collect(self) -> Iterator[Any]:
        src = ["source", "kind"]
        connected = GaugeMetricFamily(
            "zhizao_gateway_source_connected", "1 if the source is connected", labels=src
        )
        last = GaugeMetricFamily(
            "zhizao_gateway_source_last_sample_timestamp_seconds",
            "source timestamp of the newest sample",
            labels=src,
        )
        samples = CounterMetricFamily(
            "zhizao_gateway_source_samples", "samples stored from the source", labels=src
        )
        reconnects = CounterMetricFamily(
            "zhizao_gateway_source_reconnects", "sessions re-established", labels=src
        )
        rejected = CounterMetricFamily(
            "zhizao_gateway_source_rejected",
            "messages or values not turned into samples, by reason",
            labels=[*src, "reason"],
        )
        task_failures = CounterMetricFamily(
            "zhizao_gateway_source_task_failures",
            "supervised tasks of a source (poll, flush, watchdog, markers, receive) that failed "
            "and ended its session",
            labels=[*src, "task"],
        )
        for s in self.sources:
            lv = [s.name, s.kind]
            for task, n in s.task_failures.items():
                task_failures.add_metric([*lv, task], n)
            connected.add_metric(lv, float(s.connected))
            last.add_metric(lv, s.last_sample_ns / 1e9)
            samples.add_metric(lv, s.samples)
            reconnects.add_metric(lv, s.reconnects)
            for reason, n in s.rejected.items():
                rejected.add_metric([*lv, reason], n)
        yield from (connected, last, samples, reconnects, rejected, task_failures)
        o = self.outbox.snapshot()
        yield GaugeMetricFamily("zhizao_gateway_outbox_samples", "samples stored", value=o.samples)
        yield GaugeMetricFamily(
            "zhizao_gateway_outbox_bytes", "payload bytes stored", value=o.bytes
        )
        yield GaugeMetricFamily("zhizao_gateway_outbox_chunks", "chunks stored", value=o.chunks)
        yield GaugeMetricFamily(
            "zhizao_gateway_outbox_oldest_age_seconds",
            "age of the oldest chunk",
            value=o.oldest_age_s,
        )
        yield CounterMetricFamily(
            "zhizao_gateway_outbox_appended_samples", "samples accepted", value=o.appended
        )
        dropped = CounterMetricFamily(
            "zhizao_gateway_outbox_dropped_samples",
            "samples dropped by the configured policy, by reason",
            labels=["reason"],
        )
        for reason, n in o.dropped.items():
            dropped.add_metric([reason], n)
        yield dropped
        yield CounterMetricFamily(
            "zhizao_gateway_outbox_refused_samples",
            "samples refused (refuse_new, or a write the file system refused)",
            value=o.refused,
        )
        yield CounterMetricFamily(
            "zhizao_gateway_outbox_refused_disk_full_samples",
            "samples refused because the file system refused the write (part of refused)",
            value=o.refused_disk_full,
        )
        yield GaugeMetricFamily(
            "zhizao_gateway_outbox_storage_ok",
            "0 while the outbox's file system refuses writes (disk full), else 1",
            value=0.0 if o.storage_error else 1.0,
        )
        yield CounterMetricFamily(
            "zhizao_gateway_outbox_storage_errors",
            "outbox writes the file system refused",
            value=o.storage_errors,
        )
        healthy, _ = healthz(self.sources, self.outbox, self.uplink)
        yield GaugeMetricFamily(
            "zhizao_gateway_healthy",
            "1 while /healthz answers 200 (sources connected, outbox writable), else 0",
            value=float(healthy),
        )
        h = self.health
        yield GaugeMetricFamily(
            "zhizao_gateway_status_file_ok",
            "0 while the status file cannot be written, else 1",
            value=0.0 if h.status_error else 1.0,
        )
        yield CounterMetricFamily(
            "zhizao_gateway_status_write_errors",
            "failed writes of the status file",
            value=h.status_write_errors,
        )
        yield CounterMetricFamily(
            "zhizao_gateway_task_restarts",
            "sources or uplink that failed unexpectedly and were restarted",
            value=h.task_crashes,
        )
        u = self.uplink
        yield GaugeMetricFamily(
            "zhizao_gateway_uplink_connected",
            "1 if the uplink is connected",
            value=float(u.connected),
        )
        yield CounterMetricFamily(
            "zhizao_gateway_uplink_frames_sent", "frames sent", value=u.frames_sent
        )
        yield CounterMetricFamily(
            "zhizao_gateway_uplink_samples_acked",
            "samples confirmed by the uplink",
            value=u.samples_acked,
        )
        yield CounterMetricFamily(
            "zhizao_gateway_uplink_retries", "chunks put back for another attempt", value=u.retries
        )
        yield GaugeMetricFamily(
            "zhizao_gateway_uplink_inflight_frames",
            "frames awaiting PUBACK",
            value=u.inflight_frames,
        )
        yield GaugeMetricFamily(
            "zhizao_gateway_uplink_unconfirmed_frames",
            "frames the broker accepted and ingest has not confirmed yet",
            value=u.unconfirmed_frames,
        )
        yield GaugeMetricFamily(
            "zhizao_gateway_uplink_unconfirmed_samples",
            "samples sent, not confirmed by ingest (still in the outbox)",
            value=u.unconfirmed_samples,
        )
        yield CounterMetricFamily(
            "zhizao_gateway_uplink_confirm_timeouts",
            "frames sent again because ingest did not confirm them in time",
            value=u.confirm_timeouts,
        )
        rejected_up = CounterMetricFamily(
            "zhizao_gateway_uplink_rejected_samples",
            "samples the store refused for good (direct InfluxDB uplink), by reason",
            labels=["reason"],
        )
        for reason, n in u.rejected.items():
            rejected_up.add_metric([reason], n)
        yield rejected_up
        errors = CounterMetricFamily(
            "zhizao_gateway_uplink_publish_errors", "publish refusals by code", labels=["code"]
        )
        for code, n in u.publish_errors.items():
            errors.add_metric([code], n)
        yield errors


def serve_metrics(host: str, port: int, collector: GatewayCollector) -> tuple[ProbeServer, int]:
    """Serve ``/metrics`` and ``/healthz`` (``zhizao.probe``); returns (server, bound port).
    A port in use is a ``ConfigError`` naming it (another service on the box, docs/PORTS.md)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server = ProbeServer(
        host,
        port,
        metrics=lambda: (generate_latest(registry), CONTENT_TYPE_LATEST),
        health=collector.healthz,
        service="gateway",
        port_key="metrics.port",
    ).start()
    return server, server.port


def status_snapshot(
    gateway_id: str,
    sources: Sequence[SourceStats],
    outbox: SqliteOutbox,
    uplink: UplinkStats,
    metrics_port: int | None,
    health: GatewayHealth | None = None,
) -> dict[str, Any]:
    o = outbox.snapshot()
    health = health or GatewayHealth()
    return {
        "gateway": gateway_id,
        "session": outbox.session,
        "problems": health.problems(outbox, uplink),
        "written_at_s": time.time(),
        "pid": os.getpid(),
        "metrics_port": metrics_port,
        "sources": [s.as_dict() for s in sources],
        "outbox": {
            "samples": o.samples,
            "bytes": o.bytes,
            "chunks": o.chunks,
            "oldest_age_s": round(o.oldest_age_s, 3),
            "appended": o.appended,
            "acked": o.acked,
            "dropped": o.dropped,
            "refused": o.refused,
            "refused_disk_full": o.refused_disk_full,
            "storage_errors": o.storage_errors,
            "storage_error": o.storage_error,
        },
        "status_write_errors": health.status_write_errors,
        "task_restarts": health.task_crashes,
        "uplink": uplink.as_dict(),
    }


def write_status(state_dir: Path, snapshot: dict[str, Any]) -> None:
    """Atomically replace ``state_dir/status.json``."""
    tmp = state_dir / (STATUS_FILE + ".tmp")
    data = json.dumps(snapshot, indent=1).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(tmp, state_dir / STATUS_FILE)


def read_status(state_dir: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((state_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data
