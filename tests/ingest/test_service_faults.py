"""Fault injection with real servers: InfluxDB down under load, ingest SIGKILLed, two ingest
processes on one shared subscription with one killed mid-stream."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.ingest._support import (
    GatewayPublisher,
    ServiceThread,
    config_dict,
    make_config,
    make_frames,
    metric,
    per_machine,
    start_ingest,
    stop_proc,
    wait_until,
    write_config,
)
from zhizao.localstack import InfluxServer, LocalServer, MosquittoServer, free_port


class InfluxDbView:
    """``per_machine`` needs ``.query``; a private server's database seen the same way."""

    def __init__(self, url: str, database: str) -> None:
        self.url, self.database = url, database

    def query(self, q: str) -> Any:
        import urllib.parse

        qs = urllib.parse.urlencode({"db": self.database, "q": q, "epoch": "ns"})
        with urllib.request.urlopen(f"{self.url}/query?{qs}", timeout=30) as resp:
            return orjson.loads(resp.read())


def http_get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status), dict(orjson.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        return int(exc.code), dict(orjson.loads(exc.read()))


def healthz(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=5) as resp:
            return dict(orjson.loads(resp.read()))
    except urllib.error.HTTPError as exc:  # 503 still carries the JSON
        return dict(orjson.loads(exc.read()))


# how long InfluxDB stays down under load (the figure)
INFLUX_OUTAGE_S = 30.0


@pytest.mark.integration
def test_influx_outage_under_load_nothing_lost_or_duplicated(
    server_factory: Callable[[LocalServer], LocalServer], tmp_path: Path
) -> None:
    """InfluxDB stopped for 30 s (the issue's outage) while a gateway keeps publishing."""
    broker = server_factory(MosquittoServer())
    influx = server_factory(InfluxServer())
    assert isinstance(broker, MosquittoServer) and isinstance(influx, InfluxServer)
    receive_max = 25
    cfg = make_config(
        broker.port,
        influx.url,
        "outage",
        tmp_path,
        mqtt={"client_id": "outage-1", "receive_maximum": receive_max},
        influx={"create_database": True},
        health={"port": free_port(), "stale_write_s": 3},
    )
    db = InfluxDbView(influx.url, "outage")
    total = make_frames("gw-o", 200, 500)
    pub = GatewayPublisher(broker.port)
    with ServiceThread(cfg) as st:
        svc = st.service
        server = svc.start_health()
        assert server is not None
        url = f"http://127.0.0.1:{server.port}"
        pub.publish("zhizao/v1/s1/gw-o/frames", total.payloads[:20])
        wait_until(lambda: svc.acked == 20, 60, "first 20 frames stored")
        influx.stop()
        stopped_at = time.monotonic()
        publisher = threading.Thread(
            target=pub.publish, args=("zhizao/v1/s1/gw-o/frames", total.payloads[20:])
        )
        publisher.start()
        # while InfluxDB is down: nothing more is acknowledged, in-flight stays at Receive Maximum
        wait_until(
            lambda: svc.health()[1]["unacked_messages"] >= receive_max,
            60,
            "in-flight messages reach Receive Maximum",
        )
        acked_during = svc.acked
        max_inflight = 0
        while time.monotonic() - stopped_at < INFLUX_OUTAGE_S:
            max_inflight = max(max_inflight, svc.health()[1]["unacked_messages"])
            time.sleep(0.05)
        assert svc.acked == acked_during
        assert max_inflight == receive_max  # the broker holds the rest (backpressure)
        # holding data with no successful write for > stale_write_s: /healthz says 503
        status, body = http_get(url + "/healthz")
        assert status == 503 and body["status"] == "unhealthy"
        assert body["unacked_messages"] == receive_max
        assert metric(url, "zhizao_ingest_influx_errors_total") >= 2
        assert metric(url, "zhizao_ingest_inflight_messages") == receive_max
        assert metric(url, "zhizao_ingest_consumer_lag_seconds") > 3
        influx.start()
        publisher.join(120)
        wait_until(lambda: svc.acked == 200, 120, "all 200 frames stored after InfluxDB returned")
        status, body = http_get(url + "/healthz")
        assert status == 200 and body["unacked_messages"] == 0
        assert metric(url, "zhizao_ingest_messages_acked_total") == 200
        server.stop()
    pub.close()
    counts, sums = per_machine(db)
    assert counts == total.series_count  # nothing lost, nothing stored twice
    assert sums == total.series_sum
    assert sum(counts.values()) == 200 * 500


@pytest.mark.integration
def test_sigkill_then_restart_delivers_every_unacknowledged_message(
    server_factory: Callable[[LocalServer], LocalServer], influx_db: Any, tmp_path: Path
) -> None:
    broker = server_factory(MosquittoServer())
    assert isinstance(broker, MosquittoServer)
    port = free_port()
    # a long flush age keeps received messages unacknowledged for a while: the kill lands there
    cfg = config_dict(
        broker.port,
        influx_db.url,
        influx_db.database,
        tmp_path,
        batch={"flush_age_ms": 5000, "flush_points": 10_000_000, "flush_when_idle": False},
        health={"port": port},
    )
    path = write_config(tmp_path / "ingest.yaml", cfg)
    url = f"http://127.0.0.1:{port}"
    fs = make_frames("gw-k", 60, 200)
    proc = start_ingest(path, "kill-1", tmp_path / "ingest.log")
    pub = GatewayPublisher(broker.port)
    try:
        wait_until(lambda: _up(url), 60, "ingest /healthz")
        pub.publish("zhizao/v1/s1/gw-k/frames", fs.payloads[:20])
        wait_until(
            lambda: metric(url, "zhizao_ingest_messages_acked_total") == 20, 60, "first 20 stored"
        )
        pub.publish("zhizao/v1/s1/gw-k/frames", fs.payloads[20:40])
        wait_until(
            lambda: healthz(url)["unacked_messages"] == 20,
            30,
            "20 frames received, not yet acknowledged",
        )
        stop_proc(proc, kill=True)
        assert proc.returncode == -9
        stored_at_kill = sum(per_machine(influx_db)[0].values())
        assert stored_at_kill == 20 * 200  # the 20 in flight were not stored ...
        pub.publish("zhizao/v1/s1/gw-k/frames", fs.payloads[40:])  # ... and more arrive while down
        # restarted with normal batching (same client id: same session)
        normal = write_config(tmp_path / "normal.yaml", {**cfg, "batch": {"flush_age_ms": 100}})
        proc = start_ingest(normal, "kill-1", tmp_path / "ingest.log")
        wait_until(
            lambda: sum(per_machine(influx_db)[0].values()) == 60 * 200, 90, "all 60 frames stored"
        )
    finally:
        stop_proc(proc)
        pub.close()
    counts, sums = per_machine(influx_db)
    assert counts == fs.series_count and sums == fs.series_sum


def _up(url: str) -> bool:
    try:
        return bool(healthz(url)["mqtt_connected"])
    except OSError:
        return False


@pytest.mark.integration
def test_two_processes_share_the_load_and_survive_a_kill(
    server_factory: Callable[[LocalServer], LocalServer], influx_db: Any, tmp_path: Path
) -> None:
    """N processes, one group: each message is processed by one of them; after a SIGKILL the
    other keeps storing, and the killed one's session (its share queued by Mosquitto plus its
    unacknowledged messages) is delivered when it is restarted with the same client id."""
    broker = server_factory(MosquittoServer())
    assert isinstance(broker, MosquittoServer)
    ports = {"a": free_port(), "b": free_port()}
    paths = {}
    for name, port in ports.items():
        cfg = config_dict(
            broker.port,
            influx_db.url,
            influx_db.database,
            tmp_path,
            health={"port": port},
            quarantine={"path": str(tmp_path / f"q-{name}.jsonl")},
        )
        paths[name] = write_config(tmp_path / f"ingest-{name}.yaml", cfg)
    urls = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
    procs = {n: start_ingest(paths[n], f"shared-{n}", tmp_path / f"{n}.log") for n in ports}
    pub = GatewayPublisher(broker.port)
    first = make_frames("gw-s", 40, 250)
    rest = make_frames("gw-s", 160, 250, start_seq=40, offset=40 * 250)
    try:
        for url in urls.values():
            wait_until(lambda url=url: _up(url), 60, "ingest /healthz")
        pub.frames(first)
        wait_until(
            lambda: sum(per_machine(influx_db)[0].values()) == 40 * 250, 60, "first 40 frames"
        )

        def written() -> dict[str, float]:
            return {n: metric(u, "zhizao_ingest_samples_written_total") for n, u in urls.items()}

        # every message went to exactly one process ...
        wait_until(lambda: sum(written().values()) == 40 * 250, 30, "metrics of the first 40")
        assert all(w > 0 for w in written().values())  # ... and the load is split
        done = threading.Event()

        def stream() -> None:
            for i in range(0, len(rest.payloads), 10):
                pub.publish("zhizao/v1/s1/gw-s/frames", rest.payloads[i : i + 10])
                time.sleep(0.05)
            done.set()

        publisher = threading.Thread(target=stream)
        publisher.start()
        wait_until(
            lambda: metric(urls["a"], "zhizao_ingest_messages_acked_total") >= 60,
            60,
            "a mid-stream",
        )
        stop_proc(procs["a"], kill=True)
        b_at_kill = metric(urls["b"], "zhizao_ingest_samples_written_total")
        wait_until(
            lambda: metric(urls["b"], "zhizao_ingest_samples_written_total") > b_at_kill,
            60,
            "b takes over",
        )
        publisher.join(120)
        assert done.is_set()
        procs["a"] = start_ingest(paths["a"], "shared-a", tmp_path / "a.log")
        wait_until(
            lambda: sum(per_machine(influx_db)[0].values()) == 200 * 250, 120, "all 200 frames"
        )
    finally:
        for p in procs.values():
            stop_proc(p)
        pub.close()
    counts, sums = per_machine(influx_db)
    expected_counts = {m: first.series_count[m] + rest.series_count[m] for m in first.series_count}
    expected_sums = {m: first.series_sum[m] + rest.series_sum[m] for m in first.series_sum}
    assert counts == expected_counts and sums == expected_sums
