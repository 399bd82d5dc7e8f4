"""The OPC UA bulk path's conversion rules, fed with asyncua DataValues (no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from asyncua import ua

from gateway.config import OpcUaSourceConfig
from gateway.outbox import SqliteOutbox
from gateway.sink import OutboxSink
from gateway.sources.opcua import OpcUaSource
from tests.gateway.helpers import stored
from zhizao.quality import Quality

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
    data = batch.take(batch.series != src._conn_series)
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
    np.testing.assert_array_equal(
        batch.value_f64, np.arange(10.0)
    )  # the values themselves are kept
    outbox.close()
