"""api.yaml: the sample parses, the environment overrides the file, unsafe settings are refused."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from api.settings import DEFAULT_PORT, load_settings
from zhizao.errors import ConfigError

SAMPLE = Path(__file__).resolve().parents[2] / "api" / "api.sample.yaml"


def test_sample_parses_with_its_documented_defaults() -> None:
    s = load_settings(SAMPLE)
    assert s.port == DEFAULT_PORT and s.host == "127.0.0.1" and s.environment == "production"
    assert s.influx.database == "zhizao"
    assert s.problems() == []
    s.check_safe()


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZHIZAO_API_PORT", "9999")
    monkeypatch.setenv("ZHIZAO_API_INFLUX__URL", "http://127.0.0.1:18086")
    s = load_settings(SAMPLE)
    assert s.port == 9999 and s.influx.url == "http://127.0.0.1:18086"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"bootstrap_admin_token": "change-me"}, "bootstrap_admin_token"),
        ({"bootstrap_admin_token": ""}, "bootstrap_admin_token"),
        ({"bootstrap_admin_token": "short-but-not-example"}, "bootstrap_admin_token"),
        (
            {"database_url": "postgresql+psycopg://zhizao:change-me@127.0.0.1/zhizao"},
            "database_url",
        ),
    ],
)
def test_unsafe_settings_are_refused_outside_development(
    overrides: dict[str, str], key: str
) -> None:
    s = load_settings(SAMPLE, **overrides)
    with pytest.raises(ConfigError) as err:
        s.check_safe()
    assert err.value.key == key
    # development accepts it, with a warning
    load_settings(SAMPLE, environment="development", **overrides).check_safe()


def test_plain_http_beyond_loopback_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        load_settings(SAMPLE, host="0.0.0.0").check_safe()
    assert "without TLS" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_settings(SAMPLE, host="0.0.0.0", behind_tls_proxy=True).check_safe()
    assert "without TLS" not in caplog.text


def test_bad_values_name_the_key(tmp_path: Path) -> None:
    p = tmp_path / "api.yaml"
    p.write_text("port: seventy\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="'port'"):
        load_settings(p)
    p.write_text("prot: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown key 'prot'"):
        load_settings(p)
    with pytest.raises(ConfigError, match="database URL"):
        load_settings(None, database_url="not a url")


def test_secrets_do_not_appear_in_repr() -> None:
    s = load_settings(SAMPLE, bootstrap_admin_token="x" * 40,
                      database_url="postgresql+psycopg://u:hunter2hunter2@127.0.0.1/db")  # fmt: skip
    assert "hunter2" not in repr(s) and "x" * 40 not in repr(s)
