"""Building InfluxQL safely: identifiers, string literals, time bounds, durations, time zones.

Every query that contains anything not written by the programmer (a site id from a URL, a field
name from a configuration file) is built with these helpers; no query is ever made by pasting
text. The quoting follows InfluxQL's scanner: inside ``"..."`` and ``'...'`` a backslash escapes
the next character, and a raw newline ends the statement with an error, so it is escaped too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "InfluxQLError",
    "duration",
    "ident",
    "idents",
    "literal",
    "tag_equals",
    "tag_in",
    "time_range",
    "tz",
]

_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_DURATION = re.compile(r"^[1-9][0-9]*(ns|u|µ|ms|s|m|h|d|w)$")


class InfluxQLError(ValueError):
    """A value cannot be put into a query (an unknown time zone, a bad duration)."""


def ident(name: str) -> str:
    """A double-quoted identifier (measurement, tag key, field, alias)."""
    if not name:
        raise InfluxQLError("an InfluxQL identifier cannot be empty")
    return '"' + name.translate(_ESCAPES).replace('"', '\\"') + '"'


def idents(names: Iterable[str]) -> str:
    """``"a", "b"``: a column or GROUP BY list."""
    return ", ".join(ident(n) for n in names)


def literal(value: str) -> str:
    """A single-quoted string literal (a tag value, a time zone name)."""
    return "'" + value.translate(_ESCAPES).replace("'", "\\'") + "'"


def tag_equals(tags: Mapping[str, str]) -> str:
    """``"k1" = 'v1' AND "k2" = 'v2'`` (sorted by key, so equal filters give equal text)."""
    return " AND ".join(f"{ident(k)} = {literal(v)}" for k, v in sorted(tags.items()))


def tag_in(key: str, values: Sequence[str]) -> str:
    """``("k" = 'a' OR "k" = 'b')``: one of several tag values, without a regular expression."""
    if not values:
        raise InfluxQLError(f"no values given for tag {key!r}")
    return "(" + " OR ".join(f"{ident(key)} = {literal(v)}" for v in values) + ")"


def time_range(start_ns: int, end_ns: int) -> str:
    """``time >= start AND time < end`` with integer nanoseconds (InfluxQL's native unit)."""
    lo, hi = int(start_ns), int(end_ns)
    if hi < lo:
        raise InfluxQLError(f"time range ends ({hi}) before it starts ({lo})")
    return f"time >= {lo} AND time < {hi}"


def duration(text: str) -> str:
    """A duration literal for ``GROUP BY time(...)`` (``1h``, ``15m``, ``1d``); InfluxQL has no
    month or year unit, so those are refused here rather than by the server."""
    if not _DURATION.match(text):
        raise InfluxQLError(
            f"{text!r} is not an InfluxQL duration (a whole number and one of ns, u, ms, s, m, h, d, w)"
        )
    return text


def tz(name: str) -> str:
    """``tz('Asia/Shanghai')`` after checking that the zone exists (a typo would otherwise make
    InfluxDB answer with an error at query time)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InfluxQLError(
            f"unknown time zone {name!r} (use an IANA name like Asia/Shanghai)"
        ) from exc
    return f"tz({literal(name)})"
