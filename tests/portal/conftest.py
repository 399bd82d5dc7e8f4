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
