"""The API's Prometheus metrics (a private registry, served on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["ApiMetrics"]

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    """Requests by route template and status, latencies, InfluxDB query time, auth failures."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "zhizao_api_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "zhizao_api_request_duration_seconds",
            "time from request to response headers, by route template",
            ["route"],
            buckets=_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.influx_query = Histogram(
            "zhizao_api_influx_query_duration_seconds",
            "InfluxQL round trips made by the API",
            buckets=_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.influx_errors = Counter(
            "zhizao_api_influx_errors",
            "InfluxQL queries that failed, by kind (unreachable, refused)",
            ["kind"],
            registry=self.registry,
        )
        self.cache = Counter(
            "zhizao_api_kpi_cache",
            "KPI component queries: answered from the short-lived cache (hit), by a query already in flight (shared), or sent (miss)",
            ["result"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "zhizao_api_auth_failures",
            "requests refused by authentication or role: missing, invalid (unknown, revoked or expired), role",
            ["reason"],
            registry=self.registry,
        )
        self.scope_denials = Counter(
            "zhizao_api_scope_denials",
            "requests for a resource outside the token's factory or that does not exist (answered 404)",
            ["kind"],
            registry=self.registry,
        )
