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
