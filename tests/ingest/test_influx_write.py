"""The writer against a real InfluxDB 1.6: counts and values back exactly, partial writes, missing
databases, gzip, basic auth, and a server killed and restarted in the middle of a write."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest

from ingest.influx import InfluxConfig, InfluxQLReader, InfluxWriter, ResultSeries
from ingest.lineprotocol import LineProtocolEncoder
from tests.conftest import InfluxDb
from tests.ingest.influx_data import Points, make_points
from zhizao.errors import ConfigError, PartialWriteError, SinkError
from zhizao.localstack import InfluxServer, LocalServer
from zhizao.model import Batch

pytestmark = pytest.mark.integration


def config_for(url: str, database: str, **overrides: Any) -> InfluxConfig:
    return InfluxConfig.model_validate({"url": url, "database": database, **overrides})


async def read_back(config: InfluxConfig, measurement: str) -> list[ResultSeries]:
    async with InfluxQLReader(config) as reader:
        return await reader.query(f'SELECT * FROM "{measurement}" GROUP BY "machine"')


def assert_stored_exactly(series: list[ResultSeries], expected: Points) -> None:
    """Every point once, with the exact values written (machine by machine, in time order)."""
    order = expected.order()
    got_machine = np.concatenate([np.full(len(s), s.tags["machine"], dtype=object) for s in series])
    assert len(got_machine) == expected.points
    assert (got_machine == expected.machine[order]).all()
    assert np.array_equal(np.concatenate([s.time_ns for s in series]), expected.ts_ns[order])
    for name, values in expected.fields.items():
        got = np.concatenate([s.values[name] for s in series])
        assert got.dtype == values.dtype or values.dtype == object, name
        assert np.array_equal(got, values[order]), name


async def test_100k_points_counted_and_read_back_exactly(influx_db: InfluxDb) -> None:
    data = make_points(100_000)
    config = config_for(influx_db.url, influx_db.database, max_lines_per_request=5_000)
    async with InfluxWriter(config) as writer:
        report = await writer.write_batch(data.table, data.batch)
    assert report.lines_written == 100_000
    assert report.samples_written == len(data.batch) == 400_000
    assert report.rejected == {} and report.retries == 0
    assert report.requests >= 20  # bounded requests, not one huge body
    for field in data.fields:
        assert influx_db.count(data.measurement, field) == 100_000
    assert_stored_exactly(await read_back(config, data.measurement), data)
    assert writer.stats.samples_written == 400_000


async def test_bad_samples_are_reported_and_the_rest_stored(influx_db: InfluxDb) -> None:
    data = make_points(1_000, strings=False)
    batch = data.batch
    f64 = batch.value_f64.copy()
    ts = batch.ts_ns.copy()
    # samples 0 (load_pct of point 0) and 12 (load_pct of point 4) are NaN / inf: rejected
    f64[[0, 12]] = [np.nan, np.inf]
    ts[[1]] = np.iinfo(np.int64).max  # parts of point 0: timestamp outside InfluxDB's range
    bad = Batch(batch.series, ts, f64, batch.value_i64, batch.quality, batch.value_str)
    config = config_for(influx_db.url, influx_db.database)
    async with InfluxWriter(config) as writer:
        report = await writer.write_batch(data.table, bad)
    assert sorted(report.rejected_index.tolist()) == [0, 1, 12]
    assert sum(report.rejected.values()) == 3
    assert report.rejected["non_finite_float"] == 2
    assert report.rejected["timestamp_out_of_range"] == 1
    assert report.samples_written == len(bad) - 3
    assert influx_db.count(data.measurement, "load_pct") == 998
    assert influx_db.count(data.measurement, "parts") == 999
    assert influx_db.count(data.measurement, "running") == 1000


async def test_partial_write_names_the_refused_lines(influx_db: InfluxDb) -> None:
    config = config_for(influx_db.url, influx_db.database)
    async with InfluxWriter(config) as writer:
        await writer.write_body(b"m,k=a v=1.5 1\n")
        with pytest.raises(PartialWriteError) as info:
            await writer.write_body(b"m,k=a v=2.5 2\nm,k=b v=3 3\nm v= 4\nm,k=c v=4 5\n")
        parse_err = info.value
        with pytest.raises(PartialWriteError) as info:
            await writer.write_body(b'm,k=b v=1i 6\nm,k=c v="s" 7\nm,k=d v=5 8\n')
        conflict = info.value
    assert parse_err.rejected == [(3, "m v= 4", "missing field value")]
    assert parse_err.accepted_lines == 3
    assert not parse_err.retryable and parse_err.status == 400
    assert [(no, line) for no, line, _ in conflict.rejected] == [
        (1, "m,k=b v=1i 6"),
        (2, 'm,k=c v="s" 7'),
    ]
    assert all("already exists as type float" in reason for _, _, reason in conflict.rejected)
    assert conflict.accepted_lines == 1
    # stored: both good lines of each write plus the first point, nothing else
    assert influx_db.count("m", "v") == 1 + 3 + 1
    assert writer.stats.errors == {"partial_write": 2}


async def test_partial_write_line_numbers_span_requests(influx_db: InfluxDb) -> None:
    lines = [b"n v=%d %d" % (i, i) for i in range(1, 101)]
    lines[57] = b"n v=oops 58"
    config = config_for(influx_db.url, influx_db.database, max_lines_per_request=10)
    async with InfluxWriter(config) as writer:
        with pytest.raises(PartialWriteError) as info:
            await writer.write_body(b"\n".join(lines) + b"\n", lines=100)
    assert [(no, line) for no, line, _ in info.value.rejected] == [(58, "n v=oops 58")]
    assert info.value.accepted_lines == 99
    assert influx_db.count("n", "v") == 99


async def test_missing_database_is_a_config_error(influx_server: InfluxServer) -> None:
    config = config_for(influx_server.url, "no_such_db_x1")
    async with InfluxWriter(config) as writer:
        with pytest.raises(ConfigError) as info:
            await writer.write_body(b"m v=1 1\n")
    assert "no_such_db_x1" in info.value.message
    assert "create_database" in info.value.message
    assert info.value.key == "database"
    assert writer.stats.errors == {"database_not_found": 1}


async def test_missing_database_is_created_when_configured(influx_server: InfluxServer) -> None:
    name = f"created_{time.time_ns()}"
    config = config_for(
        influx_server.url, name, create_database=True, concurrency=4, max_lines_per_request=500
    )
    body = b"".join(b"m v=%d %d\n" % (i, i) for i in range(4_000))
    try:
        async with InfluxWriter(config) as writer:
            # several requests meet the 404 at once; each retries once after CREATE DATABASE
            report = await writer.write_body(body, lines=4_000)
        assert report.lines_written == 4_000
        db = InfluxDb(influx_server.url, name, influx_server)
        assert db.count("m", "v") == 4_000
    finally:
        httpx.post(f"{influx_server.url}/query", data={"q": f'DROP DATABASE "{name}"'})


async def test_gzip_bodies_are_accepted(influx_db: InfluxDb) -> None:
    data = make_points(20_000)
    config = config_for(influx_db.url, influx_db.database, gzip=True)
    async with InfluxWriter(config) as writer:
        report = await writer.write_batch(data.table, data.batch)
    encoded_bytes = len(LineProtocolEncoder(data.table).encode(data.batch).body)
    assert report.bytes_sent < encoded_bytes / 2  # it really was compressed
    assert_stored_exactly(await read_back(config, data.measurement), data)


@dataclass
class AuthInfluxServer(InfluxServer):
    """InfluxDB with ``auth-enabled = true`` (an admin user is created by the test)."""

    def prepare(self) -> None:
        super().prepare()
        assert self.data_dir is not None
        conf = self.data_dir / "influxdb.conf"
        conf.write_text(conf.read_text().replace("auth-enabled = false", "auth-enabled = true"))


async def test_basic_auth_against_auth_enabled_influxdb(
    server_factory: Callable[[LocalServer], LocalServer],
) -> None:
    server = server_factory(AuthInfluxServer())
    assert isinstance(server, AuthInfluxServer)
    # the first admin user may be created without credentials
    q = "CREATE USER admin WITH PASSWORD 'pa:ss w0rd' WITH ALL PRIVILEGES"
    httpx.post(f"{server.url}/query", data={"q": q}).raise_for_status()
    good = config_for(
        server.url, "secure", username="admin", password="pa:ss w0rd", create_database=True
    )
    async with InfluxWriter(good) as writer:
        report = await writer.write_body(b"m v=1 1\nm v=2 2\n")
    assert report.lines_written == 2
    async with InfluxQLReader(good) as reader:
        (series,) = await reader.query("SELECT v FROM m")
    assert series.values["v"].tolist() == [1, 2]
    bad = config_for(server.url, "secure", username="admin", password="wrong")
    async with InfluxWriter(bad) as writer:
        with pytest.raises(SinkError) as info:
            await writer.write_body(b"m v=3 3\n")
    assert info.value.status == 401 and not info.value.retryable
    assert "credentials" in info.value.message
    assert writer.stats.requests == 1  # never retried


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) != 0


async def test_server_killed_mid_write_loses_and_duplicates_nothing(
    server_factory: Callable[[LocalServer], LocalServer],
) -> None:
    server = server_factory(InfluxServer())
    assert isinstance(server, InfluxServer)
    data = make_points(60_000, strings=False)
    config = config_for(
        server.url,
        "plant",
        create_database=True,
        max_lines_per_request=500,
        concurrency=2,
        backoff_initial_s=0.05,
        backoff_max_s=0.5,
        max_retries=200,
    )
    n = len(data.batch)
    first_part = np.arange(n * 2 // 3)
    pieces = np.array_split(np.arange(n * 2 // 3, n), 20)
    restarted = threading.Event()

    async with InfluxWriter(config) as writer:

        def kill_and_restart() -> None:
            # kill while the big write is in flight (it has ~40,000 lines to go)
            deadline = time.monotonic() + 30
            while writer.stats.lines_written < 2_000 and time.monotonic() < deadline:
                time.sleep(0.001)
            server.restart(kill=True, down_s=1.0)  # SIGKILL: no graceful shutdown
            restarted.set()

        killer = threading.Thread(target=kill_and_restart)
        killer.start()
        big = asyncio.create_task(writer.write_batch(data.table, data.batch.take(first_part)))
        deadline = time.monotonic() + 30
        while not _port_closed(server.port) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        # the following writes meet a closed port and retry until it is back
        for piece in pieces:
            await writer.write_batch(data.table, data.batch.take(piece))
        await big
        await asyncio.to_thread(killer.join, 60)
    assert restarted.is_set()
    assert writer.stats.retries > 0
    assert writer.stats.errors.get("connect", 0) + writer.stats.errors.get("connection", 0) > 0
    assert_stored_exactly(await read_back(config, data.measurement), data)


async def test_concurrent_write_batch_calls_share_one_writer(influx_db: InfluxDb) -> None:
    data = make_points(60_000)
    rows = np.arange(len(data.batch))
    halves = [data.batch.take(rows[: len(rows) // 2]), data.batch.take(rows[len(rows) // 2 :])]
    config = config_for(influx_db.url, influx_db.database, max_lines_per_request=2_000)
    async with InfluxWriter(config) as writer:
        reports = await asyncio.gather(*(writer.write_batch(data.table, h) for h in halves))
    assert sum(r.samples_written for r in reports) == len(data.batch)
    assert writer.stats.samples_written == len(data.batch)
    assert_stored_exactly(await read_back(config, data.measurement), data)
