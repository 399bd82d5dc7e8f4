"""The OPC UA bulk path's conversion rules, fed with asyncua DataValues (no server needed)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from asyncua import ua

from analytics.calendar import PlannedTime
from analytics.machine import MachineSignals, Signal
from analytics.timeline import machine_timeline
from gateway.config import OpcUaSourceConfig
from gateway.outbox import SqliteOutbox
from gateway.sink import OutboxSink
from gateway.sources.opcua.source import OpcUaSource
from tests.gateway.helpers import stored
from zhizao.quality import Quality
from zhizao.site import MachineState, MachineTypeConfig

TS = datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)


def _source(tmp_path: Path) -> tuple[OpcUaSource, SqliteOutbox]:
    tags = [
        {
            "node": f"ns=2;s=T{i}",
            "asset": {"machine": f"m{i}"},
            "measurement": "x",
            "signal": "v",
            "type": t,
        }
        for i, t in enumerate(["float", "int", "bool", "string"])
    ]
    config = OpcUaSourceConfig.model_validate(
        {
            "type": "opcua",
            "name": "c",
            "endpoint": "opc.tcp://127.0.0.1:1",
            "security": {"policy": "None", "mode": "None"},
            "tags": tags,
        }
    )
    outbox = SqliteOutbox(tmp_path / "o.sqlite")
    src = OpcUaSource(
        config, OutboxSink(outbox), enterprise="e", site="s", gateway_id="g", state_dir=tmp_path
    )
    return src, outbox


def _dv(value: object, vtype: ua.VariantType, status: int = 0) -> ua.DataValue:
    return ua.DataValue(
        ua.Variant(value, vtype),
        StatusCode=ua.StatusCode(status),
        SourceTimestamp=TS,
        ServerTimestamp=TS,
    )


async def test_types_quality_timestamps_and_rejections(tmp_path: Path) -> None:
    src, outbox = _source(tmp_path)
    src._collector.add_values(
        [0, 1, 2, 3, 0, 1, 0],
        [
            _dv(1.5, ua.VariantType.Double),
            _dv(7, ua.VariantType.Int32),
            _dv(True, ua.VariantType.Boolean),
            _dv(ua.LocalizedText("Executing"), ua.VariantType.LocalizedText),
            _dv(2.5, ua.VariantType.Double, 0x40000000),  # Uncertain
            _dv("seven", ua.VariantType.String),  # wrong type for an int tag
            _dv(None, ua.VariantType.Null, 0x80310000),  # BadNoCommunication without a value
        ],
    )
    await src._flush()
    batch = stored(outbox)
    data = batch.take(np.isin(batch.series, src._slots.series))
    assert len(data) == 5
    assert data.values_for(outbox.table).tolist() == [1.5, 7, True, "Executing", 2.5]
    assert data.quality.tolist() == [Quality.GOOD] * 4 + [Quality.UNCERTAIN]
    # microsecond source timestamps survive exactly
    assert (data.ts_ns == int(TS.timestamp()) * 10**9 + 123456000).all()
    assert dict(src.stats.rejected) == {"wrong_type": 1, "no_value": 1}
    outbox.close()


async def test_server_queue_overflow_is_counted(tmp_path: Path) -> None:
    src, outbox = _source(tmp_path)
    values = [_dv(float(i), ua.VariantType.Double, 0x480 if i in (3, 7) else 0) for i in range(10)]
    src._collector.add_values([0] * 10, values)
    await src._flush()
    assert src.stats.rejected["server_queue_overflow"] == 2
    batch = stored(outbox)
    data = batch.take(np.isin(batch.series, src._slots.series))
    np.testing.assert_array_equal(data.value_f64, np.arange(10.0))  # the values themselves are kept
    outbox.close()


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(1_767_225_600 + seconds, tz=UTC)


def _dv_at(
    value: float | None, src_s: float, status: int = 0, srv_s: float | None = None
) -> ua.DataValue:
    return ua.DataValue(
        None if value is None else ua.Variant(value, ua.VariantType.Double),
        StatusCode=ua.StatusCode(status),
        SourceTimestamp=_at(src_s),
        ServerTimestamp=_at(src_s if srv_s is None else srv_s),
    )


def _markers(src: OpcUaSource, outbox: SqliteOutbox) -> list[tuple[str, str, int, int]]:
    """(machine, measurement tag, ts s, code) of every stored data_quality sample, in order."""
    batch = stored(outbox)
    out = []
    for i in range(len(batch)):
        key = outbox.table.keys[int(batch.series[i])]
        if key.measurement == "data_quality":
            tags = key.tag_dict
            ts_s = int(batch.ts_ns[i] // 10**9) - 1_767_225_600
            out.append((tags["machine"], tags["measurement"], ts_s, int(batch.value_i64[i])))
    return out


async def test_connection_drop_writes_quality_transitions_only(tmp_path: Path) -> None:
    """A machine losing its connection (Bad status, no value) is marked bad at the first bad
    sample and good again at the next good value: transitions only, every no-value sample still
    counted as rejected."""
    src, outbox = _source(tmp_path)
    bad = 0x80310000  # BadNoCommunication
    src._collector.add_values(
        [0, 0, 0, 0, 0, 1],
        [
            _dv_at(1.0, 10),
            _dv_at(None, 20, bad),
            _dv_at(None, 30, bad),
            _dv_at(None, 40, bad),
            _dv_at(2.0, 50),
            _dv_at(5.0, 12),
        ],
    )
    await src._flush()
    src._collector.add_values([0, 0], [_dv_at(3.0, 60), _dv_at(None, 70, bad)])
    await src._flush()
    src._collector.add_values([0], [_dv_at(None, 80, bad)])  # still bad: nothing new
    await src._flush()
    # the value did not change while the machine was away: re-sent with its old source time,
    # the signal is good again when the server saw it
    src._collector.add_values([0], [_dv_at(3.0, 60, srv_s=95)])
    await src._flush()
    assert sorted(_markers(src, outbox)) == [
        ("m0", "x", 10, 0),  # first sample after start: state known
        ("m0", "x", 20, 2),
        ("m0", "x", 50, 0),
        ("m0", "x", 70, 2),
        ("m0", "x", 95, 0),
        ("m1", "x", 12, 0),
    ]
    assert src.stats.rejected == {"no_value": 5}
    assert src.stats.samples == 5  # device samples; the markers are not counted as samples
    batch = stored(outbox)
    data = batch.take(np.isin(batch.series, src._slots.series))
    assert data.value_f64[data.series == src._slots.series[0]].tolist() == [1.0, 2.0, 3.0, 3.0]
    outbox.close()


async def test_uncertain_status_and_session_loss_are_marked(tmp_path: Path) -> None:
    src, outbox = _source(tmp_path)
    src._collector.add_values(
        [0, 0, 1], [_dv_at(1.0, 10), _dv_at(1.5, 20, 0x40000000), _dv_at(7.0, 15)]
    )
    await src._flush()
    src.stats.connected = True
    await src._emit_session_lost()  # the session went down: every signal is bad
    batch = stored(outbox)
    key_of = outbox.table.keys
    lost = [
        (key_of[int(s)].tag_dict["machine"], int(v))
        for s, v in zip(batch.series, batch.value_i64, strict=True)
        if key_of[int(s)].measurement == "data_quality"
    ]
    # a drain writes its markers slot by slot; the session loss marks the four signals
    assert lost == [("m0", 0), ("m0", 1), ("m1", 0), ("m0", 2), ("m1", 2), ("m2", 2), ("m3", 2)]
    outbox.close()


async def test_restart_clears_the_marker_of_an_unchanged_signal(tmp_path: Path) -> None:
    """Issue 14, the gateway restart bug: a machine in a long unchanged production period; the
    gateway stops cleanly (every signal marked bad at the stop) and starts again; the initial
    value the new subscription delivers still has its old source timestamp, from before the
    stop. The marker must turn good again right after the stop's bad marker (the device vouches
    the value held), so the KPI engine books the period as production, not as NO_DATA until the
    state next changes."""
    ns = 10**9
    since_s = time.time() - 3 * 3600  # running unchanged since 3 h ago

    def dv(src_s: float) -> ua.DataValue:
        when = datetime.fromtimestamp(src_s, tz=UTC)
        return ua.DataValue(ua.Variant(1.0, ua.VariantType.Double), StatusCode=ua.StatusCode(0),
                            SourceTimestamp=when, ServerTimestamp=when)  # fmt: skip

    def m0_markers(outbox: SqliteOutbox) -> list[tuple[int, int]]:
        batch = stored(outbox)
        keys = outbox.table.keys
        return sorted(
            (int(t), int(v))
            for sid, t, v in zip(batch.series, batch.ts_ns, batch.value_i64, strict=True)
            if keys[int(sid)].measurement == "data_quality"
            and keys[int(sid)].tag_dict["machine"] == "m0"
        )

    src, outbox = _source(tmp_path)
    src._collector.add_values([0], [dv(since_s)])
    await src._flush()
    src.stats.connected = True
    await src._emit_session_lost()  # the clean stop: every signal bad from now
    outbox.close()
    assert (tmp_path / "c.bad-since").stat().st_mode & 0o777 == 0o600

    # the restarted gateway: a new process (fresh marker state), the same state directory
    src2, outbox2 = _source(tmp_path)
    src2._collector.add_values([0], [dv(since_s)])  # unchanged: its old source timestamp
    await src2._flush()
    marks = m0_markers(outbox2)
    outbox2.close()
    assert [c for _, c in marks] == [0, 2, 0]
    assert abs(marks[0][0] - since_s * 1e9) <= 1000  # the source time, to the microsecond
    stop_ns = marks[1][0]
    # good again right after the stop's marker, not at the value's old source time (which
    # would leave the stop's bad marker in force)
    assert stop_ns < marks[2][0] <= stop_ns + 1000

    # what the KPI engine makes of these markers: production all along
    lo, hi = marks[0][0], stop_ns + 3600 * ns
    ts_m = np.array([t for t, _ in marks], np.int64)
    codes = np.array([c for _, c in marks], np.float64)
    state = Signal(np.array([lo], np.int64), np.array(["IN_CYCLE"], object))
    signals = MachineSignals({}, {"state": state}, {"state": Signal(ts_m, codes)})
    mtype = MachineTypeConfig.model_validate({"profile": "custom"})
    tl = machine_timeline(signals, mtype, PlannedTime.always(lo, hi), lo, hi, heartbeat_s=86400.0)
    seconds = tl.seconds_by_state()
    assert seconds[MachineState.NO_DATA] < 1e-5
    assert seconds[MachineState.IN_CYCLE] == pytest.approx((hi - lo) / ns, abs=1e-5)
