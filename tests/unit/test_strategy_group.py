"""Several strategies in one host (mmats.engine.strategy_group): each computes what it would alone, a
raising member disables only itself, and a member is replaced between two batches."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from mmats.data import generate_bars, to_arrays
from mmats.engine.actor_settings import HostSettings, StrategySettings
from mmats.engine.strategy_group import StrategyGroup, tail
from mmats.engine.strategy_host import BarTuple
from mmats.errors import StrategyError
from mmats.messages import OrderOutcomes
from mmats.model import AccountState, Order, OrderType, Side

RAISES = f"{Path(__file__).resolve().parents[1] / 'fixtures' / 'faulty_strategies.py'}:AlwaysRaises"


def _bars(n: int = 400) -> list[BarTuple]:
    out: list[BarTuple] = []
    for seed, sym in enumerate(["A/USDT", "B/USDT"]):
        a = to_arrays(generate_bars(n, seed=seed + 7))
        out += [(sym, int(t), o, h, lo, c, v) for t, o, h, lo, c, v in
                zip(a.ts_ns, a.open, a.high, a.low, a.close, a.volume, strict=True)]
    return sorted(out, key=lambda b: (b[1], b[0]))


def _st(sid: str, ref: str = "sma_cross", symbols: tuple[str, ...] = ("A/USDT",), **params: int) -> StrategySettings:
    defaults = {"fast": 5, "slow": 20} if ref == "sma_cross" else {}
    return StrategySettings(sid, ref, dict(params or defaults), list(symbols), "crypto")


def _signals(group: StrategyGroup, bars: list[BarTuple], step: int = 7) -> list[tuple[str, str, int, str]]:
    out = []
    for i in range(0, len(bars), step):
        signals, _ = group.on_bars(bars[i:i + step])
        out += [(p.strategy_id, p.signal.symbol, p.ts_ns, p.signal.action.value) for p in signals]
    return out


def test_each_member_of_a_pool_signals_exactly_as_it_would_alone() -> None:
    bars = _bars()
    members = [_st("a", fast=5, slow=20), _st("b", symbols=("B/USDT",), fast=3, slow=12),
               _st("c", symbols=("A/USDT", "B/USDT"), fast=8, slow=30)]
    alone = []
    for m in members:
        single = StrategyGroup([m])
        single.warm(bars[:100])
        alone += _signals(single, bars[100:])
    pool = StrategyGroup(members)
    pool.warm(bars[:100])
    pooled = _signals(pool, bars[100:])
    assert len(pooled) > 10
    assert sorted(pooled) == sorted(alone)
    assert pool.feed_symbols == ["A/USDT", "B/USDT"] and pool.ids == ("a", "b", "c")
    assert pool.seen == {"A/USDT": bars[-1][1], "B/USDT": bars[-1][1]}


def test_a_raising_member_disables_only_itself() -> None:
    bars = _bars()
    pool = StrategyGroup([_st("good"), _st("bad", ref=RAISES)])
    disabled: list[tuple[str, str]] = []
    signals = []
    for i in range(0, len(bars), 5):
        out, off = pool.on_bars(bars[i:i + 5])
        signals += out
        disabled += off
    assert [sid for sid, _ in disabled] == ["bad"] and "boom" in disabled[0][1]
    assert not pool.member("bad").enabled and pool.member("bad").errors_total >= 5
    assert pool.member("good").enabled and pool.member("good").errors_total == 0
    assert {p.strategy_id for p in signals} == {"good"}


def test_an_error_outside_the_strategy_code_disables_that_member_only() -> None:
    pool = StrategyGroup([_st("good"), _st("broken")])
    broken = pool.member("broken")

    def explode(batch: list[BarTuple]) -> tuple[list[object], bool]:
        raise ValueError("indicator state corrupt")

    broken.on_bars = explode  # type: ignore[method-assign]
    _, disabled = pool.on_bars(_bars(50))
    assert disabled == [("broken", broken.last_error)] and "indicator state corrupt" in broken.last_error
    assert not broken.enabled and pool.member("good").enabled


def test_outcomes_reach_the_member_they_name_and_unknown_ids_are_refused() -> None:
    pool = StrategyGroup([_st("a"), _st("b")])
    account = AccountState(1, "USD", Decimal(5), Decimal(5))
    pool.on_orders(OrderOutcomes("b", account=account))
    assert pool.member("b").account is account and pool.member("a").account is None
    pool.on_orders(OrderOutcomes("gone", [Order("x", "A/USDT", Side.BUY, Decimal(1), OrderType.MARKET)]))
    with pytest.raises(StrategyError, match="name the strategy"):
        pool.member(None)
    with pytest.raises(StrategyError, match="not in this host"):
        pool.member("zzz")
    with pytest.raises(ValueError, match="twice"):
        StrategyGroup([_st("a"), _st("a")])
    with pytest.raises(ValueError, match="hosts no strategy"):
        HostSettings("host:x", [])


def test_a_member_is_replaced_between_two_batches_and_a_failing_version_is_refused() -> None:
    bars = _bars()
    pool = StrategyGroup([_st("a"), _st("b", symbols=("B/USDT",))])
    pool.warm(bars[:200])
    pool.on_bars(bars[200:300])
    account = AccountState(1, "USD", Decimal(5), Decimal(5))
    pool.on_orders(OrderOutcomes("a", account=account))
    new = pool.replace(_st("a", fast=3, slow=10), bars)  # history beyond what the pool saw is ignored
    assert pool.member("a") is new and new.account is account
    assert new.last_bar_ns == max(b[1] for b in bars[:300] if b[0] == "A/USDT")
    assert pool.settings["a"].params == {"fast": 3, "slow": 10}
    # The replaced version now computes what a fresh strategy warmed on the same bars computes.
    fresh = StrategyGroup([_st("a", fast=3, slow=10)])
    fresh.warm(tail(bars[:300], ["A/USDT"], 2_000))
    single = StrategyGroup([_st("b", symbols=("B/USDT",))])
    single.warm(bars[:300])
    assert sorted(_signals(pool, bars[300:])) == sorted(_signals(fresh, bars[300:]) + _signals(single, bars[300:]))
    with pytest.raises(StrategyError, match="failed during warm-up"):
        pool.replace(_st("a", ref=RAISES), bars)
    with pytest.raises(StrategyError, match="a"):
        pool.replace(_st("a", ref="no_such_strategy"), bars)
    assert pool.settings["a"].params == {"fast": 3, "slow": 10}  # the running version stayed
