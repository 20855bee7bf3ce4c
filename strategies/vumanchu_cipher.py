"""VuManChu Cipher A + B: WaveTrend crosses in the extreme zones and WaveTrend divergences, with the
RSI+MFI area and Cipher A's EMA ribbon as optional filters.

Cipher B's signals, as in the published TradingView script (defaults: channel 9, average 12, MA 3,
overbought 53, oversold -53, divergence levels 45 / -65, RSI+MFI period 60, multiplier 150, shift 2.5):

- buy ("green dot"): WT1 crosses above WT2 while WT2 <= oversold;
- sell ("red dot"): WT1 crosses below WT2 while WT2 >= overbought;
- bullish divergence: a bottom fractal of WT2 (a low with two higher bars on each side, confirmed two
  bars later) at or below the divergence oversold level, higher than the previous such fractal while
  the bar's low is lower than that fractal's bar low; bearish divergence is the mirror image above the
  divergence overbought level. A fractal needs two later bars, so a divergence is known 2 bars after
  its pivot: no look-ahead.

Cipher A's ribbon is eight EMAs of the close (5, 11, 15, 18, 21, 25, 29, 33); it is bullish while
EMA 11 is above EMA 33 (Cipher A's "long EMA" cross). The strategy goes long on a buy or a bullish
divergence, exits (or reverses short with ``allow_short``) on a sell or a bearish divergence.
``ribbon_filter`` takes entries only in the ribbon's direction; ``mfi_filter`` only when the RSI+MFI
area agrees (above 0 for longs, below for shorts). Both are off by default: the published signals.

The WaveTrend and RSI+MFI values are the registered ``WT`` and ``RSIMFI`` indicators
(``mmats.indicators``), so the backtest and the live strategy actor see the same numbers.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mmats.errors import StrategyError
from mmats.model import Order, SignalAction, TradeSignal
from mmats.strategy import IStrategy, StrategyContext

RIBBON: tuple[int, ...] = (5, 11, 15, 18, 21, 25, 29, 33)


@dataclass(frozen=True, slots=True)
class CipherBSignal:
    """What Cipher B says about the bar that just closed."""

    buy: bool = False
    sell: bool = False
    bullish_divergence: bool = False
    bearish_divergence: bool = False


class CipherB:
    """Cipher B's signal logic on one WaveTrend series, one bar at a time (state: the last five WT2
    values with their bars' highs and lows, and the last qualifying fractal of each side)."""

    __slots__ = ("_bottom", "_div_ob", "_div_os", "_hist", "_ob", "_os", "_prev", "_top")

    def __init__(self, overbought: float = 53.0, oversold: float = -53.0, div_overbought: float = 45.0,
                 div_oversold: float = -65.0) -> None:
        self._ob, self._os = overbought, oversold
        self._div_ob, self._div_os = div_overbought, div_oversold
        self._prev: tuple[float, float] | None = None
        #: (wt2, high, low) of the last five bars, oldest first
        self._hist: deque[tuple[float, float, float]] = deque(maxlen=5)
        #: (wt2, high) of the last top fractal above div_overbought; (wt2, low) of the last bottom one
        self._top: tuple[float, float] | None = None
        self._bottom: tuple[float, float] | None = None

    def update(self, wt1: float, wt2: float, high: float, low: float) -> CipherBSignal:
        prev, self._prev = self._prev, (wt1, wt2)
        buy = sell = False
        if prev is not None:
            p1, p2 = prev
            cross_up = wt1 > wt2 and p1 <= p2
            cross_down = wt1 < wt2 and p1 >= p2
            buy = cross_up and wt2 <= self._os
            sell = cross_down and wt2 >= self._ob
        self._hist.append((wt2, high, low))
        bull = bear = False
        if len(self._hist) == 5:
            (w4, _, _), (w3, _, _), (w2, h2, l2), (w1, _, _), (w0, _, _) = self._hist
            if w4 < w2 and w3 < w2 and w2 > w1 and w2 > w0 and w2 >= self._div_ob:
                top = self._top
                bear = top is not None and h2 > top[1] and w2 < top[0]
                self._top = (w2, h2)
            if w4 > w2 and w3 > w2 and w2 < w1 and w2 < w0 and w2 <= self._div_os:
                bottom = self._bottom
                bull = bottom is not None and l2 < bottom[1] and w2 > bottom[0]
                self._bottom = (w2, l2)
        return CipherBSignal(buy, sell, bull, bear)


def cipher_b_signals(wt1: Sequence[float], wt2: Sequence[float], high: Sequence[float], low: Sequence[float],
                     **levels: float) -> dict[str, np.ndarray]:
    """Cipher B over whole series (NaN bars, e.g. the warm-up, are skipped): boolean arrays ``buy``,
    ``sell``, ``bullish_divergence``, ``bearish_divergence``."""
    cipher = CipherB(**levels)
    n = len(wt1)
    out = {k: np.zeros(n, dtype=bool) for k in ("buy", "sell", "bullish_divergence", "bearish_divergence")}
    for i in range(n):
        if math.isnan(wt1[i]) or math.isnan(wt2[i]):
            continue
        s = cipher.update(float(wt1[i]), float(wt2[i]), float(high[i]), float(low[i]))
        out["buy"][i], out["sell"][i] = s.buy, s.sell
        out["bullish_divergence"][i], out["bearish_divergence"][i] = s.bullish_divergence, s.bearish_divergence
    return out


def _num(x: float) -> str:
    """A parameter as spec text (no exponent, which the spec grammar does not read)."""
    return str(np.format_float_positional(float(x), trim="-"))


class VuManChuCipher(IStrategy):
    name = "vumanchu_cipher"
    version = "1.0.0"
    author = "MMATS"
    description = ("VuManChu Cipher B: WaveTrend crosses in the overbought / oversold zones and WaveTrend "
                   "divergences; Cipher A's EMA ribbon and the RSI+MFI area as optional filters.")
    default_params: ClassVar[Mapping[str, Any]] = {
        "channel_length": 9, "average_length": 12, "ma_length": 3,
        "overbought": 53.0, "oversold": -53.0, "div_overbought": 45.0, "div_oversold": -65.0,
        "rsimfi_period": 60, "rsimfi_multiplier": 150.0, "rsimfi_shift": 2.5,
        "use_divergences": True, "ribbon_filter": False, "mfi_filter": False,
        "size": 1.0, "allow_short": False,
    }

    def __init__(self) -> None:
        super().__init__()
        self._wt1 = self._wt2 = self._mfi = ""
        self._ribbon: tuple[str, ...] = ()
        self._cipher = CipherB()
        self._side = 0

    def validate_params(self) -> None:
        p = self.params
        for key, low in (("channel_length", 2), ("average_length", 1), ("ma_length", 1), ("rsimfi_period", 1)):
            if not low <= p[key] <= 10_000:
                raise StrategyError(f"vumanchu_cipher: {key}={p[key]} must be between {low} and 10000")
        if not p["oversold"] < 0 < p["overbought"]:
            raise StrategyError(f"vumanchu_cipher: need oversold ({p['oversold']}) < 0 < overbought "
                                f"({p['overbought']})")
        if not p["div_oversold"] < 0 < p["div_overbought"]:
            raise StrategyError(f"vumanchu_cipher: need div_oversold ({p['div_oversold']}) < 0 < div_overbought "
                                f"({p['div_overbought']})")
        if not p["rsimfi_multiplier"] > 0:
            raise StrategyError(f"vumanchu_cipher: rsimfi_multiplier={p['rsimfi_multiplier']} must be > 0")
        if not 0 < p["size"] <= 1:
            raise StrategyError(f"vumanchu_cipher: size={p['size']} must be in (0, 1]")
        wt = f"WT_{p['channel_length']}_{p['average_length']}_{p['ma_length']}"
        self._wt1, self._wt2 = f"{wt}.wt1", f"{wt}.wt2"
        self._mfi = f"RSIMFI_{p['rsimfi_period']}_{_num(p['rsimfi_multiplier'])}_{_num(p['rsimfi_shift'])}"
        self._ribbon = tuple(f"EMA_{n}" for n in RIBBON)
        self._cipher = CipherB(p["overbought"], p["oversold"], p["div_overbought"], p["div_oversold"])
        self._side = 0

    def get_required_indicators(self) -> list[str]:
        if not self._wt1:
            self.validate_params()
        return [self._wt1.rpartition(".")[0], self._mfi, *self._ribbon]

    def on_bar(self, context: StrategyContext) -> TradeSignal | None:
        ind = context.indicators
        bar = context.bar
        wt1, wt2 = ind[self._wt1], ind[self._wt2]
        sig = self._cipher.update(wt1, wt2, bar.high, bar.low)
        p = self.params
        use_div = p["use_divergences"]
        go_long = sig.buy or (use_div and sig.bullish_divergence)
        go_short = sig.sell or (use_div and sig.bearish_divergence)
        if not (go_long or go_short):
            return None
        mfi = ind[self._mfi]
        ribbon_up = ind[self._ribbon[1]] > ind[self._ribbon[-1]]
        why = (f"WT1 {wt1:.1f} WT2 {wt2:.1f} "
               f"({'buy' if sig.buy else 'sell' if sig.sell else ''}"
               f"{' bullish divergence' if sig.bullish_divergence else ''}"
               f"{' bearish divergence' if sig.bearish_divergence else ''}), RSI+MFI {mfi:.2f}, "
               f"ribbon {'up' if ribbon_up else 'down'}")
        meta = {"wt1": wt1, "wt2": wt2, "rsimfi": mfi, "ribbon_up": ribbon_up}
        if go_long and self._side <= 0:
            if (p["ribbon_filter"] and not ribbon_up) or (p["mfi_filter"] and not mfi > 0):
                return self._exit_short(context, why, meta)
            self._side = 1
            return TradeSignal(SignalAction.BUY, context.symbol, p["size"], reasoning=why, metadata=meta)
        if go_short and self._side >= 0:
            entry_ok = p["allow_short"] and not (p["ribbon_filter"] and ribbon_up) and not (
                p["mfi_filter"] and not mfi < 0)
            if entry_ok:
                self._side = -1
                return TradeSignal(SignalAction.SELL, context.symbol, p["size"], reasoning=why, metadata=meta)
            if self._side > 0:
                self._side = 0
                return TradeSignal(SignalAction.CLOSE, context.symbol, reasoning=why, metadata=meta)
        return None

    def _exit_short(self, context: StrategyContext, why: str, meta: dict[str, Any]) -> TradeSignal | None:
        """A filtered-out long signal still ends a short: the reason to be short is gone."""
        if self._side < 0:
            self._side = 0
            return TradeSignal(SignalAction.CLOSE, context.symbol, reasoning=why, metadata=meta)
        return None

    def on_order_rejected(self, order: Order, reason: str) -> None:
        # Nothing filled: the target was not reached, so act on the next signal of either side instead
        # of waiting for the opposite one. A partly filled order did move the position: keep the side.
        if order.filled_quantity == 0:
            self._side = 0
