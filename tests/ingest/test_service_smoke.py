"""Frames from a gateway-like publisher are stored in InfluxDB exactly (in-process service)."""

from __future__ import annotations

import os
import uuid
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
    # a group of its own: the session-wide broker keeps earlier tests' offline persistent
    # sessions in the default group, and a shared subscription deals messages to them too
    config = make_config(
        mosquitto.port, influx_db.url, influx_db.database, tmp_path,
        mqtt={"client_id": "smoke-1", "group": f"smoke-{uuid.uuid4().hex[:8]}"},
    )  # fmt: skip
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
        # CI must measure and test the compiled layout, not the no-compiler fallback
        if os.environ.get("CI") == "true":
            assert detail["encoder_kernel"] == "c"
        registry = st.service.metrics.registry
        assert registry.get_sample_value("zhizao_ingest_samples_written_total") == 20_000
        assert registry.get_sample_value("zhizao_ingest_messages_total", {"codec": "frames"}) == 20
        frame_age = registry.get_sample_value("zhizao_ingest_frame_age_seconds")
        assert frame_age is not None and 0 < frame_age < 120


@pytest.mark.integration
def test_counter_increments_stored_exactly(
    mosquitto: MosquittoServer, influx_db: Any, tmp_path: Path
) -> None:
    """A 16-bit part counter with a reset and a rollover, and a kWh meter with a reset, sent as
    frames through the broker: raw values and increments in InfluxDB are exact."""
    import numpy as np

    from ingest.frames import FrameCodec, GatewayFrame, frame_topic
    from tests.ingest._support import BASE_TS_NS, GatewayPublisher
    from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable

    config = make_config(
        mosquitto.port,
        influx_db.url,
        influx_db.database,
        tmp_path,
        mqtt={"client_id": "counters-1", "group": "counters"},
        counters=[
            {"measurement": "counter", "field": "parts", "rollover_limit": 65536},
            {"measurement": "energy", "field": "energy_kwh"},
        ],
    )
    keys = [
        SeriesKey.make("counter", {"machine": "m1"}, "parts", FieldType.INT),
        SeriesKey.make("energy", {"meter": "e1"}, "energy_kwh", FieldType.FLOAT),
    ]
    table = SeriesTable.of(keys)
    parts = [65500, 65510, 65530, 4, 20, 3, 9]  # rollover after 65530, reset 20 -> 3
    kwh = [1000.25, 1000.75, 3.5, 4.0]  # meter replaced after 1000.75
    frames = []
    for seq, (p_vals, e_vals) in enumerate(
        ((parts[:3], kwh[:2]), (parts[3:5], kwh[2:3]), (parts[5:], kwh[3:]))
    ):
        n_p, n_e = len(p_vals), len(e_vals)
        ts = [BASE_TS_NS + (seq * 10 + i) * 10**9 for i in range(n_p)] + [
            BASE_TS_NS + (seq * 10 + i) * 10**9 for i in range(n_e)
        ]
        batch = Batch.build(table, [0] * n_p + [1] * n_e, ts, np.array(p_vals + e_vals, object))
        frames.append(FrameCodec.encode(GatewayFrame("gw-c", seq, keys, batch)))
    with ServiceThread(config) as st:
        pub = GatewayPublisher(mosquitto.port, client_id="counter-pub")
        pub.publish(frame_topic("s1", "gw-c"), frames)
        pub.close()
        wait_until(lambda: st.service.acked == 3, 60, "3 frames")
    res = influx_db.query('SELECT "parts", "parts_inc" FROM "counter"')
    rows = [v[1:] for v in res["results"][0]["series"][0]["values"]]
    assert rows == [[65500, None], [65510, 10], [65530, 20], [4, 10], [20, 16], [3, 3], [9, 6]]
    res = influx_db.query('SELECT "energy_kwh", "energy_kwh_inc" FROM "energy"')
    rows = [v[1:] for v in res["results"][0]["series"][0]["values"]]
    assert rows == [[1000.25, None], [1000.75, 0.5], [3.5, 3.5], [4.0, 0.5]]
    res = influx_db.query('SELECT sum("parts_inc") FROM "counter"')
    assert res["results"][0]["series"][0]["values"][0][1] == 65  # 9 - 65500 + 65536 + 20 (reset)


@pytest.mark.integration
def test_counter_state_seeded_from_influx_across_a_restart(
    mosquitto: MosquittoServer, influx_db: Any, tmp_path: Path
) -> None:
    """With counter_seed_from_influx the first sample after a restart gets its increment from
    the last stored raw value; without it, that interval would be missing."""
    import numpy as np

    from ingest.frames import FrameCodec, GatewayFrame, frame_topic
    from tests.ingest._support import BASE_TS_NS, GatewayPublisher
    from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable

    keys = [
        SeriesKey.make("counter", {"machine": "m1", "line": "l1"}, "parts", FieldType.INT),
        SeriesKey.make("energy", {"meter": "e1"}, "energy_kwh", FieldType.FLOAT),
    ]
    table = SeriesTable.of(keys)

    def frame(seq: int, parts: int, kwh: float) -> bytes:
        ts = BASE_TS_NS + seq * 10**9
        batch = Batch.build(table, [0, 1], [ts, ts], np.array([parts, kwh], object))
        return FrameCodec.encode(GatewayFrame("gw-seed", seq, keys, batch))

    def config(client_id: str, seed: bool) -> Any:
        return make_config(
            mosquitto.port,
            influx_db.url,
            influx_db.database,
            tmp_path,
            mqtt={"client_id": client_id, "group": "seed"},
            counters=[
                {"measurement": "counter", "field": "parts"},
                {"measurement": "energy", "field": "energy_kwh"},
            ],
            counter_seed_from_influx=seed,
        )

    pub = GatewayPublisher(mosquitto.port, client_id="seed-pub")
    topic = frame_topic("s1", "gw-seed")
    with ServiceThread(config("seed-1", seed=True)) as st:  # nothing stored yet: seeds nothing
        pub.publish(topic, [frame(0, 100, 10.0), frame(1, 110, 10.5)])
        wait_until(lambda: st.service.acked == 2, 60, "first 2 frames")
    with ServiceThread(config("seed-1", seed=True)) as st:  # restarted (same session)
        assert len(st.service.pipeline.counters.specs) == 2
        pub.publish(topic, [frame(2, 125, 11.25), frame(3, 2, 0.5)])  # then both reset
        wait_until(lambda: st.service.acked == 2, 60, "next 2 frames")
    pub.close()
    res = influx_db.query('SELECT "parts", "parts_inc" FROM "counter"')
    assert [v[1:] for v in res["results"][0]["series"][0]["values"]] == [
        [100, None],
        [110, 10],
        [125, 15],  # from the seeded 110
        [2, 2],
    ]
    res = influx_db.query('SELECT "energy_kwh", "energy_kwh_inc" FROM "energy"')
    assert [v[1:] for v in res["results"][0]["series"][0]["values"]] == [
        [10.0, None],
        [10.5, 0.5],
        [11.25, 0.75],
        [0.5, 0.5],
    ]


async def test_seeding_with_influx_unreachable_is_not_fatal(tmp_path: Path) -> None:
    from ingest.service import IngestService
    from zhizao.localstack import free_port

    config = make_config(
        1883,
        f"http://127.0.0.1:{free_port()}",
        "db",
        tmp_path,
        counters=[{"measurement": "counter", "field": "parts"}],
        influx={"timeout_s": 2},
    )
    assert await IngestService(config).seed_counters() == 0
