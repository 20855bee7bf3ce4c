"""US stock bars from Alpaca through alpaca-py: the MarketData port.

Why it is built this way:

- **Only closed bars, on Alpaca's clock.** Alpaca's bars include the one still forming; a bar counts as
  closed once a later bar has started, or once its end is ``margin_ms`` behind the venue's clock
  (``/v2/clock``, whose offset from ours is measured at connect and every ten minutes), so a local clock
  running ahead cannot promote it.
- **The newest bars whatever the gaps.** Nights, weekends and holidays have no bars, so "the last N"
  is asked newest-first over a week (``sort=desc``), not as a time window that may be empty.
- **Our retries, not alpaca-py's.** alpaca-py retries 429/504 three times with 3 s sleeps and never sets
  a request timeout; a feed that polls every few seconds would stall on both. The client's retry count
  is set to zero (the next poll is the retry) and every request gets a timeout. Both are private
  attributes of alpaca-py's REST client (``_retry``, ``_session``): there is no public knob.
- **A closed market is not a stale feed**: ``market_open`` is Alpaca's ``is_open``.
- Instruments come from the asset (price increment, fractionable or whole shares), so the paper broker
  rounds as Alpaca would.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from adapters.bar_source import InvalidBarLog, decimal_places, require_limit, require_utc
from mmats.errors import ValidationError
from mmats.execution.routing import VenueError
from mmats.model import Bar, Instrument, MarketType, Timeframe

__all__ = ["AlpacaMarketData"]

CLOCK_EVERY_S = 600.0  # how often the venue's clock offset is measured again
OPEN_EVERY_S = 60.0  # how long "is the market open" is trusted


def _timeframe(tf: Timeframe) -> Any:
    from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

    return {Timeframe.M1: TimeFrame(1, TimeFrameUnit.Minute), Timeframe.M5: TimeFrame(5, TimeFrameUnit.Minute),
            Timeframe.M15: TimeFrame(15, TimeFrameUnit.Minute), Timeframe.H1: TimeFrame(1, TimeFrameUnit.Hour),
            Timeframe.H4: TimeFrame(4, TimeFrameUnit.Hour), Timeframe.D1: TimeFrame(1, TimeFrameUnit.Day)}[tf]


class AlpacaMarketData(InvalidBarLog):
    """Closed bars of US stocks from Alpaca's data API (IEX or SIP feed)."""

    def __init__(self, data: Any, trading: Any, *, data_feed: str = "iex", name: str = "alpaca",
                 margin_ms: int = 2_000) -> None:
        self.data = data
        self.trading = trading
        self.data_feed = data_feed
        self.name = name
        self.margin_ms = margin_ms
        self.subscriptions: set[tuple[str, Timeframe]] = set()
        self._offset_ns = 0
        self._offset_at = float("-inf")
        self._open = True
        self._open_at = float("-inf")

    @classmethod
    def connect(cls, key_id: str, secret_key: str, *, api_base: str | None = None, data_feed: str = "iex",
                paper: bool = True, timeout_s: float = 10.0) -> AlpacaMarketData:
        from alpaca.data.historical import StockHistoricalDataClient
        from alpaca.trading.client import TradingClient

        data = StockHistoricalDataClient(key_id, secret_key, url_override=api_base)
        trading = TradingClient(key_id, secret_key, paper=paper, url_override=api_base)
        for client in (data, trading):
            client._retry = 0  # the feed's next poll is the retry (module docstring)
            session = client._session
            session.request = functools.partial(session.request, timeout=timeout_s)  # type: ignore[method-assign]
        return cls(data, trading, data_feed=data_feed)

    def subscribe(self, symbols: Sequence[str], timeframe: Timeframe) -> None:
        """Every symbol must be a tradable Alpaca asset: a typo fails here, by name."""
        self.instruments(symbols)
        _timeframe(timeframe)
        self.subscriptions.update((s, timeframe) for s in symbols)

    def unsubscribe(self, symbols: Sequence[str], timeframe: Timeframe) -> None:
        self.subscriptions.difference_update((s, timeframe) for s in symbols)

    def instruments(self, symbols: Sequence[str]) -> dict[str, Instrument]:
        out = {}
        for s in symbols:
            asset = self._call(lambda s=s: self.trading.get_asset(s), f"asset {s}", missing=f"no asset {s}")
            if not asset.tradable:
                raise ValidationError(f"{self.name}: {s} is not tradable at Alpaca")
            tick = Decimal(str(asset.price_increment or "0.01"))
            step = Decimal(str(asset.min_trade_increment or 1)) if asset.fractionable else Decimal(1)
            out[s] = Instrument(s, MarketType.STOCK, "USD", decimal_places(tick), decimal_places(step), step,
                                Decimal(1))
        return out

    def latest_bars(self, symbol: str, timeframe: Timeframe, limit: int = 1) -> list[Bar]:
        """The last ``limit`` closed bars, oldest first, whatever nights and weekends lie between."""
        require_limit(limit)
        from alpaca.common.enums import Sort

        start = datetime.fromtimestamp(self.now_ns() / 1e9, tz=UTC) - timedelta(days=7) \
            - timedelta(seconds=timeframe.seconds * limit)
        bars = self._bars(symbol, timeframe, start=start, limit=limit + 1, sort=Sort.DESC)
        return bars[-limit:]

    def bars_since(self, symbol: str, timeframe: Timeframe, since: datetime, limit: int = 1000) -> list[Bar]:
        require_utc(since)
        return self._bars(symbol, timeframe, start=since, limit=limit, sort=None)

    def now_ns(self) -> int:
        """The venue's clock: ours plus the offset measured against ``/v2/clock``."""
        if time.monotonic() - self._offset_at > CLOCK_EVERY_S:
            self._read_clock()
        return time.time_ns() + self._offset_ns

    def market_open(self) -> bool:
        if time.monotonic() - self._open_at > OPEN_EVERY_S:
            self._read_clock()
        return self._open

    # ----------------------------------------------------------------------------------- internals

    def _read_clock(self) -> None:
        before = time.time_ns()
        clock = self._call(self.trading.get_clock, "clock")
        after = time.time_ns()
        self._offset_ns = int(clock.timestamp.timestamp() * 1e9) - (before + after) // 2
        self._open = bool(clock.is_open)
        self._offset_at = self._open_at = time.monotonic()

    def _call(self, fn: Any, what: str, missing: str | None = None) -> Any:
        try:
            return fn()
        except Exception as exc:  # alpaca's APIError (status + body) or a requests failure (timeout, refused)
            status = getattr(exc, "status_code", None)
            if missing is not None and status == 404:
                raise ValidationError(f"{self.name}: {missing}") from exc
            code = f" (HTTP {status})" if status else ""
            raise VenueError(f"{self.name}: {what} unavailable{code}: {type(exc).__name__}: {exc}") from exc

    def _bars(self, symbol: str, timeframe: Timeframe, *, start: datetime, limit: int, sort: Any) -> list[Bar]:
        from alpaca.data.enums import DataFeed
        from alpaca.data.requests import StockBarsRequest

        request = StockBarsRequest(symbol_or_symbols=symbol, timeframe=_timeframe(timeframe), start=start,
                                   limit=limit, feed=DataFeed(self.data_feed), sort=sort)
        barset = self._call(lambda: self.data.get_stock_bars(request), f"bars for {symbol} {timeframe.value}")
        rows = barset.data.get(symbol, [])
        now = self.now_ns()
        period_ns = timeframe.seconds * 1_000_000_000
        newest = max((r.timestamp for r in rows), default=None)
        out: list[Bar] = []
        for r in rows:
            ts = r.timestamp.astimezone(UTC)
            later_exists = newest is not None and r.timestamp < newest
            if not later_exists and int(ts.timestamp() * 1e9) + period_ns + self.margin_ms * 1_000_000 > now:
                continue  # still forming on the venue's clock, and no later bar has started
            bar = self.valid_bar(symbol, ts, r.open, r.high, r.low, r.close, r.volume)
            if bar is not None:
                out.append(bar)
        out.sort(key=lambda b: b.ts)
        return out
