"""Per-tag JSON and Sparkplug B through the real broker; dead-letter topic; rebirth requests;
``zhizao ingest quarantine list|replay`` bringing quarantined samples back after a config fix."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.config import IngestConfig
from tests.ingest._support import (
    GatewayPublisher,
    ServiceThread,
    config_dict,
    make_frames,
    per_machine,
    wait_until,
    write_config,
)
from tests.ingest.test_pipeline import spb
from zhizao.cli import main as zhizao_main
from zhizao.config import parse_model
from zhizao.localstack import MosquittoServer
from zhizao.sparkplug import REBIRTH_METRIC, DataType, MessageType, SparkplugTopic, pb


class Listener:
    """Collects messages on some topics."""

    def __init__(self, port: int, topics: list[str]) -> None:
        self.got: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="listener", protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._on
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([(t, 1) for t in topics])
        assert ready.wait(10)

    def _on(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.got.append((msg.topic, bytes(msg.payload)))

    def on(self, prefix: str) -> list[bytes]:
        with self._lock:
            return [p for t, p in self.got if t.startswith(prefix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.integration
def test_json_and_sparkplug_through_broker(
    mosquitto: MosquittoServer, influx_db: Any, tmp_path: Path
) -> None:
    cfg = parse_model(
        IngestConfig,
        config_dict(
            mosquitto.port,
            influx_db.url,
            influx_db.database,
            tmp_path,
            mqtt={"client_id": "inputs-1", "group": "inputs"},
            json_topics={"prefix": "plantjson"},
            sparkplug={"measurement": "spb"},
            quarantine={"path": str(tmp_path / "q.jsonl"), "dead_letter_topic": "dlq/ingest"},
        ),
    )
    listener = Listener(mosquitto.port, ["dlq/#", "spBv1.0/+/NCMD/#"])
    pub = GatewayPublisher(mosquitto.port, client_id="inputs-pub")
    topic = "plantjson/acme/s9/press/l1/m3/energy/power_kw"
    with ServiceThread(cfg) as st:
        pub.publish(
            topic,
            [
                orjson.dumps({"timestamp_ms": 1767225600000 + i, "value": i * 1.5})
                for i in range(10)
            ],
            content_type=None,
        )
        pub.publish(
            topic, [b'{"timestamp_ms": 1767225600100, "value": "high"}'], content_type=None
        )  # type change
        ndata2 = SparkplugTopic("g1", MessageType.NDATA, "edge2").format()
        pub.publish(ndata2, [spb([(None, 1, DataType.Double, 1.0)])], content_type=None)  # no birth
        wait_until(lambda: len(listener.on("spBv1.0/g1/NCMD/edge2")) == 1, 30, "rebirth request")
        nbirth = SparkplugTopic("g1", MessageType.NBIRTH, "edge1").format()
        ndata = SparkplugTopic("g1", MessageType.NDATA, "edge1").format()
        pub.publish(
            nbirth,
            [spb([("temp_c", 5, DataType.Float, 20.5), ("count", 6, DataType.UInt16, 7)])],
            content_type=None,
        )
        pub.publish(
            ndata,
            [
                spb(
                    [(None, 5, DataType.Float, 21.0), (None, 6, DataType.UInt16, 9)],
                    ts=1767225601000,
                )
            ],
            content_type=None,
        )
        wait_until(lambda: st.service.acked == 14, 60, "14 messages acknowledged")
        wait_until(lambda: len(listener.on("dlq/")) == 2, 30, "2 dead letters")
    listener.close()
    pub.close()
    cmd = pb.Payload()
    cmd.ParseFromString(listener.on("spBv1.0/g1/NCMD/edge2")[0])
    assert [(m.name, m.boolean_value) for m in cmd.metrics] == [(REBIRTH_METRIC, True)]
    dead = sorted(orjson.loads(p)["reason"] for p in listener.on("dlq/"))
    assert dead == ["no_birth", "type_change"]
    res = influx_db.query('SELECT sum("power_kw"), count("power_kw") FROM "energy" GROUP BY *')
    s = res["results"][0]["series"][0]
    assert s["tags"] == {
        "enterprise": "acme",
        "site": "s9",
        "area": "press",
        "line": "l1",
        "machine": "m3",
    }
    assert s["values"][0][1:] == [67.5, 10]
    res = influx_db.query('SELECT "temp_c", "count" FROM "spb" WHERE "edge_node" = \'edge1\'')
    assert [v[1:] for v in res["results"][0]["series"][0]["values"]] == [[20.5, 7], [21.0, 9]]


@pytest.mark.integration
def test_quarantine_list_and_replay_after_config_fix(
    mosquitto: MosquittoServer, influx_db: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = config_dict(
        mosquitto.port,
        influx_db.url,
        influx_db.database,
        tmp_path,
        mqtt={"client_id": "replay-1", "group": "replay"},
        validation={"max_past_s": 0, "allowed_measurements": ["energy"]},
    )
    strict = write_config(tmp_path / "strict.yaml", base)
    fs = make_frames("gw-r", 3, 40)
    pub = GatewayPublisher(mosquitto.port, client_id="replay-pub")
    with ServiceThread(parse_model(IngestConfig, base)) as st:
        pub.frames(fs)
        wait_until(lambda: st.service.acked == 3, 60, "3 frames acknowledged")
    assert per_machine(influx_db)[0] == {}  # all refused: spindle is not allowed
    assert zhizao_main(["ingest", "quarantine", "list", "-c", str(strict)]) == 0
    assert "unknown_series\t120" in capsys.readouterr().out
    # the operator allows the measurement and replays
    fixed_cfg = {**base, "validation": {"max_past_s": 0}}
    fixed = write_config(tmp_path / "fixed.yaml", fixed_cfg)
    with ServiceThread(parse_model(IngestConfig, fixed_cfg)) as st:
        assert zhizao_main(["ingest", "quarantine", "replay", "-c", str(fixed)]) == 0
        assert "replayed 3 records" in capsys.readouterr().out
        wait_until(lambda: st.service.acked == 3, 60, "3 replayed frames acknowledged")
        assert zhizao_main(["ingest", "quarantine", "replay", "-c", str(fixed)]) == 0
        assert "replayed 0 records" in capsys.readouterr().out  # nothing twice
    pub.close()
    counts, sums = per_machine(influx_db)
    assert counts == fs.series_count and sums == fs.series_sum
    assert zhizao_main(["ingest", "quarantine", "list", "-c", str(fixed), "-l"]) == 0
    out = capsys.readouterr().out
    assert out.count("\treplayed\t") == 3
