"""SqliteOutbox: durability under SIGKILL, exact drop accounting, lanes, round trips."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from gateway.config import OutboxConfig
from gateway.outbox import OutboxFull, SqliteOutbox
from zhizao.model import Batch, FieldType, SeriesKey

REPO = Path(__file__).resolve().parents[2]


def _keys() -> list[SeriesKey]:
    tags = {"enterprise": "acme", "site": "s1", "machine": "m1"}
    return [
        SeriesKey.make("spindle", tags, "speed_rpm", FieldType.FLOAT),
        SeriesKey.make("counter", tags, "parts_total", FieldType.INT),
        SeriesKey.make("state", tags, "program", FieldType.STRING),
    ]


def _batch(outbox: SqliteOutbox, start: int, n: int) -> Batch:
    idx = [outbox.series_index(k) for k in _keys()]
    series = np.array(idx, np.int32)[np.arange(n) % 3]
    ts = np.arange(start, start + n, dtype=np.int64) * 1_000_000
    values = np.empty(n, dtype=object)
    values[:] = [
        float(start + j)
        if j % 3 == 0
        else (start + j if j % 3 == 1 else f"P{(start + j) % 1_000_000:06d}")
        for j in range(n)
    ]
    return Batch.build(outbox.table, series, ts, values, np.full(n, 0, np.uint8))


def test_round_trip_keeps_every_column_and_series_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with SqliteOutbox(path) as outbox:
        batch = _batch(outbox, 0, 30)
        server_ts = batch.ts_ns + 5
        status = np.full(30, 0x80340000, np.uint32)
        outbox.append(batch, server_ts_ns=server_ts, status_code=status)
    with SqliteOutbox(path) as outbox:
        assert [k for k in outbox.table.keys] == _keys()
        (chunk,) = outbox.take(1000)
        got = chunk.batch
        np.testing.assert_array_equal(got.series, batch.series)
        np.testing.assert_array_equal(got.ts_ns, batch.ts_ns)
        np.testing.assert_array_equal(got.value_f64, batch.value_f64)
        np.testing.assert_array_equal(got.value_i64, batch.value_i64)
        assert got.value_str is not None and batch.value_str is not None
        assert got.value_str.tolist() == batch.value_str.tolist()
        assert chunk.server_ts_ns is not None and chunk.status_code is not None
        np.testing.assert_array_equal(chunk.server_ts_ns, server_ts)
        np.testing.assert_array_equal(chunk.status_code, status)
        assert outbox.ack([chunk.chunk_id]) == 30
        assert outbox.depth_samples == 0


def test_oldest_first_and_release_keeps_order(tmp_path: Path) -> None:
    with SqliteOutbox(tmp_path / "o.sqlite") as outbox:
        for i in range(5):
            outbox.append(_batch(outbox, i * 10, 10))
        first = outbox.take(20)
        assert [int(c.batch.ts_ns[0]) for c in first] == [0, 10_000_000]
        outbox.release([c.chunk_id for c in first])
        again = outbox.take(1000)
        assert [int(c.batch.ts_ns[0]) // 10_000_000 for c in again] == [0, 1, 2, 3, 4]
        assert outbox.take(1000) == []  # all in flight


def test_drop_oldest_counts_exactly(tmp_path: Path) -> None:
    probe = SqliteOutbox(tmp_path / "probe.sqlite")
    probe.append(_batch(probe, 0, 100))
    chunk_bytes = probe.depth_bytes
    probe.close()
    config = OutboxConfig(max_bytes=max(1 << 16, chunk_bytes * 10 + chunk_bytes // 2))
    fits = config.max_bytes // chunk_bytes
    with SqliteOutbox(tmp_path / "o.sqlite", config) as outbox:
        total_dropped = 0
        for i in range(fits + 37):
            total_dropped += outbox.append(_batch(outbox, i * 100, 100)).dropped
        assert outbox.stats.dropped["full"] == 37 * 100 == total_dropped
        assert outbox.depth_samples == fits * 100
        # the survivors are exactly the newest chunks, in order
        kept = outbox.take(10**9)
        firsts = [int(c.batch.ts_ns[0]) // 100_000_000 for c in kept]
        assert firsts == list(range(37, fits + 37))
        assert outbox.stats.appended - outbox.stats.dropped["full"] == outbox.depth_samples


def test_drop_oldest_never_drops_inflight(tmp_path: Path) -> None:
    probe = SqliteOutbox(tmp_path / "probe.sqlite")
    probe.append(_batch(probe, 0, 100))
    chunk_bytes = probe.depth_bytes
    probe.close()
    config = OutboxConfig(max_bytes=max(1 << 16, chunk_bytes * 4))
    fits = config.max_bytes // chunk_bytes
    with SqliteOutbox(tmp_path / "o.sqlite", config) as outbox:
        for i in range(fits):
            outbox.append(_batch(outbox, i * 100, 100))
        inflight = outbox.take(100)
        assert len(inflight) == 1
        outbox.append(_batch(outbox, 10_000, 100))
        assert outbox.stats.dropped["full"] == 100
        # the in-flight chunk is still there and can be acknowledged
        assert outbox.ack([inflight[0].chunk_id]) == 100


def test_refuse_new_refuses_and_counts(tmp_path: Path) -> None:
    probe = SqliteOutbox(tmp_path / "probe.sqlite")
    probe.append(_batch(probe, 0, 100))
    chunk_bytes = probe.depth_bytes
    probe.close()
    config = OutboxConfig(max_bytes=max(1 << 16, chunk_bytes * 3), drop_policy="refuse_new")
    fits = config.max_bytes // chunk_bytes
    with SqliteOutbox(tmp_path / "o.sqlite", config) as outbox:
        for i in range(fits):
            outbox.append(_batch(outbox, i * 100, 100))
        for _ in range(3):
            with pytest.raises(OutboxFull) as err:
                outbox.append(_batch(outbox, 99_900, 100))
            assert err.value.refused == 100
        assert outbox.stats.refused == 300
        assert outbox.depth_samples == fits * 100
        assert outbox.stats.dropped["full"] == 0


def test_age_bound_drops_and_counts(tmp_path: Path) -> None:
    now = [1_000_000_000_000]
    config = OutboxConfig(max_age_s=60)
    # time passes on both clocks (a wall clock moving alone is a step, see test_clock_step_*)
    with SqliteOutbox(
        tmp_path / "o.sqlite", config, clock_ns=lambda: now[0], mono_ns=lambda: now[0]
    ) as outbox:
        outbox.append(_batch(outbox, 0, 10))
        outbox.append(_batch(outbox, 10, 20))
        now[0] += 61 * 10**9
        outbox.append(_batch(outbox, 30, 5))
        assert outbox.stats.dropped["age"] == 30
        assert outbox.depth_samples == 5


def test_live_lane_and_backlog_lane(tmp_path: Path) -> None:
    now = [10**18]
    config = OutboxConfig(live_window_s=10)
    with SqliteOutbox(
        tmp_path / "o.sqlite", config, clock_ns=lambda: now[0], mono_ns=lambda: now[0]
    ) as outbox:
        outbox.append(_batch(outbox, 0, 10))
        outbox.append(_batch(outbox, 10, 10))
        now[0] += 60 * 10**9
        outbox.append(_batch(outbox, 20, 10))
        live = outbox.take(1000, lane="live")
        assert [int(c.batch.ts_ns[0]) for c in live] == [20_000_000]
        backlog = outbox.take(1000, lane="backlog")
        assert [int(c.batch.ts_ns[0]) for c in backlog] == [0, 10_000_000]


def test_frame_sequence_survives_reopen(tmp_path: Path) -> None:
    with SqliteOutbox(tmp_path / "o.sqlite") as outbox:
        assert [outbox.next_seq(), outbox.next_seq()] == [1, 2]
    with SqliteOutbox(tmp_path / "o.sqlite") as outbox:
        assert outbox.next_seq() == 3


_WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from gateway.config import OutboxConfig
    from gateway.outbox import SqliteOutbox
    from zhizao.model import Batch, FieldType, SeriesKey
    outbox = SqliteOutbox(sys.argv[1], OutboxConfig(synchronous=sys.argv[2]))
    idx = outbox.series_index(SeriesKey.make("m", {"site": "s"}, "v_kw", FieldType.FLOAT))
    i = 0
    while True:
        n = 500
        ts = np.arange(i * n, (i + 1) * n, dtype=np.int64)
        batch = Batch.build(outbox.table, np.full(n, idx), ts, ts.astype(np.float64))
        outbox.append(batch)
        print(i, flush=True)  # acknowledged only after the commit returned
        i += 1
    """
)


@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_sigkill_mid_append_loses_nothing_acknowledged(tmp_path: Path, synchronous: str) -> None:
    path = tmp_path / "o.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), synchronous],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
    )
    assert proc.stdout is not None
    acked = -1
    for line in proc.stdout:
        acked = int(line)
        if acked >= 60:
            break
    os.kill(proc.pid, signal.SIGKILL)
    # anything printed before the kill is acknowledged too
    rest = proc.stdout.read()
    proc.wait()
    acked = max([acked, *(int(x) for x in rest.split())])
    with SqliteOutbox(path) as outbox:
        chunks = outbox.take(10**9)
        ts = np.concatenate([c.batch.ts_ns for c in chunks])
    expected = np.arange((acked + 1) * 500, dtype=np.int64)
    # everything acknowledged is there once, in order; at most the unacknowledged chunk extra
    assert len(ts) in (len(expected), len(expected) + 500)
    np.testing.assert_array_equal(ts[: len(expected)], expected)
    assert len(np.unique(ts)) == len(ts)


def test_uplink_takes_live_first_and_rate_limits_backlog(tmp_path: Path) -> None:
    from gateway.uplink import take_next

    now = [10**18]
    config = OutboxConfig(live_window_s=10, replay_samples_per_s=15)
    with SqliteOutbox(
        tmp_path / "o.sqlite", config, clock_ns=lambda: now[0], mono_ns=lambda: now[0]
    ) as outbox:
        for i in range(5):  # backlog from an outage
            outbox.append(_batch(outbox, i * 10, 10))
        now[0] += 60 * 10**9
        outbox.append(_batch(outbox, 1000, 10))  # live
        first = take_next(outbox, 1000)
        assert [int(c.batch.ts_ns[0]) for c in first] == [1000 * 1_000_000]
        # the backlog then flows oldest first, never faster than the replay budget allows
        taken: list[int] = []
        t0 = time.monotonic()
        while len(taken) < 5 and time.monotonic() - t0 < 60:
            chunks = take_next(outbox, 1000)
            taken.extend(int(c.batch.ts_ns[0]) // 10_000_000 for c in chunks)
            # bucket capacity (15) + one chunk of overshoot + 15 per second elapsed
            assert len(taken) * 10 <= 15 + 10 + 15 * (time.monotonic() - t0)
            time.sleep(0.05)
        assert taken == [0, 1, 2, 3, 4]
