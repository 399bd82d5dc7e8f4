"""``ByteLRU``: a least-recently-used cache bounded by (estimated) bytes, not by entries.

An entry count bounds nothing when entries can be of any size: 4,096 cached key blocks of a
megabyte each are 4 GiB. Every decode cache in ingest is one of these, with the cost of an entry
estimated from the sizes of what it holds (see each user), so ingest's memory for caches stays
under the configured number of bytes whatever the peers send.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["ByteLRU"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ByteLRU(Generic[K, V]):
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K) -> V | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        self._data.move_to_end(key)
        return hit[0]

    def put(self, key: K, value: V, cost: int) -> None:
        """Keep ``value`` unless it alone exceeds the bound (then it is simply not cached)."""
        if cost > self.max_bytes:
            return
        old = self._data.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        while self._data and self.bytes + cost > self.max_bytes:
            _, (_, c) = self._data.popitem(last=False)
            self.bytes -= c
            self.evictions += 1
        self._data[key] = (value, cost)
        self.bytes += cost

    def clear(self) -> None:
        self._data.clear()
        self.bytes = 0
