"""The vectorized line-protocol encoder: byte-equal to influxdb_client's Point, exact round trips
through a real InfluxDB, and per-sample rejection with reasons."""

from __future__ import annotations

import math
import os
import re
import urllib.parse
import urllib.request

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from influxdb_client import Point

from ingest.influx.chunks import split_body
from ingest.lineprotocol import (
    INFLUX_MAX_STRING_BYTES,
    INFLUX_MAX_TS_NS,
    REJECT_REASONS,
    LineProtocolEncoder,
    _lpkernel,
)
from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable

# Both layouts run everywhere: the compiled kernel and the pure-numpy one must give the same bytes.
KERNELS = ["c", "numpy"]
AMBIGUOUS = re.compile(r'\\([,= "]|$)')
# Names: the characters line protocol must escape, unicode, and ordinary ones. Control characters,
# NUL and a trailing backslash are refused by design (tested separately), so they are left out.
NAME_CHARS = st.sampled_from(list("abcXYZ019_-. ,=\"'\\é中/")) | st.characters(
    min_codepoint=0x20, max_codepoint=0x2FF
)


def _name(min_size: int = 1) -> st.SearchStrategy[str]:
    return (
        st.text(NAME_CHARS, min_size=min_size, max_size=12)
        .filter(lambda s: not AMBIGUOUS.search(s))
        .filter(lambda s: not s.startswith("#"))  # Point warns: a comment line
    )


FLOATS = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 1.0, 1e16, 1e15, 9.999e15, 1e-4, 9.99e-5, 1e-5, 5e-324, 1.7976931348623157e308]
)
INTS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# lone surrogates have no UTF-8 form (refused as invalid_utf8, tested below)
STRINGS = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=40
) | st.text(st.sampled_from(list('ab"\\ ,=\nü')), min_size=250, max_size=300)
FIELD_VALUE = st.one_of(
    FLOATS.map(lambda v: (FieldType.FLOAT, v)),
    INTS.map(lambda v: (FieldType.INT, v)),
    st.booleans().map(lambda v: (FieldType.BOOL, v)),
    STRINGS.map(lambda v: (FieldType.STRING, v)),
)
POINT = st.fixed_dictionaries(
    {
        "measurement": _name(),
        "tags": st.dictionaries(_name(), _name(), max_size=3),
        "fields": st.dictionaries(_name(), FIELD_VALUE, min_size=1, max_size=4),
        "ts": st.integers(min_value=-(2**62), max_value=INFLUX_MAX_TS_NS),
    }
)


def _encode_points(points: list[dict[str, object]]) -> tuple[bytes, LineProtocolEncoder, Batch]:
    """One Batch holding every point, fields of a point consecutive in sorted name order."""
    table = SeriesTable()
    series: list[int] = []
    ts: list[int] = []
    values: list[object] = []
    for p in points:
        fields: dict[str, tuple[FieldType, object]] = p["fields"]  # type: ignore[assignment]
        for name in sorted(fields):
            dtype, value = fields[name]
            key = SeriesKey.make(p["measurement"], p["tags"], name, dtype)  # type: ignore[arg-type]
            series.append(table.add(key))
            ts.append(p["ts"])  # type: ignore[arg-type]
            values.append(value)
    batch = Batch.build(table, series, ts, np.array([*values, None], dtype=object)[:-1])
    encoder = LineProtocolEncoder(table, kernel="c")
    body = encoder.encode(batch).body
    assert LineProtocolEncoder(table, kernel="numpy").encode(batch).body == body
    return body, encoder, batch


def _point_bytes(p: dict[str, object]) -> bytes:
    point = Point(p["measurement"])
    for k, v in p["tags"].items():  # type: ignore[attr-defined]
        point.tag(k, v)
    for k, (_dtype, v) in p["fields"].items():  # type: ignore[attr-defined]
        point.field(k, v)
    point.time(p["ts"])
    return point.to_line_protocol().encode() + b"\n"


def _distinct_series(points: list[dict[str, object]]) -> bool:
    # a field name that appears with two types in one series is refused (type change): tested apart
    seen: dict[tuple[object, ...], FieldType] = {}
    for p in points:
        if "time" in p["fields"] or "time" in p["tags"]:  # type: ignore[operator]
            return False  # refused by the encoder on purpose (InfluxDB drops them): tested apart
        for name, (dtype, _v) in p["fields"].items():  # type: ignore[attr-defined]
            key = (p["measurement"], tuple(sorted(p["tags"].items())), name)  # type: ignore[attr-defined]
            if seen.setdefault(key, dtype) != dtype:
                return False
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(POINT, min_size=1, max_size=6, unique_by=lambda p: p["ts"]).filter(_distinct_series)
)
def test_encoder_bytes_equal_influxdb_client_point(points: list[dict[str, object]]) -> None:
    # distinct timestamps: every point is its own line on both sides
    body, _, _ = _encode_points(points)
    assert body == b"".join(_point_bytes(p) for p in points)


@pytest.mark.parametrize("kernel", KERNELS)
def test_float_formatting_matches_python_over_many_magnitudes(kernel: str) -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [
            rng.normal(0, 1, 20_000) * 10.0 ** rng.integers(-320, 308, 20_000),
            rng.integers(-(10**6), 10**6, 5_000).astype(np.float64),  # whole numbers
            np.array([1e16, 1e15, 0.0001, 0.00009999, 123456789012345.67, -0.0]),
        ]
    )
    values = values[np.isfinite(values)]
    table = SeriesTable()
    sid = table.add(SeriesKey.make("m", {}, "v", FieldType.FLOAT))
    batch = Batch.build(table, np.full(len(values), sid), np.arange(len(values)), values)
    lines = LineProtocolEncoder(table, kernel=kernel).encode(batch).body.decode().splitlines()
    got = [line.split(" ")[1][2:] for line in lines]
    want = []
    for v in values.tolist():
        text = str(v)
        want.append(text[:-2] if text.endswith(".0") else text)
    assert got == want


@pytest.mark.parametrize("kernel", KERNELS)
def test_rejects_each_bad_sample_with_its_reason_and_encodes_the_rest(kernel: str) -> None:
    table = SeriesTable()
    ok_f = table.add(SeriesKey.make("m", {"site": "s1"}, "v", FieldType.FLOAT))
    ok_s = table.add(SeriesKey.make("m", {"site": "s1"}, "text", FieldType.STRING))
    empty_tag = table.add(SeriesKey.make("m", {"site": ""}, "v", FieldType.FLOAT))
    newline = table.add(SeriesKey.make("m\n", {"site": "s1"}, "v", FieldType.FLOAT))
    backslash = table.add(SeriesKey.make("m", {"site": "s1\\"}, "v", FieldType.FLOAT))
    surrogate = table.add(SeriesKey.make("m", {"site": "s\udc80"}, "v", FieldType.FLOAT))
    cases = [
        (ok_f, 1, 1.5, None),
        (ok_f, 2, math.nan, "non_finite_float"),
        (ok_f, 3, math.inf, "non_finite_float"),
        (ok_f, 4, -math.inf, "non_finite_float"),
        (ok_f, INFLUX_MAX_TS_NS + 1, 1.0, "timestamp_out_of_range"),
        (ok_s, 5, "x" * (INFLUX_MAX_STRING_BYTES + 1), "string_too_long"),
        (ok_s, 6, "nul\x00inside", "nul_in_string"),
        (ok_s, 7, "fine", None),
        (ok_s, 7, "lone \ud800 surrogate", "invalid_utf8"),
        (empty_tag, 8, 1.0, "empty_tag_value"),
        (newline, 9, 1.0, "control_character_in_name"),
        (backslash, 10, 1.0, "ambiguous_backslash_in_name"),
        (surrogate, 10, 1.0, "invalid_utf8"),
        (ok_f, 11, 2.5, None),
    ]
    batch = Batch.build(
        table,
        [c[0] for c in cases],
        [c[1] for c in cases],
        np.array([*(c[2] for c in cases), None], dtype=object)[:-1],
    )
    unknown = Batch.concat(
        [
            batch,
            Batch(
                series=np.array([99], np.int32),
                ts_ns=np.array([12], np.int64),
                value_f64=np.array([1.0]),
                value_i64=np.zeros(1, np.int64),
                quality=np.zeros(1, np.uint8),
                value_str=np.array([None], object),
            ),
        ]
    )
    enc = LineProtocolEncoder(table, kernel=kernel).encode(unknown)
    expected_reasons = [c[3] for c in cases] + ["unknown_series"]
    bad_positions = [i for i, r in enumerate(expected_reasons) if r is not None]
    assert enc.rejected_index.tolist() == bad_positions
    assert [enc.reason_of(i) for i in range(len(bad_positions))] == [
        expected_reasons[i] for i in bad_positions
    ]
    assert enc.samples == 3
    assert enc.body == b'm,site=s1 v=1.5 1\nm,site=s1 text="fine" 7\nm,site=s1 v=2.5 11\n'
    assert sum(enc.rejected_counts().values()) == len(bad_positions)
    assert set(enc.rejected_counts()) <= set(REJECT_REASONS)


@pytest.mark.parametrize("kernel", KERNELS)
def test_series_of_one_group_share_a_line_and_repeats_start_a_new_one(kernel: str) -> None:
    table = SeriesTable()
    a = table.add(SeriesKey.make("m", {"t": "1"}, "a", FieldType.FLOAT))
    b = table.add(SeriesKey.make("m", {"t": "1"}, "b", FieldType.INT))
    c = table.add(SeriesKey.make("m", {"t": "1"}, "c", FieldType.BOOL))
    batch = Batch.build(table, [a, b, c, a, a, b], [5, 5, 5, 6, 6, 6], [1.0, 2, 1, 3.0, 4.0, 5])
    enc = LineProtocolEncoder(table, kernel=kernel).encode(batch)
    assert enc.body.decode().splitlines() == [
        "m,t=1 a=1,b=2i,c=true 5",
        "m,t=1 a=3 6",
        "m,t=1 a=4,b=5i 6",  # the repeated field a starts a new line: no duplicate field keys
    ]
    assert enc.line_samples.tolist() == [3, 1, 2]
    assert enc.line_ends.tolist() == np.cumsum([len(x) + 1 for x in enc.body.splitlines()]).tolist()


@pytest.mark.parametrize("kernel", KERNELS)
def test_split_respects_line_and_byte_limits_and_loses_nothing(kernel: str) -> None:
    table = SeriesTable()
    ids = [table.add(SeriesKey.make("m", {"k": str(i)}, "v", FieldType.FLOAT)) for i in range(50)]
    n = 20_000
    series = np.tile(np.array(ids, np.int32), n // 50)
    batch = Batch.build(table, series, np.arange(n), np.linspace(0, 1, n))
    enc = LineProtocolEncoder(table, chunk_samples=3_000, kernel=kernel).encode(batch)
    parts = split_body(enc.body, enc.line_ends, 777, 10_000, enc.line_samples)
    assert b"".join(p.body for p in parts) == enc.body
    assert all(p.lines <= 777 and len(p.body) <= 10_000 for p in parts)
    assert sum(p.samples for p in parts) == n == sum(p.lines for p in parts)
    for p in parts:
        assert p.body.endswith(b"\n") and p.body.count(b"\n") == p.lines


@pytest.mark.parametrize("kernel", KERNELS)
def test_threads_give_identical_bytes(kernel: str) -> None:
    table = SeriesTable()
    ids = [table.add(SeriesKey.make("m", {"k": str(i)}, "v", FieldType.FLOAT)) for i in range(10)]
    n = 50_000
    batch = Batch.build(
        table,
        np.tile(np.array(ids, np.int32), n // 10),
        np.arange(n),
        np.random.default_rng(1).normal(size=n),
    )
    one = LineProtocolEncoder(table, chunk_samples=4_096, kernel=kernel).encode(batch)
    two = LineProtocolEncoder(table, chunk_samples=4_096, threads=2, kernel=kernel).encode(batch)
    assert one.body == two.body
    assert one.line_ends.tolist() == two.line_ends.tolist()


# --- round trip through the real InfluxDB ----------------------------------------------------


def _ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.mark.integration
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(point=POINT)
def test_round_trip_through_real_influxdb_returns_exact_values(influx_db, point) -> None:  # type: ignore[no-untyped-def]
    fields = point["fields"]
    tags = point["tags"]
    # InfluxDB reserves "time", and a field named like a tag is shadowed in SELECT * output
    if "time" in fields or "time" in tags or set(fields) & set(tags):
        return
    body, _, _ = _encode_points([point])
    url = f"{influx_db.url}/write?db={influx_db.database}&precision=ns"
    req = urllib.request.Request(url, data=body, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 204
    where = " AND ".join(
        f"{_ident(k)} = '{v.replace(chr(92), chr(92) * 2).replace(chr(39), chr(92) + chr(39))}'"
        for k, v in tags.items()
    )
    q = f"SELECT * FROM {_ident(point['measurement'])} WHERE time = {point['ts']}" + (
        f" AND {where}" if where else ""
    )
    qs = urllib.parse.urlencode({"db": influx_db.database, "q": q, "epoch": "ns"})
    with urllib.request.urlopen(f"{influx_db.url}/query?{qs}", timeout=30) as resp:
        result = orjson.loads(resp.read())["results"][0]
    assert "error" not in result, result
    rows = result["series"][0]
    row = dict(zip(rows["columns"], rows["values"][0], strict=True))
    assert row["time"] == point["ts"]
    for name, (dtype, value) in fields.items():
        got = row[name]
        if dtype is FieldType.FLOAT:
            assert float(got) == value
        elif dtype is FieldType.BOOL:
            assert got is value
        else:
            assert got == value
    for k, v in tags.items():
        assert row[k] == v
    # drop what this example wrote: examples must not see each other's points
    qs = urllib.parse.urlencode(
        {"q": f"DROP MEASUREMENT {_ident(point['measurement'])}", "db": influx_db.database}
    )
    urllib.request.urlopen(
        urllib.request.Request(f"{influx_db.url}/query", data=qs.encode()), timeout=30
    ).read()


def test_uniform_points_take_the_per_line_layout_and_match_point() -> None:
    # every line holds the same four fields: the per-line layout; a ragged tail: the general one
    rng = np.random.default_rng(3)
    points = [
        {
            "measurement": "spindle",
            "tags": {"machine": f"cnc-{i % 7}", "line": "l 1"},
            "fields": {
                "a_speed": (FieldType.FLOAT, float(rng.normal(1000, 300))),
                "b_count": (FieldType.INT, int(rng.integers(-(10**12), 10**12))),
                "c_run": (FieldType.BOOL, bool(rng.random() < 0.5)),
                "d_prog": (FieldType.STRING, f'O{i} "rough"'),
            },
            "ts": 1_700_000_000_000_000_000 + i,
        }
        for i in range(3_000)
    ]
    ragged = [{**points[0], "ts": 1, "fields": {"a_speed": (FieldType.FLOAT, 1.5)}}]
    for batch_points in (points, points + ragged):
        body, _, _ = _encode_points(batch_points)  # type: ignore[arg-type]
        assert body == b"".join(_point_bytes(p) for p in batch_points)  # type: ignore[arg-type]


# --- the compiled assembly kernel ---------------------------------------------------------------


def test_compiled_kernel_is_built_where_ci_runs() -> None:
    # the numpy layout is a fallback for machines without a compiler, not what CI should measure
    if os.environ.get("CI") == "true":
        assert _lpkernel is not None, "ingest/_lpkernel.c was not built: is a C compiler installed?"
    if _lpkernel is not None:
        assert LineProtocolEncoder(SeriesTable()).kernel == "c"
    with pytest.raises(ValueError, match="kernel must be"):
        LineProtocolEncoder(SeriesTable(), kernel="fortran")


def test_kernels_agree_on_a_large_mixed_batch_across_chunks() -> None:
    # ragged lines, repeats, long strings with quotes and backslashes, unicode, extreme numbers
    rng = np.random.default_rng(11)
    table = SeriesTable()
    ids: list[int] = []
    for m in range(40):
        for f, dtype in (("a", FieldType.FLOAT), ("b", FieldType.INT), ("c", FieldType.BOOL)):
            ids.append(table.add(SeriesKey.make("m é", {"k": f"v,{m}"}, f, dtype)))
        ids.append(table.add(SeriesKey.make("m é", {"k": f"v,{m}"}, "d", FieldType.STRING)))
    n = 30_000
    series = rng.choice(np.array(ids, np.int32), n)
    ts = np.sort(rng.integers(-(10**18), 10**18, n))
    ts[: n // 2] = ts[0]  # many samples on one timestamp: long lines where series ascend
    dtypes = table.dtypes[series]
    f = rng.normal(0, 1, n) * 10.0 ** rng.integers(-300, 300, n)
    i = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64, endpoint=True)
    words = ["plain", 'quo"te', "back\\slash", "中文 ü", "x" * 300 + '"\\', "z" * 5000]
    values = np.array([None] * n, dtype=object)
    for k, dtype in enumerate(dtypes.tolist()):
        values[k] = (
            float(f[k])
            if dtype == FieldType.FLOAT
            else int(i[k])
            if dtype == FieldType.INT
            else bool(i[k] & 1)
            if dtype == FieldType.BOOL
            else words[k % len(words)]
        )
    batch = Batch.build(table, series, ts, values)
    c = LineProtocolEncoder(table, kernel="c", chunk_samples=7_000).encode(batch)
    ref = LineProtocolEncoder(table, kernel="numpy", chunk_samples=7_000).encode(batch)
    assert c.body == ref.body
    assert c.line_ends.tolist() == ref.line_ends.tolist()
    assert c.line_samples.tolist() == ref.line_samples.tolist()
    assert c.samples == n and int(c.line_samples.sum()) == n
    assert c.lines < n  # lines really were grouped


def test_kernel_refuses_out_of_range_indices_instead_of_reading_past_buffers() -> None:
    if _lpkernel is None:
        assert os.environ.get("CI") != "true", "ingest/_lpkernel.c is not built"
        return
    heads, head_off = b"m ", np.array([0, 2], np.int64)
    keys, key_off = b"v=", np.array([0, 2], np.int64)

    def call(series: int, group: int, kind: int, tstart: int, tlen: int) -> bytes:
        out = np.empty(1, np.int64)
        body: bytes = _lpkernel.assemble(
            np.array([0, 1], np.int64),
            np.array([group], np.int32),
            np.array([7], np.int64),
            heads,
            head_off,
            np.array([series], np.int32),
            keys,
            key_off,
            np.array([kind], np.uint8),
            np.array([-42], np.int64),
            np.frombuffer(b'ab"c', np.uint8),
            np.array([tstart], np.int64),
            np.array([tlen], np.int64),
            out,
        )
        assert out.tolist() == [len(body)]
        return body

    assert call(0, 0, 1, 0, 0) == b"m v=-42i 7\n"
    assert call(0, 0, 3, 1, 3) == b'm v="b\\"c" 7\n'
    assert call(0, 0, 2, 0, 0) == b"m v=true 7\n"
    for args, message in (
        ((1, 0, 1, 0, 0), "series index"),
        ((0, 1, 1, 0, 0), "line head index"),
        ((0, 0, 9, 0, 0), "unknown value kind"),
        ((0, 0, 0, 2, 3), "text slice"),
        ((0, 0, 3, -1, 1), "text slice"),
    ):
        with pytest.raises(ValueError, match=message):
            call(*args)
    # offsets that leave their buffer or run backwards
    for bad_heads, bad_keys, message in (
        (np.array([0, 3], np.int64), key_off, "head offsets"),
        (head_off, np.array([1, 0], np.int64), "key offsets"),
        (np.array([-1, 2], np.int64), key_off, "head offsets"),
    ):
        heads_ok, key_ok = head_off, key_off
        head_off, key_off = bad_heads, bad_keys
        with pytest.raises(ValueError, match=message):
            call(0, 0, 1, 0, 0)
        head_off, key_off = heads_ok, key_ok
    with pytest.raises(TypeError, match="line_group"):
        _lpkernel.assemble(*([np.zeros(1, np.int64)] * 14))


def test_without_the_compiled_kernel_auto_falls_back_and_c_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ingest.lineprotocol as lp

    monkeypatch.setattr(lp, "_lpkernel", None)
    table = SeriesTable()
    sid = table.add(SeriesKey.make("m", {"t": "1"}, "v", FieldType.INT))
    encoder = LineProtocolEncoder(table)
    assert encoder.kernel == "numpy"
    assert encoder.encode(Batch.build(table, [sid], [5], [7])).body == b"m,t=1 v=7i 5\n"
    with pytest.raises(RuntimeError, match=r"not built.*kernel='numpy'"):
        LineProtocolEncoder(table, kernel="c")
