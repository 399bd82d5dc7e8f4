"""Log output for every ``zhizao`` service: the human format for terminals, or JSON lines.

``configure_logging(level, fmt)`` installs one handler on the root logger, writing to stderr:

- ``text`` (the default): ``2026-11-26 06:00:00,123 INFO gateway.app: message``
- ``json``: one object per line, ``{"ts": "2026-11-26T06:00:00.123456Z", "level": "INFO",
  "logger": "gateway.app", "message": "...", ...}``; the ``extra={...}`` fields of a log call
  (``route``, ``status``, ``duration_ms``, ``site``, ``token``, ...) are keys of the object, and
  an exception is one ``exc`` string.

Both formats pass every text through ``redact``, which masks what looks like a secret (a bearer
token, a ``zz_`` API token, the password of a URL, ``password=...``), so a secret that reaches a
message by accident still does not reach the log. Log a token by ``token_fingerprint`` instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from zhizao.errors import ConfigError

__all__ = [
    "LOG_FORMATS",
    "LOG_FORMAT_ENV",
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "configure_logging",
    "redact",
    "token_fingerprint",
]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
# the format when no option says otherwise (a systemd unit or a container can set it once)
LOG_FORMAT_ENV = "ZHIZAO_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_MASK = "***"
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer <secret> / Basic <secret>
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), rf"\1 {_MASK}"),
    # an API token anywhere (zz_ + 43 url-safe characters)
    (re.compile(r"\bzz_[A-Za-z0-9_-]{16,}"), f"zz_{_MASK}"),
    # scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@"), rf"\1{_MASK}@"),
    # password=..., "password": "...", token: ...
    (
        re.compile(
            r"(?i)(\b(?:password|passwd|passphrase|secret|token|authorization)['\"]?\s*[:=]\s*"
            r"['\"]?)(?!\*\*\*)[^\s'\",;&}]+"
        ),
        rf"\1{_MASK}",
    ),
)

# attributes every LogRecord has: anything else on a record came from ``extra=``
_RECORD_ATTRS = frozenset(
    logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None).__dict__
) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    """``text`` with what looks like a secret replaced by ``***``."""
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return text


def token_fingerprint(secret: str) -> str:
    """First 8 hex digits of the secret's SHA-256: safe to log, enough to tell tokens apart."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:8]


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (ISO 8601 UTC), level, logger, message, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="microseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_") and key not in out:
                out[key] = _plain(value)
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exc"] = redact(record.exc_text)
        if record.stack_info:
            out["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The human format, with the same redaction as the JSON one."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def resolve_format(fmt: str | None) -> LogFormat:
    """``fmt``, else ``$ZHIZAO_LOG_FORMAT``, else ``text``; an unknown name is refused."""
    chosen = fmt or os.environ.get(LOG_FORMAT_ENV) or "text"
    if chosen not in LOG_FORMATS:
        raise ConfigError(
            f"log format {chosen!r} is not known: use text or json",
            key="log_format",
            expected="text or json",
        )
    return chosen


def configure_logging(
    level: int | str = logging.WARNING,
    fmt: str | None = None,
    stream: TextIO | None = None,
    *,
    force: bool = False,
) -> LogFormat:
    """One stderr handler on the root logger in format ``fmt`` (see ``resolve_format``); returns
    the format in use. Calling it again replaces the handler it installed (a service reconfigures
    with its own settings after the command line). Like ``logging.basicConfig``, it leaves a root
    logger alone that already has handlers of someone else (a test runner's, an embedding
    program's), unless ``force`` (a service's own process)."""
    chosen = resolve_format(fmt)
    root = logging.getLogger()
    ours = [h for h in root.handlers if force or getattr(h, "_zhizao", False)]
    if len(ours) < len(root.handlers):
        return chosen
    for h in ours:
        root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    handler._zhizao = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    return chosen
