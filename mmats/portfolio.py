"""The account ledger: cash per currency, positions, realized and unrealized P&L, fees, equity, attribution.

Everything here is ``Decimal``: fills are rare compared with bars, so exact arithmetic costs little and
the ledger is the number a report and a reconciliation trust.

One account, one base currency (``currency``), cash held per currency (``balances``). A fill moves cash
in its instrument's quote currency and its fee in the currency the venue charged; every account figure
(equity, P&L, fees, exposure, drawdown) is in base currency, converted with ``mmats.fx.FxRates``.
Position-level figures (average and last price, a position's own realized P&L and fees) stay in the
position's quote currency; ``PositionSnapshot.fx_rate`` converts them.

Realized P&L and fees are converted at the rate of the fill that booked them. Realized P&L held in a
non-base currency changes base value when the rate moves afterwards: that is ``fx_pnl`` (currency
translation), computed on its own from what was booked, so the tests hold the ledger to two identities:
``equity == cash + sum(quantity * last_price * rate)`` and
``equity == initial + realized + unrealized - fees + fx_pnl``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, getcontext, localcontext, setcontext

from mmats.errors import ValidationError
from mmats.fx import FxRates
from mmats.model import AccountState, Fill, Instrument, Position, PositionSnapshot, dec_str
from mmats.research.metrics import TradeRecord

# Ledger arithmetic: products and sums of venue-precision numbers are exact at 60 digits; only the
# average entry price is rounded (to 20 decimals), so every P&L identity holds to within 1e-12.
_LEDGER = Context(prec=60)
_AVG_QUANTUM = Decimal("1e-20")
_ONE = Decimal(1)
_ZERO = Decimal(0)


# (quantity, last price, average price, realized P&L, rate, instrument) -> (snapshot, value, |value|,
# unrealized P&L), all in base currency but the snapshot
_SnapEntry = tuple[Decimal, Decimal, Decimal, Decimal, Decimal, Instrument, PositionSnapshot, Decimal, Decimal, Decimal]
_SnapExtras = tuple[Mapping[str, Decimal] | None, dict[str, Decimal], dict[str, Decimal], Decimal]


@dataclass(slots=True)
class _RoundTrip:
    """Accumulates one position's life from flat to flat, for the trade list (P&L and fees in base)."""

    side: str
    entry_ns: int
    entry_qty: Decimal = _ZERO
    entry_value: Decimal = _ZERO
    exit_qty: Decimal = _ZERO
    exit_value: Decimal = _ZERO
    realized: Decimal = _ZERO
    fees: Decimal = _ZERO


class Portfolio:
    """One account with a base currency. Instruments must be registered before their first fill.

    ``currency`` is the base currency and ``initial_cash`` is held in it. ``fx`` gives the rates of the
    other currencies (default: only the base, plus the USDT/USDC pegs to USD); a currency it cannot
    convert is an ``FxError`` naming it, never a silent 1.0.

    ``records=False`` makes a mirror that keeps the balances, the positions and the P&L and fee totals
    only: no round trips (``trades``), no per-strategy or per-market tables, no translation P&L. The
    paper venue's cash and margin mirror and the per-strategy books read nothing else, and booking a
    fill costs a third less.
    """

    def __init__(self, initial_cash: Decimal, currency: str | None = None, fx: FxRates | None = None, *,
                 records: bool = True) -> None:
        if initial_cash <= 0:
            raise ValidationError(f"initial cash must be > 0, got {initial_cash}")
        if fx is None:
            fx = FxRates(currency or "USD")
        elif currency is not None and currency.upper() != fx.base:
            raise ValidationError(f"portfolio currency {currency} differs from the rates' base {fx.base}")
        self.fx = fx
        self.records = records
        self.currency = fx.base
        self.initial_cash = initial_cash
        self.balances: dict[str, Decimal] = {self.currency: initial_cash}
        self._currency_order: tuple[str, ...] = ()
        self.fees = _ZERO
        self.realized_pnl = _ZERO
        self.peak_equity = initial_cash
        self.positions: dict[str, Position] = {}
        self.instruments: dict[str, Instrument] = {}
        self.trades: list[TradeRecord] = []
        self.realized_by_strategy: dict[str, Decimal] = defaultdict(Decimal)
        self.fees_by_strategy: dict[str, Decimal] = defaultdict(Decimal)
        self.realized_by_market: dict[str, Decimal] = defaultdict(Decimal)
        self.fees_by_market: dict[str, Decimal] = defaultdict(Decimal)
        self._trips: dict[str, _RoundTrip] = {}
        # Per non-base currency: realized P&L minus fees booked in it, in that currency and in base at
        # the booking rates; the difference at today's rate is the currency translation P&L.
        self._booked: dict[str, list[Decimal]] = {}
        # Per symbol, the last snapshot of its position and its base-currency value and P&L, with the
        # objects they were computed from: a position whose quantity, prices, P&L, instrument and rate are
        # the very same objects is not recomputed (most positions do not move between two signals).
        self._snap_cache: dict[str, _SnapEntry] = {}
        self._cash_memo: tuple[Mapping[str, Decimal], Decimal] | None = None  # (rates, cash): ``_cash``
        # (rates, cash by currency, rates but the base's, translation P&L): ``_snapshot``; dropped with the
        # cash memo when the balances move, the last three recomputed when the rates move
        self._snap_extras: _SnapExtras | None = None

    def register(self, instrument: Instrument) -> None:
        """An instrument whose quote currency no rate converts to base is refused here (``FxError``)."""
        self.fx.require([instrument.quote_currency], f"instrument {instrument.symbol}")
        self.instruments[instrument.symbol] = instrument
        self.positions.setdefault(instrument.symbol, Position(instrument.symbol, instrument.market))

    def quote_currency(self, symbol: str) -> str:
        return self.instruments[symbol].quote_currency.upper()

    # ----------------------------------------------------------------------------------------- fills

    def apply_fill(self, fill: Fill) -> TradeRecord | None:
        """Book a fill; returns the round-trip trade it completed, if any."""
        saved = getcontext()  # setcontext is ~2x cheaper than localcontext: this runs once per fill
        setcontext(_LEDGER)
        try:
            return self._apply_fill(fill)
        finally:
            setcontext(saved)

    def _rate(self, currency: str) -> Decimal:
        return _ONE if currency == self.currency else self.fx.rate(currency)

    def _book(self, currency: str, amount: Decimal, rate: Decimal) -> None:
        """Realized P&L (or minus a fee) held in ``currency``, for the translation P&L."""
        if currency == self.currency:
            return
        entry = self._booked.get(currency)
        if entry is None:
            entry = self._booked[currency] = [_ZERO, _ZERO]
        entry[0] += amount
        entry[1] += amount * rate

    def _apply_fill(self, fill: Fill) -> TradeRecord | None:
        pos = self.positions.get(fill.symbol)
        if pos is None:
            raise ValidationError(f"fill for unregistered symbol {fill.symbol!r}")
        records = self.records
        quote = self.instruments[fill.symbol].quote_currency.upper()
        fee_ccy = quote if fill.fee_currency is None else fill.fee_currency.upper()
        # A fill of a currency pair the rates follow is itself a price of that pair.
        self.fx.on_price(fill.symbol, fill.price)
        q_rate = self._rate(quote)
        f_rate = q_rate if fee_ccy == quote else self._rate(fee_ccy)
        signed = fill.signed_quantity
        balances = self.balances
        self._cash_memo = self._snap_extras = None
        balances[quote] = balances.get(quote, _ZERO) - signed * fill.price
        balances[fee_ccy] = balances.get(fee_ccy, _ZERO) - fill.fee
        fee_base = fill.fee * f_rate
        self.fees += fee_base
        pos.fees += fill.fee if fee_ccy == quote else fee_base / q_rate
        pos.last_price = fill.price
        if records:
            market = pos.market.value
            self._book(fee_ccy, -fill.fee, f_rate)
            self.fees_by_strategy[fill.strategy_id] += fee_base
            self.fees_by_market[market] += fee_base

        closed: TradeRecord | None = None
        old = pos.quantity
        if old == 0 or (old > 0) == (signed > 0):
            self._increase(pos, signed, fill, fee_base)
            return closed
        closing = min(abs(signed), abs(old))
        pnl = closing * (fill.price - pos.avg_price) * (1 if old > 0 else -1)
        pnl_base = pnl * q_rate
        pos.realized_pnl += pnl
        self.realized_pnl += pnl_base
        share = _ONE
        if records:
            self._book(quote, pnl, q_rate)
            self.realized_by_strategy[fill.strategy_id] += pnl_base
            self.realized_by_market[market] += pnl_base
            trip = self._trips[fill.symbol]
            share = closing / abs(signed)
            trip.exit_qty += closing
            trip.exit_value += closing * fill.price
            trip.realized += pnl_base
            trip.fees += fee_base * share
        pos.quantity = old + (signed if abs(signed) <= abs(old) else -old)
        if pos.quantity == 0:
            if records:
                closed = self._close_trip(fill.symbol, fill.ts_ns)
            pos.avg_price = _ZERO
        rest = abs(signed) - closing
        if rest > 0:  # flipped through flat: the remainder opens a new position
            opening = rest if signed > 0 else -rest
            self._increase(pos, opening, fill, fee_base * (_ONE - share))
        return closed

    def _increase(self, pos: Position, signed: Decimal, fill: Fill, fee_base: Decimal) -> None:
        new_qty = pos.quantity + signed
        pos.avg_price = ((pos.quantity * pos.avg_price + signed * fill.price) / new_qty).quantize(_AVG_QUANTUM)
        if pos.quantity == 0:
            pos.opened_ns = fill.ts_ns
            if self.records:
                self._trips[pos.symbol] = _RoundTrip("LONG" if signed > 0 else "SHORT", fill.ts_ns)
        pos.quantity = new_qty
        if self.records:
            trip = self._trips[pos.symbol]
            trip.entry_qty += abs(signed)
            trip.entry_value += abs(signed) * fill.price
            trip.fees += fee_base

    def _close_trip(self, symbol: str, ts_ns: int) -> TradeRecord:
        trip = self._trips.pop(symbol)
        rec = TradeRecord(
            symbol=symbol,
            side=trip.side,
            quantity=float(trip.entry_qty),
            entry_ns=trip.entry_ns,
            entry_price=float(trip.entry_value / trip.entry_qty),
            exit_ns=ts_ns,
            exit_price=float(trip.exit_value / trip.exit_qty),
            pnl=float(trip.realized - trip.fees),
            fees=float(trip.fees),
        )
        self.trades.append(rec)
        return rec

    def book_funding(self, symbol: str, amount: Decimal, strategy_id: str = "") -> None:
        """A perpetual swap's funding payment in its quote currency (``amount`` > 0 received, < 0 paid):
        cash moves, the position does not. It is realized P&L of the position, as venues report it
        (mmats.margin)."""
        pos = self.positions[symbol]
        quote = self.quote_currency(symbol)
        with localcontext(_LEDGER):
            rate = self._rate(quote)
            base = amount * rate
            self._cash_memo = self._snap_extras = None
            self.balances[quote] = self.balances.get(quote, _ZERO) + amount
            self._book(quote, amount, rate)
            pos.realized_pnl += amount
            self.realized_pnl += base
            self.realized_by_strategy[strategy_id] += base
            self.realized_by_market[pos.market.value] += base

    # ------------------------------------------------------------------------------------ valuation

    def mark(self, symbol: str, price: Decimal) -> None:
        self.positions[symbol].last_price = price
        self.fx.on_price(symbol, price)

    def on_price(self, symbol: str, price: Decimal) -> None:
        """A feed's price: marks the position if the account trades the symbol, moves a rate if the
        symbol is a currency pair the rates follow (both, for a traded pair such as USD/JPY)."""
        pos = self.positions.get(symbol)
        if pos is not None:
            pos.last_price = price
        self.fx.on_price(symbol, price)

    @property
    def cash(self) -> Decimal:
        """All cash, every currency converted to base."""
        saved = getcontext()  # as in apply_fill: the venue's cash-only rule and margin ask on every fill
        setcontext(_LEDGER)
        try:
            return self._cash()
        finally:
            setcontext(saved)

    def cash_by_currency(self) -> dict[str, Decimal]:
        """Cash held per currency, in that currency (the base first, then the others by code)."""
        balances = self.balances
        order = self._currency_order  # recomputed only when a currency is added (this runs on every snapshot)
        if len(order) != len(balances):
            others = sorted(c for c in balances if c != self.currency)
            order = self._currency_order = tuple(c for c in [self.currency, *others] if c in balances)
        return {c: balances[c] for c in order}

    @property
    def unrealized_pnl(self) -> Decimal:
        with localcontext(_LEDGER):
            return self._unrealized()

    @property
    def gross_exposure(self) -> Decimal:
        with localcontext(_LEDGER):
            return self._gross()

    @property
    def net_exposure(self) -> Decimal:
        with localcontext(_LEDGER):
            return sum((p.quantity * p.last_price * self._pos_rate(p) for p in self._open()), _ZERO)

    @property
    def equity(self) -> Decimal:
        with localcontext(_LEDGER):
            return self._equity()

    @property
    def fx_pnl(self) -> Decimal:
        """Currency translation: the base value now of realized P&L and fees booked in other currencies,
        minus their base value when booked."""
        with localcontext(_LEDGER):
            return self._fx_pnl(self.fx.current())

    def _fx_pnl(self, rates: Mapping[str, Decimal]) -> Decimal:
        """In the ledger's context, at ``rates`` (the rates object of the moment)."""
        return sum((amt * (rates.get(c) or self.fx.rate(c)) - booked for c, (amt, booked) in self._booked.items()),
                   _ZERO)

    def _open(self) -> list[Position]:
        return [p for p in self.positions.values() if p.quantity]

    def _pos_rate(self, p: Position) -> Decimal:
        return self._rate(self.instruments[p.symbol].quote_currency.upper())

    def _cash(self) -> Decimal:
        """In the ledger's context. The venue's cash-only rule, the margin checks and every snapshot ask
        for it, while the balances (written only by ``_apply_fill`` and ``book_funding``, which drop the
        memo) and the rates move far less often: the same rates object gives the last sum again."""
        rates = self.fx.current()
        memo = self._cash_memo
        if memo is not None and memo[0] is rates:
            return memo[1]
        base = self.currency
        total = _ZERO
        for c, amount in self.balances.items():
            if c == base:
                total += amount
            elif amount:
                total += amount * (rates.get(c) or self.fx.rate(c))
        self._cash_memo = (rates, total)
        return total

    def _unrealized(self) -> Decimal:
        return sum((p.unrealized_pnl * self._pos_rate(p) for p in self._open()), _ZERO)

    def _gross(self) -> Decimal:
        return sum((p.notional * self._pos_rate(p) for p in self._open()), _ZERO)

    def _equity(self) -> Decimal:
        return self._cash() + sum((p.quantity * p.last_price * self._pos_rate(p) for p in self._open()), _ZERO)

    def update_peak(self) -> Decimal:
        with localcontext(_LEDGER):
            return self._update_peak()

    def _update_peak(self) -> Decimal:
        eq = self._equity()
        if eq > self.peak_equity:
            self.peak_equity = eq
        return eq

    def snapshot(self, ts_ns: int) -> AccountState:
        saved = getcontext()
        setcontext(_LEDGER)
        try:
            return self._snapshot(ts_ns)
        finally:
            setcontext(saved)

    def _snapshot(self, ts_ns: int) -> AccountState:
        # one pass: the rates, the cash and every position's value once (this runs on every signal)
        base = self.currency
        rates = self.fx.current()
        positions = []
        gross = net = unrealized = _ZERO
        cache = self._snap_cache
        for p in self.positions.values():
            q = p.quantity
            if not q:
                continue
            inst = self.instruments[p.symbol]
            quote = inst.quote_currency.upper()
            rate = _ONE if quote == base else rates.get(quote) or self.fx.rate(quote)
            last, avg, realized = p.last_price, p.avg_price, p.realized_pnl
            e = cache.get(p.symbol)
            if (e is None or e[0] is not q or e[1] is not last or e[2] is not avg or e[3] is not realized
                    or e[4] is not rate or e[5] is not inst):
                pnl = p.unrealized_pnl
                snap = PositionSnapshot(p.symbol, p.market, q, avg, last, pnl, realized, inst.margin(q, last),
                                        quote, rate)
                value = q * last * rate
                e = cache[p.symbol] = (q, last, avg, realized, rate, inst, snap, value, abs(value), pnl * rate)
            positions.append(e[6])
            net += e[7]
            gross += e[8]
            unrealized += e[9]
        cash = self._cash()
        eq = cash + net
        extras = self._snap_extras  # shared by the snapshots until the balances or the rates move: read only
        if extras is None or extras[0] is not rates:
            extras = self._snap_extras = (
                rates, extras[1] if extras is not None else self.cash_by_currency(),
                {c: r for c, r in rates.items() if c != base}, self._fx_pnl(rates))
        if eq > self.peak_equity:
            self.peak_equity = eq
        return AccountState(
            ts_ns=ts_ns,
            currency=base,
            cash=cash,
            equity=eq,
            positions=tuple(positions),
            realized_pnl=self.realized_pnl,
            unrealized_pnl=unrealized,
            fees=self.fees,
            peak_equity=self.peak_equity,
            gross_exposure=gross,
            cash_by_currency=extras[1],
            fx_rates=extras[2],
            fx_pnl=extras[3],
            net_exposure=net,
        )

    def attribution(self) -> dict[str, dict[str, dict[str, str]]]:
        """Realized P&L and fees (base currency) per strategy and per market, as exact Decimal strings."""
        def table(realized: dict[str, Decimal], fees: dict[str, Decimal]) -> dict[str, dict[str, str]]:
            return {k: {"realized_pnl": dec_str(realized.get(k, _ZERO)), "fees": dec_str(fees.get(k, _ZERO))}
                    for k in sorted(set(realized) | set(fees))}

        return {
            "by_strategy": table(self.realized_by_strategy, self.fees_by_strategy),
            "by_market": table(self.realized_by_market, self.fees_by_market),
        }
