"""``zhizao api run``: the API under uvicorn, with the settings of ``api.yaml``."""

from __future__ import annotations

from pathlib import Path

import uvicorn

from api.app import create_app
from api.settings import load_settings
from zhizao.logs import configure_logging

__all__ = ["run_server"]


def run_server(
    config: str | Path | None,
    *,
    host: str | None = None,
    port: int | None = None,
    log_format: str | None = None,
) -> int:
    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = load_settings(config, **overrides)
    configure_logging(settings.log_level, log_format or settings.log_format, force=True)
    app = create_app(settings)  # refuses an unsafe configuration before binding
    # uvicorn leaves logging to us (its records reach the root handler, text or JSON); its access
    # log is off: the app logs one line per request with the route template, never headers
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,
        access_log=False,
        proxy_headers=settings.behind_tls_proxy,
        server_header=False,
    )
    return 0
