"""Forex candles from OANDA v20 through oandapyV20: the MarketData port.

Why it is built this way:

- **Closed means OANDA says ``complete``.** OANDA marks every candle complete or not, so no clock
  guess is needed; an incomplete candle is never a bar (look-ahead).
- **Mid prices** (``price=M``): the paper broker applies its own spread and slippage models, as in a
  backtest, so bars must not already carry one side's spread.
- **Instruments come from the account** (``AccountInstruments``): display precision, pip location and
  trade-units precision are the account's own, so the paper broker rounds as OANDA would.
- **The market's weekly close is not staleness.** OANDA publishes no candles from Friday 21:00 to
  Sunday 22:00 UTC (the widest window over both daylight-saving seasons): ``market_open`` says so and
  the feed does not raise the stale-data alarm then.
- Every error is one ``V20Error`` (HTTP status and OANDA's message) or a ``requests`` failure; both
  become ``VenueError`` naming the instrument.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from adapters.bar_source import InvalidBarLog, require_limit, require_utc
from mmats.errors import ValidationError
from mmats.execution.routing import VenueError
from mmats.model import Bar, Instrument, MarketType, Timeframe

__all__ = ["OandaMarketData", "forex_market_open"]

GRANULARITY = {Timeframe.M1: "M1", Timeframe.M5: "M5", Timeframe.M15: "M15", Timeframe.H1: "H1",
               Timeframe.H4: "H4", Timeframe.D1: "D"}


def forex_market_open(ts: datetime) -> bool:
    """False from Friday 21:00 to Sunday 22:00 UTC, when OANDA's forex market is closed."""
    wd, hour = ts.weekday(), ts.hour
    if wd == 4:
        return hour < 21
    if wd == 5:
        return False
    if wd == 6:
        return hour >= 22
    return True


def _time(text: str) -> datetime:
    """OANDA's RFC 3339 times carry nanoseconds (``...00.000000000Z``); candles start on whole seconds."""
    return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


class OandaMarketData(InvalidBarLog):
    """Closed mid-price candles of one OANDA account's instruments."""

    def __init__(self, api: Any, account_id: str, *, name: str = "oanda") -> None:
        self.api = api
        self.account_id = account_id
        self.name = name
        self.subscriptions: set[tuple[str, Timeframe]] = set()
        self._instruments: dict[str, dict[str, Any]] | None = None

    @classmethod
    def connect(cls, token: str, account_id: str, *, api_base: str | None = None, live: bool = False,
                timeout_s: float = 10.0) -> OandaMarketData:
        """``api_base`` registers another address (a fake venue, a gateway) as an oandapyV20 environment."""
        import oandapyV20
        from oandapyV20.oandapyV20 import TRADING_ENVIRONMENTS

        environment = "live" if live else "practice"
        if api_base is not None:
            environment = "mmats-" + hashlib.sha256(api_base.encode()).hexdigest()[:12]
            TRADING_ENVIRONMENTS[environment] = {"api": api_base.rstrip("/"), "stream": api_base.rstrip("/")}
        api = oandapyV20.API(access_token=token, environment=environment, request_params={"timeout": timeout_s})
        return cls(api, account_id)

    def subscribe(self, symbols: Sequence[str], timeframe: Timeframe) -> None:
        """Every instrument and the timeframe are checked first: a typo fails here, by name."""
        known = self._account_instruments()
        unknown = [s for s in symbols if s not in known]
        if unknown:
            raise ValidationError(f"{self.name}: no instrument {', '.join(unknown)} in account {self.account_id}")
        if timeframe not in GRANULARITY:
            raise ValidationError(f"{self.name}: timeframe {timeframe.value} has no OANDA granularity")
        self.subscriptions.update((s, timeframe) for s in symbols)

    def unsubscribe(self, symbols: Sequence[str], timeframe: Timeframe) -> None:
        self.subscriptions.difference_update((s, timeframe) for s in symbols)

    def instruments(self, symbols: Sequence[str]) -> dict[str, Instrument]:
        known = self._account_instruments()
        out = {}
        for s in symbols:
            if s not in known:
                raise ValidationError(f"{self.name}: no instrument {s} in account {self.account_id}")
            info = known[s]
            units = int(info.get("tradeUnitsPrecision", 0))
            quote = s.split("_")[1] if "_" in s else s[-3:]
            out[s] = Instrument(s, MarketType.FOREX, quote, int(info["displayPrecision"]), units,
                                Decimal(1).scaleb(-units), Decimal(0), Decimal(1).scaleb(int(info["pipLocation"])))
        return out

    def latest_bars(self, symbol: str, timeframe: Timeframe, limit: int = 1) -> list[Bar]:
        """The last ``limit`` complete candles, oldest first (one more is asked for: the forming one)."""
        require_limit(limit)
        return self._bars(symbol, timeframe, {"count": limit + 1})[-limit:]

    def bars_since(self, symbol: str, timeframe: Timeframe, since: datetime, limit: int = 1000) -> list[Bar]:
        require_utc(since)
        start = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000000000Z")
        return self._bars(symbol, timeframe, {"from": start, "count": limit})

    def now_ns(self) -> int:
        return time.time_ns()

    def market_open(self) -> bool:
        return forex_market_open(datetime.now(UTC))

    # ----------------------------------------------------------------------------------- internals

    def _request(self, endpoint: Any, what: str) -> Any:
        try:
            return self.api.request(endpoint)
        except Exception as exc:  # V20Error (HTTP status + OANDA's message) or a requests failure
            code = getattr(exc, "code", None)
            status = f" (HTTP {code})" if code else ""
            raise VenueError(f"{self.name}: {what} unavailable{status}: {type(exc).__name__}: {exc}") from exc

    def _account_instruments(self) -> dict[str, dict[str, Any]]:
        if self._instruments is None:
            from oandapyV20.endpoints.accounts import AccountInstruments

            answer = self._request(AccountInstruments(accountID=self.account_id), "account instruments")
            self._instruments = {str(i["name"]): dict(i) for i in answer.get("instruments", [])}
        return self._instruments

    def _bars(self, symbol: str, timeframe: Timeframe, params: dict[str, Any]) -> list[Bar]:
        from oandapyV20.endpoints.instruments import InstrumentsCandles

        granularity = GRANULARITY.get(timeframe)
        if granularity is None:
            raise ValidationError(f"{self.name}: timeframe {timeframe.value} has no OANDA granularity")
        endpoint = InstrumentsCandles(instrument=symbol, params={"granularity": granularity, "price": "M", **params})
        answer = self._request(endpoint, f"candles for {symbol} {timeframe.value}")
        out: list[Bar] = []
        for c in answer.get("candles", []):
            if not c.get("complete"):
                continue
            mid = c.get("mid") or {}
            bar = self.valid_bar(symbol, _time(str(c.get("time"))), mid.get("o"), mid.get("h"), mid.get("l"),
                                 mid.get("c"), c.get("volume"))
            if bar is not None:
                out.append(bar)
        out.sort(key=lambda b: b.ts)
        return out
