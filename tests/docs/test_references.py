"""The contributor docs name files and modules that exist, so a move or a rename cannot leave a
walkthrough pointing at nothing."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["CONTRIBUTING.md", "docs/ARCHITECTURE.md", "docs/KPI-RULES.md"]
TOP = ("zhizao", "gateway", "ingest", "analytics", "api", "simulator", "dashboards")
FOLDERS = (*TOP, "deploy", "benchmarks", "tests", "docs", ".ci")
TOP_FILES = {"README.md", "CHANGELOG.md", "LICENSE", "CONTRIBUTING.md", "pyproject.toml"}
# the walkthroughs' examples: what a contributor is about to create
EXAMPLES = ("modbus", "vendor_json")
CODE = re.compile(r"`([^`\n]+)`")


def _spans(doc: str) -> list[str]:
    return CODE.findall((ROOT / doc).read_text(encoding="utf-8"))


def _is_placeholder(text: str) -> bool:
    return any(c in text for c in "<>{}*$") or any(e in text for e in EXAMPLES)


def paths(doc: str) -> list[str]:
    out = []
    for span in _spans(doc):
        for token in span.split():
            token = token.strip(",;:()").split(":")[0]
            if _is_placeholder(token):
                continue
            if token in TOP_FILES or (token.split("/")[0] in FOLDERS and "/" in token):
                out.append(token)
    return out


def modules(doc: str) -> list[str]:
    dotted = re.compile(rf"^(?:{'|'.join(TOP)})(?:\.[A-Za-z_][A-Za-z0-9_]*)+$")
    out = []
    for span in _spans(doc):
        token = span.split("(")[0].strip()
        if dotted.match(token) and not _is_placeholder(token):
            out.append(token)
    return out


def resolves(name: str) -> bool:
    """``pkg.module.attr.attr``: the longest importable prefix, then attributes."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize("doc", DOCS)
def test_every_named_file_exists(doc: str) -> None:
    named = paths(doc)
    assert len(named) >= 5, f"{doc}: expected it to name repository files"
    missing = sorted({p for p in named if not (ROOT / p.rstrip("/")).exists()})
    assert missing == [], f"{doc} names files that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS)
def test_every_named_module_resolves(doc: str) -> None:
    missing = sorted({m for m in modules(doc) if not resolves(m)})
    assert missing == [], f"{doc} names modules or attributes that do not exist: {missing}"


def test_the_checks_catch_a_stale_name() -> None:
    assert not resolves("analytics.catalog.no_such_function")
    assert not resolves("gateway.no_such_module")
    assert resolves("analytics.catalog.markdown_table")
    assert paths("CONTRIBUTING.md")  # the parser finds the paths it is meant to check
