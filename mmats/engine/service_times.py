"""How long an actor spends on each kind of message: the busy time that decides whether its mailbox
keeps up. A mailbox wait seen from outside (a hop's latency) says that a receiver is late; its service
time per message says why (the work, or the number of messages)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ServiceTimes:
    """Messages handled and seconds spent per kind (``signals``, ``account``, ``journal`` ...)."""

    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def record(self, kind: str, seconds: float) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.seconds[kind] = self.seconds.get(kind, 0.0) + seconds

    def to_dict(self) -> dict[str, Any]:
        """Per kind: messages, total seconds and the mean in milliseconds."""
        return {k: {"messages": n, "seconds": round(self.seconds[k], 4),
                    "mean_ms": round(1000 * self.seconds[k] / n, 4) if n else 0.0}
                for k, n in sorted(self.counts.items())}
