"""``api: v2`` through influxdb-client's write API, against VictoriaMetrics' ``/api/v2/write``
(a second, independent implementation), read back through its ``/api/v1/export``.

VictoriaMetrics stores ``<measurement>_<field>`` as the metric name, the tags as labels, booleans
as 1/0 and timestamps in milliseconds; string fields are not kept, so the data here has none."""

from __future__ import annotations

import uuid
from collections import defaultdict

import httpx
import numpy as np
import orjson
import pytest

from ingest.influx import InfluxConfig, InfluxWriter
from tests.ingest.influx_data import make_points
from zhizao.localstack import VictoriaMetricsServer

pytestmark = pytest.mark.integration


def export(vm: VictoriaMetricsServer, measurement: str) -> dict[tuple[str, str], dict[int, float]]:
    """(metric, machine) -> {ts_ms: value} for every series of ``measurement``."""
    # makes freshly ingested rows searchable now instead of after the ~1 s flush interval
    httpx.get(f"{vm.url}/internal/force_flush", timeout=30).raise_for_status()
    resp = httpx.get(
        f"{vm.url}/api/v1/export",
        params={"match[]": f'{{__name__=~"{measurement}_.*"}}'},
        timeout=60,
    )
    resp.raise_for_status()
    out: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for line in resp.text.splitlines():
        doc = orjson.loads(line)
        key = (doc["metric"]["__name__"], doc["metric"]["machine"])
        out[key].update(zip(doc["timestamps"], doc["values"], strict=True))
    return out


async def test_v2_write_reaches_victoria_metrics_exactly(
    victoria_metrics: VictoriaMetricsServer,
) -> None:
    measurement = f"v2_{uuid.uuid4().hex[:8]}"
    # ms-aligned timestamps: VictoriaMetrics keeps milliseconds
    data = make_points(20_000, machines=5, measurement=measurement, strings=False)
    data.fields["load_pct"] = np.round(data.fields["load_pct"], 6)
    data.batch.value_f64[0::3] = data.fields["load_pct"]
    # VictoriaMetrics stores float64 samples: keep the integers exactly representable
    data.fields["parts"] = data.fields["parts"] % 2**52
    data.batch.value_i64[1::3] = data.fields["parts"]
    config = InfluxConfig.model_validate(
        {
            "url": victoria_metrics.url,
            "api": "v2",
            "org": "plant",
            "bucket": "raw",
            "token": "not-checked-by-vm",
            "max_lines_per_request": 2_000,
            "gzip": True,
        }
    )
    async with InfluxWriter(config) as writer:
        report = await writer.write_batch(data.table, data.batch)
    assert report.lines_written == 20_000
    assert report.samples_written == 60_000
    assert report.requests == 10
    stored = export(victoria_metrics, measurement)
    ts_ms = data.ts_ns // 1_000_000
    for field in ("load_pct", "parts", "running"):
        for machine in np.unique(data.machine):
            mine = data.machine == machine
            expected = dict(
                zip(
                    ts_ms[mine].tolist(),
                    data.fields[field][mine].astype(float).tolist(),
                    strict=True,
                )
            )
            assert stored[(f"{measurement}_{field}", str(machine))] == expected, field


async def test_v2_unreachable_is_retried_then_sink_error() -> None:
    from zhizao.errors import SinkError

    config = InfluxConfig.model_validate(
        {
            "url": "http://127.0.0.1:9",
            "api": "v2",
            "org": "plant",
            "bucket": "raw",
            "max_retries": 2,
            "backoff_initial_s": 0.01,
            "backoff_max_s": 0.02,
        }
    )
    async with InfluxWriter(config) as writer:
        with pytest.raises(SinkError) as info:
            await writer.write_body(b"m v=1 1\n")
    assert info.value.retryable
    assert writer.stats.requests == 3
    assert writer.stats.errors == {"connect": 3}
