"""Configuration model of the Sparkplug B host source (``type: sparkplug``); sample: ``sample.yaml``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.configbase import AssetSpec, BrokerConfig, SourceConfigBase, TagTargetConfig

__all__ = ["SparkplugMetricConfig", "SparkplugSourceConfig"]


class SparkplugMetricConfig(TagTargetConfig):
    """One Sparkplug metric (by name, as in the BIRTH) of one edge node / device."""

    edge_node: str
    device: str | None = None
    metric: str


class SparkplugSourceConfig(SourceConfigBase):
    type: Literal["sparkplug"]
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    group_id: str = Field(default="+", description="Sparkplug group, '+' = all")
    host_id: str | None = Field(default=None, description="publish STATE as this primary host")
    metrics: list[SparkplugMetricConfig] = Field(default_factory=list)
    # metrics not in the list: 'auto' maps them to measurement 'sparkplug', 'drop' counts them
    unmapped: Literal["auto", "drop"] = "auto"
    unmapped_asset: AssetSpec | None = Field(
        default=None, description="asset for auto-mapped metrics; default enterprise/site"
    )
