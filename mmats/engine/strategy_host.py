"""Hosting one strategy on live bars: streaming indicators, warm-up, error isolation.

The StrategyActor is a thin shell around this class, so everything that decides what a live strategy
does is testable without Ray. A strategy that raises is caught here: the error is counted and kept
with its context; after ``max_errors`` consecutive errors the strategy is disabled (the actor reports it
to the gatekeeper, which journals it). One symbol's error never affects another strategy.

Benchmarks. Indicators that compare with another symbol (``RS_20@SPY``) need that symbol's bars: the
host asks the feed for ``feed_symbols`` (the traded symbols plus the benchmarks), keeps each benchmark's
latest close, and calls the strategy only for the symbols it trades. A traded bar reads the benchmark
bar stamped at or before it that has arrived; within one batch a benchmark's bars of a timestamp are
taken before the traded symbols' bars of that timestamp, so the arrival order inside a timestamp does
not matter (the replay feed publishes a timestamp's bars together, the live feed polls them together).
That is the rule the backtests apply (mmats.indicators.align_benchmark).

Waiting strategies. A strategy whose ``on_bar`` waits on something outside the process (``io_bound``:
``llm_agent`` asks a language model, 0.3-3 s a call) would hold its host for the sum of its symbols'
calls on every bar time. For those, the host calls ``on_bar`` for all the symbols of one bar time at once,
on threads, and takes the answers in symbol order: each symbol has its own strategy instance, so the
signals are the ones a call after the other gives. Errors are counted in that order too; when they
disable the strategy, the later symbols' answers of that bar time are dropped, as a disabled strategy's
are. CPU-bound strategies gain nothing from threads (one interpreter lock) and are called one by one.
"""

from __future__ import annotations

import math
import threading
import traceback
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from typing import Any

from mmats.engine.bar_aggregation import BarAggregator
from mmats.engine.signal_path import PendingSignal
from mmats.errors import ConfigError
from mmats.indicators import StreamingIndicators, benchmark_symbols
from mmats.model import AccountState, Environment, MarketType, Order, SignalAction, TradeSignal, ns_to_datetime
from mmats.registry import create_strategy
from mmats.strategy import IndicatorDict, IStrategy, StrategyContext

BarTuple = tuple[str, int, float, float, float, float, float]

_CALLS_MAX = 32  # io_bound calls running at once in one process, all hosts together
_calls: ThreadPoolExecutor | None = None
_calls_lock = threading.Lock()


def _call_pool() -> ThreadPoolExecutor:
    """One pool per process, made on first use: hosts come and go (hot replace), their calls share it."""
    global _calls
    with _calls_lock:
        if _calls is None:
            _calls = ThreadPoolExecutor(max_workers=_CALLS_MAX, thread_name_prefix="strategy-call")
        return _calls


def _call_groups(steps: Iterable[tuple[BarTuple, int]]) -> Iterator[list[tuple[BarTuple, int]]]:
    """Consecutive steps of one bar time, at most one per symbol: an instance is never called twice at
    once (a source bar can complete two bins of a coarser timeframe, known at the same time)."""
    group: list[tuple[BarTuple, int]] = []
    symbols: set[str] = set()
    for b, known_ns in steps:
        if group and (known_ns != group[0][1] or b[0] in symbols):
            yield group
            group, symbols = [], set()
        group.append((b, known_ns))
        symbols.add(b[0])
    if group:
        yield group


class LiveBar:
    __slots__ = ("close", "high", "low", "open", "ts_ns", "volume")

    def __init__(self, b: BarTuple) -> None:
        _, self.ts_ns, self.open, self.high, self.low, self.close, self.volume = b

    @property
    def ts(self) -> datetime:
        return ns_to_datetime(self.ts_ns)


class StrategyHost:
    def __init__(self, strategy_id: str, ref: str, params: dict[str, Any], symbols: list[str], market: MarketType,
                 environment: Environment, max_errors: int = 5, timeframe: str | None = None) -> None:
        self.strategy_id = strategy_id
        # None: the feed's own bars; otherwise completed bins of this timeframe (mmats.engine.bar_aggregation).
        self.aggregator = BarAggregator(timeframe) if timeframe else None
        self.ref = ref
        self.market = market
        self.environment = environment
        self.max_errors = max_errors
        self.strategies: dict[str, IStrategy] = {}
        self.indicators: dict[str, StreamingIndicators] = {}
        self.specs: dict[str, list[str]] = {}
        for sym in symbols:
            strat = create_strategy(ref, params)
            strat.strategy_id = strategy_id
            self.strategies[sym] = strat
            self.specs[sym] = strat.get_required_indicators()
            self.indicators[sym] = StreamingIndicators(self.specs[sym])
        self.benchmarks: tuple[str, ...] = benchmark_symbols({x for specs in self.specs.values() for x in specs})
        self._bench_set = frozenset(self.benchmarks)
        self.benchmark_close: dict[str, float] = {}  # each benchmark's latest close
        #: what the strategy needs from the feed: its own symbols and the benchmarks its indicators name
        self.feed_symbols: list[str] = sorted(set(symbols) | self._bench_set)
        self.account: AccountState | None = None
        self.enabled = True
        self.errors_total = 0
        self.consecutive_errors = 0
        self.last_error = ""
        self.bars_seen = 0
        self.signals_emitted = 0
        self.orders_filled = 0  # outcomes of its orders, as the portfolio reported them
        self.orders_rejected = 0
        self.last_rejection = ""
        self.last_bar_ns = 0
        # several symbols of a strategy that waits on the outside: one bar time's calls run together
        self._together = len(self.strategies) > 1 and any(s.io_bound for s in self.strategies.values())

    def _account(self) -> AccountState:
        if self.account is None:
            return AccountState(0, "USD", Decimal(0), Decimal(0))
        return self.account

    def warm_up(self, history: list[BarTuple]) -> None:
        """Replay past bars through indicators and strategy, discarding signals (no orders for the past)."""
        self._run(history, emit=False)

    def _run(self, bars: list[BarTuple], emit: bool) -> list[PendingSignal]:
        """The feed's bars, or the bins of ``timeframe`` they complete (no per-bar allocation when the
        strategy runs on the feed's own bars: this is the live message path)."""
        out: list[PendingSignal] = []
        agg = self.aggregator
        if self._bench_set:  # a timestamp's benchmark bars first (stable: the feed's order otherwise)
            bench = self._bench_set
            bars = sorted(bars, key=lambda b: (b[1], b[0] not in bench))
        together = self._together and emit
        if agg is None and not together:
            for b in bars:
                p = self._step(b, emit, b[1])
                if p is not None:
                    out.append(p)
            return out
        steps = ((b, b[1]) for b in bars) if agg is None else (
            step for b in bars if b[0] in self.strategies or b[0] in self._bench_set for step in agg.update(b))
        if together:
            for group in _call_groups(steps):
                out += self._step_together(group)
            return out
        for b, known_ns in steps:
            p = self._step(b, emit, known_ns)
            if p is not None:
                out.append(p)
        return out

    def on_bars(self, batch: list[BarTuple]) -> tuple[list[PendingSignal], bool]:
        was_enabled = self.enabled
        out = self._run(batch, emit=True)
        return out, was_enabled and not self.enabled

    def _step(self, b: BarTuple, emit: bool, known_ns: int) -> PendingSignal | None:
        ctx = self._context(b, emit)
        if ctx is None:
            return None
        try:
            sig = self.strategies[b[0]].on_bar(ctx)
        except Exception as exc:  # isolation: a strategy's bug is its own problem, counted and reported
            self._failed(exc)
            return None
        return self._decided(b, sig, emit, known_ns)

    def _step_together(self, group: list[tuple[BarTuple, int]]) -> list[PendingSignal]:
        """The live bars of one bar time of an ``io_bound`` strategy: its symbols' calls at once."""
        ready = [(b, known_ns, ctx) for b, known_ns in group if (ctx := self._context(b, True)) is not None]
        pool = _call_pool()
        calls = [pool.submit(self.strategies[b[0]].on_bar, ctx) for b, _, ctx in ready]
        out: list[PendingSignal] = []
        for (b, known_ns, _), call in zip(ready, calls, strict=True):
            try:
                sig = call.result()
            except Exception as exc:  # counted in symbol order, as one call after the other would be
                if self.enabled:
                    self._failed(exc)
                continue
            if not self.enabled:  # disabled by an earlier symbol's errors of this bar time
                continue
            p = self._decided(b, sig, True, known_ns)
            if p is not None:
                out.append(p)
        return out

    def _context(self, b: BarTuple, emit: bool) -> StrategyContext | None:
        """Everything before the strategy is called: benchmarks, counters, indicators; None when the
        strategy is not to be called on this bar."""
        sym = b[0]
        if sym in self._bench_set:
            self.benchmark_close[sym] = b[5]
        if sym not in self.strategies:
            return None
        self.bars_seen += 1
        self.last_bar_ns = b[1]
        values = self.indicators[sym].update(b[2], b[3], b[4], b[5], b[6], self.benchmark_close)
        # Every output of every declared indicator must have a value, as in the backtest's warm-up.
        if any(math.isnan(v) for v in values.values()):
            return None
        if not self.enabled:  # disabled (also mid-warm-up): indicators keep up, the strategy is not called
            return None
        return StrategyContext(LiveBar(b), IndicatorDict(values), self.environment, sym, self.market,
                               self.strategy_id, self._account, replaying=not emit)

    def _failed(self, exc: Exception) -> None:
        self.errors_total += 1
        self.consecutive_errors += 1
        where = "".join(traceback.format_exception(exc, limit=3)).splitlines()[-2:]
        self.last_error = f"{type(exc).__name__}: {exc} | {where}"
        if self.consecutive_errors >= self.max_errors:
            self.enabled = False

    def _decided(self, b: BarTuple, sig: TradeSignal | None, emit: bool, known_ns: int) -> PendingSignal | None:
        self.consecutive_errors = 0
        if sig is None or not emit:
            return None
        # A HOLD goes to the gatekeeper too: it journals it (a recorded decision) and places no order.
        if sig.action is not SignalAction.HOLD:
            self.signals_emitted += 1
        # Stamped with the source bar that completed it: the account and the fill follow from that time.
        return PendingSignal(self.strategy_id, known_ns, b[5], with_signal_id(sig, known_ns, len(self.strategies) > 1))

    def order_filled(self, order: Order) -> None:
        self.orders_filled += 1
        strat = self.strategies.get(order.symbol)
        if strat is not None:
            strat.on_order_filled(order)

    def order_rejected(self, order: Order, reason: str) -> None:
        self.orders_rejected += 1
        self.last_rejection = reason
        strat = self.strategies.get(order.symbol)
        if strat is not None:
            strat.on_order_rejected(order, reason)

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = enabled
        if enabled:
            self.consecutive_errors = 0

    def health(self) -> dict[str, Any]:
        return {
            "strategy_id": self.strategy_id,
            "ref": self.ref,
            "symbols": sorted(self.strategies),
            "enabled": self.enabled,
            "timeframe": self.aggregator.timeframe.value if self.aggregator else None,
            "bars_seen": self.bars_seen,
            "signals": self.signals_emitted,
            "errors_total": self.errors_total,
            "consecutive_errors": self.consecutive_errors,
            "last_error": self.last_error,
            "last_bar_ns": self.last_bar_ns,
            "orders_filled": self.orders_filled,
            "orders_rejected": self.orders_rejected,
            "last_rejection": self.last_rejection,
            "benchmarks": list(self.benchmarks),
            # what the strategy declared, so the control plane can chart it without loading its code
            "indicators": sorted({x for specs in self.specs.values() for x in specs}),
        }


def with_signal_id(signal: TradeSignal, known_ns: int, several_symbols: bool) -> TradeSignal:
    """A signal without an id gets its bar time as one (orders and idempotency keys derive from it); a
    strategy trading several symbols gets the symbol too, so two of its symbols' signals of one bar do
    not share an id (the second would be taken for a duplicate of the first and dropped)."""
    if signal.signal_id or not several_symbols:
        return signal
    return signal.with_id(f"{known_ns}:{signal.symbol}")


def strategy_benchmarks(ref: str, params: dict[str, Any]) -> tuple[str, ...]:
    """The benchmark symbols a strategy's indicators compare with, for checking before its actor starts
    that its feed provides them. A strategy that fails to load gives () here: the actor's start reports
    that failure as it does for any strategy."""
    try:
        return benchmark_symbols(create_strategy(ref, params).get_required_indicators())
    except Exception:
        return ()


def feed_for_strategy(feeds: Mapping[str, Collection[str]], strategy_id: str, symbols: Sequence[str],
                      benchmarks: Sequence[str] = ()) -> str:
    """The venue whose feed provides a strategy's symbols and its benchmarks (one feed: the host aligns a
    benchmark by the order the feed delivers bars in). ``feeds``: venue -> its symbols. A ``ConfigError``
    names what is missing."""
    for venue, have in feeds.items():
        if all(x in have for x in (*symbols, *benchmarks)):
            return venue
    for venue, have in feeds.items():
        if all(x in have for x in symbols):
            missing = [b for b in benchmarks if b not in have]
            raise ConfigError(f"strategy {strategy_id}: benchmark {', '.join(missing)} (named by its indicators) is "
                              f"not on feed {venue}, which provides {list(symbols)}; a benchmark must come from the "
                              "same feed: add it to that feed's symbols or files")
    raise ConfigError(f"no single feed provides all of {list(symbols)}")
