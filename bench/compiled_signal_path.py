"""PROTOTYPE, not the running system: the signal path as a Ray Compiled Graph, to measure what it buys.

`bench/live_pipeline.py` measures the system as it runs (one-way actor calls, persistence on) and
misses a 5 ms / 15 ms tick-to-fill target by far: one actor call costs ~1 ms of receiver CPU here, and the path
crosses about six of them. Ray Compiled Graphs move data between actors over shared-memory channels
without the per-call scheduling. This script wires the same kernel objects the actors hold into one
static graph executed once per timestamp (the 10 bars of that minute):

    bars ─┬─> router.fill (pending market orders fill at this bar's open) ─> portfolio.book ─┐
          └─> strategy_0..9.step (StrategyHost: streaming indicators, on_bar) ──────────────┴─> gatekeeper.decide
                                                  (SignalPath + RiskGatekeeper) ─> router.submit

Same workload and latency definition as live_pipeline (10 strategies x 10 symbols, sma_cross, 1,000
bars/s offered; latency = (order accepted by the router - its signal bar published) + (fill booked by
the portfolio - the fill bar published)). What it leaves out, and the system has: persistence and the
audit journal (one SQL commit per batch on the gatekeeper and on the router, ~1-3 ms each here), the
kill switch and controls, actor restarts (a compiled graph must be torn down and rebuilt when one of
its actors dies). So it bounds from below what a compiled signal path would cost; it is not a result
for the system. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np  # noqa: E402
import ray  # noqa: E402
from ray.dag import InputNode, MultiOutputNode  # noqa: E402

SYMBOLS = [f"S{i}/USDT" for i in range(10)]
BarTuple = tuple[str, int, float, float, float, float, float]
Routed = tuple[list[Any], dict[str, float], list[str], int]  # fills, marks, orders done, bar time
Booked = tuple[Any, int, dict[Any, float], list[str]]  # account, as of, held per (strategy, symbol), done
COSTS = {"commission": {"model": "percent", "taker_bps": 10.0}, "slippage": {"model": "fixed", "bps": 2.0}}
CASH = 1_000_000.0


def instruments() -> dict[str, Any]:
    from mmats.model import default_instrument

    return {s: default_instrument(s, "crypto") for s in SYMBOLS}


@ray.remote
class CStrategy:
    """Hosts one or more strategies (``--strategy-actors`` below 10 groups them: fewer hops, less
    isolation)."""

    def __init__(self, specs: list[tuple[str, dict[str, Any]]]) -> None:
        from mmats.engine.strategy_host import StrategyHost
        from mmats.model import Environment, MarketType

        self.hosts = [StrategyHost(sid, "sma_cross", params, SYMBOLS, MarketType.CRYPTO, Environment.PAPER)
                      for sid, params in specs]

    def step(self, batch: list[BarTuple]) -> list[Any]:
        out: list[Any] = []
        for host in self.hosts:
            out += host.on_bars(batch)[0]
        return out


@ray.remote
class CRouter:
    def __init__(self) -> None:
        from mmats.execution.paper import PaperExecution
        from mmats.execution.simulated import ExecutionConfig
        from mmats.research.runconfig import CommissionSpec, SlippageSpec

        self.paper = PaperExecution(instruments(), Decimal(repr(CASH)), SlippageSpec(**COSTS["slippage"]).build(False),
                                    CommissionSpec(**COSTS["commission"]).build(), ExecutionConfig(None, False, True))
        self.accept_wall: dict[str, float] = {}
        self.created: dict[str, int] = {}
        self.watch: set[str] = set()

    def fill(self, batch: list[BarTuple]) -> Routed:
        from mmats.execution.paper import BarUpdate

        fills = []
        for b in batch:
            fills += self.paper.on_bar(BarUpdate(*b))
        done = [cid for cid in self.watch if self.paper.orders[cid].status.is_terminal]
        self.watch.difference_update(done)
        return fills, {b[0]: b[5] for b in batch}, done, batch[-1][1]

    def submit(self, submits: list[tuple[Any, list[Any]]]) -> int:
        now = time.time()
        for order, children in submits:
            if self.paper.submit(order, children, order.created_ns):
                self.accept_wall[order.client_order_id] = now
                self.created[order.client_order_id] = order.created_ns
                self.watch.add(order.client_order_id)
        return len(submits)

    def results(self) -> tuple[dict[str, float], dict[str, int]]:
        return self.accept_wall, self.created


@ray.remote
class CPortfolio:
    def __init__(self) -> None:
        from mmats.portfolio import Portfolio

        self.pf = Portfolio(Decimal(repr(CASH)), "USDT")
        self.insts = instruments()
        for inst in self.insts.values():
            self.pf.register(inst)
        self.held: dict[tuple[str, str], Decimal] = {}
        self.booked: list[tuple[str, int, float]] = []  # (client order id, fill bar ts, wall booked)

    def book(self, routed: Routed) -> Booked:
        fills, marks, done, ts = routed
        for f in fills:
            self.pf.apply_fill(f)
            key = (f.strategy_id, f.symbol)
            self.held[key] = self.held.get(key, Decimal(0)) + f.signed_quantity
            if self.pf.positions[f.symbol].quantity == 0:
                for k in [k for k in self.held if k[1] == f.symbol]:
                    del self.held[k]
        for sym, px in marks.items():
            self.pf.mark(sym, self.insts[sym].round_price(px))
        now = time.time()
        self.booked += [(f.client_order_id, f.ts_ns, now) for f in fills]
        return self.pf.snapshot(ts), ts, {k: float(v) for k, v in self.held.items() if v}, done

    def results(self) -> list[tuple[str, int, float]]:
        return self.booked


@ray.remote
class CGatekeeper:
    def __init__(self) -> None:
        from mmats.engine.signal_path import SignalPath
        from mmats.risk.gatekeeper import RiskGatekeeper, system_risk_config

        risk = RiskGatekeeper(system_risk_config(None), "PAPER", initial_equity=CASH, observe_equity=False)
        self.signal_path = SignalPath(risk, instruments(), {f"st{i}": 0.009 for i in range(10)}, advisory=False)

    def decide(self, account: Booked, *signal_lists: list[Any]) -> list[Any]:
        snap, ts, held, done = account
        out = self.signal_path.on_account(snap, ts, held, done)
        for signals in signal_lists:
            if signals:
                out.extend(self.signal_path.on_signals(signals))
        return out.submits


@ray.remote
class Noop:
    """The same graph's shape with no work: what Ray's compiled graph costs on its own here."""

    def step(self, _batch: Any) -> list[Any]:
        return []

    def join(self, *_inputs: Any) -> list[Any]:
        return []

    def pid(self) -> int:
        return os.getpid()


def floor(strategy_actors: int, rate: float, executions: int = 1500) -> dict[str, Any]:
    """The graph's floor: execute() p50/p99 with no-op methods at ``rate`` timestamps/s, and the CPU
    the graph's actors burn while waiting for input (their channel reads poll)."""
    import psutil

    strategies = [Noop.remote() for _ in range(strategy_actors)]  # type: ignore[attr-defined]
    router, portfolio, gk = (Noop.remote() for _ in range(3))  # type: ignore[attr-defined]
    actors = [*strategies, router, portfolio, gk]
    procs = [psutil.Process(p) for p in ray.get([a.pid.remote() for a in actors])]
    with InputNode() as bars:
        account = portfolio.step.bind(router.step.bind(bars))
        dag = MultiOutputNode([router.step.bind(gk.join.bind(account, *[s.step.bind(bars) for s in strategies]))])
    compiled = dag.experimental_compile()
    time.sleep(1.0)
    c0 = [sum(p.cpu_times()[:2]) for p in procs]
    time.sleep(3.0)
    idle = [(sum(p.cpu_times()[:2]) - c) / 3.0 for p, c in zip(procs, c0, strict=True)]
    batch = [(s, 1, 1.0, 1.0, 1.0, 1.0, 1.0) for s in SYMBOLS]
    ms: list[float] = []
    next_at = time.perf_counter()
    for _ in range(executions):
        now = time.perf_counter()
        if now < next_at:
            time.sleep(next_at - now)
        next_at += 1.0 / rate
        t0 = time.perf_counter()
        ray.get(compiled.execute(batch))
        ms.append((time.perf_counter() - t0) * 1000)
    compiled.teardown()
    ms = ms[200:]
    return {"floor_execute_p50_ms": round(float(np.percentile(ms, 50)), 2),
            "floor_execute_p99_ms": round(float(np.percentile(ms, 99)), 2),
            "idle_cpu_per_actor": round(float(np.mean(idle)), 3), "actors": len(actors)}


@ray.remote
class PlainHop:
    """One actor of the plain floor: no work, a one-way actor call to the next hop, wall time stamps.

    Strategy: ``on_bars`` forwards the tick to the gatekeeper when it is its turn to signal;
    gatekeeper: ``on_signals`` forwards to the router; router: ``apply_commands`` stamps the order
    accepted, ``on_bars`` forwards the fill bar to the portfolio; portfolio: ``on_fills`` stamps it
    booked. Five hops, as the system's tick-to-fill path: feed -> strategy -> gatekeeper -> router
    (decide), feed -> router -> portfolio (fill)."""

    def __init__(self) -> None:
        self.next: Any = None
        self.stamps: dict[int, float] = {}

    def wire(self, nxt: Any) -> None:
        self.next = nxt

    def on_bars(self, ts: int, signal: bool) -> None:  # a strategy, or the router's fill bar
        if signal:
            self.next.on_signals.remote(ts)

    def on_router_bars(self, ts: int) -> None:
        self.next.on_fills.remote(ts)

    def on_signals(self, ts: int) -> None:
        self.next.apply_commands.remote(ts)

    def apply_commands(self, ts: int) -> None:
        self.stamps[ts] = time.time()

    def on_fills(self, ts: int) -> None:
        self.stamps[ts] = time.time()

    def results(self) -> dict[int, float]:
        return self.stamps


def plain_floor(rate_bars: float, seconds: float, strategies: int = 10, symbols: int = 10,
                warmup_s: float = 1.0) -> dict[str, Any]:
    """The floor of the running system's shape with plain one-way actor calls and no work.

    The driver plays the feed: every timestamp (``symbols`` bars) goes to each strategy actor and to
    the router, one call each; one strategy per timestamp (in turn) signals. Tick-to-fill is measured
    as in ``bench/live_pipeline.py``: (order accepted - bar published) + (fill booked - fill bar
    published), here with the same timestamp as both bars (the market time between them is excluded
    by that definition anyway)."""
    strat = [PlainHop.remote() for _ in range(strategies)]  # type: ignore[attr-defined]
    gk, router, pf = (PlainHop.remote() for _ in range(3))  # type: ignore[attr-defined]
    ray.get([s.wire.remote(gk) for s in strat] + [gk.wire.remote(router), router.wire.remote(pf)])
    tick_s = symbols / rate_bars
    published: dict[int, float] = {}
    ticks = int((seconds + warmup_s) / tick_s)
    next_at = time.perf_counter()
    for ts in range(ticks):
        now = time.perf_counter()
        if now < next_at:
            time.sleep(next_at - now)
        next_at += tick_s
        published[ts] = time.time()
        for i, s in enumerate(strat):
            s.on_bars.remote(ts, i == ts % strategies)
        router.on_router_bars.remote(ts)
    time.sleep(1.0)
    accepted = ray.get(router.results.remote())
    booked = ray.get(pf.results.remote())
    first = int(warmup_s / tick_s)
    lat = [((accepted[t] - published[t]) + (booked[t] - published[t])) * 1000
           for t in range(first, ticks) if t in accepted and t in booked]
    for a in [*strat, gk, router, pf]:
        ray.kill(a)
    return {"floor_p50_ms": round(float(np.percentile(lat, 50)), 2) if lat else None,
            "floor_p99_ms": round(float(np.percentile(lat, 99)), 2) if lat else None,
            "floor_ticks": len(lat), "floor_lost": ticks - first - len(lat)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="measured replay length at --rate")
    ap.add_argument("--rate", type=float, default=1000.0, help="bars per second offered (10 per timestamp)")
    ap.add_argument("--strategy-actors", type=int, default=10,
                    help="actors hosting the 10 strategies (10: one each, as the system runs them)")
    ap.add_argument("--floor", action="store_true",
                    help="measure only the graph's own cost: no-op methods, same shape, plus idle CPU per actor")
    ap.add_argument("--plain", action="store_true",
                    help="with --floor: the same shape with plain one-way actor calls instead of a compiled graph")
    args = ap.parse_args()
    if args.floor and args.plain:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        out = plain_floor(args.rate, args.seconds, max(1, min(10, args.strategy_actors)))
        ray.shutdown()
        print(json.dumps({"floor": "plain actor calls (no work), 5 hops", **out, "bars_per_sec": args.rate}))
        return 0
    if args.floor:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        out = floor(max(1, min(10, args.strategy_actors)), args.rate / len(SYMBOLS))
        ray.shutdown()
        print(json.dumps({"prototype": "compiled graph floor (no work)", **out,
                          "strategy_actors": args.strategy_actors, "timestamps_per_sec": args.rate / len(SYMBOLS)}))
        return 0
    from mmats.data import generate_bars, to_arrays

    ticks = int(args.seconds * args.rate / len(SYMBOLS)) + 500
    arrays = {s: to_arrays(generate_bars(ticks, seed=i + 1)) for i, s in enumerate(SYMBOLS)}
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    specs = [(f"st{i}", {"fast": 10 + i, "slow": 30 + 2 * i}) for i in range(10)]
    n = max(1, min(10, args.strategy_actors))
    strategies = [CStrategy.remote(specs[g::n]) for g in range(n)]
    router, portfolio, gk = CRouter.remote(), CPortfolio.remote(), CGatekeeper.remote()
    ray.get([a.__ray_ready__.remote() for a in [*strategies, router, portfolio, gk]])
    with InputNode() as bars:
        account = portfolio.book.bind(router.fill.bind(bars))
        signals = [s.step.bind(bars) for s in strategies]
        dag = MultiOutputNode([router.submit.bind(gk.decide.bind(account, *signals))])
    compiled = dag.experimental_compile()
    published: dict[int, float] = {}
    interval = len(SYMBOLS) / args.rate
    exec_ms: list[float] = []
    t_start = time.perf_counter()
    next_at = time.perf_counter()
    for k in range(ticks):
        ts = int(arrays[SYMBOLS[0]].ts_ns[k])
        batch = [(s, ts, float(a.open[k]), float(a.high[k]), float(a.low[k]), float(a.close[k]),
                  float(a.volume[k])) for s, a in arrays.items()]
        now = time.perf_counter()
        if now < next_at:
            time.sleep(next_at - now)
        next_at += interval
        published[ts] = time.time()
        t0 = time.perf_counter()
        ray.get(compiled.execute(batch))
        exec_ms.append((time.perf_counter() - t0) * 1000)
    wall = time.perf_counter() - t_start
    compiled.teardown()
    accepted, created = ray.get(router.results.remote())
    booked = ray.get(portfolio.results.remote())
    lat = []
    warm = int(arrays[SYMBOLS[0]].ts_ns[400])  # indicators warm up (slow SMA up to 48 bars) and the run settles
    for cid, fill_ts, wall_booked in booked:
        if cid not in accepted or created[cid] < warm:
            continue
        lat.append((accepted[cid] - published[created[cid]]) + (wall_booked - published[fill_ts]))
    lat_ms = np.array(lat) * 1000
    ray.shutdown()
    print(json.dumps({
        "prototype": "compiled graph signal path, no persistence (see the docstring)",
        "p50_ms": round(float(np.percentile(lat_ms, 50)), 2) if len(lat_ms) else None,
        "p99_ms": round(float(np.percentile(lat_ms, 99)), 2) if len(lat_ms) else None,
        "fills_measured": len(lat_ms),
        "execute_p50_ms": round(float(np.percentile(exec_ms, 50)), 2),
        "execute_p99_ms": round(float(np.percentile(exec_ms, 99)), 2),
        "bars_per_sec_achieved": round(ticks * len(SYMBOLS) / wall, 1),
        "bars_per_sec_offered": args.rate,
        "strategy_actors": n,
        "targets": {"p50_ms": 5, "p99_ms": 15},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
