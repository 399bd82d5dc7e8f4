"""Cutting a line-protocol body into requests at line boundaries, without re-encoding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["RequestChunk", "line_ends_of", "split_body"]


@dataclass(frozen=True, slots=True)
class RequestChunk:
    """One request's body: ``lines`` whole lines starting at line ``first_line`` (0-based) of the
    body it was cut from; ``samples`` is None where the caller did not know it."""

    body: bytes
    lines: int
    samples: int | None
    first_line: int
    line_samples: NDArray[np.int64] | None = None


def line_ends_of(body: bytes) -> NDArray[np.int64]:
    """Byte offset just after each line (vectorized newline scan); a last line without ``\\n``
    counts too."""
    ends = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == 0x0A).astype(np.int64) + 1
    if body and not body.endswith(b"\n"):
        ends = np.append(ends, np.int64(len(body)))
    return ends


def split_body(
    body: bytes,
    line_ends: NDArray[np.int64],
    max_lines: int,
    max_bytes: int,
    line_samples: NDArray[np.int64] | None = None,
) -> list[RequestChunk]:
    """Greedy cut into parts of at most ``max_lines`` lines and ``max_bytes`` bytes; a single line
    longer than ``max_bytes`` becomes a part of its own (it has to go somewhere). One searchsorted
    per part, so the loop runs per request, not per line."""
    n = len(line_ends)
    if n == 0:
        return []
    sample_cum = None if line_samples is None else np.concatenate(([0], np.cumsum(line_samples)))
    chunks: list[RequestChunk] = []
    first = 0
    start_byte = 0
    while first < n:
        limit = int(np.searchsorted(line_ends, start_byte + max_bytes, side="right"))
        last = min(first + max_lines, max(limit, first + 1), n)
        end_byte = int(line_ends[last - 1])
        chunks.append(
            RequestChunk(
                body=body if (first == 0 and last == n) else body[start_byte:end_byte],
                lines=last - first,
                samples=None if sample_cum is None else int(sample_cum[last] - sample_cum[first]),
                first_line=first,
                line_samples=None if line_samples is None else line_samples[first:last],
            )
        )
        first, start_byte = last, end_byte
    return chunks
