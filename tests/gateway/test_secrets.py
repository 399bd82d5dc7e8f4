"""Issue 17 items 10 and 11: secrets never in clear in a repr, private files on disk."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretBytes, SecretStr

from gateway.config import GatewayConfig
from zhizao.config import parse_model
from zhizao.errors import ConfigError

_SECRET_NAME = re.compile(r"(^|_)(password|passwd|token|secret|passphrase|api_key)$")
_PACKAGES = ("zhizao", "gateway", "ingest", "analytics", "api")


def _config_models() -> list[type[BaseModel]]:
    models: dict[str, type[BaseModel]] = {}
    for name in _PACKAGES:
        pkg = importlib.import_module(name)
        for info in pkgutil.walk_packages(pkg.__path__, name + "."):
            if info.name.endswith(("__main__", "_pb2")) or ".migrations" in info.name:
                continue
            module = importlib.import_module(info.name)
            for obj in vars(module).values():
                if (
                    inspect.isclass(obj)
                    and issubclass(obj, BaseModel)
                    and obj.__module__.split(".")[0] in _PACKAGES
                ):
                    models[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(models.values())


def _types(annotation: Any) -> set[Any]:
    args = typing.get_args(annotation)
    if not args:
        return {annotation}
    out: set[Any] = set()
    for a in args:
        out |= _types(a)
    return out


def test_every_secret_field_of_every_config_model_is_a_secret_type() -> None:
    models = _config_models()
    assert len(models) > 20  # the walk found the configs (gateway, ingest, influx, ...)
    plain: list[str] = []
    checked = 0
    for model in models:
        for name, info in model.model_fields.items():
            if not _SECRET_NAME.search(name):
                continue
            checked += 1
            kinds = _types(info.annotation)
            if str in kinds or bytes in kinds or not kinds & {SecretStr, SecretBytes}:
                plain.append(f"{model.__module__}.{model.__qualname__}.{name}")
    assert checked >= 5
    assert not plain, f"secret fields typed as plain strings: {plain}"


def _config_with_secrets() -> dict[str, Any]:
    broker = {"username": "gw", "password": "broker-pw-123"}
    return {
        "gateway": {"id": "gw", "enterprise": "e", "site": "s"},
        "sources": [
            {
                "type": "opcua",
                "name": "plc",
                "endpoint": "opc.tcp://127.0.0.1:4840",
                "security": {
                    "trust_dir": "/tmp",
                    "username": "op",
                    "password": "opcua-pw-456",
                },
            },
            {
                "type": "mqtt",
                "name": "meters",
                "broker": broker,
                "topics": [
                    {
                        "filter": "a/{m}",
                        "asset": {"machine": "{m}"},
                        "measurement": "e",
                        "signal": "p",
                    }
                ],
            },
        ],
        "uplink": {"type": "mqtt", "broker": broker},
    }


def test_repr_of_gateway_config_holds_no_password() -> None:
    config = parse_model(GatewayConfig, _config_with_secrets())
    text = repr(config) + str(config) + str(config.model_dump())
    for secret in ("broker-pw-123", "opcua-pw-456"):
        assert secret not in text
    influx = _config_with_secrets()
    influx["uplink"] = {
        "type": "influx",
        "influx": {"url": "http://127.0.0.1:1", "database": "d", "token": "influx-tok-789"},
    }
    config = parse_model(GatewayConfig, influx)
    assert "influx-tok-789" not in repr(config) + str(config.model_dump())


def test_opcua_private_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    from gateway.sources.opcua.source import check_private_key

    key = tmp_path / "client_key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    os.chmod(key, 0o644)
    with pytest.raises(ConfigError, match="0600"):
        check_private_key(key)
    os.chmod(key, 0o600)
    check_private_key(key)  # accepted
    assert key.stat().st_mode & 0o777 == 0o600
