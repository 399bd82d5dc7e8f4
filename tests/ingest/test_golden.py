"""Golden byte vectors: committed inputs, committed frame bytes and committed line protocol.

A change to both an encoder and its decoder passes every round-trip test and still breaks the
gateways in the field (or the points already stored); these files pin the bytes instead:

* ``golden/frame_v1.json`` -> ``golden/frame_v1.bin``: the gateway's frame encoder
  (``FrameCodec.encode``, what ``gateway.uplink`` publishes) must produce exactly these bytes,
  and the decoder must read them back to the same keys and samples;
* ``golden/<codec>.input`` -> ``golden/<codec>.lp``: each ingest codec, through the pipeline
  (validation, quality markers, counter increments) and the line-protocol encoder, must write
  exactly this line protocol.

After a deliberate format change, regenerate with ``ZHIZAO_WRITE_GOLDEN=1`` and review the diff
(a frame format change also needs a new format version).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from ingest.frames import FrameCodec, GatewayFrame, frame_topic
from ingest.lineprotocol import LineProtocolEncoder
from ingest.quarantine import QuarantineStore
from ingest.service import IngestPipeline
from tests.ingest._support import make_config
from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable

GOLDEN = Path(__file__).parent / "golden"
WRITE = os.environ.get("ZHIZAO_WRITE_GOLDEN") == "1"
NOW_NS = 1_767_229_200_000_000_000  # 2026-01-01T01:00Z: every input lies before it


def _check(name: str, data: bytes) -> None:
    path = GOLDEN / name
    if WRITE:
        path.write_bytes(data)
    assert path.exists(), f"{path} missing: run with ZHIZAO_WRITE_GOLDEN=1 and commit it"
    assert data == path.read_bytes(), f"{name} differs from the committed golden bytes"


def _frame_case() -> GatewayFrame:
    case = orjson.loads((GOLDEN / "frame_v1.json").read_bytes())
    keys = [
        SeriesKey.make(k["measurement"], k["tags"], k["field"], FieldType.parse(k["type"]))
        for k in case["keys"]
    ]
    table = SeriesTable.of(keys)
    s = case["samples"]
    values = np.empty(len(s), object)
    values[:] = [row[2] for row in s]
    batch = Batch.build(table, [r[0] for r in s], [r[1] for r in s], values, [r[3] for r in s])
    return GatewayFrame(
        case["gateway_id"], case["seq"], keys, batch, case["created_ns"], case["session"]
    )


def test_frame_v1_bytes_are_golden() -> None:
    frame = _frame_case()
    data = FrameCodec.encode(frame)
    _check("frame_v1.bin", data)
    back = FrameCodec.decode((GOLDEN / "frame_v1.bin").read_bytes())
    assert (back.gateway_id, back.seq, back.created_ns, back.session) == (
        frame.gateway_id,
        frame.seq,
        frame.created_ns,
        frame.session,
    )
    assert back.table_keys == frame.table_keys
    table = SeriesTable.of(frame.table_keys)
    assert back.batch.series.tolist() == frame.batch.series.tolist()
    assert back.batch.ts_ns.tolist() == frame.batch.ts_ns.tolist()
    assert back.batch.quality.tolist() == frame.batch.quality.tolist()
    assert back.batch.values_for(table).tolist() == frame.batch.values_for(table).tolist()


def _inputs(codec: str) -> tuple[list[str], list[bytes]]:
    """``<codec>.input``: one message per line, ``topic<TAB>payload`` (base64 for binary)."""
    topics, payloads = [], []
    for line in (GOLDEN / f"{codec}.input").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        topic, payload = line.split("\t", 1)
        topics.append(topic)
        payloads.append(base64.b64decode(payload) if codec != "json" else payload.encode())
    return topics, payloads


def _pipeline(tmp_path: Path, **sections: Any) -> IngestPipeline:
    cfg = make_config(1883, "http://127.0.0.1:8086", "db", tmp_path, **sections)
    return IngestPipeline(cfg, QuarantineStore(cfg.quarantine))


CASES: dict[str, dict[str, Any]] = {
    "frames": {"counters": [{"measurement": "counter", "field": "part_count"}]},
    "json": {"json_topics": {"prefix": "factory"}},
    "sparkplug": {
        "sparkplug": {
            "enterprise": "acme",
            "site": "plant-1",
            "metrics": [
                {
                    "edge_node": "press-01",
                    "device": "plc",
                    "metric": "Press/Force",
                    "asset": {"area": "press", "line": "line-2", "machine": "press-01"},
                    "measurement": "press",
                    "signal": "force_kn",
                }
            ],
        }
    },
}


@pytest.mark.parametrize("codec", sorted(CASES))
def test_codec_line_protocol_is_golden(codec: str, tmp_path: Path) -> None:
    if codec == "frames":
        topics = [frame_topic("plant-1", "gw-golden")]
        payloads = [(GOLDEN / "frame_v1.bin").read_bytes()]
    else:
        topics, payloads = _inputs(codec)
    p = _pipeline(tmp_path, **CASES[codec])
    prep = p.prepare(topics, payloads, now_ns=NOW_NS)
    p.quarantine.flush()
    assert p.quarantine.counts == {}, dict(p.quarantine.counts)  # golden inputs are all valid
    body = LineProtocolEncoder(p.table).encode(prep.batch).body
    _check(f"{codec}.lp", body)
    assert LineProtocolEncoder(p.table, kernel="numpy").encode(prep.batch).body == body
    p.quarantine.close()
