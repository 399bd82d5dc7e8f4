"""``InfluxConfig``: where and how the writer and the reader talk to InfluxDB."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from zhizao.config import StrictModel

__all__ = ["InfluxConfig"]

# InfluxDB 1.x/2.x refuse request bodies over 25 MB (http max-body-size); stay well below so a
# proxy or a gzip-inflated retry never hits the limit.
INFLUX_MAX_BODY_BYTES = 25_000_000


class InfluxConfig(StrictModel):
    """Connection and batching settings for one InfluxDB.

    ``api: v1`` writes to ``/write?db=&rp=`` (InfluxDB 1.x natively, 2.x/3.x through their
    v1-compatible API); ``api: v2`` writes to ``/api/v2/write?org=&bucket=`` through
    influxdb-client. Timestamps are always sent with ``precision=ns``: there is deliberately no
    precision setting, because InfluxDB 1.x silently misreads ``us``.
    """

    url: str = Field(default="http://127.0.0.1:8086", description="base URL, http:// or https://")
    api: Literal["v1", "v2"] = "v1"
    database: str = Field(default="", description="v1: database (also used by the InfluxQL reader)")
    retention_policy: str = Field(default="", description="v1: retention policy; empty = default")
    org: str = Field(default="", description="v2: organisation")
    bucket: str = Field(default="", description="v2: bucket")
    token: SecretStr | None = Field(
        default=None, description="API token (Authorization: Token ...)"
    )
    username: str | None = Field(default=None, description="user for basic auth (with password)")
    password: SecretStr | None = None
    timeout_s: float = Field(default=30.0, gt=0, description="per request, connect to last byte")
    max_lines_per_request: int = Field(default=10_000, ge=1, le=1_000_000)
    max_bytes_per_request: int = Field(default=10_000_000, ge=1_024, le=INFLUX_MAX_BODY_BYTES)
    concurrency: int = Field(default=4, ge=1, le=64, description="requests in flight at once")
    gzip: bool = Field(
        default=False, description="Content-Encoding: gzip (saves uplink bytes, costs CPU)"
    )
    max_retries: int = Field(
        default=8, ge=0, description="retries per request after the first attempt"
    )
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    create_database: bool = Field(
        default=False, description="v1: CREATE DATABASE when it is missing"
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an http:// or https:// URL with a host, e.g. http://127.0.0.1:8086")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_target(self) -> InfluxConfig:
        if self.api == "v1" and not self.database:
            raise ValueError("api v1 needs `database`")
        if self.api == "v2" and not self.bucket:
            raise ValueError("api v2 needs `bucket`")
        if (self.username is None) != (self.password is None):
            raise ValueError("`username` and `password` go together")
        if self.token is not None and self.username is not None:
            raise ValueError("use either `token` or `username`/`password`, not both")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("`backoff_max_s` must be >= `backoff_initial_s`")
        return self

    @property
    def host_port(self) -> str:
        """``host:port`` for messages (the port defaulted from the scheme)."""
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.hostname}:{port}"
