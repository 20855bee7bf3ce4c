"""Live execution: orders to real venues with the safety rules written once for every venue.

The order router hosts either the paper venue (``mmats.execution.paper.PaperExecution``) or this, with the same
calls, so the router, the gatekeeper, the journal and the kill switch do not know which one trades.
Each venue is a ``VenueClient`` adapter (a translator, no state) behind a ``VenueGuard`` (circuit
breaker, rate limit, read retries). The rules, and why:

- **Never a blind resend.** An order is on record (journaled and stored by the router) before it is
  sent. Any second send of a client id (a retry, or an order restored after a restart) first asks the
  venue for that id; the venue's answer wins.
- **A lost answer is UNKNOWN, not REJECTED.** A venue that does not know an order right after a lost
  answer may simply not have processed it yet: the order stays UNKNOWN for ``unknown_grace_s`` and is
  asked about again; only a venue that still does not know it after that settles it as never arrived.
- **Fills come only from the venue's execution reports**, each with the venue's trade id, mapped to our
  order by client id or by the venue's order id (also after a restart) and booked once. An order's
  final state that implies fills we have not seen waits for them.
- **Orders MMATS did not place are foreign**: listed, never touched, never booked.
- **Positions are compared with the venue** on every reconciliation; a difference that persists over two
  passes (fills in flight are not differences) is applied as an adjustment fill, audited and alerted.
- **Precision before sending**: quantity down to the lot, prices to the tick on the passive side, minimum
  quantity and notional, supported order types: refused locally with the reason, never sent to fail.
- Brackets (a stop-loss / take-profit attached to an entry) are kept here for every venue: when the
  entry has filled the stop rests at the venue; the take-profit is sent (after canceling the stop) once
  the price reaches it, so only one exit rests at a time, and every leg has our client id.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from mmats.engine.trader import flatten_order
from mmats.execution.venue import (
    DuplicateOrder,
    RejectKind,
    SubmitTimeout,
    VenueCapabilities,
    VenueClient,
    VenueError,
    VenueFill,
    VenueOrder,
)
from mmats.execution.venue_guard import GuardSettings, VenueGuard, fit_to_venue
from mmats.fx import FxRates
from mmats.margin import FundingPayment
from mmats.model import Fill, Instrument, Order, OrderStatus, OrderType, Side, iso
from mmats.orders import TRANSITIONS, apply_fill, transition
from mmats.portfolio import Portfolio

__all__ = ["LiveExecution", "LiveSettings", "VenueState"]

MARKET_OPEN_TTL_S = 5.0
_OPEN_AT_VENUE = (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING_CANCEL)


@dataclass(frozen=True, slots=True)
class LiveSettings:
    unknown_grace_s: float = 10.0  # how long a lost order the venue does not know stays UNKNOWN
    reconcile_every_s: float = 30.0  # full pass: open orders, positions, balances
    fill_lookback_s: float = 120.0  # fills are asked for from this far before the oldest open order
    dry_run: bool = False
    outside_hours: Mapping[str, str] = field(default_factory=dict)  # venue -> "refuse" | "queue"


@dataclass(slots=True)
class VenueState:
    """What the status shows per venue."""

    name: str
    client: VenueClient
    guard: VenueGuard
    capabilities: VenueCapabilities
    symbols: list[str]
    last_reconcile_ns: int = 0
    last_error: str = ""
    foreign_orders: list[dict[str, Any]] = field(default_factory=list)
    balances: dict[str, str] = field(default_factory=dict)
    reconciled_opens: int = 0  # breaker outages already followed by a full reconciliation
    funding_since_ns: int = 0  # funding is read from the venue from here on (perpetual swaps)


class LiveExecution:
    """The router's venue when the system is LIVE: one or more venues, each symbol routed to its own."""

    def __init__(self, venues: Mapping[str, tuple[VenueClient, Sequence[str]]], instruments: dict[str, Instrument],
                 initial_cash: Decimal, settings: LiveSettings | None = None,
                 guards: Mapping[str, GuardSettings] | None = None,
                 clock: Callable[[], int] = time.time_ns, fx: FxRates | None = None) -> None:
        self.settings = settings or LiveSettings()
        self.clock = clock
        self.instruments = instruments
        self.venues: dict[str, VenueState] = {}
        self.route: dict[str, str] = {}
        for name, (client, symbols) in venues.items():
            guard = VenueGuard(name, (guards or {}).get(name))
            self.venues[name] = VenueState(name, client, guard, client.capabilities(), list(symbols))
            for s in symbols:
                if s in self.route:
                    raise ValueError(f"symbol {s} is routed to both {self.route[s]} and {name}")
                self.route[s] = name
        # ``fx``: the account's rates (mmats.fx), kept current by the bars (``on_bar``).
        first_quote = next(iter(instruments.values())).quote_currency
        self.ledger = Portfolio(initial_cash, None if fx is not None else first_quote, fx=fx)
        for inst in instruments.values():
            self.ledger.register(inst)
        self.orders: dict[str, Order] = {}
        self.by_venue_id: dict[tuple[str, str], str] = {}  # (venue, venue order id) -> client order id
        self.seen_fills: set[str] = set()
        self.lost_at: dict[str, int] = {}  # client id -> when its answer was lost (ns)
        self.sent: set[str] = set()  # client ids that may have reached a venue: asked before any resend
        self.final_pending: dict[str, VenueOrder] = {}  # venue's final word waiting for its fills
        self.last_prices: dict[str, Decimal] = {}
        self.suspect: dict[str, Decimal] = {}  # symbol -> difference seen once (applied if seen twice)
        self.adjustments: list[Fill] = []
        self.alerts: list[str] = []
        self.dry_run_log: list[str] = []
        self.unconverted_fees: dict[str, Decimal] = {}
        self.foreign_fills = 0
        self._last_full_ns = 0
        self._open_cache: dict[str, tuple[int, bool]] = {}
        self.flatten_report: dict[str, str] = {}  # venue -> "ok" | "failed: ..." of the last HARD
        # Perpetual swaps' funding as the venues report it (``VenueClient.funding`` where a venue has it):
        # booked in the mirror ledger once each, and kept for the router to pass to the portfolio.
        self.funding_events: list[FundingPayment] = []
        self._funding_seen: set[tuple[str, int, Decimal]] = set()
        start = self.clock()
        for v in self.venues.values():
            v.funding_since_ns = start

    # ------------------------------------------------------------------------------------- restore

    def restore(self, orders: list[Order], fills: list[Fill], funding: list[FundingPayment] | None = None) -> int:
        """After a (router or cluster) restart, from the system of record. An order that was on record but
        not known to be acknowledged may or may not have reached its venue: it becomes UNKNOWN and the
        venue is asked; it is never sent again. Returns the number of orders still working."""
        now = self.clock()
        for p in funding or ():  # journaled before the restart: booked again, never read back twice
            self.ledger.book_funding(p.symbol, p.amount, p.strategy_id)
            self._funding_seen.add((p.symbol, p.ts_ns, p.amount))
            at = self.venues.get(self.route.get(p.symbol, ""))
            if at is not None:
                at.funding_since_ns = min(at.funding_since_ns, p.ts_ns)
        for f in fills:
            self.ledger.apply_fill(f)
            if f.fill_id:
                self.seen_fills.add(f.fill_id)
            if f.strategy_id == "reconciliation":
                self.adjustments.append(f)
        working = 0
        for o in orders:
            self.orders[o.client_order_id] = o
            venue = self.route.get(o.symbol)
            if o.venue_order_id and venue:
                self.by_venue_id[(venue, o.venue_order_id)] = o.client_order_id
            if o.status.is_terminal:
                continue
            working += 1
            if o.status is OrderStatus.NEW and o.parent_id:
                continue  # a bracket leg waiting for its entry
            self.sent.add(o.client_order_id)
            if o.status is OrderStatus.NEW:
                transition(o, OrderStatus.SUBMITTED, now)
            if o.status is OrderStatus.SUBMITTED:
                transition(o, OrderStatus.UNKNOWN, now)
            if o.status is OrderStatus.UNKNOWN:
                self.lost_at[o.client_order_id] = now
        return working

    # -------------------------------------------------------------------------------------- submit

    def submit(self, order: Order, children: list[Order], ts_ns: int) -> bool:
        """Send ``order``; legs wait here for its fill. Returns False for a duplicate (nothing new sent).

        Raises what the venue's adapter raises (``VenueError``, ``SubmitTimeout``) for the router's
        submitter; every local refusal is a REJECTED order with its reason (``True`` returned)."""
        cid = order.client_order_id
        known = self.orders.get(cid)
        if known is not None and known is not order:
            return False  # a replayed signal: its order exists
        self.orders[cid] = order
        for child in children:
            self.orders.setdefault(child.client_order_id, child)
        now = self.clock()
        name = self.route.get(order.symbol)
        if name is None:
            return self._refuse(order, RejectKind.INVALID_SYMBOL, f"no venue trades {order.symbol}", now)
        venue = self.venues[name]
        why = self._cannot_send(order, venue)
        if why is not None:
            return self._refuse(order, *why, now)
        if self.settings.dry_run:
            line = (f"DRY RUN {name}: {order.side.value} {order.quantity} {order.symbol} {order.order_type.value}"
                    + (f" @ {order.price}" if order.price is not None else "")
                    + (f" stop {order.stop_price}" if order.stop_price is not None else "")
                    + f" [{cid}]")
            self.dry_run_log.append(line)
            return self._refuse(order, RejectKind.OTHER, "dry run: not sent", now)
        if cid in self.sent:  # a resend: the venue may already hold it (Binance even reuses closed ids)
            try:
                held = venue.guard.call(lambda: venue.client.fetch_order(cid, order.symbol))
            except VenueError as exc:
                raise SubmitTimeout(f"before resending, could not ask {name} for {cid}: {exc}") from exc
            if held is not None:
                self._apply(order, held, name)
                return False
        if order.status is OrderStatus.NEW:
            transition(order, OrderStatus.SUBMITTED, now)
        self.sent.add(cid)
        try:
            answer = venue.guard.call(lambda: venue.client.place(order), placing=True)
        except DuplicateOrder:
            held = venue.guard.call(lambda: venue.client.fetch_order(cid, order.symbol))
            if held is not None:
                self._apply(order, held, name)
            return False
        except SubmitTimeout as exc:
            self.lost_at[cid] = self.clock()
            venue.last_error = str(exc)
            if order.status is OrderStatus.SUBMITTED:  # resolve_unknown asks the venue about it
                transition(order, OrderStatus.UNKNOWN, self.clock())
            raise
        except VenueError as exc:
            venue.last_error = str(exc)
            if exc.kind is RejectKind.VENUE_UNAVAILABLE and not exc.retryable:  # breaker open: never sent
                return self._refuse(order, exc.kind, str(exc), now)
            raise
        self._apply(order, answer, name)
        return True

    def _cannot_send(self, order: Order, venue: VenueState) -> tuple[RejectKind, str] | None:
        if order.order_type not in venue.capabilities.order_types:
            supported = ", ".join(sorted(t.value for t in venue.capabilities.order_types))
            return RejectKind.UNSUPPORTED, f"{venue.name} does not take {order.order_type.value} orders ({supported})"
        inst = self.instruments.get(order.symbol)
        if inst is None:
            return RejectKind.INVALID_SYMBOL, f"no instrument data for {order.symbol}"
        why = fit_to_venue(order, inst, self.last_prices.get(order.symbol))
        if why is not None:
            return RejectKind.INVALID_SIZE, why
        if self.settings.outside_hours.get(venue.name, "refuse") == "refuse":
            try:
                is_open = self._market_open(venue, order.symbol)
            except VenueError as exc:
                return exc.kind, f"cannot tell whether {order.symbol} trades now: {exc}"
            if not is_open:
                return RejectKind.MARKET_CLOSED, f"{order.symbol}: market closed at {venue.name}"
        return None

    def _market_open(self, venue: VenueState, symbol: str) -> bool:
        """The venue's word, remembered for ``MARKET_OPEN_TTL_S`` (a session does not change per order)."""
        now = self.clock()
        cached = self._open_cache.get(symbol)
        if cached is not None and now - cached[0] < MARKET_OPEN_TTL_S * 1e9:
            return cached[1]
        is_open = venue.guard.call(lambda: venue.client.market_open(symbol))
        self._open_cache[symbol] = (now, is_open)
        return is_open

    def _refuse(self, order: Order, kind: RejectKind, why: str, ts_ns: int) -> bool:
        if OrderStatus.REJECTED in TRANSITIONS[order.status]:
            transition(order, OrderStatus.REJECTED, ts_ns, reason=f"{kind.value}: {why}")
        return True

    # -------------------------------------------------------------------- state from the venue

    def _apply(self, order: Order, vo: VenueOrder, venue: str) -> None:
        """Move ``order`` toward what the venue says along legal edges. Fills are never taken from here
        (only from execution reports, with their ids), so a final state that implies unseen fills waits."""
        now = self.clock()
        if vo.venue_order_id:
            order.venue_order_id = vo.venue_order_id
            self.by_venue_id[(venue, vo.venue_order_id)] = order.client_order_id
        if order.status is OrderStatus.NEW:
            transition(order, OrderStatus.SUBMITTED, now)
        if order.status.is_terminal:
            return
        target = vo.status
        if target is OrderStatus.REJECTED:
            if order.filled_quantity == 0 and OrderStatus.REJECTED in TRANSITIONS[order.status]:
                transition(order, OrderStatus.REJECTED, now, reason=f"{venue}: {vo.reason or 'rejected at the venue'}")
            self.lost_at.pop(order.client_order_id, None)
            return
        if order.status in (OrderStatus.SUBMITTED, OrderStatus.UNKNOWN):
            transition(order, OrderStatus.ACCEPTED, now)
            self.lost_at.pop(order.client_order_id, None)
        if target in (OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.FILLED):
            if vo.filled_quantity > order.filled_quantity or target is OrderStatus.FILLED:
                if order.filled_quantity < order.quantity:
                    self.final_pending[order.client_order_id] = vo
                return
            if target in TRANSITIONS[order.status]:
                transition(order, target, now, reason=f"{venue}: {vo.reason or target.value.lower() + ' at the venue'}")
                self.final_pending.pop(order.client_order_id, None)

    def _venue_of(self, order: Order) -> VenueState | None:
        name = self.route.get(order.symbol)
        return self.venues.get(name) if name else None

    # -------------------------------------------------------------------------------- fills

    def poll(self, ts_ns: int | None = None) -> tuple[list[Fill], list[Order]]:
        """New executions from every reachable venue, booked once; returns (fills, orders changed)."""
        fills: list[Fill] = []
        changed: dict[str, Order] = {}
        for venue in self.venues.values():
            f, c = self._poll_venue(venue)
            fills += f
            changed.update((o.client_order_id, o) for o in c)
        for order in self._activate_legs():
            changed[order.client_order_id] = order
        return fills, list(changed.values())

    def _poll_venue(self, venue: VenueState) -> tuple[list[Fill], list[Order]]:
        mine = [o for o in self.orders.values() if self.route.get(o.symbol) == venue.name]
        working = [o for o in mine if o.status.is_open and o.status is not OrderStatus.NEW]
        if not working and not self.final_pending:
            return [], []
        oldest = min((o.created_ns or o.updated_ns for o in working), default=self.clock())
        since = min(oldest, self.clock()) - int(self.settings.fill_lookback_s * 1e9)
        try:
            reports = venue.guard.call(lambda: venue.client.fills(since, venue.symbols), retry=False)
        except VenueError as exc:
            venue.last_error = str(exc)
            return [], []
        out: list[Fill] = []
        changed: list[Order] = []
        for vf in sorted(reports, key=lambda r: (r.ts_ns, r.fill_id)):
            fill = self._book(vf, venue.name)
            if fill is not None:
                out.append(fill)
                changed.append(self.orders[fill.client_order_id])
        for cid, vo in list(self.final_pending.items()):
            order = self.orders.get(cid)
            if order is None or self.route.get(order.symbol) != venue.name:
                continue
            if order.status.is_terminal:
                del self.final_pending[cid]
                continue
            if order.filled_quantity >= vo.filled_quantity:
                del self.final_pending[cid]
                target = OrderStatus.FILLED if order.filled_quantity == order.quantity else vo.status
                if target is not OrderStatus.FILLED and target in TRANSITIONS[order.status]:
                    transition(order, target, self.clock(), reason=f"{venue.name}: {target.value.lower()} at the venue")
                changed.append(order)
        return out, changed

    def _book(self, vf: VenueFill, venue: str) -> Fill | None:
        fill_id = f"{venue}:{vf.fill_id}"
        if fill_id in self.seen_fills:
            return None
        cid = vf.client_order_id if vf.client_order_id in self.orders else \
            self.by_venue_id.get((venue, vf.venue_order_id), "")
        order = self.orders.get(cid) if cid else None
        if order is None:
            self.foreign_fills += 1  # not ours, or ours before its venue id is known: not marked seen
            return None
        remaining = order.quantity - order.filled_quantity
        qty = min(vf.quantity, remaining)
        if qty <= 0 or order.status.is_terminal:
            self.seen_fills.add(fill_id)
            self.alerts.append(f"{venue}: fill {vf.fill_id} of {vf.quantity} for {cid} beyond its quantity: not booked")
            return None
        if order.status in (OrderStatus.SUBMITTED, OrderStatus.UNKNOWN):
            transition(order, OrderStatus.ACCEPTED, vf.ts_ns or self.clock())
            self.lost_at.pop(cid, None)
        apply_fill(order, qty, vf.price, vf.ts_ns or self.clock())
        self.seen_fills.add(fill_id)
        fee, base_fee = self._fee_in_quote(vf, order.symbol)
        # A fee taken in the base asset changes what is held: a buy of q leaves q - fee at the venue, a sell
        # of q takes q + fee. The book holds what the venue holds (a flatten must sell exactly that); cash
        # moves by q x price either way, because the fee is booked at the fill price.
        held = qty - base_fee if order.side is Side.BUY else qty + base_fee
        fill = Fill(cid, order.symbol, order.side, held, vf.price, fee, vf.ts_ns, vf.liquidity, order.strategy_id,
                    fill_id)
        self.ledger.apply_fill(fill)
        if order.status is OrderStatus.FILLED:
            self.final_pending.pop(cid, None)
        return fill

    def _fee_in_quote(self, vf: VenueFill, symbol: str) -> tuple[Decimal, Decimal]:
        """(fee in the symbol's quote currency, the part of it charged in the base asset). A fee in the base
        is valued at the fill price; a fee in a third currency (BNB) cannot be converted without a rate and
        is counted apart (``unconverted_fees``)."""
        inst = self.instruments[symbol]
        quote = inst.quote_currency.upper()
        base = symbol.replace("_", "/").split("/")[0].upper()
        cur = (vf.fee_currency or quote).upper()
        if cur == quote or vf.fee == 0:
            return vf.fee, Decimal(0)
        if cur == base:
            return vf.fee * vf.price, vf.fee
        self.unconverted_fees[cur] = self.unconverted_fees.get(cur, Decimal(0)) + vf.fee
        return Decimal(0), Decimal(0)

    # ----------------------------------------------------------------------------- brackets

    def _activate_legs(self) -> list[Order]:
        """Bracket legs, the same way on every venue: once the entry has filled, the protective stop rests
        at the venue; the take-profit waits here and, when the last price reaches it, the stop is canceled
        first and the take-profit sent. One exit order rests at a time, because venues lock the position
        for a resting exit (a second one is refused: Alpaca "insufficient qty", Binance balance locked).
        A leg that filled cancels its siblings."""
        changed: list[Order] = []
        for o in list(self.orders.values()):
            if o.parent_id is None or o.status is not OrderStatus.NEW:
                continue
            parent = self.orders.get(o.parent_id)
            if parent is None or parent.status in (OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED):
                transition(o, OrderStatus.CANCELED, self.clock(), reason="entry did not fill")
                changed.append(o)
            elif parent.status is OrderStatus.FILLED:
                if o.order_type is OrderType.LIMIT and not self._take_profit_reached(o):
                    continue
                siblings = [x for x in self.orders.values() if x is not o and o.oco_group
                            and x.oco_group == o.oco_group and x.status.is_open and x.status is not OrderStatus.NEW]
                for sib in siblings:  # the resting stop goes first: never two exits at once
                    changed += self.cancel_order(sib, self.clock())
                if any(x.status.is_open or x.status is OrderStatus.FILLED for x in siblings):
                    continue  # the stop could not be canceled (or filled meanwhile): look again next poll
                self._send_leg(o)
                changed.append(o)
        open_by_group: dict[str, list[Order]] = {}  # one pass, not one per filled leg over every order
        for o in self.orders.values():
            if o.oco_group and o.status.is_open:
                open_by_group.setdefault(o.oco_group, []).append(o)
        filled_groups = {o.oco_group for o in self.orders.values()
                         if o.oco_group in open_by_group and o.status is OrderStatus.FILLED}
        for group in filled_groups:
            for sib in open_by_group[group]:
                if sib.status.is_open:
                    changed += self.cancel_order(sib, self.clock())
        return changed

    def _take_profit_reached(self, leg: Order) -> bool:
        last = self.last_prices.get(leg.symbol)
        if last is None or leg.price is None:
            return False
        return last >= leg.price if leg.side is Side.SELL else last <= leg.price

    def _send_leg(self, o: Order) -> None:
        try:
            self.submit(o, [], self.clock())
        except SubmitTimeout:
            pass  # UNKNOWN: resolve_unknown asks the venue about it
        except VenueError as exc:
            if OrderStatus.REJECTED in TRANSITIONS[o.status]:
                transition(o, OrderStatus.REJECTED, self.clock(), reason=f"{exc.kind.value}: {exc}")

    # ------------------------------------------------------------------------------ cancels

    def cancel_order(self, order: Order, ts_ns: int) -> list[Order]:
        """Cancel one order at its venue; a leg not yet sent is canceled here. Returns it if it changed."""
        if order.status.is_terminal:
            return []
        if order.status is OrderStatus.NEW:
            transition(order, OrderStatus.CANCELED, ts_ns, reason="canceled before it was sent")
            return [order]
        venue = self._venue_of(order)
        if venue is None:
            return []
        try:
            vo = venue.guard.call(lambda: venue.client.cancel(order.client_order_id, order.symbol))
        except VenueError as exc:
            venue.last_error = str(exc)
            self.alerts.append(f"{venue.name}: cancel of {order.client_order_id} failed: {exc}")
            return []
        if vo is None:
            return []
        self._apply(order, vo, venue.name)
        return [order]

    def cancel_strategy(self, strategy_id: str, symbol: str | None, ts_ns: int,
                        keep_market: bool = False) -> list[Order]:
        out: list[Order] = []
        for o in list(self.orders.values()):
            if o.strategy_id != strategy_id or o.status.is_terminal or (symbol is not None and o.symbol != symbol):
                continue
            if keep_market and o.order_type is OrderType.MARKET:
                continue
            out += self.cancel_order(o, ts_ns)
        return out

    def cancel_all(self, ts_ns: int) -> list[Order]:
        """FREEZE: cancel every open order of ours on every venue, one thread per venue."""
        return self._per_venue(lambda v: [x for o in self._open_on(v.name) for x in self.cancel_order(o, ts_ns)])[0]

    def _open_on(self, venue: str) -> list[Order]:
        return [o for o in self.orders.values() if o.status.is_open and self.route.get(o.symbol) == venue]

    def _per_venue(self, work: Callable[[VenueState], list[Order]]) -> tuple[list[Order], dict[str, str]]:
        """Run ``work`` on every venue at once: a venue that hangs or fails never holds up the others."""
        report: dict[str, str] = {}
        out: list[Order] = []
        with ThreadPoolExecutor(max_workers=max(1, len(self.venues))) as pool:
            futures = {name: pool.submit(work, v) for name, v in self.venues.items()}
            for name, fut in futures.items():
                try:
                    out += fut.result()
                    report[name] = "ok"
                except Exception as exc:  # reported, never stops the other venues
                    report[name] = f"failed: {exc}"
                    self.alerts.append(f"{name}: {exc}")
        return out, report

    def flatten_all(self, ts_ns: int, last_prices: dict[str, float], reason: str,
                    attempts: int = 3) -> tuple[list[Order], list[Fill]]:
        """HARD: on every venue at once, cancel our orders, then close every position with a market order
        (largest exposure first), retrying a failed venue ``attempts`` times; the fills that are already
        reported come back now, the rest with the next poll."""
        def one(v: VenueState) -> list[Order]:
            done = [x for o in self._open_on(v.name) for x in self.cancel_order(o, ts_ns)]
            held = [(s, p.quantity) for s, p in self.ledger.positions.items()
                    if p.quantity != 0 and self.route.get(s) == v.name]
            held.sort(key=lambda sp: -abs(float(sp[1]) * last_prices.get(sp[0], 0.0)))
            for symbol, qty in held:
                error = ""
                for attempt in range(attempts):
                    order = flatten_order(symbol, qty, ts_ns + attempt, reason)  # a new id per attempt
                    order = self.orders.get(order.client_order_id, order)
                    try:
                        if not order.status.is_terminal:
                            self.submit(order, [], ts_ns)
                    except VenueError as exc:
                        error = f"{exc.kind.value}: {exc}"
                        if isinstance(exc, SubmitTimeout):  # it may have reached the venue: asked, not resent
                            done.append(order)
                            break
                    else:
                        done.append(order)
                        if order.status is not OrderStatus.REJECTED:
                            break
                        error = order.reject_reason
                    time.sleep(0.2 * (attempt + 1))
                else:
                    raise VenueError(f"flatten {symbol} failed after {attempts} attempts: {error}")
            return done

        orders, self.flatten_report = self._per_venue(one)
        fills, changed = self.poll(ts_ns)
        return orders + changed, fills

    # -------------------------------------------------------------------------- reconciliation

    def resolve_unknown(self, unknown: dict[str, Order]) -> list[Order]:
        """Ask each venue about its UNKNOWN orders; an order stays UNKNOWN while the venue cannot say or
        does not know it yet (grace), and is settled as never arrived after that."""
        changed: list[Order] = []
        for o in self.orders.values():  # bracket legs lost while being sent are not in the router's set
            if o.status is OrderStatus.UNKNOWN:
                unknown.setdefault(o.client_order_id, o)
        for cid, order in list(unknown.items()):
            if order.status is not OrderStatus.UNKNOWN:
                del unknown[cid]
                changed.append(order)
                continue
            venue = self._venue_of(order)
            if venue is None:
                continue
            try:
                vo = self._fetch(venue, order)
            except VenueError as exc:
                venue.last_error = str(exc)
                continue  # cannot tell: ask again next time
            if vo is not None:
                self._apply(order, vo, venue.name)
            else:
                waited = (self.clock() - self.lost_at.get(cid, 0)) / 1e9
                if waited < self.settings.unknown_grace_s:
                    continue
                transition(order, OrderStatus.REJECTED, self.clock(),
                           reason=f"{RejectKind.VENUE_UNAVAILABLE.value}: {venue.name}: not found {waited:.0f} s after "
                                  "the lost answer (never arrived)")
                self.lost_at.pop(cid, None)
            if order.status is not OrderStatus.UNKNOWN:
                del unknown[cid]
                changed.append(order)
        return changed

    @staticmethod
    def _fetch(venue: VenueState, order: Order) -> VenueOrder | None:
        """A lookup the poll repeats anyway: one attempt (a hung venue holds the router one timeout)."""
        return venue.guard.call(lambda: venue.client.fetch_order(order.client_order_id, order.symbol), retry=False)

    def due_full_reconcile(self) -> bool:
        """On the timer, and as soon as a venue is back after an outage (its breaker closed again)."""
        if (self.clock() - self._last_full_ns) / 1e9 >= self.settings.reconcile_every_s:
            return True
        return any(v.guard.breaker.opens != v.reconciled_opens and v.guard.breaker.state.value == "closed"
                   for v in self.venues.values())

    def reconcile_venues(self) -> tuple[list[Fill], list[Order]]:
        """The full pass: fills first, then each venue's open orders (ours that closed at the venue are
        looked up, others are foreign), positions against the book, balances. Differences that survive
        a second pass are booked as adjustment fills."""
        self._last_full_ns = self.clock()
        fills, changed = self.poll()
        for venue in self.venues.values():
            try:
                c, f = self._reconcile_venue(venue)
            except VenueError as exc:
                venue.last_error = str(exc)
                continue
            changed += c
            fills += f
            venue.last_reconcile_ns = self.clock()
            venue.reconciled_opens = venue.guard.breaker.opens
        return fills, changed

    def _reconcile_venue(self, venue: VenueState) -> tuple[list[Order], list[Fill]]:
        g, c = venue.guard, venue.client
        open_at_venue = g.call(c.open_orders, retry=False)
        ours_open = {vo.client_order_id for vo in open_at_venue if vo.client_order_id in self.orders}
        venue.foreign_orders = [
            {"client_order_id": vo.client_order_id, "venue_order_id": vo.venue_order_id, "symbol": vo.symbol,
             "side": vo.side.value, "quantity": str(vo.quantity), "type": vo.order_type.value}
            for vo in open_at_venue if vo.client_order_id not in self.orders]
        changed: list[Order] = []
        for vo in open_at_venue:
            if vo.client_order_id in self.orders:
                order = self.orders[vo.client_order_id]
                before = order.status
                self._apply(order, vo, venue.name)
                if order.status is not before:
                    changed.append(order)
        for order in self._open_on(venue.name):
            if order.status in _OPEN_AT_VENUE and order.client_order_id not in ours_open:
                vo2 = self._fetch(venue, order)
                if vo2 is not None:
                    self._apply(order, vo2, venue.name)
                    changed.append(order)
        self._read_funding(venue)
        venue.balances = {k: str(v) for k, v in g.call(c.balances, retry=False).items()}
        held = {p.symbol: p.quantity for p in g.call(c.positions, retry=False)}
        adjustments: list[Fill] = []
        pending_fills = any(self.final_pending.get(o.client_order_id) for o in self._open_on(venue.name))
        for symbol in venue.symbols:
            book = self.ledger.positions[symbol].quantity if symbol in self.ledger.positions else Decimal(0)
            diff = held.get(symbol, Decimal(0)) - book
            if diff == 0 or pending_fills:
                self.suspect.pop(symbol, None)
                continue
            if self.suspect.get(symbol) != diff:
                self.suspect[symbol] = diff  # first sighting: fills may be in flight
                continue
            del self.suspect[symbol]
            adjustments.append(self._adjust(venue.name, symbol, diff))
        return changed, adjustments

    def _read_funding(self, venue: VenueState) -> None:
        """New funding payments of a swap venue since the last read (each booked once, by symbol, time and
        amount); a venue without ``funding`` has none."""
        read = getattr(venue.client, "funding", None)
        if read is None:
            return
        for p in venue.guard.call(lambda: read(venue.funding_since_ns), retry=False):
            key = (p.symbol, p.ts_ns, p.amount)
            if key in self._funding_seen or p.symbol not in self.ledger.positions:
                continue
            self._funding_seen.add(key)
            self.ledger.book_funding(p.symbol, p.amount, p.strategy_id)
            self.funding_events.append(p)

    def drain_margin(self) -> tuple[list[FundingPayment], list[Order]]:
        """Funding read from the venues since the last call (the paper venue's interface: nothing canceled)."""
        out, self.funding_events = self.funding_events, []
        return out, []

    def _adjust(self, venue: str, symbol: str, diff: Decimal) -> Fill:
        price = self.last_prices.get(symbol) or self.ledger.positions[symbol].last_price or Decimal(0)
        now = self.clock()
        fill = Fill(f"reconcile-{venue}-{now}", symbol, Side.BUY if diff > 0 else Side.SELL, abs(diff),
                    price if price > 0 else Decimal("0.00000001"), Decimal(0), now, strategy_id="reconciliation",
                    fill_id=f"reconcile:{venue}:{symbol}:{now}")
        self.ledger.apply_fill(fill)
        self.adjustments.append(fill)
        self.alerts.append(f"{venue}: position {symbol} differed from the book by {diff}: booked as an adjustment "
                           f"at {price}")
        return fill

    # ---------------------------------------------------------------------------- the paper API

    def on_bar(self, bar: Any) -> list[Fill]:
        """Bars only mark prices here: live fills come from the venues (``poll``)."""
        self.last_prices[bar.symbol] = Decimal(repr(bar.close))
        inst = self.instruments.get(bar.symbol)
        if inst is not None and self.ledger.fx.is_source(bar.symbol):
            self.ledger.fx.on_price(bar.symbol, inst.round_price(bar.close))
        return []

    def holds(self, client_order_id: str) -> bool:
        order = self.orders.get(client_order_id)
        return order is not None and order.status in _OPEN_AT_VENUE

    def open_orders(self) -> list[Order]:
        return [o for o in self.orders.values() if o.status.is_open and o.status is not OrderStatus.NEW]

    def account_checks(self) -> dict[str, list[str]]:
        """Each venue's problems with its keys (empty: fine); LIVE refuses to start on any."""
        out: dict[str, list[str]] = {}
        for name, venue in self.venues.items():
            try:
                out[name] = venue.guard.call(venue.client.account_check).problems
            except VenueError as exc:
                out[name] = [f"{exc.kind.value}: {exc}"]
        return out

    def status(self) -> list[dict[str, Any]]:
        out = []
        for name, v in self.venues.items():
            out.append({
                "venue": name, "breaker": v.guard.breaker.state.value, "breaker_opens": v.guard.breaker.opens,
                "last_reconcile": _iso(v.last_reconcile_ns), "last_error": v.last_error or None,
                "orders_unknown": sum(1 for o in self.orders.values() if o.status is OrderStatus.UNKNOWN
                                      and self.route.get(o.symbol) == name),
                "foreign_orders": len(v.foreign_orders), "calls": v.guard.calls, "failures": v.guard.failures,
                "rate_limited": v.guard.rate_limited, "balances": v.balances,
            })
        return out


def _iso(ts_ns: int) -> str | None:
    return iso(ts_ns) if ts_ns else None
