"""Risk utilisation: the kernel measures what its own rules compare, with the same limit precedence."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mmats.model import AccountState, Environment, MarketType, PositionSnapshot
from mmats.risk.gatekeeper import RiskGatekeeper
from mmats.risk.limits import parse_risk_config
from mmats.risk.utilization import measure

T0 = 1_700_000_000_000_000_000


def pos(symbol: str, qty: str, price: str, market: MarketType = MarketType.CRYPTO) -> PositionSnapshot:
    return PositionSnapshot(symbol, market, Decimal(qty), Decimal(price), Decimal(price), Decimal(0), Decimal(0))


def account(equity: str, *positions: PositionSnapshot, peak: str | None = None) -> AccountState:
    return AccountState(T0, "USD", Decimal(equity), Decimal(equity), tuple(positions),
                        peak_equity=Decimal(peak or equity))


def by_key(items: tuple, key: str, scope: str | None = None) -> object:  # type: ignore[type-arg]
    found = [i for i in items if i.limit == key and (scope is None or i.scope == scope)]
    assert len(found) == 1, (key, scope, items)
    return found[0]


RISK = {
    "global": {"max_position_pct": 0.5, "max_leverage": 2.0, "max_open_positions": 4, "max_gross_exposure": 20_000,
               "max_net_exposure_pct": 1.0, "max_market_exposure_pct": 0.9, "max_drawdown_pct": 0.2,
               "max_daily_loss_pct": 0.05},
    "markets": {"crypto": {"max_position_pct": 0.3, "max_market_exposure_pct": 1.5}},
    "symbols": {"ETH/USDT": {"max_position_pct": 0.1}},
    "strategies": {"s1": {"max_position_pct": 0.01}},
    "kill_switch": {"max_drawdown_pct": 0.25},
}


def test_each_limit_is_measured_against_the_tightest_level_that_sets_it() -> None:
    eff = parse_risk_config(RISK).for_environment(Environment.PAPER)
    acct = account("10000", pos("BTC/USDT", "0.05", "40000"), pos("ETH/USDT", "-0.4", "2500"),
                   pos("AAPL", "10", "100", MarketType.STOCK), peak="12500")
    u = measure(acct, eff)
    assert u.equity == 10_000 and u.gross_exposure == 4000 and u.net_exposure == 2000
    btc = by_key(u.items, "max_position_pct", "symbol:BTC/USDT")
    assert (btc.level, btc.limit_value, btc.current) == ("market:crypto", 0.3, 0.2)  # market beats global
    eth = by_key(u.items, "max_position_pct", "symbol:ETH/USDT")
    assert (eth.level, eth.limit_value, eth.current) == ("symbol:ETH/USDT", 0.1, 0.1) and eth.utilization_pct == 100
    aapl = by_key(u.items, "max_position_pct", "symbol:AAPL")
    assert (aapl.level, aapl.limit_value) == ("global", 0.5), "a strategy level never applies to the account"
    crypto = by_key(u.items, "max_market_exposure_pct", "market:crypto")
    assert (crypto.level, crypto.limit_value, crypto.current) == ("global", 0.9, 0.3), "looser market level loses"
    assert by_key(u.items, "max_open_positions").current == 3
    assert by_key(u.items, "max_leverage").current == pytest.approx(0.4)
    assert by_key(u.items, "max_drawdown_pct").current == pytest.approx(0.2)
    ks = by_key(u.items, "kill_switch.max_drawdown_pct")
    assert ks.level == "kill_switch" and ks.utilization_pct == pytest.approx(80.0)
    assert [(s.name, s.notional) for s in u.by_symbol] == [("BTC/USDT", 2000), ("ETH/USDT", -1000), ("AAPL", 1000)]
    assert [(m.name, m.notional, m.pct_of_equity) for m in u.by_market] == [("crypto", 3000, 0.3),
                                                                             ("stock", 1000, 0.1)]
    for it in u.items:
        assert it.utilization_pct == pytest.approx(100 * it.current / it.limit_value, abs=0.01)


def test_flat_account_and_no_account_show_the_limits_at_zero() -> None:
    eff = parse_risk_config(RISK).for_environment(Environment.PAPER)
    for acct in (account("10000"), None):
        u = measure(acct, eff)
        flat = by_key(u.items, "max_position_pct", "any symbol")
        assert flat.current == 0 and flat.limit_value == 0.5
        assert not u.by_symbol and not u.by_market
        assert all(i.current == 0 for i in u.items)
    assert "max_weekly_loss" not in {i.limit for i in measure(None, eff).items}, "unset limits are not shown"


def test_the_gatekeeper_measures_losses_from_its_monitors_references() -> None:
    """Daily loss counts from the monitor's start of day, as the DailyLossLimit rule does, and drawdown
    from the highest peak the monitor has seen, not only the snapshot's."""
    gk = RiskGatekeeper(RISK, Environment.PAPER, initial_equity=10_000)
    gk.monitor.on_equity(T0, 10_000.0)
    gk.monitor.on_equity(T0 + 1, 9_700.0)
    u = gk.utilization(account("9700", peak="9800"))
    assert by_key(u.items, "max_daily_loss_pct").current == pytest.approx(0.03)
    assert by_key(u.items, "max_daily_loss_pct").utilization_pct == pytest.approx(60.0)
    assert by_key(u.items, "max_drawdown_pct").current == pytest.approx(0.03)
    assert u.to_dict()["items"][0]["limit"] == "max_position_pct"
