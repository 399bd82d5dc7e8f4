"""Issue 17, ingest side: hostile conditions, each counted (emitted = stored + counted drops).

- a message InfluxDB refuses as too large (413) does not hold the others (item 3);
- the quarantine's disk is full: ingest holds the acknowledgements, stays up, catches up (item 2);
- the quarantine is bounded and rotated (item 2);
- points InfluxDB would drop silently are refused with a reason (item 8);
- the decode caches are bounded by bytes, whatever key sets arrive (item 9).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest.frames import FrameCodec, FrameDecoder, GatewayFrame, frame_topic
from ingest.quarantine import QuarantineConfig, QuarantineStore, quarantine_files, read_records
from tests.conftest import InfluxDb
from tests.gateway.diskfull import SmallFs, small_fs
from tests.ingest._support import (
    BASE_TS_NS,
    GatewayPublisher,
    ServiceThread,
    make_config,
    make_frames,
    wait_until,
)
from zhizao.localstack import InfluxServer, LocalServer, MosquittoServer
from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable

SERVER_MAX_BODY = 100_000


class SmallBodyInflux(InfluxServer):
    """A real InfluxDB 1.x whose ``max-body-size`` is 100 kB (a proxy or a tight server)."""

    def prepare(self) -> None:
        super().prepare()
        assert self.data_dir is not None
        conf = self.data_dir / "influxdb.conf"
        text = conf.read_text().replace(
            "max-body-size = 25000000", f"max-body-size = {SERVER_MAX_BODY}"
        )
        conf.write_text(text)


def _create_db(url: str, name: str) -> None:
    import urllib.parse
    import urllib.request

    data = urllib.parse.urlencode({"q": f'CREATE DATABASE "{name}"'}).encode()
    with urllib.request.urlopen(f"{url}/query", data=data, timeout=30) as resp:
        resp.read()


def _poison_frame(gateway: str, seq: int) -> tuple[bytes, int]:
    """One frame of 40 strings of 30 kB of quotes on one point: 2.4 MB of line protocol after
    escaping (every quote doubles), far beyond the server's body limit, inside
    max_message_bytes. One of its strings alone escapes to 60 kB and fits."""
    keys = [
        SeriesKey.make("notes", {"gateway": gateway}, f"text_{i:02d}", FieldType.STRING)
        for i in range(40)
    ]
    table = SeriesTable.of(keys)
    values = np.empty(40, dtype=object)
    values[:] = ['"' * 30_000] * 40
    batch = Batch.build(
        table, np.arange(40, dtype=np.int32), np.full(40, BASE_TS_NS, np.int64), values
    )
    return FrameCodec.encode(GatewayFrame(gateway, seq, keys, batch, time.time_ns())), 40


def _huge_sample_frame(gateway: str, seq: int) -> tuple[bytes, int]:
    """A single string sample whose escaped line (60 kB of backslashes -> 120 kB) is over the
    server's limit by itself: it can only be quarantined."""
    key = SeriesKey.make("notes", {"gateway": gateway}, "huge", FieldType.STRING)
    table = SeriesTable.of([key])
    values = np.empty(1, dtype=object)
    values[:] = ["\\" * 60_000]
    batch = Batch.build(table, np.zeros(1, np.int32), np.full(1, BASE_TS_NS + 1, np.int64), values)
    return FrameCodec.encode(GatewayFrame(gateway, seq, [key], batch, time.time_ns())), 1


def _count(db: Any, measurement: str) -> int:
    res = db.query(f'SELECT count(*) FROM "{measurement}"')
    series = res["results"][0].get("series")
    if not series:
        return 0
    return int(sum(v for v in series[0]["values"][0][1:] if v is not None))


class _Db:
    def __init__(self, url: str, database: str) -> None:
        self.url, self.database = url, database

    def query(self, q: str) -> Any:
        return InfluxDb(self.url, self.database, None).query(q)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- item 3


@pytest.mark.integration
def test_poison_413_is_split_or_quarantined_and_the_rest_flows(
    tmp_path: Path,
    mosquitto: MosquittoServer,
    server_factory: Callable[[LocalServer], LocalServer],
) -> None:
    influx = server_factory(SmallBodyInflux())
    assert isinstance(influx, InfluxServer)
    database = f"t_{uuid.uuid4().hex[:8]}"
    _create_db(influx.url, database)
    db = _Db(influx.url, database)
    cfg = make_config(
        mosquitto.port,
        influx.url,
        database,
        tmp_path,
        mqtt={"client_id": f"ingest-413-{uuid.uuid4().hex[:6]}", "group": None},
        influx={"max_bytes_per_request": 10_000_000, "max_retries": 0},
        batch={"flush_points": 200},
    )
    normal = make_frames("gw-normal", 5, 100)
    poison, poison_n = _poison_frame("gw-poison", 1)
    huge, huge_n = _huge_sample_frame("gw-poison", 2)
    assert len(poison) < cfg.batch.max_message_bytes
    pub = GatewayPublisher(mosquitto.port, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    try:
        with ServiceThread(cfg) as st:
            pub.publish(frame_topic("s1", "gw-poison"), [poison, huge])
            pub.frames(normal)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (
                _count(db, "spindle") < 500 or st.service.acked < 7
            ):
                time.sleep(0.2)
            stored_normal = _count(db, "spindle")
            stored_poison = _count(db, "notes")
            quarantined = dict(st.service.quarantine.counts)
            healthy, detail = st.service.health()
    finally:
        pub.close()
    assert stored_normal == 500, f"{stored_normal} of 500 normal samples stored"
    # the 40-field point is stored in parts; the single over-limit sample is quarantined
    assert stored_poison == poison_n, f"{stored_poison} of {poison_n} poison samples stored"
    assert quarantined.get("influx_too_large", 0) == huge_n, quarantined
    assert stored_normal + stored_poison + quarantined["influx_too_large"] == 500 + 41
    assert healthy, detail


# ---------------------------------------------------------------------------- item 2


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[SmallFs]:
    with small_fs(tmp_path / "fs", size_bytes=4 << 20) as fs:
        yield fs


@pytest.mark.integration
def test_quarantine_disk_full_holds_acks_stays_up_and_catches_up(
    tmp_path: Path, mosquitto: MosquittoServer, influx_db: InfluxDb, tiny_fs: SmallFs
) -> None:
    cfg = make_config(
        mosquitto.port,
        influx_db.url,
        influx_db.database,
        tmp_path,
        mqtt={"client_id": f"ingest-full-{uuid.uuid4().hex[:6]}", "group": None},
        quarantine={"path": str(tiny_fs.path / "quarantine.jsonl"), "fsync": True},
        health={"stale_write_s": 2},
    )
    good = make_frames("gw-ok", 10, 100)
    bad = [b"not a frame %d" % i for i in range(20)]
    pub = GatewayPublisher(mosquitto.port, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    try:
        with ServiceThread(cfg) as st:
            tiny_fs.fill()
            pub.publish(frame_topic("s1", "gw-bad"), bad)
            pub.frames(good)
            time.sleep(5)
            alive_while_full = st.error is None and st.service.consumer is not None
            healthy_full, detail_full = st.service.health()
            acked_full = st.service.acked
            tiny_fs.free()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and st.error is None and st.service.acked < 30:
                time.sleep(0.1)
            assert st.error is None, f"ingest exited: {st.error!r}"
            wait_until(lambda: influx_db.count("spindle") >= 1000, 30, "good samples stored")
            stored = influx_db.count("spindle")
            st.service.quarantine.flush()
            recs = list(read_records(cfg.quarantine.path))
            healthy_after, _ = st.service.health()
            error = st.error
    finally:
        pub.close()
    assert error is None and alive_while_full
    assert not healthy_full
    assert any("quarantine" in r for r in detail_full["reasons"]), detail_full
    assert acked_full < 30  # what could not be quarantined was not acknowledged
    assert stored == 1000
    assert sum(r.count for r in recs) == 20  # every bad message counted in the quarantine
    assert healthy_after


def test_quarantine_is_bounded_and_rotated(tmp_path: Path) -> None:
    """100 bad 1.1 MB messages: the quarantine keeps at most max_files * max_file_bytes (plus
    one record), and every record is either on disk or counted as rotated out."""
    cfg = QuarantineConfig(
        path=str(tmp_path / "q.jsonl"), fsync=False, max_file_bytes=4 << 20, max_files=3
    )
    store = QuarantineStore(cfg)
    payload = os.urandom(1_100_000)
    for i in range(100):
        store.add_payload("zhizao/v1/s1/gw/frames", payload, "bad_magic", f"message {i}")
        store.flush()
    store.close()
    files = quarantine_files(cfg.path)
    total = sum(p.stat().st_size for p in files)
    on_disk = sum(1 for _ in read_records(cfg.path))
    assert total <= 3 * (4 << 20) + 2_000_000, f"{total / 1e6:.0f} MB in {len(files)} files"
    assert len(files) <= 3
    assert on_disk + store.rotated_out == 100
    assert all(p.stat().st_mode & 0o077 == 0 for p in files)


# ---------------------------------------------------------------------------- item 8


@pytest.mark.integration
async def test_points_influx_drops_silently_are_refused_with_a_reason(
    influx_db: InfluxDb,
) -> None:
    from ingest.influx import InfluxConfig, InfluxWriter

    tags = {"site": "s1", "machine": "m1"}
    keys = [
        SeriesKey.make("spindle", tags, "speed_rpm", FieldType.FLOAT),
        SeriesKey.make("spindle", tags, "time", FieldType.FLOAT),  # beside another field
        SeriesKey.make("#comment", tags, "value", FieldType.FLOAT),
        SeriesKey.make("ok", tags, "value", FieldType.FLOAT),
    ]
    table = SeriesTable.of(keys)
    n = 400
    series = np.arange(n, dtype=np.int32) % 4
    ts = BASE_TS_NS + (np.arange(n, dtype=np.int64) // 4) * 1_000_000
    batch = Batch.build(table, series, ts, np.arange(n, dtype=np.float64))
    config = InfluxConfig(url=influx_db.url, database=influx_db.database)
    async with InfluxWriter(config) as writer:
        report = await writer.write_batch(table, batch)
    await asyncio.sleep(0.2)
    stored = influx_db.count("spindle", "speed_rpm") + influx_db.count("ok", "value")
    refused = sum(report.rejected.values())
    assert report.rejected == {"reserved_name_time": 100, "measurement_starts_with_hash": 100}
    assert stored + refused == n
    assert report.samples_written == stored


# ---------------------------------------------------------------------------- item 9


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_decode_caches_are_bounded_by_bytes() -> None:
    """Frames with ever new key blocks (the same 1,000 long-named series, rotated): the caches
    stay under their byte bounds and the resident size does not grow with the frames."""
    tag = "x" * 200
    keys = [
        SeriesKey.make("m", {"site": "s1", "line": tag, "machine": f"m{i:04d}"}, "v", FieldType.INT)
        for i in range(1000)
    ]
    decoder = FrameDecoder()
    n = 4
    bound = 64 * 1024 * 1024  # the decoder's own bound plus the shared block cache
    start_rss = 0
    # 700 distinct key blocks of ~260 kB each: ~180 MB if nothing were evicted, well above the
    # bound and the allowed growth below
    for f in range(700):
        rotated = keys[f:] + keys[:f]
        table = SeriesTable.of(rotated)
        batch = Batch.build(
            table,
            np.arange(n, dtype=np.int32),
            np.full(n, BASE_TS_NS, np.int64),
            np.arange(n, dtype=np.int64),
        )
        payload = FrameCodec.encode(GatewayFrame("gw", f, rotated, batch))
        out = decoder.decode_many([payload])
        assert not out.errors
        if f == 50:
            start_rss = _rss_bytes()
    grown = _rss_bytes() - start_rss
    assert getattr(decoder, "cache_bytes", 0) <= bound
    assert grown < bound + (32 << 20), f"resident size grew {grown / 2**20:.0f} MiB"
