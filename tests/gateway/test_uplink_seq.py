"""Frame sequence numbers come from blocks reserved in the outbox: strictly increasing and
unique across restarts (a crash skips the rest of a block, never repeats a number), one commit
per block instead of one per frame."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from gateway.config import GatewayIdentityConfig, MqttUplinkConfig
from gateway.outbox import SqliteOutbox
from gateway.uplink import MqttUplink, SequenceBlocks
from ingest.frames import FrameCodec, frame_topic
from tests.gateway.helpers import wait_for
from tests.gateway.mqtt_helpers import Publisher
from zhizao.localstack import MosquittoServer
from zhizao.model import Batch, FieldType, SeriesKey


def _stored_seq(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT value FROM meta WHERE key = 'frame_seq'").fetchone()[0])


def test_blocks_skip_after_a_crash_and_continue_after_a_clean_stop(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    seen: list[int] = []
    with SqliteOutbox(path) as outbox:
        seqs = SequenceBlocks(outbox, block=10)
        seen += [seqs.next() for _ in range(3)]
        assert _stored_seq(path) == 10  # the whole block is stored before the first is used
        assert seqs.reservations == 1
    # a crash: the block is not given back; the next process starts after it
    with SqliteOutbox(path) as outbox:
        seqs = SequenceBlocks(outbox, block=10)
        seen += [seqs.next() for _ in range(25)]
        assert seqs.reservations == 3  # 25 frames, 3 commits
        seqs.give_back()  # a clean stop
        assert _stored_seq(path) == seen[-1]
    with SqliteOutbox(path) as outbox:
        seqs = SequenceBlocks(outbox, block=10)
        seen.append(seqs.next())
        # the frame numbering that went before (next_seq) and after agree
        assert outbox.next_seq() > seen[-1]
    assert seen[:3] == [1, 2, 3] and seen[3] == 11 and seen[-1] == seen[-2] + 1
    assert all(b > a for a, b in itertools.pairwise(seen))


@pytest.mark.integration
async def test_uplink_frames_stay_unique_and_increasing_across_restarts(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    ident = GatewayIdentityConfig(id="gw-seq", enterprise="acme", site="s1", state_dir=tmp_path)
    config = MqttUplinkConfig.model_validate(
        {
            "type": "mqtt",
            "broker": {"port": mosquitto.port, "client_id": "gw-seq-uplink"},
            "confirmation": "broker",
            "max_samples_per_frame": 10,
        }
    )
    receiver = Publisher(mosquitto.port, subscribe=frame_topic("s1", "gw-seq"))
    path = tmp_path / "o.sqlite"
    total = 0
    try:
        for run, clean in enumerate((False, True, True)):
            with SqliteOutbox(path) as outbox:
                idx = outbox.series_index(SeriesKey.make("m", {"site": "s1"}, "v", FieldType.FLOAT))
                for k in range(5):  # five frames of 10 samples per run
                    ts = np.arange(10, dtype=np.int64) + 1000 * (10 * run + k)
                    outbox.append(Batch.build(outbox.table, np.full(10, idx), ts, ts * 1.0))
                total += 5
                uplink = MqttUplink(config, outbox, ident)
                task = asyncio.create_task(uplink.run())
                expected = total
                await wait_for(lambda: len(receiver.messages()) >= expected, 30, "frames")  # noqa: B023
                await wait_for(lambda: outbox.depth_samples == 0, 30, "acknowledged")
                if clean:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                else:  # a crash: the process dies without its finally blocks
                    uplink.seqs.give_back = lambda: None  # type: ignore[method-assign]
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
    finally:
        receiver.close()
    seqs = [FrameCodec.decode(payload).seq for _, payload in receiver.messages()]
    assert len(seqs) == 15 and len(set(seqs)) == 15
    assert seqs == sorted(seqs)
    # run 1 crashed after 1..5 of its block: run 2 starts after the block; run 2 stopped cleanly
    assert seqs[:5] == [1, 2, 3, 4, 5] and seqs[5] > 5 and seqs[10] == seqs[9] + 1
