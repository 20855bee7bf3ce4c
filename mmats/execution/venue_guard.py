"""What stands between the kernel and every live venue: circuit breaker, rate limit, retries, precision.

Written once for all venues (ccxt exchanges, OANDA, Alpaca) so that each adapter stays a translator.
Pure logic with an injectable clock and sleep: the breaker's open / half-open / closed cycle, the
token bucket and Retry-After, and the rounding rules are unit-tested without a venue.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import TypeVar

from mmats.execution.venue import RejectKind, SubmitTimeout, VenueError
from mmats.model import Instrument, Order, OrderType, Side

T = TypeVar("T")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """Per venue. ``rate_per_s`` None: the adapter's own limiter (ccxt's) is the only one."""

    failures_to_open: int = 5
    open_s: float = 5.0
    rate_per_s: float | None = None
    burst: int = 5
    read_attempts: int = 3
    backoff_s: float = 0.05
    max_backoff_s: float = 1.0
    max_wait_s: float = 10.0  # longest a call waits for a token or a Retry-After before failing


class CircuitBreaker:
    """Closed: calls pass, consecutive failures counted. Open: calls fail at once (no network) until
    ``open_s`` passed. Half-open: exactly one probe passes; its success closes, its failure reopens.

    Why: a venue that is down must not hold every order for a full timeout, and must not be hammered."""

    def __init__(self, failures_to_open: int = 5, open_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures_to_open = failures_to_open
        self.open_s = open_s
        self.clock = clock
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.opens = 0
        self.last_error = ""
        self._probe_out = False
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            if self.state is BreakerState.CLOSED:
                return True
            if self.state is BreakerState.OPEN:
                if self.clock() - self.opened_at < self.open_s:
                    return False
                self.state = BreakerState.HALF_OPEN
                self._probe_out = False
            if self._probe_out:  # half-open: one probe at a time
                return False
            self._probe_out = True
            return True

    def success(self) -> None:
        with self._lock:
            self.failures = 0
            self._probe_out = False
            self.state = BreakerState.CLOSED

    def failure(self, error: str) -> None:
        with self._lock:
            self.last_error = error
            self.failures += 1
            self._probe_out = False
            if self.state is BreakerState.HALF_OPEN or self.failures >= self.failures_to_open:
                if self.state is BreakerState.CLOSED:  # one outage, however many probes fail
                    self.opens += 1
                self.state = BreakerState.OPEN
                self.opened_at = self.clock()

    def retry_in_s(self) -> float:
        return max(0.0, self.open_s - (self.clock() - self.opened_at)) if self.state is BreakerState.OPEN else 0.0


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` saved; ``hold_until`` honours a Retry-After."""

    def __init__(self, rate_per_s: float | None, burst: int = 5, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.clock = clock
        self.tokens = float(burst)
        self.last = clock()
        self.hold_until = 0.0
        self._lock = threading.Lock()

    def wait_s(self) -> float:
        """Take one token; returns how long the caller must wait first (0: go now)."""
        with self._lock:
            now = self.clock()
            hold = max(0.0, self.hold_until - now)
            if self.rate is None:
                return hold
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            self.tokens -= 1.0
            wait = 0.0 if self.tokens >= 0 else -self.tokens / self.rate
            return max(wait, hold)

    def retry_after(self, seconds: float) -> None:
        with self._lock:
            self.hold_until = max(self.hold_until, self.clock() + seconds)


class VenueGuard:
    """One venue's breaker and rate limit around every call; reads retried with jittered backoff.

    Placing an order is never retried here: the order router's submitter decides, because only it
    knows whether a resend is safe (``mmats.execution.live`` asks the venue before any resend)."""

    def __init__(self, name: str, settings: GuardSettings | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None) -> None:
        self.name = name
        self.settings = s = settings or GuardSettings()
        self.breaker = CircuitBreaker(s.failures_to_open, s.open_s, clock)
        self.bucket = TokenBucket(s.rate_per_s, s.burst, clock)
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.calls = 0
        self.failures = 0
        self.rate_limited = 0

    def call(self, fn: Callable[[], T], *, placing: bool = False, retry: bool = True) -> T:
        """``retry=False`` for reads a timer repeats anyway (the next poll is the retry): a venue that hangs
        then holds its caller for one timeout, not one per attempt."""
        attempts = 1 if placing or not retry else max(1, self.settings.read_attempts)
        for attempt in range(1, attempts + 1):
            try:
                return self._once(fn)
            except VenueError as exc:
                if not exc.retryable or attempt == attempts or (exc.kind is RejectKind.VENUE_UNAVAILABLE \
                        and self.breaker.state is not BreakerState.CLOSED):
                    raise
                delay = min(self.settings.max_backoff_s, self.settings.backoff_s * 2 ** (attempt - 1))
                self.sleep(delay * (0.5 + self.rng.random()))  # jitter: retries of many callers spread out
        raise AssertionError("unreachable")

    def _once(self, fn: Callable[[], T]) -> T:
        wait = self.bucket.wait_s()
        if wait > self.settings.max_wait_s:
            raise VenueError(f"{self.name}: rate limited for another {wait:.1f} s", retryable=False,
                             kind=RejectKind.RATE_LIMITED, retry_after_s=wait)
        if not self.breaker.allow():
            raise VenueError(f"{self.name}: circuit open after {self.breaker.failures} failures "
                             f"(last: {self.breaker.last_error}); next probe in {self.breaker.retry_in_s():.1f} s",
                             retryable=False, kind=RejectKind.VENUE_UNAVAILABLE)
        if wait > 0:
            self.sleep(wait)
        self.calls += 1
        try:
            result = fn()
        except VenueError as exc:
            if exc.kind is RejectKind.RATE_LIMITED:
                self.rate_limited += 1
                self.bucket.retry_after(exc.retry_after_s if exc.retry_after_s is not None else 1.0)
                self.breaker.success()  # the venue answered: it is up
            elif exc.retryable or isinstance(exc, SubmitTimeout) or exc.kind is RejectKind.VENUE_UNAVAILABLE:
                self.failures += 1
                self.breaker.failure(str(exc))
            else:
                self.breaker.success()  # a final answer (bad order, funds) is a venue that works
            raise
        self.breaker.success()
        return result


# ------------------------------------------------------------------------------------------ precision

def _tick(inst: Instrument) -> Decimal:
    return inst.tick_size if inst.tick_size is not None else Decimal(1).scaleb(-inst.price_precision)


def to_tick(price: Decimal, inst: Instrument, rounding: str) -> Decimal:
    tick = _tick(inst)
    return ((price / tick).to_integral_value(rounding=rounding) * tick).quantize(tick)


def passive_price(price: Decimal, side: Side, inst: Instrument) -> Decimal:
    """A limit price on the venue's tick, never more aggressive than asked: a buy rounds down, a sell up."""
    return to_tick(price, inst, ROUND_FLOOR if side is Side.BUY else ROUND_CEILING)


def stop_trigger(price: Decimal, side: Side, inst: Instrument) -> Decimal:
    """A stop trigger on the tick, never triggering earlier than asked: a buy stop rounds up, a sell stop down."""
    return to_tick(price, inst, ROUND_CEILING if side is Side.BUY else ROUND_FLOOR)


def to_lot(quantity: Decimal, inst: Instrument) -> Decimal:
    """Whole lots, rounded toward zero (the safe side: never more than the risk gatekeeper sized)."""
    lots = (abs(quantity) / inst.lot_size).to_integral_value(rounding=ROUND_DOWN)
    return (lots * inst.lot_size).quantize(inst.lot_size)


def fit_to_venue(order: Order, inst: Instrument, reference_price: Decimal | None) -> str | None:
    """Put ``order`` on the venue's grid in place; returns why it cannot be sent (None: it can).

    Checked before anything leaves: a venue would refuse it anyway, and a refusal costs a round trip
    and, on some venues, a rate-limit weight."""
    qty = to_lot(order.quantity, inst)
    if qty <= 0:
        return (f"quantity {order.quantity} {order.symbol} is below one lot ({inst.lot_size}) of the venue")
    if qty < inst.min_quantity:
        return f"quantity {qty} {order.symbol} is below the venue's minimum {inst.min_quantity}"
    order.quantity = qty
    if order.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        if order.price is None:
            return f"{order.order_type.value} order without a price"
        order.price = passive_price(order.price, order.side, inst)
    if order.order_type in (OrderType.STOP, OrderType.STOP_LIMIT):
        if order.stop_price is None:
            return f"{order.order_type.value} order without a stop price"
        order.stop_price = stop_trigger(order.stop_price, order.side, inst)
    price = order.price or order.stop_price or reference_price
    if price is not None and inst.min_notional > 0 and qty * price < inst.min_notional:
        return (f"notional {qty * price:.8f} {inst.quote_currency} of {order.symbol} is below the venue's "
                f"minimum {inst.min_notional}")
    return None
