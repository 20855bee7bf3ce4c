"""Runtime conditions the gatekeeper acts on besides signals: router error streaks and stale feeds.

The kill switch's own triggers (``max_consecutive_errors``, ``stale_data_s``) live in
``mmats.risk.monitor``; these decide the rest: when a streak of router errors downgrades operator mode to
advisory, and when a feed's heartbeat turns stale or fresh again (one alert per change, not one per
heartbeat).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class RouterErrorStreak:
    """Consecutive router errors; ``limit`` of them in a row downgrade operator mode to advisory."""

    limit: int = 5
    count: int = 0

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"router_error_limit must be at least 1, got {self.limit}")

    def on_error(self) -> bool:
        """Count one; True when the streak has reached the limit (the caller downgrades if operator)."""
        self.count += 1
        return self.count >= self.limit

    def on_ok(self) -> None:
        self.count = 0


@dataclass(slots=True)
class StaleFeeds:
    """Which feeds are stale now, from their heartbeats (``FeedStatus``)."""

    stale: set[str] = field(default_factory=set)

    def on_status(self, venue: str, last_update_ns: int, done: bool, stale: bool, now_ns: int) -> str | None:
        """The alert message when ``venue`` turns stale, else None. A finished feed is never stale."""
        if done or not stale:
            self.stale.discard(venue)
            return None
        if venue in self.stale:
            return None
        self.stale.add(venue)
        return f"feed {venue}: no update for {(now_ns - last_update_ns) / 1e9:.0f} s"
