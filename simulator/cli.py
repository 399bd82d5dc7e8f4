"""``zhizao sim``: run the demonstration factory, print its site model, print its ground truth."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from simulator.config import load_sim_config
from zhizao.errors import ConfigError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    sim = subparsers.add_parser("sim", help="the demonstration-factory simulator")
    sub = sim.add_subparsers(dest="sim_command", metavar="SIM_COMMAND")

    run = sub.add_parser("run", help="serve the factory over OPC UA (and MQTT)")
    _common(run)
    run.add_argument(
        "--opcua-endpoint",
        default="opc.tcp://127.0.0.1:4840",
        help="OPC UA endpoint of the first shard; shard i listens on port + i",
    )
    run.add_argument(
        "--mqtt-url", default=None, help="mqtt://[user:password@]127.0.0.1:1883 (omit: no MQTT)"
    )
    run.add_argument(
        "--sparkplug-host-id",
        default=None,
        help="the Sparkplug primary host: the edge node is born and sends data only while this "
        "host's STATE is online, and holds its data meanwhile (one process, not with --shards)",
    )
    run.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    run.add_argument("--state-dir", default=".zhizao-sim", help="server certificate and trust list")
    run.add_argument("--shards", type=int, default=1, help="OPC UA server processes")
    run.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="NAME:PASSWORD",
        help="require username/password (repeatable); anonymous sessions are then refused",
    )
    run.add_argument(
        "--trust-any-client",
        action="store_true",
        help="accept every client certificate (default: only those in <state-dir>/pki/trusted)",
    )
    run.set_defaults(handler=_run)

    site = sub.add_parser("site", help="print the simulated factory in the site-model format")
    site.add_argument("--config", default=None, help="simulator config YAML (default factory)")
    site.add_argument("--format", choices=("yaml", "json"), default="yaml")
    site.set_defaults(handler=_site)

    truth = sub.add_parser("truth", help="print ISO 22400 elements and energy from the truth")
    _common(truth)
    truth.description = (
        "ISO 22400 elements and energy per machine for [--from, --to). Read from --truth-file, "
        "or rebuilt from --config/--seed/--start/--hours: these must be the ones the run used "
        "(without --start the scenario is rebuilt from --from, which matches a run started then)."
    )
    truth.add_argument("--from", dest="from_", required=True, help="ISO 8601 with offset")
    truth.add_argument("--to", required=True, help="ISO 8601 with offset")
    truth.set_defaults(handler=_truth)
    sim.set_defaults(handler=lambda args: (sim.print_help(), 2)[1])


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="simulator config YAML (default factory)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--start", default=None, help="simulated start, ISO 8601 (default: today 00:00 local)"
    )
    p.add_argument("--hours", type=float, default=24.0 * 7, help="simulated hours to generate")
    p.add_argument("--truth-file", default=None, help="ground truth JSON Lines (written by run)")


def _users(specs: list[str]) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, password = spec.partition(":")
        if not sep or not name:
            raise ConfigError(f"bad --user {spec!r}", key="--user", expected="NAME:PASSWORD")
        out[name] = password
    return out or None


def _run(args: argparse.Namespace) -> int:
    from urllib.parse import urlparse

    from simulator.runner import FactorySimulator, ShardedSimulator

    config = load_sim_config(args.config)
    users = _users(args.user)
    endpoint = urlparse(args.opcua_endpoint)
    if endpoint.scheme != "opc.tcp" or not endpoint.port:
        raise ConfigError(
            f"bad OPC UA endpoint {args.opcua_endpoint!r}",
            key="--opcua-endpoint",
            expected="opc.tcp://127.0.0.1:PORT",
        )
    if args.shards > 1:
        ports = [endpoint.port + i for i in range(args.shards)]
        with ShardedSimulator(
            config,
            args.seed,
            ports,
            start=args.start,
            hours=args.hours,
            speed=args.speed,
            mqtt_url=args.mqtt_url,
            state_dir=Path(args.state_dir),
            users=users,
            trust_any_client=args.trust_any_client,
            start_delay_s=2.0,
        ) as sharded:
            if args.truth_file:
                from simulator.scenario import build_scenario
                from simulator.truth import write_truth

                write_truth(
                    build_scenario(config, args.seed, *_range(config, args)), args.truth_file
                )
            print(
                f"zhizao sim: {args.shards} shards on ports {ports[0]}..{ports[-1]}",
                file=sys.stderr,
            )
            try:
                for proc in sharded.procs:
                    proc.join()
            except KeyboardInterrupt:
                pass
        return 0

    async def main() -> None:
        async with FactorySimulator(
            config,
            seed=args.seed,
            start=args.start,
            hours=args.hours,
            speed=args.speed,
            opcua_endpoint=args.opcua_endpoint,
            mqtt_url=args.mqtt_url,
            sparkplug_host_id=args.sparkplug_host_id,
            state_dir=args.state_dir,
            truth_file=args.truth_file,
            users=users,
            trust_any_client=args.trust_any_client,
        ) as sim:
            print(
                f"zhizao sim: {len(sim.scenario.machines)} machines on {args.opcua_endpoint}"
                + (f", meters on {args.mqtt_url}" if args.mqtt_url else "")
                + f", speed {args.speed:g}",
                file=sys.stderr,
            )
            await sim.serve_forever()

    asyncio.run(main())
    return 0


def _range(config: Any, args: argparse.Namespace) -> tuple[int, int]:
    from simulator.runner import default_start_ns
    from simulator.scenario import to_ns

    start_ns = to_ns(args.start) if args.start else default_start_ns(config)
    return start_ns, start_ns + int(args.hours * 3600) * 1_000_000_000


def _site(args: argparse.Namespace) -> int:
    site = load_sim_config(args.config).build_site()
    data = site.model_dump(mode="json", exclude_none=True)
    if args.format == "json":
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), end="")
    return 0


def _truth(args: argparse.Namespace) -> int:
    from simulator.scenario import build_scenario, to_ns
    from simulator.truth import read_truth, truth_report

    if args.truth_file:
        sc = read_truth(args.truth_file)
    else:
        config = load_sim_config(args.config)
        if args.start is None:
            # without a truth file, the scenario is rebuilt to cover the asked range
            start_ns, end_ns = to_ns(args.from_), to_ns(args.to)
        else:
            start_ns, end_ns = _range(config, args)
        sc = build_scenario(config, args.seed, start_ns, end_ns)
    report = truth_report(sc, args.from_, args.to)
    print(json.dumps(report, indent=2))
    return 0
