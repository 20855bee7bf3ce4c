"""Bounded windows of recent records (signals, decisions, alerts, kill-switch history) kept by actors.

An actor shows the recent past from memory (the dashboard polls it) while the full history is in the
tables and the journal. Trimming on every append would copy the list each time, so the window lets it
grow to ``slack`` times its size and then keeps the newest ``size``: appends stay O(1) amortised and the
memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class RecordWindow(Generic[T]):
    __slots__ = ("_items", "size", "slack")

    def __init__(self, size: int, items: Iterable[T] = (), slack: float = 1.2) -> None:
        if size < 1:
            raise ValueError(f"a record window holds at least 1 record, got {size}")
        if slack < 1:
            raise ValueError(f"slack must be at least 1, got {slack}")
        self.size = size
        self.slack = slack
        self._items: list[T] = list(items)[-size:]

    def append(self, item: T) -> None:
        self._items.append(item)
        self._trim()

    def extend(self, items: Iterable[T]) -> None:
        self._items.extend(items)
        self._trim()

    def __iadd__(self, items: Iterable[T]) -> RecordWindow[T]:
        self.extend(items)
        return self

    def _trim(self) -> None:
        if len(self._items) > self.size * self.slack:
            del self._items[:-self.size]

    def last(self, limit: int = 0) -> list[T]:
        """The newest ``limit`` records, oldest first (0: all of the window)."""
        if limit <= 0:
            return self._items[-self.size:]
        return self._items[-min(limit, self.size):]

    def __len__(self) -> int:
        return min(len(self._items), self.size)

    def __iter__(self) -> Iterator[T]:
        return iter(self.last())


class RecentKeys:
    """The keys seen most recently, bounded: "first time?" answered from memory.

    The gatekeeper claims each (strategy, signal id) here. A signal is acted on only after its record is
    committed to the journal, and a restarted gatekeeper seeds this window from the newest records of
    the tables, so a signal delivered twice (a retried message, bars replayed after a restart) is
    decided once, without a state-store round trip per signal."""

    __slots__ = ("_keys", "size")

    def __init__(self, size: int, keys: Iterable[str] = ()) -> None:
        if size < 1:
            raise ValueError(f"a key window holds at least 1 key, got {size}")
        self.size = size
        self._keys: dict[str, None] = {}
        for key in keys:
            self.claim(key)

    def claim(self, key: str) -> bool:
        """True the first time ``key`` is seen within the window."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self.size:  # insertion order is age: drop the oldest
            del self._keys[next(iter(self._keys))]
        return True

    def __len__(self) -> int:
        return len(self._keys)
