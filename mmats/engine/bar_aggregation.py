"""Live bar aggregation: a strategy on 5m bars fed from a 1m replay or venue feed.

The bins are the backtest's (``mmats.data.resample``): labelled by their open time and anchored at UTC
midnight; first open, max high, min low, last close, summed volume. A bin is complete, and handed to the
strategy, as soon as the source bar that ends it arrives (a 1m bar stamped 00:04 ends the 5m bin of
00:00). The source spacing is learned from the bars themselves (the smallest step seen); until it is
known, or when a source bar is missing at the end of a bin, the bin is emitted when the next bin's first
bar arrives, never later. Nothing is invented for bins without any source bar.
"""

from __future__ import annotations

from mmats.model import Timeframe

BarTuple = tuple[str, int, float, float, float, float, float]
_NS = 1_000_000_000


class BarAggregator:
    def __init__(self, timeframe: Timeframe | str) -> None:
        self.timeframe = Timeframe.parse(str(timeframe)) if not isinstance(timeframe, Timeframe) else timeframe
        self.step = self.timeframe.seconds * _NS
        self._open: dict[str, list[float | int]] = {}  # symbol -> [bin, open, high, low, close, volume]
        self._last_ts: dict[str, int] = {}
        self._spacing: dict[str, int] = {}

    def update(self, b: BarTuple) -> list[tuple[BarTuple, int]]:
        """Completed bins for this source bar, each with the source time it became known (for signals)."""
        sym, ts, o, h, lo, c, v = b
        prev = self._last_ts.get(sym)
        if prev is not None and ts > prev:
            gap = ts - prev
            self._spacing[sym] = min(self._spacing.get(sym, gap), gap)
        elif prev is not None:
            raise ValueError(f"bar aggregation for {sym}: timestamps must increase ({ts} after {prev})")
        self._last_ts[sym] = ts
        spacing = self._spacing.get(sym)
        if spacing is not None and spacing > self.step:
            raise ValueError(f"cannot aggregate {sym} to {self.timeframe.value}: its bars are "
                             f"{spacing / _NS:g} s apart, coarser than the target")
        out: list[tuple[BarTuple, int]] = []
        start = ts - ts % self.step
        cur = self._open.get(sym)
        if cur is not None and cur[0] != start:
            out.append((self._bar(sym, cur), prev if prev is not None else ts))
            cur = None
        if cur is None:
            cur = [start, o, h, lo, c, v]
            self._open[sym] = cur
        else:
            cur[2] = max(cur[2], h)
            cur[3] = min(cur[3], lo)
            cur[4] = c
            cur[5] += v
        if spacing is not None and ts + spacing >= start + self.step:
            out.append((self._bar(sym, cur), ts))
            del self._open[sym]
        return out

    @staticmethod
    def _bar(sym: str, cur: list[float | int]) -> BarTuple:
        return (sym, int(cur[0]), float(cur[1]), float(cur[2]), float(cur[3]), float(cur[4]), float(cur[5]))
