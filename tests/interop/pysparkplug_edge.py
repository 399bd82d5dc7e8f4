"""Edge node built with pysparkplug (third party); runs in the interop venv, not in ours.

Usage: ``python pysparkplug_edge.py <port> [clean] < plan.json``. The plan (written by the test) lists the
node's and one device's metrics with the values for the birth and for one DATA message each.
The script publishes, through pysparkplug: NBIRTH (with bdSeq) and DBIRTH via ``EdgeNode.connect``,
then NDATA and DDATA that carry aliases only (no names, no datatypes, as Sparkplug allows after a
birth), then it dies without a DISCONNECT so the broker publishes the NDEATH will that pysparkplug
registered (or, with ``clean``, it calls pysparkplug's ``EdgeNode.disconnect``). It prints one JSON line with what it did (bdSeq and seq numbers), flushed before dying.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from typing import Any

import pysparkplug as psp

DEADLINE_S = 30.0
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _value(datatype: str, value: Any) -> Any:
    """The plan is JSON: DateTime travels as epoch ms, bytes as hex."""
    if datatype == "DATETIME":
        return EPOCH + datetime.timedelta(milliseconds=int(value))
    if datatype in ("BYTES", "FILE"):
        return bytes.fromhex(value)
    return value


def _metrics(specs: list[dict[str, Any]], key: str, *, named: bool) -> tuple[psp.Metric, ...]:
    return tuple(
        psp.Metric(
            timestamp=int(s["ts_ms"][key]),
            name=s["name"] if named else None,
            datatype=psp.DataType[s["datatype"]],
            value=_value(s["datatype"], s[key]),
            alias=int(s["alias"]),
        )
        for s in specs
    )


def main() -> None:
    port = int(sys.argv[1])
    clean = sys.argv[2:] == ["clean"]
    plan = json.load(sys.stdin)
    group, node_id, device_id = plan["group"], plan["edge_node"], plan["device"]
    client = psp.Client(client_id=f"psp-edge-{os.getpid()}")
    node = psp.EdgeNode(group, node_id, _metrics(plan["node_metrics"], "birth", named=True), client)
    node.register(psp.Device(device_id, _metrics(plan["device_metrics"], "birth", named=True)))
    node.connect("127.0.0.1", port=port, keepalive=60)
    birth_bdseq = None
    deadline = time.monotonic() + DEADLINE_S
    # EdgeNode publishes its births in the connect callback and then prepares the next will
    # (bdSeq + 1); that change is the only public-ish sign that the births are queued.
    while time.monotonic() < deadline:
        bd = node._bd_seq_metric
        if node._connected and bd.value != 0:
            birth_bdseq = int(bd.value) - 1
            break
        time.sleep(0.01)
    if birth_bdseq is None:
        raise SystemExit("pysparkplug edge node did not connect and publish its births")
    paho = client._client  # private: to wait for the flush of QoS 0 messages
    sent_seqs = []
    for mtype, payload_cls, specs, device in (
        (psp.MessageType.NDATA, psp.NData, plan["node_metrics"], None),
        (psp.MessageType.DDATA, psp.DData, plan["device_metrics"], device_id),
    ):
        seq = node._seq  # private: continues the births' sequence
        sent_seqs.append(seq)
        payload = payload_cls(
            timestamp=int(plan["payload_ts_ms"]),
            seq=seq,
            metrics=_metrics(specs, "data", named=False),
        )
        topic = psp.Topic(
            message_type=mtype, group_id=group, edge_node_id=node_id, device_id=device
        )
        info = paho.publish(str(topic), payload.encode(include_dtypes=False), qos=0)
        info.wait_for_publish(timeout=DEADLINE_S)
    report = {"bdseq": birth_bdseq, "data_seqs": sent_seqs}
    if clean:
        # pysparkplug's own clean shutdown: it publishes an NDEATH, then DISCONNECTs
        report["death_bdseq"] = int(node._bd_seq_metric.value)
        node.disconnect()
        print(json.dumps(report), flush=True)
        return
    print(json.dumps(report), flush=True)
    # no DISCONNECT: the broker publishes pysparkplug's will (the NDEATH)
    os._exit(0)


if __name__ == "__main__":
    main()
