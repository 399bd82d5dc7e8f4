"""The local server launchers: real servers, private data directories, state that survives a
restart (tests that restart a broker or a database rely on it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from zhizao.localstack import InfluxServer, LocalServer, MosquittoServer, free_port


def _client(port: int, client_id: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def _wait(cond: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@pytest.mark.integration
@pytest.mark.parametrize("where", ["own directory", "under a private parent"])
def test_mosquitto_keeps_queued_messages_across_a_restart(
    where: str, server_factory: Callable[[LocalServer], LocalServer], tmp_path: Path
) -> None:
    """Also with its data directory below a parent of mode 0700 (the demo's and pytest's
    directories): started as root, mosquitto then cannot persist as its own user, and the
    sessions were lost on every restart while it only logged "Permission denied"."""
    if where == "own directory":
        broker = server_factory(MosquittoServer())
    else:
        tmp_path.chmod(0o700)
        broker = server_factory(MosquittoServer(data_dir=tmp_path / "mosquitto"))
    assert isinstance(broker, MosquittoServer)
    subscribed: list[int] = []
    sub = _client(broker.port, "persistent-sub")
    sub.on_subscribe = lambda *a: subscribed.append(1)
    sub.subscribe("zhizao/test", qos=1)
    assert _wait(lambda: bool(subscribed))
    sub.disconnect()
    sub.loop_stop()
    pub = _client(broker.port, "pub")
    for i in range(20):
        pub.publish("zhizao/test", str(i), qos=1).wait_for_publish(timeout=10)
    pub.disconnect()
    pub.loop_stop()
    time.sleep(1.5)  # autosave_interval 1 s: the queue is on disk
    broker.restart()
    got: list[bytes] = []
    again = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="persistent-sub", clean_session=False
    )
    again.on_message = lambda _c, _u, m: got.append(m.payload)
    again.connect("127.0.0.1", broker.port)
    again.loop_start()
    try:
        assert _wait(lambda: len(got) >= 20), f"only {len(got)} of 20 queued messages came back"
    finally:
        again.disconnect()
        again.loop_stop()
    assert sorted(int(x) for x in got) == list(range(20))
    assert "Permission denied" not in broker.log_tail(), broker.log_tail()


@pytest.mark.integration
def test_influxdb_keeps_data_across_a_kill(
    server_factory: Callable[[LocalServer], LocalServer],
) -> None:
    import urllib.parse
    import urllib.request

    import orjson

    db = server_factory(InfluxServer())
    assert isinstance(db, InfluxServer)
    post = lambda q: urllib.request.urlopen(  # noqa: E731
        f"{db.url}/query", data=urllib.parse.urlencode({"q": q}).encode(), timeout=10
    ).read()
    post("CREATE DATABASE k")
    body = b"".join(f"m v={i} {i}\n".encode() for i in range(1000))
    urllib.request.urlopen(
        urllib.request.Request(f"{db.url}/write?db=k&precision=ns", data=body), timeout=10
    ).read()
    db.restart(kill=True)
    q = urllib.parse.urlencode({"db": "k", "q": "SELECT count(v), sum(v) FROM m"})
    res = orjson.loads(urllib.request.urlopen(f"{db.url}/query?{q}", timeout=10).read())
    assert res["results"][0]["series"][0]["values"][0][1:] == [1000, sum(range(1000))]


def test_free_port_is_on_loopback_and_free() -> None:
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # would raise if taken


@pytest.mark.integration
def test_postgres_server_starts_accepts_a_connection_and_stops_cleanly() -> None:
    import os

    import psycopg

    from zhizao.localstack import PostgresServer

    server = PostgresServer()
    with server:
        assert server.url.startswith("postgresql+psycopg://zhizao@127.0.0.1:")
        assert server.url.endswith(f":{server.port}/zhizao")
        with psycopg.connect(
            host="127.0.0.1", port=server.port, user="zhizao", dbname="zhizao"
        ) as c:
            assert c.execute("SELECT 1 + 1").fetchone() == (2,)
        url = server.create_database("extra_db")
        assert url.endswith("/extra_db")
        # an open session must not keep the server from stopping (fast shutdown)
        held = psycopg.connect(host="127.0.0.1", port=server.port, user="zhizao", dbname="extra_db")
        assert server.proc is not None
        pid = server.proc.pid
        data_dir = server.data_dir
        server.stop()
        held.close()
        assert not server.running
        # the postmaster and its whole process group are gone
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
        assert _wait(lambda: not _port_open(server.port), 5.0)
    assert data_dir is not None and not data_dir.exists()


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0
