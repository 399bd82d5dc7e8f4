"""The engine's pure parts: which range a run recomputes, and the lines it writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analytics.config import KpiConfig
from analytics.engine import compute_range
from analytics.lineformat import component_batch
from ingest.lineprotocol import LineProtocolEncoder
from zhizao.model import SeriesTable

S = 10**9


def test_first_run_backfills_later_runs_look_back_from_the_last_run() -> None:
    cfg = KpiConfig.model_validate(
        {
            "sites": [Path("s.yaml")],
            "schedule": {"backfill_s": 86400, "lookback_s": 7200, "delay_s": 60},
        }
    )
    now = 1_000_000 * S
    assert compute_range(now, cfg, None) == (now - 60 * S - 86400 * S, now - 60 * S)
    last_end = now - 60 * S
    later = now + 300 * S
    assert compute_range(later, cfg, last_end) == (last_end - 7200 * S, later - 60 * S)


def test_component_rows_encode_one_line_each_and_skip_nan() -> None:
    tags = [{"site": "p 1", "machine": "M,1", "line": ""}, {"site": "p1", "machine": "M2"}]
    table = SeriesTable()
    batch = component_batch(
        table,
        "kpi_machine_day",
        tags,
        np.array([10, 20], np.int64),
        {"pbt_s": np.array([54000.0, np.nan]), "gq": np.array([351.0, 2.5])},
    )
    body = LineProtocolEncoder(table).encode(batch).body.decode()
    assert body.splitlines() == [
        r"kpi_machine_day,machine=M\,1,site=p\ 1 gq=351,pbt_s=54000 10",
        "kpi_machine_day,machine=M2,site=p1 gq=2.5 20",
    ]


def test_kpis_from_summed_components() -> None:
    from analytics import kpis_from_components

    out = kpis_from_components([{"time": 0, "pbt_s": 3600.0, "apt_s": 3000.0, "pri_pq_s": 2700.0,
                                 "pri_gq_s": 2640.0, "pq": 45.0, "gq": 44.0}])  # fmt: skip
    kpis = out[0]["kpis"]
    assert isinstance(kpis, dict)
    assert kpis["oee"]["value"] == 2640 / 3600 and kpis["oee"]["label"] == "OEE=PRI*GQ/PBT"
    assert kpis["util_cutting_pbt"]["value"] == 0.0


def test_rollup_machine_line_factory_district_city() -> None:
    from analytics.aggregate import machine_hierarchy, rollup
    from analytics.components import Components
    from analytics.oee import iso22400_kpis
    from tests.analytics.test_offline_cli import SITE
    from zhizao.site import SiteModel

    a = SiteModel.model_validate(SITE)
    b = SiteModel.model_validate({**SITE, "site": "plant2", "district": "Minhang"})
    ha, hb = machine_hierarchy(a, ["M1", "M9"]), machine_hierarchy(b, ["M1", "M9"])
    groups = {level: ha[level] + hb[level] for level in ha}
    c = Components.from_columns(
        {"pbt_s": [100.0, 300.0, 200.0, 400.0], "pri_gq_s": [80.0, 30.0, 100.0, 300.0]}
    )
    r = rollup(c, groups)
    assert r["line"][0] == ["acme/plant1/machining/l1", "acme/plant2/machining/l1"]
    assert r["district"][0] == ["Pudong", "Minhang"]
    oee = {lvl: iso22400_kpis(comps)["oee"].value.tolist() for lvl, (_, comps) in r.items()}
    assert oee["factory"] == [110 / 400, 400 / 600]
    assert oee["district"] == oee["factory"]
    assert oee["city"] == [510 / 1000]  # sum/sum, not the mean of the districts (0.4708)
