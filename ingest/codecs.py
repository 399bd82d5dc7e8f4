"""The registry of ingest's inputs (``ingest.inputs.InputCodec``) and the gateway-frame input.

``CODECS`` lists every input in matching order with how it is built from the configuration; the
pipeline builds the configured ones and knows no input by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ingest.frames import CONTENT_TYPE, DecodedFrames, FrameDecoder, parse_frame_topic
from ingest.inputs import InputCodec, InputContext, Settled, Shared
from ingest.json_codec import JsonTagCodec
from ingest.sparkplug_codec import SparkplugCodec
from zhizao.model import SeriesTable

if TYPE_CHECKING:
    from ingest.config import IngestConfig

__all__ = ["CODECS", "CodecEntry", "FrameInput", "build_codecs"]


class FrameInput:
    """Gateway frames (``ingest.frames``) on ``<prefix>/<site>/<gateway>/frames``."""

    name = "frames"

    def __init__(self, config: IngestConfig, table: SeriesTable) -> None:
        self.decoder = FrameDecoder(table)
        self.prefix = config.mqtt.topic_prefix
        self.filter = config.mqtt.frame_filter

    def subscriptions(self, shared: Shared) -> list[str]:
        return [shared(f"{self.prefix}/{self.filter}/frames")]

    def matches(self, topic: str) -> bool:
        return parse_frame_topic(topic, self.prefix) is not None

    def admit(self, topic: str, content_type: str | None) -> tuple[str, str] | None:
        if content_type is not None and content_type != CONTENT_TYPE:
            # a future format version is quarantined, not guessed at
            return (
                "unsupported_content_type",
                f"frame content type {content_type!r} is not {CONTENT_TYPE!r}",
            )
        return None

    def decode_many(
        self, topics: Sequence[str], payloads: Sequence[bytes], now_ns: int
    ) -> DecodedFrames:
        return self.decoder.decode_many(payloads)

    def settle(
        self,
        decoded: DecodedFrames,
        topics: Sequence[str],
        payloads: Sequence[bytes],
        ctx: InputContext,
    ) -> Settled:
        """Refuse frames under another gateway's topic, record duplicates, number streams."""
        frames: list[tuple[str, int, str]] = []
        confirm: list[tuple[str, str, str, int]] = []
        drop: list[int] = []
        n_in = len(topics)
        stream_of = np.full(n_in, -1, np.int64)
        seq_of = np.zeros(n_in, np.int64)
        for local, gw, seq, sess in zip(
            decoded.ok, decoded.gateway_ids, decoded.seqs, decoded.sessions, strict=True
        ):
            ids = parse_frame_topic(topics[local], self.prefix)
            site = ids[0] if ids is not None else ""
            if ids is not None and ids[1] != gw:
                # a gateway publishing under another's topic: the broker's ACLs are per topic,
                # so the claim in the payload is not trusted
                drop.append(local)
                ctx.reject_message(
                    topics[local],
                    payloads[local],
                    "gateway_mismatch",
                    f"frame of gateway {gw!r} on the topic of {ids[1]!r}",
                )
                continue
            if ctx.dedup.is_duplicate(gw, seq, sess):
                drop.append(local)
                # already stored: recorded and counted without its bytes (a gateway re-sends
                # what was not confirmed; the points are in InfluxDB), and confirmed again
                ctx.quarantine.add_payload(
                    topics[local],
                    payloads[local],
                    "duplicate_frame",
                    f"frame {seq} of gateway {gw} (session {sess or '-'}) was already stored",
                    keep_payload=False,
                )
                ctx.count_rejected("duplicate_frame")
            else:
                frames.append((gw, seq, sess))
            confirm.append((site, gw, sess, seq))
            # a new session numbers its frames from 1 again: for counter continuity it is
            # another stream, like another gateway
            stream_of[local] = ctx.stream_of(gw, sess)
            seq_of[local] = seq
        batch, frame_index = decoded.batch, decoded.frame_index
        declared = decoded.declared
        if drop:
            keep = ~np.isin(frame_index, np.asarray(drop, np.int64))
            batch, frame_index = batch.take(keep), frame_index[keep]
            if declared is not None:
                declared = declared[keep]
        return Settled(
            batch,
            frame_index,
            stream_of[frame_index],
            seq_of[frame_index],
            frames,
            confirm,
            max(decoded.created_ns, default=0),
            declared,
        )


@dataclass(frozen=True, slots=True)
class CodecEntry:
    """One registered input: its name and how to build it from the configuration (None: off)."""

    name: str
    build: Callable[[IngestConfig, SeriesTable], InputCodec | None]


def _frames(config: IngestConfig, table: SeriesTable) -> InputCodec | None:
    return FrameInput(config, table) if config.mqtt.frames else None


def _sparkplug(config: IngestConfig, table: SeriesTable) -> InputCodec | None:
    if config.sparkplug is None:
        return None
    # a process on a shared subscription sees only its share of the DATA: no seq check
    return SparkplugCodec(config.sparkplug, table, check_seq=not config.mqtt.group)


def _json(config: IngestConfig, table: SeriesTable) -> InputCodec | None:
    return JsonTagCodec(config.json_topics, table) if config.json_topics is not None else None


# in matching order: the first codec whose ``matches`` accepts a topic decodes it
CODECS: tuple[CodecEntry, ...] = (
    CodecEntry("frames", _frames),
    CodecEntry("sparkplug", _sparkplug),
    CodecEntry("json", _json),
)


def build_codecs(config: IngestConfig, table: SeriesTable) -> dict[str, InputCodec]:
    """The configured codecs by name, in matching order."""
    out: dict[str, InputCodec] = {}
    for entry in CODECS:
        codec = entry.build(config, table)
        if codec is not None:
            out[entry.name] = codec
    return out
