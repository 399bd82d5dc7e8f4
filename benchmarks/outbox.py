"""Outbox append and drain rates with the durability setting the gateway ships.

Appends the standard data set (benchmarks/_common.py: mixed float/int/bool/string samples) in
chunks of ``--chunk`` samples, each chunk its own durable commit, then drains it oldest-first
(take + ack = delete, one commit per take) the way the uplink does.
Prints ``{"name": "outbox", "append_per_s": .., "drain_per_s": ..}`` plus the settings used.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import emit, log, make_data
from gateway.config import OutboxConfig
from gateway.outbox import SqliteOutbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--chunk", type=int, default=1_000, help="samples per append")
    parser.add_argument("--synchronous", choices=["full", "normal"], default=None)
    args = parser.parse_args(argv)
    points = 50_000 if args.quick else 250_000
    data = make_data(points)
    batch = data.batch
    shipped = OutboxConfig()
    sync = args.synchronous or shipped.synchronous
    config = OutboxConfig(synchronous=sync, max_bytes=1 << 34)
    with tempfile.TemporaryDirectory(prefix="zhizao-outbox-bench-") as tmp:
        outbox = SqliteOutbox(Path(tmp) / "outbox.sqlite", config)
        for key in data.table.keys:
            outbox.series_index(key)
        n = len(batch)
        chunks = [batch.take(slice(i, i + args.chunk)) for i in range(0, n, args.chunk)]  # type: ignore[arg-type]
        log(f"{n:,} samples in {len(chunks)} chunks, synchronous={sync}")
        t0 = time.perf_counter()
        for chunk in chunks:
            outbox.append(chunk)
        append_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        drained = 0
        while True:
            taken = outbox.take(args.chunk * 4)
            if not taken:
                break
            drained += outbox.ack([c.chunk_id for c in taken])
        drain_s = time.perf_counter() - t0
        outbox.close()
    assert drained == n, (drained, n)
    log(f"{n:,} samples, chunks of {args.chunk}, journal_mode=WAL, synchronous={sync.upper()}")
    emit({"name": "outbox", "append_per_s": n / append_s, "drain_per_s": n / drain_s})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
