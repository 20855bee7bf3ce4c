"""What every live bar source checks the same way: request limits, UTC times, venue bars, step sizes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from mmats.errors import DataError, ValidationError
from mmats.model import Bar

__all__ = ["decimal_places", "require_limit", "require_utc", "venue_bar"]


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


def decimal_places(step: Decimal) -> int:
    """The decimals a tick or lot size implies (0.01 -> 2, 1 -> 0, 1E+1 -> 0)."""
    return max(0, -int(step.normalize().as_tuple().exponent))
