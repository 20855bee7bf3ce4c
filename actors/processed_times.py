"""When a strategy host finished each bar time: the bar-processing latency of bench/many_strategies.py.

The feed stamps when it published a bar time (``FeedActor.publish_times``); a strategy actor or pool
stamps when every strategy it hosts had run on that bar and handed its signals on. The difference is
how late the strategies are, measured per bar rather than sampled, and at no cost to the message path
beyond one dict write per bar time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

KEPT = 50_000  # bar times remembered (about 5 MB; the newest), older ones dropped half at a time


class ProcessedTimes:
    def __init__(self) -> None:
        self.wall: dict[int, float] = {}  # bar time (ns) -> wall time its processing ended

    def stamp(self, bars: Iterable[tuple[object, int, float, float, float, float, float]]) -> None:
        now = time.time()
        wall = self.wall
        for b in bars:  # a bar time split over two batches is done with the later one
            wall[b[1]] = now
        if len(wall) > KEPT:
            for key in list(wall)[: len(wall) // 2]:
                del wall[key]
