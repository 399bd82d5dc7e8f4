"""Host side built with pysparkplug (third party); runs in the interop venv, not in ours.

Usage: ``python pysparkplug_host.py <port> <group_id>``. Subscribes to ``spBv1.0/<group>/#``
with pysparkplug's ``Client`` (which decodes every payload, resolving aliases and omitted
datatypes through the births it saw), prints ``{"ready": true}`` once the broker acknowledged
the subscription, then one JSON line per message, and exits after the first NDEATH.
Values are made JSON-safe: bytes as hex, DateTime as epoch milliseconds.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import threading
from typing import Any

import pysparkplug as psp

DEADLINE_S = 30.0


def _value(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, datetime.datetime):
        return {"datetime_ms": round(value.timestamp() * 1000)}
    return value


def _metric(m: psp.Metric) -> dict[str, Any]:
    return {
        "name": m.name,
        "alias": m.alias,
        "datatype": m.datatype.name,
        "value": _value(m.value),
        "timestamp": m.timestamp,
        "is_null": m.is_null,
    }


def main() -> None:
    port, group = int(sys.argv[1]), sys.argv[2]
    done = threading.Event()
    out_lock = threading.Lock()

    def emit(obj: dict[str, Any]) -> None:
        with out_lock:
            print(json.dumps(obj), flush=True)

    def on_message(_client: psp.Client, message: psp.Message) -> None:
        payload = message.payload
        record: dict[str, Any] = {
            "topic": str(message.topic),
            "type": message.topic.message_type.name,
            "kind": type(payload).__name__,
            "timestamp": getattr(payload, "timestamp", None),
            "seq": getattr(payload, "seq", None),
        }
        if isinstance(payload, psp.NDeath):
            record["metrics"] = [_metric(payload.bd_seq_metric)]
        else:
            record["metrics"] = [_metric(m) for m in getattr(payload, "metrics", ())]
        emit(record)
        if isinstance(payload, psp.NDeath):
            done.set()

    client = psp.Client(client_id=f"psp-host-interop-{os.getpid()}")
    decode = client._handle_message

    def decode_or_report(mqtt_message: Any) -> psp.Message:
        # a payload pysparkplug cannot decode would only kill paho's thread: say which one
        try:
            return decode(mqtt_message)
        except Exception as exc:
            emit({"topic": mqtt_message.topic, "error": repr(exc)})
            raise

    client._handle_message = decode_or_report
    # pysparkplug does not report SUBACKs; paho's own hook tells when publishing is safe
    client._client.on_subscribe = lambda *_: emit({"ready": True})
    wildcard = psp.Topic(group_id=group, message_type=psp.MULTI_LEVEL_WILDCARD)
    client.subscribe(wildcard, psp.QoS.AT_LEAST_ONCE, on_message)
    client.connect("127.0.0.1", port=port, blocking=False)
    if not done.wait(DEADLINE_S):
        emit({"error": f"no NDEATH within {DEADLINE_S} s"})
        sys.exit(2)
    client.disconnect()


if __name__ == "__main__":
    main()
