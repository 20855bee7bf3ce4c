"""The running system's config: precedence, validation with field paths, resolved paths and markets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mmats.errors import ConfigError
from mmats.model import MarketType
from mmats.system_config import SystemConfig, absolute_ref, load_system_config

FOREX_FEED = {"venue": "replay-fx", "market": "forex", "generated_symbols": ["EUR/USD"]}


def _strategy(**kw: Any) -> dict[str, Any]:
    return {"id": "s1", "ref": "sma_cross", "symbols": ["EUR/USD"], **kw}


def test_precedence_defaults_file_environment_flags(tmp_path: Path) -> None:
    path = tmp_path / "system.json"
    path.write_text(json.dumps({"initial_cash": 5000, "mode": "advisory", "home": "from-file"}))
    cfg = load_system_config(str(path), {"home": str(tmp_path / "from-flag")},
                             env={"MMATS_INITIAL_CASH": "7000", "MMATS_HOME": "from-env"})
    assert cfg.initial_cash == 7000  # environment over file
    assert cfg.home == str(tmp_path / "from-flag")  # flags over environment
    assert cfg.mode == "advisory" and cfg.max_strategy_errors == 5  # file, then defaults


def test_connection_urls_are_read_where_the_config_is_loaded() -> None:
    env = {"MMATS_DATABASE_URL": "postgresql+psycopg://u@127.0.0.1:5432/test", "MMATS_REDIS_URL": "redis://127.0.0.1"}
    cfg = load_system_config(None, env=env)
    assert cfg.database_url == env["MMATS_DATABASE_URL"] and cfg.redis_url == env["MMATS_REDIS_URL"]
    assert load_system_config(None, env={}).database_url is None


def test_relative_paths_become_absolute_against_the_callers_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_system_config(None, {
        "home": "state",
        "feeds": [{"venue": "replay", "files": {"BTC": "data/btc.parquet"}}],
        "strategies": [{"id": "mine", "ref": "my/strat.py:Mine", "symbols": ["BTC"]},
                       {"id": "builtin", "ref": "sma_cross", "symbols": ["BTC"]}],
        "paper_venue": "venues.py:Slow",
    }, env={})
    assert cfg.home == str(tmp_path / "state")
    assert cfg.feeds[0].files["BTC"] == str(tmp_path / "data" / "btc.parquet")
    assert cfg.strategies[0].ref == f"{tmp_path / 'my' / 'strat.py'}:Mine"
    assert cfg.strategies[1].ref == "sma_cross"
    assert cfg.paper_venue == f"{tmp_path / 'venues.py'}:Slow"
    assert absolute_ref("strategies.sma_cross:SmaCross") == "strategies.sma_cross:SmaCross"


def test_strategy_market_comes_from_its_feed_and_a_mismatch_is_refused() -> None:
    cfg = load_system_config(None, {"feeds": [FOREX_FEED], "strategies": [_strategy()]}, env={})
    assert cfg.strategies[0].market is MarketType.FOREX
    with pytest.raises(ConfigError, match="strategy s1: market crypto does not match the feeds of its symbols"):
        load_system_config(None, {"feeds": [FOREX_FEED], "strategies": [_strategy(market="crypto")]}, env={})


@pytest.mark.parametrize("overrides,message", [
    ({"risk": {"global": {"max_position_pct": -1}}}, "risk.global.max_position_pct"),
    ({"risk": {"kill_switch": {"on_max_drawdown": "RUNNING"}}}, "risk.kill_switch.on_max_drawdown"),
    ({"risk": {"bogus": 1}}, "risk.bogus"),
    ({"router_retry": {"max_attempts": 0}}, "router_retry.max_attempts"),
    ({"mode": "operator"}, "operator needs allow_operator"),
    ({"strategies": [_strategy(symbols=["NOPE"])]}, "no feed provides"),
    ({"initial_cash": -5}, "initial_cash"),
    ({"strategies_per_actor": 0}, "strategies_per_actor"),
    ({"strategies_per_actor": "many"}, "strategies_per_actor"),
])
def test_invalid_config_fails_at_load_naming_the_field(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_system_config(None, overrides, env={})


def test_flat_risk_keys_are_accepted_as_global_limits() -> None:
    cfg = load_system_config(None, {"risk": {"max_position_pct": 0.5, "kill_switch": {"daily_loss_pct": 0.05}}},
                             env={})
    assert cfg.risk["max_position_pct"] == 0.5


# -- live feeds (source ccxt, oanda, alpaca) -------------------------------------------------------------


@pytest.mark.parametrize(("feed", "message"), [
    ({"source": "ccxt", "symbols": ["BTC/USDT"]}, "source ccxt needs exchange"),
    ({"source": "ccxt", "exchange": "binance"}, "source ccxt needs symbols"),
    ({"source": "ccxt", "exchange": "binance", "symbols": ["BTC/USDT"], "generated_symbols": ["X"]},
     "files and generated_symbols are for source: replay"),
    ({"source": "ccxt", "exchange": "binance", "symbols": ["BTC/USDT"], "pace": "lockstep"}, "pace lockstep"),
    ({"source": "ccxt", "exchange": "binance", "symbols": ["EUR/USD"], "market": "forex"}, "market crypto"),
    ({"generated_symbols": ["X"], "exchange": "binance"}, "exchange: only for a live source"),
    ({"source": "oanda", "market": "forex", "symbols": ["EUR_USD"]}, "source oanda needs account_id"),
    ({"source": "alpaca", "market": "stock", "symbols": ["AAPL"], "exchange": "x"}, "exchange: only for source ccxt"),
    ({"source": "alpaca", "symbols": ["AAPL"]}, "source alpaca is for market stock, not crypto"),
])
def test_feed_config_names_what_is_wrong(feed: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SystemConfig.model_validate({"feeds": [feed]})


_LIVE_FEED = {"venue": "binance", "source": "ccxt", "exchange": "binance", "symbols": ["BTC/USDT"]}
_LIVE_VENUE = {"name": "binance", "kind": "ccxt", "exchange": "binance", "symbols": ["BTC/USDT"]}
_LIVE_STRATEGY = {"id": "s", "ref": "sma_cross", "symbols": ["BTC/USDT"]}


def _live(**over: object) -> dict[str, object]:
    return {"environment": "LIVE", "feeds": [_LIVE_FEED], "venues": [_LIVE_VENUE], "strategies": [_LIVE_STRATEGY],
            **over}


def test_live_config_routes_every_traded_symbol_to_one_venue() -> None:
    cfg = SystemConfig.model_validate(_live())
    assert cfg.venues[0].default_rate() is None and cfg.live.unknown_grace_s == 10.0
    with pytest.raises(ValueError, match="needs venues"):
        SystemConfig.model_validate(_live(venues=[]))
    with pytest.raises(ValueError, match=r"no venue routes \['BTC/USDT'\]"):
        SystemConfig.model_validate(_live(venues=[{**_LIVE_VENUE, "symbols": ["ETH/USDT"]}]))
    with pytest.raises(ValueError, match="routed to both venues"):
        SystemConfig.model_validate(_live(venues=[_LIVE_VENUE, {**_LIVE_VENUE, "name": "b2"}]))
    with pytest.raises(ValueError, match="kind oanda needs account_id"):
        SystemConfig.model_validate(_live(venues=[{"name": "o", "kind": "oanda", "symbols": ["BTC/USDT"]}]))


def test_live_starts_advisory_and_paper_refuses_venues_and_dry_run() -> None:
    with pytest.raises(ValueError, match="starts in advisory mode"):
        SystemConfig.model_validate(_live(mode="operator", allow_operator=True))
    with pytest.raises(ValueError, match="cannot use a replay feed"):
        SystemConfig.model_validate(_live(feeds=[{"generated_symbols": ["BTC/USDT"]}]))
    with pytest.raises(ValueError, match="venues: only for environment LIVE"):
        SystemConfig.model_validate({"venues": [_LIVE_VENUE]})
    with pytest.raises(ValueError, match="dry_run: only for environment LIVE"):
        SystemConfig.model_validate({"dry_run": True})
