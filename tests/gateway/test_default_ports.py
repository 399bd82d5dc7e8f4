"""Default ports: every service has its own, as docs/PORTS.md says (a shared default made a
one-box installation fail at start-up: gateway and ingest both bound 9108)."""

from __future__ import annotations

import re
from pathlib import Path

from api.settings import DEFAULT_PORT as API_PORT
from gateway.config import MetricsConfig
from ingest.config import HealthConfig

PORTS_MD = Path(__file__).resolve().parents[2] / "docs" / "PORTS.md"


def _table() -> dict[str, int]:
    rows = re.findall(r"^\| ([A-Za-z][A-Za-z ]+?) \| (\d+) \|", PORTS_MD.read_text(), re.MULTILINE)
    return {name: int(port) for name, port in rows}


def test_defaults_match_the_table_and_differ() -> None:
    table = _table()
    assert {"API", "gateway", "ingest", "KPI engine"} <= set(table)
    assert table["gateway"] == MetricsConfig().port
    assert table["ingest"] == HealthConfig.model_fields["port"].default
    assert table["API"] == API_PORT
    assert len(set(table.values())) == len(table), table
