"""``zhizao ingest run|quarantine list|quarantine replay``."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from typing import Any

import orjson

from ingest.config import IngestConfig
from ingest.frames import FrameCodec, GatewayFrame, frame_topic
from ingest.quarantine import mark_replayed, read_records, record_frame, replayed_ids
from zhizao.config import load_model

__all__ = ["register"]


def _load(args: argparse.Namespace) -> IngestConfig:
    config = load_model(IngestConfig, args.config)
    mqtt_over: dict[str, Any] = {}
    if getattr(args, "client_id", None):
        mqtt_over["client_id"] = args.client_id
    health_over: dict[str, Any] = {}
    if getattr(args, "metrics_port", None) is not None:
        health_over["port"] = args.metrics_port
    if mqtt_over or health_over:
        config = config.model_copy(
            update={
                "mqtt": config.mqtt.model_copy(update=mqtt_over),
                "health": config.health.model_copy(update=health_over),
            }
        )
    return config


def _run(args: argparse.Namespace) -> int:
    from ingest.service import run_service

    return run_service(_load(args))


def _list(args: argparse.Namespace) -> int:
    config = _load(args)
    path = config.quarantine.path
    done = replayed_ids(path)
    by_reason: Counter[str] = Counter()
    records = 0
    for rec in read_records(path):
        if args.reason and rec.reason != args.reason:
            continue
        records += 1
        by_reason[rec.reason] += rec.count
        if args.json:
            print(orjson.dumps({**rec.raw, "replayed": rec.id in done}).decode())
        elif args.verbose_records:
            status = "replayed" if rec.id in done else ("ok" if rec.replayable else "truncated")
            print(
                f"{rec.id}\t{rec.reason}\t{rec.kind}\t{rec.count}\t{status}\t{rec.topic}\t{rec.message}"
            )
    if not args.json:
        print(f"{records} records in {path}", file=sys.stderr)
        for reason, n in sorted(by_reason.items()):
            print(f"{reason}\t{n}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    """Send quarantined data through the broker again, so it passes the current validation."""
    from ingest.mqtt import MqttConnection  # paho only for this command

    config = _load(args)
    path = config.quarantine.path
    done = replayed_ids(path)
    todo = [
        r
        for r in read_records(path)
        if r.id not in done and r.replayable and (not args.reason or r.reason == args.reason)
    ]
    if args.dry_run:
        print(f"would replay {len(todo)} records")
        return 0
    m = config.mqtt
    # a short-lived publisher: no session kept at the broker after it
    client = MqttConnection(m, f"{m.client_id}-replay", persistent=False)
    client.start_blocking(timeout_s=5.0)
    sent: list[str] = []
    seq = time.time_ns()
    try:
        for rec in todo:
            if rec.kind == "payload":
                if not rec.topic:
                    continue  # refused InfluxDB lines have no topic to go back to
                topic, payload = rec.topic, rec.payload()
            else:
                table, batch = record_frame(rec)
                seq += 1
                site = next((v for k, v in table.keys[0].tags if k == "site"), "replay")
                frame = GatewayFrame.from_table("quarantine-replay", seq, table, batch)
                topic = frame_topic(site, "quarantine-replay", m.topic_prefix)
                payload = FrameCodec.encode(frame)
            # only what the broker acknowledged is marked replayed
            client.publish_confirmed(topic, payload, qos=1, timeout_s=30.0)
            sent.append(rec.id)
    finally:
        mark_replayed(path, sent)
        client.stop()
    print(f"replayed {len(sent)} records")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("ingest", help="MQTT -> InfluxDB ingest service")
    sub = p.add_subparsers(dest="ingest_command", metavar="ACTION")
    run = sub.add_parser("run", help="run the ingest service")
    run.add_argument("-c", "--config", required=True, help="ingest YAML file")
    run.add_argument("--client-id", help="override mqtt.client_id (one per process)")
    run.add_argument("--metrics-port", type=int, help="override health.port (0 = off)")
    run.set_defaults(handler=_run)
    q = sub.add_parser("quarantine", help="inspect and replay quarantined data")
    qsub = q.add_subparsers(dest="quarantine_command", metavar="ACTION")
    ls = qsub.add_parser("list", help="counts by reason (-l: one line per record)")
    ls.add_argument("-c", "--config", required=True)
    ls.add_argument("--reason", help="only this reason")
    ls.add_argument("-l", dest="verbose_records", action="store_true", help="every record")
    ls.add_argument("--json", action="store_true", help="records as JSON lines")
    ls.set_defaults(handler=_list)
    rp = qsub.add_parser("replay", help="publish quarantined data to the broker again")
    rp.add_argument("-c", "--config", required=True)
    rp.add_argument("--reason", help="only this reason")
    rp.add_argument("--dry-run", action="store_true")
    rp.set_defaults(handler=_replay)
