"""The actor system's modes and protections on a real Ray cluster: advisory, router faults, kill triggers."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import ray

from tests.integration.test_runtime_ray import SYMBOL, fills_of, run_system, start_system, stop, system_config

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

VENUES = Path(__file__).resolve().parents[1] / "fixtures" / "faulty_venues.py"
TREND = {"id": "trend", "ref": "sma_cross", "symbols": [SYMBOL], "params": {"fast": 5, "slow": 20}}
FAST_RETRY = {"max_attempts": 3, "base_delay_s": 0.001, "factor": 2.0, "max_delay_s": 0.01}


def _audit_kinds(home: str) -> list[str]:
    from adapters.sql_store import make_storage
    from mmats.model import Environment

    storage = make_storage(Environment.PAPER, home=home)
    assert storage.verify_audit().ok
    return [r.kind for r in storage.audit_records()]


def test_advisory_records_signals_and_decisions_and_sends_no_order(tmp_path: Path) -> None:
    cfg = system_config([TREND], 1500, home=str(tmp_path))
    cfg["mode"] = "advisory"
    sup, handles = run_system(cfg)
    try:
        signals = ray.get(handles["gatekeeper"].get_signals.remote())
        decisions = ray.get(handles["gatekeeper"].get_decisions.remote())
        router = ray.get(handles["router"].stats.remote())
        orders = ray.get(handles["router"].orders.remote())
        account = ray.get(handles["portfolio"].status.remote())
    finally:
        stop(sup, handles)
    assert len(signals) > 10 and len(decisions) > 10
    assert orders == [] and router["submitted"] == 0 and router["orders"] == 0  # the broker saw nothing
    assert account["fills"] == 0 and not account["positions"]
    kinds = _audit_kinds(str(tmp_path))
    assert kinds.count("signal") == len(signals) and kinds.count("risk_decision") == len(decisions)
    assert "order" not in kinds and "fill" not in kinds


def test_repeated_router_errors_downgrade_operator_to_advisory(tmp_path: Path) -> None:
    cfg = system_config([TREND], 1500, home=str(tmp_path))
    cfg.update(paper_venue=f"{VENUES}:AlwaysDown", router_error_limit=3, router_retry=FAST_RETRY)
    sup, handles = run_system(cfg)
    try:
        mode = ray.get(handles["gatekeeper"].mode.remote())
        alerts = ray.get(handles["gatekeeper"].get_alerts.remote())
        orders = ray.get(handles["router"].orders.remote())
        router = ray.get(handles["router"].stats.remote())
    finally:
        stop(sup, handles)
    assert mode["mode"] == "advisory"
    assert [a["kind"] for a in alerts].count("router_error") == 3, "after the downgrade nothing reaches the router"
    assert any(a["kind"] == "mode" and "3 router errors" in a["message"] for a in alerts)
    assert len(orders) == 3 and all(o["status"] == "REJECTED" for o in orders)
    assert all("venue unavailable after 3 attempts" in o["reject_reason"] for o in orders)
    assert router["retries"] == 3 * 2
    assert "mode" in _audit_kinds(str(tmp_path))  # the downgrade is audited
    # ... and durable: a restarted system on the same home stays advisory.
    sup2, handles2 = start_system({**cfg, "paper_venue": None})
    try:
        assert ray.get(handles2["gatekeeper"].mode.remote())["mode"] == "advisory"
    finally:
        stop(sup2, handles2)


def test_a_paper_system_will_not_build_with_a_live_venue(tmp_path: Path) -> None:
    """PAPER and LIVE are separate: a venue declaring itself LIVE is refused before any actor starts."""
    from actors.supervisor import SupervisorActor

    cfg = system_config([{"id": "a", "ref": "sma_cross", "symbols": [SYMBOL]}], 100, home=str(tmp_path))
    cfg.update(paper_venue=f"{VENUES}:LiveLookalike")
    sup = SupervisorActor.options(name=f"{cfg['system_name']}_supervisor").remote(cfg)
    with pytest.raises(ray.exceptions.RayTaskError, match="is a LIVE venue: a PAPER system cannot route"):
        ray.get(sup.build.remote(), timeout=60)
    assert ray.get(sup.handles.remote())["router"] is None  # nothing was started
    ray.kill(sup)


def test_retries_and_lost_answers_change_nothing_and_never_duplicate(tmp_path: Path) -> None:
    base_sup, base = run_system(system_config([TREND], 1500))
    try:
        expected = fills_of(base)
    finally:
        stop(base_sup, base)
    cfg = system_config([TREND], 1500, home=str(tmp_path))
    cfg.update(paper_venue=f"{VENUES}:Flaky", router_retry=FAST_RETRY)
    sup, handles = run_system(cfg)
    try:
        got = fills_of(handles)
        router = ray.get(handles["router"].stats.remote())
        mode = ray.get(handles["gatekeeper"].mode.remote())
    finally:
        stop(sup, handles)
    assert len(expected) > 10
    assert got == expected  # same orders, same fills: retried sends and lost answers made no difference
    assert router["retries"] == 2 * len(got)  # two failed sends per order, then the third went through
    assert router["unknown"] == 0  # every lost answer was resolved (by its fill or by reconciliation)
    assert router["errors"] == len(got) // 3  # each lost answer counted once ...
    assert mode["mode"] == "operator"  # ... and never as a streak long enough to downgrade


def test_drawdown_trigger_engages_hard_and_the_system_ends_flat(tmp_path: Path) -> None:
    cfg = system_config([{**TREND, "params": {"fast": 3, "slow": 10}}], 3000, home=str(tmp_path))
    cfg["risk"] = {"kill_switch": {"max_drawdown_pct": 0.003}}
    sup, handles = run_system(cfg)
    try:
        kill = ray.get(handles["gatekeeper"].kill_switch.remote())
        account = ray.get(handles["portfolio"].status.remote())
        open_orders = ray.get(handles["router"].open_orders.remote())
    finally:
        stop(sup, handles)
    assert kill["state"] == "HARD" and kill["trigger"] == "max_drawdown", kill
    assert not account["positions"] and not open_orders
    kinds = _audit_kinds(str(tmp_path))
    assert "kill_switch" in kinds


def test_a_silent_feed_engages_the_stale_data_trigger() -> None:
    cfg = system_config([TREND], 50_000, pace="speed")
    cfg["feeds"][0].update(speed=60 * 50, stale_after_s=1.0)
    cfg["risk"] = {"kill_switch": {"stale_data_s": 1.0}}
    sup, handles = start_system(cfg)
    try:
        feed = next(iter(handles["feeds"].values()))
        time.sleep(1.5)
        assert ray.get(handles["gatekeeper"].kill_switch.remote())["state"] == "RUNNING"
        ray.get(feed.pause.remote(True))
        deadline = time.time() + 10
        kill: dict[str, Any] = {}
        while time.time() < deadline:
            kill = ray.get(handles["gatekeeper"].kill_switch.remote())
            if kill["state"] != "RUNNING":
                break
            time.sleep(0.2)
        alerts = ray.get(handles["gatekeeper"].get_alerts.remote())
        stats = ray.get(handles["gatekeeper"].stats.remote())
    finally:
        stop(sup, handles)
    assert kill["state"] == "SOFT" and kill["trigger"] == "stale_data", kill
    assert any(a["kind"] == "stale_data" for a in alerts) and stats["stale_feeds"] == ["replay"]


def test_orders_decided_before_a_kill_but_still_queued_never_trade(tmp_path: Path) -> None:
    """The gatekeeper stops deciding the moment it escalates, but commands already on their way to the
    router would reopen what a HARD flatten just closed: the router drops those decided before the kill."""
    from decimal import Decimal

    from mmats.messages import OrderCommands
    from mmats.model import Order, OrderType, Side

    sup, handles = start_system(system_config([], 200, pace="speed", home=str(tmp_path)))
    router = handles["router"]
    try:
        halt = time.time_ns()
        ray.get(router.halt_before.remote(halt))

        def order(name: str) -> Order:
            return Order(f"manual-{name}", SYMBOL, Side.BUY, Decimal("0.01"), OrderType.MARKET,
                         strategy_id="manual", signal_id=name)

        stale, fresh = OrderCommands([], [(order("stale"), [])], 0, None, halt - 1), \
            OrderCommands([], [(order("fresh"), [])], 0, None, halt + 1)
        assert ray.get(router.apply_commands.remote(stale)) == 0
        assert ray.get(router.apply_commands.remote(fresh)) == 1
        orders = {o["client_order_id"]: o for o in ray.get(router.orders.remote())}
        stats = ray.get(router.stats.remote())
    finally:
        stop(sup, handles)
    assert orders["manual-stale"]["status"] == "REJECTED"
    assert "before the kill switch" in orders["manual-stale"]["reject_reason"]
    assert orders["manual-fresh"]["status"] != "REJECTED" and stats["stale_dropped"] == 1
    # the drop is on record, and survives a restart of the router (the halt time is persisted)
    assert "order" in _audit_kinds(str(tmp_path))


def test_a_restarted_gatekeeper_keeps_its_throttles_and_loss_references(tmp_path: Path) -> None:
    """Throttle windows and the daily-loss reference live in the state store: a crashed gatekeeper comes
    back counting where it stopped, not from zero (a restart must not reopen a throttle or a day's loss)."""
    cfg = system_config([TREND], 1500, home=str(tmp_path))
    cfg["risk"] = {"global": {"max_signals": 1000, "signal_window_s": 86_400, "max_daily_loss_pct": 0.5},
                   "kill_switch": {"daily_loss_pct": 0.5}}
    sup, handles = run_system(cfg)
    try:
        gk = handles["gatekeeper"]
        time.sleep(1.5)  # the counters are written once a second when they change
        before = ray.get(gk.risk_counters.remote())
        pid = ray.get(gk.__ray_call__.remote(lambda self: os.getpid()))
        ray.kill(gk, no_restart=False)
        deadline = time.time() + 30
        after: dict[str, Any] = {}
        while time.time() < deadline:  # until the answer comes from the new process (ray.kill is async)
            try:
                if ray.get(gk.__ray_call__.remote(lambda self: os.getpid()), timeout=5) != pid:
                    after = ray.get(gk.risk_counters.remote(), timeout=5)
                    break
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                pass
            time.sleep(0.2)
        # The supervisor rewires the restarted actor when it asks (from its constructor): bounded wait for it.
        deadline = time.time() + 30
        status = ray.get(sup.status.remote(), timeout=30)
        while time.time() < deadline and status["gatekeeper"]["strategies"] != 1:
            time.sleep(0.2)
            status = ray.get(sup.status.remote(), timeout=30)
    finally:
        stop(sup, handles)
    assert len(before["rules"]["signal_times"]["trend"]) > 5
    assert before["monitor"]["day_start"] is not None
    assert after == before
    assert status["gatekeeper"]["strategies"] == 1  # re-wired from the supervisor after the restart
