"""The account ledger: cash, positions, realized and unrealized P&L, fees, equity and attribution.

Everything here is ``Decimal``: fills are rare compared with bars, so exact arithmetic costs little and
the ledger is the number a report and a reconciliation trust. The invariant the tests hold it to:
``equity == cash + sum(quantity * last_price)`` and ``equity == initial + realized + unrealized - fees``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Context, Decimal, getcontext, localcontext, setcontext

from mmats.errors import ValidationError
from mmats.model import AccountState, Fill, Instrument, Position, PositionSnapshot, dec_str
from mmats.research.metrics import TradeRecord

# Ledger arithmetic: products and sums of venue-precision numbers are exact at 60 digits; only the
# average entry price is rounded (to 20 decimals), so every P&L identity holds to within 1e-12.
_LEDGER = Context(prec=60)
_AVG_QUANTUM = Decimal("1e-20")


@dataclass(slots=True)
class _RoundTrip:
    """Accumulates one position's life from flat to flat, for the trade list."""

    side: str
    entry_ns: int
    entry_qty: Decimal = Decimal(0)
    entry_value: Decimal = Decimal(0)
    exit_qty: Decimal = Decimal(0)
    exit_value: Decimal = Decimal(0)
    realized: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)


class Portfolio:
    """One account in one currency. Instruments must be registered before their first fill."""

    def __init__(self, initial_cash: Decimal, currency: str = "USD") -> None:
        if initial_cash <= 0:
            raise ValidationError(f"initial cash must be > 0, got {initial_cash}")
        self.initial_cash = initial_cash
        self.currency = currency
        self.cash = initial_cash
        self.fees = Decimal(0)
        self.realized_pnl = Decimal(0)
        self.peak_equity = initial_cash
        self.positions: dict[str, Position] = {}
        self.instruments: dict[str, Instrument] = {}
        self.trades: list[TradeRecord] = []
        self.realized_by_strategy: dict[str, Decimal] = defaultdict(Decimal)
        self.fees_by_strategy: dict[str, Decimal] = defaultdict(Decimal)
        self.realized_by_market: dict[str, Decimal] = defaultdict(Decimal)
        self.fees_by_market: dict[str, Decimal] = defaultdict(Decimal)
        self._trips: dict[str, _RoundTrip] = {}

    def register(self, instrument: Instrument) -> None:
        self.instruments[instrument.symbol] = instrument
        self.positions.setdefault(instrument.symbol, Position(instrument.symbol, instrument.market))

    # ----------------------------------------------------------------------------------------- fills

    def apply_fill(self, fill: Fill) -> TradeRecord | None:
        """Book a fill; returns the round-trip trade it completed, if any."""
        saved = getcontext()  # setcontext is ~2x cheaper than localcontext: this runs once per fill
        setcontext(_LEDGER)
        try:
            return self._apply_fill(fill)
        finally:
            setcontext(saved)

    def _apply_fill(self, fill: Fill) -> TradeRecord | None:
        pos = self.positions.get(fill.symbol)
        if pos is None:
            raise ValidationError(f"fill for unregistered symbol {fill.symbol!r}")
        market = pos.market.value
        signed = fill.signed_quantity
        self.cash -= signed * fill.price + fill.fee
        self.fees += fill.fee
        pos.fees += fill.fee
        pos.last_price = fill.price
        self.fees_by_strategy[fill.strategy_id] += fill.fee
        self.fees_by_market[market] += fill.fee

        closed: TradeRecord | None = None
        old = pos.quantity
        if old == 0 or (old > 0) == (signed > 0):
            self._increase(pos, signed, fill)
        else:
            closing = min(abs(signed), abs(old))
            pnl = closing * (fill.price - pos.avg_price) * (1 if old > 0 else -1)
            pos.realized_pnl += pnl
            self.realized_pnl += pnl
            self.realized_by_strategy[fill.strategy_id] += pnl
            self.realized_by_market[market] += pnl
            trip = self._trips[fill.symbol]
            share = closing / abs(signed)
            trip.exit_qty += closing
            trip.exit_value += closing * fill.price
            trip.realized += pnl
            trip.fees += fill.fee * share
            pos.quantity = old + (signed if abs(signed) <= abs(old) else -old)
            if pos.quantity == 0:
                closed = self._close_trip(fill.symbol, fill.ts_ns)
                pos.avg_price = Decimal(0)
            rest = abs(signed) - closing
            if rest > 0:  # flipped through flat: the remainder opens a new position
                opening = rest if signed > 0 else -rest
                self._increase(pos, opening, fill, fee_share=Decimal(1) - share)
        return closed

    def _increase(self, pos: Position, signed: Decimal, fill: Fill, fee_share: Decimal = Decimal(1)) -> None:
        new_qty = pos.quantity + signed
        pos.avg_price = ((pos.quantity * pos.avg_price + signed * fill.price) / new_qty).quantize(_AVG_QUANTUM)
        if pos.quantity == 0:
            pos.opened_ns = fill.ts_ns
            self._trips[pos.symbol] = _RoundTrip("LONG" if signed > 0 else "SHORT", fill.ts_ns)
        pos.quantity = new_qty
        trip = self._trips[pos.symbol]
        trip.entry_qty += abs(signed)
        trip.entry_value += abs(signed) * fill.price
        trip.fees += fill.fee * fee_share

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

    # ------------------------------------------------------------------------------------ valuation

    def mark(self, symbol: str, price: Decimal) -> None:
        self.positions[symbol].last_price = price

    @property
    def unrealized_pnl(self) -> Decimal:
        with localcontext(_LEDGER):
            return self._unrealized()

    @property
    def gross_exposure(self) -> Decimal:
        with localcontext(_LEDGER):
            return self._gross()

    @property
    def equity(self) -> Decimal:
        with localcontext(_LEDGER):
            return self._equity()

    def _unrealized(self) -> Decimal:
        return sum((p.unrealized_pnl for p in self.positions.values() if p.quantity), Decimal(0))

    def _gross(self) -> Decimal:
        return sum((p.notional for p in self.positions.values() if p.quantity), Decimal(0))

    def _equity(self) -> Decimal:
        return self.cash + sum((p.quantity * p.last_price for p in self.positions.values() if p.quantity),
                               Decimal(0))

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
        eq = self._update_peak()
        positions = tuple(
            PositionSnapshot(p.symbol, p.market, p.quantity, p.avg_price, p.last_price, p.unrealized_pnl,
                             p.realized_pnl)
            for p in self.positions.values()
            if p.quantity != 0
        )
        return AccountState(
            ts_ns=ts_ns,
            currency=self.currency,
            cash=self.cash,
            equity=eq,
            positions=positions,
            realized_pnl=self.realized_pnl,
            unrealized_pnl=self._unrealized(),
            fees=self.fees,
            peak_equity=self.peak_equity,
            gross_exposure=self._gross(),
        )

    def attribution(self) -> dict[str, dict[str, dict[str, str]]]:
        """Realized P&L and fees per strategy and per market, as strings (exact Decimals)."""
        def table(realized: dict[str, Decimal], fees: dict[str, Decimal]) -> dict[str, dict[str, str]]:
            return {k: {"realized_pnl": dec_str(realized.get(k, Decimal(0))), "fees": dec_str(fees.get(k, Decimal(0)))}
                    for k in sorted(set(realized) | set(fees))}

        return {
            "by_strategy": table(self.realized_by_strategy, self.fees_by_strategy),
            "by_market": table(self.realized_by_market, self.fees_by_market),
        }
