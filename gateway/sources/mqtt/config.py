"""Configuration model of the MQTT JSON source (``type: mqtt``); sample: ``sample.yaml``."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from gateway.configbase import (
    TEMPLATE_FIELD,
    AssetSpec,
    BrokerConfig,
    SourceConfigBase,
    ValueType,
)
from zhizao.config import StrictModel

__all__ = ["MqttSourceConfig", "MqttTopicConfig"]


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
        names = set(TEMPLATE_FIELD.findall(self.filter))
        for part in self.filter.split("/"):
            if "{" in part and not re.fullmatch(r"\{[a-z_][a-z0-9_]*\}", part):
                raise ValueError(f"a named segment must fill a whole level, got {part!r}")
        asset = self.asset if isinstance(self.asset, str) else "/".join(self.asset.values())
        for what in (asset, self.signal):
            unknown = set(TEMPLATE_FIELD.findall(what)) - names
            if unknown:
                raise ValueError(f"{what!r} uses {sorted(unknown)} not named in the filter")
        return self

    @property
    def subscription(self) -> str:
        """The filter as MQTT sees it (named segments become ``+``)."""
        return TEMPLATE_FIELD.sub("+", self.filter)


class MqttSourceConfig(SourceConfigBase):
    type: Literal["mqtt"]
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    topics: list[MqttTopicConfig] = Field(min_length=1)
