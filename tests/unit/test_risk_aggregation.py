"""Signal aggregation modes with attribution, and the rolling correlation tracker."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmats.model import SignalAction, TradeSignal
from mmats.risk.aggregation import AggregationMode, aggregate
from mmats.risk.correlation import CorrelationTracker
from mmats.risk.gatekeeper import RiskGatekeeper


def sig(strategy: str, action: str, size: float = 1.0, conf: float = 1.0, symbol: str = "BTC/USDT",
        **kw: float) -> TradeSignal:
    return TradeSignal(SignalAction(action), symbol, size, confidence=conf, strategy_id=strategy,
                       signal_id=f"{strategy}-1", **kw)  # type: ignore[arg-type]


def test_independent_keeps_every_signal_with_its_own_attribution() -> None:
    out = aggregate([sig("a", "BUY"), sig("b", "SELL"), sig("c", "HOLD")], "independent")
    assert [(o.signal.strategy_id, o.strategies, o.shares) for o in out] == [("a", ("a",), (1.0,)),
                                                                             ("b", ("b",), (1.0,))]


def test_consensus_needs_more_than_the_threshold() -> None:
    three = [sig("a", "BUY", 0.5, stop_loss=90.0), sig("b", "BUY", 1.0, stop_loss=95.0), sig("c", "SELL")]
    out = aggregate(three, AggregationMode.CONSENSUS, consensus_threshold=0.6)
    assert len(out) == 1
    o = out[0]
    assert o.signal.action is SignalAction.BUY and o.signal.position_size == pytest.approx(0.75)
    assert o.strategies == ("a", "b") and o.attribution() == {"a": 0.5, "b": 0.5}
    assert o.signal.stop_loss == 95.0  # the tightest stop of the agreeing strategies
    assert aggregate(three, "CONSENSUS", consensus_threshold=0.7) == []
    assert aggregate([sig("a", "BUY"), sig("b", "SELL")], "CONSENSUS", consensus_threshold=0.0) == []  # tie


def test_weighted_by_confidence_and_strategy_weight() -> None:
    sigs = [sig("a", "BUY", 1.0, conf=0.8), sig("b", "SELL", 0.5, conf=0.4)]
    out = aggregate(sigs, "WEIGHTED", weights={"a": 1.0, "b": 2.0})
    o = out[0]
    # (0.8 x 1.0 - 0.8 x 0.5) / (0.8 + 0.8) = 0.25
    assert o.signal.action is SignalAction.BUY and o.signal.position_size == pytest.approx(0.25)
    assert o.attribution() == pytest.approx({"a": 0.5, "b": 0.5})
    flat = aggregate([sig("a", "BUY"), sig("b", "SELL")], "WEIGHTED")[0]
    assert flat.signal.action is SignalAction.CLOSE and flat.strategies == ("a", "b")


def test_priority_picks_the_highest_then_the_smallest_id() -> None:
    sigs = [sig("z", "SELL"), sig("a", "BUY"), sig("m", "BUY")]
    assert aggregate(sigs, "PRIORITY", priorities={"m": 5})[0].strategies == ("m",)
    assert aggregate(sigs, "PRIORITY")[0].strategies == ("a",)


def test_groups_by_symbol_in_first_seen_order_and_gatekeeper_uses_its_config() -> None:
    sigs = [sig("a", "BUY", symbol="ETH/USDT"), sig("b", "BUY"), sig("c", "BUY", symbol="ETH/USDT")]
    gk = RiskGatekeeper({"aggregation": {"mode": "consensus", "consensus_threshold": 0.5}}, "LIVE")
    out = gk.aggregate(sigs)
    assert [o.symbol for o in out] == ["ETH/USDT", "BTC/USDT"] and out[0].strategies == ("a", "c")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.sampled_from(["BUY", "SELL", "CLOSE", "HOLD"]),
                          st.floats(0, 1), st.floats(0, 1)), max_size=8, unique_by=lambda t: t[0]),
       st.sampled_from(list(AggregationMode)))
def test_attribution_is_complete_and_deterministic(items: list[tuple[str, str, float, float]],
                                                   mode: AggregationMode) -> None:
    sigs = [sig(s, a, size, conf) for s, a, size, conf in items]
    out = aggregate(sigs, mode)
    assert out == aggregate(list(reversed(sigs)), mode)  # arrival order does not matter
    active = {s for s, a, _, _ in items if a != "HOLD"}
    for o in out:
        assert set(o.strategies) <= active and abs(sum(o.shares) - 1) < 1e-9
        assert 0 <= o.signal.position_size <= 1


def test_correlation_tracker_clusters_comoving_symbols() -> None:
    tr = CorrelationTracker(threshold=0.8, window=50, min_observations=20)
    rng = random.Random(5)
    for _ in range(50):
        c = rng.gauss(0, 0.01)
        tr.update_return("BTC", c + rng.gauss(0, 0.001))
        tr.update_return("ETH", c + rng.gauss(0, 0.001))
        tr.update_return("GOLD", rng.gauss(0, 0.01))
    assert tr.members("BTC") == {"ETH"} and tr.members("GOLD") == frozenset()
    corr = tr.correlation("BTC", "ETH")
    assert corr is not None and corr > 0.9 and tr.correlation("BTC", "NOPE") is None
    v = tr.refresh()
    tr.update_price("NEW", 100.0)
    tr.update_price("NEW", 101.0)
    assert tr.refresh() == v + 1 and tr.members("NEW") == frozenset()  # too few observations
