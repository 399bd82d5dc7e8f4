"""The ``zhizao`` command. Each component contributes its sub-commands through a ``cli`` module
with ``register(subparsers)``; they are found by name so that this kernel imports none of them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from zhizao import __version__
from zhizao.errors import ZhizaoError

# component module -> registers these sub-commands (sim, gateway, ingest, kpi, api)
COMPONENT_CLIS: tuple[str, ...] = (
    "simulator.cli",
    "gateway.cli",
    "ingest.cli",
    "analytics.cli",
    "api.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zhizao", description="Smart and green factory monitoring (edge to KPIs)."
    )
    parser.add_argument("--version", action="version", version=f"zhizao {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMPONENT_CLIS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # component not present in this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except ZhizaoError as exc:
        print(f"zhizao: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
