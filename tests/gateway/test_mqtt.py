"""MQTT JSON source and Sparkplug B host against a real Mosquitto: mapping, bad input, births."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from gateway.config import MqttSourceConfig, SparkplugSourceConfig
from gateway.outbox import SqliteOutbox
from gateway.sink import OutboxSink
from gateway.sources.mqtt.source import MqttSource
from gateway.sources.sparkplug.source import SparkplugHost
from tests.gateway.helpers import stored, wait_for
from tests.gateway.mqtt_helpers import Publisher
from zhizao.localstack import MosquittoServer
from zhizao.quality import Quality
from zhizao.sparkplug import BDSEQ_METRIC, DataType, pb, set_metric_value

pytestmark = pytest.mark.integration
TS0_MS = 1_767_225_600_000  # 2026-01-01


@contextlib.asynccontextmanager
async def _running(source: Any) -> AsyncIterator[None]:
    task = asyncio.create_task(source.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _mqtt_config(port: int, topics: list[dict[str, Any]], client_id: str) -> MqttSourceConfig:
    return MqttSourceConfig.model_validate(
        {
            "type": "mqtt",
            "name": "meters",
            "broker": {"port": port, "client_id": client_id, "reconnect_max_s": 2},
            "flush_interval_s": 0.05,
            "topics": topics,
        }
    )


POWER = {
    "filter": "factory/{area}/{meter}/power_kw",
    "asset": {"area": "{area}", "machine": "{meter}"},
    "measurement": "energy",
    "signal": "power_kw",
}
WATER = {
    "filter": "water/{meter}/{signal}",
    "asset": {"area": "utilities", "machine": "{meter}"},
    "measurement": "water",
    "signal": "{signal}",
    "type": "int",
    "value_path": "data.v",
    "timestamp_path": "data.t",
    "timestamp_unit": "s",
}
OLD = {
    "filter": "legacy/{meter}",
    "asset": {"machine": "{meter}"},
    "measurement": "x",
    "signal": "v",
}


async def test_json_mapping_and_bad_input_counted_with_reasons(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    outbox = SqliteOutbox(tmp_path / "o.sqlite")
    sink = OutboxSink(outbox)
    ids = {"enterprise": "acme", "site": "s1", "gateway_id": "gw"}
    # a first run subscribed to legacy/+ in the persistent session; the new config dropped it,
    # so the broker still delivers those topics: they are unknown now
    first = MqttSource(_mqtt_config(mosquitto.port, [POWER, OLD], "gw-meters-t1"), sink, **ids)
    async with _running(first):
        await wait_for(lambda: first.stats.connected, 30, "first connect")
    source = MqttSource(_mqtt_config(mosquitto.port, [POWER, WATER], "gw-meters-t1"), sink, **ids)
    pub = Publisher(mosquitto.port)
    try:
        async with _running(source):
            await wait_for(lambda: source.stats.connected, 30, "connect")
            good = 0
            for i in range(50):
                body = {"timestamp_ms": TS0_MS + i, "value": 10.5 + i}
                pub.publish(f"factory/hall{i % 2}/meter{i % 5}/power_kw", orjson.dumps(body))
                good += 1
            for i in range(20):
                pub.publish(
                    f"water/w{i % 3}/volume_m3", orjson.dumps({"data": {"v": i, "t": 1.767e9 + i}})
                )
                good += 1
            bad = {
                "malformed_json": [("factory/h/m/power_kw", b"{not json")],
                "missing_value": [("factory/h/m/power_kw", b'{"timestamp_ms": 1767225600000}')],
                "wrong_type": [
                    ("factory/h/m/power_kw", b'{"timestamp_ms": 1767225600000, "value": "abc"}'),
                    ("water/w1/volume_m3", b'{"data": {"v": 1.5, "t": 1767225600}}'),
                ],
                "bad_timestamp": [
                    ("factory/h/m/power_kw", b'{"timestamp_ms": "soon", "value": 1}')
                ],
                "unknown_topic": [("legacy/m1", b'{"timestamp_ms": 1767225600000, "value": 1}')],
                "bad_asset": [
                    ("factory/h%20x/m/power_kw", b'{"timestamp_ms": 1767225600000, "value": 1}')
                ],
                "bad_signal": [("water/w1/Volume-M3", b'{"data": {"v": 1, "t": 1767225600}}')],
            }
            for msgs in bad.values():
                for topic, payload in msgs:
                    pub.publish(topic, payload)
            expected_bad = {reason: len(msgs) for reason, msgs in bad.items()}
            await wait_for(
                lambda: (
                    source.stats.samples >= good
                    and sum(source.stats.rejected.values()) >= sum(expected_bad.values())
                ),
                30,
                "all messages",
            )
            await asyncio.sleep(0.3)
            assert dict(source.stats.rejected) == expected_bad
            assert source.stats.samples == good
            # still running after the bad input
            pub.publish(
                "factory/hall0/meter0/power_kw",
                orjson.dumps({"timestamp_ms": TS0_MS + 999, "value": 1.0}),
            )
            await wait_for(lambda: source.stats.samples == good + 1, 30, "alive")
        batch = stored(outbox)
        keys = outbox.table.keys
        energy = [i for i, k in enumerate(keys) if k.measurement == "energy"]
        water = [i for i, k in enumerate(keys) if k.measurement == "water"]
        combos = {(keys[i].tag_dict["area"], keys[i].tag_dict["machine"]) for i in energy}
        assert {(f"hall{i % 2}", f"meter{i % 5}") for i in range(50)} <= combos
    finally:
        pub.close()
        outbox.close()
    e_mask = np.isin(batch.series, energy)
    assert int(e_mask.sum()) == 51
    assert {keys[i].tag_dict["area"] for i in np.unique(batch.series[e_mask])} == {"hall0", "hall1"}
    w_mask = np.isin(batch.series, water)
    assert sorted(batch.value_i64[w_mask].tolist()) == list(range(20))
    assert {keys[i].field for i in water} == {"volume_m3"}
    assert (batch.ts_ns[w_mask] % 1_000_000_000 == 0).all()


def _spb_config(port: int) -> SparkplugSourceConfig:
    return SparkplugSourceConfig.model_validate(
        {
            "type": "sparkplug",
            "name": "spb",
            "broker": {"port": port, "client_id": "gw-spb-test", "reconnect_max_s": 2},
            "group_id": "line2",
            "host_id": "zhizao-test",
            "flush_interval_s": 0.05,
            "metrics": [
                {
                    "edge_node": "press-01",
                    "device": "plc",
                    "metric": "Press/Force",
                    "asset": {"area": "stamping", "line": "line2", "machine": "press-01"},
                    "measurement": "press",
                    "signal": "force_kn",
                }
            ],
        }
    )


def _payload(
    seq: int | None, metrics: list[tuple[str | None, int | None, int, Any]], ts_ms: int
) -> bytes:
    p = pb.Payload()
    p.timestamp = ts_ms
    if seq is not None:
        p.seq = seq
    for name, alias, datatype, value in metrics:
        m = p.metrics.add()
        if name is not None:
            m.name = name
        if alias is not None:
            m.alias = alias
        m.datatype = datatype
        set_metric_value(m, datatype, value)
    return p.SerializeToString()


async def test_sparkplug_births_aliases_gaps_and_deaths(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    outbox = SqliteOutbox(tmp_path / "o.sqlite")
    host = SparkplugHost(
        _spb_config(mosquitto.port),
        OutboxSink(outbox),
        enterprise="acme",
        site="s1",
        gateway_id="gw",
    )
    host.rebirth_holdoff_s = 0.0
    edge = Publisher(mosquitto.port, subscribe="spBv1.0/line2/NCMD/#")
    base = "spBv1.0/line2"
    F, S = DataType.Double, DataType.Int64
    try:
        async with _running(host):
            await wait_for(lambda: host.stats.connected, 30, "connect")
            # data before any birth: counted, rebirth requested
            edge.publish(f"{base}/DDATA/press-01/plc", _payload(7, [(None, 1, F, 1.0)], TS0_MS))
            await wait_for(lambda: host.stats.rejected["data_before_birth"] == 1, 30, "ddata")
            await wait_for(lambda: len(edge.messages()) == 1, 30, "rebirth request")
            topic, body = edge.messages()[0]
            assert topic == f"{base}/NCMD/press-01"
            cmd = pb.Payload()
            cmd.ParseFromString(body)
            assert cmd.metrics[0].name == "Node Control/Rebirth" and cmd.metrics[0].boolean_value
            # births, then data by alias
            edge.publish(
                f"{base}/NBIRTH/press-01",
                _payload(0, [(BDSEQ_METRIC, None, S, 3), ("Temp", 5, F, 20.0)], TS0_MS + 1),
            )
            edge.publish(
                f"{base}/DBIRTH/press-01/plc",
                _payload(
                    1, [("Press/Force", 1, F, 100.0), ("Counters/Strokes", 2, S, 7)], TS0_MS + 2
                ),
            )
            edge.publish(
                f"{base}/DDATA/press-01/plc",
                _payload(2, [(None, 1, F, 101.0), (None, 2, S, 8)], TS0_MS + 3),
            )
            # seq gap (3 expected): kept, counted, rebirth requested
            edge.publish(
                f"{base}/DDATA/press-01/plc", _payload(5, [(None, 1, F, 102.0)], TS0_MS + 4)
            )
            await wait_for(lambda: host.stats.rejected["seq_gap"] == 1, 30, "gap")
            await wait_for(lambda: len(edge.messages()) == 2, 30, "second rebirth request")
            # a death with a foreign bdSeq is stale; the matching one marks the series STALE
            edge.publish(
                f"{base}/NDEATH/press-01", _payload(None, [(BDSEQ_METRIC, None, S, 2)], TS0_MS + 5)
            )
            await wait_for(lambda: host.stats.rejected["stale_death"] == 1, 30, "stale death")
            edge.publish(
                f"{base}/NDEATH/press-01", _payload(None, [(BDSEQ_METRIC, None, S, 3)], TS0_MS + 6)
            )
            await wait_for(lambda: host.stats.samples == 9, 30, "stale markers")
        batch = stored(outbox)
        keys = outbox.table.keys
        force = next(i for i, k in enumerate(keys) if k.measurement == "press")
        assert keys[force].field == "force_kn" and keys[force].tag_dict["machine"] == "press-01"
        fm = batch.series == force
        assert batch.value_f64[fm].tolist() == [100.0, 101.0, 102.0, 102.0]
        assert batch.quality[fm].tolist() == [Quality.GOOD] * 3 + [Quality.STALE]
        assert (batch.ts_ns[fm] // 1_000_000 - TS0_MS).tolist() == [2, 3, 4, 6]
        strokes = next(i for i, k in enumerate(keys) if k.field == "counters_strokes")
        assert keys[strokes].measurement == "sparkplug"
        assert keys[strokes].tag_dict["device"] == "plc"
        assert batch.value_i64[batch.series == strokes].tolist() == [7, 8, 8]
        temp = next(i for i, k in enumerate(keys) if k.field == "temp")
        assert batch.quality[batch.series == temp].tolist() == [Quality.GOOD, Quality.STALE]
        assert host.rebirth_requests == 2
        # the host announced itself (retained STATE)
        state = Publisher(mosquitto.port, subscribe="spBv1.0/STATE/zhizao-test")
        await wait_for(lambda: len(state.messages()) >= 1, 30, "STATE")
        state.close()
    finally:
        edge.close()
        outbox.close()
