"""Parity of the portfolio backtest with the running system: one config, two symbols, three strategies
(one on 15-minute bins of the feed's minute bars) replayed through the actors in lockstep on a real Ray
cluster, and run by ``mmats.engine.portfolio_backtest`` in one process: the same orders, fills and equity."""

from __future__ import annotations

import tempfile
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
import ray

from actors.supervisor import SupervisorActor
from mmats.engine.portfolio_backtest import run_portfolio_backtest
from mmats.system_config import SystemConfig

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

SYMBOLS = ["AAA/USDT", "BBB/USDT"]


def config() -> dict[str, Any]:
    name = f"pf{uuid.uuid4().hex[:10]}"
    return {
        "environment": "PAPER", "mode": "operator", "allow_operator": True, "initial_cash": 100_000.0,
        "system_name": name, "home": tempfile.mkdtemp(prefix=f"mmats-{name}-"), "persist": False,
        "feeds": [{"venue": "replay", "market": "crypto", "generated_symbols": SYMBOLS, "generated_bars": 600,
                   "pace": "lockstep"}],
        "costs": {"commission": {"model": "percent", "taker_bps": 10.0}, "slippage": {"model": "fixed", "bps": 2.0}},
        "strategies": [
            {"id": "trend", "ref": "sma_cross", "symbols": SYMBOLS, "params": {"fast": 5, "slow": 20},
             "allocation": 0.3},
            {"id": "revert", "ref": "rsi_reversion", "symbols": ["AAA/USDT"], "params": {"oversold": 40, "exit": 55},
             "allocation": 0.3},
            {"id": "binned", "ref": "sma_cross", "symbols": ["BBB/USDT"], "params": {"fast": 2, "slow": 5},
             "timeframe": "15m", "allocation": 0.3},
        ],
    }


def replay(cfg: dict[str, Any], timeout: float = 180) -> tuple[list[dict[str, Any]], dict[str, Any], list[Any]]:
    sup = SupervisorActor.options(name=f"{cfg['system_name']}_supervisor").remote(cfg)
    ray.get(sup.build.remote())
    ray.get(sup.start.remote())
    handles = ray.get(sup.handles.remote())
    feed = next(iter(handles["feeds"].values()))
    try:
        deadline = time.time() + timeout
        while time.time() < deadline and not ray.get(feed.stats.remote())["done"]:
            time.sleep(0.2)
        stats = ray.get(feed.stats.remote())
        assert stats["done"], f"replay did not finish in {timeout} s: {stats}"
        assert stats["lockstep_timeouts"] == 0  # every timestamp was acknowledged: the replay was exact
        time.sleep(1.0)  # the last fills reach the portfolio
        orders = ray.get(handles["router"].orders.remote())
        status = ray.get(handles["portfolio"].status.remote())
        fills = ray.get(handles["portfolio"].recent_fills.remote(100_000))
    finally:
        ray.get(sup.down.remote())
        for h in [handles["gatekeeper"], handles["router"], handles["portfolio"], *handles["feeds"].values(),
                  *handles["strategies"].values(), sup]:
            ray.kill(h)
    return orders, status, fills


def test_the_portfolio_backtest_reproduces_the_lockstep_actor_replay() -> None:
    raw = config()
    orders, status, fills = replay(raw)
    bt = run_portfolio_backtest(SystemConfig.model_validate(raw))

    def order_key(o: dict[str, Any]) -> tuple[str, str, str, str, str]:
        return (o["client_order_id"], o["side"], o["filled_quantity"], o["avg_fill_price"] or "", o["status"])

    expected_orders = sorted(order_key(o.to_dict()) for o in bt.orders if o.status.value != "REJECTED")
    got_orders = sorted(order_key(o) for o in orders)
    assert len(expected_orders) > 20
    assert {o["strategy_id"] for o in orders} == {"trend", "revert", "binned"}
    assert got_orders == expected_orders

    def fill_key(f: dict[str, Any]) -> tuple[str, str, str, str, str]:
        return (f["client_order_id"], f["side"], f["quantity"], f["price"], f["fee"])

    assert sorted(fill_key(f) for f in fills) == sorted(fill_key(f.to_dict()) for f in bt.fills)
    assert Decimal(status["equity"]) == pytest.approx(Decimal(repr(bt.summary["final_equity"])), abs=Decimal("0.01"))
    assert float(status["equity"]) == pytest.approx(float(bt.equity[-1]), abs=1e-6)
