"""Reading InfluxDB's answers to a write: error text, ``Retry-After``, and which lines a 400
rejected.

InfluxDB 1.x answers a bad write with ``{"error": "..."}``. A request where some lines were stored
and others not says ``partial write: <reason> dropped=N``; parse failures list one ``unable to
parse '<line>': <reason>`` per line, field type conflicts name the field and measurement but not
the line. InfluxDB 2.x answers ``{"code": "invalid", "message": "..."}`` with the same reasons
inside. This runs only on the error path, so plain Python string work is fine here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import orjson

__all__ = ["RejectedLines", "error_text", "parse_rejected_lines", "retry_after_s"]

_DROPPED = re.compile(r"\s*dropped=(\d+)\s*$")
_UNABLE = "unable to parse '"
_CONFLICT = re.compile(
    r'field type conflict: input field "(?P<field>(?:[^"\\]|\\.)*)" on measurement '
    r'"(?P<measurement>(?:[^"\\]|\\.)*)" is type (?P<given>\w+), already exists as type '
    r"(?P<existing>\w+)"
)
# InfluxDB 3: "failed to parse line protocol: errors encountered on line(s):\nerror parsing
# line 2 (1-based): Invalid measurement was provided\n..."; the other lines are stored
# (its default, accept_partial=true)
_V3_PREFIX = "failed to parse line protocol:"
_V3_LINE = re.compile(r"error (?:parsing line|in line) (\d+)(?: \(1-based\))?: (.*)")
_BOOLS = frozenset({"t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"})
# cap on how long Retry-After may hold a request: a misconfigured proxy must not park us for days
MAX_RETRY_AFTER_S = 600.0


def error_text(body: bytes | str) -> str:
    """The human text of an InfluxDB error body (1.x ``error``, 2.x ``message``, else raw)."""
    raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.strip()
    if isinstance(doc, dict):
        for key in ("error", "message"):
            if isinstance(doc.get(key), str):
                return str(doc[key])
    return raw.strip()


def retry_after_s(headers: Mapping[str, str], now_s: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date), capped."""
    value = headers.get("retry-after") or headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now_s
        except (TypeError, ValueError, IndexError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


@dataclass(frozen=True, slots=True)
class RejectedLines:
    """What a 400 said: rejected ``(line_no, line, reason)`` (1-based line numbers in the request
    body, or None where InfluxDB does not say which line) and how many lines were stored."""

    rejected: list[tuple[int | None, str, str]]
    accepted_lines: int
    partial: bool  # True: InfluxDB stored the other lines


def _escape_measurement(name: str) -> str:
    return name.replace(",", r"\,").replace(" ", r"\ ")


def _escape_key(name: str) -> str:
    return name.replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")


def _unescape_go(text: str) -> str:
    # Go's %q-style quoting in the conflict message escapes quotes and backslashes
    return re.sub(r"\\(.)", r"\1", text)


def _value_type(raw: str) -> str:
    if raw.startswith('"'):
        return "string"
    if raw in _BOOLS:
        return "boolean"
    if raw.endswith("i"):
        return "integer"
    if raw.endswith("u"):
        return "unsigned"
    return "float"


def _conflicting_lines(
    lines: list[str], measurement: str, field: str, existing: str
) -> list[tuple[int, str]]:
    """Lines of ``measurement`` whose ``field`` value is not of the ``existing`` type."""
    head = _escape_measurement(measurement)
    key = re.escape(_escape_key(field))
    pattern = re.compile(r"(?:^|,)" + key + r'=("(?:[^"\\]|\\.)*"|[^,\s]*)')
    out: list[tuple[int, str]] = []
    for no, line in enumerate(lines, start=1):
        if not (line.startswith(head + ",") or line.startswith(head + " ")):
            continue
        # the field set starts after the first unescaped space (tags cannot hold one)
        split = re.search(r"(?<!\\) ", line)
        if split is None:
            continue
        match = pattern.search(line[split.end() :])
        if match and _value_type(match.group(1)) != existing:
            out.append((no, line))
    return out


def parse_rejected_lines(message: str, body: bytes, lines: int) -> RejectedLines:
    """Which lines of ``body`` (``lines`` lines) a 400 with error ``message`` rejected, and why."""
    text = message.strip()
    if text.startswith(_V3_PREFIX) or _V3_LINE.search(text):
        return _parse_v3(text, body, lines)
    partial = text.startswith("partial write:")
    if partial:
        text = text[len("partial write:") :].strip()
    dropped_match = _DROPPED.search(text)
    dropped = int(dropped_match.group(1)) if dropped_match else 0
    if dropped_match:
        text = text[: dropped_match.start()]
    body_lines = body.decode("utf-8", "replace").split("\n")
    first_no: dict[str, int] = {}
    for no, line in enumerate(body_lines, start=1):
        first_no.setdefault(line, no)
    rejected: list[tuple[int | None, str, str]] = []
    unparsed = 0
    for entry in text.split("\n"):
        entry = entry.strip()
        if not entry:
            continue
        if entry.startswith(_UNABLE):
            unparsed += 1
            rest = entry[len(_UNABLE) :]
            # the line itself may contain "': "; the split that names a real line wins
            cuts = [m.start() for m in re.finditer(re.escape("': "), rest)]
            for cut in cuts:
                if rest[:cut] in first_no:
                    rejected.append((first_no[rest[:cut]], rest[:cut], rest[cut + 3 :]))
                    break
            else:
                cut = cuts[0] if cuts else len(rest)
                rejected.append((None, rest[:cut], rest[cut + 3 :] or entry))
            continue
        conflict = _CONFLICT.search(entry)
        if conflict is not None:
            found = _conflicting_lines(
                body_lines,
                _unescape_go(conflict.group("measurement")),
                _unescape_go(conflict.group("field")),
                conflict.group("existing"),
            )
            if dropped:
                found = found[:dropped]
            reason = conflict.group(0)
            rejected.extend((no, line, reason) for no, line in found)
            if not found:
                rejected.append((None, "", reason))
            continue
        rejected.append((None, "", entry))
    # a 400 without "partial write" stored nothing of this request
    accepted = max(lines - unparsed - dropped, 0) if partial else 0
    return RejectedLines(rejected, accepted, partial)


def _parse_v3(text: str, body: bytes, lines: int) -> RejectedLines:
    body_lines = body.decode("utf-8", "replace").split("\n")
    rejected: list[tuple[int | None, str, str]] = []
    for match in _V3_LINE.finditer(text):
        no = int(match.group(1))
        line = body_lines[no - 1] if 0 < no <= len(body_lines) else ""
        rejected.append((no if line else None, line, match.group(2).strip()))
    if not rejected:
        rejected.append((None, "", text))
    return RejectedLines(rejected, max(lines - len(rejected), 0), partial=True)
