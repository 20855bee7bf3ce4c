"""``mmats sweep | walkforward | montecarlo | report``: research at scale from the shell.

The sweeps run as Ray tasks (a local Ray started for the command, or a cluster with ``--address auto``);
the computation is the pure ``mmats.research.experiments``, the parallel driving ``actors.research``. Each command
prints a short table, and writes a JSON document (``--json``) and a self-contained HTML report
(``--report``); ``mmats report`` re-renders any of them and exports PDF through headless Chromium.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmats.errors import ConfigError
from mmats_cli.args import add_backtest_args, build_run_config

EPILOG_SWEEP = """\
examples:
  mmats sweep --strategy sma_cross --data ../shared/data/crypto_BTCPERP_1m.parquet --volume-in-quote \\
        --grid fast=5:50:5 --grid slow=20:200:20 --metric sharpe --min-trades 10 --top 10 \\
        --fees 10bps --slippage 2bps --json out/sweep.json --report out/sweep.html
  mmats sweep ... --random 200 --seed 7            # 200 distinct grid points drawn with seed 7
  mmats sweep ... --address auto                   # on a running Ray cluster (`ray start --head`)
  mmats sweep ... --resume                         # restart an interrupted sweep: finished runs are skipped
  mmats sweep --strategy sma_cross --bars 20000 --grid fast=5,10 --grid slow=30,60 \\
        --grid commission.taker_bps=0,5,10 --grid allocation=0.5,1.0

grid syntax: NAME=START:STOP[:STEP] (inclusive; floats allowed: 0.1:0.5:0.1) or NAME=V1,V2,...
  plain names are strategy parameters (fast, slow); dotted names and allocation, initial_cash,
  max_volume_share address the backtest config (commission.taker_bps, slippage.bps,
  risk.max_position_pct ...). Fixed strategy parameters: --param NAME=VALUE.
system config (--config system.yaml, the file `mmats up` takes): the whole portfolio runs per point;
  STRATEGY_ID.NAME sets one strategy's parameter (trend.fast=5,10), STRATEGY_ID.allocation its share,
  and costs.*, risk.*, allocation.*, initial_cash the config's sections:
  mmats sweep --config system.yaml --grid trend.fast=5,10 --grid revert.allocation=0.2,0.4
metrics: total_return cagr sharpe sortino max_drawdown avg_drawdown win_rate profit_factor num_trades
  avg_trade_duration_s best_trade worst_trade; higher ranks first (drawdowns are negative, so the
  shallowest ranks first); prefix with '-' to rank lowest first.
resume: every finished run is appended to --results (default: next to --json, *.runs.jsonl);
  with --resume, runs whose key (hash of config + data) is already there are not run again.
"""

EPILOG_WF = """\
examples:
  mmats walkforward --strategy sma_cross --data ../shared/data/crypto_BTCPERP_1m.parquet --volume-in-quote \\
        --grid fast=5:30:5 --grid slow=40:200:40 --train 0.7 --windows 12 --metric sharpe \\
        --fees 10bps --json out/wf.json --report out/wf.html
  mmats walkforward ... --anchored                 # every train window starts at the first bar

Windows: test windows tile the end of the series without overlap; each is preceded by its train window
(train/test = 70/30 by default). Every window's train grid runs in parallel; the best config (by --metric,
with at least --min-trades trades) is tested on the following window, and the test equities are
stitched into one out-of-sample curve. Degradation compares in-sample with out-of-sample.
"""

EPILOG_MC = """\
examples:
  mmats backtest --strategy sma_cross --data ../shared/data/crypto_BTCPERP_1m.parquet --json out/result.json
  mmats montecarlo --result out/result.json --runs 2000 --seed 1 --ruin 0.5 --report out/mc.html
  mmats montecarlo --result out/result.json --method blocks --block 60 --runs 500 --json out/mc.json

methods: 'trades' resamples the closed trades with replacement (each compounding its return on the
equity at entry); 'blocks' resamples the per-bar returns of the equity curve in circular blocks of
--block bars; 'both' (default) does both. Ruin: equity below --ruin x initial at any point.
"""

EPILOG_REPORT = """\
examples:
  mmats report out/result.json --html out/report.html             # backtest (with monthly returns)
  mmats report out/sweep.json --html out/sweep.html --pdf out/sweep.pdf
  mmats report out/result.json --pdf out/report.pdf                # PDF only

PDF export prints the HTML with headless Chromium (/usr/bin/chromium, or set MMATS_CHROMIUM).
"""

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


# ------------------------------------------------------------------------------------------ flags


def _add_common(p: argparse.ArgumentParser, *, grid: bool = True) -> None:
    add_backtest_args(p)
    for action in p._actions:  # a sweep writes no audit journal: hide the flag, and refuse it if given
        if "--audit" in action.option_strings:
            action.help = argparse.SUPPRESS
    s = p.add_argument_group("search")
    if grid:
        s.add_argument("--grid", action="append", default=[], metavar="NAME=SPEC",
                       help="swept parameter, repeatable: fast=5:50:5 (inclusive range) or fast=5,10,20")
        s.add_argument("--random", type=int, metavar="N", help="random search: N distinct grid points")
        s.add_argument("--seed", type=int, default=0, help="seed of --random (default 0)")
    s.add_argument("--metric", default="sharpe", help="rank by this metric (default sharpe; '-metric' = lowest first)")
    s.add_argument("--min-trades", type=int, default=1, metavar="N",
                   help="rank only runs with at least N closed trades (default 1)")
    s.add_argument("--top", type=int, default=10, metavar="N", help="show and keep the N best (default 10)")
    x = p.add_argument_group("execution")
    x.add_argument("--address", metavar="ADDR", help="Ray cluster to use (e.g. auto); default: start a local Ray")
    x.add_argument("--num-cpus", type=int, metavar="N", help="CPUs of the local Ray (default: all)")
    x.add_argument("--batch", type=int, metavar="N", help="configs per Ray task (default: adaptive, ~0.5 s of work)")
    x.add_argument("--results", metavar="PATH", help="append every finished run to this JSONL "
                   "(default: <--json>.runs.jsonl)")
    x.add_argument("--resume", action="store_true", help="skip runs already in --results")


def register(sub: Any) -> None:
    """Add the research subcommands to the ``mmats`` parser."""
    raw = argparse.RawDescriptionHelpFormatter
    sw = sub.add_parser("sweep", help="parameter sweep (grid or random) as parallel Ray tasks", formatter_class=raw,
                        description="Run one strategy over many parameter sets on the same bars, in parallel, "
                        "and rank them.", epilog=EPILOG_SWEEP)
    _add_common(sw)
    sw.set_defaults(func=cmd_sweep)

    wf = sub.add_parser("walkforward", help="walk-forward optimization with out-of-sample stitching",
                        formatter_class=raw, description="Optimize on rolling (or anchored) train windows, test on "
                        "the following windows, stitch the out-of-sample equity.", epilog=EPILOG_WF)
    _add_common(wf)
    w = wf.add_argument_group("windows")
    w.add_argument("--train", type=float, default=0.7, metavar="F", help="train fraction of a window (default 0.7)")
    w.add_argument("--windows", type=int, default=12, metavar="N", help="number of test windows (default 12)")
    w.add_argument("--anchored", action="store_true", help="train windows all start at the first bar")
    wf.set_defaults(func=cmd_walkforward)

    mc = sub.add_parser("montecarlo", help="Monte Carlo of a backtest result: trade and block bootstrap",
                        formatter_class=raw, description="Resample a backtest's trades or returns to see the spread "
                        "of outcomes and the probability of ruin.", epilog=EPILOG_MC)
    mc.add_argument("--result", required=True, metavar="PATH", help="backtest result JSON (mmats backtest --json)")
    mc.add_argument("--method", choices=["trades", "blocks", "both"], default="both", help="default both")
    mc.add_argument("--runs", type=int, default=2000, help="bootstrap runs per method (default 2000)")
    mc.add_argument("--block", type=int, default=20, help="block length in bars for the block bootstrap (default 20)")
    mc.add_argument("--ruin", type=float, default=0.5, help="ruin threshold as a fraction of the start (default 0.5)")
    mc.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    mc.add_argument("--json", metavar="PATH", help="write the Monte Carlo JSON here")
    mc.add_argument("--report", metavar="PATH", help="write the HTML report here")
    mc.add_argument("--address", metavar="ADDR", help="Ray cluster to use (e.g. auto)")
    mc.add_argument("--num-cpus", type=int, metavar="N", help="CPUs of the local Ray (default: all)")
    mc.add_argument("--parallel", choices=["auto", "yes", "no"], default="auto",
                    help="run chunks as Ray tasks (auto: only when the work is large enough to pay for Ray)")
    mc.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    mc.set_defaults(func=cmd_montecarlo)

    rep = sub.add_parser("report", help="render a result JSON (backtest, sweep, walk-forward, Monte Carlo) "
                         "as HTML and/or PDF", formatter_class=raw, epilog=EPILOG_REPORT)
    rep.add_argument("result", help="a JSON written by backtest, sweep, walkforward or montecarlo")
    rep.add_argument("--html", metavar="PATH", help="write the HTML report here")
    rep.add_argument("--pdf", metavar="PATH", help="also print it to PDF (needs Chromium)")
    rep.set_defaults(func=cmd_report)


# ------------------------------------------------------------------------------------------ shared


def _prepare(args: argparse.Namespace) -> tuple[dict[str, Any], Any, list[Any]]:
    """Validated base config, the loaded bars, and the param sets (grid or random sample)."""
    from mmats.research.experiments import expand_grid, parse_grid, parse_metric, sample_random
    from mmats.research.runconfig import load_run_data, parse_config

    if getattr(args, "audit", None):
        raise ConfigError(f"--audit is for single backtests; {args.command} writes no audit journal")
    parse_metric(args.metric)
    if args.min_trades < 0:
        raise ConfigError(f"--min-trades must be >= 0, got {args.min_trades}")
    if args.top < 1:
        raise ConfigError(f"--top must be >= 1, got {args.top}")
    if args.batch is not None and args.batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {args.batch}")
    if args.num_cpus is not None and args.num_cpus < 1:
        raise ConfigError(f"--num-cpus must be >= 1, got {args.num_cpus}")
    from mmats_cli.portfolio_cli import is_system_config_file

    if is_system_config_file(args.config):  # the file `mmats up` takes: a sweep of the whole portfolio
        return _prepare_portfolio(args)
    axes = parse_grid(args.grid)
    if not axes:
        raise ConfigError("give at least one --grid NAME=SPEC (e.g. --grid fast=5:50:5 --grid slow=20:200:20)")
    raw = build_run_config(args)
    cfg = parse_config(raw)
    base = cfg.model_dump(mode="json", exclude_defaults=True)
    base["strategy"] = cfg.strategy
    param_sets = sample_random(axes, args.random, args.seed) if args.random is not None else expand_grid(axes)
    if not args.quiet:
        print(f"loading bars ({cfg.data or 'generated'}) ...", file=sys.stderr)
    loaded = load_run_data(cfg)
    return base, loaded, [axes, param_sets]


def _prepare_portfolio(args: argparse.Namespace) -> tuple[dict[str, Any], Any, list[Any]]:
    """A system config's sweep: grid keys name a strategy (``trend.fast``) or a config section."""
    from mmats.research.experiments import expand_grid, parse_grid, sample_random
    from mmats.research.portfolio_runs import strategy_ids
    from mmats_cli import portfolio_cli

    portfolio_cli.refuse_run_flags(args, f"mmats {args.command}")
    if not args.quiet:
        print(f"loading the feeds' bars ({args.config}) ...", file=sys.stderr)
    cfg, data = portfolio_cli.load(args)
    base = cfg.model_dump(mode="json")
    axes = parse_grid(args.grid, strategy_ids(base))
    if not axes:
        ids = strategy_ids(base)
        raise ConfigError(f"give at least one --grid NAME=SPEC naming a strategy's parameter (e.g. --grid "
                          f"{ids[0]}.fast=5,10) or a config section (costs.commission.taker_bps=5,10)")
    param_sets = sample_random(axes, args.random, args.seed) if args.random is not None else expand_grid(axes)
    return base, data, [axes, param_sets]


def _title(base: Mapping[str, Any]) -> str:
    """What a research document ran: the strategy, or the portfolio's strategies."""
    if base.get("strategy"):
        return str(base["strategy"])
    return "portfolio: " + ", ".join(str(s.get("id")) for s in base.get("strategies") or [])


def _results_path(args: argparse.Namespace) -> str | None:
    if args.results:
        return str(args.results)
    if args.json:
        return str(Path(args.json).with_suffix(".runs.jsonl"))
    if args.resume:
        raise ConfigError("--resume needs a results file: give --results PATH (or --json, which puts it next to it)")
    return None


def _data_facts(loaded: Any) -> dict[str, Any]:
    from mmats.engine.portfolio_backtest import PortfolioData
    from mmats.model import iso

    if isinstance(loaded, PortfolioData):
        tl = loaded.timeline
        return {**loaded.resolved, "bars": sum(len(a) for a in loaded.series.values()), "timestamps": len(tl),
                "first_bar": iso(int(tl[0])), "last_bar": iso(int(tl[-1]))}
    arrays, _, _, resolved = loaded
    return {**resolved, "bars": len(arrays), "first_bar": iso(int(arrays.ts_ns[0])),
            "last_bar": iso(int(arrays.ts_ns[-1]))}


def _write_outputs(doc: Mapping[str, Any], args: argparse.Namespace, what: str) -> None:
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1, allow_nan=False, default=str) + "\n")
    if args.report:
        from mmats.reports.research_report import write_any

        write_any(doc, args.report)
    if not args.quiet:
        for path, label in ((args.json, what), (args.report, "report")):
            if path:
                print(f"{label}: {path}")


def _params(params: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (params or {}).items()) or "–"


def _fmt(metric: str, v: Any) -> str:
    from mmats.reports.backtest_report import format_metric

    return format_metric(metric, v)


# ------------------------------------------------------------------------------------------- sweep


def cmd_sweep(args: argparse.Namespace) -> int:
    from actors.research import run_sweep
    from mmats.research.experiments import parse_metric, plan_runs, rank_records, run_spec

    base, loaded, (axes, param_sets) = _prepare(args)
    metric, _ = parse_metric(args.metric)
    results = _results_path(args)
    if results and Path(results).exists() and not args.resume and not args.quiet:
        print(f"note: {results} exists: starting over (use --resume to skip its finished runs)", file=sys.stderr)
    t0 = time.perf_counter()
    outcome = run_sweep(base, param_sets, loaded, results_path=results, resume=args.resume, batch=args.batch,
                        progress=not args.quiet, address=args.address, num_cpus=args.num_cpus)
    records = outcome.records
    eligible = rank_records(records, args.metric, args.min_trades)
    ranked = eligible[: args.top]
    counts = {"total": len(records), "ok": sum(1 for r in records if r["status"] == "ok"),
              "error": sum(1 for r in records if r["status"] == "error"),
              "failed": sum(1 for r in records if r["status"] == "failed"), "eligible": len(eligible),
              "skipped_resume": outcome.stats.runs_skipped}
    best: dict[str, Any] | None = None
    if ranked:
        spec = plan_runs(base, [ranked[0]["params"]], outcome.data_id)[0]
        if spec.config is not None:
            result = run_spec(spec, loaded)
            every = max(args.equity_every, len(loaded.bars) // 20_000)
            full = result.to_dict(every)
            best = {"key": spec.key, "params": ranked[0]["params"], "metrics": full["metrics"],
                    "benchmark": full["benchmark"], "summary": full["summary"], "equity": full["equity"],
                    "benchmark_equity": full["benchmark_equity"], "config": full["config"]}
    doc = {
        "kind": "sweep",
        "mmats_sweep_version": 1,
        "strategy": _title(base),
        "base_config": base,
        "data": {**_data_facts(loaded), "fingerprint": outcome.data_id},
        "search": {"method": "random" if args.random is not None else "grid", "seed": args.seed
                   if args.random is not None else None, "axes": {a.name: list(a.values) for a in axes}},
        "metric": args.metric,
        "min_trades": args.min_trades,
        "counts": counts,
        "ranked": [{"rank": i, **r} for i, r in enumerate(ranked, start=1)],
        "best": best,
        "runs": records,
        "results_file": results,
        "stats": {**outcome.stats.to_dict(), "elapsed_s": round(time.perf_counter() - t0, 3)},
    }
    if not args.quiet:
        _print_sweep(doc, metric)
    _write_outputs(doc, args, "sweep")
    if records and counts["ok"] == 0:  # nothing ran: a failure, not an empty ranking
        first = next((r for r in records if r.get("error")), {})
        raise ConfigError(f"all {len(records)} configurations failed, none ran (first: {_params(first.get('params'))}: "
                          f"{first.get('error', 'unknown')})")
    return 0


def _print_sweep(doc: Mapping[str, Any], metric: str) -> None:
    c = doc["counts"]
    st = doc["stats"]
    print(f"{doc['strategy']}: {c['total']} configs ({c['ok']} ok, {c['error']} invalid, {c['failed']} crashed, "
          f"{c['skipped_resume']} reused from results) in {st['elapsed_s']:.1f} s on {st['cpus']} CPUs, "
          f"{st['tasks']} tasks")
    if not doc["ranked"]:
        print(f"no run has >= {doc['min_trades']} trades and a defined {metric}")
    else:
        print(f"{'#':>3}  {metric:>12} {'return':>10} {'max DD':>9} {'trades':>7}  params")
        for r in doc["ranked"]:
            m = r["metrics"]
            print(f"{r['rank']:>3}  {_fmt(metric, m.get(metric)):>12} "
                  f"{_fmt('total_return', m.get('total_return')):>10} "
                  f"{_fmt('max_drawdown', m.get('max_drawdown')):>9} {_fmt('num_trades', m.get('num_trades')):>7}  "
                  f"{_params(r['params'])}")
    errs = [r for r in doc["runs"] if r["status"] != "ok"]
    for r in errs[:5]:
        print(f"failed: {_params(r['params'])}: {r['error']}")
    if len(errs) > 5:
        print(f"... and {len(errs) - 5} more failed configs (see the JSON)")


# ------------------------------------------------------------------------------------ walk-forward


def cmd_walkforward(args: argparse.Namespace) -> int:
    from actors.research import run_walkforward
    from mmats.research.experiments import walkforward_windows

    if args.random is not None and args.random < 1:
        raise ConfigError(f"--random must be >= 1, got {args.random}")
    base, loaded, (axes, param_sets) = _prepare(args)
    windows = walkforward_windows(len(loaded.bars), args.windows, args.train, args.anchored)
    results = _results_path(args)
    t0 = time.perf_counter()
    out = run_walkforward(base, param_sets, loaded, windows, metric=args.metric, min_trades=args.min_trades,
                          results_path=results, resume=args.resume, batch=args.batch, progress=not args.quiet,
                          address=args.address, num_cpus=args.num_cpus)
    doc = {
        "kind": "walkforward",
        "mmats_walkforward_version": 1,
        "strategy": _title(base),
        "base_config": base,
        "data": _data_facts(loaded),
        "train_fraction": args.train,
        "anchored": bool(args.anchored),
        "search": {"method": "random" if args.random is not None else "grid",
                   "axes": {a.name: list(a.values) for a in axes}},
        "configs_per_window": len(param_sets),
        **{k: v for k, v in out.items() if k not in ("kind", "mmats_walkforward_version")},
        "results_file": results,
    }
    doc["stats"] = {**out["stats"], "elapsed_s": round(time.perf_counter() - t0, 3)}
    if not args.quiet:
        _print_wf(doc)
    _write_outputs(doc, args, "walk-forward")
    return 0


def _print_wf(doc: Mapping[str, Any]) -> None:
    metric = str(doc["metric"]).lstrip("-+")
    print(f"{doc['strategy']}: {len(doc['windows'])} {'anchored' if doc['anchored'] else 'rolling'} windows x "
          f"{doc['configs_per_window']} configs in {doc['stats']['elapsed_s']:.1f} s")
    print(f"{'#':>3}  {'test window':<23} {'IS ' + metric:>12} {'OOS ' + metric:>12} {'OOS ret':>9}  best params")
    for w in doc["windows"]:
        i_s, o_s = w.get("in_sample") or {}, w.get("out_of_sample") or {}
        print(f"{w['index']:>3}  {w['test_from'][:10]} → {w['test_to'][:10]} {_fmt(metric, i_s.get(metric)):>12} "
              f"{_fmt(metric, o_s.get(metric)):>12} {_fmt('total_return', o_s.get('total_return')):>9}  "
              f"{_params(w.get('best_params'))}{'  (' + w['note'] + ')' if w.get('note') else ''}")
    o = doc["oos_metrics"]
    d = doc["degradation"].get(metric, {})
    eff = d.get("efficiency")
    print(f"stitched out-of-sample: return {_fmt('total_return', o.get('total_return'))}, sharpe "
          f"{_fmt('sharpe', o.get('sharpe'))}, max DD {_fmt('max_drawdown', o.get('max_drawdown'))}, "
          f"{_fmt('num_trades', o.get('num_trades'))} trades; {metric} efficiency (OOS/IS) "
          f"{'–' if eff is None else f'{eff:.2f}'}")


# ------------------------------------------------------------------------------------- Monte Carlo


def _load_json(path: str) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable result JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a result JSON must be an object")
    return doc


def cmd_montecarlo(args: argparse.Namespace) -> int:
    import numpy as np

    from actors.research import run_montecarlo
    from mmats.reports.research_report import pairs_xy
    from mmats.research.experiments import bar_returns, trade_returns

    if args.runs < 1:
        raise ConfigError(f"--runs must be >= 1, got {args.runs}")
    if not 0 < args.ruin < 1:
        raise ConfigError(f"--ruin must be a fraction in (0, 1), got {args.ruin}")
    if args.block < 1:
        raise ConfigError(f"--block must be >= 1, got {args.block}")
    doc = _load_json(args.result)
    if doc.get("kind") or "equity" not in doc:
        raise ConfigError(f"{args.result}: not a backtest result (write one with mmats backtest --json)")
    xy = pairs_xy(doc.get("equity") or [])
    if len(xy) < 2:
        raise ConfigError(f"{args.result}: the equity curve has fewer than 2 points")
    initial = float(xy[0, 1])
    trades = [t for t in doc.get("trades") or [] if isinstance(t, dict)]
    methods = ["trades", "blocks"] if args.method == "both" else [args.method]
    if "trades" in methods and not trades:
        if args.method == "trades":
            raise ConfigError(f"{args.result}: no closed trades to resample; use --method blocks")
        methods.remove("trades")
        print("note: no closed trades: only the block bootstrap runs", file=sys.stderr)
    every = _equity_step(doc)
    if "blocks" in methods and every > 1 and not args.quiet:
        print(f"note: the result keeps every {every}th equity point (--equity-every); blocks are of those points",
              file=sys.stderr)
    parallel = {"auto": None, "yes": True, "no": False}[args.parallel]
    out = []
    for method in methods:
        if method == "trades":
            rets = trade_returns(trades, xy[:, 0], xy[:, 1])
        else:
            rets = bar_returns(xy[:, 1])
            if args.block > rets.size:
                raise ConfigError(f"--block {args.block} is longer than the {rets.size} returns in the result")
        out.append(run_montecarlo(method, np.asarray(rets), args.runs, args.seed, initial=initial, ruin=args.ruin,
                                  block=args.block, parallel=parallel, progress=not args.quiet,
                                  address=args.address, num_cpus=args.num_cpus))
    cfg = doc.get("config") or {}
    mc = {
        "kind": "montecarlo",
        "mmats_montecarlo_version": 1,
        "source": {"result": args.result, "strategy": cfg.get("strategy"), "params": cfg.get("params"),
                   "trades": len(trades), "bars": len(xy), "initial_equity": initial,
                   "final_equity": float(xy[-1, 1])},
        "results": out,
    }
    if not args.quiet:
        for r in out:
            fe, dd = r["final_equity"], r["max_drawdown"]
            print(f"{r['method']:>7}: {r['runs']} runs; final equity p5 {fe['p5']:,.2f} / median {fe['p50']:,.2f} / "
                  f"p95 {fe['p95']:,.2f}; max DD median {dd['p50'] * 100:.1f}% (p5 {dd['p5'] * 100:.1f}%); "
                  f"P(ruin < {args.ruin:.0%}) {r['prob_ruin'] * 100:.2f}%; P(loss) {r['prob_loss'] * 100:.1f}%")
    _write_outputs(mc, args, "monte carlo")
    return 0


def _equity_step(doc: Mapping[str, Any]) -> int:
    summary = doc.get("summary") or {}
    bars = int(summary.get("bars") or 0) if isinstance(summary, Mapping) else 0
    n = len(doc.get("equity") or [])
    return max(1, round(bars / n)) if bars and n else 1


# ------------------------------------------------------------------------------------------ report


def find_chromium() -> str | None:
    env = os.environ.get("MMATS_CHROMIUM")
    if env:
        return env if Path(env).is_file() else shutil.which(env)
    for c in CHROMIUM_CANDIDATES:
        found = c if Path(c).is_file() else shutil.which(c)
        if found:
            return found
    return None


def html_to_pdf(html_path: str | Path, pdf_path: str | Path, timeout: float = 120.0) -> Path:
    """Print an HTML file to PDF with headless Chromium (no network, no profile state kept)."""
    exe = find_chromium()
    if exe is None:
        raise ConfigError("PDF export needs Chromium, which was not found (looked for /usr/bin/chromium, chromium, "
                          "google-chrome; install it with `apt-get install chromium` or set MMATS_CHROMIUM)")
    pdf = Path(pdf_path).resolve()
    pdf.parent.mkdir(parents=True, exist_ok=True)
    if pdf.exists():
        pdf.unlink()
    with tempfile.TemporaryDirectory(prefix="mmats-chromium-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
               "--disable-extensions", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
               "--no-pdf-header-footer", "--disable-pdf-tagging",  # tagging makes a 945-trade PDF 15x bigger, slower
               f"--print-to-pdf={pdf}", Path(html_path).resolve().as_uri()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ConfigError(f"Chromium did not finish printing {html_path} within {timeout:.0f} s") from None
        except OSError as exc:
            raise ConfigError(f"cannot run Chromium at {exe}: {exc}") from None
    if not pdf.is_file() or pdf.stat().st_size == 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise ConfigError(f"Chromium exited {proc.returncode} without writing {pdf_path}: {tail[0]}")
    return pdf


def cmd_report(args: argparse.Namespace) -> int:
    from mmats.reports.research_report import write_any

    if not args.html and not args.pdf:
        raise ConfigError("give --html PATH and/or --pdf PATH")
    doc = _load_json(args.result)
    t0 = time.perf_counter()
    if args.html:
        write_any(doc, args.html)
        print(f"report: {args.html} ({time.perf_counter() - t0:.1f} s)")
    if args.pdf:
        with tempfile.TemporaryDirectory(prefix="mmats-report-") as tmp:
            src = Path(args.html) if args.html else write_any(doc, Path(tmp) / "report.html")
            html_to_pdf(src, args.pdf)
        print(f"pdf: {args.pdf}")
    return 0
