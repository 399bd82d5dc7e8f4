"""The ``zhizao`` command. Each component contributes its sub-commands through a ``cli`` module
with ``register(subparsers)``; they are found by name so that this kernel imports none of them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zhizao import __version__
from zhizao.errors import ZhizaoError
from zhizao.logs import configure_logging

# component module -> registers these sub-commands (sim, gateway, ingest, kpi, api, demo)
COMPONENT_CLIS: tuple[str, ...] = (
    "simulator.cli",
    "gateway.cli",
    "ingest.cli",
    "analytics.cli",
    "api.cli",
    "zhizao.demo_cli",
)
# component module -> (its sub-command, the pip extra that brings its packages): a role installed
# without another role's extra (``pip install 'zhizao[gateway]'``) still has a working command,
# and the missing one says what to install
COMPONENT_EXTRAS: dict[str, tuple[str, str]] = {
    "simulator.cli": ("sim", "sim"),
    "gateway.cli": ("gateway", "gateway"),
    "ingest.cli": ("ingest", "ingest"),
    "analytics.cli": ("kpi", "analytics"),
    "api.cli": ("api", "api"),
    "zhizao.demo_cli": ("demo", "all"),
}


def _register_missing(sub: argparse._SubParsersAction[Any], name: str, missing: str) -> None:
    command, extra = COMPONENT_EXTRAS.get(name, (name.split(".")[0], "all"))
    message = (
        f"'zhizao {command}' needs the Python package {missing!r}, which this installation "
        f"lacks: install it with pip install 'zhizao[{extra}]'"
    )
    p = sub.add_parser(command, help=f"(not installed: pip install 'zhizao[{extra}]')")
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def handler(args: argparse.Namespace) -> int:
        print(f"zhizao: {message}", file=sys.stderr)
        return 2

    p.set_defaults(handler=handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zhizao", description="Smart and green factory monitoring (edge to KPIs)."
    )
    parser.add_argument("--version", action="version", version=f"zhizao {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None,
        help="log lines as text or JSON objects (default: $ZHIZAO_LOG_FORMAT, else text)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMPONENT_CLIS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # component not present in this build
                continue
            top = (exc.name or "").split(".")[0]
            if top and top not in {"zhizao", *(n.split(".")[0] for n in COMPONENT_CLIS)}:
                _register_missing(sub, name, top)  # a third-party package of another role
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        configure_logging(logging.WARNING - 10 * min(args.verbose, 2), args.log_format)
        return int(handler(args) or 0)
    except ZhizaoError as exc:
        print(f"zhizao: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # not the user's input: a bug. One sentence on the terminal, the traceback in a file
        where = _crash_log(exc, argv)
        if where is None:  # nowhere to write it: the traceback is all there is to report
            traceback.print_exception(exc, file=sys.stderr)
        print(
            f"zhizao: internal error ({type(exc).__name__}: {exc}); this is a bug in zhizao, "
            f"not in your input: the traceback is {f'in {where}' if where else 'above'}",
            file=sys.stderr,
        )
        return INTERNAL_ERROR


INTERNAL_ERROR = 70  # EX_SOFTWARE; user errors exit 2
CRASH_DIR_ENV = "ZHIZAO_CRASH_DIR"


def _crash_log(exc: BaseException, argv: Sequence[str] | None) -> str | None:
    """Write the traceback to ``$ZHIZAO_CRASH_DIR`` (default: the temp directory), 0600."""
    from zhizao.logs import redact
    from zhizao.private import write_private

    folder = Path(os.environ.get(CRASH_DIR_ENV) or tempfile.gettempdir())
    path = folder / f"zhizao-internal-error-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    args = " ".join(sys.argv[:1] + list(argv if argv is not None else sys.argv[1:]))
    text = f"zhizao {__version__}: {redact(args)}\n" + redact(
        "".join(traceback.format_exception(exc))
    )
    try:
        write_private(path, text)
    except OSError:
        return None
    return str(path)


if __name__ == "__main__":
    raise SystemExit(main())
