"""Helpers for the ingest tests: configs, a gateway-like publisher, InfluxDB checks, subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.config import IngestConfig
from ingest.frames import CONTENT_TYPE, FrameCodec, GatewayFrame, frame_topic
from zhizao.config import parse_model
from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable

REPO = Path(__file__).resolve().parents[2]
BASE_TS_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def config_dict(
    mqtt_port: int, influx_url: str, database: str, tmp: Path, **sections: Any
) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "mqtt": {
            "host": "127.0.0.1",
            "port": mqtt_port,
            "client_id": "ingest-test-1",
            "group": "ingest",
        },
        "influx": {
            "url": influx_url,
            "database": database,
            "max_retries": 1,
            "backoff_initial_s": 0.05,
            "backoff_max_s": 0.2,
            "timeout_s": 5,
        },
        "batch": {
            "flush_points": 20_000,
            "flush_age_ms": 100,
            "retry_initial_s": 0.1,
            "retry_max_s": 0.5,
        },
        "validation": {"max_past_s": 0},
        "quarantine": {"path": str(tmp / "quarantine.jsonl"), "fsync": False},
        "health": {"port": 0},
    }
    for name, values in sections.items():
        cfg[name] = {**cfg.get(name, {}), **values} if isinstance(values, dict) else values
    return cfg


def make_config(*args: Any, **kwargs: Any) -> IngestConfig:
    return parse_model(IngestConfig, config_dict(*args, **kwargs))


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


@dataclass
class FrameSet:
    """Deterministic frames: sample k of the whole set has ts BASE + k ms and value k / 2."""

    gateway: str
    keys: list[SeriesKey]
    payloads: list[bytes]
    series_count: dict[str, int]  # machine -> samples
    series_sum: dict[str, float]  # machine -> sum of values


def make_frames(
    gateway: str,
    n_frames: int,
    per_frame: int,
    machines: int = 8,
    start_seq: int = 0,
    offset: int = 0,
) -> FrameSet:
    keys = [
        SeriesKey.make(
            "spindle",
            {"site": "s1", "gateway": gateway, "machine": f"m{i}"},
            "speed_rpm",
            FieldType.FLOAT,
        )
        for i in range(machines)
    ]
    table = SeriesTable.of(keys)
    payloads = []
    count: dict[str, int] = {}
    total: dict[str, float] = {}
    for f in range(n_frames):
        k = offset + f * per_frame + np.arange(per_frame, dtype=np.int64)
        series = (k % machines).astype(np.int32)
        values = k / 2.0
        batch = Batch.build(table, series, BASE_TS_NS + k * 1_000_000, values)
        payloads.append(
            FrameCodec.encode(GatewayFrame(gateway, start_seq + f, keys, batch, time.time_ns()))
        )
        for m in range(machines):
            sel = series == m
            count[f"m{m}"] = count.get(f"m{m}", 0) + int(sel.sum())
            total[f"m{m}"] = total.get(f"m{m}", 0.0) + float(values[sel].sum())
    return FrameSet(gateway, keys, payloads, count, total)


class GatewayPublisher:
    """Publishes frames QoS 1 with the content type, like the gateway's uplink."""

    def __init__(self, port: int, client_id: str = "test-gateway") -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(
        self, topic: str, payloads: list[bytes], content_type: str | None = CONTENT_TYPE
    ) -> None:
        infos = []
        for p in payloads:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if content_type:
                props.ContentType = content_type
            infos.append(self.client.publish(topic, p, qos=1, properties=props))
        for info in infos:
            info.wait_for_publish(timeout=60)
            assert info.is_published()

    def frames(self, fs: FrameSet, site: str = "s1") -> None:
        self.publish(frame_topic(site, fs.gateway), fs.payloads)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def per_machine(
    db: Any, measurement: str = "spindle", field: str = "speed_rpm", where: str = ""
) -> tuple[dict[str, int], dict[str, float]]:
    res = db.query(
        f'SELECT count("{field}"), sum("{field}") FROM "{measurement}" {where} GROUP BY "machine"'
    )
    counts: dict[str, int] = {}
    sums: dict[str, float] = {}
    for s in res["results"][0].get("series", []) or []:
        m = s["tags"]["machine"]
        count, total = s["values"][0][1:3]
        if count:  # a group without points in range answers null
            counts[m] = int(count)
            sums[m] = float(total)
    return counts, sums


def wait_until(pred: Callable[[], bool], timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def start_ingest(config_path: Path, client_id: str, log_path: Path) -> subprocess.Popen[bytes]:
    """``zhizao ingest run`` as a real process (so SIGKILL is real)."""
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zhizao.cli",
            "ingest",
            "run",
            "-c",
            str(config_path),
            "--client-id",
            client_id,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env=env,
    )
    log.close()
    return proc


def stop_proc(proc: subprocess.Popen[bytes], kill: bool = False) -> None:
    if proc.poll() is None:
        if kill:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def iter_chunks(items: list[bytes], n: int) -> Iterator[list[bytes]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


class ServiceThread:
    """An in-process ``IngestService`` on its own event loop thread."""

    def __init__(self, config: IngestConfig) -> None:
        import asyncio
        import threading

        from ingest.service import IngestService

        self.service = IngestService(config)
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self._loop.run_until_complete(self.service.run(self._stop))
            except BaseException as exc:
                self.error = exc

        self._thread = threading.Thread(target=run, name="ingest-service", daemon=True)

    def __enter__(self) -> ServiceThread:
        self._thread.start()
        wait_until(
            lambda: (
                self.error is not None
                or (self.service.consumer is not None and self.service.consumer.subscribed.is_set())
            ),
            30,
            "ingest subscribed (SUBACK)",
        )
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        self._loop.close()
        assert not self._thread.is_alive()


def metric(url: str, name: str) -> float:
    """Sum of a Prometheus metric's samples (all label sets) from a /metrics endpoint."""
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total
