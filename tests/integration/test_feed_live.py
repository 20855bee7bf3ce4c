"""A PAPER system on live prices: a feed of source ccxt polls a fake Binance on 127.0.0.1 (real ccxt in
the feed actor), strategies trade the closed candles, the paper broker fills at the venue's prices."""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.supervisor import SupervisorActor
from tests.fixtures.fake_binance import FakeBinance
from tests.fixtures.venue_clock import freeze_at_minute_start

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

STRATEGY = f"{Path(__file__).resolve().parents[1] / 'fixtures' / 'live_strategies.py'}:HoldsHalf"
MINUTE_MS = 60_000


@pytest.fixture()
def venue() -> Iterator[FakeBinance]:
    with FakeBinance("k", "s", prices={"BTCUSDT": "30000", "ETHUSDT": "2000"}) as fake:
        yield fake


def live_config(venue: FakeBinance | None, feed_override: dict[str, Any] | None = None,
                **feed: Any) -> dict[str, Any]:
    name = f"t{uuid.uuid4().hex[:10]}"
    spec = feed_override or {"venue": "binance", "source": "ccxt", "exchange": "binance",
                             "api_base": venue.base_url if venue else None, "symbols": ["BTC/USDT"],
                             "warmup_bars": 30, **feed}
    return {
        "environment": "PAPER", "mode": "operator", "allow_operator": True, "initial_cash": 10_000.0,
        "system_name": name, "home": tempfile.mkdtemp(prefix=f"mmats-{name}-"), "persist": False,
        "feeds": [{"timeframe": "1m", "poll_s": 0.1, **spec}],
        "strategies": [{"id": "half", "ref": STRATEGY, "symbols": ["BTC/USDT"], "allocation": 1.0}],
    }


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def shut_down(sup: Any, handles: dict[str, Any]) -> None:
    """Graceful down when the system was built, then every actor of this test's system killed."""
    if handles:
        ray.get(sup.down.remote())
        for h in [handles["gatekeeper"], handles["router"], handles["portfolio"], *handles["feeds"].values(),
                  *handles["strategies"].values()]:
            ray.kill(h)
    ray.kill(sup)


def next_minute(fake: FakeBinance, price: str) -> None:
    """The venue's clock moves one candle on: the forming candle closes, a new one starts at ``price``."""
    fake.clock_offset_ms += MINUTE_MS
    fake.set_price("BTCUSDT", price)


def test_paper_trades_closed_live_candles_at_the_venue_prices(venue: FakeBinance) -> None:
    freeze_at_minute_start(venue)
    sup = SupervisorActor.options(name=f"{uuid.uuid4().hex[:8]}_supervisor").remote(live_config(venue))
    handles: dict[str, Any] = {}
    try:
        ray.get(sup.build.remote(), timeout=60)
        handles = ray.get(sup.handles.remote())
        feed = handles["feeds"]["binance"]
        history = ray.get(feed.get_history.remote(["BTC/USDT"], 100))
        assert len(history) == 30, "warm-up: the last 30 closed candles, as history only"
        assert ray.get(feed.stats.remote())["published"] == 0, "old candles are never traded on"
        ray.get(sup.start.remote())
        time.sleep(0.5)
        assert ray.get(feed.stats.remote())["published"] == 0, "the forming candle is not a bar"

        next_minute(venue, "30100")  # the candle at 30000 closes: the strategy's first bar
        wait_for("the first live bar", lambda: ray.get(feed.stats.remote())["published"] >= 1)
        wait_for("the order", lambda: ray.get(handles["router"].orders.remote()))
        next_minute(venue, "30200")  # paper fills at the next candle's open, as in a backtest
        status = wait_for("the fill", lambda: (s := ray.get(handles["portfolio"].status.remote()))["positions"]
                          and s)
        (pos,) = status["positions"]
        assert pos["symbol"] == "BTC/USDT" and Decimal(pos["quantity"]) > 0
        assert Decimal("30000") <= Decimal(pos["avg_price"]) <= Decimal("30200") * Decimal("1.001")
        # the venue's own lot size (0.00001) reached the paper broker, not a default
        assert Decimal(pos["quantity"]) % Decimal("0.00001") == 0
        stats = ray.get(feed.stats.remote())
        assert stats["source"] == "ccxt" and stats["live_errors"] == 0 and not stats["stale"]
        strategies = {s["id"]: s for s in ray.get(sup.list_strategies.remote())}
        assert strategies["half"]["bars_seen"] >= 2

        venue.fail_next("/api/v3/klines", "GET", 503, count=3)  # an outage: counted, then it recovers
        wait_for("the outage to be counted", lambda: ray.get(feed.stats.remote())["live_errors"] >= 3)
        before = ray.get(feed.stats.remote())["published"]
        next_minute(venue, "30300")
        wait_for("bars after the outage", lambda: ray.get(feed.stats.remote())["published"] > before)
        assert "ExchangeNotAvailable" in ray.get(feed.stats.remote())["live_last_error"]
        times = [b[1] for b in ray.get(feed.get_history.remote(["BTC/USDT"], 100))]
        assert times == sorted(set(times)), "no candle published twice, none out of order"
    finally:
        shut_down(sup, handles)


def test_an_unknown_live_symbol_fails_the_build_by_name(venue: FakeBinance) -> None:
    cfg = live_config(venue, symbols=["DOGE/USDT"])
    cfg["strategies"] = []
    sup = SupervisorActor.options(name=f"{uuid.uuid4().hex[:8]}_supervisor").remote(cfg)
    try:
        with pytest.raises(ray.exceptions.RayTaskError, match="feed binance: binance: no market DOGE/USDT"):
            ray.get(sup.build.remote(), timeout=60)
    finally:
        ray.kill(sup)


def test_a_forex_feed_loads_its_token_in_its_own_process(tmp_path: Path) -> None:
    from adapters.secrets import SecretStore
    from mmats.model import Environment
    from tests.fixtures.fake_oanda import FakeOanda

    token, account = "oanda-test-token-0001", "101-004-1234567-001"
    with FakeOanda(token, account, {"EUR_USD": "1.10000"}) as fake:
        freeze_at_minute_start(fake)
        cfg = live_config(None, feed_override={
            "venue": "oanda", "source": "oanda", "market": "forex", "account_id": account,
            "api_base": fake.base_url, "symbols": ["EUR_USD"], "warmup_bars": 10})
        cfg["home"], cfg["strategies"] = str(tmp_path), []
        missing = SupervisorActor.options(name=f"{uuid.uuid4().hex[:8]}_supervisor").remote(cfg)
        try:
            with pytest.raises(ray.exceptions.RayTaskError, match="mmats secrets set oanda.token"):
                ray.get(missing.build.remote(), timeout=60)
        finally:
            ray.kill(missing)
        SecretStore(tmp_path, Environment.PAPER).set("oanda.token", token)
        sup = SupervisorActor.options(name=f"{uuid.uuid4().hex[:8]}_supervisor").remote(cfg)
        handles: dict[str, Any] = {}
        try:
            ray.get(sup.build.remote(), timeout=60)
            handles = ray.get(sup.handles.remote())
            feed = handles["feeds"]["oanda"]
            assert len(ray.get(feed.get_history.remote(["EUR_USD"], 100))) == 10
            ray.get(sup.start.remote())
            fake.clock_offset_ms += MINUTE_MS
            fake.set_price("EUR_USD", "1.10100")
            fake.clock_offset_ms += MINUTE_MS  # the candle holding 1.10100 completes
            wait_for("a complete candle", lambda: ray.get(feed.stats.remote())["published"] >= 1)
            assert ray.get(feed.last_prices.remote())["EUR_USD"] == 1.101
            assert ray.get(feed.stats.remote())["live_errors"] == 0
        finally:
            shut_down(sup, handles)
