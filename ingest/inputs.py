"""The input layer: one small protocol every codec implements, and the registry of codecs.

A codec (``InputCodec``) says which topics it subscribes to and recognises, may refuse a message
before decoding (``admit``: an admission rule, e.g. the frames' content type), decodes many
messages at once into one ``DecodedFrames`` over the pipeline's shared ``SeriesTable``, and may
settle what it decoded against the pipeline's state (``settle``: the frames' gateway check,
duplicate detection and confirmations). Everything after that (validation, quarantine, quality
markers, counters, the InfluxDB write and the acknowledgement) is the pipeline's and the same for
every input, so a new codec is one module plus one line in ``ingest.codecs.CODECS``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray

from ingest.frames import DecodedFrames
from zhizao.model import Batch

if TYPE_CHECKING:
    from ingest.quarantine import QuarantineStore
    from ingest.validation import FrameDeduplicator

__all__ = ["InputCodec", "InputContext", "Settled", "Shared", "plain_settle"]

Shared = Callable[[str], str]  # a topic filter -> the group's shared subscription of it


@dataclass
class Settled:
    """A codec's samples after ``settle``: the batch, the input position of each sample's
    message, and per sample the counter stream (-1: none) and frame sequence number."""

    batch: Batch
    frame_index: NDArray[np.int64]
    stream: NDArray[np.int64]
    seq: NDArray[np.int64]
    # (gateway, seq, session) of frames to remember once stored, (site, gateway, session, seq)
    # of frames to confirm, creation time of the newest frame (0: none)
    frames: list[tuple[str, int, str]]
    confirm: list[tuple[str, str, str, int]]
    newest_frame_ns: int = 0
    declared: NDArray[np.int32] | None = None  # ``DecodedFrames.declared`` of ``batch``


class InputContext(Protocol):
    """What ``settle`` may use of the pipeline."""

    quarantine: QuarantineStore
    dedup: FrameDeduplicator

    def reject_message(self, topic: str, payload: bytes, reason: str, message: str) -> None: ...

    def count_rejected(self, reason: str) -> None:
        """Count a message recorded in the quarantine by the codec itself."""
        ...

    def stream_of(self, gateway: str, session: str) -> int: ...


class InputCodec(Protocol):
    """One input format."""

    name: str  # the ``codec`` label of the ingest metrics

    def subscriptions(self, shared: Shared) -> list[str]: ...

    def matches(self, topic: str) -> bool: ...

    def admit(self, topic: str, content_type: str | None) -> tuple[str, str] | None:
        """None, or (reason, sentence) to quarantine the message undecoded."""
        ...

    def decode_many(
        self, topics: Sequence[str], payloads: Sequence[bytes], now_ns: int
    ) -> DecodedFrames: ...

    def settle(
        self,
        decoded: DecodedFrames,
        topics: Sequence[str],
        payloads: Sequence[bytes],
        ctx: InputContext,
    ) -> Settled: ...


def plain_settle(decoded: DecodedFrames) -> Settled:
    """``settle`` of a codec without frames: every decoded sample, no counter stream."""
    n = len(decoded.batch)
    return Settled(
        decoded.batch,
        decoded.frame_index,
        np.full(n, -1, np.int64),
        np.zeros(n, np.int64),
        [],
        [],
        declared=decoded.declared,
    )
