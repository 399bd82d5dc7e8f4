"""Quarantine rotation by size and by age, the keep count, and the on-disk size metric."""

from __future__ import annotations

from pathlib import Path

from ingest.quarantine import QuarantineConfig, QuarantineStore, quarantine_files, read_records
from zhizao.config import parse_model

HOUR_NS = 3600 * 10**9


class Clock:
    def __init__(self) -> None:
        self.now_ns = 1_767_225_600 * 10**9

    def __call__(self) -> int:
        return self.now_ns


def _store(tmp_path: Path, clock: Clock, **cfg: object) -> QuarantineStore:
    config = parse_model(
        QuarantineConfig, {"path": str(tmp_path / "q.jsonl"), "fsync": False, **cfg}
    )
    return QuarantineStore(config, clock_ns=clock)


def _add(store: QuarantineStore, n: int, tag: str, size: int = 100) -> None:
    for i in range(n):
        store.add_payload("t", bytes(size), "bad_json", f"{tag}-{i}")
    store.flush()


def test_rotation_by_age_keeps_every_record_of_the_kept_files(tmp_path: Path) -> None:
    clock = Clock()
    store = _store(tmp_path, clock, max_file_age_s=3600, max_files=3)
    _add(store, 5, "a")
    clock.now_ns += HOUR_NS - 1  # not yet an hour old: same file
    _add(store, 5, "b")
    assert len(quarantine_files(store.path)) == 1
    clock.now_ns += 1
    _add(store, 5, "c")  # the file's oldest record is an hour old: rotated before writing
    assert [p.name for p in quarantine_files(store.path)] == ["q.jsonl.1", "q.jsonl"]
    clock.now_ns += HOUR_NS
    _add(store, 5, "d")
    # three files kept: every record so far is there, in order
    assert [r.message for r in read_records(store.path)] == [
        f"{t}-{i}" for t in "abcd" for i in range(5)
    ][:20]
    assert [p.name for p in quarantine_files(store.path)] == ["q.jsonl.2", "q.jsonl.1", "q.jsonl"]
    clock.now_ns += HOUR_NS
    _add(store, 5, "e")  # a fourth file: the oldest (a and b) is deleted and counted
    assert store.rotated_out == 10
    assert [r.message for r in read_records(store.path)] == [
        f"{t}-{i}" for t in "cde" for i in range(5)
    ]
    assert len(quarantine_files(store.path)) == 3
    assert store.total_bytes == sum(p.stat().st_size for p in quarantine_files(store.path))
    store.close()


def test_age_survives_a_restart(tmp_path: Path) -> None:
    """A restarted service knows the age of the file it appends to (its first record)."""
    clock = Clock()
    store = _store(tmp_path, clock, max_file_age_s=3600)
    _add(store, 1, "old")
    store.close()
    clock.now_ns += 2 * HOUR_NS
    store = _store(tmp_path, clock, max_file_age_s=3600)
    _add(store, 1, "new")
    assert [p.name for p in quarantine_files(store.path)] == ["q.jsonl.1", "q.jsonl"]
    assert [r.message for r in read_records(store.path)] == ["old-0", "new-0"]
    store.close()


def test_rotation_by_size_and_age_zero_is_off(tmp_path: Path) -> None:
    clock = Clock()
    store = _store(tmp_path, clock, max_file_age_s=0, max_file_bytes=4096, max_files=2)
    _add(store, 10, "a", size=200)  # ~4.3 kB: rotated after this flush
    assert [p.name for p in quarantine_files(store.path)] == ["q.jsonl.1", "q.jsonl"]
    clock.now_ns += 1000 * HOUR_NS  # no age limit: appended to the current file
    _add(store, 1, "b")
    assert len(quarantine_files(store.path)) == 2 and store.rotated_out == 0
    assert store.total_bytes > 4096
    assert len(list(read_records(store.path))) == 11
    store.close()


def test_quarantine_size_is_a_metric(tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    from ingest.service import IngestService
    from tests.ingest._support import make_config

    service = IngestService(make_config(1883, "http://127.0.0.1:8086", "db", tmp_path))
    service.quarantine.add_payload("t", bytes(1000), "bad_json", "x")
    service.quarantine.flush()
    text = generate_latest(service.metrics.registry).decode()
    line = next(ln for ln in text.splitlines() if ln.startswith("zhizao_ingest_quarantine_bytes "))
    assert float(line.split()[1]) == service.quarantine.total_bytes > 1000
    service.quarantine.close()
