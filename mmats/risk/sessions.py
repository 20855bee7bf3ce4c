"""Trading windows per market, in each venue's own time zone.

A US stock session is 09:30-16:00 *New York* time, which is 14:30 UTC in winter and 13:30 UTC in
summer; computing it in UTC would be wrong for half the year. Windows are therefore stored as local
wall-clock times plus an IANA zone and converted with ``zoneinfo`` at check time. Checks are cached
per minute (every boundary is on a whole minute), so the hot path is one integer division.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Window:
    """Open from ``start`` (inclusive) to ``end`` (exclusive), minutes after local midnight, on ``days``."""

    days: frozenset[int]
    start_min: int
    end_min: int
    tz: str

    def contains(self, local: datetime) -> bool:
        if local.weekday() not in self.days:
            return False
        m = local.hour * 60 + local.minute
        return self.start_min <= m < self.end_min


_WEEKDAYS = frozenset(range(5))
_ALL_DAYS = frozenset(range(7))

SESSION_PRESETS: dict[str, tuple[Window, ...]] = {
    "always": (Window(_ALL_DAYS, 0, 1440, "UTC"),),
    "us_equity": (Window(_WEEKDAYS, 9 * 60 + 30, 16 * 60, "America/New_York"),),
    "us_equity_extended": (Window(_WEEKDAYS, 4 * 60, 20 * 60, "America/New_York"),),
    # Forex closes for the weekend Fri 22:00 UTC and reopens Sun 22:00 UTC.
    "forex": (
        Window(frozenset({6}), 22 * 60, 1440, "UTC"),
        Window(frozenset({0, 1, 2, 3}), 0, 1440, "UTC"),
        Window(frozenset({4}), 0, 22 * 60, "UTC"),
    ),
}


def parse_days(spec: str | list[str]) -> frozenset[int]:
    """``"mon-fri"``, ``"sat"`` or a list of day names; ValueError names the bad token."""
    tokens = [spec] if isinstance(spec, str) else list(spec)
    out: set[int] = set()
    for tok in tokens:
        for part in str(tok).lower().replace(" ", "").split(","):
            if "-" in part:
                a, b = part.split("-", 1)
                if a not in DAY_NAMES or b not in DAY_NAMES:
                    raise ValueError(f"unknown day range {part!r} (use mon..sun)")
                i, j = DAY_NAMES.index(a), DAY_NAMES.index(b)
                out.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
            elif part in DAY_NAMES:
                out.add(DAY_NAMES.index(part))
            else:
                raise ValueError(f"unknown day {part!r} (use mon..sun)")
    return frozenset(out)


def parse_hhmm(text: str, allow_24: bool = False) -> int:
    try:
        h, m = str(text).split(":")
        hours, minutes = int(h), int(m)
    except ValueError:
        raise ValueError(f"{text!r} is not HH:MM") from None
    if allow_24 and (hours, minutes) == (24, 0):
        return 1440
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise ValueError(f"{text!r} is not a time of day")
    return hours * 60 + minutes


class Session:
    """Whether a market is open at a UTC timestamp, memoised for the current minute."""

    __slots__ = ("_last_minute", "_last_open", "_zones", "name", "windows")

    def __init__(self, name: str, windows: tuple[Window, ...]) -> None:
        self.name = name
        self.windows = windows
        self._zones = {w.tz: ZoneInfo(w.tz) for w in windows}
        self._last_minute = -1
        self._last_open = False

    def is_open(self, ts_ns: int) -> bool:
        minute = ts_ns // 60_000_000_000
        if minute == self._last_minute:
            return self._last_open
        moment = datetime.fromtimestamp(minute * 60, tz=UTC)
        locals_ = {tz: moment.astimezone(zone) for tz, zone in self._zones.items()}
        result = any(w.contains(locals_[w.tz]) for w in self.windows)
        self._last_minute = minute
        self._last_open = result
        return result
