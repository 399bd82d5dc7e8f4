"""Portal fixtures: the worked example's day in a real InfluxDB, an API server with the portal,
a second (foreign) site, and tokens for every role."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api import worked_example as wx
from tests.api.harness import ApiServer, api_server
from tests.api.test_worked_example_api import KPI, load_example
from tests.conftest import InfluxDb, _influx_post
from zhizao.site import SiteModel

FOREIGN = "plant9"
# inside the example's long shift (06:00-22:00), after every part was counted
AT = "2026-03-02T21:00:00+08:00"


def foreign_site() -> SiteModel:
    return SiteModel.model_validate({**wx.SITE_MODEL, "site": FOREIGN, "name": "Another plant"})


@pytest.fixture(scope="package")
def portal_server(
    tmp_path_factory: pytest.TempPathFactory, influx_server: Any
) -> Iterator[ApiServer]:
    tmp = tmp_path_factory.mktemp("portal")
    name = f"t_{uuid.uuid4().hex[:12]}"
    _influx_post(influx_server.url, f'CREATE DATABASE "{name}"')
    load_example(tmp, InfluxDb(influx_server.url, name, influx_server))
    sites = [SiteModel.model_validate(wx.SITE_MODEL), foreign_site()]
    with api_server(
        tmp, influx_url=influx_server.url, database=name, sites=sites, kpi=KPI, foreign=FOREIGN
    ) as server:
        yield server
    if influx_server.running:
        _influx_post(influx_server.url, f'DROP DATABASE "{name}"')


@pytest.fixture(scope="package")
def commission_server(
    tmp_path_factory: pytest.TempPathFactory, influx_server: Any
) -> Iterator[ApiServer]:
    """tests/api/test_commission.py's three factories (two districts), its configuration and
    the worked example's 2025 and 2015 reports, with the plant meters' day in InfluxDB."""
    from tests.api import test_commission as tc

    tmp = tmp_path_factory.mktemp("commission")
    name = f"t_{uuid.uuid4().hex[:12]}"
    _influx_post(influx_server.url, f'CREATE DATABASE "{name}"')
    green = tc._site(tc.GREEN, "Pudong", plant_meters=True)
    sites = [green, tc._site(tc.B1, "Pudong", False), tc._site(tc.C1, "Minhang", False)]
    tc._plant_telemetry(influx_server.url, name, tmp, green)
    with api_server(tmp, influx_url=influx_server.url, database=name, sites=sites) as server:
        with server.client("commission") as c:
            r = c.put(
                "/api/v1/commission/config",
                json={"document": tc._config(), "reason": "first cohorts"},
            )
            assert r.status_code == 200, r.text
        for period, values in ((str(tc.YEAR), tc.REPORT_2025), (str(tc.BASE), tc.REPORT_2015)):
            r = tc._put_report(server, "factory_admin", tc.GREEN, period, values, "annual")
            assert r.status_code == 200, r.text
        r = tc._put_report(
            server, "admin", tc.B1, str(tc.YEAR),
            {"value_added_current_10k_cny": 10.0, "price_index": 1.0}, "annual",
        )  # fmt: skip
        assert r.status_code == 200, r.text
        yield server
    if influx_server.running:
        _influx_post(influx_server.url, f'DROP DATABASE "{name}"')
