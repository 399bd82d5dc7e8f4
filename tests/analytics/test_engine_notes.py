"""The scheduled engine's data notes (issue 14) from its segment path, on a real InfluxDB: an
unknown state code beside a state signal that maps, a machine in cycle for hours without a part
counted (a stretch far longer than any segment), each note logged once and in the words of
``SiteComputer.compute``; and the metrics they feed on ``/metrics``
(``zhizao_kpi_unknown_state_seconds_total{site,machine}``, ``zhizao_kpi_data_notes{site,kind}``)."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from analytics.compute import SiteComputer
from analytics.config import KpiConfig, load_kpi_config
from analytics.engine import KpiEngine
from analytics.reader import SiteReader
from ingest.influx import InfluxQLReader, InfluxWriter
from tests.analytics.helpers import at
from tests.analytics.test_offline_cli import SITE
from tests.conftest import _influx_post
from zhizao.localstack import InfluxServer
from zhizao.site import load_site

TAGS = "enterprise=acme,site=plant1,area=machining,line=l1"
MIN = 60 * 10**9
NO_PARTS = (
    "plant1: M1: IN_CYCLE for more than 1.5 h without a part counted on 2026-03-02: check its "
    "part counters (read: parts_total) and their tag map"
)
UNKNOWN = (
    "plant1: M1: unknown state codes ['mode=WEIRD'] (NO_DATA where no other state signal "
    "maps): add them to the machine type's state_map"
)


def raw() -> list[str]:
    """M1 in cycle 06:00-12:00 (both state signals), its mode an unknown code 09:00-11:00, parts
    only until 07:00; M9 in cycle with a part every 2 minutes."""
    lines = []
    for machine in ("M1", "M9"):
        tags = f"{TAGS},machine={machine}"
        lines.append(f'machine_state,{tags} state="IN_CYCLE",mode="IN_CYCLE" {at("06:00")}')
        lines.append(f'machine_state,{tags} state="IDLE" {at("12:00")}')
        last = at("07:00") if machine == "M1" else at("12:00")
        for i, t in enumerate(range(at("06:00") + 30 * 10**9, last, 2 * MIN)):
            lines.append(f"counter,{tags} part_count={i}i {t}")
    lines.append(f'machine_state,{TAGS},machine=M1 mode="WEIRD" {at("09:00")}')
    lines.append(f'machine_state,{TAGS},machine=M1 mode="IN_CYCLE" {at("11:00")}')
    return lines


def config(tmp: Path, url: str, db: str) -> KpiConfig:
    (tmp / "site.yaml").write_text(yaml.safe_dump(SITE), encoding="utf-8")
    doc = {
        "sites": ["site.yaml"],
        "influx": {"url": url, "database": db},
        "heartbeat_s": 86400,
        "no_parts_in_cycle_s": 5400,
        "signals": {
            "state": [
                {"measurement": "machine_state", "field": "state"},
                {"measurement": "machine_state", "field": "mode"},
            ]
        },
        "schedule": {"backfill_s": 3600, "lookback_s": 3600, "delay_s": 60},
        "health": {"port": 0},
    }
    (tmp / "kpi.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_kpi_config(tmp / "kpi.yaml")


def scrape(engine: KpiEngine) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The /metrics text of the engine's registry, parsed back: (name, labels) -> value."""
    text = generate_latest(engine.metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


@pytest.mark.integration
async def test_engine_logs_issue_14_notes_once_and_exports_them(
    tmp_path: Path, influx_server: InfluxServer, caplog: pytest.LogCaptureFixture
) -> None:
    db = f"t_{uuid.uuid4().hex[:12]}"
    _influx_post(influx_server.url, f'CREATE DATABASE "{db}"')
    cfg = config(tmp_path, influx_server.url, db)
    assert cfg.influx is not None
    lines = raw()
    async with InfluxWriter(cfg.influx) as writer:
        await writer.write_body(("\n".join(lines) + "\n").encode(), len(lines))
    caplog.set_level(logging.WARNING, logger="analytics.engine")
    engine = KpiEngine(cfg)
    notes_at: dict[int, dict[str, float]] = {}
    now = at("06:10")
    async with engine.connect() as conn:
        while now <= at("13:10"):
            engine._succeeded(await engine.run_once(now, conn=conn))  # as run_forever does
            m = scrape(engine)
            notes_at[now] = {
                dict(k[1])["kind"]: v for k, v in m.items() if k[0] == "zhizao_kpi_data_notes"
            }
            now += 20 * MIN

    logged = [r.getMessage() for r in caplog.records if "kpi data quality" in r.getMessage()]
    # each text once, in SiteComputer.compute's words; M9 counts its parts, so no note for it
    assert logged.count(f"kpi data quality: {UNKNOWN}") == 1, logged
    assert logged.count(f"kpi data quality: {NO_PARTS}") == 1, logged
    assert not [x for x in logged if "M9: IN_CYCLE" in x]
    # the whole-range computation says the same of the same data
    computer = SiteComputer(load_site(cfg.sites[0]), cfg)
    async with InfluxQLReader(cfg.influx) as reader:
        data = await SiteReader(cfg).read(reader, computer.site, at("00:00"), at("13:09"))
    ref = computer.compute(data, "day", at("00:00"), at("13:09")).notes
    assert {UNKNOWN, NO_PARTS} <= {f"plant1: {n}" for n in ref}

    metrics = scrape(engine)
    # two hours of the unknown code, counted once although the open segment is recomputed
    # every run; the state still came from the other signal (no NO_DATA time)
    key = (("machine", "M1"), ("site", "plant1"))
    assert metrics[("zhizao_kpi_unknown_state_seconds_total", key)] == 7200.0
    assert not [k for k in metrics if k[0].startswith("zhizao_kpi_unknown") and "M9" in str(k)]
    # the gauge follows the notes of the last run: while the code is in force, 1; after, 0
    assert notes_at[at("10:30")]["unknown_state"] == 1
    assert notes_at[at("13:10")]["unknown_state"] == 0
    # the stretch 07:00-12:00 without a part (segments are an hour at most) is noted once it
    # is longer than no_parts_in_cycle_s, measured from its start across segments
    assert notes_at[at("08:10")]["no_parts_in_cycle"] == 0
    assert notes_at[at("08:50")]["no_parts_in_cycle"] == 1
    assert notes_at[at("11:50")]["no_parts_in_cycle"] == 1
    assert set(notes_at[at("13:10")]) >= {"no_meter", "no_product", "count_check"}
