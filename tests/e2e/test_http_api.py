"""The control plane over HTTP, end to end: httpx -> Ray Serve -> the actor system on a real Ray cluster.

One system for the whole module (generated bars replayed in paper, operator mode). Tests run in file
order; the ones that stop trading (kill switch, mode) come last.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import SYMBOL, Api

pytestmark = [pytest.mark.e2e, pytest.mark.ray]

PROBLEM = "application/problem+json"
SEEN: list[str] = []  # every response body of the module, checked for secrets at the end

UPLOADED = '''
from mmats.model import SignalAction, TradeSignal
from mmats.strategy import IStrategy, StrategyContext


class EveryNth(IStrategy):
    name = "every_nth"
    default_params = {"n": 50}

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def get_required_indicators(self) -> list[str]:
        return ["EMA_7"]

    def on_bar(self, context: StrategyContext) -> TradeSignal | None:
        self.count += 1
        if self.count % self.params["n"]:
            return None
        action = SignalAction.BUY if (self.count // self.params["n"]) % 2 else SignalAction.CLOSE
        return TradeSignal(action, context.symbol, 0.1, reasoning=f"bar {self.count}")
'''


def seen(r: Any) -> Any:
    SEEN.append(r.text if hasattr(r, "text") else str(r))
    return r


def get(api: Api, path: str, **kw: Any) -> Any:
    return seen(api.get(path, **kw))


def post(api: Api, path: str, body: Any = None, **kw: Any) -> Any:
    return seen(api.post(path, json=body, **kw))


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text[:500]}"
    return r.json()


def problem_of(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:300]}"
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert "Traceback" not in r.text and 'File "' not in r.text
    return dict(body)


def wait_for_trading(api: Api) -> None:
    api.wait_for(lambda: ok(get(api, "/api/v1/status"))["fills"] >= 4, 90, 0.5, "the first fills")


# ------------------------------------------------------------------------------------------- system


def test_health_ready_status(mmats_api: Api) -> None:
    assert ok(get(mmats_api, "/api/v1/health"))["status"] == "ok"
    ready = ok(get(mmats_api, "/api/v1/ready"))
    assert ready["ready"] is True
    assert {"gatekeeper", "router", "portfolio", "feed:replay-crypto", "strategy:sma_fast"} <= set(ready["actors"])
    wait_for_trading(mmats_api)
    st = ok(get(mmats_api, "/api/v1/status"))
    assert st["environment"] == "PAPER" and st["environment_colour"] == "yellow"
    assert st["mode"] == "operator" and st["kill_switch"]["state"] == "RUNNING"
    assert st["uptime_s"] > 0 and st["running"] is True
    feed = st["feeds"][0]
    assert feed["venue"] == "replay-crypto" and feed["published"] > 0 and "seconds_since_update" in feed
    assert float(st["equity"]) > 0
    assert st["currency"] == "USD" and set(st["cash_by_currency"]) <= {"USD", "USDT"}


def test_openapi_and_docs(mmats_api: Api) -> None:
    schema = ok(get(mmats_api, "/openapi.json"))
    paths = schema["paths"]
    for p in ("/api/v1/health", "/api/v1/kill-switch", "/api/v1/strategies", "/api/v1/orders", "/api/v1/stream",
              "/api/v1/config/rollback", "/api/v1/audit/verify", "/api/v1/positions/close-all"):
        assert p in paths, p
    # errors are declared as problem+json, and mutating operations declare the bearer scheme
    post_kill = paths["/api/v1/kill-switch"]["post"]
    assert PROBLEM in post_kill["responses"]["401"]["content"]
    assert post_kill.get("security"), "POST /kill-switch must declare bearer auth"
    assert get(mmats_api, "/docs").status_code == 200


def test_auth_401_403(mmats_api: Api) -> None:
    body = {"state": "SOFT", "reason": "auth test"}
    r = seen(mmats_api.anon.post("/api/v1/kill-switch", json=body))
    assert problem_of(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")
    for header in ("Token abc", "Bearer", "Bearer a b", "Basic dXNlcjpwYXNz"):
        problem_of(seen(mmats_api.anon.post("/api/v1/kill-switch", json=body, headers={"Authorization": header})), 401)
    bad = mmats_api.token[:-4] + "AAAA"
    problem_of(seen(mmats_api.anon.post("/api/v1/kill-switch", json=body,
                                        headers={"Authorization": f"Bearer {bad}"})), 403)
    # nothing changed
    assert ok(get(mmats_api, "/api/v1/kill-switch"))["state"] == "RUNNING"
    # reads need no token on a loopback bind
    assert get(mmats_api, "/api/v1/positions").status_code == 200


def test_a_non_loopback_bind_needs_the_token_on_every_endpoint(mmats_api: Api) -> None:
    """What `mmats up --host 0.0.0.0` deploys (``auth_all``): the same app in front of the same system,
    here on its own route so the session's loopback app keeps running. Every API path, reads and
    liveness included, answers 401 without the token; the page shells (dashboard, /docs) carry no
    system data and stay loadable, the dashboard then asks for the token (docs/http-api.md)."""
    import httpx
    from ray import serve

    import serve_app
    from tests.e2e.conftest import NAMESPACE

    assert not serve_app.is_loopback("0.0.0.0") and not serve_app.is_loopback("192.168.1.20")
    assert serve_app.is_loopback("127.0.0.1") and serve_app.is_loopback("::1") and serve_app.is_loopback("localhost")
    app = serve_app.make_app(f"{mmats_api.system}_supervisor", NAMESPACE, serve_app.token_digest(mmats_api.token),
                             auth_all=True, poll_s=0.25)
    serve.run(app, name="mmats-strict", route_prefix="/strict")
    base = f"{mmats_api.base_url}/strict"
    try:
        with httpx.Client(base_url=base, timeout=30) as anon, httpx.Client(
                base_url=base, timeout=30, headers={"Authorization": f"Bearer {mmats_api.token}"}) as auth:
            mmats_api.wait_for(lambda: auth.get("/api/v1/ready").status_code == 200, 60, 0.5, "the strict app")
            schema = ok(seen(auth.get("/openapi.json")))
            reads = [p for p, ops in schema["paths"].items()
                     if p.startswith("/api/v1/") and "get" in ops and "{" not in p and p != "/api/v1/stream"]
            assert len(reads) > 15 and "/api/v1/health" in reads
            for path in reads:
                r = seen(anon.get(path))
                assert r.status_code == 401, (path, r.status_code)
                assert r.headers["content-type"].startswith(PROBLEM), path
                status = seen(auth.get(path)).status_code
                assert status == 200 or status == 422, (path, status)  # 422: a required query parameter
            with anon.stream("GET", "/api/v1/stream") as r:
                assert r.status_code == 401
            bad = {"Authorization": f"Bearer {mmats_api.token[:-4]}AAAA"}
            assert seen(anon.get("/api/v1/status", headers=bad)).status_code == 403
            assert anon.get("/").status_code == 200 and "<html" in anon.get("/").text.lower()
    finally:
        serve.delete("mmats-strict")


def test_errors_are_problem_json(mmats_api: Api) -> None:
    problem_of(get(mmats_api, "/api/v1/no-such-thing"), 404)
    problem_of(get(mmats_api, "/api/v1/strategies/nope"), 404)
    p = problem_of(get(mmats_api, "/api/v1/orders", params={"limit": 0}), 422)
    assert p["errors"][0]["loc"] == "query.limit"
    p = problem_of(post(mmats_api, "/api/v1/kill-switch", {"state": "MAYBE", "reason": "x"}), 422)
    assert "body.state" in p["detail"]
    problem_of(post(mmats_api, "/api/v1/kill-switch", {"state": "SOFT", "reason": "   "}), 422)
    r = seen(mmats_api.auth.post("/api/v1/orders", content=b"{not json", headers={"Content-Type": "application/json"}))
    problem_of(r, 422)


# ------------------------------------------------------------------------------------ strategies


def test_strategies_list_with_health_and_pnl(mmats_api: Api) -> None:
    page = ok(get(mmats_api, "/api/v1/strategies"))
    assert page["total"] == 2 and page["offset"] == 0
    by_id = {s["id"]: s for s in page["items"]}
    s = by_id["sma_fast"]
    assert s["enabled"] and s["healthy"] and s["version"] == 1 and s["symbols"] == [SYMBOL]
    assert s["bars_seen"] > 0 and s["market"] == "crypto" and s["params"] == {"fast": 3, "slow": 12}
    for key in ("net_pnl", "realized_pnl", "fees", "trades", "wins", "win_rate", "errors_total"):
        assert key in s
    one = ok(get(mmats_api, "/api/v1/strategies", params={"limit": 1, "offset": 1}))
    assert len(one["items"]) == 1 and one["next_offset"] is None and one["total"] == 2
    assert ok(get(mmats_api, "/api/v1/strategies/rsi_rev"))["id"] == "rsi_rev"


def test_disable_enable_roundtrip(mmats_api: Api) -> None:
    r = ok(post(mmats_api, "/api/v1/strategies/rsi_rev/disable", {"close_positions": False}))
    assert r == {"id": "rsi_rev", "enabled": False, "close_positions": False, "closes": []}
    assert ok(get(mmats_api, "/api/v1/strategies/rsi_rev"))["enabled"] is False
    assert ok(post(mmats_api, "/api/v1/strategies/rsi_rev/enable"))["enabled"] is True
    assert ok(get(mmats_api, "/api/v1/strategies/rsi_rev"))["enabled"] is True
    problem_of(post(mmats_api, "/api/v1/strategies/ghost/enable"), 404)


def test_submit_upload_and_hot_replace(mmats_api: Api) -> None:
    p = problem_of(post(mmats_api, "/api/v1/strategies", {"id": "x", "ref": "no_such", "symbols": [SYMBOL]}), 400)
    assert "unknown strategy" in p["detail"]
    p = problem_of(post(mmats_api, "/api/v1/strategies", {"id": "x", "ref": "sma_cross", "symbols": ["ZZZ"]}), 400)
    assert "ZZZ" in p["detail"]
    problem_of(post(mmats_api, "/api/v1/strategies", {"id": "sma_fast", "ref": "sma_cross", "symbols": [SYMBOL]}), 409)
    s = ok(post(mmats_api, "/api/v1/strategies", {"id": "donch", "ref": "donchian_breakout", "symbols": [SYMBOL],
                                                  "allocation": 0.2}), 201)
    assert s["id"] == "donch" and s["enabled"] and s["version"] == 1
    # an uploaded file: syntax checked in the API, run in a strategy actor
    bad = {"id": "up", "class_name": "EveryNth", "source": "def broken(:\n", "symbols": [SYMBOL]}
    assert "syntax error" in problem_of(post(mmats_api, "/api/v1/strategies/upload", bad), 400)["detail"]
    missing = {"id": "up", "class_name": "Nope", "source": UPLOADED, "symbols": [SYMBOL]}
    assert "no class 'Nope'" in problem_of(post(mmats_api, "/api/v1/strategies/upload", missing), 400)["detail"]
    up = ok(post(mmats_api, "/api/v1/strategies/upload", {"id": "uploaded", "class_name": "EveryNth",
                                                           "source": UPLOADED, "symbols": [SYMBOL],
                                                           "params": {"n": 20}, "allocation": 0.1}), 201)
    assert up["ref"].endswith(":EveryNth") and Path(up["ref"].rsplit(":", 1)[0]).is_file()
    mmats_api.wait_for(lambda: ok(get(mmats_api, "/api/v1/strategies/uploaded"))["signals"] > 0, 60, 0.5,
                       "the uploaded strategy to signal")
    # its indicators are charted from what its actor declared: the API process never loads the user's file
    ind = ok(get(mmats_api, f"/api/v1/indicators?symbol={SYMBOL}&limit=20"))
    mine = next(s for s in ind["strategies"] if s["id"] == "uploaded")
    assert [x["name"] for x in mine["series"]] == ["EMA_7"] and mine["note"] == ""
    assert mine["series"][0]["pane"] == "price" and mine["series"][0]["values"][-1] is not None
    # hot-replace: new parameters make a new version of the actor, same id
    r = ok(seen(mmats_api.auth.put("/api/v1/strategies/sma_fast/params", json={"params": {"fast": 4, "slow": 15}})))
    assert r["version"] == 2 and r["params"] == {"fast": 4, "slow": 15}
    assert ok(get(mmats_api, "/api/v1/strategies/sma_fast/params"))["version"] == 2
    before = ok(get(mmats_api, "/api/v1/strategies/sma_fast"))["bars_seen"]
    mmats_api.wait_for(lambda: ok(get(mmats_api, "/api/v1/strategies/sma_fast"))["bars_seen"] > before + 5, 30,
                       0.5, "the new version to receive bars")
    r = ok(post(mmats_api, "/api/v1/strategies/sma_fast/replace", {"ref": "sma_cross", "params": {"fast": 3,
                                                                                                  "slow": 12}}))
    assert r["version"] == 3 and r["healthy"]
    problem_of(post(mmats_api, "/api/v1/strategies/sma_fast/replace", {}), 422)


# --------------------------------------------------------------------------------- orders, positions


def test_orders_filters_and_pagination(mmats_api: Api) -> None:
    newest = ok(get(mmats_api, "/api/v1/orders", params={"limit": 1}))["items"][0]["created"]
    # trading goes on: fixing `until` makes the pages of a live, newest-first list stable
    page = ok(get(mmats_api, "/api/v1/orders", params={"limit": 3, "until": newest}))
    assert page["total"] >= 4 and len(page["items"]) == 3 and page["next_offset"] == 3
    created = [o["created"] for o in page["items"]]
    assert created == sorted(created, reverse=True), "newest first"
    nxt = ok(get(mmats_api, "/api/v1/orders", params={"limit": 3, "offset": 3, "until": newest}))
    assert {o["client_order_id"] for o in nxt["items"]}.isdisjoint(o["client_order_id"] for o in page["items"])
    filled = ok(get(mmats_api, "/api/v1/orders", params={"status": "FILLED", "strategy": "sma_fast",
                                                         "symbol": SYMBOL, "limit": 1000}))
    assert filled["items"] and all(o["status"] == "FILLED" and o["strategy_id"] == "sma_fast" for o in filled["items"])
    all_orders = ok(get(mmats_api, "/api/v1/orders", params={"limit": 1000}))["items"]
    mid = sorted(o["created"] for o in all_orders)[len(all_orders) // 2]
    since = ok(get(mmats_api, "/api/v1/orders", params={"since": mid, "limit": 1000}))
    assert since["total"] > 0 and all(o["created"] >= mid for o in since["items"])
    until = ok(get(mmats_api, "/api/v1/orders", params={"until": mid, "limit": 1000}))
    assert until["total"] > 0 and all(o["created"] < mid for o in until["items"])
    one = all_orders[0]
    assert ok(get(mmats_api, f"/api/v1/orders/{one['client_order_id']}"))["client_order_id"] == one["client_order_id"]
    problem_of(get(mmats_api, "/api/v1/orders/not-an-order"), 404)
    problem_of(seen(mmats_api.auth.delete("/api/v1/orders/not-an-order")), 404)
    if one["status"] in ("FILLED", "CANCELED", "REJECTED"):
        problem_of(seen(mmats_api.auth.delete(f"/api/v1/orders/{one['client_order_id']}")), 409)
    ok(get(mmats_api, "/api/v1/orders/open"))


def test_manual_order_goes_through_the_gatekeeper(mmats_api: Api) -> None:
    body = {"symbol": SYMBOL, "side": "BUY", "target_exposure": 0.05, "strategy_id": "manual_e2e",
            "reasoning": "e2e manual order", "signal_id": "e2e-manual-1"}
    r = ok(post(mmats_api, "/api/v1/orders", body))
    assert r["strategy_id"] == "manual_e2e" and r["signal_id"] == "e2e-manual-1"
    assert r["status"] in ("submitted", "rejected", "no_order"), r
    if r["status"] == "submitted":
        assert r["orders"] and r["decisions"][0]["status"] in ("APPROVED", "RESIZED")
        cid = r["orders"][0]
        order = ok(get(mmats_api, f"/api/v1/orders/{cid}"))
        # target semantics on the symbol's net position: the side is whatever reaches 5 % (it may sell)
        assert order["strategy_id"] == "manual_e2e" and order["signal_id"] == "e2e-manual-1"
    # the same signal id again: idempotent, never a second order
    again = ok(post(mmats_api, "/api/v1/orders", body))
    assert again["status"] == "no_order" and not again["orders"]
    # recorded like any signal, with the decision
    signals = ok(get(mmats_api, "/api/v1/signals", params={"strategy": "manual_e2e"}))["items"]
    assert signals and signals[0]["reasoning"] == "e2e manual order"
    decisions = ok(get(mmats_api, "/api/v1/risk/decisions", params={"strategy": "manual_e2e"}))["items"]
    assert decisions and decisions[0]["signal_id"] == "e2e-manual-1"
    # an oversized order is cut or refused by the risk gate, never passed through as asked
    problem_of(post(mmats_api, "/api/v1/orders", {**body, "symbol": "NOPE/USD", "signal_id": "x"}), 404)
    problem_of(post(mmats_api, "/api/v1/orders", {**body, "target_exposure": 2}), 422)
    problem_of(post(mmats_api, "/api/v1/orders", {**body, "order_type": "LIMIT", "signal_id": "y"}), 422)


def test_positions_close_one_and_close_all_with_confirmation(mmats_api: Api) -> None:
    mmats_api.wait_for(lambda: ok(get(mmats_api, "/api/v1/positions"))["total"] > 0, 90, 0.5, "an open position")
    pos = ok(get(mmats_api, "/api/v1/positions"))["items"][0]
    assert pos["symbol"] == SYMBOL and pos["side"] in ("LONG", "SHORT") and float(pos["notional"]) > 0
    r = post(mmats_api, "/api/v1/positions/close", {"symbol": SYMBOL, "reason": "e2e close"})
    if r.status_code == 409:  # a strategy closed it first (trading goes on): nothing left to close
        assert "no open position" in problem_of(r, 409)["detail"]
    else:
        assert ok(r)["status"] in ("submitted", "no_order") and r.json()["strategy_id"] == "manual"
    problem_of(post(mmats_api, "/api/v1/positions/close", {"symbol": "NOPE/USD"}), 404)
    step1 = ok(post(mmats_api, "/api/v1/positions/close-all", {}))
    assert step1["confirmation_required"] is True and step1["confirm_token"] and step1["expires_in_s"] == 60
    problem_of(post(mmats_api, "/api/v1/positions/close-all", {"confirm_token": "wrong"}), 400)
    step1 = ok(post(mmats_api, "/api/v1/positions/close-all", {}))
    done = ok(post(mmats_api, "/api/v1/positions/close-all", {"confirm_token": step1["confirm_token"],
                                                               "reason": "e2e"}))
    assert done["confirmation_required"] is False and len(done["results"]) == done["positions"]
    # the token is single use
    problem_of(post(mmats_api, "/api/v1/positions/close-all", {"confirm_token": step1["confirm_token"]}), 400)


def test_bulk_cancel(mmats_api: Api) -> None:
    problem_of(post(mmats_api, "/api/v1/orders/cancel", {}), 422)
    r = ok(post(mmats_api, "/api/v1/orders/cancel", {"all": True}))
    assert r["count"] == len(r["canceled"])
    r = ok(post(mmats_api, "/api/v1/orders/cancel", {"strategy_id": "sma_fast", "symbol": SYMBOL}))
    assert isinstance(r["canceled"], list)


# ------------------------------------------------------------------------------ signals, risk, P&L


def test_signals_list_and_export(mmats_api: Api) -> None:
    page = ok(get(mmats_api, "/api/v1/signals", params={"limit": 5}))
    assert page["total"] >= 4 and len(page["items"]) == 5
    s = page["items"][0]
    assert {"time", "strategy_id", "symbol", "action", "reasoning", "decision"} <= set(s)
    buys = ok(get(mmats_api, "/api/v1/signals", params={"action": "BUY", "limit": 1000}))["items"]
    assert buys and all(x["action"] == "BUY" for x in buys)
    r = get(mmats_api, "/api/v1/signals/export", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) >= page["total"] and rows[0]["strategy_id"]
    r = get(mmats_api, "/api/v1/signals/export", params={"format": "json"})
    assert isinstance(json.loads(r.text), list)


def test_risk_limits_utilization_alerts(mmats_api: Api) -> None:
    limits = ok(get(mmats_api, "/api/v1/risk/limits"))
    assert limits["source"] == "risk_config" and "global" in limits["levels"]
    util = ok(get(mmats_api, "/api/v1/risk/utilization"))
    assert util["equity"] > 0
    for it in util["items"]:
        assert it["limit_value"] > 0
        assert it["utilization_pct"] == pytest.approx(100 * it["current"] / it["limit_value"], rel=1e-3, abs=0.01)
    alerts = ok(get(mmats_api, "/api/v1/risk/alerts"))
    assert alerts["total"] == len(alerts["items"]) or alerts["next_offset"] is not None


def test_pnl_and_equity_series(mmats_api: Api) -> None:
    pnl = ok(get(mmats_api, "/api/v1/pnl"))
    total = float(pnl["equity"]) - float(pnl["initial_cash"])
    assert float(pnl["total_pnl"]) == pytest.approx(total, abs=1e-6)
    assert [m["name"] for m in pnl["by_market"]] == ["crypto"]
    assert {"sma_fast", "rsi_rev"} & {s["name"] for s in pnl["by_strategy"]}
    eq = ok(get(mmats_api, "/api/v1/pnl/equity", params={"points": 50}))
    pts = eq["points"]
    assert 2 <= len(pts) <= 51
    assert [p["t"] for p in pts] == sorted(p["t"] for p in pts)
    assert all(0 <= p["drawdown"] <= eq["max_drawdown"] + 1e-9 for p in pts)


# ---------------------------------------------------------------------------------------- config


def test_config_versioning_rollback_import_export(mmats_api: Api) -> None:
    cur = ok(get(mmats_api, "/api/v1/config"))
    assert cur["environment"] == "PAPER" and cur["config"]["system_name"] == mmats_api.system
    cfg = cur["config"]
    v = ok(post(mmats_api, "/api/v1/config/validate", {**cfg, "initial_cash": -5}))
    assert v["valid"] is False and v["errors"][0]["loc"] == "config.initial_cash"
    assert ok(post(mmats_api, "/api/v1/config/validate", cfg))["valid"] is True
    # update: disable rsi_rev through the config (applied live), change a restart-only field
    new = json.loads(json.dumps(cfg))
    for s in new["strategies"]:
        if s["id"] == "rsi_rev":
            s["enabled"] = False
    new["max_strategy_errors"] = 7
    r = seen(mmats_api.auth.put("/api/v1/config", json={"config": new, "author": "alice", "comment": "pause rsi"}))
    up = ok(r)
    assert up["author"] == "alice" and up["comment"] == "pause rsi" and up["version"] >= 2
    assert "strategies.rsi_rev: disabled" in up["applied"]
    assert "max_strategy_errors" in up["restart_required"]
    assert any("rsi_rev" in c for c in up["changes"])
    assert ok(get(mmats_api, "/api/v1/strategies/rsi_rev"))["enabled"] is False
    hist = ok(get(mmats_api, "/api/v1/config/history"))["items"]
    assert hist[0]["version"] == up["version"] and hist[0]["author"] == "alice" and hist[-1]["author"] == "system"
    full = ok(get(mmats_api, f"/api/v1/config/history/{up['version']}"))
    assert full["content"]["max_strategy_errors"] == 7
    problem_of(get(mmats_api, "/api/v1/config/history/99999"), 404)
    bad = seen(mmats_api.auth.put("/api/v1/config", json={"config": {**cfg, "feeds": "nope"}}))
    assert "config.feeds" in problem_of(bad, 422)["detail"]
    # rollback to the baseline re-enables rsi_rev, as a new version
    rb = ok(post(mmats_api, "/api/v1/config/rollback", {"version": hist[-1]["version"], "author": "bob"}))
    assert rb["version"] == up["version"] + 1 and "strategies.rsi_rev: enabled" in rb["applied"]
    assert ok(get(mmats_api, "/api/v1/strategies/rsi_rev"))["enabled"] is True
    # export / import round trip
    y = get(mmats_api, "/api/v1/config/export", params={"format": "yaml"})
    assert y.status_code == 200 and "system_name:" in y.text
    imp = ok(post(mmats_api, "/api/v1/config/import", {"format": "yaml", "content": y.text, "author": "carol"}))
    assert imp["version"] == rb["version"] + 1 and imp["author"] == "carol"
    problem_of(post(mmats_api, "/api/v1/config/import", {"format": "json", "content": "{oops"}), 422)


# ----------------------------------------------------------------------------------- audit, stream


def test_audit_query_and_verify(mmats_api: Api) -> None:
    page = ok(get(mmats_api, "/api/v1/audit", params={"limit": 5}))
    assert page["total"] > 10 and len(page["items"]) == 5
    seqs = [x["seq"] for x in page["items"]]
    assert seqs == sorted(seqs) and seqs[-1] == page["total"]
    first = ok(get(mmats_api, "/api/v1/audit", params={"from_seq": 1, "limit": 3}))
    assert [x["seq"] for x in first["items"]] == [1, 2, 3] and first["next_from_seq"] == 4
    assert first["items"][1]["prev_hash"] == first["items"][0]["hash"]
    fills = ok(get(mmats_api, "/api/v1/audit", params={"from_seq": 1, "kind": "fill", "limit": 5}))
    assert fills["items"] and all(x["kind"] == "fill" for x in fills["items"])
    v = ok(get(mmats_api, "/api/v1/audit/verify"))
    assert v["ok"] is True and v["records"] >= page["total"] and len(v["head_hash"]) == 64


def test_logs_and_markets(mmats_api: Api) -> None:
    logs = ok(get(mmats_api, "/api/v1/logs", params={"limit": 500}))
    assert logs["items"]
    modules = {x["module"] for x in logs["items"]}
    assert "config" in modules and "strategies" in modules
    warn = ok(get(mmats_api, "/api/v1/logs", params={"level": "WARNING", "limit": 500}))["items"]
    assert warn and all(x["level"] in ("WARNING", "ERROR") for x in warn)
    crypto = ok(get(mmats_api, "/api/v1/logs", params={"market": "crypto", "limit": 50}))["items"]
    assert all(x["market"] == "crypto" for x in crypto)
    markets = ok(get(mmats_api, "/api/v1/markets"))
    assert markets[0]["market"] == "crypto" and SYMBOL in markets[0]["last_prices"]
    bars = ok(get(mmats_api, "/api/v1/bars", params={"symbol": SYMBOL, "limit": 30}))
    assert len(bars["bars"]) == 30 and bars["bars"][0]["t"] < bars["bars"][-1]["t"]
    problem_of(get(mmats_api, "/api/v1/bars", params={"symbol": "NOPE"}), 404)


def test_sse_stream(mmats_api: Api) -> None:
    events: dict[str, list[dict[str, Any]]] = {}
    ids: list[int] = []
    with mmats_api.anon.stream("GET", "/api/v1/stream", params={"max_seconds": 4}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        event, data = "", ""
        for line in r.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif line.startswith("id:"):
                ids.append(int(line[3:]))
            elif not line and event:
                events.setdefault(event, []).append(json.loads(data))
                event, data = "", ""
    assert ids == sorted(ids)
    assert "status" in events and "prices" in events and "equity" in events
    st = events["status"][-1]
    assert st["environment"] == "PAPER" and "equity" in st and "kill_switch" in st
    assert SYMBOL in events["prices"][-1]["prices"]
    problem_of(get(mmats_api, "/api/v1/stream", params={"topics": "bogus"}), 422)
    # reconnect with Last-Event-ID: only newer events
    with mmats_api.anon.stream("GET", "/api/v1/stream", params={"max_seconds": 1},
                               headers={"Last-Event-ID": str(ids[-1])}) as r:
        newer = [int(line[3:]) for line in r.iter_lines() if line.startswith("id:")]
    assert all(i > ids[-1] for i in newer)


# ------------------------------------------------------------------------- mode and kill switch (last)


def test_mode_two_step_confirmation(mmats_api: Api) -> None:
    assert ok(post(mmats_api, "/api/v1/mode", {"mode": "advisory", "reason": "e2e"}))["mode"] == "advisory"
    assert ok(get(mmats_api, "/api/v1/mode"))["mode"] == "advisory"
    step1 = ok(post(mmats_api, "/api/v1/mode", {"mode": "operator"}))
    assert step1["confirmation_required"] and step1["confirm_token"] and step1["mode"] == "advisory"
    problem_of(post(mmats_api, "/api/v1/mode", {"mode": "operator", "confirm_token": "nope"}), 400)
    step1 = ok(post(mmats_api, "/api/v1/mode", {"mode": "operator"}))
    done = ok(post(mmats_api, "/api/v1/mode", {"mode": "operator", "confirm_token": step1["confirm_token"]}))
    assert done["mode"] == "operator" and not done["confirmation_required"]


def test_kill_switch_soft_reset_hard(mmats_api: Api) -> None:
    r = ok(post(mmats_api, "/api/v1/kill-switch", {"state": "SOFT", "reason": "e2e soft"}))
    assert r["kill_switch"]["state"] == "SOFT" and r["kill_switch"]["reason"] == "e2e soft"
    ks = ok(get(mmats_api, "/api/v1/kill-switch"))
    assert ks["state"] == "SOFT" and ks["since"] and ks["history"][-1]["state"] == "SOFT"
    assert ok(post(mmats_api, "/api/v1/kill-switch", {"state": "RUNNING", "reason": "e2e reset"}))["kill_switch"][
        "state"] == "RUNNING"
    mmats_api.wait_for(lambda: ok(get(mmats_api, "/api/v1/positions"))["total"] > 0, 120, 0.5, "a position to flatten")
    t0 = time.perf_counter()
    r = ok(post(mmats_api, "/api/v1/kill-switch", {"state": "HARD", "reason": "e2e hard"}))
    assert r["kill_switch"]["state"] == "HARD" and r["flatten"] is not None
    mmats_api.wait_for(lambda: ok(get(mmats_api, "/api/v1/positions"))["total"] == 0, 5, 0.05, "flat after HARD")
    assert time.perf_counter() - t0 < 5
    assert ok(get(mmats_api, "/api/v1/status"))["kill_switch"]["state"] == "HARD"
    # new orders are refused while HARD
    r = ok(post(mmats_api, "/api/v1/orders", {"symbol": SYMBOL, "side": "BUY", "target_exposure": 0.05}))
    assert r["status"] == "rejected" and any("KillSwitch" in x for x in r["reasons"])


# ---------------------------------------------------------------------------------------- secrets


def test_no_secret_in_any_response_or_log(mmats_api: Api) -> None:
    import ray

    token = mmats_api.token
    assert SEEN, "the module's responses were recorded"
    assert not [t for t in SEEN if token in t], "the API token appeared in a response"
    # every log file of this Ray session (Serve proxy, controller, replicas, workers)
    session_dir = Path(ray._private.worker._global_node.get_session_dir_path())  # type: ignore[attr-defined]
    leaked = []
    for f in session_dir.joinpath("logs").rglob("*"):
        if f.is_file() and f.stat().st_size < 200_000_000:
            with f.open("rb") as fh:
                if token.encode() in fh.read():
                    leaked.append(str(f))
    assert not leaked, f"the API token appears in log files: {leaked}"
