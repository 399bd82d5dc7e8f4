"""The in-process pipeline: routing, validation reasons, quarantine records, JSON and Sparkplug
codecs, duplicate frames, the sample config."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from ingest.config import IngestConfig
from ingest.frames import CONTENT_TYPE, FrameCodec, GatewayFrame, frame_topic
from ingest.quarantine import QuarantineConfig, QuarantineStore, read_records, record_frame
from ingest.service import IngestPipeline
from ingest.validation import FrameDeduplicator
from tests.ingest._support import make_config, make_frames
from zhizao.config import load_model
from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable
from zhizao.quality import Quality
from zhizao.sparkplug import DataType, MessageType, SparkplugTopic, pb, set_metric_value

REPO = Path(__file__).resolve().parents[2]
NOW_NS = 1_767_225_600_000_000_000 + 3600 * 10**9


def pipeline(tmp_path: Path, **sections: Any) -> IngestPipeline:
    cfg = make_config(
        1883,
        "http://127.0.0.1:8086",
        "db",
        tmp_path,
        json_topics={"prefix": "factory"},
        sparkplug={"measurement": "sparkplug"},
        **{"quality_markers": False, **sections},
    )
    return IngestPipeline(cfg, QuarantineStore(cfg.quarantine))


def records(p: IngestPipeline) -> list[dict[str, object]]:
    p.quarantine.flush()
    return [r.raw for r in read_records(p.quarantine.path)]


def test_sample_config_parses() -> None:
    cfg = load_model(IngestConfig, REPO / "ingest" / "ingest.sample.yaml")
    assert cfg.mqtt.group == "ingest" and cfg.batch.flush_points == 50_000
    assert cfg.counters[0].rollover_limit == 65536 and cfg.counters[1].inc_field == "energy_kwh_inc"
    assert cfg.json_topics is not None and cfg.sparkplug is not None


def test_validation_reasons_per_sample_rest_proceeds(tmp_path: Path) -> None:
    p = pipeline(
        tmp_path,
        validation={
            "max_future_s": 60,
            "max_past_s": 86400,
            "allowed_measurements": ["spindle", "counter"],
        },
    )
    keys = [
        SeriesKey.make("spindle", {"machine": "m1"}, "speed_rpm", FieldType.FLOAT),
        SeriesKey.make("secret", {"machine": "m1"}, "x", FieldType.FLOAT),
        SeriesKey.make("counter", {"machine": "m1"}, "parts", FieldType.INT),
    ]
    t = SeriesTable.of(keys)
    ts = [
        NOW_NS,
        NOW_NS + 1,
        NOW_NS + 2,
        NOW_NS + 120 * 10**9,
        NOW_NS - 2 * 86400 * 10**9,
        NOW_NS + 3,
        NOW_NS + 4,
    ]
    b = Batch.build(
        t, [0, 0, 1, 0, 0, 2, 0], ts, np.array([1.0, np.nan, 5.0, 2.0, 3.0, 7, np.inf], object)
    )
    frame1 = FrameCodec.encode(GatewayFrame("gw", 1, keys, b))
    # a second gateway declares counter.parts as FLOAT: a type change for that sample only
    k2 = [SeriesKey.make("counter", {"machine": "m1"}, "parts", FieldType.FLOAT), keys[0]]
    b2 = Batch.build(SeriesTable.of(k2), [0, 1], [NOW_NS + 5, NOW_NS + 6], [1.5, 9.0])
    frame2 = FrameCodec.encode(GatewayFrame("gw2", 1, k2, b2))
    prep = p.prepare(
        [frame_topic("s", "gw"), frame_topic("s", "gw2")], [frame1, frame2], now_ns=NOW_NS
    )
    assert prep.accepted == 3  # 1.0, the int 7, and gw2's 9.0
    assert sorted(prep.batch.values_for(p.table).tolist()) == [1.0, 7, 9.0]
    recs = records(p)
    got = {(r["reason"], r["topic"]): r["samples"]["value"] for r in recs}  # type: ignore[index]
    assert got == {
        ("non_finite", "zhizao/v1/s/gw/frames"): ["nan", "inf"],
        ("unknown_series", "zhizao/v1/s/gw/frames"): [5.0],
        ("ts_future", "zhizao/v1/s/gw/frames"): [2.0],
        ("ts_past", "zhizao/v1/s/gw/frames"): [3.0],
        ("type_change", "zhizao/v1/s/gw2/frames"): [1.5],
    }
    tc = next(r for r in recs if r["reason"] == "type_change")
    assert tc["series"] == [
        {"measurement": "counter", "tags": {"machine": "m1"}, "field": "parts", "dtype": "float"}
    ]
    assert dict(p.quarantine.counts) == {
        "non_finite": 2,
        "unknown_series": 1,
        "ts_future": 1,
        "ts_past": 1,
        "type_change": 1,
    }


def test_duplicate_frames_after_commit_and_unknown_topics(tmp_path: Path) -> None:
    p = pipeline(tmp_path)
    fs = make_frames("gw-d", 3, 10)
    topic = frame_topic("s1", "gw-d")
    first = p.prepare([topic] * 3, fs.payloads, now_ns=NOW_NS)
    assert first.accepted == 30 and first.frames == [("gw-d", 0), ("gw-d", 1), ("gw-d", 2)]
    # not yet stored: a redelivery is processed again (InfluxDB overwrites identical points)
    assert p.prepare([topic], fs.payloads[:1], now_ns=NOW_NS).accepted == 10
    p.commit(first)
    again = p.prepare(
        [topic, "other/topic", topic], [fs.payloads[1], b"x", fs.payloads[2]], now_ns=NOW_NS
    )
    assert again.accepted == 0
    reasons = sorted(str(r["reason"]) for r in records(p))
    assert reasons == ["duplicate_frame", "duplicate_frame", "unknown_topic"]
    # a frame that claims another gateway than its topic names
    spoof = p.prepare(
        [frame_topic("s1", "gw-other")], [make_frames("gw-d", 1, 5, start_seq=9).payloads[0]]
    )
    assert spoof.accepted == 0 and spoof.frames == []
    assert records(p)[-1]["reason"] == "gateway_mismatch"
    # a frame labelled as another format (MQTT 5 Content Type)
    later = p.prepare(
        [topic, topic],
        [make_frames("gw-d", 1, 5, start_seq=10).payloads[0]] * 2,
        content_types=["application/vnd.zhizao.frame.v2", CONTENT_TYPE],
    )
    assert later.accepted == 5 and records(p)[-1]["reason"] == "unsupported_content_type"


def test_deduplicator_window_and_gaps() -> None:
    d = FrameDeduplicator(window=3)
    for seq in (1, 2, 5):
        d.commit("g", seq)
    assert d.gaps == 2 and d.is_duplicate("g", 2) and not d.is_duplicate("h", 2)
    d.commit("g", 6)
    assert not d.is_duplicate("g", 1)  # fell out of the window


def test_json_codec_asset_path_types_and_errors(tmp_path: Path) -> None:
    p = pipeline(tmp_path)
    topics = [
        "factory/acme/plant-1/press/line-2/m7/energy/power_kw",
        "factory/acme/plant-1/press/line-2/m7/state/running",
        "factory/acme/plant-1/press/line-2/m7/spindle/program",
        "factory/acme/plant-1/energy/power_kw",
        "factory/acme/plant-1/press/line-2/m7/energy/power_kw",
        "factory/acme/energy",
        "factory/acme/plant-1/press/line-2/m7/energy/power_kw",
        "factory/acme/plant-1/press/line-2/m7/energy/power_kw",
    ]
    payloads = [
        b'{"timestamp_ms": 1767225600000, "value": 12}',
        b'{"timestamp_ms": 1767225600001, "value": true}',
        b'{"timestamp_ms": 1767225600002, "value": "O1001", "quality": 1}',
        b'{"timestamp_ms": 1767225600003, "value": 2.5}',
        b'{"timestamp_ms": 1767225600004, "value": "oops"}',
        b'{"timestamp_ms": 1767225600005, "value": 1}',
        b"not json",
        b'{"value": 1}',
    ]
    prep = p.prepare(topics, payloads, now_ns=NOW_NS)
    assert prep.accepted == 4
    keys = [p.table.keys[s] for s in prep.batch.series.tolist()]
    assert keys[0] == SeriesKey.make(
        "energy",
        {
            "enterprise": "acme",
            "site": "plant-1",
            "area": "press",
            "line": "line-2",
            "machine": "m7",
        },
        "power_kw",
    )
    assert [k.dtype for k in keys] == [
        FieldType.FLOAT,
        FieldType.BOOL,
        FieldType.STRING,
        FieldType.FLOAT,
    ]
    assert keys[3].tag_dict == {"enterprise": "acme", "site": "plant-1"}
    assert prep.batch.values_for(p.table).tolist() == [12.0, True, "O1001", 2.5]
    assert prep.batch.ts_ns.tolist() == [1767225600000000000 + i * 10**6 for i in range(4)]
    assert prep.batch.quality.tolist() == [0, 0, 1, 0]
    # the type change refuses its message at decoding, in arrival order with the other refusals
    assert [r["reason"] for r in records(p)] == ["type_change", "bad_topic", "bad_json", "bad_json"]


def spb(
    metrics: list[tuple[str | None, int | None, int, object]], ts: int = 1767225600000
) -> bytes:
    payload = pb.Payload()
    payload.timestamp = ts
    payload.seq = 0
    for name, alias, dt, value in metrics:
        m = payload.metrics.add()
        if name is not None:
            m.name = name
        if alias is not None:
            m.alias = alias
        set_metric_value(m, dt, value)  # type: ignore[arg-type]
    return payload.SerializeToString()


def test_sparkplug_birth_aliases_and_no_birth(tmp_path: Path) -> None:
    p = pipeline(tmp_path)
    nbirth = SparkplugTopic("plant", MessageType.NBIRTH, "edge1").format()
    dbirth = SparkplugTopic("plant", MessageType.DBIRTH, "edge1", "meter7").format()
    ddata = SparkplugTopic("plant", MessageType.DDATA, "edge1", "meter7").format()
    ndata_other = SparkplugTopic("plant", MessageType.NDATA, "edge2").format()
    msgs = [
        (nbirth, spb([("bdSeq", None, DataType.Int64, 0), ("uptime_s", 1, DataType.Int64, 5)])),
        (
            dbirth,
            spb([("power_kw", 10, DataType.Double, 1.5), ("energy_kwh", 11, DataType.UInt32, 100)]),
        ),
        (
            ddata,
            spb(
                [(None, 10, DataType.Double, 2.5), (None, 11, DataType.UInt32, 4294967295)],
                ts=1767225601000,
            ),
        ),
        (ndata_other, spb([(None, 1, DataType.Int64, 1)])),
        (ddata, spb([(None, 99, DataType.Double, 1.0)])),
        (ddata, b"\xff\xff garbage"),
    ]
    prep = p.prepare([m[0] for m in msgs], [m[1] for m in msgs], now_ns=NOW_NS)
    rows = sorted(
        (p.table.keys[s].field, p.table.keys[s].tag_dict.get("device"), ts, v)
        for s, ts, v in zip(
            prep.batch.series.tolist(),
            prep.batch.ts_ns.tolist(),
            prep.batch.values_for(p.table).tolist(),
            strict=True,
        )
    )
    assert rows == [
        ("energy_kwh", "meter7", 1767225600000000000, 100),
        ("energy_kwh", "meter7", 1767225601000000000, 4294967295),
        ("power_kw", "meter7", 1767225600000000000, 1.5),
        ("power_kw", "meter7", 1767225601000000000, 2.5),
        ("uptime_s", None, 1767225600000000000, 5),
    ]
    assert [r["reason"] for r in records(p)] == ["no_birth", "unknown_alias", "bad_protobuf"]
    assert p.sparkplug is not None and p.sparkplug.rebirth_needed == {
        ("plant", "edge2"),
        ("plant", "edge1"),
    }


def test_quarantine_record_round_trip(tmp_path: Path) -> None:
    q = QuarantineStore(QuarantineConfig(path=str(tmp_path / "q.jsonl"), max_payload_bytes=4))
    keys = [
        SeriesKey.make("m", {"site": "s"}, "f", FieldType.FLOAT),
        SeriesKey.make("m", {"site": "s"}, "s", FieldType.STRING),
    ]
    t = SeriesTable.of(keys)
    b = Batch.build(t, [0, 1, 0], [1, 2, 3], np.array([np.nan, "x", -np.inf], object))
    q.add_samples(t, b, np.array([0, 1, 2]), "non_finite", "why", topic="a/b")
    q.add_payload("t/x", b"123456", "bad_magic", "not a frame")
    q.close()
    recs = list(read_records(tmp_path / "q.jsonl"))
    assert [r.kind for r in recs] == ["samples", "payload"]
    assert (
        recs[1].raw["payload_truncated"] and not recs[1].replayable and recs[1].payload() == b"1234"
    )
    table, batch = record_frame(recs[0])
    vals = batch.values_for(table).tolist()
    assert np.isnan(vals[0]) and vals[1:] == ["x", -np.inf]
    assert batch.ts_ns.tolist() == [1, 2, 3] and recs[0].count == 3
    assert orjson.loads((tmp_path / "q.jsonl").read_bytes().splitlines()[0])["id"] == recs[0].id


def test_oversized_and_counter_increments_in_pipeline(tmp_path: Path) -> None:
    p = pipeline(
        tmp_path,
        batch={"max_message_bytes": 2048},
        counters=[{"measurement": "counter", "field": "parts"}],
    )
    key = SeriesKey.make("counter", {"machine": "m1"}, "parts", FieldType.INT)
    t = SeriesTable.of([key])
    b = Batch.build(t, [0, 0, 0], [NOW_NS, NOW_NS + 1, NOW_NS + 2], [5, 9, 2])
    frame = FrameCodec.encode(GatewayFrame("gw", 1, [key], b))
    huge = b"ZF\x01" + b"\0" * 5000
    prep = p.prepare([frame_topic("s", "gw")] * 2, [frame, huge], now_ns=NOW_NS + 10)
    vals = dict(
        zip(
            (
                (p.table.keys[s].field, ts)
                for s, ts in zip(prep.batch.series.tolist(), prep.batch.ts_ns.tolist(), strict=True)
            ),
            prep.batch.values_for(p.table).tolist(),
            strict=True,
        )
    )
    assert vals == {
        ("parts", NOW_NS): 5,
        ("parts", NOW_NS + 1): 9,
        ("parts", NOW_NS + 2): 2,
        ("parts_inc", NOW_NS + 1): 4,
        ("parts_inc", NOW_NS + 2): 2,
    }
    assert [r["reason"] for r in records(p)] == ["too_large"]
    # each increment sits right after its raw sample (one line protocol line for both)
    assert [p.table.keys[s].field for s in prep.batch.series.tolist()] == [
        "parts",
        "parts",
        "parts_inc",
        "parts",
        "parts_inc",
    ]
    assert prep.message_of.tolist() == [0, 0, 0, 0, 0]


def test_bad_config_names_key(tmp_path: Path) -> None:
    from zhizao.errors import ConfigError

    bad = tmp_path / "i.yaml"
    bad.write_text("influx: {database: x}\nbatch: {flush_points: -1}\n")
    with pytest.raises(ConfigError) as info:
        load_model(IngestConfig, bad)
    assert "batch.flush_points" in str(info.value) and str(bad) in str(info.value)
    _ = time


def test_a_bug_on_one_message_quarantines_it_and_keeps_the_rest(tmp_path: Path) -> None:
    p = pipeline(tmp_path)
    assert p.json is not None
    real = p.json.decode_many

    def buggy(topics: Any, payloads: Any, *rest: Any) -> Any:
        if any(b"boom" in x for x in payloads):
            raise RuntimeError("simulated bug")
        return real(topics, payloads, *rest)

    p.json.decode_many = buggy  # type: ignore[method-assign]
    fs = make_frames("gw-b", 2, 5)
    topic = "factory/acme/s1/energy/power_kw"
    prep = p.prepare_safe(
        [frame_topic("s1", "gw-b"), topic, topic, frame_topic("s1", "gw-b")],
        [
            fs.payloads[0],
            b'{"timestamp_ms": 1767225600000, "value": 1}',
            b'{"boom": 1}',
            fs.payloads[1],
        ],
    )
    assert prep.accepted == 11 and len(prep.batch) == 11
    assert sorted(set(prep.message_of.tolist())) == [0, 1, 3]
    assert prep.frames == [("gw-b", 0), ("gw-b", 1)]
    recs = records(p)
    assert [(r["reason"], r["topic"]) for r in recs] == [("internal_error", topic)]


def test_sparkplug_stale_death_of_an_old_session_is_ignored(tmp_path: Path) -> None:
    p = pipeline(tmp_path)
    t = {
        mt: SparkplugTopic("g", mt, "edge").format()
        for mt in MessageType
        if not mt.is_device and mt is not MessageType.STATE
    }
    data = spb([(None, 1, DataType.Double, 3.0)], ts=1767225602000)
    msgs = [
        (
            t[MessageType.NBIRTH],
            spb([("bdSeq", None, DataType.Int64, 1), ("temp_c", 1, DataType.Double, 1.0)]),
        ),
        (
            t[MessageType.NBIRTH],
            spb(
                [("bdSeq", None, DataType.Int64, 2), ("temp_c", 1, DataType.Double, 2.0)],
                ts=1767225601000,
            ),
        ),
        (
            t[MessageType.NDEATH],
            spb([("bdSeq", None, DataType.Int64, 1)]),
        ),  # the old session's will
        (t[MessageType.NDATA], data),
        (t[MessageType.NDEATH], spb([("bdSeq", None, DataType.Int64, 2)])),
        (t[MessageType.NDATA], data),
    ]
    prep = p.prepare([m[0] for m in msgs], [m[1] for m in msgs], now_ns=NOW_NS)
    # the real death restates the last value as STALE (the old session's will changes nothing)
    assert prep.batch.values_for(p.table).tolist() == [1.0, 2.0, 3.0, 3.0]
    assert prep.batch.quality.tolist() == [0, 0, 0, Quality.STALE]
    assert p.sparkplug is not None and p.sparkplug.stale_deaths == 1
    assert [r["reason"] for r in records(p)] == ["no_birth"]  # only after the real death
