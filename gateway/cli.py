"""``zhizao gateway run | status | browse``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    gw = subparsers.add_parser("gateway", help="edge gateway: OPC UA / MQTT -> outbox -> uplink")
    sub = gw.add_subparsers(dest="gateway_command", metavar="ACTION")
    run = sub.add_parser("run", help="run the gateway until SIGTERM")
    run.add_argument("-c", "--config", required=True, type=Path, help="gateway.yaml")
    run.set_defaults(handler=_run)

    status = sub.add_parser("status", help="health of the running gateway (from its status file)")
    status.add_argument("-c", "--config", required=True, type=Path)
    status.add_argument("--json", action="store_true", help="print the raw status document")
    status.set_defaults(handler=_status)

    browse = sub.add_parser("browse", help="list an OPC UA server's variables, propose a tag map")
    browse.add_argument("endpoint", help="opc.tcp://host:port")
    browse.add_argument("--depth", type=int, default=8, help="levels below Objects (default 8)")
    browse.add_argument("--pattern", default="*", help="glob on the browse path, e.g. '*Spindle*'")
    browse.add_argument(
        "--emit-config",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE",
        help="write a tags: section to FILE (no FILE: to standard output, the listing to stderr)",
    )
    browse.add_argument("--asset-prefix", default="", help="area/line to put before machines")
    browse.add_argument("--max-nodes", type=int, default=100_000)
    browse.add_argument("--username", default=None)
    browse.add_argument("--password", default=None)
    browse.add_argument(
        "--security",
        default="None",
        help="'None' or 'Basic256Sha256,SignAndEncrypt,<client cert>,<client key>'",
    )
    browse.add_argument(
        "--trust-dir", type=Path, default=None, help="trusted server certificates (as the gateway)"
    )
    browse.add_argument(
        "--server-fingerprint", default=None, help="pinned SHA-256 of the server certificate"
    )
    browse.add_argument(
        "--trust-once",
        action="store_true",
        help="connect to an untrusted server this time (its fingerprint is printed)",
    )
    browse.set_defaults(handler=_browse)
    gw.set_defaults(handler=lambda args: (gw.print_help(), 2)[1])


def _run(args: argparse.Namespace) -> int:
    from gateway.app import run_forever
    from gateway.config import load_gateway_config

    return run_forever(load_gateway_config(args.config))


def _status(args: argparse.Namespace) -> int:
    from gateway.config import load_gateway_config
    from gateway.health import read_status

    config = load_gateway_config(args.config)
    status = read_status(config.gateway.state_dir)
    if status is None:
        print(f"no status file in {config.gateway.state_dir}: the gateway has not run yet")
        return 1
    age_s = time.time() - float(status["written_at_s"])
    state = _run_state(status, age_s)
    if args.json:
        print(json.dumps({**status, "age_s": round(age_s, 1), "state": state}, indent=1))
    else:
        print(_format_status(status, age_s))
    return 0 if state == "running" else 1


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def _run_state(s: dict[str, Any], age_s: float) -> str:
    """``running``, ``stopped`` (the gateway wrote its last status at a clean stop), ``error``
    (a configuration error ended it), or ``not running`` (the process is gone or the status is
    old: killed, or the machine went down)."""
    state = str(s.get("state", "running"))
    if state != "running":
        return state
    if age_s >= 15 or not _pid_alive(int(s.get("pid", 0) or 0)):
        return "not running"
    return "running"


def _format_status(s: dict[str, Any], age_s: float) -> str:
    state = _run_state(s, age_s)
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(s["written_at_s"])))
    text = {
        "running": "running",
        "stopped": f"STOPPED at {since}",
        "error": f"STOPPED by an error at {since}",
        "not running": f"NOT RUNNING (process {s['pid']} gone or status {age_s:.0f}s old)",
    }.get(state, state.upper())
    if s.get("stop_reason"):
        text += f" ({s['stop_reason']})"
    lines = [f"gateway {s['gateway']}: {text}, pid {s['pid']}, metrics port {s['metrics_port']}"]
    for src in s["sources"]:
        last = src["last_sample_ns"] / 1e9
        last_txt = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last)) if last else "never"
        lines.append(
            f"  source {src['name']} ({src['kind']}): "
            f"{'connected' if src['connected'] else 'DISCONNECTED'}, "
            f"{src['samples']} samples, last {last_txt}, reconnects {src['reconnects']}"
            + (f", rejected {src['rejected']}" if src["rejected"] else "")
            + (
                f", last error: {src['last_error']}"
                if src["last_error"] and not src["connected"]
                else ""
            )
        )
    o = s["outbox"]
    lines.append(
        f"  outbox: {o['samples']} samples / {o['bytes']} bytes in {o['chunks']} chunks, oldest "
        f"{o['oldest_age_s']}s, dropped {o['dropped']}, refused {o['refused']}"
    )
    if o.get("storage_error"):
        lines.append(f"  outbox STORAGE ERROR: {o['storage_error']}")
    u = s["uplink"]
    lines.append(
        f"  uplink ({u['kind']}): {'connected' if u['connected'] else 'DISCONNECTED'}, "
        f"{u['samples_acked']} samples confirmed, {u['inflight_frames']} frames in flight, "
        f"{u.get('unconfirmed_samples', 0)} samples sent, not confirmed, "
        f"retries {u['retries']}"
        + (f", errors {u['publish_errors']}" if u["publish_errors"] else "")
        + (f", rejected {u['rejected']}" if u.get("rejected") else "")
        + (f", last error: {u['last_error']}" if u.get("last_error") and not u["connected"] else "")
    )
    for problem in s.get("problems", []):
        lines.append(f"  PROBLEM: {problem}")
    return "\n".join(lines)


def _browse(args: argparse.Namespace) -> int:
    from gateway.browse import BrowseOptions, browse_server, emit_tag_config, format_listing
    from zhizao.errors import ConfigError

    options = BrowseOptions(
        depth=args.depth,
        pattern=args.pattern,
        max_nodes=args.max_nodes,
        username=args.username,
        password=args.password,
        security=args.security,
        trust_dir=args.trust_dir,
        server_fingerprint_sha256=args.server_fingerprint,
        trust_once=args.trust_once,
    )
    result = asyncio.run(browse_server(args.endpoint, options))
    to_stdout = args.emit_config == "-"
    # with the tag map on standard output (to redirect into a file) the listing goes to stderr
    print(format_listing(result), file=sys.stderr if to_stdout else sys.stdout)
    if args.emit_config is not None:
        text = emit_tag_config(result, asset_prefix=args.asset_prefix)
        if to_stdout:
            sys.stdout.write(text)
        else:
            try:
                Path(args.emit_config).write_text(text, encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"cannot write the tag map to {args.emit_config}: {exc.strerror or exc}",
                    key="--emit-config",
                ) from exc
            print(
                f"# tag map with {len(result.proposals)} tags written to {args.emit_config}",
                file=sys.stderr,
            )
    return 0
