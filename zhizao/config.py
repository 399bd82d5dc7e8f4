"""Loading YAML configuration into pydantic models with errors an operator can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from zhizao.errors import ConfigError

__all__ = ["StrictModel", "load_model", "parse_model"]

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every ``<Thing>Config``: unknown keys are errors, models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        raise ConfigError("configuration file is not valid YAML", file=str(p), key=where) from exc
    return parse_model(model, data if data is not None else {}, file=str(p))
