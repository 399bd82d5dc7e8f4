"""Prometheus metrics (a private registry per service) and the ``/metrics`` + ``/healthz`` server."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from zhizao.probe import HealthFn, ProbeServer

__all__ = ["HealthServer", "IngestMetrics"]


class IngestMetrics:
    """Every metric of one ingest service, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages_in = Counter(
            "zhizao_ingest_messages", "MQTT messages received", ["codec"], registry=r
        )
        self.samples_in = Counter(
            "zhizao_ingest_samples_in", "samples decoded from messages", ["codec"], registry=r
        )
        self.samples_written = Counter(
            "zhizao_ingest_samples_written",
            "samples stored in InfluxDB (increments included)",
            registry=r,
        )
        self.messages_rejected = Counter(
            "zhizao_ingest_messages_rejected",
            "whole messages quarantined",
            ["reason"],
            registry=r,
        )
        self.samples_rejected = Counter(
            "zhizao_ingest_samples_rejected", "samples quarantined", ["reason"], registry=r
        )
        self.quality_markers = Counter(
            "zhizao_ingest_quality_markers",
            "data-quality markers written (quality transitions of any input)",
            registry=r,
        )
        self.rebirths_sent = Counter(
            "zhizao_ingest_sparkplug_rebirths_sent",
            "Sparkplug rebirth requests (NCMD Node Control/Rebirth) sent",
            registry=r,
        )
        self.messages_acked = Counter(
            "zhizao_ingest_messages_acked", "messages acknowledged to the broker", registry=r
        )
        self.batch_seconds = Histogram(
            "zhizao_ingest_batch_seconds",
            "from the oldest message of a batch arriving to its acknowledgement",
            buckets=(0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.write_seconds = Histogram(
            "zhizao_ingest_write_seconds",
            "InfluxDB write time per batch",
            buckets=(0.01, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self.influx_errors = Counter(
            "zhizao_ingest_influx_errors", "failed InfluxDB batch writes", ["kind"], registry=r
        )
        self.consumer_lag = Gauge(
            "zhizao_ingest_consumer_lag_seconds",
            "age of the oldest received, unacknowledged message",
            registry=r,
        )
        self.frame_age = Gauge(
            "zhizao_ingest_frame_age_seconds",
            "now minus the creation time of the newest stored gateway frame",
            registry=r,
        )
        self.inflight = Gauge(
            "zhizao_ingest_inflight_messages", "received and not yet acknowledged", registry=r
        )
        self.frame_gaps = Gauge(
            "zhizao_ingest_frame_gaps", "frames missing between sequence numbers", registry=r
        )
        self.gateway_sessions = Gauge(
            "zhizao_ingest_gateway_new_sessions",
            "gateway sessions started after a gateway's first one (replaced or reset gateways)",
            registry=r,
        )
        self.quarantine_errors = Counter(
            "zhizao_ingest_quarantine_write_errors",
            "failed attempts to make the quarantine durable (acknowledgements held meanwhile)",
            registry=r,
        )
        self.confirmations = Counter(
            "zhizao_ingest_confirmations",
            "confirmation messages published to gateways (frames stored)",
            registry=r,
        )
        self.frames_confirmed = Counter(
            "zhizao_ingest_frames_confirmed",
            "gateway frames confirmed as stored (duplicates confirmed again included)",
            registry=r,
        )
        self.counter_out_of_order = Gauge(
            "zhizao_ingest_counter_out_of_order",
            "counter samples not newer than the last one (no increment)",
            registry=r,
        )
        self.counter_unknown_previous = Gauge(
            "zhizao_ingest_counter_unknown_previous",
            "counter samples without increment: the previous frame went to another process",
            registry=r,
        )
        self.mqtt_connected = Gauge(
            "zhizao_ingest_mqtt_connected", "1 while connected to the broker", registry=r
        )
        self.mqtt_connects = Counter(
            "zhizao_ingest_mqtt_connects", "successful (re)connections to the broker", registry=r
        )
        self.last_write = Gauge(
            "zhizao_ingest_last_write_timestamp_seconds",
            "wall-clock time of the last successful InfluxDB write",
            registry=r,
        )


class HealthServer(ProbeServer):
    """``GET /metrics`` (Prometheus text) and ``GET /healthz`` (JSON; 200 healthy, 503 not): the
    shared probe server (``zhizao.probe``) over ingest's registry."""

    def __init__(
        self,
        metrics: IngestMetrics,
        health: HealthFn,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        registry = metrics.registry
        super().__init__(
            host,
            port,
            metrics=lambda: (generate_latest(registry), CONTENT_TYPE_LATEST),
            health=health,
            service="ingest",
            port_key="health.port",
        )
