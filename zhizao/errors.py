"""The one error tree of zhizao.

    ZhizaoError
     +-- ConfigError              bad configuration: file, key, what was expected
     +-- DecodeError              a payload that cannot be decoded (quarantined, never fatal)
     +-- ValidationError          a decoded sample that breaks a rule (reason per sample)
     +-- SourceUnavailable        a device, server or broker cannot be reached (retryable)
     +-- SinkError                a store refused or failed a write
     |    +-- PartialWriteError   the store accepted some lines and rejected others (not retryable)
     +-- QueryError               a read query failed

Messages have two layers: a sentence an operator understands, then the detail (host:port, last
success, next retry). Foreign exceptions are translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DecodeError",
    "PartialWriteError",
    "QueryError",
    "SinkError",
    "SourceUnavailable",
    "ValidationError",
    "ZhizaoError",
]


class ZhizaoError(Exception):
    """Base of every error zhizao raises on purpose."""

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        self.message = message
        self.detail = detail
        super().__init__(f"{message} ({detail})" if detail else message)


class ConfigError(ZhizaoError):
    """A configuration value is missing or wrong; raised at start-up, never mid-run."""

    def __init__(
        self, message: str, *, file: str | None = None, key: str | None = None, expected: str = ""
    ) -> None:
        self.file = file
        self.key = key
        self.expected = expected
        where = ": ".join(p for p in (file, key) if p)
        detail = "; ".join(p for p in (where, f"expected {expected}" if expected else "") if p)
        super().__init__(message, detail=detail or None)


class DecodeError(ZhizaoError):
    """A payload could not be decoded; carries a short machine-readable reason."""

    def __init__(self, reason: str, message: str, *, detail: str | None = None) -> None:
        self.reason = reason
        super().__init__(message, detail=detail)


class ValidationError(ZhizaoError):
    """A sample broke a validation rule."""

    def __init__(self, reason: str, message: str, *, detail: str | None = None) -> None:
        self.reason = reason
        super().__init__(message, detail=detail)


class SourceUnavailable(ZhizaoError):
    """A data source cannot be reached right now; the caller retries."""

    def __init__(
        self, message: str, *, detail: str | None = None, retry_after_s: float | None = None
    ) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message, detail=detail)


class SinkError(ZhizaoError):
    """A store failed a write. ``retryable`` says whether the same request may succeed later."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after_s: float | None = None,
        status: int | None = None,
        detail: str | None = None,
    ) -> None:
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.status = status
        super().__init__(message, detail=detail)


class PartialWriteError(SinkError):
    """The store rejected some lines of a write (HTTP 400 partial write); never retried."""

    def __init__(
        self,
        message: str,
        *,
        rejected: list[tuple[int | None, str, str]],
        accepted_lines: int | None = None,
        status: int | None = 400,
        detail: str | None = None,
    ) -> None:
        # rejected: (line number in the request body or None, the line text, the reason)
        self.rejected = rejected
        self.accepted_lines = accepted_lines
        super().__init__(message, retryable=False, status=status, detail=detail)


class QueryError(ZhizaoError):
    """A read query failed."""
