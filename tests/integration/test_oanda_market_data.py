"""Forex candles through the real oandapyV20 client from a fake OANDA v20 on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from adapters.oanda_market_data import OandaMarketData, forex_market_open
from mmats.errors import ValidationError
from mmats.execution.routing import VenueError
from mmats.model import MarketType, Timeframe
from tests.fixtures.fake_oanda import FakeOanda
from tests.fixtures.venue_clock import freeze_at_minute_start

TOKEN, ACCOUNT = "oanda-test-token-0001", "101-004-1234567-001"
MINUTE_MS = 60_000


@pytest.fixture()
def venue() -> Iterator[FakeOanda]:
    with FakeOanda(TOKEN, ACCOUNT, {"EUR_USD": "1.10000", "USD_JPY": "150.000"}) as fake:
        freeze_at_minute_start(fake)  # only the test closes candles
        yield fake


def source(fake: FakeOanda, token: str = TOKEN) -> OandaMarketData:
    return OandaMarketData.connect(token, ACCOUNT, api_base=fake.base_url, timeout_s=2.0)


def test_instruments_carry_the_accounts_precision_and_pip(venue: FakeOanda) -> None:
    inst = source(venue).instruments(["EUR_USD", "USD_JPY"])
    eur, jpy = inst["EUR_USD"], inst["USD_JPY"]
    assert (eur.market, eur.quote_currency, eur.price_precision, eur.pip_size, eur.lot_size) == (
        MarketType.FOREX, "USD", 5, Decimal("0.0001"), Decimal(1))
    assert (jpy.quote_currency, jpy.price_precision, jpy.pip_size) == ("JPY", 3, Decimal("0.01"))
    with pytest.raises(ValidationError, match="no instrument GBP_ZZZ in account"):
        source(venue).subscribe(["EUR_USD", "GBP_ZZZ"], Timeframe.M1)


def test_only_complete_candles_are_bars(venue: FakeOanda) -> None:
    md = source(venue)
    md.subscribe(["EUR_USD"], Timeframe.M1)
    now = venue.server_time_ms()
    venue.set_price("EUR_USD", "1.10200")  # a tick in the forming candle: it must not show
    bars = md.latest_bars("EUR_USD", Timeframe.M1, 3)
    assert len(bars) == 3
    opens = [int(b.ts.timestamp() * 1000) for b in bars]
    assert opens == sorted(opens) and opens[-1] == (now // MINUTE_MS - 1) * MINUTE_MS
    assert all(b.close == 1.1 for b in bars), "the forming candle's tick is not in any bar"
    venue.clock_offset_ms += MINUTE_MS  # that candle completes
    assert md.latest_bars("EUR_USD", Timeframe.M1)[-1].close == 1.102


def test_bars_since_for_a_restarted_strategy(venue: FakeOanda) -> None:
    since = datetime.fromtimestamp(venue.server_time_ms() / 1000, tz=UTC) - timedelta(minutes=5)
    bars = source(venue).bars_since("USD_JPY", Timeframe.M1, since)
    assert 4 <= len(bars) <= 5 and all(b.ts >= since - timedelta(minutes=1) for b in bars)
    assert bars[-1].close == 150.0


def test_errors_name_the_venue_what_and_the_http_status(venue: FakeOanda) -> None:
    with pytest.raises(VenueError, match=r"oanda: account instruments unavailable \(HTTP 401\)"):
        source(venue, token="wrong-token").instruments(["EUR_USD"])
    md = source(venue)
    venue.fail_next("/v3/instruments/EUR_USD/candles", 503)
    with pytest.raises(VenueError, match=r"candles for EUR_USD 1m unavailable \(HTTP 503\)"):
        md.latest_bars("EUR_USD", Timeframe.M1)
    venue.hang_next("/v3/instruments/EUR_USD/candles", 1.0)
    slow = OandaMarketData.connect(TOKEN, ACCOUNT, api_base=venue.base_url, timeout_s=0.3)
    with pytest.raises(VenueError, match="ReadTimeout"):
        slow.latest_bars("EUR_USD", Timeframe.M1)
    assert md.latest_bars("EUR_USD", Timeframe.M1), "the next poll works again"


def test_the_weekly_close_is_not_a_stale_feed() -> None:
    friday = datetime(2026, 12, 4, 20, 59, tzinfo=UTC)
    assert forex_market_open(friday) and not forex_market_open(friday + timedelta(minutes=2))
    assert not forex_market_open(datetime(2026, 12, 5, 12, tzinfo=UTC))  # Saturday
    assert not forex_market_open(datetime(2026, 12, 6, 21, 59, tzinfo=UTC))
    assert forex_market_open(datetime(2026, 12, 6, 22, 0, tzinfo=UTC))  # Sunday open
    assert forex_market_open(datetime(2026, 12, 2, 3, tzinfo=UTC))  # a Wednesday night
