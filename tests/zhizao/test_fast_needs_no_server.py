"""`make test-fast` (``-m "not integration"``) runs without servers: the conftest's two rules."""

from __future__ import annotations

from typing import cast

import pytest

from tests.conftest import SERVER_FIXTURES, pytest_collection_modifyitems
from zhizao.localstack import InfluxServer, MosquittoServer, PostgresServer


@pytest.mark.parametrize("server_type", [InfluxServer, MosquittoServer, PostgresServer])
def test_an_unmarked_test_that_starts_a_server_fails_naming_the_mark(
    server_type: type[InfluxServer | MosquittoServer | PostgresServer],
) -> None:
    server = server_type()
    try:
        with pytest.raises(pytest.fail.Exception, match=r"not marked integration: add @pytest"):
            server.start()
        assert not server.running
    finally:
        server.cleanup()


class _CollectedTest:
    """What the collection hook reads of a test item: its fixture closure and its marks."""

    def __init__(self, *fixturenames: str) -> None:
        self.fixturenames = list(fixturenames)
        self.marks: list[pytest.MarkDecorator] = []

    def add_marker(self, mark: pytest.MarkDecorator) -> None:
        self.marks.append(mark)


def test_a_test_that_asks_for_a_server_fixture_is_marked_integration() -> None:
    unit = _CollectedTest("tmp_path", "monkeypatch")
    needs_servers = [_CollectedTest("tmp_path", name) for name in sorted(SERVER_FIXTURES)]
    pytest_collection_modifyitems(cast(list[pytest.Item], [unit, *needs_servers]))
    assert unit.marks == []
    for item in needs_servers:
        assert [m.name for m in item.marks] == ["integration"], item.fixturenames
