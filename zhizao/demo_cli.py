"""``zhizao demo``: the whole platform on one machine (``deploy/demo.py`` of a source checkout).

The demo is a composition root that starts every component with its own command; it lives in
``deploy/`` next to the set-up script, not in an installed package, so this module only defines
its options and loads it by path (the kernel imports no component).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from zhizao.errors import ConfigError

DEMO_PATH = Path(__file__).resolve().parents[1] / "deploy" / "demo.py"


def add_demo_arguments(p: argparse.ArgumentParser, *, default_data_dir: Path) -> None:
    """The demo's options (shared by ``zhizao demo`` and ``python deploy/demo.py``)."""
    p.add_argument("--speed", type=float, default=120.0, help="simulated seconds per second")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--start", default=None, help="simulated start, ISO 8601 with offset")
    p.add_argument(
        "--duration",
        "--duration-s",
        dest="duration_s",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after SECONDS wall seconds and print a JSON summary as the last line",
    )
    p.add_argument("--data-dir", type=Path, default=default_data_dir)
    p.add_argument("--keep", action="store_true", help="keep the data directory after the run")
    p.add_argument("--interval-s", type=float, default=5.0, help="view and KPI interval")
    p.add_argument("--api-port", type=int, default=0, help="API port (default: a free one)")
    p.add_argument(
        "--plain", action="store_true", help="append each view instead of redrawing in place"
    )


def load_demo() -> Any:
    """deploy/demo.py as a module (registered as ``zhizao_demo``: dataclasses need the name)."""
    if "zhizao_demo" in sys.modules:
        return sys.modules["zhizao_demo"]
    if not DEMO_PATH.exists():
        raise ConfigError(
            f"the demo runs from a source checkout of zhizao ({DEMO_PATH} is missing): "
            "clone the repository and run make demo"
        )
    spec = importlib.util.spec_from_file_location("zhizao_demo", DEMO_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["zhizao_demo"] = module
    spec.loader.exec_module(module)
    return module


def _run(args: argparse.Namespace) -> int:
    return int(load_demo().run(args))


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the whole platform on this machine (simulator to API), make demo",
        description="Start InfluxDB, Mosquitto, the simulated factory, a gateway, ingest, the "
        "KPI engine and the API on loopback; Ctrl-C stops everything.",
    )
    add_demo_arguments(p, default_data_dir=DEMO_PATH.parents[1] / "var" / "demo")
    p.set_defaults(handler=_run)
