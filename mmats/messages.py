"""The typed messages the actors exchange (``mmats.engine.topology`` says who sends which to whom).

Each is one Ray message: a batch, never one message per bar or per order, because a Ray call costs the
receiver about a millisecond of CPU on a small machine whatever it carries. Rows inside a batch stay
plain tuples or kernel value types (``BarTuple``, ``Order``, ``Fill``): building an object per bar would
cost more than the message saves. Slots dataclasses pickle as compactly as the tuples they replace and
name every field, so a sender and its receiver cannot disagree about positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmats.engine.signal_path import PendingSignal
from mmats.margin import FundingPayment
from mmats.model import AccountState, Fill, Order

BarTuple = tuple[str, int, float, float, float, float, float]  # symbol, ts_ns, open, high, low, close, volume


@dataclass(frozen=True, slots=True)
class BarBatch:
    """A feed's bars for one subscriber, in time order. ``upto_ts``: the newest bar time the feed has
    published, a watermark that moves even when none of this subscriber's symbols had a bar. ``last``:
    the final batch for a strategy host a hot replace is about to stop (it answers once every signal it
    sent is answered)."""

    bars: list[BarTuple]
    upto_ts: int
    last: bool = False


@dataclass(frozen=True, slots=True)
class SignalBatch:
    """A strategy host's signals for the bars it processed up to ``upto_ts``.

    ``reporters`` are the strategies that processed that batch (one for a strategy actor, every member of
    a pool): the gatekeeper's lockstep watermark and its aggregation wait for each of them by id."""

    reporters: tuple[str, ...]
    upto_ts: int
    signals: list[PendingSignal] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class OrderCommands:
    """What the gatekeeper decided since its last message to the router: cancels (strategy, symbol) go
    before submits (an order with its bracket children). ``decided_ns`` (wall clock of the oldest
    decision) lets the router drop submits decided before a kill-switch escalation; ``ack_ts`` is the
    lockstep acknowledgement the router passes on to the feed once the submits are placed."""

    cancels: list[tuple[str, str]]
    submits: list[tuple[Order, list[Order]]]
    ts_ns: int
    ack_ts: int | None = None
    decided_ns: int | None = None


@dataclass(frozen=True, slots=True)
class FillBatch:
    """The router's report to the portfolio: fills, the latest marks, the market orders that reached a
    final state (``done``, forwarded to the gatekeeper), the orders that filled and the orders the
    router or the venue rejected, with the reason (both forwarded to their strategies), and the
    perpetuals' funding the paper venue settled."""

    fills: list[Fill]
    as_of_ns: int
    marks: dict[str, float]
    done: list[str] = field(default_factory=list)
    filled: list[Order] = field(default_factory=list)
    funding: list[FundingPayment] = field(default_factory=list)
    rejected: list[tuple[Order, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """The portfolio's account for the gatekeeper, as of bar time ``as_of_ns``: each strategy's own
    holdings (``held``), market orders finished since the last snapshot (``done``), the fills of orders
    still working (``partial``) and the round trips closed since (``closed``, for Kelly sizing)."""

    account: AccountState
    as_of_ns: int
    held: dict[tuple[str, str], float] | None = None
    done: list[str] | None = None
    partial: dict[str, float] | None = None
    closed: list[tuple[str, float]] | None = None


@dataclass(frozen=True, slots=True)
class OrderOutcomes:
    """Everything about one strategy's orders since its last message: orders filled, orders rejected
    with the reason, and the account. The portfolio is its only sender (the gatekeeper's and the
    router's rejections reach it through the portfolio), so a strategy hears about its orders in the
    order they happened. Addressed by strategy id, so a pool hosting several strategies routes it to
    the right one."""

    strategy_id: str
    filled: list[Order] = field(default_factory=list)
    rejected: list[tuple[Order, str]] = field(default_factory=list)
    account: AccountState | None = None


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """A feed's heartbeat to the gatekeeper (wall clock): staleness is a kill-switch trigger."""

    venue: str
    last_update_ns: int
    done: bool
    stale: bool
