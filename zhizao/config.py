"""Loading YAML configuration into pydantic models with errors an operator can act on."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from zhizao.errors import ConfigError

__all__ = ["StrictModel", "check_host", "load_model", "parse_model", "safe_load_unique"]

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every ``<Thing>Config``: unknown keys are errors, models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?)*$"
)


def check_host(value: str) -> str:
    """A host name or IP address, nothing else: ``mqtt://127.0.0.1`` or ``host:1883`` is refused
    with what to write instead (a URL there is accepted by the clients and then fails quietly)."""
    v = value.strip()
    if "://" in v or "/" in v:
        raise ValueError(
            f"{value!r} is a URL; give the host name or IP address only (e.g. 127.0.0.1) and the "
            "port in `port`"
        )
    try:
        ipaddress.ip_address(v.strip("[]"))
        return v.strip("[]")
    except ValueError:
        pass
    if ":" in v:
        raise ValueError(f"{value!r} holds a port; put the port in `port`")
    if not v or not _HOST.match(v):
        raise ValueError(f"{value!r} is not a host name or IP address")
    return v


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with the same key twice (PyYAML keeps the
    last one silently)."""


def _mapping_unique(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # "<<: *anchor" may repeat keys on purpose; explicit ones win
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: PyYAML reports it itself
            continue
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {first + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _mapping_unique,
)


def safe_load_unique(text: str) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys (``yaml.YAMLError`` naming key and line)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_model(model: type[M], data: Any, *, file: str | None = None) -> M:
    """Validate ``data``; the first problem becomes a ``ConfigError`` naming file, key, expectation."""
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        key = _key_path(tuple(first["loc"]))
        kind = first["type"]
        if kind == "extra_forbidden":
            message, expected = f"unknown key {key!r}", "only the keys the schema defines"
        elif kind == "missing":
            message, expected = f"missing key {key!r}", "a value"
        else:
            message, expected = f"invalid value for {key!r}: {first['msg']}", first["msg"]
        more = f" (+{exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise ConfigError(message + more, file=file, key=key or None, expected=expected) from exc


def load_model(model: type[M], path: str | Path) -> M:
    """Read a YAML file and validate it into ``model``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file: {exc.strerror}", file=str(p)) from exc
    try:
        data = safe_load_unique(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        problem = getattr(exc, "problem", None) or ""
        if problem.startswith("duplicate key"):
            raise ConfigError(
                f"configuration file has a {problem}", file=str(p), key=where
            ) from exc
        raise ConfigError("configuration file is not valid YAML", file=str(p), key=where) from exc
    return parse_model(model, data if data is not None else {}, file=str(p))
