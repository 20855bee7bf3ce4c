"""Backtest throughput: sma_cross over two years of minute bars (1,051,200), fees and slippage on.

The bars are the real BTC perp month from ../shared/data stitched end to end (each copy rescaled to
continue from the previous close), or deterministic generated bars when ../shared is absent. The same
strategy runs in backtrader (if installed: `pip install -e '.[bench]'`) on a slice of the same bars in
the same run, so the ratio compares like with like. Last line of output: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmats.data import generate_bars, load_bars, stitch, to_arrays  # noqa: E402
from mmats.model import MarketType, default_instrument  # noqa: E402
from mmats.research.runconfig import BacktestConfig, run_backtest  # noqa: E402

BTC = ROOT.parent / "shared" / "data" / "crypto_BTCPERP_1m.parquet"
TWO_YEARS = 1_051_200


def make_bars(n: int):  # type: ignore[no-untyped-def]
    if BTC.is_file():
        return stitch(load_bars(BTC), target_bars=n), f"stitched {BTC.name}"
    return generate_bars(n, seed=7), "generated (../shared absent)"


def run_mmats(df) -> tuple[float, int, int]:  # type: ignore[no-untyped-def]
    cfg = BacktestConfig(
        strategy="sma_cross",
        params={"fast": 10, "slow": 30},
        commission={"model": "percent", "taker_bps": 10},
        slippage={"model": "fixed", "bps": 2},
        volume_in_quote=True,
    )
    arrays = to_arrays(df)
    inst = default_instrument("BTCPERP", MarketType.CRYPTO)
    resolved = {"symbol": "BTCPERP", "market": "crypto", "timeframe": "1m", "source": "bench"}
    t0 = time.perf_counter()
    result = run_backtest(cfg, bars=(arrays, inst, [], resolved))
    seconds = time.perf_counter() - t0
    return seconds, len(arrays), len(result.trades)


def run_bare_loop(df) -> float:  # type: ignore[no-untyped-def]
    """The reference floor (~1.9M bars/s on this machine type on a good day): a Python loop calling
    a strategy object per bar over TA-Lib-precomputed SMAs, nothing else. Measured in the same run, it
    turns the engine's figure into a machine-independent ratio."""
    import talib

    close = df["close"].to_numpy(dtype="float64")
    fast, slow = talib.SMA(close, 10).tolist(), talib.SMA(close, 30).tolist()

    class Cross:
        def __init__(self) -> None:
            self.prev: bool | None = None
            self.signals = 0

        def on_bar(self, i: int) -> None:
            above = fast[i] > slow[i]
            if self.prev is not None and above != self.prev:
                self.signals += 1
            self.prev = above

    strat = Cross()
    t0 = time.perf_counter()
    for i in range(30, len(close)):
        strat.on_bar(i)
    return len(close) / (time.perf_counter() - t0)


def run_backtrader(df, n: int) -> float | None:  # type: ignore[no-untyped-def]
    try:
        import backtrader as bt
    except ImportError:
        return None

    class SmaCrossBT(bt.Strategy):  # type: ignore[misc]
        params = (("fast", 10), ("slow", 30))

        def __init__(self) -> None:
            self.cross = bt.ind.CrossOver(bt.ind.SMA(period=self.p.fast), bt.ind.SMA(period=self.p.slow))

        def next(self) -> None:
            if self.cross > 0 and not self.position:
                self.order_target_percent(target=0.99)
            elif self.cross < 0 and self.position:
                self.close()

    sub = df.iloc[:n].copy()
    sub.index = sub.index.tz_localize(None)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=sub))
    cerebro.addstrategy(SmaCrossBT)
    cerebro.broker.setcash(10_000.0)
    cerebro.broker.setcommission(commission=0.001)
    cerebro.broker.set_slippage_perc(0.0002)
    t0 = time.perf_counter()
    cerebro.run()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bars", type=int, default=TWO_YEARS, help="bars to backtest (default: two years of 1m)")
    ap.add_argument("--bt-bars", type=int, default=200_000, help="bars given to backtrader (it is ~100x slower)")
    ap.add_argument("--repeat", type=int, default=3, help="take the best of N mmats runs")
    args = ap.parse_args()
    df, source = make_bars(args.bars)
    best = min(run_mmats(df)[0] for _ in range(args.repeat))
    _, bars, trades = run_mmats(df)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    bt_rate = run_backtrader(df, min(args.bt_bars, bars))
    bare = max(run_bare_loop(df) for _ in range(3))
    rate = bars / best
    out = {
        "bars": bars,
        "source": source,
        "trades": trades,
        "seconds": round(best, 3),
        "bars_per_sec": round(rate),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "backtrader_bars_per_sec": None if bt_rate is None else round(bt_rate),
        "ratio_vs_backtrader": None if bt_rate is None else round(rate / bt_rate, 1),
        "bare_loop_bars_per_sec": round(bare),
        "ratio_vs_bare_loop": round(rate / bare, 3),
        "target_bars_per_sec": 500_000,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
