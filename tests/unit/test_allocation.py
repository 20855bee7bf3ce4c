"""Capital allocation between strategies: weights by method, the bar-time schedule, bounds, bad config,
and the effect on the size of the orders the signal path sends."""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from mmats.allocation import AccountAllocation, AllocationConfig, CapitalAllocator, HoldingsPnL, duration_ns
from mmats.engine.signal_path import PendingSignal, SignalPath
from mmats.errors import ConfigError
from mmats.model import AccountState, MarketType, PositionSnapshot, SignalAction, TradeSignal, default_instrument
from mmats.risk.gatekeeper import RiskGatekeeper, system_risk_config
from mmats.system_config import load_system_config

H = 3_600_000_000_000
DAY = 24 * H
T0 = 1_700_006_400_000_000_000  # a UTC midnight (2023-11-15)


def _allocator(strategies: list[str], **cfg: Any) -> CapitalAllocator:
    return CapitalAllocator(AllocationConfig.model_validate(cfg), strategies)


def _drive(alloc: CapitalAllocator, hours: range, capital_returns: Callable[[int], dict[str, float]]) -> list[Any]:
    """Hourly bars; each strategy's P&L is its return on capital times its weight (what a strategy whose
    positions scale with its capital makes), reported as P&L / equity."""
    changes = []
    for h in hours:
        rets = {s: r * alloc.weights[s] for s, r in capital_returns(h).items()}
        change = alloc.on_bar(T0 + h * H, rets)
        if change is not None:
            changes.append((h, change))
    return changes


def _alternating(**size: float) -> Callable[[int], dict[str, float]]:
    return lambda h: {s: x if h % 2 == 0 else -x for s, x in size.items()}


def test_initial_weights_named_and_the_rest_shared() -> None:
    a = _allocator(["a", "b", "c"], method="fixed", weights={"a": 0.4})
    assert a.weights == {"a": 0.4, "b": pytest.approx(0.3), "c": pytest.approx(0.3)}
    assert _allocator(["a", "b"], method="fixed", total=0.5).weights == {"a": 0.25, "b": 0.25}


def test_fixed_weights_never_move() -> None:
    a = _allocator(["a", "b"], method="fixed", weights={"a": 0.7, "b": 0.3})
    assert _drive(a, range(24 * 10), _alternating(a=0.05, b=0.001)) == []
    assert a.weights == {"a": 0.7, "b": 0.3} and a.rebalances == 0


def test_inverse_vol_weights_by_hand() -> None:
    """a's returns on capital swing +-2 %, b's +-1 %: sigma_a = 2 sigma_b, so w = (1/2, 1) / 1.5."""
    a = _allocator(["a", "b"], method="inverse_vol", min_history=4)
    [(hour, change)] = _drive(a, range(0, 49), _alternating(a=0.02, b=0.01))
    assert hour == 24  # the first midnight after the start; 48 rebalances again but changes nothing
    assert change.previous == {"a": 0.5, "b": 0.5}
    assert change.weights == pytest.approx({"a": 1 / 3, "b": 2 / 3}, abs=1e-9)
    assert change.detail["a"]["samples"] == 24
    assert change.detail["a"]["volatility"] == pytest.approx(0.02 * math.sqrt(24 / 23))
    assert a.rebalances == 2 and a.changes == 1


def test_performance_weights_by_hand_with_a_floor() -> None:
    """Sharpe (mean / sd of returns on capital): a 0.02 / s, b 0.01 / s, c < 0 -> 0. c is floored at
    min_weight 0.1 and the other 0.9 split 2 : 1."""
    def rets(h: int) -> dict[str, float]:
        up = h % 2 == 0
        return {"a": 0.03 if up else 0.01, "b": 0.02 if up else 0.0, "c": -0.01 if up else -0.03}

    a = _allocator(["a", "b", "c"], method="performance", min_history=4, min_weight=0.1)
    [(_, change)] = _drive(a, range(0, 25), rets)
    assert change.weights == pytest.approx({"a": 0.6, "b": 0.3, "c": 0.1}, abs=1e-9)
    s = math.sqrt(24 / 23) * 0.01
    assert change.detail["a"]["sharpe"] == pytest.approx(0.02 / s)
    assert change.detail["c"]["sharpe"] < 0
    assert math.isclose(sum(change.weights.values()), 1.0)


def test_max_weight_caps_and_the_rest_goes_to_the_others() -> None:
    """Unbounded inverse vol gives a 0.8 (sigma_b = 4 sigma_a); max_weight 0.6 caps it, b takes 0.4."""
    a = _allocator(["a", "b"], method="inverse_vol", min_history=4, max_weight=0.6)
    [(_, change)] = _drive(a, range(0, 25), _alternating(a=0.01, b=0.04))
    assert change.weights == pytest.approx({"a": 0.6, "b": 0.4}, abs=1e-9)


def test_every_weight_capped_leaves_the_rest_in_cash() -> None:
    a = _allocator(["a", "b"], method="inverse_vol", min_history=4, weights={"a": 0.3, "b": 0.3}, max_weight=0.3)
    assert _drive(a, range(0, 25), _alternating(a=0.01, b=0.04)) == []  # both pinned at 0.3: no change
    assert a.rebalances == 1 and a.weights == {"a": 0.3, "b": 0.3}


def test_rebalances_only_on_schedule_in_bar_time() -> None:
    a = _allocator(["a", "b"], method="inverse_vol", rebalance_every="1d", min_history=2)
    a.on_bar(T0 + 5 * H, {})
    assert a.next_due_ns == T0 + DAY
    for h in range(6, 24):
        a.on_bar(T0 + h * H, {"a": 0.01 * (-1) ** h, "b": 0.02 * (-1) ** h})
    assert a.rebalances == 0
    # a gap in the bars: the first bar at or after midnight rebalances, the next is the next midnight
    assert a.on_bar(T0 + DAY + 3 * H, {"a": 0.01, "b": 0.02}) is not None
    assert a.rebalances == 1 and a.last_rebalance_ns == T0 + DAY + 3 * H
    assert a.next_due_ns == T0 + 2 * DAY
    for h in range(4, 24):
        assert a.on_bar(T0 + DAY + h * H, {"a": 0.01 * (-1) ** h, "b": 0.05 * (-1) ** h}) is None
    assert a.rebalances == 1


def test_a_strategy_with_too_little_history_keeps_its_weight() -> None:
    # 24 samples < min_history 30: nobody moves
    a = _allocator(["a", "b"], method="inverse_vol", min_history=30)
    assert _drive(a, range(0, 25), _alternating(a=0.02, b=0.01)) == []
    assert a.rebalances == 1 and a.weights == {"a": 0.5, "b": 0.5}
    # c held nothing (no variation): it keeps its third, a and b split the other two thirds by inverse vol
    b = _allocator(["a", "b", "c"], method="inverse_vol", min_history=4)
    [(_, change)] = _drive(b, range(0, 25), _alternating(a=0.02, b=0.01))
    assert change.detail["c"]["kept"].startswith("no variation")
    assert change.weights == pytest.approx({"a": 2 / 9, "b": 4 / 9, "c": 1 / 3}, abs=1e-9)


def test_the_lookback_forgets_old_returns() -> None:
    """Two days of lookback: a's wild first week no longer counts at the second week's rebalances."""
    a = _allocator(["a", "b"], method="inverse_vol", lookback="2d", min_history=4)
    _drive(a, range(0, 24 * 7), _alternating(a=0.08, b=0.01))
    assert a.weights["a"] < 0.2
    _drive(a, range(24 * 7, 24 * 14 + 1), _alternating(a=0.01, b=0.01))
    assert a.weights == pytest.approx({"a": 0.5, "b": 0.5}, abs=1e-9)


def test_samples_are_the_same_whatever_the_reporting_rate() -> None:
    """Returns are summed into samples of sample_every: 15-minute and hourly reports give one weight."""
    quarter = _allocator(["a", "b"], method="inverse_vol", min_history=4)
    hourly = _allocator(["a", "b"], method="inverse_vol", min_history=4)
    for q in range(0, 4 * 24 + 1):
        sign = 1 if (q // 4) % 2 == 0 else -1
        quarter.on_bar(T0 + q * H // 4, {"a": sign * 0.01 / 4, "b": sign * 0.005 / 4})
    for h in range(0, 25):
        sign = 1 if h % 2 == 0 else -1
        hourly.on_bar(T0 + h * H, {"a": sign * 0.01, "b": sign * 0.005})
    assert quarter.rebalances == hourly.rebalances == 1
    assert quarter.weights == pytest.approx({"a": 1 / 3, "b": 2 / 3}, abs=1e-9)
    assert hourly.weights == pytest.approx(quarter.weights, abs=1e-9)


def test_state_and_restore_keep_weights_and_schedule() -> None:
    a = _allocator(["a", "b"], method="inverse_vol", min_history=4)
    _drive(a, range(0, 25), _alternating(a=0.02, b=0.01))
    saved = a.state()
    b = _allocator(["a", "b"], method="inverse_vol", min_history=4)
    b.restore(saved)
    assert b.weights == a.weights and b.next_due_ns == T0 + 2 * DAY and b.changes == 1


def test_holdings_pnl_per_strategy() -> None:
    pnl = HoldingsPnL()
    assert pnl.update(1, {("a", "X"): 2.0, ("b", "X"): -1.0, ("b", "Y"): 4.0}, {"X": 100.0, "Y": 10.0}, 1000.0) == {}
    assert pnl.update(1, {("a", "X"): 2.0, ("b", "X"): -1.0, ("b", "Y"): 4.0}, {"X": 105.0}, 1000.0) is None
    # the move to 105 within bar time 1 is not lost: it counts in bar time 2's figure
    out = pnl.update(2, {}, {"X": 110.0, "Y": 12.0}, 1010.0)
    assert out == pytest.approx({"a": 2 * 10 / 1000, "b": (-1 * 10 + 4 * 2) / 1000})
    assert pnl.update(3, {}, {"X": 120.0}, 1010.0) == {}  # nothing held any more


def test_duration_parsing() -> None:
    assert duration_ns("30d") == 30 * DAY and duration_ns("15m") == 15 * 60 * 10**9 and duration_ns("2w") == 14 * DAY
    for bad in ("", "1.5d", "0d", "1y", "d"):
        with pytest.raises(ConfigError, match="not a duration"):
            duration_ns(bad)


# ------------------------------------------------------------------------------------ config at load

def _config(allocation: dict[str, Any], strategies: tuple[str, ...] = ("a", "b")) -> Any:
    raw = {"feeds": [{"generated_symbols": ["X/USDT"]}], "allocation": allocation,
           "strategies": [{"id": s, "ref": "sma_cross", "symbols": ["X/USDT"]} for s in strategies]}
    return load_system_config(None, raw, env={})


@pytest.mark.parametrize(("allocation", "message"), [
    ({"weights": {"a": 0.5, "zz": 0.1}}, r"weights name \['zz'\], which are not strategies"),
    ({"weights": {"a": -0.1}}, "weights must be >= 0"),
    ({"weights": {"a": 0.7, "b": 0.6}}, "add up to 1.3, more than total 1"),
    ({"weights": {"a": 0.3, "b": 0.3}, "total": 0.5}, "more than total 0.5"),
    ({"weights": {"a": 1.0}}, r"\['b'\] get no capital"),
    ({"method": "equal"}, "allocation.method"),
    ({"method": "fixed", "lookback": "7d"}, "lookback: only for methods inverse_vol and performance"),
    ({"method": "inverse_vol", "rebalance_every": "1 day"}, "allocation.rebalance_every.*not a duration"),
    ({"method": "performance", "min_weight": 0.4, "max_weight": 0.3}, "min_weight 0.4 is more than max_weight"),
    ({"method": "performance", "min_weight": 0.6}, "min_weight 0.6 for 2 strategies is more than total"),
    ({"method": "inverse_vol", "max_weight": 2}, "max_weight 2 is more than total 1"),
    ({"method": "inverse_vol", "weights": {"a": 0.8, "b": 0.2}, "max_weight": 0.5}, r"initial weights of \['a'\]"),
    ({"method": "inverse_vol", "sample_every": "2d", "lookback": "1d"}, "sample_every 2d is longer than lookback"),
    ({"method": "inverse_vol", "speed": 3}, "allocation.speed"),
])
def test_bad_allocation_config_is_refused_at_load(allocation: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(allocation)


def test_a_good_config_loads_and_survives_a_dump() -> None:
    cfg = _config({"method": "performance", "weights": {"a": 0.6}, "lookback": "14d", "min_weight": 0.05})
    assert cfg.allocation is not None and cfg.allocation.method == "performance"
    again = type(cfg).model_validate(cfg.model_dump(mode="json"))  # what mmats up hands to the supervisor
    assert again.allocation == cfg.allocation
    fixed = _config({"weights": {"a": 0.6, "b": 0.4}})
    assert type(fixed).model_validate(fixed.model_dump(mode="json")).allocation == fixed.allocation


# ------------------------------------------------------------------ effect on the orders' size

SYM = "X/USDT"
INST = {SYM: default_instrument(SYM, MarketType.CRYPTO)}


def _account(ts: int, price: float, held: dict[tuple[str, str], float]) -> AccountState:
    qty = Decimal(str(sum(held.values())))
    px = Decimal(str(price))
    cash = Decimal(100_000) - qty * Decimal(100)
    equity = cash + qty * px
    positions = (PositionSnapshot(SYM, MarketType.CRYPTO, qty, Decimal(100), px, qty * (px - 100), Decimal(0)),) \
        if qty else ()
    return AccountState(ts, "USDT", cash, equity, positions, peak_equity=equity, gross_exposure=abs(qty) * px)


def _buy(strategy: str, ts: int, price: float) -> PendingSignal:
    sig = TradeSignal(SignalAction.BUY, SYM, 1.0, strategy_id=strategy, signal_id=f"{strategy}-{ts}")
    return PendingSignal(strategy, ts, price, sig)


def _path(allocation: AccountAllocation) -> SignalPath:
    gate = RiskGatekeeper(system_risk_config(None), "PAPER", observe_equity=False)
    return SignalPath(gate, INST, allocation.allocation, advisory=False)


def _on_account(path: SignalPath, alloc: AccountAllocation, account: AccountState,
                held: dict[tuple[str, str], float], done: list[str] | None = None) -> Any:
    """What the gatekeeper actor (and the portfolio backtest) does with an account update: allocator first,
    then the signal path."""
    change = alloc.on_account_state(account, account.ts_ns, held, path.allocation)
    path.on_account(account, account.ts_ns, held, done)
    return change


def test_two_strategies_with_the_same_signal_get_sizes_by_their_weights() -> None:
    alloc = AccountAllocation(AllocationConfig(method="fixed", weights={"a": 0.3, "b": 0.1}), {"a": 1.0, "b": 2.0})
    assert alloc.allocation == {"a": 0.3, "b": 0.2}  # b's own allocation multiplier times its weight
    path = _path(alloc)
    _on_account(path, alloc, _account(T0, 100.0, {}), {})
    out = path.on_signals([_buy("a", T0, 100.0), _buy("b", T0, 100.0)])
    sizes = {o.strategy_id: o.quantity for o, _ in out.submits}
    assert sizes == {"a": Decimal(300), "b": Decimal(200)}  # 100,000 x 0.3 / 100 and 100,000 x 0.1 x 2 / 100


def test_a_rebalance_changes_the_next_orders_size() -> None:
    """a holds 20 units, b 2: the same price swings make a's returns on capital 10x b's, so inverse vol
    moves b from 0.1 to 0.2 x 10/11 of the equity at the first midnight; b's next BUY is sized on that."""
    alloc = AccountAllocation(AllocationConfig(method="inverse_vol", total=0.2, min_history=4), {"a": 1.0, "b": 1.0})
    path = _path(alloc)
    held = {("a", SYM): 20.0, ("b", SYM): 2.0}
    for h in range(24):
        assert _on_account(path, alloc, _account(T0 + h * H, 100.0 + h % 2, held), held) is None
    [(before, _)] = path.on_signals([_buy("b", T0 + 23 * H, 101.0)]).submits
    equity = 100_000 + 22 * 1.0
    assert float(before.quantity) == pytest.approx(0.1 * equity / 101.0 - 2, abs=1e-4)
    change = _on_account(path, alloc, _account(T0 + 24 * H, 100.0, held), held, done=[before.client_order_id])
    assert change is not None and change.weights == pytest.approx({"a": 0.2 / 11, "b": 2 / 11}, abs=1e-9)
    assert path.allocation == pytest.approx({"a": 0.2 / 11, "b": 2 / 11}, abs=1e-9)
    [(after, _)] = path.on_signals([_buy("b", T0 + 24 * H, 100.0)]).submits
    assert float(after.quantity) == pytest.approx(2 / 11 * 100_000 / 100.0 - 2, abs=1e-4)
    assert after.quantity > before.quantity * Decimal("1.8")
