"""Fixtures that start real servers on free loopback ports with temporary data directories.

A missing server binary is a test failure, never a skip (``make setup`` installs them; CI=true
runs must prove the real thing). Session-scoped servers are shared; tests that restart or kill a
server ask ``server_factory`` for a private one.

``make test-fast`` (``-m "not integration"``) needs no server, and two rules keep it so: a test
that asks for a server fixture is marked ``integration`` whatever its own marks say, and a test
without the mark that starts a server in its body fails, naming the mark it lacks.
"""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from zhizao.localstack import (
    InfluxServer,
    LocalServer,
    MosquittoServer,
    PostgresServer,
    ServerMissing,
    VictoriaMetricsServer,
)

S = TypeVar("S", bound=LocalServer)
IN_CI = os.environ.get("CI", "").lower() == "true"
# the fixtures that start a server (db_url's PostgreSQL case carries the mark itself)
SERVER_FIXTURES = frozenset(
    {
        "influx_server",
        "influx_db",
        "mosquitto",
        "victoria_metrics",
        "postgres_server",
        "server_factory",
    }
)


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects: the mark must be there when it does
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _servers_only_in_integration_tests(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if request.node.get_closest_marker("integration") is not None:
        return
    nodeid = request.node.nodeid

    def refuse(server: LocalServer, *args: object, **kwargs: object) -> None:
        pytest.fail(
            f"{nodeid} starts {type(server).__name__} but is not marked integration: add "
            "@pytest.mark.integration (make test-fast runs without servers)",
            pytrace=False,
        )

    monkeypatch.setattr(LocalServer, "start", refuse)


def _start(server: S) -> S:
    try:
        server.start()
    except ServerMissing as exc:
        pytest.fail(f"{exc} (CI={os.environ.get('CI', '')})", pytrace=False)
    return server


@pytest.fixture(scope="session")
def influx_server() -> Iterator[InfluxServer]:
    server = _start(InfluxServer())
    yield server
    server.cleanup()


@dataclass
class InfluxDb:
    """A fresh database on the session's InfluxDB."""

    url: str
    database: str
    server: InfluxServer

    def query(self, q: str, **params: str) -> Any:
        import orjson

        qs = urllib.parse.urlencode({"db": self.database, "q": q, "epoch": "ns", **params})
        with urllib.request.urlopen(f"{self.url}/query?{qs}", timeout=30) as resp:
            return orjson.loads(resp.read())

    def count(self, measurement: str, field: str = "*") -> int:
        """Number of points in ``measurement`` (max over fields for ``*``)."""
        res = self.query(f'SELECT count({field}) FROM "{measurement}"')
        series = res["results"][0].get("series")
        if not series:
            return 0
        return int(max(v for v in series[0]["values"][0][1:] if v is not None))


def _influx_post(url: str, q: str) -> None:
    data = urllib.parse.urlencode({"q": q}).encode()
    with urllib.request.urlopen(f"{url}/query", data=data, timeout=30) as resp:
        resp.read()


@pytest.fixture
def influx_db(influx_server: InfluxServer) -> Iterator[InfluxDb]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    _influx_post(influx_server.url, f'CREATE DATABASE "{name}"')
    yield InfluxDb(influx_server.url, name, influx_server)
    if influx_server.running:
        _influx_post(influx_server.url, f'DROP DATABASE "{name}"')


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MosquittoServer]:
    server = _start(MosquittoServer())
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def victoria_metrics() -> Iterator[VictoriaMetricsServer]:
    server = _start(VictoriaMetricsServer())
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = _start(PostgresServer())
    yield server
    server.cleanup()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)],
)
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A fresh, empty database: a sqlite file in tmp_path, or a new database on the session's
    PostgreSQL (started only when a PostgreSQL case runs; dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'api.sqlite'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = server.create_database(name)
    yield url
    if server.running:
        server.drop_database(name)


@pytest.fixture
def server_factory() -> Iterator[Callable[[LocalServer], LocalServer]]:
    """Start private servers (for restart and kill tests); all are cleaned up after the test."""
    started: list[LocalServer] = []

    def start(server: LocalServer) -> LocalServer:
        started.append(server)
        return _start(server)

    yield start
    for server in started:
        server.cleanup()
