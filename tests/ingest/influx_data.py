"""Deterministic test data for the InfluxDB tests: points with a float, an int, a bool and
(optionally) a string field over a few tag sets, as a zhizao ``Batch`` and as expected columns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable

BASE_TS_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


@dataclass(frozen=True)
class Points:
    measurement: str
    table: SeriesTable
    batch: Batch
    machine: NDArray[np.object_]  # tag value per point
    ts_ns: NDArray[np.int64]  # per point
    fields: dict[str, NDArray[Any]]  # per point, by field name

    @property
    def points(self) -> int:
        return len(self.ts_ns)

    def order(self) -> NDArray[np.int64]:
        """Point order InfluxDB returns for ``GROUP BY machine``: machine, then time."""
        return np.lexsort((self.ts_ns, self.machine.astype(str))).astype(np.int64)


def make_points(
    n_points: int,
    *,
    machines: int = 10,
    measurement: str = "spindle",
    strings: bool = True,
    step_ns: int = 1_000_000,
    seed: int = 3,
) -> Points:
    """``n_points`` points over ``machines`` tag sets, ``step_ns`` apart within each machine."""
    rng = np.random.default_rng(seed)
    fields: list[tuple[str, FieldType]] = [
        ("load_pct", FieldType.FLOAT),
        ("parts", FieldType.INT),
        ("running", FieldType.BOOL),
    ]
    if strings:
        fields.append(("program", FieldType.STRING))
    names = [f"cnc {m:02d}, bay=1" for m in range(machines)]  # space, comma, '=': escaping
    table = SeriesTable.of(
        SeriesKey.make(measurement, {"machine": name}, f, dt) for name in names for f, dt in fields
    )
    idx = np.arange(n_points, dtype=np.int64)
    group = idx % machines
    ts_ns = BASE_TS_NS + (idx // machines) * step_ns
    values: dict[str, NDArray[Any]] = {
        "load_pct": rng.normal(50.0, 20.0, n_points),
        "parts": rng.integers(-(2**62), 2**62, n_points, dtype=np.int64),
        "running": rng.random(n_points) < 0.5,
    }
    if strings:
        texts = np.array(['O1 "rough"', "O2 finish, \\ back", "привет"], dtype=object)
        values["program"] = texts[rng.integers(0, len(texts), n_points)]
    nf = len(fields)
    n = n_points * nf
    series = (group[:, None] * nf + np.arange(nf)[None, :]).reshape(n).astype(np.int32)
    f64 = np.zeros((n_points, nf))
    i64 = np.zeros((n_points, nf), np.int64)
    strs = np.full((n_points, nf), None, dtype=object)
    f64[:, 0] = values["load_pct"]
    i64[:, 1] = values["parts"]
    i64[:, 2] = values["running"]
    if strings:
        strs[:, 3] = values["program"]
    batch = Batch(
        series=series,
        ts_ns=np.repeat(ts_ns, nf),
        value_f64=f64.reshape(n),
        value_i64=i64.reshape(n),
        quality=np.zeros(n, np.uint8),
        value_str=strs.reshape(n) if strings else None,
    )
    machine = np.array(names, dtype=object)[group]
    return Points(measurement, table, batch, machine, ts_ns, values)
