"""The kill switch: RUNNING, SOFT (exits only), HARD (flatten everything), FREEZE (nothing moves).

It only ever escalates by itself; going back down needs an explicit ``reset`` with a reason, because
an automatic de-escalation after, say, a drawdown breach is exactly the situation a human should look
at. Each transition is journaled *before* it takes effect: if the journal cannot record it, the state
does not change and the error surfaces. The state is a plain dict away (``to_dict``/``from_dict``) so the
actor runtime can persist it and restore it after a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from mmats.errors import ValidationError
from mmats.model import AccountState, Instrument, Side, default_instrument, iso
from mmats.risk.decision import OrderIntent


class KillSwitchState(StrEnum):
    RUNNING = "RUNNING"
    SOFT = "SOFT"
    HARD = "HARD"
    FREEZE = "FREEZE"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {KillSwitchState.RUNNING: 0, KillSwitchState.SOFT: 1, KillSwitchState.HARD: 2, KillSwitchState.FREEZE: 3}


class KillTrigger(StrEnum):
    MANUAL = "manual"
    MAX_DRAWDOWN = "max_drawdown"
    DAILY_LOSS = "daily_loss"
    CONSECUTIVE_ERRORS = "consecutive_errors"
    STALE_DATA = "stale_data"
    ORDER_RATE = "order_rate"
    RESET = "reset"


@dataclass(frozen=True, slots=True)
class KillSwitchTransition:
    ts_ns: int
    previous: KillSwitchState
    state: KillSwitchState
    trigger: KillTrigger
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"time": iso(self.ts_ns), "previous": self.previous.value, "state": self.state.value,
                "trigger": self.trigger.value, "reason": self.reason}


class KillSwitch:
    """Holds the current state with what set it and since when; listeners hear every transition."""

    __slots__ = ("_listeners", "history", "journal", "reason", "since_ns", "state", "trigger")

    def __init__(
        self,
        journal: Any = None,
        state: KillSwitchState = KillSwitchState.RUNNING,
        trigger: KillTrigger = KillTrigger.MANUAL,
        reason: str = "",
        since_ns: int = 0,
    ) -> None:
        self.journal = journal  # an mmats.audit.Journal, or None (tests, throwaway backtests)
        self.state = state
        self.trigger = trigger
        self.reason = reason
        self.since_ns = since_ns
        self.history: list[KillSwitchTransition] = []
        self._listeners: list[Callable[[KillSwitchTransition], None]] = []

    @property
    def running(self) -> bool:
        return self.state is KillSwitchState.RUNNING

    def add_listener(self, listener: Callable[[KillSwitchTransition], None]) -> None:
        self._listeners.append(listener)

    def engage(
        self, state: KillSwitchState | str, trigger: KillTrigger | str, reason: str, ts_ns: int
    ) -> KillSwitchTransition | None:
        """Escalate to ``state``; a request at or below the current state changes nothing (None)."""
        target = KillSwitchState(str(state).upper())
        if target.rank <= self.state.rank:
            return None
        return self._apply(target, KillTrigger(trigger), reason or f"{trigger}", ts_ns)

    def reset(
        self, reason: str, ts_ns: int, to: KillSwitchState | str = KillSwitchState.RUNNING
    ) -> KillSwitchTransition:
        """The only way down. ``to`` may be any state below the current one (HARD -> SOFT, say)."""
        target = KillSwitchState(str(to).upper())
        if not reason or not reason.strip():
            raise ValidationError("kill switch reset: a reason is required")
        if target.rank >= self.state.rank:
            raise ValidationError(f"kill switch reset: {self.state.value} -> {target.value} is not a step down")
        return self._apply(target, KillTrigger.RESET, reason.strip(), ts_ns)

    def _apply(self, target: KillSwitchState, trigger: KillTrigger, reason: str, ts_ns: int) -> KillSwitchTransition:
        t = KillSwitchTransition(ts_ns, self.state, target, trigger, reason)
        if self.journal is not None:
            self.journal.append("kill_switch", t.to_dict(), ts_ns)  # before it takes effect
        self.state = target
        self.trigger = trigger
        self.reason = reason
        self.since_ns = ts_ns
        self.history.append(t)
        for listener in self._listeners:
            listener(t)
        return t

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state.value, "trigger": self.trigger.value, "reason": self.reason,
                "since_ns": self.since_ns}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], journal: Any = None) -> KillSwitch:
        """Restore a persisted state without journaling (the transition that set it was journaled then)."""
        try:
            return cls(journal, KillSwitchState(str(data["state"]).upper()), KillTrigger(str(data["trigger"])),
                       str(data.get("reason", "")), int(data.get("since_ns", 0)))
        except (KeyError, ValueError) as exc:
            raise ValidationError(f"kill switch state: cannot restore from {dict(data)!r} ({exc})") from None


def flatten_plan(
    account: AccountState,
    instruments: Mapping[str, Instrument] | None = None,
    ts_ns: int | None = None,
    strategy_id: str = "kill_switch",
) -> list[OrderIntent]:
    """Orders that take every position to flat, riskiest first: largest loss, then largest exposure.

    Losing positions go first because they are the ones still bleeding; among the rest, the biggest
    exposure is closed first so the most is gone if execution fails midway. Quantities are the exact
    position (no lot rounding: rounding would leave dust instead of flat).
    """
    ts = account.ts_ns if ts_ns is None else ts_ns
    positions = [p for p in account.positions if p.quantity != 0]
    positions.sort(key=lambda p: (min(p.unrealized_pnl, Decimal(0)), -p.notional, p.symbol))
    out: list[OrderIntent] = []
    for p in positions:
        inst = (instruments or {}).get(p.symbol) or default_instrument(p.symbol, p.market)
        price = p.last_price if p.last_price > 0 else p.avg_price
        out.append(OrderIntent(strategy_id, f"flatten-{ts}", inst, Side.SELL if p.quantity > 0 else Side.BUY,
                               abs(p.quantity), price, ts, reduces_position=True))
    return out
