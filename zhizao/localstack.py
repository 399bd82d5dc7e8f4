"""Start and stop local server processes (InfluxDB 1.x, Mosquitto, VictoriaMetrics) on free
loopback ports with private data directories.

Used by the test fixtures, the benchmarks and ``make demo``: every one of them starts the real
servers itself, so nothing depends on a system service being configured. Only loopback addresses
are ever bound. Readiness is checked by connecting to the TCP port (and, for HTTP servers, by
their ping endpoint) with the standard library only.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

__all__ = [
    "InfluxServer",
    "LocalServer",
    "MosquittoServer",
    "ServerMissing",
    "VictoriaMetricsServer",
    "free_port",
    "stop_process_group",
    "which",
]

LOOPBACK = "127.0.0.1"


class ServerMissing(RuntimeError):
    """The server binary is not installed (run ``make setup``)."""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def which(binary: str, *extra_dirs: str) -> str:
    path = shutil.which(binary) or next(
        (str(Path(d) / binary) for d in extra_dirs if (Path(d) / binary).exists()), None
    )
    if path is None:
        raise ServerMissing(
            f"{binary} is not installed; run `make setup` (Debian package for {binary})"
        )
    return path


def stop_process_group(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 15.0
) -> None:
    """Send ``sig`` to a process started with ``start_new_session=True`` and its children; SIGKILL
    them if they are still there after ``timeout_s``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout_s)


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((LOOPBACK, port)) == 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as resp:
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class LocalServer:
    """One server process with its own data directory; a context manager."""

    name: str
    port: int = 0
    data_dir: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _own_dir: bool = field(default=False, repr=False)
    log_path: Path | None = None

    def command(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def ready(self) -> bool:
        return _port_open(self.port)

    def prepare(self) -> None:
        """Write configuration into ``data_dir`` (subclasses)."""

    def start(self, timeout_s: float = 30.0) -> LocalServer:
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix=f"zhizao-{self.name}-"))
            self._own_dir = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        self.prepare()
        self.log_path = self.data_dir / f"{self.name}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited at start-up with code {self.proc.returncode}: "
                    f"{self.log_tail()}"
                )
            if self.ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready on port {self.port} in {timeout_s}s")

    def log_tail(self, n: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self, *, kill: bool = False, timeout_s: float = 15.0) -> None:
        """Stop the process (SIGTERM, or SIGKILL with ``kill``); the data directory stays."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process_group(proc, signal.SIGKILL if kill else signal.SIGTERM, timeout_s)

    def restart(self, *, kill: bool = False, down_s: float = 0.0) -> None:
        """Stop and start again on the same port and data directory."""
        self.stop(kill=kill)
        if down_s:
            time.sleep(down_s)
        self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


@dataclass
class InfluxServer(LocalServer):
    """InfluxDB 1.x (``influxd run -config``), HTTP API only, everything else off."""

    name: str = "influxdb"
    rpc_port: int = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def prepare(self) -> None:
        assert self.data_dir is not None
        if not self.rpc_port:
            self.rpc_port = free_port()
        d = self.data_dir
        conf = f"""
reporting-disabled = true
bind-address = "{LOOPBACK}:{self.rpc_port}"
[meta]
  dir = "{d}/meta"
  logging-enabled = false
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
  wal-fsync-delay = "0s"
  max-series-per-database = 0
  max-values-per-tag = 0
[coordinator]
  log-queries-after = "0s"
[retention]
  enabled = false
[shard-precreation]
  enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "{LOOPBACK}:{self.port}"
  auth-enabled = false
  log-enabled = false
  max-body-size = 25000000
[logging]
  level = "warn"
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
"""
        (d / "influxdb.conf").write_text(conf)

    def command(self) -> list[str]:
        assert self.data_dir is not None
        return [
            which("influxd", "/usr/bin"),
            "run",
            "-config",
            str(self.data_dir / "influxdb.conf"),
        ]

    def ready(self) -> bool:
        return _port_open(self.port) and _http_ok(f"{self.url}/ping")


@dataclass
class MosquittoServer(LocalServer):
    """Mosquitto 2.x with a generated config: persistence on, queues unbounded for tests."""

    name: str = "mosquitto"
    persistence: bool = True
    # 0 = unlimited queued QoS 1 messages per offline persistent session
    max_queued_messages: int = 0
    extra_conf: str = ""

    @property
    def url(self) -> str:
        return f"mqtt://{LOOPBACK}:{self.port}"

    def prepare(self) -> None:
        assert self.data_dir is not None
        d = self.data_dir
        # Started as root, mosquitto drops to the "mosquitto" user and then cannot write a data
        # directory root created: persistence would silently do nothing. Hand the directory over.
        run_as = ""
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("mosquitto")
                os.chown(d, entry.pw_uid, entry.pw_gid)
            except KeyError:
                run_as = "user root"
        conf = f"""
{run_as}
listener {self.port} {LOOPBACK}
allow_anonymous true
persistence {"true" if self.persistence else "false"}
persistence_location {d}/
autosave_interval 1
max_queued_messages {self.max_queued_messages}
max_inflight_messages 0
log_dest stdout
log_type error
log_type warning
{self.extra_conf}
"""
        (d / "mosquitto.conf").write_text(conf)

    def command(self) -> list[str]:
        assert self.data_dir is not None
        return [which("mosquitto", "/usr/sbin"), "-c", str(self.data_dir / "mosquitto.conf")]


@dataclass
class VictoriaMetricsServer(LocalServer):
    """VictoriaMetrics single node: a second implementation of ``/api/v2/write``."""

    name: str = "victoria-metrics"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        assert self.data_dir is not None
        return [
            which("victoria-metrics", "/usr/bin"),
            f"-httpListenAddr={LOOPBACK}:{self.port}",
            f"-storageDataPath={self.data_dir}/vm",
            "-retentionPeriod=100y",
            "-search.disableCache",
            "-loggerLevel=ERROR",
        ]

    def ready(self) -> bool:
        return _port_open(self.port) and _http_ok(f"{self.url}/health")
