"""Central services without containers: the hardened systemd units, install-central.sh's plan
(--dry-run) and the configuration files it writes (secrets private)."""

from __future__ import annotations

import configparser
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "install-central.sh"


@pytest.mark.parametrize("svc", ["ingest", "kpi", "api"])
def test_unit_is_hardened_and_restarts_always(svc: str) -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(REPO / "deploy" / "systemd" / f"zhizao-{svc}.service")
    s = unit["Service"]
    assert s["Restart"] == "always" and s["User"] == "zhizao"
    assert s["ProtectSystem"] == "strict" and s["NoNewPrivileges"] == "yes"
    assert s["ReadWritePaths"] == f"/var/lib/zhizao-{svc}"  # its own data, nothing else
    assert s["StateDirectory"] == f"zhizao-{svc}"
    sub = {"ingest": "ingest run", "kpi": "kpi run", "api": "api run"}[svc]
    assert s["ExecStart"] == f"/opt/zhizao/venv/bin/zhizao {sub} -c /etc/zhizao/{svc}.yaml"


def test_dry_run_plans_user_venv_configs_and_units() -> None:
    out = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    planned = [line[2:] for line in out.splitlines() if line.startswith("+ ")]
    assert "python3 -m venv /opt/zhizao/venv" in planned
    assert any("zhizao[ingest,analytics,api]" in c for c in planned)
    for svc in ("ingest", "kpi", "api"):
        assert f"systemctl enable zhizao-{svc}.service" in planned
        assert f"systemctl restart zhizao-{svc}.service" not in planned  # only with --start
        assert any(c.endswith(f"/etc/systemd/system/zhizao-{svc}.service") for c in planned)


def test_generated_configs_are_private_and_never_overwritten(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    cmd = ["bash", str(SCRIPT), "--configs-only", "--etc", str(etc)]
    subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60)
    env = etc / "api.env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    token = env.read_text().strip().split("=", 1)[1]
    assert len(token) >= 32
    for name in ("ingest.yaml", "kpi.yaml", "api.yaml"):
        mode = stat.S_IMODE((etc / name).stat().st_mode)
        assert mode & 0o007 == 0, f"{name} readable by others: {oct(mode)}"
    assert stat.S_IMODE(etc.stat().st_mode) & 0o007 == 0
    assert "/var/lib/zhizao-api/api.sqlite" in (etc / "api.yaml").read_text()
    assert "/var/lib/zhizao-ingest/" in (etc / "ingest.yaml").read_text()
    (etc / "api.yaml").write_text("# edited\n")
    again = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    assert "keeping existing" in again
    assert (etc / "api.yaml").read_text() == "# edited\n" and env.read_text().endswith(f"{token}\n")


def test_unknown_option_is_refused() -> None:
    proc = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown option --bogus" in proc.stderr
