"""Several strategies in one process, each isolated from the others (``strategies_per_actor``).

A strategy actor hosts a ``StrategyGroup``: one member by default, up to ``strategies_per_actor`` in a
pool. The group receives the feed's bars once for all its members and gives each member only the bars
of its own symbols (and benchmarks), so a member computes exactly what it would compute alone: the same
bars in the same order. Isolation within a pool: a strategy that raises is counted and disabled by its
own ``StrategyHost``; anything else that escapes a member (an indicator that fails on a bar) disables that
member only, never the batch of the others. What a pool does not isolate: the members share one
process (a segfault or an out-of-memory kill restarts all of them, each restored from history) and one
mailbox (a slow member delays the others' bars).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable

from mmats.engine.actor_settings import StrategySettings
from mmats.engine.signal_path import PendingSignal
from mmats.engine.strategy_host import BarTuple, StrategyHost
from mmats.errors import StrategyError
from mmats.messages import OrderOutcomes
from mmats.model import Environment, MarketType, Timeframe

MAX_WARMUP_BARS = 50_000


def warmup_bars(s: StrategySettings) -> int:
    """Source bars to warm up on: a coarser timeframe needs as many of its own bars, so proportionally
    more of the feed's (bounded)."""
    if s.timeframe:
        return min(s.warmup_bars * max(1, Timeframe.parse(s.timeframe).seconds // 60), MAX_WARMUP_BARS)
    return s.warmup_bars


def build_host(s: StrategySettings) -> StrategyHost:
    host = StrategyHost(s.strategy_id, s.ref, s.params, list(s.symbols), MarketType(s.market),
                        Environment(s.environment), max_errors=s.max_errors, timeframe=s.timeframe)
    if not s.enabled:
        host.set_enabled(False)
    return host


def tail(bars: Iterable[BarTuple], symbols: Iterable[str], n: int) -> list[BarTuple]:
    """The last ``n`` bars of each of ``symbols``, in the feed's order (time, then symbol)."""
    wanted = set(symbols)
    by_symbol: dict[str, list[BarTuple]] = {}
    for b in bars:
        if b[0] in wanted:
            by_symbol.setdefault(b[0], []).append(b)
    out = [b for rows in by_symbol.values() for b in rows[-n:]]
    return sorted(out, key=lambda b: (b[1], b[0]))


class StrategyGroup:
    def __init__(self, members: list[StrategySettings]) -> None:
        if not members:
            raise ValueError("a strategy group hosts at least one strategy")
        self.settings: dict[str, StrategySettings] = {}
        self.hosts: dict[str, StrategyHost] = {}
        self._symbols: dict[str, frozenset[str]] = {}
        for s in members:
            if s.strategy_id in self.hosts:
                raise ValueError(f"strategy {s.strategy_id} is twice in one host")
            self._put(s, build_host(s))
        self.seen: dict[str, int] = {}  # symbol -> time of the newest bar processed (warm or live)

    def _put(self, s: StrategySettings, host: StrategyHost) -> None:
        self.settings[s.strategy_id] = s
        self.hosts[s.strategy_id] = host
        self._symbols[s.strategy_id] = frozenset(host.feed_symbols)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self.hosts)

    @property
    def feed_symbols(self) -> list[str]:
        """Every member's symbols and benchmarks: what the group takes from its feed."""
        return sorted(set().union(*self._symbols.values()))

    @property
    def warmup_bars(self) -> int:
        return max(warmup_bars(s) for s in self.settings.values())

    def warm(self, history: list[BarTuple]) -> None:
        """Replay past bars silently (no signals for the past); each member on its own last bars."""
        for sid, host in self.hosts.items():
            self._warm_one(sid, host, history)
        self._note_seen(history)

    def _warm_one(self, sid: str, host: StrategyHost, history: list[BarTuple]) -> None:
        bars = tail(history, self._symbols[sid], warmup_bars(self.settings[sid]))
        try:
            host.warm_up(bars)
        except Exception as exc:  # outside the strategy's own code: this member only
            self._fail(host, exc)

    def _note_seen(self, bars: list[BarTuple]) -> None:
        seen = self.seen
        for b in bars:
            if b[1] > seen.get(b[0], -1):
                seen[b[0]] = b[1]

    def on_bars(self, batch: list[BarTuple]) -> tuple[list[PendingSignal], list[tuple[str, str]]]:
        """Signals of every member, and the members this batch disabled (id, last error)."""
        signals: list[PendingSignal] = []
        disabled: list[tuple[str, str]] = []
        single = len(self.hosts) == 1
        for sid, host in self.hosts.items():
            mine = batch if single else [b for b in batch if b[0] in self._symbols[sid]]
            if not mine:
                continue
            try:
                out, disabled_now = host.on_bars(mine)
            except Exception as exc:  # outside the strategy's own code: this member only
                was = host.enabled
                self._fail(host, exc)
                out, disabled_now = [], was
            signals += out
            if disabled_now:
                disabled.append((sid, host.last_error))
        self._note_seen(batch)
        return signals, disabled

    @staticmethod
    def _fail(host: StrategyHost, exc: Exception) -> None:
        host.errors_total += 1
        host.last_error = f"{type(exc).__name__}: {exc} | {traceback.format_exc(limit=3).splitlines()[-2:]}"
        host.enabled = False

    def on_orders(self, msg: OrderOutcomes) -> None:
        host = self.hosts.get(msg.strategy_id)
        if host is None:
            return  # a strategy moved to another host since the sender's wiring
        if msg.account is not None:
            host.account = msg.account
        for order in msg.filled:
            host.order_filled(order)
        for order, reason in msg.rejected:
            host.order_rejected(order, reason)

    def member(self, strategy_id: str | None) -> StrategyHost:
        """A member by id; without an id, the only member (a StrategyError names the members otherwise)."""
        if strategy_id is None:
            if len(self.hosts) == 1:
                return next(iter(self.hosts.values()))
            raise StrategyError(f"this host runs {list(self.hosts)}: name the strategy")
        host = self.hosts.get(strategy_id)
        if host is None:
            raise StrategyError(f"strategy {strategy_id} is not in this host (it runs {list(self.hosts)})")
        return host

    def disabled_in_warmup(self) -> list[tuple[str, str]]:
        return [(sid, h.last_error) for sid, h in self.hosts.items() if not h.enabled and h.errors_total > 0]

    def replace(self, s: StrategySettings, history: list[BarTuple]) -> StrategyHost:
        """A new version of member ``s.strategy_id`` takes over between two batches.

        It warms up on the feed's history up to the newest bar this group processed, keeps the account the
        old version had, and replaces it only if it loaded and did not fail its warm-up (a StrategyError
        says why; the old version keeps running)."""
        old = self.member(s.strategy_id)
        try:
            new = build_host(s)
        except Exception as exc:
            raise StrategyError(f"strategy {s.strategy_id}: {type(exc).__name__}: {exc}") from None
        symbols = frozenset(new.feed_symbols)
        past = [b for b in history if b[1] <= self.seen.get(b[0], -1)]
        try:
            new.warm_up(tail(past, symbols, warmup_bars(s)))
        except Exception as exc:
            raise StrategyError(f"strategy {s.strategy_id}: {type(exc).__name__}: {exc}") from None
        if not new.enabled and new.errors_total > 0:
            raise StrategyError(f"strategy {s.strategy_id} failed during warm-up ({new.errors_total} errors): "
                                f"{new.last_error.split(' | ')[0]}")
        new.account = old.account
        self._put(s, new)
        return new
