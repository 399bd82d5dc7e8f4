"""Issue 14: numbers that stay right on real exports: every counter has its own range (a drop far
from a signal's own limit is a reset, impossible counts flagged and named), and a stop cut by the
range is classified by its whole length."""

from __future__ import annotations

import copy
import csv
import json
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tests.analytics.helpers import TZ, at, m1_state_samples
from tests.analytics.test_offline_cli import SITE
from zhizao.cli import main

ASSET = "acme/plant1/machining/l1/M1"


def _site(signals: list[dict[str, object]]) -> dict[str, object]:
    site = copy.deepcopy(SITE)
    site["machine_types"] = {"cnc": {"profile": "custom", "signals": signals}}
    site["meters"] = []
    return site


def _run(tmp_path: Path, site: dict[str, object], rows: list[tuple[str, str, str]],
         capsys: pytest.CaptureFixture[str]) -> dict[str, object]:  # fmt: skip
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site), encoding="utf-8")
    (tmp_path / "kpi.yaml").write_text("sites: [site.yaml]\nheartbeat_s: 86400\n", encoding="utf-8")
    ts, states = m1_state_samples()

    def iso(t: int) -> str:
        return datetime.fromtimestamp(t / 1e9, TZ).isoformat()

    out = tmp_path / "export.csv"
    with out.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "asset path", "signal", "value"])
        w.writerows((iso(int(t)), ASSET, "state", str(s)) for t, s in zip(ts, states, strict=True))
        w.writerows((iso(at(hhmm)), ASSET, sig, v) for hhmm, sig, v in rows)
    rc = main(["kpi", "compute", "--samples", str(out), "--site", str(tmp_path / "site.yaml"),
               "-c", str(tmp_path / "kpi.yaml"), "--from", "2026-03-02T00:00",
               "--to", "2026-03-03T00:00", "--json"])  # fmt: skip
    assert rc == 0
    report: dict[str, object] = json.loads(capsys.readouterr().out)
    return report


# part_count is a 16-bit counter that wraps at 09:01; good_part_count is a 32-bit counter that an
# operator resets at 09:01
ROWS = [
    ("08:00", "counter.part_count", "65500"),
    ("09:00", "counter.part_count", "65535"),
    ("09:01", "counter.part_count", "10"),
    ("10:00", "counter.part_count", "40"),
    ("08:00", "counter.good_part_count", "100000"),
    ("09:00", "counter.good_part_count", "100035"),
    ("09:01", "counter.good_part_count", "5"),
    ("10:00", "counter.good_part_count", "35"),
]


def test_each_counter_uses_its_own_rollover_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = _site([
        {"name": "part_count", "measurement": "counter", "kind": "counter", "dtype": "int", "rollover": 65536},
        {"name": "good_part_count", "measurement": "counter", "kind": "counter", "dtype": "int"},
    ])  # fmt: skip
    report = _run(tmp_path, site, ROWS, capsys)
    m1 = next(r for r in report["machines"] if r["machine"] == "M1")  # type: ignore[attr-defined]
    # PQ: 35 + (65536 - 65535 + 10) + 30 = 76 (a wrap); GQ: 35 + 5 + 30 = 70 (a reset)
    assert m1["components"]["pq"] == 76
    assert m1["components"]["gq"] == 70
    assert m1["kpis"]["quality"]["value"] == pytest.approx(70 / 76)
    assert not m1["kpis"]["quality"].get("flags")


def test_impossible_counts_are_flagged_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # no limits configured: both drops are resets; GQ 35 + 5 + 30 = 70 > PQ 35 + 0 + 0
    rows = [r for r in ROWS if r[1] != "counter.part_count"] + [
        ("08:00", "counter.part_count", "0"),
        ("09:00", "counter.part_count", "35"),
    ]
    site = _site([
        {"name": "part_count", "measurement": "counter", "kind": "counter", "dtype": "int"},
        {"name": "good_part_count", "measurement": "counter", "kind": "counter", "dtype": "int"},
    ])  # fmt: skip
    report = _run(tmp_path, site, rows, capsys)
    m1 = next(r for r in report["machines"] if r["machine"] == "M1")  # type: ignore[attr-defined]
    assert m1["components"]["gq"] > m1["components"]["pq"]
    flags = m1["kpis"]["quality"].get("flags") or [m1["kpis"]["quality"].get("flag")]
    assert any("good_exceeds_produced" in json.dumps(f) for f in flags)
    assert any("M1" in n and "good parts exceed produced parts" in n for n in report["notes"])  # type: ignore[attr-defined]


def _stop_rows() -> list[tuple[str, str, str]]:
    # a 3-minute stop 10:00-10:03 (a breakdown with micro_stop_s = 120 s) inside production
    return [("06:00", "state", "IN_CYCLE"), ("10:00", "state", "DELAY"),
            ("10:03", "state", "IN_CYCLE"), ("21:59", "state", "IDLE")]  # fmt: skip


@pytest.mark.parametrize(
    ("start", "end"),
    [("10:02", "11:00"), ("09:00", "10:01")],
    ids=["range-start-cuts-the-stop", "range-end-cuts-the-stop"],
)
def test_a_stop_cut_by_the_range_is_classified_by_its_whole_length(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], start: str, end: str
) -> None:
    """Issue 14 item 2: only one minute of the stop lies in the range, but the stop lasts three,
    so that minute is breakdown time, not a minor stop."""
    site = _site([{"name": "part_count", "measurement": "counter", "kind": "counter"}])
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site), encoding="utf-8")
    (tmp_path / "kpi.yaml").write_text("sites: [site.yaml]\nheartbeat_s: 86400\n", encoding="utf-8")
    out = tmp_path / "export.csv"
    with out.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "asset path", "signal", "value"])
        for hhmm, sig, v in _stop_rows():
            w.writerow([datetime.fromtimestamp(at(hhmm) / 1e9, TZ).isoformat(), ASSET, sig, v])
    rc = main(["kpi", "compute", "--samples", str(out), "--site", str(tmp_path / "site.yaml"),
               "-c", str(tmp_path / "kpi.yaml"), "--from", f"2026-03-02T{start}",
               "--to", f"2026-03-02T{end}", "--json"])  # fmt: skip
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    m1 = next(r for r in report["machines"] if r["machine"] == "M1")
    assert m1["components"]["adet_s"] == 60
    assert m1["components"]["adet_minor_s"] == 0
