"""Numbers, times and lists for people: the one formatting module of the ``mmats`` command line.

Money at its currency's precision with thousands separators (``99,141.11 USDT``), times as ISO UTC to
the second, durations in the unit that fits the value, quantities and ratios without float noise, lists
as aligned tables. Machines get ``--json`` (the data as it came, unformatted) instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

#: Decimals a currency is shown with; anything not listed is shown with 2.
CURRENCY_DECIMALS = {"JPY": 0, "KRW": 0, "BTC": 8, "ETH": 8, "XBT": 8}

DASH = "–"


def _num(v: Any) -> Decimal | None:
    if v is None or v == "":
        return None
    try:
        d = Decimal(str(v))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def money(v: Any, currency: str | None = None, signed: bool = False) -> str:
    """``99141.11422601`` -> ``99,141.11 USDT`` (the currency's decimals; ``signed`` shows ``+``)."""
    d = _num(v)
    if d is None:
        return DASH
    places = CURRENCY_DECIMALS.get((currency or "").upper(), 2)
    text = f"{d:{'+' if signed else ''},.{places}f}"
    if text.lstrip("+-").strip("0.,") == "":  # -0.00 -> 0.00
        text = text.lstrip("+-")
        text = ("+" if signed else "") + text
    return f"{text} {currency}" if currency else text


def number(v: Any, places: int = 4) -> str:
    """A ratio or a quantity without float noise: ``0.5848028243623333`` -> ``0.5848``; ``3.0`` -> ``3``."""
    d = _num(v)
    if d is None:
        return DASH
    text = f"{d:,.{places}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def pct(v: Any, places: int = 2) -> str:
    """A fraction as a percentage: ``0.0123`` -> ``1.23 %``."""
    d = _num(v)
    return DASH if d is None else f"{float(d) * 100:.{places}f} %"


def when(v: Any) -> str:
    """Epoch seconds, epoch nanoseconds, a datetime or an ISO string -> ``2024-01-01T00:00:05Z``."""
    if v is None or v == "":
        return DASH
    if isinstance(v, datetime):
        dt = v.astimezone(UTC) if v.tzinfo else v.replace(tzinfo=UTC)
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        secs = float(v) / 1e9 if abs(float(v)) > 1e14 else float(v)  # nanoseconds vs seconds
        dt = datetime.fromtimestamp(secs, UTC)
    else:
        text = str(v)
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return text
        dt = dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(seconds: Any) -> str:
    """Seconds in the unit that fits: ``42 s``, ``12.5 min``, ``3.2 h``, ``4.1 d``."""
    d = _num(seconds)
    if d is None:
        return DASH
    s = float(d)
    if abs(s) < 60:
        return f"{s:.0f} s" if abs(s) >= 10 or s == int(s) else f"{s:.1f} s"
    if abs(s) < 3600:
        return f"{s / 60:.1f} min"
    if abs(s) < 86400 * 2:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def table(rows: Iterable[Sequence[Any]], head: Sequence[str], indent: str = "  ",
          right: Iterable[int] = ()) -> list[str]:
    """Aligned columns (``right``: indexes of right-aligned, numeric columns)."""
    body = [[DASH if c is None else str(c) for c in r] for r in rows]
    heads = [str(h) for h in head]
    widths = [max(len(r[i]) for r in [heads, *body]) for i in range(len(heads))]
    ralign = set(right)
    out = []
    for r in [heads, *body]:
        cells = [c.rjust(w) if i in ralign else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        out.append((indent + "  ".join(cells)).rstrip())
    return out


def as_json(doc: Any) -> str:
    """For machines: the data unchanged (Decimals and times as their strings), no NaN."""

    def default(o: Any) -> Any:
        if isinstance(o, float) and not math.isfinite(o):
            return None
        return str(o)

    return json.dumps(doc, indent=1, default=default)
