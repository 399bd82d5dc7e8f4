"""Gateway configuration: the commented samples parse; bad files fail naming file, key, expectation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.config import (
    MqttSourceConfig,
    OpcUaSourceConfig,
    SparkplugSourceConfig,
    load_gateway_config,
)
from zhizao.errors import ConfigError

SAMPLES = Path(__file__).resolve().parents[2] / "gateway" / "samples"


@pytest.mark.parametrize(
    ("name", "source_type"),
    [
        ("opcua.yaml", OpcUaSourceConfig),
        ("mqtt.yaml", MqttSourceConfig),
        ("sparkplug.yaml", SparkplugSourceConfig),
    ],
)
def test_every_sample_config_parses(name: str, source_type: type) -> None:
    text = (SAMPLES / name).read_text()
    assert text.count("#") >= 10, "samples are meant to be fully commented"
    config = load_gateway_config(SAMPLES / name)
    assert isinstance(config.sources[0], source_type)
    assert config.gateway.id.startswith("gw-")


def test_sample_opcua_defaults_are_secure() -> None:
    config = load_gateway_config(SAMPLES / "opcua.yaml")
    source = config.sources[0]
    assert isinstance(source, OpcUaSourceConfig)
    assert source.security.policy == "Basic256Sha256"
    assert source.security.mode == "SignAndEncrypt"
    assert config.outbox.synchronous == "full"


def _write(tmp_path: Path, data: dict[str, object]) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _base() -> dict[str, object]:
    return yaml.safe_load((SAMPLES / "sparkplug.yaml").read_text())  # type: ignore[no-any-return]


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    data = _base()
    data["outbox"] = {"max_bytez": 10}
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_gateway_config(path)
    assert err.value.file == str(path)
    assert err.value.key == "outbox.max_bytez"
    assert "unknown key" in str(err.value)


def test_wrong_value_names_key_and_expectation(tmp_path: Path) -> None:
    data = _base()
    data["outbox"] = {"drop_policy": "drop_newest"}
    with pytest.raises(ConfigError) as err:
        load_gateway_config(_write(tmp_path, data))
    assert err.value.key == "outbox.drop_policy"
    assert "drop_oldest" in err.value.expected


def test_secured_opcua_needs_a_trust_anchor(tmp_path: Path) -> None:
    data = _base()
    data["sources"] = [
        {"type": "opcua", "name": "x", "endpoint": "opc.tcp://127.0.0.1:4840", "tags": []}
    ]
    with pytest.raises(ConfigError) as err:
        load_gateway_config(_write(tmp_path, data))
    assert "trust_dir" in str(err.value)
    assert err.value.key is not None and err.value.key.startswith("sources[0]")


def test_topic_template_must_name_its_segments(tmp_path: Path) -> None:
    data = _base()
    data["sources"] = [
        {
            "type": "mqtt",
            "name": "m",
            "topics": [
                {
                    "filter": "f/{line}/x",
                    "asset": "acme/s/{area}",
                    "measurement": "energy",
                    "signal": "power_kw",
                }
            ],
        }
    ]
    with pytest.raises(ConfigError) as err:
        load_gateway_config(_write(tmp_path, data))
    assert "area" in str(err.value)


def test_bad_asset_path_is_refused(tmp_path: Path) -> None:
    data = _base()
    sources = data["sources"]
    assert isinstance(sources, list)
    sources[0]["metrics"][0]["asset"] = "acme"
    with pytest.raises(ConfigError) as err:
        load_gateway_config(_write(tmp_path, data))
    assert "levels" in str(err.value)


def test_not_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("gateway: [\n")
    with pytest.raises(ConfigError) as err:
        load_gateway_config(path)
    assert "YAML" in str(err.value)
