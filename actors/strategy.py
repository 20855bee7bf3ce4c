"""StrategyActor: hosts one strategy instance (one IStrategy object per symbol it trades).

Thin by design: the kernel's ``StrategyHost`` does the work (streaming indicators, warm-up, error
counting); this actor only receives bar batches from the feed and sends ONE message per batch to the
gatekeeper. A crash of the process is restarted by Ray; the new process re-subscribes and rebuilds its
indicators and strategy state from the feed's history without emitting signals for the past.
"""

from __future__ import annotations

import logging
from typing import Any

import ray

from mmats.engine.strategy_host import StrategyHost
from mmats.model import Environment, MarketType, Timeframe

log = logging.getLogger("mmats.strategy")


@ray.remote(max_restarts=-1, max_task_retries=0)
class StrategyActor:
    def __init__(self, strategy_id: str, ref: str, params: dict[str, Any], symbols: list[str], market: str,
                 feed: Any, gatekeeper: Any, environment: str = "PAPER", max_errors: int = 5,
                 warmup_bars: int = 2_000, report_empty: bool = False, timeframe: str | None = None,
                 attach: bool = True) -> None:
        self.strategy_id = strategy_id
        # Lockstep replays need a report per batch (the gatekeeper's watermark counts on it); otherwise a
        # batch without signals sends nothing: the gatekeeper's mailbox is the system's narrowest hop.
        self.report_empty = report_empty
        self.gatekeeper = gatekeeper
        self.feed = feed
        self.host = StrategyHost(strategy_id, ref, params, symbols, MarketType(market), Environment(environment),
                                 max_errors=max_errors, timeframe=timeframe)
        # After a restart: rebuild state from history, silently, then resume live (a coarser timeframe
        # needs as many of its own bars, so proportionally more source bars).
        if timeframe:
            warmup_bars = min(warmup_bars * max(1, Timeframe.parse(timeframe).seconds // 60), 50_000)
        self.symbols = symbols
        history = ray.get(feed.get_history.remote(symbols, warmup_bars))
        self.seen: dict[str, int] = {}  # symbol -> time of the newest bar warmed on (until it attaches)
        self._warm(history)
        self.restarts = ray.get_runtime_context().was_current_actor_reconstructed
        if attach:  # a start or a Ray restart; a hot replace attaches once the supervisor says so
            self.attach(flush_previous=False)
        if self.restarts and not self.host.enabled:  # Ray restarted it and it failed its warm-up: say so
            log.error("strategy %s disabled during warm-up after a restart: %s", strategy_id, self.host.last_error)
            self.gatekeeper.on_strategy_disabled.remote(strategy_id, self.host.last_error)

    def _warm(self, bars: list[tuple[str, int, float, float, float, float, float]]) -> None:
        self.host.warm_up(bars)
        for b in bars:
            self.seen[b[0]] = b[1]

    def attach(self, flush_previous: bool) -> list[Any]:
        """Take this strategy's place on the feed between two bars: warm up silently on what was published
        since the history, then receive every later bar live. Returns the previous version's last call in
        flight (a hot replace waits for it before that version is stopped)."""
        delta, waits = ray.get(self.feed.handover.remote(
            self.strategy_id, ray.get_runtime_context().current_actor, self.symbols, dict(self.seen),
            flush_previous))
        self._warm(delta)
        return list(waits)

    @ray.method(max_task_retries=0)
    def on_bars(self, batch: list[tuple[str, int, float, float, float, float, float]], upto_ts: int) -> int:
        signals, disabled_now = self.host.on_bars(batch)
        if signals or self.report_empty:
            self.gatekeeper.on_signals.remote(self.strategy_id, upto_ts, signals)
        if disabled_now:
            log.error("strategy %s disabled after %d consecutive errors: %s", self.strategy_id,
                      self.host.max_errors, self.host.last_error)
            self.gatekeeper.on_strategy_disabled.remote(self.strategy_id, self.host.last_error)
        return len(signals)

    def on_orders(self, filled: list[Any], rejected: list[tuple[Any, str]], account: Any = None) -> None:
        """Everything about this strategy's orders since the last message, in one message (a Ray call
        costs this machine about a millisecond of CPU; the outcome of a batch of orders fits in one)."""
        if account is not None:
            self.host.account = account
        for order in filled:
            self.host.order_filled(order)
        for order, reason in rejected:
            self.host.order_rejected(order, reason)

    def set_enabled(self, enabled: bool) -> None:
        self.host.set_enabled(enabled)

    def health(self) -> dict[str, Any]:
        return {**self.host.health(), "restarted": bool(self.restarts)}

    def ping(self) -> str:
        return "ok"
