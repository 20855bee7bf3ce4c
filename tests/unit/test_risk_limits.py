"""Risk config: hierarchy resolution, environments, profiles, and errors that name the field path."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmats.errors import ConfigError
from mmats.model import Environment, MarketType
from mmats.risk.killswitch import KillSwitchState
from mmats.risk.limits import PROFILES, parse_risk_config

CFG: dict[str, Any] = {
    "global": {"max_position_pct": 0.5, "max_leverage": 3, "min_confidence": 0.3},
    "markets": {"stock": {"max_position_pct": 0.2, "max_leverage": 4}},
    "strategies": {"momo": {"max_position_pct": 0.3, "min_confidence": 0.6}},
    "symbols": {"AAPL": {"max_position_pct": 0.1}},
    "environments": {
        "live": {"global": {"max_leverage": 1.5}, "symbols": {"AAPL": {"max_position_pct": 0.05}}},
        "BACKTEST": {"global": {"max_position_pct": 1.0, "max_leverage": 10}},
    },
}


def test_tightest_applicable_limit_wins_and_its_level_is_known() -> None:
    eff = parse_risk_config(CFG).for_environment(Environment.PAPER)
    r = eff.resolve("momo", MarketType.STOCK, "AAPL")
    assert r.values["max_position_pct"] == 0.1 and r.sources["max_position_pct"] == "symbol:AAPL"
    assert r.values["max_leverage"] == 3 and r.sources["max_leverage"] == "global"  # market's 4 is looser
    assert r.values["min_confidence"] == 0.6  # higher is tighter for a minimum
    r2 = eff.resolve("other", MarketType.STOCK, "MSFT")
    assert r2.values["max_position_pct"] == 0.2 and r2.sources["max_position_pct"] == "market:stock"
    r3 = eff.resolve("other", MarketType.CRYPTO, "BTC/USDT")
    assert r3.values["max_position_pct"] == 0.5 and r3.get("max_open_positions") is None


def test_environment_overrides_key_by_key_and_may_loosen() -> None:
    cfg = parse_risk_config(CFG)
    live = cfg.for_environment(Environment.LIVE).resolve("x", MarketType.STOCK, "AAPL")
    assert live.values["max_leverage"] == 1.5 and live.values["max_position_pct"] == 0.05
    bt = cfg.for_environment(Environment.BACKTEST).resolve("x", MarketType.CRYPTO, "BTC/USDT")
    assert bt.values["max_position_pct"] == 1.0 and bt.values["max_leverage"] == 10
    assert bt.values["min_confidence"] == 0.3  # untouched keys come from the base


def test_profiles_are_presets_under_explicit_values() -> None:
    for name, preset in PROFILES.items():
        eff = parse_risk_config({"profile": name}).for_environment(Environment.LIVE)
        r = eff.resolve("s", MarketType.CRYPTO, "X")
        assert r.values["max_position_pct"] == preset["global"]["max_position_pct"]
        assert eff.levels.kill_switch.max_drawdown_pct == preset["kill_switch"]["max_drawdown_pct"]
        assert eff.profile == name
    cons, aggr = (parse_risk_config({"profile": p}).for_environment(Environment.LIVE)
                  .resolve("s", MarketType.FOREX, "X") for p in ("conservative", "aggressive"))
    assert cons.values["max_leverage"] < aggr.values["max_leverage"]
    mine = parse_risk_config({"profile": "conservative", "global": {"max_leverage": 2},
                              "kill_switch": {"on_daily_loss": "HARD"},
                              "environments": {"BACKTEST": {"profile": "aggressive"}}})
    live = mine.for_environment(Environment.LIVE)
    assert live.resolve("s", MarketType.CRYPTO, "X").values["max_leverage"] == 2
    assert live.levels.kill_switch.on_daily_loss is KillSwitchState.HARD
    assert live.levels.kill_switch.daily_loss_pct == PROFILES["conservative"]["kill_switch"]["daily_loss_pct"]
    bt = mine.for_environment(Environment.BACKTEST)
    assert bt.profile == "aggressive" and bt.resolve("s", MarketType.CRYPTO, "X").values["max_leverage"] == 2


@pytest.mark.parametrize(("raw", "path"), [
    ({"global": {"max_leverage": 0}}, "risk.global.max_leverage"),
    ({"markets": {"stock": {"max_position_pct": "lots"}}}, "risk.markets.stock.max_position_pct"),
    ({"markets": {"bonds": {}}}, "risk.markets.bonds"),
    ({"strategies": {"s1": {"max_drawdown_pct": 1.5}}}, "risk.strategies.s1.max_drawdown_pct"),
    ({"symbols": {"BTC/USDT": {"nonsense": 1}}}, "risk.symbols.BTC/USDT.nonsense"),
    ({"environments": {"LIVE": {"global": {"max_open_positions": -1}}}},
     "risk.environments.LIVE.global.max_open_positions"),
    ({"environments": {"PROD": {}}}, "risk.environments.PROD"),
    ({"profile": "yolo"}, "risk.profile"),
    ({"kill_switch": {"on_daily_loss": "RUNNING"}}, "risk.kill_switch.on_daily_loss"),
    ({"trading_hours": {"markets": {"stock": [{"start": "16:00", "end": "09:30"}]}}},
     "risk.trading_hours.markets.stock"),
    ({"trading_hours": {"markets": {"stock": [{"tz": "Mars/Olympus"}]}}}, "risk.trading_hours.markets.stock"),
    ({"trading_hours": {"markets": {"forex": "weekends"}}}, "risk.trading_hours.markets"),
    ({"sizing": {"strategies": {"s": {"method": "martingale"}}}}, "risk.sizing.strategies.s"),
    ({"aggregation": {"mode": "VOTE"}}, "risk.aggregation.mode"),
])
def test_invalid_config_names_the_field_path(raw: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_risk_config(raw)
    assert str(exc.value).startswith(path), str(exc.value)


def test_config_error_prefix_is_the_callers_path() -> None:
    with pytest.raises(ConfigError, match=r"^risk\.gatekeeper\.global\.max_leverage"):
        parse_risk_config({"global": {"max_leverage": -2}}, path="risk.gatekeeper")


LEVEL_VALUES = st.one_of(st.none(), st.floats(0.01, 5.0))


@settings(max_examples=200, deadline=None)
@given(g=LEVEL_VALUES, m=LEVEL_VALUES, s=LEVEL_VALUES, y=LEVEL_VALUES)
def test_resolution_is_the_minimum_of_the_levels_that_set_it(
    g: float | None, m: float | None, s: float | None, y: float | None
) -> None:
    def lv(v: float | None) -> dict[str, float]:
        return {} if v is None else {"max_leverage": v}

    cfg = parse_risk_config({"global": lv(g), "markets": {"forex": lv(m)}, "strategies": {"st": lv(s)},
                             "symbols": {"EUR/USD": lv(y)}})
    r = cfg.for_environment(Environment.LIVE).resolve("st", MarketType.FOREX, "EUR/USD")
    present = [v for v in (g, m, s, y) if v is not None]
    assert r.get("max_leverage") == (min(present) if present else None)
    # a level that does not apply (another market / strategy / symbol) never counts
    other = cfg.for_environment(Environment.LIVE).resolve("zz", MarketType.CRYPTO, "BTC/USDT")
    assert other.get("max_leverage") == g


def test_flat_limits_become_global_and_explicit_global_wins() -> None:
    from mmats.risk.gatekeeper import with_flat_limits

    assert with_flat_limits({"max_position_pct": 0.5}) == {"global": {"max_position_pct": 0.5}}
    merged = with_flat_limits({"global": {"max_position_pct": 0.2}, "max_order_notional": 1000.0},
                              max_position_pct=1.0)
    assert merged == {"global": {"max_position_pct": 0.2, "max_order_notional": 1000.0}}
    assert with_flat_limits(None, max_position_pct=None) == {}
    assert parse_risk_config(with_flat_limits({"max_position_pct": 0.5})).global_.max_position_pct == 0.5
