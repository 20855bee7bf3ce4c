"""Indicator specs ("SMA_20", "RSI_14", "WT_9_12_3"), in batch and streaming, and a registry for more.

A strategy names the indicators it needs as strings; the backtest computes them once over whole arrays
(``compute_batch``) and a live strategy actor computes them bar by bar (``StreamingIndicators``). Both
must give the *same* numbers, or a strategy would trade differently live than in its backtest: every
kind streams with floats checked to be bit-identical to its batch function, through TA-Lib's own
streams (TA-Lib kinds, see ``StreamingIndicators``) or its own streaming updater.

Spec grammar: ``NAME_p1[_p2...]``, the name case-insensitive. Trailing parameters that have a default
may be left out (``WT_10_21`` = ``WT_10_21_4``). Built in:

=================  ============================  ==============================================
spec               inputs                        notes
=================  ============================  ==============================================
SMA_n EMA_n WMA_n  close                         moving averages; EMA is seeded by an SMA
RSI_n              close                         Wilder smoothing
ATR_n ADX_n CCI_n  high, low, close
MOM_n ROC_n        close                         ROC in percent
STDDEV_n           close                         population standard deviation (ddof 0)
MACD_f_s_g         close                         f < s; EMA based
BBANDS_n_k         close                         k may be fractional (BBANDS_20_2.5); SMA middle
DONCHIAN_n         high, low                     window INCLUDES the current bar
STOCH_k_sk_sd      high, low, close              slow stochastic, SMA smoothing
WT_n1_n2[_m]       high, low, close              WaveTrend (LazyBear / VuManChu), m default 4
RSIMFI_n[_k[_y]]   open, high, low, close        VuManChu's RSI+MFI area, k 150 and y 2.5 default
RVOL_n_ppy         close                         realized volatility, annualised (ppy bars/year)
TREND_n            close                         trend strength: R² of a log-price linear fit
RS_n@SYMBOL        close, SYMBOL's close         relative strength against a benchmark symbol
=================  ============================  ==============================================

The last five are written in Python (no TA-Lib) and registered through ``register_indicator`` exactly
as a user's indicator would be; their formulas:

- ``WT``: src = hlc3 = (high + low + close) / 3; esa = EMA(src, n1); de = EMA(|src - esa|, n1);
  ci = (src - esa) / (0.015 * de) (0 where de is 0: a flat market has no deviation); ``.wt1`` =
  EMA(ci, n2); ``.wt2`` = SMA(wt1, m). EMAs use alpha = 2 / (n + 1) seeded by the SMA of their first
  n inputs (the TA-Lib convention of ``EMA_n``). Both outputs are NaN until wt2 exists:
  lookback 2 (n1 - 1) + (n2 - 1) + (m - 1). Bare ``WT_...`` = wt1.
- ``RSIMFI``: SMA(((close - open) / (high - low)) * k, n) - y, the bar's body as a share of its range
  (0 for a bar with no range). Lookback n - 1.
- ``RVOL``: sample standard deviation (ddof 1) of the last n log returns ln(c_t / c_t-1), times
  sqrt(ppy): ``RVOL_20_8760`` for hourly 24/7 crypto, ``RVOL_20_252`` for daily stocks. NaN where a
  close is not positive. Lookback n (n returns need n + 1 closes).
- ``TREND``: ordinary least squares of ln(close) on the bar index over the last n bars. ``.r2`` (bare
  ``TREND_n``): R² in [0, 1], the share of the window's log-price variance a straight line explains
  (0, with slope 0, for a window whose closes are all equal); ``.slope``: the fitted log-price change
  per bar (its sign is the direction). Lookback n - 1. Chosen over ADX (also available as ``ADX_n``)
  because it is scale-free, bounded and exact to stream.
- ``RS``: ln(c_t / c_t-n) - ln(b_t / b_t-n), this symbol's log return over n bars minus the benchmark
  SYMBOL's over the same bars (> 0: it outperformed). b_t is the close of the benchmark's last bar
  stamped at or before bar t (``align_benchmark``; live, the strategy host receives the benchmark's bars
  from the feed and applies the same rule). NaN where a close is not positive or the benchmark has no
  bar yet. Lookback n. ``benchmark_symbols(specs)`` lists the symbols a strategy's specs compare with.

Output names. A single-output spec gives one key: the spec text itself as written (``"SMA_20"``).
A multi-output spec gives the bare name plus dotted outputs:

- ``MACD_12_26_9`` (the MACD line), ``MACD_12_26_9.signal``, ``MACD_12_26_9.hist``
- ``BBANDS_20_2.upper``, ``BBANDS_20_2.middle``, ``BBANDS_20_2.lower``; bare ``BBANDS_20_2`` = middle
- ``DONCHIAN_20.upper`` (highest high), ``DONCHIAN_20.lower`` (lowest low), ``DONCHIAN_20.middle``
  (their mean); bare ``DONCHIAN_20`` = middle
- ``STOCH_14_3_3.k`` (slow %K), ``STOCH_14_3_3.d`` (slow %D); bare ``STOCH_14_3_3`` = %K
- ``WT_9_12_3.wt1``, ``WT_9_12_3.wt2``; ``TREND_20.r2``, ``TREND_20.slope``

Keys use the spec text exactly as the strategy wrote it (stripped), so what it asks for is what it
reads. Warm-up values are NaN; ``warmup_bars`` says how many leading bars that is. Every value at bar
t uses bars 0..t only (tested by perturbing the future).

Custom indicators. ``register_indicator`` adds a kind that every strategy can then name in
``get_required_indicators()`` like a built-in one; the backtest, the live ``StreamingIndicators`` and
the control plane all go through this registry. A strategy file may register at import (top level of
the module): the file is imported wherever the strategy is created (backtest process, Ray strategy
actor, sweep task), so the kind exists wherever the strategy runs, and importing the same file again
(hot replace, one instance per symbol) replaces its own registration instead of failing::

    class RangeShare:                      # streaming updater: one call per closed bar
        def __init__(self, period: int) -> None:
            self.window: deque[float] = deque(maxlen=period)
        def update(self, high: float, low: float, close: float) -> float:
            self.window.append((close - low) / (high - low) if high > low else 0.5)
            if len(self.window) < self.window.maxlen:
                return math.nan
            total = 0.0
            for x in self.window:
                total += x
            return total / len(self.window)

    register_indicator("RANGESHARE", params=[Param("period", minimum=1)], inputs=("high", "low", "close"),
                       lookback=lambda period: period - 1, stream=RangeShare)

``batch`` (a function of the input arrays then the parameters, returning one array per output) is
optional when ``stream`` is given (the updater is then replayed over the arrays, equal by
construction) and vice versa (live values then recompute the batch over the history: exact, O(n) per
bar). Given both, they must agree to the last bit; ``check_indicator("RANGESHARE_14")`` runs the same
checks the test suite runs on every registered kind (streaming == batch, warm-up == NaN prefix, no
look-ahead) and raises ``IndicatorCheckError`` naming the output and bar that differ.
"""

from __future__ import annotations

import inspect
import itertools
import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import talib
from talib import _ta_lib as _ta_lib_module

from mmats.errors import ValidationError

FloatArray = npt.NDArray[np.float64]
MAX_PERIOD = 100_000
#: TA-Lib's MA_Type.SMA (0); typed Any because the stubs declare an Enum the runtime does not use
_SMA: Any = 0
#: the bar columns, in the order every internal compute function receives them
INPUTS: tuple[str, ...] = ("open", "high", "low", "close", "volume")

#: TA-Lib's compiled module: its stubs do not declare the ``<NAME>_Stream`` classes
_ta_lib: Any = _ta_lib_module

_Fn = Callable[[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, tuple[float, ...]],
               tuple[FloatArray, ...]]


class IndicatorCheckError(ValidationError):
    """An indicator's batch and streaming values differ, its warm-up is misdeclared, or it looks ahead."""


class _Stepper(Protocol):
    """Internal streaming state: one closed bar in (all five columns), every output value out."""

    def step(self, o: float, h: float, lo: float, c: float, v: float) -> tuple[float, ...]: ...


class _Opened(_Stepper, Protocol):
    """A stream opened on the history (TA-Lib kinds): ``current`` is every output at its last bar."""

    def current(self) -> tuple[float, ...]: ...


@dataclass(frozen=True, slots=True)
class Param:
    """One numeric parameter of an indicator kind.

    Integers must be ``>= minimum`` and ``<= MAX_PERIOD``; floats must be finite and ``> minimum``
    (any finite value when ``minimum`` is None). A ``default`` makes the parameter optional in the
    spec text, which is only possible for trailing parameters.
    """

    label: str
    minimum: float | None = 1
    integer: bool = True
    default: float | None = None


@dataclass(frozen=True, slots=True)
class _Kind:
    name: str
    usage: str
    params: tuple[Param, ...]
    #: suffix of each output, in the order the compute function returns them
    suffixes: tuple[str, ...]
    #: which output the bare name also points to (None: the bare name *is* output 0's key "")
    alias: int | None
    compute: _Fn
    lookback: Callable[[tuple[float, ...]], int]
    #: value at t depends only on the last lookback+1 bars, with exact arithmetic (max, min, difference,
    #: ratio), so streaming may compute on that window and still match the batch bit for bit
    windowed: bool = False
    #: streaming state factory; None: streaming recomputes ``compute`` over the history
    stream: Callable[[tuple[float, ...]], _Stepper] | None = None
    #: relations between parameters: an error message, or None when the parameters are consistent
    check: Callable[[tuple[float, ...]], str | None] | None = None
    #: specs the registry's own tests (and ``check_indicator`` users) exercise
    examples: tuple[str, ...] = ()
    builtin: bool = True
    #: where a user's registration came from ("module:qualname"), to recognise a re-import
    origin: str = ""
    #: the spec names a benchmark symbol (``RS_20@SPY``); compute and step then receive the benchmark's
    #: aligned close in the volume column (the fifth), which such a kind does not read
    benchmark: bool = False
    #: TA-Lib's own stream for the kind, opened on the history's five columns: None while the history is
    #: too short for it (``StreamingIndicators`` then recomputes ``compute`` over the history)
    opener: Callable[[tuple[float, ...], Sequence[FloatArray]], _Opened | None] | None = None


def _i(p: tuple[float, ...], k: int) -> int:
    return int(p[k])


def _max(x: FloatArray, n: int) -> FloatArray:
    return x.copy() if n == 1 else np.asarray(talib.MAX(x, timeperiod=n), dtype=np.float64)


def _min(x: FloatArray, n: int) -> FloatArray:
    return x.copy() if n == 1 else np.asarray(talib.MIN(x, timeperiod=n), dtype=np.float64)


def _donchian(o: FloatArray, h: FloatArray, lo: FloatArray, c: FloatArray, v: FloatArray,
              p: tuple[float, ...]) -> tuple[FloatArray, ...]:
    n = _i(p, 0)
    upper, lower = _max(h, n), _min(lo, n)
    return upper, lower, (upper + lower) * 0.5


def _tup(*arrays: object) -> tuple[FloatArray, ...]:
    return tuple(np.asarray(a, dtype=np.float64) for a in arrays)


class _RunningSMA:
    """TA-Lib's SMA, step by step, with its exact float operations: a running total from the first bar,
    add the new value, divide, then subtract the value leaving the window. Same order, same rounding,
    so the result is bit-identical to the batch, at O(1) per bar."""

    __slots__ = ("_n", "_period", "_total", "_window")

    def __init__(self, period: int) -> None:
        self._period = period
        self._n = 0
        self._total = 0.0
        self._window: deque[float] = deque()

    def update(self, x: float) -> float:
        self._n += 1
        self._window.append(x)
        if self._n < self._period:
            self._total += x
            return math.nan
        self._total += x
        out = self._total / self._period
        self._total -= self._window.popleft()
        return out

    def step(self, o: float, h: float, lo: float, c: float, v: float) -> tuple[float, ...]:
        return (self.update(c),)


_PERIOD = Param("period", 1)
_PERIOD2 = Param("period", 2)


def _k(name: str, usage: str, params: tuple[Param, ...], suffixes: tuple[str, ...], alias: int | None,
       compute: _Fn, lookback: Callable[[tuple[float, ...]], int], examples: tuple[str, ...],
       windowed: bool = False, stream: Callable[[tuple[float, ...]], _Stepper] | None = None,
       check: Callable[[tuple[float, ...]], str | None] | None = None,
       opener: Callable[[tuple[float, ...], Sequence[FloatArray]], _Opened | None] | None = None) -> _Kind:
    return _Kind(name, usage, params, suffixes, alias, compute, lookback, windowed, stream, check, examples,
                 opener=opener)


class _TaLibStream:
    """TA-Lib's own streaming state for one spec (``<NAME>_Stream``, TA-Lib 0.8): the C library opens it
    by running its batch recurrences over the history, then continues them one bar at a time, so every
    value is the batch function's to the last bit (the streaming-equals-batch checks run on every kind)
    at O(1) per bar, where recomputing the history cost O(n)."""

    __slots__ = ("_handle", "_hlc")

    def __init__(self, handle: Any, cols: tuple[int, ...]) -> None:
        self._handle = handle
        self._hlc = cols == _HLC  # the kinds read the close, or high, low and close

    def step(self, o: float, h: float, lo: float, c: float, v: float) -> tuple[float, ...]:
        out = self._handle.update(h, lo, c) if self._hlc else self._handle.update(c)
        return out if isinstance(out, tuple) else (out,)

    def current(self) -> tuple[float, ...]:
        out = self._handle.value
        return out if isinstance(out, tuple) else (out,)


def _ta_opener(name: str, cols: tuple[int, ...], kwargs: Callable[[tuple[float, ...]], dict[str, Any]]
               ) -> Callable[[tuple[float, ...], Sequence[FloatArray]], _Opened | None]:
    """Opens TA-Lib's ``<name>_Stream`` on the columns ``cols`` (indices into o, h, l, c, v)."""
    cls = getattr(_ta_lib, f"{name}_Stream")

    def open_(p: tuple[float, ...], arrays: Sequence[FloatArray]) -> _Opened | None:
        try:
            return _TaLibStream(cls(*(arrays[i] for i in cols), **kwargs(p)), cols)
        except _ta_lib.InsufficientHistory:
            return None

    return open_


_C, _HLC = (3,), (1, 2, 3)


def _period(p: tuple[float, ...]) -> dict[str, Any]:
    return {"timeperiod": _i(p, 0)}


class _DonchianStream:
    """DONCHIAN from TA-Lib's MAX and MIN streams, with the batch's arithmetic for the middle."""

    __slots__ = ("_high", "_low", "_lower", "_upper")

    def __init__(self, high: Any, low: Any, upper: float, lower: float) -> None:
        self._high, self._low, self._upper, self._lower = high, low, upper, lower

    def step(self, o: float, h: float, lo: float, c: float, v: float) -> tuple[float, ...]:
        self._upper = h if self._high is None else self._high.update(h)
        self._lower = lo if self._low is None else self._low.update(lo)
        return self.current()

    def current(self) -> tuple[float, ...]:
        return self._upper, self._lower, (self._upper + self._lower) * 0.5


def _donchian_opener(p: tuple[float, ...], arrays: Sequence[FloatArray]) -> _Opened | None:
    n, high, low = _i(p, 0), arrays[1], arrays[2]
    if len(high) == 0:
        return None
    if n == 1:  # the batch copies the bar's own high and low
        return _DonchianStream(None, None, float(high[-1]), float(low[-1]))
    try:
        hs, ls = _ta_lib.MAX_Stream(high, timeperiod=n), _ta_lib.MIN_Stream(low, timeperiod=n)
    except _ta_lib.InsufficientHistory:
        return None
    return _DonchianStream(hs, ls, hs.value, ls.value)


def _macd_check(p: tuple[float, ...]) -> str | None:
    if p[0] >= p[1]:
        return f"fast period ({int(p[0])}) must be < slow period ({int(p[1])})"
    return None


# SMA steps a Python replica of TA-Lib's loop from the first bar; the others open TA-Lib's own stream
# (``opener``): its EMA/RSI loops are compiled with fused multiply-adds on this platform, which a Python
# replica cannot reproduce (one drifted by 7e-12 after 15,000 bars).
_TALIB_KINDS: tuple[_Kind, ...] = (
    _k("SMA", "SMA_period", (_PERIOD,), ("",), None,
       lambda o, h, lo, c, v, p: _tup(talib.SMA(c, timeperiod=_i(p, 0))), lambda p: _i(p, 0) - 1,
       ("SMA_20", "SMA_1"), stream=lambda p: _RunningSMA(_i(p, 0))),
    _k("EMA", "EMA_period", (_PERIOD,), ("",), None,
       lambda o, h, lo, c, v, p: _tup(talib.EMA(c, timeperiod=_i(p, 0))), lambda p: _i(p, 0) - 1,
       ("EMA_50", "EMA_2"), opener=_ta_opener("EMA", _C, _period)),
    _k("WMA", "WMA_period", (_PERIOD,), ("",), None,
       lambda o, h, lo, c, v, p: _tup(talib.WMA(c, timeperiod=_i(p, 0))), lambda p: _i(p, 0) - 1, ("WMA_10",),
       opener=_ta_opener("WMA", _C, _period)),
    _k("RSI", "RSI_period", (_PERIOD2,), ("",), None,
       lambda o, h, lo, c, v, p: _tup(talib.RSI(c, timeperiod=_i(p, 0))), lambda p: _i(p, 0), ("RSI_14",),
       opener=_ta_opener("RSI", _C, _period)),
    _k("ATR", "ATR_period", (_PERIOD,), ("",), None,
       lambda o, h, lo, c, v, p: _tup(talib.ATR(h, lo, c, timeperiod=_i(p, 0))), lambda p: _i(p, 0),
       ("ATR_14", "ATR_1"), opener=_ta_opener("ATR", _HLC, _period)),
    _k("ADX", "ADX_period", (_PERIOD2,), ("",), None,
       lambda o, h, lo, c, v, p: _tup(talib.ADX(h, lo, c, timeperiod=_i(p, 0))), lambda p: 2 * _i(p, 0) - 1,
       ("ADX_14", "ADX_2"), opener=_ta_opener("ADX", _HLC, _period)),
    _k("CCI", "CCI_period", (_PERIOD2,), ("",), None,
       lambda o, h, lo, c, v, p: _tup(talib.CCI(h, lo, c, timeperiod=_i(p, 0))), lambda p: _i(p, 0) - 1,
       ("CCI_20",), opener=_ta_opener("CCI", _HLC, _period)),
    _k("MOM", "MOM_period", (_PERIOD,), ("",), None,
       lambda o, h, lo, c, v, p: _tup(talib.MOM(c, timeperiod=_i(p, 0))), lambda p: _i(p, 0),
       ("MOM_10", "MOM_1"), windowed=True, opener=_ta_opener("MOM", _C, _period)),
    _k("ROC", "ROC_period", (_PERIOD,), ("",), None,
       lambda o, h, lo, c, v, p: _tup(talib.ROC(c, timeperiod=_i(p, 0))), lambda p: _i(p, 0),
       ("ROC_12",), windowed=True, opener=_ta_opener("ROC", _C, _period)),
    _k("STDDEV", "STDDEV_period", (_PERIOD2,), ("",), None,
       lambda o, h, lo, c, v, p: _tup(talib.STDDEV(c, timeperiod=_i(p, 0), nbdev=1.0)), lambda p: _i(p, 0) - 1,
       ("STDDEV_20",),
       opener=_ta_opener("STDDEV", _C, lambda p: {"timeperiod": _i(p, 0), "nbdev": 1.0})),
    _k("MACD", "MACD_fast_slow_signal (e.g. MACD_12_26_9)",
       (Param("fast period", 2), Param("slow period", 2), Param("signal period", 1)),
       ("", ".signal", ".hist"), None,
       lambda o, h, lo, c, v, p: _tup(*talib.MACD(c, fastperiod=_i(p, 0), slowperiod=_i(p, 1),
                                                  signalperiod=_i(p, 2))),
       lambda p: _i(p, 1) - 1 + _i(p, 2) - 1, ("MACD_12_26_9", "MACD_2_3_1"), check=_macd_check,
       opener=_ta_opener("MACD", _C, lambda p: {"fastperiod": _i(p, 0), "slowperiod": _i(p, 1),
                                               "signalperiod": _i(p, 2)})),
    _k("BBANDS", "BBANDS_period_stddevs (e.g. BBANDS_20_2 or BBANDS_20_2.5)",
       (_PERIOD2, Param("std multiplier", 0, integer=False)),
       (".upper", ".middle", ".lower"), 1,
       lambda o, h, lo, c, v, p: _tup(*talib.BBANDS(c, timeperiod=_i(p, 0), nbdevup=p[1], nbdevdn=p[1],
                                                    matype=_SMA)),
       lambda p: _i(p, 0) - 1, ("BBANDS_20_2", "BBANDS_10_2.5"),
       opener=_ta_opener("BBANDS", _C, lambda p: {"timeperiod": _i(p, 0), "nbdevup": p[1], "nbdevdn": p[1],
                                                 "matype": _SMA})),
    _k("DONCHIAN", "DONCHIAN_period", (_PERIOD,), (".upper", ".lower", ".middle"), 2,
       _donchian, lambda p: _i(p, 0) - 1, ("DONCHIAN_20", "DONCHIAN_1"), windowed=True, opener=_donchian_opener),
    _k("STOCH", "STOCH_fastk_slowk_slowd (e.g. STOCH_14_3_3)",
       (Param("fast %K period", 1), Param("slow %K period", 1), Param("slow %D period", 1)),
       (".k", ".d"), 0,
       lambda o, h, lo, c, v, p: _tup(*talib.STOCH(h, lo, c, fastk_period=_i(p, 0), slowk_period=_i(p, 1),
                                                   slowk_matype=_SMA, slowd_period=_i(p, 2),
                                                   slowd_matype=_SMA)),
       lambda p: _i(p, 0) - 1 + _i(p, 1) - 1 + _i(p, 2) - 1, ("STOCH_14_3_3", "STOCH_1_1_1"),
       opener=_ta_opener("STOCH", _HLC, lambda p: {"fastk_period": _i(p, 0), "slowk_period": _i(p, 1),
                                                  "slowk_matype": _SMA, "slowd_period": _i(p, 2),
                                                  "slowd_matype": _SMA})),
)

_KINDS: dict[str, _Kind] = {k.name: k for k in _TALIB_KINDS}

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def known_indicators() -> tuple[str, ...]:
    """Every kind a spec may name now (built-in and registered), sorted."""
    return tuple(sorted(_KINDS))


@dataclass(frozen=True, slots=True)
class IndicatorSpec:
    """A parsed spec: what to compute, and under which keys its outputs are published."""

    text: str
    kind: str
    params: tuple[float, ...]
    #: every key this spec publishes, bare name first
    outputs: tuple[str, ...]
    #: leading bars whose outputs are NaN
    lookback: int
    #: the benchmark symbol after ``@`` (``RS_20@SPY`` -> "SPY"); None for single-symbol kinds
    benchmark: str | None = None

    def compute(self, open_: FloatArray, high: FloatArray, low: FloatArray, close: FloatArray,
                volume: FloatArray, benchmark: FloatArray | None = None) -> dict[str, FloatArray]:
        """All outputs over whole arrays (the inputs must be float64, contiguous and equally long).

        ``benchmark``: the benchmark's closes aligned to these bars (NaN where it has none yet), required
        when the spec names one."""
        kind = _kind_of(self)
        if kind.benchmark:
            if benchmark is None:
                raise ValidationError(f"indicator {self.text!r} needs the closes of its benchmark {self.benchmark}, "
                                      "and none were given")
            if len(benchmark) != len(close):
                raise ValidationError(f"indicator {self.text!r}: {len(benchmark)} benchmark closes for "
                                      f"{len(close)} bars (align them first: align_benchmark)")
            volume = benchmark
        if len(close) == 0:
            arrays: tuple[FloatArray, ...] = tuple(np.empty(0) for _ in kind.suffixes)
        else:
            arrays = kind.compute(open_, high, low, close, volume, self.params)
        out = {self.text + suffix: arr for suffix, arr in zip(kind.suffixes, arrays, strict=True)}
        if kind.alias is not None:
            out = {self.text: arrays[kind.alias], **out}
        return out


def _kind_of(spec: IndicatorSpec) -> _Kind:
    kind = _KINDS.get(spec.kind)
    if kind is None:
        raise ValidationError(f"indicator {spec.text!r}: kind {spec.kind} is no longer registered")
    return kind


def _parse_param(key: str, word: str, param: Param) -> float:
    label, minimum = param.label, param.minimum
    if param.integer:
        if not _INT.fullmatch(word):
            raise ValidationError(f"{key}: {label} must be an integer, got {word!r}")
        value: float = int(word)
        if minimum is not None and value < minimum:
            raise ValidationError(f"{key}: {label} must be >= {int(minimum)}, got {value}")
        if value > MAX_PERIOD:
            raise ValidationError(f"{key}: {label} must be <= {MAX_PERIOD}, got {value}")
        return value
    if not _FLOAT.fullmatch(word):
        raise ValidationError(f"{key}: {label} must be a number, got {word!r}")
    value = float(word)
    if not math.isfinite(value) or (minimum is not None and not value > minimum):
        raise ValidationError(f"{key}: {label} must be > {minimum:g}, got {word}")
    return value


@lru_cache(maxsize=1024)
def parse_spec(text: str) -> IndicatorSpec:
    """Parse ``NAME_p1_p2`` or raise ``ValidationError`` saying what is wrong and what would be right."""
    known = ", ".join(known_indicators())
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(f"empty indicator spec {text!r} (known: {known})")
    key = text.strip()
    base, at, bench = key.partition("@")
    name, *raw = base.split("_")
    kind = _KINDS.get(name.upper())
    if kind is None:
        raise ValidationError(f"unknown indicator {key!r} (known: {known})")
    if kind.benchmark and not at:
        raise ValidationError(f"{key}: {kind.name} compares with a benchmark symbol: {kind.usage}")
    if at and not kind.benchmark:
        raise ValidationError(f"{key}: {kind.name} takes no benchmark symbol (only {', '.join(_benchmark_kinds())} do)")
    if at and (not bench or "@" in bench or any(ch.isspace() for ch in bench)):
        raise ValidationError(f"{key}: the benchmark symbol after '@' must be one symbol without spaces ({kind.usage})")
    required = sum(1 for p in kind.params if p.default is None)
    if not required <= len(raw) <= len(kind.params):
        expected = str(len(kind.params)) if required == len(kind.params) else f"{required} to {len(kind.params)}"
        raise ValidationError(f"{key}: expected {expected} parameter(s) ({kind.usage}), got {len(raw)}")
    params = [_parse_param(key, word, param) for word, param in zip(raw, kind.params, strict=False)]
    params += [float(p.default) for p in kind.params[len(raw):] if p.default is not None]
    p = tuple(params)
    if kind.check is not None:
        problem = kind.check(p)
        if problem:
            raise ValidationError(f"{key}: {problem}")
    suffixes = kind.suffixes if kind.alias is None else ("", *kind.suffixes)
    lookback = kind.lookback(p)
    return IndicatorSpec(key, kind.name, p, tuple(key + s for s in suffixes), lookback, bench or None)


def _benchmark_kinds() -> list[str]:
    return sorted(k.name for k in _KINDS.values() if k.benchmark)


def benchmark_symbols(specs: Iterable[str | IndicatorSpec]) -> tuple[str, ...]:
    """The benchmark symbols the specs compare with (``RS_20@SPY`` -> SPY), sorted: the series a backtest
    must load and a live strategy must receive besides its own."""
    return tuple(sorted({s.benchmark for s in _parse_all(specs) if s.benchmark is not None}))


def align_benchmark(ts_ns: npt.ArrayLike, benchmark_ts_ns: npt.ArrayLike, benchmark_close: npt.ArrayLike) -> FloatArray:
    """The benchmark close for each bar: that of the last benchmark bar stamped at or before it (NaN before
    the benchmark's first bar). Both series must be of one timeframe, stamped at their open: a coarser
    benchmark bar would be used before it closed.

    Live, a strategy host applies the same rule to what the feed has delivered: a benchmark bar of the
    same timestamp counts when it arrives in the same batch (the replay feed publishes a timestamp's
    bars together, the live feed polls them together)."""
    ts = np.asarray(ts_ns, dtype=np.int64)
    bts = np.asarray(benchmark_ts_ns, dtype=np.int64)
    bc = _as_f64(benchmark_close, "benchmark close")
    if len(bts) != len(bc):
        raise ValidationError(f"align_benchmark: {len(bts)} benchmark times for {len(bc)} closes")
    if len(bts) > 1 and bool((np.diff(bts) < 0).any()):
        raise ValidationError("align_benchmark: benchmark times must not decrease")
    idx = np.searchsorted(bts, ts, side="right") - 1
    out = np.full(len(ts), np.nan)
    have = idx >= 0
    out[have] = bc[idx[have]]
    return out


def _parse_all(specs: Iterable[str | IndicatorSpec]) -> list[IndicatorSpec]:
    if isinstance(specs, str):
        raise ValidationError(f"expected a list of indicator specs, got the string {specs!r}")
    out: list[IndicatorSpec] = []
    seen: dict[str, str] = {}
    for s in specs:
        spec = s if isinstance(s, IndicatorSpec) else parse_spec(s)
        if spec.text in seen:
            continue  # asking twice is harmless; compute once
        for k in spec.outputs:
            if k in seen:
                raise ValidationError(f"indicator output {k!r} is published by both {seen[k]} and {spec.text}")
            seen[k] = spec.text
        seen[spec.text] = spec.text
        out.append(spec)
    return out


def warmup_bars(specs: Iterable[str | IndicatorSpec]) -> int:
    """Leading bars where at least one output is NaN: the first bar a strategy can act on."""
    return max((s.lookback for s in _parse_all(specs)), default=0)


def _as_f64(x: npt.ArrayLike, label: str) -> FloatArray:
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValidationError(f"{label} must be a 1-D array, got shape {a.shape}")
    return a


def compute_batch(
    specs: Sequence[str | IndicatorSpec],
    open_: npt.ArrayLike,
    high: npt.ArrayLike,
    low: npt.ArrayLike,
    close: npt.ArrayLike,
    volume: npt.ArrayLike,
    *,
    benchmarks: Mapping[str, npt.ArrayLike] | None = None,
) -> dict[str, FloatArray]:
    """Every output of every spec over whole arrays, keyed as in the module docstring.

    A bare name that aliases a dotted output (``BBANDS_20_2`` / ``.middle``) shares its array.
    ``benchmarks``: symbol -> that benchmark's closes aligned to these bars (``align_benchmark``), for
    the specs that name one.
    """
    parsed = _parse_all(specs)
    cols = [_as_f64(x, name) for x, name in zip((open_, high, low, close, volume), INPUTS, strict=True)]
    n = len(cols[3])
    if any(len(c) != n for c in cols):
        raise ValidationError(f"compute_batch: input lengths differ: {[len(c) for c in cols]}")
    out: dict[str, FloatArray] = {}
    for spec in parsed:
        bench: FloatArray | None = None
        if spec.benchmark is not None:
            if benchmarks is None or spec.benchmark not in benchmarks:
                raise ValidationError(f"indicator {spec.text!r} compares with {spec.benchmark}, but no closes of "
                                      f"{spec.benchmark} were given (given: {sorted(benchmarks or {})})")
            bench = _as_f64(benchmarks[spec.benchmark], f"benchmark {spec.benchmark}")
        out.update(spec.compute(cols[0], cols[1], cols[2], cols[3], cols[4], bench))
    return out


# ----------------------------------------------------------------------------------------- registry


def _origin(fn: object) -> str:
    target = fn if inspect.isfunction(fn) or inspect.isclass(fn) else type(fn)
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}"


def _as_outputs(result: object, n_out: int, n: int, label: str) -> tuple[FloatArray, ...]:
    arrays = (result,) if n_out == 1 and not isinstance(result, tuple | list) else result
    if not isinstance(arrays, tuple | list) or len(arrays) != n_out:
        got = len(arrays) if isinstance(arrays, tuple | list) else type(result).__name__
        raise ValidationError(f"indicator {label}: batch returned {got} output(s), declared {n_out}")
    out = tuple(np.asarray(a, dtype=np.float64) for a in arrays)
    for a in out:
        if a.shape != (n,):
            raise ValidationError(f"indicator {label}: batch returned an array of shape {a.shape}, expected ({n},)")
    return out


def _as_values(result: object, n_out: int, label: str) -> tuple[float, ...]:
    if n_out == 1 and not isinstance(result, tuple | list):
        return (float(result),)  # type: ignore[arg-type]
    if not isinstance(result, tuple | list) or len(result) != n_out:
        raise ValidationError(f"indicator {label}: streaming update returned {result!r}, expected {n_out} value(s)")
    return tuple(float(x) for x in result)


def _user_value(p: float, param: Param) -> float | int:
    return int(p) if param.integer else p


class _UserStepper:
    """A user's updater behind the internal five-column ``step``: picks the declared inputs, checks the
    number of values it returns."""

    __slots__ = ("_idx", "_label", "_n_out", "_update")

    def __init__(self, updater: Any, idx: tuple[int, ...], n_out: int, label: str) -> None:
        update = getattr(updater, "update", None)
        if not callable(update):
            raise ValidationError(f"indicator {label}: the stream factory must return an object with an "
                                  f"update({', '.join(INPUTS[i] for i in idx)}) method, got {type(updater).__name__}")
        _check_signature(update, len(idx), f"indicator {label}: update",
                         ", ".join(INPUTS[i] for i in idx))
        self._update = update
        self._idx = idx
        self._n_out = n_out
        self._label = label

    def step(self, o: float, h: float, lo: float, c: float, v: float) -> tuple[float, ...]:
        row = (o, h, lo, c, v)
        return _as_values(self._update(*(row[i] for i in self._idx)), self._n_out, self._label)


def _check_signature(fn: Callable[..., Any], n_args: int, what: str, expected: str) -> None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # builtins without a signature: the first call will tell
    try:
        sig.bind(*range(n_args))
    except TypeError as exc:
        raise ValidationError(f"{what} must accept ({expected}) positionally, its signature is {sig}: {exc}") from None


def replay(stream: Callable[..., Any], *inputs: FloatArray, params: Sequence[float] = (),
           outputs: int = 1) -> tuple[FloatArray, ...]:
    """Run a streaming updater over whole arrays: a batch function equal to the streaming one by
    construction (Python speed: about a microsecond per bar and operation)."""
    updater = stream(*params)
    n = len(inputs[0]) if inputs else 0
    out = np.full((outputs, n), np.nan)
    columns = [a.tolist() for a in inputs]
    update = updater.update
    for i, row in enumerate(zip(*columns, strict=True)):
        value = update(*row)
        if outputs == 1 and not isinstance(value, tuple | list):
            out[0, i] = value
        else:
            out[:, i] = value
    return tuple(out)


def register_indicator(
    name: str,
    *,
    params: Sequence[Param],
    inputs: Sequence[str],
    lookback: Callable[..., int],
    batch: Callable[..., Any] | None = None,
    stream: Callable[..., Any] | None = None,
    outputs: Sequence[str] = (),
    primary: int = 0,
    validate: Callable[..., str | None] | None = None,
    examples: Sequence[str] = (),
    builtin: bool = False,
) -> None:
    """Add an indicator kind that strategies can name like a built-in one.

    ``name``: letters and digits (the spec is ``NAME_p1_p2``). ``params``: ``Param`` per parameter, in
    spec order. ``inputs``: which bar columns the functions receive, among open, high, low, close,
    volume, and ``benchmark``: the close of the benchmark symbol the spec names after ``@``
    (``NAME_p1@SPY``), aligned to each bar and NaN until the benchmark has a bar (such a kind needs a
    ``stream`` and cannot also read volume). ``lookback(*params)``: leading bars whose outputs are NaN
    (all outputs share it).
    ``batch(*input_arrays, *params)``: one float array per output (a bare array for a single output).
    ``stream(*params)``: an object whose ``update(*input_values)`` is called once per closed bar and
    returns the outputs' current values (a float, or a tuple for several outputs). ``outputs``: names
    of several outputs (published as ``SPEC.name``; ``SPEC`` itself is output ``primary``); empty for
    one output. ``validate(*params)``: a message when parameters are inconsistent, else None.
    ``examples``: specs ``check_indicator`` and the test suite exercise (default: the defaults or
    minimums of the parameters).

    Re-registering a name from the same module and function (the strategy file imported again)
    replaces it; any other clash is a ``ValidationError``, as is a signature that does not fit.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValidationError(f"register_indicator: name {name!r} must be letters and digits, starting with a "
                              "letter (no '_' or '.': they separate parameters and outputs)")
    upper = name.upper()
    label = f"register_indicator({upper!r})"
    if batch is None and stream is None:
        raise ValidationError(f"{label}: give a batch function, a stream factory, or both")
    origin = _origin(stream if stream is not None else batch)
    existing = _KINDS.get(upper)
    if existing is not None:
        if existing.builtin:
            raise ValidationError(f"{label}: {upper} is a built-in indicator; choose another name")
        if existing.origin != origin:
            raise ValidationError(f"{label}: {upper} is already registered by {existing.origin}; "
                                  "choose another name")
    params = tuple(params)
    for p in params:
        if not isinstance(p, Param):
            raise ValidationError(f"{label}: params must be Param(...) objects, got {p!r}")
    seen_default = False
    for p in params:
        if seen_default and p.default is None:
            raise ValidationError(f"{label}: parameter {p.label!r} has no default but follows one that has")
        seen_default = seen_default or p.default is not None
    unknown = [x for x in inputs if x not in (*INPUTS, "benchmark")]
    if not inputs or unknown or len(set(inputs)) != len(inputs):
        raise ValidationError(f"{label}: inputs {list(inputs)} must be distinct names among {', '.join(INPUTS)}, "
                              "benchmark")
    with_benchmark = "benchmark" in inputs
    if with_benchmark and ("volume" in inputs or stream is None):
        raise ValidationError(f"{label}: a kind reading the benchmark needs a stream factory and cannot also "
                              "read volume")
    # the benchmark's close travels in the volume column (see _Kind.benchmark)
    idx = tuple(4 if x == "benchmark" else INPUTS.index(x) for x in inputs)
    names = tuple(outputs)
    for o in names:
        if not isinstance(o, str) or not _NAME.fullmatch(o):
            raise ValidationError(f"{label}: output name {o!r} must be letters and digits")
    if len(set(names)) != len(names) or len(names) == 1:
        raise ValidationError(f"{label}: outputs {list(names)} must be distinct and either none (one output) "
                              "or at least two")
    n_out = max(1, len(names))
    if names and not 0 <= primary < n_out:
        raise ValidationError(f"{label}: primary={primary} is not an output index (0..{n_out - 1})")
    arg_names = ", ".join([*inputs, *(p.label for p in params)])
    param_names = ", ".join(p.label for p in params)
    for fn, what, n_args, expected in ((batch, "batch", len(idx) + len(params), arg_names),
                                       (stream, "stream", len(params), param_names),
                                       (lookback, "lookback", len(params), param_names),
                                       (validate, "validate", len(params), param_names)):
        if fn is None:
            continue
        if not callable(fn):
            raise ValidationError(f"{label}: {what} must be callable, got {type(fn).__name__}")
        _check_signature(fn, n_args, f"{label}: {what}", expected)

    def user_params(p: tuple[float, ...]) -> list[float | int]:
        return [_user_value(x, q) for x, q in zip(p, params, strict=True)]

    def lookback_fn(p: tuple[float, ...]) -> int:
        value = lookback(*user_params(p))
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValidationError(f"indicator {upper}: lookback{tuple(user_params(p))} returned {value!r}, "
                                  "expected an integer >= 0")
        return int(value)

    def stepper(p: tuple[float, ...]) -> _Stepper:
        assert stream is not None
        return _UserStepper(stream(*user_params(p)), idx, n_out, upper)

    def compute(o: FloatArray, h: FloatArray, lo: FloatArray, c: FloatArray, v: FloatArray,
                p: tuple[float, ...]) -> tuple[FloatArray, ...]:
        cols = (o, h, lo, c, v)
        chosen = [cols[i] for i in idx]
        if batch is not None:
            return _as_outputs(batch(*chosen, *user_params(p)), n_out, len(c), upper)
        assert stream is not None
        return replay(stream, *chosen, params=user_params(p), outputs=n_out)

    def check(p: tuple[float, ...]) -> str | None:
        return None if validate is None else validate(*user_params(p))

    usage = "_".join([upper, *(q.label.replace(" ", "") if q.default is None else f"[{q.label.replace(' ', '')}]"
                               for q in params)]) + ("@SYMBOL" if with_benchmark else "")
    if not examples:
        default = [q.default if q.default is not None else (q.minimum or 0) + (0 if q.integer else 1)
                   for q in params]
        examples = ("_".join([upper, *(f"{int(x)}" if q.integer else f"{x:g}"
                                       for x, q in zip(default, params, strict=True))])
                    + ("@BENCH" if with_benchmark else ""),)
    kind = _Kind(upper, usage, params, tuple("." + o for o in names) if names else ("",),
                 primary if names else None, compute, lookback_fn, False,
                 stepper if stream is not None else None,
                 check, tuple(examples), builtin, origin, with_benchmark)
    _KINDS[upper] = kind
    parse_spec.cache_clear()
    try:
        for ex in kind.examples:  # smoke test: parses, and both functions return what was declared
            spec = parse_spec(ex)
            if kind.stream is not None:
                kind.stream(spec.params).step(100.0, 101.0, 99.0, 100.5, 10.0)
            bars = np.linspace(100.0, 110.0, 8)
            spec.compute(bars - 0.5, bars + 1.0, bars - 1.0, bars, bars * 0 + 10.0,
                         bars * 1.01 if with_benchmark else None)
    except Exception as exc:
        if existing is None:
            del _KINDS[upper]
        else:
            _KINDS[upper] = existing
        parse_spec.cache_clear()
        if isinstance(exc, ValidationError):
            raise
        raise ValidationError(f"{label}: example {ex!r} failed: {type(exc).__name__}: {exc}") from exc


def unregister_indicator(name: str) -> None:
    """Remove a user-registered kind (built-ins stay); unknown names are ignored."""
    kind = _KINDS.get(name.upper())
    if kind is not None and not kind.builtin:
        del _KINDS[kind.name]
        parse_spec.cache_clear()


def indicator_examples(*, benchmark: bool = False) -> list[str]:
    """One or more example specs per registered kind: what the registry's tests exercise. Kinds that
    compare with a benchmark symbol need its closes too, so they are listed only with ``benchmark=True``
    (and alone)."""
    return [ex for name in known_indicators() if _KINDS[name].benchmark == benchmark for ex in _KINDS[name].examples]


# ------------------------------------------------------------------------------ streaming


class StreamingIndicators:
    """Bar-by-bar indicator values, bit-identical to ``compute_batch`` over the same bars.

    Every kind streams at O(1) per bar (or O(window) for a few Python kinds), so a strategy that runs
    for months costs the same per bar as on its first day:

    - the Python kinds (SMA and every registered kind) step their own updater from the first bar;
    - the TA-Lib kinds use TA-Lib's own streams (``<NAME>_Stream``). Their values have to be the batch
      function's exact floats, and TA-Lib's EMA, RSI, ATR, ADX and MACD are recursive from the first bar
      (seeded by an SMA) while its WMA, STDDEV and CCI keep running sums whose rounding depends on where
      the series started; the C library's loops are also built with fused multiply-adds, which Python
      cannot reproduce. A TA-Lib stream is opened by running the batch recurrences over the history and
      continues them bar by bar, so it matches. It needs the kind's warm-up of history to open: until
      then the spec recomputes its batch function over the few bars there are.

    The bars are kept (growable numpy buffers, 40 bytes a bar) only while a TA-Lib stream is still
    waiting for its history; once every one is open the buffer is dropped.

    Specs that name a benchmark (``RS_20@SPY``) read its close from the ``benchmarks`` mapping given to
    ``update`` (symbol -> the close of its latest bar at or before this one; a symbol absent from it has
    no bar yet, NaN) and to ``extend`` (symbol -> closes aligned to the bars, see ``align_benchmark``).
    """

    __slots__ = ("_aliases", "_buf", "_has_bench", "_last", "_n", "_open", "_parsed", "_specs", "_steppers",
                 "outputs", "warmup_bars")

    def __init__(self, specs: Sequence[str | IndicatorSpec], *, capacity: int = 1024) -> None:
        parsed = _parse_all(specs)
        self._parsed = tuple(parsed)
        self._steppers: list[tuple[tuple[str, ...], _Stepper, str | None]] = []
        self._aliases: list[tuple[str, str]] = []
        #: TA-Lib specs: the spec, its kind, its output keys; ``_open``: its stream once open
        self._specs: list[tuple[IndicatorSpec, _Kind, tuple[str, ...]]] = []
        self._open: list[_Opened | None] = []
        for sp in parsed:
            kind = _kind_of(sp)
            # keys in the order step() returns values; the bare alias is filled from its output
            keys = tuple(sp.text + s for s in kind.suffixes)
            if kind.alias is not None:
                self._aliases.append((sp.text, keys[kind.alias]))
            if kind.stream is None:
                self._specs.append((sp, kind, keys))
                self._open.append(None)
            else:
                self._steppers.append((keys, kind.stream(sp.params), sp.benchmark))
        self.outputs: tuple[str, ...] = tuple(k for s in parsed for k in s.outputs)
        self.warmup_bars: int = max((s.lookback for s in parsed), default=0)
        self._has_bench = any(b is not None for _, _, b in self._steppers)
        self._buf = np.empty((5, max(16, int(capacity)) if self._specs else 0), dtype=np.float64)
        self._n = 0
        self._last: dict[str, float] = dict.fromkeys(self.outputs, math.nan)

    @property
    def specs(self) -> tuple[IndicatorSpec, ...]:
        return self._parsed

    def __len__(self) -> int:
        return self._n

    @property
    def keeps_history(self) -> bool:
        """Whether the bars are still kept: a TA-Lib stream is waiting for enough history to open."""
        return None in self._open

    def _reserve(self, extra: int) -> None:
        need = self._n + extra
        cap = self._buf.shape[1]
        if need <= cap:
            return
        cap = max(cap, 16)
        while cap < need:
            cap *= 2
        grown = np.empty((5, cap), dtype=np.float64)
        grown[:, : self._n] = self._buf[:, : self._n]
        self._buf = grown

    @property
    def benchmarks(self) -> tuple[str, ...]:
        """The benchmark symbols these specs compare with."""
        return benchmark_symbols(self._parsed)

    def _bench_values(self, benchmarks: Mapping[str, Any] | None) -> None:
        if benchmarks is None and self._has_bench:
            raise ValidationError(f"indicators {', '.join(s.text for s in self._parsed if s.benchmark)} compare "
                                  f"with {', '.join(self.benchmarks)}: pass their closes as benchmarks=")

    def _step(self, o: float, h: float, lo: float, c: float, v: float,
              bench: Mapping[str, float] | None = None) -> None:
        for keys, stepper, sym in self._steppers:
            if sym is None:
                self._set(keys, stepper.step(o, h, lo, c, v))
            else:
                x = bench.get(sym, math.nan) if bench is not None else math.nan
                self._set(keys, stepper.step(o, h, lo, c, float(x)))

    def _set(self, keys: tuple[str, ...], values: Sequence[float]) -> None:
        last = self._last
        for k, x in zip(keys, values, strict=True):
            last[k] = x

    def _current(self) -> dict[str, float]:
        """Every output, the bare aliases filled from theirs."""
        last = self._last
        for bare, key in self._aliases:
            last[bare] = last[key]
        return dict(last)

    def update(self, open_: float, high: float, low: float, close: float, volume: float,
               benchmarks: Mapping[str, float] | None = None) -> dict[str, float]:
        """Append one closed bar; return the current value of every output (NaN during warm-up)."""
        o, h, lo, c, v = float(open_), float(high), float(low), float(close), float(volume)
        if not (math.isfinite(o) and math.isfinite(h) and math.isfinite(lo) and math.isfinite(c)
                and math.isfinite(v)):
            # a NaN in the history would poison recursive indicators forever; refuse it, keep the rest
            raise ValidationError(f"indicator update with a non-finite value (o,h,l,c,v)={(o, h, lo, c, v)}")
        self._bench_values(benchmarks)
        waiting = self.keeps_history
        if waiting:
            self._reserve(1)
            self._buf[:, self._n] = (o, h, lo, c, v)
        self._n += 1
        self._step(o, h, lo, c, v, benchmarks)
        for (_, _, keys), stream in zip(self._specs, self._open, strict=True):
            if stream is not None:
                self._set(keys, stream.step(o, h, lo, c, v))
        if waiting:
            self._open_or_recompute()
        return self._current()

    def extend(self, open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike,
               volume: npt.ArrayLike, benchmarks: Mapping[str, npt.ArrayLike] | None = None) -> dict[str, float]:
        """Append many bars at once (warm-up from history): an open stream steps through them, the rest
        open on (or recompute over) the history once."""
        cols = [_as_f64(x, name) for x, name in zip((open_, high, low, close, volume), INPUTS, strict=True)]
        m = len(cols[0])
        if any(len(c) != m for c in cols):
            raise ValidationError(f"extend: input lengths differ: {[len(c) for c in cols]}")
        self._bench_values(benchmarks)
        bench = {sym: _as_f64(x, f"benchmark {sym}").tolist() for sym, x in (benchmarks or {}).items()}
        if any(len(x) != m for x in bench.values()):
            raise ValidationError(f"extend: benchmark closes must be aligned to the {m} bars")
        if m == 0:
            return self._current()
        if not all(bool(np.isfinite(c).all()) for c in cols):
            raise ValidationError("indicator extend with non-finite values")
        waiting = self.keeps_history
        if waiting:
            self._reserve(m)
            for i, c in enumerate(cols):
                self._buf[i, self._n : self._n + m] = c
        self._n += m
        opened = [(stream, keys) for stream, (_, _, keys) in zip(self._open, self._specs, strict=True)
                  if stream is not None]
        if self._steppers or opened:
            o, h, lo, c, v = (col.tolist() for col in cols)
            for j in range(m):
                self._step(o[j], h[j], lo[j], c[j], v[j], {sym: x[j] for sym, x in bench.items()} if bench else None)
                for stream, _ in opened:
                    stream.step(o[j], h[j], lo[j], c[j], v[j])
            for stream, keys in opened:
                self._set(keys, stream.current())
        if waiting:
            self._open_or_recompute()
        return self._current()

    def current(self) -> dict[str, float]:
        """The values after the last bar (all NaN before the first)."""
        return self._current()

    def _open_or_recompute(self) -> None:
        """Each TA-Lib spec whose stream is not open yet: open it on the history, or (too little history)
        recompute the batch over it; once every stream is open the history is let go."""
        n = self._n
        cols = [self._buf[i, :n] for i in range(5)]
        for i, (spec, kind, keys) in enumerate(self._specs):
            if self._open[i] is not None:
                continue
            stream = kind.opener(spec.params, cols) if kind.opener is not None and n > spec.lookback else None
            if stream is not None:
                self._open[i] = stream
                self._set(keys, stream.current())
                continue
            start = max(0, n - spec.lookback - 1) if kind.windowed else 0
            o, h, lo, c, v = (col[start:] for col in cols)
            self._set(keys, [float(a[-1]) for a in kind.compute(o, h, lo, c, v, spec.params)])
        if not self.keeps_history:
            self._buf = np.empty((5, 0), dtype=np.float64)


# ------------------------------------------------------------------- Python kinds, registered like a user's
#
# Streaming and batch share their float operations one for one: the recursive ones (WT) are the updater
# replayed; the windowed ones sum a window column by column in numpy (elementwise IEEE adds, in the same
# order as the updater's loop), and take logarithms with math.log on both sides (numpy's vectorised log
# may differ from libm in the last bit).


class _Ema:
    """EMA with alpha 2 / (n + 1), seeded by the mean of its first n inputs (TA-Lib's EMA convention)."""

    __slots__ = ("_alpha", "_beta", "_count", "_n", "_sum", "value")

    def __init__(self, n: int) -> None:
        self._n = n
        self._alpha = 2.0 / (n + 1)
        self._beta = 1.0 - self._alpha
        self._count = 0
        self._sum = 0.0
        self.value = math.nan

    def update(self, x: float) -> float:
        if self._count < self._n:
            self._count += 1
            self._sum += x
            if self._count == self._n:
                self.value = self._sum / self._n
            return self.value
        self.value = self._alpha * x + self._beta * self.value
        return self.value


def _loop_sum(window: Iterable[float]) -> float:
    total = 0.0
    for x in window:
        total += x
    return total


def _columns_sum(x: FloatArray, n: int) -> FloatArray:
    """Sum of each window of n (ending at every t >= n - 1), added column by column in time order: the
    same operations as ``_loop_sum`` over the window, so each value is bit-identical to the updater's."""
    m = len(x) - n + 1
    total = np.zeros(max(0, m))
    for k in range(n):
        total = total + x[k : k + m]
    return total


def _pad(values: FloatArray, total: int) -> FloatArray:
    out = np.full(total, np.nan)
    if len(values):
        out[total - len(values):] = values
    return out


class WaveTrendStream:
    """WaveTrend (see the module docstring) one bar at a time: three EMAs and a short window mean."""

    __slots__ = ("_de", "_esa", "_signal", "_wt1")

    def __init__(self, channel: int, average: int, signal: int) -> None:
        self._esa = _Ema(channel)
        self._de = _Ema(channel)
        self._wt1 = _Ema(average)
        self._signal: deque[float] = deque(maxlen=signal)

    def update(self, high: float, low: float, close: float) -> tuple[float, float]:
        src = (high + low + close) / 3.0
        esa = self._esa.update(src)
        if math.isnan(esa):
            return math.nan, math.nan
        de = self._de.update(abs(src - esa))
        if math.isnan(de):
            return math.nan, math.nan
        ci = (src - esa) / (0.015 * de) if de != 0.0 else 0.0
        wt1 = self._wt1.update(ci)
        if math.isnan(wt1):
            return math.nan, math.nan
        window = self._signal
        window.append(wt1)
        if len(window) < (window.maxlen or 0):
            return math.nan, math.nan
        return wt1, _loop_sum(window) / len(window)


class RsiMfiStream:
    """VuManChu's RSI+MFI area one bar at a time: mean of (close - open) / (high - low) * k, minus y."""

    __slots__ = ("_k", "_window", "_y")

    def __init__(self, period: int, multiplier: float, shift: float) -> None:
        self._window: deque[float] = deque(maxlen=period)
        self._k = multiplier
        self._y = shift

    def update(self, open_: float, high: float, low: float, close: float) -> float:
        rng = high - low
        self._window.append(((close - open_) / rng if rng != 0.0 else 0.0) * self._k)
        n = self._window.maxlen or 0
        if len(self._window) < n:
            return math.nan
        return _loop_sum(self._window) / n - self._y


def _rsimfi_batch(open_: FloatArray, high: FloatArray, low: FloatArray, close: FloatArray, period: int,
                  multiplier: float, shift: float) -> FloatArray:
    rng = high - low
    share = np.zeros(len(close))
    np.divide(close - open_, rng, out=share, where=rng != 0.0)
    return _pad(_columns_sum(share * multiplier, period) / period - shift, len(close))


def _log_return(prev: float, cur: float) -> float:
    return math.log(cur / prev) if prev > 0.0 and cur > 0.0 else math.nan


def _log(x: float) -> float:
    return math.log(x) if x > 0.0 else math.nan


class RealizedVolStream:
    """Annualised realized volatility one bar at a time (sample std of the last n log returns)."""

    __slots__ = ("_n", "_ppy", "_prev", "_returns")

    def __init__(self, period: int, periods_per_year: float) -> None:
        self._n = period
        self._ppy = periods_per_year
        self._prev = math.nan
        self._returns: deque[float] = deque(maxlen=period)

    def update(self, close: float) -> float:
        prev, self._prev = self._prev, close
        if math.isnan(prev):
            return math.nan
        self._returns.append(_log_return(prev, close))
        if len(self._returns) < self._n:
            return math.nan
        mean = _loop_sum(self._returns) / self._n
        ss = 0.0
        for r in self._returns:
            d = r - mean
            ss += d * d
        return math.sqrt(ss / (self._n - 1) * self._ppy)


def _rvol_batch(close: FloatArray, period: int, periods_per_year: float) -> FloatArray:
    c = close.tolist()
    r = np.array([_log_return(a, b) for a, b in itertools.pairwise(c)], dtype=np.float64)
    m = len(r) - period + 1
    if m <= 0:
        return np.full(len(close), np.nan)
    mean = _columns_sum(r, period) / period
    ss = np.zeros(m)
    for k in range(period):
        d = r[k : k + m] - mean
        ss = ss + d * d
    return _pad(np.sqrt(ss / (period - 1) * periods_per_year), len(close))


def _trend_x(n: int) -> tuple[list[float], float]:
    xs = [k - (n - 1) / 2.0 for k in range(n)]
    sxx = 0.0
    for x in xs:
        sxx += x * x
    return xs, sxx


class TrendStrengthStream:
    """R² and slope of ln(close) on the bar index over the last n bars, one bar at a time."""

    __slots__ = ("_n", "_sxx", "_window", "_xs")

    def __init__(self, period: int) -> None:
        self._n = period
        self._xs, self._sxx = _trend_x(period)
        self._window: deque[float] = deque(maxlen=period)

    def update(self, close: float) -> tuple[float, float]:
        self._window.append(_log(close))
        if len(self._window) < self._n:
            return math.nan, math.nan
        ybar = _loop_sum(self._window) / self._n
        sxy = 0.0
        syy = 0.0
        for x, y in zip(self._xs, self._window, strict=True):
            sxy += x * y
            d = y - ybar
            syy += d * d
        if math.isnan(syy):
            return math.nan, math.nan
        if max(self._window) == min(self._window):
            return 0.0, 0.0  # flat: the mean's rounding would otherwise fit a line to noise
        r2 = min(1.0, (sxy * sxy) / (self._sxx * syy)) if syy > 0.0 else 0.0
        return r2, sxy / self._sxx


def _trend_batch(close: FloatArray, period: int) -> tuple[FloatArray, FloatArray]:
    y = np.array([_log(x) for x in close.tolist()], dtype=np.float64)
    m = len(y) - period + 1
    if m <= 0:
        return np.full(len(close), np.nan), np.full(len(close), np.nan)
    xs, sxx = _trend_x(period)
    ybar = _columns_sum(y, period) / period
    sxy = np.zeros(m)
    syy = np.zeros(m)
    top = np.full(m, -np.inf)
    bottom = np.full(m, np.inf)
    for k in range(period):
        col = y[k : k + m]
        sxy = sxy + xs[k] * col
        d = col - ybar
        syy = syy + d * d
        top = np.maximum(top, col)
        bottom = np.minimum(bottom, col)
    flat = top == bottom
    r2 = np.zeros(m)
    np.divide(sxy * sxy, sxx * syy, out=r2, where=(syy > 0.0) & ~flat)
    r2 = np.minimum(r2, 1.0)
    slope = np.where(flat, 0.0, sxy / sxx)
    r2[np.isnan(syy)] = np.nan
    slope[np.isnan(syy)] = np.nan
    return _pad(r2, len(close)), _pad(slope, len(close))


class RelativeStrengthStream:
    """This symbol's log return over n bars minus its benchmark's, one bar at a time."""

    __slots__ = ("_bench", "_close")

    def __init__(self, period: int) -> None:
        self._close: deque[float] = deque(maxlen=period + 1)
        self._bench: deque[float] = deque(maxlen=period + 1)

    def update(self, close: float, benchmark: float) -> float:
        self._close.append(close)
        self._bench.append(benchmark)
        if len(self._close) < (self._close.maxlen or 0):
            return math.nan
        return _log_return(self._close[0], close) - _log_return(self._bench[0], benchmark)


def _rs_batch(close: FloatArray, benchmark: FloatArray, period: int) -> FloatArray:
    c, b = close.tolist(), benchmark.tolist()
    out = np.full(len(c), np.nan)
    for t in range(period, len(c)):
        out[t] = _log_return(c[t - period], c[t]) - _log_return(b[t - period], b[t])
    return out


register_indicator(
    "WT", params=[Param("channel length", 2), Param("average length", 1), Param("signal length", 1, default=4)],
    inputs=("high", "low", "close"), outputs=("wt1", "wt2"), stream=WaveTrendStream,
    lookback=lambda n1, n2, m: 2 * (n1 - 1) + (n2 - 1) + (m - 1),
    examples=("WT_10_21", "WT_9_12_3", "WT_2_1_1"), builtin=True)
register_indicator(
    "RSIMFI", params=[Param("period", 1), Param("multiplier", None, integer=False, default=150.0),
                      Param("shift", None, integer=False, default=2.5)],
    inputs=("open", "high", "low", "close"), stream=RsiMfiStream, batch=_rsimfi_batch,
    lookback=lambda n, k, y: n - 1, examples=("RSIMFI_60", "RSIMFI_1_1_-1"), builtin=True)
register_indicator(
    "RVOL", params=[Param("period", 2), Param("periods per year", 0, integer=False)],
    inputs=("close",), stream=RealizedVolStream, batch=_rvol_batch,
    lookback=lambda n, ppy: n, examples=("RVOL_20_8760", "RVOL_2_1"), builtin=True)
register_indicator(
    "TREND", params=[Param("period", 3)], inputs=("close",), outputs=("r2", "slope"),
    stream=TrendStrengthStream, batch=_trend_batch, lookback=lambda n: n - 1,
    examples=("TREND_20", "TREND_3"), builtin=True)
register_indicator(
    "RS", params=[Param("period", 1)], inputs=("close", "benchmark"), stream=RelativeStrengthStream,
    batch=_rs_batch, lookback=lambda n: n, examples=("RS_20@SPY", "RS_1@BENCH"), builtin=True)

#: the kinds known when this module was imported (``known_indicators()`` also lists later registrations)
KNOWN_INDICATORS: tuple[str, ...] = known_indicators()


# ------------------------------------------------------------------------------------------ checks


def _fail(spec: str, message: str) -> IndicatorCheckError:
    return IndicatorCheckError(f"check_indicator({spec!r}): {message}")


def _first_difference(a: FloatArray, b: FloatArray) -> int | None:
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    bad = np.flatnonzero(~same)
    return int(bad[0]) if len(bad) else None


def check_indicator(
    spec: str,
    bars: Sequence[npt.ArrayLike] | None = None,
    *,
    lookahead_at: Sequence[int] = (0, 40, 333),
    benchmark: npt.ArrayLike | None = None,
) -> None:
    """The checks every registered kind passes in the test suite, for a user's own tests.

    On generated bars (and on ``bars`` = (open, high, low, close, volume) when given): the batch
    publishes exactly the spec's outputs; every output is NaN for exactly ``lookback`` bars and finite
    after; bar-by-bar streaming (and warm-up by ``extend`` then ``update``) equals the batch to the last
    bit; perturbing bars after t never changes a value at or before t, and does change later values.
    A spec naming a benchmark gets generated benchmark closes (``benchmark``: closes aligned to ``bars``),
    perturbed after t as well. Raises ``IndicatorCheckError`` with the output and bar that fail.
    """
    from mmats.data import generate_bars, to_arrays  # the data layer is only needed for checking

    sp = parse_spec(spec)
    n = max(1200, sp.lookback + 400)
    sets: list[tuple[str, list[FloatArray]]] = []
    for seed, price in ((21, 1.2345), (5, 45_000.0)):
        g = to_arrays(generate_bars(n, seed=seed, start_price=price, timeframe="1h"))
        sets.append((f"generated bars (seed {seed})", [g.open, g.high, g.low, g.close, g.volume]))
    if bars is not None:
        cols = [_as_f64(x, name) for x, name in zip(bars, INPUTS, strict=True)]
        sets.append(("the given bars", cols))
    bench_of: dict[int, FloatArray] = {}
    for j, (_, cols) in enumerate(sets):
        m = len(cols[3])
        if benchmark is not None and j == len(sets) - 1 and bars is not None:
            bench_of[j] = _as_f64(benchmark, "benchmark")
        else:
            bench_of[j] = to_arrays(generate_bars(m, seed=90 + j, start_price=100.0, timeframe="1h")).close
    for j, (label, cols) in enumerate(sets):
        bench = {sp.benchmark: bench_of[j]} if sp.benchmark is not None else None
        base = compute_batch([sp], *cols, benchmarks=bench)
        if tuple(base) != sp.outputs:
            raise _fail(spec, f"batch published {list(base)}, the spec declares {list(sp.outputs)}")
        for k, arr in base.items():
            if len(arr) <= sp.lookback:
                continue
            valid = ~np.isnan(arr)
            if valid[: sp.lookback].any() or not valid[sp.lookback:].all():
                first = int(np.argmax(valid)) if valid.any() else len(arr)
                raise _fail(spec, f"{k} on {label}: declared lookback {sp.lookback}, but values are NaN up to "
                                  f"bar {first} and {int((~valid[sp.lookback:]).sum())} NaN after the lookback")
        m = len(cols[3])
        for t in lookahead_at:
            if t + 61 >= m:
                continue
            rng = np.random.default_rng(t)
            pert = [c.copy() for c in cols]
            shock = np.exp(rng.normal(0, 0.05, m - t - 1))
            for c in pert[:4]:
                c[t + 1:] *= shock * np.exp(rng.normal(0, 0.01, m - t - 1))
            pert[1][t + 1:] = np.maximum.reduce(pert[:4])[t + 1:] * 1.01
            pert[2][t + 1:] = np.minimum.reduce(pert[:4])[t + 1:] * 0.99
            pert[4][t + 1:] = rng.random(m - t - 1) * 100
            moved_bench = None
            if bench is not None and sp.benchmark is not None:
                moved_b = bench_of[j].copy()
                moved_b[t + 1:] *= np.exp(rng.normal(0, 0.05, m - t - 1))
                moved_bench = {sp.benchmark: moved_b}
            moved = compute_batch([sp], *pert, benchmarks=moved_bench)
            for k in sp.outputs:
                i = _first_difference(moved[k][: t + 1], base[k][: t + 1])
                if i is not None:
                    raise _fail(spec, f"{k} on {label}: the value at bar {i} changed when only bars after {t} "
                                      "changed (look-ahead)")
                tail = base[k][t + 60:]
                if np.nanmax(tail) > np.nanmin(tail) and _first_difference(moved[k][t + 60:], tail) is None:
                    raise _fail(spec, f"{k} on {label}: changing the bars after {t} did not change it at all")
        stream = StreamingIndicators([sp], capacity=16)
        got = {k: np.empty(len(cols[3])) for k in sp.outputs}
        rows = list(zip(*(c.tolist() for c in cols), strict=True))
        bench_rows = bench_of[j].tolist()
        for i, row in enumerate(rows):
            values = stream.update(row[0], row[1], row[2], row[3], row[4],
                                   {sp.benchmark: bench_rows[i]} if sp.benchmark is not None else None)
            for k in sp.outputs:
                got[k][i] = values[k]
        for k in sp.outputs:
            i = _first_difference(got[k], base[k])
            if i is not None:
                raise _fail(spec, f"{k} on {label}: streaming gives {got[k][i]!r} at bar {i}, the batch "
                                  f"{base[k][i]!r} (they must be bit-identical)")
        half = len(rows) // 2
        warm = StreamingIndicators([sp])
        warm.extend(cols[0][:half], cols[1][:half], cols[2][:half], cols[3][:half], cols[4][:half],
                    benchmarks={sp.benchmark: bench_of[j][:half]} if sp.benchmark is not None else None)
        for i, row in enumerate(rows[half:], start=half):
            last = warm.update(row[0], row[1], row[2], row[3], row[4],
                               {sp.benchmark: bench_rows[i]} if sp.benchmark is not None else None)
        for k in sp.outputs:
            if rows[half:] and _first_difference(np.array([last[k]]), base[k][-1:]) is not None:
                raise _fail(spec, f"{k} on {label}: extend() then update() ends at {last[k]!r}, the batch at "
                                  f"{base[k][-1]!r}")
