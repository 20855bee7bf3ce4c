from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from mmats.data import to_arrays
from mmats.engine.backtest import BacktestEngine, EngineSetup
from mmats.errors import StrategyError
from mmats.execution.simulated import FixedBpsSlippage, PercentCommission
from mmats.model import MarketType, Order, SignalAction, TradeSignal, default_instrument
from mmats.research.runconfig import BacktestConfig, load_run_data, run_backtest
from mmats.risk.minimal import MinimalRiskGate
from mmats.strategy import IStrategy, StrategyContext
from tests.conftest import shared_file

INST = default_instrument("TEST/USDT", MarketType.CRYPTO)


def frame(closes: list[float], opens: list[float] | None = None) -> pd.DataFrame:
    idx = pd.date_range("2024-01-01", periods=len(closes), freq="1min", tz="UTC", name="ts")
    opens = opens or closes
    return pd.DataFrame({"open": opens, "high": [max(o, c) + 1 for o, c in zip(opens, closes, strict=True)],
                         "low": [min(o, c) - 1 for o, c in zip(opens, closes, strict=True)], "close": closes,
                         "volume": [1000.0] * len(closes)}, index=idx)


class Scripted(IStrategy):
    """Emits pre-scripted signals at given bar indices and records what it saw."""

    name = "scripted"
    default_params: ClassVar[dict[str, Any]] = {}

    def __init__(self, script: dict[int, TradeSignal], indicators: list[str] | None = None) -> None:
        super().__init__()
        self.script = script
        self.indicators = indicators or []
        self.seen: list[tuple[float, Any]] = []
        self.n = 0
        self.filled: list[Order] = []
        self.rejected: list[tuple[Order, str]] = []

    def get_required_indicators(self) -> list[str]:
        return self.indicators

    def on_bar(self, context: StrategyContext) -> TradeSignal | None:
        self.seen.append((context.bar.close, context.time))
        sig = self.script.get(self.n)
        self.n += 1
        return sig

    def on_order_filled(self, order: Order) -> None:
        self.filled.append(order)

    def on_order_rejected(self, order: Order, reason: str) -> None:
        self.rejected.append((order, reason))


def run(strategy: IStrategy, df: pd.DataFrame, **setup: Any) -> Any:
    engine = BacktestEngine(strategy, to_arrays(df), EngineSetup(INST, **setup), {"strategy": "test"})
    return engine.run()


def test_signal_on_close_fills_at_next_open_and_equity_matches_hand_calculation() -> None:
    closes = [100.0, 101.0, 102.0, 104.0, 103.0]
    opens = [100.0, 100.5, 101.5, 103.0, 104.0]
    strat = Scripted({1: TradeSignal(SignalAction.BUY, "TEST/USDT", 0.5),
                      3: TradeSignal(SignalAction.CLOSE, "TEST/USDT")})
    res = run(strat, frame(closes, opens), initial_cash=1000.0)
    assert [f.price for f in res.fills] == [Decimal("101.50"), Decimal("104.00")]
    qty = res.fills[0].quantity
    assert qty == INST.round_quantity(0.5 * 1000.0 / 101.0)  # sized on the close the strategy saw
    cash_after_buy = 1000.0 - float(qty) * 101.5
    expected = [1000.0, 1000.0, cash_after_buy + float(qty) * 102.0, cash_after_buy + float(qty) * 104.0,
                cash_after_buy + float(qty) * 104.0]
    np.testing.assert_allclose(res.equity, expected, rtol=0, atol=1e-9)
    assert len(res.trades) == 1 and res.trades[0].pnl == pytest.approx(float(qty) * 2.5)
    assert res.summary["reconciled"] and len(strat.filled) == 2


def test_strategy_never_sees_a_future_bar() -> None:
    df = frame([float(100 + i) for i in range(20)])
    strat = Scripted({}, ["SMA_3"])
    run(strat, df)
    times = [t for _, t in strat.seen]
    assert times == sorted(times) and len(times) == 18  # SMA_3 warm-up: 2 bars skipped
    assert [c for c, _ in strat.seen] == [float(100 + i) for i in range(2, 20)]


def test_stop_loss_becomes_a_child_order_that_fills() -> None:
    closes = [100.0, 100.0, 100.0, 90.0, 90.0]
    opens = [100.0, 100.0, 100.0, 99.0, 90.0]
    strat = Scripted({0: TradeSignal(SignalAction.BUY, "TEST/USDT", 1.0, stop_loss=95.0)})
    res = run(strat, frame(closes, opens))
    kinds = {o.client_order_id.rsplit("-", 1)[-1]: o for o in res.orders}
    stops = [o for o in res.orders if o.order_type.value == "STOP"]
    assert stops and stops[0].status.value == "FILLED" and stops[0].reduce_only
    assert res.fills[-1].price == Decimal("95.00")
    assert res.summary["open_position"] is None and kinds


def test_risk_rejection_reaches_the_strategy_and_the_result() -> None:
    strat = Scripted({0: TradeSignal(SignalAction.BUY, "TEST/USDT", 1.0)})
    res = run(strat, frame([100.0] * 5), gate=MinimalRiskGate(max_position_pct=1.0, max_order_notional=1.0))
    assert strat.rejected and "MaxOrderNotional" in strat.rejected[0][1]
    assert res.decisions[0].status.value == "REJECTED" and not res.fills


def test_gate_resizes_to_the_position_limit() -> None:
    strat = Scripted({0: TradeSignal(SignalAction.BUY, "TEST/USDT", 1.0)})
    res = run(strat, frame([100.0] * 5), gate=MinimalRiskGate(max_position_pct=0.25))
    assert res.decisions[0].status.value == "RESIZED"
    assert res.fills[0].quantity * Decimal(100) <= Decimal(2500)


def test_signal_for_another_symbol_and_undeclared_indicator_are_clear_errors() -> None:
    with pytest.raises(StrategyError, match="signalled 'ETH'"):
        run(Scripted({0: TradeSignal(SignalAction.BUY, "ETH")}), frame([100.0] * 3))

    class Sneaky(Scripted):
        def on_bar(self, context: StrategyContext) -> TradeSignal | None:
            context.indicators["RSI_14"]
            return None

    with pytest.raises(StrategyError, match="RSI_14"):
        run(Sneaky({}), frame([100.0] * 3))


def test_same_inputs_give_byte_identical_json() -> None:
    cfg = BacktestConfig(strategy="sma_cross", params={"fast": 5, "slow": 20}, generated={"bars": 5000, "seed": 3},
                         commission={"model": "percent", "taker_bps": 10}, slippage={"model": "fixed", "bps": 2})
    a = run_backtest(cfg).to_json()
    b = run_backtest(cfg).to_json()
    assert a == b and '"trades"' in a
    assert run_backtest(cfg.model_copy(update={"params": {"fast": 6, "slow": 20}})).to_json() != a


def test_costs_reduce_the_result() -> None:
    base = BacktestConfig(strategy="sma_cross", generated={"bars": 5000, "seed": 1})
    free = run_backtest(base)
    costly = run_backtest(BacktestConfig.model_validate({
        **base.model_dump(), "commission": {"model": "percent", "taker_bps": 10},
        "slippage": {"model": "fixed", "bps": 5}}))
    assert costly.summary["fees"] > 0 and free.summary["fees"] == 0
    assert costly.equity[-1] < free.equity[-1]


@pytest.mark.parametrize("strategy,params", [
    ("sma_cross", {"fast": 10, "slow": 30}),
    ("rsi_reversion", {"period": 14, "oversold": 25, "exit": 55, "stop_pct": 0.02}),
    ("donchian_breakout", {"entry": 60, "exit": 30}),
])
def test_shipped_strategies_on_real_btc_minutes(strategy: str, params: dict[str, Any]) -> None:
    path = shared_file("crypto_BTCPERP_1m.parquet")
    cfg = BacktestConfig(strategy=strategy, params=params, data=str(path), volume_in_quote=True,
                         commission={"model": "percent", "taker_bps": 10}, slippage={"model": "fixed", "bps": 2})
    res = run_backtest(cfg)
    doc = res.to_dict()
    assert res.summary["reconciled"], res.summary
    assert doc["metrics"]["num_trades"] > 10
    assert set(doc["metrics"]) == set(doc["benchmark"])
    assert doc["trades"][0]["entry_time"].endswith("Z")
    assert all(f["fee"] != "0" for f in doc["fills"])
    # Ledger and trade list agree: realized P&L minus fees equals the sum of closed trades' P&L.
    closed = sum(t.pnl for t in res.trades)
    open_fees = sum(float(f.fee) for f in res.fills[-1:]) if res.summary["open_position"] else 0.0
    assert closed == pytest.approx(res.summary["realized_pnl"] - res.summary["fees"] + open_fees, abs=1e-6)


def test_load_run_data_reports_generated_bars() -> None:
    cfg = BacktestConfig(strategy="sma_cross", generated={"bars": 100})
    arrays, inst, warnings, resolved = load_run_data(cfg)
    assert len(arrays) == 100 and "generated" in warnings[0] and resolved["market"] == "crypto"
    assert not math.isnan(arrays.close[-1]) and inst.symbol == "SYNTH/USDT"


def test_commission_and_slippage_objects_plug_in() -> None:
    strat = Scripted({0: TradeSignal(SignalAction.BUY, "TEST/USDT", 0.5)})
    res = run(strat, frame([100.0] * 4), commission=PercentCommission(10), slippage=FixedBpsSlippage(10))
    assert res.fills[0].price == Decimal("100.10") and res.fills[0].fee > 0
