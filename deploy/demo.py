"""``make demo``: the whole pipeline on one machine, from a simulated factory to KPIs.

    simulator --OPC UA (Basic256Sha256)--> gateway --frames (MQTT QoS 1)--> Mosquitto --> ingest
    simulator --MQTT JSON / Sparkplug B--> gateway                                          |
    KPI engine (zhizao kpi run --once, every few seconds) <--InfluxQL-- InfluxDB <-----------+

This script is a composition root: it builds every component's configuration as a dict from
the simulator's site model, writes the YAML files into the demo directory and starts each
component with its own CLI (``python -m zhizao.cli ...``) as a subprocess, exactly as an
integrator would. ``tests/e2e/test_pipeline.py`` runs the same functions.

The simulator runs faster than real time, so the KPI engine cannot use the wall clock: the demo
plays its scheduler and runs ``zhizao kpi run --once --now <T>``, where T is the newest simulated
meter sample stored in InfluxDB (the simulated "now" as far as the data has arrived).

    .venv/bin/python deploy/demo.py [--speed 120] [--seed 7] [--duration-s 300] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the repository's packages come first
    sys.path.insert(0, str(ROOT))

from analytics import catalog  # noqa: E402
from analytics.components import Components  # noqa: E402
from ingest.influx import InfluxConfig, InfluxQLReader  # noqa: E402
from zhizao.errors import QueryError  # noqa: E402
from zhizao.influxql import ident, idents, literal, tag_equals  # noqa: E402
from zhizao.localstack import (  # noqa: E402
    InfluxServer,
    MosquittoServer,
    VictoriaMetricsServer,
    free_port,
    stop_process_group,
)
from zhizao.private import write_private  # noqa: E402
from zhizao.schema import (  # noqa: E402
    COMPONENT_FIELDS,
    COUNTER,
    ENERGY,
    LINE_TAG,
    MACHINE_TAG,
    RAW_MEASUREMENTS,
    SITE_TAG,
    kpi_machine_measurement,
)
from zhizao.site import SiteModel  # noqa: E402

__all__ = [
    "ComponentDied",
    "DemoOptions",
    "DemoStack",
    "KpiRunFailed",
    "gateway_config",
    "ingest_config",
    "kpi_config",
    "kpi_table",
    "main",
    "start_stack",
    "step",
]

DATABASE = "zhizao"
SPARKPLUG_HOST_ID = "zhizao-demo-gateway"  # the gateway's Sparkplug source is the primary host
ZHIZAO = (sys.executable, "-m", "zhizao.cli")  # the zhizao command of this interpreter
GATEWAY_ID = "gw-demo"
NS_PER_S = 1_000_000_000
# the simulator's own namespace (instances); the node ids are "<machine>.<browse names>" in it
NS_SIM = "urn:zhizao:simulator"


class ComponentDied(RuntimeError):
    """A component process exited: the demo cannot go on."""


class KpiRunFailed(RuntimeError):
    """One KPI run failed; the next one is tried anyway."""


@dataclass
class DemoOptions:
    """What ``make demo`` (and the end-to-end test) can choose."""

    data_dir: Path
    speed: float = 120.0
    seed: int = 7
    # simulated start, ISO 8601 with offset; None = today 05:30 in the site's time zone
    start: str | None = None
    hours: float = 24.0  # simulated hours the scenario covers (the simulator then holds still)
    kpi_interval_s: float = 5.0  # wall seconds between KPI runs
    kpi_lookback_s: float = 7200.0  # simulated seconds recomputed on every run (late data)
    windows: tuple[str, ...] = ("hour", "shift", "day")


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class DemoStack:
    """The running demo: servers, component processes and the files they use."""

    options: DemoOptions
    site: SiteModel
    start_ns: int
    influx: InfluxServer
    mosquitto: MosquittoServer
    metrics: VictoriaMetricsServer | None = None  # scrapes the services' /metrics
    paths: dict[str, Path] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    last_cutoff_ns: int | None = None
    kpi_runs: int = 0
    kpi_failures: list[str] = field(default_factory=list)

    # --- processes ---------------------------------------------------------------------------
    def spawn(self, name: str, *args: str) -> Proc:
        log_path = self.options.data_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [*ZHIZAO, *args],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the demo only; it stops the children
            )
        p = Proc(name, proc, log_path)
        self.procs.append(p)
        return p

    def check_alive(self) -> None:
        """Raise ComponentDied if a component exited (with the end of its log)."""
        for p in self.procs:
            code = p.proc.poll()
            if code is not None:
                raise ComponentDied(f"{p.name} exited with code {code}:\n{tail(p.log_path)}")

    def stop(self, drain_timeout_s: float = 10.0) -> None:
        """Stop the components along the data flow (the simulator first, then the gateway once
        its outbox is empty, then ingest), then the servers. Data still in the gateway's outbox
        or the broker would not be lost, only not yet in InfluxDB when the demo ends."""
        procs = {p.name: p for p in self.procs}
        for name in ("simulator", "gateway", "ingest"):
            p = procs.pop(name, None)
            if p is None:
                continue
            if name == "gateway" and p.proc.poll() is None:
                deadline = time.monotonic() + drain_timeout_s
                while time.monotonic() < deadline and (self.outbox_samples() or 0) > 0:
                    time.sleep(0.2)
            stop_process_group(
                p.proc, signal.SIGINT if name == "simulator" else signal.SIGTERM, 20.0
            )
        for p in procs.values():
            stop_process_group(p.proc, signal.SIGTERM, 20.0)
        self.procs.clear()
        if self.metrics is not None:
            self.metrics.stop()
        self.mosquitto.stop()
        self.influx.stop()

    def outbox_samples(self) -> int | None:
        status = self.gateway_status()
        return None if status is None else int(status["outbox"]["samples"])

    # --- InfluxDB ----------------------------------------------------------------------------
    @property
    def influx_config(self) -> InfluxConfig:
        return InfluxConfig.model_validate({"url": self.influx.url, "database": DATABASE})

    async def query(self, q: str) -> list[Any]:
        async with InfluxQLReader(self.influx_config) as reader:
            return list(await reader.query(q))

    async def sim_now_ns(self) -> int | None:
        """The newest simulated time stored: meters publish every simulated minute."""
        rows = await self.query(
            f"SELECT last({ident('energy_kwh')}) FROM {ident(ENERGY)} "
            f"WHERE {tag_equals({SITE_TAG: self.site.site})}"
        )
        if not rows or not len(rows[0].time_ns):
            return None
        return int(rows[0].time_ns[-1])

    async def point_counts(self) -> dict[str, int]:
        """Points per measurement (the count of its most frequent field)."""
        out: dict[str, int] = {}
        kpi = (kpi_machine_measurement(w) for w in self.options.windows)
        for meas in (*RAW_MEASUREMENTS, *kpi):
            rows = await self.query(f"SELECT count(*) FROM {ident(meas)}")
            counts = [float(v[0]) for s in rows for v in s.values.values() if len(v)]
            counts = [c for c in counts if not math.isnan(c)]
            if counts:
                out[meas] = int(max(counts))
        return out

    # --- KPI engine --------------------------------------------------------------------------
    def kpi_delay_s(self) -> float:
        # data from OPC UA and MQTT takes ~1-3 wall seconds through gateway, broker and ingest
        return max(120.0, 5.0 * self.options.speed)

    def run_kpi_once(self, now_ns: int) -> dict[str, Any]:
        """One run of ``zhizao kpi run --once --now``; the back-fill reaches back to the previous
        run's cut-off minus the look-back (the engine's own schedule, on the simulated clock)."""
        cutoff = now_ns - int(self.kpi_delay_s() * NS_PER_S)
        lo = self.start_ns
        if self.last_cutoff_ns is not None:
            lo = max(lo, self.last_cutoff_ns - int(self.options.kpi_lookback_s * NS_PER_S))
        if cutoff <= lo:
            return {"points_written": 0, "skipped": "no new data"}
        cfg = kpi_config(self, backfill_s=(cutoff - lo) / NS_PER_S)
        write_yaml(self.paths["kpi"], cfg, "KPI engine (zhizao kpi run); rewritten for every run")
        now_iso = datetime.fromtimestamp(now_ns / NS_PER_S, UTC).isoformat()
        res = subprocess.run(
            [*ZHIZAO, "kpi", "run", "-c", str(self.paths["kpi"]), "--once", "--now", now_iso],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        self.kpi_runs += 1
        if res.returncode != 0:
            self.kpi_failures.append(res.stderr[-2000:])
            raise KpiRunFailed(f"zhizao kpi run failed ({res.returncode}): {res.stderr[-2000:]}")
        self.last_cutoff_ns = cutoff
        report: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
        return report

    def rebuild_kpis(self, now_ns: int) -> None:
        """``zhizao kpi rebuild`` of the whole run from raw data: the scheduled engine folds in
        late data only within its look-back, and at a high speed a fault's backlog can arrive
        later than that (a rebuild is what an operator runs after such an outage)."""
        iso = [
            datetime.fromtimestamp(t / NS_PER_S, UTC).isoformat() for t in (self.start_ns, now_ns)
        ]
        res = subprocess.run(
            [*ZHIZAO, "kpi", "rebuild", "-c", str(self.paths["kpi"]), "--site", self.site.site,
             "--from", iso[0], "--to", iso[1], "--now", iso[1]],
            cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        if res.returncode != 0:
            raise KpiRunFailed(
                f"zhizao kpi rebuild failed ({res.returncode}): {res.stderr[-2000:]}"
            )

    # --- component metrics -------------------------------------------------------------------
    def gateway_status(self) -> dict[str, Any] | None:
        path = self.paths["gateway_state"] / "status.json"
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data

    def ingest_metrics(self) -> dict[str, float]:
        """Prometheus text from ingest's /metrics, summed over labels."""
        try:
            text = httpx.get(
                f"http://127.0.0.1:{self.ports['ingest_metrics']}/metrics", timeout=2
            ).text
        except httpx.HTTPError:
            return {}
        return prometheus_sums(text)


# --- configuration builders (plain dicts, written as YAML) -------------------------------------


def _strip_prefixes(opcua_path: str) -> str:
    """``CNC:CncInterface/CNC:Channel1/...`` -> ``CncInterface.Channel1...`` (the simulator's
    string node id below the machine)."""
    return ".".join(seg.split(":", 1)[-1] for seg in opcua_path.split("/"))


def opcua_tags(site: SiteModel, ns_index: int) -> list[dict[str, Any]]:
    """One tag per machine and site-model signal that has an OPC UA path: the gateway writes
    exactly the measurement and field names the site model (and so the KPI engine) expects."""
    tags: list[dict[str, Any]] = []
    for area in site.areas:
        for line in area.lines:
            for machine in line.machines:
                mtype = site.machine_types[machine.type]
                for sig in mtype.signals:
                    if not sig.opcua_path:
                        continue
                    tags.append(
                        {
                            "node": f"ns={ns_index};s={machine.id}.{_strip_prefixes(sig.opcua_path)}",
                            "asset": {"area": area.id, "line": line.id, "machine": machine.id},
                            "measurement": sig.measurement,
                            "signal": sig.name,
                            "type": str(sig.dtype),
                        }
                    )
    return tags


def _meter_asset(asset: str, meter_id: str) -> dict[str, str]:
    # meters are their own assets (machine tag = meter id), so the KPI engine finds each meter
    # by `meter_tag: machine`, also the plant meters that share a signal name at site level
    levels = [p for p in asset.strip("/").split("/") if p][:2]
    return {**dict(zip(("area", "line"), levels, strict=False)), "machine": meter_id}


def gateway_config(
    stack: DemoStack, opcua_endpoint: str, ns_index: int, trust_dir: Path
) -> dict[str, Any]:
    site = stack.site
    broker = {"host": "127.0.0.1", "port": stack.mosquitto.port, "reconnect_max_s": 2}
    topics: list[dict[str, Any]] = []
    spb_metrics: list[dict[str, Any]] = []
    spb_node: tuple[str, str, str] | None = None
    for meter in site.meters:
        if not meter.mqtt_topic:
            continue
        asset = _meter_asset(meter.asset, meter.id)
        target = {"asset": asset, "measurement": "energy", "signal": meter.signal, "type": "float"}
        if meter.mqtt_topic.startswith("spBv1.0/"):
            _, group, _, edge, device = meter.mqtt_topic.split("/")
            spb_node = (group, edge, device)
            spb_metrics.append(
                {**target, "edge_node": edge, "device": device, "metric": meter.signal}
            )
            continue
        topics.append({"filter": meter.mqtt_topic, "unit": meter.unit, **target})
        if meter.medium == "electricity":  # the simulator's power reading next to the counter
            power_topic = meter.mqtt_topic.rsplit("/", 1)[0] + "/power_kw"
            topics.append({**target, "filter": power_topic, "signal": "power_kw", "unit": "kW"})
    sources: list[dict[str, Any]] = [
        {
            "type": "opcua",
            "name": "sim-opcua",
            "endpoint": opcua_endpoint,
            "security": {
                "policy": "Basic256Sha256",
                "mode": "SignAndEncrypt",
                "trust_dir": str(trust_dir),
            },
            "publishing_interval_ms": 100,
            "queue_size": 1000,  # fast simulated time: never overwrite a change server-side
            "reconnect_min_s": 1,
            "reconnect_max_s": 2,
            "tags": opcua_tags(site, ns_index),
        },
        {
            "type": "mqtt",
            "name": "meters",
            "broker": {**broker, "client_id": f"{GATEWAY_ID}-meters"},
            "topics": [{**t, "qos": 1, "value_path": "value"} for t in topics],
        },
    ]
    if spb_node is not None:
        group, edge, device = spb_node
        sources.append(
            {
                "type": "sparkplug",
                "name": "utilities",
                "broker": {**broker, "client_id": f"{GATEWAY_ID}-spb"},
                "group_id": group,
                "host_id": SPARKPLUG_HOST_ID,  # the simulated node waits for this host's STATE
                "metrics": spb_metrics,
                "unmapped": "auto",  # power, pressure, running -> measurement "sparkplug"
                "unmapped_asset": {"area": "utilities", "machine": device},
            }
        )
    return {
        "gateway": {
            "id": GATEWAY_ID,
            "enterprise": site.enterprise,
            "site": site.site,
            "state_dir": str(stack.paths["gateway_state"]),
        },
        "sources": sources,
        "outbox": {"synchronous": "normal", "live_window_s": 0},
        "uplink": {
            "type": "mqtt",
            "broker": {**broker, "client_id": f"{GATEWAY_ID}-uplink"},
            "max_samples_per_frame": 10000,
        },
        "metrics": {"host": "127.0.0.1", "port": stack.ports["gateway_metrics"]},
    }


def ingest_config(stack: DemoStack) -> dict[str, Any]:
    return {
        "mqtt": {
            "host": "127.0.0.1",
            "port": stack.mosquitto.port,
            "client_id": "zhizao-ingest-demo",
            "group": "ingest",
            "topic_prefix": "zhizao/v1",
            "frames": True,
        },
        "influx": {"url": stack.influx.url, "database": DATABASE, "create_database": True},
        "batch": {"flush_age_ms": 200},
        # the simulated clock runs ahead of the wall clock: no future-skew limit in the demo
        "validation": {"max_future_s": 0, "max_past_s": 0},
        "quarantine": {"path": str(stack.paths["quarantine"]), "fsync": False},
        "health": {"host": "127.0.0.1", "port": stack.ports["ingest_metrics"]},
    }


def kpi_config(stack: DemoStack, *, backfill_s: float) -> dict[str, Any]:
    """kpi.yaml: the signal names are the site model's, which the gateway writes unchanged;
    meters are found by their id in the ``machine`` tag (see ``_meter_asset``)."""
    return {
        "sites": [str(stack.paths["site"])],
        "influx": {"url": stack.influx.url, "database": DATABASE},
        "windows": list(stack.options.windows),
        "schedule": {
            "interval_s": stack.options.kpi_interval_s,
            "lookback_s": stack.options.kpi_lookback_s,
            "backfill_s": max(backfill_s, 1.0),
            "delay_s": stack.kpi_delay_s(),
        },
        # the demo's gateway writes every meter (water too) to the "energy" measurement: read
        # them all from there (the default reads water from "water", and the plant's water would
        # be missing from the plant rows)
        "signals": {
            "meter_measurement": "energy",
            "meter_measurements": {},
            "meter_tag": "machine",
        },
        # the plant's intake meters; the compressor's meter sits behind em-main (a sub-meter)
        "energy": {"plant_meters": plant_meters(stack.site)},
    }


def plant_meters(site: SiteModel) -> list[str]:
    """The simulated factory's main (intake) meters: site level, purchased, named ``*-main``."""
    return [m.id for m in site.meters if not m.asset and m.purchased and m.id.endswith("-main")]


def write_yaml(path: Path, data: dict[str, Any], title: str) -> None:
    # 0600 whatever the umask: a generated configuration may carry passwords (issue 17 item 10)
    header = f"# {title}\n# generated by deploy/demo.py\n"
    write_private(path, header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


# --- start-up ------------------------------------------------------------------------------------


def default_start(site: SiteModel) -> str:
    """Today 05:30 in the site's time zone: the early shift starts at 06:00, so the gateway is
    connected (a few wall seconds) before production starts and the first shift is complete."""
    tz = ZoneInfo(site.timezone)
    now = datetime.now(tz)
    return datetime(now.year, now.month, now.day, 5, 30, tzinfo=tz).isoformat()


def _to_ns(iso: str) -> int:
    dt = datetime.fromisoformat(iso)
    if dt.tzinfo is None:
        raise ValueError(f"--start needs an offset, e.g. 2026-11-26T06:00:00+08:00: {iso!r}")
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def load_site_from_cli(data_dir: Path) -> tuple[SiteModel, Path]:
    """``zhizao sim site`` -> site.yaml (the same file the KPI engine reads)."""
    from zhizao.site import load_site

    path = data_dir / "site.yaml"
    res = subprocess.run(
        [*ZHIZAO, "sim", "site"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=120,
    )
    path.write_bytes(res.stdout)
    return load_site(path), path


async def _namespace_index(endpoint: str, uri: str, timeout_s: float) -> int:
    """The simulator's namespace index, read from the server (anonymous, no security: the
    namespace array is public information)."""
    from asyncua.client.client import Client

    logging.getLogger("asyncua").setLevel(logging.ERROR)  # session-timeout notices
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            async with Client(endpoint, timeout=10) as client:
                return int(await client.get_namespace_index(uri))
        except (OSError, TimeoutError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


def wait_for(what: str, cond: Any, timeout_s: float, stack: DemoStack | None = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        if stack is not None:
            stack.check_alive()
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def start_stack(options: DemoOptions, *, timeout_s: float = 90.0) -> DemoStack:
    """Servers, simulator, gateway and ingest, started and connected. The caller stops it."""
    d = options.data_dir
    d.mkdir(parents=True, exist_ok=True)
    site, site_path = load_site_from_cli(d)
    start = options.start or default_start(site)
    influx = InfluxServer(data_dir=d / "influxdb")
    mosquitto = MosquittoServer(data_dir=d / "mosquitto")
    stack = DemoStack(options, site, _to_ns(start), influx, mosquitto)
    stack.paths = {
        "site": site_path,
        "sim_state": d / "simulator",
        "truth": d / "simulator" / "truth.jsonl",
        "gateway_state": d / "gateway",
        "gateway": d / "gateway.yaml",
        "ingest": d / "ingest.yaml",
        "kpi": d / "kpi.yaml",
        "quarantine": d / "ingest" / "quarantine.jsonl",
    }
    stack.ports = {"gateway_metrics": free_port(), "ingest_metrics": free_port()}
    try:
        influx.start(timeout_s=timeout_s)
        httpx.post(f"{influx.url}/query", params={"q": f"CREATE DATABASE {DATABASE}"}, timeout=30)
        mosquitto.start(timeout_s=timeout_s)
        # ingest first: it is subscribed before the first frame arrives
        write_yaml(stack.paths["ingest"], ingest_config(stack), "ingest (zhizao ingest run)")
        stack.spawn("ingest", "ingest", "run", "-c", str(stack.paths["ingest"]))
        # the simulator
        opcua_port = free_port()
        endpoint = f"opc.tcp://127.0.0.1:{opcua_port}"
        stack.paths["sim_state"].mkdir(parents=True, exist_ok=True)
        stack.spawn(
            "simulator",
            "sim",
            "run",
            "--opcua-endpoint",
            endpoint,
            "--mqtt-url",
            mosquitto.url,
            "--sparkplug-host-id",
            SPARKPLUG_HOST_ID,
            "--speed",
            f"{options.speed:g}",
            "--seed",
            str(options.seed),
            "--start",
            start,
            "--hours",
            f"{options.hours:g}",
            "--state-dir",
            str(stack.paths["sim_state"]),
            "--truth-file",
            str(stack.paths["truth"]),
        )
        server_cert = stack.paths["sim_state"] / "pki" / "own" / "server_cert.der"
        wait_for("the simulator's OPC UA server", server_cert.exists, timeout_s, stack)
        ns_index = asyncio.run(_namespace_index(endpoint, NS_SIM, timeout_s))
        # trust in both directions by copying certificates, as an integrator would
        trust_dir = stack.paths["gateway_state"] / "trusted"
        trust_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(server_cert, trust_dir / "simulator.der")
        cfg = gateway_config(stack, endpoint, ns_index, trust_dir)
        write_yaml(stack.paths["gateway"], cfg, "edge gateway (zhizao gateway run)")
        stack.spawn("gateway", "gateway", "run", "-c", str(stack.paths["gateway"]))
        client_cert = stack.paths["gateway_state"] / "pki" / "client_cert.der"
        wait_for("the gateway's client certificate", client_cert.exists, timeout_s, stack)
        sim_trusted = stack.paths["sim_state"] / "pki" / "trusted"
        sim_trusted.mkdir(parents=True, exist_ok=True)
        shutil.copy(client_cert, sim_trusted / "gateway.der")
        return stack
    except BaseException:
        stack.stop()
        raise


def tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def prometheus_sums(text: str) -> dict[str, float]:
    """Metric name -> value summed over label sets (enough for a progress line)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        with contextlib.suppress(ValueError):
            out[name] = out.get(name, 0.0) + float(value)
    return out


# --- reading KPIs back ---------------------------------------------------------------------------

# the terminal view's KPIs, from the one KPI catalog (Q is PRI-weighted so A x E x Q = OEE)
VIEW_KPIS: dict[str, str] = {
    "availability": "availability",
    "effectiveness": "effectiveness",
    "quality": "quality_pri_weighted",
    "oee": "oee",
    "kwh_per_good": "kwh_per_good",
}
# what the view reads: the KPIs' components plus the delay split the progress line shows
COMPONENTS: tuple[str, ...] = tuple(
    c
    for c in COMPONENT_FIELDS
    if c in {*catalog.components_needed(VIEW_KPIS.values()), "adet_s", "adet_no_data_s"}
)


def ratios(c: dict[str, float]) -> dict[str, float]:
    """A, E, Q, OEE and kWh per good part from summed components (the catalog's sum over sum);
    NaN where a denominator is zero, and ``e_flag`` set where effectiveness is above the limit."""
    comps = Components.from_columns({k: [c.get(k, 0.0)] for k in COMPONENTS}, 1)
    kpis = catalog.evaluate(comps, VIEW_KPIS.values())
    out = {name: float(kpis[kid].value[0]) for name, kid in VIEW_KPIS.items()}
    flags = kpis["effectiveness"].flags_at(0)
    out["e_flag"] = 1.0 if any(f["code"] == "effectiveness_above_limit" for f in flags) else 0.0
    return out


async def kpi_rows(
    stack: DemoStack, window: str, time_ns: int | None = None
) -> list[dict[str, Any]]:
    """Components of every machine for one window (the newest, or the one starting at time_ns)."""
    meas = ident(kpi_machine_measurement(window))
    if time_ns is None:
        last = await stack.query(f"SELECT last({ident('pbt_s')}) FROM {meas}")
        if not last or not len(last[0].time_ns):
            return []
        time_ns = int(last[0].time_ns[-1])
    series = await stack.query(
        f"SELECT {idents(COMPONENTS)} FROM {meas} WHERE time = {int(time_ns)} "
        f"GROUP BY {idents((LINE_TAG, MACHINE_TAG))}"
    )
    rows = []
    for s in series:
        comp = {c: float(s.values[c][0]) if c in s.values else 0.0 for c in COMPONENTS}
        comp = {k: (0.0 if math.isnan(v) else v) for k, v in comp.items()}
        rows.append({"time_ns": time_ns, **s.tags, **comp})
    return rows


def kpi_table(rows: list[dict[str, Any]]) -> list[tuple[str, dict[str, float]]]:
    """Per machine, per line and for the factory: (label, ratios)."""
    out: list[tuple[str, dict[str, float]]] = []
    lines: dict[str, dict[str, float]] = {}
    total = dict.fromkeys(COMPONENTS, 0.0)
    for r in sorted(rows, key=lambda r: (r.get("line", ""), r.get("machine", ""))):
        out.append((f"  {r.get('machine', '?')}", ratios(r)))
        agg = lines.setdefault(r.get("line", "?"), dict.fromkeys(COMPONENTS, 0.0))
        for c in COMPONENTS:
            agg[c] += r.get(c, 0.0)
            total[c] += r.get(c, 0.0)
    out += [(f"line {name}", ratios(c)) for name, c in sorted(lines.items())]
    out.append(("factory", ratios(total)))
    return out


def _pct(v: float) -> str:
    return "   -  " if math.isnan(v) else f"{100 * v:5.1f}%"


def format_kpis(title: str, table: list[tuple[str, dict[str, float]]]) -> str:
    head = f"{title:<22} {'A':>6} {'E':>6} {'Q':>6} {'OEE':>6} {'kWh/good':>9}"
    lines = [head]
    for label, r in table:
        kwh = "     -" if math.isnan(r["kwh_per_good"]) else f"{r['kwh_per_good']:9.2f}"
        # effectiveness above the limit is shown, never capped, and marked (check the PRI)
        e_mark = "!" if r.get("e_flag") else " "
        lines.append(
            f"{label:<22} {_pct(r['availability'])} {_pct(r['effectiveness'])}{e_mark}"
            f"{_pct(r['quality'])} {_pct(r['oee'])} {kwh}"
        )
    lines.append(f"{'':<22} (! = effectiveness above the flag limit: check the ideal cycle time)")
    return "\n".join(lines)


def _local(ts_ns: int, site: SiteModel) -> str:
    return datetime.fromtimestamp(ts_ns / NS_PER_S, ZoneInfo(site.timezone)).strftime(
        "%Y-%m-%d %H:%M"
    )


async def progress(stack: DemoStack) -> str:
    counts = await stack.point_counts()
    sim_now = await stack.sim_now_ns()
    gw = stack.gateway_status() or {}
    ing = stack.ingest_metrics()
    out = [
        f"--- simulated time {_local(sim_now, stack.site) if sim_now else '(no data yet)'}"
        f" ({stack.site.timezone}), KPI runs {stack.kpi_runs}",
        "points: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v),
    ]
    if gw:
        o, u = gw.get("outbox", {}), gw.get("uplink", {})
        out.append(
            f"gateway: outbox {o.get('samples', '?')} samples (oldest {o.get('oldest_age_s', '?')} s),"
            f" {u.get('samples_acked', '?')} samples confirmed by the broker"
        )
    if ing:
        out.append(
            f"ingest: {ing.get('zhizao_ingest_samples_written_total', 0):.0f} samples written,"
            f" {ing.get('zhizao_ingest_samples_rejected_total', 0):.0f} quarantined,"
            f" {ing.get('zhizao_ingest_messages_total', 0):.0f} messages"
        )
    if "shift" in stack.options.windows:  # the newest shift, computed up to the cut-off
        rows = await kpi_rows(stack, "shift")
        if rows:
            when = _local(rows[0]["time_ns"], stack.site)[11:]
            out.append(format_kpis(f"shift from {when}", kpi_table(rows)))
    if "hour" in stack.options.windows and stack.last_cutoff_ns is not None:
        hour_ns = 3600 * NS_PER_S  # the last hour that ended before the cut-off
        start_ns = stack.last_cutoff_ns // hour_ns * hour_ns - hour_ns
        rows = await kpi_rows(stack, "hour", start_ns)
        if rows:
            when = _local(start_ns, stack.site)[11:]
            out.append(format_kpis(f"hour from {when}", kpi_table(rows)))
    return "\n".join(out)


def how_to_query(stack: DemoStack) -> str:
    site = stack.site.site
    oee = catalog.influxql_expression("oee")
    return f"""InfluxDB {stack.influx.url} database {DATABASE!r}; examples:
  curl -sG {stack.influx.url}/query --data-urlencode db={DATABASE} \\
    --data-urlencode "q=SHOW MEASUREMENTS"
  curl -sG {stack.influx.url}/query --data-urlencode db={DATABASE} \\
    --data-urlencode "q=SELECT {oee} AS oee FROM kpi_machine_shift WHERE site={literal(site)} GROUP BY line"
configs and logs: {stack.options.data_dir} (gateway.yaml, ingest.yaml, kpi.yaml, logs/)"""


MARKER = ".zhizao-demo"


def wipe_demo_dir(path: Path) -> None:
    """Empty ``path`` for a new demo, but only a directory a demo made (it holds ``MARKER``):
    a mistyped --data-dir never deletes anything else."""
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).exists():
            raise FileExistsError(
                f"{path} is not empty and was not made by the demo; not touching it"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("made by deploy/demo.py; deleted by the next demo run\n")


def step(stack: DemoStack) -> int | None:
    """One round of the demo loop: check the components, run the KPI engine up to the newest
    simulated time stored. Returns that time (None before the first data)."""
    stack.check_alive()
    now = asyncio.run(stack.sim_now_ns())
    if now is not None:
        stack.run_kpi_once(now)
    return now


# --- the API, the summary and main ---------------------------------------------------------------


def api_config(stack: DemoStack, port: int) -> dict[str, Any]:
    return {
        "environment": "development",  # a private demo database; production refuses less
        "host": "127.0.0.1",
        "port": port,
        "database_url": f"sqlite:///{stack.options.data_dir / 'api.sqlite'}",
        "influx": {"url": stack.influx.url, "database": DATABASE},
        "kpi_config": str(stack.paths["kpi"]),
        "log_level": "WARNING",
    }


def start_api(stack: DemoStack, port: int = 0, timeout_s: float = 60.0) -> str:
    """Master data, an admin token and ``zhizao api run`` on loopback. Returns the token."""
    port = port or free_port()
    stack.ports["api"] = port
    stack.paths["api"] = stack.options.data_dir / "api.yaml"
    # the API reads the engine's kpi.yaml (signal names, thresholds): written before it starts
    write_yaml(stack.paths["kpi"], kpi_config(stack, backfill_s=1.0), "KPI engine")
    cfg = api_config(stack, port)
    write_yaml(stack.paths["api"], cfg, "API (zhizao api run)")
    db = ["--db", cfg["database_url"]]
    for args in (["import-site", str(stack.paths["site"])],):
        subprocess.run([*ZHIZAO, "api", *args, *db], cwd=ROOT, check=True, capture_output=True)
    res = subprocess.run(
        [
            *ZHIZAO,
            "api",
            "token",
            "create",
            "--name",
            "demo",
            "--role",
            "admin",
            "--days",
            "1",
            *db,
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    token = res.stdout.strip().splitlines()[-1]
    write_private(stack.options.data_dir / "api-token", token + "\n")  # 0600 even if it existed
    stack.spawn("api", "api", "run", "-c", str(stack.paths["api"]))
    wait_for("the API", lambda: _api_up(stack), timeout_s, stack)
    return token


SCRAPE_INTERVAL = "5s"


def scrape_config(stack: DemoStack) -> dict[str, Any]:
    """VictoriaMetrics' scrape targets: the gateway's and ingest's /metrics, and the API's (which
    needs a token: the demo's, read from its 0600 file, never written into this file)."""

    def job(name: str, port: int, **extra: Any) -> dict[str, Any]:
        return {"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}], **extra}

    jobs = [
        job("gateway", stack.ports["gateway_metrics"]),
        job("ingest", stack.ports["ingest_metrics"]),
    ]
    if "api" in stack.ports:
        token_file = str(stack.options.data_dir / "api-token")
        jobs.append(job("api", stack.ports["api"], bearer_token_file=token_file))
    return {"global": {"scrape_interval": SCRAPE_INTERVAL}, "scrape_configs": jobs}


def start_metrics(stack: DemoStack, timeout_s: float = 60.0) -> str:
    """VictoriaMetrics on loopback scraping the services (the health dashboard's datasource)."""
    d = stack.options.data_dir / "victoriametrics"
    d.mkdir(parents=True, exist_ok=True)
    path = d / "scrape.yaml"
    write_yaml(path, scrape_config(stack), "VictoriaMetrics scrape targets")
    stack.metrics = VictoriaMetricsServer(data_dir=d, scrape_config=path)
    stack.metrics.start(timeout_s=timeout_s)
    return stack.metrics.url


def _api_up(stack: DemoStack) -> bool:
    for path in ("/api/v1/healthz", "/healthz"):
        try:
            if httpx.get(f"{api_url(stack)}{path}", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
    return False


def api_url(stack: DemoStack) -> str:
    return f"http://127.0.0.1:{stack.ports['api']}"


def api_oee(
    stack: DemoStack, token: str, level: str, from_ns: int, to_ns: int
) -> dict[str, float | None]:
    """OEE per asset (machine or line id) over [from, to) from the running API (HTTP)."""
    iso = [datetime.fromtimestamp(t / NS_PER_S, UTC).isoformat() for t in (from_ns, to_ns)]
    r = httpx.get(
        f"{api_url(stack)}/api/v1/sites/{stack.site.site}/kpis/history",
        params={"level": level, "grouping": "range", "from": iso[0], "to": iso[1], "kpi": "oee"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    r.raise_for_status()
    out: dict[str, float | None] = {}
    for row in r.json()["rows"]:
        out[row["asset"][level]] = row["kpis"]["oee"]["value"]
    return out


def completed_hours(stack: DemoStack, first_data_ns: int) -> tuple[int, int] | None:
    """[from, to): whole hours from 10 simulated minutes after the first meter reading (the OPC
    UA session comes up a few wall seconds after the meters), up to the KPI cut-off."""
    hour = 3600 * NS_PER_S
    if stack.last_cutoff_ns is None:
        return None
    lo = -(-(max(first_data_ns, stack.start_ns) + 600 * NS_PER_S) // hour) * hour
    hi = stack.last_cutoff_ns // hour * hour
    return (lo, hi) if hi > lo else None


def oee_error_pp(stack: DemoStack, token: str, first_data_ns: int) -> float | None:
    """The largest |API OEE - truth OEE| in percentage points over the completed hours, per
    machine and per line (sum over sum on both sides)."""
    from simulator.truth import iso22400_elements, read_truth

    span = completed_hours(stack, first_data_ns)
    if span is None:
        return None
    truth = iso22400_elements(read_truth(stack.paths["truth"]), span[0], span[1])
    errs: list[float] = []
    machines = api_oee(stack, token, "machine", *span)
    for m, t in truth.items():
        got = machines.get(m)
        if t["pbt_s"] > 0 and got is not None:
            errs.append(abs(100 * got - 100 * t["pri_gq_s"] / t["pbt_s"]))
        elif t["pbt_s"] > 0:
            errs.append(math.inf)  # the API has no OEE where the truth has one
    lines = api_oee(stack, token, "line", *span)
    for line in {t["line"] for t in truth.values()}:
        ts = [t for t in truth.values() if t["line"] == line]
        pbt = sum(t["pbt_s"] for t in ts)
        got = lines.get(line)
        if pbt > 0:
            want = 100 * sum(t["pri_gq_s"] for t in ts) / pbt
            errs.append(math.inf if got is None else abs(100 * got - want))
    return round(max(errs), 4) if errs else None


def drain(stack: DemoStack, timeout_s: float = 60.0) -> None:
    """Stop the simulator, then wait until the gateway's outbox is empty and ingest stored
    everything the gateway collected."""
    procs = {p.name: p for p in stack.procs}
    sim = procs.get("simulator")
    if sim is not None:
        stop_process_group(sim.proc, signal.SIGINT, 20.0)
        stack.procs.remove(sim)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        gw = stack.gateway_status() or {}
        written = stack.ingest_metrics().get("zhizao_ingest_samples_written_total", 0.0)
        appended = gw.get("outbox", {}).get("appended", 0)
        if gw.get("outbox", {}).get("samples", 1) == 0 and written >= appended:
            return
        time.sleep(0.3)


def summary(
    stack: DemoStack, token: str, t0: float, first_kpi_s: float | None, first_data_ns: int | None
) -> dict[str, Any]:
    gw = stack.gateway_status() or {}
    emitted = int(gw.get("outbox", {}).get("appended", 0))
    stored = int(stack.ingest_metrics().get("zhizao_ingest_samples_written_total", 0.0))
    err = None
    if first_data_ns is not None:
        try:
            err = oee_error_pp(stack, token, first_data_ns)
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            print(f"zhizao demo: OEE comparison failed: {exc}", file=sys.stderr)
    return {
        "name": "demo",
        "samples_emitted": emitted,
        "samples_stored": stored,
        "samples_lost": max(0, emitted - stored),
        "oee_abs_error_pp": err,
        "seconds_to_first_kpi": None if first_kpi_s is None else round(first_kpi_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    from zhizao.demo_cli import add_demo_arguments

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_demo_arguments(p, default_data_dir=ROOT / "var" / "demo")
    return run(p.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    try:
        wipe_demo_dir(args.data_dir)  # every demo starts from nothing
    except FileExistsError as exc:
        print(f"zhizao demo: {exc}", file=sys.stderr)
        return 2
    hours = 24.0 * 7
    if args.duration_s:
        hours = min(hours, args.duration_s * args.speed / 3600 + 1)
    options = DemoOptions(
        data_dir=args.data_dir,
        speed=args.speed,
        seed=args.seed,
        start=args.start,
        hours=hours,
        kpi_interval_s=args.interval_s,
    )

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # Ctrl-C and `kill` both end in the clean shutdown below (also when started in background)
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    print(
        "zhizao demo: starting InfluxDB, Mosquitto, simulator, gateway, ingest, KPI engine and "
        f"API in {args.data_dir}",
        flush=True,
    )
    try:
        stack = start_stack(options)  # stops what it started if interrupted or failing
    except KeyboardInterrupt:
        return 130
    except (ComponentDied, TimeoutError, RuntimeError, OSError) as exc:
        print(f"zhizao demo: start-up failed: {exc}\nlogs: {args.data_dir}/logs", file=sys.stderr)
        return 1
    rc = 0
    token = ""
    first_kpi_s: float | None = None
    first_data_ns: int | None = None
    finished = False  # ended by --duration (then the summary line), not by Ctrl-C
    try:
        token = start_api(stack, args.api_port)
        metrics_url = start_metrics(stack)
        base = api_url(stack)
        header = "\n".join(
            [
                how_to_query(stack),
                f"API     {base}/docs   token (admin, 1 day; also in "
                f"{args.data_dir}/api-token):\n  {token}",
                f'  curl -H "Authorization: Bearer $TOKEN" {base}/api/v1/sites/'
                f"{stack.site.site}/kpis/history?level=line&grouping=hour&from=...&to=...",
                f"portal  {base}/portal/",
                f"MQTT    {stack.mosquitto.url} (gateway frames: zhizao/v1/#)",
                f"metrics {metrics_url} (VictoriaMetrics scraping the gateway, ingest and the "
                f"API every {SCRAPE_INTERVAL}; PromQL: {metrics_url}/api/v1/query?query=up)",
                "Grafana: point a Grafana at the provisioning in dashboards/ (see "
                "dashboards/README.md): ZHIZAO_INFLUXDB_URL and ZHIZAO_PROMETHEUS_URL are the "
                "InfluxDB and metrics addresses above, ZHIZAO_API_URL the API's",
            ]
        )
        print(header, flush=True)
        redraw = sys.stdout.isatty() and not args.plain
        deadline = t0 + args.duration_s if args.duration_s else math.inf
        while time.monotonic() < deadline:
            tick = time.monotonic()
            try:
                now = step(stack)
                if now is not None and first_data_ns is None:
                    first_data_ns = asyncio.run(_first_data_ns(stack))
                view = asyncio.run(progress(stack))
                if first_kpi_s is None and "OEE" in view:
                    first_kpi_s = time.monotonic() - t0
                if redraw:  # in place: home, clear, the header and the view
                    sys.stdout.write("\x1b[H\x1b[J" + header + "\n" + view + "\n")
                    sys.stdout.flush()
                else:
                    print(view, flush=True)
            except (KpiRunFailed, subprocess.TimeoutExpired, QueryError, httpx.HTTPError) as exc:
                print(f"(retried next time) {exc}", file=sys.stderr)
            time.sleep(
                max(
                    0.0,
                    min(args.interval_s - (time.monotonic() - tick), deadline - time.monotonic()),
                )
            )
        finished = True
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    except (ComponentDied, subprocess.CalledProcessError, TimeoutError, RuntimeError) as exc:
        print(f"zhizao demo: {exc}", file=sys.stderr)
        rc = 1
    result: dict[str, Any] | None = None
    try:
        if finished and rc == 0:
            # everything the gateway collected reaches InfluxDB, then one last KPI run
            drain(stack)
            with contextlib.suppress(KpiRunFailed, QueryError, httpx.HTTPError):
                now = asyncio.run(stack.sim_now_ns())
                if now is not None:
                    stack.run_kpi_once(now)
            result = summary(stack, token, t0, first_kpi_s, first_data_ns)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    finally:
        stack.stop()  # simulator, gateway, ingest, the API, then Mosquitto and InfluxDB
        if args.keep:
            print(
                f"data kept in {args.data_dir}; InfluxDB again with:\n"
                f"  influxd run -config {args.data_dir}/influxdb/influxdb.conf"
            )
        elif (args.data_dir / MARKER).exists():
            shutil.rmtree(args.data_dir, ignore_errors=True)
            print(f"removed {args.data_dir} (use --keep to keep the data)")
    if result is not None:
        print(json.dumps(result), flush=True)  # the last line
    return rc


async def _first_data_ns(stack: DemoStack) -> int | None:
    """From when every source has data: the later of the first meter reading and each
    machine's first part count (the OPC UA session can start after the meters; a part counter
    changes every cycle, so its first sample is close to the session's start, while a slow
    counter's first sample carries the old time of its last change)."""
    site = tag_equals({SITE_TAG: stack.site.site})
    rows = await stack.query(
        f"SELECT first({ident('energy_kwh')}) FROM {ident(ENERGY)} WHERE {site}"
    )
    if not rows or not len(rows[0].time_ns):
        return None
    firsts = [int(rows[0].time_ns[0])]
    counters = await stack.query(
        f"SELECT first({ident('part_count')}) FROM {ident(COUNTER)} WHERE {site} "
        f"GROUP BY {ident(MACHINE_TAG)}"
    )
    firsts += [int(s.time_ns[0]) for s in counters if len(s.time_ns)]
    return max(firsts)


if __name__ == "__main__":
    raise SystemExit(main())
