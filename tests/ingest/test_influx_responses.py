"""Parsing InfluxDB's write answers. The messages are the exact texts InfluxDB 1.6 returned for
these bodies (captured from the real server); the integration tests check the same against it."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import numpy as np

from ingest.influx.chunks import line_ends_of, split_body
from ingest.influx.responses import (
    MAX_RETRY_AFTER_S,
    error_text,
    parse_rejected_lines,
    retry_after_s,
)


def test_parse_errors_name_line_number_line_and_reason() -> None:
    body = b"m v=1 10\nm v= 20\nm,x=1 v 30\nm v=4 40\n"
    message = (
        "partial write: unable to parse 'm v= 20': missing field value\n"
        "unable to parse 'm,x=1 v 30': invalid field format dropped=0"
    )
    parsed = parse_rejected_lines(message, body, lines=4)
    assert parsed.rejected == [
        (2, "m v= 20", "missing field value"),
        (3, "m,x=1 v 30", "invalid field format"),
    ]
    assert parsed.accepted_lines == 2
    assert parsed.partial


def test_line_containing_the_separator_is_still_found() -> None:
    # a string field holding "': " must not cut the line short
    line = 'm s="it\': here",v= 5'
    body = f"m v=1 1\n{line}\n".encode()
    message = f"partial write: unable to parse '{line}': missing field value dropped=0"
    parsed = parse_rejected_lines(message, body, lines=2)
    assert parsed.rejected == [(2, line, "missing field value")]


def test_field_type_conflict_finds_the_conflicting_lines() -> None:
    body = b'm,k=a v=1.5 1\nm,k=b v=1i 3\nm,k=c v="s" 4\nm,k=d v=5 5\nother v=7i 6\n'
    message = (
        'partial write: field type conflict: input field "v" on measurement "m" is type '
        "integer, already exists as type float dropped=2"
    )
    parsed = parse_rejected_lines(message, body, lines=5)
    reason = (
        'field type conflict: input field "v" on measurement "m" is type integer, '
        "already exists as type float"
    )
    assert parsed.rejected == [(2, "m,k=b v=1i 3", reason), (3, 'm,k=c v="s" 4', reason)]
    assert parsed.accepted_lines == 3


def test_influxdb3_error_lines() -> None:
    # the format InfluxDB 3 documents for rejected points (other lines are stored)
    body = b"good v=1 1\n,bad v=1 2\ngood v=2 3\ngood v=3 123461000000000000000000000000\n"
    message = (
        "failed to parse line protocol: errors encountered on line(s):\n"
        "error parsing line 2 (1-based): Invalid measurement was provided\n"
        "error parsing line 4 (1-based): Unable to parse timestamp value "
        "'123461000000000000000000000000'"
    )
    parsed = parse_rejected_lines(message, body, lines=4)
    assert [(no, line) for no, line, _ in parsed.rejected] == [
        (2, ",bad v=1 2"),
        (4, "good v=3 123461000000000000000000000000"),
    ]
    assert parsed.rejected[0][2] == "Invalid measurement was provided"
    assert parsed.accepted_lines == 2


def test_whole_request_refusal_stores_nothing() -> None:
    parsed = parse_rejected_lines("field type conflict", b"m v=1 1\nm v=2i 2\n", lines=2)
    assert parsed.rejected == [(None, "", "field type conflict")]
    assert parsed.accepted_lines == 0
    assert not parsed.partial


def test_error_text_reads_v1_v2_and_plain_bodies() -> None:
    assert error_text(b'{"error":"database not found: \\"x\\""}') == 'database not found: "x"'
    assert error_text('{"code":"invalid","message":"bad line"}') == "bad line"
    assert error_text(b"upstream timed out\n") == "upstream timed out"


def test_retry_after_seconds_and_http_date() -> None:
    assert retry_after_s({"retry-after": "7"}, now_s=0.0) == 7.0
    now = datetime(2026, 1, 1, tzinfo=UTC)
    date = format_datetime(datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC), usegmt=True)
    assert retry_after_s({"retry-after": date}, now_s=now.timestamp()) == 30.0
    assert retry_after_s({"retry-after": "86400"}, now_s=0.0) == MAX_RETRY_AFTER_S
    assert retry_after_s({"retry-after": "soon"}, now_s=0.0) is None
    assert retry_after_s({}, now_s=0.0) is None


def test_split_body_respects_line_and_byte_limits() -> None:
    lines = [f"m v={i} {i}\n".encode() for i in range(1000)]
    body = b"".join(lines)
    ends = line_ends_of(body)
    assert len(ends) == 1000 and ends[-1] == len(body)
    samples = np.full(1000, 2, np.int64)
    chunks = split_body(body, ends, max_lines=64, max_bytes=500, line_samples=samples)
    assert b"".join(c.body for c in chunks) == body
    assert all(c.lines <= 64 and len(c.body) <= 500 for c in chunks)
    assert sum(c.lines for c in chunks) == 1000
    assert sum(c.samples or 0 for c in chunks) == 2000
    firsts = [c.first_line for c in chunks]
    assert firsts == list(np.cumsum([0] + [c.lines for c in chunks[:-1]]))


def test_split_body_gives_an_oversized_line_its_own_request() -> None:
    body = b"a v=1 1\n" + b'b s="' + b"x" * 3000 + b'" 2\n' + b"c v=1 3"
    chunks = split_body(body, line_ends_of(body), max_lines=10, max_bytes=1024)
    assert [c.lines for c in chunks] == [1, 1, 1]
    assert chunks[2].body == b"c v=1 3"
