"""Margin over time: funding payments, liquidation of perpetual swaps and margin closeout of forex.

What a venue does to a leveraged position between orders happens here, once per bar, for backtests
(single-symbol and portfolio) and the paper venue alike: ``MarginBook.on_bar`` is the one call.

The account is cross-margined: all its equity backs all its positions. Equity is cash plus the value
of the positions (``Portfolio`` books a perpetual like a cash holding, so equity and P&L are exactly a
margin account's); margin is a requirement on top of that ledger, not a second ledger.

- **Funding** (perpetuals): at each funding time, a position of signed quantity ``q`` marked at ``p``
  receives ``-q x p x rate``: longs pay shorts when the rate is positive. Times and rates come from a
  funding series (a file with ``ts`` and ``funding_rate`` columns) or a constant rate every
  ``interval_h`` hours from 00:00 UTC; with neither there is no funding (and results say so). A
  funding time is settled on the first bar whose open time is at or after it, at that bar's open, on
  the position held after that bar's fills.
- **Liquidation** (perpetuals) and **margin closeout** (forex, ``margin_closeout`` of the margin used,
  OANDA's 50 %): a position is closed when the account's equity would fall to the maintenance margin of
  its positions. With the other positions at their marks, that is one price per position::

      P_liq = (MM_others - C_others) / (q - |q| x m)

  where ``C_others`` is cash plus the value of the other positions, ``MM_others`` their maintenance
  margin and ``m`` this instrument's maintenance rate (``maintenance_margin``; for forex
  ``margin_closeout x initial_margin``). When the bar trades through ``P_liq`` (its low for a long, its
  high for a short) the position is closed at ``P_liq``, or at the open if the bar opened beyond it
  (a gap), with the taker commission, as a trade whose reason is ``liquidation`` or ``margin_closeout``.
  Only the position whose bar crossed is closed; another symbol's position is checked on its own bar.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mmats.errors import ConfigError, DataError, ValidationError
from mmats.execution.simulated import CommissionModel, NoCommission
from mmats.model import Fill, Instrument, InstrumentKind, Liquidity, Order, OrderStatus, Side, iso
from mmats.orders import apply_fill, client_order_id, transition
from mmats.portfolio import Portfolio
from mmats.research.metrics import TradeRecord

_NS = 1_000_000_000
_DAY_S = 86_400


class FundingSource(Protocol):
    def next_funding(self, at_or_after_ns: int) -> tuple[int, float] | None:
        """The first funding time at or after ``at_or_after_ns`` and its rate (None: no more)."""
        ...

    def describe(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ConstantFunding:
    """One rate at fixed times: every ``interval_h`` hours from 00:00 UTC (8 h: 00, 08 and 16 UTC)."""

    rate: float
    interval_h: float = 8.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and abs(self.rate) < 0.1):
            raise ConfigError(f"funding rate must be a finite fraction per interval below 0.1, got {self.rate}")
        seconds = self.interval_h * 3600
        if not (seconds >= 60 and seconds == int(seconds) and _DAY_S % int(seconds) == 0):
            raise ConfigError(f"funding interval_h must divide a day into whole intervals (1, 2, 4, 8, 24 ...), "
                              f"got {self.interval_h}")

    def next_funding(self, at_or_after_ns: int) -> tuple[int, float] | None:
        step = int(self.interval_h * 3600) * _NS
        return -(-at_or_after_ns // step) * step, self.rate

    def describe(self) -> str:
        return f"constant rate {self.rate:g} every {self.interval_h:g}h from 00:00 UTC"


@dataclass(frozen=True, slots=True, eq=False)
class FundingSeries:
    """Funding times and rates as the venue published them (Binance ``fundingTime``/``fundingRate``)."""

    times_ns: tuple[int, ...]
    rates: tuple[float, ...]
    source: str = ""

    def next_funding(self, at_or_after_ns: int) -> tuple[int, float] | None:
        k = bisect_left(self.times_ns, at_or_after_ns)
        return (self.times_ns[k], self.rates[k]) if k < len(self.times_ns) else None

    def describe(self) -> str:
        span = f"{iso(self.times_ns[0])} .. {iso(self.times_ns[-1])}" if self.times_ns else "empty"
        return f"series {self.source} ({len(self.times_ns)} rates, {span})"


_RATE_COLUMNS = ("funding_rate", "fundingrate", "rate")
_TIME_COLUMNS = ("ts", "timestamp", "fundingtime", "time", "datetime", "date")


def load_funding_series(path: str | Path) -> FundingSeries:
    """A CSV or Parquet file of funding times (UTC; epoch milliseconds accepted) and rates."""
    from mmats.data import _parse_times, _read

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"funding file not found: {path}")
    try:
        df = _read(p)
    except Exception as exc:
        raise DataError(f"{path}: cannot read funding series: {exc}") from None
    names = {str(c).lower(): c for c in df.columns}
    if df.index.name is not None and str(df.index.name).lower() in _TIME_COLUMNS:
        df = df.reset_index()
        names = {str(c).lower(): c for c in df.columns}
    tcol = next((names[c] for c in _TIME_COLUMNS if c in names), None)
    rcol = next((names[c] for c in _RATE_COLUMNS if c in names), None)
    if tcol is None or rcol is None:
        raise DataError(f"{path}: a funding series needs a time column ({', '.join(_TIME_COLUMNS)}) and a rate "
                        f"column ({', '.join(_RATE_COLUMNS)}); found {list(df.columns)}")
    times = _parse_times(df[tcol], str(path), str(tcol))
    rates = np.asarray(df[rcol], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(rates) | (np.abs(rates) >= 0.1))
    if len(bad):
        raise DataError(f"{path}: row {int(bad[0])}: funding rate {rates[bad[0]]!r} is not a fraction below 0.1")
    if len(times) > 1 and np.any(np.diff(times) <= 0):
        row = int(np.flatnonzero(np.diff(times) <= 0)[0]) + 1
        raise DataError(f"{path}: row {row}: funding times must be strictly increasing ({iso(int(times[row]))})")
    return FundingSeries(tuple(int(t) for t in times), tuple(float(r) for r in rates), str(path))


# ---------------------------------------------------------------------------------------- settings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FundingSettings(_Strict):
    """A perpetual's funding when the data has none: a constant ``rate`` every ``interval_h`` hours, or a
    ``file`` of funding times and rates (columns ``ts``/``fundingTime`` and ``funding_rate``/``fundingRate``)."""

    rate: float | None = Field(None, gt=-0.1, lt=0.1)
    interval_h: float = Field(8.0, gt=0, le=24)
    file: str | None = None

    @model_validator(mode="after")
    def _one(self) -> FundingSettings:
        if (self.rate is None) == (self.file is None):
            raise ValueError("give either rate (with interval_h) or file")
        if self.file is not None and "interval_h" in self.model_fields_set:
            raise ValueError("interval_h: only with rate (a file gives its own times)")
        if self.rate is not None:
            ConstantFunding(self.rate, self.interval_h)  # the interval must divide a day
        return self

    def build(self) -> FundingSource:
        if self.file is not None:
            return load_funding_series(self.file)
        assert self.rate is not None
        return ConstantFunding(self.rate, self.interval_h)


class MarginTerms(_Strict):
    """How one symbol is held (``Instrument`` margin terms), in a system config's ``instruments`` and a
    run config's ``instrument``; unset keys keep the kind's defaults."""

    kind: InstrumentKind | None = None
    leverage: float | None = Field(None, ge=1, le=1000)
    initial_margin: float | None = Field(None, gt=0, le=1)
    maintenance_margin: float | None = Field(None, gt=0, le=1)
    margin_closeout: float | None = Field(None, gt=0, le=1)
    shortable: bool | None = None

    def terms(self) -> dict[str, Any]:
        """The margin keys that were given, as ``Instrument`` fields."""
        keys = ("kind", "leverage", "initial_margin", "maintenance_margin", "margin_closeout", "shortable")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


class InstrumentSettings(MarginTerms):
    funding: FundingSettings | None = None

    def apply(self, inst: Instrument) -> Instrument:
        """``inst`` with these terms; terms that cannot apply to the kind raise ``ConfigError``."""
        terms = self.terms()
        if "kind" in terms or "leverage" in terms:  # the kind's defaults are re-derived from the new terms
            terms = {"initial_margin": None, "maintenance_margin": None, "margin_closeout": None,
                     "shortable": None, **terms}
        try:
            out = replace(inst, **terms)
        except ValidationError as exc:
            raise ConfigError(str(exc)) from None
        if self.funding is not None and out.kind is not InstrumentKind.PERPETUAL:
            raise ConfigError(f"{inst.symbol}: funding is only paid on perpetual swaps ({inst.symbol} is {out.kind}; "
                              "set kind: perpetual)")
        return out


# ------------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class FundingPayment:
    """``amount`` > 0: received; < 0: paid. In the instrument's quote currency."""

    symbol: str
    ts_ns: int
    rate: float
    price: Decimal
    quantity: Decimal
    amount: Decimal
    strategy_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"type": "funding", "symbol": self.symbol, "time": iso(self.ts_ns), "ts_ns": self.ts_ns,
                "rate": self.rate, "price": str(self.price), "quantity": str(self.quantity),
                "amount": str(self.amount), "strategy_id": self.strategy_id}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FundingPayment:
        """The inverse of ``to_dict``: a journaled payment, booked again after a restart."""
        return cls(str(d["symbol"]), int(d["ts_ns"]), float(d["rate"]), Decimal(d["price"]), Decimal(d["quantity"]),
                   Decimal(d["amount"]), str(d.get("strategy_id", "")))


def journaled_funding(records: Iterable[Any]) -> list[FundingPayment]:
    """The funding payments among audit records (``kind`` "funding"), oldest first."""
    return [FundingPayment.from_dict(r.payload) for r in records if r.kind == "funding"]


@dataclass(frozen=True, slots=True)
class Liquidation:
    """A position the venue closed: ``trigger_price`` is the computed level, ``fill.price`` what it got."""

    symbol: str
    ts_ns: int
    reason: str  # "liquidation" (perpetual) or "margin_closeout" (forex)
    trigger_price: float
    order: Order
    fill: Fill

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.reason, "symbol": self.symbol, "time": iso(self.ts_ns),
                "trigger_price": self.trigger_price, "fill": self.fill.to_dict()}


MarginEvent = FundingPayment | Liquidation


def liquidation_price(qty: float, maintenance_rate: float, others_value: float, others_maintenance: float,
                      cash: float) -> float:
    """The price of this position at which equity equals the maintenance margin (module docstring).

    For a long, <= 0 means it cannot be liquidated; for a short, <= 0 means it is already under water.
    """
    denom = qty - abs(qty) * maintenance_rate
    return (others_maintenance - (cash + others_value)) / denom


def book_event(portfolio: Portfolio, event: MarginEvent) -> TradeRecord | None:
    """Apply an event in a ledger that mirrors the one the ``MarginBook`` watches (an actor's portfolio)."""
    if isinstance(event, FundingPayment):
        portfolio.book_funding(event.symbol, event.amount, event.strategy_id)
        return None
    trade = portfolio.apply_fill(event.fill)
    if trade is not None and portfolio.trades and portfolio.trades[-1] is trade:
        trade = portfolio.trades[-1] = replace(trade, reason=event.reason)
    return trade


@dataclass(slots=True)
class _SymbolTotals:
    funding_paid: Decimal = Decimal(0)
    funding_received: Decimal = Decimal(0)
    payments: int = 0
    liquidations: int = 0


@dataclass(slots=True)
class MarginBook:
    """Watches one ``Portfolio``: call ``on_bar`` for every bar of every symbol, after the bar's fills.

    ``on_bar`` books what it finds in that portfolio (funding in cash, a liquidation as a fill) and
    returns the events, for the caller's journal and result, for ledgers that mirror this one
    (``book_event``) and so that it cancels the symbol's working orders after a liquidation.
    """

    portfolio: Portfolio
    funding: Mapping[str, FundingSource] = field(default_factory=dict)
    commission: CommissionModel = field(default_factory=NoCommission)
    totals: dict[str, _SymbolTotals] = field(default_factory=dict)
    _next: dict[str, tuple[int, float] | None] = field(default_factory=dict)
    _marks: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for sym in self.funding:
            inst = self.portfolio.instruments.get(sym)
            if inst is None:
                raise ConfigError(f"funding for {sym}: the account does not trade it")
            if inst.kind is not InstrumentKind.PERPETUAL:
                raise ConfigError(f"funding for {sym}: only perpetual swaps pay funding ({sym} is {inst.kind})")

    def watches(self, symbol: str) -> bool:
        """Whether ``on_bar`` can ever do something for ``symbol`` (callers may skip the others)."""
        inst = self.portfolio.instruments.get(symbol)
        return inst is not None and (inst.maintenance_rate > 0.0 or symbol in self.funding)

    def on_bar(self, symbol: str, ts_ns: int, open_: float, high: float, low: float, close: float,
               owner: str = "") -> list[MarginEvent]:
        """Settle the funding times this bar reaches, then liquidate if the bar crossed the liquidation
        price. ``owner`` is the strategy id a liquidation's order and fill are booked to."""
        pf = self.portfolio
        pos = pf.positions.get(symbol)
        if pos is None:
            return []
        events: list[MarginEvent] = []
        src = self.funding.get(symbol)
        if src is not None:
            nxt = self._next[symbol] if symbol in self._next else src.next_funding(ts_ns)
            while nxt is not None and nxt[0] <= ts_ns:
                if pos.quantity:
                    events.append(self._fund(symbol, nxt[0], nxt[1], open_, owner))
                nxt = src.next_funding(nxt[0] + 1)
            self._next[symbol] = nxt
        if pos.quantity:
            liq = self._check(symbol, ts_ns, open_, high, low, owner)
            if liq is not None:
                events.append(liq)
        self._marks[symbol] = close
        return events

    def restore_funding(self, payments: Iterable[FundingPayment]) -> None:
        """Book payments settled before a restart, and settle none of their times a second time."""
        for p in payments:
            self.portfolio.book_funding(p.symbol, p.amount, p.strategy_id)
            src = self.funding.get(p.symbol)
            if src is not None:
                self._next[p.symbol] = src.next_funding(p.ts_ns + 1)

    def _fund(self, symbol: str, t_ns: int, rate: float, price: float, owner: str) -> FundingPayment:
        pf = self.portfolio
        inst = pf.instruments[symbol]
        qty = pf.positions[symbol].quantity
        px = inst.round_price(float(price))
        amount = inst.round_money(-qty * px * Decimal(repr(rate)))
        event = FundingPayment(symbol, t_ns, rate, px, qty, amount, owner)
        pf.book_funding(symbol, amount, owner)
        tot = self._totals(symbol)
        tot.payments += 1
        if amount < 0:
            tot.funding_paid -= amount
        else:
            tot.funding_received += amount
        return event

    def triggers(self, symbol: str) -> tuple[float, float]:
        """(low, high): a bar whose low is at or below ``low`` or whose high is at or above ``high`` may
        liquidate ``symbol``'s position as the account stands now (other positions at their marks).

        A hot loop compares each bar with these and calls ``on_bar`` only when one is crossed or a
        funding time is due (``next_funding_ns``); they change with fills, funding and other marks."""
        pos = self.portfolio.positions.get(symbol)
        if pos is None or not pos.quantity:
            return -math.inf, math.inf
        level = self._level(symbol)
        if level is None:
            return -math.inf, math.inf
        if pos.quantity > 0:
            return (level if level > 0.0 else -math.inf), math.inf
        return -math.inf, level

    def next_funding_ns(self, symbol: str, ts_ns: int) -> float:
        """The next funding time ``on_bar`` will settle for ``symbol`` (inf: none)."""
        src = self.funding.get(symbol)
        if src is None:
            return math.inf
        if symbol not in self._next:  # the schedule starts here: on_bar settles from this time on
            self._next[symbol] = src.next_funding(ts_ns)
        nxt = self._next[symbol]
        return math.inf if nxt is None else nxt[0]

    def _check(self, symbol: str, ts_ns: int, open_: float, high: float, low: float,
               owner: str) -> Liquidation | None:
        level = self._level(symbol)
        if level is None:
            return None
        q = float(self.portfolio.positions[symbol].quantity)
        if q > 0.0:
            if level <= 0.0 or low > level:
                return None
            price = open_ if open_ <= level else level
        else:
            if high < level:
                return None
            price = open_ if open_ >= level else level
        return self._liquidate(symbol, ts_ns, level, price, owner)

    def _level(self, symbol: str) -> float | None:
        """The liquidation price of ``symbol``'s position (None: the instrument has no maintenance margin)."""
        pf = self.portfolio
        inst = pf.instruments[symbol]
        m = inst.maintenance_rate
        if m <= 0.0:
            return None
        q = float(pf.positions[symbol].quantity)
        others_value = others_mm = 0.0  # in base currency, as cash is
        for sym, p in pf.positions.items():
            if sym == symbol or not p.quantity:
                continue
            value = (self._marks.get(sym) or float(p.last_price)) * _rate(pf, sym)
            qf = float(p.quantity)
            others_value += qf * value
            others_mm += abs(qf) * value * pf.instruments[sym].maintenance_rate
        # The level in base currency over this symbol's rate: the price in its quote currency.
        return liquidation_price(q, m, others_value, others_mm, float(pf.cash)) / _rate(pf, symbol)

    def _liquidate(self, symbol: str, ts_ns: int, level: float, price: float, owner: str) -> Liquidation:
        pf = self.portfolio
        inst = pf.instruments[symbol]
        held = pf.positions[symbol].quantity
        reason = "margin_closeout" if inst.kind is InstrumentKind.FOREX else "liquidation"
        side = Side.SELL if held > 0 else Side.BUY
        qty = abs(held)
        px = inst.round_price(float(price))
        if px <= 0:  # a level rounded to nothing: the smallest price the venue quotes
            px = Decimal(1).scaleb(-inst.price_precision)
        who = owner or reason
        cid = client_order_id(reason, f"{symbol}@{ts_ns}", "liq")
        order = Order(cid, symbol, side, qty, reduce_only=True, strategy_id=who, signal_id=str(ts_ns),
                      created_ns=ts_ns, updated_ns=ts_ns)
        transition(order, OrderStatus.SUBMITTED, ts_ns)
        transition(order, OrderStatus.ACCEPTED, ts_ns)
        apply_fill(order, qty, px, ts_ns)
        fee = inst.round_money(self.commission.fee(float(qty), float(px), Liquidity.TAKER))
        fill = Fill(cid, symbol, side, qty, px, fee, ts_ns, Liquidity.TAKER, who, f"{cid}@{ts_ns}")
        event = Liquidation(symbol, ts_ns, reason, level, order, fill)
        book_event(pf, event)
        self._totals(symbol).liquidations += 1
        return event

    def _totals(self, symbol: str) -> _SymbolTotals:
        tot = self.totals.get(symbol)
        if tot is None:
            tot = self.totals[symbol] = _SymbolTotals()
        return tot

    def summary(self, symbol: str) -> dict[str, Any]:
        """What a result reports for one symbol: its margin terms, its funding source and the totals."""
        inst = self.portfolio.instruments[symbol]
        tot = self.totals.get(symbol) or _SymbolTotals()
        src = self.funding.get(symbol)
        out: dict[str, Any] = {"kind": str(inst.kind), "leverage": inst.leverage,
                               "initial_margin": inst.initial_margin}
        if inst.kind is InstrumentKind.PERPETUAL:
            out["maintenance_margin"] = inst.maintenance_margin
            out["funding"] = src.describe() if src is not None else NO_FUNDING
            out["funding_payments"] = tot.payments
            out["funding_paid"] = float(inst.round_money(tot.funding_paid))
            out["funding_received"] = float(inst.round_money(tot.funding_received))
        else:
            out["margin_closeout"] = inst.margin_closeout
        out["liquidations"] = tot.liquidations
        return out


def _rate(pf: Portfolio, symbol: str) -> float:
    """Base-currency value of one unit of ``symbol``'s quote currency."""
    quote = pf.instruments[symbol].quote_currency.upper()
    return 1.0 if quote == pf.currency else float(pf.fx.rate(quote))


NO_FUNDING = ("none: the data has no funding-rate column and the config gives no funding series or rate, "
              "so no funding was paid or received")
