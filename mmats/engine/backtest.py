"""The in-process backtest: strategy -> risk gate -> simulated broker -> portfolio, one bar at a time.

Why it is fast without being dishonest:
- indicators are computed once per series (TA-Lib, whole arrays) and read through a cursor, so a bar
  costs a Python call into the strategy and little else: no per-bar allocation or validation;
- equity is *derived* after the loop from the fills (cash and quantity are step functions between
  fills), instead of being recomputed in Python on every bar;
- the broker, the gate and the ledger run only when there is an order or a signal.
Honesty: a decision taken on bar t's close is filled from bar t+1 on; indicator values at t use bars up
to t only; every order passes the same ``RiskGate`` that guards live trading.
"""

from __future__ import annotations

import gc
import json
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from mmats.audit import Journal
from mmats.data import BarArrays, column_list, untracked
from mmats.engine.risk_feed import SeriesRiskFeed
from mmats.engine.trader import bracket_children, entry_order, flatten_order, intent_for, size_signal
from mmats.errors import StrategyError, StrategyRaised, ValidationError
from mmats.execution.simulated import (
    CommissionModel,
    ExecutionConfig,
    NoCommission,
    NoSlippage,
    SimulatedBroker,
    SlippageModel,
)
from mmats.fx import FxRates
from mmats.indicators import align_benchmark, benchmark_symbols, compute_batch
from mmats.margin import NO_FUNDING, FundingSource, Liquidation, MarginBook, MarginEvent
from mmats.model import (
    AccountState,
    Environment,
    Fill,
    Instrument,
    InstrumentKind,
    Order,
    OrderStatus,
    SignalAction,
    TradeSignal,
    iso,
    ns_to_datetime,
)
from mmats.orders import transition
from mmats.portfolio import Portfolio
from mmats.research.metrics import (
    TradeRecord,
    benchmark_metrics,
    buy_and_hold_equity,
    compute_metrics,
    json_safe,
    periods_per_year,
)
from mmats.risk.decision import RiskDecision, RiskGate
from mmats.risk.minimal import MinimalRiskGate
from mmats.strategy import IStrategy, StrategyContext

RESULT_VERSION = 1
_CHUNK = 1 << 16


class _Cursor:
    """The current bar *and* its indicators, moved forward by setting ``i``: one object, no allocation.

    It serves as both ``context.bar`` and ``context.indicators``. Bar columns become Python tuples only
    when first read (an index is ~10x cheaper than a numpy scalar read, but converting a column of a
    million floats costs ~30 ms, so columns nobody reads are never converted); so do the indicator
    outputs given as ``lazy`` arrays (a channel's middle line, a MACD's histogram: many are never read).
    The columns read are kept in a plain dict, which Python indexes fastest.
    """

    __slots__ = ("_arrays", "_c", "_cols", "_h", "_l", "_lazy", "_o", "_ts", "_v", "i")

    def __init__(self, arrays: BarArrays, cols: dict[str, tuple[float, ...]],
                 lazy: Mapping[str, np.ndarray] | None = None) -> None:
        self.i = 0
        self._arrays = arrays
        self._o: tuple[float, ...] | None = None
        self._h: tuple[float, ...] | None = None
        self._l: tuple[float, ...] | None = None
        self._c: tuple[float, ...] = column_list(arrays, "close")
        self._v: tuple[float, ...] | None = None
        self._ts: tuple[int, ...] = column_list(arrays, "ts_ns")
        self._cols = cols
        self._lazy = lazy or {}

    def columns(self) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...], tuple[float, ...],
                               tuple[float, ...], tuple[int, ...]]:
        """All bar columns, for the engine's order-processing branch."""
        if self._o is None:
            self._o = column_list(self._arrays, "open")
        if self._h is None:
            self._h = column_list(self._arrays, "high")
        if self._l is None:
            self._l = column_list(self._arrays, "low")
        if self._v is None:
            self._v = column_list(self._arrays, "volume")
        return self._o, self._h, self._l, self._c, self._v, self._ts

    @property
    def open(self) -> float:
        o = self._o
        if o is None:
            o = self._o = column_list(self._arrays, "open")
        return o[self.i]

    @property
    def high(self) -> float:
        h = self._h
        if h is None:
            h = self._h = column_list(self._arrays, "high")
        return h[self.i]

    @property
    def low(self) -> float:
        lo = self._l
        if lo is None:
            lo = self._l = column_list(self._arrays, "low")
        return lo[self.i]

    @property
    def close(self) -> float:
        return self._c[self.i]

    @property
    def volume(self) -> float:
        v = self._v
        if v is None:
            v = self._v = column_list(self._arrays, "volume")
        return v[self.i]

    @property
    def ts(self) -> Any:
        return ns_to_datetime(self._ts[self.i])

    @property
    def ts_ns(self) -> int:
        return self._ts[self.i]

    def __getitem__(self, name: str) -> float:
        try:
            return self._cols[name][self.i]
        except KeyError:
            return self._convert(name)[self.i]

    def get(self, name: str, default: float = math.nan) -> float:
        col = self._cols.get(name)
        if col is None:
            if name not in self._lazy:
                return default
            col = self._convert(name)
        return col[self.i]

    def _convert(self, name: str) -> tuple[float, ...]:
        """A lazy output's first read: it becomes a column; a name no indicator gives is the strategy's bug."""
        arr = self._lazy.get(name)
        if arr is None:
            raise StrategyError(
                f"indicator {name!r} was not declared in get_required_indicators() "
                f"(available: {', '.join(sorted({*self._cols, *self._lazy}))})"
            )
        col = self._cols[name] = untracked(arr)
        return col


@dataclass(slots=True)
class KillSwitchEvent:
    ts_ns: int
    state: str
    trigger: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"time": iso(self.ts_ns), "state": self.state, "trigger": self.trigger, "reason": self.reason}


@dataclass(slots=True)
class BacktestResult:
    config: dict[str, Any]
    instrument: Instrument
    ts_ns: np.ndarray
    equity: np.ndarray
    benchmark_equity: np.ndarray
    metrics: dict[str, float]
    benchmark: dict[str, float]
    trades: list[TradeRecord]
    orders: list[Order]
    fills: list[Fill]
    decisions: list[RiskDecision]
    kill_switch: list[KillSwitchEvent]
    summary: dict[str, Any]
    attribution: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self, equity_every: int = 1) -> dict[str, Any]:
        """The documented JSON result schema (docs/result-schema.md)."""
        return result_document(self, [trade_dict(t, self.instrument) for t in self.trades],
                               self.instrument.money_precision, equity_every)

    def to_json(self, equity_every: int = 1) -> str:
        """Deterministic: same inputs, byte-identical text (no wall-clock time, fixed key order)."""
        return json.dumps(self.to_dict(equity_every), indent=1, allow_nan=False) + "\n"


def result_document(r: Any, trades: list[dict[str, Any]], money: int, equity_every: int) -> dict[str, Any]:
    """The result schema's common body (docs/result-schema.md), of a single-symbol or a portfolio result
    (``r`` has the fields both share); the equity curves kept every ``equity_every`` points and the last."""
    step = max(1, int(equity_every))
    idx = np.arange(0, len(r.ts_ns), step)
    if len(idx) and idx[-1] != len(r.ts_ns) - 1:
        idx = np.append(idx, len(r.ts_ns) - 1)
    times = [t + "Z" for t in np.datetime_as_string(r.ts_ns[idx].astype("datetime64[ns]"), unit="s")]
    decisions = r.decisions
    return {
        "mmats_result_version": RESULT_VERSION,
        "config": r.config,
        "metrics": json_safe(r.metrics),
        "benchmark": json_safe(r.benchmark),
        "summary": r.summary,
        "trades": trades,
        "orders": [o.to_dict() for o in r.orders],
        "fills": [f.to_dict() for f in r.fills],
        "risk": {
            "decisions": len(decisions),
            "approved": sum(1 for d in decisions if d.status.value == "APPROVED"),
            "resized": [d.to_dict() for d in decisions if d.status.value == "RESIZED"],
            "rejected": [d.to_dict() for d in decisions if d.status.value == "REJECTED"],
        },
        "kill_switch": [k.to_dict() for k in r.kill_switch],
        "attribution": r.attribution,
        "warnings": r.warnings,
        "equity": [[t, round(float(v), money)] for t, v in zip(times, r.equity[idx], strict=True)],
        "benchmark_equity": [[t, round(float(v), money)] for t, v in zip(times, r.benchmark_equity[idx], strict=True)],
    }


def trade_dict(t: TradeRecord, inst: Instrument, market: bool = False) -> dict[str, Any]:
    """One round trip as the result lists it; ``market`` names its market (a portfolio mixes them)."""
    return {
        "symbol": t.symbol,
        **({"market": inst.market.value} if market else {}),
        "side": t.side,
        "quantity": float(inst.round_quantity(t.quantity)),
        "entry_time": iso(t.entry_ns),
        "entry_price": float(inst.round_price(t.entry_price)),
        "exit_time": iso(t.exit_ns),
        "exit_price": float(inst.round_price(t.exit_price)),
        "pnl": float(inst.round_money(t.pnl)),
        "fees": float(inst.round_money(t.fees)),
        **({"reason": t.reason} if t.reason else {}),
    }


@dataclass(slots=True)
class EngineSetup:
    """The pluggable parts of one run: costs, execution rules, risk gate, journal."""

    instrument: Instrument
    initial_cash: float = 10_000.0
    slippage: SlippageModel | None = None
    commission: CommissionModel | None = None
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    gate: RiskGate | None = None
    journal: Journal | None = None
    allocation: float = 1.0
    benchmark_fee_rate: float = 0.0
    kill_switch: Any = None
    environment: Environment = Environment.BACKTEST
    funding: FundingSource | None = None  # perpetuals: funding times and rates (mmats.margin)
    # The account's currency rates (mmats.fx): the base currency results are in. None: the account is in
    # the instrument's quote currency.
    fx: FxRates | None = None
    # Benchmark symbol -> its bars, for indicators that compare with one (``RS_20@SPY``), in the run's
    # timeframe; each bar reads the benchmark bar stamped at or before it (mmats.indicators.align_benchmark).
    benchmarks: dict[str, BarArrays] = field(default_factory=dict)


class BacktestEngine:
    """Runs one strategy over one instrument's bars. Create a new engine per run."""

    def __init__(self, strategy: IStrategy, bars: BarArrays, setup: EngineSetup, config: dict[str, Any]) -> None:
        if len(bars) < 2:
            raise ValidationError(f"backtest needs at least 2 bars, got {len(bars)}")
        if not 0 < setup.allocation <= 10:
            raise ValidationError(f"allocation must be in (0, 10], got {setup.allocation}")
        self.strategy = strategy
        self.bars = bars
        self.setup = setup
        self.config = config
        self.instrument = setup.instrument
        self.symbol = setup.instrument.symbol
        self.broker = SimulatedBroker(
            setup.instrument,
            setup.slippage or NoSlippage(),
            setup.commission or NoCommission(),
            setup.execution,
        )
        fx = setup.fx if setup.fx is not None else FxRates(setup.instrument.quote_currency)
        self.portfolio = Portfolio(Decimal(repr(setup.initial_cash)), fx=fx)
        self.portfolio.register(setup.instrument)
        # The quote currency's rate is constant x close ** exponent (exponent != 0: the run's own pair gives
        # it, as USD/JPY gives JPY). "Simple" accounts (rate 1) keep one float cash mirror, as before.
        quote = setup.instrument.quote_currency.upper()
        const, self._fx_exp = fx.dependence(quote, self.symbol)
        self._fx_const = float(const)
        self._fx_simple = self._fx_exp == 0 and const == 1
        self._quote = quote
        self._cb = 0.0  # base-currency cash when the account is not simple (its quote cash is _cash_f)
        self._ev_cb: list[float] = []
        self.gate: RiskGate = setup.gate if setup.gate is not None else MinimalRiskGate()
        self.journal = setup.journal
        self.orders: dict[str, Order] = {}
        self.fills: list[Fill] = []
        self.decisions: list[RiskDecision] = []
        self.kill_events: list[KillSwitchEvent] = []
        self.warnings: list[str] = []
        self._cash_f = setup.initial_cash if self._fx_simple else 0.0
        if not self._fx_simple:
            self._cb = setup.initial_cash
        self._qty_f = 0.0
        self._ev_i: list[int] = []
        self._ev_cash: list[float] = []
        self._ev_qty: list[float] = []
        self._halted = False
        # Funding, liquidation and margin closeout (mmats.margin), only for what can have them.
        self.margin: MarginBook | None = None
        self.margin_events: list[MarginEvent] = []
        funding = {self.symbol: setup.funding} if setup.funding is not None else {}
        book = MarginBook(self.portfolio, funding, setup.commission or NoCommission())
        if book.watches(self.symbol):
            self.margin = book
            if setup.instrument.kind is InstrumentKind.PERPETUAL and setup.funding is None:
                self.warnings.append(f"{self.symbol}: funding {NO_FUNDING}")
        # Bars, fills and aggregation for the gatekeeper settings that read them (docs/risk.md).
        self._risk_feed = SeriesRiskFeed.of(self.gate, self.symbol, bars)

    # ------------------------------------------------------------------------------------------ run

    def run(self, progress: Callable[[int], None] | None = None) -> BacktestResult:
        with full_gc_deferred():
            return self._run(progress)

    def _run(self, progress: Callable[[int], None] | None) -> BacktestResult:
        strategy = self.strategy
        bars = self.bars
        n = len(bars)
        specs = strategy.get_required_indicators()
        missing = [s for s in benchmark_symbols(specs) if s not in self.setup.benchmarks]
        if missing:
            raise ValidationError(f"strategy {strategy.strategy_id} compares with benchmark {', '.join(missing)} "
                                  f"(indicators {', '.join(specs)}), but the run has no bars for it: set "
                                  "benchmark_data (--benchmark-data)")
        aligned = {sym: align_benchmark(bars.ts_ns, b.ts_ns, b.close) for sym, b in self.setup.benchmarks.items()}
        cols_np = compute_batch(specs, bars.open, bars.high, bars.low, bars.close, bars.volume,
                                benchmarks=aligned)
        cols = {k: untracked(v) for k, v in cols_np.items()}
        first = _first_valid({k: np.isnan(v) for k, v in cols_np.items()}, n)
        if first >= n:
            raise ValidationError(
                f"not enough bars: indicators {', '.join(specs)} need more than the {n} bars given"
            )
        cur = _Cursor(bars, cols)
        ctx = StrategyContext(cur, cur, self.setup.environment, self.symbol, self.instrument.market,
                              strategy.strategy_id, self._account_now)
        self._ctx_cursor = cur
        c, ts = cur._c, cur._ts
        on_bar = strategy.on_bar
        broker = self.broker
        hold = SignalAction.HOLD
        kill = self.setup.kill_switch
        on_equity = kill.on_equity if kill is not None else None
        simple = self._fx_simple
        margin_bar = self.margin.on_bar if self.margin is not None else None
        liq_low, liq_high, next_funding, armed = -math.inf, math.inf, math.inf, False
        if margin_bar is not None:
            mo, mh, ml, _, _, _ = cur.columns()
            liq_low, liq_high, next_funding, armed = self._margin_triggers(ts[first])
        symbol, sid = self.symbol, strategy.strategy_id

        for start in range(first, n, _CHUNK):
            stop = min(n, start + _CHUNK)
            for i in range(start, stop):
                if broker.open_orders:
                    o, h, lo, _, v, _ = cur.columns()
                    fills = broker.process_bar(i, ts[i], o[i], h[i], lo[i], c[i], v[i], self._qty_f,
                                               self._cash_f if simple else self._cash_quote(c[i]))
                    if fills:
                        self._on_fills(i, fills)
                        if margin_bar is not None:
                            liq_low, liq_high, next_funding, armed = self._margin_triggers(ts[i])
                # The margin book only when a bar crosses a liquidation trigger or reaches a funding time.
                if armed and (ml[i] <= liq_low or mh[i] >= liq_high or ts[i] >= next_funding):
                    events = margin_bar(symbol, ts[i], mo[i], mh[i], ml[i], c[i], sid)  # type: ignore[misc]
                    if events:
                        self._on_margin(i, events)
                    liq_low, liq_high, next_funding, armed = self._margin_triggers(ts[i] + 1)
                if on_equity is not None:
                    transition_ = on_equity(ts[i], self._cash_f + self._qty_f * c[i] if simple
                                            else self._equity_base(c[i]))
                    if transition_ is not None:
                        self._on_kill_switch(i, transition_)
                if self._halted:
                    continue
                cur.i = i
                try:
                    sig = on_bar(ctx)
                except Exception as exc:  # free in 3.11 until raised: name the strategy, bar and time
                    raise _strategy_failed(strategy.strategy_id, i, ts[i], exc) from exc
                if sig is not None:
                    if sig.action is not hold:
                        self._on_signal(i, sig)
                    elif self.journal is not None:  # a HOLD is a recorded decision: journaled, nothing else
                        self._journal_signal(ts[i], sig.signal_id or str(ts[i]), sig)
            if progress is not None:
                progress(stop)
        return self._result()

    # ------------------------------------------------------------------------------- event handlers

    def _account_now(self) -> AccountState:
        i = self._ctx_cursor.i
        price = self.instrument.round_price(self._ctx_cursor._c[i])
        self.portfolio.mark(self.symbol, price)
        return self.portfolio.snapshot(self._ctx_cursor._ts[i])

    def _journal_signal(self, ts_ns: int, signal_id: str, sig: TradeSignal) -> None:
        """The signal's audit record; its ``metadata`` (e.g. an LLM decision's provenance) when it has any."""
        assert self.journal is not None
        payload: dict[str, Any] = {"strategy_id": self.strategy.strategy_id, "signal_id": signal_id,
                                   "symbol": sig.symbol, "action": sig.action.value,
                                   "position_size": sig.position_size, "confidence": sig.confidence,
                                   "reasoning": sig.reasoning}
        if sig.metadata:
            payload["metadata"] = sig.metadata
        self.journal.append("signal", payload, ts_ns)

    def _on_signal(self, i: int, sig: TradeSignal) -> None:
        ts_ns = self._ctx_cursor._ts[i]
        price = self._ctx_cursor._c[i]
        strategy_id = self.strategy.strategy_id
        if sig.symbol != self.symbol:
            raise StrategyError(f"strategy {strategy_id} signalled {sig.symbol!r} but trades {self.symbol!r}")
        signal_id = sig.signal_id or str(ts_ns)
        journal = self.journal
        if journal is not None:
            self._journal_signal(ts_ns, signal_id, sig)
        feed = self._risk_feed
        if feed is not None:
            feed.advance(i)
            if feed.aggregating:
                combined = feed.combine(sig, strategy_id, signal_id)
                if combined is None:
                    return
                sig = combined.signal  # the combined signal owns its orders, as in a multi-strategy run
                strategy_id, signal_id = sig.strategy_id, sig.signal_id
        # A new target supersedes whatever this strategy still had working.
        if self.broker.open_orders:
            for order in self.broker.cancel_all(ts_ns, lambda od: od.strategy_id == strategy_id):
                self._journal_order(order, ts_ns)

        cash = self._cash_f if self._fx_simple else self._cash_quote(price)
        sized = size_signal(sig, price, cash, self._qty_f, self.setup.allocation, self.instrument)
        if sized is None:
            return
        account = self._account_now()
        intent = intent_for(sig, sized, self.instrument, strategy_id, signal_id, price, ts_ns)
        decision = self.gate.evaluate(intent, account)
        self.decisions.append(decision)
        if journal is not None:
            journal.append("risk_decision", decision.to_dict(), ts_ns)
        order = entry_order(sig, intent, decision.quantity if decision.approved else sized.quantity, ts_ns)
        if not decision.approved:
            transition(order, OrderStatus.REJECTED, ts_ns)
            order.reject_reason = "; ".join(f"{r.rule}: {r.message}" for r in decision.reasons) or "rejected"
            self.orders[order.client_order_id] = order
            self._journal_order(order, ts_ns)
            self.strategy.on_order_rejected(order, order.reject_reason)
            return
        children = [] if sized.reduces_position else bracket_children(sig, order, self.instrument, ts_ns)
        self.orders[order.client_order_id] = order
        for child in children:
            self.orders[child.client_order_id] = child
        transition(order, OrderStatus.SUBMITTED, ts_ns)
        self._journal_order(order, ts_ns)
        self.broker.submit(order, i, ts_ns, children)

    def _on_fills(self, i: int, fills: list[Fill]) -> None:
        pf = self.portfolio
        for fill in fills:
            if self.journal is not None:
                self.journal.append("fill", fill.to_dict(), fill.ts_ns)
            pf.apply_fill(fill)
            if self._risk_feed is not None:
                self._risk_feed.on_fill(fill)
            self.fills.append(fill)
            order = self.orders.get(fill.client_order_id)
            if order is not None and order.status is OrderStatus.FILLED:
                self._journal_order(order, fill.ts_ns)
                self.strategy.on_order_filled(order)
        self._sync_cash(i)

    def _on_margin(self, i: int, events: list[MarginEvent]) -> None:
        """Funding and liquidations the margin book has booked: journal, result and the float mirrors."""
        for event in events:
            self.margin_events.append(event)
            self._journal(event.to_dict()["type"], event.to_dict(), event.ts_ns)
            if isinstance(event, Liquidation):
                for order in self.broker.cancel_all(event.ts_ns):  # its brackets must not reopen it
                    self._journal_order(order, event.ts_ns)
                self.orders[event.order.client_order_id] = event.order
                self.fills.append(event.fill)
                self._journal("fill", event.fill.to_dict(), event.ts_ns)
                self._journal_order(event.order, event.ts_ns)
                self.strategy.on_order_filled(event.order)
        self._sync_cash(i)

    def _sync_cash(self, i: int) -> None:
        """The float mirrors of the ledger after it changed at bar ``i`` (the equity curve's steps)."""
        pf = self.portfolio
        if self._fx_simple:
            self._cash_f = float(pf.cash)
        else:  # base cash and quote cash apart: their sum moves with the rate
            self._cash_f = float(pf.balances.get(self._quote, 0))
            self._cb = float(pf.balances.get(pf.currency, 0))
        self._qty_f = float(pf.positions[self.symbol].quantity)
        self._ev_i.append(i)
        self._ev_cash.append(self._cash_f)
        self._ev_cb.append(self._cb)
        self._ev_qty.append(self._qty_f)

    def _margin_triggers(self, ts_ns: int) -> tuple[float, float, float, bool]:
        """What the hot loop compares each bar with (mmats.margin.MarginBook.triggers), and whether
        there is anything to compare at all (flat or unleveraged, and no funding: nothing)."""
        assert self.margin is not None
        low, high = self.margin.triggers(self.symbol)
        funding = self.margin.next_funding_ns(self.symbol, ts_ns)
        return low, high, funding, low > -math.inf or high < math.inf or funding < math.inf

    def _rate_f(self, close: float) -> float:
        """The quote currency's rate in base at ``close`` of the run's own instrument (float mirror)."""
        return float(self._fx_const * close ** self._fx_exp)

    def _cash_quote(self, close: float) -> float:
        """All cash expressed in the quote currency: what the broker's cash-only rule and sizing spend."""
        return self._cash_f + self._cb / self._rate_f(close)

    def _equity_base(self, close: float) -> float:
        return self._cb + (self._cash_f + self._qty_f * close) * self._rate_f(close)

    def _on_kill_switch(self, i: int, change: Any) -> None:
        ts_ns = self._ctx_cursor._ts[i]
        state = str(getattr(change, "state", getattr(change, "new_state", change)))
        state = state.rsplit(".", 1)[-1]
        event = KillSwitchEvent(ts_ns, state, str(getattr(change, "trigger", "")), str(getattr(change, "reason", "")))
        self.kill_events.append(event)
        self._journal("kill_switch", event.to_dict(), ts_ns)
        if state in ("HARD", "FREEZE"):
            self._halted = True
            for order in self.broker.cancel_all(ts_ns):
                self._journal_order(order, ts_ns)
        if state == "HARD" and self._qty_f != 0:
            order = flatten_order(self.symbol, self.portfolio.positions[self.symbol].quantity, ts_ns)
            self.orders[order.client_order_id] = order
            transition(order, OrderStatus.SUBMITTED, ts_ns)
            self._journal_order(order, ts_ns)
            self.broker.submit(order, i, ts_ns)

    def _journal(self, kind: str, payload: dict[str, Any], ts_ns: int) -> None:
        if self.journal is not None:
            self.journal.append(kind, payload, ts_ns)

    def _journal_order(self, order: Order, ts_ns: int) -> None:
        if self.journal is not None:  # no payload built when nobody journals: the signal path is hot
            self.journal.append("order", order.to_dict(), ts_ns)

    # ------------------------------------------------------------------------------------- result

    def _result(self) -> BacktestResult:
        bars = self.bars
        n = len(bars)
        close = bars.close
        init = self.setup.initial_cash
        if self._ev_i:
            ev_i = np.asarray(self._ev_i)
            last_ev = np.searchsorted(ev_i, np.arange(n), side="right") - 1
            has = last_ev >= 0
            safe = np.where(has, last_ev, 0)
            qty = np.where(has, np.asarray(self._ev_qty)[safe], 0.0)
            if self._fx_simple:
                cash = np.where(has, np.asarray(self._ev_cash)[safe], init)
                equity = cash + qty * close
            else:
                cash = np.where(has, np.asarray(self._ev_cash)[safe], 0.0)
                base_cash = np.where(has, np.asarray(self._ev_cb)[safe], init)
                equity = base_cash + (cash + qty * close) * (self._fx_const * close ** self._fx_exp)
        else:
            equity = np.full(n, init, dtype=np.float64)
        ppy = periods_per_year(_spacing_s(bars.ts_ns), self.instrument.market)
        trades = list(self.portfolio.trades)
        metrics = compute_metrics(equity, bars.ts_ns, trades, ppy)
        bench_eq = buy_and_hold_equity(close, init, self.setup.benchmark_fee_rate)
        benchmark = benchmark_metrics(close, bars.ts_ns, init, ppy, self.setup.benchmark_fee_rate, self.symbol)

        pf = self.portfolio
        last_price = self.instrument.round_price(float(close[-1]))
        pf.mark(self.symbol, last_price)
        ledger_equity = pf.equity
        inst = self.instrument
        pos = pf.positions[self.symbol]
        summary: dict[str, Any] = {
            "bars": n,
            "first_bar": iso(int(bars.ts_ns[0])),
            "last_bar": iso(int(bars.ts_ns[-1])),
            "initial_cash": float(inst.round_money(init)),
            "final_equity": float(inst.round_money(ledger_equity)),
            "cash": float(inst.round_money(pf.cash)),
            "realized_pnl": float(inst.round_money(pf.realized_pnl)),
            "unrealized_pnl": float(inst.round_money(pf.unrealized_pnl)),
            "fees": float(inst.round_money(pf.fees)),
            "open_position": {"symbol": self.symbol, "quantity": str(pos.quantity),
                              "avg_price": str(inst.round_price(pos.avg_price))} if pos.quantity else None,
            "orders": len(self.orders),
            "fills": len(self.fills),
            # Reconciliation: the float curve must end where the Decimal ledger does.
            "equity_curve_final": round(float(equity[-1]), inst.money_precision),
            "reconciled": abs(float(ledger_equity) - float(equity[-1])) <= max(1e-6, 1e-9 * abs(float(equity[-1]))),
            # Money above is in the base currency; where each rate came from and what it assumed.
            "currency": pf.currency,
            "fx": {"quote": self._quote, "rates": pf.fx.sources(),
                   "cash_by_currency": {c: str(v) for c, v in pf.cash_by_currency().items()},
                   "fx_pnl": float(inst.round_money(pf.fx_pnl)), "notes": pf.fx.notes()},
        }
        self.warnings.extend(n for n in pf.fx.notes() if n not in self.warnings)
        if self.margin is not None:
            summary["margin"] = self.margin.summary(self.symbol)
            summary["margin"]["liquidation_events"] = [e.to_dict() for e in self.margin_events
                                                       if isinstance(e, Liquidation)]
        if not summary["reconciled"]:
            self.warnings.append(
                f"equity curve ends at {equity[-1]!r} but the ledger at {ledger_equity}: report this as a bug"
            )
        return BacktestResult(
            config=self.config,
            instrument=inst,
            ts_ns=bars.ts_ns,
            equity=equity,
            benchmark_equity=bench_eq,
            metrics=metrics,
            benchmark=benchmark,
            trades=trades,
            orders=sorted(self.orders.values(), key=lambda od: (od.created_ns, od.client_order_id)),
            fills=self.fills,
            decisions=self.decisions,
            kill_switch=self.kill_events,
            summary=summary,
            attribution=pf.attribution(),
            warnings=self.warnings,
        )


_gc_lock = threading.Lock()
_gc_runs = 0
_gc_saved: tuple[int, int, int] = (700, 10, 10)


@contextmanager
def full_gc_deferred() -> Iterator[None]:
    """No full garbage collection while a run is under way; the young generations are collected as usual.

    A run keeps every order, fill and decision it makes (~150,000 objects a year of the portfolio bench),
    so the collector's oldest generation keeps growing by a quarter, and each time it does the collector
    walks everything alive: ~0.1 s a pass, 4-6 % of a run, to free nothing (the engines make no cyclic
    garbage; a strategy's short-lived cycles die young and are still freed). Concurrent runs share one
    deferral: the thresholds come back when the last one ends.
    """
    global _gc_runs, _gc_saved
    with _gc_lock:
        if _gc_runs == 0:
            _gc_saved = gc.get_threshold()
            gc.set_threshold(_gc_saved[0], _gc_saved[1], 1 << 30)
        _gc_runs += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_runs -= 1
            if _gc_runs == 0:
                gc.set_threshold(*_gc_saved)


def _strategy_failed(strategy_id: str, i: int, ts_ns: int, exc: Exception) -> StrategyRaised:
    """A strategy's exception as one line: which strategy, at which bar (index and UTC time), what it raised."""
    text = str(exc).strip().splitlines()
    what = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return StrategyRaised(f"strategy {strategy_id} raised at bar {i} ({iso(int(ts_ns))}): {what}")


def _first_valid(nan: Mapping[str, np.ndarray], n: int) -> int:
    """First bar at which every required indicator has a value (``nan``: each output's NaN mask):
    strategies never see a warm-up NaN."""
    first = 0
    for mask in nan.values():
        at = int(np.argmin(mask)) if len(mask) else 0  # the first False
        if not len(mask) or mask[at]:
            return n
        first = max(first, at)
    return first


def _spacing_s(ts_ns: np.ndarray) -> int:
    if len(ts_ns) < 2:
        return 60
    return max(1, int(np.median(np.diff(ts_ns[: min(len(ts_ns), 10_001)])) // 1_000_000_000))
