"""The market and ledger data the risk gatekeeper reads besides the account snapshot.

Three settings need data no ``AccountState`` carries: the correlation rule (a return per bar of every
symbol), volatility-target sizing (each symbol's ATR) and Kelly sizing (each strategy's closed trades).
``RiskInputs`` collects them so the single-symbol backtest, the portfolio backtest and the gatekeeper
actor feed them the same way: ``on_bar`` for every bar of every symbol, ``on_closed_trade`` (or
``on_fill`` through a ``TradeTracker``) for every closed trade. It keeps only what the configuration
asks for: with none of the three configured it stores nothing and callers may skip it entirely.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mmats.model import Fill
from mmats.risk.correlation import CorrelationTracker
from mmats.risk.limits import EffectiveRisk, KellySpec, VolatilityTargetSpec
from mmats.risk.sizing import TradeStats

FLATTEN_PREFIX = "kill"  # mmats.engine.trader.flatten_order's ids: kill_switch, kill_<trigger>
ATR_HISTORY = 512  # bars of ATR kept per symbol, so a signal is sized on the ATR of its own bar


class WilderATR:
    """Average true range as J. Welles Wilder (and TA-Lib's ``ATR``) define it.

    The true range starts at the second bar (it needs the previous close); the first value is the mean
    of the first ``period`` true ranges, then each bar moves it by 1/period of the new range. Computed
    in plain floats in one order, so the backtest and the actors get bit-identical values.
    """

    __slots__ = ("_n", "_prev_close", "_sum", "period", "value")

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError(f"ATR period must be >= 1, got {period}")
        self.period = period
        self._prev_close: float | None = None
        self._n = 0
        self._sum = 0.0
        self.value: float | None = None

    def update(self, high: float, low: float, close: float) -> float | None:
        prev = self._prev_close
        self._prev_close = close
        if prev is None:
            return None
        tr = max(high - low, abs(high - prev), abs(low - prev))
        self._n += 1
        p = self.period
        value = self.value
        if value is None:
            self._sum += tr
            if self._n < p:
                return None
            value = self._sum / p
        else:
            value = (value * (p - 1) + tr) / p
        self.value = value
        return value


class _SymbolATR:
    """One symbol's ATRs (one per configured period) and the recent (bar time, values) history."""

    __slots__ = ("atrs", "history")

    def __init__(self, periods: tuple[int, ...]) -> None:
        self.atrs = tuple(WilderATR(p) for p in periods)
        self.history: deque[tuple[int, tuple[float | None, ...]]] = deque(maxlen=ATR_HISTORY)


@dataclass(frozen=True, slots=True)
class InputNeeds:
    """What the configuration reads: ATR periods, returns for the correlation rule, closed trades."""

    atr_periods: tuple[int, ...] = ()
    returns: bool = False
    trades: bool = False

    @property
    def bars(self) -> bool:
        """Whether bars have to reach the gatekeeper at all."""
        return bool(self.atr_periods) or self.returns

    @classmethod
    def of(cls, effective: EffectiveRisk) -> InputNeeds:
        lv = effective.levels
        specs = [s for s in (lv.sizing.default, *lv.sizing.strategies.values()) if s is not None]
        periods = sorted({s.atr_period for s in specs if isinstance(s, VolatilityTargetSpec)})
        return cls(tuple(periods), lv.correlation is not None, any(isinstance(s, KellySpec) for s in specs))


class RiskInputs:
    """Feeds the gatekeeper's correlation tracker and Kelly record, and answers ATR queries."""

    __slots__ = ("_atr", "_period_index", "correlation", "needs", "trade_stats")

    def __init__(self, needs: InputNeeds, correlation: CorrelationTracker | None,
                 trade_stats: dict[str, TradeStats]) -> None:
        self.needs = needs
        self.correlation = correlation if needs.returns else None
        self.trade_stats = trade_stats
        self._atr: dict[str, _SymbolATR] = {}
        self._period_index = {p: i for i, p in enumerate(needs.atr_periods)}

    def on_bar(self, symbol: str, ts_ns: int, high: float, low: float, close: float) -> None:
        """One closed bar (bar open time ``ts_ns``); every bar of every symbol, in time order per symbol."""
        if self.needs.atr_periods:
            st = self._atr.get(symbol)
            if st is None:
                st = self._atr[symbol] = _SymbolATR(self.needs.atr_periods)
            values = tuple(a.update(high, low, close) for a in st.atrs)
            hist = st.history
            if hist and hist[-1][0] >= ts_ns:  # a repeated bar (a feed's resend) replaces nothing
                return
            hist.append((ts_ns, values))
        corr = self.correlation
        if corr is not None:
            corr.update_price(symbol, close)

    def on_bars(self, bars: Iterable[tuple[str, int, float, float, float, float, float]]) -> None:
        """Feed tuples ``(symbol, ts_ns, open, high, low, close, volume)``, as the feed actors send them."""
        for sym, ts, _o, h, lo, c, _v in bars:
            self.on_bar(sym, ts, h, lo, c)

    def atr(self, symbol: str, period: int, ts_ns: int | None = None) -> float | None:
        """The ATR of ``symbol`` at its latest bar at or before ``ts_ns`` (None: not warmed up yet)."""
        st = self._atr.get(symbol)
        i = self._period_index.get(period)
        if st is None or i is None or not st.history:
            return None
        if ts_ns is None:
            return st.history[-1][1][i]
        for ts, values in reversed(st.history):
            if ts <= ts_ns:
                return values[i]
        return None

    def status(self) -> dict[str, Any]:
        """What has been fed so far (for the control API and for tests of the wiring)."""
        corr = self.correlation
        return {
            "needs": {"atr_periods": list(self.needs.atr_periods), "returns": self.needs.returns,
                      "trades": self.needs.trades},
            "returns": corr.observations() if corr is not None else {},
            "atr": {sym: dict(zip(self.needs.atr_periods, st.history[-1][1], strict=True))
                    for sym, st in self._atr.items() if st.history},
            "trades": {sid: {"trades": t.trades, "win_rate": t.win_rate,
                             "payoff": t.payoff if math.isfinite(t.payoff) else None}
                       for sid, t in self.trade_stats.items()},
        }

    def on_closed_trade(self, strategy_id: str, ret: float) -> None:
        """A strategy's closed round trip, as a return on its entry notional net of fees."""
        if not self.needs.trades or not math.isfinite(ret):
            return
        stats = self.trade_stats.get(strategy_id)
        if stats is None:
            stats = self.trade_stats[strategy_id] = TradeStats()
        stats.record(ret)


class _Trip:
    __slots__ = ("avg", "cost", "pnl", "qty")

    def __init__(self) -> None:
        self.qty = Decimal(0)
        self.avg = 0.0
        self.cost = 0.0  # entry notional of the trip (for the return)
        self.pnl = 0.0  # realized P&L of the trip so far, net of fees


class TradeTracker:
    """Each strategy's own round trips per symbol, from its own fills.

    The account nets strategies into one position per symbol, so its round trips cannot say whose
    trade closed. Here each (strategy, symbol) has its own book: a trip opens when the strategy's
    quantity leaves zero and closes when it returns to zero (a reversal closes one trip and opens
    the next). A kill-switch flatten (orders of ``kill_switch`` / ``kill_<trigger>``, which hold
    nothing of their own) closes every strategy's trip in the symbol at the price of the fill that
    takes the account flat.
    """

    __slots__ = ("_net", "_trips")

    def __init__(self) -> None:
        self._trips: dict[tuple[str, str], _Trip] = {}
        self._net: dict[str, Decimal] = {}

    def on_fill(self, fill: Fill) -> list[tuple[str, float]]:
        """Book one fill; returns the (strategy, return) of every trip it closed."""
        sym = fill.symbol
        signed = fill.signed_quantity
        net = self._net[sym] = self._net.get(sym, Decimal(0)) + signed
        key = (fill.strategy_id, sym)
        trip = self._trips.get(key)
        price = float(fill.price)
        if fill.strategy_id.startswith(FLATTEN_PREFIX) and (trip is None or trip.qty == 0):
            return self._flatten(sym, price, float(fill.fee)) if net == 0 else []
        if trip is None:
            trip = self._trips[key] = _Trip()
        return _book(fill.strategy_id, trip, signed, price, float(fill.fee))

    def _flatten(self, symbol: str, price: float, fee: float) -> list[tuple[str, float]]:
        held = [(k, t) for k, t in self._trips.items() if k[1] == symbol and t.qty != 0]
        out: list[tuple[str, float]] = []
        total = sum(abs(float(t.qty)) for _, t in held) or 1.0
        for (sid, _), t in held:
            q = float(t.qty)
            pnl = t.pnl + q * (price - t.avg) - fee * abs(q) / total
            out.append((sid, pnl / t.cost if t.cost > 0 else 0.0))
            self._trips[(sid, symbol)] = _Trip()
        return out


def _book(strategy_id: str, trip: _Trip, signed: Decimal, price: float, fee: float) -> list[tuple[str, float]]:
    q = trip.qty
    s = float(signed)
    if q == 0 or (q > 0) == (signed > 0):
        qf = float(q)
        trip.avg = (qf * trip.avg + s * price) / (qf + s)
        trip.cost += abs(s) * price
        trip.qty = q + signed
        trip.pnl -= fee
        return []
    closing = min(abs(signed), abs(q))
    share = float(closing / abs(signed))
    direction = 1.0 if q > 0 else -1.0
    trip.pnl += float(closing) * (price - trip.avg) * direction - fee * share
    if abs(signed) < abs(q):
        trip.qty = q + signed
        return []
    out = [(strategy_id, trip.pnl / trip.cost if trip.cost > 0 else 0.0)]
    rest = abs(signed) - closing
    trip.qty = Decimal(0)
    trip.avg = trip.cost = trip.pnl = 0.0
    if rest > 0:  # through flat: the remainder opens the next trip
        trip.qty = rest if signed > 0 else -rest
        trip.avg = price
        trip.cost = float(rest) * price
        trip.pnl = -fee * (1.0 - share)
    return out
