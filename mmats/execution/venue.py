"""The contract between the kernel and a live venue adapter: ``VenueClient`` and the reports it returns.

An adapter (``adapters/ccxt_broker.py``, ``oanda_broker.py``, ``alpaca_broker.py``) is a *translator*:
it turns one SDK call into one of these values or one typed ``VenueError`` and keeps no order state of
its own. Everything that makes live trading safe (journal before send, ask before resend, UNKNOWN until
reconciled, circuit breaker, rate limit, precision, mapping fills back to orders, foreign orders) is
written once, in ``mmats.execution.live``, for every venue. That split is why an adapter can be tested
call by call against a fake venue and the safety rules can be tested without any venue at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from mmats.model import Environment, Instrument, Liquidity, Order, OrderStatus, OrderType, Side


class RejectKind(StrEnum):
    """What a user can act on when a venue refuses: the words on the order's rejection and in alerts."""

    INSUFFICIENT_FUNDS = "insufficient_funds"
    INVALID_SYMBOL = "invalid_symbol"
    INVALID_SIZE = "invalid_size"  # quantity off the lot, below the minimum, notional too small
    INVALID_PRICE = "invalid_price"
    UNSUPPORTED = "unsupported_order"  # order type or feature the venue does not offer
    MARKET_CLOSED = "market_closed"
    RATE_LIMITED = "rate_limited"
    AUTHENTICATION_FAILED = "authentication_failed"
    PERMISSION_MISSING = "permission_missing"
    VENUE_UNAVAILABLE = "venue_unavailable"  # breaker open, connection refused, 5xx during a read
    OTHER = "other"


class VenueError(Exception):
    """A venue call failed. ``retryable``: the venue certainly did not act, the same call may be repeated.

    ``kind`` says what a user can do about it; ``retry_after_s`` is the venue's own Retry-After when it
    sent one (rate limits), honoured before the next call to that venue.
    """

    def __init__(self, message: str, retryable: bool = True, kind: RejectKind = RejectKind.OTHER,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.kind = kind
        self.retry_after_s = retry_after_s


class SubmitTimeout(VenueError):
    """The request left, the answer never came: the venue may hold the order. Never resent blind."""

    def __init__(self, message: str = "no answer from the venue") -> None:
        super().__init__(message, retryable=False, kind=RejectKind.VENUE_UNAVAILABLE)


class DuplicateOrder(VenueError):
    """The venue says it already holds this client order id: nothing new was created; ask it for the order."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False, kind=RejectKind.OTHER)


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """One order as the venue reports it. ``client_order_id`` is empty for an order placed without one."""

    client_order_id: str
    venue_order_id: str
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType
    status: OrderStatus  # ACCEPTED, PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED or REJECTED
    filled_quantity: Decimal = Decimal(0)
    avg_fill_price: Decimal | None = None
    price: Decimal | None = None
    stop_price: Decimal | None = None
    ts_ns: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class VenueFill:
    """One execution as the venue reports it; ``fill_id`` is the venue's trade id (unique per venue)."""

    fill_id: str
    venue_order_id: str
    client_order_id: str  # empty when the venue's trade report does not carry it
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    ts_ns: int
    liquidity: Liquidity = Liquidity.TAKER


@dataclass(frozen=True, slots=True)
class VenuePosition:
    """A holding at the venue: signed quantity (spot: the base currency held)."""

    symbol: str
    quantity: Decimal
    avg_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class AccountCheck:
    """What the venue says about the keys at start: LIVE refuses keys that cannot trade or can withdraw."""

    authenticated: bool
    can_trade: bool
    can_withdraw: bool | None  # None: the venue does not report it
    detail: str = ""

    @property
    def problems(self) -> list[str]:
        out = []
        if not self.authenticated:
            out.append(f"authentication failed ({self.detail})" if self.detail else "authentication failed")
        elif not self.can_trade:
            out.append("the key has no trading permission")
        if self.can_withdraw:
            out.append("the key can withdraw funds: create a trade-only key (docs/venues.md)")
        return out


@dataclass(frozen=True, slots=True)
class VenueCapabilities:
    """What can be sent to this venue. Anything else is refused before sending, with the reason."""

    order_types: frozenset[OrderType]
    native_brackets: bool = False  # take-profit / stop-loss attached to the entry at the venue
    fractional: bool = True  # quantities below one unit (Alpaca: per asset, via the Instrument's lot)
    notes: Mapping[str, str] = field(default_factory=dict)


class VenueClient(Protocol):
    """One venue account, as the live execution needs it. Every method raises ``VenueError`` (typed) on
    failure; ``place`` raises ``SubmitTimeout`` when the answer was lost and ``DuplicateOrder`` when the
    venue already holds the client id. Adapters keep no order state: they translate."""

    name: str
    environment: Environment

    def instruments(self, symbols: Sequence[str]) -> dict[str, Instrument]:
        """The venue's tick, lot, minimum quantity and notional, in Decimal; unknown symbols are named."""
        ...

    def capabilities(self) -> VenueCapabilities: ...

    def account_check(self) -> AccountCheck: ...

    def market_open(self, symbol: str) -> bool:
        """Whether an order for ``symbol`` can trade now (Alpaca's clock; always True for 24/7 venues)."""
        ...

    def place(self, order: Order, children: Sequence[Order] = ()) -> VenueOrder:
        """Send one order with its client id (and native take-profit / stop-loss ``children`` when the
        venue has them); quantities and prices are already at the venue's precision."""
        ...

    def fetch_order(self, client_order_id: str, symbol: str) -> VenueOrder | None:
        """The venue's order by client id; None only when the venue answers that it has no such order."""
        ...

    def cancel(self, client_order_id: str, symbol: str) -> VenueOrder | None:
        """Cancel by client id; returns the order as the venue now reports it, None when it has no such
        order. An order that is no longer open is returned as it is (filled, canceled), not an error."""
        ...

    def open_orders(self) -> list[VenueOrder]:
        """Every working order on the account, including those MMATS did not place."""
        ...

    def fills(self, since_ns: int, symbols: Sequence[str]) -> list[VenueFill]:
        """Every execution since ``since_ns`` (all pages), oldest first."""
        ...

    def positions(self) -> list[VenuePosition]: ...

    def balances(self) -> dict[str, Decimal]:
        """Total balance per currency (cash; spot venues include held assets)."""
        ...

    def close(self) -> None: ...
