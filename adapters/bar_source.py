"""What every live bar source checks the same way: request limits, UTC times, venue bars, step sizes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from mmats.errors import DataError, ValidationError
from mmats.model import Bar

__all__ = ["InvalidBarLog", "decimal_places", "require_limit", "require_utc", "venue_bar"]


def require_limit(limit: int) -> None:
    if limit < 1:
        raise ValidationError(f"limit must be >= 1, got {limit}")


def require_utc(since: datetime) -> None:
    if since.tzinfo is None:
        raise ValidationError(f"since {since.isoformat()}: naive datetime (MMATS is UTC everywhere)")


def venue_bar(venue: str, symbol: str, ts: datetime, o: Any, h: Any, low: Any, c: Any, v: Any) -> Bar:
    """A bar through the kernel's validation; a bad one is a DataError naming the venue, symbol and time
    (never repaired: an inconsistent candle is the venue's problem to see, not ours to hide)."""
    try:
        return Bar(symbol, ts, float(o), float(h), float(low), float(c), float(v or 0.0))
    except (ValidationError, TypeError, ValueError) as exc:
        raise DataError(f"{venue}: bar {symbol} {ts.isoformat()}: {exc}") from exc


class InvalidBarLog:
    """A candle that fails validation is skipped (never repaired) and reported once.

    Raising instead would stall its symbol: the feed asks again from the same time on every poll, and the
    same bad candle would fail every answer until it left the window. Skipping leaves a gap the strategy
    sees; ``drain_invalid`` hands each message to the feed once, which counts it as a live error.
    """

    name: str
    _invalid: list[str]
    _invalid_seen: set[tuple[str, datetime]]

    def valid_bar(self, symbol: str, ts: datetime, o: Any, h: Any, low: Any, c: Any, v: Any) -> Bar | None:
        try:
            return venue_bar(self.name, symbol, ts, o, h, low, c, v)
        except DataError as exc:
            seen = self.__dict__.setdefault("_invalid_seen", set())
            if (symbol, ts) not in seen:
                seen.add((symbol, ts))
                self.__dict__.setdefault("_invalid", []).append(str(exc))
            return None

    def drain_invalid(self) -> list[str]:
        out = self.__dict__.get("_invalid", [])
        self._invalid = []
        return out


def decimal_places(step: Decimal) -> int:
    """The decimals a tick or lot size implies (0.01 -> 2, 1 -> 0, 1E+1 -> 0)."""
    return max(0, -int(step.normalize().as_tuple().exponent))
