"""US stock bars through the real alpaca-py client from a fake Alpaca on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from adapters.alpaca_market_data import AlpacaMarketData
from mmats.errors import ValidationError
from mmats.execution.routing import VenueError
from mmats.model import MarketType, Timeframe
from tests.fixtures.fake_alpaca import FakeAlpaca
from tests.fixtures.venue_clock import freeze_at_minute_start

KEY, SECRET = "alpaca-test-key", "alpaca-test-secret"
MINUTE_MS = 60_000


@pytest.fixture()
def venue() -> Iterator[FakeAlpaca]:
    with FakeAlpaca(KEY, SECRET, {"AAPL": "190.00", "MSFT": "410.00"}) as fake:
        freeze_at_minute_start(fake)  # only the test closes candles
        now = fake.server_time_ms()
        for k in range(30, 0, -1):  # half an hour of history, one price a minute
            fake.set_price("AAPL", f"{190 + k / 100:.2f}", at_ms=now - k * MINUTE_MS)
        yield fake


def source(fake: FakeAlpaca, secret: str = SECRET, timeout_s: float = 2.0) -> AlpacaMarketData:
    return AlpacaMarketData.connect(KEY, secret, api_base=fake.base_url, timeout_s=timeout_s)


def test_instruments_from_the_asset_and_unknown_symbols_named(venue: FakeAlpaca) -> None:
    aapl = source(venue).instruments(["AAPL"])["AAPL"]
    assert (aapl.market, aapl.quote_currency, aapl.price_precision, aapl.lot_size) == (
        MarketType.STOCK, "USD", 2, Decimal("0.000000001"))
    venue.assets["MSFT"]["fractionable"] = False
    assert source(venue).instruments(["MSFT"])["MSFT"].lot_size == Decimal(1), "whole shares only"
    with pytest.raises(ValidationError, match="alpaca: no asset ZZZZ"):
        source(venue).subscribe(["AAPL", "ZZZZ"], Timeframe.M1)


def test_the_forming_bar_is_dropped_on_the_venues_clock(venue: FakeAlpaca) -> None:
    assert venue.include_forming, "the fake, like Alpaca, sends the bar still forming"
    md = source(venue)
    before = venue.server_time_ms()
    bars = md.latest_bars("AAPL", Timeframe.M1, 5)
    after = venue.server_time_ms()
    assert len(bars) == 5
    last_open = int(bars[-1].ts.timestamp() * 1000)
    assert last_open in {(t // MINUTE_MS - 1) * MINUTE_MS for t in (before, after)}
    assert [b.ts for b in bars] == sorted(b.ts for b in bars)
    # our clock ten minutes ahead of Alpaca's: the measured offset still keeps the forming bar out
    venue.clock_offset_ms = -10 * MINUTE_MS
    behind = source(venue)
    newest = int(behind.latest_bars("AAPL", Timeframe.M1, 1)[-1].ts.timestamp() * 1000)
    assert newest <= (venue.server_time_ms() // MINUTE_MS - 1) * MINUTE_MS


def test_a_later_bar_closes_a_bar_before_our_clock_estimate_says_so(venue: FakeAlpaca) -> None:
    md = source(venue)
    newest = md.latest_bars("AAPL", Timeframe.M1, 1)[-1].ts  # the offset is measured now, then kept
    forming_open = (venue.server_time_ms() // MINUTE_MS) * MINUTE_MS
    venue.clock_offset_ms += MINUTE_MS  # Alpaca's clock moves a minute on; ours has not measured it again
    venue.set_price("AAPL", "191.50")  # a trade in the new minute: the previous bar has ended
    closed = md.latest_bars("AAPL", Timeframe.M1, 1)[-1]
    assert int(closed.ts.timestamp() * 1000) == forming_open and closed.ts > newest
    assert md.now_ns() // 1_000_000 < forming_open + MINUTE_MS, "our estimate alone would have kept it out"


def test_bars_since_and_the_market_clock(venue: FakeAlpaca) -> None:
    md = source(venue)
    since = datetime.fromtimestamp(venue.server_time_ms() / 1000, tz=UTC) - timedelta(minutes=10)
    bars = md.bars_since("AAPL", Timeframe.M1, since)
    assert 9 <= len(bars) <= 10 and all(b.ts >= since - timedelta(minutes=1) for b in bars)
    assert md.market_open() is True
    venue.market_open = False
    assert source(venue).market_open() is False, "a closed market: no bar is expected, not a stale feed"


def test_errors_name_the_venue_and_status_and_never_wait_out_alpacas_retries(venue: FakeAlpaca) -> None:
    with pytest.raises(VenueError, match=r"alpaca: clock unavailable \(HTTP 401\)"):
        source(venue, secret="wrong").now_ns()
    md = source(venue)
    venue.fail_next("/v2/stocks/bars", 429, count=1)
    t0 = time.monotonic()
    with pytest.raises(VenueError, match=r"bars for AAPL 1m unavailable \(HTTP 429\)"):
        md.latest_bars("AAPL", Timeframe.M1)
    assert time.monotonic() - t0 < 2.0, "alpaca-py's own 3 s retry sleeps are off"
    venue.hang_next("/v2/stocks/bars", 1.0)
    with pytest.raises(VenueError, match="ReadTimeout"):
        source(venue, timeout_s=0.3).latest_bars("AAPL", Timeframe.M1)
    assert md.latest_bars("AAPL", Timeframe.M1), "the next poll works again"
