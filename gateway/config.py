"""The gateway's one YAML file: sources, tag map, outbox, uplink, metrics.

Every model is a ``zhizao.config.StrictModel``: an unknown key or a wrong value fails at start-up
with the file, the key and what was expected (``load_gateway_config``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from ingest.influx.config import InfluxConfig
from zhizao.assets import LEVELS, AssetPath
from zhizao.config import StrictModel, check_host, load_model
from zhizao.errors import ConfigError
from zhizao.model import FieldType

__all__ = [
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
    "SparkplugMetricConfig",
    "SparkplugSourceConfig",
    "load_gateway_config",
]

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
_SIGNAL = r"^[a-z][a-z0-9_]*$"
_TEMPLATE_FIELD = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
ValueType = Literal["float", "int", "bool", "string"]


def field_type(name: str) -> FieldType:
    return FieldType.parse(name)


class GatewayIdentityConfig(StrictModel):
    """Who this gateway is: the id appears in the uplink topic and in every frame."""

    id: str = Field(pattern=_ID, description="gateway id, unique per site")
    enterprise: str = Field(pattern=_ID)
    site: str = Field(pattern=_ID)
    state_dir: Path = Field(
        default=Path("/var/lib/zhizao/gateway"),
        description="outbox, client certificates and status file live here",
    )


AssetSpec = str | dict[str, str]


def resolve_asset(spec: AssetSpec, enterprise: str, site: str) -> AssetPath:
    """An asset from config: a positional path ``enterprise/site/area/line/cell/machine`` or a
    mapping of levels (``{area: hall1, line: line1, machine: cnc-01}``, enterprise and site
    default to the gateway's). The mapping form lets a machine hang directly under a line."""
    if isinstance(spec, str):
        return AssetPath.parse(spec)
    levels = {"enterprise": enterprise, "site": site, **spec}
    unknown = set(levels) - set(LEVELS)
    if unknown:
        raise ConfigError(
            f"unknown asset level(s) {sorted(unknown)}", expected=f"levels {', '.join(LEVELS)}"
        )
    return AssetPath(**levels)


class TagTargetConfig(StrictModel):
    """Where a value lands: ISA-95 asset, measurement, signal (lower_snake with unit) and type."""

    asset: AssetSpec = Field(
        description="enterprise/site/area/line/cell/machine, or a mapping of levels"
    )
    measurement: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    signal: str = Field(pattern=_SIGNAL, description="field name, unit in the name: power_kw")
    type: ValueType = "float"
    unit: str | None = Field(default=None, description="informational, e.g. kW, rpm")

    @field_validator("asset")
    @classmethod
    def _asset_ok(cls, value: AssetSpec) -> AssetSpec:
        text = value if isinstance(value, str) else "/".join(value.values())
        if "{" not in text:
            try:
                resolve_asset(value, "enterprise", "site")
            except ConfigError as exc:
                raise ValueError(str(exc)) from exc
        return value


# ---------------------------------------------------------------- OPC UA


class OpcUaSecurityConfig(StrictModel):
    """Basic256Sha256 SignAndEncrypt unless the integrator explicitly chooses otherwise."""

    policy: Literal["Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss", "None"] = (
        "Basic256Sha256"
    )
    mode: Literal["SignAndEncrypt", "Sign", "None"] = "SignAndEncrypt"
    # a relative path is under gateway.state_dir; the client certificate is created on first run
    cert_dir: Path = Path("pki")
    trust_dir: Path | None = Field(
        default=None, description="server certificates (DER or PEM) this gateway trusts"
    )
    server_fingerprint_sha256: str | None = Field(
        default=None, description="pinned SHA-256 of the server certificate (hex, ':' allowed)"
    )
    username: str | None = None
    password: SecretStr | None = None
    application_uri: str = "urn:zhizao:gateway"

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaSecurityConfig:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError("policy None goes with mode None (and only with it)")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


class OpcUaTagConfig(TagTargetConfig):
    """One OPC UA variable mapped to one series."""

    node: str = Field(description='node id, e.g. "ns=2;s=Machine1.SpindleSpeed"')
    mode: Literal["subscribe", "poll"] = "subscribe"
    poll_interval_s: float = Field(default=1.0, gt=0)


class OpcUaSourceConfig(StrictModel):
    type: Literal["opcua"]
    name: str = Field(pattern=_ID)
    endpoint: str = Field(pattern=r"^opc\.tcp://")
    security: OpcUaSecurityConfig = Field(default_factory=OpcUaSecurityConfig)
    publishing_interval_ms: float = Field(default=100.0, gt=0)
    sampling_interval_ms: float = Field(default=0.0, ge=0, description="0 = fastest practical")
    # server-side queue per item: changes between two publishes are kept, not overwritten
    queue_size: int = Field(default=100, ge=1)
    max_notifications_per_publish: int = Field(default=0, ge=0, description="0 = unlimited")
    max_items_per_call: int = Field(
        default=0, ge=0, description="0 = read OperationLimits/MaxMonitoredItemsPerCall"
    )
    watchdog_interval_s: float = Field(default=5.0, gt=0)
    request_timeout_s: float = Field(default=10.0, gt=0)
    session_timeout_s: float = Field(default=3600.0, gt=0)
    reconnect_min_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    flush_interval_s: float = Field(default=0.2, gt=0, description="batch window into the outbox")
    tags: list[OpcUaTagConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _trust_anchor(self) -> OpcUaSourceConfig:
        sec = self.security
        if sec.policy != "None" and sec.trust_dir is None and not sec.server_fingerprint_sha256:
            raise ValueError(
                "security: a secured session needs trust_dir or server_fingerprint_sha256 "
                "to trust the server"
            )
        return self

    @field_validator("tags")
    @classmethod
    def _unique_nodes(cls, tags: list[OpcUaTagConfig]) -> list[OpcUaTagConfig]:
        seen: set[str] = set()
        for tag in tags:
            if tag.node in seen:
                raise ValueError(f"node {tag.node!r} is mapped twice")
            seen.add(tag.node)
        return tags


# ---------------------------------------------------------------- MQTT


class BrokerConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str | None = Field(default=None, description="default: zhizao-<gateway>-<source>")
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    ca_file: Path | None = None
    keepalive_s: int = Field(default=30, ge=5)
    # a persistent session keeps QoS 1 messages for us while we are away
    clean_start: bool = False
    session_expiry_s: int = Field(default=86_400, ge=0)
    reconnect_min_s: int = Field(default=1, ge=1)
    reconnect_max_s: int = Field(default=30, ge=1)

    _host_ok = field_validator("host")(classmethod(lambda cls, v: check_host(v)))


class MqttTopicConfig(StrictModel):
    """A topic filter with named segments: ``plant/{line}/{machine}/{signal}``.

    ``{name}`` matches one level (like ``+``) and can be used in ``asset`` and ``signal``;
    a trailing ``#`` matches the rest.
    """

    filter: str
    qos: Literal[0, 1, 2] = 1
    asset: AssetSpec
    measurement: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    signal: str = Field(description="signal name or template, e.g. '{signal}'")
    type: ValueType = "float"
    unit: str | None = None
    value_path: str = Field(default="value", description="dotted path in the JSON payload")
    timestamp_path: str | None = Field(default="timestamp_ms", description="None = arrival time")
    timestamp_unit: Literal["s", "ms", "us", "ns"] = "ms"

    @model_validator(mode="after")
    def _templates(self) -> MqttTopicConfig:
        names = set(_TEMPLATE_FIELD.findall(self.filter))
        for part in self.filter.split("/"):
            if "{" in part and not re.fullmatch(r"\{[a-z_][a-z0-9_]*\}", part):
                raise ValueError(f"a named segment must fill a whole level, got {part!r}")
        asset = self.asset if isinstance(self.asset, str) else "/".join(self.asset.values())
        for what in (asset, self.signal):
            unknown = set(_TEMPLATE_FIELD.findall(what)) - names
            if unknown:
                raise ValueError(f"{what!r} uses {sorted(unknown)} not named in the filter")
        return self

    @property
    def subscription(self) -> str:
        """The filter as MQTT sees it (named segments become ``+``)."""
        return _TEMPLATE_FIELD.sub("+", self.filter)


class MqttSourceConfig(StrictModel):
    type: Literal["mqtt"]
    name: str = Field(pattern=_ID)
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    topics: list[MqttTopicConfig] = Field(min_length=1)
    flush_interval_s: float = Field(default=0.2, gt=0)


class SparkplugMetricConfig(TagTargetConfig):
    """One Sparkplug metric (by name, as in the BIRTH) of one edge node / device."""

    edge_node: str
    device: str | None = None
    metric: str


class SparkplugSourceConfig(StrictModel):
    type: Literal["sparkplug"]
    name: str = Field(pattern=_ID)
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    group_id: str = Field(default="+", description="Sparkplug group, '+' = all")
    host_id: str | None = Field(default=None, description="publish STATE as this primary host")
    metrics: list[SparkplugMetricConfig] = Field(default_factory=list)
    # metrics not in the list: 'auto' maps them to measurement 'sparkplug', 'drop' counts them
    unmapped: Literal["auto", "drop"] = "auto"
    unmapped_asset: AssetSpec | None = Field(
        default=None, description="asset for auto-mapped metrics; default enterprise/site"
    )
    flush_interval_s: float = Field(default=0.2, gt=0)


SourceConfig = Annotated[
    OpcUaSourceConfig | MqttSourceConfig | SparkplugSourceConfig, Field(discriminator="type")
]

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
    port: int = Field(default=9108, ge=0, le=65535, description="0 = pick a free port")

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
