"""The simulator's Sparkplug B edge node: births, aliases, rebirth on NCMD, NDEATH as the will."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulator.config import SimConfig
from simulator.runner import FactorySimulator, ShardedSimulator
from zhizao.localstack import MosquittoServer, free_port
from zhizao.sparkplug import (
    BDSEQ_METRIC,
    REBIRTH_METRIC,
    DataType,
    MessageType,
    SparkplugTopic,
    metric_value,
    pb,
    set_metric_value,
)

pytestmark = pytest.mark.integration


class Collector:
    def __init__(self, port: int) -> None:
        self.messages: list[tuple[SparkplugTopic, Any]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="spb-test-host")
        self.client.on_connect = lambda c, *a: c.subscribe("spBv1.0/#", qos=1)
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.startswith("spBv1.0/STATE/"):
            return  # a host's JSON state, not a Sparkplug payload
        with self.lock:
            self.messages.append(
                (SparkplugTopic.parse(msg.topic), pb.Payload.FromString(msg.payload))
            )

    def of(self, kind: MessageType) -> list[Any]:
        with self.lock:
            return [p for t, p in self.messages if t.message_type is kind]

    def wait(self, kind: MessageType, n: int, timeout_s: float = 60.0) -> list[Any]:
        deadline = time.monotonic() + timeout_s
        while len(self.of(kind)) < n:
            assert time.monotonic() < deadline, f"no {n} x {kind} within {timeout_s}s"
            time.sleep(0.05)
        return self.of(kind)


def test_births_rebirth_and_death(mosquitto: MosquittoServer) -> None:
    collector = Collector(mosquitto.port)
    assert collector.ready.wait(30)
    config = SimConfig(machines=1)
    sharded = ShardedSimulator(
        config,
        seed=5,
        ports=[free_port()],
        start="2026-11-23T08:00:00+08:00",
        hours=1.0,
        speed=60.0,
        mqtt_url=mosquitto.url,
    )
    try:
        with sharded:
            nbirth = collector.wait(MessageType.NBIRTH, 1)[0]
            dbirth = collector.wait(MessageType.DBIRTH, 1)[0]
            assert nbirth.seq == 0 and dbirth.seq == 1
            node_metrics = {m.name: m for m in nbirth.metrics}
            bdseq = metric_value(node_metrics[BDSEQ_METRIC])
            assert metric_value(node_metrics[REBIRTH_METRIC]) is False
            birth = {m.name: (m.alias, m.datatype) for m in dbirth.metrics}
            assert birth["energy_kwh"] == (1, DataType.Double)
            assert birth["running"][1] == DataType.Boolean
            ddata = collector.wait(MessageType.DDATA, 2)
            assert all(not m.name and m.alias for p in ddata for m in p.metrics)
            ndata = collector.wait(MessageType.NDATA, 2)
            uptime_alias = node_metrics["Node Info/Simulated Uptime s"].alias
            uptimes = [metric_value(p.metrics[0], DataType.Int64) for p in ndata]
            assert all(p.metrics[0].alias == uptime_alias for p in ndata)
            assert uptimes == sorted(uptimes) and uptimes[-1] > 0
            # a host asks for a rebirth
            cmd = pb.Payload(timestamp=int(time.time() * 1000))
            set_metric_value(cmd.metrics.add(name=REBIRTH_METRIC), DataType.Boolean, True)
            topic = SparkplugTopic(
                config.sparkplug_group, MessageType.NCMD, config.sparkplug_edge_node
            ).format()
            collector.client.publish(topic, cmd.SerializeToString(), qos=0)
            births = collector.wait(MessageType.NBIRTH, 2)
            assert births[1].seq == 0
            assert collector.wait(MessageType.DBIRTH, 2)[1].seq == 1
            # the edge node dies without saying goodbye: the broker publishes its will
            proc = sharded.procs[0]
            proc.kill()
            proc.join(10)
            death = collector.wait(MessageType.NDEATH, 1)[0]
            assert {m.name: metric_value(m) for m in death.metrics}[BDSEQ_METRIC] == bdseq
    finally:
        collector.client.disconnect()
        collector.client.loop_stop()


def _state(port: int, host: str, online: bool) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"host-{host}-{online}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    body = b'{"online": %s, "timestamp": %d}' % (
        b"true" if online else b"false",
        time.time_ns() // 1_000_000,
    )
    c.publish(f"spBv1.0/STATE/{host}", body, qos=1, retain=True).wait_for_publish(10)
    c.disconnect()
    c.loop_stop()


def test_with_a_primary_host_the_node_waits_for_it_and_holds_its_data(
    mosquitto: MosquittoServer,
) -> None:
    """Sparkplug 3.0 primary host: no birth and no data while the host's STATE is not online;
    what the node produced meanwhile follows its births as historical DDATA, so the device's
    readings are continuous across the host's absence."""
    collector = Collector(mosquitto.port)
    assert collector.ready.wait(30)
    config = SimConfig(machines=1)
    period_ms = int(config.meter_period_s * 1000)

    async def scenario() -> None:
        async with FactorySimulator(
            config,
            seed=5,
            start="2026-11-23T08:00:00+08:00",
            hours=2.0,
            speed=600.0,
            opcua_endpoint=None,
            mqtt_url=mosquitto.url,
            sparkplug_host_id="h1",
        ):
            await asyncio.sleep(2.0)  # 20 simulated minutes: held, nothing published
            assert collector.of(MessageType.NBIRTH) == [] and collector.of(MessageType.DDATA) == []
            await asyncio.to_thread(_state, mosquitto.port, "h1", True)
            await asyncio.to_thread(collector.wait, MessageType.DBIRTH, 1)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(_state, mosquitto.port, "h1", False)
            await asyncio.sleep(1.5)
            await asyncio.to_thread(_state, mosquitto.port, "h1", True)
            await asyncio.to_thread(collector.wait, MessageType.DBIRTH, 2)
            await asyncio.sleep(1.0)

    asyncio.run(scenario())
    ddata = collector.of(MessageType.DDATA)
    historical = [p for p in ddata if all(m.is_historical for m in p.metrics)]
    assert len(historical) >= 2 * 60_000 * 10 // period_ms  # both absences were held
    stamps = [p.timestamp for p in ddata]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    gaps = {b - a for a, b in itertools.pairwise(stamps)}
    assert gaps == {period_ms}, sorted(gaps)[:5]  # one reading per period, none missing
