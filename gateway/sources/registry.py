"""The one list of source kinds: ``type:`` in gateway.yaml -> config model -> source class.

Each kind is a folder ``gateway/sources/<type>/`` holding ``config.py`` (its model),
``source.py`` (the code), ``sample.yaml`` (a commented entry of ``sources:``) and a section in
``gateway/README.md``; ``tests/gateway/test_source_convention.py`` checks all of it. The
gateway's configuration union (``gateway.config.SourceConfig``) and the app's construction of
sources are built from ``SOURCES``, so adding a source is its folder plus one line here.

The source class is named by import path and loaded when a gateway runs such a source, so
reading a configuration never imports a protocol stack (asyncua, protobuf).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol, Union, cast

from pydantic import Field

from gateway.configbase import SourceConfigBase
from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.sources.opcua.config import OpcUaSourceConfig
from gateway.sources.sparkplug.config import SparkplugSourceConfig

if TYPE_CHECKING:
    from gateway.sources.base import SampleSink, Source

__all__ = ["SOURCES", "SourceFactory", "SourceKind", "kind_of", "source_config_union"]

_FOLDER = Path(__file__).resolve().parent


class SourceFactory(Protocol):
    """What a source class's constructor takes (every source has this signature)."""

    def __call__(
        self,
        config: Any,
        sink: SampleSink,
        *,
        enterprise: str,
        site: str,
        gateway_id: str,
        state_dir: Path,
    ) -> Source: ...


@dataclass(frozen=True, slots=True)
class SourceKind:
    name: str  # the ``type:`` of a source in gateway.yaml, and its folder's name
    config: type[SourceConfigBase]
    factory: str  # "module:Class"

    @property
    def folder(self) -> Path:
        return _FOLDER / self.name

    @property
    def sample(self) -> Path:
        return self.folder / "sample.yaml"

    def load(self) -> SourceFactory:
        module, _, attr = self.factory.partition(":")
        return cast(SourceFactory, getattr(importlib.import_module(module), attr))


SOURCES: tuple[SourceKind, ...] = (
    SourceKind("opcua", OpcUaSourceConfig, "gateway.sources.opcua.source:OpcUaSource"),
    SourceKind("mqtt", MqttSourceConfig, "gateway.sources.mqtt.source:MqttSource"),
    SourceKind(
        "sparkplug", SparkplugSourceConfig, "gateway.sources.sparkplug.source:SparkplugHost"
    ),
)


def kind_of(config: SourceConfigBase) -> SourceKind:
    for kind in SOURCES:
        if isinstance(config, kind.config):
            return kind
    raise LookupError(f"no registered source kind for {type(config).__name__}")


def source_config_union() -> Any:
    """``sources:`` entries: the registered models, told apart by ``type`` (pydantic names the
    allowed types when one is unknown)."""
    models = tuple(kind.config for kind in SOURCES)
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007 - built at run time
