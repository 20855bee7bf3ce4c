"""Relative strength through the actors: a strategy on AAA/USDT compares with BBB/USDT, which it does not
trade. The strategy actor receives BBB's bars from the feed, and a lockstep paper replay places the
orders the portfolio backtest computes from the same config. A benchmark missing from the strategy's
feed is refused at submit, naming it."""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.supervisor import SupervisorActor
from mmats.engine.portfolio_backtest import run_portfolio_backtest
from mmats.system_config import SystemConfig

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

STRATEGY = '''
from typing import Any, ClassVar
from collections.abc import Mapping
from mmats.model import SignalAction, TradeSignal
from mmats.strategy import IStrategy, StrategyContext


class Outperformer(IStrategy):
    name = "outperformer"
    default_params: ClassVar[Mapping[str, Any]] = {"period": 10}

    def __init__(self) -> None:
        super().__init__()
        self._long = False

    def get_required_indicators(self) -> list[str]:
        return [f"RS_{self.params['period']}@BBB/USDT"]

    def on_bar(self, context: StrategyContext) -> TradeSignal | None:
        rs = context.indicators[f"RS_{self.params['period']}@BBB/USDT"]
        if rs > 0 and not self._long:
            self._long = True
            return TradeSignal(SignalAction.BUY, context.symbol, 1.0)
        if rs < 0 and self._long:
            self._long = False
            return TradeSignal(SignalAction.CLOSE, context.symbol, 1.0)
        return None
'''


def config(ref: str) -> dict[str, Any]:
    name = f"rs{uuid.uuid4().hex[:10]}"
    return {
        "environment": "PAPER", "mode": "operator", "allow_operator": True, "initial_cash": 100_000.0,
        "system_name": name, "home": tempfile.mkdtemp(prefix=f"mmats-{name}-"), "persist": False,
        "feeds": [{"venue": "replay", "market": "crypto", "generated_symbols": ["AAA/USDT", "BBB/USDT"],
                   "generated_bars": 500, "pace": "lockstep"},
                  {"venue": "other", "market": "crypto", "generated_symbols": ["CCC/USDT"], "generated_bars": 500}],
        "costs": {"commission": {"model": "percent", "taker_bps": 10.0}},
        "strategies": [{"id": "rs", "ref": ref, "symbols": ["AAA/USDT"], "allocation": 0.5}],
    }


def test_paper_replay_with_a_benchmark_matches_the_portfolio_backtest(tmp_path: Path) -> None:
    path = tmp_path / "outperformer.py"
    path.write_text(STRATEGY)
    raw = config(f"{path}:Outperformer")
    sup = SupervisorActor.options(name=f"{raw['system_name']}_supervisor").remote(raw)
    ray.get(sup.build.remote())
    handles = ray.get(sup.handles.remote())
    try:
        with pytest.raises(Exception, match=r"strategy rs2: benchmark BBB/USDT \(named by its indicators\) is not "
                                            r"on feed other"):
            ray.get(sup.submit_strategy.remote({"id": "rs2", "ref": f"{path}:Outperformer",
                                                "symbols": ["CCC/USDT"]}))
        health = ray.get(handles["strategies"]["rs"].health.remote())
        assert health["benchmarks"] == ["BBB/USDT"] and health["symbols"] == ["AAA/USDT"]
        ray.get(sup.start.remote())
        feeds = handles["feeds"]
        deadline = time.time() + 180
        while time.time() < deadline and not all(ray.get(f.stats.remote())["done"] for f in feeds.values()):
            time.sleep(0.2)
        assert all(ray.get(f.stats.remote())["done"] for f in feeds.values())
        time.sleep(1.0)  # the last fills reach the router
        orders = ray.get(handles["router"].orders.remote())
        health = ray.get(handles["strategies"]["rs"].health.remote())
    finally:
        ray.get(sup.down.remote())
        for h in [handles["gatekeeper"], handles["router"], handles["portfolio"], *handles["feeds"].values(),
                  *handles["strategies"].values(), sup]:
            ray.kill(h)
    # only AAA's bars reach the strategy; BBB's are its benchmark
    assert health["bars_seen"] == 500 and health["errors_total"] == 0
    bt = run_portfolio_backtest(SystemConfig.model_validate(raw))

    def key(o: dict[str, Any]) -> tuple[str, str, str, str]:
        return (o["client_order_id"], o["side"], o["filled_quantity"], o["avg_fill_price"] or "")

    expected = sorted(key(o.to_dict()) for o in bt.orders if o.status.value != "REJECTED")
    assert len(expected) > 10
    assert sorted(key(o) for o in orders) == expected
