"""One small HTTP server for every service's probes: ``GET /metrics`` (Prometheus text) and
``GET /healthz`` (JSON, 200 healthy, 503 not), on a thread of its own.

The gateway, ingest and the KPI engine serve the same two routes the same way (the API answers
them itself, under uvicorn). The server knows nothing of Prometheus: a service passes the
function that renders its registry, so the kernel stays free of service libraries. Scrapes every
few seconds are not logged. A port that is taken is a ``ConfigError`` naming it and the key to
change (docs/PORTS.md lists each service's default).
"""

from __future__ import annotations

import errno
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from zhizao.errors import ConfigError

__all__ = ["HealthFn", "MetricsFn", "ProbeServer"]

# () -> (healthy, details): the details go into the JSON body beside "status"
HealthFn = Callable[[], tuple[bool, dict[str, Any]]]
# () -> (body, content type) of the Prometheus exposition
MetricsFn = Callable[[], tuple[bytes, str]]


class ProbeServer:
    """``/metrics`` and ``/healthz`` on ``host:port`` (0 = a free port; ``port`` tells which)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        metrics: MetricsFn,
        health: HealthFn,
        service: str,
        port_key: str,
    ) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, ctype = metrics()
                    status = 200
                elif path == "/healthz":
                    ok, detail = health()
                    doc = {"status": "ok" if ok else "unhealthy", **detail}
                    body, ctype = json.dumps(doc, default=str).encode(), "application/json"
                    status = 200 if ok else 503
                else:
                    body, ctype, status = b"not found: /metrics or /healthz\n", "text/plain", 404
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # a scrape every few seconds would flood the log

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
                raise
            raise ConfigError(
                f"the {service} cannot serve /metrics and /healthz on {host}:{port}: "
                f"{exc.strerror or exc}",
                key=port_key,
                expected="a free port (defaults per service: docs/PORTS.md), or 0 for any free port",
            ) from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"{service}-probes", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
