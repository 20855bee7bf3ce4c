"""FloatMemo: the positions' float figures, computed once per position snapshot and shared per tuple."""

from __future__ import annotations

from decimal import Decimal as D

from mmats.model import MarketType, PositionSnapshot
from mmats.risk.exposure import FloatMemo


def pos(symbol: str, qty: str, price: str, rate: str = "1") -> PositionSnapshot:
    return PositionSnapshot(symbol, MarketType.FOREX, D(qty), D(price), D(price), D(0), D(0), fx_rate=D(rate))


def test_figures_follow_each_snapshot_and_one_tuple_gets_one_answer() -> None:
    memo = FloatMemo()
    eur, jpy, flat = pos("EURUSD", "1000", "1.1"), pos("USDJPY", "-2000", "150", "0.0066"), pos("SPY", "0", "400")
    first = (eur, jpy, flat)
    out = memo.open_positions(first)
    assert [(p.symbol, q, v) for p, q, v in out] == [("EURUSD", 1000.0, 1000.0 * 1.1),
                                                     ("USDJPY", -2000.0, -2000.0 * 150.0 * 0.0066)]
    assert memo.open_positions(first) is out  # the same tuple again: the same answer, not recomputed
    moved = (eur, pos("USDJPY", "-2000", "149"))  # a new tuple: the moved position valued afresh
    again = memo.open_positions(moved)
    assert again is not out and again[0] is out[0] and again[1][2] == -2000.0 * 149.0
    assert memo.open_positions([eur]) == [out[0]] and memo.open_positions([eur]) is not memo.open_positions([eur])
