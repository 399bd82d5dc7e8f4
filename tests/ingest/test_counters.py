"""Counter increments: resets, rollovers, state across batches, redeliveries (exact)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.counters import CounterSpec, CounterTracker, counter_increments
from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable

PARTS = SeriesKey.make("counter", {"machine": "m1"}, "parts", FieldType.INT)
PARTS2 = SeriesKey.make("counter", {"machine": "m2"}, "parts", FieldType.INT)
KWH = SeriesKey.make("energy", {"meter": "e1"}, "energy_kwh", FieldType.FLOAT)
OTHER = SeriesKey.make("spindle", {"machine": "m1"}, "speed_rpm", FieldType.FLOAT)
SPECS = [
    CounterSpec(measurement="counter", field="parts", rollover_limit=65536),
    CounterSpec(measurement="energy", field="energy_kwh"),
]


def incs(
    tracker: CounterTracker, table: SeriesTable, batch: Batch
) -> dict[str, list[tuple[int, object]]]:
    out = tracker.increments(table, batch)
    vals = out.values_for(table).tolist()
    res: dict[str, list[tuple[int, object]]] = {}
    for s, ts, v in zip(out.series.tolist(), out.ts_ns.tolist(), vals, strict=True):
        key = table.keys[s]
        res.setdefault(
            f"{key.tag_dict.get('machine', key.tag_dict.get('meter'))}.{key.field}", []
        ).append((ts, v))
    return res


def test_reset_and_rollover_exact_across_batches() -> None:
    table = SeriesTable.of([PARTS, PARTS2, KWH, OTHER])
    tr = CounterTracker(SPECS)
    # batch 1: m1 parts 10, 15, 20 ; kWh 100.5, 101.0 ; speed ignored
    b1 = Batch.build(
        table, [0, 2, 0, 3, 0, 2], [1, 1, 2, 2, 3, 3], [10, 100.5, 15, 900.0, 20, 101.0]
    )
    r1 = incs(tr, table, b1)
    assert r1 == {"m1.parts_inc": [(2, 5), (3, 5)], "e1.energy_kwh_inc": [(3, 0.5)]}
    # inc series are INT for INT counters and FLOAT for FLOAT counters
    inc_keys = {k.field: k.dtype for k in table.keys if k.field.endswith("_inc")}
    assert inc_keys == {"parts_inc": FieldType.INT, "energy_kwh_inc": FieldType.FLOAT}
    # batch 2 (unsorted): reset 20 -> 3 (post-reset value counts), then 8; kWh meter replaced: 101 -> 2
    b2 = Batch.build(table, [0, 0, 2, 1], [5, 4, 4, 4], [8, 3, 2.0, 7])
    r2 = incs(tr, table, b2)
    assert r2 == {
        "m1.parts_inc": [(4, 3), (5, 5)],
        "e1.energy_kwh_inc": [(4, 2.0)],
    }  # m2: first sample, none
    # batch 3: m2 climbs to the top of 16 bits and wraps: 7 -> 65530 -> 4 is +65523, +10
    b3 = Batch.build(table, [1, 1], [5, 6], [65530, 4])
    assert incs(tr, table, b3) == {"m2.parts_inc": [(5, 65523), (6, 10)]}
    # m1 drops from 8 to 2: prev 8 is far below the band, so a reset (2), not a rollover
    b4 = Batch.build(table, [0], [6], [2])
    assert incs(tr, table, b4) == {"m1.parts_inc": [(6, 2)]}


def test_redelivered_samples_get_no_second_increment() -> None:
    table = SeriesTable.of([PARTS])
    tr = CounterTracker(SPECS)
    b = Batch.build(table, [0, 0, 0], [1, 2, 3], [1, 4, 9])
    assert len(tr.increments(table, b)) == 2
    again = tr.increments(table, b)
    assert len(again) == 0 and tr.out_of_order == 3
    # duplicates inside one batch count once
    b2 = Batch.build(table, [0, 0, 0], [4, 4, 5], [10, 10, 12])
    out = tr.increments(table, b2)
    assert out.value_i64.tolist() == [1, 2]


def test_counter_increments_function() -> None:
    v = np.array([5, 3, 2, 70000.0])
    prev = np.array([1, 65530, 10, 60000.0])
    limit = np.array([np.nan, 65536, 65536, np.nan])
    band = np.array([1, 0.9, 0.9, 1])
    assert counter_increments(v, prev, limit, band).tolist() == [4, 9, 2, 10000]


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6000), st.booleans()), min_size=2, max_size=200),
    st.lists(st.integers(1, 50), min_size=1, max_size=10),
)
def test_property_increments_sum_to_true_production(
    steps: list[tuple[int, bool]], cuts: list[int]
) -> None:
    """A 16-bit counter counting d parts per sample, sometimes reset to 0 (then counting d):
    the increments equal the true production of every interval, whatever the batch split."""
    limit = 65536
    raw = []
    truth = []
    value = 0
    for d, reset in steps:
        # a reset is visible only as a drop (d < value); below half the range, not a wrap
        # (a reset restarts from 0, so the new value is the d counted since)
        value = d if reset and d < value < limit // 2 else (value + d) % limit
        raw.append(value)
        truth.append(d)
    table = SeriesTable.of([PARTS])
    tr = CounterTracker(SPECS)
    got: list[int] = []
    i = 0
    bounds = np.cumsum(cuts).tolist()
    for end in [*bounds, len(raw)]:
        if i >= len(raw):
            break
        end = min(end, len(raw))
        if end <= i:
            continue
        b = Batch.build(table, [0] * (end - i), list(range(i, end)), raw[i:end])
        got += tr.increments(table, b).value_i64.tolist()
        i = end
    assert got == truth[1:]


def frame_batch(
    table: SeriesTable, seq: int, values: list[int], ts0: int
) -> tuple[Batch, np.ndarray, np.ndarray]:
    n = len(values)
    b = Batch.build(table, [0] * n, list(range(ts0, ts0 + n)), values)
    return b, np.zeros(n, np.int64), np.full(n, seq, np.int64)


def test_previous_value_only_across_seen_frames() -> None:
    table = SeriesTable.of([PARTS])
    tr = CounterTracker(SPECS)
    got = []
    for seq, values in ((1, [10, 12]), (2, [15]), (4, [30]), (5, [31, 40])):
        b, gw, sq = frame_batch(table, seq, values, ts0=seq * 10)
        got.append(tr.increments(table, b, gw, sq).value_i64.tolist())
    # frame 3 was never seen: 15 -> 30 may hide frame 3's samples, so no increment at 30
    assert got == [[2], [3], [], [1, 9]]
    assert tr.unknown_previous == 1


def test_two_processes_never_double_count() -> None:
    """Frames of one gateway alternate between two trackers (two ingest processes on a shared
    subscription): every increment either is exact or is not written; none is counted twice."""
    rng = np.random.default_rng(3)
    raw = np.cumsum(rng.integers(0, 20, 300))
    truth = {ts: int(raw[ts] - raw[ts - 1]) for ts in range(1, 300)}
    table_a, table_b = SeriesTable.of([PARTS]), SeriesTable.of([PARTS])
    a, b = CounterTracker(SPECS), CounterTracker(SPECS)
    written: dict[int, list[int]] = {}
    for seq, lo in enumerate(range(0, 300, 10)):
        vals = raw[lo : lo + 10].tolist()
        tracker, table = (a, table_a) if rng.random() < 0.5 else (b, table_b)
        batch = Batch.build(table, [0] * 10, list(range(lo, lo + 10)), vals)
        out = tracker.increments(table, batch, np.zeros(10, np.int64), np.full(10, seq, np.int64))
        for ts, v in zip(out.ts_ns.tolist(), out.value_i64.tolist(), strict=True):
            written.setdefault(ts, []).append(v)
    assert all(len(v) == 1 and v[0] == truth[ts] for ts, v in written.items())
    assert len(written) >= 270  # only frame-boundary intervals can be missing
    # the rest: one first-ever sample of the second tracker, and the counted unknown ones
    assert a.unknown_previous + b.unknown_previous == 299 - len(written) - 1
