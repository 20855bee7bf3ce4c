"""The portfolio backtest: every feed, symbol and strategy of a system config, one account, one process.

``mmats backtest --config system.yaml`` takes the file ``mmats up`` takes and replays its history through
the objects the running system hosts in its actors, called directly instead of through Ray:

- bars of every symbol merged in time order; at each timestamp, as the order router does, the paper
  venue (``mmats.execution.paper.PaperExecution``, or the config's ``paper_venue``) fills what was
  working, through the router's ``OrderSubmitter``; the fills are booked in the ``Portfolio`` and in
  each strategy's own position, as the portfolio actor books them;
- every strategy then sees its symbols' bars (one ``IStrategy`` per symbol, as ``StrategyHost`` keeps
  them; a ``timeframe`` strategy the bins ``BarAggregator`` completes, at the source bar that completes
  them);
- their signals go through the gatekeeper actor's ``SignalPath`` and the kernel ``RiskGatekeeper`` with
  the config's ``risk`` block, judged on the account as of that timestamp; approved orders reach the
  paper venue and fill from each symbol's next bar on.

What makes it fast is what makes the single-symbol engine fast (``mmats.engine.backtest``): indicators
are computed once per series with TA-Lib and read through a cursor (bit-identical to the streaming
values the live host computes), the per-bar path touches only a few preallocated objects, the account,
the gate and the venue run only on a timestamp with a signal or a working order, and the equity curve
is derived from the fills after the loop.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from mmats.allocation import account_allocation
from mmats.attribution import StrategyLedgers
from mmats.audit import Journal
from mmats.data import BarArrays, column_list, generate_bars, generated_seed, load_bars, to_arrays, untracked
from mmats.engine.backtest import (
    KillSwitchEvent,
    _Cursor,
    _first_valid,
    _strategy_failed,
    full_gc_deferred,
    result_document,
    trade_dict,
)
from mmats.engine.bar_aggregation import BarAggregator
from mmats.engine.risk_feed import SeriesRiskFeed
from mmats.engine.signal_path import GatewayOutput, PendingSignal, SignalPath
from mmats.engine.strategy_host import feed_for_strategy, with_signal_id
from mmats.errors import ConfigError
from mmats.execution.paper import BarUpdate, PaperExecution
from mmats.execution.routing import OrderSubmitter, RetryPolicy, SubmitOutcome
from mmats.execution.simulated import ExecutionConfig
from mmats.fx import FxRates
from mmats.indicators import align_benchmark, benchmark_symbols, compute_batch
from mmats.margin import book_event, liquidation_price
from mmats.model import (
    AccountState,
    Environment,
    Fill,
    Instrument,
    MarketType,
    Order,
    OrderStatus,
    OrderType,
    SignalAction,
    Timeframe,
    default_instrument,
    iso,
)
from mmats.portfolio import Portfolio
from mmats.registry import create_strategy, load_object
from mmats.research.metrics import TradeRecord, compute_metrics, periods_per_year, sharpe_sortino
from mmats.risk.gatekeeper import RiskGatekeeper, system_risk_config
from mmats.risk.killswitch import KillSwitch, KillSwitchState, KillSwitchTransition
from mmats.strategy import IStrategy, StrategyContext
from mmats.system_config import StrategyConfig, SystemConfig

_HOLD = SignalAction.HOLD


# ------------------------------------------------------------------------------------------- data


@dataclass(slots=True)
class PortfolioData:
    """The bars and instruments of every symbol the config's feeds provide, loaded once (a sweep shares
    them). Sweeps and walk-forward see it through the single-series interface (``bars``, ``len``,
    ``window``): their windows are ranges of the merged timeline, each cutting every symbol at the same
    times."""

    series: dict[str, BarArrays]
    instruments: dict[str, Instrument]
    sources: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    _timeline: np.ndarray | None = None
    # derived from the bars alone, kept for every run over them (a sweep runs many): ``layout``, ``last_bar``
    _layout: TimelineLayout | None = None
    _last_bar: dict[str, tuple[int, np.ndarray]] = field(default_factory=dict)

    @property
    def timeline(self) -> np.ndarray:
        """Every distinct bar time of every symbol, in order."""
        if self._timeline is None:
            self._timeline = sorted_unique(np.concatenate([a.ts_ns for a in self.series.values()]))
        return self._timeline

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (a sweep's object store, a worker's task) as its bars alone: what is derived from them
        is rebuilt where it is needed."""
        return PortfolioData, (self.series, self.instruments, self.sources, list(self.warnings))

    def layout(self) -> TimelineLayout:
        """The timeline as the engine walks it, over every symbol with bars in name order (``_timeline``)."""
        if self._layout is None:
            self._layout = _timeline({s: a.ts_ns for s, a in sorted(self.series.items()) if len(a)}, self.timeline)
        return self._layout

    def last_bar(self, symbol: str) -> tuple[int, np.ndarray]:
        """(the place of the symbol's first bar on the timeline, the index of its last bar at or before each
        timestamp, 0 before the first): what puts its closes on the timeline."""
        at = self._last_bar.get(symbol)
        if at is None:
            places = self.layout()[4]  # each symbol's bars' places on the timeline
            at = self._last_bar[symbol] = _last_at(places[symbol], len(self.timeline))
        return at

    @property
    def bars(self) -> PortfolioBars:
        return PortfolioBars(self)

    @property
    def instrument(self) -> tuple[Instrument, ...]:
        return tuple(self.instruments[s] for s in sorted(self.instruments))

    @property
    def resolved(self) -> dict[str, Any]:
        """The facts a research document records: symbols, markets and the finest bar spacing."""
        spacing = min(int(np.median(np.diff(a.ts_ns[:10_001]))) for a in self.series.values() if len(a) > 1)
        markets = {i.market for i in self.instruments.values()}
        market = next(m for m in (MarketType.CRYPTO, MarketType.FOREX, MarketType.STOCK) if m in markets)
        tf = min((t for t in Timeframe if t.seconds * 1_000_000_000 >= spacing), key=lambda t: t.seconds,
                 default=Timeframe.D1)
        return {"kind": "portfolio", "symbols": sorted(self.series), "market": market.value, "timeframe": tf.value,
                "source": ", ".join(f"{s}: {src}" for s, src in sorted(self.sources.items()))}

    def __len__(self) -> int:
        return len(self.timeline)

    def window(self, start: int, end: int) -> PortfolioData:
        """Timeline indices ``[start, end)``: every symbol's bars between those times (views, not copies)."""
        tl = self.timeline
        lo = int(tl[start])
        hi = int(tl[end]) if end < len(tl) else int(tl[-1]) + 1
        series = {}
        for sym, a in self.series.items():
            i0, i1 = np.searchsorted(a.ts_ns, [lo, hi], side="left")
            series[sym] = BarArrays(a.ts_ns[i0:i1], a.open[i0:i1], a.high[i0:i1], a.low[i0:i1], a.close[i0:i1],
                                    a.volume[i0:i1])
        return PortfolioData(series, self.instruments, self.sources, list(self.warnings))

    def fingerprint(self) -> str:
        """Hash of every column of every symbol: a sweep reuses results only for exactly the same bars."""
        h = hashlib.sha256(f"portfolio:{len(self.series)}".encode())
        for sym in sorted(self.series):
            a = self.series[sym]
            h.update(f"{sym}:{len(a)}".encode())
            for col in (a.ts_ns, a.open, a.high, a.low, a.close, a.volume):
                h.update(np.ascontiguousarray(col).tobytes())
        return h.hexdigest()[:32]


class PortfolioBars:
    """The merged timeline as a sweep's driver reads bars: ``len``, ``ts_ns`` and the data's fingerprint."""

    __slots__ = ("data",)

    def __init__(self, data: PortfolioData) -> None:
        self.data = data

    @property
    def ts_ns(self) -> np.ndarray:
        return self.data.timeline

    def __len__(self) -> int:
        return len(self.data.timeline)


def load_portfolio_data(cfg: SystemConfig, start: str | None = None, end: str | None = None) -> PortfolioData:
    """Every replay feed's files and generated symbols, as the supervisor loads them for a paper replay,
    cut to ``[start, end)`` when given (every symbol on the same dates).

    Generated symbols use the supervisor's seed (``generated_seed``), so a backtest and a paper replay
    of one config trade the same bars. A live source cannot be replayed: it is refused by name.
    """
    series: dict[str, BarArrays] = {}
    instruments: dict[str, Instrument] = {}
    sources: dict[str, str] = {}
    for n, feed in enumerate(cfg.feeds):
        if feed.source != "replay":
            raise ConfigError(f"feeds.{n} ({feed.venue}): source {feed.source} streams live candles; a portfolio "
                              "backtest replays history (give the feed files: or generated_symbols:)")
        for sym, path in feed.files.items():
            series[sym] = to_arrays(load_bars(path))
            sources[sym] = path
        for sym in feed.generated_symbols:
            seed = generated_seed(sym)
            series[sym] = to_arrays(generate_bars(feed.generated_bars, seed=seed))
            sources[sym] = f"generated(bars={feed.generated_bars}, seed={seed})"
        for sym in [*feed.files, *feed.generated_symbols]:
            instruments[sym] = default_instrument(sym, feed.market)
    for sym, settings in cfg.instruments.items():  # how each is held: kind, leverage, margins, shortable
        if sym in instruments:
            instruments[sym] = settings.apply(instruments[sym])
    if not series:
        raise ConfigError("no symbols: configure at least one feed with files or generated_symbols")
    if start or end:
        lo = _bound(start, "start", np.iinfo(np.int64).min)
        hi = _bound(end, "end", np.iinfo(np.int64).max)
        if lo >= hi:
            raise ConfigError(f"start {start} is not before end {end}")
        for sym, a in list(series.items()):
            a0, a1 = np.searchsorted(a.ts_ns, [lo, hi], side="left")
            series[sym] = BarArrays(a.ts_ns[a0:a1], a.open[a0:a1], a.high[a0:a1], a.low[a0:a1], a.close[a0:a1],
                                    a.volume[a0:a1])
    for sym, arrays in series.items():
        if len(arrays) < 2:
            raise ConfigError(f"{sym} ({sources[sym]}): fewer than 2 bars"
                              + (f" between {start or 'the start'} and {end or 'the end'}" if start or end else ""))
    return PortfolioData(series, instruments, sources)


def _bound(text: str | None, what: str, default: int) -> int:
    if not text:
        return int(default)
    try:
        ts = np.datetime64(text.rstrip("Z"), "ns")
    except ValueError:
        raise ConfigError(f"--{what} {text!r} is not a date (e.g. 2022-01-05 or 2022-01-05T12:00)") from None
    return int(ts.astype(np.int64))


# --------------------------------------------------------------------------------------- runners


class _Runner:
    """One strategy object on one symbol: its indicators, cursor and context, built once."""

    __slots__ = ("bins", "closes", "ctx", "cur", "first", "gaps", "known", "on_bar", "several", "strategy",
                 "strategy_id", "symbol")

    def __init__(self, strategy_id: str, symbol: str, strategy: IStrategy, arrays: BarArrays,
                 market: MarketType, account: Callable[[], AccountState],
                 benchmarks: Mapping[str, np.ndarray] | None = None) -> None:
        self.strategy_id = strategy_id
        self.symbol = symbol
        self.strategy = strategy
        specs = strategy.get_required_indicators()
        n = len(arrays)
        cols_np = compute_batch(specs, arrays.open, arrays.high, arrays.low, arrays.close, arrays.volume,
                                benchmarks=benchmarks)
        nan = {name: np.isnan(arr) for name, arr in cols_np.items()}  # once, for the warm-up and the gaps
        self.first = first = _first_valid(nan, n)
        # The live host skips any bar where an output is NaN, not only the warm-up: the rare later ones too.
        gaps: set[int] = set()
        for mask in nan.values():
            bad = np.flatnonzero(mask[first:])
            gaps.update((bad + first).tolist())
        self.gaps = gaps
        self.cur = _Cursor(arrays, {}, cols_np)  # each output converted when a strategy first reads it
        self.closes: tuple[float, ...] = self.cur._c
        self.ctx = StrategyContext(self.cur, self.cur, Environment.BACKTEST, symbol, market, strategy_id, account)
        self.on_bar = strategy.on_bar
        self.bins: dict[int, list[int]] | None = None  # timeframe runners: source bar index -> bins it completes
        self.known: list[int] = []  # timeframe runners: the source time each bin became known
        self.several = False  # the strategy trades several symbols (mmats.engine.strategy_host.with_signal_id)


class _Slot:
    """One symbol on the merged timeline: its index, its runners, its bars for the paper venue."""

    __slots__ = ("_mark", "_mark_i", "arrays", "closes", "eq_terms", "highs", "i", "instrument", "lows", "ref_hi",
                 "ref_lo", "runners", "symbol", "tf_runners", "ts")

    def __init__(self, symbol: str, arrays: BarArrays, instrument: Instrument) -> None:
        self.symbol = symbol
        self.arrays = arrays
        self.instrument = instrument
        self.i = -1
        self.closes: tuple[float, ...] = column_list(arrays, "close")
        self.ts: tuple[int, ...] = column_list(arrays, "ts_ns")
        self.lows: tuple[float, ...] | None = None  # converted when a margin band first needs them
        self.highs: tuple[float, ...] | None = None
        # 1 % either side of the close the margin bands were computed at (when they read this price): a
        # close outside makes the bands stale (``PortfolioBacktest._compute_triggers``)
        self.ref_lo = -math.inf
        self.ref_hi = math.inf
        # (first bar, NaN bars, cursor, on_bar, context, strategy id, trades several symbols)
        self.runners: list[tuple[int, set[int], _Cursor, Callable[[StrategyContext], Any], StrategyContext, str,
                                 bool]] = []
        self.tf_runners: list[_Runner] = []
        # the float equity's terms that read its close (``PortfolioBacktest._record_books``): empty, none
        self.eq_terms: list[_EquityTerm] = []
        self._mark_i = -1
        self._mark = Decimal(0)

    def mark(self) -> Decimal:
        """The current close at the price precision, as the ledger marks it: one ``Decimal`` per bar, so
        the ledger and the rates see the very same object again until the symbol's next bar (and their
        caches, keyed by identity, hold)."""
        i = self.i
        if i != self._mark_i:
            self._mark = self.instrument.round_price(self.closes[i])
            self._mark_i = i
        return self._mark

    def bar(self, i: int) -> BarUpdate:
        a = self.arrays
        return BarUpdate(self.symbol, a.ts_ns.item(i), a.open.item(i), a.high.item(i), a.low.item(i),
                         a.close.item(i), a.volume.item(i))


# A term of the float equity: [its value at the last valuation, amount (cash, its rate's constant folded
# in) or quantity, the position's slot (None: cash), the rate's constant, the rate's feeds (slot, inverted)]
_EquityTerm = list[Any]


def _revalue(terms: list[_EquityTerm]) -> float:
    """Value each term afresh (a cash amount at its rate, a position at its symbol's last close and its
    rate, in base currency) and keep the value in it; the sum of the changes."""
    moved = 0.0
    for term in terms:
        old, qty, slot, const, feeds = term
        value: float = qty if slot is None else qty * slot.closes[slot.i] * const  # cash: its constant folded in
        if feeds:
            value = value * _feed_rate(feeds)
        moved += value - old
        term[0] = value
    return moved


def _feed_rate(feeds: list[tuple[_Slot, bool]]) -> float:
    """The product of the feed prices a rate follows (each slot's last close, or its first before it has
    had a bar), each divided by where ``inverted``."""
    r = 1.0
    for slot, inverted in feeds:
        px = slot.closes[slot.i] if slot.i >= 0 else slot.closes[0]
        r = r / px if inverted else r * px
    return r


def _weak_method(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` through a weak reference to its object (see ``PortfolioBacktest._account_view``)."""
    ref = weakref.WeakMethod(method)  # type: ignore[arg-type]

    def call(*args: Any) -> Any:
        bound = ref()
        if bound is None:
            raise RuntimeError("the portfolio backtest this belongs to has finished and been released")
        return bound(*args)

    return call


def aggregate_bins(symbol: str, arrays: BarArrays, timeframe: str) -> tuple[BarArrays, dict[int, list[int]], list[int]]:
    """The bins a ``timeframe`` strategy sees, exactly as the live ``BarAggregator`` completes them:
    the bin arrays, for each source bar index the bins it completes, and each bin's known time."""
    agg = BarAggregator(timeframe)
    rows: list[tuple[int, float, float, float, float, float]] = []
    known: list[int] = []
    emit: dict[int, list[int]] = {}
    cols = zip(arrays.ts_ns.tolist(), arrays.open.tolist(), arrays.high.tolist(), arrays.low.tolist(),
               arrays.close.tolist(), arrays.volume.tolist(), strict=True)
    for i, (ts, o, h, lo, c, v) in enumerate(cols):
        try:
            done = agg.update((symbol, ts, o, h, lo, c, v))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        for b, known_ns in done:
            emit.setdefault(i, []).append(len(rows))
            rows.append(b[1:])  # type: ignore[arg-type]
            known.append(known_ns)
    if not rows:
        raise ConfigError(f"{symbol}: no complete {timeframe} bin in {len(arrays)} bars")
    a = np.asarray(rows, dtype=np.float64)
    binned = BarArrays(np.asarray([r[0] for r in rows], dtype=np.int64), a[:, 1].copy(), a[:, 2].copy(),
                       a[:, 3].copy(), a[:, 4].copy(), a[:, 5].copy())
    return binned, emit, known


# -------------------------------------------------------------------------------- strategy books


class FloatCache(dict[Any, tuple[Decimal, float]]):
    """``float`` of the Decimals kept under each key, converted again only when the key holds another
    object. Converting a Decimal costs 0.3-1 µs (it goes through its text) and the books convert all
    their figures at every change, while one fill changes one or two of them."""

    def floats(self, items: Iterable[tuple[Any, Decimal]], nonzero: bool = False) -> dict[Any, float]:
        """The float of every (key, Decimal) of ``items`` (``nonzero``: but the zero ones), by key."""
        out: dict[Any, float] = {}
        get = self.get
        for key, value in items:
            if nonzero and not value:
                continue
            e = get(key)
            if e is None or e[0] is not value:
                e = self[key] = (value, float(value))
            out[key] = e[1]
        return out


class StrategyPositions:
    """Each (strategy, symbol)'s own net quantity, as the portfolio actor keeps it for the gateway.

    A fill that leaves the account flat in a symbol (a kill-switch flatten, a manual close) leaves every
    strategy flat in it."""

    __slots__ = ("_floats", "held")

    def __init__(self) -> None:
        self.held: dict[tuple[str, str], Decimal] = {}
        self._floats = FloatCache()

    def book(self, fill: Fill, account_quantity: Decimal) -> None:
        key = (fill.strategy_id, fill.symbol)
        self.held[key] = self.held.get(key, Decimal(0)) + fill.signed_quantity
        if account_quantity == 0:
            for k in [k for k in self.held if k[1] == fill.symbol]:
                del self.held[k]

    def floats(self) -> dict[tuple[str, str], float]:
        return self._floats.floats(self.held.items(), nonzero=True)


def kill_switch_veto(switch: KillSwitch, signal: PendingSignal) -> str | None:
    """SOFT lets only exits through; HARD and FREEZE let nothing through (the flatten goes via the venue)."""
    state = switch.state
    if state is KillSwitchState.RUNNING:
        return None
    if state is KillSwitchState.SOFT:
        return None if signal.signal.action is SignalAction.CLOSE else "KillSwitch: SOFT (no new entries)"
    return f"KillSwitch: {state.value}"


# ---------------------------------------------------------------------------------------- result


@dataclass(slots=True)
class PortfolioResult:
    config: dict[str, Any]
    currency: str
    ts_ns: np.ndarray
    equity: np.ndarray
    benchmark_equity: np.ndarray
    metrics: dict[str, float]
    benchmark: dict[str, float]
    trades: list[TradeRecord]
    orders: list[Order]
    fills: list[Fill]
    decisions: list[Any]
    kill_switch: list[KillSwitchEvent]
    summary: dict[str, Any]
    attribution: dict[str, Any]
    instruments: dict[str, Instrument]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self, equity_every: int = 1) -> dict[str, Any]:
        """The result schema (docs/result-schema.md) with the portfolio's sections (``portfolio``,
        per-strategy, per-market and per-symbol ``attribution``)."""
        trades = [trade_dict(t, self.instruments[t.symbol], market=True) for t in self.trades]
        return result_document(self, trades, 2, equity_every)

    def to_json(self, equity_every: int = 1) -> str:
        return json.dumps(self.to_dict(equity_every), indent=1, allow_nan=False) + "\n"


# ---------------------------------------------------------------------------------------- engine


class PortfolioBacktest:
    """One run of a system config over its feeds' history. Create a new one per run."""

    def __init__(self, cfg: SystemConfig, data: PortfolioData | None = None, *, journal: Journal | None = None,
                 config_doc: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.data = data if data is not None else load_portfolio_data(cfg)
        self.journal = journal
        strategies = [s for s in cfg.strategies if s.enabled]
        if not strategies:
            raise ConfigError("strategies: a portfolio backtest needs at least one enabled strategy")
        self.strategy_configs = strategies
        self.instruments = dict(self.data.instruments)
        costs = cfg.costs
        from mmats.research.runconfig import CommissionSpec, SlippageSpec

        try:
            slippage = SlippageSpec(**costs.slippage).build(costs.volume_in_quote)
            commission = CommissionSpec(**costs.commission).build()
        except Exception as exc:
            raise ConfigError(f"costs: {str(exc).splitlines()[0]}") from None
        venue_cls = PaperExecution if cfg.paper_venue is None else load_object(cfg.paper_venue, PaperExecution)
        cash = Decimal(repr(cfg.initial_cash))
        self.fx = cfg.fx_plan()  # base currency and rates: the feeds' pairs, fx_rates, the stablecoin pegs
        # perpetuals' funding, as the router reads it for the paper venue (mmats.margin)
        funding = {sym: st.funding.build() for sym, st in cfg.instruments.items()
                   if st.funding is not None and sym in self.instruments}
        self.execution = venue_cls(self.instruments, cash, slippage, commission,
                                   ExecutionConfig(costs.max_volume_share, costs.volume_in_quote, costs.cash_only),
                                   fx=self.fx, **({"funding": funding} if funding else {}))
        self._margined: frozenset[str] = getattr(self.execution, "margined", frozenset())
        # a funded perpetual's schedule moves on while it is flat too (its bars step at each funding time)
        self._funded = frozenset(self.execution.margin.funding) if self._margined else frozenset()
        self.submitter = OrderSubmitter(RetryPolicy(**cfg.router_retry.model_dump()), sleep=lambda _s: None)
        self.portfolio = Portfolio(cash, cfg.base_currency, fx=self.fx)
        for inst in self.instruments.values():
            self.portfolio.register(inst)
        self.fx.require({i.quote_currency.upper() for i in self.instruments.values()}, "the feeds' instruments")
        self.positions = StrategyPositions()
        self.switch = KillSwitch(journal)
        self.risk = RiskGatekeeper(system_risk_config(cfg.risk), Environment.BACKTEST, journal=None,
                                   kill_switch=self.switch, initial_equity=cfg.initial_cash, observe_equity=False)
        self.monitor = self.risk.monitor
        allocation = {s.id: s.allocation for s in strategies}
        self.gateway = SignalPath(self.risk, self.instruments, allocation, advisory=False,
                                  allowed=functools.partial(kill_switch_veto, self.switch))
        # a timestamp's signals are evaluated by (symbol, place in the config), as a lockstep replay does
        self.gateway.strategy_rank = {s.id: i for i, s in enumerate(strategies)}
        # ``allocation:`` weights between the strategies, fed every timestamp as the gatekeeper actor feeds
        # them every account update; a rebalance applies to the signals of its bar time.
        self.allocation = account_allocation(cfg.allocation, allocation)
        if self.allocation is not None:
            self.gateway.allocation.update(self.allocation.allocation)
        self.allocation_changes: list[dict[str, Any]] = []
        self.margin_events: list[dict[str, Any]] = []
        self.switch.add_listener(_weak_method(self._on_transition))
        self.config_doc = config_doc if config_doc is not None else cfg.model_dump(mode="json")
        self.fills: list[Fill] = []
        self.decisions: list[Any] = []
        self.rejected_orders: dict[str, Order] = {}
        self.kill_events: list[KillSwitchEvent] = []
        self.warnings: list[str] = []
        self._effects: list[KillSwitchTransition] = []
        self._watch: set[str] = set()  # market orders not yet final (the gateway counts them as on their way)
        self._partial: dict[str, Decimal] = {}
        self._done: list[str] = []
        self._working: set[str] = set()  # symbols whose venue book has open orders
        self._router_errors = 0
        self._ts = 0
        self._k = 0
        # The books after every change (timeline index, cash per currency, quantity per symbol): the
        # equity curve is derived from them after the loop.
        self._book_steps: list[tuple[int, dict[str, float], dict[str, float]]] = []
        self._book_floats = FloatCache()  # the books' balances (by currency) and quantities (by symbol)
        self._by_symbol: dict[str, list[Decimal]] = {}  # symbol -> [realized P&L, fees] in base currency
        self._kelly = self.risk.trades is not None
        self._triggers: dict[str, tuple[float, float]] = {}  # margined symbol -> (low, high) band of its bars
        self._trig_version = -1  # len(_book_steps) when the bands were computed; -1: to be computed again
        self._trig_ref: list[_Slot] = []  # the slots whose 1 % move recomputes the bands (``_Slot.ref_lo``)
        self._trig_floats = FloatCache()  # the venue ledger's quantities
        self._trig_order: dict[tuple[str, ...], list[_Slot]] = {}  # held symbols -> the slots whose prices move bands
        self._funding_next: dict[str, float] = {}  # margined symbol -> its next funding time (inf: none)
        # What the strategies' contexts call for the account. The engine holds them (slots, runners), so a
        # strong reference back would make a cycle, and a finished run (a GB of indicator columns for two
        # years of minute bars) would wait for a full garbage collection instead of going with its owner.
        self._account_view = _weak_method(self._account_now)
        self._build_slots()
        self._chains = _rate_chains(self.fx, set(self.slots))
        # the pairs some currency's rate reads (a pair nothing converts through moves no rate that matters)
        used = {sym for chain in self._chains.values() for sym, _, _ in chain if sym is not None}
        self._fx_slots = [self.slots[sym] for sym in sorted(used)]
        self._fx_marked: dict[str, int] = {}
        self._pos_rate = {sym: self._chains[inst.quote_currency.upper()] for sym, inst in self.instruments.items()}
        # the same rates as a constant factor and the feed prices it multiplies by, split once
        self._ccy_split = {ccy: self._split_chain(chain) for ccy, chain in self._chains.items()}
        self._pos_split = {sym: self._ccy_split[inst.quote_currency.upper()] for sym, inst in self.instruments.items()}
        self._ccy_reads = {ccy: tuple(dict.fromkeys(fs for fs, _ in feeds))  # the slots a rate reads, each once
                           for ccy, (_, feeds) in self._ccy_split.items()}
        # a position's equity term: its slot, its rate's constant and feeds, and the slots it reads
        self._pos_parts = {sym: (slot, *self._pos_split[sym],
                                 tuple(dict.fromkeys((slot, *(fs for fs, _ in self._pos_split[sym][1])))))
                           for sym, slot in self.slots.items()}
        self._maintenance = {sym: inst.maintenance_rate for sym, inst in self.instruments.items()}
        self._held_floats: dict[tuple[str, str], float] | None = None  # cache of positions.floats()
        self._eq_base = cfg.initial_cash  # the float equity's parts (rebuilt on every change of the books)
        self._eq_terms: list[_EquityTerm] = []
        self._eq_slots: list[_Slot] = []  # the slots whose closes those terms read
        self._eq_changed = True  # the parts changed since the equity was last computed
        self.warnings += self.fx.notes()
        for slot in self._fx_slots:  # a pair's first open values what is booked before its first bar
            self.portfolio.on_price(slot.symbol, slot.instrument.round_price(float(slot.arrays.open[0])))
        # Bars reach the gatekeeper's ATR and correlation inputs (when its config reads them) lazily: at a
        # decision, every symbol's bars up to that time, which is what it holds live at that moment.
        self._risk_feeds = [(slot, SeriesRiskFeed(self.risk, slot.symbol, slot.arrays))
                            for slot in self.slots.values()] if self.risk.needs.bars else []
        self._mark_working()  # funded perpetuals step from their first bar, as the paper venue steps them

    # -------------------------------------------------------------------------------- build

    def _build_slots(self) -> None:
        self.slots: dict[str, _Slot] = {}
        for sym in sorted(self.data.series):
            if len(self.data.series[sym]):  # a walk-forward window may hold no bar of a slow symbol
                self.slots[sym] = _Slot(sym, self.data.series[sym], self.instruments[sym])
        if not self.slots:
            raise ConfigError("no bars to backtest in the feeds' data")
        self.strategies: dict[tuple[str, str], IStrategy] = {}
        for s in self.strategy_configs:
            assert s.market is not None  # resolved when the config was validated
            for sym in s.symbols:
                self._add_runner(s, sym, s.market)

    def _add_runner(self, s: StrategyConfig, sym: str, market: MarketType) -> None:
        slot = self.slots.get(sym)
        if slot is None:
            return
        strat = create_strategy(s.ref, s.params)
        strat.strategy_id = s.id
        self.strategies[(s.id, sym)] = strat
        # Benchmarks (RS_20@SPY) are symbols of the strategy's feed, as paper and live require: each bar
        # reads the benchmark's last bar (or bin) known at or before it, as the live StrategyHost does.
        wanted = benchmark_symbols(strat.get_required_indicators())
        if wanted:
            feed_for_strategy({f.venue: f.all_symbols for f in self.cfg.feeds}, s.id, s.symbols, wanted)
        missing = [b for b in wanted if b not in self.slots]
        if missing:
            raise ConfigError(f"strategy {s.id}: benchmark {', '.join(missing)} has no bars in the backtest's dates")
        if s.timeframe is None:
            bench = {b: align_benchmark(slot.arrays.ts_ns, self.slots[b].arrays.ts_ns, self.slots[b].arrays.close)
                     for b in wanted}
            r = _Runner(s.id, sym, strat, slot.arrays, market, self._account_view, bench)
            slot.runners.append((r.first, r.gaps, r.cur, r.on_bar, r.ctx, s.id, len(s.symbols) > 1))
            return
        binned, emit, known = aggregate_bins(sym, slot.arrays, s.timeframe.value)
        bench = {}
        for b in wanted:
            b_bins, _, b_known = aggregate_bins(b, self.slots[b].arrays, s.timeframe.value)
            bench[b] = align_benchmark(known, b_known, b_bins.close)
        r = _Runner(s.id, sym, strat, binned, market, self._account_view, bench)
        r.bins, r.known, r.several = emit, known, len(s.symbols) > 1
        slot.tf_runners.append(r)

    # ---------------------------------------------------------------------------------- run

    def run(self, progress: Callable[[int], None] | None = None) -> PortfolioResult:
        with full_gc_deferred():
            try:
                return self._run(progress)
            finally:
                for slot in self.slots.values():  # a term holds its slot: no cycle outlives the run
                    slot.eq_terms = []
                self._eq_terms = []

    def _run(self, progress: Callable[[int], None] | None) -> PortfolioResult:
        times, t_list, codes, by_symbol, _ = self.data.layout()
        groups = [tuple(self.slots[sym] for sym in g) for g in by_symbol]
        self._times = times
        n_ts = len(times)
        watch_equity = self.monitor.watches_equity
        pending: list[PendingSignal] = []
        report_every = max(1, n_ts // 200)
        bars_done = 0
        # Locals for the per-timestamp path (each is mutated in place, never rebound, by the handlers).
        working, effects = self._working, self._effects
        brokers = self.execution.brokers
        bands, funding_next, book_steps = self._triggers, self._funding_next, self._book_steps
        trig_ref = self._trig_ref
        marks: dict[str, float] = self.execution.margin._marks if self._margined else {}
        on_equity = self.monitor.on_equity if watch_equity else None
        equity_now, revalue = self._equity_now, _revalue
        equity = self._eq_base
        allocate = self._allocate if self.allocation is not None else None
        journaling = self.journal is not None
        for k in range(n_ts):
            t = t_list[k]
            grp = groups[codes[k]]
            for slot in grp:
                slot.i += 1
            self._ts = t
            self._k = k
            if working:
                # The venue book steps only where something can happen: working orders, a funding time,
                # a bar reaching a margined position's liquidation band (``_margin_due``). A held margined
                # position's ordinary bar only becomes its mark, here, without a call.
                if trig_ref:  # a price the bands read moved 1 %: they are computed again, as after a fill
                    for slot in grp:
                        c = slot.closes[slot.i]
                        if c < slot.ref_lo or c > slot.ref_hi:
                            self._trig_version = -1
                            break
                step = False
                stale = self._trig_version != len(book_steps)  # the books changed since the bands were computed
                for slot in grp:
                    sym = slot.symbol
                    if sym not in working:
                        continue
                    band = bands.get(sym)
                    if band is None or stale or brokers[sym].open_orders or funding_next.get(sym, -1.0) <= t:
                        step = True
                        break
                    i = slot.i
                    if band[0] < slot.lows[i] and slot.highs[i] < band[1]:  # type: ignore[index]
                        marks[sym] = slot.closes[i]
                    else:
                        step = True
                        break
                if step:
                    self._fill_step(t, grp)
            if on_equity is not None:
                # the equity moves only with the books and the closes it reads: otherwise it is the last one
                if self._eq_changed:
                    self._eq_changed = False
                    equity = equity_now()
                else:  # only the terms that read a close that moved are valued again, their change added
                    for slot in grp:
                        if slot.eq_terms:
                            equity += revalue(slot.eq_terms)
                on_equity(t, equity)
            if allocate is not None:
                allocate(t)
            if effects:
                self._apply_effects(t)
            for slot in grp:
                i = slot.i
                for first, gaps, cur, on_bar, ctx, sid, several in slot.runners:
                    if i < first or (gaps and i in gaps):
                        continue
                    cur.i = i
                    try:
                        sig = on_bar(ctx)
                    except Exception as exc:
                        raise _strategy_failed(sid, i, t, exc) from exc
                    if sig is not None and (sig.action is not _HOLD or journaling):  # a HOLD is only journaled
                        pending.append(PendingSignal(sid, t, slot.closes[i], with_signal_id(sig, t, several)))
                if slot.tf_runners:
                    self._binned_step(slot, i, t, pending)
            if pending:
                self._decide(t, pending)
                pending = []
            if progress is not None:
                bars_done += len(grp)
                if k % report_every == 0:
                    progress(bars_done)
        if progress is not None:
            progress(bars_done)
        return self._result()

    def _binned_step(self, slot: _Slot, i: int, t: int, pending: list[PendingSignal]) -> None:
        for r in slot.tf_runners:
            assert r.bins is not None
            done = r.bins.get(i)
            if not done:
                continue
            for b in done:
                if b < r.first or b in r.gaps:
                    continue
                r.cur.i = b
                try:
                    sig = r.on_bar(r.ctx)
                except Exception as exc:
                    raise _strategy_failed(r.strategy_id, b, r.known[b], exc) from exc
                if sig is not None and (sig.action is not _HOLD or self.journal is not None):
                    known = r.known[b]
                    stamped = with_signal_id(sig, known, r.several)
                    pending.append(PendingSignal(r.strategy_id, known, r.closes[b], stamped))

    # ------------------------------------------------------------------------ venue and books

    def _fill_step(self, t: int, grp: tuple[_Slot, ...]) -> None:
        """The router's ``on_bars``: every symbol with working orders advances its venue book one bar."""
        fills: list[Fill] = []
        execution = self.execution
        brokers = execution.brokers
        working = self._working
        stepped = False
        for slot in grp:
            sym = slot.symbol
            if sym not in working:
                continue
            if not brokers[sym].open_orders and not self._margin_due(slot, t):
                continue  # only the margin step watches this symbol, and this bar cannot trigger it
            if not stepped and self._fx_slots:
                self._mark_rates()  # the venue values other currencies at the rates of the moment
            stepped = True
            new = execution.on_bar(slot.bar(slot.i))
            if new:
                fills += new
            self._refresh_active(slot.symbol)
        if stepped and self._margined:
            self._drain_margin(t)
        if fills:
            self._book(fills, t)
        self._reconcile(t)

    def _book(self, fills: list[Fill], t: int) -> None:
        """The portfolio actor's ``on_fills``: book, keep each strategy's own position, tell the strategies."""
        pf = self.portfolio
        journal = self.journal
        orders = self.execution.orders
        filled: list[Order] = []
        for f in fills:
            if journal is not None:
                journal.append("fill", f.to_dict(), f.ts_ns)
            realized, fees = pf.realized_pnl, pf.fees
            pf.apply_fill(f)
            sym_books = self._by_symbol.setdefault(f.symbol, [Decimal(0), Decimal(0)])
            sym_books[0] += pf.realized_pnl - realized  # in base currency, at the fill's rate
            sym_books[1] += pf.fees - fees
            self.positions.book(f, pf.positions[f.symbol].quantity)
            self.fills.append(f)
            if self._kelly:
                self.risk.on_fill(f)  # the strategies' closed round trips reach Kelly sizing
            if self._margined and f.symbol in self._margined:
                self._refresh_active(f.symbol)
            if f.client_order_id in self._watch:
                self._partial[f.client_order_id] = self._partial.get(f.client_order_id, Decimal(0)) + f.signed_quantity
            order = orders.get(f.client_order_id)
            if order is not None and order.status is OrderStatus.FILLED:
                filled.append(order)
                if journal is not None:
                    journal.append("order", order.to_dict(), f.ts_ns)
        done = [cid for cid in self._watch if orders[cid].status.is_terminal]
        for cid in done:
            self._watch.discard(cid)
            self._partial.pop(cid, None)
        self._done += done
        self._record_books()
        for order in filled:
            strat = self.strategies.get((order.strategy_id, order.symbol))
            if strat is not None:
                strat.on_order_filled(order)

    def _reconcile(self, t: int) -> None:
        """A submit whose answer was lost (a custom paper venue) is resolved from what the venue holds."""
        if not self.submitter.unknown:
            return
        for order in self.submitter.reconcile(lambda cid: OrderStatus.ACCEPTED if self.execution.holds(cid)
                                              else None, t):
            if order.status is OrderStatus.REJECTED:
                self._tell_rejected(order, order.reject_reason or "rejected")
        self._mark_working()

    def _mark_working(self) -> None:
        working = self._working  # updated in place: the run loop holds it
        working.clear()
        working.update(s for s, b in self.execution.brokers.items() if b.open_orders)
        for sym in self._margined:
            self._refresh_active(sym)

    def _refresh_active(self, symbol: str) -> None:
        """A symbol's venue book steps on its bars while it has working orders, or a margined position
        (funding, liquidation, closeout: mmats.margin); otherwise its bars cost nothing there."""
        execution = self.execution
        if execution.brokers[symbol].open_orders or symbol in self._funded or (
                symbol in self._margined and execution.ledger.positions[symbol].quantity):
            self._working.add(symbol)
        else:
            self._working.discard(symbol)

    def _margin_due(self, slot: _Slot, t: int) -> bool:
        """Whether the paper venue's margin step can act on this bar: a funding time is due, or the bar
        reaches a band around the position's liquidation (closeout) price. Otherwise the step would only
        note the close as the symbol's mark, which is done here, and the bar costs no venue call.

        The band: the liquidation price as ``mmats.margin`` computes it, widened by what a 1 % move of any
        other held price or rate, or of this symbol's rate, can shift it (about 3 % of the account's cash
        and of the other positions' margin-weighted values over this position's); it is recomputed when
        the books change or any such price has moved 1 % since."""
        book = self.execution.margin
        sym = slot.symbol
        due = self._funding_next.get(sym)
        if due is None:
            due = self._funding_next[sym] = book.next_funding_ns(sym, t)
        if due <= t:
            del self._funding_next[sym]  # the step settles it; the next time is asked for again
            return True
        if self._trig_version != len(self._book_steps):
            self._compute_triggers()
        lo, hi = self._triggers.get(sym, (-math.inf, math.inf))
        i = slot.i
        lows = slot.lows
        if lows is None:
            lows = slot.lows = column_list(slot.arrays, "low")
        highs = slot.highs
        if highs is None:
            highs = slot.highs = column_list(slot.arrays, "high")
        if lows[i] <= lo or highs[i] >= hi:
            return True
        book._marks[sym] = slot.closes[i]  # what the step records when nothing happens
        return False


    def _compute_triggers(self) -> None:
        ledger = self.execution.ledger
        positions = ledger.positions
        held = self._trig_floats.floats([(o, p.quantity) for o, p in positions.items()], nonzero=True)
        marks = self.execution.margin._marks
        maintenance = self._maintenance
        pos_split = self._pos_split
        # each held symbol's terms as another position of the ones below: value, maintenance, slack; and
        # its quantity and rate for its own band
        terms: list[tuple[str, float, float, float, float, float]] = []
        for o, qo in held.items():
            px = marks.get(o) or float(positions[o].last_price)
            const, feeds = pos_split[o]
            rate = const * _feed_rate(feeds) if feeds else const
            v, mo = px * rate, maintenance[o]  # price x rate, in base currency
            aq = abs(qo)
            terms.append((o, qo * v, aq * v * mo, abs(v * (aq * mo - qo)), qo, rate))
        cash = float(ledger.cash)
        triggers = self._triggers  # in place: the run loop holds it
        triggers.clear()
        margined = self._margined
        # every position's terms added once; each band takes its own out (the band's 3 % dwarfs the rounding)
        all_value = all_mm = all_slack = 0.0
        for _, ov, omm, osl, _, _ in terms:
            all_value += ov
            all_mm += omm
            all_slack += osl
        for sym, ov, omm, osl, q, rate in terms:
            if sym not in margined:
                continue
            m = maintenance[sym]
            o_value, o_mm, o_slack = all_value - ov, all_mm - omm, all_slack - osl
            level = liquidation_price(q, m, o_value, o_mm, cash) / rate
            slack = o_slack + abs(cash)
            band = 0.03 * slack / (abs(q) * max(1e-12, 1.0 - m) * rate) + 0.03 * abs(level)
            triggers[sym] = (level + band, math.inf) if q > 0 else (-math.inf, level - band)
            slot = self.slots[sym]
            if slot.lows is None:
                slot.lows = column_list(slot.arrays, "low")
                slot.highs = column_list(slot.arrays, "high")
        self._trig_version = len(self._book_steps)
        key = tuple(x[0] for x in terms)
        order = self._trig_order.get(key)
        if order is None:  # the held set changes far less often than the books
            syms = sorted({*key, *(x.symbol for x in self._fx_slots)})
            order = self._trig_order[key] = [self.slots[s] for s in syms]
        trig_ref = self._trig_ref  # in place: the run loop holds it
        for x in trig_ref:
            x.ref_lo, x.ref_hi = -math.inf, math.inf
        trig_ref.clear()
        for x in order:
            i = x.i
            if i >= 0:
                px = x.closes[i]
                lo, hi = px * 0.99, px * 1.01
                if px >= 0.0:
                    x.ref_lo, x.ref_hi = lo, hi
                else:
                    x.ref_lo, x.ref_hi = hi, lo
                trig_ref.append(x)

    def _drain_margin(self, t: int) -> None:
        """Funding the paper venue settled goes to the account (as the router passes it to the portfolio);
        the orders a liquidation canceled are journaled."""
        funding, canceled = self.execution.drain_margin()
        journal = self.journal
        for order in canceled:
            if journal is not None:
                journal.append("order", order.to_dict(), t)
        if not funding:
            return
        pf = self.portfolio
        for event in funding:
            realized = pf.realized_pnl
            book_event(pf, event)
            self._by_symbol.setdefault(event.symbol, [Decimal(0), Decimal(0)])[0] += pf.realized_pnl - realized
            self.margin_events.append(event.to_dict())
            if journal is not None:
                journal.append("funding", event.to_dict(), event.ts_ns)
        self._record_books()

    def _allocate(self, t: int) -> None:
        """The allocator's account update: each strategy's holdings, the marks and the equity of this time."""
        assert self.allocation is not None
        held = self._held_floats
        if held is None:
            held = self._held_floats = self.positions.floats()
        marks = {}
        for sym, pos in self.portfolio.positions.items():
            if pos.quantity:
                slot = self.slots[sym]
                marks[sym] = float(slot.mark())
        change = self.allocation.on_account(t, held, marks, self._equity_now())
        if change is None:
            return
        self.gateway.allocation.update(self.allocation.allocation)
        record = {"time": iso(t), **change.to_dict()}
        self.allocation_changes.append(record)
        if self.journal is not None:
            self.journal.append("allocation", change.to_dict(), t)

    def _record_books(self) -> None:
        pf = self.portfolio
        floats = self._book_floats.floats
        balances = floats(pf.balances.items())
        quantities = floats([(s, p.quantity) for s, p in pf.positions.items()], nonzero=True)
        self._book_steps.append((self._k, balances, quantities))
        self._held_floats = None
        # The float equity in terms: constant-rate cash folded into one number, the rest valued per
        # timestamp; each slot lists the terms that read its close.
        base = 0.0
        terms: list[_EquityTerm] = []
        reading: list[tuple[_EquityTerm, tuple[_Slot, ...]]] = []  # each term and the slots it reads, each once
        for ccy, amount in balances.items():
            if amount:
                const, feeds = self._ccy_split[ccy]
                if feeds:
                    term: _EquityTerm = [0.0, amount * const, None, 1.0, feeds]
                    terms.append(term)
                    reading.append((term, self._ccy_reads[ccy]))
                else:
                    base += amount * const
        parts = self._pos_parts
        for sym, qty in quantities.items():
            pslot, const, feeds, read = parts[sym]
            term = [0.0, qty, pslot, const, feeds]
            terms.append(term)
            reading.append((term, read))
        for slot in self._eq_slots:
            slot.eq_terms = []
        reads: list[_Slot] = []
        for term, read in reading:
            for slot in read:
                if not slot.eq_terms:
                    reads.append(slot)
                slot.eq_terms.append(term)
        self._eq_base, self._eq_terms, self._eq_slots = base, terms, reads
        self._eq_changed = True

    def _split_chain(self, chain: list[tuple[str | None, float, bool]]) -> tuple[float, list[tuple[_Slot, bool]]]:
        """A rate as its constant factor and the feed prices (slot, inverted) it multiplies by."""
        const = 1.0
        feeds: list[tuple[_Slot, bool]] = []
        for sym, value, inverted in chain:
            if sym is None:
                const = const / value if inverted else const * value
            else:
                feeds.append((self.slots[sym], inverted))
        return const, feeds

    def _equity_now(self) -> float:
        """Cash per currency and every open position at its symbol's last close, in base currency, in
        floats (what the kill-switch monitor watches), each term's value kept: the run loop values again
        only the terms whose close moved and adds their change (between two changes of the books, which value
        every term afresh, the sum drifts from a fresh one by a few units in the last place)."""
        terms = self._eq_terms
        _revalue(terms)
        eq = self._eq_base
        for term in terms:
            eq += term[0]
        return eq

    def _mark(self) -> None:
        """Every open position and every currency pair the rates follow at its last close (the
        portfolio actor marks each bar batch's prices the same way)."""
        self._mark_rates()
        pf = self.portfolio
        for sym, pos in pf.positions.items():
            if pos.quantity:
                slot = self.slots[sym]
                if slot.i >= 0:
                    pf.mark(sym, slot.mark())

    def _mark_rates(self) -> None:
        pf = self.portfolio
        marked = self._fx_marked
        for slot in self._fx_slots:
            i = slot.i
            if i >= 0 and marked.get(slot.symbol) != i:
                marked[slot.symbol] = i
                pf.on_price(slot.symbol, slot.mark())

    def _account_now(self) -> AccountState:
        """The account as of the current timestamp, every open position marked at its symbol's last close."""
        self._mark()
        return self.portfolio.snapshot(self._ts)

    # ------------------------------------------------------------------------------ decisions

    def _decide(self, t: int, pending: list[PendingSignal]) -> None:
        """The gatekeeper actor's turn: the account as of ``t``, then this timestamp's signals."""
        gw = self.gateway
        for slot, feed in self._risk_feeds:
            if slot.i >= 0:
                feed.advance(slot.i)
        partial = {cid: float(q) for cid, q in self._partial.items()} or None
        done, self._done = self._done, []
        held = self._held_floats
        if held is None:
            held = self._held_floats = self.positions.floats()
        out = gw.on_account(self._account_now(), t, held, done, partial)
        out.extend(gw.on_signals(pending))
        self._dispatch(out, t)

    def _dispatch(self, out: GatewayOutput, t: int) -> None:
        journal = self.journal
        if journal is not None:
            for p in out.signals:
                s = p.signal
                journal.append("signal", {"strategy_id": p.strategy_id, "signal_id": s.signal_id or str(p.ts_ns),
                                          "symbol": s.symbol, "action": s.action.value,
                                          "position_size": s.position_size, "confidence": s.confidence,
                                          "reasoning": s.reasoning, "bar_price": p.price}, p.ts_ns)
            for d in out.decisions:
                journal.append("risk_decision", d.to_dict(), d.intent.ts_ns)
        self.decisions += out.decisions
        for strategy_id, order, reason in out.rejected:
            self.rejected_orders[order.client_order_id] = order
            if journal is not None:
                journal.append("order", order.to_dict(), t)
            self._tell_rejected(order, reason, strategy_id)
        execution = self.execution
        for strategy_id, symbol in out.cancels:
            for order in execution.cancel_strategy(strategy_id, symbol, t, keep_market=True):
                if journal is not None:
                    journal.append("order", order.to_dict(), t)
        for order, children in out.submits:
            if order.order_type is OrderType.MARKET:
                self._watch.add(order.client_order_id)
            if order.client_order_id in execution.orders:
                continue  # a replayed signal never makes a second order
            if journal is not None:
                journal.append("order", order.to_dict(), t)
            result = self.submitter.submit(order, functools.partial(execution.submit, order, children, t), t)
            if order.client_order_id not in execution.orders:
                execution.orders[order.client_order_id] = order
            if order.status is OrderStatus.REJECTED and result.outcome is not SubmitOutcome.ACCEPTED:
                self._tell_rejected(order, order.reject_reason or "rejected")
            self._note(result.is_error, t, order)
        # only these symbols' books changed (the others' working state is kept up to date where it changes)
        for sym in {*(symbol for _, symbol in out.cancels), *(order.symbol for order, _ in out.submits)}:
            if sym in execution.brokers:
                self._refresh_active(sym)

    def _note(self, is_error: bool, t: int, order: Order) -> None:
        """The router's error streak: each failed or lost submit counts toward the kill switch's
        ``max_consecutive_errors``; ``router_error_limit`` in a row stop the trading (advisory)."""
        if is_error:
            self._router_errors += 1
            self.monitor.on_error(t, f"order {order.client_order_id}: {order.status.value}")
            if self._router_errors >= self.cfg.router_error_limit and not self.gateway.advisory:
                self.gateway.advisory = True
                self.warnings.append(f"{self._router_errors} failed submits in a row at {iso(t)}: "
                                     "orders stopped (router_error_limit)")
        elif self._router_errors:
            self._router_errors = 0
            self.monitor.on_success()

    def _tell_rejected(self, order: Order, reason: str, strategy_id: str | None = None) -> None:
        strat = self.strategies.get((strategy_id or order.strategy_id, order.symbol))
        if strat is not None:
            strat.on_order_rejected(order, reason)

    # ---------------------------------------------------------------------------- kill switch

    def _on_transition(self, t: KillSwitchTransition) -> None:
        self.kill_events.append(KillSwitchEvent(self._ts, t.state.value, t.trigger.value, t.reason))
        if t.state.rank > t.previous.rank:
            self._effects.append(t)

    def _apply_effects(self, t: int) -> None:
        """HARD flattens every position at its last price now, FREEZE cancels: what the router does."""
        while self._effects:
            tr = self._effects.pop(0)
            if tr.state is KillSwitchState.HARD:
                last = {s.symbol: s.closes[s.i] for s in self.slots.values() if s.i >= 0}
                _, fills = self.execution.flatten_all(t, last, f"kill_{tr.trigger.value}")
                if fills:
                    self._book(fills, t)
            elif tr.state is KillSwitchState.FREEZE:
                self.execution.cancel_all(t)
            self._mark_working()

    # --------------------------------------------------------------------------------- result

    def _result(self) -> PortfolioResult:
        times = self._times
        n = len(times)
        init = self.cfg.initial_cash
        equity = self._equity_curve()
        bench = self._benchmark_curve()
        slots = list(self.slots.values())
        markets = {s.instrument.market for s in slots}
        market = next((m for m in (MarketType.CRYPTO, MarketType.FOREX, MarketType.STOCK) if m in markets),
                      MarketType.CRYPTO)
        spacing = int(np.median(np.diff(times[: min(n, 10_001)])) // 1_000_000_000) if n > 1 else 60
        ppy = periods_per_year(max(1, spacing), market)
        pf = self.portfolio
        trades = list(pf.trades)
        metrics = daily_ratios(compute_metrics(equity, times, trades, ppy), equity, times)
        share = self.cfg.initial_cash / max(1, len(slots))  # each symbol's hold is one trade of its share
        bench_trades = [TradeRecord(s.symbol, "LONG", share / s.closes[0], int(s.ts[0]), s.closes[0], int(s.ts[-1]),
                                    s.closes[-1], share / s.closes[0] * (s.closes[-1] - s.closes[0]), 0.0)
                        for s in slots]
        benchmark = daily_ratios(compute_metrics(bench, times, bench_trades, ppy), bench, times)
        self._mark()  # every slot stands at its last bar: the ledger marked at every symbol's last close
        ledger_equity = pf.equity
        money = 2
        final = float(equity[-1]) if n else init
        open_positions = [{"symbol": sym, "quantity": str(p.quantity),
                           "avg_price": str(self.instruments[sym].round_price(p.avg_price))}
                          for sym, p in pf.positions.items() if p.quantity]
        orders = sorted([*self.execution.orders.values(), *self.rejected_orders.values()],
                        key=lambda od: (od.created_ns, od.client_order_id))
        summary = {
            "bars": sum(len(s.ts) for s in slots),
            "timestamps": n,
            "symbols": len(slots),
            "strategies": len(self.strategy_configs),
            "currency": pf.currency,
            "first_bar": iso(int(times[0])),
            "last_bar": iso(int(times[-1])),
            "initial_cash": round(init, money),
            "final_equity": round(float(ledger_equity), money),
            "cash": round(float(pf.cash), money),
            "realized_pnl": round(float(pf.realized_pnl), money),
            "unrealized_pnl": round(float(pf.unrealized_pnl), money),
            "fees": round(float(pf.fees), money),
            "cash_by_currency": {c: round(float(v), 8) for c, v in pf.cash_by_currency().items()},
            "fx_rates": {c: float(r) for c, r in pf.fx.rates().items() if c != pf.currency},
            "fx_sources": pf.fx.sources(),
            "margin": {sym: self.execution.margin.summary(sym) for sym in sorted(self._margined)
                       if sym in self.slots} if self._margined else {},
            "margin_events": self.margin_events,
            "allocation": None if self.allocation is None else {
                **self.allocation.state(), "rebalances": self.allocation_changes},
            "open_position": open_positions[0] if len(open_positions) == 1 else None,
            "open_positions": open_positions,
            "orders": len(orders),
            "fills": len(self.fills),
            "equity_curve_final": round(final, money),
            "reconciled": abs(float(ledger_equity) - final) <= max(1e-6, 1e-9 * abs(final)),
        }
        if not summary["reconciled"]:
            self.warnings.append(f"equity curve ends at {final!r} but the ledger at {ledger_equity}: "
                                 "report this as a bug")
        return PortfolioResult(
            config=self.config_doc, currency=pf.currency, ts_ns=times, equity=equity, benchmark_equity=bench,
            metrics=metrics, benchmark=benchmark, trades=trades, orders=orders, fills=self.fills,
            decisions=self.decisions, kill_switch=self.kill_events, summary=summary,
            attribution=self._attribution(), instruments=self.instruments, warnings=self.warnings)

    def _closes_on_timeline(self, slot: _Slot, rounded: bool = False, backfill: bool = False,
                            out: np.ndarray | None = None) -> np.ndarray:
        """The symbol's last close at every timestamp of the merged timeline (0 before its first bar, or
        its first close with ``backfill``); ``rounded``: at the price precision, as the ledger marks it.
        ``out``: a buffer of the timeline's length to write into (a million-point curve allocated afresh
        for every symbol costs more in page faults than in arithmetic)."""
        first, safe = self.data.last_bar(slot.symbol)
        close = slot.arrays.close
        if rounded:
            close = np.round(close, slot.instrument.price_precision)
        taken: np.ndarray = np.take(close, safe, out=out, mode="clip")
        if not backfill:
            taken[:first] = 0.0
        return taken

    def _equity_curve(self) -> np.ndarray:
        """Cash per currency and quantities are step functions between book changes: replay the recorded
        books onto the timeline, value them at each timestamp's closes and rates, in base currency."""
        times = self._times
        n = len(times)
        init = self.cfg.initial_cash
        steps = self._book_steps
        if not steps:
            return np.full(n, init, dtype=np.float64)
        # for each timestamp, the last book recorded at or before it (the initial books before the first)
        first, last = _last_at(np.asarray([st[0] for st in steps], dtype=np.int64), n)
        rate_cache: dict[tuple[tuple[str | None, float, bool], ...], np.ndarray] = {}

        def rate(chain: list[tuple[str | None, float, bool]]) -> np.ndarray | float:
            if not chain:
                return 1.0
            key = tuple(chain)
            if key not in rate_cache:
                r = np.ones(n)
                for sym, const, inverted in chain:
                    px = self._closes_on_timeline(self.slots[sym], rounded=True, backfill=True) if sym else const
                    r = r / px if inverted else r * px
                rate_cache[key] = r
            return rate_cache[key]

        base = self.portfolio.currency
        equity = np.zeros(n)
        held = np.empty(n)  # buffers reused for every term: (amount or quantity) x close x rate
        closes = np.empty(n)
        cash, qty = _step_columns([st[1] for st in steps]), _step_columns([st[2] for st in steps])
        for ccy in sorted({*cash, base}):
            np.take(cash.get(ccy, np.zeros(len(steps))), last, out=held, mode="clip")
            held[:first] = init if ccy == base else 0.0
            equity += np.multiply(held, rate(self._chains[ccy]), out=held)
        for sym in sorted(qty):
            np.take(qty[sym], last, out=held, mode="clip")
            held[:first] = 0.0
            np.multiply(held, self._closes_on_timeline(self.slots[sym], rounded=True, out=closes), out=held)
            equity += np.multiply(held, rate(self._pos_rate[sym]), out=held)
        out: np.ndarray = np.asarray(equity, dtype=np.float64)
        return out

    def _benchmark_curve(self) -> np.ndarray:
        """Equal-weight buy and hold: each symbol gets an equal share of the cash at its first close."""
        init = self.cfg.initial_cash
        slots = list(self.slots.values())
        share = init / len(slots)
        total = np.zeros(len(self._times))
        for slot in slots:
            closes = self._closes_on_timeline(slot)
            qty = share / slot.closes[0]
            total += np.where(closes > 0, closes * qty, share)
        return total

    def _attribution(self) -> dict[str, Any]:
        """Per strategy, market and symbol: realized P&L and fees (they sum to the account's), closing
        trades, wins and win rate. A strategy's trades count the fills that closed part of its own
        position (``mmats.attribution``, as the running system's views count them); a market's and a
        symbol's the account's round trips. A win beats the fees of what it closed in both."""
        pf = self.portfolio
        ledgers = StrategyLedgers(self.instruments.values(), fx=pf.fx)  # the live views' per-strategy books
        for f in self.fills:
            ledgers.apply(f)
        own = {sid: (c["fills"], c["trades"], c["wins"]) for sid, c in ledgers.counts.items()}

        def row(realized: Decimal, fees: Decimal, trades: int, wins: int) -> dict[str, Any]:
            return {"realized_pnl": round(float(realized), 2), "fees": round(float(fees), 2),
                    "net_pnl": round(float(realized - fees), 2), "trades": trades, "wins": wins,
                    "win_rate": (wins / trades) if trades else None}

        by_strategy: dict[str, Any] = {}
        for sid in sorted({*pf.realized_by_strategy, *pf.fees_by_strategy, *(s.id for s in self.strategy_configs)}):
            fills, trades, wins = own.get(sid, (0, 0, 0))
            by_strategy[sid] = {**row(pf.realized_by_strategy.get(sid, Decimal(0)),
                                      pf.fees_by_strategy.get(sid, Decimal(0)), trades, wins), "fills": fills}
        round_trips: dict[str, list[TradeRecord]] = {}
        for tr in pf.trades:
            round_trips.setdefault(tr.symbol, []).append(tr)
        by_symbol: dict[str, Any] = {}
        for sym in sorted(self.slots):
            trips = round_trips.get(sym, [])
            realized, fees = self._by_symbol.get(sym, (Decimal(0), Decimal(0)))
            by_symbol[sym] = {"market": self.instruments[sym].market.value,
                              **row(realized, fees, len(trips), sum(1 for x in trips if x.pnl > 0))}
        by_market: dict[str, Any] = {}
        for m in sorted({inst.market.value for inst in self.instruments.values()}):
            trips = [x for x in pf.trades if self.instruments[x.symbol].market.value == m]
            by_market[m] = row(pf.realized_by_market.get(m, Decimal(0)), pf.fees_by_market.get(m, Decimal(0)),
                               len(trips), sum(1 for x in trips if x.pnl > 0))
        return {"by_strategy": by_strategy, "by_market": by_market, "by_symbol": by_symbol,
                "totals": {"realized_pnl": round(float(pf.realized_pnl), 2), "fees": round(float(pf.fees), 2)}}


def _last_at(places: np.ndarray, n: int) -> tuple[int, np.ndarray]:
    """The place of the first of some events on a timeline of ``n`` timestamps, and for each timestamp the
    index of the last event at or before it (0 before the first); ``places``: the events' timestamps'
    indices, in order, several events may share one."""
    idx = np.cumsum(np.bincount(places, minlength=n))
    idx -= 1
    first = int(places[0])
    idx[:first] = 0
    return first, idx


def _step_columns(rows: list[dict[str, float]]) -> dict[str, np.ndarray]:
    """Rows of {key: value} as one column per key (0 where a row lacks it), in one pass over the rows."""
    cols: dict[str, list[float]] = {}
    n = len(rows)
    for j, row in enumerate(rows):
        for key, value in row.items():
            col = cols.get(key)
            if col is None:
                col = cols[key] = [0.0] * n
            col[j] = value
    return {key: np.asarray(col, dtype=np.float64) for key, col in cols.items()}


def daily_ratios(metrics: dict[str, Any], equity: np.ndarray | list[float], times: np.ndarray) -> dict[str, Any]:
    """Sharpe and Sortino from the equity's UTC daily closes, annualised over 365 calendar days.

    A portfolio's timeline mixes markets (daily stock bars for years, then hourly crypto bars): returns
    between consecutive timestamps have no single period, so annualising them by one bar size would be
    wrong by the square root of the ratio of the spacings. Calendar days are every market's common unit;
    a day a market is closed is a day of zero return for it, as for the account."""
    eq = np.asarray(equity, dtype=np.float64)
    if len(eq) < 3:
        return metrics
    day = np.asarray(times, dtype=np.int64) // 86_400_000_000_000
    last_of_day = np.flatnonzero(np.diff(day)) if len(day) > 1 else np.array([], dtype=np.int64)
    closes = np.append(eq[last_of_day], eq[-1])
    days = np.append(day[last_of_day], day[-1])
    full = np.arange(days[0], days[-1] + 1)
    daily = closes[np.searchsorted(days, full, side="right") - 1]  # a day without a bar keeps the last close
    sharpe, sortino = sharpe_sortino(np.diff(daily) / daily[:-1], 365.0)
    return {**metrics, "sharpe": sharpe, "sortino": sortino}


def _rate_chains(fx: FxRates, symbols: set[str]) -> dict[str, list[tuple[str | None, float, bool]]]:
    """Per currency, its rate to base as a product of links: a feed symbol's price or a constant, each
    possibly inverted. The float twin of ``FxRates.rate``, for the per-timestamp equity and the curve."""
    out: dict[str, list[tuple[str | None, float, bool]]] = {}
    by_symbol = {edge.pair: sym for sym, edge in fx._by_symbol.items() if sym in symbols}
    for ccy, path in fx._paths.items():
        chain: list[tuple[str | None, float, bool]] = []
        for edge, inverted in path:
            sym = by_symbol.get(edge.pair) if edge.source == "feed" else None
            if edge.source == "feed" and sym is None:
                raise ConfigError(f"the {ccy} rate needs the feed of {edge.pair}, which this backtest does not replay")
            chain.append((sym, 1.0 if edge.price is None else float(edge.price), inverted))
        out[ccy] = chain
    return out


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` of an integer array, by a radix sort: ~20 ms on the 2.6 million bar times of
    the portfolio bench's ten symbols, where numpy's hashing ``unique`` costs ~1 s."""
    out = np.sort(values, kind="stable")
    if len(out) < 2:
        return out
    keep = np.empty(len(out), dtype=bool)
    keep[0] = True
    np.not_equal(out[1:], out[:-1], out=keep[1:])
    return out[keep]


# (every distinct time, the same as Python ints, per time the index of its group in the next, the
# groups: the symbols with a bar at a time, each symbol's bars' places on the timeline)
TimelineLayout = tuple[np.ndarray, tuple[int, ...], tuple[int, ...], list[tuple[str, ...]], dict[str, np.ndarray]]


def _timeline(ts_by_symbol: Mapping[str, np.ndarray], times: np.ndarray | None = None) -> TimelineLayout:
    """Every distinct timestamp (``times`` when the caller has them), and for each the symbols with a bar
    at it (as an index into a few interned tuples: aligned symbols share one tuple, so the loop allocates
    nothing per timestamp); and each symbol's bars' places on it."""
    symbols = list(ts_by_symbol)
    if times is None:
        times = sorted_unique(np.concatenate(list(ts_by_symbol.values())))
    places = {s: np.searchsorted(times, ts) for s, ts in ts_by_symbol.items()}  # every bar time is in ``times``
    if len(symbols) <= 62:
        code = np.zeros(len(times), dtype=np.int64)
        for j, s in enumerate(symbols):
            code[places[s]] |= 1 << j
        uniq = sorted_unique(code)
        groups = [tuple(s for j, s in enumerate(symbols) if (int(c) >> j) & 1) for c in uniq]
        return times, untracked(times), untracked(np.searchsorted(uniq, code).astype(np.int64)), groups, places
    present_rows = np.zeros((len(times), len(symbols)), dtype=bool)
    for j, s in enumerate(symbols):
        present_rows[places[s], j] = True
    uniq_rows, inverse = np.unique(present_rows, axis=0, return_inverse=True)
    groups = [tuple(s for j, s in enumerate(symbols) if row[j]) for row in uniq_rows]
    return times, untracked(times), untracked(inverse.reshape(-1).astype(np.int64)), groups, places


def run_portfolio_backtest(cfg: SystemConfig, data: PortfolioData | None = None, *, journal: Journal | None = None,
                           progress: Callable[[int], None] | None = None) -> PortfolioResult:
    """Pure function of the config (and the bars, when a sweep pre-loaded them): same input, same result."""
    data = data if data is not None else load_portfolio_data(cfg)
    doc = cfg.model_dump(mode="json")
    doc["resolved"] = {
        "kind": "portfolio",
        "symbols": {sym: {"market": inst.market.value, "quote_currency": inst.quote_currency,
                          "source": data.sources.get(sym, ""), "bars": len(data.series[sym])}
                    for sym, inst in sorted(data.instruments.items())},
        "strategies": [s.id for s in cfg.strategies if s.enabled],
    }
    engine = PortfolioBacktest(cfg, data, journal=journal, config_doc=doc)
    return engine.run(progress)


def is_system_config(raw: Mapping[str, Any]) -> bool:
    """A system config (``mmats up``'s file: ``feeds`` / ``strategies``) rather than a one-strategy run config."""
    return "strategies" in raw or "feeds" in raw
