"""Trading windows: US stock session across DST, forex weekend close, crypto 24/7, custom windows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mmats.model import MarketType, datetime_to_ns
from mmats.risk.limits import TradingHours
from mmats.risk.sessions import SESSION_PRESETS, Session, parse_days, parse_hhmm


def ns(*args: int) -> int:
    return datetime_to_ns(datetime(*args, tzinfo=UTC))  # type: ignore[misc]


@pytest.mark.parametrize(("when", "is_open"), [
    # winter (EST, UTC-5): 09:30-16:00 New York = 14:30-21:00 UTC
    ((2024, 3, 8, 14, 29), False), ((2024, 3, 8, 14, 30), True), ((2024, 3, 8, 20, 59), True),
    ((2024, 3, 8, 21, 0), False),
    # DST began Sunday 2024-03-10: (EDT, UTC-4) 13:30-20:00 UTC
    ((2024, 3, 11, 13, 29), False), ((2024, 3, 11, 13, 30), True), ((2024, 3, 11, 14, 29), True),
    ((2024, 3, 11, 19, 59), True), ((2024, 3, 11, 20, 0), False),
    # DST ended Sunday 2024-11-03: back to 14:30 UTC
    ((2024, 11, 1, 13, 30), True), ((2024, 11, 4, 13, 30), False), ((2024, 11, 4, 14, 30), True),
    # weekend
    ((2024, 3, 9, 15, 0), False), ((2024, 3, 10, 15, 0), False),
])
def test_us_equity_session_follows_new_york_time(when: tuple[int, ...], is_open: bool) -> None:
    s = Session("us_equity", SESSION_PRESETS["us_equity"])
    assert s.is_open(ns(*when)) is is_open


@pytest.mark.parametrize(("when", "is_open"), [
    ((2024, 3, 8, 21, 59), True),   # Friday before the close
    ((2024, 3, 8, 22, 0), False),   # Friday 22:00 UTC: closed
    ((2024, 3, 9, 12, 0), False),   # Saturday
    ((2024, 3, 10, 21, 59), False),  # Sunday before the open
    ((2024, 3, 10, 22, 0), True),   # Sunday 22:00 UTC: open
    ((2024, 3, 13, 3, 0), True),    # mid-week night
])
def test_forex_weekend_close(when: tuple[int, ...], is_open: bool) -> None:
    assert Session("forex", SESSION_PRESETS["forex"]).is_open(ns(*when)) is is_open


def test_crypto_never_closes_and_results_are_cached_per_minute() -> None:
    s = Session("always", SESSION_PRESETS["always"])
    assert all(s.is_open(ns(2024, 3, d, h, 0)) for d in range(1, 15) for h in range(24))
    us = Session("us_equity", SESSION_PRESETS["us_equity"])
    t = ns(2024, 3, 11, 13, 30)
    assert us.is_open(t) and us.is_open(t + 59_999_999_999) and not us.is_open(t - 1)


def test_custom_windows_and_defaults() -> None:
    th = TradingHours.model_validate({"markets": {"stock": [
        {"days": "mon-fri", "start": "08:00", "end": "16:30", "tz": "Europe/London"}]}})
    name, windows = th.windows(MarketType.STOCK)
    s = Session(name, windows)
    assert s.is_open(ns(2024, 7, 1, 7, 0))      # 08:00 BST
    assert not s.is_open(ns(2024, 7, 1, 15, 30))  # 16:30 BST
    assert s.is_open(ns(2024, 1, 8, 16, 0))     # 16:00 GMT
    assert TradingHours().windows(MarketType.CRYPTO)[0] == "always"
    assert parse_days("fri-mon") == frozenset({4, 5, 6, 0}) and parse_days(["sat", "sun"]) == frozenset({5, 6})
    assert parse_hhmm("24:00", allow_24=True) == 1440
    with pytest.raises(ValueError):
        parse_hhmm("24:00")
    with pytest.raises(ValueError):
        parse_days("funday")
