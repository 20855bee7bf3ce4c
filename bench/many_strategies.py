"""Many strategies through the Ray actors: 20 strategies (every shipped kind, two LLM agents on LangChain's
fake chat model) on 10 symbols, paper broker, against the first of them alone on the same symbols.

One run, three phases on one local Ray cluster (the third below), each a fresh system fed at the same
offered rate (a replay at N x real time, so the bars arrive at a steady rate whatever the system does):
- ``1``: one strategy (sma_cross) on the 10 symbols;
- ``20``: twenty strategies, one actor each, on the same 10 symbols.

Per phase, over the measured window (after a warm-up):
- bar processing (``bar_*``): for every strategy and every bar time the feed published in the window,
  from the publication to the strategy having run on it and handed its signals on (the strategy host's
  ``processed_times``, ``mmats/engine/wall_stamps.py``; a bar not processed by the end of the window
  counts as late as the window's end). This is how far behind the market each strategy runs: the lag;
- signal to order (``order_*``): from the feed publishing a bar to the router accepting the order a
  strategy decided on it (feed -> strategy -> gatekeeper -> router; ``signal_to_order_s`` of
  bench/live_pipeline.py), over every order accepted in the window, split by hop and by strategy kind;
- the feed's largest per-subscriber backlog (read once a second) and any bars coalesced away;
- cores used per kind of process, and resident memory: all processes of the cluster (driver, GCS,
  raylet, workers) and the raylet's workers by kind (``StrategyActor`` etc.);
- all processes' CPU per bar time published (``cpu_ms_per_bar_time``): the burst of work each bar
  time sets off, which the machine's cores share.
Before the phases, the mix's own work: each strategy run in this process on the same generated bars
after the same warm-up, CPU per bar time (``strategy_cpu_ms_each``, ``strategy_cpu_ms_per_bar_time``),
and that sum over the machine's cores (``strategy_cpu_floor_ms``): a floor under the many phases'
bar-processing p99, since on every bar time one strategy in twenty (5 % of the pairs measured) is the
last to finish, after all that work.
A third phase runs the same strategies pooled, ``--pool`` (default 5) per actor process
(``strategies_per_actor``): ``pool_*``. Pools are formed in config order, so the mix is listed with
every fifth strategy starting a new share of the heavy kinds (active_inference, llm_agent,
vumanchu_cipher): each pool carries about the same work, as docs/deployment.md advises.
``--mix light`` runs the same phases with light strategies only (``LIGHT_MIX``): what the system itself
adds when the strategies' own work is small.

Progress on stderr. Last line of stdout: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_worker_niceness", "0")  # as `mmats up` runs the actors (mmats_cli.runtime)

import numpy as np  # noqa: E402
import ray  # noqa: E402  (before live_pipeline: without the bench extra, psutil is the copy Ray ships)

# isort: split
import live_pipeline as lp  # noqa: E402

SYMBOLS = lp.SYMBOLS
FAKE = "langchain_core.language_models.fake_chat_models.FakeListChatModel"
ALLOCATION = 0.045  # twenty strategies on one account: 90 % of equity allocated at most
# bars/s offered (all symbols together): 20 strategies keep up with it on a shared 2-core machine, where
# 300 and 500 already drove the order path's latency to seconds (docs/architecture.md "Many strategies").
DEFAULT_RATE = 200.0
CORES = 2  # the local cluster's CPUs (ray.init below)


def _llm_answer(action: str, size: float) -> str:
    return json.dumps({"action": action, "size": size, "confidence": 0.5, "rationale": f"bench {action}"})


def _llm(every_n_bars: int) -> dict[str, Any]:
    """An LLM agent on LangChain's fake chat model: the real prompt building, call on a thread with a
    timeout, schema validation and fallback (one answer in four is not JSON), with no network."""
    answers = [_llm_answer("BUY", 0.8), _llm_answer("HOLD", 0.0), "no idea", _llm_answer("CLOSE", 0.0)]
    return {"model_class": FAKE, "max_calls_per_minute": 0, "every_n_bars": every_n_bars,
            "indicators": ["RSI_14", "SMA_20"], "history_bars": 10, "model_kwargs": {"responses": answers}}


# (ref, params): the first one is also the single strategy of phase ``1``. In pools of five (config
# order), each pool gets one or two of the heavier kinds; per bar on this machine: active_inference
# ~160-170 µs, llm_agent ~100-180, vumanchu_cipher ~35-45, the others 5-12.
MIX: list[tuple[str, dict[str, Any]]] = [
    ("sma_cross", {"fast": 10, "slow": 30}),
    ("llm_agent", _llm(5)),
    ("macd_trend", {}),
    ("bollinger_reversion", {}),
    ("sma_cross", {"fast": 5, "slow": 20}),
    ("active_inference", {}),
    ("vumanchu_cipher", {}),
    ("sma_cross", {"fast": 20, "slow": 60}),
    ("rsi_reversion", {}),
    ("donchian_breakout", {}),
    ("active_inference", {"trend_z": 0.3, "horizon": 3}),
    ("llm_agent", _llm(20)),
    ("macd_trend", {"fast": 5, "slow": 35, "signal": 5}),
    ("bollinger_reversion", {"period": 30, "k": 2.5, "exit": "opposite"}),
    ("sma_cross", {"fast": 8, "slow": 50, "allow_short": True}),
    ("vumanchu_cipher", {"mfi_filter": True, "ribbon_filter": True}),
    ("donchian_breakout", {"entry": 55, "exit": 20}),
    ("macd_trend", {"trend_filter": 200}),
    ("bollinger_reversion", {"rsi_period": 14}),
    ("rsi_reversion", {"period": 7, "oversold": 25.0, "exit": 60.0}),
]


# ``--mix light``: the same first strategy, then only the light kinds (sma_cross and rsi_reversion with
# other parameters): what the system itself (messages, the shared order path) adds when the strategies'
# own work is small.
LIGHT_MIX: list[tuple[str, dict[str, Any]]] = [MIX[0]] + [
    ("sma_cross", {"fast": 5 + i, "slow": 30 + 2 * i}) if i % 2 == 0 else ("rsi_reversion", {"period": 7 + i})
    for i in range(1, 20)]


def strategy_specs(n: int) -> list[dict[str, Any]]:
    return [{"id": f"{ref}_{i}", "ref": ref, "symbols": SYMBOLS, "params": params, "allocation": ALLOCATION}
            for i, (ref, params) in enumerate(MIX[:n])]


def progress(msg: str) -> None:
    print(f"[many_strategies {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def run_phase(n: int, rate: float, warmup: float, seconds: float, home: str, pool: int = 1) -> dict[str, Any]:
    """One system of ``n`` strategies at ``rate`` bars/s offered: latency, lag and memory over ``seconds``;
    ``pool`` strategies share an actor process (``strategies_per_actor``)."""
    per_ts = len(SYMBOLS)
    bars = int((warmup + seconds + 30) * rate / per_ts)  # the replay outlasts the window (startup included)
    cfg = lp.config("speed", rate / per_ts * 60.0, bars, home)  # 1-minute bars: 60 x timestamps per second
    cfg["strategies"] = strategy_specs(n)
    cfg["strategies_per_actor"] = pool
    progress(f"phase {n}: building {n} strategies ({pool} per actor) on {per_ts} symbols, {rate:g} bars/s offered")
    t_build = time.perf_counter()
    sup, h = lp.start(cfg)
    progress(f"phase {n}: started in {time.perf_counter() - t_build:.1f} s; warming up {warmup:g} s")
    feed = h["feeds"]["replay"]
    strategies: dict[str, Any] = h["strategies"]
    try:
        time.sleep(warmup)
        s0 = ray.get(feed.stats.remote())
        cpu0, w0 = lp.worker_cpu_s(), time.perf_counter()
        t0 = time.time()
        max_backlog = 0
        next_note = t0 + 5
        while time.time() - t0 < seconds:  # one light read a second: the feed's backlog per subscriber
            st = ray.get(feed.stats.remote())
            max_backlog = max([max_backlog, *(x["lag_bars"] for k, x in st["subscribers"].items())])
            if time.time() >= next_note:
                progress(f"phase {n}: {time.time() - t0:.0f}/{seconds:g} s, {st['published'] - s0['published']} bars "
                         f"published, backlog now {max(x['lag_bars'] for x in st['subscribers'].values())} bars")
                next_note += 5
            time.sleep(min(1.0, max(0.0, t0 + seconds - time.time())))
        t1 = time.time()
        cores = lp.cpu_share(cpu0, lp.worker_cpu_s(), time.perf_counter() - w0)
        s1 = ray.get(feed.stats.remote())
        rss = lp.ray_rss_mb()
        workers = lp.ray_worker_rss_mb()
        healths = {sid: ray.get(a.health.remote(sid)) for sid, a in strategies.items()}
        hosts: dict[Any, list[str]] = {}  # actor -> the strategies it hosts (several in a pool)
        for sid, a in strategies.items():
            hosts.setdefault(a, []).append(sid)
        processed = {sid: stamps for a, sids in hosts.items()
                     for stamps in [ray.get(a.processed_times.remote())] for sid in sids}
        published = ray.get(feed.publish_times.remote())
        accepted = ray.get(h["router"].accept_times.remote())
        orders = ray.get(h["router"].orders.remote())
        hop = ray.get(h["gatekeeper"].hop_times.remote())
    finally:
        lp.stop(sup, h)
    kinds = {spec["id"]: spec["ref"] for spec in cfg["strategies"]}
    latency: list[float] = []
    by_kind: dict[str, list[float]] = {}  # per strategy kind (its ref): which ones the tail comes from
    first: list[float] = []  # the strategy that phase 1 runs alone
    first_id = strategy_specs(1)[0]["id"]
    # the order path by hop: feed -> gatekeeper (strategy included), the gatekeeper's decision and
    # journal commit, gatekeeper -> router
    hops: dict[str, list[float]] = {"feed_to_gatekeeper": [], "gatekeeper_decides": [], "gatekeeper_to_router": []}
    for o in orders:
        cid = o["client_order_id"]
        if not t0 <= accepted.get(cid, 0.0) <= t1:
            continue
        s = lp.signal_to_order_s(o, accepted, published)
        if s is None:
            continue
        latency.append(s * 1000)
        by_kind.setdefault(kinds.get(o["strategy_id"], "?"), []).append(s * 1000)
        if o["strategy_id"] == first_id:
            first.append(s * 1000)
        signal_ts = lp.created_ns(o)
        arrived = hop["signal_arrived"].get((o["strategy_id"], signal_ts))
        decided = hop["decided"].get(cid)
        if arrived is not None and decided is not None:
            hops["feed_to_gatekeeper"].append((arrived - published[signal_ts]) * 1000)
            hops["gatekeeper_decides"].append((decided - arrived) * 1000)
            hops["gatekeeper_to_router"].append((accepted[cid] - decided) * 1000)
    # bar processing: from the feed publishing a bar time to the strategy having run on it (and handed
    # its signals on), for every strategy and every bar time published in the window
    window = [(ts, wall) for ts, wall in published.items() if t0 <= wall <= t1]
    bar: list[float] = []
    bar_by_kind: dict[str, list[float]] = {}
    for sid, stamps in processed.items():
        # a bar not processed by the end of the window: at least that late
        late = [((stamps.get(ts) or t1) - wall) * 1000 for ts, wall in window]
        bar += late
        bar_by_kind.setdefault(kinds[sid], []).extend(late)
    skipped = sum(x["skipped"] - s0["subscribers"].get(k, {}).get("skipped", 0)
                  for k, x in s1["subscribers"].items())
    errors = {sid: x["last_error"] for sid, x in healths.items() if x["errors_total"] or not x["enabled"]}
    done = (s1["published"] - s0["published"]) / max(t1 - t0, 1e-9)
    progress(f"phase {n}: bar processing p99 {pct(bar, 99)} ms; {len(latency)} orders, signal-to-order p99 "
             f"{pct(latency, 99)} ms; "
             f"RSS {rss:.0f} MB, {done:.0f} bars/s published")
    if errors:
        progress(f"phase {n}: strategies with errors: {errors}")
    return {
        "p50_ms": pct(latency, 50), "p99_ms": pct(latency, 99), "orders_measured": len(latency),
        "first_strategy_p99_ms": pct(first, 99),
        "bar_p50_ms": pct(bar, 50), "bar_p99_ms": pct(bar, 99), "bar_max_ms": pct(bar, 100), "bars_measured": len(bar),
        "max_backlog_bars": max_backlog, "skipped_bars": skipped, "bars_per_sec_published": round(done, 1),
        "hops": {k: {"p50_ms": pct(v, 50), "p99_ms": pct(v, 99)} for k, v in hops.items()},
        "bar_by_kind": {k: {"p50_ms": pct(v, 50), "p99_ms": pct(v, 99)} for k, v in sorted(bar_by_kind.items())},
        "by_kind": {k: {"orders": len(v), "p50_ms": pct(v, 50), "p99_ms": pct(v, 99)}
                    for k, v in sorted(by_kind.items())},
        "cores_used": cores,
        # all processes' CPU per bar time published: the burst of work each bar time sets off
        "cpu_ms_per_bar_time": round(sum(cores.values()) * 1000 / max(done / per_ts, 1e-9), 1),
        "rss_mb": round(rss), "workers": workers, "strategy_errors": errors,
        "bars_seen": {sid: x["bars_seen"] for sid, x in healths.items()},
    }


def strategy_cpu(n: int, timestamps: int = 600, warmup: int = 2_000) -> dict[str, Any]:
    """The mix's own work, in this process and nothing else running: each strategy's CPU per timestamp (10
    bars) on the replay's generated bars, after the same warm-up as in the actors. Every strategy has to
    do this work on every bar wherever it runs, so ``total_ms / cores`` is the least time the machine's
    cores need, after a bar time is published, before the last strategy has processed it: at least one
    strategy in twenty (5 % of the measured pairs) is that late on every bar time, a floor under the
    bar-processing p99 that no topology or messaging can go below."""
    from mmats.data import generate_bars, generated_seed, to_arrays
    from mmats.engine.actor_settings import StrategySettings
    from mmats.engine.strategy_group import build_host

    series = {sym: to_arrays(generate_bars(warmup + timestamps, seed=generated_seed(sym))) for sym in SYMBOLS}
    rows = [[(sym, int(a.ts_ns[i]), float(a.open[i]), float(a.high[i]), float(a.low[i]), float(a.close[i]),
              float(a.volume[i])) for sym, a in series.items()] for i in range(warmup + timestamps)]
    per_strategy: dict[str, float] = {}
    for spec in strategy_specs(n):
        host = build_host(StrategySettings(spec["id"], spec["ref"], spec["params"], SYMBOLS, "crypto"))
        host.warm_up([b for batch in rows[:warmup] for b in batch])
        t0 = time.process_time()
        for batch in rows[warmup:]:
            host.on_bars(batch)
        per_strategy[spec["id"]] = (time.process_time() - t0) * 1000 / timestamps
    total = sum(per_strategy.values())
    return {"total_ms": round(total, 2), "floor_ms": round(total / CORES, 2), "cores": CORES,
            "per_strategy_ms": {k: round(v, 3) for k, v in per_strategy.items()}}


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=DEFAULT_RATE, help="bars/s offered, all symbols together")
    ap.add_argument("--seconds", type=float, default=30.0, help="measured window of each phase")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds after start before measuring")
    ap.add_argument("--strategies", type=int, default=len(MIX), help=f"size of the many phase (1..{len(MIX)})")
    ap.add_argument("--quick", action="store_true", help="a short smoke run: 6 s windows, 3 s warm-up")
    ap.add_argument("--pool", type=int, default=5, help="strategies per actor in the pooled phase (default 5)")
    ap.add_argument("--mix", choices=["shipped", "light"], default="shipped",
                    help="shipped: every shipped kind (default); light: sma_cross and rsi_reversion only")
    ap.add_argument("--no-persist", action="store_true", help="run without storage (default: SQLite in a temp home)")
    args = ap.parse_args()
    if not 1 <= args.strategies <= len(MIX):
        ap.error(f"--strategies must be 1..{len(MIX)}")
    if args.rate <= 0:
        ap.error("--rate must be positive")
    if args.mix == "light":
        MIX[:] = LIGHT_MIX
    if args.quick:
        args.seconds, args.warmup = 6.0, 3.0
    many = args.strategies
    if args.no_persist:
        lp.STORAGE["persist"] = False  # read by lp.config
    progress(f"the mix's own work in this process (no actors): {many} strategies")
    own = strategy_cpu(many)
    ray.init(num_cpus=CORES, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    home = tempfile.mkdtemp(prefix="mmats-bench-many-")
    try:
        one = run_phase(1, args.rate, args.warmup, args.seconds, home + "/one")
        lots = run_phase(many, args.rate, args.warmup, args.seconds, home + "/many")
        pooled = run_phase(many, args.rate, args.warmup, args.seconds, home + "/pooled", pool=args.pool)
        calib = lp.calibration()
    finally:
        ray.shutdown()
    strategy_actor_mb = lots["workers"].get("StrategyActor", {}).get("rss_mb")
    out = {
        "strategies": many, "mix_kind": args.mix, "symbols": len(SYMBOLS), "bars_per_sec_offered": args.rate,
        "seconds": args.seconds, "persist": not args.no_persist,
        # bar processing (the lag): twenty over one, one actor each and pooled
        "bar_p50_ms_1": one["bar_p50_ms"], "bar_p99_ms_1": one["bar_p99_ms"],
        f"bar_p50_ms_{many}": lots["bar_p50_ms"], f"bar_p99_ms_{many}": lots["bar_p99_ms"],
        "bar_p99_ratio": ratio(lots["bar_p99_ms"], one["bar_p99_ms"]),
        f"pool_bar_p50_ms_{many}": pooled["bar_p50_ms"], f"pool_bar_p99_ms_{many}": pooled["bar_p99_ms"],
        "pool_bar_p99_ratio": ratio(pooled["bar_p99_ms"], one["bar_p99_ms"]),
        # signal to order (strategies, then the shared gatekeeper, router and portfolio)
        "order_p50_ms_1": one["p50_ms"], "order_p99_ms_1": one["p99_ms"],
        f"order_p50_ms_{many}": lots["p50_ms"], f"order_p99_ms_{many}": lots["p99_ms"],
        "order_p99_ratio": ratio(lots["p99_ms"], one["p99_ms"]),
        f"pool_order_p50_ms_{many}": pooled["p50_ms"], f"pool_order_p99_ms_{many}": pooled["p99_ms"],
        "pool_order_p99_ratio": ratio(pooled["p99_ms"], one["p99_ms"]),
        # The same strategy (sma_cross 10/30) alone and among the others: its own orders' p99.
        f"same_strategy_order_p99_ms_{many}": lots["first_strategy_p99_ms"],
        f"pool_same_strategy_order_p99_ms_{many}": pooled["first_strategy_p99_ms"],
        f"rss_mb_{many}": lots["rss_mb"], "rss_mb_1": one["rss_mb"],
        "strategy_actor_rss_mb_each": round(strategy_actor_mb / many, 1) if strategy_actor_mb else None,
        "pool_strategies_per_actor": args.pool, "pool_rss_mb": pooled["rss_mb"],
        "phases": {"1": one, str(many): lots, f"{many}_pooled": pooled},
        "cpu_calibration": calib,
        # the strategies' own work per bar time (10 bars), in this process alone, and that work spread over
        # every core: a floor under bar_p99_ms_N that no topology or messaging goes below
        "strategy_cpu_ms_per_bar_time": own["total_ms"], "strategy_cpu_floor_ms": own["floor_ms"],
        "strategy_cpu_ms_each": own["per_strategy_ms"],
        "mix": [f"{s['id']}" for s in strategy_specs(many)],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
