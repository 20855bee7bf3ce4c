"""Per-strategy P&L: each strategy's own book of its own fills, marked at the account's prices.

Several strategies may trade one symbol, and the account nets them into one position. Asking the net
position "whose P&L is this?" has no good answer (one strategy's buy can close another's short). So each
strategy gets a ledger of its own fills: its realized P&L, its open quantity at its own average price
and, marked at the account's last prices, its unrealized P&L. The strategies' figures add up to the
account's when each symbol is traded by one strategy; when strategies offset each other, the sum of
their unrealized P&L differs from the account's by exactly the offset (docs/http-api.md, "P&L").
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from mmats.fx import FxRates
from mmats.model import Fill, Instrument, dec_str
from mmats.portfolio import Portfolio

_NOMINAL_CASH = Decimal(1)  # a ledger's cash is meaningless here; Portfolio needs a positive start


class StrategyLedgers:
    def __init__(self, instruments: Iterable[Instrument], currency: str = "USD", fx: FxRates | None = None) -> None:
        self.instruments = list(instruments)
        # The books' own rates (a copy: they book old fills lazily and must not move the account's rates);
        # the caller refreshes them from its prices (``fx.seed``) before applying fills.
        self.fx = copy.deepcopy(fx) if fx is not None else FxRates(currency)
        self.currency = self.fx.base
        self.books: dict[str, Portfolio] = {}
        self.counts: dict[str, dict[str, int]] = {}
        self._entry_fee_per_unit: dict[tuple[str, str], Decimal] = {}  # (strategy, symbol): fee paid to open
        self.applied = 0

    def apply(self, fill: Fill) -> None:
        book = self.books.get(fill.strategy_id)
        if book is None:
            book = self.books[fill.strategy_id] = Portfolio(_NOMINAL_CASH, fx=self.fx, records=False)
            for inst in self.instruments:
                book.register(inst)
            self.counts[fill.strategy_id] = {"fills": 0, "trades": 0, "wins": 0}
        held = book.positions.get(fill.symbol)
        before_qty = held.quantity if held is not None else Decimal(0)
        before = book.realized_pnl
        book.apply_fill(fill)
        pnl = book.realized_pnl - before
        c = self.counts[fill.strategy_id]
        c["fills"] += 1
        # A win is a close whose P&L beats the fees of the quantity it closes, entry and exit alike: the
        # rule of the account's round trips (TradeRecord.pnl is net of both), so a strategy trading a
        # symbol alone shows the same win rate as that symbol's round trips.
        signed, key = fill.signed_quantity, (fill.strategy_id, fill.symbol)
        closing = min(abs(signed), abs(before_qty)) if before_qty and (before_qty > 0) != (signed > 0) else Decimal(0)
        per_unit = self._entry_fee_per_unit.get(key, Decimal(0))
        rate = self._rate(book, fill.symbol)
        if closing:
            fees = (fill.fee * closing / abs(signed) + per_unit * closing) * rate
            c["trades"] += 1
            c["wins"] += int(pnl - fees > 0)
        opening = abs(signed) - closing
        if opening:
            kept = abs(before_qty) - closing
            self._entry_fee_per_unit[key] = (kept * per_unit + fill.fee * opening / abs(signed)) / (kept + opening)
        self.applied += 1

    def _rate(self, book: Portfolio, symbol: str) -> Decimal:
        quote = book.quote_currency(symbol)
        return Decimal(1) if quote == self.currency else self.fx.rate(quote)

    def stats(self, marks: Mapping[str, Decimal]) -> dict[str, dict[str, Any]]:
        """Per strategy: fills, closing trades, wins, realized and unrealized P&L, fees, net P&L."""
        out: dict[str, dict[str, Any]] = {}
        for sid, book in self.books.items():
            unrealized = Decimal(0)
            for sym, pos in book.positions.items():
                if pos.quantity:
                    mark = marks.get(sym, pos.last_price)
                    unrealized += pos.quantity * (mark - pos.avg_price) * self._rate(book, sym)
            net = book.realized_pnl + unrealized - book.fees
            out[sid] = {**self.counts[sid], "realized_pnl": dec_str(book.realized_pnl),
                        "unrealized_pnl": dec_str(unrealized), "fees": dec_str(book.fees), "net_pnl": dec_str(net),
                        "positions": {s: dec_str(p.quantity) for s, p in book.positions.items() if p.quantity}}
        return out
