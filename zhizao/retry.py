"""How every service waits between attempts and how it reports a failure that repeats.

``Backoff`` is the one retry policy: bounded exponential with jitter, never the 2- or 10-minute
defaults of some client libraries (a broker or database back after a restart is used again within
``max_s``). The gateway's sources and uplink, ingest's InfluxDB and quarantine retries use it.

``Episode`` is the one log-once / recovered-once rule: a failure that repeats every second must
not write a log line every second, and its end must be said once, with how many failures it had.
``failed`` counts one failure and says whether to log it (the first of the episode, or one whose
text differs from the last when ``relog_on_change``: a new failure is news even inside a streak);
``recovered`` ends the episode and returns its failure count (0: nothing to say).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff", "Episode"]


@dataclass
class Backoff:
    """Bounded exponential backoff: ``min_s``, doubling up to ``max_s``, each delay jittered by
    +/- ``jitter`` (so N processes that lost the same server do not return in step)."""

    min_s: float
    max_s: float
    jitter: float = 0.25
    _next_s: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.min_s > 0:  # a zero wait would be a busy loop against a dead server
            raise ValueError(f"backoff needs min_s > 0, got {self.min_s}")
        self.max_s = max(self.max_s, self.min_s)  # a maximum below the minimum means no growth
        if not 0 <= self.jitter < 1:
            raise ValueError(f"backoff jitter must be in [0, 1), got {self.jitter}")
        self._next_s = self.min_s

    def next_delay_s(self) -> float:
        """The wait before the next attempt (and doubles the one after, up to ``max_s``)."""
        delay = self._next_s
        self._next_s = min(self.max_s, self._next_s * 2)
        return float(delay * (1 - self.jitter + 2 * self.jitter * random.random()))

    def reset(self) -> None:
        """An attempt succeeded: the next failure waits ``min_s`` again."""
        self._next_s = self.min_s


@dataclass
class Episode:
    """A failure that starts, repeats and ends (see the module docstring)."""

    relog_on_change: bool = False
    failures: int = 0  # in the current episode
    total: int = 0  # since the process started
    detail: str = ""  # the text of the last failure

    @property
    def active(self) -> bool:
        return self.failures > 0

    def failed(self, detail: str = "") -> bool:
        """Count one failure; True when the caller should log it."""
        news = self.failures == 0 or (self.relog_on_change and detail != self.detail)
        self.failures += 1
        self.total += 1
        self.detail = detail
        return news

    def recovered(self) -> int:
        """End the episode: the number of failures it had, 0 when none was going on."""
        n, self.failures, self.detail = self.failures, 0, ""
        return n
