"""Gateway frame codec: round trips, every decode error reason, many frames into one batch."""

from __future__ import annotations

import struct

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.frames import (
    CONTENT_TYPE,
    DECODE_REASONS,
    FrameCodec,
    FrameDecoder,
    GatewayFrame,
    decode_many,
    frame_topic,
    frames_subscription,
    parse_frame_topic,
)
from zhizao.errors import DecodeError, ValidationError
from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable

KEYS = [
    SeriesKey.make("spindle", {"machine": "cnc-1", "site": "s1"}, "speed_rpm", FieldType.FLOAT),
    SeriesKey.make("counter", {"machine": "cnc-1", "site": "s1"}, "parts", FieldType.INT),
    SeriesKey.make("machine_state", {"machine": "cnc-1", "site": "s1"}, "running", FieldType.BOOL),
    SeriesKey.make("spindle", {"machine": "cnc-1", "site": "s1"}, "program", FieldType.STRING),
]


def make_frame(
    n: int = 40, seq: int = 7, gateway: str = "gw-a", quality: bool = True
) -> GatewayFrame:
    table = SeriesTable.of(KEYS)
    rng = np.random.default_rng(n + seq)
    series = rng.integers(0, len(KEYS), n)
    values = np.empty(n, object)
    for i, s in enumerate(series.tolist()):
        values[i] = [float(rng.normal()), int(rng.integers(-(2**62), 2**62)), bool(i % 2), f"O{i}"][
            s
        ]
    q = rng.integers(0, 3, n) if quality else None
    batch = Batch.build(
        table, series, 1_767_225_600_000_000_000 + np.arange(n) * 1_000_000, values, q
    )
    return GatewayFrame(gateway, seq, KEYS, batch, created_ns=123)


def assert_same(a: GatewayFrame, b: GatewayFrame) -> None:
    assert (a.gateway_id, a.seq, a.created_ns) == (b.gateway_id, b.seq, b.created_ns)
    assert a.table_keys == b.table_keys
    for col in ("series", "ts_ns", "value_f64", "value_i64", "quality"):
        np.testing.assert_array_equal(getattr(a.batch, col), getattr(b.batch, col), err_msg=col)
    table = SeriesTable.of(a.table_keys)
    # repr: NaN == NaN for this purpose (float bits are compared in the property test)
    assert [repr(v) for v in a.batch.values_for(table)] == [
        repr(v) for v in b.batch.values_for(table)
    ]


def test_round_trip_all_types() -> None:
    frame = make_frame()
    payload = FrameCodec.encode(frame)
    assert payload[:3] == b"ZF\x01"
    assert_same(frame, FrameCodec.decode(payload))


def test_all_good_quality_omits_column() -> None:
    frame = make_frame(quality=False)
    with_q = FrameCodec.encode(make_frame(quality=True))
    payload = FrameCodec.encode(frame)
    assert payload[3] & 1 == 1
    assert len(payload) == len(with_q) - 40
    out = FrameCodec.decode(payload)
    assert not out.batch.quality.any() and len(out.batch.quality) == 40


def test_empty_frame() -> None:
    frame = GatewayFrame("gw", 0, [], Batch.empty())
    out = FrameCodec.decode(FrameCodec.encode(frame))
    assert len(out.batch) == 0 and out.table_keys == []


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(-(2**63), 2**63 - 1),
            st.floats(allow_nan=True, allow_infinity=True),
            st.text(max_size=8),
            st.integers(0, 3),
        ),
        max_size=60,
    ),
    st.integers(0, 2**63 - 1),
)
def test_round_trip_property(rows: list[tuple[int, int, float, str, int]], seq: int) -> None:
    table = SeriesTable.of(KEYS)
    series = np.array([r[0] for r in rows], np.int32)
    values = np.array([[r[2], r[1], r[1] % 2, r[3]][r[0]] for r in rows], dtype=object)
    batch = Batch.build(
        table, series, np.array([r[1] for r in rows], np.int64), values, [r[4] for r in rows]
    )
    frame = GatewayFrame("gw-π", seq, KEYS, batch)
    out = FrameCodec.decode(FrameCodec.encode(frame))
    np.testing.assert_array_equal(
        out.batch.value_f64.view(np.int64), batch.value_f64.view(np.int64)
    )
    assert_same(frame, out)


def reason(payload: bytes) -> str:
    with pytest.raises(DecodeError) as info:
        FrameCodec.decode(payload)
    assert info.value.reason in DECODE_REASONS
    assert str(info.value)  # operator-readable message
    return info.value.reason


def rebuild(meta: object, keys: object, body: bytes, flags: int = 0) -> bytes:
    enc = msgspec.msgpack.encode
    m, k = enc(meta), enc(keys)
    head_end = 16 + len(m) + len(k)
    return (
        struct.pack("<2sBBIII", b"ZF", 1, flags, len(m), len(k), 0)
        + m
        + k
        + b"\0" * ((-head_end) & 7)
        + body
    )


def test_decode_error_reasons() -> None:
    good = FrameCodec.encode(make_frame())
    assert reason(b"") == "bad_magic"
    assert reason(b'{"timestamp_ms": 1}') == "bad_magic"
    assert reason(b"ZF") == "truncated"
    assert reason(b"ZF\x02" + good[3:]) == "unsupported_version"
    assert reason(b"ZF\x01\x80" + good[4:]) == "unknown_flags"
    assert reason(good[:10]) == "truncated"
    assert reason(good[:40]) == "truncated"
    assert reason(good[: len(good) // 2]) == "truncated"
    assert reason(good + b"\0" * 3) in ("bad_string_table", "length_mismatch")
    wire_keys = [("m", [("a", "b")], "f", 0)]
    body = np.int64(5).tobytes() + np.float64(1.5).tobytes() + np.int32(0).tobytes() + b"\0"
    assert FrameCodec.decode(rebuild(("gw", 1, 0, 1, 0), wire_keys, body)).batch.value_f64[0] == 1.5
    assert reason(rebuild(("gw", 1, 0, 1, 0), wire_keys, body + b"xx")) == "length_mismatch"
    assert reason(rebuild(("gw", 1, 0, 1, 0), wire_keys, body[:-1])) == "truncated"
    assert reason(rebuild(("gw", "one", 0, 1, 0), wire_keys, body)) == "bad_header"
    assert reason(rebuild(("gw", 1, 0, -1, 0), wire_keys, body)) == "bad_header"
    assert reason(rebuild(("gw", 1, 0, 1 << 30, 0), wire_keys, body)) == "too_many_samples"
    assert reason(rebuild(("gw", 1, 0, 1, 0), [("m", [], "f", 9)], body)) == "bad_series_key"
    assert reason(rebuild(("gw", 1, 0, 1, 0), [("", [], "f", 0)], body)) == "bad_series_key"
    assert reason(rebuild(("gw", 1, 0, 1, 0), wire_keys * 2, body)) == "bad_series_key"
    assert reason(rebuild(("gw", 1, 0, 1, 0), "notalist", body)) == "bad_header"
    bad_index = body[:16] + np.int32(3).tobytes() + b"\0"
    assert reason(rebuild(("gw", 1, 0, 1, 0), wire_keys, bad_index)) == "series_index_out_of_range"
    neg_index = body[:16] + np.int32(-1).tobytes() + b"\0"
    assert reason(rebuild(("gw", 1, 0, 1, 0), wire_keys, neg_index)) == "series_index_out_of_range"
    str_keys = [("m", [], "s", 3)]
    s_body = body[:16] + np.int32(0).tobytes() + b"\0"
    ok = rebuild(("gw", 1, 0, 1, 1), str_keys, s_body + msgspec.msgpack.encode(["x"]))
    assert FrameCodec.decode(ok).batch.value_str.tolist() == ["x"]  # type: ignore[union-attr]
    assert (
        reason(rebuild(("gw", 1, 0, 1, 1), str_keys, s_body + msgspec.msgpack.encode([1])))
        == "bad_string_table"
    )
    assert (
        reason(rebuild(("gw", 1, 0, 1, 1), str_keys, s_body + msgspec.msgpack.encode(["x", "y"])))
        == "bad_string_table"
    )
    assert reason(rebuild(("gw", 1, 0, 1, 0), str_keys, s_body)) == "bad_string_table"
    assert (
        reason(rebuild(("gw", 1, 0, 1, 1), wire_keys, body + msgspec.msgpack.encode(["x"])))
        == "bad_string_table"
    )


def test_decode_many_maps_local_to_global() -> None:
    f1 = make_frame(30, seq=1)
    # a second gateway lists the keys in another order plus one new key
    new_key = SeriesKey.make("energy", {"meter": "m1"}, "energy_kwh", FieldType.FLOAT)
    order = [3, 0, 2, 1]
    remap = np.argsort(order).astype(np.int32)
    keys2 = [KEYS[i] for i in order] + [new_key]
    b1 = make_frame(25, seq=2).batch
    b2 = Batch(remap[b1.series], b1.ts_ns + 1, b1.value_f64, b1.value_i64, b1.quality, b1.value_str)
    f2 = GatewayFrame("gw-b", 2, keys2, b2)
    table, batch = decode_many([FrameCodec.encode(f1), FrameCodec.encode(f2)])
    assert table.keys == [*KEYS, new_key]  # listed keys join the table even without samples
    assert len(batch) == 55
    vals = batch.values_for(table).tolist()
    t1 = SeriesTable.of(KEYS)
    assert vals[:30] == f1.batch.values_for(t1).tolist()
    assert vals[30:] == make_frame(25, seq=2).batch.values_for(t1).tolist()
    np.testing.assert_array_equal(batch.series[30:], make_frame(25, seq=2).batch.series)


def test_decoder_keeps_table_and_reports_errors_per_payload() -> None:
    dec = FrameDecoder()
    good = FrameCodec.encode(make_frame(10, seq=1))
    changed = [SeriesKey(k.measurement, k.tags, k.field, FieldType.FLOAT) for k in KEYS[:2]]
    b = Batch.build(SeriesTable.of(changed), [0, 1, 1], [1, 2, 3], [1.0, 2.0, 3.0])
    clash = FrameCodec.encode(GatewayFrame("gw-c", 1, changed, b))
    out = dec.decode_many([good, b"ZF\x09garbage", good, clash])
    assert out.ok == [0, 2, 3]
    assert [(pos, e.reason) for pos, e in out.errors] == [(1, "unsupported_version")]
    assert len(out.batch) == 23
    np.testing.assert_array_equal(np.bincount(out.frame_index, minlength=4), [10, 0, 10, 3])
    # KEYS[1] (parts, INT) arrives as FLOAT: those samples have no series, and the explicit
    # declared column points at the refused key; no other sample has a declared key
    assert out.declared is not None
    assert (out.batch.series < 0).sum() == 2
    assert out.declared[out.batch.series < 0].tolist() == [0, 0]
    assert (out.declared[out.batch.series >= 0] == -1).all()
    assert out.refused == [changed[1]]
    assert out.seqs == [1, 1, 1] and out.gateway_ids == ["gw-a", "gw-a", "gw-c"]
    again = dec.decode_many([good])
    assert len(dec.table) == 4 and len(again.batch) == 10
    with pytest.raises(ValidationError):
        decode_many([good, clash])


def test_from_table_carries_only_used_keys() -> None:
    table = SeriesTable.of(KEYS)
    batch = Batch.build(table, [3, 1, 3], [1, 2, 3], ["a", 5, "b"])
    frame = GatewayFrame.from_table("gw", 1, table, batch)
    assert frame.table_keys == [KEYS[1], KEYS[3]]
    out = FrameCodec.decode(FrameCodec.encode(frame))
    assert out.batch.values_for(SeriesTable.of(out.table_keys)).tolist() == ["a", 5, "b"]


def test_topics() -> None:
    assert frame_topic("plant-1", "gw-7") == "zhizao/v1/plant-1/gw-7/frames"
    assert frames_subscription("ingest") == "$share/ingest/zhizao/v1/+/+/frames"
    assert parse_frame_topic("zhizao/v1/plant-1/gw-7/frames") == ("plant-1", "gw-7")
    assert parse_frame_topic("zhizao/v1/plant-1/gw-7/other") is None
    assert parse_frame_topic("spBv1.0/g/NDATA/n") is None
    assert CONTENT_TYPE == "application/vnd.zhizao.frame.v1"
    with pytest.raises(ValueError):
        frame_topic("a/b", "gw")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 3))
def test_decode_of_arbitrary_bytes_only_raises_decode_error(tail: bytes, flags: int) -> None:
    payload = b"ZF\x01" + bytes([flags]) + tail
    try:
        frame = FrameCodec.decode(payload)
    except DecodeError as exc:
        assert exc.reason in DECODE_REASONS
        return
    assert len(frame.batch) == len(frame.batch.ts_ns)
