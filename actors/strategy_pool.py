"""StrategyPoolActor: several strategies in one process (``strategies_per_actor: N`` in the system config).

A Ray actor process costs about 125 MB whatever it hosts, so a pool trades isolation for density: its
members share one process and one mailbox, but each is its own ``StrategyHost`` in a kernel
``StrategyGroup`` (an exception disables only the strategy that raised; docs/deployment.md). The pool
attaches to its feed once for all its members (one message per batch of bars, not one per strategy) and
sends their signals to the gatekeeper in one ``SignalBatch`` that names every member as a reporter.
Everyone else addresses a member by its strategy id (``OrderOutcomes``, ``set_enabled``, ``health``,
``replace_member``), whatever actor hosts it.

A crashed pool is restarted by Ray with its constructor's settings: every member is rebuilt and warmed
up from the feed's history, then the supervisor re-applies the pool's wiring with its members as they run
now (a member replaced since, an operator's disable) before the pool takes its place on the feed again.
"""

from __future__ import annotations

import logging
from typing import Any

import ray

from actors.control import was_restarted
from actors.signal_sender import SignalSender
from mmats.engine.actor_settings import HostSettings, StrategySettings
from mmats.engine.strategy_group import StrategyGroup
from mmats.engine.topology import Wiring
from mmats.engine.wall_stamps import PROCESSED_KEPT, WallStamps
from mmats.messages import BarBatch, OrderOutcomes

log = logging.getLogger("mmats.strategy")


@ray.remote(max_restarts=-1, max_task_retries=0)
class StrategyPoolActor:
    def __init__(self, settings: HostSettings, wiring: Wiring[Any]) -> None:
        self.node = settings.node
        self.sub_id = settings.node.removeprefix("host:")
        self.report_empty = settings.report_empty
        self.gatekeeper = wiring.gatekeeper
        self.feed = wiring.feed
        self.signals = SignalSender(self.gatekeeper, lambda: tuple(self.group.ids))  # adaptively batched, one in flight
        self.processed: WallStamps[int] = WallStamps(PROCESSED_KEPT)
        self.group = StrategyGroup(list(settings.strategies))
        self.group.warm(ray.get(self.feed.get_history.remote(self.group.feed_symbols, self.group.warmup_bars)))
        self.attached = False
        self.restarts = was_restarted()
        if self.restarts:
            for sid, error in self.group.disabled_in_warmup():
                log.error("strategy %s disabled during warm-up after a restart: %s", sid, error)
                self.gatekeeper.on_strategy_disabled.remote(sid, error)
        supervisor = self._supervisor(settings) if self.restarts else None
        if supervisor is not None:  # members as they run now first; ``wire`` attaches
            supervisor.rewire.remote(self.node)
        elif settings.attach:
            self.attach(False)

    @staticmethod
    def _supervisor(settings: HostSettings) -> Any:
        if settings.peers.supervisor is None:
            return None
        try:
            return ray.get_actor(settings.peers.supervisor, namespace=settings.peers.namespace)
        except ValueError:  # no supervisor (a test building actors by hand): attach as configured
            return None

    # ------------------------------------------------------------------------------------ wiring

    def wire(self, wiring: Wiring[Any], members: list[StrategySettings] | None = None) -> None:
        """Peers, and (after a restart) the members as the supervisor runs them now; then attach."""
        self.gatekeeper = self.signals.gatekeeper = wiring.gatekeeper or self.gatekeeper
        self.feed = wiring.feed or self.feed
        for s in members or ():
            current = self.group.settings.get(s.strategy_id)
            if current is None:
                continue  # not a member of this pool
            if _version(current) != _version(s):
                self.replace_member(s)
            self.group.member(s.strategy_id).set_enabled(s.enabled)
        if not self.attached:
            self.attach(False)

    def attach(self, flush_previous: bool) -> list[Any]:
        """Take the pool's place on its feed between two bars (``FeedActor.handover``): the bars published
        since its history warm its members silently, every later bar arrives live."""
        delta, waits = ray.get(self.feed.handover.remote(
            self.sub_id, ray.get_runtime_context().current_actor, self.group.feed_symbols, dict(self.group.seen),
            flush_previous))
        self.group.warm(delta)
        self.attached = True
        return list(waits)

    # ------------------------------------------------------------------------------- message path

    @ray.method(max_task_retries=0)
    def on_bars(self, msg: BarBatch) -> int:
        signals, disabled = self.group.on_bars(msg.bars)
        if signals or self.report_empty:
            self.signals.send(signals, msg.upto_ts)
        for sid, error in disabled:
            log.error("strategy %s disabled after repeated errors: %s", sid, error)
            self.gatekeeper.on_strategy_disabled.remote(sid, error)
        self.processed.stamp(b[1] for b in msg.bars)  # a bar time split over two batches: the later
        if msg.last:
            self.signals.drain()
        return len(signals)

    def processed_times(self) -> dict[int, float]:
        """Bar time -> wall time every member had processed it (``mmats.engine.wall_stamps``)."""
        return self.processed.snapshot()

    def on_orders(self, msgs: list[OrderOutcomes]) -> None:
        """The outcomes of its members' orders, one message for all of them (``OrderOutcomes`` each)."""
        for msg in msgs:
            self.group.on_orders(msg)

    # ----------------------------------------------------------------------------------- controls

    def replace_member(self, s: StrategySettings) -> dict[str, Any]:
        """Hot replace inside the pool: the new version warms up on the feed's history up to the last bar
        the pool processed and takes over from the next batch (this actor handles one call at a time, so
        every bar is processed live exactly once, by the old version or the new). Refused with the reason
        when the new version fails to load or to warm up; the old one keeps running."""
        history = ray.get(self.feed.get_history.remote(self.group.feed_symbols + list(s.symbols),
                                                       self.group.warmup_bars))
        before = self.group.feed_symbols
        host = self.group.replace(s, history)
        if self.attached and self.group.feed_symbols != before:  # the new version reads other symbols
            self.attach(False)
        return host.health()

    def set_enabled(self, enabled: bool, strategy_id: str | None = None) -> None:
        self.group.member(strategy_id).set_enabled(enabled)

    def health(self, strategy_id: str | None = None) -> dict[str, Any]:
        """A member's health, with the host it runs in and what it sees of the account's positions."""
        host = self.group.member(strategy_id)
        positions = {p.symbol: str(p.quantity) for p in host.account.positions} if host.account is not None else {}
        return {**host.health(), "restarted": bool(self.restarts), "host": self.node, "pool": list(self.group.ids),
                "positions": positions, "params": dict(self.group.settings[host.strategy_id].params)}

    def members(self) -> list[str]:
        return list(self.group.ids)

    def ping(self) -> str:
        return "ok"


def _version(s: StrategySettings) -> tuple[Any, ...]:
    """What makes a new version of a strategy (enabling or disabling it does not)."""
    return s.ref, s.params, list(s.symbols), s.market, s.timeframe, s.max_errors
