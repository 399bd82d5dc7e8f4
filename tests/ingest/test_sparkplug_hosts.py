"""Quality reaches the KPIs from every input, and the one Sparkplug host behaves as one.

Real Mosquitto, InfluxDB and ingest services (and the gateway's Sparkplug host):

* a Sparkplug node death and a per-tag JSON device reporting bad quality are NO_DATA in the KPI
  engine (computed over what ingest stored);
* three ingest processes on one shared subscription send one rebirth request per node per
  hold-off, counted on the broker;
* the same edge node stores identical series through the gateway or directly at ingest.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from analytics.engine import KpiEngine
from gateway.outbox import SqliteOutbox
from gateway.sink import OutboxSink
from gateway.sources.sparkplug.config import SparkplugSourceConfig
from gateway.sources.sparkplug.source import SparkplugHost
from ingest.config import IngestConfig
from ingest.frames import FrameCodec, GatewayFrame, frame_topic
from tests.analytics.helpers import at
from tests.analytics.test_engine_influx import NEXT_DAY, engine_config, rows
from tests.conftest import InfluxDb
from tests.ingest._support import GatewayPublisher, ServiceThread, config_dict, wait_until
from zhizao.config import parse_model
from zhizao.localstack import MosquittoServer
from zhizao.sparkplug import BDSEQ_METRIC, REBIRTH_METRIC, DataType, pb, set_metric_value

pytestmark = pytest.mark.integration

Metric = tuple[str | None, int | None, int, object]


def spb(metrics: Sequence[Metric], ts_ns: int, seq: int | None = None) -> bytes:
    payload = pb.Payload()
    payload.timestamp = ts_ns // 1_000_000
    if seq is not None:
        payload.seq = seq
    for name, alias, dt, value in metrics:
        m = payload.metrics.add()
        if name is not None:
            m.name = name
        if alias is not None:
            m.alias = alias
        set_metric_value(m, dt, value)  # type: ignore[arg-type]
    return bytes(payload.SerializeToString())


class Recorder:
    """Every message on some topics, with its arrival time."""

    def __init__(self, port: int, topic: str) -> None:
        self.got: list[tuple[str, bytes, float]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"rec-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._on
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert ready.wait(10)

    def _on(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.got.append((msg.topic, bytes(msg.payload), time.monotonic()))

    def messages(self) -> list[tuple[str, bytes, float]]:
        with self._lock:
            return list(self.got)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- quality -> NO_DATA ----------------------------------------------------------------------


def test_sparkplug_death_and_bad_json_quality_are_no_data(
    mosquitto: MosquittoServer, influx_db: InfluxDb, tmp_path: Path
) -> None:
    """M1 reports its state over Sparkplug (tag map -> machine_state.state of plant1's M1) and
    its node dies 10:00-11:00; M9 over per-tag JSON reports quality 2 from 13:00 to 13:30.
    The KPI engine, over what ingest stored, books exactly those hours as NO_DATA."""
    group = f"g{uuid.uuid4().hex[:6]}"
    sparkplug = {
        "group_filter": group,
        "enterprise": "acme",
        "site": "plant1",
        "metrics": [
            {
                "edge_node": "cnc-m1",
                "metric": "Status/State",
                "asset": {"area": "machining", "line": "l1", "machine": "M1"},
                "measurement": "machine_state",
                "signal": "state",
                "type": "string",
            }
        ],
    }
    cfg = parse_model(
        IngestConfig,
        config_dict(
            mosquitto.port,
            influx_db.url,
            influx_db.database,
            tmp_path,
            mqtt={"client_id": f"q-{group}", "group": group},
            json_topics={"prefix": f"json-{group}"},
            sparkplug=sparkplug,
        ),
    )
    s = DataType.String
    node = f"spBv1.0/{group}/{{}}/cnc-m1"
    state = f"json-{group}/acme/plant1/machining/l1/M9/machine_state/state"

    def js(hhmm: str, quality: int) -> bytes:
        return orjson.dumps(
            {"timestamp_ms": at(hhmm) // 10**6, "value": "IN_CYCLE", "quality": quality}
        )

    pub = GatewayPublisher(mosquitto.port, client_id=f"pub-{group}")
    with ServiceThread(cfg) as st:
        birth = [(BDSEQ_METRIC, None, DataType.Int64, 0), ("Status/State", 1, s, "IN_CYCLE")]
        for topic, payload in [
            (node.format("NBIRTH"), spb(birth, at("05:00"), seq=0)),
            (node.format("NDATA"), spb([(None, 1, s, "IN_CYCLE")], at("09:00"), seq=1)),
            (node.format("NDEATH"), spb([(BDSEQ_METRIC, None, DataType.Int64, 0)], at("10:00"))),
            (node.format("NBIRTH"), spb(birth, at("11:00"), seq=0)),
            (state, js("05:00", 0)),
            (state, js("13:00", 2)),
            (state, js("13:30", 0)),
        ]:
            pub.publish(topic, [payload], content_type=None)
        wait_until(lambda: st.service.acked == 7, 60, "7 messages acknowledged")
    pub.close()
    marks = influx_db.query('SELECT "state" FROM "data_quality" GROUP BY "machine"')
    by_machine = {
        s["tags"]["machine"]: [v[1] for v in s["values"]] for s in marks["results"][0]["series"]
    }
    # transitions only: first sample, the outage, good again
    assert by_machine == {"M1": [0, 3, 0], "M9": [0, 2, 0]}

    kpi = engine_config(tmp_path, influx_db)
    asyncio.run(KpiEngine(kpi).run_once(at("00:01", NEXT_DAY)))
    day = {dict(tags)["machine"]: v for (tags, _), v in rows(influx_db, "kpi_machine_day").items()}
    assert day["M1"]["adet_no_data_s"] == 3600
    assert day["M9"]["adet_no_data_s"] == 1800
    # the rest of the planned time is running: the outage is never counted as running
    for machine, no_data_s in (("M1", 3600), ("M9", 1800)):
        assert day[machine]["apt_s"] == day[machine]["pbt_s"] - no_data_s, machine


# -- N ingest processes, one rebirth request per node per hold-off ---------------------------


def test_three_processes_send_one_rebirth_per_node_per_holdoff(
    mosquitto: MosquittoServer, influx_db: InfluxDb, tmp_path: Path
) -> None:
    """Data of four unborn nodes is spread over three processes of one shared subscription;
    each process wants a rebirth of every node it gets data of. On the broker: one request per
    node while the hold-off lasts, then (data still unborn) one more per node."""
    group = f"r{uuid.uuid4().hex[:6]}"
    holdoff_s = 3.0
    nodes = [f"edge-{i}" for i in range(6)]
    recorder = Recorder(mosquitto.port, f"spBv1.0/{group}/NCMD/#")
    for i in range(3):
        (tmp_path / f"p{i}").mkdir()
    services = [
        ServiceThread(
            parse_model(
                IngestConfig,
                config_dict(
                    mosquitto.port,
                    influx_db.url,
                    influx_db.database,
                    tmp_path / f"p{i}",
                    mqtt={"client_id": f"{group}-{i}", "group": group},
                    sparkplug={"group_filter": group, "rebirth_holdoff_s": holdoff_s},
                ),
            )
        )
        for i in range(3)
    ]
    pub = GatewayPublisher(mosquitto.port, client_id=f"pub-{group}")
    with contextlib.ExitStack() as stack:
        for st in services:
            stack.enter_context(st)
        wait_until(lambda: all(len(st.service.members) == 3 for st in services), 30, "members seen")

        def burst(k: int) -> None:
            for j in range(30):  # 30 messages per node, round robin over the 3 processes
                for n in nodes:
                    data = spb(
                        [(None, 1, DataType.Double, float(j))], at("08:00") + (k + j) * 10**6
                    )
                    pub.publish(f"spBv1.0/{group}/NDATA/{n}", [data], content_type=None)

        burst(0)
        wait_until(lambda: len(recorder.messages()) >= len(nodes), 30, "first requests")
        t0 = time.monotonic()
        burst(100)  # inside the hold-off: the processes that did not ask want to, and hold off
        wait_until(
            lambda: sum(st.service.acked for st in services) == 2 * 30 * len(nodes),
            60,
            "data quarantined and acknowledged",
        )
        time.sleep(max(0.0, holdoff_s - (time.monotonic() - t0)) + 0.5)
        first = recorder.messages()
        burst(200)  # after the hold-off: one more request per node
        wait_until(lambda: len(recorder.messages()) >= 2 * len(nodes), 30, "second requests")
        time.sleep(1.0)  # any duplicate would arrive within this
        final = recorder.messages()
    pub.close()
    recorder.close()
    per_node = {n: [t for topic, _, t in first if topic.endswith(f"/{n}")] for n in nodes}
    assert all(len(ts) == 1 for ts in per_node.values()), per_node
    assert sorted(topic for topic, _, _ in final) == sorted(
        f"spBv1.0/{group}/NCMD/{n}" for n in nodes for _ in range(2)
    )
    for _, body, _ in final:
        cmd = pb.Payload()
        cmd.ParseFromString(body)
        assert [(m.name, m.boolean_value) for m in cmd.metrics] == [(REBIRTH_METRIC, True)]
    assert sum(st.service.rebirths_sent for st in services) == 2 * len(nodes)


# -- the same node through the gateway or directly -------------------------------------------


@contextlib.asynccontextmanager
async def _running(host: SparkplugHost) -> AsyncIterator[None]:
    task = asyncio.create_task(host.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _stored(db: InfluxDb) -> dict[str, list[Any]]:
    """Every stored point by measurement, tags and time (connection series excluded)."""
    out: dict[str, list[Any]] = {}
    res = db.query("SHOW MEASUREMENTS")["results"][0]
    for (name,) in res["series"][0]["values"]:
        if name == "gateway_connection":
            continue
        series = db.query(f'SELECT * FROM "{name}" GROUP BY *')["results"][0]["series"]
        points = [
            (sorted(s["tags"].items()), dict(zip(s["columns"], v, strict=True)))
            for s in series
            for v in s["values"]
        ]
        out[name] = sorted(points, key=lambda p: (p[0], p[1]["time"]))
    return out


async def test_same_edge_node_same_series_through_gateway_or_direct(
    mosquitto: MosquittoServer, influx_server: Any, tmp_path: Path
) -> None:
    """One edge node (a node metric in the tag map, an auto-mapped device metric, a death).
    Path 1: the gateway's Sparkplug host -> frames -> ingest -> database A. Path 2: ingest's
    Sparkplug codec -> database B. Both databases hold the same points."""
    from tests.conftest import _influx_post

    group = f"s{uuid.uuid4().hex[:6]}"
    dbs = [InfluxDb(influx_server.url, f"t_{group}_{k}", influx_server) for k in "ab"]
    for db in dbs:
        _influx_post(db.url, f'CREATE DATABASE "{db.database}"')
    tag_map = [
        {
            "edge_node": "press-1",
            "metric": "Force",
            "asset": {"area": "hall", "line": "l2", "machine": "press-1"},
            "measurement": "press",
            "signal": "force_kn",
        }
    ]
    host = SparkplugHost(
        parse_model(
            SparkplugSourceConfig,
            {
                "type": "sparkplug",
                "name": "spb",
                "group_id": group,
                "broker": {"port": mosquitto.port, "client_id": f"gw-{group}"},
                "flush_interval_s": 0.05,
                "metrics": tag_map,
            },
        ),
        OutboxSink(outbox := SqliteOutbox(tmp_path / "o.sqlite")),
        enterprise="acme",
        site="s1",
        gateway_id="gw",
    )
    direct = parse_model(
        IngestConfig,
        config_dict(
            mosquitto.port,
            dbs[1].url,
            dbs[1].database,
            tmp_path,
            mqtt={"client_id": f"direct-{group}", "group": f"d{group}", "frames": False},
            sparkplug={
                "group_filter": group,
                "enterprise": "acme",
                "site": "s1",
                "metrics": tag_map,
            },
            quarantine={"path": str(tmp_path / "qd.jsonl")},
        ),
    )
    F, N = DataType.Double, DataType.Int64
    base = f"spBv1.0/{group}"
    ts = at("08:00")
    msgs = [
        (f"{base}/NBIRTH/press-1", spb([(BDSEQ_METRIC, None, N, 4), ("Force", 1, F, 10.0)], ts, 0)),
        (f"{base}/DBIRTH/press-1/plc", spb([("Counters/Strokes", 2, N, 7)], ts + 1 * 10**9, 1)),
        (f"{base}/NDATA/press-1", spb([(None, 1, F, 11.5)], ts + 2 * 10**9, 2)),
        (f"{base}/DDATA/press-1/plc", spb([(None, 2, N, 8)], ts + 3 * 10**9, 3)),
        (f"{base}/NDEATH/press-1", spb([(BDSEQ_METRIC, None, N, 4)], ts + 4 * 10**9)),
    ]
    pub = GatewayPublisher(mosquitto.port, client_id=f"pub-{group}")
    try:
        with ServiceThread(direct) as st:
            async with _running(host):
                await asyncio.to_thread(
                    wait_until, lambda: host.stats.connected, 30, "gateway host connected"
                )
                await asyncio.sleep(0.3)  # its SUBACK
                for topic, payload in msgs:
                    pub.publish(topic, [payload], content_type=None)
                await asyncio.to_thread(
                    wait_until, lambda: host.stats.samples == 6, 30, "gateway host samples"
                )
            await asyncio.to_thread(wait_until, lambda: st.service.acked == 5, 60, "direct")
        assert dict(host.stats.rejected) == {} and host.rebirth_requests == 0
        # what the gateway's uplink sends: the outbox's samples as a frame
        frame = _outbox_frame(outbox)
        via_gateway = parse_model(
            IngestConfig,
            config_dict(
                mosquitto.port,
                dbs[0].url,
                dbs[0].database,
                tmp_path,
                mqtt={"client_id": f"via-{group}", "group": f"v{group}"},
                quarantine={"path": str(tmp_path / "qv.jsonl")},
            ),
        )
        with ServiceThread(via_gateway) as st:
            pub.publish(frame_topic("s1", "gw"), [frame])
            await asyncio.to_thread(wait_until, lambda: st.service.acked == 1, 60, "frame")
        stored_a, stored_b = _stored(dbs[0]), _stored(dbs[1])
        assert set(stored_a) == {"press", "sparkplug", "data_quality"}, stored_a
        assert stored_a == stored_b
        # the death restated both series' last values as STALE: markers good, then stale
        marks: dict[str, list[tuple[int, int]]] = {}
        for _, point in stored_a["data_quality"]:
            for name, value in point.items():
                if name in ("force_kn", "counters_strokes") and value is not None:
                    marks.setdefault(name, []).append((point["time"], value))
        assert {k: [v for _, v in sorted(p)] for k, p in marks.items()} == {
            "force_kn": [0, 3],
            "counters_strokes": [0, 3],
        }
    finally:
        pub.close()
        outbox.close()
        for db in dbs:
            _influx_post(db.url, f'DROP DATABASE "{db.database}"')


def _outbox_frame(outbox: SqliteOutbox) -> bytes:
    from tests.gateway.helpers import stored

    batch = stored(outbox)
    return FrameCodec.encode(GatewayFrame("gw", 1, list(outbox.table.keys), batch))
