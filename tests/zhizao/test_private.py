"""Generated files that may hold secrets are 0600 whatever the umask (issue 17 item 10): the
helper, and the configurations and token file ``make demo`` writes."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_demo_configs import demo
from zhizao.private import write_private


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)  # the worst case: every file would be 0666
    try:
        yield
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_write_private_is_0600_new_and_over_an_open_file(tmp_path: Path) -> None:
    new = write_private(tmp_path / "sub" / "a.yaml", "password: s3cret\n")
    assert _mode(new) == 0o600 and new.read_text() == "password: s3cret\n"
    old = tmp_path / "b.env"
    old.write_text("x")
    old.chmod(0o644)
    write_private(old, b"TOKEN=zz_abc\n")
    assert _mode(old) == 0o600 and old.read_bytes() == b"TOKEN=zz_abc\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.env", "sub"]  # no temp file left


@pytest.mark.usefixtures("open_umask")
def test_demo_generated_configs_are_private(tmp_path: Path) -> None:
    for name in ("gateway.yaml", "ingest.yaml", "kpi.yaml", "api.yaml"):
        path = tmp_path / name
        path.write_text("old")
        path.chmod(0o644)  # left by an older demo run with --keep
        demo.write_yaml(path, {"mqtt": {"password": "pw"}}, name)
        assert _mode(path) == 0o600, name
        assert "password: pw" in path.read_text()
