"""Deployment files: the systemd unit's essentials and the install script's plan (--dry-run)."""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_systemd_unit_runs_unprivileged_restarts_always_keeps_state() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(REPO / "deploy" / "systemd" / "zhizao-gateway.service")
    service = unit["Service"]
    assert service["Restart"] == "always"
    assert service["User"] == "zhizao" and service["Group"] == "zhizao"
    assert service["StateDirectory"] == "zhizao"  # -> /var/lib/zhizao
    assert service["ExecStart"].endswith("zhizao gateway run -c /etc/zhizao/gateway.yaml")
    assert service["ReadWritePaths"] == "/var/lib/zhizao"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_install_script_dry_run_plans_user_venv_config_and_unit() -> None:
    out = subprocess.run(
        ["bash", str(REPO / "deploy" / "install-gateway.sh"), "--dry-run", "--sample", "mqtt"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    planned = [line[2:] for line in out.splitlines() if line.startswith("+ ")]
    assert any(c.startswith("useradd --system") and c.endswith(" zhizao") for c in planned) or (
        "useradd" not in out  # the user exists already on this machine
    )
    assert "python3 -m venv /opt/zhizao/venv" in planned
    assert any("/gateway/samples/mqtt.yaml /etc/zhizao/gateway.yaml" in c for c in planned) or (
        "keeping existing /etc/zhizao/gateway.yaml" in out
    )
    assert any(c.endswith("/etc/systemd/system/zhizao-gateway.service") for c in planned)
    assert "systemctl enable zhizao-gateway.service" in planned
    assert "systemctl restart zhizao-gateway.service" not in planned  # only with --start


def test_install_script_refuses_unknown_options() -> None:
    proc = subprocess.run(
        ["bash", str(REPO / "deploy" / "install-gateway.sh"), "--dry-run", "--bogus"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown option --bogus" in proc.stderr
