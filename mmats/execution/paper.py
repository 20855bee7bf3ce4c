"""Paper execution: the backtest's simulated broker fed with live (or replayed) bars.

Hosted by the ``OrderRouter`` actor. It keeps one ``SimulatedBroker`` per symbol, the order registry
(client order id -> order, so a duplicated submit is ignored), and a mirror ledger for the cash the
broker's cash-only rule needs. The mirror applies the very fills the portfolio applies, in Decimal, so
it never drifts from the authoritative portfolio.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from mmats.engine.trader import flatten_order
from mmats.execution.simulated import (
    CommissionModel,
    ExecutionConfig,
    NoCommission,
    NoSlippage,
    SimulatedBroker,
    SlippageModel,
)
from mmats.fx import FxRates
from mmats.margin import FundingPayment, FundingSource, MarginBook
from mmats.model import Fill, Instrument, Order, OrderStatus, OrderType
from mmats.orders import transition
from mmats.portfolio import Portfolio


@dataclass(frozen=True, slots=True)
class BarUpdate:
    """One bar as it travels between actors: a plain tuple-like value, cheap to serialise."""

    symbol: str
    ts_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float


class PaperExecution:
    def __init__(
        self,
        instruments: dict[str, Instrument],
        initial_cash: Decimal,
        slippage: SlippageModel | None = None,
        commission: CommissionModel | None = None,
        config: ExecutionConfig | None = None,
        fx: FxRates | None = None,
        funding: Mapping[str, FundingSource] | None = None,
    ) -> None:
        self.instruments = instruments
        cfg = config or ExecutionConfig()
        self.brokers = {
            s: SimulatedBroker(i, slippage or NoSlippage(), commission or NoCommission(), cfg)
            for s, i in instruments.items()
        }
        # ``fx``: the account's rates (shared with the account's portfolio, which keeps them current), so a
        # mirror of an account holding several currencies values its cash as the account does.
        currency = None if fx is not None else next(iter(instruments.values())).quote_currency
        self.ledger = Portfolio(initial_cash, currency, fx=fx, records=False)  # cash, positions: a mirror
        for inst in instruments.values():
            self.ledger.register(inst)
        # Funding, liquidation and forex closeout as the backtest applies them (mmats.margin); funding
        # payments wait in ``funding_events`` for the router to pass on to the account's portfolio.
        self.margin = MarginBook(self.ledger, dict(funding or {}), commission or NoCommission())
        self.margined = frozenset(s for s in instruments if self.margin.watches(s))
        self.funding_events: list[FundingPayment] = []
        self.margin_canceled: list[Order] = []
        self.orders: dict[str, Order] = {}
        self.bar_index: dict[str, int] = dict.fromkeys(instruments, -1)

    def restore(self, orders: list[Order], fills: list[Fill], funding: list[FundingPayment] | None = None) -> int:
        """Rebuild after a restart from the system of record: the ledger from every fill, the registry from
        every order (so a replayed signal stays a duplicate), the brokers from the orders still working."""
        for f in fills:
            self.ledger.apply_fill(f)
        self.margin.restore_funding(funding or [])
        children: dict[str, list[Order]] = {}
        for o in orders:
            self.orders[o.client_order_id] = o
            if o.parent_id and o.status is OrderStatus.NEW:
                children.setdefault(o.parent_id, []).append(o)
        working = 0
        for o in orders:
            if o.status.is_open and o.status is not OrderStatus.NEW and o.symbol in self.brokers:
                self.brokers[o.symbol].restore(o, self.bar_index[o.symbol], children.get(o.client_order_id))
                working += 1
        return working

    def on_bar(self, bar: BarUpdate) -> list[Fill]:
        """Advance one symbol by one bar and return the fills it produced (already booked in the mirror)."""
        if bar.symbol not in self.brokers:
            return []
        i = self.bar_index[bar.symbol] + 1
        self.bar_index[bar.symbol] = i
        ledger = self.ledger
        if ledger.fx.is_source(bar.symbol):  # a currency pair: its close is a rate (as the portfolio marks it)
            ledger.fx.on_price(bar.symbol, self.instruments[bar.symbol].round_price(bar.close))
        broker = self.brokers[bar.symbol]
        if not broker.open_orders:
            return self._margin(bar, []) if bar.symbol in self.margined else []
        pos = float(ledger.positions[bar.symbol].quantity)
        cash = self.cash_in(bar.symbol) if broker.may_spend_cash() else math.inf  # summing it costs a few µs
        fills = broker.process_bar(i, bar.ts_ns, bar.open, bar.high, bar.low, bar.close, bar.volume, pos, cash)
        for f in fills:
            self.ledger.apply_fill(f)
        return self._margin(bar, fills) if bar.symbol in self.margined else fills

    def _margin(self, bar: BarUpdate, fills: list[Fill]) -> list[Fill]:
        """The margin book's step after the bar's fills: a liquidation is a fill like any other (its order
        registered, the symbol's working orders canceled); funding is kept for the portfolio."""
        for event in self.margin.on_bar(bar.symbol, bar.ts_ns, bar.open, bar.high, bar.low, bar.close):
            if isinstance(event, FundingPayment):
                self.funding_events.append(event)
                continue
            self.margin_canceled += self.brokers[bar.symbol].cancel_all(bar.ts_ns)  # no bracket may reopen it
            self.orders[event.order.client_order_id] = event.order
            fills = [*fills, event.fill]
        return fills

    def drain_margin(self) -> tuple[list[FundingPayment], list[Order]]:
        """Funding payments and the orders a liquidation canceled since the last call (for the router)."""
        out = self.funding_events, self.margin_canceled
        self.funding_events, self.margin_canceled = [], []
        return out

    def cash_in(self, symbol: str) -> float:
        """All the account's cash in ``symbol``'s quote currency: what its cash-only rule may spend."""
        ledger = self.ledger
        quote = ledger.quote_currency(symbol)
        if quote == ledger.currency:
            return float(ledger.cash)
        return float(ledger.cash / ledger.fx.rate(quote))

    def submit(self, order: Order, children: list[Order], ts_ns: int) -> bool:
        """Accept an order unless its client id is known (idempotency); eligible from the next bar."""
        if order.client_order_id in self.orders:
            return False
        broker = self.brokers.get(order.symbol)
        if broker is None:
            transition(order, OrderStatus.REJECTED, ts_ns)
            order.reject_reason = f"no paper venue for {order.symbol}"
            self.orders[order.client_order_id] = order
            return False
        self.orders[order.client_order_id] = order
        for child in children:
            self.orders[child.client_order_id] = child
        if order.status is OrderStatus.NEW:
            transition(order, OrderStatus.SUBMITTED, ts_ns)
        broker.submit(order, self.bar_index[order.symbol], ts_ns, children)
        return True

    def holds(self, client_order_id: str) -> bool:
        """Whether the venue is working this order (what reconciliation asks about an UNKNOWN one)."""
        order = self.orders.get(client_order_id)
        broker = self.brokers.get(order.symbol) if order is not None else None
        return broker is not None and order in broker.open_orders

    def cancel_strategy(self, strategy_id: str, symbol: str | None, ts_ns: int,
                        keep_market: bool = False) -> list[Order]:
        """Cancel a strategy's working orders. ``keep_market`` spares market orders: a new signal
        replaces resting orders (limits, a bracket's stop and target), but a market order fills at the
        next bar whatever happens, as in a backtest, and the next signal was sized counting on it."""
        def mine(o: Order) -> bool:
            return o.strategy_id == strategy_id and not (keep_market and o.order_type is OrderType.MARKET)

        if symbol is not None:  # one book: looked up, not searched for (this runs on every signal)
            broker = self.brokers.get(symbol)
            return [] if broker is None else broker.cancel_all(ts_ns, mine)
        out: list[Order] = []
        for broker in self.brokers.values():
            out += broker.cancel_all(ts_ns, mine)
        return out

    def cancel_order(self, order: Order, ts_ns: int) -> list[Order]:
        """Cancel one working order; returns it when it changed."""
        broker = self.brokers.get(order.symbol)
        if broker is None or order.status.is_terminal:
            return []
        broker.cancel(order, ts_ns)
        return [order]

    def cancel_all(self, ts_ns: int) -> list[Order]:
        out: list[Order] = []
        for broker in self.brokers.values():
            out += broker.cancel_all(ts_ns)
        return out

    def flatten_all(self, ts_ns: int, last_prices: dict[str, float], reason: str) -> tuple[list[Order], list[Fill]]:
        """HARD kill switch: cancel everything, then close every position *now* at its last price.

        Largest exposure first, so the riskiest position is gone first if anything fails midway.
        """
        canceled = self.cancel_all(ts_ns)
        fills: list[Fill] = []
        positions = sorted(
            ((s, p.quantity) for s, p in self.ledger.positions.items() if p.quantity != 0),
            key=lambda sp: -abs(float(sp[1]) * last_prices.get(sp[0], 0.0)),
        )
        for symbol, qty in positions:
            px = last_prices.get(symbol)
            if px is None:
                continue
            order = flatten_order(symbol, qty, ts_ns, reason)
            if order.client_order_id in self.orders:
                continue
            self.orders[order.client_order_id] = order
            transition(order, OrderStatus.SUBMITTED, ts_ns)
            i = self.bar_index[symbol]
            broker = self.brokers[symbol]
            broker.submit(order, i - 1, ts_ns)  # eligible at the current bar: no waiting for the next one
            new = broker.process_bar(i, ts_ns, px, px, px, px, 0.0, float(qty), self.cash_in(symbol))
            for f in new:
                self.ledger.apply_fill(f)
            fills += new
        return canceled, fills

    def open_orders(self) -> list[Order]:
        return [o for b in self.brokers.values() for o in b.open_orders]
