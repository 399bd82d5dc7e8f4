"""The shared Sparkplug B module: generated schema, topics, metric values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhizao.errors import DecodeError
from zhizao.sparkplug import (
    DataType,
    MessageType,
    SparkplugTopic,
    metric_value,
    next_seq,
    pb,
    set_metric_value,
)


def test_payload_round_trips_through_the_wire_format() -> None:
    payload = pb.Payload(timestamp=1_700_000_000_000, seq=7, uuid="u")
    m = payload.metrics.add(name="Spindle/ActSpeed", alias=3, timestamp=1_700_000_000_001)
    set_metric_value(m, DataType.Double, 1234.5)
    back = pb.Payload.FromString(payload.SerializeToString())
    assert back.seq == 7 and back.uuid == "u"
    assert back.metrics[0].alias == 3
    assert metric_value(back.metrics[0]) == 1234.5
    assert pb.DESCRIPTOR.package == "org.eclipse.tahu.protobuf"
    assert pb.DataType.Value("Template") == int(DataType.Template) == 19


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("spBv1.0/plant/NBIRTH/edge1", SparkplugTopic("plant", MessageType.NBIRTH, "edge1")),
        (
            "spBv1.0/plant/DDATA/edge1/dev",
            SparkplugTopic("plant", MessageType.DDATA, "edge1", "dev"),
        ),
        ("spBv1.0/STATE/host-a", SparkplugTopic("", MessageType.STATE, "host-a")),
    ],
)
def test_topics_parse_and_format(topic: str, expected: SparkplugTopic) -> None:
    parsed = SparkplugTopic.parse(topic)
    assert parsed == expected
    assert parsed.format() == topic


@pytest.mark.parametrize(
    "topic",
    [
        "spBv1.0/plant/NDATA/edge1/dev",
        "spBv1.0/plant/DDATA/edge1",
        "spAv1.0/g/NDATA/e",
        "spBv1.0/g/XDATA/e",
        "a/b",
    ],
)
def test_bad_topics_are_decode_errors(topic: str) -> None:
    with pytest.raises(DecodeError) as info:
        SparkplugTopic.parse(topic)
    assert info.value.reason == "bad_topic"


def test_seq_wraps_after_255() -> None:
    assert next_seq(254) == 255
    assert next_seq(255) == 0


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_signed_int64_two_complement_round_trip(x: int) -> None:
    m = pb.Payload.Metric()
    set_metric_value(m, DataType.Int64, x)
    assert m.long_value >= 0
    assert metric_value(pb.Payload.Metric.FromString(m.SerializeToString())) == x


@given(st.integers(min_value=-(2**15), max_value=2**15 - 1))
def test_signed_int16_round_trip(x: int) -> None:
    m = pb.Payload.Metric()
    set_metric_value(m, DataType.Int16, x)
    assert metric_value(m) == x


def test_null_and_mismatch_and_unsupported() -> None:
    m = pb.Payload.Metric(name="x")
    set_metric_value(m, DataType.Double, None)
    assert m.is_null and metric_value(m) is None
    bad = pb.Payload.Metric(name="y", datatype=DataType.Boolean, string_value="yes")
    with pytest.raises(DecodeError) as info:
        metric_value(bad)
    assert info.value.reason == "type_mismatch"
    ds = pb.Payload.Metric(name="z", datatype=DataType.DataSet)
    ds.dataset_value.num_of_columns = 1
    with pytest.raises(DecodeError) as info:
        metric_value(ds)
    assert info.value.reason == "unsupported_datatype"


def test_data_messages_may_omit_the_datatype() -> None:
    m = pb.Payload.Metric(alias=5, long_value=42)
    assert metric_value(m, DataType.UInt64) == 42
