"""Every shipped strategy in one paper system on a real Ray cluster: each receives every bar, none errors,
and each trades as its backtest does (the LLM agent on LangChain's fake chat model, deterministic too).

One system holds all of them (one actor each) on one generated symbol, replayed in lockstep. Sizing is a
share of the whole account's equity, so an order's quantity depends on the other strategies' P&L: the
quantities are compared with the portfolio backtest of the same system config (same strategies, same
bars, one account), and each strategy's decisions (which orders, which side, at which bar, at which
fill price, with which outcome) with a single-symbol backtest of that strategy alone.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import pytest
import ray

from mmats.research.runconfig import BacktestConfig, run_backtest
from tests.integration.test_runtime_ray import COSTS, SYMBOL, run_system, stop, system_config

pytest.importorskip("langchain_core")

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

BARS = 800
ALLOCATION = 0.12  # eight strategies on one account, each sized on 12 % of its equity
FAKE = "langchain_core.language_models.fake_chat_models.FakeListChatModel"

# Every shipped strategy, with parameters that trade on BARS generated bars (llm_agent added below).
SHIPPED: dict[str, dict[str, Any]] = {
    "sma_cross": {"fast": 5, "slow": 20},
    "rsi_reversion": {},
    "donchian_breakout": {},
    "macd_trend": {},
    "bollinger_reversion": {},
    "vumanchu_cipher": {},
    "active_inference": {},
}


def llm_answer(action: str, size: float) -> str:
    return json.dumps({"action": action, "size": size, "confidence": 0.5, "rationale": f"fake {action}"})


# FakeListChatModel answers its list in order whatever the prompt, so the agent is deterministic too as long
# as no call times out (a generous timeout: a fake answer takes milliseconds even on a busy machine).
LLM_PARAMS = {"model_class": FAKE, "max_calls_per_minute": 0, "every_n_bars": 4, "indicators": ["RSI_14"],
              "timeout_s": 60.0,
              "model_kwargs": {"responses": [llm_answer("BUY", 0.8), llm_answer("HOLD", 0), "not json",
                                             llm_answer("CLOSE", 0)]}}
SHIPPED["llm_agent"] = LLM_PARAMS


def order_rows(orders: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    return sorted((o["client_order_id"], o["side"], o["avg_fill_price"] or "", o["status"]) for o in orders)


def test_every_shipped_strategy_runs_as_an_actor_and_trades_as_its_backtest() -> None:
    from mmats.engine.portfolio_backtest import run_portfolio_backtest
    from mmats.system_config import SystemConfig

    specs = [{"id": ref, "ref": ref, "symbols": [SYMBOL], "params": params, "allocation": ALLOCATION}
             for ref, params in SHIPPED.items()]
    cfg = system_config(specs, BARS)
    sup, handles = run_system(cfg, timeout=150)
    try:
        health = {sid: ray.get(h.health.remote()) for sid, h in handles["strategies"].items()}
        orders = ray.get(handles["router"].orders.remote())
        feed_stats = ray.get(next(iter(handles["feeds"].values())).stats.remote())
        signals = ray.get(handles["gatekeeper"].get_signals.remote())
    finally:
        stop(sup, handles)

    assert feed_stats["lockstep_timeouts"] == 0  # every bar was acknowledged: the replay was exact
    assert set(health) == {s["id"] for s in specs}
    for sid, h in health.items():
        assert h["enabled"] and h["errors_total"] == 0, (sid, h)
        assert h["bars_seen"] == BARS, (sid, h["bars_seen"])

    # The LLM agent decided through its fake model, fell back on the answer that is not JSON, and traded.
    llm = [s for s in signals if s["strategy_id"] == "llm_agent"]
    assert {s["action"] for s in llm} == {"BUY", "HOLD", "CLOSE"}
    assert any(s["metadata"]["llm"]["fallback"] for s in llm)
    assert any(o["strategy_id"] == "llm_agent" and o["status"] == "FILLED" for o in orders)

    # One account, every strategy: the portfolio backtest of the same config gives the same orders,
    # quantities included, and the same equity.
    pbt = run_portfolio_backtest(SystemConfig.model_validate(cfg))
    paper_full = sorted((o["client_order_id"], o["side"], o["filled_quantity"], o["avg_fill_price"] or "",
                         o["status"]) for o in orders)
    pbt_full = sorted((o.client_order_id, o.side.value, str(o.filled_quantity),
                       "" if o.avg_fill_price is None else str(o.avg_fill_price), o.status.value)
                      for o in pbt.orders)
    assert {o["strategy_id"] for o in orders} == set(SHIPPED)  # every one of them traded
    assert paper_full == pbt_full

    # Each strategy alone: the same decisions as its single-symbol backtest on the same bars.
    for ref, params in SHIPPED.items():
        bt = run_backtest(BacktestConfig(strategy=ref, params=params, initial_cash=100_000.0,
                                         allocation=ALLOCATION,
                                         generated={"bars": BARS, "seed": zlib.crc32(SYMBOL.encode())},
                                         commission=COSTS["commission"], slippage=COSTS["slippage"]))
        expected = sorted((o.client_order_id, o.side.value, "" if o.avg_fill_price is None else str(o.avg_fill_price),
                           o.status.value) for o in bt.orders)
        got = order_rows([o for o in orders if o["strategy_id"] == ref])
        assert len(expected) >= 4, (ref, len(expected))
        assert got == expected, ref
