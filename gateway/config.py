"""The gateway's one YAML file: sources, tag map, outbox, uplink, metrics.

Every model is a ``zhizao.config.StrictModel``: an unknown key or a wrong value fails at start-up
with the file, the key and what was expected (``load_gateway_config``). The source models live in
their folders (``gateway/sources/<type>/config.py``); ``sources:`` accepts the kinds registered in
``gateway.sources.registry`` and the names below are re-exported for the code that imports them
from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import Field, field_validator

from gateway.configbase import (
    ID_PATTERN,
    AssetSpec,
    BrokerConfig,
    SourceConfigBase,
    TagTargetConfig,
    ValueType,
    field_type,
    resolve_asset,
)
from gateway.sources.mqtt.config import MqttSourceConfig, MqttTopicConfig
from gateway.sources.opcua.config import OpcUaSecurityConfig, OpcUaSourceConfig, OpcUaTagConfig
from gateway.sources.registry import source_config_union
from gateway.sources.sparkplug.config import SparkplugMetricConfig, SparkplugSourceConfig
from ingest.influx.config import InfluxConfig
from zhizao.config import StrictModel, check_host, load_model
from zhizao.errors import ConfigError

__all__ = [
    "AssetSpec",
    "BrokerConfig",
    "GatewayConfig",
    "GatewayIdentityConfig",
    "InfluxUplinkConfig",
    "MetricsConfig",
    "MqttSourceConfig",
    "MqttTopicConfig",
    "MqttUplinkConfig",
    "OpcUaSecurityConfig",
    "OpcUaSourceConfig",
    "OpcUaTagConfig",
    "OutboxConfig",
    "SourceConfig",
    "SourceConfigBase",
    "SparkplugMetricConfig",
    "SparkplugSourceConfig",
    "TagTargetConfig",
    "ValueType",
    "field_type",
    "load_gateway_config",
    "resolve_asset",
]


class GatewayIdentityConfig(StrictModel):
    """Who this gateway is: the id appears in the uplink topic and in every frame."""

    id: str = Field(pattern=ID_PATTERN, description="gateway id, unique per site")
    enterprise: str = Field(pattern=ID_PATTERN)
    site: str = Field(pattern=ID_PATTERN)
    state_dir: Path = Field(
        default=Path("/var/lib/zhizao/gateway"),
        description="outbox, client certificates and status file live here",
    )


# one entry of ``sources:``: the registered models, discriminated by ``type``
if TYPE_CHECKING:
    SourceConfig: TypeAlias = SourceConfigBase
else:
    SourceConfig = source_config_union()

# ---------------------------------------------------------------- outbox, uplink, metrics


class OutboxConfig(StrictModel):
    """Durable store-and-forward (SQLite in WAL mode)."""

    path: Path = Path("outbox.sqlite")
    # FULL: every commit is fsynced (survives power loss). NORMAL: survives process crash and
    # SIGKILL; a power cut can lose the last commits, never corrupt the file.
    synchronous: Literal["full", "normal"] = "full"
    max_bytes: int = Field(default=1 << 30, ge=1 << 16)
    max_age_s: float = Field(default=7 * 86_400.0, gt=0)
    drop_policy: Literal["drop_oldest", "refuse_new"] = "drop_oldest"
    # backlog replay is capped so a long outage never starves live data
    replay_samples_per_s: float = Field(default=50_000.0, gt=0)
    live_window_s: float = Field(default=10.0, ge=0, description="chunks younger are 'live'")


class MqttUplinkConfig(StrictModel):
    type: Literal["mqtt"]
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    topic_prefix: str = "zhizao/v1"
    max_samples_per_frame: int = Field(default=10_000, ge=1)
    max_inflight_frames: int = Field(default=16, ge=1)
    ack_timeout_s: float = Field(default=30.0, gt=0)
    # "ingest": a frame leaves the outbox only when ingest confirmed it stored (end to end; a
    # broker PUBACK only marks it sent). "broker": the PUBACK deletes it (no ingest confirmation;
    # a broker that discards or loses a message loses its samples).
    confirmation: Literal["ingest", "broker"] = "ingest"
    confirm_timeout_s: float = Field(
        default=60.0, gt=0, description="sent frames without confirmation are re-sent after this"
    )
    max_unconfirmed_frames: int = Field(
        default=256, ge=1, description="frames sent (PUBACK or not) and not yet confirmed"
    )


class InfluxUplinkConfig(StrictModel):
    type: Literal["influx"]
    # a model, not a dict: its token and password are secret types (never in a repr or a log)
    influx: InfluxConfig = Field(description="ingest.influx.InfluxConfig keys")
    max_samples_per_write: int = Field(default=50_000, ge=1)


class MetricsConfig(StrictModel):
    enabled: bool = True
    host: str = "127.0.0.1"
    # docs/PORTS.md: each service has its own default, so they share one box
    port: int = Field(default=9131, ge=0, le=65535, description="0 = pick a free port")

    _host_ok = field_validator("host")(classmethod(lambda cls, v: check_host(v)))


class GatewayConfig(StrictModel):
    gateway: GatewayIdentityConfig
    sources: list[SourceConfig] = Field(min_length=1)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    uplink: MqttUplinkConfig | InfluxUplinkConfig = Field(discriminator="type")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[Any]) -> list[Any]:
        names = [s.name for s in sources]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"source names must be unique, repeated: {sorted(dup)}")
        return sources

    def state_path(self, path: Path) -> Path:
        """A configured path, relative ones under ``gateway.state_dir``."""
        return path if path.is_absolute() else self.gateway.state_dir / path


def load_gateway_config(path: str | Path) -> GatewayConfig:
    """Read and validate ``gateway.yaml``; errors name the file, the key and the expectation."""
    try:
        return load_model(GatewayConfig, path)
    except ConfigError:
        raise
    except ValueError as exc:  # pragma: no cover - pydantic wraps validator errors already
        raise ConfigError(str(exc), file=str(path)) from exc
