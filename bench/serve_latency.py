"""Control-plane latency over HTTP, printed as JSON.

1. ``GET /api/v1/status`` p50/p99 while the system replays about 1,000 bars/s (target p99 < 50 ms), twice:
   as served (``status``: from the stream poller's snapshot while it is under 1 s old and nothing was
   changed through the API since, else read live; ``served_from_snapshot`` counts the cached answers),
   then with ``?fresh=true`` (``status_fresh``: every actor asked on every request).
2. ``POST /api/v1/kill-switch HARD`` -> every position flat (seen through ``GET /api/v1/positions``),
   end to end over HTTP, 20 runs (target p99 < 500 ms). Between runs the switch is reset and the
   benchmark waits for the strategies to open a position again.

Run: ``.venv/bin/python bench/serve_latency.py [--runs 20] [--status-requests 400] [--bars-per-s 1000]``.
It starts its own local Ray cluster, an MMATS system on generated bars and the Serve app.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--status-requests", type=int, default=400)
    ap.add_argument("--bars-per-s", type=float, default=1000.0)
    ap.add_argument("--bars", type=int, default=400_000, help="generated bars (enough for the whole run)")
    ap.add_argument("--no-persist", action="store_true", help="run the system without storage and audit journal")
    ap.add_argument("--budget-s", type=float, default=240.0, help="wall-clock budget for the whole measurement")
    args = ap.parse_args()

    import httpx
    import ray
    from ray import serve

    import serve_app
    from actors.supervisor import SupervisorActor

    ray.init(num_cpus=2, include_dashboard=False, namespace="bench", logging_level="ERROR", log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port},
                logging_config={"log_level": "WARNING", "enable_access_log": False})
    name = f"bench{secrets.token_hex(3)}"
    symbol = "SYNTH/USDT"
    cfg: dict[str, Any] = {
        "environment": "PAPER", "mode": "operator", "allow_operator": True, "system_name": name,
        "home": tempfile.mkdtemp(prefix="mmats-bench-"), "persist": not args.no_persist,
        "feeds": [{"venue": "replay", "market": "crypto", "generated_symbols": [symbol], "generated_bars": args.bars,
                   "pace": "speed", "speed": 60 * args.bars_per_s}],
        # no costs: at 1,000 bars/s a fast crossover trades hundreds of times a second and fees would
        # bleed the account to nothing within a minute (then no position ever opens)
        "costs": {"commission": {"model": "percent", "taker_bps": 0.0}, "slippage": {"model": "fixed", "bps": 0.0}},
        # one strategy on the symbol: positions are netted per symbol, and a single trend follower keeps one
        # open about half of the time, which is what the kill-switch runs need
        "strategies": [{"id": "trend", "ref": "sma_cross", "symbols": [symbol], "params": {"fast": 3, "slow": 10},
                        "allocation": 0.5}],
    }
    sup = SupervisorActor.options(name=f"{name}_supervisor").remote(cfg)
    ray.get(sup.build.remote())
    token = secrets.token_urlsafe(24)
    serve.run(serve_app.make_app(f"{name}_supervisor", "bench", serve_app.token_digest(token), auth_all=False),
              name="mmats", route_prefix="/", logging_config={"log_level": "WARNING", "enable_access_log": False})
    ray.get(sup.start.remote())
    base = f"http://127.0.0.1:{port}/api/v1"
    client = httpx.Client(timeout=15)
    budget_end = time.time() + args.budget_s
    auth = {"Authorization": f"Bearer {token}"}

    def status() -> dict[str, Any]:
        try:
            r = client.get(f"{base}/status")
        except httpx.TimeoutException:
            return {}
        return dict(r.json()) if r.status_code == 200 else {}

    def positions() -> int:
        """Open positions, or -1 when the system did not answer (an overloaded actor)."""
        try:
            r = client.get(f"{base}/positions")
        except httpx.TimeoutException:
            return -1
        return int(r.json()["total"]) if r.status_code == 200 else -1

    deadline = time.time() + 60
    while time.time() < deadline and client.get(f"{base}/ready").status_code != 200:
        time.sleep(0.5)
    for _ in range(20):  # warm up the replica and its handles
        status()

    def measure(fresh: bool, until: float) -> dict[str, Any]:
        """``status_requests`` reads of /status, as served or with fresh=true, and what they saw."""
        st0 = status()
        t0 = time.perf_counter()
        lat: list[float] = []
        degraded = failed = cached = 0
        for _ in range(args.status_requests):
            if time.time() > until:
                break
            a = time.perf_counter()
            try:
                r = client.get(f"{base}/status", params={"fresh": "true"} if fresh else None)
            except httpx.TimeoutException:
                lat.append((time.perf_counter() - a) * 1000)
                failed += 1
                continue
            lat.append((time.perf_counter() - a) * 1000)
            if r.status_code != 200:
                failed += 1
                continue
            body = r.json()
            degraded += bool(body.get("warnings"))
            cached += body.get("snapshot_age_s", 0) > 0
        elapsed = time.perf_counter() - t0
        st1 = status()
        published = [x.get("feeds", [{}])[0].get("published") for x in (st0, st1)]
        bars_per_s = (published[1] - published[0]) / elapsed if None not in published else float("nan")
        return {"read": "live from every actor (fresh=true)" if fresh else
                "poller snapshot when under 1 s old and unchanged, else live",
                "requests": len(lat), "served_from_snapshot": cached, "p50_ms": round(pct(lat, 50), 2),
                "p99_ms": round(pct(lat, 99), 2), "mean_ms": round(statistics.mean(lat), 2), "target_p99_ms": 50,
                "failed": failed, "answered_from_cache_gatekeeper_busy": degraded,
                "bars_per_s_during": round(bars_per_s, 1), "meets_target": pct(lat, 99) < 50}

    # 1. status latency under load: as served (snapshot when fresh enough), then always live
    served = measure(False, budget_end - args.budget_s * 3 / 4)
    fresh = measure(True, budget_end - args.budget_s / 2)

    # 2. kill HARD -> flat, end to end over HTTP
    kill_ms: list[float] = []
    api_ms: list[float] = []
    skipped = 0
    for _ in range(args.runs):
        if time.time() > budget_end:
            break
        wait_until = min(budget_end, time.time() + 30)
        while time.time() < wait_until and positions() <= 0:
            time.sleep(0.02)
        if positions() <= 0:
            skipped += 1
            continue
        a = time.perf_counter()
        r = client.post(f"{base}/kill-switch", json={"state": "HARD", "reason": "bench"}, headers=auth, timeout=120)
        assert r.status_code == 200, r.text
        api_ms.append(float(r.json()["elapsed_ms"]))
        while positions() != 0:
            if time.perf_counter() - a > 30:
                raise SystemExit("not flat 30 s after HARD")
        kill_ms.append((time.perf_counter() - a) * 1000)
        r = client.post(f"{base}/kill-switch", json={"state": "RUNNING", "reason": "bench reset"}, headers=auth,
                        timeout=120)
        assert r.status_code == 200, r.text

    out = {
        "benchmark": "serve_latency",
        "status": served,
        "status_fresh": fresh,
        "kill_hard_to_flat": {"runs": len(kill_ms), "runs_asked": args.runs, "skipped_no_position": skipped,
                              "p50_ms": round(pct(kill_ms, 50), 1) if kill_ms else None,
                              "p99_ms": round(pct(kill_ms, 99), 1) if kill_ms else None,
                              "max_ms": round(max(kill_ms), 1) if kill_ms else None,
                              "server_side_p50_ms": round(pct(api_ms, 50), 1) if api_ms else None,
                              "target_p99_ms": 500, "meets_target": bool(kill_ms) and pct(kill_ms, 99) < 500},
        "persist": not args.no_persist,
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
    }
    print(json.dumps(out))  # one JSON object on the last line, like every bench
    client.close()
    serve.shutdown()
    ray.get(sup.down.remote())
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
