"""Counter roles first published in the middle of a day (a gateway's tag map extended, a new
good-part counter commissioned): the incremental engine's hour, shift and day rows equal a
full recomputation from raw data, on a real InfluxDB. The split of good parts follows the
counters published at each instant, never which counters appear somewhere in the range."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from analytics.engine import KpiEngine
from tests.analytics.test_segments import (
    HOUR,
    MIN,
    TAGS,
    Sample,
    assert_equal_rows,
    at,
    config,
    full_recomputation,
    stored,
    streams,
    write,
)
from tests.conftest import _influx_post
from zhizao.localstack import InfluxServer

S = 1_000_000_000
M2_GOOD_FROM = at(1, 12 * 60 + 40) + 17 * S  # mid-segment, after lunch on day 1
M2_SCRAP_FROM = at(1, 15 * 60 + 20) + 7 * S  # later than the good counter
M1_GOOD_FROM = at(0, 9 * 60 + 10) + 30 * S  # M1 publishes scrap from the start, good from here


def late_counters(samples: list[Sample]) -> list[Sample]:
    """Good (and scrap) counters derived from each machine's total, published from a time on."""
    out = list(samples)
    for s in samples:
        if " part_count=" not in s.line:
            continue
        machine = s.line.split("machine=")[1].split(" ")[0]
        total = int(s.line.rsplit("=", 1)[1].rstrip("i"))
        tags = f"counter,{TAGS},machine={machine}"
        if machine == "M2" and s.ts >= M2_GOOD_FROM:
            out.append(Sample(s.ts, f"{tags} good_part_count={total - total // 7}i", s.arrives))
        if machine == "M2" and s.ts >= M2_SCRAP_FROM:
            out.append(Sample(s.ts, f"{tags} scrap_part_count={total // 7}i", s.arrives))
        if machine == "M1" and s.ts >= M1_GOOD_FROM:
            out.append(Sample(s.ts, f"{tags} good_part_count={total - total // 5}i", s.arrives))
    return out


@pytest.mark.integration
async def test_counters_first_published_mid_day_split_like_a_whole_day(
    tmp_path: Path, influx_server: InfluxServer
) -> None:
    db = f"t_{uuid.uuid4().hex[:12]}"
    _influx_post(influx_server.url, f'CREATE DATABASE "{db}"')
    cfg = config(tmp_path, influx_server.url, db, 7200)
    samples = late_counters(streams(np.random.default_rng(11), 2.2, late_s=1800))
    pending = sorted(samples, key=lambda s: s.arrives)
    end = at(0, 2.2 * 1440)
    now, i, k = at(0, 10), 0, 0
    steps = [23, 47, 11, 60]
    engine = KpiEngine(cfg)
    async with engine.connect() as conn:
        while now < end + 2 * HOUR:
            n = next((j for j in range(i, len(pending)) if pending[j].arrives > now), len(pending))
            await write(conn[1], pending[i:n])
            i = n
            if k % 5 == 3:
                engine = KpiEngine(cfg)  # restarted: segments read back, the look-back recomputed
            await engine.run_once(now, conn=conn)
            now += steps[k % len(steps)] * MIN
            k += 1
        await write(conn[1], pending[i:])
        await engine.run_once(now, conn=conn)
    lo = at(0, 0)
    ref = await full_recomputation(cfg, lo, now - 60 * S)
    for kind in cfg.windows:
        assert_equal_rows(kind, await stored(cfg, f"kpi_machine_{kind}"), ref[kind], lo)

    hours = await stored(cfg, "kpi_machine_hour")
    # the cases are really there: before its good counter, M2's good parts are PQ - SQ - RQ
    # (no scrap published yet: all of them); after it, the good counter's; after the scrap
    # counter, good + scrap add up to the total
    morning = hours[("M2", at(1, 600))]
    assert morning["pq"] > 0 and morning["gq"] == morning["pq"] and morning["sq"] == 0
    between = hours[("M2", at(1, 14 * 60))]
    assert 0 < between["gq"] < between["pq"] and between["sq"] == between["pq"] - between["gq"]
    after = hours[("M2", at(1, 17 * 60))]
    assert after["sq"] > 0 and after["gq"] + after["sq"] == after["pq"]
    # M1: scrap published from the start, so good = PQ - SQ before its good counter
    m1 = hours[("M1", at(0, 8 * 60))]
    assert m1["gq"] == m1["pq"] - m1["sq"] - m1["rq"] and m1["gq"] > 0
