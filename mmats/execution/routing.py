"""Submitting to a venue that may fail: retries with backoff, lost answers as UNKNOWN, reconciliation.

The order router (an actor) calls ``OrderSubmitter.submit`` for every order and ``reconcile`` on a
timer; both are pure logic over a ``send`` callable and a ``lookup`` of what the venue really holds,
so they are tested here without Ray or a network. The rules, chosen because a retried submit is the
classic way to double an order:

- a *retryable* venue error (connection refused, 5xx, rate limit) means the venue did not take the
  order: retry after ``base_delay_s * factor**k`` (capped), at most ``max_attempts`` sends in all;
  the client order id is the same on every attempt, so a venue that did take it deduplicates;
- a *timeout* means the answer was lost and the venue may or may not hold the order: never resend;
  the order goes to UNKNOWN and reconciliation asks the venue later;
- a non-retryable error (bad request, insufficient funds) is a REJECTED order with the venue's reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from mmats.errors import ConfigError
from mmats.execution.venue import SubmitTimeout, VenueError
from mmats.model import Environment, Order, OrderStatus
from mmats.orders import transition

__all__ = ["OrderSubmitter", "RetryPolicy", "SubmitOutcome", "SubmitResult", "SubmitTimeout", "VenueError",
           "refuse_live_venue"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4
    base_delay_s: float = 0.05
    factor: float = 2.0
    max_delay_s: float = 2.0

    def delay(self, attempt: int) -> float:
        """Wait before send number ``attempt + 1`` (attempt counts from 1)."""
        return min(self.max_delay_s, self.base_delay_s * self.factor ** (attempt - 1))


class SubmitOutcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # the venue already had this client order id: nothing new was created
    REJECTED = "rejected"
    UNKNOWN = "unknown"
    FAILED = "failed"  # every attempt failed with a retryable error: the order is REJECTED locally


@dataclass(slots=True)
class SubmitResult:
    outcome: SubmitOutcome
    attempts: int
    errors: list[str] = field(default_factory=list)

    @property
    def is_error(self) -> bool:
        """What counts toward the router's error streak (and the operator -> advisory downgrade): a submit
        that a retry rescued is not one."""
        return self.outcome in (SubmitOutcome.FAILED, SubmitOutcome.UNKNOWN)


class OrderSubmitter:
    """Sends one order with the policy above; keeps the set of UNKNOWN orders for reconciliation."""

    def __init__(self, policy: RetryPolicy | None = None, sleep: Callable[[float], None] | None = None) -> None:
        import time

        self.policy = policy or RetryPolicy()
        self.sleep = sleep or time.sleep
        self.unknown: dict[str, Order] = {}
        self.retries = 0

    def submit(self, order: Order, send: Callable[[], bool], ts_ns: int) -> SubmitResult:
        """``send`` returns True when the venue took the order, False for a known duplicate."""
        errors: list[str] = []
        attempt = 0
        while True:
            attempt += 1
            try:
                taken = send()
            except SubmitTimeout as exc:
                errors.append(f"attempt {attempt}: {exc}")
                if order.status is OrderStatus.NEW:
                    transition(order, OrderStatus.SUBMITTED, ts_ns)
                if not order.status.is_terminal and order.status is not OrderStatus.UNKNOWN:
                    transition(order, OrderStatus.UNKNOWN, ts_ns)
                self.unknown[order.client_order_id] = order
                return SubmitResult(SubmitOutcome.UNKNOWN, attempt, errors)
            except VenueError as exc:
                errors.append(f"attempt {attempt}: {exc}")
                if exc.retryable and attempt < self.policy.max_attempts:
                    self.retries += 1
                    self.sleep(self.policy.delay(attempt))
                    continue
                outcome = SubmitOutcome.FAILED if exc.retryable else SubmitOutcome.REJECTED
                why = (f"{exc.kind.value}: venue unavailable after {attempt} attempts: {exc}" if exc.retryable
                       else f"{exc.kind.value}: venue rejected: {exc}")
                if not order.status.is_terminal:
                    transition(order, OrderStatus.REJECTED, ts_ns, reason=why)
                return SubmitResult(outcome, attempt, errors)
            if not taken:
                return SubmitResult(SubmitOutcome.DUPLICATE, attempt, errors)
            if order.status is OrderStatus.REJECTED:
                return SubmitResult(SubmitOutcome.REJECTED, attempt, errors)
            return SubmitResult(SubmitOutcome.ACCEPTED, attempt, errors)

    def reconcile(self, lookup: Callable[[str], OrderStatus | None], ts_ns: int) -> list[Order]:
        """Resolve UNKNOWN orders from what the venue reports; returns the orders that changed.

        ``lookup(client_order_id)`` is the venue's status for the order, or None when the venue has no
        such order (the submit never arrived): that one is REJECTED, safe to signal again. An order a
        fill already resolved (it left UNKNOWN on its own), before or during the lookup, is simply dropped
        from the set.
        """
        changed: list[Order] = []
        for cid, order in list(self.unknown.items()):
            if order.status is not OrderStatus.UNKNOWN:
                del self.unknown[cid]
                changed.append(order)
                continue
            venue_status = lookup(cid)
            if order.status is not OrderStatus.UNKNOWN:
                pass  # the lookup booked the venue's state itself (an adapter that applies the venue's fills)
            elif venue_status is OrderStatus.UNKNOWN:
                continue  # the venue cannot say yet: ask again next time
            elif venue_status is None:
                transition(order, OrderStatus.REJECTED, ts_ns, reason="reconciliation: not found at the venue")
            else:
                transition(order, venue_status, ts_ns)
            del self.unknown[cid]
            changed.append(order)
        return changed


def refuse_live_venue(system: Environment, venue: object, name: str) -> None:
    """A PAPER system never routes to a venue that declares itself LIVE (``environment`` on the venue
    class, as the Broker port has it): environments are separate by construction, not by care.
    A venue that declares nothing is a paper venue (the kernel's simulated broker and its subclasses)."""
    declared = Environment(getattr(venue, "environment", Environment.PAPER))
    if system is Environment.PAPER and declared is Environment.LIVE:
        raise ConfigError(f"venue {name} is a LIVE venue: a PAPER system cannot route orders to it "
                          "(run it with environment: LIVE, its own credentials and database)")
