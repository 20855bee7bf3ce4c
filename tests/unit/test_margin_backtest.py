"""Margin in the single-symbol backtest, on real bars from ../shared/data.

The BTC perpetual file has no funding column (SOURCES.md), so funding comes from the config. Expected
prices and amounts are recomputed here from the bars and the fills, with the formulas of mmats/margin.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import pytest

from mmats.data import load_bars, slice_dates, to_arrays
from mmats.engine.backtest import BacktestEngine, EngineSetup
from mmats.errors import ConfigError
from mmats.execution.simulated import PercentCommission
from mmats.margin import NO_FUNDING, ConstantFunding
from mmats.model import InstrumentKind, MarketType, SignalAction, TradeSignal, default_instrument
from mmats.research.runconfig import BacktestConfig, parse_config, run_backtest
from mmats.risk.minimal import MinimalRiskGate
from mmats.strategy import IStrategy, StrategyContext
from tests.conftest import shared_file

H8 = 8 * 3600 * 1_000_000_000


class BuyAndHold(IStrategy):
    """BUY ``size`` on the first bar and hold."""

    name = "buy_and_hold"
    default_params: ClassVar[dict[str, Any]] = {}

    def __init__(self, symbol: str, size: float = 1.0) -> None:
        super().__init__()
        self.symbol = symbol
        self.size = size
        self.done = False

    def get_required_indicators(self) -> list[str]:
        return []

    def on_bar(self, context: StrategyContext) -> TradeSignal | None:
        if self.done:
            return None
        self.done = True
        return TradeSignal(SignalAction.BUY, self.symbol, self.size)


def btc_month() -> Any:
    return load_bars(shared_file("crypto_BTCPERP_1m.parquet"))


def test_funding_paid_at_every_8h_funding_time_on_real_btc_minutes() -> None:
    df = slice_dates(btc_month(), "2022-01-03", "2022-01-06")
    arrays = to_arrays(df)
    inst = default_instrument("BTCPERP", MarketType.CRYPTO)
    assert inst.kind is InstrumentKind.PERPETUAL
    engine = BacktestEngine(BuyAndHold("BTCPERP"), arrays,
                            EngineSetup(inst, 10_000.0, funding=ConstantFunding(0.0001, 8)), {})
    res = engine.run()
    [fill] = res.fills
    qty = float(fill.quantity)
    ts = arrays.ts_ns
    # hand computation: each 00/08/16 UTC after the fill bar's open, settled at the open of the first bar
    # at or after it; the position is long, so it pays qty x open x rate
    first = int(np.searchsorted(ts, fill.ts_ns))
    times = range(-(-int(ts[first]) // H8) * H8, int(ts[-1]) + 1, H8)
    expected = []
    for t in times:
        j = int(np.searchsorted(ts, t))
        expected.append(round(qty * round(float(arrays.open[j]), 2) * 0.0001, 8))
    margin = res.summary["margin"]
    assert margin["funding_payments"] == len(expected) >= 6
    assert margin["funding_paid"] == pytest.approx(sum(expected), abs=1e-6)
    assert margin["funding_received"] == 0.0
    assert margin["funding"].startswith("constant rate 0.0001 every 8h")
    assert res.summary["reconciled"]
    # the ledger's equity is the hold's value less the funding paid
    final = 10_000.0 - qty * float(fill.price) + qty * round(float(arrays.close[-1]), 2) - sum(expected)
    assert res.summary["final_equity"] == pytest.approx(final, abs=0.01)


def test_without_funding_the_result_says_so() -> None:
    cfg = BacktestConfig(strategy="sma_cross", data=str(shared_file("crypto_BTCPERP_1m.parquet")),
                         start="2022-01-03", end="2022-01-05", volume_in_quote=True)
    res = run_backtest(cfg)
    assert res.summary["margin"]["funding"] == NO_FUNDING
    assert any("funding none" in w for w in res.warnings)
    funded = run_backtest(cfg.model_copy(update={"funding": parse_config(
        {"strategy": "x", "funding": {"rate": 0.0005}}).funding}))
    assert funded.summary["margin"]["funding_payments"] > 0
    assert funded.summary["final_equity"] != res.summary["final_equity"]


def test_leveraged_long_liquidated_at_the_computed_price_on_real_btc_minutes() -> None:
    df = slice_dates(btc_month(), "2022-01-03", "2022-01-25")  # BTC fell from ~47k to ~36k
    arrays = to_arrays(df)
    inst = replace(default_instrument("BTCPERP", MarketType.CRYPTO), leverage=20.0, initial_margin=None,
                   maintenance_margin=None)
    setup = EngineSetup(inst, 10_000.0, commission=PercentCommission(4.0), allocation=10.0,
                        gate=MinimalRiskGate(max_position_pct=20.0))
    res = BacktestEngine(BuyAndHold("BTCPERP"), arrays, setup, {}).run()
    entry, liq = res.fills
    q, px, fee = float(entry.quantity), float(entry.price), float(entry.fee)
    assert q * px == pytest.approx(100_000, rel=0.01)  # 10x on margin: 10,000 could not have paid for it
    m = 0.025  # default maintenance: half the initial margin 1/20
    cash = 10_000.0 - q * px - fee
    level = -cash / (q * (1 - m))
    ts = arrays.ts_ns
    j = int(np.searchsorted(ts, entry.ts_ns))
    while arrays.low[j] > level:
        j += 1
    assert liq.ts_ns == int(ts[j])
    assert float(liq.price) == pytest.approx(min(float(arrays.open[j]), level), abs=0.006)
    assert liq.side.value == "SELL" and liq.quantity == entry.quantity
    [trade] = res.to_dict()["trades"]
    assert trade["reason"] == "liquidation"
    assert res.summary["margin"]["liquidations"] == 1 and res.summary["open_position"] is None
    [event] = res.summary["margin"]["liquidation_events"]
    assert event["trigger_price"] == pytest.approx(level)
    # what is left: the maintenance margin at the level, less the two fees
    assert res.summary["final_equity"] == pytest.approx(q * level * m - float(liq.fee), abs=0.02)
    assert res.summary["reconciled"]


def test_forex_closeout_at_half_the_margin_used_on_real_eurusd_hours() -> None:
    df = slice_dates(load_bars(shared_file("forex_EURUSD_1h.parquet")), "2008-07-15", "2008-10-31")
    arrays = to_arrays(df)
    inst = replace(default_instrument("EURUSD", MarketType.FOREX), leverage=50.0, initial_margin=None)
    setup = EngineSetup(inst, 10_000.0, allocation=10.0, gate=MinimalRiskGate(max_position_pct=50.0))
    res = BacktestEngine(BuyAndHold("EURUSD"), arrays, setup, {}).run()
    entry, out = res.fills
    q, px = float(entry.quantity), float(entry.price)
    m = 0.5 * 0.02  # closeout at 50 % of a 2 % margin
    level = -(10_000.0 - q * px) / (q * (1 - m))
    j = int(np.searchsorted(arrays.ts_ns, entry.ts_ns))
    while arrays.low[j] > level:
        j += 1
    assert out.ts_ns == int(arrays.ts_ns[j])
    assert float(out.price) == pytest.approx(min(float(arrays.open[j]), level), abs=6e-6)
    assert res.to_dict()["trades"][0]["reason"] == "margin_closeout"
    # at the closeout price, equity is half the margin the position used
    equity_at = 10_000.0 - q * px + q * level
    assert equity_at == pytest.approx(0.5 * 0.02 * q * level, rel=1e-9)


def test_stock_short_only_where_shortable_in_a_backtest() -> None:
    base = {"strategy": "sma_cross", "params": {"fast": 10, "slow": 40, "allow_short": True},
            "data": str(shared_file("stock_AAPL_1d.parquet")), "start": "2015-01-01", "end": "2020-12-31"}
    refused = run_backtest(parse_config(base))
    assert {t.side for t in refused.trades} == {"LONG"}
    reasons = [r.rule for d in refused.decisions for r in d.reasons]
    assert "ShortSelling" in reasons
    allowed = run_backtest(parse_config({**base, "instrument": {"shortable": True}}))
    assert "SHORT" in {t.side for t in allowed.trades}
    assert "ShortSelling" not in [r.rule for d in allowed.decisions for r in d.reasons]


def test_max_margin_utilisation_changes_a_backtest() -> None:
    base = {"strategy": "sma_cross", "params": {"fast": 10, "slow": 30},
            "data": str(shared_file("crypto_BTCPERP_1m.parquet")), "start": "2022-01-03", "end": "2022-01-04",
            "volume_in_quote": True, "allocation": 3.0, "instrument": {"leverage": 10},
            "risk": {"max_position_pct": 5.0}}
    free = run_backtest(parse_config(base))
    capped = run_backtest(parse_config({**base, "risk": {"max_position_pct": 5.0, "gatekeeper": {
        "global": {"max_margin_utilisation": 0.1}}}}))
    assert max(float(f.quantity) for f in capped.fills) < max(float(f.quantity) for f in free.fills)
    cut = [d for d in capped.decisions if any(r.rule == "MaxMarginUtilisation" for r in d.reasons)]
    assert cut and all(d.status.value == "RESIZED" for d in cut)


@pytest.mark.parametrize("raw,message", [
    ({"funding": {"rate": 0.0001}}, "funding: only perpetual swaps pay funding; BTCUSD is spot"),
    ({"instrument": {"leverage": 5}}, "instrument: instrument BTCUSD: leverage is for kinds perpetual and forex"),
    ({"instrument": {"kind": "forex"}}, "kind forex is not traded in market crypto"),
])
def test_settings_that_cannot_work_are_refused_at_load(raw: dict[str, Any], message: str) -> None:
    cfg = parse_config({"strategy": "sma_cross", "data": str(shared_file("crypto_BTCUSD_1h.parquet")), **raw})
    with pytest.raises(ConfigError, match=message):
        run_backtest(cfg)


def test_funding_spec_needs_one_source() -> None:
    with pytest.raises(ConfigError, match="give either rate"):
        parse_config({"strategy": "x", "funding": {"rate": 0.0001, "file": "f.csv"}})
    with pytest.raises(ConfigError, match="interval_h: only with rate"):
        parse_config({"strategy": "x", "funding": {"file": "f.csv", "interval_h": 4}})
    assert parse_config({"strategy": "x", "funding": {"rate": 0.0001}}).funding is not None
