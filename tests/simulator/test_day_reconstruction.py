"""A simulated day over OPC UA and MQTT, reconstructed by a client, matches ``sim truth``."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import pytest
from asyncua.client.client import Client
from paho.mqtt.enums import CallbackAPIVersion

from simulator.client import (
    ValueRecorder,
    browse_machine_variable,
    create_bulk_subscription,
    subscribe_keys,
)
from simulator.config import SimConfig
from simulator.runner import FactorySimulator
from simulator.truth import truth_report
from tests.simulator.reconstruct import (
    counter_increments,
    state_from_cnc_channel,
    state_from_machinery,
    state_from_state_map,
    state_times_ns,
    timeline,
)
from zhizao.localstack import MosquittoServer, free_port
from zhizao.sparkplug import DataType, MessageType, SparkplugTopic, metric_value, pb

pytestmark = pytest.mark.integration

DAY_START = "2026-11-23T00:00:00+08:00"
DAY_END = "2026-11-24T00:00:00+08:00"
SEED = 7
SPEED = 5760.0  # a simulated day in 15 s (the servers catch up if the machine is slow)


class MqttCollector:
    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="truth-test")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe([("zhizao-demo/#", 1), ("spBv1.0/#", 1)])

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def _poll(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_a_day_reconstructed_from_opcua_and_mqtt_matches_the_truth(
    mosquitto: MosquittoServer, tmp_path: Any
) -> None:
    config = SimConfig(meter_period_s=300.0)
    port = free_port()
    collector = MqttCollector(mosquitto.port)
    try:
        await _poll(collector.subscribed.is_set, 30, "the MQTT subscription")
        async with FactorySimulator(
            config,
            seed=SEED,
            start=DAY_START,
            end=DAY_END,
            speed=SPEED,
            opcua_endpoint=f"opc.tcp://127.0.0.1:{port}",
            mqtt_url=mosquitto.url,
            state_dir=tmp_path / "state",
            truth_file=tmp_path / "truth.jsonl",
            autostart=False,
        ) as sim:
            assert sim.opcua is not None and sim.mqtt is not None
            sc = sim.scenario
            table = sim.opcua.table
            recorder = ValueRecorder()
            async with Client(
                f"opc.tcp://127.0.0.1:{port}", timeout=30, watchdog_intervall=10.0
            ) as client:
                sub = await create_bulk_subscription(client, recorder, period_ms=50)
                pairs = []
                for spec in table.variables:
                    mid = sc.machines[spec.machine].id
                    node = await browse_machine_variable(client, mid, spec)
                    pairs.append((f"{mid}/{spec.key}", node))
                await subscribe_keys(sub, recorder, pairs)
                sim.start_clock()
                await sim.wait_finished(timeout_s=240)
                # every variable's last change (before the end) has arrived
                last_change = {}
                for k in range(len(table.ts_ns)):
                    spec = table.variables[int(table.var[k])]
                    last_change[f"{sc.machines[spec.machine].id}/{spec.key}"] = int(table.ts_ns[k])

                def all_arrived() -> bool:
                    got = recorder.samples
                    return all(
                        key in got and got[key][-1][0] >= ts for key, ts in last_change.items()
                    )

                try:
                    await _poll(all_arrived, 60, "the last OPC UA changes")
                except AssertionError:
                    got = recorder.samples
                    missing = {
                        k: (ts, got.get(k, [(None, None)])[-1])
                        for k, ts in last_change.items()
                        if k not in got or got[k][-1][0] < ts
                    }
                    raise AssertionError(f"missing last changes: {missing}") from None
                published = sim.mqtt.messages_published
            await _poll(lambda: collector.count() >= published, 60, "all MQTT messages")
    finally:
        collector.close()

    truth = truth_report(sc, DAY_START, DAY_END)
    samples = recorder.samples
    a, b = sc.start_ns, sc.end_ns
    site = sc.site
    assert any(r > 0 for r in (m["counter_resets"] for m in truth["machines"].values()))
    assert any(m["no_data"] for m in truth["machines"].values())
    for info in sc.machines:
        mine = {k.split("/", 1)[1]: v for k, v in samples.items() if k.startswith(info.id + "/")}
        expected = truth["machines"][info.id]
        calendar = site.calendars[info.calendar]
        if info.type == "cnc-mill":
            tl = timeline(
                mine, ["machinery_item_state", "machinery_operation_mode"], state_from_machinery
            )
            tl_channel = timeline(
                mine,
                ["channel_status", "program_status", "operation_mode", "alarm_active"],
                state_from_cnc_channel,
            )
            # the OPC 40502 channel and the OPC 40001 state machines tell the same story
            assert tl_channel == tl
        else:
            tl = timeline(
                mine,
                ["packml_state", "packml_unit_mode"],
                state_from_state_map(site.machine_types[info.type]),
            )
        times = state_times_ns(tl, calendar, a, b)
        for element in ("pot", "pbt", "apt", "aust", "adet", "adot", "no_data"):
            assert times[element] == round(expected[f"{element}_s"] * 1e9), (info.id, element)
        pq = counter_increments(mine["part_count"])
        sq = counter_increments(mine["scrap_part_count"])
        rq = counter_increments(mine["rework_part_count"])
        gq = counter_increments(mine["good_part_count"])
        assert (pq, gq, sq, rq) == (expected["pq"], expected["gq"], expected["sq"], expected["rq"])
        assert gq == pq - sq - rq

    # meters: counters published as plain JSON and over Sparkplug B
    by_topic: dict[str, list[tuple[int, float]]] = {}
    spb: list[tuple[SparkplugTopic, Any]] = []
    for topic, payload in collector.messages:
        if topic.startswith("spBv1.0/"):
            spb.append((SparkplugTopic.parse(topic), pb.Payload.FromString(payload)))
        else:
            obj = orjson.loads(payload)
            by_topic.setdefault(topic, []).append((obj["timestamp_ms"] * 1_000_000, obj["value"]))
    meters_truth = truth["meters"]
    checked = 0
    for meter in site.meters:
        if meter.mqtt_topic is None or meter.mqtt_topic.startswith("spBv1.0/"):
            continue
        values = by_topic[meter.mqtt_topic]
        assert min(t for t, _ in values) == a and max(t for t, _ in values) == b
        got_q = counter_increments(values, rollover=meter.rollover or float("inf"))
        assert got_q == pytest.approx(meters_truth[meter.id]["quantity"], rel=1e-9, abs=1e-6)
        checked += 1
    assert checked >= 6
    # one machine meter rolls over during the day (the counter drops)
    rolled = [
        m.id
        for m in site.meters
        if m.mqtt_topic in by_topic
        and np.any(np.diff([v for _, v in sorted(by_topic[m.mqtt_topic])]) < 0)
    ]
    assert rolled
    for mid, expected in truth["machines"].items():
        assert expected["energy_kwh"] == pytest.approx(meters_truth[f"em-{mid}"]["quantity"])

    # Sparkplug: births first, aliases from DBIRTH, seq 0..255 wrapping without gaps
    kinds = [t.message_type for t, _ in spb]
    assert kinds[:2] == [MessageType.NBIRTH, MessageType.DBIRTH]
    seqs = [int(p.seq) for t, p in spb if t.message_type is not MessageType.NDEATH]
    assert all((b_ - a_) % 256 == 1 for a_, b_ in itertools.pairwise(seqs))
    assert max(seqs) == 255 and seqs.count(0) >= 2
    dbirth = next(p for t, p in spb if t.message_type is MessageType.DBIRTH)
    alias = {m.alias: (m.name, m.datatype) for m in dbirth.metrics}
    energy: list[tuple[int, float]] = [
        (int(m.timestamp) * 1_000_000, float(metric_value(m)))  # type: ignore[arg-type]
        for m in dbirth.metrics
        if m.name == "energy_kwh"
    ]
    for t, p in spb:
        if t.message_type is MessageType.DDATA:
            for m in p.metrics:
                name, dtype = alias[m.alias]
                if name == "energy_kwh":
                    value = metric_value(m, dtype)
                    assert isinstance(value, float)
                    energy.append((int(m.timestamp) * 1_000_000, value))
    assert energy[-1][0] == b
    assert counter_increments(energy) == pytest.approx(
        meters_truth["em-compressor"]["quantity"], rel=1e-9
    )
    assert DataType.Double in {d for _, d in alias.values()}
