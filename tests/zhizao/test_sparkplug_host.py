"""The one Sparkplug host state machine: rebirth hold-off and owners, strictness, the policy."""

from __future__ import annotations

from collections.abc import Sequence

from zhizao.errors import ValidationError
from zhizao.model import FieldType, SeriesKey, SeriesTable
from zhizao.quality import Quality
from zhizao.sparkplug import (
    BDSEQ_METRIC,
    DataType,
    MetricValue,
    SparkplugTopic,
    pb,
    set_metric_value,
)
from zhizao.sparkplug_host import (
    SparkplugHostState,
    SparkplugMetricMap,
    SparkplugSeriesPolicy,
    issue_counts,
    snake_name,
)

Metric = tuple[str | None, int | None, int, MetricValue]
TS_MS = 1_767_225_600_000


def spb(metrics: Sequence[Metric], ts_ms: int = TS_MS, seq: int | None = None) -> bytes:
    p = pb.Payload()
    p.timestamp = ts_ms
    if seq is not None:
        p.seq = seq
    for name, alias, dt, value in metrics:
        m = p.metrics.add()
        if name is not None:
            m.name = name
        if alias is not None:
            m.alias = alias
        set_metric_value(m, dt, value)
    return bytes(p.SerializeToString())


def _host(table: SeriesTable, **kw: object) -> SparkplugHostState:
    policy = SparkplugSeriesPolicy.from_config([], enterprise="acme", site="s1")
    return SparkplugHostState(policy, table.add, **kw)  # type: ignore[arg-type]


def test_rebirth_hold_off_per_node_counts_requests_seen_from_others() -> None:
    host = _host(SeriesTable(), rebirth_holdoff_s=5.0)
    data = spb([(None, 1, DataType.Double, 1.0)])
    for node in ("a", "b"):
        host.handle(f"spBv1.0/g/NDATA/{node}", data, 0)
    assert host.rebirth_wanted == {("g", "a"), ("g", "b")}
    host.observe_rebirth("g", "b", 100.0)  # another host asked b at t=100
    assert host.rebirths_due(101.0).send == [("g", "a")]
    for node in ("a", "b"):
        host.handle(f"spBv1.0/g/NDATA/{node}", data, 0)
    assert host.rebirths_due(104.9).send == []  # both inside their hold-off: forgotten
    assert host.rebirth_wanted == set()
    host.handle("spBv1.0/g/NDATA/a", data, 0)
    assert host.rebirths_due(106.0).send == [("g", "a")]


def test_a_node_owned_by_another_host_is_forwarded_once_per_hold_off() -> None:
    host = _host(SeriesTable(), rebirth_holdoff_s=5.0)
    data = spb([(None, 1, DataType.Double, 1.0)])
    host.handle("spBv1.0/g/NDATA/a", data, 0)
    host.handle("spBv1.0/g/NDATA/b", data, 0)
    plan = host.rebirths_due(10.0, owns=lambda g, n: n == "a")
    assert (plan.send, plan.forward) == ([("g", "a")], [("g", "b")])
    host.handle("spBv1.0/g/NDATA/b", data, 0)
    assert host.rebirths_due(11.0, owns=lambda g, n: n == "a").forward == []
    host.want_rebirth("g", "c")  # an owner is told by another process
    assert host.rebirths_due(12.0, owns=lambda g, n: True).send == [("g", "c")]


def test_strict_refuses_a_message_whole_lenient_keeps_the_rest() -> None:
    birth = spb([(BDSEQ_METRIC, None, DataType.Int64, 0), ("T", 1, DataType.Double, 1.0)], seq=0)
    data = spb([(None, 1, DataType.Double, 2.0), (None, 9, DataType.Double, 3.0)], seq=1)
    for strict, stored in ((True, [1.0]), (False, [1.0, 2.0])):
        host = _host(SeriesTable(), strict=strict)
        assert host.handle("spBv1.0/g/NBIRTH/n", birth, 0) == []
        issues = host.handle("spBv1.0/g/NDATA/n", data, 0)
        assert [(i.reason, i.refuses) for i in issues] == [("unknown_alias", True)]
        assert host.take()[2] == stored
        assert host.rebirth_wanted == {("g", "n")}


def test_seq_gap_and_stale_death() -> None:
    table = SeriesTable()
    host = _host(table)
    b = [(BDSEQ_METRIC, None, DataType.Int64, 3), ("Motor/Speed RPM", 1, DataType.Float, 5.0)]
    host.handle("spBv1.0/g/NBIRTH/n", spb(b, seq=0), 0)
    issues = host.handle("spBv1.0/g/NDATA/n", spb([(None, 1, DataType.Float, 6.0)], seq=5), 0)
    assert issue_counts(issues) == {"seq_gap": 1} and not issues[0].refuses
    old_will = spb([(BDSEQ_METRIC, None, DataType.Int64, 2)], TS_MS + 1)
    assert issue_counts(host.handle("spBv1.0/g/NDEATH/n", old_will, 0)) == {"stale_death": 1}
    death = spb([(BDSEQ_METRIC, None, DataType.Int64, 3)], TS_MS + 2)
    assert host.handle("spBv1.0/g/NDEATH/n", death, 0) == []
    series, ts, values, quality = host.take()
    assert values == [5.0, 6.0, 6.0] and quality == [0, 0, Quality.STALE]
    assert ts[-1] == (TS_MS + 2) * 1_000_000
    key = table.keys[series[0]]
    assert key == SeriesKey.make(
        "sparkplug",
        {"enterprise": "acme", "site": "s1", "group": "g", "edge_node": "n"},
        "motor_speed_rpm",
        FieldType.FLOAT,
    )
    # no seq check (a shared subscription): no gap counted
    quiet = _host(SeriesTable(), check_seq=False)
    quiet.handle("spBv1.0/g/NBIRTH/n", spb(b, seq=0), 0)
    assert quiet.handle("spBv1.0/g/NDATA/n", spb([(None, 1, DataType.Float, 6.0)], seq=5), 0) == []


def test_policy_maps_the_tag_map_to_assets_and_refuses_a_type_change() -> None:
    entry = SparkplugMetricMap.model_validate(
        {
            "edge_node": "n",
            "device": "plc",
            "metric": "Force",
            "asset": {"area": "hall", "line": "l1", "machine": "press"},
            "measurement": "press",
            "signal": "force_kn",
        }
    )
    policy = SparkplugSeriesPolicy.from_config([entry], enterprise="acme", site="s1")
    topic = SparkplugTopic.parse("spBv1.0/g/DDATA/n/plc")
    assert policy.key_of(topic, "plc", "Force", int(DataType.Int32)) == SeriesKey.make(
        "press",
        {"enterprise": "acme", "site": "s1", "area": "hall", "line": "l1", "machine": "press"},
        "force_kn",
        FieldType.FLOAT,  # the tag map's type, not the metric's
    )
    assert policy.key_of(topic, "plc", "Blob", int(DataType.Bytes)) is None
    assert snake_name("3rd Axis/Load%") == "m_3rd_axis_load"

    def refuse(key: SeriesKey) -> int:
        raise ValidationError("type_change", "known with another type")

    host = SparkplugHostState(policy, refuse)
    issues = host.handle("spBv1.0/g/NBIRTH/n", spb([("Temp", 1, DataType.Double, 1.0)], seq=0), 0)
    assert issue_counts(issues) == {"type_change": 1}
