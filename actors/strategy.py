"""StrategyActor: hosts one strategy instance (one IStrategy object per symbol it trades).

Thin by design: the kernel's ``StrategyHost`` does the work (streaming indicators, warm-up, error
counting); this actor only receives bar batches from the feed and sends its signals to the gatekeeper
with the adaptive batching policy (``mmats.engine.batching``): at once when the previous message was
answered, else together with what the next batches produce, in one message when it is. A crash of
the process is restarted by Ray; the new process re-subscribes and rebuilds its indicators and
strategy state from the feed's history without emitting signals for the past.
"""

from __future__ import annotations

import logging
from typing import Any

import ray

from actors.control import was_restarted
from actors.signal_sender import SignalSender
from mmats.engine.actor_settings import HostSettings, StrategySettings
from mmats.engine.strategy_group import build_host
from mmats.engine.topology import Wiring
from mmats.engine.wall_stamps import PROCESSED_KEPT, WallStamps
from mmats.errors import StrategyError
from mmats.messages import BarBatch, OrderOutcomes
from mmats.model import Timeframe

log = logging.getLogger("mmats.strategy")


@ray.remote(max_restarts=-1, max_task_retries=0)
class StrategyActor:
    def __init__(self, settings: HostSettings, wiring: Wiring[Any]) -> None:
        """``settings`` hosts exactly one strategy (a pool is ``actors.strategy_pool``); ``wiring`` gives
        the feed it warms up from and the gatekeeper it reports to (handles that survive restarts)."""
        if len(settings.strategies) != 1:
            raise ValueError(f"a strategy actor hosts one strategy, {settings.node} has {len(settings.strategies)}")
        st = settings.strategies[0]
        self.node = settings.node
        self.peers = settings.peers
        strategy_id, timeframe, warmup_bars = st.strategy_id, st.timeframe, st.warmup_bars
        self.strategy_id = strategy_id
        # Lockstep replays need a report per batch (the gatekeeper's watermark counts on it); otherwise a
        # batch without signals sends nothing: the gatekeeper's mailbox is the system's narrowest hop.
        self.report_empty = settings.report_empty
        self.gatekeeper = wiring.gatekeeper
        self.feed = feed = wiring.feed
        self.signals = SignalSender(self.gatekeeper, lambda: (strategy_id,))  # adaptively batched, one in flight
        self.processed: WallStamps[int] = WallStamps(PROCESSED_KEPT)
        self.host = build_host(st)
        # After a restart: rebuild state from history, silently, then resume live (a coarser timeframe
        # needs as many of its own bars, so proportionally more source bars).
        if timeframe:
            warmup_bars = min(warmup_bars * max(1, Timeframe.parse(timeframe).seconds // 60), 50_000)
        # its own symbols and the benchmarks its indicators compare with (the host calls the strategy
        # only for its own)
        self.symbols = self.host.feed_symbols
        history = ray.get(feed.get_history.remote(self.symbols, warmup_bars))
        self.seen: dict[str, int] = {}  # symbol -> time of the newest bar warmed on (until it attaches)
        self._warm(history)
        self.restarts = was_restarted()
        if settings.attach or self.restarts:  # a start or a Ray restart; a hot replace attaches when told
            self.attach(flush_previous=False)
        if self.restarts and self.peers.supervisor:  # the supervisor re-applies the wiring (and the enabled flag)
            try:
                ray.get_actor(self.peers.supervisor, namespace=self.peers.namespace).rewire.remote(self.node)
            except ValueError:
                log.warning("strategy %s restarted without its supervisor: wiring as built", strategy_id)
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
    def on_bars(self, msg: BarBatch) -> int:
        """``msg.last``: the feed's final batch for this version before a hot replace stops it; the call
        returns once every signal it sent was answered, so none is lost with the process."""
        signals, disabled_now = self.host.on_bars(msg.bars)
        if signals or self.report_empty:
            self.signals.send(signals, msg.upto_ts)
        if disabled_now:
            log.error("strategy %s disabled after %d consecutive errors: %s", self.strategy_id,
                      self.host.max_errors, self.host.last_error)
            self.gatekeeper.on_strategy_disabled.remote(self.strategy_id, self.host.last_error)
        self.processed.stamp(b[1] for b in msg.bars)  # a bar time split over two batches: the later
        if msg.last:
            self.signals.drain()
        return len(signals)

    def processed_times(self) -> dict[int, float]:
        """Bar time -> wall time this strategy had processed it (``mmats.engine.wall_stamps``)."""
        return self.processed.snapshot()

    def wire(self, wiring: Wiring[Any], members: list[StrategySettings] | None = None) -> None:
        """Peers from the topology; after a restart also the strategy's enabled flag as it runs now."""
        self.gatekeeper = self.signals.gatekeeper = wiring.gatekeeper or self.gatekeeper
        self.feed = wiring.feed or self.feed
        for st in members or ():
            if st.strategy_id == self.strategy_id:
                self.host.set_enabled(st.enabled)

    def on_orders(self, msgs: list[OrderOutcomes]) -> None:
        """Everything about this strategy's orders since the last message, in one message (a Ray call
        costs this machine about a millisecond of CPU; the outcome of a batch of orders fits in one)."""
        for msg in msgs:
            if msg.account is not None:
                self.host.account = msg.account
            for order in msg.filled:
                self.host.order_filled(order)
            for order, reason in msg.rejected:
                self.host.order_rejected(order, reason)

    def set_enabled(self, enabled: bool, strategy_id: str | None = None) -> None:
        self._check_id(strategy_id)
        self.host.set_enabled(enabled)

    def health(self, strategy_id: str | None = None) -> dict[str, Any]:
        self._check_id(strategy_id)
        return {**self.host.health(), "restarted": bool(self.restarts), "host": self.node}

    def _check_id(self, strategy_id: str | None) -> None:
        if strategy_id is not None and strategy_id != self.strategy_id:
            raise StrategyError(f"strategy {strategy_id} is not in this actor (it runs {self.strategy_id})")

    def ping(self) -> str:
        return "ok"
