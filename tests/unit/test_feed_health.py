"""When a live feed's venue counts as alive (the stale-data trigger's rule)."""

from __future__ import annotations

from mmats.feed_health import LiveFeedHealth

M = 60 * 10**9  # one-minute candles


def test_any_recent_symbol_keeps_the_venue_alive_a_thin_one_does_not_make_it_stale() -> None:
    health = LiveFeedHealth(M)
    now = 100 * M
    assert health.alive({"BTC": 98 * M, "THIN": 40 * M}, now, True)  # BTC's newest ended 1 min ago
    assert not health.alive({"BTC": 96 * M, "THIN": 40 * M}, now, True)  # nothing closed for 3 periods
    assert not health.alive({}, now, True)


def test_a_closed_market_and_the_first_periods_after_it_reopens_are_not_staleness() -> None:
    health = LiveFeedHealth(M)
    friday = {"EUR_USD": 10 * M}
    assert health.alive(friday, 3000 * M, False)  # weekend: no candle expected
    assert health.alive(friday, 4000 * M, True)  # just reopened: the first candle is not closed yet
    assert health.alive(friday, 4002 * M, True)
    assert not health.alive(friday, 4003 * M, True)  # two periods after the open and still nothing
    assert health.alive({"EUR_USD": 4001 * M}, 4003 * M, True)
