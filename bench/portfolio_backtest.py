"""Portfolio backtest throughput: 10 symbols (crypto, forex, stocks; USDT, USD and JPY quotes), 3
strategies on each, the full risk gatekeeper, two years of bars, one account.

The real series from ../shared/data: the one-month minute files are stitched end to end to two years
(as bench/backtest_throughput.py does: each copy rescaled to continue from the previous close), the
hourly and daily files are cut to their last two years; every series is then moved by whole weeks so
that all of them cover the same two years (the bars' weekdays and hours are kept). The single-symbol
engine runs, in the same process and over the stitched BTC minute bars, each of the portfolio's three
strategies with the same costs, one run each: ``single_symbol_bars_per_sec`` is the bars per second of
the three runs together (the per-bar cost of the same strategy set one symbol at a time) and ``ratio``
the portfolio's bars per second over it, the target's "a portfolio backtest costs at most twice a
single-symbol one per bar". ``ratio_one_strategy`` compares with the trend strategy alone (a
portfolio bar runs three strategies, so it cannot reach 0.5 by construction). It also runs the
reference configuration of bench/backtest_throughput.py (sma_cross 10/30, 10 + 2 bps), reported as
``single_symbol_reference_bars_per_sec``. Last line of output: one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmats.data import BarArrays, load_bars, stitch, to_arrays  # noqa: E402
from mmats.engine.portfolio_backtest import PortfolioBacktest, PortfolioData  # noqa: E402
from mmats.model import MarketType, default_instrument  # noqa: E402
from mmats.research.runconfig import BacktestConfig, run_backtest  # noqa: E402
from mmats.system_config import SystemConfig  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
NS_DAY = 86_400 * 1_000_000_000
NS_WEEK = 7 * NS_DAY
END = np.datetime64("2024-01-01T00:00", "ns").astype(np.int64)

# symbol -> (file, market); three of each market at least, quotes in USDT, USD and JPY
UNIVERSE = {
    "BTCPERP": ("crypto_BTCPERP_1m.parquet", MarketType.CRYPTO),
    "BTCUSD": ("crypto_BTCUSD_1h.parquet", MarketType.CRYPTO),
    "USDJPY": ("forex_USDJPY_1m.parquet", MarketType.FOREX),
    "GBPUSD": ("forex_GBPUSD_1m.parquet", MarketType.FOREX),
    "EURUSD": ("forex_EURUSD_1h.parquet", MarketType.FOREX),
    "SPY": ("stock_SPY_1h.parquet", MarketType.STOCK),
    "AAPL": ("stock_AAPL_1d.parquet", MarketType.STOCK),
    "NVDA": ("stock_NVDA_1d.parquet", MarketType.STOCK),
    "QQQ": ("stock_QQQ_1d.parquet", MarketType.STOCK),
    "IWM": ("stock_IWM_1d.parquet", MarketType.STOCK),
}
# parameters for minute to daily bars: a trend, a mean reversion and a breakout, each a few hundred
# trades a year on the minute series (not a signal every few bars)
STRATEGIES = (("trend", "sma_cross", {"fast": 50, "slow": 200}),
              ("revert", "rsi_reversion", {"period": 14, "oversold": 20.0, "exit": 50.0}),
              ("breakout", "donchian_breakout", {"entry": 240, "exit": 120}))
RISK = {
    "global": {"max_position_pct": 0.2, "max_concentration_pct": 0.5, "max_open_positions": 30,
               "max_leverage": 3.0, "max_drawdown_pct": 0.6, "max_daily_loss_pct": 0.2},
    "kill_switch": {"max_drawdown_pct": 0.8, "daily_loss_pct": 0.5},
}


def two_years(path: Path, years: float) -> BarArrays:
    """The file's bars covering ``years`` (stitched when the file is shorter), ending at END."""
    df = load_bars(path)
    a = to_arrays(df)
    span = int(years * 365 * NS_DAY)
    have = int(a.ts_ns[-1] - a.ts_ns[0])
    if have < span:
        copies = span // max(1, have) + 2
        a = to_arrays(stitch(df, copies=copies))
    cut = int(np.searchsorted(a.ts_ns, a.ts_ns[-1] - span, side="left"))
    shift = (END - int(a.ts_ns[-1])) // NS_WEEK * NS_WEEK
    return BarArrays(a.ts_ns[cut:] + shift, a.open[cut:].copy(), a.high[cut:].copy(), a.low[cut:].copy(),
                     a.close[cut:].copy(), a.volume[cut:].copy())


def build(years: float) -> tuple[SystemConfig, PortfolioData]:
    series = {sym: two_years(DATA / f, years) for sym, (f, _) in UNIVERSE.items()}
    instruments = {sym: default_instrument(sym, m) for sym, (_, m) in UNIVERSE.items()}
    by_market: dict[MarketType, list[str]] = {}
    for sym, (_, m) in UNIVERSE.items():
        by_market.setdefault(m, []).append(sym)
    feeds = [{"venue": m.value, "market": m.value, "generated_symbols": syms} for m, syms in by_market.items()]
    strategies = [{"id": f"{sid}_{m.value}", "ref": ref, "symbols": syms, "params": params, "allocation": 0.03}
                  for m, syms in by_market.items() for sid, ref, params in STRATEGIES]
    cfg = SystemConfig.model_validate({
        "initial_cash": 1_000_000.0, "base_currency": "USD", "feeds": feeds, "strategies": strategies,
        "costs": {"commission": {"model": "percent", "taker_bps": 5.0}, "slippage": {"model": "fixed", "bps": 1.0},
                  "cash_only": True},
        "risk": RISK,
    })
    return cfg, PortfolioData(series, instruments, {sym: f"bench {f}" for sym, (f, _) in UNIVERSE.items()})


def run_portfolio(cfg: SystemConfig, data: PortfolioData) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = PortfolioBacktest(cfg, data).run()
    return time.perf_counter() - t0, result


def run_single(arrays: BarArrays, params: dict[str, Any], costs: tuple[float, float],
               strategy: str = "sma_cross") -> float:
    cfg = BacktestConfig(strategy=strategy, params=params, commission={"model": "percent", "taker_bps": costs[0]},
                         slippage={"model": "fixed", "bps": costs[1]}, volume_in_quote=True)
    inst = default_instrument("BTCPERP", MarketType.CRYPTO)
    resolved = {"symbol": "BTCPERP", "market": "crypto", "timeframe": "1m", "source": "bench"}
    t0 = time.perf_counter()
    run_backtest(cfg, bars=(arrays, inst, [], resolved))
    return len(arrays) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--years", type=float, default=2.0, help="years of bars per symbol (default 2)")
    ap.add_argument("--repeat", type=int, default=2, help="best of N runs of each engine (default 2)")
    ap.add_argument("--profile", action="store_true", help="print the portfolio run's top functions (cProfile)")
    args = ap.parse_args()
    cfg, data = build(args.years)
    bars = sum(len(a) for a in data.series.values())
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        PortfolioBacktest(cfg, data).run()
        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    best, result = min((run_portfolio(cfg, data) for _ in range(args.repeat)), key=lambda r: r[0])
    btc = data.series["BTCPERP"]
    # like for like: the portfolio's trend strategy and costs on its largest series
    single = max(run_single(btc, STRATEGIES[0][2], (5.0, 1.0)) for _ in range(args.repeat))
    # and the reference configuration of bench/backtest_throughput.py (sma_cross 10/30, 10 + 2 bps)
    reference = max(run_single(btc, {"fast": 10, "slow": 30}, (10.0, 2.0)) for _ in range(args.repeat))
    # the same work one symbol at a time: the three strategies, each in its own single-symbol run, per bar
    each = [max(run_single(btc, params, (5.0, 1.0), ref) for _ in range(args.repeat)) for _, ref, params in STRATEGIES]
    same_set = 1.0 / sum(1.0 / r for r in each)
    rate = bars / best
    s = result.summary
    out = {
        "symbols": len(data.series),
        "strategies_per_symbol": len(STRATEGIES),
        "bars": bars,
        "bars_by_symbol": {sym: len(a) for sym, a in data.series.items()},
        "timestamps": s["timestamps"],
        "first_bar": s["first_bar"],
        "last_bar": s["last_bar"],
        "seconds": round(best, 3),
        "orders": s["orders"],
        "fills": s["fills"],
        "risk_decisions": len(result.decisions),
        "risk_rejections": sum(1 for d in result.decisions if d.status.value == "REJECTED"),
        "final_equity": s["final_equity"],
        "reconciled": s["reconciled"],
        "bars_per_sec": round(rate),
        # the target's ratio: per bar, the portfolio against the same three strategies run one symbol at a
        # time (a portfolio bar runs three strategies; one single-symbol run, one)
        "single_symbol_bars_per_sec": round(same_set),
        "ratio": round(rate / same_set, 3),
        "single_symbol_one_strategy_bars_per_sec": round(single),
        "ratio_one_strategy": round(rate / single, 3),
        # each bar here runs 3 strategies; the single-symbol engine runs 1: per strategy call
        "strategy_bars_per_sec": round(rate * len(STRATEGIES)),
        "ratio_per_strategy_bar": round(rate * len(STRATEGIES) / single, 3),
        "single_symbol_reference_bars_per_sec": round(reference),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "target_ratio": 0.5,
        "target_single_symbol_bars_per_sec": 500_000,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
