"""Configuration model of the OPC UA source (``type: opcua``); sample: ``sample.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.configbase import SourceConfigBase, TagTargetConfig
from zhizao.config import StrictModel

__all__ = ["OpcUaSecurityConfig", "OpcUaSourceConfig", "OpcUaTagConfig"]


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


class OpcUaSourceConfig(SourceConfigBase):
    type: Literal["opcua"]
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
    max_nodes_per_read: int = Field(
        default=0,
        ge=0,
        description="polled reads per call; 0 = read OperationLimits/MaxNodesPerRead",
    )
    watchdog_interval_s: float = Field(default=5.0, gt=0)
    request_timeout_s: float = Field(default=10.0, gt=0)
    session_timeout_s: float = Field(default=3600.0, gt=0)
    reconnect_min_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
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
