"""The data-quality marker rule, vectorized, against a sample-by-sample statement of it."""

from __future__ import annotations

import numpy as np

from ingest.quality_markers import QualityMarkers
from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable
from zhizao.quality import Quality
from zhizao.schema import CONNECTION_MEASUREMENT, QUALITY_MEASUREMENT


def _reference(
    batches: list[tuple[Batch, int]],
) -> list[list[tuple[int, int, int]]]:
    """The rule one sample at a time: (source series, marker ts, code) per batch."""
    code: dict[int, int] = {}
    last_ts: dict[int, int] = {}
    out = []
    for batch, arrival_ns in batches:
        marks = []
        for s, t, q in zip(
            batch.series.tolist(), batch.ts_ns.tolist(), batch.quality.tolist(), strict=True
        ):
            q = min(q, Quality.STALE)
            if code.get(s) == q:
                continue
            ts = t
            if q == Quality.GOOD and s in code and t <= last_ts[s]:
                ts = max(arrival_ns, last_ts[s] + 1)  # re-sent good value: good on arrival
            code[s], last_ts[s] = q, ts
            marks.append((s, ts, q))
        out.append(marks)
    return out


def _table(n: int) -> SeriesTable:
    return SeriesTable.of(
        SeriesKey.make("spindle", {"machine": f"m{i % 5}"}, f"f{i}", FieldType.FLOAT)
        for i in range(n)
    )


def test_vectorized_markers_equal_the_rule_sample_by_sample() -> None:
    rng = np.random.default_rng(7)
    table = _table(12)
    markers = QualityMarkers(table)
    batches = []
    for k in range(40):
        n = int(rng.integers(1, 60))
        q = rng.choice([0, 0, 0, 0, 1, 2, 3, 7], n).astype(np.uint8)
        ts = np.sort(rng.integers(0, 10**6, n)) + k * 10**5  # late values happen too
        s = rng.integers(0, 12, n).astype(np.int32)
        batch = Batch(s, ts.astype(np.int64), np.zeros(n), np.zeros(n, np.int64), q)
        batches.append((batch, k * 10**5 + 5 * 10**5))
    expected = _reference(batches)
    for (batch, arrival_ns), want in zip(batches, expected, strict=True):
        got, cause = markers.transitions(batch, arrival_ns)
        # a marker series is named after its signal: field f<i> is source series i
        src = [int(table.keys[m].field[1:]) for m in got.series.tolist()]
        assert {table.keys[m].measurement for m in got.series.tolist()} <= {QUALITY_MEASUREMENT}
        assert sorted(zip(src, got.ts_ns.tolist(), got.value_i64.tolist(), strict=True)) == sorted(
            want
        )
        # each marker names the sample that caused it
        assert batch.series[cause].tolist() == src
        assert (got.quality == 0).all()
    assert markers.written == sum(len(w) for w in expected)


def test_marker_keys_and_what_is_not_marked() -> None:
    table = SeriesTable()
    sig = table.add(
        SeriesKey.make("machine_state", {"site": "s1", "machine": "M1"}, "state", FieldType.STRING)
    )
    mark = table.add(
        SeriesKey.make(
            QUALITY_MEASUREMENT,
            {"site": "s1", "machine": "M1", "measurement": "spindle"},
            "load_pct",
            FieldType.INT,
        )
    )
    conn = table.add(
        SeriesKey.make(CONNECTION_MEASUREMENT, {"gateway": "gw", "source": "a"}, "connected")
    )
    markers = QualityMarkers(table)
    s = np.array([sig, mark, conn, sig], np.int32)
    batch = Batch(
        s,
        np.array([1, 1, 1, 2], np.int64),
        np.zeros(4),
        np.zeros(4, np.int64),
        np.array([0, 2, 2, Quality.STALE], np.uint8),
        np.array(["RUN", None, None, "RUN"], object),
    )
    got, cause = markers.transitions(batch, 10)
    assert [table.keys[i] for i in got.series.tolist()] == [
        SeriesKey.make(
            QUALITY_MEASUREMENT,
            {"site": "s1", "machine": "M1", "measurement": "machine_state"},
            "state",
            FieldType.INT,
        )
    ] * 2
    assert got.value_i64.tolist() == [0, Quality.STALE] and got.ts_ns.tolist() == [1, 2]
    assert cause.tolist() == [0, 3]
    # steady good samples of a good series: nothing to write
    good = Batch(s[:1], np.array([3], np.int64), np.zeros(1), np.zeros(1, np.int64),
                 np.zeros(1, np.uint8), np.array(["RUN"], object))  # fmt: skip
    assert len(markers.transitions(good, 10)[0]) == 1  # good again after the stale
    assert len(markers.transitions(good, 10)[0]) == 0
