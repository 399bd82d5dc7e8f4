"""Test helpers: polling waits with deadlines, reading an outbox back, subprocess servers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gateway.outbox import SqliteOutbox
from zhizao.model import Batch

REPO = Path(__file__).resolve().parents[2]


async def wait_for(cond: Callable[[], bool], timeout_s: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or cond}")
        await asyncio.sleep(0.05)


def stored(outbox: SqliteOutbox) -> Batch:
    """Everything in the outbox (marks it in flight and releases it again)."""
    chunks = outbox.take(10**12)
    outbox.release([c.chunk_id for c in chunks])
    return Batch.concat([c.batch for c in chunks])


def by_series(outbox: SqliteOutbox, measurement: str) -> dict[str, np.ndarray]:
    """field/machine -> values ordered as stored, for one measurement."""
    batch = stored(outbox)
    out: dict[str, list[float]] = {}
    for i, key in enumerate(outbox.table.keys):
        if key.measurement != measurement:
            continue
        mask = batch.series == i
        out[key.field + "@" + key.tag_dict.get("machine", "")] = batch.value_f64[mask].tolist()
    return {k: np.array(v) for k, v in out.items()}


def start_process(module: str, *args: str) -> subprocess.Popen[str]:
    """``python -m module args`` from the repository root; waits for its ``ready`` line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "ready" not in line:
        proc.kill()
        raise AssertionError(f"{module} did not start: {line!r}")
    return proc


def go(proc: subprocess.Popen[str]) -> None:
    """Release a server started with ``--wait-go``."""
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
