"""Start and stop local server processes (InfluxDB 1.x, Mosquitto, VictoriaMetrics, PostgreSQL) on free
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
from typing import Any

__all__ = [
    "InfluxServer",
    "LocalServer",
    "MosquittoServer",
    "PostgresServer",
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


def _reachable_by(directory: Path, uid: int, gid: int) -> bool:
    """Whether a process of ``uid``/``gid`` can enter ``directory`` (search permission on it
    and on every parent). Supplementary groups are not considered: a daemon user has none here."""
    for d in [directory.resolve(), *directory.resolve().parents]:
        st = d.stat()
        if st.st_uid == uid:
            bit = 0o100
        elif st.st_gid == gid:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return False
    return True


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
        # Its only complaint is "Error: Permission denied" in its log, every autosave, while the
        # sessions it should keep across a restart are lost. A directory the mosquitto user
        # cannot reach (a parent of mode 0700, as pytest's and mkdtemp's are) is the same case:
        # then it keeps running as root, on loopback only.
        run_as = ""
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("mosquitto")
            except KeyError:
                run_as = "user root"
            else:
                if _reachable_by(d.parent, entry.pw_uid, entry.pw_gid):
                    os.chown(d, entry.pw_uid, entry.pw_gid)
                else:
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
    # a Prometheus scrape configuration (scrape_configs): VictoriaMetrics then scrapes the
    # services' /metrics itself, as the deployed stack does
    scrape_config: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        assert self.data_dir is not None
        cmd = [
            which("victoria-metrics", "/usr/bin"),
            f"-httpListenAddr={LOOPBACK}:{self.port}",
            f"-storageDataPath={self.data_dir}/vm",
            "-retentionPeriod=100y",
            "-search.disableCache",
            "-loggerLevel=ERROR",
        ]
        if self.scrape_config is not None:
            cmd.append(f"-promscrape.config={self.scrape_config}")
        return cmd

    def ready(self) -> bool:
        return _port_open(self.port) and _http_ok(f"{self.url}/health")


def _postgres_bin_dirs() -> list[str]:
    """Debian keeps the PostgreSQL server binaries in /usr/lib/postgresql/<version>/bin."""
    root = Path("/usr/lib/postgresql")
    if not root.is_dir():
        return []
    versions = sorted(
        (d for d in root.iterdir() if d.name.isdigit() and (d / "bin" / "postgres").exists()),
        key=lambda d: int(d.name),
        reverse=True,
    )
    return [str(d / "bin") for d in versions]


@dataclass
class PostgresServer(LocalServer):
    """PostgreSQL (Debian ``postgresql``): ``initdb`` into the data directory, then ``postgres``
    on 127.0.0.1 with its socket in the data directory, trust authentication for ``user``, and
    durability off (fsync, synchronous commit) because the data is throw-away.

    PostgreSQL refuses to run as root: started as root, the data directory is handed to the
    ``postgres`` system user and both programs run as that user (``setpriv``, which execs, so
    the process started is the postmaster itself).
    """

    name: str = "postgres"
    user: str = "zhizao"
    database: str = "zhizao"
    _run_as: tuple[int, int] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://{self.user}@{LOOPBACK}:{self.port}/{database}"

    def _binary(self, name: str) -> str:
        dirs = _postgres_bin_dirs()
        for d in dirs:
            if (Path(d) / name).exists():
                return str(Path(d) / name)
        return which(name)

    def _as_user(self) -> list[str]:
        if self._run_as is None:
            return []
        uid, gid = self._run_as
        return [
            which("setpriv", "/usr/bin"),
            f"--reuid={uid}",
            f"--regid={gid}",
            "--clear-groups",
            "--",
        ]

    def prepare(self) -> None:
        assert self.data_dir is not None
        d = self.data_dir
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise ServerMissing(
                    "PostgreSQL cannot run as root and there is no postgres user; "
                    "run `make setup` (Debian package postgresql)"
                ) from exc
            self._run_as = (entry.pw_uid, entry.pw_gid)
            os.chown(d, entry.pw_uid, entry.pw_gid)
        pgdata = d / "pgdata"
        if (pgdata / "PG_VERSION").exists():
            return  # a restart on the same data directory
        (d / "sock").mkdir(exist_ok=True)
        if self._run_as is not None:
            os.chown(d / "sock", *self._run_as)
        result = subprocess.run(
            [
                *self._as_user(),
                self._binary("initdb"),
                "-D",
                str(pgdata),
                "-U",
                self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            check=False,
            cwd=d,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb failed with code {result.returncode}: "
                f"{result.stderr.decode(errors='replace')[-2000:]}"
            )

    def command(self) -> list[str]:
        assert self.data_dir is not None
        return [
            *self._as_user(),
            self._binary("postgres"),
            "-D",
            str(self.data_dir / "pgdata"),
            "-h",
            LOOPBACK,
            "-p",
            str(self.port),
            "-k",
            str(self.data_dir / "sock"),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
            "-c",
            "log_min_messages=warning",
        ]

    def _connect(self, database: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(
            host=LOOPBACK,
            port=self.port,
            user=self.user,
            dbname=database,
            autocommit=True,
            connect_timeout=2,
        )

    def ready(self) -> bool:
        if not _port_open(self.port):
            return False
        try:
            with self._connect():
                return True
        except Exception:  # starting up: "the database system is starting up"
            return False

    def start(self, timeout_s: float = 30.0) -> PostgresServer:
        super().start(timeout_s)
        self.create_database(self.database, exist_ok=True)
        return self

    def create_database(self, name: str, *, exist_ok: bool = False) -> str:
        """Create an empty database ``name`` (letters, digits, underscores); its URL."""
        if not name.replace("_", "").isalnum() or not name.isascii():
            raise ValueError(f"database name {name!r}: use letters, digits and underscores")
        with self._connect() as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists is None:
                conn.execute(f'CREATE DATABASE "{name}"')
            elif not exist_ok:
                raise ValueError(f"database {name!r} exists already")
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        with self._connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self, *, kill: bool = False, timeout_s: float = 15.0) -> None:
        """Fast shutdown (SIGINT: open sessions are ended), or SIGKILL with ``kill``."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process_group(proc, signal.SIGKILL if kill else signal.SIGINT, timeout_s)
