"""The live signal path: signals in, sized intents through the risk gatekeeper, order commands out.

It runs inside the ``RiskGatekeeperActor``, in front of the kernel ``RiskGatekeeper``. Two things make
paper trading reproduce a backtest:
- sizing and order construction are the backtest's own functions (``mmats.engine.trader``);
- with ``await_account`` (exact replays: lockstep), a signal decided on bar t is evaluated only once
  the account is known *as of* bar t (its fills at bar t's open booked). Signals that arrive earlier
  wait in a buffer, in arrival order: in a fast replay this barrier is what keeps the result
  deterministic. Without it (the live path) a signal is sized at once on the account last pushed
  plus the (strategy, symbol)'s market orders still on their way, as an order management system does:
  asking the portfolio for the account as of each bar cost a round trip through two busy actors per
  signal.
Two more barriers exist only when the risk config needs them (docs/risk.md, "Where the inputs come
from"): with ``await_bars`` a signal of bar t also waits for the gatekeeper to have seen the bars up to
t (ATR, correlation returns); with an aggregation mode it waits until every strategy has reported bar t
(``reports_as_of_ns``), so the signals of one bar are combined together, never one by one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Context, Decimal, getcontext
from typing import Any

from mmats.engine.trader import bracket_children, entry_order, intent_for, size_signal
from mmats.model import (
    AccountState,
    Instrument,
    Order,
    OrderStatus,
    OrderType,
    PositionSnapshot,
    Side,
    SignalAction,
    TradeSignal,
)
from mmats.orders import transition
from mmats.risk.aggregation import AggregatedSignal
from mmats.risk.decision import RiskDecision, RiskGate
from mmats.risk.exposure import FloatMemo
from mmats.risk.gatekeeper import RiskGatekeeper

INFLIGHT_EXPIRY_S = 10.0  # a market order not reported done by then no longer counts as on its way
_NO_LIMIT = 2**63 - 1  # a bar time no signal waits for


@dataclass(frozen=True, slots=True)
class PendingSignal:
    strategy_id: str
    ts_ns: int
    price: float
    signal: TradeSignal


@dataclass(slots=True)
class GatewayOutput:
    """What one step produced: cancels first, then submissions; decisions and rejections to record."""

    cancels: list[tuple[str, str]] = field(default_factory=list)  # (strategy_id, symbol)
    submits: list[tuple[Order, list[Order]]] = field(default_factory=list)
    decisions: list[RiskDecision] = field(default_factory=list)
    rejected: list[tuple[str, Order, str]] = field(default_factory=list)  # (strategy_id, order, reason)
    signals: list[PendingSignal] = field(default_factory=list)

    def extend(self, other: GatewayOutput) -> None:
        self.cancels += other.cancels
        self.submits += other.submits
        self.decisions += other.decisions
        self.rejected += other.rejected
        self.signals += other.signals


# Per symbol: (position snapshot, mark, decimal context) -> (re-marked snapshot, value, unrealized P&L,
# notional), the last three in base currency
RemarkCache = dict[str, tuple[PositionSnapshot, Decimal, Context, PositionSnapshot, Decimal, Decimal, Decimal]]


def remark(account: AccountState, marks: dict[str, Decimal], cache: RemarkCache | None = None) -> AccountState:
    """The same account valued at new prices (the backtest marks at the decision bar's close).

    ``cache`` keeps each position's re-marked snapshot and figures for the next call: a position snapshot
    and mark that are the very same objects again (a ledger that reuses the snapshots of positions that
    did not move) are not recomputed. Without it, or on any other input, the figures are computed.

    Marks equal to the prices the account already holds give the account itself: its figures are the
    ones the ledger computed at those prices (a backtest decides at the close it has just marked)."""
    for p in account.positions:
        mark = marks.get(p.symbol)
        if mark is not None and mark != p.last_price:
            break
    else:
        return account
    ctx = getcontext()
    rows: list[tuple[PositionSnapshot, Decimal, Decimal, Decimal]] = []
    for p in account.positions:
        mark = marks.get(p.symbol, p.last_price)
        e = cache.get(p.symbol) if cache is not None else None
        if e is not None and e[0] is p and e[1] is mark and e[2] is ctx:
            rows.append(e[3:])
            continue
        q = PositionSnapshot(p.symbol, p.market, p.quantity, p.avg_price, mark, p.quantity * (mark - p.avg_price),
                             p.realized_pnl, margin=p.margin, quote_currency=p.quote_currency, fx_rate=p.fx_rate)
        row = (q, q.value_base, q.unrealized_pnl * q.fx_rate, q.notional_base)
        if cache is not None:
            cache[p.symbol] = (p, mark, ctx, *row)
        rows.append(row)
    positions = tuple(r[0] for r in rows)
    # Base currency (mmats.fx): each position converted at its quote currency's rate.
    equity = account.cash + sum((r[1] for r in rows), Decimal(0))
    return AccountState(
        ts_ns=account.ts_ns, currency=account.currency, cash=account.cash, equity=equity, positions=positions,
        realized_pnl=account.realized_pnl,
        unrealized_pnl=sum((r[2] for r in rows), Decimal(0)),
        fees=account.fees, peak_equity=max(account.peak_equity, equity),
        gross_exposure=sum((r[3] for r in rows), Decimal(0)),
        cash_by_currency=account.cash_by_currency, fx_rates=account.fx_rates, fx_pnl=account.fx_pnl,
        net_exposure=equity - account.cash,
    )


def combine_signals(ready: Sequence[PendingSignal],
                    aggregate: Callable[[Sequence[TradeSignal]], list[AggregatedSignal]]) -> list[PendingSignal]:
    """The signals of each bar time combined per symbol by the configured mode, in a fixed order.

    Each signal is stamped with the strategy that sent it (aggregation attributes by strategy); a
    combined signal becomes a pending signal of its own owner (``agg:consensus``, ``agg:weighted``,
    or PRIORITY's winner) at its members' bar price. Sorting first makes the result independent of the
    order in which the strategies' messages arrived.
    """
    by_ts: dict[int, list[PendingSignal]] = {}
    for p in sorted(ready, key=lambda p: (p.ts_ns, p.signal.symbol, p.strategy_id, p.signal.signal_id)):
        by_ts.setdefault(p.ts_ns, []).append(p)
    out: list[PendingSignal] = []
    for ts, group in by_ts.items():
        price: dict[str, float] = {}
        stamped: list[TradeSignal] = []
        for p in group:
            price.setdefault(p.signal.symbol, p.price)
            stamped.append(replace(p.signal, strategy_id=p.strategy_id, signal_id=p.signal.signal_id or str(ts)))
        out += [PendingSignal(a.signal.strategy_id, ts, price[a.symbol], a.signal) for a in aggregate(stamped)]
    return out


def allocation_for(allocation: dict[str, float], p: PendingSignal) -> float:
    """A strategy's share of equity; a combined signal's is its members' shares weighted by attribution."""
    own = allocation.get(p.strategy_id)
    if own is not None:
        return own
    default = allocation.get("*", 1.0)
    shares = p.signal.metadata.get("attribution") if p.strategy_id.startswith("agg:") else None
    if isinstance(shares, dict) and shares:
        return sum(float(w) * allocation.get(str(sid), default) for sid, w in shares.items())
    return default


class SignalPath:
    """Turns strategy signals into risk-checked order commands, in deterministic order."""

    def __init__(
        self,
        gate: RiskGate,
        instruments: dict[str, Instrument],
        allocation: float | dict[str, float] = 1.0,
        advisory: bool = True,
        allowed: Callable[[PendingSignal], str | None] | None = None,
        claim: Callable[[str], bool] | None = None,
    ) -> None:
        self.gate = gate
        self.instruments = instruments
        # Share of equity a position_size of 1.0 means, per strategy ("*" = everyone else).
        self.allocation = dict(allocation) if isinstance(allocation, dict) else {"*": float(allocation)}
        self.advisory = advisory
        self.allowed = allowed
        # Idempotency: claim(key) is True only the first time a (strategy, signal id) is seen; with a
        # durable state store behind it, that holds across restarts and nodes.
        self.claim = claim
        self.account: AccountState | None = None
        self.held: dict[tuple[str, str], float] | None = None
        # Market orders submitted and not yet known to be done: the next signal of the same (strategy,
        # symbol) is sized on its position PLUS what these will add (an order management system's
        # "position + open orders"), not on a position their fills have not reached yet.
        # cid -> ((strategy, symbol), when sent), oldest first; their signed quantities by (strategy,
        # symbol), so a signal sums only its own key's (a scan of every order in flight was half the
        # gatekeeper's time at 1,000 bars/s, sampled with py-spy).
        self._inflight: dict[str, tuple[tuple[str, str], float]] = {}
        self._inflight_by_key: dict[tuple[str, str], dict[str, float]] = {}
        # What those orders have filled so far (signed, from the account's own fills): ``held`` already
        # includes it, so only the rest is still on its way (a volume-capped market order fills in parts).
        self.partial: dict[str, float] = {}
        self.as_of_ns = -1
        # Set by the owner: True where the result must be exact (lockstep replays), see the module doc.
        self.await_account = True
        self._buffer: list[PendingSignal] = []
        self._seen_signal_ids: set[tuple[str, str]] = set()
        gk = gate if isinstance(gate, RiskGatekeeper) else None
        self._risk = gk
        self.aggregate = gk.aggregate if gk is not None and gk.aggregating else None
        # Set by the owner: True when bars reach ``on_bars`` (the gatekeeper actor subscribed to the
        # feeds); ``reports_as_of_ns`` None means every signal of a bar arrives in one ``on_signals``.
        self.await_bars = False
        self.bars_as_of_ns = -1
        self.reports_as_of_ns: int | None = None
        # Set by the owner where the result must not depend on arrival order (lockstep replays, backtests):
        # strategy id -> its place in the config. A bar's released signals are then evaluated by
        # (bar time, symbol, place), whatever order they came in; with shared cash or a throttle the
        # order of evaluation decides who gets what.
        self.strategy_rank: dict[str, int] | None = None
        # Per symbol, the last decision price and its rounding, and the last re-marked positions: the
        # signals of one account snapshot mostly re-mark positions that have not moved.
        self._marks: dict[str, tuple[Instrument, float, Decimal]] = {}
        self._remarked: RemarkCache = {}
        # the positions' float values by snapshot identity, shared with the gate when it keeps them
        self._values: FloatMemo = getattr(gate, "position_floats", None) or FloatMemo()

    def on_bars(self, bars: Iterable[tuple[str, int, float, float, float, float, float]],
                upto_ts: int) -> GatewayOutput:
        """Bars for the gatekeeper's ATR and correlation inputs; signals waiting for them may go."""
        if self._risk is not None and self._risk.needs.bars:
            self._risk.on_bars(bars)
        self.bars_as_of_ns = max(self.bars_as_of_ns, upto_ts)
        return self._release()

    def on_closed_trades(self, closed: Iterable[tuple[str, float]]) -> None:
        """Closed round trips (strategy, return) from the ledger, for Kelly sizing."""
        if self._risk is not None:
            self._risk.on_closed_trades(closed)

    def on_account(self, account: AccountState, as_of_ns: int, held: dict[tuple[str, str], float] | None = None,
                   done: list[str] | None = None, partial: dict[str, float] | None = None) -> GatewayOutput:
        """``held``: each (strategy, symbol)'s own net quantity; ``done``: orders that reached a final
        state, whose fills ``held`` and ``account`` already include; ``partial``: signed quantity filled
        so far of orders still working (also already in ``held``).

        Strategies sharing a symbol must each size against their own position, counting their market
        orders still on the way: sized on the account's total, or on a position the previous order's
        fill has not reached yet, two signals both sell what is held and the book runs away into ever
        larger reversals (seen at 1,000 bars/s with ten strategies on ten symbols)."""
        self.account = account
        if held is not None:
            self.held = held
            self.partial = dict(partial) if partial else {}
        for cid in done or ():
            self._finish(cid)
        self.as_of_ns = max(self.as_of_ns, as_of_ns)
        return self._release()

    def _finish(self, cid: str) -> None:
        entry = self._inflight.pop(cid, None)
        if entry is not None:
            mine = self._inflight_by_key[entry[0]]
            del mine[cid]
            if not mine:
                del self._inflight_by_key[entry[0]]

    def abandon(self, client_order_ids: list[str]) -> None:
        """Orders that will never reach the router (dropped by a kill-switch escalation)."""
        for cid in client_order_ids:
            self._finish(cid)

    def _on_the_way(self, key: tuple[str, str]) -> float:
        """Signed quantity of the (strategy, symbol)'s market orders not yet reported done, less what
        they have already filled."""
        partial = self.partial
        return sum(signed - partial.get(cid, 0.0) for cid, signed in self._inflight_by_key.get(key, {}).items())

    def _expire(self, now: float) -> None:
        """A done notice lost with a crashed process must not count for ever. Orders are kept in the
        order they were sent, so the expired ones are a prefix."""
        expired = []
        for cid, (_, since) in self._inflight.items():
            if now - since <= INFLIGHT_EXPIRY_S:
                break
            expired.append(cid)
        for cid in expired:
            self._finish(cid)

    def on_signals(self, items: list[PendingSignal]) -> GatewayOutput:
        self._buffer.extend(items)
        return self._release()

    @property
    def waiting(self) -> int:
        return len(self._buffer)

    @property
    def oldest_waiting_ns(self) -> int | None:
        """The earliest bar time a buffered signal waits for (the account must reach it), or None."""
        return min((p.ts_ns for p in self._buffer), default=None)

    def _release(self) -> GatewayOutput:
        out = GatewayOutput()
        if self.account is None:
            return out
        if self._inflight:
            self._expire(time.monotonic())
        limit = self.as_of_ns if self.await_account else _NO_LIMIT
        if self.await_bars:
            limit = min(limit, self.bars_as_of_ns)
        if self.reports_as_of_ns is not None:  # every strategy has reported: a bar's signals are all here
            limit = min(limit, self.reports_as_of_ns)
        ready = [p for p in self._buffer if p.ts_ns <= limit]
        if not ready:
            return out
        self._buffer = [p for p in self._buffer if p.ts_ns > limit]
        rank = self.strategy_rank
        if rank is not None:
            last = len(rank)
            ready.sort(key=lambda p: (p.ts_ns, p.signal.symbol, rank.get(p.strategy_id, last), p.strategy_id))
        if self.aggregate is not None:
            out.signals += ready  # the members are recorded; the combined signals are evaluated
            ready = combine_signals(ready, self.aggregate)
        for pending in ready:
            out.extend(self._evaluate(pending))
        return out

    def on_external(self, items: list[PendingSignal]) -> GatewayOutput:
        """Signals from outside the strategies (a manual order): evaluated on their own, never aggregated,
        once the account is there."""
        if self.account is None:
            return self.on_signals(items)
        out = GatewayOutput()
        for p in items:
            out.extend(self._evaluate(p))
        return out

    def _evaluate(self, p: PendingSignal) -> GatewayOutput:
        out = GatewayOutput(signals=[p])
        sig = p.signal
        if sig.action is SignalAction.HOLD:
            return out
        signal_id = sig.signal_id or str(p.ts_ns)
        key = (p.strategy_id, signal_id)
        if self.claim is not None:
            if not self.claim(f"signal:{p.strategy_id}:{signal_id}"):
                return out  # a retried or duplicated signal never makes a second order
        elif key in self._seen_signal_ids:
            return out
        else:
            self._seen_signal_ids.add(key)
        inst = self.instruments.get(sig.symbol)
        assert self.account is not None
        if inst is None:
            return out
        veto = self.allowed(p) if self.allowed is not None else None
        if self.advisory is False:
            out.cancels.append((p.strategy_id, sig.symbol))
        pos = self.account.position(sig.symbol)
        total = float(pos.quantity) if pos is not None else 0.0
        key = (p.strategy_id, sig.symbol)
        own = total if self.held is None else self.held.get(key, 0.0)
        if self._inflight:
            own += self._on_the_way(key)
        # Equity as the backtest computes it (cash + holdings at the decision price), over every symbol.
        # In base currency (mmats.fx), then in the symbol's quote currency, in which its price is.
        acct = self.account
        others = self._others_value(acct, sig.symbol)
        quote = inst.quote_currency
        rate = float(acct.fx_rate(quote)) if quote != acct.currency and acct.fx_rates else 1.0
        equity = float(acct.cash) + others + total * p.price * rate
        alloc = allocation_for(self.allocation, p)
        sized = size_signal(sig, p.price, float(acct.cash) / rate, own, alloc, inst, equity / rate)
        if sized is None:
            return out
        account = remark(self.account, {sig.symbol: self._mark(inst, p.price)}, self._remarked)
        intent = intent_for(sig, sized, inst, p.strategy_id, signal_id, p.price, p.ts_ns)
        decision = self.gate.evaluate(intent, account)
        out.decisions.append(decision)
        order = entry_order(sig, intent, decision.quantity if decision.approved else sized.quantity, p.ts_ns)
        if veto is not None or not decision.approved:
            reason = veto or "; ".join(f"{r.rule}: {r.message}" for r in decision.reasons) or "rejected"
            transition(order, OrderStatus.REJECTED, p.ts_ns)
            order.reject_reason = reason
            out.rejected.append((p.strategy_id, order, reason))
            return out
        if self.advisory:
            return out
        children = [] if sized.reduces_position else bracket_children(sig, order, inst, p.ts_ns)
        out.submits.append((order, children))
        if order.order_type is OrderType.MARKET:  # a resting limit order is canceled by the next signal
            signed = float(order.quantity) if order.side is Side.BUY else -float(order.quantity)
            self._track(order.client_order_id, key, signed)
        return out

    def _others_value(self, account: AccountState, symbol: str) -> float:
        """The float value in base currency of every open position but ``symbol``'s, added in their order."""
        others = 0.0
        for p, _, value in self._values.open_positions(account.positions):
            if p.symbol != symbol:
                others += value
        return others

    def _track(self, cid: str, key: tuple[str, str], signed: float) -> None:
        self._finish(cid)  # a client id sent again counts once, from now
        self._inflight[cid] = (key, time.monotonic())
        self._inflight_by_key.setdefault(key, {})[cid] = signed

    def _mark(self, inst: Instrument, price: float) -> Decimal:
        """``inst.round_price(price)``, the same object again for the same instrument and price."""
        m = self._marks.get(inst.symbol)
        if m is None or m[0] is not inst or m[1] != price or not price:  # 0.0 and -0.0 round apart
            m = self._marks[inst.symbol] = (inst, price, inst.round_price(price))
        return m[2]

    def state(self) -> dict[str, Any]:
        return {"advisory": self.advisory, "as_of_ns": self.as_of_ns, "waiting": len(self._buffer),
                "orders_in_flight": len(self._inflight), "bars_as_of_ns": self.bars_as_of_ns,
                "aggregation": self._risk.effective.levels.aggregation.mode if self._risk is not None else None}
