"""``api.yaml``: the API service's typed settings (a YAML file, overridden by environment).

Every key can be set in the file or as ``ZHIZAO_API_<KEY>`` (nested keys with ``__``, e.g.
``ZHIZAO_API_INFLUX__URL``); the environment wins, so secrets need not be written to disk.
Outside ``environment: development`` an unsafe configuration is refused at start-up: an empty or
example bootstrap secret, a database password left at an example value. Binding beyond loopback
without a TLS-terminating proxy in front is warned about.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url

from ingest.influx import InfluxConfig
from zhizao.config import StrictModel
from zhizao.errors import ConfigError

__all__ = ["DEFAULT_PORT", "ApiSettings", "LimitsConfig", "load_settings"]

log = logging.getLogger(__name__)
# gateway 9131, ingest 9132, KPI engine 9133 (docs/PORTS.md): one box can run everything
DEFAULT_PORT = 9130
EXAMPLE_SECRETS = frozenset(
    {"", "change-me", "changeme", "example", "secret", "password", "admin", "zhizao"}
)
MIN_BOOTSTRAP_CHARS = 32
MIN_PORTAL_SECRET_CHARS = 32


class LimitsConfig(StrictModel):
    """How long a range each grouping may ask for (a year of hours is 8,760 rows per machine)."""

    hour_max_days: float = Field(default=93, gt=0)
    shift_max_days: float = Field(default=400, gt=0)
    day_max_days: float = Field(default=3700, gt=0)
    timeline_max_days: float = Field(default=31, gt=0)
    # SSE: how often the stream looks for new data, and the keep-alive comment interval
    stream_poll_s: float = Field(default=0.5, gt=0)
    stream_keepalive_s: float = Field(default=15.0, gt=0)


class ApiSettings(BaseSettings):
    """The API service's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="ZHIZAO_API_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    environment: Literal["development", "production"] = "production"
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535)
    # SQLAlchemy URL: sqlite:///path (embedded default) or postgresql+psycopg://user:pw@host/db
    database_url: SecretStr = SecretStr("sqlite:///var/api.sqlite")
    # queries time out well before a client gives up: InfluxDB down answers 503, never hangs
    influx: InfluxConfig = InfluxConfig(database="zhizao", timeout_s=10.0)
    # the KPI engine's kpi.yaml (signals, heartbeat, micro-stop threshold, flag limits); None =
    # the defaults, which match what the engine uses without a configuration
    kpi_config: Path | None = None
    # an admin token accepted from the first start (stored hashed); prefer `zhizao api token create`
    bootstrap_admin_token: SecretStr | None = None
    # a reverse proxy terminates TLS in front of this service (silences the plain-HTTP warning)
    behind_tls_proxy: bool = False
    limits: LimitsConfig = LimitsConfig()
    # KPI component answers are reused this long (0 = never); raw signals are never cached
    kpi_cache_s: float = Field(default=5.0, ge=0, le=300)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # signs the portal's session cookies and form tokens (HMAC-SHA256); None = a random key made
    # at start and kept in memory (sessions then end when the service restarts)
    portal_secret: SecretStr | None = None
    # text (for a terminal) or json (one object per line, for journald/Loki/Elasticsearch);
    # None = $ZHIZAO_LOG_FORMAT, else text. `zhizao api run --log-format` wins over both
    log_format: Literal["text", "json"] | None = None

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        try:
            parsed = make_url(url)
        except Exception as exc:  # sqlalchemy raises ArgumentError with a terse text
            raise ValueError(
                "not a database URL (sqlite:///file or postgresql+psycopg://...)"
            ) from exc
        if parsed.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError(
                f"database {parsed.get_backend_name()!r} is not supported (sqlite, postgresql)"
            )
        return value

    @field_validator("portal_secret")
    @classmethod
    def _check_portal_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_PORTAL_SECRET_CHARS:
            raise ValueError(
                f"give at least {MIN_PORTAL_SECRET_CHARS} random characters "
                "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))') or remove it"
            )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the environment overrides the file (the file's values arrive as init kwargs)
        return env_settings, init_settings

    # -- safety ------------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Why this configuration is unsafe outside development (empty when it is fine)."""
        out: list[str] = []
        if self.bootstrap_admin_token is not None:
            secret = self.bootstrap_admin_token.get_secret_value()
            if secret.lower() in EXAMPLE_SECRETS or len(secret) < MIN_BOOTSTRAP_CHARS:
                out.append(
                    "bootstrap_admin_token is empty, an example value or shorter than "
                    f"{MIN_BOOTSTRAP_CHARS} characters: set a random secret "
                    "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))') or remove it "
                    "and create tokens with `zhizao api token create`"
                )
        url = make_url(self.database_url.get_secret_value())
        if url.password is not None and url.password.lower() in EXAMPLE_SECRETS:
            out.append(
                "the database password in database_url is an example value: set the real one "
                "(ZHIZAO_API_DATABASE_URL keeps it out of the file)"
            )
        return out

    def check_safe(self) -> None:
        """Refuse an unsafe configuration outside development; warn about plain HTTP off loopback."""
        problems = self.problems()
        if problems and self.environment != "development":
            raise ConfigError(
                problems[0],
                key="bootstrap_admin_token" if "bootstrap" in problems[0] else "database_url",
            )
        for p in problems:
            log.warning("unsafe configuration (accepted in development): %s", p)
        if not _is_loopback(self.host) and not self.behind_tls_proxy:
            log.warning(
                "the API listens on %s without TLS: tokens would cross the network in clear; put a "
                "TLS-terminating reverse proxy in front and set behind_tls_proxy: true",
                self.host,
            )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(path: str | Path | None = None, **overrides: Any) -> ApiSettings:
    """Settings from ``path`` (YAML) and the environment; errors name the file and the key."""
    data: dict[str, Any] = {}
    file: str | None = None
    if path is not None:
        p = Path(path)
        file = str(p)
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read configuration file: {exc.strerror}", file=file) from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"not valid YAML: {exc}", file=file) from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError("the file must hold a mapping of keys", file=file)
        data = dict(loaded or {})
        kpi = data.get("kpi_config")
        if isinstance(kpi, str) and not Path(kpi).is_absolute():
            data["kpi_config"] = str(p.parent / kpi)
    data.update(overrides)
    try:
        return ApiSettings(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        more = f" (+{exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        if first["type"] == "extra_forbidden":
            msg = f"unknown key {key!r}"
        elif first["type"] == "missing":
            msg = f"missing key {key!r}"
        else:
            msg = f"invalid value for {key!r}: {first['msg']}"
        raise ConfigError(msg + more, file=file, key=key or None) from exc
