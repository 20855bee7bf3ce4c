"""A signal without an id gets its bar time (and, for a multi-symbol strategy, its symbol) as one."""

from __future__ import annotations

import dataclasses

from mmats.engine.strategy_host import with_signal_id
from mmats.model import SignalAction, TimeHorizon, TradeSignal


def _full() -> TradeSignal:
    return TradeSignal(SignalAction.SELL, "ETH/USDT", 0.4, stop_loss=2100.0, take_profit=1800.0, confidence=0.7,
                       reasoning="why", metadata={"k": 1}, strategy_id="s", max_slippage_bps=5.0,
                       max_notional=1000.0, time_horizon=TimeHorizon.SWING)


def test_a_multi_symbol_strategys_signal_gets_time_and_symbol_and_keeps_every_other_field() -> None:
    sig = _full()
    out = with_signal_id(sig, 123, several_symbols=True)
    assert out == dataclasses.replace(sig, signal_id="123:ETH/USDT")
    assert type(out) is TradeSignal and out.metadata is sig.metadata and sig.signal_id == ""


def test_an_id_given_or_one_symbol_leaves_the_signal_as_it_is() -> None:
    sig = _full()
    assert with_signal_id(sig, 123, several_symbols=False) is sig
    named = dataclasses.replace(sig, signal_id="mine")
    assert with_signal_id(named, 123, several_symbols=True) is named


def test_a_subclass_of_signal_is_copied_as_its_own_class() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Tagged(TradeSignal):
        tag: str = "x"

    out = with_signal_id(Tagged(SignalAction.BUY, "BTC/USDT", tag="y"), 5, several_symbols=True)
    assert type(out) is Tagged and out.tag == "y" and out.signal_id == "5:BTC/USDT"
