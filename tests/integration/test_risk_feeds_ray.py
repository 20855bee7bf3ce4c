"""The gatekeeper actor is fed what its risk settings read: bars (ATR, correlation) and closed trades (Kelly),
and it aggregates the signals of one bar when an aggregation mode is configured."""

from __future__ import annotations

from typing import Any

import pytest
import ray

from tests.integration.test_runtime_ray import SYMBOL, run_system, stop, system_config

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

OTHER = "SYNTH2/USDT"


def test_bars_and_closed_trades_reach_the_gatekeeper() -> None:
    strategies = [
        {"id": "trend", "ref": "sma_cross", "symbols": [SYMBOL], "params": {"fast": 5, "slow": 20}},
        {"id": "vol", "ref": "sma_cross", "symbols": [OTHER], "params": {"fast": 3, "slow": 12}},
    ]
    cfg = system_config(strategies, 600)
    cfg["feeds"][0]["generated_symbols"] = [SYMBOL, OTHER]
    cfg["risk"] = {
        "correlation": {"threshold": 0.8, "window": 30, "min_observations": 10},
        "sizing": {"strategies": {"trend": {"method": "kelly", "min_trades": 2, "fallback_fraction": 0.1},
                                  "vol": {"method": "volatility_target", "atr_period": 14}}},
    }
    sup, handles = run_system(cfg)
    try:
        gk = handles["gatekeeper"]
        inputs: dict[str, Any] = ray.get(gk.risk_inputs.remote())
        decisions = ray.get(gk.get_decisions.remote())
        stats = ray.get(handles["portfolio"].strategy_stats.remote())
    finally:
        stop(sup, handles)
    assert inputs["returns"] == {SYMBOL: 30, OTHER: 30}  # every bar of both symbols, a full window
    assert set(inputs["atr"]) == {SYMBOL, OTHER} and all(v[14] > 0 for v in inputs["atr"].values())
    kelly = inputs["trades"]["trend"]
    assert 1 <= kelly["trades"] <= stats["trend"]["trades"]  # the portfolio's closed trips reached Kelly
    vol = [d for d in decisions if d["strategy_id"] == "vol" and d["status"] != "REJECTED"]
    assert vol and all(float(d["quantity"]) > 0 for d in vol)  # sized from the fed ATR, not 0


def test_signals_of_one_bar_are_aggregated_by_the_actor() -> None:
    strategies = [
        {"id": "fast", "ref": "sma_cross", "symbols": [SYMBOL], "params": {"fast": 3, "slow": 10}},
        {"id": "slow", "ref": "sma_cross", "symbols": [SYMBOL], "params": {"fast": 5, "slow": 20}},
    ]
    cfg = system_config(strategies, 500)
    cfg["risk"] = {"aggregation": {"mode": "WEIGHTED", "weights": {"fast": 1.0, "slow": 3.0}}}
    sup, handles = run_system(cfg)
    try:
        decisions = ray.get(handles["gatekeeper"].get_decisions.remote())
        signals = ray.get(handles["gatekeeper"].get_signals.remote())
        orders = ray.get(handles["router"].orders.remote())
    finally:
        stop(sup, handles)
    assert decisions and {d["strategy_id"] for d in decisions} == {"agg:weighted"}
    assert {s["strategy_id"] for s in signals} >= {"fast", "slow", "agg:weighted"}  # members recorded
    assert orders and {o["strategy_id"] for o in orders} == {"agg:weighted"}
