"""Shared helpers for the benchmarks: the standard data set, argument parsing, JSON-line output.

The standard data set (issue 2): 1,000,000 points, 3 tags, 4 fields of mixed types, 1,000 series.
A *point* is one line of line protocol (measurement + tag set + timestamp, all four fields); a
*series* is InfluxDB's series (measurement + tag set). In zhizao's columnar model every field of a
point is one sample of its own ``SeriesKey``, so the ``Batch`` holds ``points * 4`` samples over
``1,000 * 4`` series keys, ordered point by point (the four fields of a point are consecutive, so
an encoder can write them as one line).

Everything is deterministic (fixed seed, fixed base time) so runs compare.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable

__all__ = [
    "FIELDS",
    "FULL_POINTS",
    "MEASUREMENT",
    "QUICK_POINTS",
    "BenchData",
    "emit",
    "make_data",
    "parse_args",
    "percentile",
    "start_api",
    "timed",
]

FULL_POINTS = 1_000_000
QUICK_POINTS = 200_000
N_SERIES = 1_000
MEASUREMENT = "spindle"
# field name -> type; one of each InfluxDB field type
FIELDS: tuple[tuple[str, FieldType], ...] = (
    ("speed_rpm", FieldType.FLOAT),
    ("part_count", FieldType.INT),
    ("running", FieldType.BOOL),
    ("program", FieldType.STRING),
)
# 2026-01-01T00:00:00Z; one point per series per second from here
BASE_TS_NS = 1_767_225_600_000_000_000
PROGRAMS = np.array(["O1001 roughing", "O1002 finishing", "O2001 drill", "O3000 idle"], object)


@dataclass(frozen=True)
class BenchData:
    """The standard data set, columnar by point and as a zhizao ``Batch``."""

    points: int
    table: SeriesTable
    batch: Batch  # points * len(FIELDS) samples, point-major
    tags: list[dict[str, str]]  # tag set of each of the N_SERIES groups
    point_group: NDArray[np.int64]  # group (tag set) of each point
    point_ts_ns: NDArray[np.int64]
    fields: dict[str, NDArray[Any]]  # per-point field columns (float64, int64, bool, object)

    @property
    def samples(self) -> int:
        return len(self.batch)

    def dataframe(self) -> Any:
        """Per-point pandas DataFrame (tags and fields as columns, time index), for baselines."""
        import pandas as pd

        tag_cols = {
            k: np.array([t[k] for t in self.tags], object)[self.point_group] for k in self.tags[0]
        }
        frame = pd.DataFrame({**tag_cols, **self.fields})
        frame.index = pd.to_datetime(self.point_ts_ns, unit="ns", utc=True)
        return frame


def make_data(points: int, *, seed: int = 7) -> BenchData:
    """Build ``points`` points over ``N_SERIES`` tag sets (vectorized; a second or two for 1 M)."""
    rng = np.random.default_rng(seed)
    tags = [
        {
            "site": f"plant-{g // 250}",
            "line": f"line-{(g // 25) % 10:02d}",
            "machine": f"cnc-{g:04d}",
        }
        for g in range(N_SERIES)
    ]
    keys = [SeriesKey.make(MEASUREMENT, t, name, dtype) for t in tags for name, dtype in FIELDS]
    table = SeriesTable.of(keys)
    idx = np.arange(points, dtype=np.int64)
    group = idx % N_SERIES
    ts_ns = BASE_TS_NS + (idx // N_SERIES) * 1_000_000_000
    fields: dict[str, NDArray[Any]] = {
        "speed_rpm": np.round(rng.uniform(0.0, 12_000.0, points), 3),
        "part_count": rng.integers(0, 1_000_000, points, dtype=np.int64),
        "running": rng.random(points) < 0.8,
        "program": PROGRAMS[rng.integers(0, len(PROGRAMS), points)],
    }
    nf = len(FIELDS)
    n = points * nf
    # sample j of point i sits at row i*nf + j; series key of (group g, field j) is g*nf + j
    series = (group[:, None] * nf + np.arange(nf)[None, :]).reshape(n).astype(np.int32)
    value_f64 = np.zeros((points, nf), np.float64)
    value_i64 = np.zeros((points, nf), np.int64)
    value_str = np.full((points, nf), None, object)
    value_f64[:, 0] = fields["speed_rpm"]
    value_i64[:, 1] = fields["part_count"]
    value_i64[:, 2] = fields["running"]
    value_str[:, 3] = fields["program"]
    batch = Batch(
        series=series,
        ts_ns=np.repeat(ts_ns, nf),
        value_f64=value_f64.reshape(n),
        value_i64=value_i64.reshape(n),
        quality=np.zeros(n, np.uint8),
        value_str=value_str.reshape(n),
    )
    return BenchData(points, table, batch, tags, group, ts_ns, fields)


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """``--quick`` (QUICK_POINTS, < 30 s) and ``--points N``; ``args.points`` is always set."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_POINTS:,} points")
    parser.add_argument("--points", type=int, default=0, help="override the number of points")
    args = parser.parse_args(argv)
    if not args.points:
        args.points = QUICK_POINTS if args.quick else FULL_POINTS
    return args


def emit(record: dict[str, Any]) -> None:
    """One JSON object per line on stdout (floats rounded to keep the lines readable)."""
    clean = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in record.items()}
    print(json.dumps(clean), flush=True)


def log(message: str) -> None:
    """Progress goes to stderr so stdout stays pure JSON lines."""
    print(f"# {message}", file=sys.stderr, flush=True)


@contextmanager
def timed() -> Iterator[Callable[[], float]]:
    """``with timed() as elapsed_s: ...``; ``elapsed_s()`` is frozen once the block exits."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` (NaN when there are none)."""
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def start_api(tmp: Path, settings: dict[str, Any], port: int) -> subprocess.Popen[bytes]:
    """``zhizao api run`` as its own process with ``settings`` (written to ``tmp/api.yaml``,
    host 127.0.0.1 on ``port``), once ``/readyz`` answers 200. Stop it with
    ``zhizao.localstack.stop_process_group``."""
    import httpx
    import yaml

    path = tmp / "api.yaml"
    doc = {"host": "127.0.0.1", "port": port, "log_level": "WARNING", **settings}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    # the benchmark's own settings, not whatever ZHIZAO_API_* the shell holds
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZHIZAO_API_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "zhizao.cli", "api", "run", "-c", str(path)],
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the API did not start (see its log above)")
        time.sleep(0.1)
