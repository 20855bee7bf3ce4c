"""RiskGatekeeper: kill-switch gate, named reasons per rule, journaling, rejections, sizing, backtest use."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from mmats.audit import AuditRecord, InMemoryJournal, verify_records
from mmats.model import (
    AccountState,
    MarketType,
    PositionSnapshot,
    Side,
    SignalAction,
    TradeSignal,
    datetime_to_ns,
    default_instrument,
)
from mmats.risk.decision import DecisionStatus, OrderIntent, RiskGate
from mmats.risk.gatekeeper import RiskGatekeeper, build_backtest_gatekeeper
from mmats.risk.killswitch import KillSwitchState, KillTrigger

WED = datetime_to_ns(datetime(2024, 3, 6, 15, 0, tzinfo=UTC))  # Wednesday, US session open
SAT = datetime_to_ns(datetime(2024, 3, 9, 15, 0, tzinfo=UTC))
MARKETS = {"BTC/USDT": MarketType.CRYPTO, "ETH/USDT": MarketType.CRYPTO, "AAPL": MarketType.STOCK,
           "EUR/USD": MarketType.FOREX, "BTC/USDT:USDT": MarketType.CRYPTO}


def account(positions: Mapping[str, tuple[str, str]] | None = None, equity: str = "10000", ts: int = WED,
            peak: str | None = None) -> AccountState:
    snaps = tuple(PositionSnapshot(s, MARKETS[s], Decimal(q), Decimal(px), Decimal(px), Decimal(0), Decimal(0))
                  for s, (q, px) in (positions or {}).items())
    gross = sum((p.notional for p in snaps), Decimal(0))
    return AccountState(ts, "USD", Decimal(equity), Decimal(equity), snaps, peak_equity=Decimal(peak or equity),
                        gross_exposure=gross)


def intent(symbol: str = "BTC/USDT", side: Side = Side.BUY, qty: str = "1", price: str = "100", ts: int = WED,
           strategy: str = "s1", signal_id: str = "sig", confidence: float = 1.0, **kw: Any) -> OrderIntent:
    extra = kw.pop("extra", {})
    sig = TradeSignal(SignalAction(side.value), symbol, 1.0, confidence=confidence, strategy_id=strategy,
                      signal_id=signal_id, **kw)
    return OrderIntent(strategy, signal_id, default_instrument(symbol, MARKETS[symbol]), side, Decimal(qty),
                       Decimal(price), ts, False, sig, extra)


def rules(decision: Any) -> list[str]:
    return [r.rule for r in decision.reasons]


def test_is_a_risk_gate_and_approves_within_limits() -> None:
    gk: RiskGate = RiskGatekeeper({"profile": "aggressive"}, "PAPER")
    d = gk.evaluate(intent(qty="2"), account())
    assert d.status is DecisionStatus.APPROVED and d.quantity == 2 and d.reasons == ()


@pytest.mark.parametrize(("cfg", "acct", "order", "rule", "status"), [
    ({"global": {"max_position_pct": 0.1}}, {}, {"qty": "20"}, "MaxPositionSize", "RESIZED"),
    ({"global": {"max_order_notional": 250}}, {}, {"qty": "5"}, "MaxOrderNotional", "RESIZED"),
    ({"global": {"max_concentration_pct": 0.2}}, {"BTC/USDT": ("15", "100")},
     {"symbol": "BTC/USDT", "qty": "10"}, "MaxAssetConcentration", "RESIZED"),
    ({"global": {"max_open_positions": 1}}, {"ETH/USDT": ("1", "100")}, {}, "MaxOpenPositions", "REJECTED"),
    ({"global": {"max_leverage": 1.0}}, {"ETH/USDT": ("90", "100")}, {"qty": "50"}, "MaxLeverage", "RESIZED"),
    ({"global": {"max_market_exposure_pct": 0.5}}, {"ETH/USDT": ("40", "100")}, {"qty": "50"},
     "MaxExposurePerMarket", "RESIZED"),
    ({"global": {"max_gross_exposure": 5000}}, {"AAPL": ("40", "100")}, {"qty": "50"}, "MaxExposure", "RESIZED"),
    ({"global": {"max_net_exposure_pct": 0.2}}, {}, {"qty": "50"}, "MaxExposure", "RESIZED"),
    ({"global": {"min_confidence": 0.7}}, {}, {"confidence": 0.5}, "MinConfidence", "REJECTED"),
    ({"global": {"max_drawdown_pct": 0.1}}, {"peak": "12000"}, {}, "MaxDrawdown", "REJECTED"),
    ({}, {}, {"qty": "5", "max_notional": 150.0}, "SignalMaxNotional", "RESIZED"),
    ({}, {}, {"max_slippage_bps": 5.0, "extra": {"expected_slippage_bps": 8.0}}, "SignalMaxSlippage", "REJECTED"),
    ({"trading_hours": {}}, {"ts": SAT}, {"symbol": "AAPL", "ts": SAT}, "TimeOfDay", "REJECTED"),
    ({"sizing": {"default": {"method": "risk_per_trade", "risk_pct": 0.001}}}, {},
     {"qty": "10", "stop_loss": 95.0}, "Sizing:risk_per_trade", "RESIZED"),
    ({"sizing": {"default": {"method": "volatility_target"}}}, {}, {}, "Sizing:volatility_target", "REJECTED"),
    ({}, {}, {"qty": "0.01", "price": "100"}, "MinNotional", "REJECTED"),
])
def test_each_rule_names_itself(cfg: dict[str, Any], acct: dict[str, Any], order: dict[str, Any], rule: str,
                                status: str) -> None:
    positions = {k: v for k, v in acct.items() if k not in ("peak", "ts")}
    a = account(positions, peak=acct.get("peak"), ts=acct.get("ts", WED))
    d = RiskGatekeeper(cfg, "LIVE").evaluate(intent(**order), a)
    assert d.status.value == status and rules(d)[-1] == rule, d.to_dict()
    assert all(isinstance(r.limit, float) and isinstance(r.observed, float) for r in d.reasons)


def test_loss_limits_and_correlation_cluster() -> None:
    gk = RiskGatekeeper({"global": {"max_daily_loss": 100, "max_weekly_loss_pct": 0.5}}, "LIVE",
                        initial_equity=10_000.0)
    d = gk.evaluate(intent(), account(equity="9850"))
    assert d.status is DecisionStatus.REJECTED and rules(d) == ["DailyLossLimit"]
    gk2 = RiskGatekeeper({"global": {"max_cluster_pct": 0.3},
                          "correlation": {"threshold": 0.8, "window": 30, "min_observations": 10}}, "LIVE")
    import random

    rng = random.Random(1)
    for _ in range(30):
        common = rng.gauss(0, 0.01)
        gk2.update_return("BTC/USDT", common + rng.gauss(0, 0.001))
        gk2.update_return("ETH/USDT", common + rng.gauss(0, 0.001))
        gk2.update_return("EUR/USD", rng.gauss(0, 0.01))
    a = account({"ETH/USDT": ("25", "100"), "EUR/USD": ("2000", "1")})
    d2 = gk2.evaluate(intent(qty="10"), a)  # ETH (2500) counts with BTC: room 500 -> 5 BTC
    assert d2.status is DecisionStatus.RESIZED and d2.quantity == 5 and rules(d2) == ["CorrelationCluster"]
    d3 = gk2.evaluate(intent("EUR/USD", qty="1500", price="1"), a)  # uncorrelated: only itself counts
    assert d3.status is DecisionStatus.RESIZED and d3.quantity == 1000


def test_reducing_orders_pass_exposure_rules() -> None:
    gk = RiskGatekeeper({"global": {"max_leverage": 0.1, "max_position_pct": 0.01, "min_confidence": 0.9,
                                    "max_open_positions": 0}}, "LIVE")
    perp = "BTC/USDT:USDT"  # a perpetual swap: a spot coin could not be sold through flat (ShortSelling)
    a = account({perp: ("50", "100")})
    d = gk.evaluate(intent(perp, side=Side.SELL, qty="20", confidence=0.1), a)
    assert d.status is DecisionStatus.APPROVED and d.quantity == 20
    flip = gk.evaluate(intent(perp, side=Side.SELL, qty="80"), a)  # closes 50, then a short capped at 1 % of equity
    assert flip.status is DecisionStatus.RESIZED and flip.quantity == 51 and rules(flip) == ["MaxPositionSize"]


def test_kill_switch_gate() -> None:
    j = InMemoryJournal()
    gk = RiskGatekeeper({}, "LIVE", journal=j)
    a = account({"BTC/USDT": ("3", "100"), "ETH/USDT": ("-2", "50")})
    gk.engage("SOFT", "operator is nervous", WED)
    assert gk.evaluate(intent(qty="1"), a).status is DecisionStatus.REJECTED
    assert gk.evaluate(intent(side=Side.SELL, qty="2"), a).status is DecisionStatus.APPROVED
    flip = gk.evaluate(intent(side=Side.SELL, qty="5"), a)
    assert flip.status is DecisionStatus.RESIZED and flip.quantity == 3 and rules(flip) == ["KillSwitch"]
    assert gk.evaluate(intent("AAPL", qty="1"), a).status is DecisionStatus.REJECTED

    gk.engage(KillSwitchState.HARD, "flatten now", WED + 1)
    assert gk.evaluate(intent(side=Side.SELL, qty="1"), a).status is DecisionStatus.REJECTED  # even an exit
    plan = gk.flatten(a)
    assert [p.symbol for p in plan] == ["BTC/USDT", "ETH/USDT"]
    assert all(gk.evaluate(p, a).status is DecisionStatus.APPROVED for p in plan)
    spoof = intent(side=Side.SELL, qty="3", strategy="kill_switch", signal_id="flatten-999")
    assert gk.evaluate(spoof, a).status is DecisionStatus.REJECTED

    gk.engage(KillSwitchState.FREEZE, "hands off", WED + 2)
    assert all(gk.evaluate(p, a).status is DecisionStatus.REJECTED for p in plan)
    gk.reset("reviewed", WED + 3)
    assert gk.evaluate(intent(qty="1"), a).status is DecisionStatus.APPROVED
    assert verify_records(j.records()).ok
    assert [r.payload["state"] for r in j.records() if r.kind == "kill_switch"] == ["SOFT", "HARD", "FREEZE",
                                                                                      "RUNNING"]


def test_signal_and_decision_are_journaled_before_returning_and_rejections_are_kept() -> None:
    events: list[str] = []

    class Spy(InMemoryJournal):
        def append(self, kind: str, payload: Mapping[str, Any], ts_ns: int) -> AuditRecord:
            events.append(kind)
            return super().append(kind, payload, ts_ns)

    j = Spy()
    gk = RiskGatekeeper({"global": {"max_open_positions": 0}}, "LIVE", journal=j)
    d = gk.evaluate(intent(signal_id="a"), account())
    events.append("returned")
    assert events == ["signal", "risk_decision", "returned"]
    recs = list(j.records())
    assert recs[0].payload["signal_id"] == "a" and recs[1].payload["status"] == "REJECTED"
    assert recs[1].payload["reasons"][0]["rule"] == "MaxOpenPositions"
    assert gk.drain_rejections() == [d] and gk.drain_rejections() == []


def test_throttle_and_order_rate_anomaly() -> None:
    gk = RiskGatekeeper({"strategies": {"s1": {"max_signals": 3, "signal_window_s": 60}}}, "LIVE")
    a = account()
    out = [gk.evaluate(intent(ts=WED + k * 1_000_000_000), a).status for k in range(4)]
    assert out[:3] == [DecisionStatus.APPROVED] * 3 and out[3] is DecisionStatus.REJECTED
    assert gk.evaluate(intent(ts=WED + 61 * 1_000_000_000), a).status is DecisionStatus.APPROVED
    assert gk.evaluate(intent(strategy="s2", ts=WED + 3_000_000_000), a).status is DecisionStatus.APPROVED

    gk2 = RiskGatekeeper({"order_rate": {"max_orders": 2, "window_s": 10}}, "LIVE")
    res = [gk2.evaluate(intent(strategy=f"s{k}", ts=WED + k), a) for k in range(3)]
    assert [r.status for r in res[:2]] == [DecisionStatus.APPROVED] * 2
    assert res[2].status is DecisionStatus.REJECTED and rules(res[2]) == ["OrderRateAnomaly"]
    assert gk2.kill_switch.state is KillSwitchState.SOFT and gk2.kill_switch.trigger is KillTrigger.ORDER_RATE


def test_time_of_day_allows_exits_outside_the_session_only_when_configured() -> None:
    a = account({"AAPL": ("10", "100")}, ts=SAT)
    exit_ = intent("AAPL", side=Side.SELL, qty="10", ts=SAT)
    assert RiskGatekeeper({"trading_hours": {}}, "LIVE").evaluate(exit_, a).approved
    strict = RiskGatekeeper({"trading_hours": {"allow_exits_outside": False}}, "LIVE")
    assert strict.evaluate(exit_, a).status is DecisionStatus.REJECTED
    assert RiskGatekeeper({"trading_hours": {}}, "LIVE").evaluate(intent(ts=SAT), a).approved  # crypto 24/7


def test_invalid_intent_is_a_value_not_an_exception() -> None:
    bad = OrderIntent("s", "x", default_instrument("BTC/USDT", "crypto"), Side.BUY, Decimal(1), Decimal(0), WED)
    d = RiskGatekeeper({}, "LIVE").evaluate(bad, account())
    assert d.status is DecisionStatus.REJECTED and rules(d) == ["InvalidIntent"]


def test_gatekeeper_observes_equity_and_engages_the_kill_switch() -> None:
    gk = RiskGatekeeper({"kill_switch": {"max_drawdown_pct": 0.1}}, "LIVE", initial_equity=10_000.0)
    d = gk.evaluate(intent(), account(equity="8900"))
    assert gk.kill_switch.state is KillSwitchState.HARD and d.status is DecisionStatus.REJECTED


def test_status_limits_and_sizing_helpers() -> None:
    gk = RiskGatekeeper({"profile": "moderate", "symbols": {"AAPL": {"max_position_pct": 0.05}},
                         "sizing": {"strategies": {"s1": {"method": "fixed_fractional", "fraction": 0.1}}}}, "LIVE")
    lim = gk.limits_for("s1", MarketType.STOCK, "AAPL")
    assert lim["max_position_pct"] == {"value": 0.05, "from": "symbol:AAPL"}
    sized = gk.size("s1", default_instrument("AAPL", "stock"), 101.0, 10_000.0)
    assert sized is not None and sized.quantity == 9 and gk.size("other", default_instrument("AAPL", "stock"),
                                                                  1.0, 1.0) is None
    assert gk.status()["kill_switch"]["state"] == "RUNNING"


def test_build_backtest_gatekeeper_and_daily_loss_in_a_backtest() -> None:
    j = InMemoryJournal()
    gk, monitor = build_backtest_gatekeeper({"kill_switch": {"daily_loss_pct": 0.0005}}, 10_000.0, j)
    assert gk.monitor is monitor and gk.journal is None and gk.kill_switch.journal is j and not gk.observe_equity
    from mmats.research.runconfig import parse_config, run_backtest

    cfg = parse_config({"strategy": "sma_cross", "params": {"fast": 5, "slow": 20}, "generated": {"bars": 3000},
                        "risk": {"gatekeeper": {"profile": "aggressive", "kill_switch": {"daily_loss_pct": 0.002}}}})
    result = run_backtest(cfg, journal=j)
    doc = result.to_dict()
    assert doc["kill_switch"] and doc["kill_switch"][0]["trigger"] == "daily_loss"
    assert verify_records(j.records()).ok


def test_throttles_with_different_windows_share_one_signal_history() -> None:
    gk = RiskGatekeeper({"global": {"max_signals": 3, "signal_window_s": 60},
                         "symbols": {"BTC/USDT": {"signal_window_s": 3600}}}, "LIVE")
    a = account()
    s = 1_000_000_000
    assert all(gk.evaluate(intent("ETH/USDT", ts=WED + k * s), a).approved for k in range(3))
    assert gk.evaluate(intent("ETH/USDT", ts=WED + 120 * s), a).approved  # 60 s window: quiet again
    late = gk.evaluate(intent("BTC/USDT", ts=WED + 121 * s), a)  # 1 h window: 4 signals already
    assert late.status is DecisionStatus.REJECTED and rules(late) == ["Throttle"]


def test_every_backtest_runs_the_full_gatekeeper_with_the_flat_limits_as_global_ones() -> None:
    from mmats.model import MarketType, default_instrument
    from mmats.research.runconfig import BacktestConfig, build_gate
    from mmats.risk.gatekeeper import RiskGatekeeper

    inst = default_instrument("BTC/USDT", MarketType.CRYPTO)
    gate, monitor = build_gate(BacktestConfig(strategy="sma_cross", risk={"max_position_pct": 0.3}), inst, None)
    assert isinstance(gate, RiskGatekeeper) and monitor is None  # no equity trigger: nothing for the loop to feed
    assert gate.limits_for("s", MarketType.CRYPTO, "BTC/USDT")["max_position_pct"] == {"value": 0.3, "from": "global"}
    _, monitor = build_gate(BacktestConfig(strategy="sma_cross",
                                           risk={"gatekeeper": {"kill_switch": {"daily_loss_pct": 0.05}}}), inst, None)
    assert monitor is not None and monitor.watches_equity


def test_counters_survive_a_restart_through_plain_json() -> None:
    """What the state store keeps for a restarted gatekeeper: today's loss reference, the peak, throttle
    windows. Without them a crash mid-day would measure the day's loss from the equity after the crash."""
    import json

    day = 86_400 * 1_000_000_000
    cfg = {"global": {"max_daily_loss": 100}, "strategies": {"s1": {"max_signals": 3, "signal_window_s": 60}},
           "kill_switch": {"daily_loss": 500}}
    gk = RiskGatekeeper(cfg, "LIVE", initial_equity=10_000.0)
    gk.monitor.on_equity(WED - day, 10_000.0)
    gk.monitor.on_equity(WED, 12_000.0)  # a new day starts at 12,000
    assert [gk.evaluate(intent(ts=WED + k * 10**9), account(equity="12000")).status for k in range(3)] == [
        DecisionStatus.APPROVED] * 3
    saved = json.loads(json.dumps(gk.counters()))
    assert saved["monitor"]["day_start"] == 12_000.0 and len(saved["rules"]["signal_times"]["s1"]) == 3

    restored = RiskGatekeeper(cfg, "LIVE", initial_equity=10_000.0)
    restored.restore_counters(saved)
    assert restored.counters() == gk.counters()
    throttled = restored.evaluate(intent(ts=WED + 4 * 10**9), account(equity="12000"))
    assert throttled.status is DecisionStatus.REJECTED and rules(throttled) == ["Throttle"]
    loss = restored.evaluate(intent(strategy="s2", ts=WED + 5 * 10**9), account(equity="11850"))
    assert loss.status is DecisionStatus.REJECTED and rules(loss) == ["DailyLossLimit"]
    forgetful = RiskGatekeeper(cfg, "LIVE", initial_equity=10_000.0)  # what a restart without them sees
    assert forgetful.evaluate(intent(strategy="s2", ts=WED + 5 * 10**9), account(equity="11850")).approved
    t = restored.monitor.on_equity(WED + 6 * 10**9, 11_400.0)  # 600 below today's start: the trigger fires
    assert t is not None and t.trigger is KillTrigger.DAILY_LOSS
