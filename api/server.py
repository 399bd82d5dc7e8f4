"""``zhizao api run``: the API under uvicorn, with the settings of ``api.yaml``."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn

from api.app import create_app
from api.settings import load_settings

__all__ = ["run_server"]


def run_server(
    config: str | Path | None, *, host: str | None = None, port: int | None = None
) -> int:
    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = load_settings(config, **overrides)
    logging.getLogger().setLevel(settings.log_level)
    app = create_app(settings)  # refuses an unsafe configuration before binding
    # uvicorn's access log prints query strings, never headers: tokens stay out of the log
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        proxy_headers=settings.behind_tls_proxy,
        server_header=False,
    )
    return 0
