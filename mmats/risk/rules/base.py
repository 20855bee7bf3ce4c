"""The contract of a risk rule, and the per-evaluation context the gatekeeper fills for it.

A rule answers one question: *how much of this order may go through?* It returns the largest order
quantity it allows (``inf`` when it does not constrain the order) and, when that is less than asked, a
``RiskReason`` naming the rule, its limit and what was observed. Rules are pure: they read the intent,
the account, the precomputed context and the gatekeeper's state, and change nothing.

Quantities here are floats in units of the instrument; the gatekeeper turns the smallest allowance into
a ``Decimal`` rounded down to the lot.
"""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from collections import deque
from typing import TYPE_CHECKING, Protocol

from mmats.model import AccountState, MarketType
from mmats.risk.decision import OrderIntent, RiskReason
from mmats.risk.exposure import Exposure

if TYPE_CHECKING:
    from mmats.risk.correlation import CorrelationTracker
    from mmats.risk.monitor import KillSwitchMonitor

INF = math.inf

Verdict = tuple[float, RiskReason | None]
PASS: Verdict = (INF, None)


class RiskState:
    """What the gatekeeper remembers between evaluations: equity references, recent signals and
    orders, correlations. Rules read it; only the gatekeeper writes it."""

    __slots__ = ("cluster_cache", "correlation", "monitor", "order_times", "signal_horizon_ns", "signal_times")

    def __init__(self, monitor: KillSwitchMonitor, correlation: CorrelationTracker | None,
                 signal_horizon_s: float = 0.0) -> None:
        self.monitor = monitor
        self.correlation = correlation
        # Sorted signal times per strategy, kept for the longest throttle window configured anywhere:
        # throttles of one strategy with different windows (per symbol) all count from the same list.
        self.signal_times: dict[str, list[int]] = {}
        self.signal_horizon_ns = int(signal_horizon_s * 1e9)
        self.order_times: deque[int] = deque()
        self.cluster_cache: dict[str, float] = {}

    def counters(self) -> dict[str, object]:
        """Throttle and order-rate windows, for the state store (every node sees the same throttle)."""
        return {"signal_times": {k: list(v) for k, v in self.signal_times.items()},
                "order_times": list(self.order_times)}

    def restore_counters(self, saved: dict[str, object]) -> None:
        signal_times = saved.get("signal_times") or {}
        order_times = saved.get("order_times") or []
        assert isinstance(signal_times, dict) and isinstance(order_times, list)
        self.signal_times = {str(k): sorted(int(x) for x in v) for k, v in signal_times.items()}
        self.order_times = deque(sorted(int(x) for x in order_times))

    def record_signal(self, strategy_id: str, ts_ns: int) -> None:
        times = self.signal_times.get(strategy_id)
        if times is None:
            times = self.signal_times[strategy_id] = []
        if not times or ts_ns >= times[-1]:
            times.append(ts_ns)
        else:
            insort(times, ts_ns)
        if len(times) > 64 and times[0] < ts_ns - self.signal_horizon_ns:
            del times[:bisect_right(times, ts_ns - self.signal_horizon_ns)]


class RuleContext:
    """The intent restated in floats, with its position and account aggregates. One instance is reused
    for every evaluation (the gatekeeper is single-threaded), so filling it allocates nothing."""

    __slots__ = ("asset", "equity", "exposure", "market", "opposite", "pos", "price", "qty", "reducing", "sign",
                 "state", "strategy_id", "symbol", "ts_ns")

    def __init__(self, state: RiskState) -> None:
        self.state = state
        self.asset = ""
        self.symbol = ""
        self.strategy_id = ""
        self.market = MarketType.CRYPTO
        self.equity = 0.0
        self.price = 0.0
        self.qty = 0.0
        self.pos = 0.0
        self.sign = 1
        self.opposite = False
        self.reducing = False
        self.ts_ns = 0
        self.exposure: Exposure | None = None

    def exp(self) -> Exposure:
        assert self.exposure is not None
        return self.exposure


class Rule(Protocol):
    """``applies_to_reducing`` False: the gatekeeper skips the rule for orders that only reduce a position."""

    @property
    def name(self) -> str: ...

    @property
    def applies_to_reducing(self) -> bool: ...

    def check(self, intent: OrderIntent, account: AccountState, ctx: RuleContext) -> Verdict: ...


def cap_abs(ctx: RuleContext, cap_qty: float) -> float:
    """Largest order keeping |position after| <= ``cap_qty``, or, if the cap is already exceeded, never
    making it larger: the reducing part of an order is always allowed."""
    pos = ctx.pos
    if ctx.opposite:
        return -pos * ctx.sign + (cap_qty if cap_qty > 0.0 else 0.0)
    room = cap_qty - (pos if pos >= 0.0 else -pos)
    return room if room > 0.0 else 0.0


def no_new_exposure(ctx: RuleContext) -> float:
    """What a rule that forbids new exposure still allows: closing (part of) the current position."""
    return -ctx.pos * ctx.sign if ctx.opposite else 0.0
