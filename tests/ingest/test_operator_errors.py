"""Operator mistakes at ingest's start get one sentence and exit 2, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from tests.ingest._support import config_dict
from zhizao.cli import main


def test_metrics_port_in_use_is_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        cfg = config_dict(1, "http://127.0.0.1:1", "db", tmp_path, health={"port": port})
        path = tmp_path / "ingest.yaml"
        path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        rc = main(["ingest", "run", "-c", str(path)])
    finally:
        holder.close()
    err = capsys.readouterr().err
    assert rc == 2
    assert f"127.0.0.1:{port}" in err and "health.port" in err
    assert "Traceback" not in err
