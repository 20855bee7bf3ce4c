"""base_currency and fx_rates: refused at load when a currency has no rate, in effect in backtests."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from mmats.errors import ConfigError
from mmats.research.runconfig import load_run_data, parse_config, run_backtest
from mmats.system_config import load_system_config
from tests.conftest import shared_file


def write(tmp_path: Path, cfg: dict[str, object]) -> str:
    path = tmp_path / "system.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def forex_feed(*symbols: str) -> dict[str, object]:
    return {"venue": "fx", "market": "forex", "generated_symbols": list(symbols)}


def test_system_config_refuses_a_currency_without_a_rate(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no rate converts JPY .* USD/JPY or JPY/USD.*fx_rates"):
        load_system_config(write(tmp_path, {"feeds": [forex_feed("EUR/JPY")]}))
    with pytest.raises(ConfigError, match=r"USDT .* base currency EUR"):
        load_system_config(write(tmp_path, {"base_currency": "EUR"}))  # the default SYNTH/USDT feed
    with pytest.raises(ConfigError, match="not a currency code"):
        load_system_config(write(tmp_path, {"base_currency": "US dollars"}))


def test_system_config_takes_rates_from_feeds_then_fx_rates(tmp_path: Path) -> None:
    cfg = load_system_config(write(tmp_path, {"feeds": [forex_feed("EUR/JPY", "USD/JPY")]}))
    assert cfg.base_currency == "USD" and cfg.fx_plan().sources()["JPY"] == "feed USD/JPY (inverted)"
    cfg = load_system_config(write(tmp_path, {"feeds": [forex_feed("EUR/JPY")], "fx_rates": {"USD/JPY": 150}}))
    fx = cfg.fx_plan()
    assert fx.rate("JPY") * 150 == 1 and fx.sources()["JPY"] == "config USD/JPY (inverted)"
    eur = load_system_config(write(tmp_path, {"base_currency": "eur", "fx_rates": {"EUR/USD": 1.08}}))
    assert eur.base_currency == "EUR" and "USDT/USD = 1 assumed" in eur.fx_plan().notes()[0]
    with pytest.raises(ConfigError, match="a feed carries USD/JPY"):
        load_system_config(write(tmp_path, {"feeds": [forex_feed("EUR/JPY", "USD/JPY")],
                                            "fx_rates": {"USD/JPY": 150}}))


def test_backtest_config_refuses_a_currency_without_a_rate() -> None:
    cfg = parse_config({"strategy": "sma_cross", "symbol": "EUR/GBP", "market": "forex",
                        "generated": {"bars": 500, "start_price": 0.85}})
    with pytest.raises(ConfigError, match=r"no rate converts GBP .*EUR/GBP.*fx_rates"):
        load_run_data(cfg)


def test_backtest_fx_rate_converts_the_quote_currency_pnl() -> None:
    """The same GBP-quoted run accounted in GBP, and in USD at GBP/USD 1.27 with 1.27 times the cash."""
    common = {"strategy": "sma_cross", "params": {"fast": 5, "slow": 20}, "symbol": "EUR/GBP", "market": "forex",
              "generated": {"bars": 3000, "start_price": 0.85}, "commission": {"model": "spread", "pips": 0.5}}
    gbp = run_backtest(parse_config({**common, "base_currency": "GBP", "initial_cash": 10_000}))
    usd = run_backtest(parse_config({**common, "fx_rates": {"GBP/USD": 1.27}, "initial_cash": 12_700}))
    assert gbp.summary["currency"] == "GBP" and usd.summary["currency"] == "USD"
    assert usd.summary["fx"]["rates"]["GBP"] == "config GBP/USD"
    assert len(usd.fills) == len(gbp.fills) > 10  # the same orders: sized from the same equity in GBP
    assert [f.quantity for f in usd.fills] == [f.quantity for f in gbp.fills]
    gbp_pnl = gbp.summary["final_equity"] - 10_000
    usd_pnl = usd.summary["final_equity"] - 12_700
    assert usd_pnl == pytest.approx(1.27 * gbp_pnl, abs=1e-3)
    assert usd.summary["fees"] == pytest.approx(1.27 * gbp.summary["fees"], abs=1e-3)


def test_usd_jpy_backtest_pnl_is_converted_at_the_pairs_own_rate() -> None:
    cfg = parse_config({"strategy": "sma_cross", "params": {"fast": 10, "slow": 30}, "symbol": "USD/JPY",
                        "market": "forex", "data": str(shared_file("forex_USDJPY_1m.parquet")),
                        "end": "2023-01-10", "commission": {"model": "spread", "pips": 0.5, "pip_size": 0.01}})
    res = run_backtest(cfg)
    s = res.summary
    assert s["currency"] == "USD" and s["fx"]["rates"]["JPY"] == "feed USD/JPY (inverted)" and s["reconciled"]
    assert len(res.trades) > 5
    fills = {f.ts_ns: f for f in res.fills}
    for t in res.trades:
        # A round trip of one entry and one exit fill: yen P&L at the exit fill's own rate, fees at each fill's.
        entry, exit_ = fills[t.entry_ns], fills[t.exit_ns]
        sign = 1 if t.side == "LONG" else -1
        yen = Decimal(repr(t.quantity)) * (exit_.price - entry.price) * sign
        usd = yen / exit_.price - entry.fee / entry.price - exit_.fee / exit_.price
        assert t.pnl == pytest.approx(float(usd), abs=1e-9)
    # Equity in USD: the P&L identity of the ledger holds in the result too.
    total = s["realized_pnl"] + s["unrealized_pnl"] - s["fees"] + s["fx"]["fx_pnl"]
    assert s["final_equity"] == pytest.approx(10_000 + total, abs=1e-4)
    # Sized in USD: a full position is about 10,000 dollars, not 10,000 yen.
    assert max(abs(f.quantity) for f in res.fills) > Decimal(9_000)


def test_crypto_backtest_in_usd_states_the_usdt_peg() -> None:
    res = run_backtest(parse_config({"strategy": "sma_cross", "generated": {"bars": 400}}))
    note = ('USDT/USD = 1 assumed (no feed and no fx_rates entry gives it; set fx_rates {"USDT/USD": <rate>} '
            "to override)")
    assert res.summary["currency"] == "USD" and note in res.warnings and res.summary["fx"]["notes"] == [note]
    pegged = run_backtest(parse_config({"strategy": "sma_cross", "generated": {"bars": 400},
                                        "fx_rates": {"USDT/USD": 0.5}}))
    assert pegged.summary["fx"]["notes"] == [] and pegged.summary["final_equity"] != res.summary["final_equity"]
