"""Closed bars from a crypto exchange's REST candles through ccxt: the MarketData port.

Why it is built this way:

- **Only closed bars, judged on the venue's clock.** A venue's newest candle is usually still forming;
  handing it to a strategy as a bar is look-ahead (its close is not yet a close). A candle counts as
  closed when the venue has already started a later one, or when its end is ``margin_ms`` behind the
  venue's clock (ccxt's measured time difference, so a local clock that runs ahead cannot promote a
  forming candle).
- **Bad candles are errors that name the venue, symbol and time,** through the kernel's ``Bar``
  validation (inconsistent OHLC, non-finite values), never silently repaired.
- **Polling, not streaming,** so it needs nothing but the REST API; a websocket feed can implement the
  same port later. Timeframes are checked against what the exchange offers at subscribe time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from adapters.bar_source import InvalidBarLog, require_limit, require_utc
from adapters.ccxt_client import make_exchange, venue_now_ms
from mmats.errors import ValidationError
from mmats.execution.routing import VenueError
from mmats.model import Bar, Instrument, MarketType, Timeframe

__all__ = ["CcxtMarketData"]


class CcxtMarketData(InvalidBarLog):
    """One ccxt exchange as a source of closed OHLCV bars (public endpoints: no keys needed)."""

    def __init__(self, exchange: Any, *, name: str | None = None, margin_ms: int = 2_000) -> None:
        self.exchange = exchange
        self.name = name or str(exchange.id)
        self.margin_ms = margin_ms
        self.subscriptions: set[tuple[str, Timeframe]] = set()

    @classmethod
    def connect(cls, exchange_id: str, *, api_base: str | None = None, timeout_ms: int = 10_000,
                margin_ms: int = 2_000, swaps: bool = False) -> CcxtMarketData:
        """``swaps``: the exchange's linear perpetual swap markets (BASE/QUOTE:SETTLE) instead of spot."""
        options = {"defaultType": "future", "defaultSubType": "linear", "fetchMarkets": {"types": ["linear"]}}
        return cls(make_exchange(exchange_id, api_base=api_base, timeout_ms=timeout_ms,
                                 options=options if swaps else None), margin_ms=margin_ms)

    def subscribe(self, symbols: Sequence[str], timeframe: Timeframe) -> None:
        """Check every symbol and the timeframe at the venue first: a typo fails here, by name."""
        markets = self._markets()
        unknown = [s for s in symbols if s not in markets]
        if unknown:
            raise ValidationError(f"{self.name}: no market {', '.join(unknown)}")
        offered = self.exchange.timeframes or {}
        if timeframe.value not in offered:
            raise ValidationError(f"{self.name}: timeframe {timeframe.value} not offered "
                                  f"(offered: {', '.join(offered)})")
        self.subscriptions.update((s, timeframe) for s in symbols)

    def instruments(self, symbols: Sequence[str]) -> dict[str, Instrument]:
        """The venue's tick, lot and minimum notional per symbol (the paper broker enforces them), read in
        the exchange's own ``precisionMode`` (a step, a count of decimals; significant digits are refused)."""
        from adapters.ccxt_broker import instrument_from_market

        markets = self._markets()
        unknown = [s for s in symbols if s not in markets]
        if unknown:
            raise ValidationError(f"{self.name}: no market {', '.join(unknown)}")
        mode = int(self.exchange.precisionMode)
        return {s: instrument_from_market(markets[s], MarketType.CRYPTO, mode) for s in symbols}

    def now_ns(self) -> int:
        """The venue's clock as ccxt estimates it (what "closed" and "stale" are judged on)."""
        return venue_now_ms(self.exchange) * 1_000_000

    def market_open(self) -> bool:
        """Crypto trades around the clock: a candle that stops advancing is always news."""
        return True

    def unsubscribe(self, symbols: Sequence[str], timeframe: Timeframe) -> None:
        self.subscriptions.difference_update((s, timeframe) for s in symbols)

    def latest_bars(self, symbol: str, timeframe: Timeframe, limit: int = 1) -> list[Bar]:
        """The last ``limit`` closed bars, oldest first (one candle more is asked for: the forming one)."""
        require_limit(limit)
        return self._closed(symbol, timeframe, self._candles(symbol, timeframe, None, limit + 1))[-limit:]

    def bars_since(self, symbol: str, timeframe: Timeframe, since: datetime, limit: int = 1000) -> list[Bar]:
        """Closed bars opening at or after ``since`` (UTC), oldest first: what a restarted strategy replays."""
        require_utc(since)
        since_ms = int(since.timestamp() * 1000)
        return self._closed(symbol, timeframe, self._candles(symbol, timeframe, since_ms, limit))

    # ----------------------------------------------------------------------------------- internals

    def _markets(self) -> dict[str, Any]:
        try:
            return dict(self.exchange.load_markets())
        except Exception as exc:
            raise VenueError(f"{self.name}: markets unavailable: {type(exc).__name__}: {exc}") from exc

    def _candles(self, symbol: str, timeframe: Timeframe, since_ms: int | None, limit: int) -> list[list[Any]]:
        self._markets()
        try:
            return list(self.exchange.fetch_ohlcv(symbol, timeframe.value, since_ms, limit))
        except Exception as exc:
            raise VenueError(f"{self.name}: candles for {symbol} {timeframe.value} unavailable: "
                             f"{type(exc).__name__}: {exc}") from exc

    def _closed(self, symbol: str, timeframe: Timeframe, candles: list[list[Any]]) -> list[Bar]:
        period_ms = timeframe.seconds * 1000
        now = venue_now_ms(self.exchange)
        rows = sorted({c[0]: c for c in candles}.values(), key=lambda c: c[0])  # a repeated row: the last one
        out: list[Bar] = []
        for k, (t_ms, o, h, low, c, v) in enumerate(rows):
            later_exists = k + 1 < len(rows)
            if not later_exists and t_ms + period_ms + self.margin_ms > now:
                break  # still forming on the venue's clock
            bar = self.valid_bar(symbol, datetime.fromtimestamp(t_ms / 1000, tz=UTC), o, h, low, c, v)
            if bar is not None:
                out.append(bar)
        return out
