"""The interop virtual environment: a third-party Sparkplug B implementation beside ours.

pysparkplug pins paho-mqtt < 2, which cannot live in the project's venv (paho-mqtt 2.x), so it
gets its own venv, created once and reused: ``.venv/interop`` (inside the git-ignored ``.venv/``;
``ZHIZAO_INTEROP_VENV`` overrides the path). A stamp file records what was installed; a venv
whose stamp does not match the requirements below is rebuilt. A file lock keeps two test runs
in the same checkout from building it at the same time. Installing needs the package registry;
if it fails the tests FAIL with pip's output (a missing third party is not a reason to skip).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# pysparkplug 0.6.1 requires paho-mqtt<2 and protobuf>=5.28.2; paho is pinned for repeatability
REQUIREMENTS = ("pysparkplug==0.6.1", "paho-mqtt==1.6.1")
_STAMP = "zhizao-interop.stamp"
_INSTALL_TIMEOUT_S = 600


def _venv_dir() -> Path:
    env = os.environ.get("ZHIZAO_INTEROP_VENV")
    return Path(env) if env else REPO / ".venv" / "interop"


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _stamp_text() -> str:
    return "\n".join((f"python {sys.version_info[0]}.{sys.version_info[1]}", *REQUIREMENTS)) + "\n"


def _ready(venv: Path) -> bool:
    stamp = venv / _STAMP
    return _python(venv).exists() and stamp.exists() and stamp.read_text("utf-8") == _stamp_text()


def _run(cmd: list[str], what: str) -> None:
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"interop venv: {what} failed: {exc}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(
            f"interop venv: {what} failed (exit {proc.returncode}); the test needs the package "
            f"registry (PyPI) to install {', '.join(REQUIREMENTS)}.\n"
            f"command: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}",
            pytrace=False,
        )


def _build(venv: Path) -> None:
    shutil.rmtree(venv, ignore_errors=True)
    _run([sys.executable, "-m", "venv", str(venv)], "creating the venv")
    _run(
        [
            str(_python(venv)),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            *REQUIREMENTS,
        ],
        "pip install",
    )
    (venv / _STAMP).write_text(_stamp_text(), "utf-8")


@pytest.fixture(scope="session")
def interop_python() -> Iterator[Path]:
    """The interpreter of the venv that has pysparkplug (built on first use, then reused)."""
    venv = _venv_dir()
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _ready(venv):
            t0 = time.monotonic()
            _build(venv)
            print(f"interop venv built in {time.monotonic() - t0:.1f} s: {venv}")
    yield _python(venv)
