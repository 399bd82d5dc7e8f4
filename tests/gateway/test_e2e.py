"""The whole gateway process (``zhizao gateway run``) under faults: broker outage, SIGKILL.

Devices publish JSON to a device broker; the gateway stores into its outbox and sends frames to a
central broker, where a persistent QoS 1 subscriber decodes them with the ingest frame codec.
Every published sample must arrive; duplicates are allowed (at-least-once) and removed by series
and timestamp, as InfluxDB does. The subscriber confirms every frame it decoded the way ingest
does (``ingest.confirm``), so the gateway's outbox drains.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.confirm import confirm_topic, encode_confirmation
from ingest.frames import FrameCodec, parse_frame_topic
from tests.gateway.helpers import REPO
from zhizao.localstack import LocalServer, MosquittoServer, stop_process_group

pytestmark = pytest.mark.integration
TS0_MS = 1_767_225_600_000


class CentralSubscriber:
    """Persistent-session QoS 1 subscriber on the central broker; decodes every frame."""

    def __init__(self, port: int) -> None:
        self.samples: list[tuple[str, int, float]] = []  # (machine, ts_ns, value) in arrival order
        self.frames = 0
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"central-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("zhizao/v1/+/+/frames", qos=1)
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        frame = FrameCodec.decode(msg.payload)
        ids = parse_frame_topic(msg.topic)
        assert ids is not None
        c.publish(
            confirm_topic(ids[0], frame.gateway_id),
            encode_confirmation(frame.gateway_id, frame.session, [frame.seq], time.time_ns()),
            qos=1,
            retain=True,
        )
        machines = [k.tag_dict.get("machine", "") for k in frame.table_keys]
        meas = [k.measurement for k in frame.table_keys]
        b = frame.batch
        with self.lock:
            self.frames += 1
            for s, ts, v in zip(
                b.series.tolist(), b.ts_ns.tolist(), b.value_f64.tolist(), strict=True
            ):
                if meas[s] == "energy":
                    self.samples.append((machines[s], ts, v))

    def unique(self) -> dict[str, list[tuple[int, float]]]:
        """Per machine, first arrival of each timestamp, in arrival order."""
        out: dict[str, list[tuple[int, float]]] = {}
        seen: set[tuple[str, int]] = set()
        with self.lock:
            for machine, ts, v in self.samples:
                if (machine, ts) in seen:
                    continue
                seen.add((machine, ts))
                out.setdefault(machine, []).append((ts, v))
        return out

    def count_unique(self) -> int:
        return sum(len(v) for v in self.unique().values())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class DevicePublisher(threading.Thread):
    """Meters publishing ``{"timestamp_ms", "value"}`` at a steady rate, QoS 1."""

    def __init__(self, port: int, meters: int, rate_per_s: float) -> None:
        super().__init__(daemon=True)
        self.meters, self.rate = meters, rate_per_s
        self.sent = 0
        self.last: mqtt.MQTTMessageInfo | None = None
        self.stop_flag = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"meters-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def run(self) -> None:
        k = 0
        start = time.monotonic()
        while not self.stop_flag.is_set():
            for m in range(self.meters):
                body = orjson.dumps({"timestamp_ms": TS0_MS + k, "value": float(k)})
                self.last = self.client.publish(f"plant/hall/meter{m:02d}/power_kw", body, qos=1)
            self.sent += self.meters
            k += 1
            delay = start + k / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def finish(self) -> int:
        self.stop_flag.set()
        self.join()
        if self.last is not None:  # QoS 1 is acknowledged in order: the last PUBACK covers all
            self.last.wait_for_publish(timeout=60)
            assert self.last.is_published()
        self.client.disconnect()
        self.client.loop_stop()
        return self.sent


# how long the central broker stays down under load (the figure)
BROKER_OUTAGE_S = 60.0


def _config(tmp: Path, device_port: int, central_port: int, **outbox: Any) -> Path:
    cfg = {
        "gateway": {
            "id": "gw-test",
            "enterprise": "acme",
            "site": "s1",
            "state_dir": str(tmp / "state"),
        },
        "sources": [
            {
                "type": "mqtt",
                "name": "meters",
                "broker": {
                    "port": device_port,
                    "client_id": f"gw-src-{tmp.name}",
                    "reconnect_max_s": 1,
                },
                "flush_interval_s": 0.05,
                "topics": [
                    {
                        "filter": "plant/{area}/{meter}/power_kw",
                        "asset": {"area": "{area}", "machine": "{meter}"},
                        "measurement": "energy",
                        "signal": "power_kw",
                    }
                ],
            }
        ],
        "outbox": {"synchronous": "full", **outbox},
        "uplink": {
            "type": "mqtt",
            "broker": {
                "port": central_port,
                "reconnect_max_s": 1,
                "client_id": f"gw-up-{tmp.name}",
            },
            "max_samples_per_frame": 2000,
            "ack_timeout_s": 5,
        },
        "metrics": {"port": 0},
    }
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _start_gateway(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "zhizao.cli", "gateway", "run", "-c", str(config)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _status(tmp: Path) -> dict[str, Any]:
    try:
        return json.loads((tmp / "state" / "status.json").read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return {}


def _wait(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def central(server_factory: Any) -> Iterator[MosquittoServer]:
    # persistence must survive the restart (zhizao.localstack hands the data dir to mosquitto's
    # user when started as root)
    server = server_factory(MosquittoServer())
    assert isinstance(server, MosquittoServer)
    yield server


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> str:
    stop_process_group(proc, sig, 30.0)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    return err


def test_central_broker_outage_outbox_grows_then_drains_in_order(
    tmp_path: Path, mosquitto: MosquittoServer, central: LocalServer
) -> None:
    # The outage is 60 s; 8 s under steady load exercises the same path (publish refused
    # while disconnected, outbox growth, PUBACK-driven drain) and keeps the suite lean.
    # live_window_s=0: strict oldest-first replay, so per-series order can be asserted.
    config = _config(
        tmp_path, mosquitto.port, central.port, live_window_s=0, replay_samples_per_s=20_000
    )
    sub = CentralSubscriber(central.port)
    gw = _start_gateway(config)
    pub = DevicePublisher(mosquitto.port, meters=20, rate_per_s=50)  # 1,000 samples/s
    try:
        _wait(lambda: _status(tmp_path).get("uplink", {}).get("connected"), 60, "gateway up")
        pub.start()
        _wait(lambda: sub.count_unique() >= 2000, 60, "flow before the outage")
        central.stop()
        stopped_at = time.monotonic()
        _wait(lambda: not _status(tmp_path)["uplink"]["connected"], 30, "outage noticed")
        depth_before = _status(tmp_path)["outbox"]["samples"]
        time.sleep(max(0.0, BROKER_OUTAGE_S - (time.monotonic() - stopped_at)))
        depth_during = _status(tmp_path)["outbox"]["samples"]
        # the outbox grows while the broker is away (1,000 samples/s offered)
        assert depth_during > depth_before + 0.5 * 1000 * (BROKER_OUTAGE_S - 10)
        central.start()
        time.sleep(2)
        sent = pub.finish()
        _wait(lambda: sub.count_unique() >= sent, 120, f"all {sent} samples after the outage")
        _wait(lambda: _status(tmp_path)["outbox"]["samples"] == 0, 60, "outbox drained")
        _wait(lambda: _status(tmp_path)["uplink"]["samples_acked"] >= sent, 30, "acks counted")
        status = _status(tmp_path)
    finally:
        if pub.is_alive():
            pub.finish()
        err = _stop(gw)
        sub.close()
    assert "Traceback" not in err, err
    unique = sub.unique()
    assert len(unique) == 20
    for machine, rows in unique.items():
        ts = np.array([r[0] for r in rows])
        # exactly the published samples of this meter, and in order per series
        assert len(ts) == sent // 20, machine
        assert (np.diff(ts) > 0).all(), f"{machine}: out of order"
        np.testing.assert_array_equal(ts, (TS0_MS + np.arange(len(ts))) * 1_000_000)
    assert status["outbox"]["dropped"] == {"full": 0, "age": 0}
    assert status["sources"][0]["rejected"] == {}
    assert status["uplink"]["samples_acked"] >= sent


def test_gateway_sigkill_mid_stream_loses_nothing(
    tmp_path: Path, mosquitto: MosquittoServer, central: LocalServer
) -> None:
    config = _config(tmp_path, mosquitto.port, central.port)
    sub = CentralSubscriber(central.port)
    gw = _start_gateway(config)
    pub = DevicePublisher(mosquitto.port, meters=10, rate_per_s=100)
    gw2: subprocess.Popen[bytes] | None = None
    try:
        _wait(lambda: _status(tmp_path).get("sources", [{}])[0].get("connected"), 60, "gateway up")
        pub.start()
        _wait(lambda: sub.count_unique() >= 1500, 60, "flow before the kill")
        accepted_before_kill = _status(tmp_path)["outbox"]["appended"]
        os.killpg(gw.pid, signal.SIGKILL)
        gw.wait()
        time.sleep(1.5)  # devices keep publishing; the device broker holds it for our session
        gw2 = _start_gateway(config)
        time.sleep(2)
        sent = pub.finish()
        _wait(lambda: sub.count_unique() >= sent, 120, f"all {sent} samples after the restart")
    finally:
        if pub.is_alive():
            pub.finish()
        _stop(gw, signal.SIGKILL)
        err = _stop(gw2) if gw2 is not None else ""
        sub.close()
    assert "Traceback" not in err, err
    assert accepted_before_kill > 0
    unique = sub.unique()
    total = sum(len(v) for v in unique.values())
    assert total == sent  # everything: accepted before the kill, and what waited at the broker
    for rows in unique.values():
        ts = sorted(r[0] for r in rows)
        np.testing.assert_array_equal(ts, (TS0_MS + np.arange(len(ts))) * 1_000_000)
