"""Live pipeline through the Ray actors: 10 strategies x 10 symbols, paper broker, persistence on.

Measures, in one run on a local Ray cluster:
- tick-to-fill latency (feed -> strategy -> gatekeeper -> router -> paper fill -> portfolio booked) at
  1,000 bars/s offered. A paper market order fills at the NEXT bar's open (backtest parity), so the wait
  for that bar is market time, not system time: latency = (order accepted by the router - signal bar
  published) + (fill booked by the portfolio - fill bar published);
- sustained throughput at `max` pace: bars/s with every bar processed by every subscribed strategy
  (nothing coalesced away) and the lag bounded;
- kill switch HARD -> all flat, repeated;
- resident memory of all Ray processes.
Last line: one JSON object with p50_ms, p99_ms, sustained_bars_per_sec, kill_hard_p99_ms, rss_mb.
"""

from __future__ import annotations

import argparse
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

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import ray  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from actors.supervisor import SupervisorActor  # noqa: E402

SYMBOLS = [f"S{i}/USDT" for i in range(10)]


SEND_INTERVAL_MS: float | None = None  # --send-interval-ms: the feed's rate cap (None: the system default)
STORAGE: dict[str, Any] = {}  # --no-persist / --database-url: what the system writes to (default: SQLite in home)


def config(pace: str, speed: float, bars: int, home: str) -> dict[str, Any]:
    name = f"bench{uuid.uuid4().hex[:8]}"
    feed_extra = {} if SEND_INTERVAL_MS is None else {"min_send_interval_ms": SEND_INTERVAL_MS}
    return {
        "environment": "PAPER", "mode": "operator", "allow_operator": True, "initial_cash": 1_000_000.0,
        "system_name": name, "home": home, **STORAGE,
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
        ray.kill(a)


def ray_rss_mb() -> float:
    """RSS of this cluster only: the processes started under this driver's Ray session directory."""
    session = ray.get_runtime_context().gcs_address  # unique per cluster, on every process's command line
    port = session.rsplit(":", 1)[-1]
    total = 0
    for p in psutil.process_iter(["cmdline", "memory_info"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if port in cmd or p.pid == os.getpid():
                total += p.info["memory_info"].rss
        except (psutil.Error, TypeError):
            continue
    return total / 2**20


def latency_phase(seconds: float, home: str) -> tuple[list[float], float, list[float], dict[str, float]]:
    # 1,000 bars/s offered = 100 timestamps/s x 10 symbols; 1m bars -> speed 6,000 x real time.
    # Enough bars for the measured window AND the 20 kill runs after it (up to 10 s each): a replay that
    # ended would leave the kill loop timing no-op kills on a flat book.
    cfg = config("speed", 6_000.0, int((seconds + 240) * 100), home)
    sup, h = start(cfg)
    feed = h["feeds"]["replay"]
    time.sleep(seconds)
    rss = ray_rss_mb()
    kills: list[float] = []
    kill_parts: dict[str, list[float]] = {"call": [], "router_flatten": [], "gatekeeper_lock_wait": [],
                                          "transition": [], "router_call": []}
    skipped_kills = 0
    for _ in range(20):  # kill switch HARD -> flat, repeatedly, while bars keep coming
        deadline = time.time() + 10
        while time.time() < deadline and not ray.get(h["portfolio"].status.remote())["positions"]:
            time.sleep(0.01)
        if not ray.get(h["portfolio"].status.remote())["positions"]:
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
    booked = ray.get(h["portfolio"].booked_times.remote())
    orders = {o["client_order_id"]: o for o in ray.get(h["router"].orders.remote())}
    stop(sup, h)
    lat: list[float] = []
    parts: dict[str, list[float]] = {"decide": [], "fill": []}
    for fill_id, wall in booked.items():
        cid, _, fill_ts = fill_id.rpartition("@")
        order = orders.get(cid)
        if order is None or cid not in accepted or order["strategy_id"].startswith("kill"):
            continue
        from datetime import datetime

        from mmats.model import datetime_to_ns

        signal_ts = datetime_to_ns(datetime.fromisoformat(order["created"].replace("Z", "+00:00")))
        if signal_ts not in published or int(fill_ts) not in published:
            continue
        decide = accepted[cid] - published[signal_ts]
        fill = wall - published[int(fill_ts)]
        lat.append((decide + fill) * 1000)
        parts["decide"].append(decide * 1000)
        parts["fill"].append(fill * 1000)
    if skipped_kills:
        print(f"kill runs skipped (no open position within 10 s): {skipped_kills}", file=sys.stderr)
    parts.update({f"kill_{k}": v for k, v in kill_parts.items()})
    split = {f"{k}_p{q}_ms": round(float(np.percentile(v, q)), 2) for k, v in parts.items() if v for q in (50, 99)}
    return lat, rss, kills, split


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


def throughput_phase(seconds: float, home: str) -> dict[str, Any]:
    cfg = config("max", 1.0, 60_000, home)
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
    ap.add_argument("--send-interval-ms", type=float, default=None,
                    help="the feed's min_send_interval_ms (default: the system's default)")
    ap.add_argument("--no-persist", action="store_true", help="run without storage (what persistence costs)")
    ap.add_argument("--database-url", default=None, help="e.g. postgresql://127.0.0.1:5432/test (default: SQLite)")
    args = ap.parse_args()
    global SEND_INTERVAL_MS
    SEND_INTERVAL_MS = args.send_interval_ms
    if args.no_persist:
        STORAGE["persist"] = False
    fresh_db = None
    if args.database_url:  # a fresh database per run: a system restores whatever its database holds
        fresh_db = f"mmats_bench_{uuid.uuid4().hex[:8]}"
        _admin(args.database_url, f"CREATE DATABASE {fresh_db}")
        STORAGE["database_url"] = make_url(args.database_url).set(database=fresh_db).render_as_string(False)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    home = tempfile.mkdtemp(prefix="mmats-bench-")
    try:
        lat, rss, kills, split = latency_phase(args.seconds, home + "/lat")
        tp = throughput_phase(args.seconds, home + "/tp")
        calib = calibration()
    finally:
        ray.shutdown()
        if fresh_db:
            _admin(args.database_url, f"DROP DATABASE IF EXISTS {fresh_db} WITH (FORCE)")
    out = {
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat else None,
        "fills_measured": len(lat),
        # decide: signal bar published -> order accepted; fill: fill bar -> booked; kill_call: the HARD
        # request answered (router flattened), made of the gatekeeper's lock wait, the journaled
        # transition and the router call (kill_router_flatten: the router's own work inside it).
        "latency_split": split,
        "storage": STORAGE or "sqlite",
        "sustained_bars_per_sec": round(tp["bars_per_sec"]),
        "throughput_skipped_bars": tp["skipped"],
        "throughput_max_lag_bars": tp["max_lag_bars"],
        "bars_per_message": tp["bars_per_message"],
        "kill_hard_p50_ms": round(float(np.percentile(kills, 50)), 1) if kills else None,
        "kill_hard_p99_ms": round(float(np.percentile(kills, 99)), 1) if kills else None,
        "kill_runs": len(kills),
        "cpu_calibration": calib,
        "rss_mb": round(rss),
        "min_send_interval_ms": SEND_INTERVAL_MS,
        "targets": {"p50_ms": 5, "p99_ms": 15, "sustained_bars_per_sec": 2000, "kill_hard_p99_ms": 200},
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
