"""``zhizao kpi compute`` from a CSV export, the sample kpi.yaml, and config errors."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import yaml

from analytics.config import KpiConfig, load_kpi_config
from tests.analytics.helpers import TZ, at, m1_state_samples
from tests.analytics.test_timeline import m1_counters
from zhizao.cli import main
from zhizao.errors import ConfigError

SITE = {
    "enterprise": "acme",
    "site": "plant1",
    "district": "Pudong",
    "machine_types": {"cnc": {"profile": "custom"}},
    "calendars": {
        "day": {
            "shifts": [
                {
                    "name": "day",
                    "start": "06:00",
                    "end": "22:00",
                    "breaks": [
                        {"name": "lunch", "start": "12:00", "end": "12:30"},
                        {"name": "dinner", "start": "18:00", "end": "18:30"},
                    ],
                }
            ]
        }
    },
    "products": [{"id": "P-100", "ideal_cycle_s": 120}],
    "areas": [
        {
            "id": "machining",
            "lines": [
                {
                    "id": "l1",
                    "calendar": "day",
                    # M1 finishes the parts (the plant output); M9 makes nothing
                    "machines": [
                        {"id": "M1", "type": "cnc", "output": True},
                        {"id": "M9", "type": "cnc"},
                    ],
                }
            ],
        }
    ],
    "meters": [
        {
            "id": "em-M1",
            "medium": "electricity",
            "unit": "kWh",
            "signal": "energy_kwh",
            "asset": "machining/l1/M1",
        },
        {"id": "em-main", "medium": "electricity", "unit": "kWh", "signal": "energy_kwh"},
        {"id": "gm-main", "medium": "natural_gas", "unit": "m3", "signal": "gas_m3"},
    ],
}


def write_export(tmp_path: Path) -> tuple[Path, Path]:
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(SITE), encoding="utf-8")
    # the export holds on-change states without heartbeats: trust a state for the whole day
    (tmp_path / "kpi.yaml").write_text("sites: [site.yaml]\nheartbeat_s: 86400\n", encoding="utf-8")
    path = tmp_path / "export.csv"
    asset = "acme/plant1/machining/l1/M1"
    rows: list[tuple[str, str, str, str]] = []

    def iso(ts: int) -> str:
        return datetime.fromtimestamp(ts / 1e9, TZ).isoformat()

    ts, states = m1_state_samples()
    rows += [(iso(int(t)), asset, "state", str(s)) for t, s in zip(ts, states, strict=True)]
    names = {
        "parts_total": "part_count",
        "parts_scrap": "scrap_part_count",
        "parts_rework": "rework_part_count",
    }
    for role, sig in m1_counters().items():
        rows += [
            (str(int(t)), asset, f"counter.{names[role]}", repr(float(v)))
            for t, v in zip(sig.ts_ns, sig.value, strict=True)
        ]
    # machine meter 700 kWh; plant meters 4800 kWh and 120 m3 with a rollover-free reset in the middle
    rows += [
        (iso(at("00:00")), asset, "energy_kwh", "1000"),
        (iso(at("23:59")), asset, "energy_kwh", "1700"),
    ]
    rows += [(iso(at("00:00")), "acme/plant1", "meter:em-main", "0"), (iso(at("12:00")), "acme/plant1", "meter:em-main", "2000"),
             (iso(at("12:01")), "acme/plant1", "meter:em-main", "5"), (iso(at("23:59")), "acme/plant1", "meter:em-main", "2800")]  # fmt: skip
    rows += [
        (iso(at("00:00")), "acme/plant1", "gas_m3", "10"),
        (iso(at("23:59")), "acme/plant1", "gas_m3", "130"),
    ]
    rows += [(iso(at("08:00")), "acme/plant1/machining/l1/M1", "unknown_signal", "1")]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "asset path", "signal", "value"])
        w.writerows(rows)
    return site, path


def test_compute_from_csv_reproduces_m1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site, samples = write_export(tmp_path)
    rc = main(["kpi", "compute", "--samples", str(samples), "--site", str(site), "-c", str(site.parent / "kpi.yaml"),
               "--from", "2026-03-02T00:00", "--to", "2026-03-03T00:00", "--json"])  # fmt: skip
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    m1 = next(r for r in report["machines"] if r["machine"] == "M1")
    assert m1["components"]["pbt_s"] == 900 * 60 and m1["components"]["apt_s"] == 780 * 60
    assert m1["components"]["gq"] == 351 and m1["components"]["kwh"] == 700
    assert m1["kpis"]["oee"]["value"] == pytest.approx(0.78, abs=1e-6)
    assert m1["kpis"]["oee"]["label"] == "OEE=PRI*GQ/PBT"
    assert m1["kpis"]["kwh_per_good"]["value"] == pytest.approx(700 / 351, abs=1e-9)
    m9 = next(r for r in report["machines"] if r["machine"] == "M9")
    assert m9["components"]["adet_no_data_s"] == 900 * 60 and m9["kpis"]["oee"]["value"] == 0.0
    assert any("M9: no state data" in n for n in report["notes"])
    assert any("1 rows skipped" in n and "unknown_signal" in n for n in report["notes"])
    # the line is sum/sum over both machines: 0.78 x 900 / 1800
    line = report["rollups"]["line"][0]
    assert line["group"] == "acme/plant1/machining/l1"
    assert line["kpis"]["oee"]["value"] == pytest.approx(0.39, abs=1e-6)
    energy = report["plant_energy"][0]
    assert energy["electricity_kwh"] == 2000 + 5 + 2795 and energy["natural_gas_m3"] == 120
    assert energy["kgce"] == pytest.approx(4800 * 0.1229 + 120 * 1.2143, abs=1e-9)
    assert report["energy_conversion"]["id"] == "GBT2589-calorific"
    assert report["emission_factors"]["electricity"]["id"] == "CN-SH-grid-2023"


def test_compute_per_hour_windows_add_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site, samples = write_export(tmp_path)
    assert main(["kpi", "compute", "--samples", str(samples), "--site", str(site), "-c", str(site.parent / "kpi.yaml"), "--from", "2026-03-02T00:00",
                 "--to", "2026-03-03T00:00", "--window", "hour", "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    m1 = [r for r in report["machines"] if r["machine"] == "M1"]
    assert len(m1) == 24
    assert sum(r["components"]["apt_s"] for r in m1) == 780 * 60
    assert sum(r["components"]["pq"] for r in m1) == 360
    assert np.isclose(sum(r["components"]["kwh"] for r in m1), 700)


def test_compute_table_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site, samples = write_export(tmp_path)
    assert main(["kpi", "compute", "--samples", str(samples), "--site", str(site), "-c", str(site.parent / "kpi.yaml"),
                 "--from", "2026-03-02T00:00", "--to", "2026-03-03T00:00"]) == 0  # fmt: skip
    out = capsys.readouterr()
    first = out.out.splitlines()[1].split("\t")
    assert first[0] == "M1" and first[4] == "0.7800"
    assert "OEE=PRI*GQ/PBT" in out.err


def test_sample_config_parses() -> None:
    cfg = load_kpi_config(Path(__file__).parents[2] / "analytics" / "kpi.sample.yaml")
    assert isinstance(cfg, KpiConfig)
    assert cfg.windows == ["hour", "shift", "day"] and cfg.micro_stop_s == 120
    assert cfg.influx is not None and cfg.influx.database == "zhizao"
    assert cfg.sites[0].name == "site.yaml" and cfg.sites[0].is_absolute()


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    p = tmp_path / "kpi.yaml"
    p.write_text("sites: [site.yaml]\nwindows: [week]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_kpi_config(p)
    assert "windows" in str(err.value) and str(p) in str(err.value)


def test_ambiguous_plant_meters_are_refused(tmp_path: Path) -> None:
    from analytics.compute import SiteComputer
    from zhizao.site import SiteModel

    doc = dict(SITE)
    doc["meters"] = [
        *SITE["meters"],
        {"id": "em-compressor", "medium": "electricity", "unit": "kWh", "signal": "energy_kwh"},
    ]
    site = SiteModel.model_validate(doc)
    with pytest.raises(ConfigError, match="several site-level meters") as err:
        SiteComputer(site, KpiConfig(sites=[Path("s.yaml")]))
    assert err.value.key == "energy.plant_meters"
    ok = KpiConfig.model_validate(
        {"sites": ["s.yaml"], "energy": {"plant_meters": ["em-main", "gm-main"]}}
    )
    assert [m.id for m in SiteComputer(site, ok).plant] == ["em-main", "gm-main"]
    bad = KpiConfig.model_validate({"sites": ["s.yaml"], "energy": {"plant_meters": ["em-nope"]}})
    with pytest.raises(ConfigError, match="em-nope"):
        SiteComputer(site, bad)


def test_bad_csv_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site, _ = write_export(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "time,asset,value\n2026-03-02T08:00,acme/plant1/machining/l1/M1,1\n", encoding="utf-8"
    )
    rc = main(["kpi", "compute", "--samples", str(bad), "--site", str(site),
               "--from", "2026-03-02T00:00", "--to", "2026-03-03T00:00"])  # fmt: skip
    assert rc == 2
    assert "missing columns ['signal']" in capsys.readouterr().err
    rows = tmp_path / "rows.csv"
    rows.write_text(
        "timestamp,asset,signal,value\nnot-a-time,acme/plant1/machining/l1/M1,state,IN_CYCLE\n"
        "2026-03-02T08:00,acme/plant1/machining/l1/M1,state,IN_CYCLE\n",
        encoding="utf-8",
    )
    rc = main(["kpi", "compute", "--samples", str(rows), "--site", str(site), "--json",
               "--from", "2026-03-02T00:00", "--to", "2026-03-03T00:00"])  # fmt: skip
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert any(
        "1 rows skipped: unparsable timestamp (first at line 2)" in n for n in report["notes"]
    )


def test_shift_energy_per_good_part_uses_the_shifts_energy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14 item 4: a shift's kgce per good part is the energy metered inside the shift
    window (06:00-22:00) over the shift's good parts, not the whole day's energy."""
    site, samples = write_export(tmp_path)
    rc = main(["kpi", "compute", "--samples", str(samples), "--site", str(site), "-c", str(site.parent / "kpi.yaml"),
               "--from", "2026-03-02T00:00", "--to", "2026-03-03T00:00", "--window", "shift", "--json"])  # fmt: skip
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["plant_energy"]) == 1
    energy = report["plant_energy"][0]
    assert energy["tags"]["shift"] == "day"
    # em-main increments booked inside the shift: 2000 at 12:00 and 5 after the 12:01 reset; the
    # 23:59 increment (2795 kWh) and the gas increment at 23:59 belong to the night
    assert energy["electricity_kwh"] == 2005
    assert energy.get("natural_gas_m3", 0) == 0
    gq = sum(r["components"]["gq"] for r in report["machines"])
    assert gq == 351
    plant = report["plant_kpis"]["plant_kgce_per_output"]
    assert plant["value"] == pytest.approx(2005 * 0.1229 / 351, rel=1e-9)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gb18030"])
def test_excel_bom_and_gb18030_exports_are_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], encoding: str
) -> None:
    """Excel's "CSV UTF-8" starts with a byte-order mark (which used to hide the `timestamp`
    header); Chinese Excel saves GB18030. Both give the same figures as plain UTF-8."""
    site, samples = write_export(tmp_path)
    text = samples.read_text(encoding="utf-8")
    # a Chinese header alias is not needed, but a Chinese value in a text column must survive
    text = text.replace("unknown_signal,1", "unknown_signal,主轴")
    samples.write_bytes(text.encode(encoding))
    rc = main(["kpi", "compute", "--samples", str(samples), "--site", str(site), "-c", str(site.parent / "kpi.yaml"),
               "--from", "2026-03-02T00:00", "--to", "2026-03-03T00:00", "--json"])  # fmt: skip
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    m1 = next(r for r in report["machines"] if r["machine"] == "M1")
    assert m1["components"]["gq"] == 351 and m1["components"]["pbt_s"] == 900 * 60


def test_bad_rows_are_skipped_by_reason_and_json_has_no_nan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site, samples = write_export(tmp_path)
    asset = "acme/plant1/machining/l1/M1"
    with samples.open("a", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["2026-03-02T08:00", asset, "counter.part_count", "n/a"])
        w.writerow(["2026-03-02T08:01", asset, "counter.part_count", "--"])
        w.writerow(["2026-03-02T08:02", asset, "counter.part_count"])  # short
        w.writerow(["yesterday", asset, "state", "IN_CYCLE"])
        w.writerow(["2026-03-02T08:03", "acme/plant1/nowhere/l9/M7", "state", "IN_CYCLE"])
    rc = main(["kpi", "compute", "--samples", str(samples), "--site", str(site), "-c", str(site.parent / "kpi.yaml"),
               "--from", "2026-03-02T00:00", "--to", "2026-03-03T00:00", "--json"])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "NaN" not in out and "Infinity" not in out
    report = json.loads(out)
    notes = "\n".join(report["notes"])
    assert "2 rows skipped: text value in numeric signal 'part_count'" in notes
    assert "1 rows skipped: short row" in notes
    assert "1 rows skipped: unparsable timestamp" in notes
    assert "is not a machine of the site" in notes
    m1 = next(r for r in report["machines"] if r["machine"] == "M1")
    assert m1["components"]["gq"] == 351  # the rest is computed
    # M9 has no state data: its ratios are numbers or null, never NaN
    m9 = next(r for r in report["machines"] if r["machine"] == "M9")
    assert all(
        k["value"] is None or isinstance(k["value"], int | float) for k in m9["kpis"].values()
    )


def test_text_table_shows_each_windows_start_and_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site, samples = write_export(tmp_path)
    rc = main(["kpi", "compute", "--samples", str(samples), "--site", str(site), "-c", str(site.parent / "kpi.yaml"),
               "--from", "2026-03-02T06:00", "--to", "2026-03-02T08:00", "--window", "hour"])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split("\t")[:4] == ["asset", "window", "start", "end"]
    m1 = [ln.split("\t") for ln in out[1:] if ln.startswith("M1\t")]
    assert [(r[2], r[3]) for r in m1] == [
        ("2026-03-02T06:00+08:00", "2026-03-02T07:00+08:00"),
        ("2026-03-02T07:00+08:00", "2026-03-02T08:00+08:00"),
    ]
