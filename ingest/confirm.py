"""End-to-end confirmation: ingest tells each gateway which of its frames are stored.

A broker's PUBACK only says the broker took a message; the broker may then discard it (nobody
subscribed yet, an expired ingest session, a broker killed before it saved its state). So ingest
publishes, after the points of a batch are stored in InfluxDB (or counted into the quarantine),
the sequence numbers of the frames of that batch, per gateway and session, on

    <prefix>/<site>/<gateway-id>/confirm        QoS 1, retained

as JSON ``{"v": 1, "gateway": ..., "session": ..., "ranges": [[first, last], ...], "max_seq":
..., "at_ns": ...}``. ``ranges`` are inclusive ranges of sequence numbers. They are sets, not a
watermark: with shared subscriptions several ingest processes store different frames of one
gateway, so no single process knows that everything below some number is stored. A frame that
arrives again after it was stored (a duplicate) is confirmed again, so a lost confirmation costs
one re-send, never data. The gateway keeps a frame's samples in its outbox until a confirmation
of its session covers the frame's sequence number (see ``gateway.uplink``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from zhizao.errors import DecodeError

__all__ = [
    "CONFIRM_VERSION",
    "Confirmation",
    "confirm_subscription",
    "confirm_topic",
    "decode_confirmation",
    "encode_confirmation",
    "seq_ranges",
]

CONFIRM_VERSION = 1
# a confirmation never lists more ranges than this (a batch of frames from one gateway is a few
# ranges at most; a pathological interleaving is cut, and the rest is confirmed on re-send)
MAX_RANGES = 4096


def confirm_topic(site: str, gateway_id: str, prefix: str = "zhizao/v1") -> str:
    """``<prefix>/<site>/<gateway-id>/confirm``."""
    return f"{prefix}/{site}/{gateway_id}/confirm"


def confirm_subscription(prefix: str = "zhizao/v1") -> str:
    return f"{prefix}/+/+/confirm"


def seq_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, merged inclusive ranges of ``seqs``."""
    out: list[tuple[int, int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


@dataclass(frozen=True, slots=True)
class Confirmation:
    gateway: str
    session: str
    ranges: tuple[tuple[int, int], ...]
    at_ns: int = 0

    def covers(self, seq: int) -> bool:
        return any(a <= seq <= b for a, b in self.ranges)

    @property
    def max_seq(self) -> int:
        return max((b for _, b in self.ranges), default=-1)


def encode_confirmation(gateway: str, session: str, seqs: Iterable[int], at_ns: int) -> bytes:
    ranges = seq_ranges(seqs)[-MAX_RANGES:]
    return orjson.dumps(
        {
            "v": CONFIRM_VERSION,
            "gateway": gateway,
            "session": session,
            "ranges": ranges,
            "max_seq": max((b for _, b in ranges), default=-1),
            "at_ns": at_ns,
        }
    )


def decode_confirmation(payload: bytes) -> Confirmation:
    """Raises ``DecodeError("bad_confirmation", ...)`` on anything malformed."""
    try:
        doc = orjson.loads(payload)
        if not isinstance(doc, dict) or doc.get("v") != CONFIRM_VERSION:
            raise ValueError("not a version 1 confirmation")
        ranges = tuple((int(a), int(b)) for a, b in doc["ranges"])
        if any(a > b for a, b in ranges):
            raise ValueError("a range ends before it starts")
        return Confirmation(str(doc["gateway"]), str(doc["session"]), ranges, int(doc["at_ns"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DecodeError(
            "bad_confirmation", "confirmation message cannot be decoded", detail=str(exc)
        ) from exc
