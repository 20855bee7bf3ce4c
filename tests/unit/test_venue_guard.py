"""Circuit breaker, token bucket, read retries and precision: the per-venue guard, without a venue."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mmats.execution.venue import RejectKind, SubmitTimeout, VenueError
from mmats.execution.venue_guard import (
    BreakerState,
    CircuitBreaker,
    GuardSettings,
    TokenBucket,
    VenueGuard,
    fit_to_venue,
    passive_price,
    stop_trigger,
    to_lot,
)
from mmats.model import Instrument, MarketType, Order, OrderType, Side


class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


def test_breaker_cycle_closed_open_half_open_closed() -> None:
    t = FakeTime()
    b = CircuitBreaker(failures_to_open=2, open_s=5, clock=t)
    b.failure("x")
    assert b.state is BreakerState.CLOSED and b.allow()
    b.failure("y")
    assert b.state is BreakerState.OPEN and not b.allow()
    t.t += 5
    assert b.allow() and b.state is BreakerState.HALF_OPEN
    assert not b.allow()  # one probe at a time
    b.failure("probe failed")
    assert b.state is BreakerState.OPEN and b.opens == 1  # reopened: still one outage
    t.t += 5
    assert b.allow()
    b.success()
    assert b.state is BreakerState.CLOSED and b.failures == 0


def test_token_bucket_paces_and_honours_retry_after() -> None:
    t = FakeTime()
    bucket = TokenBucket(rate_per_s=2, burst=2, clock=t)
    assert [bucket.wait_s(), bucket.wait_s()] == [0.0, 0.0]
    assert bucket.wait_s() == pytest.approx(0.5)
    bucket.retry_after(3.0)
    assert bucket.wait_s() >= 3.0
    unlimited = TokenBucket(None, clock=t)
    assert all(unlimited.wait_s() == 0 for _ in range(100))


def test_guard_retries_reads_with_jitter_but_never_a_placement() -> None:
    t = FakeTime()
    guard = VenueGuard("v", GuardSettings(read_attempts=3, backoff_s=0.1), clock=t, sleep=t.sleep)
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise VenueError("503", retryable=True, kind=RejectKind.VENUE_UNAVAILABLE)
        return "ok"

    assert guard.call(flaky) == "ok" and len(calls) == 3
    assert len(t.slept) == 2 and 0.05 <= t.slept[0] <= 0.15 and 0.1 <= t.slept[1] <= 0.3

    def lost() -> str:
        raise SubmitTimeout("read timed out")

    with pytest.raises(SubmitTimeout):
        guard.call(lost, placing=True)
    assert guard.failures == 3  # two failed reads and the lost placement count toward the breaker


def test_a_final_answer_keeps_the_breaker_closed_and_a_rate_limit_holds_calls() -> None:
    t = FakeTime()
    guard = VenueGuard("v", GuardSettings(failures_to_open=1), clock=t, sleep=t.sleep)

    def refuse() -> None:
        raise VenueError("funds", retryable=False, kind=RejectKind.INSUFFICIENT_FUNDS)

    with pytest.raises(VenueError):
        guard.call(refuse)
    assert guard.breaker.state is BreakerState.CLOSED

    def limited() -> None:
        raise VenueError("429", retryable=False, kind=RejectKind.RATE_LIMITED, retry_after_s=2.0)

    with pytest.raises(VenueError):
        guard.call(limited)
    assert guard.breaker.state is BreakerState.CLOSED
    guard.call(lambda: None)
    assert t.slept and t.slept[-1] == pytest.approx(2.0)


INST = Instrument("X/USD", MarketType.CRYPTO, "USD", 2, 3, Decimal("0.005"), Decimal(10), tick_size=Decimal("0.25"),
                  min_quantity=Decimal("0.01"))


def test_precision_rounds_toward_the_safe_side() -> None:
    assert to_lot(Decimal("1.2349"), INST) == Decimal("1.230")
    assert to_lot(Decimal("-1.2349"), INST) == Decimal("1.230")
    assert passive_price(Decimal("100.3"), Side.BUY, INST) == Decimal("100.25")
    assert passive_price(Decimal("100.3"), Side.SELL, INST) == Decimal("100.50")
    assert stop_trigger(Decimal("100.3"), Side.BUY, INST) == Decimal("100.50")
    assert stop_trigger(Decimal("100.3"), Side.SELL, INST) == Decimal("100.25")
    assert str(passive_price(Decimal("100"), Side.BUY, INST)) == "100.00"  # never exponent notation


def test_fit_to_venue_names_what_is_wrong() -> None:
    o = Order("c", "X/USD", Side.BUY, Decimal("0.004"), OrderType.MARKET)
    assert "below one lot" in (fit_to_venue(o, INST, Decimal(100)) or "")
    o = Order("c", "X/USD", Side.BUY, Decimal("0.005"), OrderType.MARKET)
    assert "below the venue's minimum 0.01" in (fit_to_venue(o, INST, Decimal(100)) or "")
    o = Order("c", "X/USD", Side.BUY, Decimal("0.05"), OrderType.LIMIT, Decimal("100"))
    assert "notional" in (fit_to_venue(o, INST, None) or "")
    o = Order("c", "X/USD", Side.BUY, Decimal("0.2"), OrderType.STOP_LIMIT, Decimal("100.1"), Decimal("100.1"))
    assert fit_to_venue(o, INST, None) is None and (o.price, o.stop_price) == (Decimal("100.00"), Decimal("100.25"))
