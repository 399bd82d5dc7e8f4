"""A real API server for tests: uvicorn on a free loopback port, in a thread, with its own
database, pointed at a test InfluxDB database; tokens for every role."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml

from api.app import create_app
from api.db.session import make_engine, make_sessionmaker, upgrade
from api.masterdata import import_site
from api.settings import load_settings
from api.tokens import create_token
from zhizao.localstack import free_port
from zhizao.site import SiteModel

__all__ = ["ApiServer", "api_server"]


@dataclass
class ApiServer:
    url: str
    database_url: str
    tokens: dict[str, str] = field(default_factory=dict)  # name -> secret
    influx_url: str = ""
    influx_database: str = ""

    def client(self, token: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[token]}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)

    def get(self, path: str, token: str = "admin", **params: Any) -> httpx.Response:
        with self.client(token) as c:
            return c.get(path, params=params)

    def json(self, path: str, token: str = "admin", **params: Any) -> Any:
        r = self.get(path, token, **params)
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:500]}"
        return r.json()


def seed(database_url: str, sites: list[SiteModel], foreign: str | None = None) -> dict[str, str]:
    """Import the sites and create one token per role (scoped tokens on the first site; a
    ``foreign_*`` pair on ``foreign``)."""
    upgrade(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    tokens: dict[str, str] = {}
    with sessions() as s:
        for model in sites:
            import_site(s, model)
        s.commit()
        own = sites[0].site
        for role, site in (
            ("engineer", own),
            ("factory_admin", own),
            ("commission", None),
            ("admin", None),
        ):
            secret, _ = create_token(s, name=role, role=role, site=site, expires_at=None)  # type: ignore[arg-type]
            tokens[role] = secret
        if foreign is not None:
            for role in ("engineer", "factory_admin"):
                secret, _ = create_token(
                    s, name=f"foreign_{role}", role=role, site=foreign, expires_at=None
                )  # type: ignore[arg-type]
                tokens[f"foreign_{role}"] = secret
        s.commit()
    engine.dispose()
    return tokens


@contextmanager
def api_server(
    tmp: Path,
    *,
    influx_url: str,
    database: str,
    sites: list[SiteModel],
    kpi: dict[str, Any] | None = None,
    foreign: str | None = None,
    database_url: str | None = None,
    kpi_config_path: Path | None = None,
    kpi_cache_s: float = 0.0,
) -> Iterator[ApiServer]:
    db_url = database_url or f"sqlite:///{tmp / 'api.sqlite'}"
    tokens = seed(db_url, sites, foreign)
    kpi_path = kpi_config_path
    if kpi is not None:
        kpi_path = tmp / "kpi.yaml"
        kpi_path.write_text(yaml.safe_dump({"sites": ["(database)"], **kpi}), encoding="utf-8")
    port = free_port()
    settings = load_settings(
        None,
        environment="development",
        host="127.0.0.1",
        port=port,
        database_url=db_url,
        influx={"url": influx_url, "database": database, "timeout_s": 5.0},
        kpi_config=kpi_path,
        limits={"stream_poll_s": 0.2, "stream_keepalive_s": 2.0},
        # off by default: the tests read what was just written (one test turns it on)
        kpi_cache_s=kpi_cache_s,
    )
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API server did not start")
        time.sleep(0.05)
    try:
        yield ApiServer(f"http://127.0.0.1:{port}", db_url, tokens, influx_url, database)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
