"""Live pipeline through the Ray actors: 10 strategies x 10 symbols, paper broker, persistence on.

Measures, in one run on one local Ray cluster:
- tick-to-fill latency (feed -> strategy -> gatekeeper -> router -> paper fill -> portfolio booked) at
  1,000 bars/s offered (``p50_ms``, ``p99_ms``) and at 100 bars/s (``light_p50_ms``, ``light_p99_ms``).
  A paper market order fills at the NEXT bar's open (backtest parity), so the wait for that bar is
  market time, not system time: latency = (order accepted by the router - signal bar published) +
  (fill booked by the portfolio - fill bar published). ``hops`` splits it with the actors' own time
  stamps: feed -> gatekeeper (the strategy and two messages), the gatekeeper's decision (waiting for
  its lock, sizing, risk, journal), gatekeeper -> router accepted, feed -> router (the fill bar), router
  -> portfolio booked;
- the floor: the same shape (a feed, 10 strategy actors, gatekeeper, router, portfolio) with no-op
  methods and plain one-way actor calls, 5 hops (``bench/compiled_signal_path.py --floor --plain``),
  at 1,000 bars/s, measured the same way (``floor_p50_ms``, ``floor_p99_ms``, ``p99_over_floor``), and
  at 100 bars/s (``light_floor_p50_ms``, ``light_floor_p99_ms``);
- the CPU each kind of process used in each phase (``cores_used``, ``light_cores_used``: 1.0 is one
  core busy all the time; the machine has 2);
- sustained throughput at ``max`` pace: bars/s with every bar processed by every subscribed strategy
  (nothing coalesced away) and the lag bounded;
- kill switch HARD -> all flat, repeated (20 runs; 5 with ``--quick``);
- resident memory of all Ray processes;
- ``pool``: the same figures with ``strategies_per_actor: 5`` (two actors host the ten strategies).
Last line: one JSON object with those keys at the top level.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_worker_niceness", "0")  # as `mmats up` runs the actors (mmats_cli.runtime)

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import ray  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from actors.supervisor import SupervisorActor  # noqa: E402
from bench.compiled_signal_path import plain_floor  # noqa: E402

SYMBOLS = [f"S{i}/USDT" for i in range(10)]
HEAVY_SPEED = 6_000.0  # 1m bars at 6,000 x real time: 100 timestamps/s x 10 symbols = 1,000 bars/s
LIGHT_SPEED = 600.0  # 100 bars/s


SEND_INTERVAL_MS: float | None = None  # --send-interval-ms: the feed's rate cap (None: the system default)
STORAGE: dict[str, Any] = {}  # --no-persist / --database-url: what the system writes to (default: SQLite in home)


def config(pace: str, speed: float, bars: int, home: str, per_actor: int = 1) -> dict[str, Any]:
    name = f"bench{uuid.uuid4().hex[:8]}"
    feed_extra = {} if SEND_INTERVAL_MS is None else {"min_send_interval_ms": SEND_INTERVAL_MS}
    pool = {} if per_actor == 1 else {"strategies_per_actor": per_actor}
    return {
        "environment": "PAPER", "mode": "operator", "allow_operator": True, "initial_cash": 1_000_000.0,
        "system_name": name, "home": home, **STORAGE, **pool,
        "feeds": [{"venue": "replay", "market": "crypto", "generated_symbols": SYMBOLS, "generated_bars": bars,
                   "pace": pace, "speed": speed, **feed_extra}],
        "costs": {"commission": {"model": "percent", "taker_bps": 10.0}, "slippage": {"model": "fixed", "bps": 2.0}},
        "strategies": [{"id": f"st{i}", "ref": "sma_cross", "symbols": SYMBOLS,
                        "params": {"fast": 10 + i, "slow": 30 + 2 * i}, "allocation": 0.009} for i in range(10)],
    }


def start(cfg: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    sup = SupervisorActor.options(name=f"{cfg['system_name']}_supervisor").remote(cfg)
    ray.get(sup.build.remote())
    ray.get(sup.start.remote())
    return sup, ray.get(sup.handles.remote())


def stop(sup: Any, h: dict[str, Any]) -> None:
    ray.get(sup.down.remote())
    for a in [h["gatekeeper"], h["router"], h["portfolio"], *h["feeds"].values(), *h["strategies"].values(), sup]:
        with contextlib.suppress(Exception):  # a pool hosts several strategies: killed once already
            ray.kill(a)


def ray_rss_mb() -> float:
    """RSS of this cluster only: this driver and every process it started (GCS, raylet and the raylet's
    workers). A worker's command line is its title (``ray::StrategyActor``) with no trace of the
    cluster's address, so the cluster is found by process ancestry, not by command line."""
    total = 0
    me = psutil.Process()
    for p in [me, *me.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def process_kind(p: psutil.Process) -> str:
    """A Ray worker by its actor class (its title ``ray::StrategyActor.on_bars``), ``IDLE`` for a pooled
    worker with no actor, any other process by its name. Raises psutil.Error for a process gone."""
    title = (p.cmdline() or [p.name()])[0]
    return title.removeprefix("ray::").split(".", 1)[0] if title.startswith("ray::") else p.name()


def ray_worker_rss_mb() -> dict[str, dict[str, float]]:
    """RSS of the raylet's worker processes by title (``StrategyActor``, ``FeedActor``, ``IDLE`` for a
    pooled worker with no actor) and how many processes each: what one actor of a kind costs."""
    out: dict[str, float] = {}
    counts: dict[str, int] = {}
    for raylet in psutil.Process().children(recursive=True):
        try:
            if raylet.name() != "raylet":
                continue
            workers = raylet.children(recursive=True)
        except psutil.Error:
            continue
        for w in workers:
            try:
                kind, rss = process_kind(w), w.memory_info().rss
            except psutil.Error:
                continue
            out[kind] = out.get(kind, 0.0) + rss / 2**20
            counts[kind] = counts.get(kind, 0) + 1
    return {k: {"rss_mb": round(out[k], 1), "processes": counts[k]} for k in sorted(out)}


def worker_cpu_s() -> dict[int, tuple[str, float]]:
    """CPU seconds so far of each of this cluster's processes (pid -> kind, seconds): the raylet's
    workers by actor class, and the raylet, GCS and this driver by name."""
    out: dict[int, tuple[str, float]] = {}
    for p in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            kind, cpu = process_kind(p), p.cpu_times()
        except psutil.Error:
            continue
        out[p.pid] = (kind, cpu.user + cpu.system)
    return out


def cpu_share(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
              seconds: float) -> dict[str, float]:
    """Cores used per kind of process over a window (1.0 = one core busy all the time), busiest first:
    on a 2-core machine the sum says how close the system is to running out of CPU."""
    used: dict[str, float] = {}
    for pid, (kind, cpu) in after.items():
        used[kind] = used.get(kind, 0.0) + cpu - before.get(pid, (kind, 0.0))[1]
    return {k: round(v / seconds, 3) for k, v in sorted(used.items(), key=lambda kv: -kv[1]) if v / seconds >= 0.005}


def signal_to_order_s(order: dict[str, Any], accepted: dict[str, float], published: dict[int, float]) -> float | None:
    """Wall seconds from the feed publishing the bar an order was decided on to the router accepting the
    order (feed -> strategy -> gatekeeper -> router); None when either time is not on record."""
    cid = order["client_order_id"]
    signal_ts = created_ns(order)
    if cid not in accepted or signal_ts not in published:
        return None
    return accepted[cid] - published[signal_ts]


def _pct(values: list[float], q: float, digits: int = 2) -> float | None:
    return round(float(np.percentile(values, q)), digits) if values else None


def latency_phase(speed: float, seconds: float, home: str, kill_runs: int, per_actor: int) -> dict[str, Any]:
    """One system at ``speed`` (x real time for 1m bars, 10 symbols): tick-to-fill over the run, its split
    by hop, then ``kill_runs`` HARD kills while bars keep coming, and the memory of the cluster."""
    ticks_per_s = speed / 60.0
    # Enough bars for the measured window AND the kill runs after it (up to 10 s each): a replay that
    # ended would leave the kill loop timing no-op kills on a flat book.
    cfg = config("speed", speed, max(200, int((seconds + 12 * kill_runs + 30) * ticks_per_s)), home, per_actor)
    sup, h = start(cfg)
    started = time.perf_counter()
    feed = h["feeds"]["replay"]
    cpu0, w0 = worker_cpu_s(), time.perf_counter()
    time.sleep(seconds)
    cores = cpu_share(cpu0, worker_cpu_s(), time.perf_counter() - w0)
    rss = ray_rss_mb()
    kills: list[float] = []
    kill_parts: dict[str, list[float]] = {"call": [], "router_flatten": [], "gatekeeper_lock_wait": [],
                                          "transition": [], "router_call": []}
    skipped_kills = 0
    for _ in range(kill_runs):  # kill switch HARD -> flat, repeatedly, while bars keep coming
        deadline = time.time() + 10
        while time.time() < deadline and not ray.get(h["portfolio"].account.remote()).positions:
            time.sleep(0.01)
        if not ray.get(h["portfolio"].account.remote()).positions:
            skipped_kills += 1  # nothing to flatten: not a measurement
            continue
        t0 = time.perf_counter()
        answer = ray.get(sup.kill.remote("HARD", "bench"))
        kill_parts["call"].append((time.perf_counter() - t0) * 1000)
        kill_parts["router_flatten"].append(answer["flatten"]["ms"])
        kill_parts["gatekeeper_lock_wait"].append(answer["ms"]["lock_wait"])
        kill_parts["transition"].append(answer["ms"]["transition"])
        kill_parts["router_call"].append(answer["ms"]["router"])
        # A light read while waiting (the full status would compete with the booking it waits for).
        while ray.get(h["portfolio"].account.remote()).positions and time.perf_counter() - t0 < 5:
            time.sleep(0.001)
        kills.append((time.perf_counter() - t0) * 1000)
        ray.get(sup.kill.remote("RUNNING", "bench reset"))
    published = ray.get(feed.publish_times.remote())
    accepted = ray.get(h["router"].accept_times.remote())
    bar_wall = ray.get(h["router"].bar_times.remote())
    hop = ray.get(h["gatekeeper"].hop_times.remote())
    elapsed = time.perf_counter() - started
    booked = ray.get(h["portfolio"].booked_times.remote())
    orders = {o["client_order_id"]: o for o in ray.get(h["router"].orders.remote())}
    feed_stats = ray.get(feed.stats.remote())
    stop(sup, h)
    lat: list[float] = []
    parts: dict[str, list[float]] = {"decide": [], "fill": []}
    hops: dict[str, list[float]] = {"feed_to_gatekeeper": [], "gatekeeper_decides": [], "gatekeeper_to_router": [],
                                    "feed_to_router": [], "router_to_portfolio": []}
    for fill_id, wall in booked.items():
        cid, _, fill_ts = fill_id.rpartition("@")
        order = orders.get(cid)
        if order is None or order["strategy_id"].startswith("kill"):
            continue
        decide = signal_to_order_s(order, accepted, published)
        if decide is None or int(fill_ts) not in published:
            continue
        fill = wall - published[int(fill_ts)]
        lat.append((decide + fill) * 1000)
        parts["decide"].append(decide * 1000)
        parts["fill"].append(fill * 1000)
        signal_ts = created_ns(order)
        arrived = hop["signal_arrived"].get((order["strategy_id"], signal_ts))
        decided = hop["decided"].get(cid)
        routed = bar_wall.get(int(fill_ts))
        if arrived is not None and decided is not None and routed is not None:
            hops["feed_to_gatekeeper"].append((arrived - published[signal_ts]) * 1000)
            hops["gatekeeper_decides"].append((decided - arrived) * 1000)
            hops["gatekeeper_to_router"].append((accepted[cid] - decided) * 1000)
            hops["feed_to_router"].append((routed - published[int(fill_ts)]) * 1000)
            hops["router_to_portfolio"].append((wall - routed) * 1000)
    if skipped_kills:
        print(f"kill runs skipped (no open position within 10 s): {skipped_kills}", file=sys.stderr)
    parts.update({f"kill_{k}": v for k, v in kill_parts.items()})
    split = {f"{k}_p{q}_ms": _pct(v, q) for k, v in parts.items() if v for q in (50, 99)}
    subs = feed_stats["subscribers"]
    return {
        "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99), "fills_measured": len(lat),
        "hops": {k: {"p50_ms": _pct(v, 50), "p99_ms": _pct(v, 99)} for k, v in hops.items()},
        "latency_split": split,
        "kill_hard_p50_ms": _pct(kills, 50, 1), "kill_hard_p99_ms": _pct(kills, 99, 1), "kill_runs": len(kills),
        "rss_mb": round(rss),
        "cores_used": cores,
        "feed_bars_per_message": {k: v["bars_per_message"] for k, v in sorted(subs.items())},
        "skipped_bars": sum(v["skipped"] for v in subs.values()),
        # The gatekeeper's message thread: time per kind of message, and the share of the run it was busy.
        "gatekeeper_busy": hop["busy"],
        "gatekeeper_utilisation": round(sum(v["seconds"] for k, v in hop["busy"].items() if k != "journal")
                                        / elapsed, 3),
    }


def created_ns(order: dict[str, Any]) -> int:
    """The time (ns) of the bar an order was decided on, from its ``created`` field."""
    from datetime import datetime

    from mmats.model import datetime_to_ns

    return int(datetime_to_ns(datetime.fromisoformat(order["created"].replace("Z", "+00:00"))))


def calibration() -> dict[str, float]:
    """This machine's speed today, so figures compare across runs as ratios: a pure-Python loop and a
    1,000-call Ray actor round trip, both measured in this run."""
    t0 = time.perf_counter()
    x = 0
    for i in range(5_000_000):
        x += i
    loop_s = time.perf_counter() - t0

    @ray.remote
    class Echo:
        def ping(self) -> int:
            return 1

        def pid(self) -> int:
            return os.getpid()

    echo = Echo.remote()  # type: ignore[attr-defined]
    proc = psutil.Process(ray.get(echo.pid.remote()))
    t0 = time.perf_counter()
    for _ in range(1000):
        ray.get(echo.ping.remote())
    call_ms = (time.perf_counter() - t0)
    # What one message costs the receiver at 100 messages/s (a strategy's rate): the floor the design counts.
    c0 = sum(proc.cpu_times()[:2])
    for _ in range(200):
        ray.get(echo.ping.remote())
        time.sleep(0.01)
    receiver_ms = (sum(proc.cpu_times()[:2]) - c0) / 200 * 1000
    ray.kill(echo)
    return {"python_loop_5m_s": round(loop_s, 3), "ray_call_ms": round(call_ms, 3),
            "receiver_cpu_ms_per_call_at_100_per_s": round(receiver_ms, 3)}


def throughput_phase(seconds: float, home: str, per_actor: int) -> dict[str, Any]:
    cfg = config("max", 1.0, 60_000, home, per_actor)
    sup, h = start(cfg)
    feed = h["feeds"]["replay"]
    time.sleep(3.0)  # warm-up
    s0 = ray.get(feed.stats.remote())
    t0 = time.perf_counter()
    time.sleep(seconds)
    s1 = ray.get(feed.stats.remote())
    elapsed = time.perf_counter() - t0
    lags = [x["lag_bars"] for x in s1["subscribers"].values()]
    skipped = sum(x["skipped"] for x in s1["subscribers"].values())
    per_msg = np.mean([x["bars_per_message"] for k, x in s1["subscribers"].items() if k != "router"])
    stop(sup, h)
    return {"bars_per_sec": (s1["published"] - s0["published"]) / elapsed, "max_lag_bars": max(lags),
            "skipped": skipped, "bars_per_message": round(float(per_msg), 1)}


def system_figures(seconds: float, home: str, kill_runs: int, per_actor: int, floor: dict[str, Any]) -> dict[str, Any]:
    """Every figure of one system shape (``per_actor`` strategies per actor process)."""
    heavy = latency_phase(HEAVY_SPEED, seconds, f"{home}/heavy", kill_runs, per_actor)
    # 100 bars/s reaches the slowest SMA's warm-up (48 bars) after about 5 s: measured beyond it
    light = latency_phase(LIGHT_SPEED, seconds + 5.0, f"{home}/light", 0, per_actor)
    tp = throughput_phase(seconds, f"{home}/tp", per_actor)
    p99, fp99 = heavy["p99_ms"], floor.get("floor_p99_ms")
    return {
        "p50_ms": heavy["p50_ms"], "p99_ms": p99,
        "floor_p50_ms": floor.get("floor_p50_ms"), "floor_p99_ms": fp99,
        "p99_over_floor": round(p99 / fp99, 2) if p99 is not None and fp99 else None,
        "p50_over_floor": (round(heavy["p50_ms"] / floor["floor_p50_ms"], 2)
                           if heavy["p50_ms"] is not None and floor.get("floor_p50_ms") else None),
        "light_p50_ms": light["p50_ms"], "light_p99_ms": light["p99_ms"],
        "light_floor_p50_ms": floor.get("light_floor_p50_ms"), "light_floor_p99_ms": floor.get("light_floor_p99_ms"),
        "sustained_bars_per_sec": round(tp["bars_per_sec"]),
        "kill_hard_p99_ms": heavy["kill_hard_p99_ms"], "kill_hard_p50_ms": heavy["kill_hard_p50_ms"],
        "kill_runs": heavy["kill_runs"],
        "rss_mb": heavy["rss_mb"],
        "fills_measured": heavy["fills_measured"], "light_fills_measured": light["fills_measured"],
        "hops": heavy["hops"], "light_hops": light["hops"],
        "latency_split": heavy["latency_split"],
        "cores_used": heavy["cores_used"], "light_cores_used": light["cores_used"],
        "feed_bars_per_message": heavy["feed_bars_per_message"],
        "light_feed_bars_per_message": light["feed_bars_per_message"],
        "skipped_bars": heavy["skipped_bars"] + light["skipped_bars"],
        "throughput_skipped_bars": tp["skipped"], "throughput_max_lag_bars": tp["max_lag_bars"],
        "throughput_bars_per_message": tp["bars_per_message"],
        "gatekeeper_busy": heavy["gatekeeper_busy"], "gatekeeper_utilisation": heavy["gatekeeper_utilisation"],
        "light_gatekeeper_utilisation": light["gatekeeper_utilisation"],
    }


def pools_accepted() -> str | None:
    """None when the config takes ``strategies_per_actor``, else why not."""
    from mmats.system_config import SystemConfig

    try:
        SystemConfig.model_validate(config("speed", 1.0, 200, tempfile.gettempdir(), 5))
    except Exception as exc:
        return f"strategies_per_actor not accepted by the config: {exc}"[:300]
    return None


def _admin(url: str, statement: str) -> None:
    import sqlalchemy

    from adapters.sql_engine import normalise_url

    engine = sqlalchemy.create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.exec_driver_sql(statement)
    engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each measured phase")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 5 s phases, 5 kill runs")
    ap.add_argument("--no-pool", action="store_true", help="skip the strategies_per_actor: 5 system")
    ap.add_argument("--send-interval-ms", type=float, default=None,
                    help="the feed's min_send_interval_ms rate cap (default: the system's default, none)")
    ap.add_argument("--no-persist", action="store_true", help="run without storage (what persistence costs)")
    ap.add_argument("--database-url", default=None, help="e.g. postgresql://127.0.0.1:5432/test (default: SQLite)")
    args = ap.parse_args()
    seconds = 5.0 if args.quick else args.seconds
    kill_runs = 5 if args.quick else 20
    global SEND_INTERVAL_MS
    SEND_INTERVAL_MS = args.send_interval_ms
    if args.no_persist:
        STORAGE["persist"] = False
    fresh_db = None
    if args.database_url:  # a fresh database per run: a system restores whatever its database holds
        fresh_db = f"mmats_bench_{uuid.uuid4().hex[:8]}"
        _admin(args.database_url, f"CREATE DATABASE {fresh_db}")
        STORAGE["database_url"] = make_url(args.database_url).set(database=fresh_db).render_as_string(False)
    pool_note = "skipped (--no-pool)" if args.no_pool else pools_accepted()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    home = tempfile.mkdtemp(prefix="mmats-bench-")
    try:
        floor = plain_floor(1_000.0, seconds)
        # the same floor at the light rate: what the 100 bars/s target leaves for the system's own work
        light_floor = plain_floor(100.0, seconds + 5.0)
        floor.update({"light_floor_p50_ms": light_floor["floor_p50_ms"],
                      "light_floor_p99_ms": light_floor["floor_p99_ms"]})
        main_figures = system_figures(seconds, home + "/one", kill_runs, 1, floor)
        pool = None if pool_note else system_figures(seconds, home + "/pool", kill_runs, 5, floor)
        calib = calibration()
    finally:
        ray.shutdown()
        if fresh_db:
            _admin(args.database_url, f"DROP DATABASE IF EXISTS {fresh_db} WITH (FORCE)")
    out = {
        **main_figures,
        "pool": pool,
        "pool_note": pool_note,
        "floor": floor,
        "storage": STORAGE or "sqlite",
        "cpu_calibration": calib,
        "min_send_interval_ms": SEND_INTERVAL_MS,
        "quick": bool(args.quick),
        "targets": {"p99_over_floor": 3, "p50_over_floor": 2, "light_p99_ms": 25, "sustained_bars_per_sec": 10_000,
                    "kill_hard_p99_ms": 100},
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
