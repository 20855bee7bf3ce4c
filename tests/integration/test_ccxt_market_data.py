"""Closed bars through the real ccxt client from a fake Binance on 127.0.0.1: never the forming candle."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from ccxt.base.decimal_to_precision import DECIMAL_PLACES, SIGNIFICANT_DIGITS

from adapters.ccxt_client import make_exchange
from adapters.ccxt_market_data import CcxtMarketData
from mmats.errors import ValidationError
from mmats.execution.routing import VenueError
from mmats.model import Timeframe
from tests.fixtures.fake_binance import FakeBinance
from tests.fixtures.venue_clock import freeze_at_minute_start

BTC = "BTC/USDT"
MINUTE_MS = 60_000


@pytest.fixture()
def venue() -> Iterator[FakeBinance]:
    with FakeBinance("k", "s", prices={"BTCUSDT": "30000", "ETHUSDT": "2000"}) as fake:
        freeze_at_minute_start(fake)  # only the test closes candles
        yield fake


def feed(fake: FakeBinance, **options: object) -> CcxtMarketData:
    exchange = make_exchange("binance", api_base=fake.base_url, timeout_ms=2_000, options=options)
    exchange.enableRateLimit = False
    return CcxtMarketData(exchange)


def last_closed_open_ms(now_ms: int) -> int:
    return (now_ms // MINUTE_MS - 1) * MINUTE_MS


def test_latest_bars_are_closed_oldest_first_and_skip_the_forming_candle(venue: FakeBinance) -> None:
    md = feed(venue)
    md.subscribe([BTC], Timeframe.M1)
    before = venue.server_time_ms()
    bars = md.latest_bars(BTC, Timeframe.M1, 3)
    after = venue.server_time_ms()
    assert len(bars) == 3
    opens = [int(b.ts.timestamp() * 1000) for b in bars]
    assert opens == sorted(opens) and all(t % MINUTE_MS == 0 for t in opens)
    assert opens[1] - opens[0] == MINUTE_MS
    assert opens[-1] in {last_closed_open_ms(before), last_closed_open_ms(after)}, "the forming minute is never a bar"
    assert bars[-1].close == 30000.0 and bars[-1].ts.tzinfo is UTC


def test_the_venue_clock_decides_what_is_closed_not_ours(venue: FakeBinance) -> None:
    venue.clock_offset_ms = -10 * MINUTE_MS  # our clock runs ten minutes ahead of the venue's
    measured = feed(venue)
    venue_now = venue.server_time_ms()
    (bar,) = measured.latest_bars(BTC, Timeframe.M1, 1)
    assert int(bar.ts.timestamp() * 1000) <= last_closed_open_ms(venue.server_time_ms())
    assert int(bar.ts.timestamp() * 1000) >= last_closed_open_ms(venue_now)
    # without the measured difference, the venue's forming candle would pass for a closed bar
    naive = feed(venue, adjustForTimeDifference=False)
    (wrong,) = naive.latest_bars(BTC, Timeframe.M1, 1)
    assert int(wrong.ts.timestamp() * 1000) > last_closed_open_ms(venue.server_time_ms())


def test_bars_since_replays_history_for_a_restarted_strategy(venue: FakeBinance) -> None:
    md = feed(venue)
    since = datetime.fromtimestamp(venue.server_time_ms() / 1000, tz=UTC) - timedelta(minutes=5)
    bars = md.bars_since(BTC, Timeframe.M1, since)
    assert 4 <= len(bars) <= 5 and all(b.ts >= since for b in bars)
    with pytest.raises(ValidationError, match="naive datetime"):
        md.bars_since(BTC, Timeframe.M1, since.replace(tzinfo=None))


def test_subscribe_names_an_unknown_symbol_or_timeframe(venue: FakeBinance) -> None:
    md = feed(venue)
    with pytest.raises(ValidationError, match="no market DOGE/USDT"):
        md.subscribe([BTC, "DOGE/USDT"], Timeframe.M1)
    md.subscribe([BTC, "ETH/USDT"], Timeframe.H1)
    assert md.subscriptions == {(BTC, Timeframe.H1), ("ETH/USDT", Timeframe.H1)}
    md.unsubscribe(["ETH/USDT"], Timeframe.H1)
    assert md.subscriptions == {(BTC, Timeframe.H1)}
    with pytest.raises(ValidationError, match="limit must be >= 1"):
        md.latest_bars(BTC, Timeframe.M1, 0)


def test_a_venue_outage_is_an_error_naming_the_symbol(venue: FakeBinance) -> None:
    md = feed(venue)
    md.subscribe([BTC], Timeframe.M1)
    venue.fail_next("/api/v3/klines", "GET", 503)
    with pytest.raises(VenueError, match="candles for BTC/USDT 1m unavailable: ExchangeNotAvailable"):
        md.latest_bars(BTC, Timeframe.M1)
    assert md.latest_bars(BTC, Timeframe.M1), "the next poll works again"


def test_an_inconsistent_candle_is_skipped_and_reported_once_naming_venue_and_time(venue: FakeBinance) -> None:
    md = feed(venue)
    t = last_closed_open_ms(venue.server_time_ms()) - 2 * MINUTE_MS
    good = [t + MINUTE_MS, 100.0, 101.0, 99.0, 100.0, 1.0]
    bad = [[t, 100.0, 99.0, 98.0, 100.5, 1.0], good, [t + 2 * MINUTE_MS, 100.0, 101.0, 99.0, 100.0, 1.0]]
    bars = md._closed(BTC, Timeframe.M1, bad)  # high < open in the first: skipped, never repaired
    assert [int(b.ts.timestamp() * 1000) for b in bars][:1] == [t + MINUTE_MS]  # the rest still comes
    (message,) = md.drain_invalid()
    assert re.search(r"binance: bar BTC/USDT .*inconsistent OHLC", message)
    md._closed(BTC, Timeframe.M1, bad)
    assert md.drain_invalid() == [], "the same candle is reported once"


def test_a_repeated_candle_row_is_one_bar(venue: FakeBinance) -> None:
    md = feed(venue)
    t = last_closed_open_ms(venue.server_time_ms()) - 2 * MINUTE_MS
    rows = [[t, 100.0, 101.0, 99.0, 100.0, 1.0], [t, 100.0, 102.0, 99.0, 101.0, 2.0],
            [t + MINUTE_MS, 101.0, 101.0, 100.0, 100.5, 1.0]]
    bars = md._closed(BTC, Timeframe.M1, rows)
    assert [(int(b.ts.timestamp() * 1000), b.close) for b in bars] == [(t, 101.0), (t + MINUTE_MS, 100.5)]


def test_instruments_are_read_in_the_exchange_precision_mode(venue: FakeBinance) -> None:
    md = feed(venue)
    tick = md.instruments([BTC])[BTC]  # Binance: TICK_SIZE, steps
    assert (tick.tick_size, tick.price_precision, tick.lot_size, tick.quantity_precision, tick.min_notional) == (
        None, 2, Decimal("0.00001"), 5, Decimal(5))
    # the same market from an exchange that counts decimal places: 2 and 5 are counts, not steps of 2 and 5
    md.exchange.precisionMode = DECIMAL_PLACES
    md.exchange.markets[BTC]["precision"] = {"price": 2, "amount": 5}
    assert md.instruments([BTC])[BTC] == tick
    md.exchange.precisionMode = SIGNIFICANT_DIGITS  # no fixed step: refused by name, never guessed
    with pytest.raises(VenueError, match="significant digits"):
        md.instruments([BTC])
    with pytest.raises(ValidationError, match="no market DOGE/USDT"):
        md.instruments([BTC, "DOGE/USDT"])
