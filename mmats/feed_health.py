"""Is a live feed's venue alive? The rule behind the stale-data kill-switch trigger, testable without Ray.

A false "stale" halts trading everywhere (docs/risk.md), so the rule counts only what really means an
outage: the venue answered and the newest closed candle of ANY symbol is at most two periods old (a thin
symbol without trades has no new candle and is not an outage), or the market is closed (a forex weekend,
a stock night: no candle is expected), or it reopened less than two periods ago (the first candle after
the open closes one period later).
"""

from __future__ import annotations

from collections.abc import Mapping


class LiveFeedHealth:
    def __init__(self, period_ns: int) -> None:
        self.period_ns = period_ns
        self._closed_seen = False
        self._opened_ns = -(1 << 62)

    def alive(self, newest_by_symbol: Mapping[str, int], now_ns: int, market_open: bool) -> bool:
        """Whether this poll counts as an update. ``newest_by_symbol``: each symbol's newest closed candle
        open time (ns); ``now_ns`` on the venue's clock."""
        if not market_open:
            self._closed_seen = True
            return True
        if self._closed_seen:
            self._closed_seen = False
            self._opened_ns = now_ns
        newest = max(newest_by_symbol.values(), default=0)
        advancing = bool(newest) and now_ns - (newest + self.period_ns) <= 2 * self.period_ns
        return advancing or now_ns - self._opened_ns <= 2 * self.period_ns
