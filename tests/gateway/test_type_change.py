"""Issue 17 item 6: a type change refuses samples with a counted reason, never stops a source,
and a type edited in gateway.yaml keeps (and sends) the stored backlog under its old type."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gateway.config import SparkplugSourceConfig
from gateway.outbox import SqliteOutbox
from gateway.sink import OutboxSink
from gateway.sources.sparkplug.source import SparkplugHost
from ingest.frames import FrameCodec, GatewayFrame
from tests.gateway.helpers import stored
from zhizao.config import parse_model
from zhizao.model import Batch, FieldType, SeriesKey
from zhizao.sparkplug import DataType, pb, set_metric_value

TOPIC = "spBv1.0/plant/{kind}/node1"


def _payload(seq: int, datatype: DataType, value: object, birth: bool) -> bytes:
    p = pb.Payload()
    p.timestamp = 1_767_225_600_000 + seq
    p.seq = seq % 256
    if birth:
        bd = p.metrics.add()
        bd.name = "bdSeq"
        set_metric_value(bd, DataType.Int64, 0)
    m = p.metrics.add()
    m.name = "Temperature"
    m.timestamp = p.timestamp
    if birth:
        m.alias = 1
        m.datatype = datatype
    else:
        m.alias = 1
    set_metric_value(m, datatype, value)
    return p.SerializeToString()


async def test_sparkplug_rebirth_with_another_datatype_is_counted_not_fatal(
    tmp_path: Path,
) -> None:
    with SqliteOutbox(tmp_path / "o.sqlite") as outbox:
        sink = OutboxSink(outbox)
        config = parse_model(
            SparkplugSourceConfig,
            {"type": "sparkplug", "name": "spb", "broker": {"port": 1}},
        )
        host = SparkplugHost(config, sink, enterprise="e", site="s", gateway_id="gw")
        emitted = 0
        host.handle(TOPIC.format(kind="NBIRTH"), _payload(0, DataType.Double, 1.5, True), 0)
        emitted += 1
        for i in range(1, 51):
            host.handle(TOPIC.format(kind="NDATA"), _payload(i, DataType.Double, i / 2, False), 0)
            emitted += 1
        await host._flush()
        # the node is re-flashed: the same metric is born again as an integer
        host.handle(TOPIC.format(kind="NBIRTH"), _payload(0, DataType.Int64, 7, True), 0)
        emitted += 1
        for i in range(1, 51):
            host.handle(TOPIC.format(kind="NDATA"), _payload(i, DataType.Int64, i, False), 0)
            emitted += 1
        await host._flush()
        refused = host.stats.rejected.get("type_change", 0)
        stored_n = host.stats.samples
    assert stored_n == 51, (stored_n, dict(host.stats.rejected))
    assert refused == 51
    assert stored_n + refused == emitted


def test_type_edited_in_config_keeps_the_backlog_under_its_old_type(tmp_path: Path) -> None:
    tags = {"site": "s1", "machine": "m1"}
    as_float = SeriesKey.make("spindle", tags, "speed_rpm", FieldType.FLOAT)
    as_int = SeriesKey.make("spindle", tags, "speed_rpm", FieldType.INT)
    path = tmp_path / "o.sqlite"
    with SqliteOutbox(path) as outbox:
        idx = outbox.series_index(as_float)
        ts = np.arange(1000, dtype=np.int64)
        outbox.append(Batch.build(outbox.table, np.full(1000, idx), ts, ts / 2.0))
    for _restart in range(2):  # the second restart loads both types from the file
        with SqliteOutbox(path) as outbox:
            new = outbox.series_index(as_int)  # gateway.yaml now says type: int
            ts = np.arange(1000, 1100, dtype=np.int64)
            outbox.append(Batch.build(outbox.table, np.full(100, new), ts, ts))
            batch = stored(outbox)
            keys = [outbox.table.keys[i] for i in batch.series.tolist()]
            frame = GatewayFrame.from_table("gw", 1, outbox.table, batch)
            decoded = FrameCodec.decode(FrameCodec.encode(frame))
    assert keys.count(as_float) == 1000  # the backlog, under its old type
    assert keys.count(as_int) == 200
    assert len(decoded.batch) == 1200
    assert {k.dtype for k in decoded.table_keys} == {FieldType.FLOAT, FieldType.INT}
