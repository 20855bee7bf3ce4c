"""PortfolioActor: the authoritative positions, cash, P&L and equity of the running system.

It books the router's fills and pushes the resulting ``AccountState`` to the gatekeeper (with the
watermark "as of bar time T", which the gatekeeper waits for before sizing signals of bar T) and, when
something changed, to the strategies: state is pushed on change, never fetched per bar.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import ray

from actors.control import CONTROL, GROUPS, control_lock, locked, when_ready
from actors.stores import open_stores
from mmats.attribution import StrategyLedgers
from mmats.engine.signal_path import INFLIGHT_EXPIRY_S
from mmats.model import Fill, Instrument, Order, iso
from mmats.portfolio import Portfolio

ACCOUNT_EVERY_S = 0.25  # the longest the gatekeeper's drawdown and daily-loss triggers go without an update
STRATEGY_ACCOUNT_EVERY_S = 1.0  # the longest a strategy's view of the account is stale (outside lockstep)


@ray.remote(max_restarts=-1, max_task_retries=-1, concurrency_groups=GROUPS)
class PortfolioActor:
    def __init__(self, instruments: dict[str, Instrument], initial_cash: str, equity_every_s: int = 60,
                 persist: dict[str, Any] | None = None, gatekeeper_name: str | None = None,
                 namespace: str | None = None, push_every_batch: bool = False) -> None:
        self._lock = control_lock()  # the message thread and the control thread (actors.control)
        # Account to the gatekeeper: on change (fills), when it waits for a bar time (``want_account``),
        # and at least every ACCOUNT_EVERY_S for its equity triggers; every batch in a lockstep replay.
        # Pushing every batch would make the gatekeeper's mailbox the system's bottleneck.
        self.push_every_batch = push_every_batch
        self._wanted_ns: int | None = None
        self._pushed_wall = 0.0
        self._strategies_pushed = 0.0
        self.instruments = instruments
        currency = next(iter(instruments.values())).quote_currency
        self.portfolio = Portfolio(Decimal(initial_cash), currency)
        for inst in instruments.values():
            self.portfolio.register(inst)
        self.gatekeeper: Any = None
        self.strategies: dict[str, Any] = {}
        self.equity_series: list[tuple[int, float]] = []
        self.equity_every_ns = equity_every_s * 1_000_000_000
        self.fills: list[Fill] = []
        self._ledgers = StrategyLedgers(instruments.values(), currency)  # per-strategy P&L, fed lazily
        self.as_of = 0
        self.day_start_equity: tuple[int, Decimal] = (0, Decimal(initial_cash))
        self.stores = open_stores(persist) if persist is not None else None
        self._last_snapshot_wall = 0.0
        self._fill_ids: set[str] = set()
        self.held: dict[tuple[str, str], Decimal] = {}  # (strategy, symbol) -> its own net quantity
        self._done: list[str] = []  # orders the router reported final, not yet forwarded to the gatekeeper
        # Order not reported final -> (signed quantity filled so far, wall time of its last fill). Only
        # market orders are ever reported final; the rest age out (the gateway forgets its orders on
        # the way after mmats.engine.signal_path.INFLIGHT_EXPIRY_S anyway).
        self._working: dict[str, tuple[Decimal, float]] = {}
        self.booked_wall: dict[str, float] = {}  # fill id -> wall time booked (latency benchmark)
        if self.stores is not None:
            # Positions and cash are a pure function of the fills: replay them all (exact Decimals).
            for f in self.stores.storage.list_fills():
                self._book(f)
                self._fill_ids.add(f.fill_id)
        if gatekeeper_name and ray.get_runtime_context().was_current_actor_reconstructed:
            self.gatekeeper = ray.get_actor(gatekeeper_name, namespace=namespace)
            when_ready(self.gatekeeper.strategy_handles.remote(), self.strategies.update, "portfolio <- gatekeeper")

    @locked
    def connect(self, gatekeeper: Any) -> None:
        self.gatekeeper = gatekeeper

    @locked
    def register_strategy(self, strategy_id: str, handle: Any) -> None:
        self.strategies[strategy_id] = handle

    @locked
    def on_fills(self, fills: list[Fill], as_of_ns: int, marks: dict[str, float],
                 done: list[str] | None = None, filled: list[Order] | None = None) -> None:
        """A router report: fills, marks, the orders that reached a final state (forwarded to the
        gatekeeper with the account that includes their fills) and the orders that filled (forwarded
        to their strategies with the same account, in one message)."""
        pf = self.portfolio
        if done:
            self._done += done
        for f in fills:
            if f.fill_id in self._fill_ids:
                continue  # already booked (replayed from storage after a restart, then re-sent)
            self._fill_ids.add(f.fill_id)
            self.booked_wall[f.fill_id] = time.time()
            self._book(f)
            so_far = self._working.get(f.client_order_id, (Decimal(0), 0.0))[0]
            self._working[f.client_order_id] = (so_far + f.signed_quantity, time.time())
        for cid in done or ():
            self._working.pop(cid, None)
        for sym, px in marks.items():
            inst = self.instruments.get(sym)
            if inst is not None:
                pf.mark(sym, inst.round_price(px))
        self.as_of = max(self.as_of, as_of_ns)
        snap = pf.snapshot(self.as_of)
        day = self.as_of // 86_400_000_000_000
        if day != self.day_start_equity[0]:
            self.day_start_equity = (day, snap.equity)
        if not self.equity_series or self.as_of - self.equity_series[-1][0] >= self.equity_every_ns or fills:
            self.equity_series.append((self.as_of, float(snap.equity)))
        # The account goes out before the snapshot's commit: the gatekeeper's sizing waits for it, and the
        # snapshot is derived data (the fills are already committed by the router).
        self._maybe_push(snap, bool(fills) or bool(done))
        self._push_strategies(snap, fills, filled or [])
        if self.stores is not None and (fills or time.time() - self._last_snapshot_wall > 5.0):
            self.stores.storage.save_equity_snapshot(snap)
            self._last_snapshot_wall = time.time()

    def _push_strategies(self, snap: Any, fills: list[Fill], filled: list[Order]) -> None:
        """Each strategy gets its filled orders and the account in ONE message: at once when its orders
        filled, otherwise at most every STRATEGY_ACCOUNT_EVERY_S (every fill batch in lockstep, where
        replays must be exact). Ten strategies times every fill batch was most of the system's messages."""
        orders: dict[str, list[Order]] = {}
        for o in filled:
            orders.setdefault(o.strategy_id, []).append(o)
        now = time.time()
        due = now - self._strategies_pushed >= STRATEGY_ACCOUNT_EVERY_S
        everyone = bool(fills) if self.push_every_batch else due
        if everyone:
            self._strategies_pushed = now
        touched = {f.strategy_id for f in fills}
        for strategy_id, handle in self.strategies.items():
            if everyone or strategy_id in touched or strategy_id in orders:
                handle.on_orders.remote(orders.get(strategy_id, []), [], snap)

    def _book(self, f: Fill) -> None:
        """Apply a fill, and keep what each strategy holds of each symbol (the gatekeeper sizes every
        strategy against its own position). A fill that leaves the symbol flat (a kill-switch flatten,
        a manual close) leaves every strategy flat in it."""
        self.portfolio.apply_fill(f)
        self.fills.append(f)
        key = (f.strategy_id, f.symbol)
        self.held[key] = self.held.get(key, Decimal(0)) + f.signed_quantity
        pos = self.portfolio.positions.get(f.symbol)
        if pos is None or pos.quantity == 0:
            for k in [k for k in self.held if k[1] == f.symbol]:
                del self.held[k]

    def held_floats(self) -> dict[tuple[str, str], float]:
        return {k: float(v) for k, v in self.held.items() if v}

    def _maybe_push(self, snap: Any, changed: bool) -> None:
        if self.gatekeeper is None:
            return
        now = time.time()
        wanted = self._wanted_ns is not None and self.as_of >= self._wanted_ns
        if changed or wanted or self.push_every_batch or now - self._pushed_wall >= ACCOUNT_EVERY_S:
            if wanted:
                self._wanted_ns = None
            self._pushed_wall = now
            done, self._done = self._done, []
            horizon = now - 3 * INFLIGHT_EXPIRY_S
            for cid in [c for c, (_, t) in self._working.items() if t < horizon]:
                del self._working[cid]
            partial = {cid: float(q) for cid, (q, _) in self._working.items()} or None
            self.gatekeeper.on_account.remote(snap, self.as_of, self.held_floats(), done, partial)

    @locked
    def want_account(self, ts_ns: int) -> None:
        """The gatekeeper holds signals of bar ``ts_ns``: send the account as soon as it is as of that bar."""
        if self.as_of >= ts_ns:
            self._wanted_ns = None
            self._maybe_push(self.portfolio.snapshot(self.as_of), True)
        else:
            self._wanted_ns = ts_ns if self._wanted_ns is None else min(self._wanted_ns, ts_ns)

    def _inst(self, symbol: str) -> Instrument:
        return self.instruments.get(symbol) or next(iter(self.instruments.values()))

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
            "positions": [
                {"symbol": p.symbol, "market": p.market.value, "quantity": str(p.quantity),
                 "avg_price": str(self._inst(p.symbol).round_price(p.avg_price)), "last_price": str(p.last_price),
                 "unrealized_pnl": str(self._inst(p.symbol).round_money(p.unrealized_pnl)),
                 "realized_pnl": str(self._inst(p.symbol).round_money(p.realized_pnl))}
                for p in snap.positions
            ],
            "attribution": pf.attribution(),
            "trades": len(pf.trades),
            "fills": len(self.fills),
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
