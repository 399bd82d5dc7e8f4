"""The development entry points: the license the package declares, lint and unit tests that need
only the virtual environment, and a CI script that reports both lint and tests."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_license_file_is_the_license_pyproject_declares() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert declared["license"] == {"text": "Apache-2.0"}
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    for marker in ("Apache License", "Version 2.0, January 2004", "TERMS AND CONDITIONS FOR USE",
                   "9. Accepting Warranty or Additional Liability.", "END OF TERMS AND CONDITIONS"):  # fmt: skip
        assert marker in text, f"LICENSE lacks {marker!r}: not the full Apache 2.0 text"


def _prerequisites(target: str) -> list[str]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    m = re.search(rf"^{re.escape(target)}:(.*)$", makefile, re.MULTILINE)
    assert m, f"Makefile has no target {target}"
    return m.group(1).split()


@pytest.mark.parametrize("target", ["lint", "test-fast", "format", "typecheck"])
def test_lint_and_unit_tests_need_only_the_virtual_environment(target: str) -> None:
    assert _prerequisites(target) == ["venv"]


def test_the_venv_target_installs_no_servers() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^venv:\n\t@.*deploy/setup.sh --venv-only$", makefile, re.MULTILINE)
    assert re.search(r'^test-fast: venv\n\t.*-m "not integration"', makefile, re.MULTILINE)


def test_setup_refuses_an_unknown_option_in_one_sentence() -> None:
    run = subprocess.run(
        ["bash", str(ROOT / "deploy" / "setup.sh"), "--venv"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2
    assert run.stderr.strip() == (
        "setup: unknown option '--venv'; use no option (servers and venv) or --venv-only"
    )


@pytest.mark.parametrize(("lint_rc", "test_rc"), [(0, 0), (2, 0), (0, 1), (2, 1)])
def test_ci_runs_the_tests_even_when_the_lint_fails(
    tmp_path: Path, lint_rc: int, test_rc: int
) -> None:
    # a stand-in for make that records the targets it was asked for
    fake = tmp_path / "make"
    fake.write_text(
        '#!/bin/sh\necho "$1" >> "$CALLS"\n'
        'case "$1" in lint) exit "$LINT_RC";; test) exit "$TEST_RC";; esac\nexit 3\n'
    )
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "CALLS": str(calls),
           "LINT_RC": str(lint_rc), "TEST_RC": str(test_rc)}  # fmt: skip
    run = subprocess.run(
        [str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=30
    )
    assert calls.read_text().split() == ["lint", "test"]
    assert (run.returncode == 0) == (lint_rc == 0 and test_rc == 0)
    assert ("lint passed" in run.stdout) == (lint_rc == 0)
    assert ("tests passed" in run.stdout) == (test_rc == 0)
