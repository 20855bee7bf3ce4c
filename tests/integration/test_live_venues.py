"""A LIVE system on real Ray trading on fake Binance, fake OANDA and fake Alpaca at the same time.

Real SDKs (ccxt, oandapyV20, alpaca-py) in the feed and router actors, talking to fakes on 127.0.0.1;
keys from the LIVE secret store; operator mode through the two-step switch. Stopping one venue opens
its circuit breaker without disturbing the other two, and the breaker closes when the venue is back.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.supervisor import SupervisorActor
from adapters.secrets import SecretStore
from mmats.model import Environment
from tests.fixtures.fake_alpaca import FakeAlpaca
from tests.fixtures.fake_binance import FakeBinance
from tests.fixtures.fake_oanda import FakeOanda
from tests.fixtures.venue_clock import MINUTE_MS, freeze_at_minute_start

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

FLIPPER = f"{Path(__file__).resolve().parents[1] / 'fixtures' / 'live_strategies.py'}:Flipper"
OANDA_TOKEN, OANDA_ACCOUNT = "oanda-live-token-0001", "001-001-1234567-001"


@pytest.fixture()
def fakes() -> Iterator[dict[str, Any]]:
    with FakeBinance("bk", "bs", balances={"USDT": "100000"}, prices={"BTCUSDT": "30000"}) as binance, \
            FakeOanda(OANDA_TOKEN, OANDA_ACCOUNT, {"EUR_USD": "1.10000"}) as oanda, \
            FakeAlpaca("ak", "as", {"AAPL": "190.00"}) as alpaca:
        binance.can_withdraw = False  # a trade-only key: LIVE refuses one that can withdraw
        binance.auth_on_wall_clock = True  # the test moves the market clock by minutes; signatures stay valid
        for fake in (binance, oanda, alpaca):
            freeze_at_minute_start(fake)
        yield {"binance": binance, "oanda": oanda, "alpaca": alpaca}


def store_keys(home: Path) -> None:
    store = SecretStore(home, Environment.LIVE)
    for name, value in {"binance.api_key": "bk", "binance.secret": "bs", "oanda.token": OANDA_TOKEN,
                        "alpaca.key_id": "ak", "alpaca.secret_key": "as"}.items():
        store.set(name, value)


def live_config(fakes: dict[str, Any], home: Path) -> dict[str, Any]:
    name = f"t{uuid.uuid4().hex[:10]}"
    feed = {"timeframe": "1m", "poll_s": 0.1, "warmup_bars": 5}
    breaker = {"failures": 3, "open_s": 1.0}
    return {
        "environment": "LIVE", "mode": "advisory", "allow_operator": True, "initial_cash": 10_000.0,
        "system_name": name, "home": str(home), "persist": True,
        "feeds": [
            {**feed, "venue": "binance", "source": "ccxt", "exchange": "binance",
             "api_base": fakes["binance"].base_url, "symbols": ["BTC/USDT"]},
            {**feed, "venue": "oanda", "source": "oanda", "market": "forex", "account_id": OANDA_ACCOUNT,
             "api_base": fakes["oanda"].base_url, "symbols": ["EUR_USD"]},
            {**feed, "venue": "alpaca", "source": "alpaca", "market": "stock",
             "api_base": fakes["alpaca"].base_url, "symbols": ["AAPL"]},
        ],
        "venues": [
            {"name": "binance", "kind": "ccxt", "exchange": "binance", "symbols": ["BTC/USDT"],
             "api_base": fakes["binance"].base_url, "timeout_s": 1.0, "breaker": breaker},
            {"name": "oanda", "kind": "oanda", "account_id": OANDA_ACCOUNT, "symbols": ["EUR_USD"],
             "api_base": fakes["oanda"].base_url, "timeout_s": 1.0, "breaker": breaker},
            {"name": "alpaca", "kind": "alpaca", "symbols": ["AAPL"], "api_base": fakes["alpaca"].base_url,
             "timeout_s": 1.0, "breaker": breaker, "rate_limit_per_s": 50},
        ],
        "live": {"reconcile_every_s": 1.0, "unknown_grace_s": 2.0},
        "strategies": [
            {"id": "btc", "ref": FLIPPER, "symbols": ["BTC/USDT"], "allocation": 0.3},
            {"id": "eur", "ref": FLIPPER, "symbols": ["EUR_USD"], "allocation": 0.3},
            {"id": "aapl", "ref": FLIPPER, "symbols": ["AAPL"], "allocation": 0.3},
        ],
    }


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0,
             state: Callable[[], Any] | None = None) -> Any:
    deadline = time.time() + timeout
    last: Any = None
    while time.time() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r}; state: {state() if state else '-'})")


def orders_of(router: Any, symbol: str) -> list[tuple[str, str, str]]:
    """What a failed wait reports: each order's side, status and reason."""
    return [(o["side"], o["status"], o["reject_reason"]) for o in ray.get(router.orders.remote(symbol=symbol))]


def next_minute(fake: Any, symbol: str, price: str) -> None:
    fake.clock_offset_ms += MINUTE_MS
    fake.set_price(symbol, price)


def filled(router: Any, symbol: str) -> list[dict[str, Any]]:
    return [o for o in ray.get(router.orders.remote(symbol=symbol)) if o["status"] == "FILLED"]


def settle(handles: dict[str, Any]) -> None:
    """The Flipper decides on the position it is told about: before the next bar, let the portfolio catch up
    with the router's book and its account push reach the strategies (otherwise a bar can arrive while a
    strategy still sees the old position, and the order the test waits for is never asked for)."""
    router, portfolio = handles["router"], handles["portfolio"]

    def nonzero(rows: dict[str, Decimal]) -> dict[str, Decimal]:
        return {k: v for k, v in rows.items() if v}

    wait_for("the portfolio to match the book", lambda: nonzero(
        {p["symbol"]: Decimal(p["quantity"]) for p in ray.get(portfolio.status.remote())["positions"]}) == nonzero(
        {s: Decimal(q) for s, q in ray.get(router.book_positions.remote()).items()}), timeout=20)
    time.sleep(1.0)


def venue_state(sup: Any, name: str) -> dict[str, Any]:
    return next(v for v in ray.get(sup.status.remote())["venues"] if v["venue"] == name)


def test_live_on_three_venues_one_outage_isolated_by_its_breaker(fakes: dict[str, Any], tmp_path: Path) -> None:
    store_keys(tmp_path)
    sup = SupervisorActor.options(name=f"{uuid.uuid4().hex[:8]}_supervisor").remote(live_config(fakes, tmp_path))
    handles: dict[str, Any] = {}
    try:
        ray.get(sup.build.remote(), timeout=90)
        handles = ray.get(sup.handles.remote())
        router, gk = handles["router"], handles["gatekeeper"]
        token = ray.get(gk.request_operator.remote())["token"]
        ray.get(gk.confirm_operator.remote(token))
        ray.get(sup.start.remote())
        assert {v["venue"]: v["breaker"] for v in ray.get(sup.status.remote())["venues"]} == \
            {"binance": "closed", "oanda": "closed", "alpaca": "closed"}

        moves = {"binance": ("BTCUSDT", "BTC/USDT"), "oanda": ("EUR_USD", "EUR_USD"), "alpaca": ("AAPL", "AAPL")}
        prices = {"binance": ["30100", "30200", "30300", "30400"], "oanda": ["1.10100", "1.10200", "1.10300",
                                                                              "1.10400"],
                  "alpaca": ["191.00", "192.00", "193.00", "194.00"]}
        for venue, (fake_symbol, _) in moves.items():  # first closed candle everywhere: BUY half
            next_minute(fakes[venue], fake_symbol, prices[venue][0])
        for venue, (_, symbol) in moves.items():
            wait_for(f"a filled order on {venue}", lambda s=symbol: filled(router, s), timeout=40)
        assert fakes["oanda"].position("EUR_USD") > 0
        book = ray.get(router.book_positions.remote())
        assert Decimal(book["EUR_USD"]) == fakes["oanda"].position("EUR_USD")

        settle(handles)
        fakes["oanda"].stop()  # one venue goes away
        wait_for("oanda's breaker to open", lambda: venue_state(sup, "oanda")["breaker"] == "open", timeout=20)
        for venue in ("binance", "alpaca"):  # the other two keep trading: CLOSE on the next bar
            next_minute(fakes[venue], moves[venue][0], prices[venue][1])
        for venue in ("binance", "alpaca"):
            symbol = moves[venue][1]
            wait_for(f"{venue} to trade during oanda's outage", lambda s=symbol: len(filled(router, s)) >= 2,
                     timeout=40)
            assert venue_state(sup, venue)["breaker"] == "closed"

        fakes["oanda"].start()  # back on the same port, with its state
        wait_for("oanda's breaker to close", lambda: venue_state(sup, "oanda")["breaker"] == "closed", timeout=20)
        settle(handles)
        next_minute(fakes["oanda"], "EUR_USD", prices["oanda"][1])
        wait_for("oanda to trade again", lambda: len(filled(router, "EUR_USD")) >= 2, timeout=40)
        assert fakes["oanda"].position("EUR_USD") == 0

        settle(handles)
        for venue in ("binance", "alpaca", "oanda"):  # long again everywhere, then the kill switch
            next_minute(fakes[venue], moves[venue][0], prices[venue][2])
        for venue, (_, symbol) in moves.items():
            wait_for(f"a third fill on {venue}", lambda s=symbol: len(filled(router, s)) >= 3, timeout=40,
                     state=lambda s=symbol: (orders_of(router, s), ray.get(sup.status.remote())["venues"],
                                             ray.get(handles["gatekeeper"].get_alerts.remote())[-5:]))
        result = ray.get(gk.set_kill_switch.remote("HARD", "test"), timeout=60)
        assert result["flatten"]["venues"] == {"binance": "ok", "oanda": "ok", "alpaca": "ok"}
        wait_for("every venue flat", lambda: all(Decimal(q) == 0 for q in
                                                  ray.get(router.book_positions.remote()).values()), timeout=20)
        assert fakes["oanda"].position("EUR_USD") == 0
        status = ray.get(sup.status.remote())
        assert all(v["orders_unknown"] == 0 for v in status["venues"])
    finally:
        if handles:
            ray.get(sup.down.remote())
            for h in [handles["gatekeeper"], handles["router"], handles["portfolio"], *handles["feeds"].values(),
                      *handles["strategies"].values()]:
                ray.kill(h)
        ray.kill(sup)
