"""mmats.research.experiments and mmats.reports.research_report: grids, keys, ranking, windows, stitching,
Monte Carlo, reports.

Expected values are worked out by hand in the comments, so a failure says which rule broke.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmats.errors import ConfigError, ValidationError
from mmats.reports.research_report import monthly_returns, render_any, svg_histogram
from mmats.research.experiments import (
    MCBatch,
    ParamAxis,
    apply_params,
    bar_returns,
    canonical_json,
    config_key,
    data_fingerprint,
    degradation,
    evaluate,
    evaluate_many,
    expand_grid,
    grid_size,
    mc_block_bootstrap,
    mc_trade_bootstrap,
    monte_carlo,
    parse_axis,
    parse_grid,
    parse_metric,
    path_stats,
    plan_runs,
    rank_records,
    run_chunks,
    sample_random,
    slice_arrays,
    stitch_equity,
    summarize_mc,
    trade_returns,
    walkforward_windows,
)
from mmats.research.metrics import compute_metrics
from mmats.research.runconfig import load_run_data, parse_config, run_backtest

# ------------------------------------------------------------------------------------------- grids


def test_range_is_inclusive_and_stays_integer() -> None:
    assert parse_axis("fast=5:50:5") == ParamAxis("fast", (5, 10, 15, 20, 25, 30, 35, 40, 45, 50))
    assert all(type(v) is int for v in parse_axis("fast=5:50:5").values)
    assert parse_axis("n=3:5").values == (3, 4, 5)  # step 1 by default
    assert parse_axis("n=5:5:1").values == (5,)
    assert parse_axis("n=0:10:4").values == (0, 4, 8)  # stop not on the step: not included


def test_float_range_is_exact_decimal() -> None:
    # 0.1 + 0.1 + 0.1 in binary floats is 0.30000000000000004; the grid must print as typed
    assert parse_axis("size=0.1:0.5:0.1").values == (0.1, 0.2, 0.3, 0.4, 0.5)
    assert parse_axis("x=1:2:0.25").values == (1.0, 1.25, 1.5, 1.75, 2.0)


def test_list_values_parse_by_type_and_dedupe() -> None:
    assert parse_axis("fast=5,10,20").values == (5, 10, 20)
    assert parse_axis("a=1, 2.5 ,true,abc,1").values == (1, 2.5, True, "abc")
    assert parse_axis("allow_short=false").values == (False,)
    assert parse_axis("commission.taker_bps=0,5").name == "commission.taker_bps"


@pytest.mark.parametrize(("spec", "needle"), [
    ("fast", "expected NAME=START:STOP"),
    ("fast=", "no values"),
    ("fast=5:50:0", "step must be > 0"),
    ("fast=50:5:5", "stop 5 is below start 50"),
    ("fast=a:5", "start 'a' is not a number"),
    ("fast=1:2:3:4", "START:STOP or START:STOP:STEP"),
    ("fast=5,,10", "empty value"),
    ("9x=1,2", "not a parameter name"),
    ("fast=0:1000000:1", "use a larger step"),
    ("fast=1,nan", "not a finite number"),
])
def test_bad_grid_specs_say_what_is_wrong(spec: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_axis(spec)


def test_grid_refuses_duplicates_and_data_fields() -> None:
    with pytest.raises(ConfigError, match="'fast' is given more than once"):
        parse_grid(["fast=5", "fast=10"])
    with pytest.raises(ConfigError, match="cannot sweep 'timeframe'"):
        parse_grid(["timeframe=1m,5m"])
    with pytest.raises(ConfigError, match="'foo' is not a backtest config section"):
        parse_grid(["foo.bar=1,2"])


def test_expand_grid_is_the_cartesian_product_first_axis_slowest() -> None:
    axes = parse_grid(["fast=5,10", "slow=20,30,40"])
    assert grid_size(axes) == 6
    assert expand_grid(axes) == [
        {"fast": 5, "slow": 20}, {"fast": 5, "slow": 30}, {"fast": 5, "slow": 40},
        {"fast": 10, "slow": 20}, {"fast": 10, "slow": 30}, {"fast": 10, "slow": 40},
    ]
    assert expand_grid([]) == []


def test_random_search_is_seeded_distinct_and_inside_the_grid() -> None:
    axes = parse_grid(["fast=1:20", "slow=21:60"])  # 20 x 40 = 800 points
    a = sample_random(axes, 50, seed=7)
    assert a == sample_random(axes, 50, seed=7)
    assert a != sample_random(axes, 50, seed=8)
    assert len({json.dumps(p, sort_keys=True) for p in a}) == 50
    grid = {json.dumps(p, sort_keys=True) for p in expand_grid(axes)}
    assert all(json.dumps(p, sort_keys=True) in grid for p in a)
    assert sample_random(axes, 5000, seed=1) == expand_grid(axes)  # more than the grid: the whole grid
    with pytest.raises(ConfigError, match="--random must be >= 1"):
        sample_random(axes, 0, seed=1)


def test_random_search_on_a_huge_grid_does_not_enumerate_it() -> None:
    axes = parse_grid([f"p{i}=1:100" for i in range(6)])  # 10^12 points
    picks = sample_random(axes, 20, seed=3)
    assert len(picks) == 20 and picks == sample_random(axes, 20, seed=3)


# ------------------------------------------------------------------------------- params and keys


def test_apply_params_routes_strategy_params_and_config_fields() -> None:
    base = {"strategy": "sma_cross", "params": {"size": 0.5}}
    raw = apply_params(base, {"fast": 5, "params.slow": 30, "allocation": 0.5, "commission.taker_bps": 10,
                              "slippage.bps": 2, "risk.max_position_pct": 0.8})
    assert raw["params"] == {"size": 0.5, "fast": 5, "slow": 30}
    assert raw["allocation"] == 0.5
    # setting an amount switches the 'none' model on, otherwise the sweep would vary nothing
    assert raw["commission"] == {"taker_bps": 10, "model": "percent"}
    assert raw["slippage"] == {"bps": 2, "model": "fixed"}
    assert raw["risk"] == {"max_position_pct": 0.8}
    assert base == {"strategy": "sma_cross", "params": {"size": 0.5}}  # base untouched
    keep = apply_params({"strategy": "x", "commission": {"model": "spread", "pips": 1}}, {"commission.taker_bps": 3})
    assert keep["commission"]["model"] == "spread"


def test_config_key_is_sha256_of_canonical_json() -> None:
    cfg = parse_config({"strategy": "sma_cross", "params": {"fast": 5, "slow": 20}})
    body = canonical_json({"config": cfg.model_dump(mode="json"), "data": "d1"})
    assert config_key(cfg, "d1") == hashlib.sha256(body.encode()).hexdigest()
    assert len(config_key(cfg, "d1")) == 64
    # key order in the input does not matter, values and data do
    same = parse_config({"params": {"slow": 20, "fast": 5}, "strategy": "sma_cross"})
    assert config_key(same, "d1") == config_key(cfg, "d1")
    assert config_key(cfg, "d2") != config_key(cfg, "d1")
    other = parse_config({"strategy": "sma_cross", "params": {"fast": 6, "slow": 20}})
    assert config_key(other, "d1") != config_key(cfg, "d1")
    assert canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'


def test_plan_runs_validates_up_front_and_merges_duplicates() -> None:
    base = {"strategy": "sma_cross"}
    specs = plan_runs(base, [{"fast": 5, "slow": 20}, {"params.fast": 5, "slow": 20}, {"allocation": 20}], "d")
    assert len(specs) == 2  # fast=5 and params.fast=5 are one config
    assert specs[0].config is not None and specs[0].error is None
    assert specs[1].config is None and specs[1].error is not None and specs[1].error.startswith("allocation:")


def test_data_fingerprint_sees_every_column() -> None:
    arrays = load_run_data(parse_config({"strategy": "sma_cross", "generated": {"bars": 200}})).bars
    fp = data_fingerprint(arrays)
    assert fp == data_fingerprint(arrays)
    vol = arrays.volume.copy()
    vol[100] += 1.0
    changed = type(arrays)(arrays.ts_ns, arrays.open, arrays.high, arrays.low, arrays.close, vol)
    assert data_fingerprint(changed) != fp
    assert data_fingerprint(slice_arrays(arrays, 0, 100)) != fp


# ------------------------------------------------------------------------------------------ ranking


def _rec(key: str, sharpe: float | None, trades: int, status: str = "ok") -> dict[str, Any]:
    return {"key": key, "params": {"k": key}, "status": status,
            "metrics": {"sharpe": sharpe, "num_trades": trades, "max_drawdown": -0.1 * trades}}


def test_rank_by_metric_with_min_trades_and_undefined_last() -> None:
    recs = [_rec("a", 1.0, 10), _rec("b", 2.0, 2), _rec("c", None, 10), _rec("d", 1.5, 10),
            _rec("e", 9.0, 50, status="error"), _rec("f", 1.0, 10)]
    assert [r["key"] for r in rank_records(recs, "sharpe")] == ["b", "d", "a", "f", "c"]  # tie a/f by key
    assert [r["key"] for r in rank_records(recs, "sharpe", min_trades=5)] == ["d", "a", "f", "c"]
    assert [r["key"] for r in rank_records(recs, "sharpe", min_trades=5, top=2)] == ["d", "a"]
    assert [r["key"] for r in rank_records(recs, "-sharpe", min_trades=5)] == ["a", "f", "d", "c"]
    # drawdowns are negative: the shallowest ranks first without a sign flip
    assert rank_records(recs, "max_drawdown")[0]["key"] == "b"


def test_metric_names_are_validated() -> None:
    assert parse_metric("sharpe") == ("sharpe", True)
    assert parse_metric("-max_drawdown") == ("max_drawdown", False)
    with pytest.raises(ConfigError, match="unknown metric; choose one of total_return"):
        parse_metric("sharp")
    with pytest.raises(ConfigError, match="--min-trades must be >= 0"):
        rank_records([], "sharpe", min_trades=-1)


def test_ranked_values_are_the_official_metrics() -> None:
    # equity 100 -> 110 -> 99 -> 118.8: returns +10 %, -10 %, +20 %; mean 0.0667, std(ddof=1) 0.1528
    eq = np.array([100.0, 110.0, 99.0, 118.8])
    ts = np.arange(4, dtype=np.int64) * 86_400 * 10**9
    m = compute_metrics(eq, ts, [], 365.0)
    r = np.array([0.1, -0.1, 0.2])
    assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(365.0))
    assert m["max_drawdown"] == pytest.approx(-0.1)
    assert m["total_return"] == pytest.approx(0.188)


# ------------------------------------------------------------------------------------ walk-forward


def test_walkforward_windows_by_hand() -> None:
    # f=0.7: R/T = 7/3; T = 1000 / (4 + 7/3) = 157.9, R = round(368.4) = 368;
    # test bounds = 368 + round(k * 632 / 4) = 368, 526, 684, 842, 1000
    w = walkforward_windows(1000, 4, 0.7)
    assert [(x.train_start, x.train_end, x.test_start, x.test_end) for x in w] == [
        (0, 368, 368, 526), (158, 526, 526, 684), (316, 684, 684, 842), (474, 842, 842, 1000)]
    a = walkforward_windows(1000, 4, 0.7, anchored=True)
    assert [x.train_start for x in a] == [0, 0, 0, 0]
    assert [(x.test_start, x.test_end) for x in a] == [(x.test_start, x.test_end) for x in w]


@pytest.mark.parametrize("n,windows,frac", [(10_000, 12, 0.7), (1_051_200, 12, 0.7), (997, 5, 0.5), (500, 1, 0.8)])
def test_windows_tile_the_tail_without_overlap(n: int, windows: int, frac: float) -> None:
    w = walkforward_windows(n, windows, frac)
    assert len(w) == windows and w[-1].test_end == n
    for a, b in itertools.pairwise(w):
        assert a.test_end == b.test_start
    for x in w:
        assert x.train_end == x.test_start and x.train_start < x.train_end < x.test_end
        assert x.train_end - x.train_start == w[0].train_end  # rolling: constant train length
    t = w[0].test_end - w[0].test_start
    assert w[0].train_end / (w[0].train_end + t) == pytest.approx(frac, abs=0.01)


def test_bad_windows_are_refused() -> None:
    with pytest.raises(ValidationError, match="--windows must be >= 1"):
        walkforward_windows(1000, 0)
    with pytest.raises(ValidationError, match="--train must be a fraction"):
        walkforward_windows(1000, 4, 1.0)
    with pytest.raises(ValidationError, match="too few for 12 windows"):
        walkforward_windows(20, 12)


def test_stitch_continues_each_segment_from_the_previous_end() -> None:
    # 1000 start; [100, 110] -> [1000, 1100]; [50, 45, 60] x 1100/50 = 22 -> [1100, 990, 1320]
    out = stitch_equity([[100.0, 110.0], [50.0, 45.0, 60.0]], 1000.0)
    assert out.tolist() == pytest.approx([1000.0, 1100.0, 1100.0, 990.0, 1320.0])
    segs = [np.array([10.0, 12.0, 9.0]), np.array([]), np.array([7.0, 7.7]), np.array([3.0, 1.5, 3.0])]
    s = stitch_equity(segs, 500.0)
    assert s[0] == 500.0 and s[2] == s[3] and s[4] == s[5]  # each segment starts where the last ended
    assert s[-1] == pytest.approx(500 * (9 / 10) * (7.7 / 7) * (3 / 3))
    with pytest.raises(ValidationError, match="segment 0 must start > 0"):
        stitch_equity([[0.0, 1.0]], 1.0)


def test_degradation_by_hand() -> None:
    d = degradation([1.0, 2.0, None], [0.5, -0.5, 3.0])
    # IS mean of defined values 1.5; OOS mean (0.5 - 0.5 + 3) / 3 = 1.0
    assert d == {"mean_in_sample": 1.5, "mean_out_of_sample": 1.0, "efficiency": pytest.approx(2 / 3),
                 "drop": 0.5, "oos_positive": pytest.approx(2 / 3)}
    assert degradation([-1.0], [1.0])["efficiency"] is None  # undefined when IS <= 0
    with pytest.raises(ValidationError):
        degradation([1.0], [])


# ------------------------------------------------------------------------------------ Monte Carlo


def test_path_stats_by_hand() -> None:
    # 1 -> 1.1 -> 0.55 -> 0.66: final 0.66, max drawdown 0.55 / 1.1 - 1 = -0.5, low 0.55
    final, mdd, low, path = path_stats(np.array([0.1, -0.5, 0.2]))
    assert (final, mdd, low) == pytest.approx((0.66, -0.5, 0.55))
    assert path.tolist() == pytest.approx([1.0, 1.1, 0.55, 0.66])
    # a loss beyond 100 % ruins the account, it does not flip the sign
    assert path_stats(np.array([-1.5, 0.5]))[0] == 0.0


def test_monte_carlo_is_deterministic_with_a_seed_and_chunking_does_not_matter() -> None:
    r = np.random.default_rng(0).normal(0.001, 0.02, 300)
    a = monte_carlo("trades", r, 40, seed=11, initial=1000.0)
    assert a == monte_carlo("trades", r, 40, seed=11, initial=1000.0)
    assert a["final_equity"] != monte_carlo("trades", r, 40, seed=12, initial=1000.0)["final_equity"]
    whole = mc_block_bootstrap(r, np.arange(40), seed=5, block=7)
    parts = MCBatch.concat([mc_block_bootstrap(r, np.arange(25, 40), 5, 7), mc_block_bootstrap(r, np.arange(25), 5, 7)])
    for f in ("run_ids", "final", "max_drawdown", "min_equity", "paths"):
        assert np.array_equal(getattr(whole, f), getattr(parts, f))
    assert [len(c) for c in run_chunks(10, 4)] == [4, 4, 2]


def test_rising_trades_never_ruin_and_have_no_drawdown() -> None:
    res = monte_carlo("trades", [0.01, 0.02, 0.005, 0.03], 200, seed=1, initial=100.0, ruin=0.5)
    assert res["prob_ruin"] == 0.0 and res["prob_loss"] == 0.0
    assert res["max_drawdown"]["min"] == 0.0 and res["max_drawdown"]["max"] == 0.0
    assert res["final_equity"]["min"] >= 100.0 * 1.005**4 - 1e-9
    assert res["final_equity"]["max"] <= 100.0 * 1.03**4 + 1e-9


def test_ruin_probability_and_identical_trades_by_hand() -> None:
    # ten trades of -10 %: 0.9^10 = 0.3487 < 0.5 on every path -> ruin certain, final exactly 34.87
    res = monte_carlo("trades", [-0.1] * 10, 50, seed=3, initial=100.0, ruin=0.5)
    assert res["prob_ruin"] == 1.0
    assert res["final_equity"]["p50"] == pytest.approx(100 * 0.9**10)
    assert res["max_drawdown"]["p50"] == pytest.approx(0.9**10 - 1)
    # 0.9^6 = 0.531 stays above 0.5: no ruin with six
    assert monte_carlo("trades", [-0.1] * 6, 50, seed=3, ruin=0.5)["prob_ruin"] == 0.0


def test_block_bootstrap_of_full_length_blocks_is_a_rotation() -> None:
    # one block as long as the series is a circular rotation: the same returns, so the same product
    r = np.array([0.05, -0.02, 0.03, -0.04, 0.01])
    b = mc_block_bootstrap(r, np.arange(30), seed=9, block=len(r))
    assert b.final == pytest.approx(np.full(30, np.prod(1 + r)))


def test_monte_carlo_inputs_are_validated() -> None:
    with pytest.raises(ValidationError, match="no trade returns"):
        mc_trade_bootstrap([], [0], 1)
    with pytest.raises(ValidationError, match=r"bar returns\[1\] is nan"):
        mc_block_bootstrap([0.1, float("nan")], [0], 1, block=1)
    with pytest.raises(ValidationError, match="--block must be in"):
        mc_block_bootstrap([0.1, 0.2], [0], 1, block=3)
    with pytest.raises(ValidationError, match="--runs must be >= 1"):
        monte_carlo("trades", [0.1], 0, seed=1)
    with pytest.raises(ValidationError, match="--ruin must be a fraction"):
        summarize_mc(mc_trade_bootstrap([0.1], [0], 1), 100.0, 1.5)
    with pytest.raises(ValidationError, match="method must be"):
        monte_carlo("bars", [0.1], 1, seed=1)


def test_trade_and_bar_returns_by_hand() -> None:
    ts = np.array([0.0, 10.0, 20.0])
    eq = np.array([100.0, 200.0, 50.0])
    # entered at t=15: equity then was 200 (the last point at or before 15) -> 20 / 200
    assert trade_returns([{"pnl": 20.0, "entry_ns": 15}], ts, eq).tolist() == pytest.approx([0.1])
    iso_ts = np.array([np.datetime64("2024-01-01T00:00:00", "ns").astype(np.int64),
                       np.datetime64("2024-01-02T00:00:00", "ns").astype(np.int64)], dtype=np.float64)
    got = trade_returns([{"pnl": -5.0, "entry_time": "2024-01-01T12:00:00Z"}], iso_ts, np.array([50.0, 60.0]))
    assert got.tolist() == pytest.approx([-0.1])
    assert bar_returns([100.0, 110.0, 99.0]).tolist() == pytest.approx([0.1, -0.1])
    with pytest.raises(ValidationError, match="returns after ruin"):
        bar_returns([100.0, 0.0, 10.0])


# ------------------------------------------------------------------------------------- evaluation


@pytest.fixture(scope="module")
def small() -> tuple[dict[str, Any], Any]:
    base = {"strategy": "sma_cross", "generated": {"bars": 1500, "seed": 3},
            "commission": {"model": "percent", "taker_bps": 5.0}}
    return base, load_run_data(parse_config(base))


def test_evaluate_matches_run_backtest_and_reports_bad_configs(small: tuple[dict[str, Any], Any]) -> None:
    base, loaded = small
    specs = plan_runs(base, [{"fast": 5, "slow": 20}, {"fast": 20, "slow": 20}], data_fingerprint(loaded.bars))
    ok, bad = evaluate_many(specs, loaded)
    direct = run_backtest(parse_config({**base, "params": {"fast": 5, "slow": 20}}), bars=loaded)
    assert ok["status"] == "ok" and ok["metrics"]["sharpe"] == pytest.approx(direct.metrics["sharpe"])
    assert ok["final_equity"] == float(direct.equity[-1])
    assert bad["status"] == "error" and bad["metrics"] is None
    assert "fast=20 must be smaller than slow=20" in bad["error"]
    assert evaluate(specs[0], loaded, window=3)["window"] == 3


# ---------------------------------------------------------------------------------------- reports


def test_monthly_returns_by_hand() -> None:
    t = np.array([np.datetime64(d, "ns").astype(np.int64) for d in
                  ("2024-01-01", "2024-01-31", "2024-02-15", "2024-02-28", "2025-01-10")], dtype=np.float64)
    eq = np.array([100.0, 110.0, 120.0, 99.0, 108.9])
    years, grid, yearly = monthly_returns(t, eq)
    # Jan 100 -> 110 = +10 %; Feb 110 -> 99 = -10 %; 2025-01 99 -> 108.9 = +10 %; 2024: 100 -> 99 = -1 %
    assert years == [2024, 2025]
    assert grid[0, 0] == pytest.approx(0.1) and grid[0, 1] == pytest.approx(-0.1)
    assert math.isnan(grid[0, 2]) and grid[1, 0] == pytest.approx(0.1)
    assert yearly == pytest.approx([-0.01, 0.1])
    # months compound to the total return
    assert np.nanprod(1 + grid) == pytest.approx(eq[-1] / eq[0])


def test_histogram_escapes_and_handles_empty() -> None:
    assert "no data" in svg_histogram([], title="x")
    svg = svg_histogram([1.0, 2.0, 2.5, 3.0], title="<b>", bins=3)
    assert "&lt;b&gt;" in svg and "<b>" not in svg and svg.count("<rect") >= 4


def test_reports_render_for_every_kind(small: tuple[dict[str, Any], Any], tmp_path: Path) -> None:
    base, loaded = small
    result = run_backtest(parse_config({**base, "params": {"fast": 5, "slow": 20}}), bars=loaded).to_dict()
    page = render_any(result)
    assert "Monthly returns" in page and "Trade P&amp;L distribution" in page and "Performance" in page
    assert page.index("Monthly returns") < page.index("<h2>Performance")

    specs = plan_runs(base, expand_grid(parse_grid(["fast=5,10", "slow=20,40"])), "d")
    runs = evaluate_many(specs, loaded)
    sweep = {"kind": "sweep", "strategy": "sma_cross", "metric": "sharpe", "min_trades": 0,
             "search": {"method": "grid", "axes": {"fast": [5, 10], "slow": [20, 40]}},
             "counts": {"total": 4, "ok": 4, "error": 0, "failed": 0, "eligible": 4},
             "ranked": rank_records(runs, "sharpe"), "runs": runs,
             "best": {"params": {"fast": 5}, "equity": result["equity"],
                      "benchmark_equity": result["benchmark_equity"]}}
    html = render_any(sweep)
    assert "Sharpe ratio by fast and slow" in html and "heatmap" in html and "Top 4 by Sharpe ratio" in html

    wf = {"kind": "walkforward", "metric": "sharpe", "windows": [
        {"index": 0, "test_from": "2024-01-01T10:00:00Z", "test_to": "2024-01-01T12:00:00Z", "best_params": {"fast": 5},
         "in_sample": {"sharpe": 1.0}, "out_of_sample": {"sharpe": -0.5, "total_return": -0.01}}],
        "oos_metrics": {"sharpe": -0.5}, "degradation": {"sharpe": degradation([1.0], [-0.5])},
        "oos_equity": [["2024-01-01T10:00:00Z", 100.0], ["2024-01-01T12:00:00Z", 99.0]]}
    assert "Stitched out-of-sample equity" in render_any(wf)

    mc = {"kind": "montecarlo", "source": {"strategy": "sma_cross"},
          "results": [monte_carlo("trades", [0.01, -0.02, 0.03], 50, seed=1, initial=100.0)]}
    assert "Trade-sequence bootstrap" in render_any(mc) and "Final equity" in render_any(mc)
    with pytest.raises(ValidationError, match="not a backtest, sweep"):
        render_any({"hello": 1})


# --------------------------------------------------------------------------------------------- CLI


def test_cli_help_teaches_with_examples() -> None:
    from mmats_cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, example in (("sweep", "--grid fast=5:50:5"), ("walkforward", "--windows 12"),
                          ("montecarlo", "--runs 2000"), ("report", "--pdf out/")):
        text = sub.choices[name].format_help()  # type: ignore[attr-defined]
        assert "examples:" in text and example in text, name


@pytest.mark.parametrize(("argv", "needle"), [
    (["sweep", "--strategy", "sma_cross"], "give at least one --grid"),
    (["sweep", "--strategy", "sma_cross", "--grid", "fast=5:1"], "stop 1 is below start 5"),
    (["sweep", "--strategy", "sma_cross", "--grid", "fast=5", "--metric", "sharp"], "unknown metric"),
    (["sweep", "--strategy", "sma_cross", "--grid", "fast=5", "--resume"], "--resume needs a results file"),
    (["walkforward", "--strategy", "sma_cross", "--grid", "fast=5", "--bars", "50", "--windows", "40"], "too few"),
    (["montecarlo", "--result", "/nonexistent/r.json"], "not a readable result JSON"),
    (["report", "/nonexistent/r.json", "--html", "x.html"], "not a readable result JSON"),
    (["report", "r.json"], "give --html PATH and/or --pdf PATH"),
])
def test_cli_errors_are_one_line_exit_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from actors import research as ray_research
    from mmats_cli.main import main

    def no_ray(*a: Any, **k: Any) -> Any:
        raise AssertionError("bad input must be refused before Ray starts")

    monkeypatch.setattr(ray_research, "ensure_ray", no_ray)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and needle in err[-1]


def test_pdf_export_without_chromium_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from mmats_cli import research as cli
    from mmats_cli.main import main

    doc = tmp_path / "mc.json"
    doc.write_text(json.dumps({"kind": "montecarlo", "results": []}))
    monkeypatch.setattr(cli, "find_chromium", lambda: None)
    assert main(["report", str(doc), "--html", str(tmp_path / "r.html"), "--pdf", str(tmp_path / "r.pdf")]) == 2
    assert "PDF export needs Chromium" in capsys.readouterr().err
    assert (tmp_path / "r.html").is_file() and not (tmp_path / "r.pdf").exists()


def test_montecarlo_cli_on_a_backtest_result(small: tuple[dict[str, Any], Any], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from mmats_cli.main import main

    base, loaded = small
    res = tmp_path / "result.json"
    res.write_text(run_backtest(parse_config({**base, "params": {"fast": 5, "slow": 20}}), bars=loaded).to_json())
    out = tmp_path / "mc.json"
    assert main(["montecarlo", "--result", str(res), "--runs", "30", "--seed", "2", "--parallel", "no", "--quiet",
                 "--json", str(out), "--report", str(tmp_path / "mc.html")]) == 0
    doc = json.loads(out.read_text())
    assert [r["method"] for r in doc["results"]] == ["trades", "blocks"]
    assert all(r["runs"] == 30 and 0 <= r["prob_ruin"] <= 1 for r in doc["results"])
    assert "Block bootstrap of per-bar returns" in (tmp_path / "mc.html").read_text()
