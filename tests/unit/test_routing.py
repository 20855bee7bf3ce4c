"""Submitting through an unreliable venue: retries, UNKNOWN on a lost answer, reconciliation."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mmats.execution.routing import OrderSubmitter, RetryPolicy, SubmitOutcome, SubmitTimeout, VenueError
from mmats.model import Order, OrderStatus, Side
from mmats.orders import apply_fill, transition


def _order(cid: str = "s1-entry-0001") -> Order:
    return Order(cid, "BTC/USDT", Side.BUY, Decimal("0.5"), strategy_id="s1", signal_id="sig1")


class FakeVenue:
    """Holds what it accepted, keyed by client order id; fails as scripted, one entry per send."""

    def __init__(self, script: list[str]) -> None:
        self.script = list(script)
        self.held: dict[str, Order] = {}
        self.sends = 0

    def send(self, order: Order) -> bool:
        self.sends += 1
        step = self.script.pop(0) if self.script else "ok"
        if step == "down":
            raise VenueError("connection refused")
        if step == "bad":
            raise VenueError("insufficient funds", retryable=False)
        if order.client_order_id in self.held:
            return False
        self.held[order.client_order_id] = order
        if order.status is OrderStatus.NEW:
            transition(order, OrderStatus.SUBMITTED, 1)
        transition(order, OrderStatus.ACCEPTED, 1)
        if step == "lost":  # taken, but the answer never arrives
            raise SubmitTimeout()
        return True

    def status(self, cid: str) -> OrderStatus | None:
        return OrderStatus.ACCEPTED if cid in self.held else None


def _submitter() -> tuple[OrderSubmitter, list[float]]:
    slept: list[float] = []
    return OrderSubmitter(RetryPolicy(max_attempts=4, base_delay_s=0.1, factor=2.0, max_delay_s=0.25),
                          sleep=slept.append), slept


def test_retryable_errors_are_retried_with_capped_exponential_backoff() -> None:
    sub, slept = _submitter()
    venue = FakeVenue(["down", "down", "down"])
    order = _order()
    res = sub.submit(order, lambda: venue.send(order), 5)
    assert res.outcome is SubmitOutcome.ACCEPTED and res.attempts == 4
    assert slept == [0.1, 0.2, 0.25]
    assert len(res.errors) == 3 and not res.is_error  # rescued by a retry: not an error streak
    assert order.status is OrderStatus.ACCEPTED and venue.sends == 4 and len(venue.held) == 1


def test_giving_up_rejects_the_order_with_the_reason() -> None:
    sub, _ = _submitter()
    venue = FakeVenue(["down"] * 10)
    order = _order()
    res = sub.submit(order, lambda: venue.send(order), 5)
    assert res.outcome is SubmitOutcome.FAILED and res.is_error and res.attempts == 4
    assert order.status is OrderStatus.REJECTED
    assert "venue unavailable after 4 attempts" in order.reject_reason and not venue.held


def test_non_retryable_error_is_one_attempt_and_a_rejection() -> None:
    sub, slept = _submitter()
    venue = FakeVenue(["bad"])
    order = _order()
    res = sub.submit(order, lambda: venue.send(order), 5)
    assert res.outcome is SubmitOutcome.REJECTED and res.attempts == 1 and not slept
    assert order.status is OrderStatus.REJECTED and "insufficient funds" in order.reject_reason


def test_lost_answer_is_never_resent_and_reconciles_to_the_venue_state() -> None:
    sub, slept = _submitter()
    venue = FakeVenue(["lost"])
    order = _order()
    res = sub.submit(order, lambda: venue.send(order), 5)
    assert res.outcome is SubmitOutcome.UNKNOWN and res.is_error and not slept
    assert venue.sends == 1, "a submit whose answer was lost must not be sent again"
    assert order.status is OrderStatus.UNKNOWN and set(sub.unknown) == {order.client_order_id}
    changed = sub.reconcile(venue.status, 9)
    assert changed == [order] and order.status is OrderStatus.ACCEPTED and not sub.unknown


def test_an_unknown_order_the_venue_never_saw_is_rejected_on_reconcile() -> None:
    sub, _ = _submitter()
    order = _order()

    def lost_before_arrival() -> bool:
        raise SubmitTimeout("read timeout")

    sub.submit(order, lost_before_arrival, 5)
    assert order.status is OrderStatus.UNKNOWN
    sub.reconcile(lambda cid: None, 9)
    assert order.status is OrderStatus.REJECTED and "not found at the venue" in order.reject_reason


def test_a_fill_resolves_unknown_before_reconciliation_asks() -> None:
    sub, _ = _submitter()
    venue = FakeVenue(["lost"])
    order = _order()
    sub.submit(order, lambda: venue.send(order), 5)
    apply_fill(order, order.quantity, Decimal("100"), 6)
    asked: list[str] = []
    changed = sub.reconcile(lambda cid: asked.append(cid) or None, 9)
    assert order.status is OrderStatus.FILLED and changed == [order] and not asked and not sub.unknown


def test_a_lookup_that_books_the_venue_fills_itself_is_not_transitioned_twice() -> None:
    sub, _ = _submitter()
    venue = FakeVenue(["lost"])
    order = _order()
    sub.submit(order, lambda: venue.send(order), 5)

    def adapter_lookup(cid: str) -> OrderStatus:  # a venue adapter applies what the venue reports
        transition(order, OrderStatus.ACCEPTED, 8)
        apply_fill(order, order.quantity, Decimal("100"), 8)
        return OrderStatus.FILLED

    assert sub.reconcile(adapter_lookup, 9) == [order]
    assert order.status is OrderStatus.FILLED and order.updated_ns == 8 and not sub.unknown


def test_venue_that_cannot_say_yet_is_asked_again() -> None:
    sub, _ = _submitter()
    order = _order()

    def lost() -> bool:
        raise SubmitTimeout()

    sub.submit(order, lost, 5)
    assert sub.reconcile(lambda cid: OrderStatus.UNKNOWN, 9) == []
    assert order.client_order_id in sub.unknown


def test_known_duplicate_is_reported_as_such() -> None:
    sub, _ = _submitter()
    venue = FakeVenue([])
    order = _order()
    sub.submit(order, lambda: venue.send(order), 5)
    again = sub.submit(order, lambda: venue.send(order), 6)
    assert again.outcome is SubmitOutcome.DUPLICATE and len(venue.held) == 1


@pytest.mark.parametrize("attempt,expected", [(1, 0.1), (2, 0.2), (3, 0.25), (10, 0.25)])
def test_backoff_delays(attempt: int, expected: float) -> None:
    assert RetryPolicy(base_delay_s=0.1, factor=2.0, max_delay_s=0.25).delay(attempt) == pytest.approx(expected)


def test_a_paper_system_refuses_a_venue_that_declares_itself_live() -> None:
    from mmats.errors import ConfigError
    from mmats.execution.paper import PaperExecution
    from mmats.execution.routing import refuse_live_venue
    from mmats.model import Environment

    class LiveVenue:
        environment = Environment.LIVE

    with pytest.raises(ConfigError, match="venue live.py:LiveVenue is a LIVE venue: a PAPER system cannot route"):
        refuse_live_venue(Environment.PAPER, LiveVenue, "live.py:LiveVenue")
    refuse_live_venue(Environment.LIVE, LiveVenue, "live.py:LiveVenue")  # a LIVE system may
    refuse_live_venue(Environment.PAPER, PaperExecution, "paper")  # declares nothing: a paper venue
