"""PortfolioActor: the authoritative positions, cash, P&L and equity of the running system.

It books the router's fills and pushes the resulting ``AccountState`` to the gatekeeper (with the
watermark "as of bar time T", which an exact replay waits for before sizing signals of bar T) and, when
something changed, to the strategies: state is pushed on change, never fetched per bar. The pushes to
the gatekeeper follow the adaptive batching policy (``mmats.engine.batching``): at once when the
previous one was answered, otherwise the newest account (with every order done and trade closed
meanwhile) in one message when it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

import ray

from actors.control import CONTROL, GROUPS, ask_supervisor_to_rewire, control_lock, locked
from actors.stores import open_stores
from mmats.attribution import StrategyLedgers
from mmats.engine.actor_settings import PortfolioSettings
from mmats.engine.batching import AdaptiveBatcher, AnswerRelay
from mmats.engine.signal_path import INFLIGHT_EXPIRY_S
from mmats.engine.topology import Wiring
from mmats.fx import FxRates
from mmats.margin import book_event, journaled_funding
from mmats.messages import AccountSnapshot, FillBatch, OrderOutcomes
from mmats.model import Fill, Instrument, Order, dec_str, iso
from mmats.portfolio import Portfolio
from mmats.risk.inputs import TradeTracker

T = TypeVar("T")
STRATEGY_ACCOUNT_EVERY_S = 1.0  # the longest a strategy's view of the account is stale (outside lockstep)
EQUITY_SNAPSHOT_EVERY_S = 1.0  # the stored equity series: at most one point a second


@ray.remote(max_restarts=-1, max_task_retries=-1, concurrency_groups=GROUPS)
class PortfolioActor:
    def __init__(self, settings: PortfolioSettings) -> None:
        """Its peers (the gatekeeper, the strategies' hosts) come with the supervisor's ``wire``, again
        after a restart of this actor."""
        self._lock = control_lock()  # the message thread and the control thread (actors.control)
        instruments, initial_cash, equity_every_s = settings.instruments, settings.initial_cash, settings.equity_every_s
        persist, push_every_batch, fx = settings.persist, settings.push_every_batch, settings.fx
        # Account to the gatekeeper after every router report (new marks or fills), one message in flight:
        # what changes while the gatekeeper works goes out as one newer account when it answers, so its
        # drawdown and loss triggers see every state it has time for and its mailbox holds at most one.
        self.push_every_batch = push_every_batch  # lockstep: the strategies hear every fill batch too
        self._to_gatekeeper: AdaptiveBatcher[None] = AdaptiveBatcher()
        self._account_relay = AnswerRelay(self._lock, self._push_account, "account-relay")
        self._strategies_pushed = 0.0
        self.instruments = instruments
        # The account's base currency and rates (mmats.fx, planned from the config at load). Without a plan
        # the account is in the first instrument's quote currency, and any other currency must convert.
        if fx is None:
            fx = FxRates(next(iter(instruments.values())).quote_currency, feed_symbols=instruments)
            fx.require({i.quote_currency for i in instruments.values()})
        currency = fx.base
        self.portfolio = Portfolio(Decimal(initial_cash), fx=fx)
        for inst in instruments.values():
            self.portfolio.register(inst)
        self.gatekeeper: Any = None
        self.strategies: dict[str, Any] = {}
        self.equity_series: list[tuple[int, float]] = []
        self.equity_every_ns = equity_every_s * 1_000_000_000
        self.fills: list[Fill] = []
        self._ledgers = StrategyLedgers(instruments.values(), currency, fx)  # per-strategy P&L, fed lazily
        self._prices: dict[str, Decimal] = {}  # every feed symbol's last price (rates for the ledgers)
        self.as_of = 0
        self.day_start_equity: tuple[int, Decimal] = (0, Decimal(initial_cash))
        self.stores = open_stores(persist) if persist is not None else None
        self._last_snapshot_wall = 0.0
        self._fill_ids: set[str] = set()
        self.held: dict[tuple[str, str], Decimal] = {}  # (strategy, symbol) -> its own net quantity
        self._done: list[str] = []  # orders the router reported final, not yet forwarded to the gatekeeper
        self._rejected: list[tuple[Order, str]] = []  # rejections for the strategies, sent with their account
        # Order not reported final -> (signed quantity filled so far, wall time of its last fill). Only
        # market orders are ever reported final; the rest age out (the gateway forgets its orders on
        # the way after mmats.engine.signal_path.INFLIGHT_EXPIRY_S anyway).
        self._working: dict[str, tuple[Decimal, float]] = {}
        self.booked_wall: dict[str, float] = {}  # fill id -> wall time booked (latency benchmark)
        # Each strategy's closed round trips, for the gatekeeper's Kelly sizing (sent with the account).
        self.trade_tracker = TradeTracker()
        self._closed: list[tuple[str, float]] = []
        if self.stores is not None:
            # Positions and cash are a pure function of the fills: replay them all (exact Decimals).
            for f in self.stores.storage.list_fills():
                self._book(f)
                self._fill_ids.add(f.fill_id)
            for payment in journaled_funding(self.stores.storage.audit_records()):  # perpetuals' funding
                book_event(self.portfolio, payment)
            self._closed = []  # trades closed before the restart are in the gatekeeper's saved record
        ask_supervisor_to_rewire(settings.peers, "portfolio")

    @locked
    def wire(self, wiring: Wiring[Any]) -> None:
        """The peers from the topology (mmats.engine.topology): the gatekeeper and every strategy's host
        by strategy id."""
        self.gatekeeper = wiring.gatekeeper or self.gatekeeper
        self.strategies = dict(wiring.strategies)

    @locked
    def on_fills(self, msg: FillBatch) -> None:
        """A router report: fills, marks, the orders that reached a final state (forwarded to the
        gatekeeper with the account that includes their fills) and the orders that filled (forwarded
        to their strategies with the same account, in one message)."""
        fills, as_of_ns, marks, done, filled, funding = msg.fills, msg.as_of_ns, msg.marks, msg.done, msg.filled, \
            msg.funding
        self._rejected += msg.rejected
        pf = self.portfolio
        if done:
            self._done += done
        prices = self._prices
        for sym, px in marks.items():  # rates first: the fills of this report convert at them
            inst = self.instruments.get(sym)
            price = inst.round_price(px) if inst is not None else Decimal(repr(px))
            prices[sym] = price
            pf.fx.on_price(sym, price)
        for f in fills:
            if f.fill_id in self._fill_ids:
                continue  # already booked (replayed from storage after a restart, then re-sent)
            self._fill_ids.add(f.fill_id)
            self.booked_wall[f.fill_id] = time.time()
            self._book(f)
            so_far = self._working.get(f.client_order_id, (Decimal(0), 0.0))[0]
            self._working[f.client_order_id] = (so_far + f.signed_quantity, time.time())
        for payment in funding or ():  # perpetuals' funding, settled by the paper venue (mmats.margin)
            book_event(pf, payment)
        for cid in done or ():
            self._working.pop(cid, None)
        for sym in marks:
            if sym in self.instruments:
                pf.mark(sym, prices[sym])
        self.as_of = max(self.as_of, as_of_ns)
        snap = pf.snapshot(self.as_of)
        day = self.as_of // 86_400_000_000_000
        if day != self.day_start_equity[0]:
            self.day_start_equity = (day, snap.equity)
        if not self.equity_series or self.as_of - self.equity_series[-1][0] >= self.equity_every_ns or fills:
            self.equity_series.append((self.as_of, float(snap.equity)))
        # The account goes out before the snapshot's commit: the gatekeeper's sizing waits for it, and the
        # snapshot is derived data (the fills are already committed by the router).
        self._to_gatekeeper.touch()
        self._push_account(snap)
        self._push_strategies(snap, fills, filled or [])
        # The stored equity series: at most one snapshot a second (derived data: the fills are on record
        # and the account is rebuilt from them). One per report with fills was a commit per message,
        # each queuing for the database's write lock beside the router's and the gatekeeper's.
        if self.stores is not None and time.time() - self._last_snapshot_wall >= EQUITY_SNAPSHOT_EVERY_S:
            self.stores.storage.save_equity_snapshot(snap)
            self._last_snapshot_wall = time.time()

    def _push_strategies(self, snap: Any, fills: list[Fill], filled: list[Order]) -> None:
        """Each strategy gets its filled and rejected orders and the account in ONE message: at once when
        its orders filled or were rejected, otherwise at most every STRATEGY_ACCOUNT_EVERY_S (every fill
        batch in lockstep, where replays must be exact). Ten strategies times every fill batch would be
        most of the system's messages."""
        orders = _by_strategy(filled, lambda o: o.strategy_id)
        rejected, self._rejected = _by_strategy(self._rejected, lambda r: r[0].strategy_id), []
        now = time.time()
        due = now - self._strategies_pushed >= STRATEGY_ACCOUNT_EVERY_S
        everyone = bool(fills) if self.push_every_batch else due
        if everyone:
            self._strategies_pushed = now
        touched = {f.strategy_id for f in fills}
        _send_outcomes([(handle, OrderOutcomes(sid, orders.get(sid, []), rejected.get(sid, []), snap))
                        for sid, handle in self.strategies.items()
                        if everyone or sid in touched or sid in orders or sid in rejected])

    def _book(self, f: Fill) -> None:
        """Apply a fill, and keep what each strategy holds of each symbol (the gatekeeper sizes every
        strategy against its own position). A fill that leaves the symbol flat (a kill-switch flatten,
        a manual close) leaves every strategy flat in it."""
        self.portfolio.apply_fill(f)
        self.fills.append(f)
        self._closed += self.trade_tracker.on_fill(f)
        key = (f.strategy_id, f.symbol)
        self.held[key] = self.held.get(key, Decimal(0)) + f.signed_quantity
        pos = self.portfolio.positions.get(f.symbol)
        if pos is None or pos.quantity == 0:
            for k in [k for k in self.held if k[1] == f.symbol]:
                del self.held[k]

    def held_floats(self) -> dict[tuple[str, str], float]:
        return {k: float(v) for k, v in self.held.items() if v}

    def _push_account(self, snap: Any = None) -> None:
        """Under the lock: the account to the gatekeeper if it changed and no push is in flight; the orders
        done and trades closed since the last push go with it."""
        if self.gatekeeper is None or self._to_gatekeeper.take() is None:
            return
        snap = snap if snap is not None else self.portfolio.snapshot(self.as_of)
        done, self._done = self._done, []
        horizon = time.time() - 3 * INFLIGHT_EXPIRY_S
        for cid in [c for c, (_, t) in self._working.items() if t < horizon]:
            del self._working[cid]
        partial = {cid: float(q) for cid, (q, _) in self._working.items()} or None
        closed, self._closed = self._closed, []
        ref = self.gatekeeper.on_account.remote(AccountSnapshot(snap, self.as_of, self.held_floats(), done, partial,
                                                                closed or None))
        ref.future().add_done_callback(self._account_answered)

    def _account_answered(self, _: Any) -> None:
        """The gatekeeper answered: the account that changed meanwhile goes now (``AnswerRelay``)."""
        self._to_gatekeeper.answered()
        self._account_relay.answered()

    def _inst(self, symbol: str) -> Instrument:
        return self.instruments.get(symbol) or next(iter(self.instruments.values()))

    @locked
    def on_rejections(self, rejected: list[tuple[Order, str]], delivered: bool = False) -> None:
        """Orders the gatekeeper decided not to send (risk, kill switch), with the reason: to their
        strategies at once, from this actor like every other outcome. Nothing was booked, so the account
        they hold is still current and does not go with them (a snapshot per refusal would cost more than
        the refusal). ``delivered``: answer once every strategy has them (a lockstep replay)."""
        refs = _send_outcomes([(handle, OrderOutcomes(strategy_id, rejected=orders))
                               for strategy_id, orders in _by_strategy(rejected, lambda r: r[0].strategy_id).items()
                               if (handle := self.strategies.get(strategy_id)) is not None])
        if delivered:
            ray.get(refs)

    @ray.method(concurrency_group=CONTROL)
    def send_account(self, strategy_ids: list[str], host: Any = None, wait: bool = True,
                     after: Any = None) -> int:
        """The account to these strategies now: a host that was restarted or is taking over in a hot
        replace needs its positions before its first live bar. ``host``: the one to send to when the
        topology does not name it yet (a hot replace); ``after``: a call that must have finished first
        (Ray resolves it before this runs: the supervisor's ``wire`` of a restarted host, which may
        replace its members). ``wait``: answer once delivered."""
        del after
        with self._lock:
            snap = self.portfolio.snapshot(self.as_of)
            targets = [(sid, host if host is not None else self.strategies.get(sid)) for sid in strategy_ids]
        refs = _send_outcomes([(h, OrderOutcomes(sid, account=snap)) for sid, h in targets if h is not None])
        if wait:
            ray.get(refs)
        return len(refs)

    @ray.method(concurrency_group=CONTROL)
    @locked
    def account(self) -> Any:
        return self.portfolio.snapshot(self.as_of)

    @ray.method(concurrency_group=CONTROL)
    @locked
    def status(self) -> dict[str, Any]:
        pf = self.portfolio
        snap = pf.snapshot(self.as_of)
        # Reports carry money at the venue's precision (the ledger itself stays exact).
        money = next(iter(self.instruments.values()))
        return {
            "as_of": iso(self.as_of) if self.as_of else None,
            "currency": pf.currency,
            "cash": str(snap.cash),
            "equity": str(snap.equity),
            "initial_cash": str(pf.initial_cash),
            "total_pnl": str(snap.equity - pf.initial_cash),
            "daily_pnl": str(snap.equity - self.day_start_equity[1]),
            "realized_pnl": str(money.round_money(pf.realized_pnl)),
            "unrealized_pnl": str(money.round_money(snap.unrealized_pnl)),
            "fees": str(pf.fees),
            "peak_equity": str(snap.peak_equity),
            "drawdown": float(snap.drawdown),
            "margin": {"used": str(money.round_money(snap.margin_used)),
                       "available": str(money.round_money(snap.margin_available)),
                       "utilisation": float(snap.margin_utilisation)},
            "positions": [
                {"symbol": p.symbol, "market": p.market.value, "quantity": str(p.quantity),
                 "avg_price": str(self._inst(p.symbol).round_price(p.avg_price)), "last_price": str(p.last_price),
                 "unrealized_pnl": str(self._inst(p.symbol).round_money(p.unrealized_pnl)),
                 "realized_pnl": str(self._inst(p.symbol).round_money(p.realized_pnl)),
                 "quote_currency": p.quote_currency, "value": str(money.round_money(p.value_base)),
                 "unrealized_pnl_base": str(money.round_money(p.unrealized_pnl * p.fx_rate))}
                for p in snap.positions
            ],
            "attribution": pf.attribution(),
            "trades": len(pf.trades),
            "fills": len(self.fills),
            # Every figure above is in the base currency ("currency"); cash as held, and each rate's source.
            "cash_by_currency": {c: dec_str(v) for c, v in snap.cash_by_currency.items()},
            "fx_rates": {c: {"rate": dec_str(r), "source": pf.fx.sources().get(c, "")}
                         for c, r in sorted(snap.fx_rates.items())},
            "fx_pnl": str(money.round_money(snap.fx_pnl)),
            "fx_notes": pf.fx.notes(),
            "gross_exposure": str(money.round_money(snap.gross_exposure)),
            "net_exposure": str(money.round_money(snap.net_exposure)),
        }

    @ray.method(concurrency_group=CONTROL)
    @locked
    def recent_fills(self, limit: int = 100) -> list[dict[str, Any]]:
        """The last ``limit`` fills booked, oldest first (the control API's live view)."""
        return [f.to_dict() for f in self.fills[-limit:]] if limit > 0 else []

    @ray.method(concurrency_group=CONTROL)
    @locked
    def strategy_stats(self) -> dict[str, dict[str, Any]]:
        """Per strategy, from its own book of its own fills (``mmats.attribution``): fills, closing trades,
        wins, realized and unrealized P&L (marked at the account's last prices), fees, net P&L."""
        ledgers = self._ledgers
        ledgers.fx.seed(self._prices)
        for f in self.fills[ledgers.applied:]:
            ledgers.apply(f)
        marks = {sym: pos.last_price for sym, pos in self.portfolio.positions.items() if pos.last_price}
        return ledgers.stats(marks)

    @ray.method(concurrency_group=CONTROL)
    @locked
    def booked_times(self) -> dict[str, float]:
        return dict(self.booked_wall)

    @ray.method(concurrency_group=CONTROL)
    @locked
    def equity(self) -> list[tuple[int, float]]:
        return list(self.equity_series)

    def ping(self) -> str:
        return "ok"


def _send_outcomes(outcomes: list[tuple[Any, OrderOutcomes]]) -> list[Any]:
    """One ``on_orders`` message per host actor with the outcomes of each of its strategies named: a pool
    of five gets one message, and the account they share is serialized once, not five times."""
    by_host: dict[Any, list[OrderOutcomes]] = {}
    for handle, outcome in outcomes:
        by_host.setdefault(handle, []).append(outcome)
    return [handle.on_orders.remote(msgs) for handle, msgs in by_host.items()]


def _by_strategy(items: list[T], strategy_of: Callable[[T], str]) -> dict[str, list[T]]:
    """Outcomes grouped by strategy, in their order: one message per strategy, not per order."""
    out: dict[str, list[T]] = {}
    for item in items:
        out.setdefault(strategy_of(item), []).append(item)
    return out
