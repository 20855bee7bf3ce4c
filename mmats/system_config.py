"""Configuration of the running system (``mmats up``): feeds, strategies, costs, risk, mode.

Precedence: built-in defaults < file (YAML/TOML/JSON) < environment (``MMATS_*``) < CLI flags.
Invalid config fails at load with the field path (``strategies.0.symbols: ...``).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from mmats.allocation import AllocationConfig
from mmats.errors import ConfigError, DataError
from mmats.fx import FxRates, currency_code, plan_fx
from mmats.margin import InstrumentSettings
from mmats.model import Environment, MarketType, Timeframe, default_instrument
from mmats.risk.gatekeeper import system_risk_config
from mmats.risk.limits import parse_risk_config


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


_SOURCE_MARKET = {"ccxt": MarketType.CRYPTO, "oanda": MarketType.FOREX, "alpaca": MarketType.STOCK}
_EXAMPLE_SYMBOL = {"ccxt": "[BTC/USDT]", "oanda": "[EUR_USD]", "alpaca": "[AAPL]"}


class FeedConfig(_Strict):
    venue: str = "replay"
    market: MarketType = MarketType.CRYPTO
    source: Literal["replay", "ccxt", "oanda", "alpaca"] = Field(
        "replay", description="replay (files, generated bars) or live closed candles: ccxt (crypto), oanda "
        "(forex), alpaca (US stocks); docs/venues.md")
    files: dict[str, str] = Field(default_factory=dict, description="symbol -> Parquet/CSV path")
    generated_symbols: list[str] = Field(default_factory=list, description="symbols replayed from generated bars")
    generated_bars: int = Field(20_000, ge=100)
    exchange: str | None = Field(None, description="source ccxt: the ccxt exchange id, e.g. binance")
    api_base: str | None = Field(None, description="live sources: send the venue's requests to this address "
                                 "(a gateway or a test venue) instead of its production host")
    account_id: str | None = Field(None, description="source oanda: the account whose instruments are traded")
    data_feed: Literal["iex", "sip"] = Field("iex", description="source alpaca: IEX (free) or SIP (paid) bars")
    symbols: list[str] = Field(default_factory=list, description="live sources: the venue's symbols, e.g. BTC/USDT, "
                               "EUR_USD, AAPL")
    timeframe: Timeframe = Field(Timeframe.M1, description="live sources: candle timeframe")
    poll_s: float = Field(2.0, ge=0.05, le=3600, description="live sources: how often new closed candles are asked for")
    warmup_bars: int = Field(300, ge=0, le=1000, description="live sources: closed candles loaded as history at start")
    pace: Literal["max", "speed", "lockstep"] = "speed"
    speed: float = Field(600.0, gt=0, description="x real time when pace=speed")
    max_pending: int = Field(50_000, ge=10)
    stale_after_s: float = Field(30.0, gt=0)
    min_send_interval_ms: float | None = Field(
        None, ge=0, le=1000,
        description="a rate cap: at most one message per subscriber per interval (default none: a subscriber "
        "with no message in flight gets each bar at once, a busy one gets what arrived meanwhile in one message)")

    @model_validator(mode="after")
    def _check_source(self) -> FeedConfig:
        live_only = [k for k in ("exchange", "api_base", "account_id") if getattr(self, k)]
        live_only += ["symbols"] if self.symbols else []
        if self.source == "replay":
            if live_only:
                raise ValueError(f"{', '.join(live_only)}: only for a live source (this feed replays)")
            return self
        name = self.source
        if not self.symbols:
            raise ValueError(f"source {name} needs symbols (e.g. {_EXAMPLE_SYMBOL[name]})")
        if self.files or self.generated_symbols:
            raise ValueError(f"files and generated_symbols are for source: replay, not {name}")
        if self.market is not _SOURCE_MARKET[name]:
            raise ValueError(f"source {name} is for market {_SOURCE_MARKET[name].value}, not {self.market.value}")
        if self.pace == "lockstep":
            raise ValueError("pace lockstep is for replays: a live feed goes at the venue's pace")
        if (name == "ccxt") != bool(self.exchange):
            raise ValueError("source ccxt needs exchange (a ccxt exchange id, e.g. binance)" if name == "ccxt"
                             else f"exchange: only for source ccxt, not {name}")
        if (name == "oanda") != bool(self.account_id):
            raise ValueError("source oanda needs account_id" if name == "oanda"
                             else f"account_id: only for source oanda, not {name}")
        return self

    @property
    def all_symbols(self) -> list[str]:
        return [*self.files, *self.generated_symbols, *self.symbols]


class StrategyConfig(_Strict):
    id: str = Field(min_length=1)
    ref: str = Field(min_length=1, description="built-in name or path/to/file.py:Class or module:Class")
    symbols: list[str] = Field(min_length=1)
    market: MarketType | None = Field(None, description="default: the market of the feed that provides its symbols")
    params: dict[str, Any] = Field(default_factory=dict)
    allocation: float = Field(1.0, gt=0, le=10, description="share of its capital a position_size of 1.0 "
                              "means (its capital: the equity, or its weight of it under allocation:)")
    enabled: bool = True
    timeframe: Timeframe | None = Field(None, description="aggregate the feed's bars to this timeframe "
                                                          "(default: the feed's own bars)")


class CostsConfig(_Strict):
    commission: dict[str, Any] = Field(default_factory=lambda: {"model": "percent", "taker_bps": 10.0})
    slippage: dict[str, Any] = Field(default_factory=lambda: {"model": "fixed", "bps": 2.0})
    max_volume_share: float | None = None
    volume_in_quote: bool = False
    cash_only: bool = True


class RetryConfig(_Strict):
    """How the order router retries a submit that failed with a retryable venue error (mmats.execution.routing)."""

    max_attempts: int = Field(4, ge=1, le=20)
    base_delay_s: float = Field(0.05, ge=0)
    factor: float = Field(2.0, ge=1)
    max_delay_s: float = Field(2.0, ge=0)


class BreakerConfig(_Strict):
    failures: int = Field(5, ge=1, le=100, description="failed venue calls in a row that open the breaker")
    open_s: float = Field(5.0, gt=0, le=600, description="how long it stays open before one probe call")


class VenueConfig(_Strict):
    """A live venue the order router sends real orders to (environment LIVE only; docs/venues.md)."""

    name: str = Field(pattern=r"^[a-z0-9_]+$", description="names the venue in status and its secrets "
                      "(<name>.api_key ...)")
    kind: Literal["ccxt", "oanda", "alpaca"]
    exchange: str | None = Field(None, description="kind ccxt: the ccxt exchange id (binance, bybit, ...)")
    account_id: str | None = Field(None, description="kind oanda: the v20 account id")
    symbols: list[str] = Field(min_length=1, description="the symbols whose orders go to this venue")
    api_base: str | None = Field(None, description="send the venue's requests to this address (a gateway, a "
                                 "test venue) instead of its production host")
    timeout_s: float = Field(10.0, gt=0, le=120, description="per request; a submit without an answer in time "
                             "is UNKNOWN until reconciled")
    rate_limit_per_s: float | None = Field(None, gt=0, description="a token bucket in front of the venue "
                                           "(default: ccxt's own limiter; OANDA 50/s; Alpaca 3/s)")
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    outside_hours: Literal["refuse", "queue"] = Field(
        "refuse", description="an order while the venue says the market is closed: refused with the reason, or "
        "sent for the venue to queue until the open (Alpaca)")

    @model_validator(mode="after")
    def _check(self) -> VenueConfig:
        swaps = [s for s in self.symbols if ":" in s]
        if swaps and (self.kind != "ccxt" or len(swaps) != len(self.symbols)):
            raise ValueError(f"symbols {swaps}: perpetual swaps (BASE/QUOTE:SETTLE) are traded on a ccxt venue of "
                             "their own (a venue's symbols are all spot or all swaps)")
        if (self.kind == "ccxt") != bool(self.exchange):
            raise ValueError("kind ccxt needs exchange" if self.kind == "ccxt" else "exchange: only for kind ccxt")
        if (self.kind == "oanda") != bool(self.account_id):
            raise ValueError("kind oanda needs account_id" if self.kind == "oanda"
                             else "account_id: only for kind oanda")
        return self

    def default_rate(self) -> float | None:
        return self.rate_limit_per_s or {"ccxt": None, "oanda": 50.0, "alpaca": 3.0}[self.kind]


class LiveConfig(_Strict):
    reconcile_every_s: float = Field(30.0, ge=1, le=3600, description="full reconciliation: open orders, "
                                     "fills, positions and balances against the book")
    unknown_grace_s: float = Field(10.0, ge=0, le=600, description="how long an order whose answer was lost "
                                   "stays UNKNOWN while its venue does not know it")


class SystemConfig(_Strict):
    environment: Environment = Environment.PAPER
    mode: Literal["advisory", "operator"] = "advisory"
    allow_operator: bool = False
    initial_cash: float = Field(100_000.0, gt=0, description="in base_currency")
    base_currency: str = Field("USD", description="the account's currency: equity, P&L, limits and drawdown are in it "
                               "(docs/configuration.md, \"Currencies\")")
    fx_rates: dict[str, float] = Field(default_factory=dict, description="constant rates for pairs no feed "
                                       "carries, e.g. {\"EUR/USD\": 1.08}")
    home: str = "var"
    system_name: str = Field("mmats", pattern=r"^[A-Za-z0-9_-]+$", description="prefix of the named actors")
    persist: bool = Field(True, description="write orders, fills, audit and state to storage (docs/persistence.md)")
    database_url: str | None = Field(None, description="default: $MMATS_DATABASE_URL, else SQLite under home")
    redis_url: str | None = Field(None, description="default: $MMATS_REDIS_URL, else the embedded state store")
    feeds: list[FeedConfig] = Field(default_factory=lambda: [FeedConfig(generated_symbols=["SYNTH/USDT"])])
    strategies: list[StrategyConfig] = Field(default_factory=list)
    costs: CostsConfig = Field(default_factory=CostsConfig)
    risk: dict[str, Any] = Field(default_factory=dict)
    instruments: dict[str, InstrumentSettings] = Field(
        default_factory=dict, description="symbol -> how it is held: kind, leverage, margins, shortable, funding "
        "(docs/configuration.md, \"Instruments and margin\")")
    allocation: AllocationConfig | None = Field(None, description="capital between the strategies: weights and "
                                                "their rebalancing (docs/configuration.md, \"Allocation\")")
    max_strategy_errors: int = Field(5, ge=1)
    strategies_per_actor: int = Field(1, ge=1, le=1000, description="strategies hosted per actor process: 1 "
                                      "isolates each in its own process; N > 1 pools N strategies of one feed in "
                                      "one process (density against isolation, docs/deployment.md)")
    router_error_limit: int = Field(5, ge=1, description="failed or lost submits in a row that downgrade "
                                    "operator to advisory")
    router_retry: RetryConfig = Field(default_factory=RetryConfig)
    paper_venue: str | None = Field(None, description="path/to/file.py:Class, a PaperExecution subclass that "
                                    "models a venue's latency, rejections or outages in paper mode")
    venues: list[VenueConfig] = Field(default_factory=list, description="LIVE: where real orders go")
    live: LiveConfig = Field(default_factory=LiveConfig)
    dry_run: bool = Field(False, description="LIVE through everything except the final send (mmats up --dry-run)")

    @model_validator(mode="after")
    def _check(self) -> SystemConfig:
        if self.mode == "operator" and not self.allow_operator:
            raise ValueError("mode: operator needs allow_operator: true")
        ids = [s.id for s in self.strategies]
        if len(ids) != len(set(ids)):
            raise ValueError(f"strategy ids must be unique, got {ids}")
        if self.allocation is not None:
            try:
                self.allocation.check_strategies(ids)
            except ValueError as exc:
                raise ValueError(f"allocation: {exc}") from None
        market_of = {sym: f.market for f in self.feeds for sym in f.all_symbols}
        for s in self.strategies:
            missing = [x for x in s.symbols if x not in market_of]
            if missing:
                raise ValueError(f"strategy {s.id}: no feed provides {missing} (feeds have {sorted(market_of)})")
            s.market = resolve_market(s, {market_of[x] for x in s.symbols})
        self.base_currency = currency_code(self.base_currency, "base_currency")
        self.fx_plan()  # every instrument's quote currency converts to base, every fx_rates entry is used
        self._check_instruments(market_of)
        if self.environment is Environment.LIVE:
            self._check_live(market_of)
        elif self.venues:
            raise ValueError("venues: only for environment LIVE (PAPER trades on the simulated paper venue, "
                             "separate by construction)")
        elif self.dry_run:
            raise ValueError("dry_run: only for environment LIVE (PAPER sends nothing real anyway)")
        return self

    def _check_instruments(self, market_of: dict[str, MarketType]) -> None:
        """Each ``instruments:`` entry names a fed symbol and applies to it (mmats.margin.InstrumentSettings)."""
        for sym, settings in self.instruments.items():
            if sym not in market_of:
                raise ValueError(f"instruments.{sym}: no feed provides it (feeds have {sorted(market_of)})")
            if self.environment is Environment.LIVE:
                # A ccxt perpetual swap (BASE/QUOTE:SETTLE) takes its leverage from here: the venue adapter sets
                # it before the first order. Everything else about margin is the venue account's own.
                allowed = {"shortable", "kind", "leverage"} if ":" in sym else {"shortable"}
                given = sorted(k for k in (*settings.terms(), *(["funding"] if settings.funding else []))
                               if k not in allowed)
                if given:
                    raise ValueError(f"instruments.{sym}: {', '.join(given)}: in LIVE the venue's account sets "
                                     "margin and funding (only shortable applies, and leverage for a ccxt "
                                     "perpetual swap BASE/QUOTE:SETTLE)")
                if settings.leverage is not None and settings.leverage != int(settings.leverage):
                    raise ValueError(f"instruments.{sym}: leverage {settings.leverage}: a venue takes whole numbers")
            try:
                settings.apply(default_instrument(sym, market_of[sym]))
                if settings.funding is not None and settings.funding.file is not None:
                    settings.funding.build()  # a missing or malformed file fails here, not in the router
            except (ConfigError, DataError) as exc:
                raise ValueError(f"instruments.{sym}: {exc}") from None

    def fx_plan(self) -> FxRates:
        """The account's currency rates: feeds' pairs, ``fx_rates``, the stablecoin pegs (mmats.fx).

        Quote currencies follow the symbols' conventions (``default_instrument``); a live venue that quotes a
        symbol in another currency is checked again when its instruments are known (actors.supervisor)."""
        symbols = [sym for f in self.feeds for sym in f.all_symbols]
        market_of = {sym: f.market for f in self.feeds for sym in f.all_symbols}
        quotes = {default_instrument(sym, market_of[sym]).quote_currency for sym in symbols}
        return plan_fx(self.base_currency, quotes, symbols, self.fx_rates, "the feeds' instruments")

    def _check_live(self, market_of: dict[str, MarketType]) -> None:
        if any(f.source == "replay" for f in self.feeds):
            raise ValueError("environment LIVE cannot use a replay feed (give each feed a live source)")
        if self.paper_venue is not None:
            raise ValueError("paper_venue: only for environment PAPER")
        if self.mode == "operator":
            raise ValueError("environment LIVE starts in advisory mode: switch to operator with the two-step "
                             "confirmation (mmats mode operator, then mmats mode operator --confirm TOKEN)")
        if not self.venues:
            raise ValueError("environment LIVE needs venues: (where real orders go; docs/venues.md)")
        names = [v.name for v in self.venues]
        if len(names) != len(set(names)):
            raise ValueError(f"venue names must be unique, got {names}")
        routed: dict[str, str] = {}
        for v in self.venues:
            for sym in v.symbols:
                if sym in routed:
                    raise ValueError(f"symbol {sym} is routed to both venues {routed[sym]} and {v.name}")
                routed[sym] = v.name
        traded = {sym for s in self.strategies for sym in s.symbols}
        missing = sorted(traded - set(routed))
        if missing:
            raise ValueError(f"environment LIVE: no venue routes {missing} (add them to a venue's symbols)")
        unfed = sorted(set(routed) - set(market_of))
        if unfed:
            raise ValueError(f"venues route {unfed} but no feed provides their prices")


def resolve_market(s: StrategyConfig, feed_markets: set[MarketType]) -> MarketType:
    """A strategy's market: its feeds' (placement pins it next to them); a mismatch is refused."""
    if s.market is None and len(feed_markets) == 1:
        return next(iter(feed_markets))
    if s.market is None or feed_markets != {s.market}:
        raise ValueError(f"strategy {s.id}: market {s.market and s.market.value} does not match the feeds of "
                         f"its symbols ({sorted(m.value for m in feed_markets)})")
    return s.market


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A YAML (``.yaml``/``.yml``), TOML (``.toml``) or JSON (anything else) file as a mapping.

    The one reader of config files (system configs, run configs, risk configs): every one of them fails
    the same way, with the file named, and an empty YAML file is an empty config.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = p.read_text()
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
            data = {} if data is None else data
        elif p.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: cannot parse: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def load_system_config(path: str | None = None, overrides: dict[str, Any] | None = None,
                       env: dict[str, str] | None = None) -> SystemConfig:
    """defaults < file < MMATS_* environment < overrides (CLI flags)."""
    raw: dict[str, Any] = read_config_file(path) if path else {}
    env = dict(os.environ) if env is None else env
    for key, field in (("MMATS_ENVIRONMENT", "environment"), ("MMATS_MODE", "mode"), ("MMATS_HOME", "home"),
                       ("MMATS_INITIAL_CASH", "initial_cash")):
        if key in env:
            raw[field] = env[key]
    # Read here, by the command that loads the config, so every actor on every node gets them explicitly
    # (an actor's own environment is that of the `ray start` on its node, not the user's shell).
    for key, field in (("MMATS_DATABASE_URL", "database_url"), ("MMATS_REDIS_URL", "redis_url")):
        if env.get(key):
            raw[field] = env[key]
    if "MMATS_ALLOW_OPERATOR" in env:
        raw["allow_operator"] = env["MMATS_ALLOW_OPERATOR"].lower() in ("1", "true", "yes")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return validated_system_config(raw)


def validated_system_config(raw: Mapping[str, Any]) -> SystemConfig:
    """A system config from its raw mapping, every error one line with its path. The risk block is the
    kernel gatekeeper's config (docs/risk.md): invalid keys fail here too (``risk.global.max_position_pct:
    ...``), not when the gatekeeper actor starts."""
    try:
        cfg = SystemConfig.model_validate(raw)
    except PydanticValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "config"
        raise ConfigError(f"{where}: {err['msg']}") from None
    parse_risk_config(system_risk_config(cfg.risk), "risk")
    return absolute_paths(cfg)


def absolute_paths(cfg: SystemConfig, base: Path | None = None) -> SystemConfig:
    """Relative paths (home, bar files, strategy and venue files) resolved against the caller's directory.

    Actors resolve paths in their own working directory, on their own node; a config that meant
    ``./var`` where the user typed ``mmats up`` must mean that everywhere.
    """
    root = base or Path.cwd()
    cfg.home = _absolute(cfg.home, root)
    for feed in cfg.feeds:
        feed.files = {sym: _absolute(p, root) for sym, p in feed.files.items()}
    for s in cfg.strategies:
        s.ref = absolute_ref(s.ref, root)
    for sym, settings in cfg.instruments.items():
        f = settings.funding
        if f is not None and f.file is not None:
            cfg.instruments[sym] = settings.model_copy(
                update={"funding": f.model_copy(update={"file": _absolute(f.file, root)})})
    if cfg.paper_venue is not None:
        cfg.paper_venue = absolute_ref(cfg.paper_venue, root)
    return cfg


def absolute_ref(ref: str, base: Path | None = None) -> str:
    """``path/to/file.py:Class`` with an absolute path; module references and built-in names unchanged."""
    where, _, name = ref.rpartition(":")
    if not where.endswith(".py"):
        return ref
    return f"{_absolute(where, base or Path.cwd())}:{name}"


def _absolute(path: str, root: Path) -> str:
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (root / p).resolve())
