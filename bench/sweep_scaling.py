"""Sweep scaling: 64 sma_cross configs over one year of minute bars, sequential vs Ray tasks.

Bars: the real BTC perp month from ../shared/data stitched end to end to 525,600 bars (one year of
minutes; each copy rescaled to continue from the previous close), or deterministic generated bars when
../shared is absent. Fees and slippage on, as a real sweep would have them.

1. sequential: ``evaluate_many`` in this process (the reference);
2. Ray (alternating with 1 in ``--rounds`` rounds of 16 configs, so a busy minute on a shared machine
   hits both sides): ``actors.research.run_sweep`` on a fresh local Ray with ``--cpus`` CPUs (bars ``ray.put`` once,
   adaptive batching); ``ray_s`` includes ``ray.put``; ``ray.init`` and the workers' one-time import of
   the kernel are fixed costs reported apart (``ray_init_s``, ``ray_warmup_s``); the records must equal
   the sequential ones;
3. per-task overhead: a no-op task that dereferences the same bars, round trip, as a share of one
   task's work;
4. the machine's own parallel ceiling right now: a fork pool of ``--cpus`` processes running the same
   configs (``pool_s``, ``pool_speedup``); ``ray_vs_pool`` isolates what Ray itself costs;
5. unless ``--no-walkforward``: 12 windows x 36 configs over two years (1,051,200 bars), ``walkforward_s``.

The machine is shared: the load average before and after is printed so a slow figure can be judged.
Last line of output: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Ray workers run BLAS single-threaded; a multi-threaded np.dot in this process would sum in another
# order and differ in the last bit (metrics' Sortino), so the sequential side runs single-threaded too.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Ray starts workers at nice 15: on a shared machine they would lose to the sequential side (nice 0).
os.environ.setdefault("RAY_worker_niceness", "0")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from mmats.data import generate_bars, load_bars, stitch, to_arrays  # noqa: E402
from mmats.model import MarketType, default_instrument  # noqa: E402
from mmats.research.experiments import (  # noqa: E402
    Loaded,
    data_fingerprint,
    evaluate,
    evaluate_many,
    expand_grid,
    parse_grid,
    plan_runs,
    walkforward_windows,
)

BTC = ROOT.parent / "shared" / "data" / "crypto_BTCPERP_1m.parquet"
ONE_YEAR = 525_600
TWO_YEARS = 1_051_200
BASE: dict[str, Any] = {
    "strategy": "sma_cross",
    "commission": {"model": "percent", "taker_bps": 10.0},
    "slippage": {"model": "fixed", "bps": 2.0},
    "volume_in_quote": True,
}


def make_loaded(n: int) -> tuple[Loaded, str]:
    if BTC.is_file():
        df, source = stitch(load_bars(BTC), target_bars=n), f"stitched {BTC.name}"
    else:
        df, source = generate_bars(n, seed=7), "generated (../shared absent)"
    inst = default_instrument("BTCPERP", MarketType.CRYPTO)
    resolved = {"symbol": "BTCPERP", "market": "crypto", "timeframe": "1m", "source": source}
    return Loaded(to_arrays(df), inst, [], resolved), source


_POOL_LOADED: Loaded | None = None


def _pool_run(spec: Any) -> dict[str, Any]:
    assert _POOL_LOADED is not None
    return evaluate(spec, _POOL_LOADED)


def _strip(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k != "elapsed_s"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bars", type=int, default=ONE_YEAR)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--grid", action="append", default=None,
                    help="default: fast=5:40:5 slow=50:400:50 (64 configs, all valid)")
    ap.add_argument("--no-walkforward", dest="walkforward", action="store_false",
                    help="skip timing 12 windows x 36 configs over two years (timed by default)")
    ap.add_argument("--wf-bars", type=int, default=TWO_YEARS)
    ap.add_argument("--wf-windows", type=int, default=12)
    ap.add_argument("--wf-grid", action="append", default=None, help="default: fast=5:30:5 slow=60:360:60 (36)")
    ap.add_argument("--rounds", type=int, default=4, help="alternate sequential/Ray in this many rounds")
    ap.add_argument("--no-pool", action="store_true", help="skip the multiprocessing ceiling measurement")
    ap.add_argument("--skip-sequential", action="store_true", help="only the Ray side (for quick checks)")
    args = ap.parse_args()

    import ray

    from actors.research import _noop, measure_task_overhead, run_sweep, run_walkforward

    load0 = os.getloadavg()[0]
    global _POOL_LOADED
    loaded, source = make_loaded(args.bars)
    _POOL_LOADED = loaded  # inherited by the fork pool's workers, like Ray's shared bars
    axes = parse_grid(args.grid or ["fast=5:40:5", "slow=50:400:50"])
    param_sets = expand_grid(axes)
    specs = plan_runs(BASE, param_sets, data_fingerprint(loaded.bars))
    print(f"{len(specs)} configs x {len(loaded.bars):,} bars ({source}); load average {load0:.2f}", file=sys.stderr)

    # The parallel ceiling of this machine right now, without Ray: a fork pool of the same size running
    # the same configs. Created before ray.init (forking a Ray driver is unsafe); idle while Ray runs.
    pool = None if args.no_pool else get_context("fork").Pool(args.cpus)
    if pool is not None:
        pool.map(_pool_run, plan_runs(BASE, param_sets[: args.cpus], "warm"), chunksize=1)

    t0 = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    init_s = time.perf_counter() - t0
    # Workers import the kernel (pandas, TA-Lib, pydantic) on their first task: a fixed cost like
    # ray.init, paid once per worker, measured and reported apart from the sweep.
    t0 = time.perf_counter()
    ref = ray.put(loaded)
    ray.get([_noop.remote(ref) for _ in range(2 * args.cpus)])
    del ref
    warm_s = time.perf_counter() - t0

    # The machine is shared: alternate sequential and Ray in rounds so that load from other processes
    # falls on both sides alike instead of on whichever happened to run during a busy minute.
    from tqdm import tqdm

    rounds = max(1, min(args.rounds, len(param_sets)))
    parts = [param_sets[i::rounds] for i in range(rounds)]
    seq_s = 0.0
    ray_s = 0.0
    pool_s = 0.0
    pooled: list[dict[str, Any]] = []
    seq: list[dict[str, Any]] = []
    par: list[dict[str, Any]] = []
    tasks = 0
    batches: list[float] = []
    bar = tqdm(total=2 * len(param_sets), desc="sequential + ray", unit="run", file=sys.stderr)
    for part in parts:
        if not args.skip_sequential:
            t0 = time.perf_counter()
            seq += evaluate_many(plan_runs(BASE, part, data_fingerprint(loaded.bars)), loaded,
                                 on_record=lambda _: bar.update(1))
            seq_s += time.perf_counter() - t0
        if pool is not None:
            t0 = time.perf_counter()
            pooled += pool.map(_pool_run, plan_runs(BASE, part, data_fingerprint(loaded.bars)), chunksize=1)
            pool_s += time.perf_counter() - t0
        out = run_sweep(BASE, part, loaded, progress=False)
        ray_s += out.stats.wall_s
        par += out.records
        tasks += out.stats.tasks
        batches.append(out.stats.to_dict()["mean_batch"])
        bar.update(len(part))
        bar.set_postfix(seq=f"{seq_s:.0f}s", ray=f"{ray_s:.0f}s")
    bar.close()
    if pool is not None:
        pool.close()
        pool.join()
    print(f"sequential {seq_s:.1f} s, ray {ray_s:.1f} s ({tasks} tasks), process pool {pool_s:.1f} s",
          file=sys.stderr)
    identical = [_strip(r) for r in seq] == [_strip(r) for r in par] if seq else None
    overhead_s = measure_task_overhead(loaded)
    run_s = [float(r["elapsed_s"]) for r in par if r.get("elapsed_s")]
    mean_run = sum(run_s) / len(run_s)
    mean_batch = sum(batches) / len(batches) or 1.0

    wf_s = None
    wf_info: dict[str, Any] = {}
    if args.walkforward:
        wf_loaded, _ = make_loaded(args.wf_bars)
        wf_axes = parse_grid(args.wf_grid or ["fast=5:30:5", "slow=60:360:60"])
        wf_sets = expand_grid(wf_axes)
        windows = walkforward_windows(len(wf_loaded.bars), args.wf_windows)
        print(f"walk-forward: {len(windows)} windows x {len(wf_sets)} configs over {len(wf_loaded.bars):,} bars",
              file=sys.stderr)
        t0 = time.perf_counter()
        wf = run_walkforward(BASE, wf_sets, wf_loaded, windows, metric="sharpe", min_trades=1)
        wf_s = time.perf_counter() - t0
        wf_info = {"walkforward_windows": len(windows), "walkforward_configs": len(wf_sets),
                   "walkforward_bars": len(wf_loaded.bars), "walkforward_runs": wf["stats"]["runs_executed"],
                   "walkforward_oos_sharpe": wf["oos_metrics"].get("sharpe"),
                   "walkforward_train_bars_per_window": windows[0].train_end - windows[0].train_start}
    ray.shutdown()

    result = {
        "configs": len(specs),
        "bars": len(loaded.bars),
        "data": source,
        "cpus": args.cpus,
        "sequential_s": None if args.skip_sequential else round(seq_s, 2),
        "ray_s": round(ray_s, 2),
        "speedup": None if args.skip_sequential else round(seq_s / ray_s, 3),
        "runs_per_sec": round(len(specs) / ray_s, 3),
        "per_task_overhead_pct": round(100.0 * overhead_s / (mean_run * mean_batch), 3),
        "task_overhead_ms": round(overhead_s * 1000, 2),
        "mean_run_s": round(mean_run, 3),
        "tasks": tasks,
        "rounds": rounds,
        "mean_batch": mean_batch,
        "ray_init_s": round(init_s, 2),
        "ray_warmup_s": round(warm_s, 2),
        "identical_to_sequential": identical,
        "pool_s": round(pool_s, 2) if pool is not None else None,
        "pool_speedup": round(seq_s / pool_s, 3) if pool is not None and not args.skip_sequential else None,
        "ray_vs_pool": round(ray_s / pool_s, 3) if pool is not None else None,
        "walkforward_s": round(wf_s, 2) if wf_s is not None else None,
        **wf_info,
        "loadavg_before": round(load0, 2),
        "loadavg_after": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
