"""Automatic kill-switch triggers, and the equity bookkeeping (peak, day/week/month start) they share
with the loss-limit rules.

``on_equity`` runs once per bar in the backtest loop, so its common path is a handful of float and
int comparisons against thresholds precomputed when the peak or the day changes: no allocation, no
Decimal, no datetime. Everything calendar-related (week and month starts) happens on the rare path
when a UTC day ends.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from mmats.risk.killswitch import KillSwitch, KillSwitchState, KillSwitchTransition, KillTrigger
from mmats.risk.limits import KillSwitchConfig

DAY_NS = 86_400_000_000_000
_INF = math.inf


class KillSwitchMonitor:
    """Watches equity, errors, data freshness and order-rate anomalies; engages ``switch`` on a breach."""

    __slots__ = (
        "_causes",
        "_daily_amount",
        "_daily_on",
        "_daily_pct",
        "_day_end",
        "_day_floor",
        "_dd_floor",
        "_dd_keep",
        "_dd_on",
        "_errors",
        "_last",
        "_last_data",
        "config",
        "day_start",
        "month_end",
        "month_start",
        "peak",
        "switch",
        "week_end",
        "week_start",
    )

    def __init__(self, switch: KillSwitch, config: KillSwitchConfig | None = None,
                 initial_equity: float | None = None) -> None:
        self.switch = switch
        self.config = config or KillSwitchConfig()
        c = self.config
        self._dd_on = c.max_drawdown_pct is not None
        self._dd_keep = 1.0 - (c.max_drawdown_pct or 0.0)
        self._daily_on = c.daily_loss_pct is not None or c.daily_loss is not None
        self._daily_pct = c.daily_loss_pct if c.daily_loss_pct is not None else _INF
        self._daily_amount = c.daily_loss if c.daily_loss is not None else _INF
        # With a known starting equity (a backtest's initial cash) the first day, week and month are
        # measured from it; otherwise from the first observation.
        eq = -_INF if initial_equity is None else float(initial_equity)
        self.peak = eq
        self.day_start = self.week_start = self.month_start = eq
        self._last = eq
        self._day_end = -1
        self.week_end = self.month_end = -1
        self._dd_floor = -_INF
        self._day_floor = -_INF
        self._errors = 0
        self._last_data: dict[str, int] = {}
        self._causes: set[KillTrigger] = set()
        switch.add_listener(self._on_switch)

    # ------------------------------------------------------------------------------ hot path

    def on_equity(self, ts_ns: int, equity: float) -> KillSwitchTransition | None:
        """Record one equity observation; a transition when it breaches the drawdown or daily-loss trigger."""
        self._last = equity
        if ts_ns >= self._day_end:
            return self._new_day(ts_ns, equity)
        if equity > self.peak:
            self.peak = equity
            if self._dd_on:
                self._dd_floor = equity * self._dd_keep
        if equity <= self._dd_floor or equity <= self._day_floor:
            return self._breach(ts_ns, equity)
        return None

    # ------------------------------------------------------------------------------ rare paths

    def _new_day(self, ts_ns: int, equity: float) -> KillSwitchTransition | None:
        """The same checks as ``on_equity`` after rolling the periods; an automatic reset is returned
        too (unless a breach on the same observation supersedes it)."""
        reset = self._roll(ts_ns, equity)
        if equity > self.peak:
            self.peak = equity
            if self._dd_on and self._dd_floor > -_INF:
                self._dd_floor = equity * self._dd_keep
        if equity <= self._dd_floor or equity <= self._day_floor:
            return self._breach(ts_ns, equity) or reset
        return reset

    def _roll(self, ts_ns: int, equity: float) -> KillSwitchTransition | None:
        first = self._day_end < 0
        day = ts_ns // DAY_NS
        self._day_end = (day + 1) * DAY_NS
        if not first or self.day_start == -_INF:
            self.day_start = equity
        if ts_ns >= self.week_end:
            if not first or self.week_start == -_INF:
                self.week_start = equity
            self.week_end = (day - (day + 3) % 7 + 7) * DAY_NS  # next Monday 00:00 UTC (day 0 was a Thursday)
        if ts_ns >= self.month_end:
            if not first or self.month_start == -_INF:
                self.month_start = equity
            d = datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=UTC)
            nxt = datetime(d.year + (d.month == 12), d.month % 12 + 1, 1, tzinfo=UTC)
            self.month_end = int(nxt.timestamp()) * 1_000_000_000
        if self.peak == -_INF:
            self.peak = equity
        if self._dd_on and self._dd_floor == -_INF and self.switch.state.rank < self.config.on_max_drawdown.rank:
            self._dd_floor = self.peak * self._dd_keep
        self._arm_daily()
        c = self.config
        if (not first and c.daily_loss_resets_next_day and self.switch.trigger is KillTrigger.DAILY_LOSS
                and self.switch.state is c.on_daily_loss):
            return self.switch.reset("new UTC day after a daily-loss stop (daily_loss_resets_next_day)", ts_ns)
        return None

    def _arm_daily(self) -> None:
        if self._daily_on and self.switch.state.rank < self.config.on_daily_loss.rank and self.day_start > -_INF:
            limit = min(self._daily_amount, self._daily_pct * abs(self.day_start))
            self._day_floor = self.day_start - limit
        else:
            self._day_floor = -_INF

    def _breach(self, ts_ns: int, equity: float) -> KillSwitchTransition | None:
        c = self.config
        if equity <= self._dd_floor:
            self._dd_floor = -_INF
            dd = 1.0 - equity / self.peak if self.peak > 0 else 0.0
            t = self.switch.engage(c.on_max_drawdown, KillTrigger.MAX_DRAWDOWN,
                                   f"drawdown {dd:.2%} from peak {self.peak:.2f} reached the {c.max_drawdown_pct:.2%} "
                                   f"limit", ts_ns)
            if t is not None:
                return t
        if equity <= self._day_floor:
            self._day_floor = -_INF
            loss = self.day_start - equity
            return self.switch.engage(c.on_daily_loss, KillTrigger.DAILY_LOSS,
                                      f"daily loss {loss:.2f} ({loss / self.day_start:.2%} of the day's start "
                                      f"{self.day_start:.2f}) reached the limit", ts_ns)
        return None

    def _on_switch(self, t: KillSwitchTransition) -> None:
        """Re-arm the triggers after a reset. What tripped is measured again from the last equity seen
        (the old peak or day start would re-trigger at once, which is not what a reset means); what did
        not trip keeps its reference."""
        if t.trigger is not KillTrigger.RESET:
            self._causes.add(t.trigger)
            return
        if self._last > -_INF:
            if KillTrigger.MAX_DRAWDOWN in self._causes:
                self.peak = self._last
            if KillTrigger.DAILY_LOSS in self._causes:
                self.day_start = self._last
        if t.state is KillSwitchState.RUNNING:
            self._causes.clear()
        armed = self._dd_on and t.state.rank < self.config.on_max_drawdown.rank
        self._dd_floor = self.peak * self._dd_keep if armed else -_INF
        self._arm_daily()

    def rebase(self, equity: float) -> None:
        """Measure drawdown and today's loss from ``equity`` from now on."""
        self.peak = equity
        self.day_start = equity
        armed = self._dd_on and self.switch.state.rank < self.config.on_max_drawdown.rank
        self._dd_floor = equity * self._dd_keep if armed else -_INF
        self._arm_daily()

    # ------------------------------------------------------------------------------ persistence

    _COUNTERS = ("peak", "day_start", "week_start", "month_start", "_day_end", "week_end", "month_end", "_last")

    def counters(self) -> dict[str, float | None]:
        """The loss references a restarted gatekeeper must not forget (today's start, the peak): without
        them a crash mid-day would measure the daily loss from the equity after the crash."""
        out: dict[str, float | None] = {}
        for name in self._COUNTERS:
            v = float(getattr(self, name))
            out[name.lstrip("_")] = None if math.isinf(v) else v
        return out

    def restore_counters(self, saved: dict[str, float | None]) -> None:
        for name in self._COUNTERS:
            v = saved.get(name.lstrip("_"))
            if name.endswith("_end"):
                setattr(self, name, -1 if v is None else int(v))
            else:
                setattr(self, name, -_INF if v is None else float(v))
        armed = self._dd_on and self.peak > -_INF and self.switch.state.rank < self.config.on_max_drawdown.rank
        self._dd_floor = self.peak * self._dd_keep if armed else -_INF
        self._arm_daily()

    # ------------------------------------------------------------------------------ other triggers

    def on_error(self, ts_ns: int, message: str) -> KillSwitchTransition | None:
        self._errors += 1
        n = self.config.max_consecutive_errors
        if n is not None and self._errors >= n:
            return self.switch.engage(self.config.on_errors, KillTrigger.CONSECUTIVE_ERRORS,
                                      f"{self._errors} consecutive errors, last: {message}", ts_ns)
        return None

    def on_success(self) -> None:
        self._errors = 0

    @property
    def consecutive_errors(self) -> int:
        return self._errors

    @property
    def watches_equity(self) -> bool:
        """False when no drawdown or daily-loss trigger is configured: callers may skip ``on_equity``."""
        return self._dd_on or self._daily_on

    def forget_feed(self, feed: str) -> None:
        """A feed that ended (a replay that finished) is not a stale feed."""
        self._last_data.pop(feed, None)

    def on_data(self, feed: str, ts_ns: int) -> None:
        if ts_ns > self._last_data.get(feed, -1):
            self._last_data[feed] = ts_ns

    def check_stale(self, now_ns: int) -> KillSwitchTransition | None:
        """Any feed silent for longer than ``stale_data_s`` engages the switch (call it on a timer)."""
        limit = self.config.stale_data_s
        if limit is None or not self._last_data:
            return None
        feed, last = min(self._last_data.items(), key=lambda kv: kv[1])
        age = (now_ns - last) / 1e9
        if age > limit:
            return self.switch.engage(self.config.on_stale_data, KillTrigger.STALE_DATA,
                                      f"no data from {feed} for {age:.0f} s (limit {limit:.0f} s)", now_ns)
        return None

    def on_order_rate(self, ts_ns: int, orders: int, window_s: float) -> KillSwitchTransition | None:
        state = self.config.on_order_rate
        if state is None:
            return None
        return self.switch.engage(state, KillTrigger.ORDER_RATE,
                                  f"{orders} orders within {window_s:.0f} s: order-rate anomaly", ts_ns)

    # ------------------------------------------------------------------------------ loss views

    def period_start(self, period: str) -> float:
        return {"daily": self.day_start, "weekly": self.week_start, "monthly": self.month_start}[period]

    @property
    def state(self) -> KillSwitchState:
        return self.switch.state
