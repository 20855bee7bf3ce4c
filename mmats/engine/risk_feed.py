"""Feeding the risk gatekeeper from an in-process backtest: bars, fills and signal aggregation.

The gatekeeper's correlation rule, volatility-target sizing and Kelly sizing read bars and closed trades
(``RiskGatekeeper.on_bar`` / ``on_fill``); its aggregation modes combine the signals of one bar. A
backtest holds whole bar arrays, so instead of a call per bar in its hot loop it feeds the bars lazily:
at each signal, every bar since the last one up to the signal's own (``advance``). The gatekeeper then
sees exactly the bars a live gatekeeper would have seen at that signal, at no cost on bars without one.
"""

from __future__ import annotations

from dataclasses import replace

from mmats.data import BarArrays, column_list
from mmats.model import Fill, TradeSignal
from mmats.risk.aggregation import AggregatedSignal
from mmats.risk.decision import RiskGate
from mmats.risk.gatekeeper import RiskGatekeeper


class SeriesRiskFeed:
    """One symbol's bars and fills into a ``RiskGatekeeper``, plus its aggregation of lone signals."""

    __slots__ = ("_c", "_fed", "_h", "_l", "_ts", "aggregating", "bars", "fills", "gate", "symbol")

    def __init__(self, gate: RiskGatekeeper, symbol: str, bars: BarArrays) -> None:
        self.gate = gate
        self.symbol = symbol
        self.bars = gate.needs.bars
        self.fills = gate.trades is not None
        self.aggregating = gate.aggregating
        self._fed = -1
        if self.bars:
            self._h = column_list(bars, "high")
            self._l = column_list(bars, "low")
            self._c = column_list(bars, "close")
            self._ts = column_list(bars, "ts_ns")

    @classmethod
    def of(cls, gate: RiskGate, symbol: str, bars: BarArrays) -> SeriesRiskFeed | None:
        """None when the gate reads nothing of the kind (the minimal gate, or no such setting)."""
        if not isinstance(gate, RiskGatekeeper):
            return None
        if not (gate.needs.bars or gate.trades is not None or gate.aggregating):
            return None
        return cls(gate, symbol, bars)

    def advance(self, i: int) -> None:
        """Every bar up to and including bar ``i`` (the bar the signal was decided on) reaches the gate."""
        if not self.bars or i <= self._fed:
            return
        on_bar = self.gate.on_bar
        sym, h, lo, c, ts = self.symbol, self._h, self._l, self._c, self._ts
        for j in range(self._fed + 1, i + 1):
            on_bar(sym, ts[j], h[j], lo[j], c[j])
        self._fed = i

    def on_fill(self, fill: Fill) -> None:
        if self.fills:
            self.gate.on_fill(fill)

    def combine(self, signal: TradeSignal, strategy_id: str, signal_id: str) -> AggregatedSignal | None:
        """The configured aggregation mode applied to a bar's only signal (None: the mode acts on nothing).

        A lone signal goes through the mode like a group does in a multi-strategy run, so a strategy's
        orders carry the same owner and ids in a single-symbol backtest as in the portfolio backtest and
        the running system (``agg:consensus`` / ``agg:weighted``; PRIORITY keeps the strategy's own).
        """
        stamped = replace(signal, strategy_id=strategy_id, signal_id=signal_id)
        out = self.gate.aggregate([stamped])
        return out[0] if out else None
