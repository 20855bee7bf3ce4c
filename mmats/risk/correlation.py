"""Rolling return correlations, reduced to "which symbols move together" for the cluster cap.

Holding BTC, ETH and SOL long is close to one big crypto position; a per-position cap alone would let
it grow three times as large. The matrix is recomputed lazily (once after new returns, with numpy), so
an evaluation only does a dict lookup.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np


class CorrelationTracker:
    """Feed it one return per symbol per bar (same bar interval for every symbol, aligned on the end)."""

    __slots__ = (
        "_dirty",
        "_last_price",
        "_matrix",
        "_members",
        "_returns",
        "_symbols",
        "min_observations",
        "threshold",
        "version",
        "window",
    )

    def __init__(self, threshold: float = 0.8, window: int = 60, min_observations: int = 20) -> None:
        self.threshold = threshold
        self.window = window
        self.min_observations = min(min_observations, window)
        self._returns: dict[str, deque[float]] = {}
        self._last_price: dict[str, float] = {}
        self._members: dict[str, frozenset[str]] = {}
        self._symbols: list[str] = []
        self._matrix: np.ndarray = np.zeros((0, 0))
        self._dirty = False
        self.version = 0

    def update_return(self, symbol: str, ret: float) -> None:
        if not math.isfinite(ret):
            return
        buf = self._returns.get(symbol)
        if buf is None:
            buf = self._returns[symbol] = deque(maxlen=self.window)
        buf.append(ret)
        self._dirty = True

    def update_price(self, symbol: str, price: float) -> None:
        """Convenience: log return from the previous price of the same symbol."""
        prev = self._last_price.get(symbol)
        if price > 0:
            self._last_price[symbol] = price
            if prev is not None and prev > 0:
                self.update_return(symbol, math.log(price / prev))

    def observations(self) -> dict[str, int]:
        """Returns held per symbol (at most ``window``)."""
        return {s: len(r) for s, r in self._returns.items()}

    def refresh(self) -> int:
        """Recompute if new returns arrived; the version tells callers when cached sums went stale."""
        if self._dirty:
            self._recompute()
        return self.version

    def members(self, symbol: str) -> frozenset[str]:
        """Other symbols whose correlation with ``symbol`` exceeds the threshold."""
        if self._dirty:
            self._recompute()
        return self._members.get(symbol, frozenset())

    def correlation(self, a: str, b: str) -> float | None:
        if self._dirty:
            self._recompute()
        try:
            i, j = self._symbols.index(a), self._symbols.index(b)
        except ValueError:
            return None
        v = float(self._matrix[i, j])
        return None if math.isnan(v) else v

    def _recompute(self) -> None:
        self._dirty = False
        self.version += 1
        syms = sorted(s for s, r in self._returns.items() if len(r) >= self.min_observations)
        self._symbols = syms
        self._members = {}
        if len(syms) < 2:
            self._matrix = np.zeros((len(syms), len(syms)))
            return
        m = min(len(self._returns[s]) for s in syms)
        data = np.array([list(self._returns[s])[-m:] for s in syms], dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.atleast_2d(np.asarray(np.corrcoef(data), dtype=np.float64))
        self._matrix = corr
        hits: np.ndarray = np.asarray(np.nan_to_num(corr, nan=0.0) > self.threshold)
        for i, s in enumerate(syms):
            self._members[s] = frozenset(syms[j] for j in np.flatnonzero(hits[i]) if j != i)
