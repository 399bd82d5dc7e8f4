"""``IngestConfig``: the ingest service's YAML configuration (see ``ingest.sample.yaml``)."""

from __future__ import annotations

import socket

from pydantic import Field, SecretStr, field_validator, model_validator

from ingest.counters import CounterSpec
from ingest.influx import InfluxConfig
from ingest.json_codec import JsonTopicConfig
from ingest.quarantine import QuarantineConfig
from ingest.sparkplug_codec import SparkplugConfig
from ingest.validation import ValidationConfig
from zhizao.config import StrictModel, check_host

__all__ = [
    "BatchConfig",
    "HealthConfig",
    "IngestConfig",
    "MqttConsumerConfig",
]


class MqttConsumerConfig(StrictModel):
    """The MQTT 5 broker connection and what to subscribe to."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = Field(False, description="TLS to the broker (system CAs unless ca_file)")
    ca_file: str | None = None
    client_id: str = Field(
        default_factory=lambda: f"zhizao-ingest-{socket.gethostname()}",
        description="stable and unique per ingest process: the broker keeps its session by it",
    )
    group: str | None = Field(
        "ingest", description="shared-subscription group ($share/<group>/...); none = plain"
    )
    topic_prefix: str = Field("zhizao/v1", description="gateway frames: <prefix>/+/+/frames")
    frames: bool = Field(True, description="subscribe to gateway frames")
    frame_filter: str = Field(
        "+/+",
        description="<site>/<gateway-id> levels to subscribe to, e.g. 'plant-1/+' to partition "
        "gateways between processes (exact counter increments with N processes)",
    )
    confirm: bool = Field(
        True,
        description="publish end-to-end confirmations of stored frames to "
        "<prefix>/<site>/<gateway-id>/confirm (retained, QoS 1); gateways keep frames until then",
    )
    keepalive_s: int = Field(30, ge=5, le=65535)
    session_expiry_s: int = Field(
        7 * 86400, ge=0, description="how long the broker keeps messages for a stopped ingest"
    )
    receive_maximum: int = Field(
        2000,
        ge=1,
        le=65535,
        description="unacknowledged QoS 1 messages the broker may have in flight to this process",
    )
    reconnect_max_s: float = Field(10.0, gt=0, description="longest wait between reconnects")

    _host_ok = field_validator("host")(classmethod(lambda cls, v: check_host(v)))

    # what ingest.mqtt.MqttConnection reads beside the fields; not configurable: ingest's
    # session is always kept (unacknowledged messages wait at the broker)
    @property
    def clean_start(self) -> bool:
        return False

    @property
    def reconnect_min_s(self) -> float:
        return 1.0

    @model_validator(mode="after")
    def _check(self) -> MqttConsumerConfig:
        if (self.username is None) != (self.password is None) and self.password is not None:
            raise ValueError("`password` needs `username`")
        levels = self.frame_filter.split("/")
        if len(levels) != 2 or any(
            not lv or "#" in lv or ("+" in lv and lv != "+") for lv in levels
        ):
            raise ValueError("`frame_filter` must be two topic levels, e.g. '+/+' or 'plant-1/+'")
        for name, value in (("client_id", self.client_id), ("group", self.group or "x")):
            if not value or any(c in value for c in "/+#"):
                raise ValueError(f"`{name}` must be non-empty without '/', '+' or '#'")
        return self


class BatchConfig(StrictModel):
    """When a batch is flushed to InfluxDB, and how hard ingest holds on to it."""

    flush_points: int = Field(50_000, ge=1, description="flush when this many samples wait")
    flush_age_ms: float = Field(200.0, gt=0, description="... or when the oldest waited this long")
    flush_when_idle: bool = Field(
        True, description="... or at once while a writer slot is free (group commit)"
    )
    max_message_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="larger messages are quarantined (too_large)"
    )
    pipeline_depth: int = Field(
        2, ge=1, le=16, description="prepared batches waiting for the writer (backpressure)"
    )
    max_concurrent_writes: int = Field(
        2, ge=1, le=16, description="batches being written at once (acknowledged in order)"
    )
    retry_initial_s: float = Field(0.5, gt=0, description="pause after a failed write, doubling")
    retry_max_s: float = Field(10.0, gt=0)


class HealthConfig(StrictModel):
    """Prometheus ``/metrics`` and ``/healthz`` on a local port."""

    host: str = "127.0.0.1"
    port: int = Field(9132, ge=0, le=65535, description="0 = no HTTP endpoint (docs/PORTS.md)")

    _host_ok = field_validator("host")(classmethod(lambda cls, v: check_host(v)))
    stale_write_s: float = Field(
        60.0, gt=0, description="unhealthy when data waits and nothing was stored for this long"
    )


class IngestConfig(StrictModel):
    """Everything ``zhizao ingest run`` needs."""

    mqtt: MqttConsumerConfig = Field(default_factory=lambda: MqttConsumerConfig.model_validate({}))
    influx: InfluxConfig
    batch: BatchConfig = Field(default_factory=lambda: BatchConfig.model_validate({}))
    validation: ValidationConfig = Field(
        default_factory=lambda: ValidationConfig.model_validate({})
    )
    quarantine: QuarantineConfig = Field(
        default_factory=lambda: QuarantineConfig.model_validate({})
    )
    counters: list[CounterSpec] = Field(default_factory=list)
    counter_seed_from_influx: bool = Field(
        False,
        description="start counter state from the last raw values in InfluxDB, so the first "
        "increment after a restart is not lost; only for a single consumer per gateway "
        "(one process, or gateways partitioned with mqtt.frame_filter)",
    )
    json_topics: JsonTopicConfig | None = Field(None, description="per-tag JSON input; none = off")
    sparkplug: SparkplugConfig | None = Field(None, description="Sparkplug B input; none = off")
    quality_markers: bool = Field(
        True,
        description="write data_quality markers at the quality transitions of every input "
        "(Sparkplug deaths, JSON quality, frame quality), so the KPI engine books NO_DATA",
    )
    health: HealthConfig = Field(default_factory=lambda: HealthConfig.model_validate({}))
