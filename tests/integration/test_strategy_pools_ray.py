"""Strategy pools (``strategies_per_actor``) on a real Ray cluster: same orders as one actor per strategy,
isolation of a raising member, and a killed pool restarted with its strategies and positions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import ray

from tests.integration.test_runtime_ray import FIXTURES, SYMBOL, fills_of, run_system, start_system, stop, system_config

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

STRATEGIES = [
    {"id": "fast", "ref": "sma_cross", "symbols": [SYMBOL], "params": {"fast": 5, "slow": 20}, "allocation": 0.3},
    {"id": "slow", "ref": "sma_cross", "symbols": [SYMBOL], "params": {"fast": 8, "slow": 30}, "allocation": 0.3},
    {"id": "raiser", "ref": f"{FIXTURES}:AlwaysRaises", "symbols": [SYMBOL], "allocation": 0.3},
]


def _run(per_actor: int, bars: int) -> tuple[list[Any], dict[str, dict[str, Any]], list[dict[str, Any]]]:
    cfg = system_config(STRATEGIES, bars)
    cfg["strategies_per_actor"] = per_actor
    sup, handles = run_system(cfg)
    try:
        orders = fills_of(handles)
        listed = {s["id"]: s for s in ray.get(sup.list_strategies.remote())}
        signals = ray.get(handles["gatekeeper"].get_signals.remote())
        _check_wall_stamps(handles, bars)
    finally:
        stop(sup, handles)
    return orders, listed, signals


def _check_wall_stamps(handles: dict[str, Any], bars: int) -> None:
    """What the latency benchmarks read (mmats.engine.wall_stamps), from every kind of host: each bar
    time published, then processed by every strategy host and had by the router; each order decided,
    then accepted."""
    feed = next(iter(handles["feeds"].values()))
    published = ray.get(feed.publish_times.remote())
    assert len(published) == bars  # a lockstep replay publishes one bar time per batch
    for host in set(handles["strategies"].values()):
        processed = ray.get(host.processed_times.remote())
        assert processed.keys() == published.keys()
        assert all(processed[ts] >= published[ts] for ts in published)
    routed = ray.get(handles["router"].bar_times.remote())
    assert routed.keys() == published.keys() and all(routed[ts] >= published[ts] for ts in published)
    accepted = ray.get(handles["router"].accept_times.remote())
    decided = ray.get(handles["gatekeeper"].hop_times.remote())["decided"]
    assert accepted and accepted.keys() <= decided.keys()
    assert all(decided[cid] <= accepted[cid] for cid in accepted)


def test_a_pool_places_the_same_orders_as_one_actor_per_strategy_and_isolates_a_raising_member() -> None:
    bars = 1200
    alone_orders, alone, alone_signals = _run(1, bars)
    pool_orders, pooled, pool_signals = _run(3, bars)
    # One process hosts all three in the pool run; three processes in the other.
    assert {s["host"] for s in pooled.values()} == {"host:pool-replay-0"}
    assert len({s["host"] for s in alone.values()}) == 3
    # The raising member disabled itself; the others kept trading, and nothing differs from one actor each.
    assert pooled["raiser"]["enabled"] is False and pooled["raiser"]["errors_total"] >= 5
    assert "boom" in pooled["raiser"]["last_error"]
    assert pooled["fast"]["enabled"] and pooled["slow"]["enabled"]
    assert pooled["fast"]["errors_total"] == pooled["slow"]["errors_total"] == 0
    assert pooled["fast"]["signals"] > 0 and pooled["slow"]["signals"] > 0
    assert len(alone_orders) > 10
    assert pool_orders == alone_orders
    # Each member heard of each of its own fills (one outcomes message per host for its members).
    for sid in ("fast", "slow"):
        assert pooled[sid]["orders_filled"] == alone[sid]["orders_filled"] > 0
    # The same signals (within one bar, strategies in separate actors report in no fixed order).
    assert sorted((s["strategy_id"], s["time"], s["action"]) for s in pool_signals) == \
        sorted((s["strategy_id"], s["time"], s["action"]) for s in alone_signals)


def test_a_killed_pool_restarts_with_its_strategies_and_positions(tmp_path: Path) -> None:
    strategies = [{**STRATEGIES[0], "params": {"fast": 3, "slow": 10}},
                  {**STRATEGIES[1], "params": {"fast": 4, "slow": 12}}]
    cfg = system_config(strategies, 6_000, pace="speed", home=str(tmp_path))
    cfg["feeds"][0]["speed"] = 60 * 300  # 300 bars/s
    cfg["strategies_per_actor"] = 2
    sup, handles = start_system(cfg)
    pool = handles["strategies"]["fast"]
    try:
        deadline = time.time() + 60
        while time.time() < deadline and ray.get(handles["portfolio"].status.remote())["fills"] < 4:
            time.sleep(0.1)
        before = ray.get(handles["portfolio"].status.remote())
        assert before["fills"] >= 4
        # A hot replace inside the pool; the restart below must bring back the new version, not the built one.
        replaced = ray.get(sup.replace_strategy.remote("slow", {"params": {"fast": 5, "slow": 15}}))
        assert replaced["version"] == 2
        assert ray.get(pool.health.remote("slow"))["params"] == {"fast": 5, "slow": 15}
        ray.kill(pool, no_restart=False)  # the process dies; Ray starts a new one with the same settings
        feed = next(iter(handles["feeds"].values()))
        deadline = time.time() + 90
        while time.time() < deadline and not ray.get(feed.stats.remote())["done"]:
            time.sleep(0.2)
        last_ts = ray.get(feed.last_ts.remote())
        # The restarted pool is rewired by the supervisor (members as they run now, then the feed): under
        # load that lands a while after the replay ended, so wait (bounded) until both members saw the last
        # bar and the replaced member runs its new version; the assertions below say which did not happen.
        deadline = time.time() + 60
        while True:
            health = {sid: ray.get(pool.health.remote(sid), timeout=30) for sid in ("fast", "slow")}
            if time.time() > deadline or (all(h["last_bar_ns"] == last_ts for h in health.values())
                                          and health["slow"]["params"] == {"fast": 5, "slow": 15}):
                break
            time.sleep(0.5)
        # The last orders' fills reach the portfolio, and its account (sent after the rewire) the pool: wait
        # (bounded) until both members hold the positions the portfolio books, read in one pass after it.
        deadline = time.time() + 30
        while True:
            after = ray.get(handles["portfolio"].status.remote())
            health = {sid: ray.get(pool.health.remote(sid), timeout=30) for sid in ("fast", "slow")}
            held = {p["symbol"]: p["quantity"] for p in after["positions"]}
            booked = {k: v for k, v in held.items() if float(v)}
            if time.time() > deadline or all(
                    {k: v for k, v in h["positions"].items() if float(v)} == booked for h in health.values()):
                break
            time.sleep(0.5)
        per_strategy = {sid: len(fills_of(handles, sid)) for sid in ("fast", "slow")}
        listed = {s["id"]: s for s in ray.get(sup.list_strategies.remote())}
    finally:
        stop(sup, handles)
    assert health["slow"]["params"] == {"fast": 5, "slow": 15} and health["fast"]["params"] == {"fast": 3, "slow": 10}
    for sid in ("fast", "slow"):
        h = health[sid]
        assert h["restarted"] is True and h["enabled"] is True and h["pool"] == ["fast", "slow"]
        assert h["last_bar_ns"] == last_ts  # rebuilt from history, back on the feed, saw the last bar
        assert h["errors_total"] == 0
        assert listed[sid]["restarted"] is True
        assert per_strategy[sid] > 0
    # The restarted members see the account's positions as the portfolio books them.
    assert health["fast"]["positions"] == health["slow"]["positions"]
    assert {k: v for k, v in health["fast"]["positions"].items() if float(v)} == \
        {k: v for k, v in held.items() if float(v)}
    assert after["fills"] > before["fills"]  # they kept trading after the restart
