"""Position sizing: each method, leverage, lot/min-notional rounding, and the cap as a property."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmats.model import default_instrument
from mmats.risk.limits import FixedFractionalSpec, KellySpec, RiskPerTradeSpec, VolatilityTargetSpec
from mmats.risk.sizing import TradeStats, kelly_fraction, size_position, target_notional

BTC = default_instrument("BTC/USDT", "crypto")
AAPL = default_instrument("AAPL", "stock")


def test_fixed_fractional_commits_margin_and_leverage_multiplies_it() -> None:
    r = size_position(FixedFractionalSpec(fraction=0.1), 10_000, 100.0, AAPL)
    assert r.quantity == 10 and r.method == "fixed_fractional"
    lev = size_position(FixedFractionalSpec(fraction=0.1, leverage=3, max_fraction=1), 10_000, 100.0, AAPL)
    assert lev.quantity == 30
    capped = size_position(FixedFractionalSpec(fraction=0.8, leverage=3, max_fraction=0.5), 10_000, 100.0, AAPL)
    assert capped.quantity == 150 and "capped" in capped.detail


def test_risk_per_trade_sizes_by_distance_to_the_stop_and_leverage_only_raises_the_cap() -> None:
    spec = RiskPerTradeSpec(method="risk_per_trade", risk_pct=0.02)
    r = size_position(spec, 10_000, 100.0, AAPL, stop_loss=95.0)  # 200 at risk / 5 per share
    assert r.quantity == 40
    assert size_position(spec, 10_000, 100.0, AAPL, stop_loss=99.0).quantity == 100  # cap 1 x equity
    lev = RiskPerTradeSpec(method="risk_per_trade", risk_pct=0.02, leverage=4)
    assert size_position(lev, 10_000, 100.0, AAPL, stop_loss=99.0).quantity == 200
    assert size_position(spec, 10_000, 100.0, AAPL).quantity == 0  # no stop: no size
    assert size_position(spec, 10_000, 100.0, AAPL, stop_loss=100.0).quantity == 0


def test_volatility_target_uses_atr() -> None:
    spec = VolatilityTargetSpec(method="volatility_target", risk_fraction=0.01, atr_multiple=2)
    r = size_position(spec, 10_000, 100.0, AAPL, atr=2.5)  # 100 / (2.5 x 2) = 20 shares
    assert r.quantity == 20
    none = size_position(spec, 10_000, 100.0, AAPL)
    assert none.quantity == 0 and "ATR" in none.detail


def test_fractional_kelly_from_the_realized_record() -> None:
    assert kelly_fraction(0.6, 1.0) == pytest.approx(0.2)
    assert kelly_fraction(0.3, 1.0) < 0 and kelly_fraction(0.5, 0) == 0
    stats = TradeStats()
    for pnl in [20, 20, 20, -10, -10] * 5:  # W = 0.6, payoff 2 -> f* = 0.4
        stats.record(pnl)
    assert stats.trades == 25 and stats.win_rate == pytest.approx(0.6) and stats.payoff == pytest.approx(2)
    spec = KellySpec(method="kelly", kelly_fraction=0.5, cap=0.25, min_trades=20)
    notional, _ = target_notional(spec, 10_000, 100.0, stats=stats)
    assert notional == pytest.approx(2000)  # half Kelly 0.2
    tight = KellySpec(method="kelly", kelly_fraction=1.0, cap=0.25, min_trades=20)
    assert target_notional(tight, 10_000, 100.0, stats=stats)[0] == pytest.approx(2500)  # capped
    fresh, note = target_notional(spec, 10_000, 100.0, stats=TradeStats())
    assert fresh == pytest.approx(200) and "fallback" in note


def test_min_notional_and_lot_rounding() -> None:
    tiny = size_position(FixedFractionalSpec(fraction=0.0001), 10_000, 30_000.0, BTC)  # 1 USDT < min 5
    assert tiny.quantity == 0
    r = size_position(FixedFractionalSpec(fraction=0.1), 10_000, 30_000.0, BTC)
    assert r.quantity == Decimal("0.033333")


SPECS = st.one_of(
    st.builds(FixedFractionalSpec, fraction=st.floats(0.001, 5), leverage=st.floats(1, 10),
              max_fraction=st.floats(0.01, 2)),
    st.builds(KellySpec, method=st.just("kelly"), kelly_fraction=st.floats(0.01, 1), cap=st.floats(0.01, 3),
              min_trades=st.integers(1, 10), fallback_fraction=st.floats(0, 2), leverage=st.floats(1, 10),
              max_fraction=st.floats(0.01, 2)),
    st.builds(VolatilityTargetSpec, method=st.just("volatility_target"), risk_fraction=st.floats(0.001, 1),
              atr_multiple=st.floats(0.1, 5), leverage=st.floats(1, 10), max_fraction=st.floats(0.01, 2)),
    st.builds(RiskPerTradeSpec, method=st.just("risk_per_trade"), risk_pct=st.floats(0.001, 1),
              leverage=st.floats(1, 10), max_fraction=st.floats(0.01, 2)),
)


@settings(max_examples=200, deadline=None)
@given(spec=SPECS, equity=st.floats(-1000, 1e6), price=st.floats(0.01, 1e5), stop=st.floats(0.01, 1e5),
       atr=st.floats(0.0001, 1e4), pnls=st.lists(st.floats(-1000, 1000), max_size=30),
       stock=st.booleans())
def test_sizing_never_exceeds_its_cap(spec: object, equity: float, price: float, stop: float, atr: float,
                                      pnls: list[float], stock: bool) -> None:
    stats = TradeStats()
    for p in pnls:
        stats.record(p)
    inst = AAPL if stock else BTC
    r = size_position(spec, equity, price, inst, stop_loss=stop, atr=atr, stats=stats)  # type: ignore[arg-type]
    assert r.quantity >= 0 and r.quantity == inst.round_quantity(r.quantity)
    cap = Decimal(repr(spec.max_fraction)) * Decimal(repr(max(equity, 0.0))) * Decimal(repr(spec.leverage))  # type: ignore[attr-defined]
    assert r.quantity * Decimal(repr(price)) <= cap
    if r.quantity > 0:
        assert inst.meets_min_notional(r.quantity, Decimal(repr(price)))
