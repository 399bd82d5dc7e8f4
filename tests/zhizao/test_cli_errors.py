"""Issue 14: the ``zhizao`` command never answers with a traceback. A user error (a bad
``--from``, a missing file, a site model error) exits 2 with one sentence saying what to fix; an
internal error exits 70 saying it is one and where its traceback was written."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.analytics.test_offline_cli import SITE

ROOT = Path(__file__).resolve().parents[2]


def _zhizao(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zhizao.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(SITE), encoding="utf-8")
    samples = tmp_path / "export.csv"
    samples.write_text("timestamp,asset,signal,value\n", encoding="utf-8")
    return site, samples


def _one_sentence(proc: subprocess.CompletedProcess[str]) -> str:
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("zhizao: ")
    return err


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        ({"--from": "yesterday"}, "--from 'yesterday' is not an ISO 8601 time"),
        ({"--to": "2026-03-01T00:00"}, "--to '2026-03-01T00:00' must be after --from"),
        ({"--samples": "missing.csv"}, "cannot read the samples file"),
        ({"--site": "missing.yaml"}, "cannot read configuration file"),
        ({"--site": "bad-site.yaml"}, "bad-site.yaml"),
    ],
)
def test_user_errors_exit_2_with_one_sentence(
    tmp_path: Path, files: tuple[Path, Path], change: dict[str, str], expect: str
) -> None:
    site, samples = files
    bad = dict(SITE)
    bad["areas"] = [{"id": "a", "lines": [{"id": "l", "calendar": "nope", "machines": []}]}]
    (tmp_path / "bad-site.yaml").write_text(yaml.safe_dump(bad), encoding="utf-8")
    opts = {
        "--samples": str(samples),
        "--site": str(site),
        "--from": "2026-03-02T00:00",
        "--to": "2026-03-03T00:00",
        **change,
    }
    proc = _zhizao("kpi", "compute", *(x for kv in opts.items() for x in kv), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert expect in _one_sentence(proc)


def test_an_internal_error_says_so_and_where_its_traceback_is(tmp_path: Path) -> None:
    # a command whose handler has a bug: the kernel's own answer to an unexpected exception
    script = textwrap.dedent(
        """
        import sys
        from zhizao import cli

        build = cli.build_parser

        def parser():
            p = build()
            sub = next(a for a in p._actions if a.dest == "command")
            broken = sub.add_parser("broken")
            broken.set_defaults(handler=lambda args: {}["missing key"])
            return p

        cli.build_parser = parser
        sys.exit(cli.main(["broken"]))
        """
    )
    crash_dir = tmp_path / "crashes"
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "ZHIZAO_CRASH_DIR": str(crash_dir)},
    )
    assert proc.returncode == 70
    err = _one_sentence(proc)
    assert "internal error (KeyError: 'missing key')" in err and "a bug in zhizao" in err
    (log,) = crash_dir.iterdir()
    assert str(log) in err
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text(encoding="utf-8")
    assert "Traceback" in text and "KeyError" in text and "broken" in text
