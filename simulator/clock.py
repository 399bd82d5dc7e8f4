"""Simulated time against the wall clock: ``--speed 60`` runs a simulated hour per real minute."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["SimClock"]


@dataclass
class SimClock:
    """Maps wall time to simulated UTC nanoseconds. Until ``start`` it stands at ``sim_start_ns``.

    Shards in other processes get the same ``wall_start_s`` (epoch seconds) so they agree.
    """

    sim_start_ns: int
    speed: float = 1.0
    wall_start_s: float | None = field(default=None)

    def start(self, wall_start_s: float | None = None) -> None:
        self.wall_start_s = time.time() if wall_start_s is None else wall_start_s

    @property
    def started(self) -> bool:
        return self.wall_start_s is not None and time.time() >= self.wall_start_s

    def now_ns(self) -> int:
        """Simulated now, whole milliseconds."""
        if self.wall_start_s is None:
            return self.sim_start_ns
        elapsed_s = max(0.0, time.time() - self.wall_start_s)
        ns = self.sim_start_ns + int(elapsed_s * self.speed * 1e9)
        return ns - ns % 1_000_000

    def wall_delay_s(self, sim_ns: int) -> float:
        """Wall seconds until simulated time reaches ``sim_ns`` (0 if past, inf if not started)."""
        if self.wall_start_s is None:
            return float("inf")
        target = self.wall_start_s + (sim_ns - self.sim_start_ns) / 1e9 / self.speed
        return max(0.0, target - time.time())
