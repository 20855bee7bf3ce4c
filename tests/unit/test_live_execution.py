"""The live execution's safety rules, against an in-memory venue (no HTTP, no Ray)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mmats.execution.live import LiveExecution, LiveSettings
from mmats.execution.routing import OrderSubmitter, RetryPolicy, SubmitOutcome
from mmats.execution.venue import RejectKind, VenueError
from mmats.execution.venue_guard import GuardSettings
from mmats.model import Order, OrderStatus, OrderType, Side
from tests.fixtures.memory_venue import INSTRUMENT, MemoryVenue


class Clock:
    def __init__(self) -> None:
        self.ns = 1_000_000_000_000

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += int(seconds * 1e9)


def make(venue: MemoryVenue | None = None, second: MemoryVenue | None = None, **settings: object
         ) -> tuple[LiveExecution, MemoryVenue, Clock]:
    venue = venue or MemoryVenue()
    venues = {"mem": (venue, ["BTC/USDT"])}
    instruments = {"BTC/USDT": INSTRUMENT}
    if second is not None:
        venues["two"] = (second, ["ETH/USDT"])
        instruments["ETH/USDT"] = INSTRUMENT.__class__(**{**{f: getattr(INSTRUMENT, f) for f in (
            "market", "quote_currency", "price_precision", "quantity_precision", "lot_size", "min_notional",
            "pip_size", "tick_size", "min_quantity")}, "symbol": "ETH/USDT"})
    clock = Clock()
    guards = {n: GuardSettings(failures_to_open=3, open_s=5.0, read_attempts=1) for n in venues}
    ex = LiveExecution(venues, instruments, Decimal(10_000), LiveSettings(**settings),  # type: ignore[arg-type]
                       guards, clock=clock)
    for v in venues.values():
        v[0].calls.clear()
    return ex, venue, clock


def order(cid: str = "s-entry-1", qty: str = "0.01", side: Side = Side.BUY, kind: OrderType = OrderType.MARKET,
          price: str | None = None, symbol: str = "BTC/USDT", **kw: object) -> Order:
    return Order(cid, symbol, side, Decimal(qty), kind, Decimal(price) if price else None,
                 strategy_id="s", created_ns=1, **kw)  # type: ignore[arg-type]


def submit(ex: LiveExecution, o: Order, submitter: OrderSubmitter | None = None,
           children: list[Order] | None = None) -> SubmitOutcome:
    sub = submitter or OrderSubmitter(RetryPolicy(max_attempts=2, base_delay_s=0), sleep=lambda s: None)
    return sub.submit(o, lambda: ex.submit(o, children or [], 1), 1).outcome


def test_market_fill_is_booked_once_from_the_venue_execution_report() -> None:
    ex, _venue, _ = make()
    o = order()
    assert submit(ex, o) is SubmitOutcome.ACCEPTED
    assert o.status is OrderStatus.ACCEPTED and o.venue_order_id  # fills only from execution reports
    fills, _ = ex.poll()
    assert [(f.quantity, f.price, f.fill_id) for f in fills] == [(Decimal("0.01"), Decimal(100), "mem:t1")]
    assert fills[0].fee == Decimal("0.001")  # 0.1 % of 1 USDT, in the quote currency
    assert o.status is OrderStatus.FILLED
    assert ex.poll()[0] == []  # the same trade reported again is not booked again
    assert ex.ledger.positions["BTC/USDT"].quantity == Decimal("0.01")


def test_lost_answer_stays_unknown_then_reconciles_without_a_second_order() -> None:
    ex, venue, _ = make()
    venue.lose_next_place = 1
    sub = OrderSubmitter(RetryPolicy(max_attempts=3, base_delay_s=0), sleep=lambda s: None)
    o = order()
    assert submit(ex, o, sub) is SubmitOutcome.UNKNOWN
    assert o.status is OrderStatus.UNKNOWN and venue.calls.count("place") == 1
    changed = ex.resolve_unknown(sub.unknown)
    assert changed == [o] and not sub.unknown
    ex.poll()
    assert o.status is OrderStatus.FILLED
    assert len(venue.by_cid(o.client_order_id)) == 1


def test_not_found_after_a_lost_answer_waits_out_the_grace_before_settling() -> None:
    ex, venue, clock = make(unknown_grace_s=10.0)
    venue.lose_next_place = 1
    sub = OrderSubmitter(RetryPolicy(max_attempts=1), sleep=lambda s: None)
    o = order()
    submit(ex, o, sub)
    venue.hidden.add(o.client_order_id)  # the venue has not processed it yet
    assert ex.resolve_unknown(sub.unknown) == [] and o.status is OrderStatus.UNKNOWN
    venue.hidden.clear()  # ... and then it shows up: it was never rejected
    assert ex.resolve_unknown(sub.unknown) == [o] and o.status is OrderStatus.ACCEPTED
    o2 = order("s-entry-2")
    venue.lose_next_place = 1
    submit(ex, o2, sub)
    venue.orders = {k: v for k, v in venue.orders.items() if v.client_order_id != o2.client_order_id}
    clock.advance(5)
    ex.resolve_unknown(sub.unknown)
    assert o2.status is OrderStatus.UNKNOWN
    clock.advance(6)
    ex.resolve_unknown(sub.unknown)
    assert o2.status is OrderStatus.REJECTED and "never arrived" in o2.reject_reason
    assert o2.reject_reason.startswith("venue_unavailable: mem: not found")


def test_restart_asks_the_venue_and_never_resends() -> None:
    ex, venue, _ = make()
    o = order()
    submit(ex, o)  # placed and filled at the venue; now the router "dies" before storing the answer
    stored = order()  # what the system of record has: the order as journaled before the send
    ex2, _, _ = make(venue)
    assert ex2.restore([stored], []) == 1 and stored.status is OrderStatus.UNKNOWN
    unknown = {stored.client_order_id: stored}
    ex2.resolve_unknown(unknown)
    fills, _ = ex2.poll()
    assert stored.status is OrderStatus.FILLED and len(fills) == 1
    assert "place" not in venue.calls and len(venue.by_cid(o.client_order_id)) == 1


def test_a_resend_asks_first_even_when_the_venue_reuses_closed_ids() -> None:
    ex, venue, _ = make()
    o = order()
    ex.sent.add(o.client_order_id)  # a previous attempt may have reached the venue
    venue.place(order())  # ... and it did: filled, so Binance would accept the id again
    venue.calls.clear()
    assert ex.submit(o, [], 1) is False
    assert venue.calls == ["market_open", "fetch_order"] and len(venue.by_cid(o.client_order_id)) == 1


def test_precision_is_fitted_on_the_safe_side_and_minimums_refused_before_sending() -> None:
    ex, venue, _ = make()
    buy = order("b", "0.0119", kind=OrderType.LIMIT, price="100.7")
    sell = order("s", "0.0119", Side.SELL, OrderType.LIMIT, price="100.2")
    submit(ex, buy)
    submit(ex, sell)
    assert (buy.quantity, buy.price) == (Decimal("0.011"), Decimal("100.5"))  # down to the lot, passive tick
    assert (sell.quantity, sell.price) == (Decimal("0.011"), Decimal("100.5"))
    venue.calls.clear()
    tiny = order("t", "0.0015")
    assert submit(ex, tiny) is SubmitOutcome.REJECTED
    assert tiny.reject_reason.startswith("invalid_size") and "minimum 0.002" in tiny.reject_reason
    small = order("n", "0.004", kind=OrderType.LIMIT, price="100")
    assert submit(ex, small) is SubmitOutcome.REJECTED and "notional" in small.reject_reason
    assert "place" not in venue.calls


def test_unsupported_order_type_refused_with_no_venue_call() -> None:
    ex, venue, _ = make()
    o = order(kind=OrderType.STOP_LIMIT, price="100", stop_price=Decimal("101"))
    assert submit(ex, o) is SubmitOutcome.REJECTED
    assert o.reject_reason.startswith("unsupported_order") and venue.calls == []


def test_breaker_opens_on_a_dead_venue_rejects_fast_and_a_probe_closes_it() -> None:
    ex, venue, _ = make()
    venue.down = True
    for _ in range(3):
        with pytest.raises(VenueError):
            ex.venues["mem"].guard.call(venue.balances)
    assert ex.venues["mem"].guard.breaker.state.value == "open"
    venue.calls.clear()
    o = order()
    assert submit(ex, o) is SubmitOutcome.REJECTED
    assert o.reject_reason.startswith("venue_unavailable") and venue.calls == []
    venue.down = False
    breaker = ex.venues["mem"].guard.breaker
    breaker.opened_at -= 6  # open_s passed: the next call is the half-open probe
    assert ex.venues["mem"].guard.call(venue.balances) == {"USDT": Decimal(1000)}
    assert breaker.state.value == "closed"
    assert submit(ex, order("s-entry-2")) is SubmitOutcome.ACCEPTED


def test_typed_venue_rejection_reaches_the_order() -> None:
    ex, venue, _ = make()
    venue.fail_next("place", VenueError("mem: Account has insufficient balance", retryable=False,
                                        kind=RejectKind.INSUFFICIENT_FUNDS))
    o = order()
    assert submit(ex, o) is SubmitOutcome.REJECTED
    assert "insufficient_funds" in o.reject_reason


def test_rate_limit_retry_after_is_honoured_before_the_next_call() -> None:
    ex, venue, _ = make()
    waits: list[float] = []
    ex.venues["mem"].guard.sleep = waits.append
    venue.fail_next("place", VenueError("429", retryable=True, kind=RejectKind.RATE_LIMITED, retry_after_s=2.0))
    o = order()
    sub = OrderSubmitter(RetryPolicy(max_attempts=3, base_delay_s=0), sleep=lambda s: None)
    assert submit(ex, o, sub) is SubmitOutcome.ACCEPTED
    assert waits and 1.9 < waits[0] <= 2.0  # the second send waited for Retry-After
    assert venue.calls.count("fetch_order") == 1  # and asked before resending
    assert len(venue.by_cid(o.client_order_id)) == 1


def test_foreign_orders_are_listed_and_left_alone() -> None:
    ex, venue, _ = make()
    foreign = venue.place_foreign(Side.SELL, Decimal("0.5"), Decimal(120), cid="web-123")
    o = order("s-lim", kind=OrderType.LIMIT, price="90")
    submit(ex, o)
    ex.reconcile_venues()
    assert [f["client_order_id"] for f in ex.venues["mem"].foreign_orders] == ["web-123"]
    canceled = ex.cancel_all(1)
    assert canceled == [o] and o.status is OrderStatus.CANCELED
    assert venue.orders[foreign.venue_order_id].status is OrderStatus.ACCEPTED


def test_a_fill_while_down_is_found_and_a_position_difference_applied_on_the_second_pass() -> None:
    ex, venue, _ = make()
    o = order("s-lim", kind=OrderType.LIMIT, price="90")
    submit(ex, o)
    venue.fill_resting(o.client_order_id, Decimal("0.004"))  # partial fill while MMATS looked away
    fills, _ = ex.reconcile_venues()
    assert [f.quantity for f in fills] == [Decimal("0.004")] and o.status is OrderStatus.PARTIALLY_FILLED
    venue.held["BTC/USDT"] += Decimal("0.1")  # someone bought by hand
    ex.last_prices["BTC/USDT"] = Decimal(100)
    assert ex.reconcile_venues()[0] == []  # first sighting: could be fills in flight
    fills, _ = ex.reconcile_venues()
    assert [(f.side, f.quantity, f.strategy_id) for f in fills] == [(Side.BUY, Decimal("0.1"), "reconciliation")]
    assert ex.ledger.positions["BTC/USDT"].quantity == Decimal("0.104")
    assert any("differed from the book" in a for a in ex.alerts)


def test_fee_in_base_is_converted_and_a_third_currency_counted_apart() -> None:
    ex, venue, _ = make(MemoryVenue(fee_currency="BTC"))
    submit(ex, order())
    fills, _ = ex.poll()
    assert fills[0].fee == Decimal("0.00001") * Decimal(100)
    assert fills[0].quantity == Decimal("0.00999")  # what the account holds after a fee taken in BTC
    assert ex.ledger.positions["BTC/USDT"].quantity == venue.held["BTC/USDT"]
    assert ex.ledger.cash == Decimal(10_000) - Decimal("0.01") * 100  # q x price, the fee inside it
    ex.flatten_all(2, {"BTC/USDT": 100.0}, "kill")
    ex.poll()  # the flatten sells what is held, to the lot: only dust below one lot (0.001) can stay
    assert venue.held["BTC/USDT"] == ex.ledger.positions["BTC/USDT"].quantity < INSTRUMENT.lot_size
    ex2, _venue2, _ = make(MemoryVenue(fee_currency="BNB"))
    submit(ex2, order())
    assert ex2.poll()[0][0].fee == 0 and ex2.unconverted_fees == {"BNB": Decimal("0.00001")}


def test_bracket_stop_rests_after_the_entry_fills_and_the_take_profit_replaces_it_at_its_price() -> None:
    ex, venue, _ = make()
    entry = order("s-entry-9")
    stop = order("s-stop-9", side=Side.SELL, kind=OrderType.STOP, parent_id="s-entry-9", oco_group="g9",
                 stop_price=Decimal("95.2"))
    target = order("s-tp-9", side=Side.SELL, kind=OrderType.LIMIT, price="110.2", parent_id="s-entry-9",
                   oco_group="g9")
    submit(ex, entry, children=[stop, target])
    assert stop.status is OrderStatus.NEW and not venue.by_cid("s-stop-9")
    ex.poll()  # entry filled -> the stop rests at the venue, the take-profit waits here
    assert stop.status is OrderStatus.ACCEPTED and stop.stop_price == Decimal("95.0")  # never triggers early
    assert target.status is OrderStatus.NEW and not venue.by_cid("s-tp-9")
    ex.last_prices["BTC/USDT"] = Decimal("110.6")  # the take-profit price is reached
    ex.poll()
    assert stop.status is OrderStatus.CANCELED  # canceled first: one exit at a time
    assert target.status is OrderStatus.ACCEPTED and target.price == Decimal("110.5")
    venue.fill_resting("s-tp-9")
    ex.poll()
    assert target.status is OrderStatus.FILLED and ex.ledger.positions["BTC/USDT"].quantity == 0


def test_a_filled_stop_cancels_the_waiting_take_profit() -> None:
    ex, venue, _ = make()
    entry = order("s-entry-8")
    stop = order("s-stop-8", side=Side.SELL, kind=OrderType.STOP, parent_id="s-entry-8", oco_group="g8",
                 stop_price=Decimal("95"))
    target = order("s-tp-8", side=Side.SELL, kind=OrderType.LIMIT, price="110", parent_id="s-entry-8",
                   oco_group="g8")
    submit(ex, entry, children=[stop, target])
    ex.poll()
    venue.fill_resting("s-stop-8", price=Decimal(95))
    ex.poll()
    assert stop.status is OrderStatus.FILLED and target.status is OrderStatus.CANCELED


def test_hard_flatten_on_every_venue_a_failing_one_reported_not_blocking() -> None:
    two = MemoryVenue(name="two")
    ex, _venue, _ = make(second=two)
    submit(ex, order())
    submit(ex, order("s-eth", symbol="ETH/USDT"))
    ex.poll()
    two.down = True
    _canceled, _fills = ex.flatten_all(2, {"BTC/USDT": 100.0, "ETH/USDT": 100.0}, "kill")
    assert ex.flatten_report["mem"] == "ok" and ex.flatten_report["two"].startswith("failed")
    assert ex.ledger.positions["BTC/USDT"].quantity == 0
    assert ex.ledger.positions["ETH/USDT"].quantity == Decimal("0.01")


def test_market_closed_is_refused_or_queued_as_configured() -> None:
    ex, _venue, _ = make(MemoryVenue(is_open=False))
    o = order()
    assert submit(ex, o) is SubmitOutcome.REJECTED and o.reject_reason.startswith("market_closed")
    ex2, venue2, _ = make(MemoryVenue(is_open=False), outside_hours={"mem": "queue"})
    assert submit(ex2, order()) is SubmitOutcome.ACCEPTED and "market_open" not in venue2.calls


def test_dry_run_sends_nothing_and_says_what_it_would_have_sent() -> None:
    ex, venue, _ = make(dry_run=True)
    o = order(kind=OrderType.LIMIT, price="99.9")
    assert submit(ex, o) is SubmitOutcome.REJECTED
    assert "place" not in venue.calls and "dry run" in o.reject_reason
    assert ex.dry_run_log == ["DRY RUN mem: BUY 0.010 BTC/USDT LIMIT @ 99.5 [s-entry-1]"]


def test_duplicate_answer_takes_the_venues_order() -> None:
    ex, venue, _ = make(MemoryVenue(reuse_closed_ids=False))
    venue.place(order(kind=OrderType.LIMIT, price="90"))
    o = order(kind=OrderType.LIMIT, price="90")
    assert submit(ex, o) is SubmitOutcome.DUPLICATE
    assert o.status is OrderStatus.ACCEPTED and o.venue_order_id == "1"


def test_a_venue_back_from_an_outage_is_reconciled_at_once() -> None:
    ex, venue, _ = make(reconcile_every_s=3600)
    ex.reconcile_venues()
    assert not ex.due_full_reconcile()
    venue.down = True
    for _ in range(3):
        with pytest.raises(VenueError):
            ex.venues["mem"].guard.call(venue.balances)
    assert not ex.due_full_reconcile()  # still down: nothing to compare with
    venue.down = False
    ex.venues["mem"].guard.breaker.opened_at -= 6
    ex.venues["mem"].guard.call(venue.balances)  # the probe closes the breaker
    assert ex.due_full_reconcile()
    ex.reconcile_venues()
    assert not ex.due_full_reconcile()
