"""Imports flow one way (DESIGN.md): zhizao <- ingest <- gateway, analytics <- api; simulator
depends only on zhizao; nothing in production imports simulator."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("zhizao", "ingest", "gateway", "analytics", "api", "simulator")
# package -> the project packages it may import
ALLOWED: dict[str, set[str]] = {
    "zhizao": {"zhizao"},
    "ingest": {"zhizao", "ingest"},
    "gateway": {"zhizao", "ingest", "gateway"},
    "analytics": {"zhizao", "ingest", "analytics"},
    "api": {"zhizao", "ingest", "analytics", "api"},
    "simulator": {"zhizao", "simulator"},
}
# libraries that must stay out of a package (DESIGN.md "Must not")
FORBIDDEN_LIBS: dict[str, set[str]] = {
    "zhizao": {"paho", "asyncua", "httpx", "fastapi", "influxdb_client"},
    "analytics": {"fastapi", "paho"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_what_the_design_allows(package: str) -> None:
    files = _modules(package)
    assert files, f"package {package} has no modules"
    violations = []
    for path in files:
        imported = _imports(path)
        for name in imported & set(PACKAGES):
            if name not in ALLOWED[package]:
                violations.append(f"{path.relative_to(ROOT)} imports {name}")
        for lib in imported & FORBIDDEN_LIBS.get(package, set()):
            violations.append(f"{path.relative_to(ROOT)} imports {lib}")
    assert not violations, "\n".join(violations)


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("from simulator.scenario import x\nimport paho.mqtt.client\n")
    assert _imports(bad) == {"simulator", "paho"}
