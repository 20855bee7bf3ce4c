"""The portfolio backtest (mmats.engine.portfolio_backtest): one account, many symbols and strategies.

Real bars from ../shared/data: EUR/USD and SPY hourly, USD/JPY by the minute, February 2013 (the month the
three files share), so the account holds USD, JPY-quoted positions and the USD/JPY feed moves the JPY rate.
"""

from __future__ import annotations

import gc
import json
import weakref
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmats.audit import InMemoryJournal
from mmats.engine.portfolio_backtest import (
    PortfolioBacktest,
    _revalue,
    _Slot,
    load_portfolio_data,
    run_portfolio_backtest,
)
from mmats.engine.strategy_host import StrategyHost
from mmats.errors import ConfigError
from mmats.model import Environment, MarketType
from mmats.research.runconfig import BacktestConfig, run_backtest
from mmats.risk.monitor import KillSwitchMonitor
from mmats.system_config import SystemConfig, load_system_config
from tests.conftest import shared_file

COSTS = {"commission": {"model": "percent", "taker_bps": 2.0}, "slippage": {"model": "fixed", "bps": 1.0}}
FEB_2013 = ("2013-02-01", "2013-03-01")


def mixed_config() -> dict[str, Any]:
    return {
        "initial_cash": 100_000.0,
        "base_currency": "USD",
        "feeds": [
            {"venue": "fx", "market": "forex", "files": {"EURUSD": str(shared_file("forex_EURUSD_1h.parquet")),
                                                         "USDJPY": str(shared_file("forex_USDJPY_1m.parquet"))}},
            {"venue": "stocks", "market": "stock", "files": {"SPY": str(shared_file("stock_SPY_1h.parquet"))}},
        ],
        "strategies": [
            {"id": "trend", "ref": "sma_cross", "symbols": ["EURUSD", "USDJPY"], "params": {"fast": 5, "slow": 20},
             "allocation": 0.2},
            {"id": "revert", "ref": "rsi_reversion", "symbols": ["SPY"], "params": {"oversold": 40, "exit": 55},
             "allocation": 0.3},
            {"id": "breakout", "ref": "donchian_breakout", "symbols": ["USDJPY"], "allocation": 0.2,
             "timeframe": "15m"},
        ],
        "costs": COSTS,
    }


def system(raw: dict[str, Any]) -> SystemConfig:
    return SystemConfig.model_validate(raw)


@pytest.fixture(scope="module")
def mixed_run() -> tuple[PortfolioBacktest, Any]:
    cfg = system(mixed_config())
    engine = PortfolioBacktest(cfg, load_portfolio_data(cfg, *FEB_2013))
    return engine, engine.run()


def test_equity_identity_and_attribution_add_up(mixed_run: tuple[PortfolioBacktest, Any]) -> None:
    engine, result = mixed_run
    pf = engine.portfolio
    doc = result.to_dict()
    s = doc["summary"]
    assert s["symbols"] == 3 and s["strategies"] == 3 and s["currency"] == "USD"
    assert len(result.fills) > 50
    # JPY-quoted trades moved JPY cash, valued at the feed's USD/JPY rate.
    assert "JPY" in s["cash_by_currency"] and s["fx_sources"]["JPY"].startswith("feed USD/JPY")
    # Ledger identities: equity = cash (in base) + positions (in base) = initial + P&L - fees + translation.
    rate = {c: Decimal(1) if c == "USD" else pf.fx.rate(c) for c in pf.balances}
    cash = sum((amount * rate[c] for c, amount in pf.balances.items()), Decimal(0))
    held = sum((p.quantity * p.last_price * pf.fx.rate(pf.quote_currency(sym)) if pf.quote_currency(sym) != "USD"
                else p.quantity * p.last_price for sym, p in pf.positions.items() if p.quantity), Decimal(0))
    assert abs(pf.equity - (cash + held)) < Decimal("1e-9")
    identity = pf.initial_cash + pf.realized_pnl + pf.unrealized_pnl - pf.fees + pf.fx_pnl
    assert abs(pf.equity - identity) < Decimal("1e-9")
    # The float equity curve (derived after the loop) ends where the Decimal ledger does.
    assert s["reconciled"] is True
    assert result.equity[-1] == pytest.approx(float(pf.equity), abs=1e-6)
    assert len(result.equity) == len(result.ts_ns) == s["timestamps"]
    # Attribution: per strategy, per market and per symbol, each adds up to the account's totals.
    att = doc["attribution"]
    for key in ("by_strategy", "by_market", "by_symbol"):
        rows = att[key].values()
        assert sum(r["realized_pnl"] for r in rows) == pytest.approx(float(pf.realized_pnl), abs=0.01 * len(rows))
        assert sum(r["fees"] for r in rows) == pytest.approx(float(pf.fees), abs=0.01 * len(rows))
    by_strategy = att["by_strategy"]
    assert set(by_strategy) == {"trend", "revert", "breakout"}
    assert sum(r["fills"] for r in by_strategy.values()) == len(result.fills)
    assert all(r["trades"] > 0 for r in by_strategy.values())
    for r in by_strategy.values():
        assert 0 <= r["wins"] <= r["trades"] and r["win_rate"] == pytest.approx(r["wins"] / r["trades"])
    assert set(att["by_market"]) == {"forex", "stock"}
    assert sum(r["trades"] for r in att["by_market"].values()) == len(result.trades)
    # the equal-weight buy and hold: one trade per symbol, each its symbol's return over the run
    moves = [slot.closes[-1] / slot.closes[0] - 1 for slot in engine.slots.values()]
    bench = doc["benchmark"]
    assert bench["num_trades"] == 3 and bench["best_trade"] == pytest.approx(max(moves))
    assert bench["worst_trade"] == pytest.approx(min(moves))
    assert bench["win_rate"] == pytest.approx(sum(m > 0 for m in moves) / 3)


def test_bars_merge_in_time_order_across_timeframes(mixed_run: tuple[PortfolioBacktest, Any]) -> None:
    engine, result = mixed_run
    ts = result.ts_ns
    assert (ts[1:] > ts[:-1]).all()
    data = engine.data.series
    assert len(ts) == len(set().union(*(a.ts_ns.tolist() for a in data.values())))
    fill_times = [f.ts_ns for f in result.fills]
    assert fill_times == sorted(fill_times)
    # every order fills from its symbol's next bar on, never on the bar that decided it
    for o in result.orders:
        if o.status.value == "FILLED" and o.order_type.value == "MARKET" and o.parent_id is None:
            first = min(f.ts_ns for f in result.fills if f.client_order_id == o.client_order_id)
            assert first > o.created_ns


def test_same_input_same_result() -> None:
    cfg = system(mixed_config())
    a = run_portfolio_backtest(cfg, load_portfolio_data(cfg, "2013-02-04", "2013-02-12"))
    b = run_portfolio_backtest(cfg, load_portfolio_data(cfg, "2013-02-04", "2013-02-12"))
    assert a.to_json() == b.to_json()
    assert json.loads(a.to_json())["mmats_result_version"] == 1


def test_a_finished_run_goes_with_its_owner_without_the_cycle_collector() -> None:
    """The strategies' contexts and the kill switch call back into the engine: through weak references, so
    a run's indicator columns are freed when the engine is dropped, not at some later full collection (a
    sweep runs many in one process)."""
    cfg = system(mixed_config())
    data = load_portfolio_data(cfg, "2013-02-04", "2013-02-12")
    gc.disable()
    try:
        engine = PortfolioBacktest(cfg, data)
        result = engine.run()
        gone = weakref.ref(engine)
        del engine
        assert gone() is None
        gc.set_debug(gc.DEBUG_SAVEALL)  # what only the cycle collector would free: none of the run's symbols
        gc.collect()
        assert not [o for o in gc.garbage if isinstance(o, _Slot)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert result.fills


def test_the_kill_switch_watches_the_equity_of_every_timestamp_valued_afresh_or_by_the_terms_that_moved(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Between two changes of the books only the equity terms whose close moved are valued again; what the
    monitor sees stays within a few units in the last place of a full valuation at every timestamp."""
    raw = mixed_config()
    raw["risk"] = {"kill_switch": {"max_drawdown_pct": 0.9, "daily_loss_pct": 0.9}}
    cfg = system(raw)
    engine = PortfolioBacktest(cfg, load_portfolio_data(cfg, "2013-02-04", "2013-02-12"))
    assert engine.monitor.watches_equity
    seen: list[tuple[float, float]] = []
    watch = KillSwitchMonitor.on_equity

    def on_equity(monitor: KillSwitchMonitor, ts_ns: int, equity: float) -> Any:
        terms = [list(term) for term in engine._eq_terms]  # copies: the kept values stay as they are
        _revalue(terms)
        fresh = engine._eq_base  # every term valued at the same closes
        for term in terms:
            fresh += term[0]
        seen.append((equity, fresh))
        return watch(monitor, ts_ns, equity)

    monkeypatch.setattr(KillSwitchMonitor, "on_equity", on_equity)
    full = 0
    value_all = engine._equity_now

    def count() -> float:
        nonlocal full
        full += 1
        return value_all()

    engine._equity_now = count  # type: ignore[method-assign]
    result = engine.run()
    assert len(seen) == len(result.ts_ns) and result.fills
    assert full < len(seen) // 2  # most timestamps value only the terms a moved close reads
    assert max(abs(a - b) / abs(b) for a, b in seen) < 1e-12
    assert len({round(b, 6) for _, b in seen}) > 100  # the equity does move


def test_one_strategy_on_one_symbol_matches_the_single_symbol_engine() -> None:
    """The portfolio engine and the single-symbol engine decide, size, gate and fill alike."""
    path = str(shared_file("stock_SPY_1h.parquet"))
    params = {"fast": 8, "slow": 30}
    cfg = system({"initial_cash": 50_000.0, "costs": COSTS,
                  "feeds": [{"venue": "s", "market": "stock", "files": {"SPY": path}}],
                  "strategies": [{"id": "sma_cross", "ref": "sma_cross", "symbols": ["SPY"], "params": params}]})
    pf = run_portfolio_backtest(cfg, load_portfolio_data(cfg, "2015-01-01", "2017-01-01"))
    single = run_backtest(BacktestConfig(strategy="sma_cross", params=params, data=path, symbol="SPY",
                                         market=MarketType.STOCK, start="2015-01-01", end="2017-01-01",
                                         initial_cash=50_000.0, commission=COSTS["commission"],
                                         slippage=COSTS["slippage"]))

    def key(orders: list[Any]) -> list[tuple[str, str, str, str, str]]:
        return sorted((o.client_order_id, o.side.value, str(o.filled_quantity), str(o.avg_fill_price), o.status.value)
                      for o in orders)

    assert len(single.orders) > 20
    assert key(pf.orders) == key(single.orders)
    assert pf.summary["final_equity"] == pytest.approx(single.summary["final_equity"], abs=1e-6)
    assert pf.equity[-1] == pytest.approx(single.equity[-1], abs=1e-6)
    assert len(pf.equity) == len(single.equity)


def test_a_timeframe_strategy_sees_the_bins_the_live_host_completes() -> None:
    """Signals of a 15m strategy on 1m bars: the backtest's precomputed bins and indicators give exactly
    the signals the live StrategyHost emits from the same bars one at a time."""
    cfg = system({"initial_cash": 100_000.0,
                  "feeds": [{"venue": "g", "market": "crypto", "generated_symbols": ["X/USDT"],
                             "generated_bars": 3_000}],
                  "strategies": [{"id": "tf", "ref": "sma_cross", "symbols": ["X/USDT"], "timeframe": "15m",
                                  "params": {"fast": 3, "slow": 8}, "allocation": 0.5}]})
    journal = InMemoryJournal()
    data = load_portfolio_data(cfg)
    run_portfolio_backtest(cfg, data, journal=journal)
    got = [(r.ts_ns, r.payload["action"]) for r in journal.records() if r.kind == "signal"]
    a = data.series["X/USDT"]
    bars = list(zip(["X/USDT"] * len(a), a.ts_ns.tolist(), a.open.tolist(), a.high.tolist(), a.low.tolist(),
                    a.close.tolist(), a.volume.tolist(), strict=True))
    host = StrategyHost("tf", "sma_cross", {"fast": 3, "slow": 8}, ["X/USDT"], MarketType.CRYPTO,
                        Environment.PAPER, timeframe="15m")
    live, _ = host.on_bars(bars)
    assert len(got) > 10
    assert got == [(p.ts_ns, p.signal.action.value) for p in live]


def test_the_kill_switch_flattens_and_stops_trading() -> None:
    raw = mixed_config()
    raw["risk"] = {"kill_switch": {"max_drawdown_pct": 0.002}}
    cfg = system(raw)
    engine = PortfolioBacktest(cfg, load_portfolio_data(cfg, *FEB_2013))
    result = engine.run()
    assert [k.state for k in result.kill_switch] == ["HARD"]
    halted = result.kill_switch[0].ts_ns
    flatten = [f for f in result.fills if f.strategy_id.startswith("kill")]
    assert flatten and all(f.ts_ns == halted for f in flatten)
    assert not [f for f in result.fills if f.ts_ns > halted]  # nothing trades after a HARD stop
    assert all(p.quantity == 0 for p in engine.portfolio.positions.values())
    vetoed = [d for d in result.decisions if d.intent.ts_ns > halted]
    assert all(d.status.value == "REJECTED" for d in vetoed)


def test_bad_input_is_refused_with_its_reason(tmp_path: Path) -> None:
    live = system({"feeds": [{"venue": "b", "market": "crypto", "source": "ccxt", "exchange": "binance",
                              "symbols": ["BTC/USDT"]}],
                   "strategies": [{"id": "s", "ref": "sma_cross", "symbols": ["BTC/USDT"]}]})
    with pytest.raises(ConfigError, match="source ccxt streams live candles"):
        load_portfolio_data(live)
    cfg = system(mixed_config())
    with pytest.raises(ConfigError, match="fewer than 2 bars between 2030-01-01"):
        load_portfolio_data(cfg, "2030-01-01", None)
    with pytest.raises(ConfigError, match="is not a date"):
        load_portfolio_data(cfg, "last tuesday", None)
    none_enabled = mixed_config()
    for s in none_enabled["strategies"]:
        s["enabled"] = False
    with pytest.raises(ConfigError, match="at least one enabled strategy"):
        PortfolioBacktest(system(none_enabled), load_portfolio_data(cfg, *FEB_2013))
    path = tmp_path / "system.yaml"
    path.write_text("feeds: [{venue: g, generated_symbols: [A/USDT]}]\n"
                    "strategies: [{id: s, ref: sma_cross, symbols: [B/USDT]}]\n")
    with pytest.raises(ConfigError, match="no feed provides"):
        load_system_config(str(path), env={})


# ----------------------------------------------------------------- what the running system feeds, fed here too


def generated(symbols: list[str], strategies: list[dict[str, Any]], **extra: Any) -> SystemConfig:
    return system({"initial_cash": 100_000.0, "costs": COSTS,
                   "feeds": [{"venue": "g", "market": "crypto", "generated_symbols": symbols, "generated_bars": 3_000}],
                   "strategies": strategies, **extra})


def test_a_perpetuals_funding_is_paid_in_the_portfolio_backtest() -> None:
    strategies = [{"id": "long", "ref": "sma_cross", "symbols": ["XBTPERP"], "params": {"fast": 20, "slow": 80},
                   "allocation": 0.5}]
    plain = run_portfolio_backtest(generated(["XBTPERP"], strategies))
    funded_cfg = generated(["XBTPERP"], strategies, instruments={"XBTPERP": {"funding": {"rate": 0.001,
                                                                                        "interval_h": 1}}})
    funded = run_portfolio_backtest(funded_cfg)
    events = funded.summary["margin_events"]
    assert events and all(e["type"] == "funding" for e in events)
    # By hand: at each hour, the first bar at or after it settles -qty x open x rate on the position held
    # after that bar's fills; flat hours pay nothing (and are not settled late when a position reopens).
    bars = load_portfolio_data(funded_cfg).series["XBTPERP"]
    hour = 3_600_000_000_000
    expected = []
    due = -(-int(bars.ts_ns[0]) // hour) * hour
    for ts, op in zip(bars.ts_ns.tolist(), bars.open.tolist(), strict=True):
        if ts < due:
            continue
        qty = sum((f.signed_quantity for f in funded.fills if f.ts_ns <= ts), Decimal(0))
        if qty:
            px = Decimal(repr(op)).quantize(Decimal("0.01"))
            expected.append((due, str((-qty * px * Decimal("0.001")).quantize(Decimal("1e-8")))))
        due = (ts // hour + 1) * hour
    got = [(int(np.datetime64(e["time"].rstrip("Z"), "ns").astype(np.int64)), e["amount"]) for e in events]
    assert got == expected
    # sma_cross only goes long: a long pays a positive rate, every time it holds at a funding time
    assert all(Decimal(e["amount"]) < 0 and Decimal(e["quantity"]) > 0 for e in events)
    paid = -sum(Decimal(e["amount"]) for e in events)
    assert [o.client_order_id for o in funded.orders] == [o.client_order_id for o in plain.orders]
    assert plain.summary["final_equity"] - funded.summary["final_equity"] == pytest.approx(float(paid), rel=0.05)
    assert funded.summary["reconciled"] is True
    assert funded.summary["margin"]["XBTPERP"]["funding_paid"]


def test_allocation_weights_size_each_strategys_orders() -> None:
    strategies = [{"id": "a", "ref": "sma_cross", "symbols": ["AAA/USDT"], "params": {"fast": 5, "slow": 20}},
                  {"id": "b", "ref": "sma_cross", "symbols": ["BBB/USDT"], "params": {"fast": 5, "slow": 20}}]
    even = run_portfolio_backtest(generated(["AAA/USDT", "BBB/USDT"], strategies,
                                            allocation={"weights": {"a": 0.5, "b": 0.5}}))
    tilted = run_portfolio_backtest(generated(["AAA/USDT", "BBB/USDT"], strategies,
                                              allocation={"weights": {"a": 0.8, "b": 0.2}}))

    def first_order(result: Any, sid: str) -> Any:
        return next(o for o in result.orders if o.strategy_id == sid)

    assert first_order(even, "a").client_order_id == first_order(tilted, "a").client_order_id
    ratio_a = first_order(tilted, "a").quantity / first_order(even, "a").quantity
    ratio_b = first_order(tilted, "b").quantity / first_order(even, "b").quantity
    assert float(ratio_a) == pytest.approx(1.6, rel=0.02) and float(ratio_b) == pytest.approx(0.4, rel=0.02)
    assert tilted.summary["allocation"]["weights"] == {"a": 0.8, "b": 0.2}


def test_volatility_sizing_reads_the_atr_of_the_bars() -> None:
    strategies = [{"id": "t", "ref": "sma_cross", "symbols": ["AAA/USDT"], "params": {"fast": 5, "slow": 20}}]
    risk = {"sizing": {"default": {"method": "volatility_target", "risk_fraction": 0.0002, "atr_period": 14}}}
    sized = run_portfolio_backtest(generated(["AAA/USDT"], strategies, risk=risk))
    entries = [d for d in sized.decisions if not d.intent.reduces_position]
    # without an ATR the method sizes 0 (every entry refused); fed from the bars, each entry is cut to it
    assert len(entries) > 10
    assert all(d.status.value == "RESIZED" and 0 < d.quantity < d.intent.quantity for d in entries)
    assert all(any(r.rule == "Sizing:volatility_target" for r in d.reasons) for d in entries)


def test_aggregation_combines_one_bars_signals_before_the_gate() -> None:
    strategies = [{"id": "fast", "ref": "sma_cross", "symbols": ["AAA/USDT"], "params": {"fast": 3, "slow": 10},
                   "allocation": 0.4},
                  {"id": "slow", "ref": "sma_cross", "symbols": ["AAA/USDT"], "params": {"fast": 3, "slow": 10},
                   "allocation": 0.4}]
    independent = run_portfolio_backtest(generated(["AAA/USDT"], strategies))
    combined = run_portfolio_backtest(generated(["AAA/USDT"], strategies,
                                                risk={"aggregation": {"mode": "CONSENSUS"}}))
    assert {o.strategy_id for o in independent.orders} == {"fast", "slow"}
    assert {o.strategy_id for o in combined.orders} == {"agg:consensus"}
    assert len(combined.orders) == len(independent.orders) // 2


def crash_csv(path: Path, start: float, drop: float) -> str:
    """Minute bars: a dip, a steady rise (a moving-average cross buys it), a fall of ``drop``, flat."""
    import numpy as np
    import pandas as pd

    rise = np.concatenate([np.linspace(start, start * 0.97, 100), np.linspace(start * 0.97, start * 1.1, 300)])
    fall = np.linspace(start * 1.1, start * 1.1 * (1 - drop), 2)  # one bar falls the whole way
    close = np.concatenate([rise, fall, np.full(200, start * 1.1 * (1 - drop))])
    ts = pd.date_range("2024-03-01", periods=len(close), freq="1min", tz="UTC")
    opens = np.concatenate([[close[0]], close[:-1]])
    df = pd.DataFrame({"ts": ts, "open": opens, "high": np.maximum(opens, close) * 1.0005,
                       "low": np.minimum(opens, close) * 0.9995, "close": close, "volume": 1.0})
    df.to_csv(path, index=False)
    return str(path)


def test_a_leveraged_perpetual_is_liquidated_and_skipped_bars_change_nothing(tmp_path: Path) -> None:
    """Bars that cannot reach a position's liquidation band skip the venue's margin step; a run that
    steps every bar gives the very same liquidation, fills and equity."""
    raw = {"initial_cash": 100_000.0, "costs": {"commission": {"model": "percent", "taker_bps": 2.0}},
           "feeds": [{"venue": "c", "market": "crypto",
                      "files": {"XBTPERP": crash_csv(tmp_path / "x.csv", 100.0, 0.6),
                                "ETHPERP": crash_csv(tmp_path / "e.csv", 50.0, 0.01)}}],
           "instruments": {"XBTPERP": {"leverage": 20, "maintenance_margin": 0.045},
                           "ETHPERP": {"leverage": 20, "maintenance_margin": 0.045}},
           "risk": {"global": {"max_position_pct": 10, "max_leverage": 20, "max_concentration_pct": 10}},
           "strategies": [{"id": "lev", "ref": "sma_cross", "symbols": ["XBTPERP"], "params": {"fast": 5, "slow": 30},
                           "allocation": 4},
                          {"id": "eth", "ref": "sma_cross", "symbols": ["ETHPERP"], "params": {"fast": 5, "slow": 30},
                           "allocation": 4}]}
    cfg = system(raw)
    skipping = PortfolioBacktest(cfg, load_portfolio_data(cfg))
    stepped = PortfolioBacktest(cfg, load_portfolio_data(cfg))
    calls = {"n": 0}

    def always(slot: Any, t: int) -> bool:
        calls["n"] += 1
        return True

    stepped._margin_due = always  # type: ignore[method-assign]
    a, b = skipping.run(), stepped.run()
    liquidations = [f for f in a.fills if f.strategy_id == "liquidation"]
    assert [(f.symbol, f.price) for f in liquidations] == [("XBTPERP", liquidations[0].price)]
    assert a.summary["margin"]["XBTPERP"]["liquidations"] == 1 and a.summary["margin"]["ETHPERP"]["liquidations"] == 0
    assert [f.to_dict() for f in a.fills] == [f.to_dict() for f in b.fills]
    assert a.summary["final_equity"] == b.summary["final_equity"] and a.summary["reconciled"]
    assert calls["n"] > 300  # the stepped run called the venue on every held bar; the other did not need to


def test_two_symbols_signalling_on_one_bar_both_trade(tmp_path: Path) -> None:
    """A strategy trading several symbols whose signals fall on the same bar: each symbol gets its order
    (a signal id of the bar time alone made the second look like a duplicate of the first), with the ids
    the running system's strategy host gives them."""
    path = crash_csv(tmp_path / "a.csv", 100.0, 0.05)
    cfg = system({"initial_cash": 100_000.0, "costs": COSTS,
                  "feeds": [{"venue": "c", "market": "crypto", "files": {"AAA/USDT": path, "BBB/USDT": path}}],
                  "strategies": [{"id": "both", "ref": "sma_cross", "symbols": ["AAA/USDT", "BBB/USDT"],
                                  "params": {"fast": 5, "slow": 30}, "allocation": 0.4}]})
    data = load_portfolio_data(cfg)
    result = run_portfolio_backtest(cfg, data)
    by_symbol: dict[str, list[Any]] = {}
    for o in result.orders:
        by_symbol.setdefault(o.symbol, []).append(o)
    assert len(by_symbol["AAA/USDT"]) == len(by_symbol["BBB/USDT"]) >= 2
    for a, b in zip(by_symbol["AAA/USDT"], by_symbol["BBB/USDT"], strict=True):
        assert a.created_ns == b.created_ns and a.client_order_id != b.client_order_id
        assert a.signal_id == f"{a.created_ns}:AAA/USDT" and a.status.value == b.status.value == "FILLED"
    s = data.series["AAA/USDT"]
    host = StrategyHost("both", "sma_cross", {"fast": 5, "slow": 30}, ["AAA/USDT", "BBB/USDT"], MarketType.CRYPTO,
                        Environment.PAPER)
    bars = sorted((sym, ts, o, h, lo, c, v) for sym in ("AAA/USDT", "BBB/USDT") for ts, o, h, lo, c, v in zip(
        s.ts_ns.tolist(), s.open.tolist(), s.high.tolist(), s.low.tolist(), s.close.tolist(), s.volume.tolist(),
        strict=True))
    live, _ = host.on_bars(sorted(bars, key=lambda b: (b[1], b[0])))
    assert sorted(p.signal.signal_id for p in live) == sorted(o.signal_id for o in result.orders)


def test_sharpe_of_a_mixed_timeline_comes_from_daily_closes() -> None:
    """Daily stock bars for a year, then hourly crypto bars: one bar size cannot annualise both."""
    import numpy as np

    from mmats.engine.portfolio_backtest import daily_ratios

    day, hour = 86_400_000_000_000, 3_600_000_000_000
    rng = np.random.default_rng(7)
    t_daily = np.arange(365) * day
    t_hourly = t_daily[-1] + day + np.arange(24 * 200) * hour
    times = np.concatenate([t_daily, t_hourly])
    equity = 100_000 * np.cumprod(1 + rng.normal(2e-4, 2e-3, len(times)))
    got = daily_ratios({"sharpe": 99.0, "sortino": 99.0}, equity, times)
    closes = {}
    for t, e in zip(times.tolist(), equity.tolist(), strict=True):
        closes[t // day] = e  # the last value of each UTC day
    daily = np.array([closes[d] for d in range(min(closes), max(closes) + 1)])
    r = np.diff(daily) / daily[:-1]
    assert abs(got["sharpe"] - r.mean() / r.std(ddof=1) * np.sqrt(365)) < 1e-9
    assert 0 < got["sharpe"] < 10 and got["sortino"] > 0


@pytest.mark.parametrize("n_symbols", [3, 70])  # up to 62 symbols as bit codes, more as rows of a table
def test_the_timeline_groups_each_time_with_exactly_the_symbols_that_have_a_bar_then(n_symbols: int) -> None:
    from mmats.engine.portfolio_backtest import _timeline

    rng = np.random.default_rng(n_symbols)
    series = {f"S{j}": np.sort(rng.choice(np.arange(2_000), int(rng.integers(5, 800)), replace=False)).astype(np.int64)
              for j in range(n_symbols)}
    times, t_list, codes, groups, places = _timeline(series)
    bars_at = {sym: set(ts.tolist()) for sym, ts in series.items()}
    assert times.tolist() == list(t_list) == sorted(set().union(*bars_at.values()))
    for k, t in enumerate(t_list):
        assert list(groups[codes[k]]) == [sym for sym in series if t in bars_at[sym]]
    for sym, ts in series.items():
        assert times[places[sym]].tolist() == ts.tolist()


def test_an_indicator_output_is_converted_when_first_read_and_an_undeclared_one_is_refused() -> None:
    from mmats.data import BarArrays
    from mmats.engine.backtest import _Cursor
    from mmats.errors import StrategyError

    ts = np.arange(4, dtype=np.int64)
    ones = np.ones(4)
    cur = _Cursor(BarArrays(ts, ones, ones, ones, ones, ones), {},
                  {"SMA_2": np.array([np.nan, 1.0, 2.0, 3.0]), "SMA_3": np.array([np.nan, np.nan, 2.0, 2.5])})
    cur.i = 2
    assert cur["SMA_2"] == 2.0 and list(cur._cols) == ["SMA_2"]  # only what was read became a column
    assert cur.get("SMA_3") == 2.0 and cur.get("RSI_14", -1.0) == -1.0
    with pytest.raises(StrategyError, match=r"'RSI_14' was not declared .*available: SMA_2, SMA_3"):
        cur["RSI_14"]


def test_the_data_keeps_its_timeline_layout_for_every_run_and_pickles_as_its_bars_alone() -> None:
    import pickle

    cfg = system(mixed_config())
    data = load_portfolio_data(cfg, "2013-02-04", "2013-02-12")
    size = len(pickle.dumps(data))
    first = PortfolioBacktest(cfg, data).run()
    layout = data.layout()
    again = PortfolioBacktest(cfg, data).run()
    assert data.layout() is layout and again.to_json() == first.to_json()  # derived once, same result
    copy = pickle.loads(pickle.dumps(data))
    assert len(pickle.dumps(data)) == size and copy.fingerprint() == data.fingerprint()
    assert PortfolioBacktest(cfg, copy).run().to_json() == first.to_json()
