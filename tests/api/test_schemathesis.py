"""Schemathesis against the OpenAPI document, once per role with valid seeded ids: no 5xx, and
every response matches its declared schema and content type."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from tests.api import worked_example as wx
from tests.api.harness import ApiServer, api_server
from tests.api.reportdata import ANNUAL
from tests.api.test_worked_example_api import KPI, load_example
from tests.conftest import InfluxDb, _influx_post
from zhizao.site import SiteModel

pytestmark = pytest.mark.integration
ROLES = ("engineer", "factory_admin", "commission", "admin")
VALID_PATH = {"site": wx.SITE, "line": wx.LINE, "machine": "M1", "period": "2025", "n": 1}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, influx_server: Any) -> Iterator[ApiServer]:
    import uuid

    tmp = tmp_path_factory.mktemp("fuzz")
    name = f"t_{uuid.uuid4().hex[:12]}"
    _influx_post(influx_server.url, f'CREATE DATABASE "{name}"')
    load_example(tmp, InfluxDb(influx_server.url, name, influx_server))
    with api_server(
        tmp, influx_url=influx_server.url, database=name,
        sites=[SiteModel.model_validate(wx.SITE_MODEL)], kpi=KPI,
    ) as server:  # fmt: skip
        with server.client("admin") as c:  # a report at the seeded period
            r = c.put(f"/api/v1/sites/{wx.SITE}/reports/2025", json={"values": ANNUAL})
        assert r.status_code == 200, r.text
        yield server


def test_no_server_error_and_responses_match_the_schema(fuzzed: ApiServer) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True, database=None)  # fmt: skip
        @given(operation.as_strategy())
        def run(case: Any) -> None:
            if case.operation.path.endswith("/stream"):
                case.query = {**(case.query or {}), "once": "true"}  # a stream that ends
            if case.path_parameters:
                # valid seeded ids, so generated cases reach the handlers, not just the 404
                case.path_parameters = {
                    k: VALID_PATH.get(k, v) for k, v in case.path_parameters.items()
                }
            for role in ROLES:  # the same generated request under every role
                case.call_and_validate(
                    base_url=fuzzed.url,
                    headers={"Authorization": f"Bearer {fuzzed.tokens[role]}"},
                    checks=[
                        not_a_server_error,
                        response_schema_conformance,
                        content_type_conformance,
                    ],
                    timeout=30,
                )

        run()
