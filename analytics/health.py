"""The KPI engine's health and metrics: Prometheus text on ``/metrics``, ``/healthz`` (JSON, 503
after ``health.fail_after_runs`` failed runs in a row), served by ``zhizao.probe`` from a thread
of the engine (``zhizao kpi run``)."""

from __future__ import annotations

import threading
import time
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
)

from analytics.notes import NOTE_KINDS

__all__ = ["EngineMetrics"]


class EngineMetrics:
    """Every metric of one KPI engine, in a private registry."""

    def __init__(self, fail_after_runs: int = 3) -> None:
        self.registry = r = CollectorRegistry()
        self.fail_after_runs = fail_after_runs
        self.runs = Counter("zhizao_kpi_runs", "successful runs", registry=r)
        self.failed = Counter("zhizao_kpi_failed_runs", "failed runs", registry=r)
        self.consecutive = Gauge(
            "zhizao_kpi_consecutive_failed_runs", "failed runs since the last success", registry=r
        )
        self.last_success = Gauge(
            "zhizao_kpi_last_success_timestamp_seconds",
            "wall-clock end of the last successful run",
            registry=r,
        )
        self.duration = Gauge(
            "zhizao_kpi_run_duration_seconds", "wall time of the last successful run", registry=r
        )
        self.in_progress = Gauge("zhizao_kpi_run_in_progress", "1 while a run works", registry=r)
        self.points_read = Gauge(
            "zhizao_kpi_last_run_points_read", "raw field values read by the last run", registry=r
        )
        self.points_read_total = Counter(
            "zhizao_kpi_points_read", "raw field values read by all runs", registry=r
        )
        self.points_written = Gauge(
            "zhizao_kpi_last_run_points_written",
            "points written by the last run (window rows and segment rows)",
            registry=r,
        )
        self.points_written_total = Counter(
            "zhizao_kpi_points_written", "points written by all runs", registry=r
        )
        self.segments = Gauge(
            "zhizao_kpi_last_run_segments",
            "segments computed from raw data, last run",
            registry=r,
        )
        self.windows = Gauge(
            "zhizao_kpi_last_run_windows",
            "machine windows (hour, shift, day rows) re-derived by the last run",
            registry=r,
        )
        self.late = Counter(
            "zhizao_kpi_late_data_rereads", "look-back re-reads after late data", registry=r
        )
        self.notes = Gauge(
            "zhizao_kpi_data_notes",
            "distinct data notes of the last successful run, per site and kind "
            f"({', '.join(NOTE_KINDS)})",
            ["site", "kind"],
            registry=r,
        )
        self.unknown_state_s = Counter(
            "zhizao_kpi_unknown_state_seconds",
            "seconds with a state code no state map knows in force (also where another state "
            "signal gave the state), per machine, as the engine computed them",
            ["site", "machine"],
            registry=r,
        )
        self._lock = threading.Lock()
        self._consecutive = 0
        self._last_success = 0.0
        self._last_error = ""

    def started(self) -> None:
        self.in_progress.set(1)

    def succeeded(
        self, duration_s: float, read: int, written: int, segments: int, windows: int, late: int
    ) -> None:
        with self._lock:
            self._consecutive = 0
            self._last_success = time.time()
        self.in_progress.set(0)
        self.runs.inc()
        self.consecutive.set(0)
        self.last_success.set(self._last_success)
        self.duration.set(duration_s)
        self.points_read.set(read)
        self.points_read_total.inc(read)
        self.points_written.set(written)
        self.points_written_total.inc(written)
        self.segments.set(segments)
        self.windows.set(windows)
        self.late.inc(late)

    def data_notes(self, sites: list[str], counts: dict[tuple[str, str], int]) -> None:
        """Notes per (site, kind) of the last successful run; every kind of every site is set,
        so a note that went away reads 0."""
        for site in sites:
            for kind in NOTE_KINDS:
                self.notes.labels(site=site, kind=kind).set(counts.get((site, kind), 0))

    def unknown_state(self, seconds: dict[tuple[str, str], float]) -> None:
        for (site, machine), s in seconds.items():
            if s > 0:
                self.unknown_state_s.labels(site=site, machine=machine).inc(s)

    def failed_run(self, error: str) -> None:
        with self._lock:
            self._consecutive += 1
            self._last_error = error
            n = self._consecutive
        self.in_progress.set(0)
        self.failed.inc()
        self.consecutive.set(n)

    def health(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            n, last, err = self._consecutive, self._last_success, self._last_error
        ok = n < self.fail_after_runs
        detail: dict[str, Any] = {
            "consecutive_failed_runs": n,
            "last_success": last or None,
        }
        if n:
            detail["last_error"] = err
        return ok, detail
