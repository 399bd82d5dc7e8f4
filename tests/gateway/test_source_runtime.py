"""The source runtime against a real asyncua server: a fault in any supervised task ends the
session, is logged once and counted, the source reconnects and collects again, and nothing it
had received is lost; polled reads respect the server's MaxNodesPerRead."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from gateway.config import OpcUaSourceConfig
from gateway.health import GatewayCollector
from gateway.outbox import SqliteOutbox
from gateway.sink import OutboxSink
from gateway.sources.base import SourceStats
from gateway.sources.opcua.source import OpcUaSource
from gateway.sources.runtime import Drained, SourceRuntime
from gateway.uplink import UplinkStats
from tests.gateway.helpers import stored, wait_for
from tests.gateway.opcua_server import TestOpcUaServer, node_id
from zhizao.localstack import free_port
from zhizao.model import Batch, FieldType, SeriesKey

pytestmark = pytest.mark.integration
SUBSCRIBED, POLLED = 4, 4


class _FaultSink(OutboxSink):
    """The real outbox with one armed fault: the next emit whose batch matches raises (every
    matching emit, until ``fault`` is cleared, when ``once`` is False)."""

    def __init__(self, outbox: SqliteOutbox, *, once: bool = True) -> None:
        super().__init__(outbox)
        self.fault: Callable[[Batch], bool] | None = None
        self.once = once

    async def emit(
        self,
        batch: Batch,
        *,
        server_ts_ns: NDArray[np.int64] | None = None,
        status_code: NDArray[np.uint32] | None = None,
    ) -> None:
        if self.fault is not None and self.fault(batch):
            if self.once:
                self.fault = None
            raise RuntimeError("injected fault")
        await super().emit(batch, server_ts_ns=server_ts_ns, status_code=status_code)


def _config(endpoint: str, subscribed: int, polled: int) -> OpcUaSourceConfig:
    tags = [
        {
            "node": node_id(i),
            "asset": {"area": "hall", "machine": f"m{i}"},
            "measurement": "spindle",
            "signal": "speed_rpm",
            **({"mode": "poll", "poll_interval_s": 0.1} if i >= subscribed else {}),
        }
        for i in range(subscribed + polled)
    ]
    return OpcUaSourceConfig.model_validate(
        {
            "type": "opcua",
            "name": "cnc",
            "endpoint": endpoint,
            "security": {"policy": "None", "mode": "None"},
            "publishing_interval_ms": 50,
            "watchdog_interval_s": 0.3,
            "request_timeout_s": 2,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.3,
            "flush_interval_s": 0.05,
            "tags": tags,
        }
    )


@contextlib.asynccontextmanager
async def _collecting(
    tmp_path: Path, subscribed: int, polled: int, **server: Any
) -> AsyncIterator[tuple[TestOpcUaServer, OpcUaSource, _FaultSink]]:
    port = free_port()
    async with TestOpcUaServer(port, subscribed + polled, **server) as srv:
        outbox = SqliteOutbox(tmp_path / "o.sqlite")
        sink = _FaultSink(outbox)
        source = OpcUaSource(
            _config(srv.endpoint, subscribed, polled),
            sink,
            enterprise="acme",
            site="s1",
            gateway_id="gw",
            state_dir=tmp_path,
        )
        task = asyncio.create_task(source.run())
        try:
            yield srv, source, sink
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            outbox.close()


def _values(source: OpcUaSource) -> dict[int, set[float]]:
    """machine number -> every value stored for it."""
    outbox = source.sink.outbox  # type: ignore[attr-defined]
    batch = stored(outbox)
    out: dict[int, set[float]] = {}
    for slot, series in enumerate(source._slots.series.tolist()):
        out[slot] = set(batch.value_f64[batch.series == series].tolist())
    return out


def _has(source: OpcUaSource, rounds: set[float], machines: range) -> bool:
    values = _values(source)
    return all(rounds <= values[m] for m in machines)


def _failures_metric(source: OpcUaSource) -> dict[str, float]:
    collector = GatewayCollector("gw", [source.stats], source.sink.outbox, UplinkStats("mqtt"))  # type: ignore[attr-defined]
    for family in collector.collect():
        if family.name == "zhizao_gateway_source_task_failures":
            return {s.labels["task"]: s.value for s in family.samples if s.name.endswith("_total")}
    raise AssertionError("no zhizao_gateway_source_task_failures metric")


@pytest.mark.parametrize("fault", ["poll", "flush", "markers_at_connect", "markers_at_loss"])
async def test_a_failing_task_ends_the_session_is_counted_and_collection_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.sources")
    everything = range(SUBSCRIBED + POLLED)
    async with _collecting(tmp_path, SUBSCRIBED, POLLED) as (srv, source, sink):
        conn = source.runtime.conn_series
        if fault == "markers_at_connect":  # the first session's connection sample fails
            sink.fault = lambda b: bool((b.series == conn).any())
        await srv.write_round(1)
        await wait_for(lambda: _has(source, {1.0}, everything), 30, "round 1 stored")
        if fault in ("poll", "markers_at_loss"):
            srv.fail_next_reads = 1  # the server refuses the next polled Read
        if fault == "markers_at_loss":  # ... and the lost-session connection sample fails
            sink.fault = lambda b: bool((b.series == conn).any())
        if fault == "flush":
            data = source._slots.series
            sink.fault = lambda b: bool(np.isin(b.series, data).any())
        # three changes in quick succession: a re-subscription only re-sends the last one, so
        # 2 and 3 of the subscribed signals are stored only if nothing received was dropped
        for k in (2, 3, 4):
            await srv.write_round(k)
        task = "poll" if fault == "poll" else "flush" if fault == "flush" else "markers"
        await wait_for(lambda: source.stats.task_failures[task] >= 1, 30, f"{task} failure")
        await wait_for(lambda: source.sessions >= 2 and source.stats.connected, 30, "reconnect")
        await wait_for(lambda: _has(source, {4.0}, everything), 30, "round 4 stored")
        if fault in ("poll", "flush"):
            assert _has(source, {2.0, 3.0, 4.0}, range(SUBSCRIBED)), _values(source)
        await srv.write_round(5)  # collected again after the reconnect
        await wait_for(lambda: _has(source, {5.0}, everything), 30, "round 5 stored")
        await wait_for(lambda: not source.runtime.failing, 30, "recovery")
        assert source.runtime.pending_samples == 0
        metric = _failures_metric(source)
    assert metric[task] == 1
    if fault == "markers_at_loss":
        assert metric == {"poll": 1, "markers": 1}
    else:
        assert metric == {task: 1}
    records = [r for r in caplog.records if r.name.startswith("gateway.sources")]
    errors = [r for r in records if r.levelno == logging.ERROR]
    assert len(errors) == len(metric), [r.getMessage() for r in errors]
    assert any(f"its {task} task failed" in r.getMessage() for r in errors)
    recovered = [r for r in records if "running again" in r.getMessage()]
    assert len(recovered) == 1 and recovered[0].levelno == logging.INFO


async def test_polled_reads_are_cut_to_the_servers_max_nodes_per_read(tmp_path: Path) -> None:
    polled = 7
    async with _collecting(tmp_path, 0, polled, max_nodes_per_read=3) as (srv, source, _sink):
        await srv.write_round(1)
        await wait_for(lambda: _has(source, {1.0}, range(polled)), 30, "every polled value")
        assert source.nodes_per_read_used == 3
        assert srv.read_sizes and max(srv.read_sizes) <= 3
        assert not source.stats.task_failures
        assert source.sessions == 1


async def test_a_store_that_keeps_failing_keeps_a_bounded_backlog_and_counts_what_it_drops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A flush whose store keeps raising keeps at most ``max_pending_samples`` in memory (the
    newest); the oldest beyond are dropped, counted as rejected ``store_failing``, logged once;
    once the store works the kept ones are stored exactly once."""
    outbox = SqliteOutbox(tmp_path / "o.sqlite")
    sink = _FaultSink(outbox, once=False)
    sink.fault = lambda batch: True  # the store keeps failing (not a refusal)
    stats = SourceStats("src", "opcua")
    runtime = SourceRuntime(stats, sink, logging.getLogger("test.runtime"), enterprise="acme",
                            site="s1", gateway_id="gw", max_pending_samples=250)  # fmt: skip
    series = sink.series_index(
        SeriesKey.make("spindle", {"site": "s1", "machine": "m1"}, "speed_rpm", FieldType.FLOAT)
    )

    def drained(k: int) -> Drained:
        ts = (np.arange(100, dtype=np.int64) + 100 * k) * 1_000_000
        return (Batch.build(outbox.table, np.full(100, series, np.int32), ts,
                            np.arange(100, dtype=np.float64)), None, None)  # fmt: skip

    with caplog.at_level(logging.INFO, logger="test.runtime"):
        for k in range(6):  # six flush intervals of 100 samples, every store failing
            with pytest.raises(RuntimeError):
                await runtime.flush(drained(k))
            assert runtime.pending_samples <= 300  # the bound plus the batch just received
        assert runtime.pending_samples == 200
        assert stats.rejected["store_failing"] == 400 and stats.samples == 0
        sink.fault = None
        await runtime.flush(None)
    assert runtime.pending_samples == 0 and stats.samples == 200
    ts = stored(outbox).ts_ns
    np.testing.assert_array_equal(np.sort(ts), np.arange(400, 600, dtype=np.int64) * 1_000_000)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "store_failing" in errors[0].getMessage()
    assert any("storing works again" in r.getMessage() for r in caplog.records)
