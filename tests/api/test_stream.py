"""SSE through a real uvicorn on loopback: a state change arrives within 2 s of being written, and
a client that reconnects with Last-Event-ID loses nothing and receives nothing twice."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api import worked_example as wx
from tests.api.harness import ApiServer, api_server
from tests.conftest import InfluxDb, _influx_post
from zhizao.site import SiteModel

pytestmark = pytest.mark.integration
TAGS = f"area={wx.AREA},enterprise={wx.ENTERPRISE},line={wx.LINE},site={wx.SITE}"


@pytest.fixture
def live(tmp_path: Any, influx_server: Any) -> Iterator[tuple[ApiServer, InfluxDb]]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    _influx_post(influx_server.url, f'CREATE DATABASE "{name}"')
    db = InfluxDb(influx_server.url, name, influx_server)
    with api_server(
        tmp_path,
        influx_url=db.url,
        database=name,
        sites=[SiteModel.model_validate(wx.SITE_MODEL)],
        kpi={
            "heartbeat_s": 3600,
            "signals": {"state": [{"measurement": "machine_state", "field": "state"}]},
        },
    ) as server:
        yield server, db


def write_state(db: InfluxDb, machine: str, state: str, ts_ns: int) -> None:
    line = f'machine_state,{TAGS},machine={machine} state="{state}" {ts_ns}'
    r = httpx.post(f"{db.url}/write", params={"db": db.database, "precision": "ns"}, content=line)
    assert r.status_code == 204, r.text


class Listener:
    """Reads an SSE stream in a thread and records (arrival time, id, event, data)."""

    def __init__(self, server: ApiServer, last_id: str | None = None) -> None:
        self.events: list[tuple[float, str | None, str, dict[str, Any]]] = []
        self.stop = threading.Event()
        headers = {"Authorization": f"Bearer {server.tokens['engineer']}"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        self.url = f"{server.url}/api/v1/sites/{wx.SITE}/lines/{wx.LINE}/stream"
        self.headers = headers
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with httpx.stream("GET", self.url, headers=self.headers, timeout=30) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            ev: dict[str, str] = {}
            for line in r.iter_lines():
                if self.stop.is_set():
                    return
                if not line:
                    if "data" in ev:
                        self.events.append(
                            (
                                time.monotonic(),
                                ev.get("id"),
                                ev.get("event", ""),
                                json.loads(ev["data"]),
                            )
                        )
                    ev = {}
                elif not line.startswith(":"):
                    k, _, v = line.partition(": ")
                    ev[k] = v

    def states(self) -> list[tuple[float, str | None, dict[str, Any]]]:
        return [(t, i, d) for t, i, e, d in self.events if e == "state"]

    def wait_for(
        self, pred: Any, timeout_s: float = 10
    ) -> tuple[float, str | None, dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for e in self.states():
                if pred(e[2]):
                    return e
            time.sleep(0.02)
        raise AssertionError(f"no matching event in {timeout_s} s; got {self.states()}")

    def close(self) -> None:
        self.stop.set()


def test_state_change_arrives_within_2_s_and_resume_loses_nothing(
    live: tuple[ApiServer, InfluxDb],
) -> None:
    server, db = live
    now = time.time_ns()
    for m in ("M1", "M2", "M3"):
        write_state(db, m, "IDLE", now - 60 * 10**9)
    first = Listener(server)
    first.wait_for(lambda d: d["machine"] == "M3" and d["state"] == "IDLE")  # current states
    written_at = time.monotonic()
    write_state(db, "M1", "IN_CYCLE", time.time_ns())
    arrived, last_id, _ = first.wait_for(
        lambda d: d["machine"] == "M1" and d["state"] == "IN_CYCLE"
    )
    assert arrived - written_at < 2.0, f"state change took {arrived - written_at:.2f} s"
    # the client goes away; three changes happen meanwhile; it comes back with Last-Event-ID
    first.close()
    missed = []
    for m, s in (("M2", "SETUP"), ("M1", "DELAY"), ("M3", "IN_CYCLE")):
        time.sleep(0.01)
        ts = time.time_ns()
        write_state(db, m, s, ts)
        missed.append((m, s, ts))
    second = Listener(server, last_id=last_id)
    second.wait_for(lambda d: d["machine"] == "M3" and d["state"] == "IN_CYCLE")
    time.sleep(1.0)  # more polls: nothing may come twice
    got = [(d["machine"], d["state"], d["since_ns"]) for _, _, d in second.states()]
    assert got == missed, got
    ids = [i for _, i, _ in second.states()]
    assert last_id is not None and all(i is not None for i in ids)
    assert len(ids) == len(set(ids))
    assert all(int(str(i).split("-")[0]) > int(last_id.split("-")[0]) for i in ids)
    second.close()


def test_a_stream_does_not_block_other_requests(live: tuple[ApiServer, InfluxDb]) -> None:
    server, db = live
    write_state(db, "M1", "IDLE", time.time_ns())
    streams = [Listener(server) for _ in range(3)]
    time.sleep(0.5)
    t0 = time.monotonic()
    r = server.get("/api/v1/kpis", "engineer")
    assert r.status_code == 200
    assert time.monotonic() - t0 < 5  # generous: the point is that it answers at all
    for s in streams:
        s.close()
