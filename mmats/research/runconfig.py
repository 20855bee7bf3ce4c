"""A backtest run described as data: everything needed to reproduce it, validated at the edge.

The same ``BacktestConfig`` is what the CLI builds from flags, what a sweep varies, and what the JSON
result stores under ``config``; ``run_backtest`` turns it into an engine and runs it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from mmats.audit import Journal
from mmats.data import BarArrays, generate_bars, infer_timeframe, load_bars, resample, slice_dates, to_arrays
from mmats.engine.backtest import BacktestEngine, BacktestResult, EngineSetup
from mmats.errors import ConfigError, DataError, ValidationError
from mmats.execution.simulated import (
    CommissionModel,
    ExecutionConfig,
    FixedBpsSlippage,
    NoCommission,
    NoSlippage,
    PercentCommission,
    PerShareCommission,
    SlippageModel,
    SpreadCommission,
    VolatilitySlippage,
    VolumeSlippage,
)
from mmats.fx import FxError, FxRates, plan_fx
from mmats.indicators import benchmark_symbols
from mmats.margin import FundingSettings, MarginTerms
from mmats.model import Instrument, InstrumentKind, Liquidity, MarketType, Timeframe, default_instrument
from mmats.registry import create_strategy
from mmats.risk.decision import RiskGate
from mmats.risk.gatekeeper import build_backtest_gatekeeper, with_flat_limits


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CommissionSpec(_Strict):
    model: Literal["none", "percent", "per_share", "spread"] = "none"
    taker_bps: float = Field(0.0, ge=0)
    maker_bps: float | None = Field(None, ge=0)
    per_share: float = Field(0.005, ge=0)
    minimum: float = Field(1.0, ge=0)
    max_pct: float = Field(0.01, ge=0)
    pips: float = Field(0.0, ge=0)
    pip_size: float = Field(0.0001, gt=0)

    def build(self) -> CommissionModel:
        if self.model == "percent":
            return PercentCommission(self.taker_bps, self.maker_bps)
        if self.model == "per_share":
            return PerShareCommission(self.per_share, self.minimum, self.max_pct)
        if self.model == "spread":
            return SpreadCommission(self.pips, self.pip_size)
        return NoCommission()


class SlippageSpec(_Strict):
    model: Literal["none", "fixed", "volatility", "volume"] = "none"
    bps: float = Field(0.0, ge=0)
    k: float = Field(0.1, ge=0)
    impact: float = Field(0.1, ge=0)

    def build(self, volume_in_quote: bool) -> SlippageModel:
        if self.model == "fixed":
            return FixedBpsSlippage(self.bps)
        if self.model == "volatility":
            return VolatilitySlippage(self.k)
        if self.model == "volume":
            return VolumeSlippage(self.impact, self.bps, volume_in_quote)
        return NoSlippage()


class InstrumentSpec(MarginTerms):
    price_precision: int | None = Field(None, ge=0, le=12)
    quantity_precision: int | None = Field(None, ge=0, le=12)
    lot_size: str | None = None
    min_notional: str | None = None
    quote_currency: str | None = None


FundingSpec = FundingSettings  # ``funding:`` of a run: the same keys as a system config's instrument


class RiskSpec(_Strict):
    """Either the minimal gate's two limits, or a full gatekeeper config (``gatekeeper``, see docs/risk.md)."""

    max_position_pct: float = Field(1.0, gt=0)
    max_order_notional: float | None = Field(None, gt=0)
    gatekeeper: dict[str, Any] | None = None


class GeneratedData(_Strict):
    bars: int = Field(50_000, ge=10)
    seed: int = 42
    start: str = "2024-01-01"
    start_price: float = Field(30_000.0, gt=0)


class BacktestConfig(_Strict):
    strategy: str
    params: dict[str, Any] = Field(default_factory=dict)
    data: str | None = None
    generated: GeneratedData | None = None
    symbol: str | None = None
    market: MarketType | None = None
    timeframe: Timeframe | None = None
    start: str | None = None
    end: str | None = None
    initial_cash: float = Field(10_000.0, gt=0, description="in base_currency")
    base_currency: str = Field("USD", description="the currency results are in (mmats.fx)")
    fx_rates: dict[str, float] = Field(default_factory=dict, description="constant rates for pairs the run's own "
                                       "symbol does not give, e.g. {\"EUR/USD\": 1.08}")
    allocation: float = Field(1.0, gt=0, le=10)
    commission: CommissionSpec = Field(default_factory=CommissionSpec)
    slippage: SlippageSpec = Field(default_factory=SlippageSpec)
    max_volume_share: float | None = Field(None, gt=0, le=1)
    volume_in_quote: bool = False
    cash_only: bool = True
    instrument: InstrumentSpec = Field(default_factory=InstrumentSpec)
    funding: FundingSpec | None = None
    risk: RiskSpec = Field(default_factory=RiskSpec)
    benchmark_data: str | None = Field(None, description="bar file of the benchmark symbol that RS_n@SYMBOL "
                                       "indicators compare with; its symbol comes from the file name")

    @model_validator(mode="after")
    def _one_source(self) -> BacktestConfig:
        if self.data is not None and self.generated is not None:
            raise ValueError("give either data or generated, not both")
        return self


def parse_config(raw: dict[str, Any]) -> BacktestConfig:
    """Validate a raw dict; the error names the field path (``commission.taker_bps: ...``)."""
    try:
        return BacktestConfig.model_validate(raw)
    except PydanticValidationError as exc:
        err = exc.errors()[0]
        path = ".".join(str(p) for p in err["loc"]) or "config"
        raise ConfigError(f"{path}: {err['msg']} (got {err.get('input')!r})") from None


_PREFIX_MARKET = {"crypto": MarketType.CRYPTO, "forex": MarketType.FOREX, "stock": MarketType.STOCK}


def infer_symbol_market(path: str) -> tuple[str, MarketType]:
    """``crypto_BTCPERP_1m.parquet`` -> ("BTCPERP", crypto): the shared data's naming convention."""
    stem = Path(path).stem
    m = re.match(r"(crypto|forex|stock)_([A-Za-z0-9]+)", stem)
    if m:
        return m.group(2), _PREFIX_MARKET[m.group(1)]
    return stem.upper(), MarketType.CRYPTO


class LoadedRun(NamedTuple):
    """The bars a run (or a whole sweep) trades, loaded once: what ``load_run_data`` returns."""

    bars: BarArrays
    instrument: Instrument
    warnings: list[str]
    resolved: dict[str, Any]  # the facts the data decided (timeframe, period, data file, ...)


def load_run_data(cfg: BacktestConfig) -> LoadedRun:
    """Bars and instrument for a config, plus warnings and the resolved facts to store in the result."""
    warnings: list[str] = []
    if cfg.data is not None:
        df = load_bars(cfg.data)
        sym, market = infer_symbol_market(cfg.data)
        source = cfg.data
    else:
        gen = cfg.generated or GeneratedData()
        df = generate_bars(gen.bars, seed=gen.seed, start=gen.start, start_price=gen.start_price)
        sym, market = "SYNTH/USDT", MarketType.CRYPTO
        source = f"generated(bars={gen.bars}, seed={gen.seed})"
        warnings.append(f"no data file given: using deterministic generated bars ({source})")
    symbol = cfg.symbol or sym
    market = cfg.market or market
    if cfg.start or cfg.end:
        df = slice_dates(df, cfg.start, cfg.end)
    source_tf = infer_timeframe(df)
    tf = cfg.timeframe or source_tf
    if tf != source_tf:
        df = resample(df, tf)
    arrays = to_arrays(df)
    if len(arrays) < 2:
        raise DataError(f"{source}: fewer than 2 bars after slicing/resampling")
    inst = default_instrument(symbol, market)
    spec = cfg.instrument
    if any(v is not None for v in spec.model_dump().values()):
        try:
            inst = Instrument(
                symbol, market, spec.quote_currency or inst.quote_currency,
                inst.price_precision if spec.price_precision is None else spec.price_precision,
                inst.quantity_precision if spec.quantity_precision is None else spec.quantity_precision,
                inst.lot_size if spec.lot_size is None else Decimal(spec.lot_size),
                inst.min_notional if spec.min_notional is None else Decimal(spec.min_notional),
                inst.pip_size, **spec.terms(),
            )
        except ValidationError as exc:
            raise ConfigError(f"instrument: {exc}") from None
    if cfg.funding is not None and inst.kind is not InstrumentKind.PERPETUAL:
        raise ConfigError(f"funding: only perpetual swaps pay funding; {symbol} is {inst.kind} "
                          "(set instrument.kind: perpetual)")
    resolved = {"symbol": symbol, "market": market.value, "timeframe": tf.value, "source": source,
                "quote_currency": inst.quote_currency}
    run_fx(cfg, inst)  # a currency without a rate is refused now, before any bar runs
    if cfg.benchmark_data is not None:  # a bad benchmark file is refused now as well
        bench_sym, _ = load_benchmark(cfg.benchmark_data, tf)
        resolved["benchmark"] = f"{bench_sym} from {cfg.benchmark_data}"
    return LoadedRun(arrays, inst, warnings, resolved)


@lru_cache(maxsize=8)
def load_benchmark(path: str, timeframe: Timeframe) -> tuple[str, BarArrays]:
    """The benchmark symbol (from the file name, as for ``data``) and its bars in the run's timeframe.

    A finer file is resampled; a coarser one is refused: its bar is stamped at its open but known only at
    its close, so aligning it to the run's bars would look ahead. Cached: a sweep's runs share one copy
    (BarArrays are never mutated)."""
    try:
        df = load_bars(path)
    except (DataError, OSError) as exc:
        raise ConfigError(f"benchmark_data: {exc}") from None
    symbol, _ = infer_symbol_market(path)
    source_tf = infer_timeframe(df)
    if source_tf.seconds > timeframe.seconds:
        raise ConfigError(f"benchmark_data {path}: its bars are {source_tf.value}, coarser than the run's "
                          f"{timeframe.value} (a bar is known only at its close, so it would be used too early); "
                          f"give {timeframe.value} or finer bars")
    if source_tf != timeframe:
        df = resample(df, timeframe)
    return symbol, to_arrays(df)


def run_benchmarks(cfg: BacktestConfig, specs: list[str], timeframe: str | None) -> dict[str, BarArrays]:
    """The benchmark bars a strategy's indicators compare with; a ``ConfigError`` naming the setting when
    one is asked for and not configured, or configured for another symbol."""
    wanted = benchmark_symbols(specs)
    if not wanted:
        return {}
    asking = ", ".join(s for s in specs if "@" in s)
    if cfg.benchmark_data is None:
        raise ConfigError(f"strategy {cfg.strategy} asks for {asking}, which compare with {', '.join(wanted)}: "
                          "set benchmark_data (--benchmark-data) to a bar file of that symbol")
    tf = Timeframe(timeframe) if timeframe else cfg.timeframe
    if tf is None:
        raise ConfigError("benchmark_data: the run's timeframe is unknown; set timeframe")
    symbol, bars = load_benchmark(cfg.benchmark_data, tf)
    other = [s for s in wanted if s != symbol]
    if other:
        raise ConfigError(f"strategy {cfg.strategy} asks for {asking}, which compare with {', '.join(other)}, but "
                          f"benchmark_data {cfg.benchmark_data} holds {symbol} (the symbol comes from the file name)")
    return {symbol: bars}


def run_fx(cfg: BacktestConfig, instrument: Instrument) -> FxRates:
    """The run's currency rates: its own symbol when it is a pair (USD/JPY gives JPY), ``fx_rates``, the
    stablecoin pegs. A quote currency none of them converts to ``base_currency`` is a ``ConfigError``."""
    fx = plan_fx(cfg.base_currency, [instrument.quote_currency], [instrument.symbol], cfg.fx_rates,
                 f"{instrument.symbol} (quoted in {instrument.quote_currency})")
    try:
        fx.dependence(instrument.quote_currency.upper(), instrument.symbol)
    except FxError as exc:
        raise ConfigError(str(exc)) from None
    return fx


def build_gate(cfg: BacktestConfig, instrument: Instrument, journal: Journal | None) -> tuple[RiskGate, Any]:
    """The full gatekeeper, as in paper and live: ``risk.gatekeeper`` plus the flat limits as global ones.

    The second value is the kill-switch monitor the engine feeds equity to on every bar, or None when
    no equity trigger is configured (nothing to watch, so the hot loop does not pay for it).
    """
    raw = with_flat_limits(cfg.risk.gatekeeper, max_position_pct=cfg.risk.max_position_pct,
                           max_order_notional=cfg.risk.max_order_notional)
    gate, monitor = build_backtest_gatekeeper(raw, cfg.initial_cash, journal)
    return gate, (monitor if monitor.watches_equity else None)


def run_backtest(
    cfg: BacktestConfig,
    *,
    bars: tuple[BarArrays, Instrument, list[str], dict[str, Any]] | None = None,
    journal: Journal | None = None,
    progress: Callable[[int], None] | None = None,
) -> BacktestResult:
    """Pure function of the config (and the bars, when pre-loaded by a sweep): same input, same result."""
    arrays, inst, warnings, resolved = bars if bars is not None else load_run_data(cfg)
    strategy = create_strategy(cfg.strategy, cfg.params)
    benchmarks = run_benchmarks(cfg, strategy.get_required_indicators(), resolved.get("timeframe"))
    gate, kill = build_gate(cfg, inst, journal)
    commission = cfg.commission.build()
    setup = EngineSetup(
        instrument=inst,
        initial_cash=cfg.initial_cash,
        slippage=cfg.slippage.build(cfg.volume_in_quote),
        commission=commission,
        execution=ExecutionConfig(cfg.max_volume_share, cfg.volume_in_quote, cfg.cash_only),
        gate=gate,
        journal=journal,
        allocation=cfg.allocation,
        benchmark_fee_rate=commission.fee(1.0, 1.0, Liquidity.TAKER),
        kill_switch=kill,
        funding=cfg.funding.build() if cfg.funding is not None else None,
        fx=run_fx(cfg, inst),
        benchmarks=benchmarks,
    )
    config = cfg.model_dump(mode="json")
    config["resolved"] = resolved
    config["strategy_metadata"] = strategy.metadata()
    engine = BacktestEngine(strategy, arrays, setup, config)
    result = engine.run(progress)
    result.warnings[:0] = warnings
    return result


def set_dotted(raw: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """``raw["a"]["b"]["c"] = value`` for path a.b.c, copying (never mutating) the nested mappings on the
    way; returns the innermost one."""
    node = raw
    for part in path[:-1]:
        child = node.get(part)
        child = dict(child) if isinstance(child, Mapping) else {}
        node[part] = child
        node = child
    node[path[-1]] = value
    return node
