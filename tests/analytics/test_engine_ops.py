"""Operating the KPI engine: ``zhizao kpi rebuild`` after a site-model change, and how failed
runs are logged."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
import yaml

from analytics.compute import SiteComputer
from analytics.config import load_kpi_config
from analytics.engine import KpiEngine
from analytics.reader import SiteReader
from ingest.influx import InfluxQLReader, InfluxWriter
from tests.analytics.helpers import at
from tests.analytics.test_engine_influx import NEXT_DAY, TAGS, engine_config, raw_day, rows
from tests.analytics.test_offline_cli import SITE
from tests.conftest import InfluxDb
from zhizao.cli import main
from zhizao.site import load_site


@pytest.mark.integration
async def test_rebuild_recomputes_a_range_after_a_site_model_change(
    tmp_path: Path, influx_db: InfluxDb, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = engine_config(tmp_path, influx_db)
    assert cfg.influx is not None
    lines, _ = raw_day()
    async with InfluxWriter(cfg.influx) as writer:
        await writer.write_body(("\n".join(lines) + "\n").encode(), len(lines))
    await KpiEngine(cfg).run_once(at("00:01", NEXT_DAY))
    before = rows(influx_db, "kpi_machine_hour")
    # the ideal cycle time was wrong: 120 s -> 100 s
    corrected = {**SITE, "products": [{"id": "P-100", "ideal_cycle_s": 100}]}
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(corrected), encoding="utf-8")
    rc = await asyncio.to_thread(
        main,
        ["kpi", "rebuild", "-c", str(tmp_path / "kpi.yaml"), "--site", "plant1",
         "--from", "2026-03-02T09:00", "--to", "2026-03-02T10:00", "--now", "2026-03-03T00:01"],
    )  # fmt: skip
    assert rc == 0
    out = capsys.readouterr()
    summary = json.loads(out.out)
    assert summary["segments"] == 24  # widened to the whole day (the day row holds 09:00)
    assert "plant1: 2026-03-02T00:00+08:00 .. 2026-03-03T00:00+08:00: 24 segments" in out.err
    # every stored row is the full recomputation with the corrected model
    cfg2 = load_kpi_config(tmp_path / "kpi.yaml")
    computer = SiteComputer(load_site(tmp_path / "site.yaml"), cfg2)
    lo, hi = at("00:00"), at("00:00", NEXT_DAY)
    async with InfluxQLReader(cfg.influx) as reader:
        data = await SiteReader(cfg2).read(reader, computer.site, lo - 86400 * 10**9, hi + 1)
    after = rows(influx_db, "kpi_machine_hour")
    assert set(after) == set(before)
    for kind in ("hour", "day"):
        ref = computer.compute(data, kind, lo, hi)
        got = {
            (dict(t)["machine"], ts): v
            for (t, ts), v in rows(influx_db, f"kpi_machine_{kind}").items()
        }
        for i, machine in enumerate(ref.machine):
            row = got[(machine, int(ref.start_ns[i]))]
            for name, col in ref.components.columns().items():
                assert row.get(name, 0.0) == pytest.approx(float(col[i]), rel=1e-9, abs=1e-9)
    m1 = next(v for (t, ts), v in after.items() if ("machine", "M1") in t and ts == at("09:00"))
    old = next(v for (t, ts), v in before.items() if ("machine", "M1") in t and ts == at("09:00"))
    assert m1["pri_gq_s"] == pytest.approx(old["pri_gq_s"] * 100 / 120)


def test_rebuild_refuses_an_unknown_site(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(SITE), encoding="utf-8")
    (tmp_path / "kpi.yaml").write_text(
        "sites: [site.yaml]\ninflux: {url: 'http://127.0.0.1:1', database: x}\n", encoding="utf-8"
    )
    rc = main(["kpi", "rebuild", "-c", str(tmp_path / "kpi.yaml"), "--site", "nowhere",
               "--from", "2026-03-02", "--to", "2026-03-03"])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "--site 'nowhere' is not in" in err and "plant1" in err and "Traceback" not in err


def test_a_changed_failure_is_logged_at_error_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(SITE), encoding="utf-8")
    (tmp_path / "kpi.yaml").write_text(
        "sites: [site.yaml]\ninflux: {url: 'http://127.0.0.1:1', database: x}\n", encoding="utf-8"
    )
    engine = KpiEngine(load_kpi_config(tmp_path / "kpi.yaml"))
    caplog.set_level(logging.DEBUG, logger="analytics.engine")
    for exc in (
        OSError("disk full"),
        OSError("disk full"),
        OSError("no route"),
        OSError("no route"),
    ):
        engine._failed(exc)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and "disk full" in errors[0] and "no route" in errors[1]
    assert engine.metrics.health()[0] is False  # 4 failed runs >= fail_after_runs (3)
    assert engine.metrics.health()[1]["last_error"] == "no route"


@pytest.mark.integration
async def test_a_steady_run_reads_only_what_arrived_since_the_last_one(
    tmp_path: Path, influx_db: InfluxDb
) -> None:
    cfg = engine_config(tmp_path, influx_db)
    assert cfg.influx is not None
    lines, _ = raw_day()
    async with InfluxWriter(cfg.influx) as writer:
        await writer.write_body(("\n".join(lines) + "\n").encode(), len(lines))
    engine = KpiEngine(cfg)
    await engine.run_once(at("12:31"))  # cut-off 12:30
    rep = await engine.run_once(at("14:01"))  # cut-off 14:00
    ts = [int(line.rsplit(" ", 1)[1]) for line in lines]  # one field value per line
    assert rep.points_read == sum(at("12:30") < t <= at("14:00") for t in ts) > 0
    assert rep.late_rereads == 0 and rep.segments == 2  # 13:00 and the open 14:00
    # a late sample inside the look-back: counted by InfluxDB, re-read, folded in
    async with InfluxWriter(cfg.influx) as writer:
        await writer.write_body(
            f"counter,{TAGS},machine=M9 part_count=12i {at('13:30')}\n".encode(), 1
        )
    rep = await engine.run_once(at("14:02"))
    assert rep.late_rereads == 1
    m9 = rows(influx_db, "kpi_machine_hour")
    assert (
        next(v for (t, s), v in m9.items() if ("machine", "M9") in t and s == at("13:00"))["pq"]
        == 3
    )


@pytest.mark.integration
async def test_a_run_whose_writes_failed_is_made_good_by_the_next(
    tmp_path: Path, influx_db: InfluxDb
) -> None:
    """InfluxDB refuses the writes of one run (its database is gone for the writer): the next
    run stores the same rows as an engine whose runs all succeeded."""
    cfg = engine_config(tmp_path, influx_db)
    assert cfg.influx is not None
    lines, _ = raw_day()
    async with InfluxWriter(cfg.influx) as writer:
        await writer.write_body(("\n".join(lines) + "\n").encode(), len(lines))
    gone = cfg.influx.model_copy(update={"database": "no_such_database"})
    engine = KpiEngine(cfg)
    await engine.run_once(at("12:31"))
    async with InfluxQLReader(cfg.influx) as reader, InfluxWriter(gone) as refused:
        with pytest.raises(Exception, match="has no database"):
            await engine.run_once(at("14:31"), conn=(reader, refused))
    await engine.run_once(at("14:41"))
    got = rows(influx_db, "kpi_machine_hour")

    (tmp_path / "b").mkdir()
    other = InfluxDb(influx_db.url, f"{influx_db.database}_b", influx_db.server)
    from tests.conftest import _influx_post

    _influx_post(other.url, f'CREATE DATABASE "{other.database}"')
    try:
        cfg_b = engine_config(tmp_path / "b", other)
        assert cfg_b.influx is not None
        async with InfluxWriter(cfg_b.influx) as writer:
            await writer.write_body(("\n".join(lines) + "\n").encode(), len(lines))
        steady = KpiEngine(cfg_b)
        for t in ("12:31", "14:31", "14:41"):
            await steady.run_once(at(t))
        assert got == rows(other, "kpi_machine_hour")
    finally:
        _influx_post(other.url, f'DROP DATABASE "{other.database}"')
