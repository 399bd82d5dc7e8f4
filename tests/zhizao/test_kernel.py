"""The shared kernel: asset paths, series table, batch, config errors, site model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zhizao.assets import AssetPath
from zhizao.config import StrictModel, load_model
from zhizao.errors import ConfigError, ValidationError
from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable
from zhizao.quality import Quality, quality_from_opcua_status
from zhizao.site import SiteModel, load_site

SITE_YAML = """
enterprise: acme
site: pudong-01
district: pudong
machine_types:
  cnc:
    profile: opc40502
calendars:
  two-shift:
    shifts:
      - {name: early, start: "06:00", end: "14:00", breaks: [{start: "10:00", end: "10:30"}]}
      - {name: night, start: "22:00", end: "06:00"}
products:
  - {id: P-100, ideal_cycle_s: 120, ideal_cycle_s_by_machine: {m2: 110}}
areas:
  - id: machining
    lines:
      - id: line1
        calendar: two-shift
        machines:
          - {id: m1, type: cnc, key_process: true, nc_controlled: true}
          - {id: m2, type: cnc, cell: c1}
meters:
  - {id: plant-power, medium: electricity, unit: kWh, signal: energy_kwh, rollover: 1000000}
"""


def test_asset_path_parses_prints_and_tags() -> None:
    p = AssetPath.parse("acme/pudong-01/machining/line1/m1")
    assert str(p) == "acme/pudong-01/machining/line1/m1"
    assert p.tags() == {
        "enterprise": "acme",
        "site": "pudong-01",
        "area": "machining",
        "line": "line1",
        "machine": "m1",
    }
    assert AssetPath("acme", "s", "a", "l", None, "m").machine == "m"
    six = AssetPath.parse("acme/s/a/l/cell-1/m")
    assert (six.cell, six.machine) == ("cell-1", "m")
    assert AssetPath.parse("acme/s/a").machine is None


@pytest.mark.parametrize("text", ["acme", "acme/s/a/l/c/m/extra", "acme/bad segment", "acme/s/-x"])
def test_asset_path_refuses_bad_paths(text: str) -> None:
    with pytest.raises(ConfigError):
        AssetPath.parse(text)


def test_asset_path_refuses_a_line_without_an_area() -> None:
    with pytest.raises(ConfigError, match="below a missing level"):
        AssetPath("acme", "s", None, "line1")


def test_series_table_is_stable_and_refuses_type_changes() -> None:
    t = SeriesTable()
    a = t.add(SeriesKey.make("m", {"b": "2", "a": "1"}, "v"))
    assert t.add(SeriesKey.make("m", {"a": "1", "b": "2"}, "v")) == a  # tag order is irrelevant
    b = t.add(SeriesKey.make("m", {"a": "1", "b": "2"}, "w", FieldType.INT))
    c = t.add(SeriesKey.make("other", {}, "v"))
    assert (a, b, c) == (0, 1, 2)
    assert t.groups.tolist() == [0, 0, 1]
    assert t.dtypes.tolist() == [FieldType.FLOAT, FieldType.INT, FieldType.FLOAT]
    with pytest.raises(ValidationError) as info:
        t.add(SeriesKey.make("m", {"a": "1", "b": "2"}, "v", FieldType.STRING))
    assert info.value.reason == "type_change"


def test_series_table_grows_past_its_capacity_and_keeps_earlier_views() -> None:
    t = SeriesTable()
    first = [t.add(SeriesKey.make("m", {"k": str(i)}, "v")) for i in range(10)]
    early_dtypes = t.dtypes
    n = 5_000  # many doublings of the column buffers
    keys = [
        SeriesKey.make("m", {"k": str(i % 2_500)}, f"f{i // 2_500}", FieldType(i % 4))
        for i in range(n)
    ]
    ids = [t.add(k) for k in keys]
    assert first == list(range(10)) and ids == list(range(10, 10 + n))
    assert [t.add(k) for k in keys[::7]] == ids[::7]  # known keys keep their index
    assert len(t) == len(t.dtypes) == len(t.groups) == 10 + n
    assert t.dtypes.tolist() == [int(k.dtype) for k in t.keys]
    # one point group per measurement + tag set, whatever the field
    assert len(set(t.groups.tolist())) == 2_500
    assert t.groups[10] == t.groups[10 + 2_500] != t.groups[11]
    assert early_dtypes.tolist() == [FieldType.FLOAT] * 10  # a view handed out earlier is intact
    other_type = FieldType((keys[7].dtype + 1) % 4)
    with pytest.raises(ValidationError):
        t.add(SeriesKey.make("m", {"k": "7"}, "f0", other_type))
    assert len(t) == 10 + n


def test_batch_build_routes_values_by_type_and_round_trips() -> None:
    t = SeriesTable()
    f = t.add(SeriesKey.make("m", {}, "f"))
    i = t.add(SeriesKey.make("m", {}, "i", FieldType.INT))
    b = t.add(SeriesKey.make("m", {}, "b", FieldType.BOOL))
    s = t.add(SeriesKey.make("m", {}, "s", FieldType.STRING))
    values = np.array([1.5, 2**62, True, "txt"], dtype=object)
    batch = Batch.build(t, [f, i, b, s], [1, 2, 3, 4], values, quality=[0, 1, 2, 3])
    assert batch.values_for(t).tolist() == [1.5, 2**62, True, "txt"]
    assert batch.quality.tolist() == [0, 1, 2, 3]
    both = Batch.concat([batch, batch.take(np.array([3, 0]))])
    assert len(both) == 6
    assert both.values_for(t).tolist()[4:] == ["txt", 1.5]
    with pytest.raises(ValueError, match="outside the series table"):
        Batch.build(t, [7], [1], [1.0])


def test_batch_refuses_ragged_columns() -> None:
    with pytest.raises(ValueError, match="has 2 rows"):
        Batch(
            series=np.zeros(3, np.int32),
            ts_ns=np.zeros(2, np.int64),
            value_f64=np.zeros(3),
            value_i64=np.zeros(3, np.int64),
            quality=np.zeros(3, np.uint8),
        )


def test_opcua_status_codes_fold_into_quality() -> None:
    codes = np.array([0x00000000, 0x40000000, 0x80000000, 0x80340000, 0x408F0000], np.uint32)
    assert quality_from_opcua_status(codes).tolist() == [
        Quality.GOOD,
        Quality.UNCERTAIN,
        Quality.BAD,
        Quality.BAD,
        Quality.UNCERTAIN,
    ]


def test_site_model_loads_and_answers(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(SITE_YAML)
    site = load_site(path)
    assert str(site.machine_paths()["m2"]) == "acme/pudong-01/machining/line1/c1/m2"
    assert site.product("P-100").pri_s("m2") == 110
    assert site.product("P-100").pri_s("m1") == 120
    night = site.calendar_for("m1").shifts[1]
    assert (night.start_min, night.end_min, night.length_min) == (1320, 1800, 480)


@pytest.mark.parametrize(
    ("patch", "key", "expected"),
    [
        (("type: cnc, key_process", "type: lathe, key_process"), None, "unknown type 'lathe'"),
        (("district: pudong", "district: pudong\ncolour: red"), "colour", "unknown key"),
        (('start: "06:00"', 'start: "6 am"'), "calendars", "HH:MM"),
        (("unit: kWh", "unit: kwh"), "meters[0].unit", "invalid value"),
    ],
)
def test_site_model_errors_name_file_key_and_expectation(
    tmp_path: Path, patch: tuple[str, str], key: str | None, expected: str
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(SITE_YAML.replace(*patch))
    with pytest.raises(ConfigError) as info:
        load_site(path)
    err = info.value
    assert err.file == str(path)
    assert expected in str(err)
    if key:
        assert err.key is not None and err.key.startswith(key)


def test_config_errors_for_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    class DemoConfig(StrictModel):
        port: int

    with pytest.raises(ConfigError, match="cannot read"):
        load_model(DemoConfig, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("port: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_model(DemoConfig, bad)
    assert info.value.key is not None and info.value.key.startswith("line")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("port: eighty\n")
    with pytest.raises(ConfigError) as info2:
        load_model(DemoConfig, wrong)
    assert info2.value.key == "port"


def test_site_model_is_the_one_schema() -> None:
    # the schema must stay strict: unknown keys are errors everywhere
    assert SiteModel.model_config.get("extra") == "forbid"
