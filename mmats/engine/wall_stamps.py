"""Bounded wall-time stamps: when a bar time or an order passed a point of the live path.

The feed stamps each bar time it publishes, a strategy host each bar time it processed, the gatekeeper
each signal's arrival and each order's decision, the router each order it accepted and each bar it
first had. ``bench/live_pipeline.py`` and ``bench/many_strategies.py`` read them back to split the
latency by hop. They are kept in every running system, so they must stay bounded: a system that trades
for days would otherwise hold one entry per order and per bar forever. When full, the older half goes
at once (dict insertion order is time order), so trimming costs O(1) per stamp on average.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WallStamps(Generic[K]):
    __slots__ = ("kept", "wall")

    def __init__(self, kept: int) -> None:
        if kept < 2:
            raise ValueError(f"WallStamps keeps at least 2 stamps, got {kept}")
        self.kept = kept
        self.wall: dict[K, float] = {}

    def stamp(self, keys: Iterable[K], now: float | None = None, *, first: bool = False) -> None:
        """Stamp ``keys`` with ``now`` (default: the wall clock). ``first``: a key stamped before keeps
        its earlier time (when a bar time first arrived); otherwise the later time wins (when a bar time
        split over two batches was done)."""
        t = time.time() if now is None else now
        wall = self.wall
        if first:
            for k in keys:
                wall.setdefault(k, t)
        else:
            for k in keys:
                wall[k] = t
        if len(wall) > self.kept:
            for k in list(wall)[: len(wall) // 2]:
                del wall[k]

    def snapshot(self) -> dict[K, float]:
        return dict(self.wall)

    def __len__(self) -> int:
        return len(self.wall)

    def __contains__(self, key: object) -> bool:
        return key in self.wall

    def get(self, key: K) -> float | None:
        return self.wall.get(key)


# Bar times a strategy host remembers having processed (about 5 MB): bench/many_strategies.py reads them.
PROCESSED_KEPT = 50_000
