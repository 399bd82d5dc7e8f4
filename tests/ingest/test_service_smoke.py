"""Frames from a gateway-like publisher are stored in InfluxDB exactly (in-process service)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.ingest._support import (
    GatewayPublisher,
    ServiceThread,
    make_config,
    make_frames,
    per_machine,
    wait_until,
)
from zhizao.localstack import MosquittoServer


@pytest.mark.integration
def test_frames_stored_exactly(mosquitto: MosquittoServer, influx_db: Any, tmp_path: Path) -> None:
    config = make_config(
        mosquitto.port, influx_db.url, influx_db.database, tmp_path, mqtt={"client_id": "smoke-1"}
    )
    with ServiceThread(config) as st:
        fs = make_frames("gw-1", 20, 1000)
        pub = GatewayPublisher(mosquitto.port)
        pub.frames(fs)
        pub.close()
        wait_until(lambda: st.service.acked == 20, 60, "20 frames acknowledged")
        counts, sums = per_machine(influx_db)
        assert counts == fs.series_count
        assert sums == fs.series_sum
        assert st.service.samples_written == 20_000
        ok, detail = st.service.health()
        assert ok and detail["unacked_messages"] == 0
