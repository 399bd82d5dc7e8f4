"""``zhizao kpi``: ``run`` (the scheduled engine), ``rebuild`` (a range from raw data on purpose)
and ``compute`` (offline, from a CSV export)."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from analytics import catalog
from analytics.calendar import utc_ns, zone
from analytics.compute import SiteComputer
from analytics.config import KpiConfig, load_kpi_config
from analytics.engine import KpiEngine
from analytics.export import export_site
from analytics.offline import load_csv
from zhizao.config import parse_model
from zhizao.errors import ConfigError
from zhizao.probe import ProbeServer
from zhizao.service import run_until_signalled
from zhizao.site import load_site

__all__ = ["register"]


def register(subparsers: Any) -> None:
    kpi = subparsers.add_parser("kpi", help="KPI engine and offline KPI computation")
    sub = kpi.add_subparsers(dest="kpi_command", metavar="SUBCOMMAND")

    run = sub.add_parser(
        "run", help="compute KPI components on a schedule and write them to InfluxDB"
    )
    run.add_argument("-c", "--config", required=True, help="kpi.yaml")
    run.add_argument("--once", action="store_true", help="one run, then exit")
    run.add_argument("--site", action="append", default=[], help="only this site (repeatable)")
    run.add_argument("--now", help="pretend it is this time (ISO 8601), with --once")
    run.set_defaults(handler=_run)

    rb = sub.add_parser(
        "rebuild",
        help="recompute a range of a site from raw data (after a site-model change, e.g. a "
        "corrected ideal cycle time)",
    )
    rb.add_argument("-c", "--config", required=True, help="kpi.yaml")
    rb.add_argument("--site", required=True, help="site id (as in its site model)")
    rb.add_argument(
        "--from", dest="start", required=True, help="ISO 8601 (naive = site local time)"
    )
    rb.add_argument("--to", dest="end", required=True, help="ISO 8601 (naive = site local time)")
    rb.add_argument("--now", help="pretend it is this time (ISO 8601): nothing after now - delay_s")
    rb.set_defaults(handler=_rebuild)

    comp = sub.add_parser(
        "compute", help="KPIs from a CSV export (timestamp, asset, signal, value)"
    )
    comp.add_argument("--samples", required=True, help="CSV file")
    comp.add_argument("--site", required=True, help="site model YAML")
    comp.add_argument(
        "--from", dest="start", required=True, help="ISO 8601 (naive = site local time)"
    )
    comp.add_argument("--to", dest="end", required=True, help="ISO 8601 (naive = site local time)")
    comp.add_argument("-c", "--config", help="kpi.yaml for signal names and thresholds (optional)")
    comp.add_argument("--window", default="range", choices=["range", "hour", "shift", "day"],
                      help="one figure for the whole range (default) or per window")  # fmt: skip
    comp.add_argument("--json", action="store_true", help="full JSON report")
    comp.set_defaults(handler=_compute)
    kpi.set_defaults(handler=lambda _a: (kpi.print_help(), 2)[1])

    exp = subparsers.add_parser(
        "export", help="raw samples of a range from InfluxDB, as the CSV `kpi compute` reads"
    )
    exp.add_argument("--site", required=True, help="site model YAML")
    exp.add_argument("-c", "--config", required=True, help="kpi.yaml (its influx section)")
    exp.add_argument("--from", dest="start", required=True, help="ISO 8601 (naive = site local)")
    exp.add_argument("--to", dest="end", required=True, help="ISO 8601 (naive = site local)")
    exp.add_argument("--out", help="CSV file to write (default: standard output)")
    exp.set_defaults(handler=_export)


def _run(args: argparse.Namespace) -> int:
    cfg = load_kpi_config(args.config)
    engine = KpiEngine(cfg, sites=args.site or None)
    if args.once:
        now = None
        if args.now:
            now = utc_ns(args.now, zone(engine.computers[0].site.timezone))
        rep = asyncio.run(engine.run_once(now))
        print(json.dumps({"points_written": rep.points_written, "machine_windows": rep.machine_windows,
                          "segment_points_written": rep.segment_points_written,
                          "points_read": rep.points_read, "segments": rep.segments,
                          "from_ns": rep.start_ns, "to_ns": rep.end_ns, "notes": rep.notes}))  # fmt: skip
        return 0

    health = cfg.health
    server = None
    if health.port:  # a taken port is a ConfigError naming it (exit 2, one sentence)
        metrics = engine.metrics
        server = ProbeServer(
            health.host,
            health.port,
            metrics=lambda: (generate_latest(metrics.registry), CONTENT_TYPE_LATEST),
            health=metrics.health,
            service="KPI engine",
            port_key="health.port",
        ).start()
    return run_until_signalled(engine.run_forever, probe=server)


def _rebuild(args: argparse.Namespace) -> int:
    cfg = load_kpi_config(args.config)
    known = {m.site: m for m in (load_site(p) for p in cfg.sites)}
    if args.site not in known:
        print(f"zhizao: --site {args.site!r} is not in {args.config} (sites: {sorted(known)})",
              file=sys.stderr)  # fmt: skip
        return 2
    engine = KpiEngine(cfg, sites=[args.site])
    tz = zone(known[args.site].timezone)
    try:
        start, end = utc_ns(args.start, tz), utc_ns(args.end, tz)
        now = utc_ns(args.now, tz) if args.now else None
    except ValueError as exc:
        print(f"zhizao: --from, --to and --now must be ISO 8601 times ({exc})", file=sys.stderr)
        return 2
    if end <= start:
        print("zhizao: --to must be after --from", file=sys.stderr)
        return 2
    rep = asyncio.run(engine.rebuild(args.site, start, end, now_ns=now, progress=lambda m: print(f"# {m}", file=sys.stderr, flush=True)))  # fmt: skip
    print(json.dumps({"site": args.site, "from_ns": rep.start_ns, "to_ns": rep.end_ns,
                      "segments": rep.segments, "points_read": rep.points_read,
                      "points_written": rep.points_written,
                      "segment_points_written": rep.segment_points_written,
                      "seconds": round(rep.duration_s, 3), "notes": rep.notes}))  # fmt: skip
    return 0


def _export(args: argparse.Namespace) -> int:
    site = load_site(args.site)
    cfg = load_kpi_config(args.config)
    if cfg.influx is None:
        print(f"zhizao: {args.config} has no influx section to export from", file=sys.stderr)
        return 2
    start, end = _range(args, zone(site.timezone))
    if args.out:
        with Path(args.out).open("w", newline="", encoding="utf-8") as fh:
            n = asyncio.run(export_site(cfg, site, start, end, fh))
        print(f"zhizao: {n} samples written to {args.out}", file=sys.stderr)
    else:
        asyncio.run(export_site(cfg, site, start, end, sys.stdout))
    return 0


def _range(args: argparse.Namespace, tz: Any) -> tuple[int, int]:
    """``--from`` / ``--to`` as UTC ns; a wrong one is a user error naming the option."""
    out: list[int] = []
    for option, text in (("--from", args.start), ("--to", args.end)):
        try:
            out.append(utc_ns(text, tz))
        except ValueError as exc:
            raise ConfigError(
                f"{option} {text!r} is not an ISO 8601 time",
                key=option,
                expected="e.g. 2026-03-02T00:00 (site time) or 2026-03-02T00:00+08:00",
            ) from exc
    if out[1] <= out[0]:
        raise ConfigError(f"--to {args.end!r} must be after --from {args.start!r}", key="--to")
    return out[0], out[1]


def _finite(obj: Any) -> Any:
    """JSON without NaN or Infinity: a non-finite number is null (its KPI carries the flag)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _local(ts_ns: object, tz: Any) -> str:
    return datetime.fromtimestamp(int(ts_ns) / 1e9, tz).isoformat(timespec="minutes")  # type: ignore[call-overload]


def _fmt(v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{float(v):.4f}" if isinstance(v, float | int) else str(v)


def _compute(args: argparse.Namespace) -> int:
    site = load_site(args.site)
    cfg = (
        load_kpi_config(args.config)
        if args.config
        else parse_model(KpiConfig, {"sites": [args.site]})
    )
    tz = zone(site.timezone)
    start, end = _range(args, tz)
    data, notes = load_csv(Path(args.samples), site, cfg)
    computer = SiteComputer(site, cfg)
    # the export may go on after --to: stops cut by the range end are classified by their length
    known = [int(sig.ts_ns.max()) for ms in data.machines.values() for sig in ms.states.values()
             if len(sig.ts_ns)]  # fmt: skip
    result = computer.compute(data, args.window, start, end, clip_start=True,
                              known_until_ns=max(known, default=None))  # fmt: skip
    report = computer.report(result)
    report["notes"] = [*notes, *result.notes]
    if args.json:
        print(json.dumps(_finite(report), indent=2, default=str, allow_nan=False))
        return 0
    keys = ("oee", "availability", "effectiveness", "quality", "util_in_cycle_pbt",
            "util_cutting_pbt", "kwh_per_good")  # fmt: skip
    head = ["asset", "window", "start", "end"] + [catalog.get(k).label for k in keys]
    print("\t".join(head))
    machines = report["machines"]
    assert isinstance(machines, list)
    for row in machines:
        k = row["kpis"]
        print("\t".join([row["machine"], str(row["tags"].get("shift", row["tags"].get("date", ""))),
                         _local(row["window_start_ns"], tz), _local(row["window_end_ns"], tz)] +
                        [_fmt(k[x]["value"]) for x in keys]))  # fmt: skip
    rollups = report["rollups"]
    assert isinstance(rollups, dict)
    for level in ("line", "factory"):
        for row in rollups.get(level, []):
            k = row["kpis"]
            print("\t".join([f"{level}:{row['group']}", "", _local(row["window_start_ns"], tz), ""] +
                             [_fmt(k[x]["value"]) for x in keys]))  # fmt: skip
    for note in report["notes"]:  # type: ignore[attr-defined]
        print(f"# {note}", file=sys.stderr)
    print("# labels: " + "; ".join(f"{x}={machines[0]['kpis'][x]['label']}" for x in keys) if machines else "",
          file=sys.stderr)  # fmt: skip
    return 0
