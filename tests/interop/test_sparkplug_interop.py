"""Sparkplug B interoperability with a third-party implementation (pysparkplug 0.6.1).

zhizao writes its own Sparkplug B schema (``zhizao/sparkplug_b.proto``) because the Python
Sparkplug libraries pin paho-mqtt < 2; these tests prove that what we decode and what we encode
is what an independent implementation means. pysparkplug runs in its own venv (see conftest.py)
as a subprocess; it talks to the real Mosquitto and reports through JSON on stdout.

* pysparkplug edge node -> our Sparkplug host (gateway) and our ingest codec;
* our payloads (``zhizao.sparkplug``) -> pysparkplug's host-side decoder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest

from gateway.config import SparkplugSourceConfig
from gateway.outbox import SqliteOutbox
from gateway.sink import OutboxSink
from gateway.sources.sparkplug.source import SparkplugHost
from ingest.sparkplug_codec import SparkplugCodec, SparkplugConfig
from simulator.clock import SimClock
from simulator.config import SimConfig
from simulator.mqtt_publisher import MqttFactoryPublisher
from simulator.scenario import build_scenario
from tests.gateway.helpers import stored, wait_for
from tests.gateway.mqtt_helpers import Publisher
from zhizao.localstack import MosquittoServer
from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable
from zhizao.quality import Quality
from zhizao.sparkplug import (
    BDSEQ_METRIC,
    DataType,
    MetricValue,
    metric_value,
    pb,
    set_metric_value,
)

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
TS0_MS = 1_767_225_600_000  # 2026-01-01
SCRIPT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Spec:
    """One metric: its birth value and the value of the one DATA message that follows."""

    name: str
    alias: int
    datatype: DataType
    birth: MetricValue
    data: MetricValue
    field: str  # the gateway's auto-mapped field name (snake case of the name)

    def ts_ms(self, when: str) -> int:
        return TS0_MS + self.alias + (0 if when == "birth" else 1000)


NODE_METRICS = [
    Spec("Line/Speed m_min", 1, DataType.Double, 12.5, 13.375, "line_speed_m_min"),
    Spec("Line/Temp", 2, DataType.Float, 21.5, -3.25, "line_temp"),
    Spec("Line/Running", 3, DataType.Boolean, True, False, "line_running"),
    Spec("Line/Recipe", 4, DataType.String, "A-100", "B-200 größe", "line_recipe"),
    Spec("Line/Good Count", 5, DataType.Int64, -(2**40), 2**40 + 1, "line_good_count"),
    Spec("Line/Offset", 6, DataType.Int16, -300, 300, "line_offset"),
]
DEVICE_METRICS = [
    Spec("Press/Force", 10, DataType.Double, 100.0, 101.5, "press_force"),
    Spec("Press/Strokes", 11, DataType.UInt32, 4_000_000_000, 4_000_000_001, "press_strokes"),
    Spec("Press/Delta", 12, DataType.Int8, -5, 127, "press_delta"),
    Spec("Press/Level", 13, DataType.UInt8, 250, 0, "press_level"),
    Spec("Press/Ready", 14, DataType.Boolean, False, True, "press_ready"),
    Spec("Press/Mode", 15, DataType.Text, "auto", "manual", "press_mode"),
    Spec(
        "Press/Last Service",
        16,
        DataType.DateTime,
        TS0_MS - 86_400_123,
        TS0_MS - 5,
        "press_last_service",
    ),
    Spec("Press/Pressure", 17, DataType.Int32, -70_000, 70_000, "press_pressure"),
    Spec("Press/Cycles", 18, DataType.UInt64, 2**40, 2**40 + 1, "press_cycles"),
    Spec("Press/Hydraulics", 19, DataType.UInt16, 65_000, 1, "press_hydraulics"),
]
# types the platform does not store (bytes) or only the third party can hold (UInt64 >= 2**63),
# and an explicit null: for the direction ours -> theirs
DEVICE_EXTRA = [
    Spec("Press/Blob", 20, DataType.Bytes, b"\x00\xff\x10", b"\x01", "press_blob"),
    Spec(
        "Press/Batch Id",
        21,
        DataType.UUID,
        "0b7c3c1e-9f5a-4a51-8f0e-3d1c2b4a5e6f",
        "5f1d7a2c-1b3e-4c5d-9e8f-0a1b2c3d4e5f",
        "press_batch_id",
    ),
    Spec("Press/Energy Wh", 22, DataType.UInt64, 2**64 - 1, 2**63 + 5, "press_energy_wh"),
    Spec("Press/Note", 23, DataType.String, "first", None, "press_note"),
]
_FTYPE = {
    DataType.Double: FieldType.FLOAT,
    DataType.Float: FieldType.FLOAT,
    DataType.Boolean: FieldType.BOOL,
    DataType.String: FieldType.STRING,
    DataType.Text: FieldType.STRING,
}


def _ftype(dt: DataType) -> FieldType:
    return _FTYPE.get(dt, FieldType.INT)


def _jsonable(value: MetricValue) -> Any:
    return value.hex() if isinstance(value, bytes) else value


def _plan(group: str, node: str, device: str) -> str:
    def specs(items: list[Spec]) -> list[dict[str, Any]]:
        return [
            {
                "name": s.name,
                "alias": s.alias,
                "datatype": s.datatype.name.upper(),  # pysparkplug's DataType member names
                "birth": _jsonable(s.birth),
                "data": _jsonable(s.data),
                "ts_ms": {"birth": s.ts_ms("birth"), "data": s.ts_ms("data")},
            }
            for s in items
        ]

    return json.dumps(
        {
            "group": group,
            "edge_node": node,
            "device": device,
            "payload_ts_ms": TS0_MS + 2000,
            "node_metrics": specs(NODE_METRICS),
            "device_metrics": specs(DEVICE_METRICS),
        }
    )


def _run_script(python: Path, script: str, args: list[str], stdin: str) -> dict[str, Any]:
    try:
        proc = subprocess.run(
            [str(python), str(HERE / script), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{script} did not finish in {SCRIPT_TIMEOUT_S} s: {exc}") from exc
    assert proc.returncode == 0, f"{script} failed ({proc.returncode}):\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@contextlib.asynccontextmanager
async def _running(source: SparkplugHost) -> AsyncIterator[None]:
    task = asyncio.create_task(source.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _host_config(port: int, group: str, host_id: str) -> SparkplugSourceConfig:
    return SparkplugSourceConfig.model_validate(
        {
            "type": "sparkplug",
            "name": "spb",
            "broker": {"port": port, "client_id": f"gw-{host_id}", "reconnect_max_s": 2},
            "group_id": group,
            "host_id": host_id,
            "flush_interval_s": 0.05,
        }
    )


def _parse(body: bytes) -> pb.Payload:
    msg = pb.Payload()
    msg.ParseFromString(body)
    return msg


async def test_pysparkplug_edge_node_is_decoded_by_gateway_host_and_ingest_codec(
    tmp_path: Path, mosquitto: MosquittoServer, interop_python: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    group, node, device = f"interop-{run}", "edge-1", "plc"
    outbox = SqliteOutbox(tmp_path / "o.sqlite")
    host = SparkplugHost(
        _host_config(mosquitto.port, group, f"zhizao-{run}"),
        OutboxSink(outbox),
        enterprise="acme",
        site="s1",
        gateway_id="gw",
    )
    recorder = Publisher(mosquitto.port, subscribe=f"spBv1.0/{group}/#")
    # the host subscribes before it publishes its STATE: once STATE is seen, it listens
    state = Publisher(mosquitto.port, subscribe=f"spBv1.0/STATE/zhizao-{run}")
    all_specs = NODE_METRICS + DEVICE_METRICS
    try:
        async with _running(host):
            await wait_for(lambda: bool(state.messages()), 30, "the host's STATE")
            sent = await asyncio.to_thread(
                _run_script,
                interop_python,
                "pysparkplug_edge.py",
                [str(mosquitto.port)],
                _plan(group, node, device),
            )
            # births + data + one STALE marker per series after the will's NDEATH
            await wait_for(
                lambda: host.stats.samples == 3 * len(all_specs), 30, "all samples in the host"
            )
            await wait_for(
                lambda: any("/NDEATH/" in t for t, _ in recorder.messages()), 30, "the NDEATH"
            )
        messages = recorder.messages()
        topics = [t for t, _ in messages]
        base = f"spBv1.0/{group}"
        assert topics == [
            f"{base}/NBIRTH/{node}",
            f"{base}/DBIRTH/{node}/{device}",
            f"{base}/NDATA/{node}",
            f"{base}/DDATA/{node}/{device}",
            f"{base}/NDEATH/{node}",
        ], "unexpected messages (an NCMD here would be a rebirth request from our host)"
        payloads = [_parse(b) for _, b in messages]
        # what pysparkplug put on the wire, read with our schema: DATA by alias only
        assert [p.seq for p in payloads[:4]] == [0, 1, *sent["data_seqs"]] == [0, 1, 2, 3]
        for data in payloads[2:4]:
            assert all(not m.name and not m.HasField("datatype") for m in data.metrics)
        birth_bdseq = [int(m.long_value) for m in payloads[0].metrics if m.name == BDSEQ_METRIC]
        death_bdseq = [int(m.long_value) for m in payloads[4].metrics if m.name == BDSEQ_METRIC]
        assert birth_bdseq == death_bdseq == [sent["bdseq"]]
        death_ts_ns = int(payloads[4].timestamp) * 1_000_000

        # --- the gateway's Sparkplug host (ran live against the broker)
        assert dict(host.stats.rejected) == {}
        assert host.rebirth_requests == 0
        batch = stored(outbox)
        keys = outbox.table.keys
        values = batch.values_for(outbox.table)
        for spec in all_specs:
            dev = device if spec in DEVICE_METRICS else None
            idx = [
                i
                for i, k in enumerate(keys)
                if k.field == spec.field and k.tag_dict.get("device") == dev
            ]
            assert len(idx) == 1, f"{spec.name}: series {idx}"
            key = keys[idx[0]]
            assert key.measurement == "sparkplug" and key.dtype == _ftype(spec.datatype)
            assert key.tag_dict["edge_node"] == node and key.tag_dict["group"] == group
            mask = batch.series == idx[0]
            assert values[mask].tolist() == [spec.birth, spec.data, spec.data], spec.name
            assert batch.ts_ns[mask].tolist() == [
                spec.ts_ms("birth") * 1_000_000,
                spec.ts_ms("data") * 1_000_000,
                death_ts_ns,
            ], spec.name
            assert batch.quality[mask].tolist() == [Quality.GOOD, Quality.GOOD, Quality.STALE]
        spb_series = [i for i, k in enumerate(keys) if k.measurement == "sparkplug"]
        assert len(spb_series) == len(all_specs)
        assert np.isin(batch.series, spb_series).sum() == 3 * len(all_specs)

        # --- ingest's codec, on the same raw messages: the same series, values, times and
        # qualities as the gateway's host (one state machine, one metric-to-series policy)
        table = SeriesTable()
        codec = SparkplugCodec(
            SparkplugConfig.model_validate({"enterprise": "acme", "site": "s1"}), table
        )
        decoded = codec.decode_many(topics, [b for _, b in messages])
        assert decoded.errors == [] and decoded.ok == [0, 1, 2, 3, 4]
        assert codec.rebirth_needed == set() and codec.stale_deaths == 0
        assert codec.skipped_metrics == 0
        cvalues = decoded.batch.values_for(table)

        def rows(
            keys: list[SeriesKey], b: Batch, vals: np.ndarray[Any, Any]
        ) -> list[tuple[Any, ...]]:
            return sorted(
                (keys[s].measurement, keys[s].tags, keys[s].field, keys[s].dtype, t, repr(v), q)
                for s, t, v, q in zip(
                    b.series.tolist(),
                    b.ts_ns.tolist(),
                    vals.tolist(),
                    b.quality.tolist(),
                    strict=True,
                )
                if keys[s].measurement == "sparkplug"
            )

        assert rows(table.keys, decoded.batch, cvalues) == rows(keys, batch, values)
        assert len(decoded.batch) == 3 * len(all_specs)
        assert np.array_equal(
            decoded.frame_index, np.repeat([0, 1, 2, 3, 4], [6, 10, 6, 10, 16]).astype(np.int64)
        )
    finally:
        recorder.close()
        state.close()
        outbox.close()


def _payload(
    seq: int | None, specs: list[Spec], when: str, *, named: bool, bdseq: int | None = None
) -> bytes:
    """A payload built with our schema and helpers; DATA (named=False) carries aliases only."""
    p = pb.Payload()
    p.timestamp = TS0_MS + 3000
    if seq is not None:
        p.seq = seq
    for spec in specs:
        m = p.metrics.add()
        if named:
            m.name = spec.name
        m.alias = spec.alias
        m.timestamp = spec.ts_ms(when)
        set_metric_value(m, spec.datatype, spec.birth if when == "birth" else spec.data)
        if not named:
            m.ClearField("datatype")  # the receiver knows it from the birth
    if bdseq is not None:
        m = p.metrics.add()
        m.name = BDSEQ_METRIC
        set_metric_value(m, DataType.Int64, bdseq)
    return bytes(p.SerializeToString())


def _expected(value: MetricValue, datatype: DataType) -> Any:
    """What pysparkplug_host.py prints for ``value`` (bytes as hex, DateTime as ms)."""
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if datatype is DataType.DateTime:
        return {"datetime_ms": value}
    return value


class _Lines:
    """Reads a subprocess's stdout lines in a thread (so waits can have deadlines)."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._lock:
                self.lines.append(json.loads(line))

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.lines)

    def join(self) -> None:
        self._thread.join(timeout=SCRIPT_TIMEOUT_S)


def _reap(proc: subprocess.Popen[str], out: _Lines) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    out.join()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


async def test_our_payloads_are_decoded_by_pysparkplug(
    mosquitto: MosquittoServer, interop_python: Path
) -> None:
    group, node, device = f"interop-{uuid.uuid4().hex[:8]}", "zz-edge", "press"
    proc = subprocess.Popen(
        [str(interop_python), str(HERE / "pysparkplug_host.py"), str(mosquitto.port), group],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    out = _Lines(proc.stdout)
    edge = Publisher(mosquitto.port)
    device_specs = DEVICE_METRICS + DEVICE_EXTRA
    base = f"spBv1.0/{group}"
    try:
        await wait_for(lambda: {"ready": True} in out.snapshot(), 30, "pysparkplug host ready")
        edge.publish(
            f"{base}/NBIRTH/{node}", _payload(0, NODE_METRICS, "birth", named=True, bdseq=7)
        )
        edge.publish(
            f"{base}/DBIRTH/{node}/{device}", _payload(1, device_specs, "birth", named=True)
        )
        edge.publish(f"{base}/NDATA/{node}", _payload(2, NODE_METRICS, "data", named=False))
        edge.publish(
            f"{base}/DDATA/{node}/{device}", _payload(3, device_specs, "data", named=False)
        )
        edge.publish(f"{base}/NDEATH/{node}", _payload(None, [], "birth", named=True, bdseq=7))
        rc = await asyncio.to_thread(proc.wait, SCRIPT_TIMEOUT_S)
        stderr = proc.stderr.read() if proc.stderr else ""
        assert rc == 0, f"pysparkplug_host.py failed ({rc}): {out.snapshot()}\n{stderr}"
    finally:
        edge.close()
        _reap(proc, out)
    records = [r for r in out.snapshot() if "ready" not in r]
    assert [r.get("error") for r in records] == [None] * len(records), records
    assert [(r["type"], r["seq"]) for r in records] == [
        ("NBIRTH", 0),
        ("DBIRTH", 1),
        ("NDATA", 2),
        ("DDATA", 3),
        ("NDEATH", None),
    ]
    assert [r["timestamp"] for r in records[:4]] == [TS0_MS + 3000] * 4
    for record, specs, when in (
        (records[0], NODE_METRICS, "birth"),
        (records[1], device_specs, "birth"),
        (records[2], NODE_METRICS, "data"),
        (records[3], device_specs, "data"),
    ):
        metrics = record["metrics"]
        if record["type"] == "NBIRTH":
            assert metrics[-1]["name"] == BDSEQ_METRIC and metrics[-1]["value"] == 7
            assert metrics[-1]["datatype"] == "INT64"
            metrics = metrics[:-1]
        expected = []
        for s in specs:
            value = s.birth if when == "birth" else s.data
            expected.append(
                {
                    # pysparkplug resolves DATA's aliases to names only for its decoding; the
                    # metric it hands out keeps the name it filled in from the birth
                    "name": s.name,
                    "alias": s.alias,
                    "datatype": s.datatype.name.upper(),
                    "value": None if value is None else _expected(value, s.datatype),
                    "timestamp": s.ts_ms(when),
                    "is_null": value is None,
                }
            )
        assert metrics == expected, record["topic"]
    death = records[4]["metrics"]
    assert [(m["name"], m["value"], m["datatype"]) for m in death] == [(BDSEQ_METRIC, 7, "INT64")]


async def test_pysparkplug_clean_disconnect_death_has_the_next_bdseq_and_is_ignored(
    tmp_path: Path, mosquitto: MosquittoServer, interop_python: Path
) -> None:
    """pysparkplug 0.6.1's ``EdgeNode.disconnect`` sends its NDEATH with the bdSeq prepared for
    the *next* session (the birth had n, the death carries n + 1). The specification ties an
    NDEATH to its NBIRTH by bdSeq, so both our host and our codec must count it as a stale death
    (reason ``stale_death``) and not mark the node's series STALE. Pinned third-party behaviour:
    if a later pysparkplug fixes it, this test says so."""
    run = uuid.uuid4().hex[:8]
    group, node, device = f"interop-{run}", "edge-2", "plc"
    outbox = SqliteOutbox(tmp_path / "o.sqlite")
    host = SparkplugHost(
        _host_config(mosquitto.port, group, f"zhizao-{run}"),
        OutboxSink(outbox),
        enterprise="acme",
        site="s1",
        gateway_id="gw",
    )
    recorder = Publisher(mosquitto.port, subscribe=f"spBv1.0/{group}/#")
    state = Publisher(mosquitto.port, subscribe=f"spBv1.0/STATE/zhizao-{run}")
    n_specs = len(NODE_METRICS) + len(DEVICE_METRICS)
    try:
        async with _running(host):
            await wait_for(lambda: bool(state.messages()), 30, "the host's STATE")
            sent = await asyncio.to_thread(
                _run_script,
                interop_python,
                "pysparkplug_edge.py",
                [str(mosquitto.port), "clean"],
                _plan(group, node, device),
            )
            await wait_for(
                lambda: host.stats.rejected["stale_death"] == 1, 30, "the NDEATH in the host"
            )
            await wait_for(lambda: host.stats.samples == 2 * n_specs, 30, "births and data")
        assert sent["death_bdseq"] == sent["bdseq"] + 1
        messages = recorder.messages()
        assert [t.split("/")[2] for t, _ in messages] == [
            "NBIRTH",
            "DBIRTH",
            "NDATA",
            "DDATA",
            "NDEATH",
        ]
        death = _parse(messages[-1][1])
        assert [int(m.long_value) for m in death.metrics] == [sent["bdseq"] + 1]
        assert dict(host.stats.rejected) == {"stale_death": 1}
        batch = stored(outbox)
        spb = [i for i, k in enumerate(outbox.table.keys) if k.measurement == "sparkplug"]
        in_spb = np.isin(batch.series, spb)
        assert in_spb.sum() == 2 * n_specs
        assert (batch.quality[in_spb] == Quality.GOOD).all()  # nothing marked STALE

        codec = SparkplugCodec(SparkplugConfig.model_validate({}), SeriesTable())
        decoded = codec.decode_many([t for t, _ in messages], [b for _, b in messages])
        assert decoded.errors == [] and codec.stale_deaths == 1
        assert len(decoded.batch) == 2 * n_specs
        assert (decoded.batch.quality == Quality.GOOD).all()  # nothing marked STALE
    finally:
        recorder.close()
        state.close()
        outbox.close()


def _ours(messages: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """The messages decoded with our schema and helpers, shaped like pysparkplug_host.py's."""
    births: dict[tuple[str, ...], dict[int, tuple[str, int]]] = {}
    out = []
    for topic, body in messages:
        msg = _parse(body)
        parts = topic.split("/")
        mtype, key = parts[2], (parts[3], *parts[4:])
        aliases = births.setdefault(key, {}) if "BIRTH" in mtype else births.get(key, {})
        metrics = []
        for m in msg.metrics:
            if m.name:
                name, dt = m.name, int(m.datatype)
                if m.HasField("alias"):
                    aliases[int(m.alias)] = (name, dt)
            else:
                name, dt = aliases[int(m.alias)]
            value = metric_value(m, dt)
            metrics.append(
                {
                    "name": name,
                    "alias": int(m.alias) if m.HasField("alias") else None,
                    "datatype": DataType(dt).name.upper(),
                    "value": None if value is None else _expected(value, DataType(dt)),
                    "timestamp": int(m.timestamp) if m.HasField("timestamp") else None,
                    "is_null": value is None,
                }
            )
        out.append(
            {
                "type": mtype,
                "seq": int(msg.seq) if msg.HasField("seq") else None,
                "metrics": metrics,
            }
        )
    return out


async def test_simulator_edge_node_is_decoded_by_pysparkplug(
    mosquitto: MosquittoServer, interop_python: Path
) -> None:
    """The simulator's Sparkplug edge node (births, alias-only DATA, NDEATH on stop) as
    pysparkplug sees it: every metric's name, alias, datatype, value and timestamp equal ours."""
    group = f"interop-sim-{uuid.uuid4().hex[:8]}"
    sc = build_scenario(
        SimConfig(machines=1, sparkplug_group=group),
        1,
        "2026-11-23T06:00:00+08:00",
        "2026-11-23T07:00:00+08:00",
    )
    clock = SimClock(sc.start_ns)
    proc = subprocess.Popen(
        [str(interop_python), str(HERE / "pysparkplug_host.py"), str(mosquitto.port), group],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    out = _Lines(proc.stdout)
    recorder = Publisher(mosquitto.port, subscribe=f"spBv1.0/{group}/#")
    sim = MqttFactoryPublisher(sc, clock, f"mqtt://127.0.0.1:{mosquitto.port}")
    try:
        await wait_for(lambda: {"ready": True} in out.snapshot(), 30, "pysparkplug host ready")
        await asyncio.to_thread(sim.start, 20.0)
        # 2.5 meter periods of simulated time have passed: boundaries 0, 1, 2 are due
        clock.start(wall_start_s=time.time() - 2.5 * sc.config.meter_period_s)
        assert sim.publish_due() == 3
        await asyncio.to_thread(sim.stop)
        rc = await asyncio.to_thread(proc.wait, SCRIPT_TIMEOUT_S)
        stderr = proc.stderr.read() if proc.stderr else ""
        assert rc == 0, f"pysparkplug_host.py failed ({rc}): {out.snapshot()}\n{stderr}"
        await wait_for(
            lambda: any("/NDEATH/" in t for t, _ in recorder.messages()), 30, "the NDEATH"
        )
    finally:
        recorder.close()
        _reap(proc, out)
    theirs = [r for r in out.snapshot() if "ready" not in r]
    assert [r.get("error") for r in theirs] == [None] * len(theirs), theirs
    ours = _ours(recorder.messages())
    assert [r["type"] for r in ours] == ["NBIRTH", "DBIRTH"] + ["NDATA", "DDATA"] * 3 + ["NDEATH"]
    # the node's birth: bdSeq, the rebirth control and the node metric; the device: five metrics
    assert [m["name"] for m in ours[0]["metrics"]][:2] == [BDSEQ_METRIC, "Node Control/Rebirth"]
    assert len(ours[1]["metrics"]) == 5 and all(m["alias"] for m in ours[1]["metrics"])
    assert all(m["is_null"] is False for r in ours for m in r["metrics"])
    their_view = [{k: r[k] for k in ("type", "seq", "metrics")} for r in theirs]
    ours[-1]["seq"] = None  # pysparkplug's NDeath has no seq (the death carries none)
    assert their_view == ours


async def test_pysparkplug_uint64_above_int64_keeps_the_gateway_host_running(
    tmp_path: Path, mosquitto: MosquittoServer, interop_python: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    group, node, device = f"interop-{run}", "edge-3", "plc"
    big = Spec("Meter/Energy Wh", 1, DataType.UInt64, 2**64 - 1, 2**63 + 5, "meter_energy_wh")
    ok = Spec("Meter/Power", 2, DataType.Double, 1.5, 2.5, "meter_power")
    plan = json.loads(_plan(group, node, device))
    plan["node_metrics"] = [
        {
            "name": s.name,
            "alias": s.alias,
            "datatype": s.datatype.name.upper(),
            "birth": s.birth,
            "data": s.data,
            "ts_ms": {"birth": s.ts_ms("birth"), "data": s.ts_ms("data")},
        }
        for s in (big, ok)
    ]
    plan["device_metrics"] = plan["device_metrics"][:1]
    outbox = SqliteOutbox(tmp_path / "o.sqlite")
    host = SparkplugHost(
        _host_config(mosquitto.port, group, f"zhizao-{run}"),
        OutboxSink(outbox),
        enterprise="acme",
        site="s1",
        gateway_id="gw",
    )
    state = Publisher(mosquitto.port, subscribe=f"spBv1.0/STATE/zhizao-{run}")
    task = asyncio.create_task(host.run())
    try:
        await wait_for(lambda: bool(state.messages()), 30, "the host's STATE")
        await asyncio.to_thread(
            _run_script,
            interop_python,
            "pysparkplug_edge.py",
            [str(mosquitto.port)],
            json.dumps(plan),
        )

        def power_stored() -> bool:
            return task.done() or host.stats.samples >= 3 * 2  # Power and Press/Force, 3 each

        await wait_for(power_stored, 30, "the samples or the end of the host task")
        assert not task.done(), f"the Sparkplug host task ended: {task.exception()!r}"
        # the out-of-range UInt64 samples (birth and data) are refused with a reason, the rest of
        # the node's metrics are stored
        assert host.stats.rejected.get("int_out_of_range") == 2, host.stats.rejected
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, OverflowError):
            await task
        state.close()
        outbox.close()
