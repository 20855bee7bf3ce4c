"""Venue chaos: a LIVE system on real Ray against fake Binance, fake OANDA and fake Alpaca at once.

The fakes (tests/fixtures, on 127.0.0.1, driven by the real ccxt / oandapyV20 / alpaca-py clients in
the actors) fail a share of ALL requests at random: 503 before acting, 503 after acting (a lost answer),
a hang past the client timeout after acting, a dropped connection after acting. Meanwhile the order
router actor is killed several times (``ray.kill`` with restart: a new process that must rebuild from
the system of record and ask the venues).

Orders enter where the risk gatekeeper hands them over (``OrderRouterActor.apply_commands``, the very
message it sends), round-robin over the three venues, buy then sell per symbol: the venue path is what
is under test, and injecting there gives thousands of orders in minutes instead of waiting for minute
candles. At the end, with the faults off and every UNKNOWN settled:
- duplicates: venue orders beyond the first for one client order id (any venue);
- lost: orders MMATS sent whose final state disagrees with the venue (missing from the book, still
  UNKNOWN, REJECTED in the book but held by the venue, or a different filled quantity);
- position_mismatches: symbols whose book position differs from the venue's (read with the real SDKs);
- reconcile_adjustments: position differences the reconciliation had to book (should be 0 too).
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np  # noqa: E402
import ray  # noqa: E402
from tqdm import tqdm  # noqa: E402

from actors.supervisor import SupervisorActor  # noqa: E402
from adapters.secrets import SecretStore  # noqa: E402
from adapters.venues import open_venue  # noqa: E402
from mmats.messages import OrderCommands  # noqa: E402
from mmats.model import Environment, Order, OrderType, Side  # noqa: E402
from tests.fixtures.fake_alpaca import FakeAlpaca  # noqa: E402
from tests.fixtures.fake_binance import FakeBinance  # noqa: E402
from tests.fixtures.fake_oanda import FakeOanda  # noqa: E402

OANDA_TOKEN, OANDA_ACCOUNT = "oanda-chaos-token-0001", "001-001-7654321-001"
#: symbol -> (venue, quantity of one order)
SYMBOLS = {"BTC/USDT": ("binance", Decimal("0.001")), "EUR_USD": ("oanda", Decimal("1000")),
           "AAPL": ("alpaca", Decimal("1"))}


def venue_orders_by_client_id(fakes: dict[str, Any]) -> dict[str, list[tuple[str, Decimal]]]:
    """Every order each fake holds, by client order id: (venue, filled quantity)."""
    out: dict[str, list[tuple[str, Decimal]]] = {}
    with fakes["binance"]._lock:
        for o in fakes["binance"]._orders_by_id.values():
            out.setdefault(o.client_order_id, []).append(("binance", o.executed_qty))
    with fakes["oanda"]._lock:
        for o in fakes["oanda"].orders.values():
            if o.client_id:
                out.setdefault(o.client_id, []).append(("oanda", abs(o.filled_units)))
    with fakes["alpaca"]._lock:
        for o in fakes["alpaca"].orders.values():
            out.setdefault(o.client_order_id, []).append(("alpaca", o.filled_qty))
    return out


def config(fakes: dict[str, Any], home: str, timeout_s: float) -> dict[str, Any]:
    feed = {"timeframe": "1m", "poll_s": 1.0, "warmup_bars": 5, "stale_after_s": 3600}
    venue = {"timeout_s": timeout_s, "breaker": {"failures": 8, "open_s": 1.0}}
    return {
        "environment": "LIVE", "mode": "advisory", "allow_operator": True, "initial_cash": 1_000_000.0,
        "system_name": f"chaos{uuid.uuid4().hex[:6]}", "home": home, "persist": True,
        "router_error_limit": 1_000_000,
        "feeds": [
            {**feed, "venue": "binance", "source": "ccxt", "exchange": "binance",
             "api_base": fakes["binance"].base_url, "symbols": ["BTC/USDT"]},
            {**feed, "venue": "oanda", "source": "oanda", "market": "forex", "account_id": OANDA_ACCOUNT,
             "api_base": fakes["oanda"].base_url, "symbols": ["EUR_USD"]},
            {**feed, "venue": "alpaca", "source": "alpaca", "market": "stock",
             "api_base": fakes["alpaca"].base_url, "symbols": ["AAPL"]},
        ],
        "venues": [
            {**venue, "name": "binance", "kind": "ccxt", "exchange": "binance", "symbols": ["BTC/USDT"],
             "api_base": fakes["binance"].base_url},
            {**venue, "name": "oanda", "kind": "oanda", "account_id": OANDA_ACCOUNT, "symbols": ["EUR_USD"],
             "api_base": fakes["oanda"].base_url},
            {**venue, "name": "alpaca", "kind": "alpaca", "symbols": ["AAPL"], "api_base": fakes["alpaca"].base_url,
             "rate_limit_per_s": 1000},
        ],
        "live": {"reconcile_every_s": 2.0, "unknown_grace_s": 3.0},
        "strategies": [],
    }


def venue_positions(home: str, fakes: dict[str, Any]) -> dict[str, Decimal]:
    """What each venue holds, read through the real SDKs (the faults are off by then)."""
    out: dict[str, Decimal] = {}
    specs = {"binance": {"kind": "ccxt", "exchange": "binance"},
             "oanda": {"kind": "oanda", "account_id": OANDA_ACCOUNT}, "alpaca": {"kind": "alpaca"}}
    for name, extra in specs.items():
        symbols = [s for s, (v, _) in SYMBOLS.items() if v == name]
        venue = open_venue({"name": name, "symbols": symbols, "api_base": fakes[name].base_url, "home": home,
                            "environment": "LIVE", **extra})
        held = {p.symbol: p.quantity for p in venue.positions()}
        for s in symbols:
            out[s] = held.get(s, Decimal(0))
        venue.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", type=int, default=2000)
    ap.add_argument("--fault-rate", type=float, default=0.12, help="share of venue requests failed at random")
    ap.add_argument("--kills", type=int, default=4, help="router actor kills spread over the run")
    ap.add_argument("--timeout-s", type=float, default=0.5, help="venue request timeout (hangs last 2x this)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--settle-s", type=float, default=120.0, help="longest wait for every UNKNOWN to settle")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    home = tempfile.mkdtemp(prefix="mmats-chaos-")
    store = SecretStore(home, Environment.LIVE)
    for name, value in {"binance.api_key": "bk", "binance.secret": "bs", "oanda.token": OANDA_TOKEN,
                        "alpaca.key_id": "ak", "alpaca.secret_key": "as"}.items():
        store.set(name, value)
    binance = FakeBinance("bk", "bs", balances={"USDT": "10000000"}, prices={"BTCUSDT": "30000"})
    oanda = FakeOanda(OANDA_TOKEN, OANDA_ACCOUNT, {"EUR_USD": "1.10000"}, balance="10000000")
    alpaca = FakeAlpaca("ak", "as", {"AAPL": "190.00"})
    fakes = {"binance": binance, "oanda": oanda, "alpaca": alpaca}
    for fake in fakes.values():
        fake.start()
    alpaca.cash = Decimal("10000000")
    binance.can_withdraw = False  # a trade-only key, as docs/venues.md asks: LIVE refuses one that can withdraw
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    sup = SupervisorActor.options(name=f"chaos{uuid.uuid4().hex[:6]}_supervisor").remote(
        config(fakes, home, args.timeout_s))
    ray.get(sup.build.remote(), timeout=120)
    handles = ray.get(sup.handles.remote())
    router = handles["router"]
    for i, fake in enumerate(fakes.values()):
        fake.set_chaos(args.fault_rate, seed=args.seed + i, hang_s=args.timeout_s * 2)
    requests_before = {n: len(f.requests) for n, f in fakes.items()}
    kill_at = sorted(rng.sample(range(args.orders // 10, args.orders - args.orders // 10), args.kills))
    sent: list[Order] = []
    latencies: list[float] = []
    kills = 0
    symbols = list(SYMBOLS)
    t_start = time.time()
    for i in tqdm(range(args.orders), desc="orders", unit="order", file=sys.stderr):
        symbol = symbols[i % len(symbols)]
        side = Side.BUY if (i // len(symbols)) % 2 == 0 else Side.SELL
        now = time.time_ns()
        order = Order(f"chaos{i:05d}x{args.seed}", symbol, side, SYMBOLS[symbol][1], OrderType.MARKET,
                      strategy_id="chaos", signal_id=str(i), created_ns=now, updated_ns=now)
        sent.append(order)
        t0 = time.perf_counter()
        ray.get(router.apply_commands.remote(OrderCommands([], [(order, [])], now)), timeout=120)
        latencies.append((time.perf_counter() - t0) * 1000)
        if kills < len(kill_at) and i == kill_at[kills]:
            ray.kill(router, no_restart=False)  # a new process, rebuilt from the system of record
            kills += 1
    run_s = time.time() - t_start
    faults = sum(f.faults for f in fakes.values())
    venue_requests = sum(len(f.requests) - requests_before[n] for n, f in fakes.items())
    for fake in fakes.values():
        fake.set_chaos(0.0)
        fake.clear_faults()

    def settled() -> bool:
        stats = ray.get(router.stats.remote())
        return stats["unknown"] == 0 and stats["open"] == 0

    deadline = time.time() + args.settle_s
    while time.time() < deadline and not settled():
        time.sleep(0.5)
    time.sleep(5)  # two more reconciliation passes with the venues quiet
    book = {o["client_order_id"]: o for o in ray.get(router.orders.remote())}
    at_venue = venue_orders_by_client_id(fakes)
    duplicates = sum(len(v) - 1 for k, v in at_venue.items() if k.startswith("chaos") and len(v) > 1)
    lost: list[str] = []
    for order in sent:
        cid = order.client_order_id
        mine, held = book.get(cid), at_venue.get(cid, [])
        venue_filled = sum((q for _, q in held), Decimal(0))
        if mine is None:
            lost.append(f"{cid}: not in the book")
        elif mine["status"] == "UNKNOWN":
            lost.append(f"{cid}: still UNKNOWN")
        elif mine["status"] == "REJECTED" and held:
            lost.append(f"{cid}: REJECTED in the book, held by {held[0][0]}")
        elif Decimal(mine["filled_quantity"]) != venue_filled:
            lost.append(f"{cid}: book filled {mine['filled_quantity']}, venue {venue_filled}")
    book_positions = {s: Decimal(q) for s, q in ray.get(router.book_positions.remote()).items()}
    end_positions = venue_positions(home, fakes)
    mismatches = [f"{s}: book {book_positions.get(s, 0)} venue {end_positions[s]}"
                  for s in SYMBOLS if book_positions.get(s, Decimal(0)) != end_positions[s]]
    vs = ray.get(router.venue_status.remote())
    statuses: dict[str, int] = {}
    rejections: dict[str, int] = {}  # why, by the reason's kind (its first word) and venue
    for o in book.values():
        statuses[o["status"]] = statuses.get(o["status"], 0) + 1
        if o["status"] == "REJECTED":
            kind = str(o["reject_reason"]).split(":")[0]
            why = f"{kind} {SYMBOLS[o['symbol']][0]}"
            rejections[why] = rejections.get(why, 0) + 1
    for line in lost[:20] + mismatches:
        print(line, file=sys.stderr)
    result = {
        "orders": len(sent), "duplicates": duplicates, "lost": len(lost), "position_mismatches": len(mismatches),
        "faults": faults, "venue_requests": venue_requests,
        "fault_share": round(faults / max(1, venue_requests), 3), "router_kills": kills,
        "submit_p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "submit_p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "reconcile_adjustments": vs["adjustments"], "final_statuses": statuses, "rejections": rejections,
        "run_s": round(run_s, 1),
        "breaker_opens": {v["venue"]: v["breaker_opens"] for v in vs["venues"]},
    }
    ray.get(sup.down.remote())
    ray.shutdown()
    for fake in fakes.values():
        fake.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
