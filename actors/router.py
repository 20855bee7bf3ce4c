"""OrderRouter: owns order state and idempotency, routes orders to their venue, reports fills.

PAPER: the kernel's simulated broker on the feed's bars (``mmats.execution.paper``), so paper fills follow exactly
the backtest's rules. LIVE: ``mmats.execution.live`` over the configured venues (ccxt, OANDA, Alpaca),
each symbol to its own venue, with fills polled from the venues and a reconciliation timer.
Every submit goes through ``mmats.execution.routing.OrderSubmitter``: retryable venue errors are retried with
backoff, a lost answer leaves the order UNKNOWN until reconciliation asks the venue, and a streak of
failures is reported to the gatekeeper (which downgrades operator to advisory). In LIVE, an order is
stored before it is sent, so a router killed between send and answer asks the venue after its restart.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any

import ray

from actors.control import CONTROL, GROUPS, ask_supervisor_to_rewire, control_lock, locked
from actors.stores import open_stores
from adapters.sql_store import TradeState
from mmats.engine.actor_settings import RouterSettings
from mmats.engine.batching import AdaptiveBatcher, AnswerRelay
from mmats.engine.topology import Wiring
from mmats.engine.wall_stamps import WallStamps
from mmats.execution.live import LiveExecution, LiveSettings
from mmats.execution.paper import BarUpdate, PaperExecution
from mmats.execution.routing import OrderSubmitter, RetryPolicy, SubmitOutcome, SubmitResult
from mmats.execution.simulated import ExecutionConfig
from mmats.execution.venue_guard import GuardSettings
from mmats.fx import FxRates
from mmats.margin import FundingPayment, FundingSettings, journaled_funding
from mmats.messages import BarBatch, FillBatch, OrderCommands
from mmats.model import Fill, Instrument, Order, OrderStatus, OrderType
from mmats.orders import can_transition, transition

RECONCILE_EVERY_S = 0.5

BarTuple = tuple[str, int, float, float, float, float, float]


def open_live_execution(live: dict[str, Any], instruments: dict[str, Instrument], cash: Decimal,
                        fx: FxRates | None = None) -> LiveExecution:
    """The LIVE venues from their specs (``actors.supervisor.live_venue_specs``), opened in this process
    with keys from the LIVE secret store."""
    from adapters.venues import open_venue

    venues = {v["name"]: (open_venue(v), v["symbols"]) for v in live["venues"]}
    guards = {v["name"]: GuardSettings(failures_to_open=v["breaker"]["failures"], open_s=v["breaker"]["open_s"],
                                       rate_per_s=v.get("rate_per_s")) for v in live["venues"]}
    settings = LiveSettings(unknown_grace_s=live["unknown_grace_s"], reconcile_every_s=live["reconcile_every_s"],
                            dry_run=bool(live.get("dry_run")),
                            outside_hours={v["name"]: v["outside_hours"] for v in live["venues"]})
    return LiveExecution(venues, instruments, cash, settings, guards, fx=fx)


@ray.remote(max_restarts=-1, max_task_retries=-1, concurrency_groups=GROUPS)
class OrderRouterActor:
    def __init__(self, settings: RouterSettings, wiring: Wiring[Any] | None = None) -> None:
        """``wiring``: the portfolio and the feed as built (handles that survive restarts); the rest comes
        with the supervisor's ``wire`` (again after a restart of this actor)."""
        self._lock = control_lock()  # the message thread and the control thread (actors.control)
        instruments, initial_cash, costs, persist = settings.instruments, settings.initial_cash, settings.costs, \
            settings.persist
        paper_venue, retry, live, fx, funding = settings.paper_venue, settings.retry, settings.live, settings.fx, \
            settings.funding
        from mmats.registry import load_object
        from mmats.research.runconfig import CommissionSpec, SlippageSpec

        self.live: LiveExecution | None = None
        self.execution: Any
        if live is not None:
            self.live = self.execution = open_live_execution(live, instruments, Decimal(initial_cash), fx)
        else:
            venue_cls = PaperExecution if paper_venue is None else load_object(paper_venue, PaperExecution)
            self.execution = venue_cls(
                instruments, Decimal(initial_cash),
                SlippageSpec(**costs.get("slippage", {})).build(bool(costs.get("volume_in_quote", False))),
                CommissionSpec(**costs.get("commission", {})).build(),
                ExecutionConfig(costs.get("max_volume_share"), bool(costs.get("volume_in_quote", False)),
                                bool(costs.get("cash_only", True))),
                fx=fx,
                # funding of perpetuals (symbol -> mmats.margin.FundingSettings keys), read here, in the router
                **({"funding": {s: FundingSettings(**f).build() for s, f in funding.items()}} if funding else {}),
            )
        self.portfolio: Any = wiring.portfolio if wiring is not None else None
        self.feed: Any = wiring.feed if wiring is not None else None  # lockstep acknowledgements
        self.last_prices: dict[str, float] = {}
        self.last_ts = 0
        self.errors = 0
        self.error_streak = 0
        self.submitter = OrderSubmitter(RetryPolicy(**(retry or {})))
        self._reconciled_wall = 0.0
        self.gatekeeper: Any = None
        # Fills to the portfolio: the adaptive batching policy (mmats.engine.batching), one report in flight.
        self._to_portfolio: AdaptiveBatcher[Fill] = AdaptiveBatcher()
        self._pf_relay = AnswerRelay(self._lock, self._send_report, "portfolio-relay")
        self._pf_funding: list[FundingPayment] = []
        self._pf_rejected: list[tuple[Order, str]] = []
        self._pf_orders: dict[str, Order] = {}
        self._pf_ts = 0
        self.submitted = 0
        self.duplicates = 0
        self.stores = open_stores(persist) if persist is not None else None
        self.restored_working = 0
        self.accept_wall: WallStamps[str] = WallStamps(200_000)  # client order id -> wall time accepted (benchmarks)
        self.bar_wall: WallStamps[int] = WallStamps(200_000)  # bar time -> wall time this actor first had it (same)
        # Gatekeeper clock (ns) of the last kill-switch escalation: submits decided before it are stale.
        self.halt_ns = 0
        self.stale_dropped = 0
        # Market orders from the gatekeeper not yet reported final (it holds their strategy's next signal).
        self._watch: set[str] = set()
        # Bracket children by parent id: a parent's fill activates them, and their new state is stored
        # with it (a scan of every order ever made per fill batch grew with the day).
        self._children: dict[str, list[Order]] = {}
        if self.stores is not None:
            self.halt_ns = int(self.stores.state.get("router:halt_ns") or 0)
            # Whether first start or restart: the system of record says what exists.
            storage = self.stores.storage
            # The paper venue's mirror also gets back the funding it settled (journaled, mmats.margin).
            funding = journaled_funding(storage.audit_records())
            self.restored_working = self.execution.restore(storage.list_orders(), storage.list_fills(),
                                                           *([funding] if funding else []))
            for o in self.execution.orders.values():
                if o.parent_id:
                    self._children.setdefault(o.parent_id, []).append(o)
                if not o.status.is_terminal and o.order_type is OrderType.MARKET and not o.parent_id:
                    self._watch.add(o.client_order_id)  # a restarted gatekeeper-side waiter hears of it
                if o.status is OrderStatus.UNKNOWN:  # lost answers from before the restart: ask again
                    self.submitter.unknown[o.client_order_id] = o
        # Reconciliation must not depend on bars arriving: a lost answer after the last bar (or on a
        # quiet market) is resolved by this timer as well.
        threading.Thread(target=self._reconcile_loop, name="reconcile", daemon=True).start()
        ask_supervisor_to_rewire(settings.peers, "router")

    @locked
    def wire(self, wiring: Wiring[Any]) -> None:
        """The peers from the topology (mmats.engine.topology): the gatekeeper, the portfolio (which also
        tells the strategies of their rejected orders) and the feed that paces a lockstep replay."""
        self.gatekeeper = wiring.gatekeeper or self.gatekeeper
        self.portfolio = wiring.portfolio or self.portfolio
        self.feed = wiring.feed or self.feed

    @locked
    def on_bars(self, msg: BarBatch) -> int:
        batch, upto_ts = msg.bars, msg.upto_ts
        if batch:  # when each bar reached the venue side (the latency benchmark's fill half)
            self.bar_wall.stamp((b[1] for b in batch), first=True)
        fills: list[Fill] = []
        for b in batch:
            self.last_prices[b[0]] = b[5]
            new = self.execution.on_bar(BarUpdate(*b))
            if new:
                fills += new
        canceled = self._drain_margin() if self.live is None else []
        self._commit(canceled, fills, 0)
        self.last_ts = max(self.last_ts, upto_ts)
        self._report(fills, upto_ts)
        if self.live is not None:
            self._poll_live()
        elif self.submitter.unknown and time.time() - self._reconciled_wall >= RECONCILE_EVERY_S:
            self.reconcile()
        return len(fills)

    def _drain_margin(self) -> list[Order]:
        """Funding the venue settled (paper) or reported (live swaps): journaled, then on its way to the
        portfolio with the next report. Returns the orders a paper liquidation canceled, to be stored."""
        funding, canceled = self.execution.drain_margin()
        if funding:
            self._pf_funding += funding
            if self.stores is not None:
                self.stores.journal.append_many([("funding", e.to_dict(), e.ts_ns) for e in funding])
        return list(canceled)

    def _reconcile_loop(self) -> None:
        while True:
            time.sleep(RECONCILE_EVERY_S)
            if self.live is not None:
                with self._lock:
                    self._poll_live()
            elif self.submitter.unknown and time.time() - self._reconciled_wall >= RECONCILE_EVERY_S:
                with self._lock:
                    self.reconcile()

    def _poll_live(self) -> None:
        """Fills and order states from the venues, UNKNOWN orders asked about, and the full reconciliation
        when it is due; everything that changed is committed and reported like a bar's fills."""
        live = self.live
        assert live is not None
        try:
            fills, changed = live.poll()
            changed += live.resolve_unknown(self.submitter.unknown)
            if live.due_full_reconcile():
                f2, c2 = live.reconcile_venues()
                fills += f2
                changed += c2
        except Exception as exc:  # a bug in one poll must not end the timer thread: counted and alerted
            live.alerts.append(f"poll failed: {type(exc).__name__}: {exc}")
            fills, changed = [], []
        self._reconciled_wall = time.time()
        for order in changed:
            if order.status is OrderStatus.REJECTED:
                self._tell_rejected(order)
        self._commit(changed, fills, time.time_ns())
        self._drain_margin()  # swaps' funding the reconciliation read (a live venue cancels nothing for it)
        if fills or changed or self._pf_funding:
            self._report(fills, self.last_ts)
        self._raise_alerts()

    def _raise_alerts(self) -> None:
        live = self.live
        if live is None or not live.alerts:
            return
        alerts, live.alerts = live.alerts, []
        if self.stores is not None:
            self.stores.journal.append_many([("venue_alert", {"message": a}, time.time_ns()) for a in alerts])
        if self.gatekeeper is not None:
            for a in alerts:
                self.gatekeeper.on_venue_alert.remote(a)

    @locked
    def reconcile(self) -> int:
        """Resolve UNKNOWN orders from what the venue holds; returns how many were resolved."""
        self._reconciled_wall = time.time()
        if self.live is not None:
            before = len(self.submitter.unknown)
            self._poll_live()
            return before - len(self.submitter.unknown)

        def venue_status(cid: str) -> OrderStatus | None:
            return OrderStatus.ACCEPTED if self.execution.holds(cid) else None

        changed = self.submitter.reconcile(venue_status, self.last_ts)
        for order in changed:
            self._save_order(order, self.last_ts)
            if order.status is OrderStatus.REJECTED:
                self._tell_rejected(order)
        return len(changed)

    def _tell_rejected(self, order: Order) -> None:
        """Under the lock: the strategy hears of it from the portfolio, with its account (the next report)."""
        self._pf_rejected.append((order, order.reject_reason))
        self._to_portfolio.touch()
        self._send_report()

    def _save_order(self, order: Order, ts_ns: int) -> None:
        self._commit([order], [], ts_ns)

    def _save_orders(self, orders: list[Order], ts_ns: int) -> None:
        self._commit(orders, [], ts_ns)

    def _commit(self, orders: list[Order], fills: list[Fill], ts_ns: int) -> None:
        """Journal a batch of order changes and fills AND store the orders, fills and positions they leave
        in ONE transaction: after a crash either the whole batch is on record, in the chain and in the
        tables, or none of it. One commit per batch (a HARD flatten touches every symbol; four commits
        were most of its time, and each is a round for the database's write lock)."""
        if self.stores is None or not (orders or fills):
            return
        touched: dict[str, Order] = {o.client_order_id: o for o in orders}
        filled: set[str] = set()
        for f in fills:
            order = self.execution.orders.get(f.client_order_id)
            if order is not None:
                touched[order.client_order_id] = order
                if order.status is OrderStatus.FILLED:
                    filled.add(order.client_order_id)
        if filled:  # bracket children their fills activated
            touched.update((o.client_order_id, o) for cid in filled for o in self._children.get(cid, ()))
        positions = {f.symbol: self.execution.ledger.positions[f.symbol] for f in fills}
        items = [("order", o.to_dict(), ts_ns) for o in orders] + [("fill", f.to_dict(), f.ts_ns) for f in fills]
        self.stores.journal.append_many(items, state=TradeState(fills, list(positions.values()),
                                                                list(touched.values())))

    def _report(self, fills: list[Fill], upto_ts: int, force: bool = False) -> None:
        """Fills and marks to the portfolio, with at most one call in flight (the feed's policy): while
        the portfolio is busy, fills accumulate in order and go out together with the latest marks as
        soon as it answers, so its mailbox never builds a backlog (which would delay a HARD flatten).
        Every batch is reported, even without fills: the portfolio's answer moves the gatekeeper's
        watermark. ``force`` sends now (the flatten's fills)."""
        self._to_portfolio.add(fills)
        self._to_portfolio.touch()
        for f in fills:  # the strategies hear of their filled orders from the portfolio, with the account
            order = self.execution.orders.get(f.client_order_id)
            if order is not None and order.status is OrderStatus.FILLED:
                self._pf_orders[order.client_order_id] = order
        self._pf_ts = max(self._pf_ts, upto_ts)
        self._send_report(force)

    def _send_report(self, force: bool = False) -> None:
        """Under the lock: the report, if the policy lets it go now (or ``force``)."""
        fills = self._to_portfolio.take(force=force)
        if fills is None:
            return
        orders = self.execution.orders
        done = [cid for cid in self._watch if cid in orders and orders[cid].status.is_terminal]
        self._watch.difference_update(done)
        ref = self.portfolio.on_fills.remote(FillBatch(fills, self._pf_ts, dict(self.last_prices), done,
                                                       list(self._pf_orders.values()), self._pf_funding,
                                                       self._pf_rejected))
        self._pf_orders = {}
        self._pf_funding = []
        self._pf_rejected = []
        ref.future().add_done_callback(self._report_done)

    def _report_done(self, _: Any) -> None:
        """The portfolio answered: what accumulated meanwhile goes now (``AnswerRelay``: the Ray thread
        that delivers results never waits for the lock)."""
        self._to_portfolio.answered()
        self._pf_relay.answered()

    @locked
    def apply_commands(self, cmd: OrderCommands, after: Any = None) -> int:
        """``after``: a call Ray resolves before this one runs (in a lockstep replay, the strategies
        hearing of this batch's refusals before the acknowledgement lets the next bar out)."""
        del after
        cancels, submits, ts_ns, ack_ts, decided_ns = cmd.cancels, cmd.submits, cmd.ts_ns, cmd.ack_ts, cmd.decided_ns
        canceled: list[Order] = []
        for strategy_id, symbol in cancels:
            canceled += self.execution.cancel_strategy(strategy_id, symbol, ts_ns, keep_market=True)
        accepted = 0
        stale = decided_ns is not None and decided_ns < self.halt_ns
        fresh: list[tuple[Order, list[Order]]] = []
        for order, children in submits:
            if order.order_type is OrderType.MARKET:
                self._watch.add(order.client_order_id)
            if order.client_order_id in self.execution.orders:
                self.duplicates += 1  # a retried or replayed signal: never a second order
            elif stale:
                self._drop_stale(order, ts_ns)
            else:
                fresh.append((order, children))
        # The batch's order records as decided, journaled with the orders they leave in ONE commit per
        # message (each commit queues for the database's write lock behind the gatekeeper's and the
        # portfolio's). LIVE commits before the send, so a router killed between send and answer finds
        # them after its restart and asks the venue (never resends them), and stores the venue's answers
        # after it. PAPER commits after the paper venue took them: the venue is this process, so a crash
        # in between loses both alike.
        records = [("order", o.to_dict(), ts_ns) for o in canceled] + [("order", o.to_dict(), ts_ns) for o, _ in fresh]
        new_orders = [o for order, children in fresh for o in (order, *children)]
        for order, children in fresh:
            if children:
                self._children[order.client_order_id] = list(children)
        if self.live is not None:
            self._journal(records, canceled + new_orders)
            records, canceled = [], []  # on record: after the send, only the venue's answers are stored
        results: list[tuple[SubmitResult, Order]] = []
        for order, children in fresh:
            cid = order.client_order_id
            result = self.submitter.submit(order, lambda o=order, c=children: self.execution.submit(o, c, ts_ns), ts_ns)
            if result.outcome is SubmitOutcome.ACCEPTED:
                accepted += 1
                self.accept_wall.stamp((cid,))
            elif result.outcome is SubmitOutcome.DUPLICATE:
                self.duplicates += 1
            if cid not in self.execution.orders:  # failed before the venue took it: still on record
                self.execution.orders[cid] = order
            results.append((result, order))
        self._journal(records, canceled + new_orders)
        for result, order in results:  # rejections and error streaks are told once they are on record
            self._note(result, order)
        self.submitted += accepted
        if ack_ts is not None and self.feed is not None:
            self.feed.ack.remote(ack_ts)
        return accepted

    def _journal(self, records: list[tuple[str, dict[str, Any], int]], orders: list[Order]) -> None:
        """Order records and the orders' current states, in one transaction (nothing to do without either)."""
        if self.stores is not None and (records or orders):
            self.stores.journal.append_many(records, state=TradeState([], [], orders))

    def _drop_stale(self, order: Order, ts_ns: int) -> None:
        """A submit decided before the kill switch engaged, still queued behind it: it must not trade.

        The gatekeeper stops deciding the moment it escalates, but commands already on their way would
        otherwise reopen what the HARD flatten just closed."""
        if can_transition(order.status, OrderStatus.REJECTED):
            transition(order, OrderStatus.REJECTED, ts_ns, reason="decided before the kill switch engaged")
        self.execution.orders[order.client_order_id] = order
        self.stale_dropped += 1
        self._save_order(order, ts_ns)
        self._tell_rejected(order)

    def _halt(self, halt_ns: int | None) -> None:
        if halt_ns is not None and halt_ns > self.halt_ns:
            self.halt_ns = halt_ns
            if self.stores is not None:
                self.stores.state.set("router:halt_ns", halt_ns)

    @ray.method(concurrency_group=CONTROL)
    @locked
    def halt_before(self, halt_ns: int) -> None:
        """SOFT (or any escalation): drop queued submits the gatekeeper decided before ``halt_ns``."""
        self._halt(halt_ns)

    def _note(self, result: SubmitResult, order: Order) -> None:
        """Count failures; a streak goes to the gatekeeper, and the first success after it ends it."""
        if order.status is OrderStatus.REJECTED and result.outcome is not SubmitOutcome.ACCEPTED:
            self._tell_rejected(order)
        if result.is_error:
            self.errors += 1
            self.error_streak += 1
            if self.gatekeeper is not None:
                last = result.errors[-1] if result.errors else result.outcome.value
                message = f"order {order.client_order_id}: {result.outcome.value} ({last})"
                self.gatekeeper.on_router_error.remote(message)
        elif self.error_streak:
            self.error_streak = 0
            if self.gatekeeper is not None:
                self.gatekeeper.on_router_ok.remote()

    @ray.method(concurrency_group=CONTROL)
    @locked
    def flatten_all(self, reason: str, halt_ns: int | None = None) -> dict[str, Any]:
        """HARD kill switch: cancel everything, then close every position now at the last price."""
        t0 = time.perf_counter()
        self._halt(halt_ns)
        canceled, fills = self.execution.flatten_all(self.last_ts, self.last_prices, reason)
        flats = [o for o in (self.execution.orders.get(f.client_order_id) for f in fills) if o is not None]
        self._commit([*canceled, *flats], fills, self.last_ts)
        self._report(fills, self.last_ts, force=True)  # the flatten reaches the portfolio now
        out: dict[str, Any] = {"canceled": len(canceled), "flatten_fills": len(fills),
                               "ms": round((time.perf_counter() - t0) * 1000, 3)}
        if self.live is not None:
            out["venues"] = dict(self.live.flatten_report)
            self._raise_alerts()
        return out

    @ray.method(concurrency_group=CONTROL)
    @locked
    def cancel_all(self, halt_ns: int | None = None) -> int:
        self._halt(halt_ns)
        canceled = self.execution.cancel_all(self.last_ts)
        self._save_orders(canceled, self.last_ts)
        return len(canceled)

    @ray.method(concurrency_group=CONTROL)
    @locked
    def cancel_order(self, client_order_id: str) -> bool:
        order = self.execution.orders.get(client_order_id)
        if order is None or order.status.is_terminal:
            return False
        changed = self.execution.cancel_order(order, self.last_ts)
        self._save_orders(changed, self.last_ts)
        return bool(changed)

    @ray.method(concurrency_group=CONTROL)
    @locked
    def orders(self, status: str | None = None, symbol: str | None = None,
               strategy_id: str | None = None) -> list[dict[str, Any]]:
        out = []
        for o in self.execution.orders.values():
            if status and o.status.value != status.upper():
                continue
            if symbol and o.symbol != symbol:
                continue
            if strategy_id and o.strategy_id != strategy_id:
                continue
            out.append(o.to_dict())
        return out

    @ray.method(concurrency_group=CONTROL)
    @locked
    def recent_orders(self, limit: int = 200) -> list[dict[str, Any]]:
        """The last ``limit`` orders created, oldest first: what a live view needs without copying every order."""
        out = []
        for o in reversed(self.execution.orders.values()):
            if len(out) >= limit:
                break
            out.append(o.to_dict())
        out.reverse()
        return out

    @ray.method(concurrency_group=CONTROL)
    @locked
    def accept_times(self) -> dict[str, float]:
        return self.accept_wall.snapshot()

    @ray.method(concurrency_group=CONTROL)
    @locked
    def bar_times(self) -> dict[int, float]:
        return self.bar_wall.snapshot()

    @ray.method(concurrency_group=CONTROL)
    @locked
    def open_orders(self) -> list[dict[str, Any]]:
        return [o.to_dict() for o in self.execution.open_orders()]

    @ray.method(concurrency_group=CONTROL)
    @locked
    def stats(self) -> dict[str, Any]:
        return {"orders": len(self.execution.orders), "open": len(self.execution.open_orders()),
                "restored_working": self.restored_working,
                "submitted": self.submitted, "duplicates_ignored": self.duplicates, "errors": self.errors,
                "retries": self.submitter.retries, "unknown": len(self.submitter.unknown),
                "stale_dropped": self.stale_dropped}

    @ray.method(concurrency_group=CONTROL)
    @locked
    def venue_status(self) -> dict[str, Any]:
        """LIVE: per venue breaker, last reconciliation, errors, foreign orders; plus the dry-run sends."""
        live = self.live
        if live is None:
            return {"venues": [], "dry_run": []}
        return {"venues": live.status(), "dry_run": list(live.dry_run_log[-200:]),
                "foreign_orders": {n: v.foreign_orders for n, v in live.venues.items()},
                "adjustments": len(live.adjustments), "foreign_fills": live.foreign_fills,
                "unconverted_fees": {k: str(v) for k, v in live.unconverted_fees.items()}}

    @ray.method(concurrency_group=CONTROL)
    @locked
    def book_positions(self) -> dict[str, str]:
        """The router's book per symbol (what reconciliation compares with each venue)."""
        return {s: str(p.quantity) for s, p in self.execution.ledger.positions.items()}

    @ray.method(concurrency_group=CONTROL)
    @locked
    def account_checks(self) -> dict[str, list[str]]:
        return self.live.account_checks() if self.live is not None else {}

    def ping(self) -> str:
        return "ok"
