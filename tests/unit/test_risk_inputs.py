"""Every accepted risk setting has an effect: correlation fed returns, Kelly fed closed trades, volatility
sizing fed ATR, aggregation modes applied, each shown changing a decision in a backtest."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
import talib

from mmats.data import load_bars, to_arrays
from mmats.engine.backtest import BacktestEngine, EngineSetup
from mmats.engine.signal_path import PendingSignal, SignalPath, allocation_for
from mmats.model import (
    AccountState,
    Fill,
    MarketType,
    PositionSnapshot,
    Side,
    SignalAction,
    TradeSignal,
    default_instrument,
)
from mmats.risk.gatekeeper import RiskGatekeeper, build_backtest_gatekeeper
from mmats.risk.inputs import InputNeeds, TradeTracker, WilderATR
from tests.conftest import shared_file
from tests.unit.test_backtest import Scripted, frame

CASH = 10_000.0


def _btc_hours(n: int = 400) -> pd.DataFrame:
    return load_bars(shared_file("crypto_BTCUSD_1h.parquet")).iloc[:n]


def _engine_run(df: pd.DataFrame, risk: dict[str, Any], script: dict[int, TradeSignal],
                symbol: str = "BTC/USD") -> tuple[Any, RiskGatekeeper]:
    inst = default_instrument(symbol, MarketType.CRYPTO)
    gate, _ = build_backtest_gatekeeper(risk, CASH)
    engine = BacktestEngine(Scripted(script), to_arrays(df), EngineSetup(inst, CASH, gate=gate), {})
    return engine.run(), gate


# ------------------------------------------------------------------------------------------- ATR


def test_wilder_atr_matches_talib_on_real_bars() -> None:
    df = _btc_hours(2_000)
    h, lo, c = (df[k].to_numpy(np.float64) for k in ("high", "low", "close"))
    for period in (1, 14, 50):
        atr = WilderATR(period)
        ours = np.array([np.nan if (v := atr.update(a, b, x)) is None else v for a, b, x in zip(h, lo, c, strict=True)])
        ref = talib.ATR(h, lo, c, timeperiod=period)
        assert np.array_equal(np.isnan(ours), np.isnan(ref))
        np.testing.assert_allclose(ours[~np.isnan(ours)], ref[~np.isnan(ref)], rtol=1e-9)


VOL = {"sizing": {"default": {"method": "volatility_target", "risk_fraction": 0.01, "atr_multiple": 2,
                              "atr_period": 14}}}


def test_volatility_target_sizes_from_the_bars_atr_and_inversely_to_it() -> None:
    df = _btc_hours()
    buy = {200: TradeSignal(SignalAction.BUY, "BTC/USD", 1.0)}
    result, gate = _engine_run(df, VOL, buy)
    [fill] = result.fills
    h, lo, c = (df[k].to_numpy(np.float64) for k in ("high", "low", "close"))
    atr = float(talib.ATR(h, lo, c, timeperiod=14)[200])
    expected = 0.01 * CASH / (atr * 2)  # the ATR of the signal's own bar, none later
    assert fill.quantity > 0
    assert abs(float(fill.quantity) - expected) <= 1e-6 + 1e-9 * expected
    assert [d.status.value for d in result.decisions] == ["RESIZED"]
    assert result.decisions[0].reasons[0].rule == "Sizing:volatility_target"
    # The same market twice as volatile in price units (every price doubled): half the quantity.
    doubled = df.copy()
    doubled[["open", "high", "low", "close"]] *= 2
    result2, _ = _engine_run(doubled, VOL, buy)
    assert abs(float(result2.fills[0].quantity) - expected / 2) <= 2e-6
    # A longer ATR period is a setting with an effect: another ATR, another size.
    slow = {"sizing": {"default": {**VOL["sizing"]["default"], "atr_period": 100}}}
    result3, _ = _engine_run(df, slow, buy)
    atr100 = float(talib.ATR(h, lo, c, timeperiod=100)[200])
    assert abs(float(result3.fills[0].quantity) - 0.01 * CASH / (atr100 * 2)) <= 1e-5
    assert gate.inputs.status()["atr"]["BTC/USD"][14] == pytest.approx(atr)


def test_volatility_target_before_its_atr_exists_sizes_nothing() -> None:
    result, _ = _engine_run(_btc_hours(), VOL, {5: TradeSignal(SignalAction.BUY, "BTC/USD", 1.0)})
    assert result.fills == [] and result.decisions[0].status.value == "REJECTED"
    assert "no ATR yet" in result.decisions[0].reasons[0].message


def test_atr_period_is_validated_at_load() -> None:
    with pytest.raises(Exception, match=r"sizing.default.volatility_target.atr_period"):
        RiskGatekeeper({"sizing": {"default": {"method": "volatility_target", "atr_period": 0}}})


# ----------------------------------------------------------------------------------------- Kelly


def _round_trips(results: list[float]) -> tuple[pd.DataFrame, dict[int, TradeSignal]]:
    """Round trips at +/- the given returns (opens = closes: a signal at bar k fills at close[k+1]),
    then a BUY at the end to be sized by Kelly."""
    closes = [100.0] * (5 * len(results) + 10)
    script: dict[int, TradeSignal] = {}
    for n, r in enumerate(results):
        a = 5 * n
        script[a] = TradeSignal(SignalAction.BUY, "BTC/USD", 1.0)
        script[a + 2] = TradeSignal(SignalAction.CLOSE, "BTC/USD", 0.0)
        closes[a + 3] = 100.0 * (1 + r)
    script[5 * len(results)] = TradeSignal(SignalAction.BUY, "BTC/USD", 1.0)
    return frame(closes), script


KELLY = {"sizing": {"default": {"method": "kelly", "kelly_fraction": 1.0, "cap": 1.0, "min_trades": 4,
                                "fallback_fraction": 0.02}}}


def test_kelly_sizes_from_the_closed_trades_wins_against_losses() -> None:
    df, script = _round_trips([0.02, 0.02, -0.01, 0.02])  # W = 3/4, R = 2: f* = 0.75 - 0.25 / 2
    result, gate = _engine_run(df, KELLY, script)
    stats = gate.trade_stats["scripted"]
    assert (stats.wins, stats.losses) == (3, 1) and stats.payoff == pytest.approx(2.0)
    entries = [f for f in result.fills if f.side is Side.BUY]
    first, last = entries[0], entries[-1]
    assert float(first.quantity) * 100 == pytest.approx(0.02 * CASH, rel=1e-4)  # fallback before 4 trades
    equity = CASH + sum(t.pnl for t in result.trades)
    assert float(last.quantity) * 100 == pytest.approx(0.625 * equity, rel=1e-4)

    df, script = _round_trips([0.01, 0.01, 0.01, 0.01])  # wins only: f* = 1, kept under the cap of 0.5
    capped = {"sizing": {"default": {**KELLY["sizing"]["default"], "cap": 0.5}}}
    result, _ = _engine_run(df, capped, script)
    equity = CASH + sum(t.pnl for t in result.trades)
    assert float(result.fills[-1].quantity) * 100 == pytest.approx(0.5 * equity, rel=1e-4)

    df, script = _round_trips([-0.02, -0.02, 0.01, -0.02])  # W = 1/4, R = 1/2: no edge
    result, gate = _engine_run(df, KELLY, script)
    assert gate.trade_stats["scripted"].losses == 3
    last_decision = result.decisions[-1]
    assert last_decision.status.value == "REJECTED"
    assert "no edge" in last_decision.reasons[0].message


def test_trade_tracker_books_each_strategy_own_round_trips() -> None:
    t = TradeTracker()

    def fill(sid: str, side: Side, qty: str, px: str, fee: str = "0") -> list[tuple[str, float]]:
        return t.on_fill(Fill("c", "X", side, Decimal(qty), Decimal(px), Decimal(fee), 1, strategy_id=sid))

    assert fill("a", Side.BUY, "2", "100", "1") == []
    assert fill("b", Side.SELL, "1", "100") == []  # b's short nets against a's long in the account
    assert fill("a", Side.SELL, "1", "110") == []  # half of a's trip
    [(sid, ret)] = fill("a", Side.SELL, "3", "120")  # closes a (reversal opens the next trip)
    assert sid == "a" and ret == pytest.approx((10 + 20 - 1) / 200)
    [(sid, ret)] = fill("b", Side.BUY, "1", "90")
    assert sid == "b" and ret == pytest.approx(10 / 100)
    # a kill-switch flatten closes what a still holds (short 2) at its price
    [(sid, ret)] = fill("kill_switch", Side.BUY, "2", "125")
    assert sid == "a" and ret == pytest.approx(-10 / 240)


# ----------------------------------------------------------------------------------- correlation


def _aligned(*names: str, n: int = 120) -> dict[str, pd.DataFrame]:
    frames = {k: load_bars(shared_file(v)) for k, v in zip(("A", "B", "C"), names, strict=False)}
    common = None
    for df in frames.values():
        common = df.index if common is None else common.intersection(df.index)
    assert common is not None
    return {k: df.loc[common[-n:]] for k, df in frames.items()}


def _held_account(symbol: str, qty: float, price: float, ts: int) -> AccountState:
    q, p = Decimal(repr(qty)), Decimal(repr(price))
    cash = Decimal(100_000) - q * p
    return AccountState(ts, "USD", cash, Decimal(100_000),
                        (PositionSnapshot(symbol, MarketType.STOCK, q, p, p, Decimal(0), Decimal(0)),),
                        peak_equity=Decimal(100_000), gross_exposure=q * p)


CORR = {"global": {"max_cluster_pct": 0.5},
        "correlation": {"threshold": 0.7, "window": 60, "min_observations": 30}}


def _second_position(data: dict[str, pd.DataFrame], feed: bool) -> tuple[Any, RiskGatekeeper]:
    """Hold SPY at 40 % of equity, then a strategy buys 40 % of the second symbol."""
    names = {"A": "SPY", "B": "OTHER"}
    insts = {names[k]: default_instrument(names[k], MarketType.STOCK) for k in data}
    gate = RiskGatekeeper(CORR, "BACKTEST", observe_equity=False)
    path = SignalPath(gate, insts, allocation=1.0, advisory=False)
    ts_list = [int(t.value) for t in data["A"].index]
    if feed:  # the bars of both symbols, as the feed sends them (time order, symbols within a time)
        for i, ts in enumerate(ts_list):
            path.on_bars([(names[k], ts, *map(float, data[k].iloc[i][["open", "high", "low", "close", "volume"]]))
                          for k in data], ts)
    last = ts_list[-1]
    spy = float(data["A"]["close"].iloc[-1])
    path.on_account(_held_account("SPY", 40_000 / spy, spy, last), last, held={})
    other = float(data["B"]["close"].iloc[-1])
    out = path.on_signals([PendingSignal("s2", last, other, TradeSignal(SignalAction.BUY, "OTHER", 0.4,
                                                                        signal_id="x"))])
    return out, gate


def test_correlation_cuts_a_second_correlated_position_fed_from_the_bars() -> None:
    data = _aligned("stock_SPY_1d.parquet", "stock_QQQ_1d.parquet")
    out, gate = _second_position(data, feed=True)
    assert gate.correlation is not None and gate.correlation.correlation("SPY", "OTHER") > 0.7
    [d] = out.decisions
    assert d.status.value == "RESIZED" and d.reasons[0].rule == "CorrelationCluster"
    price = float(data["B"]["close"].iloc[-1])
    assert 10_000 - price < float(d.quantity) * price <= 10_000  # 50 % cluster less SPY's 40 %, whole shares
    # Without the bars the tracker has no returns: the same order passes in full.
    out, _ = _second_position(data, feed=False)
    assert out.decisions[0].status.value == "APPROVED"


def test_correlation_leaves_an_uncorrelated_second_position_alone() -> None:
    data = _aligned("stock_SPY_1d.parquet", "forex_EURUSD_1d.parquet")
    out, gate = _second_position(data, feed=True)
    assert gate.correlation is not None and abs(gate.correlation.correlation("SPY", "OTHER") or 0.0) < 0.7
    assert out.decisions[0].status.value == "APPROVED"


# ----------------------------------------------------------------------------------- aggregation

SYM = "BTC/USDT"
INST = {SYM: default_instrument(SYM, MarketType.CRYPTO)}


def _flat(ts: int) -> AccountState:
    return AccountState(ts, "USD", Decimal(100_000), Decimal(100_000), (), peak_equity=Decimal(100_000))


def _conflict(aggregation: dict[str, Any], signals: dict[str, tuple[SignalAction, float]]) -> Any:
    gate = RiskGatekeeper({"aggregation": aggregation}, "BACKTEST", observe_equity=False)
    path = SignalPath(gate, INST, allocation=1.0, advisory=False)
    path.on_account(_flat(1), 1, held={})
    return path.on_signals([PendingSignal(sid, 1, 100.0, TradeSignal(action, SYM, size, signal_id=f"{sid}-1"))
                            for sid, (action, size) in signals.items()])


CONFLICT = {"trend": (SignalAction.BUY, 0.8), "meanrev": (SignalAction.CLOSE, 0.0)}


def _orders(out: Any) -> list[tuple[str, str, float]]:
    return [(o.strategy_id, o.side.value, float(o.quantity)) for o, _ in out.submits]


def test_independent_lets_every_signal_stand_alone() -> None:
    assert _orders(_conflict({"mode": "INDEPENDENT"}, CONFLICT)) == [("trend", "BUY", 800.0)]


def test_consensus_acts_only_on_a_majority() -> None:
    assert _orders(_conflict({"mode": "CONSENSUS"}, CONFLICT)) == []  # one against one: nothing
    three = {**CONFLICT, "breakout": (SignalAction.BUY, 0.4)}
    # two of three BUY: their mean size, one order owned by the combination
    assert _orders(_conflict({"mode": "CONSENSUS"}, three)) == [("agg:consensus", "BUY", 600.0)]


def test_weighted_nets_the_targets_by_weight() -> None:
    out = _conflict({"mode": "WEIGHTED", "weights": {"trend": 1, "meanrev": 3}}, CONFLICT)
    assert _orders(out) == [("agg:weighted", "BUY", 200.0)]  # (1 x 0.8 + 3 x 0) / 4
    flat = _conflict({"mode": "WEIGHTED", "weights": {"trend": 1, "meanrev": 30}, "min_net_exposure": 0.05},
                     CONFLICT)
    assert _orders(flat) == []  # 0.8 / 31 is below min_net_exposure: flat, and nothing is held


def test_priority_lets_the_highest_priority_strategy_decide() -> None:
    assert _orders(_conflict({"mode": "PRIORITY", "priorities": {"meanrev": 2, "trend": 1}}, CONFLICT)) == []
    assert _orders(_conflict({"mode": "PRIORITY", "priorities": {"trend": 2}}, CONFLICT)) == [
        ("trend", "BUY", 800.0)]


def test_aggregation_waits_for_every_strategy_of_the_bar() -> None:
    gate = RiskGatekeeper({"aggregation": {"mode": "CONSENSUS"}}, "PAPER", observe_equity=False)
    path = SignalPath(gate, INST, allocation=1.0, advisory=False)
    path.reports_as_of_ns = 0  # the gatekeeper actor keeps this at the oldest bar every strategy reported
    path.on_account(_flat(1), 1, held={})
    first = path.on_signals([PendingSignal("trend", 1, 100.0, TradeSignal(SignalAction.BUY, SYM, 0.8,
                                                                          signal_id="t1"))])
    assert first.submits == [] and path.waiting == 1  # meanrev has not reported bar 1 yet
    path.reports_as_of_ns = 1
    out = path.on_signals([PendingSignal("meanrev", 1, 100.0, TradeSignal(SignalAction.CLOSE, SYM, 0.0,
                                                                          signal_id="m1"))])
    assert out.submits == [] and path.waiting == 0 and len(out.signals) == 2  # a tie, decided together


def test_a_combined_signal_sizes_with_its_members_allocations() -> None:
    sig = TradeSignal(SignalAction.BUY, SYM, 0.5, strategy_id="agg:weighted",
                      metadata={"attribution": {"a": 0.75, "b": 0.25}})
    assert allocation_for({"a": 0.4, "b": 0.8}, PendingSignal("agg:weighted", 1, 1.0, sig)) == pytest.approx(0.5)


def test_aggregation_in_a_single_strategy_backtest_is_its_own_signal() -> None:
    """One signal per bar aggregates to itself: same fills and equity; the orders carry the combined id
    the running system would give them."""
    df = _btc_hours()
    script = {50: TradeSignal(SignalAction.BUY, "BTC/USD", 0.7), 120: TradeSignal(SignalAction.CLOSE, "BTC/USD", 0.0),
              200: TradeSignal(SignalAction.BUY, "BTC/USD", 0.3)}
    base, _ = _engine_run(df, {}, script)
    for mode in ("CONSENSUS", "PRIORITY", "WEIGHTED"):
        res, _ = _engine_run(df, {"aggregation": {"mode": mode}}, script)
        assert [(f.side, f.quantity, f.price) for f in res.fills] == [(f.side, f.quantity, f.price) for f in base.fills]
        assert res.equity[-1] == base.equity[-1]
        owner = {"CONSENSUS": "agg:consensus", "WEIGHTED": "agg:weighted", "PRIORITY": "scripted"}[mode]
        assert {o.strategy_id for o in res.orders} == {owner}


def test_input_needs_follow_the_config() -> None:
    assert InputNeeds.of(RiskGatekeeper({}).effective) == InputNeeds()
    g = RiskGatekeeper({**CORR, **KELLY, "sizing": {"default": KELLY["sizing"]["default"],
                                                    "strategies": {"v": VOL["sizing"]["default"]}}})
    assert g.needs == InputNeeds((14,), True, True) and g.needs.bars
