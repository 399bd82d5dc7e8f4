"""Fuzz: 100,000 random and malformed payloads with valid ones interleaved.

The bulk runs through the in-process pipeline (decode -> validate -> quarantine) and the accepted
samples through the real InfluxWriter; a smaller mix goes through the real broker and service.
Every bad payload must be quarantined once with a reason, every valid sample stored once.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from ingest.frames import DECODE_REASONS, frame_topic
from ingest.influx import InfluxWriter
from ingest.json_codec import JSON_DECODE_REASONS
from ingest.quarantine import QuarantineStore, read_records
from ingest.service import IngestPipeline
from ingest.sparkplug_codec import SPARKPLUG_DECODE_REASONS
from tests.ingest._support import (
    GatewayPublisher,
    ServiceThread,
    make_config,
    make_frames,
    per_machine,
    wait_until,
)
from zhizao.localstack import MosquittoServer

FRAME_TOPIC = frame_topic("s1", "gw-f")
JSON_TOPIC = "factory/acme/s1/a1/l1/m1/energy/power_kw"
SPB_TOPIC = "spBv1.0/g1/NDATA/edge1"
MESSAGE_REASONS = {
    *DECODE_REASONS,
    *JSON_DECODE_REASONS,
    *SPARKPLUG_DECODE_REASONS,
    "too_large",
    "unknown_topic",
    "duplicate_frame",
    "gateway_mismatch",
}


def malformed(rng: random.Random, valid: bytes, i: int) -> tuple[str, bytes]:
    """One bad message of a random kind; never decodable."""
    kind = i % 9
    if kind == 0:
        return FRAME_TOPIC, valid[: rng.randrange(0, len(valid) - 1)]  # truncated frame
    if kind == 1:
        return FRAME_TOPIC, b"ZF" + bytes([rng.choice([0, 2, 3, 9, 255])]) + valid[3:]  # version
    if kind == 2:
        return FRAME_TOPIC, bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 64)))
    if kind == 3:  # a header that lies about its sample count
        head = bytearray(valid)
        meta_len = int.from_bytes(head[4:8], "little")
        meta = msgspec.msgpack.decode(bytes(head[16 : 16 + meta_len]))
        meta[3] = meta[3] + rng.randrange(1, 1000)
        new_meta = msgspec.msgpack.encode(meta)
        if len(new_meta) != meta_len:
            return FRAME_TOPIC, b"ZF\x01"
        head[16 : 16 + meta_len] = new_meta
        return FRAME_TOPIC, bytes(head)
    if kind == 4:
        return FRAME_TOPIC, valid + bytes(rng.randrange(1, 9))  # trailing bytes
    if kind == 5:
        junk = rng.choice(
            [
                b"{",
                b"[1,2]",
                b'{"value": 1}',
                b'{"timestamp_ms": "x", "value": 1}',
                b"\xff\xfe",
                b"null",
                b"",
            ]
        )
        return JSON_TOPIC, junk
    if kind == 6:
        return SPB_TOPIC, bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 40))) + b"\xff"
    if kind == 7:
        return "zhizao/v1/s1/gw-f/other", b"whatever"
    return FRAME_TOPIC, b"ZF\x01\x00" + b"\x00" * (300_000 + rng.randrange(1000))  # huge


@pytest.mark.integration
def test_fuzz_100k_payloads_in_bulk(influx_db: Any, tmp_path: Path) -> None:
    rng = random.Random(5)
    cfg = make_config(
        1883,
        influx_db.url,
        influx_db.database,
        tmp_path,
        json_topics={"prefix": "factory"},
        sparkplug={},
        batch={"max_message_bytes": 262_144},
        quarantine={"path": str(tmp_path / "q.jsonl"), "fsync": False, "max_payload_bytes": 1024},
    )
    pipeline = IngestPipeline(cfg, QuarantineStore(cfg.quarantine))
    n_total, n_valid = 100_000, 2_000
    good = make_frames("gw-f", n_valid, 5)
    valid_at = set(rng.sample(range(n_total), n_valid))
    topics: list[str] = []
    payloads: list[bytes] = []
    bad_kinds: Counter[int] = Counter()
    v = 0
    for i in range(n_total):
        if i in valid_at:
            topics.append(FRAME_TOPIC)
            payloads.append(good.payloads[v])
            v += 1
        else:
            t, p = malformed(rng, good.payloads[rng.randrange(n_valid)], i)
            topics.append(t)
            payloads.append(p)
            bad_kinds[i % 9] += 1

    async def store() -> int:
        written = 0
        async with InfluxWriter(cfg.influx) as writer:
            for lo in range(0, n_total, 10_000):
                prep = pipeline.prepare(topics[lo : lo + 10_000], payloads[lo : lo + 10_000])
                report = await writer.write_batch(prep.table, prep.batch)
                assert len(report.rejected_index) == 0
                written += len(prep.batch) - prep.markers  # markers: extra points
                pipeline.commit(prep)
        return written

    written = asyncio.run(store())
    pipeline.quarantine.close()
    assert written == n_valid * 5
    counts, sums = per_machine(influx_db)
    assert counts == good.series_count and sums == good.series_sum
    recs = list(read_records(cfg.quarantine.path))
    assert len(recs) == n_total - n_valid  # each bad message quarantined exactly once ...
    assert all(
        r.kind == "payload" and r.reason in MESSAGE_REASONS for r in recs
    )  # ... with a reason
    by_reason = Counter(r.reason for r in recs)
    assert by_reason["too_large"] == bad_kinds[8]
    assert by_reason["unknown_topic"] == bad_kinds[7]
    assert by_reason["unsupported_version"] == bad_kinds[1]
    assert sum(pipeline.quarantine.counts.values()) == n_total - n_valid


@pytest.mark.integration
def test_fuzz_through_broker_service_stays_up(
    mosquitto: MosquittoServer, influx_db: Any, tmp_path: Path
) -> None:
    rng = random.Random(11)
    cfg = make_config(
        mosquitto.port,
        influx_db.url,
        influx_db.database,
        tmp_path,
        mqtt={"client_id": "fuzz-1", "group": "fuzz"},
        json_topics={"prefix": "factory"},
        sparkplug={},
        batch={"max_message_bytes": 262_144},
    )
    good = make_frames("gw-f", 100, 20)
    msgs: list[tuple[str, bytes]] = []
    n_bad = 0
    for i in range(2_000):
        if i % 20 == 0:
            msgs.append((FRAME_TOPIC, good.payloads[i // 20]))
        elif i % 9 != 7:  # kind 7 goes to a topic ingest does not subscribe: never delivered
            msgs.append(malformed(rng, good.payloads[0], i))
            n_bad += 1
    pub = GatewayPublisher(mosquitto.port, client_id="fuzz-pub")
    with ServiceThread(cfg) as st:
        for topic, payload in msgs:
            pub.client.publish(topic, payload, qos=1)
        wait_until(lambda: st.service.acked == len(msgs), 60, "every message acknowledged")
        ok, detail = st.service.health()
        assert ok and detail["mqtt_connected"]
        st.service.quarantine.flush()
        assert sum(st.service.quarantine.counts.values()) == n_bad
    pub.close()
    counts, sums = per_machine(influx_db)
    assert counts == good.series_count and sums == good.series_sum
    assert np.isclose(sum(sums.values()), sum(good.series_sum.values()))


def test_bit_flipped_frames_never_break_the_pipeline(tmp_path: Path) -> None:
    """12,000 valid frames, JSON and Sparkplug messages with 1-4 random bytes changed: decoding
    may succeed (a flipped value) or fail, but nothing raises, no bug path (internal_error) is
    taken, and every sample of a decoded message is either accepted or quarantined."""
    from ingest.validation import SAMPLE_REASONS
    from tests.ingest.test_pipeline import spb
    from zhizao.sparkplug import DataType

    rng = random.Random(23)
    cfg = make_config(
        1883,
        "http://127.0.0.1:8086",
        "db",
        tmp_path,
        validation={"max_past_s": 0, "max_future_s": 0},
        quarantine={"path": str(tmp_path / "q.jsonl"), "fsync": False},
        json_topics={"prefix": "factory"},
        sparkplug={},
    )
    pipeline = IngestPipeline(cfg, QuarantineStore(cfg.quarantine))
    birth = spb(
        [
            ("bdSeq", None, DataType.Int64, 0),
            ("t", 1, DataType.Double, 1.0),
            ("n", 2, DataType.Int32, 5),
            ("s", 3, DataType.String, "x"),
        ]
    )
    data = spb(
        [
            (None, 1, DataType.Double, 2.0),
            (None, 2, DataType.Int32, -7),
            (None, 3, DataType.String, "y"),
        ]
    )
    bases = [
        *((FRAME_TOPIC, f) for f in make_frames("gw-x", 20, 40).payloads),
        (JSON_TOPIC, b'{"timestamp_ms": 1767225600000, "value": 12.5, "quality": 0}'),
        (
            JSON_TOPIC.replace("power_kw", "state"),
            b'{"timestamp_ms": 1767225600000, "value": "RUN"}',
        ),
        ("spBv1.0/g1/NBIRTH/edge1", birth),
        (SPB_TOPIC, data),
    ]
    topics: list[str] = []
    payloads: list[bytes] = []
    for i in range(12_000):
        topic, original = bases[i % len(bases)]
        b = bytearray(original)
        for _ in range(rng.randrange(1, 5)):
            b[rng.randrange(len(b))] = rng.getrandbits(8)
        topics.append(topic)
        payloads.append(bytes(b))
    samples_in = accepted = 0
    for lo in range(0, len(payloads), 2_000):
        prep = pipeline.prepare_safe(topics[lo : lo + 2_000], payloads[lo : lo + 2_000])
        samples_in += sum(prep.samples_in.values())
        accepted += prep.accepted
    counts = pipeline.quarantine.counts
    assert "internal_error" not in counts
    pipeline.quarantine.flush()
    # a whole message refused (a JSON or Sparkplug type change too) is a payload record: the
    # samples of decoded messages are in the sample records
    records = list(read_records(pipeline.quarantine.path))
    rejected_samples = sum(r.count for r in records if r.kind == "samples")
    assert {r.reason for r in records if r.kind == "samples"} <= set(SAMPLE_REASONS)
    assert samples_in == accepted + rejected_samples
    assert accepted > 0 and sum(counts.values()) > 0
