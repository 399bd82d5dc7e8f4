"""Write benchmark: encode and write the standard data set into a real InfluxDB, against the
server's ceiling measured in the same run.

- ``points_per_s``: ``InfluxWriter.write_batch`` from a ``Batch`` (encoding included, pipelined with
  the requests).
- ``ceiling_points_per_s``: the same data, encoded beforehand (not timed), posted as the same
  requests (same lines per request, same concurrency) by a bare httpx loop: what the server takes
  when the client does no work at all.

Each run writes into a fresh database of an InfluxDB 1.x started by this script; every run is
checked afterwards by counting the points back. The best of ``--repeats`` alternating runs is
reported for both sides.

Usage: python benchmarks/write.py [--quick] [--points N] [--repeats R]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import MEASUREMENT, BenchData, emit, log, make_data, parse_args, timed
from ingest.influx import InfluxConfig, InfluxWriter
from ingest.influx.chunks import RequestChunk, split_body
from ingest.lineprotocol import LineProtocolEncoder
from zhizao.localstack import InfluxServer

MAX_LINES = 5_000
MAX_BYTES = 10_000_000
CONCURRENCY = 2  # two cores on the reference machine; more only queues inside influxd


def influx_query(url: str, q: str, db: str | None = None) -> object:
    params = {"q": q, **({"db": db} if db else {})}
    data = urllib.parse.urlencode(params).encode()
    with urllib.request.urlopen(f"{url}/query", data=data, timeout=120) as resp:
        return orjson.loads(resp.read())


def count_points(url: str, db: str) -> int:
    res = influx_query(url, f'SELECT count("speed_rpm") FROM "{MEASUREMENT}"', db)
    assert isinstance(res, dict)
    series = res["results"][0].get("series") or [{"values": [[0, 0]]}]
    return int(series[0]["values"][0][1])


async def post_all(url: str, db: str, chunks: list[RequestChunk]) -> None:
    """The ceiling: post ready bodies, ``CONCURRENCY`` at a time, no other work."""
    sem = asyncio.Semaphore(CONCURRENCY)
    params = {"db": db, "precision": "ns"}
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def post(chunk: RequestChunk) -> None:
            async with sem:
                resp = await client.post("/write", params=params, content=chunk.body)
                if resp.status_code != 204:
                    raise RuntimeError(f"ceiling write failed: {resp.status_code} {resp.text}")

        await asyncio.gather(*(post(c) for c in chunks))


async def run_ours(url: str, db: str, data: BenchData) -> float:
    config = InfluxConfig(
        url=url,
        database=db,
        max_lines_per_request=MAX_LINES,
        max_bytes_per_request=MAX_BYTES,
        concurrency=CONCURRENCY,
    )
    async with InfluxWriter(config) as writer:
        with timed() as elapsed_s:
            report = await writer.write_batch(data.table, data.batch)
    if report.samples_written != data.samples or report.rejected:
        raise RuntimeError(f"write incomplete: {report}")
    return elapsed_s()


async def run_ceiling(url: str, db: str, chunks: list[RequestChunk]) -> float:
    with timed() as elapsed_s:
        await post_all(url, db, chunks)
    return elapsed_s()


async def main_async(points: int, repeats: int) -> dict[str, float | str | int]:
    data = make_data(points)
    # encoded once outside any timing: the ceiling's bodies
    encoded = LineProtocolEncoder(data.table).encode(data.batch)
    chunks = split_body(encoded.body, encoded.line_ends, MAX_LINES, MAX_BYTES)
    log(
        f"{points:,} points, {encoded.lines:,} lines, {len(encoded.body) / 1e6:.1f} MB, "
        f"{len(chunks)} requests of <= {MAX_LINES} lines, concurrency {CONCURRENCY}"
    )
    server = InfluxServer()
    server.start()
    try:
        url = server.url
        # warm-up: the first writes of a fresh server pay for shard creation
        influx_query(url, 'CREATE DATABASE "warmup"')
        await post_all(url, "warmup", chunks[: max(1, len(chunks) // 5)])
        ours_s: list[float] = []
        ceiling_s: list[float] = []
        for k in range(repeats):
            for side in ("ceiling", "ours") if k % 2 == 0 else ("ours", "ceiling"):
                db = f"bench_{side}_{k}"
                influx_query(url, f'CREATE DATABASE "{db}"')
                if side == "ours":
                    ours_s.append(await run_ours(url, db, data))
                else:
                    ceiling_s.append(await run_ceiling(url, db, chunks))
                stored = count_points(url, db)
                if stored != points:
                    raise RuntimeError(f"{side} run {k}: {stored:,} points stored, not {points:,}")
                influx_query(url, f'DROP DATABASE "{db}"')
                log(f"run {k} {side}: {(ours_s if side == 'ours' else ceiling_s)[-1]:.3f} s")
    finally:
        server.cleanup()
    ours = points / min(ours_s)
    ceiling = points / min(ceiling_s)
    return {
        "name": "write",
        "points_per_s": ours,
        "ceiling_points_per_s": ceiling,
        "ratio": ours / ceiling,
    }


def main(argv: list[str] | None = None) -> int:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--repeats", type=int, default=0)
    known, rest = extra.parse_known_args(argv)
    args = parse_args(__doc__ or "write benchmark", rest)
    repeats = known.repeats or (5 if args.quick else 3)
    emit(asyncio.run(main_async(args.points, repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
