"""USDT-margined perpetual swaps through the real ccxt client (``adapters.ccxt_swap``), against a fake
Binance USDⓈ-M venue on 127.0.0.1: leverage set per symbol before the first order, reduce-only closes,
positions and funding read back from the venue."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from adapters.ccxt_swap import CcxtSwapVenue
from mmats.execution.venue import VenueClient, VenueError
from mmats.model import Environment, InstrumentKind, Order, OrderType, Side
from tests.fixtures.fake_binance_futures import FakeBinanceFutures

KEY, SECRET = "mmats-test-key", "mmats-test-secret"
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


@pytest.fixture()
def fake() -> Iterator[FakeBinanceFutures]:
    venue = FakeBinanceFutures(KEY, SECRET, wallet="10000", prices={"BTCUSDT": "30000", "ETHUSDT": "2000"})
    venue.start()
    try:
        yield venue
    finally:
        venue.stop()


def swap(fake: FakeBinanceFutures, leverage: dict[str, int] | None = None) -> CcxtSwapVenue:
    venue = CcxtSwapVenue.connect_swap("binance", api_key=KEY, secret=SECRET, environment=Environment.LIVE,
                                       symbols=[BTC, ETH], leverage=leverage or {BTC: 5, ETH: 3},
                                       api_base=fake.base_url, timeout_ms=2000)
    venue.exchange.enableRateLimit = False
    return venue


def order(cid: str, qty: str, side: Side, symbol: str = BTC, reduce_only: bool = False) -> Order:
    return Order(cid, symbol, side, Decimal(qty), OrderType.MARKET, strategy_id="s1", reduce_only=reduce_only)


def test_instruments_are_perpetuals_at_the_configured_leverage(fake: FakeBinanceFutures) -> None:
    venue: VenueClient = swap(fake)
    inst = venue.instruments([BTC, ETH])
    assert inst[BTC].kind is InstrumentKind.PERPETUAL and inst[BTC].leverage == 5.0
    assert inst[BTC].initial_margin == pytest.approx(0.2) and inst[ETH].leverage == 3.0
    assert (inst[BTC].lot_size, inst[BTC].quote_currency, inst[BTC].min_notional) == (Decimal("0.001"), "USDT",
                                                                                       Decimal(5))
    assert venue.account_check().can_trade
    with pytest.raises(ValueError, match="BASE/QUOTE:SETTLE"):
        CcxtSwapVenue(swap(fake).exchange, name="x", environment=Environment.LIVE, symbols=["BTC/USDT"],
                      leverage={"BTC/USDT": 2})
    with pytest.raises(ValueError, match="no leverage for"):
        CcxtSwapVenue(swap(fake).exchange, name="x", environment=Environment.LIVE, symbols=[BTC], leverage={})


def test_leverage_is_set_once_per_symbol_before_its_first_order(fake: FakeBinanceFutures) -> None:
    venue = swap(fake)
    first = venue.place(order("s1-entry-1", "0.010", Side.BUY))
    assert first.status.value == "FILLED" and first.filled_quantity == Decimal("0.010")
    venue.place(order("s1-entry-2", "0.005", Side.BUY))
    venue.place(order("s1-entry-3", "0.1", Side.SELL, ETH))
    calls = [(m, p, r.get("symbol"), r.get("leverage")) for m, p, r in fake.requests if m == "POST"]
    assert calls == [("POST", "/fapi/v1/leverage", "BTCUSDT", "5"), ("POST", "/fapi/v1/order", "BTCUSDT", None),
                     ("POST", "/fapi/v1/order", "BTCUSDT", None), ("POST", "/fapi/v1/leverage", "ETHUSDT", "3"),
                     ("POST", "/fapi/v1/order", "ETHUSDT", None)]
    assert fake.leverage == {"BTCUSDT": 5, "ETHUSDT": 3}
    sent = [r for m, p, r in fake.requests if p == "/fapi/v1/order"]
    assert [r["newClientOrderId"] for r in sent] == ["s1-entry-1", "s1-entry-2", "s1-entry-3"]
    assert all("reduceOnly" not in r for r in sent)


def test_positions_are_the_venues_signed_and_closes_are_reduce_only(fake: FakeBinanceFutures) -> None:
    venue = swap(fake)
    venue.place(order("s1-entry-1", "0.020", Side.BUY))
    venue.place(order("s2-entry-1", "0.5", Side.SELL, ETH))
    assert sorted((p.symbol, p.quantity) for p in venue.positions()) == [(BTC, Decimal("0.020")),
                                                                         (ETH, Decimal("-0.5"))]
    closed = venue.place(order("s1-close-1", "0.020", Side.SELL, reduce_only=True))
    assert closed.status.value == "FILLED"
    close_sent = [r for m, p, r in fake.requests if p == "/fapi/v1/order"][-1]
    assert close_sent["newClientOrderId"] == "s1-close-1" and close_sent["reduceOnly"] == "true"
    assert [(p.symbol, p.quantity) for p in venue.positions()] == [(ETH, Decimal("-0.5"))]
    # the position is gone: a second reduce-only close is refused by the venue, not turned into a short
    with pytest.raises(VenueError, match="ReduceOnly Order is rejected") as err:
        venue.place(order("s1-close-2", "0.020", Side.SELL, reduce_only=True))
    assert not err.value.retryable
    assert fake.positions["BTCUSDT"][0] == 0


def test_funding_is_read_back_from_the_venue(fake: FakeBinanceFutures) -> None:
    venue = swap(fake)
    venue.place(order("s1-entry-1", "0.1", Side.BUY))  # long 0.1 BTC at 30,000
    venue.place(order("s2-entry-1", "1", Side.SELL, ETH))  # short 1 ETH at 2,000
    before = venue.balances()["USDT"]
    fake.settle_funding("0.0001")
    payments = venue.funding(0)
    assert sorted((p.symbol, p.amount) for p in payments) == [(BTC, Decimal("-0.30000000")),  # the long pays
                                                              (ETH, Decimal("0.20000000"))]  # the short receives
    assert venue.balances()["USDT"] == before - Decimal("0.1")
    assert venue.funding(payments[-1].ts_ns + 1_000_000) == []  # since: only what came after


def test_live_execution_books_the_venues_funding_once_across_a_restart(fake: FakeBinanceFutures) -> None:
    from mmats.execution.live import LiveExecution

    venue = swap(fake)
    instruments = venue.instruments([BTC, ETH])
    live = LiveExecution({"binance": (venue, [BTC, ETH])}, instruments, Decimal(10_000))
    venue.place(order("s1-entry-1", "0.1", Side.BUY))
    fake.settle_funding("0.0001")
    live.reconcile_venues()
    funding, canceled = live.drain_margin()
    assert [(p.symbol, p.amount) for p in funding] == [(BTC, Decimal("-0.30000000"))] and canceled == []
    assert live.ledger.balances["USDT"] == Decimal("9999.70000000")  # the fill itself is not booked here
    live.reconcile_venues()
    assert live.drain_margin() == ([], [])  # read again, booked once
    # a restarted router gets the journaled payment back and does not book the venue's copy a second time
    again = LiveExecution({"binance": (venue, [BTC, ETH])}, instruments, Decimal(10_000))
    again.restore([], [], funding)
    again.reconcile_venues()
    assert again.drain_margin() == ([], []) and again.ledger.balances["USDT"] == Decimal("9999.70000000")


def test_live_config_wires_a_swap_venue_and_its_feed(fake: FakeBinanceFutures) -> None:
    from actors.supervisor import live_venue_specs
    from adapters.ccxt_market_data import CcxtMarketData
    from mmats.model import Timeframe
    from mmats.system_config import SystemConfig

    cfg = SystemConfig.model_validate({
        "environment": "LIVE", "feeds": [{"venue": "bn", "source": "ccxt", "exchange": "binance", "market": "crypto",
                                           "symbols": [BTC], "api_base": fake.base_url}],
        "venues": [{"name": "bn", "kind": "ccxt", "exchange": "binance", "symbols": [BTC], "api_base": fake.base_url}],
        "instruments": {BTC: {"leverage": 7}}})
    live = live_venue_specs(cfg)
    assert live is not None and live["venues"][0]["leverage"] == {BTC: 7}
    # the feed reads the swap markets (BASE/QUOTE:SETTLE), not spot
    feed = CcxtMarketData.connect("binance", api_base=fake.base_url, timeout_ms=2000, swaps=True)
    feed.subscribe([BTC], Timeframe.M1)
    assert feed.instruments([BTC])[BTC].kind is InstrumentKind.PERPETUAL
