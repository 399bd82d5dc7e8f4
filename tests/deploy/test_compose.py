"""deploy/compose: the compose file is valid against the Compose specification's JSON schema
(vendored: deploy/compose/compose-spec.schema.json), every file it mounts exists, every named
volume is declared, only the services that must are reachable beyond 127.0.0.1, and the config
templates rendered with .env.example are accepted by the components' own loaders. The stack
itself is not started here (no container images can be pulled)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ingest.config import IngestConfig
from zhizao.config import load_model

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose"
# published beyond loopback on purpose: gateways reach MQTT over TLS, users reach the proxy
PUBLIC = {("mosquitto", "8883"), ("caddy", "443")}


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    return data


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    schema = json.loads((COMPOSE / "compose-spec.schema.json").read_text())
    jsonschema.Draft7Validator(schema).validate(_compose())
    broken = _compose()
    broken["services"]["api"]["restart_policy"] = "always"  # not a Compose key
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)


def test_images_are_pinned_and_zhizao_services_build_from_the_dockerfile() -> None:
    services = _compose()["services"]
    for name, svc in services.items():
        image = svc.get("image", "")
        assert re.search(r":\d+\.\d+\.\d+$|:v\d+\.\d+\.\d+$", image), (name, image)
    assert services["influxdb"]["image"].startswith("influxdb:2.")
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2.0.")
    for name in ("ingest", "kpi", "api"):
        assert services[name]["build"]["dockerfile"] == "Dockerfile"
        assert services[name]["user"] != "0" and "healthcheck" in services[name]
    dockerfile = (COMPOSE.parents[1] / "Dockerfile").read_text()
    assert dockerfile.count("FROM ") == 2 and "\nUSER zhizao" in dockerfile


def test_every_mounted_file_exists_and_every_volume_is_declared() -> None:
    data = _compose()
    declared = set(data["volumes"])
    for name, svc in data["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":", 1)[0]
            if src.startswith("."):
                assert (COMPOSE / src).exists(), f"{name}: {src} missing"
            else:
                assert src in declared, f"{name}: volume {src} not declared"
        if "env_file" in svc:
            assert (COMPOSE / ".env.example").exists()


def test_only_the_services_that_must_publish_beyond_loopback() -> None:
    for name, svc in _compose()["services"].items():
        for port in svc.get("ports", []):
            parts = str(port).split(":")
            if parts[0] == "127.0.0.1":
                continue
            assert (name, parts[-1]) in PUBLIC, f"{name} publishes {port} beyond 127.0.0.1"


def test_the_real_env_file_is_ignored_and_the_example_names_every_variable() -> None:
    ignored = (COMPOSE.parents[1] / ".gitignore").read_text().split()
    assert "deploy/compose/.env" in ignored
    used = set(re.findall(r"\$\{(\w+)\}", (COMPOSE / "compose.yaml").read_text()))
    for tmpl in (COMPOSE / "config").glob("*.tmpl"):
        used |= set(re.findall(r"\$\{(\w+)\}", tmpl.read_text()))
    example = dict(
        line.split("=", 1)
        for line in (COMPOSE / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert used - set(example) == set(), used - set(example)


def _rendered(name: str, tmp_path: Path) -> Path:
    env = dict(
        line.split("=", 1)
        for line in (COMPOSE / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    text = re.sub(
        r"\$\{(\w+)\}", lambda m: env[m.group(1)], (COMPOSE / "config" / name).read_text()
    )
    out = tmp_path / name.removesuffix(".tmpl")
    out.write_text(text)
    return out


def test_config_templates_are_accepted_by_the_components(tmp_path: Path) -> None:
    cfg = load_model(IngestConfig, _rendered("ingest.yaml.tmpl", tmp_path))
    assert cfg.mqtt.host == "mosquitto"
    kpi = _rendered("kpi.yaml.tmpl", tmp_path)
    assert yaml.safe_load(kpi.read_text())["influx"]["username"] == "zhizao-writer"
    from api.settings import load_settings

    api = _rendered("api.yaml.tmpl", tmp_path)
    settings = load_settings(api)
    assert settings.behind_tls_proxy and settings.port == 9130
    assert os.environ.get("ZHIZAO_API_HOST") is None  # nothing leaked into the environment


def _probe(service: dict[str, Any]) -> tuple[int, str] | None:
    """(port, path) of a service's HTTP healthcheck, None if it is not an HTTP probe."""
    test = " ".join(service.get("healthcheck", {}).get("test", []))
    m = re.search(r"http://127\.0\.0\.1:(\d+)(/[^'\"\s]*)", test)
    return (int(m.group(1)), m.group(2)) if m else None


def test_healthchecks_and_scrape_targets_reach_what_the_services_serve(tmp_path: Path) -> None:
    """Each zhizao service's healthcheck asks the port and path that service serves (from its own
    config template and routes), and VictoriaMetrics scrapes the ports the services listen on."""
    from analytics.config import load_kpi_config
    from api.routers.health import router as api_health

    services = _compose()["services"]
    api_paths = {r.path for r in api_health.routes}  # type: ignore[attr-defined]
    ingest = load_model(IngestConfig, _rendered("ingest.yaml.tmpl", tmp_path))
    (tmp_path / "site.yaml").write_text((COMPOSE / "config" / "site.yaml").read_text())
    kpi_yaml = _rendered("kpi.yaml.tmpl", tmp_path)
    kpi_yaml.write_text(kpi_yaml.read_text().replace("/etc/zhizao/site.yaml", "site.yaml"))
    kpi = load_kpi_config(kpi_yaml)
    want = {
        "api": (9130, "/healthz"),
        "ingest": (ingest.health.port, "/healthz"),
        "kpi": (kpi.health.port, "/healthz"),
    }
    assert {name: _probe(services[name]) for name in want} == want
    assert "/healthz" in api_paths and "/metrics" in api_paths
    assert ingest.health.host == "0.0.0.0" and kpi.health.host == "0.0.0.0"  # in the container
    scrape = yaml.safe_load((COMPOSE / "victoriametrics" / "scrape.yaml").read_text())
    targets = {t for job in scrape["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]}  # fmt: skip
    assert {f"ingest:{ingest.health.port}", f"kpi:{kpi.health.port}"} <= targets
