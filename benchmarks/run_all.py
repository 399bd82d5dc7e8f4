"""Run every benchmark in this folder; each prints JSON lines on stdout.

Usage: python benchmarks/run_all.py [--quick] [name ...]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    names = [a for a in argv if not a.startswith("-")]
    scripts = sorted(p for p in HERE.glob("*.py") if p.name not in ("run_all.py", "__init__.py"))
    scripts = [p for p in scripts if not p.name.startswith("_")]
    if names:
        scripts = [p for p in scripts if p.stem in names]
    failed = 0
    for script in scripts:
        cmd = [sys.executable, str(script)] + (["--quick"] if quick else [])
        print(f"# {script.name}", file=sys.stderr, flush=True)
        rc = subprocess.call(cmd, cwd=HERE.parent)
        if rc != 0:
            print(f"# {script.name} failed with exit code {rc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
