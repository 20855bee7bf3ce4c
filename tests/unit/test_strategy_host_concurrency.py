"""A live host calls a strategy that waits on the outside (``io_bound``) for one bar time's symbols at
once, and keeps every guarantee of one call after the other: the same signals in the same order, errors
counted in symbol order, a strategy disabled mid-bar-time emitting nothing more."""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

from mmats.engine.strategy_host import StrategyHost
from mmats.model import Environment, MarketType, SignalAction, TradeSignal
from mmats.strategy import IStrategy, StrategyContext

HERE = "tests.unit.test_strategy_host_concurrency"
SYMBOLS = [f"S{i}/USDT" for i in range(6)]
T0 = 1_704_067_200_000_000_000
MINUTE = 60_000_000_000


class _Overlap:
    """How many calls ran at the same time, at most."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *_: Any) -> None:
        with self.lock:
            self.now -= 1


class WaitsOnOutside(IStrategy):
    """Waits 50 ms per call (a remote service), then buys; raises on the symbols listed in ``fail``."""

    name = "waits_on_outside"
    io_bound = True
    default_params: ClassVar[dict[str, Any]] = {"fail": ""}
    overlap: ClassVar[_Overlap] = _Overlap()

    def get_required_indicators(self) -> list[str]:
        return []

    def on_bar(self, context: StrategyContext) -> TradeSignal | None:
        with self.overlap:
            time.sleep(0.05)
        if context.symbol in self.params["fail"].split(","):
            raise RuntimeError(f"service refused {context.symbol}")
        return TradeSignal(SignalAction.BUY, context.symbol, 0.1, reasoning=f"close {context.bar.close}")


class Computes(WaitsOnOutside):
    name = "computes"
    io_bound = False
    overlap: ClassVar[_Overlap] = _Overlap()


def host(ref: str, **params: Any) -> StrategyHost:
    return StrategyHost("s", f"{HERE}:{ref}", params, SYMBOLS, MarketType.CRYPTO, Environment.PAPER, max_errors=2)


def bar_time(i: int) -> list[tuple[str, int, float, float, float, float, float]]:
    return [(s, T0 + i * MINUTE, 100.0, 101.0, 99.0, 100.0 + i + k, 5.0) for k, s in enumerate(SYMBOLS)]


def signals(h: StrategyHost, bars: list[Any]) -> list[tuple[str, int, str]]:
    out, _ = h.on_bars(bars)
    return [(p.signal.symbol, p.ts_ns, p.signal.reasoning) for p in out]


def test_one_bar_times_calls_run_together_and_give_the_signals_one_after_the_other_gives() -> None:
    WaitsOnOutside.overlap = _Overlap()
    Computes.overlap = _Overlap()
    bars = bar_time(0) + bar_time(1)
    together = signals(host("WaitsOnOutside"), bars)
    alone = signals(host("Computes"), bars)
    assert together == alone and len(together) == 12
    assert [s for s, _, _ in together[:6]] == SYMBOLS  # in symbol order, bar time by bar time
    assert WaitsOnOutside.overlap.most >= 2  # the waits overlapped
    assert Computes.overlap.most == 1  # a computing strategy is called one symbol after the other


def test_errors_count_in_symbol_order_and_a_strategy_disabled_mid_bar_time_says_nothing_more() -> None:
    h = host("WaitsOnOutside", fail="S1/USDT,S2/USDT")
    out, disabled = h.on_bars(bar_time(0))
    # S0 buys; S1 and S2 fail (two in a row: max_errors) and disable it; S3..S5 ran but are dropped
    assert [p.signal.symbol for p in out] == ["S0/USDT"]
    assert disabled and not h.enabled and h.errors_total == 2
    assert "service refused S2/USDT" in h.last_error
    assert h.bars_seen == 6  # every symbol's indicators kept up


def test_a_single_symbol_or_the_warm_up_is_called_in_line() -> None:
    WaitsOnOutside.overlap = _Overlap()
    one = StrategyHost("s", f"{HERE}:WaitsOnOutside", {}, ["S0/USDT"], MarketType.CRYPTO, Environment.PAPER)
    one.on_bars(bar_time(0)[:1])
    many = host("WaitsOnOutside")
    many.warm_up(bar_time(0))  # history: signals discarded, no reason to wait on several at once
    assert WaitsOnOutside.overlap.most == 1


def test_bins_of_a_coarser_timeframe_are_called_together_too_with_the_same_signals() -> None:
    WaitsOnOutside.overlap = _Overlap()

    def run(ref: str) -> list[tuple[str, int, str]]:
        h = StrategyHost("s", f"{HERE}:{ref}", {}, SYMBOLS, MarketType.CRYPTO, Environment.PAPER, timeframe="5m")
        return signals(h, [b for i in range(12) for b in bar_time(i)])

    together, alone = run("WaitsOnOutside"), run("Computes")
    assert together == alone and len(together) == 12  # two completed 5-minute bins per symbol
    assert WaitsOnOutside.overlap.most >= 2
