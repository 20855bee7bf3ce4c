"""The actor system on a real Ray cluster: parity with the backtest, isolation, kill switch."""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.supervisor import SupervisorActor
from mmats.research.runconfig import BacktestConfig, run_backtest

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

SYMBOL = "SYNTH/USDT"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "faulty_strategies.py"
COSTS = {"commission": {"model": "percent", "taker_bps": 10.0}, "slippage": {"model": "fixed", "bps": 2.0}}


def system_config(strategies: list[dict[str, Any]], bars: int, pace: str = "lockstep",
                  home: str | None = None) -> dict[str, Any]:
    name = f"t{uuid.uuid4().hex[:10]}"
    return {
        "environment": "PAPER", "mode": "operator", "allow_operator": True, "initial_cash": 100_000.0,
        "system_name": name, "home": home or tempfile.mkdtemp(prefix=f"mmats-{name}-"),
        "feeds": [{"venue": "replay", "market": "crypto", "generated_symbols": [SYMBOL], "generated_bars": bars,
                   "pace": pace, "speed": 100_000}],
        "costs": COSTS, "strategies": strategies,
    }


def start_system(cfg: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    sup = SupervisorActor.options(name=f"{cfg['system_name']}_supervisor").remote(cfg)
    ray.get(sup.build.remote())
    ray.get(sup.start.remote())
    return sup, ray.get(sup.handles.remote())


def run_system(cfg: dict[str, Any], timeout: float = 120) -> tuple[Any, dict[str, Any]]:
    sup = SupervisorActor.options(name=f"{cfg['system_name']}_supervisor").remote(cfg)
    ray.get(sup.build.remote())
    ray.get(sup.start.remote())
    handles = ray.get(sup.handles.remote())
    feed = next(iter(handles["feeds"].values()))
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = ray.get(feed.stats.remote())
        if st["done"]:
            break
        time.sleep(0.2)
    assert st["done"], f"replay did not finish in {timeout} s: {st}"
    time.sleep(1.0)  # let the last fills reach the portfolio
    return sup, handles


def stop(sup: Any, handles: dict[str, Any]) -> None:
    ray.get(sup.down.remote())
    for h in [handles["gatekeeper"], handles["router"], handles["portfolio"], *handles["feeds"].values(),
              *handles["strategies"].values(), sup]:
        ray.kill(h)


def fills_of(handles: dict[str, Any], strategy_id: str | None = None) -> list[tuple[str, str, str, str, str]]:
    rows = ray.get(handles["router"].orders.remote(strategy_id=strategy_id))
    return sorted((o["client_order_id"], o["side"], o["filled_quantity"], o["avg_fill_price"] or "", o["status"])
                  for o in rows)


def test_paper_system_reproduces_the_backtest_exactly() -> None:
    bars = 1500
    params = {"fast": 5, "slow": 20}
    cfg = system_config([{"id": "sma_cross", "ref": "sma_cross", "symbols": [SYMBOL], "params": params}], bars)
    sup, handles = run_system(cfg)
    try:
        status = ray.get(handles["portfolio"].status.remote())
        orders = fills_of(handles)
        feed_stats = ray.get(next(iter(handles["feeds"].values())).stats.remote())
    finally:
        stop(sup, handles)
    bt = run_backtest(BacktestConfig(strategy="sma_cross", params=params, initial_cash=100_000.0,
                                     generated={"bars": bars, "seed": zlib.crc32(SYMBOL.encode())},
                                     commission=COSTS["commission"], slippage=COSTS["slippage"]))
    expected = sorted((o.client_order_id, o.side.value, str(o.filled_quantity),
                       "" if o.avg_fill_price is None else str(o.avg_fill_price), o.status.value) for o in bt.orders)
    assert len(expected) > 10
    assert feed_stats["lockstep_timeouts"] == 0  # every bar was acknowledged: the replay was exact
    assert orders == expected
    ledger = Decimal(status["equity"])
    assert float(ledger) == pytest.approx(bt.summary["final_equity"], abs=1e-6)
    assert int(status["fills"]) == len(bt.fills)


def test_faulty_strategies_do_not_disturb_a_healthy_one(tmp_path: Path) -> None:
    bars = 1200
    good = {"id": "good", "ref": "sma_cross", "symbols": [SYMBOL], "params": {"fast": 5, "slow": 20},
            "allocation": 0.3}
    alone_sup, alone = run_system(system_config([good], bars))
    try:
        baseline = fills_of(alone, "good")
        base_signals = [s for s in ray.get(alone["gatekeeper"].get_signals.remote()) if s["strategy_id"] == "good"]
    finally:
        stop(alone_sup, alone)
    faulty = [
        good,
        {"id": "raiser", "ref": f"{FIXTURES}:AlwaysRaises", "symbols": [SYMBOL], "allocation": 0.3},
        {"id": "crasher", "ref": f"{FIXTURES}:ExitsOnce", "symbols": [SYMBOL], "allocation": 0.3,
         "params": {"at": 300, "marker": str(tmp_path / "exited")}},
    ]
    sup, handles = run_system(system_config(faulty, bars))
    try:
        strategies = {s["id"]: s for s in ray.get(sup.list_strategies.remote())}
        mixed = fills_of(handles, "good")
        signals = [s for s in ray.get(handles["gatekeeper"].get_signals.remote()) if s["strategy_id"] == "good"]
    finally:
        stop(sup, handles)
    assert (tmp_path / "exited").exists(), "the crashing strategy never crashed"
    assert strategies["crasher"]["restarted"] is True
    # The new process rebuilt its state from the feed's history and re-subscribed: it saw the last bar.
    assert strategies["crasher"]["last_bar_ns"] == strategies["good"]["last_bar_ns"] > 0
    assert strategies["crasher"]["bars_seen"] >= bars - 300  # warm-up history plus every bar after the restart
    assert strategies["raiser"]["enabled"] is False and strategies["raiser"]["errors_total"] >= 5
    assert "boom" in strategies["raiser"]["last_error"]
    assert len(baseline) > 5
    assert mixed == baseline
    assert signals == base_signals


def test_hard_kill_switch_flattens_and_silences() -> None:
    """How fast it is flat is measured in bench/live_pipeline.py (kill_hard_p99_ms); here, that it is."""
    strategies = [{"id": f"s{i}", "ref": "sma_cross", "symbols": [SYMBOL], "params": {"fast": 3 + i, "slow": 15},
                   "allocation": 0.3} for i in range(3)]
    cfg = system_config(strategies, 20_000, pace="speed")
    cfg["feeds"][0]["speed"] = 60 * 200  # 200 bars/s
    sup, handles = start_system(cfg)
    try:
        deadline = time.time() + 60
        opened = False
        while time.time() < deadline and not opened:
            # read once per turn: three crossing strategies open and close the symbol within a few bars
            opened = bool(ray.get(handles["portfolio"].status.remote())["positions"])
            time.sleep(0 if opened else 0.1)
        if not opened:
            # Seen once in CI (not reproduced): say where the pipeline stood, so the next one is diagnosable.
            feed = next(iter(handles["feeds"].values()))
            state = {"gatekeeper": ray.get(handles["gatekeeper"].stats.remote()),
                     "router": ray.get(handles["router"].stats.remote()), "feed": ray.get(feed.stats.remote()),
                     "portfolio_fills": ray.get(handles["portfolio"].status.remote())["fills"],
                     "strategies": ray.get(sup.list_strategies.remote())}
            pytest.fail(f"no position was ever opened in 60 s; pipeline state: {state}")
        t0 = time.perf_counter()
        ray.get(sup.kill.remote("HARD", "test"))
        while time.perf_counter() - t0 < 10.0:
            if not ray.get(handles["portfolio"].status.remote())["positions"]:
                break
            time.sleep(0.01)
        assert not ray.get(handles["portfolio"].status.remote())["positions"]
        orders_before = len(ray.get(handles["router"].orders.remote()))
        time.sleep(1.0)  # the replay goes on; strategies keep signalling, nothing may pass
        assert len(ray.get(handles["router"].orders.remote())) == orders_before
        assert not ray.get(handles["portfolio"].status.remote())["positions"]
        decisions = ray.get(handles["gatekeeper"].get_decisions.remote())
        assert ray.get(handles["gatekeeper"].kill_switch.remote())["state"] == "HARD"
        assert decisions is not None
    finally:
        stop(sup, handles)


def test_router_and_portfolio_crash_recover_from_storage(tmp_path: Path) -> None:
    from adapters.sql_store import make_storage
    from mmats.model import Environment

    strategies = [{"id": "trend", "ref": "sma_cross", "symbols": [SYMBOL], "params": {"fast": 3, "slow": 10},
                   "allocation": 0.5}]
    cfg = system_config(strategies, 6_000, pace="speed", home=str(tmp_path))
    cfg["feeds"][0]["speed"] = 60 * 300  # 300 bars/s
    sup, handles = start_system(cfg)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and ray.get(handles["portfolio"].status.remote())["fills"] < 6:
            time.sleep(0.1)
        before = ray.get(handles["portfolio"].status.remote())
        assert before["fills"] >= 6
        ray.kill(handles["router"], no_restart=False)
        ray.kill(handles["portfolio"], no_restart=False)
        feed = next(iter(handles["feeds"].values()))
        deadline = time.time() + 90
        while time.time() < deadline and not ray.get(feed.stats.remote())["done"]:
            time.sleep(0.2)
        time.sleep(2.0)
        after = ray.get(handles["portfolio"].status.remote())
        router_orders = {o["client_order_id"]: o for o in ray.get(handles["router"].orders.remote())}
        router_stats = ray.get(handles["router"].stats.remote())
    finally:
        stop(sup, handles)
    storage = make_storage(Environment.PAPER, home=str(tmp_path))
    stored_orders = {o.client_order_id: o for o in storage.list_orders()}
    fills = storage.list_fills()
    # The restarted processes came back with the history: more fills after the crash than before.
    assert after["fills"] > before["fills"]
    assert after["fills"] == len(fills)
    # No order lost or duplicated: the router's registry is the stored one, and fills add up per order.
    assert set(router_orders) == set(stored_orders)
    per_order: dict[str, Decimal] = {}
    for f in fills:
        per_order[f.client_order_id] = per_order.get(f.client_order_id, Decimal(0)) + f.quantity
    for cid, qty in per_order.items():
        assert stored_orders[cid].filled_quantity == qty, cid
    assert len({f.fill_id for f in fills}) == len(fills)
    # Positions and cash equal a replay of the stored fills.
    from mmats.model import default_instrument
    from mmats.portfolio import Portfolio

    replay = Portfolio(Decimal(repr(100_000.0)))
    replay.register(default_instrument(SYMBOL, "crypto"))
    for f in fills:
        replay.apply_fill(f)
    assert Decimal(after["cash"]) == replay.cash
    qty_after = Decimal(after["positions"][0]["quantity"]) if after["positions"] else Decimal(0)
    assert qty_after == replay.positions[SYMBOL].quantity
    assert router_stats["orders"] == len(stored_orders)
    verdict = storage.verify_audit()
    assert verdict.ok, verdict
    assert verdict.records > len(fills)


def test_full_stop_and_restart_restores_positions_orders_and_audit(tmp_path: Path,
                                                                   restart_ray: Callable[[], None]) -> None:
    """The whole local cluster stopped and started again, then a new system on the same home: positions,
    cash, the kill switch, the strategy registry (a runtime submit, an operator's disable) and the
    signal records all come back."""
    from adapters.sql_store import make_storage
    from mmats.model import Environment

    strategies = [{"id": "trend", "ref": "sma_cross", "symbols": [SYMBOL], "params": {"fast": 3, "slow": 10},
                   "allocation": 0.5}]
    cfg = system_config(strategies, 4_000, pace="speed", home=str(tmp_path))
    cfg["feeds"][0]["speed"] = 60 * 300
    sup, handles = start_system(cfg)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and ray.get(handles["portfolio"].status.remote())["fills"] < 5:
            time.sleep(0.1)
        ray.get(sup.submit_strategy.remote({"id": "late", "ref": "sma_cross", "symbols": [SYMBOL],
                                            "params": {"fast": 2, "slow": 4}, "timeframe": "5m",
                                            "allocation": 0.2}))
        ray.get(sup.set_strategy_enabled.remote("trend", False))
        ray.get(sup.kill.remote("FREEZE", "maintenance"))  # nothing moves from here on ...
        first = _settled_portfolio(handles["portfolio"])  # ... once the fills already reported are booked
        first_feed = ray.get(next(iter(handles["feeds"].values())).stats.remote())
        signals_before = ray.get(handles["gatekeeper"].signal_records.remote(full=True))
    finally:
        stop(sup, handles)
    restart_ray()
    sup2, handles2 = start_system(cfg)  # same system name and home, a new cluster
    try:
        second = ray.get(handles2["portfolio"].status.remote())
        kill = ray.get(handles2["gatekeeper"].kill_switch.remote())
        feed2 = ray.get(next(iter(handles2["feeds"].values())).stats.remote())
        running = {s["id"]: s for s in ray.get(sup2.list_strategies.remote())}
        config_now = {s["id"]: s for s in ray.get(sup2.get_config.remote())["config"]["strategies"]}
        signals_after = ray.get(handles2["gatekeeper"].signal_records.remote(full=True))
        recent_after = ray.get(handles2["gatekeeper"].signal_records.remote())
    finally:
        stop(sup2, handles2)
    assert set(running) == {"trend", "late"}  # the runtime submit survived the cluster
    assert running["trend"]["enabled"] is False and running["late"]["enabled"] is True
    assert config_now["late"]["timeframe"] == "5m" and config_now["late"]["params"] == {"fast": 2, "slow": 4}
    assert len(signals_before) > 0
    # A record read before the gatekeeper decided on it (decision None) comes back with the decision taken
    # afterwards; every decided record comes back exactly.
    for before, after in zip(signals_before, signals_after[: len(signals_before)], strict=True):
        if before["decision"] is None:
            assert {k: v for k, v in after.items() if not k.startswith("decision")} == {
                k: v for k, v in before.items() if not k.startswith("decision")}
        else:
            assert after == before
    # the live views' recent window came back from the tables too
    assert len(recent_after) >= len(signals_before)
    assert [(r["time"], r["strategy_id"]) for r in recent_after[: len(signals_before)]] == [
        (r["time"], r["strategy_id"]) for r in signals_before]
    def held(status: dict[str, Any]) -> list[tuple[str, str, str]]:
        return [(p["symbol"], p["quantity"], p["avg_price"]) for p in status["positions"]]

    assert second["cash"] == first["cash"] and held(second) == held(first)
    assert second["fills"] == first["fills"]
    assert kill["state"] == "FREEZE"  # the kill switch is durable across restarts
    assert feed2["resumed_from"] > 0 and feed2["resumed_from"] >= first_feed["position"] - 1
    storage = make_storage(Environment.PAPER, home=str(tmp_path))
    assert storage.verify_audit().ok
    # The queryable signal table and the audit chain hold the same signals.
    audited = [r for r in storage.audit_records() if r.kind == "signal"]
    assert len(audited) == len(storage.list_signals()) >= len(signals_after)


def test_a_restarted_feed_is_rewired_and_every_subscriber_gets_bars_again(tmp_path: Path) -> None:
    """The feed process dies mid-replay: Ray restarts it, it resumes from its saved position, and the
    supervisor's topology is applied again (the strategy attaches, the router gets the fill bars), so
    the system trades on to the last bar."""
    strategies = [{"id": "trend", "ref": "sma_cross", "symbols": [SYMBOL], "params": {"fast": 3, "slow": 10}}]
    cfg = system_config(strategies, 4_000, pace="speed", home=str(tmp_path))
    cfg["feeds"][0]["speed"] = 60 * 200  # 200 bars/s
    sup, handles = start_system(cfg)
    feed = next(iter(handles["feeds"].values()))
    try:
        deadline = time.time() + 60
        while time.time() < deadline and ray.get(handles["portfolio"].status.remote())["fills"] < 3:
            time.sleep(0.1)
        killed_at = ray.get(feed.stats.remote())["position"]
        killed_ts = ray.get(feed.last_ts.remote())
        ray.kill(feed, no_restart=False)
        deadline = time.time() + 120
        stats: dict[str, Any] = {}
        while time.time() < deadline:
            with contextlib.suppress(ray.exceptions.RayActorError):
                stats = ray.get(feed.stats.remote(), timeout=30)
                if stats["done"]:
                    break
            time.sleep(0.2)
        last_ts = ray.get(feed.last_ts.remote())
        deadline = time.time() + 30
        while time.time() < deadline and \
                ray.get(handles["strategies"]["trend"].health.remote())["last_bar_ns"] != last_ts:
            time.sleep(0.2)
        health = ray.get(handles["strategies"]["trend"].health.remote())
        orders = ray.get(handles["router"].orders.remote())
    finally:
        stop(sup, handles)
    # It resumed from the position it last saved (every 0.5 s of publishing), not from the first bar.
    assert stats.get("done") and 0 < stats["resumed_from"] <= killed_at
    assert health["last_bar_ns"] == last_ts and health["enabled"]  # the strategy is back on the feed
    # Orders decided on bars the restarted feed published, and filled: the router got its bars too.
    late = [o for o in orders if o["status"] == "FILLED" and _ns(o["created"]) > killed_ts]
    assert late, f"no order filled after the restart (bar time {killed_ts}, {len(orders)} orders, feed {stats})"


def _settled_portfolio(portfolio: Any) -> dict[str, Any]:
    """The portfolio's status once its cash and fills stop changing (bounded): after a FREEZE, a fill the
    router booked just before it may still be on its way to the portfolio."""
    status = ray.get(portfolio.status.remote())
    deadline = time.time() + 10
    while time.time() < deadline:
        time.sleep(0.5)
        again = ray.get(portfolio.status.remote())
        if (again["cash"], again["fills"]) == (status["cash"], status["fills"]):
            return again
        status = again
    return status


def _ns(iso_time: str) -> int:
    from datetime import datetime

    from mmats.model import datetime_to_ns

    return int(datetime_to_ns(datetime.fromisoformat(iso_time.replace("Z", "+00:00"))))


def test_a_strategy_hears_of_its_rejected_orders_from_the_portfolio_with_its_account() -> None:
    """Under a SOFT kill switch every entry is refused by the gatekeeper: the strategy learns each
    refusal and the reason, and it hears of its orders from the portfolio only (the router and the
    gatekeeper are not wired to it)."""
    strategies = [{"id": "trend", "ref": "sma_cross", "symbols": [SYMBOL], "params": {"fast": 3, "slow": 10}}]
    cfg = system_config(strategies, 3_000, pace="speed")
    cfg["feeds"][0]["speed"] = 60 * 300
    sup = SupervisorActor.options(name=f"{cfg['system_name']}_supervisor").remote(cfg)
    ray.get(sup.build.remote())
    handles = ray.get(sup.handles.remote())
    try:
        ray.get(sup.kill.remote("SOFT", "no new entries today"))
        ray.get(sup.start.remote())
        strategy = handles["strategies"]["trend"]
        deadline = time.time() + 60
        while time.time() < deadline and ray.get(strategy.health.remote())["orders_rejected"] < 3:
            time.sleep(0.2)
        health = ray.get(strategy.health.remote())
        fills = ray.get(handles["portfolio"].status.remote())["fills"]
    finally:
        stop(sup, handles)
    assert health["orders_rejected"] >= 3 and "SOFT" in health["last_rejection"]
    assert health["orders_filled"] == 0 and fills == 0


def test_bracket_children_are_stored_in_the_state_their_parent_fill_left(tmp_path: Path) -> None:
    """A filled entry activates its stop child: the child's new state is committed with the fill, so
    the stored orders equal the router's own while the child works (what a restarted router restores)."""
    from adapters.sql_store import make_storage
    from mmats.model import Environment

    strategies = [{"id": "rsi", "ref": "rsi_reversion", "symbols": [SYMBOL],
                   # one entry, then held: an exit RSI out of reach and a stop 50% away
                   "params": {"period": 30, "oversold": 45, "exit": 99.99, "stop_pct": 0.5}, "allocation": 0.5}]
    cfg = system_config(strategies, 20_000, pace="speed", home=str(tmp_path))
    cfg["feeds"][0]["speed"] = 60 * 200  # 200 bars/s
    sup, handles = start_system(cfg)
    feed = next(iter(handles["feeds"].values()))

    def orders() -> dict[str, tuple[str, Decimal, str | None]]:
        return {o["client_order_id"]: (o["status"], Decimal(o["filled_quantity"]), o["parent_id"])
                for o in ray.get(handles["router"].orders.remote())}

    try:
        deadline = time.time() + 60
        working: list[str] = []
        while time.time() < deadline and not working:
            working = [cid for cid, (st, _, parent) in orders().items() if parent and st in ("SUBMITTED", "ACCEPTED")]
            time.sleep(0.05)
        assert working, "no bracket child was activated by its parent's fill within 60 s"
        ray.get(feed.stop.remote())  # no more bars: the book stays as it is, children still working
        time.sleep(1.0)  # what the last bar batch started reaches the router and the store
        live = orders()
        stored = {o.client_order_id: (o.status.value, o.filled_quantity, o.parent_id)
                  for o in make_storage(Environment.PAPER, home=str(tmp_path)).list_orders()}
    finally:
        stop(sup, handles)
    assert all(live[cid][0] in ("SUBMITTED", "ACCEPTED") for cid in working)  # still working when read
    assert stored == live
