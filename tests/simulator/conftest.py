"""The simulator's MQTT tests subscribe to whole namespaces (``spBv1.0/#``, the enterprise's
topics) and use fixed client ids, so each gets a private broker instead of the session's shared
one, where other tests' Sparkplug and meter traffic would arrive too."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from zhizao.localstack import LocalServer, MosquittoServer


@pytest.fixture
def mosquitto(server_factory: Callable[[LocalServer], LocalServer]) -> MosquittoServer:
    server = server_factory(MosquittoServer())
    assert isinstance(server, MosquittoServer)
    return server
