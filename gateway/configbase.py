"""Configuration pieces every part of the gateway shares: identifiers, assets, tag targets,
the MQTT broker and the keys every source has (``SourceConfigBase``).

They live apart from ``gateway.config`` so that each source folder's config model can use them
while ``gateway.config`` builds its union of source models from the registry (no import cycle).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from zhizao.assets import LEVELS, AssetPath
from zhizao.config import StrictModel, check_host
from zhizao.errors import ConfigError
from zhizao.model import FieldType

__all__ = [
    "ID_PATTERN",
    "SIGNAL_PATTERN",
    "TEMPLATE_FIELD",
    "AssetSpec",
    "BrokerConfig",
    "SourceConfigBase",
    "TagTargetConfig",
    "ValueType",
    "field_type",
    "resolve_asset",
]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
SIGNAL_PATTERN = r"^[a-z][a-z0-9_]*$"
TEMPLATE_FIELD = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
ValueType = Literal["float", "int", "bool", "string"]


def field_type(name: str) -> FieldType:
    return FieldType.parse(name)


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
    signal: str = Field(
        pattern=SIGNAL_PATTERN, description="field name, unit in the name: power_kw"
    )
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


class SourceConfigBase(StrictModel):
    """Keys of every source; a source's model narrows ``type`` to its registry name."""

    type: str
    name: str = Field(pattern=ID_PATTERN, description="unique among the gateway's sources")
    flush_interval_s: float = Field(default=0.2, gt=0, description="batch window into the outbox")


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
