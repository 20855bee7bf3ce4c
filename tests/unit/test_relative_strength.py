"""Relative strength against a benchmark symbol (``RS_n@SYMBOL``): formula, alignment, no look-ahead, the
backtests (single-symbol with ``benchmark_data``, portfolio with the benchmark on a feed), the live
StrategyHost, and the errors that name a missing benchmark.

Real daily bars from ../shared/data: AAPL against SPY (same sessions, 1998-2021) and QQQ (from 2011).
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mmats.data import BarArrays, load_bars, slice_dates, to_arrays
from mmats.engine.backtest import BacktestEngine, EngineSetup
from mmats.engine.portfolio_backtest import PortfolioBacktest, load_portfolio_data, run_portfolio_backtest
from mmats.engine.strategy_host import StrategyHost, feed_for_strategy, strategy_benchmarks
from mmats.errors import ConfigError, ValidationError
from mmats.indicators import (
    StreamingIndicators,
    align_benchmark,
    benchmark_symbols,
    check_indicator,
    compute_batch,
    parse_spec,
)
from mmats.model import Environment, MarketType, default_instrument
from mmats.registry import create_strategy
from mmats.research.runconfig import load_run_data, parse_config, run_backtest
from mmats.system_config import SystemConfig
from mmats_cli.args import build_run_config
from tests.conftest import shared_file

# A strategy that reads RS: long while AAPL outperforms the benchmark over `period` bars, flat otherwise.
# It keeps every RS value it was shown, so a test can compare what the backtest and the live host gave it.
STRATEGY = '''
from typing import Any, ClassVar
from collections.abc import Mapping
from mmats.model import SignalAction, TradeSignal
from mmats.strategy import IStrategy, StrategyContext


class RelativeMomentum(IStrategy):
    name = "relative_momentum"
    default_params: ClassVar[Mapping[str, Any]] = {"period": 20, "benchmark": "SPY"}

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int, float]] = []
        self._long = False

    def get_required_indicators(self) -> list[str]:
        return [f"RS_{self.params['period']}@{self.params['benchmark']}", "SMA_5"]

    def on_bar(self, context: StrategyContext) -> TradeSignal | None:
        rs = context.indicators[f"RS_{self.params['period']}@{self.params['benchmark']}"]
        self.seen.append((context.symbol, context.bar.ts_ns, rs))
        if rs > 0 and not self._long:
            self._long = True
            return TradeSignal(SignalAction.BUY, context.symbol, 1.0)
        if rs < 0 and self._long:
            self._long = False
            return TradeSignal(SignalAction.CLOSE, context.symbol, 1.0)
        return None
'''


@pytest.fixture(scope="module")
def strategy_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("rs") / "relative_momentum.py"
    path.write_text(STRATEGY)
    return f"{path}:RelativeMomentum"


def bars(name: str) -> BarArrays:
    return to_arrays(load_bars(shared_file(name)))


@pytest.fixture(scope="module")
def aapl() -> BarArrays:
    return bars("stock_AAPL_1d.parquet")


@pytest.fixture(scope="module")
def spy() -> BarArrays:
    return bars("stock_SPY_1d.parquet")


def thinned(a: BarArrays, every: int) -> BarArrays:
    """The series without every ``every``-th bar: the benchmark then misses sessions the symbol has."""
    keep = np.arange(len(a)) % every != 3
    return BarArrays(a.ts_ns[keep], a.open[keep], a.high[keep], a.low[keep], a.close[keep], a.volume[keep])


def pandas_rs(sym: BarArrays, bench: BarArrays, n: int) -> np.ndarray:
    """Independent computation: merge_asof (the benchmark's last bar at or before each bar), then logs."""
    left = pd.DataFrame({"ts": sym.ts_ns, "close": sym.close})
    right = pd.DataFrame({"ts": bench.ts_ns, "bench": bench.close})
    m = pd.merge_asof(left, right, on="ts", direction="backward")
    rs = np.log(m["close"] / m["close"].shift(n)) - np.log(m["bench"] / m["bench"].shift(n))
    return rs.to_numpy(dtype=np.float64)


# ------------------------------------------------------------------------------------------ formula


@pytest.mark.parametrize("n", [1, 20, 63])
def test_rs_matches_an_independent_pandas_computation(aapl: BarArrays, spy: BarArrays, n: int) -> None:
    for bench in (spy, thinned(spy, 7)):
        aligned = align_benchmark(aapl.ts_ns, bench.ts_ns, bench.close)
        got = compute_batch([f"RS_{n}@SPY"], aapl.open, aapl.high, aapl.low, aapl.close, aapl.volume,
                            benchmarks={"SPY": aligned})[f"RS_{n}@SPY"]
        want = pandas_rs(aapl, bench, n)
        assert np.isnan(got[:n]).all()
        assert not np.isnan(got[n:]).any()
        np.testing.assert_allclose(got[n:], want[n:], rtol=0, atol=1e-12)
    # a meaningful series: AAPL beat SPY over 1998-2021 by far, and RS changes sign many times
    rs = compute_batch(["RS_20@SPY"], aapl.open, aapl.high, aapl.low, aapl.close, aapl.volume,
                       benchmarks={"SPY": align_benchmark(aapl.ts_ns, spy.ts_ns, spy.close)})["RS_20@SPY"][20:]
    assert (np.diff(np.sign(rs)) != 0).sum() > 100


def test_rs_before_the_benchmark_exists_is_nan(aapl: BarArrays) -> None:
    qqq = bars("stock_QQQ_1d.parquet")  # starts in 2011
    aligned = align_benchmark(aapl.ts_ns, qqq.ts_ns, qqq.close)
    first = int(np.searchsorted(aapl.ts_ns, qqq.ts_ns[0]))
    assert np.isnan(aligned[:first]).all() and not np.isnan(aligned[first:]).any()
    rs = compute_batch(["RS_10@QQQ"], aapl.open, aapl.high, aapl.low, aapl.close, aapl.volume,
                       benchmarks={"QQQ": aligned})["RS_10@QQQ"]
    assert np.isnan(rs[: first + 10]).all() and not np.isnan(rs[first + 10:]).any()
    np.testing.assert_allclose(rs[first + 10:], pandas_rs(aapl, qqq, 10)[first + 10:], rtol=0, atol=1e-12)


def test_align_benchmark_takes_the_last_bar_at_or_before() -> None:
    got = align_benchmark([5, 10, 15, 20, 30], [10, 20, 25], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(got, [np.nan, 1.0, 1.0, 2.0, 3.0])
    with pytest.raises(ValidationError, match="must not decrease"):
        align_benchmark([1], [2, 1], [1.0, 1.0])


def test_streaming_equals_batch_and_no_look_ahead_on_real_bars(aapl: BarArrays, spy: BarArrays) -> None:
    """The registry's own check (streaming bit-identical, warm-up, future perturbed in BOTH series), then
    an explicit perturbation of AAPL's and SPY's future."""
    aligned = align_benchmark(aapl.ts_ns, spy.ts_ns, spy.close)
    cols = (aapl.open, aapl.high, aapl.low, aapl.close, aapl.volume)
    check_indicator("RS_20@SPY", cols, benchmark=aligned)
    base = compute_batch(["RS_20@SPY"], *cols, benchmarks={"SPY": aligned})["RS_20@SPY"]
    t = 3000
    for move_symbol, move_bench in ((True, False), (False, True), (True, True)):
        close = aapl.close.copy()
        bench = aligned.copy()
        if move_symbol:
            close[t + 1:] *= 1.3
        if move_bench:
            bench[t + 1:] *= 0.6
        moved = compute_batch(["RS_20@SPY"], aapl.open, aapl.high, aapl.low, close, aapl.volume,
                              benchmarks={"SPY": bench})["RS_20@SPY"]
        np.testing.assert_array_equal(moved[: t + 1], base[: t + 1])
        assert not np.array_equal(moved[t + 1: t + 21], base[t + 1: t + 21])


def test_spec_grammar_and_errors() -> None:
    sp = parse_spec(" RS_20@SPY ")
    assert (sp.text, sp.kind, sp.params, sp.benchmark, sp.lookback, sp.outputs) == \
        ("RS_20@SPY", "RS", (20,), "SPY", 20, ("RS_20@SPY",))
    assert parse_spec("rs_5@BTC/USDT").benchmark == "BTC/USDT"
    assert benchmark_symbols(["SMA_5", "RS_5@SPY", "RS_20@QQQ", "RS_10@SPY"]) == ("QQQ", "SPY")
    with pytest.raises(ValidationError, match=r"RS_20: RS compares with a benchmark symbol: RS_period@SYMBOL"):
        parse_spec("RS_20")
    with pytest.raises(ValidationError, match="SMA takes no benchmark symbol"):
        parse_spec("SMA_20@SPY")
    with pytest.raises(ValidationError, match="benchmark symbol after '@'"):
        parse_spec("RS_20@")
    with pytest.raises(ValidationError, match="period must be >= 1"):
        parse_spec("RS_0@SPY")
    ones = np.ones(30)
    with pytest.raises(ValidationError, match=r"'RS_5@SPY' compares with SPY, but no closes of SPY were given"):
        compute_batch(["RS_5@SPY"], ones, ones, ones, ones, ones)
    with pytest.raises(ValidationError, match="pass their closes as benchmarks="):
        StreamingIndicators(["RS_5@SPY"]).update(1, 1, 1, 1, 1)


# ------------------------------------------------------------------------------------------ backtest


def rs_config(strategy_file: str, **extra: Any) -> dict[str, Any]:
    return {"strategy": strategy_file, "data": str(shared_file("stock_AAPL_1d.parquet")),
            "start": "2005-01-01", "end": "2015-01-01", **extra}


def test_backtest_with_benchmark_data_end_to_end(strategy_file: str) -> None:
    spy_path = str(shared_file("stock_SPY_1d.parquet"))
    cfg = parse_config(rs_config(strategy_file, benchmark_data=spy_path))
    loaded = load_run_data(cfg)
    assert loaded.resolved["benchmark"] == f"SPY from {spy_path}"
    res = run_backtest(cfg, bars=loaded)
    assert len(res.trades) > 20
    # the benchmark decides: against QQQ the same strategy trades differently
    qqq = run_backtest(parse_config(rs_config(strategy_file, params={"benchmark": "QQQ"},
                                              benchmark_data=str(shared_file("stock_QQQ_1d.parquet")))))
    assert [t.entry_ns for t in qqq.trades] != [t.entry_ns for t in res.trades]


def test_the_backtest_shows_the_strategy_the_batch_values(strategy_file: str, aapl: BarArrays,
                                                          spy: BarArrays) -> None:
    bench = thinned(spy, 5)
    strat = create_strategy(strategy_file, {"period": 20})
    setup = EngineSetup(default_instrument("AAPL", MarketType.STOCK), benchmarks={"SPY": bench})
    BacktestEngine(strat, aapl, setup, {}).run()
    want = pandas_rs(aapl, bench, 20)
    seen = strat.seen  # type: ignore[attr-defined]
    assert len(seen) == len(aapl) - 20
    np.testing.assert_allclose([x[2] for x in seen], want[20:], rtol=0, atol=1e-12)


def test_a_strategy_asking_for_rs_without_a_benchmark_is_refused_at_load(strategy_file: str) -> None:
    with pytest.raises(ConfigError, match=r"asks for RS_20@SPY, which compare with SPY: set benchmark_data "
                                          r"\(--benchmark-data\)"):
        run_backtest(parse_config(rs_config(strategy_file)))
    with pytest.raises(ConfigError, match=r"compare with SPY, but benchmark_data .*stock_QQQ_1d.parquet holds QQQ"):
        run_backtest(parse_config(rs_config(strategy_file, benchmark_data=str(shared_file("stock_QQQ_1d.parquet")))))
    with pytest.raises(ValidationError, match=r"compares with benchmark SPY .* set benchmark_data"):
        BacktestEngine(create_strategy(strategy_file, {}), bars("stock_AAPL_1d.parquet"),
                       EngineSetup(default_instrument("AAPL", MarketType.STOCK)), {}).run()


def test_benchmark_data_errors_name_the_setting(strategy_file: str, tmp_path: Path) -> None:
    hourly = {"strategy": strategy_file, "data": str(shared_file("stock_SPY_1h.parquet")),
              "benchmark_data": str(shared_file("stock_QQQ_1d.parquet")), "start": "2015-01-01", "end": "2015-03-01"}
    with pytest.raises(ConfigError, match=r"benchmark_data .*stock_QQQ_1d.parquet: its bars are 1d, coarser than "
                                          r"the run's 1h"):
        load_run_data(parse_config(hourly))
    with pytest.raises(ConfigError, match="benchmark_data: .*"):
        load_run_data(parse_config(rs_config(strategy_file, benchmark_data=str(tmp_path / "nope.parquet"))))


def test_a_finer_benchmark_is_resampled_to_the_run(strategy_file: str) -> None:
    """A daily run against hourly SPY: the hourly bars are resampled to daily bins stamped like the daily
    file's, so the run trades almost as against the daily file (the last hourly bar closes before 16:00)."""
    daily = run_backtest(parse_config(rs_config(strategy_file,
                                                benchmark_data=str(shared_file("stock_SPY_1d.parquet")))))
    hourly = run_backtest(parse_config(rs_config(strategy_file,
                                                 benchmark_data=str(shared_file("stock_SPY_1h.parquet")))))
    assert len(hourly.trades) > 20
    same = sum(a.entry_ns == b.entry_ns for a, b in zip(daily.trades, hourly.trades, strict=False))
    assert same >= 0.8 * len(daily.trades)  # the hourly file's last bar is 19:00, not the daily close


def test_cli_flag_sets_benchmark_data() -> None:
    from mmats_cli.main import build_parser

    args = build_parser().parse_args(["backtest", "--strategy", "sma_cross", "--benchmark-data", "x.parquet"])
    assert build_run_config(args)["benchmark_data"] == "x.parquet"


# ------------------------------------------------------------------------------------------ portfolio


def test_portfolio_backtest_reads_the_benchmark_from_a_feed(strategy_file: str, aapl: BarArrays,
                                                            spy: BarArrays) -> None:
    files = {"AAPL": str(shared_file("stock_AAPL_1d.parquet")), "SPY": str(shared_file("stock_SPY_1d.parquet"))}
    raw = {"initial_cash": 100_000.0, "feeds": [{"venue": "s", "market": "stock", "files": files}],
           "strategies": [{"id": "rs", "ref": strategy_file, "symbols": ["AAPL"], "params": {"period": 20}}]}
    cfg = SystemConfig.model_validate(raw)
    engine = PortfolioBacktest(cfg, load_portfolio_data(cfg, "2005-01-01", "2015-01-01"))
    pf = engine.run()
    assert len([o for o in pf.orders if o.symbol == "AAPL"]) > 20 and not [o for o in pf.orders if o.symbol == "SPY"]
    # the values the strategy saw are those of the single-symbol engine with benchmark_data
    strat = create_strategy(strategy_file, {"period": 20})
    window = to_arrays(slice_dates(load_bars(files["AAPL"]), "2005-01-01", "2015-01-01"))
    BacktestEngine(strat, window, EngineSetup(default_instrument("AAPL", MarketType.STOCK),
                                              benchmarks={"SPY": spy}), {}).run()
    seen = engine.strategies[("rs", "AAPL")].seen  # type: ignore[attr-defined]
    assert len(seen) == len(window) - 20
    assert seen == strat.seen  # type: ignore[attr-defined]
    # the benchmark must be on the strategy's feed, as paper and live require
    raw["feeds"] = [{"venue": "s", "market": "stock", "files": {"AAPL": files["AAPL"]}},
                    {"venue": "etf", "market": "stock", "files": {"SPY": files["SPY"]}}]
    cfg = SystemConfig.model_validate(raw)
    with pytest.raises(ConfigError, match=r"strategy rs: benchmark SPY \(named by its indicators\) is not on feed s"):
        run_portfolio_backtest(cfg, load_portfolio_data(cfg, "2005-01-01", "2006-01-01"))


# ------------------------------------------------------------------------------------------ live host


def feed_batches(series: dict[str, BarArrays], seed: int) -> list[list[tuple[str, int, float, float, float, float,
                                                                             float]]]:
    """Bars as a feed delivers them: in time order, a timestamp's symbols in a random order, cut into
    batches of random size (a batch may end in the middle of nothing but whole timestamps, as the feed's
    publish does)."""
    rng = random.Random(seed)
    by_ts: dict[int, list[tuple[str, int, float, float, float, float, float]]] = {}
    for sym, a in series.items():
        for row in zip(a.ts_ns.tolist(), a.open.tolist(), a.high.tolist(), a.low.tolist(), a.close.tolist(),
                       a.volume.tolist(), strict=True):
            by_ts.setdefault(row[0], []).append((sym, *row))
    out: list[list[tuple[str, int, float, float, float, float, float]]] = [[]]
    for ts in sorted(by_ts):
        group = by_ts[ts]
        rng.shuffle(group)
        out[-1].extend(group)
        if rng.random() < 0.4:
            out.append([])
    return [b for b in out if b]


def test_live_host_gives_the_backtest_values(strategy_file: str, aapl: BarArrays, spy: BarArrays) -> None:
    bench = thinned(spy, 6)
    host = StrategyHost("rs", strategy_file, {"period": 20}, ["AAPL"], MarketType.STOCK, Environment.PAPER)
    assert host.feed_symbols == ["AAPL", "SPY"] and host.benchmarks == ("SPY",)
    assert host.health()["benchmarks"] == ["SPY"]
    batches = feed_batches({"AAPL": aapl, "SPY": bench}, seed=3)
    half = len(batches) // 2
    host.warm_up([b for batch in batches[:half] for b in batch])
    for batch in batches[half:]:
        host.on_bars(batch)
    live = host.strategies["AAPL"].seen  # type: ignore[attr-defined]
    assert {x[0] for x in live} == {"AAPL"}  # on_bar never called for the benchmark
    strat = create_strategy(strategy_file, {"period": 20})
    BacktestEngine(strat, aapl, EngineSetup(default_instrument("AAPL", MarketType.STOCK),
                                            benchmarks={"SPY": bench}), {}).run()
    backtest = strat.seen  # type: ignore[attr-defined]
    assert len(live) == len(backtest) == len(aapl) - 20
    assert [(ts, rs) for _, ts, rs in live] == [(ts, rs) for _, ts, rs in backtest]  # bit for bit


def test_live_host_trading_the_benchmark_too(strategy_file: str, aapl: BarArrays, spy: BarArrays) -> None:
    """A strategy that trades SPY and compares with SPY: it is called for SPY, whose RS is 0."""
    host = StrategyHost("rs", strategy_file, {"period": 5}, ["AAPL", "SPY"], MarketType.STOCK, Environment.PAPER)
    assert host.feed_symbols == ["AAPL", "SPY"]
    for batch in feed_batches({"AAPL": aapl, "SPY": spy}, seed=5)[:300]:
        host.on_bars(batch)
    spy_seen = host.strategies["SPY"].seen  # type: ignore[attr-defined]
    assert spy_seen and all(rs == 0.0 for _, _, rs in spy_seen)
    assert all(not math.isnan(rs) for _, _, rs in host.strategies["AAPL"].seen)  # type: ignore[attr-defined]


def test_the_feed_must_provide_the_benchmark(strategy_file: str) -> None:
    assert strategy_benchmarks(strategy_file, {"benchmark": "QQQ"}) == ("QQQ",)
    assert strategy_benchmarks("sma_cross", {}) == ()
    assert strategy_benchmarks("no_such_strategy", {}) == ()  # the actor's start reports that one
    feeds = {"stocks": ["AAPL", "MSFT"], "etfs": ["SPY"]}
    with pytest.raises(ConfigError, match=r"strategy rs: benchmark SPY \(named by its indicators\) is not on feed "
                                          r"stocks, which provides \['AAPL'\]"):
        feed_for_strategy(feeds, "rs", ["AAPL"], ("SPY",))
    assert feed_for_strategy({**feeds, "all": ["AAPL", "SPY"]}, "rs", ["AAPL"], ("SPY",)) == "all"
    assert feed_for_strategy(feeds, "rs", ["AAPL"]) == "stocks"
    with pytest.raises(ConfigError, match="no single feed provides"):
        feed_for_strategy(feeds, "rs", ["AAPL", "SPY"])


def test_timeframe_bins_live_and_in_the_portfolio_backtest(strategy_file: str) -> None:
    """A 15-minute strategy on minute bars: the host bins both symbols as they arrive; the portfolio
    backtest bins them up front and aligns the benchmark's bins by the time each became known. Same RS."""
    raw = {"initial_cash": 100_000.0,
           "feeds": [{"venue": "g", "market": "crypto", "generated_symbols": ["X/USDT", "B/USDT"],
                      "generated_bars": 3_000}],
           "strategies": [{"id": "rs", "ref": strategy_file, "symbols": ["X/USDT"], "timeframe": "15m",
                           "params": {"period": 5, "benchmark": "B/USDT"}}]}
    cfg = SystemConfig.model_validate(raw)
    data = load_portfolio_data(cfg)
    engine = PortfolioBacktest(cfg, data)
    engine.run()
    backtest = engine.strategies[("rs", "X/USDT")].seen  # type: ignore[attr-defined]
    host = StrategyHost("rs", strategy_file, {"period": 5, "benchmark": "B/USDT"}, ["X/USDT"], MarketType.CRYPTO,
                        Environment.PAPER, timeframe="15m")
    for batch in feed_batches(data.series, seed=11):
        host.on_bars(batch)
    live = host.strategies["X/USDT"].seen  # type: ignore[attr-defined]
    assert len(live) > 150
    assert live == backtest
